"""BHS codec selector: the Cython twin when built, else the pure reference.

``ISCSICTL_NO_EXTENSIONS=1`` forces pure Python at import time.
``IMPLEMENTATION`` says which one is in use ("cython" or "python").
"""

from __future__ import annotations

import os

from . import _bhs_py

NO_EXTENSIONS = os.environ.get("ISCSICTL_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    _impl = _bhs_py
else:
    try:
        from iscsictl._fastpath import bhs as _impl  # type: ignore[attr-defined,no-redef]
    except ImportError:
        _impl = _bhs_py

BHS = _impl.BHS
RawPDU = _impl.RawPDU
decode_bhs = _impl.decode_bhs
encode_bhs = _impl.encode_bhs
IMPLEMENTATION = "python" if _impl is _bhs_py else "cython"

__all__ = ["BHS", "IMPLEMENTATION", "RawPDU", "decode_bhs", "encode_bhs"]
