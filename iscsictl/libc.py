"""The C library, for the few Linux calls the :mod:`os` module lacks (``syncfs``,
``renameat2``, ``mlockall``, ``prctl``): loaded once, on first use (ctypes is imported
then, not by every command)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def libc() -> Any:
    """The process's C library (``ctypes.CDLL``, with ``errno`` kept for
    ``ctypes.get_errno``), or None where it cannot be loaded."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def function(name: str) -> Any:
    """libc's function ``name`` (the same object at every call), or None where libc lacks it."""
    lib = libc()
    return getattr(lib, name, None) if lib is not None else None
