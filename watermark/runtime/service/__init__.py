"""`wm serve`: detection over HTTP for clients who must not hold the key.

`policy` (tokens, limits) and `detector` (the work) need no web framework; `create_app` needs
the optional `serve` extra (FastAPI + uvicorn) and is imported only when asked for.
"""

from __future__ import annotations

from typing import Any

from .policy import Client, RateLimiter, ServiceSettings, TokenStore

__all__ = ["Client", "RateLimiter", "ServiceSettings", "TokenStore", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
