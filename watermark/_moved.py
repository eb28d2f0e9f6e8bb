"""Old flat import paths (`wm_toolkit.watermark.keys`, ...) that moved into sub-packages.

They keep working for one release: importing one returns the module at its new place (the same
module object, so monkeypatching either name patches both) and warns with a DeprecationWarning
that names the new path. Remove this file, and its hook in `__init__`, in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]

# old module (under the package) -> new module; one entry per moved file or folder
MOVED: dict[str, str] = {
    "keys": "keying.keys",
    "hfkeys": "keying.hfkeys",
    "prf": "keying.prf",
    "normalize": "text.normalize",
    "confusables": "text.confusables",
    "encoding": "text.encoding",
    "textio": "text.textio",
    "stats": "statistics.pvalues",
    "permutation": "statistics.permutation",
    "alignment": "statistics.alignment",
    "null_kernels": "statistics.null_kernels",
    "its_likelihood": "statistics.its_likelihood",
    "its_lr_table": "statistics.its_lr_table",
    "spans": "statistics.spans",
    "calibration": "statistics.calibration",
    "models": "modeling.models",
    "generation": "modeling.generation",
    "interop": "modeling.interop",
    "offline": "modeling.offline",
    "corpus": "runtime.corpus",
    "report": "runtime.report",
    "atomic": "runtime.atomic",
    "evaluation": "measure.evaluation",
    "metrics": "measure.metrics",
    "engines": "runtime.engines",
    "engines.ray_engine": "runtime.engines.ray_engine",
    "service": "runtime.service",
    "service.app": "runtime.service.app",
    "service.detector": "runtime.service.detector",
    "service.page": "runtime.service.page",
    "service.policy": "runtime.service.policy",
}


def new_path(old: str) -> str | None:
    """The new full module name of an old full module name, or None if it did not move."""
    prefix = PACKAGE + "."
    if not old.startswith(prefix):
        return None
    target = MOVED.get(old[len(prefix) :])
    return prefix + target if target else None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; the old path works for one release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on `sys.meta_path` once (first, so the old names never hit the file system)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
