"""Scheme name -> implementation class: each scheme module registers its own class.

Adding a scheme is one module under `schemes/` (its config registered with
`config.register_config`, its class with `@register_scheme(...)`) plus its module name in
`schemes.SCHEME_MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, overload

from .base import WatermarkScheme

SchemeClass = TypeVar("SchemeClass", bound=type[WatermarkScheme])

_SCHEMES: dict[str, type[WatermarkScheme]] = {}


@overload
def register_scheme(first: str, *names: str) -> Callable[[SchemeClass], SchemeClass]: ...
@overload
def register_scheme(first: type[WatermarkScheme], *names: str) -> None: ...


def register_scheme(first, *names):
    """`@register_scheme("kgw", "unigram")` on a class, or `register_scheme(cls, "name", ...)`."""
    if isinstance(first, str):

        def decorate(cls: SchemeClass) -> SchemeClass:
            for name in (first, *names):
                _SCHEMES[name] = cls
            return cls

        return decorate
    for name in names:
        _SCHEMES[name] = first
    return None


def scheme_class(name: str) -> type[WatermarkScheme] | None:
    return _SCHEMES.get(name)


def registered_names() -> list[str]:
    return sorted(_SCHEMES)
