"""Framing selector: the Cython twin when built, else the pure reference.

``ISCSICTL_NO_EXTENSIONS=1`` forces pure Python; ``IMPLEMENTATION`` says which.
"""

from __future__ import annotations

from . import _framing_py
from .bhs import NO_EXTENSIONS

if NO_EXTENSIONS:
    _impl = _framing_py
else:
    try:
        from iscsictl._fastpath import framing as _impl  # type: ignore[attr-defined,no-redef]
    except ImportError:
        _impl = _framing_py

PDUReader = _impl.PDUReader
MAX_AHS_LENGTH = _framing_py.MAX_AHS_LENGTH
IMPLEMENTATION = "python" if _impl is _framing_py else "cython"

__all__ = ["IMPLEMENTATION", "MAX_AHS_LENGTH", "PDUReader"]
