"""Process-wide switches read from the environment, in one place.

`WM_NUMBA=0` turns the optional numba kernels off (the PRF's fused vocabulary loop and the
permutation test's null kernels), so the numpy / torch paths run as on a machine without numba.
CI runs the kernel-equality tests and the numerics-sensitive suites both ways.
"""

from __future__ import annotations

import os
from types import ModuleType

_OFF = {"0", "false", "no", "off"}


def numba_wanted() -> bool:
    """False when the user turned numba off with `WM_NUMBA=0` (or false / no / off)."""
    return os.environ.get("WM_NUMBA", "1").strip().lower() not in _OFF


def numba_or_none() -> ModuleType | None:
    """The numba module, or None where it is not installed or turned off (`WM_NUMBA=0`): the one
    test every optional kernel makes before compiling."""
    if not numba_wanted():
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the numpy paths take over
        return None
    return numba
