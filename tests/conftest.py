"""Shared fixtures.

``impl`` runs a test once per PDU engine implementation: the pure-Python
reference ("python") and the Cython twin ("cython", from _fastpath/).  For the
duration of the test it also routes :mod:`iscsictl.protocol.pdu` (which
imports the BHS codec from the selector) through that implementation's
``decode_bhs``/``RawPDU``, and the pure framing through the pure BHS, so each
parameter exercises one implementation end to end.

When the Cython build is absent the "cython" parameter is skipped with the
reason, or fails when ISCSICTL_REQUIRE_EXTENSIONS=1 (CI builds it).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import pytest

from iscsictl.protocol import _bhs_py, _framing_py, pdu

REQUIRE_EXTENSIONS = os.environ.get("ISCSICTL_REQUIRE_EXTENSIONS", "") not in ("", "0")
IMPLS = ("python", "cython")


@dataclass(frozen=True)
class Impl:
    """One PDU engine implementation: its BHS codec and framing modules."""

    name: str
    bhs: ModuleType
    framing: ModuleType

    def reader(self, **kwargs):
        """A fresh PDUReader of this implementation."""
        return self.framing.PDUReader(**kwargs)

    def parse(self, buf, header_digest=False, data_digest=False, strict=False):
        """pdu.parse_pdu through this implementation (patched in by the fixture)."""
        return pdu.parse_pdu(buf, header_digest, data_digest, strict)

    def frame(self, stream, strict=False, **kwargs):
        """Frame a whole byte stream and decode every PDU in it."""
        r = self.reader(**kwargs)
        r.feed(stream)
        return [pdu.decode_pdu(raw, strict) for raw in r.pdus()]


def load_impl(name: str) -> Impl:
    """The Impl called ``name``; pytest.skip/fail when the Cython build is absent."""
    if name == "python":
        return Impl(name, _bhs_py, _framing_py)
    try:
        bhs = importlib.import_module("iscsictl._fastpath.bhs")
        framing = importlib.import_module("iscsictl._fastpath.framing")
    except ImportError as exc:
        msg = (f"the Cython fast path is not built ({exc}); build it with "
               "`pip install -e . --no-build-isolation` or "
               "`python setup.py build_ext --inplace`")
        if REQUIRE_EXTENSIONS:
            pytest.fail(msg + " and ISCSICTL_REQUIRE_EXTENSIONS=1 requires it")
        pytest.skip(msg)
    return Impl(name, bhs, framing)


@pytest.fixture(params=IMPLS)
def impl(request):
    """The PDU engine implementation under test (python, then cython)."""
    chosen = load_impl(request.param)
    patched = [(pdu, "decode_bhs"), (pdu, "RawPDU"),
               (_framing_py, "decode_bhs"), (_framing_py, "RawPDU")]
    saved = [(mod, name, getattr(mod, name)) for mod, name in patched]
    pdu.decode_bhs = chosen.bhs.decode_bhs
    pdu.RawPDU = chosen.bhs.RawPDU
    # the pure reader always uses the pure BHS; the Cython reader has its own
    _framing_py.decode_bhs = _bhs_py.decode_bhs
    _framing_py.RawPDU = _bhs_py.RawPDU
    try:
        yield chosen
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


@pytest.fixture(scope="session")
def both_impls():
    """Every available implementation at once, for differential tests."""
    out = [load_impl("python")]
    try:
        out.append(load_impl("cython"))
    except pytest.skip.Exception:
        pass
    return out
