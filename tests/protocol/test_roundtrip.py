"""Round trips: every opcode, every field at non-default values, with and
without digests, with AHS (extended CDB, bidi length, others) and data of
every padding length; through parse_pdu and through the framing reader."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsictl.protocol import pdu as P
from iscsictl.protocol.digest import crc32c_digest

from .strategies import PROPERTY, pdus

CLASSES = sorted(P.PDU_CLASSES.values(), key=lambda c: c.OPCODE)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@PROPERTY
@given(data=st.data(), hd=st.booleans(), dd=st.booleans())
def test_round_trip(impl, cls, data, hd, dd):
    pdu = data.draw(pdus(cls))
    wire = pdu.encode(header_digest=hd, data_digest=dd)
    assert len(wire) % 4 == 0
    assert impl.parse(wire, hd, dd, strict=True) == pdu
    framed = impl.frame(wire, strict=True, header_digest=hd, data_digest=dd,
                        max_data_segment_length=1 << 24)
    assert framed == [pdu]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_non_default_round_trips(impl, cls):
    """One PDU per class with every field set away from its default."""
    values = {}
    for f in cls.LAYOUT:
        default = {fd.name: fd.default for fd in dataclasses.fields(cls)}[f.name]
        if f.kind is bool:
            values[f.name] = not default
        elif f.kind is bytes:
            values[f.name] = bytes(range(1, f.size + 1))
        elif f.mask:
            values[f.name] = 1 if default != 1 else 3
        else:
            values[f.name] = (1 << (8 * f.size)) - 2
    if cls in (P.LoginRequest, P.LoginResponse):
        values.update(transit=True, continue_=False, csg=1, nsg=3)
    if cls in (P.TextRequest, P.TextResponse):
        values.update(final=False, continue_=True)
    if cls is P.SCSIDataIn:
        values.update(final=True, status_present=True)
    pdu = cls(**values)
    for f in cls.LAYOUT:
        default = {fd.name: fd.default for fd in dataclasses.fields(cls)}[f.name]
        if f.name not in ("continue_", "final", "transit", "status_present"):
            assert getattr(pdu, f.name) != default, f.name
    for hd in (False, True):
        assert impl.parse(pdu.encode(header_digest=hd), hd, strict=True) == pdu


@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_padding_and_data_digest_cover_pad(impl, pad):
    data = b"x" * (8 + (4 - pad) % 4)
    pdu = P.SCSIDataIn(itt=1, data=data)
    wire = pdu.encode(data_digest=True)
    padded = data + bytes(-len(data) & 3)
    assert len(padded) - len(data) == (-len(data) & 3)
    assert wire[48:48 + len(padded)] == padded
    assert wire[-4:] == crc32c_digest(padded)
    assert impl.parse(wire, data_digest=True) == pdu


# 1024: a 1012-byte Extended CDB AHS and the 8-byte bidi AHS fill all 255 AHS words
@pytest.mark.parametrize("cdb_len", [16, 17, 20, 32, 1024])
def test_extended_cdb(impl, cdb_len):
    cdb = bytes(i & 0xFF for i in range(cdb_len))
    pdu = P.SCSICommand(cdb=cdb, expected_bidi_read_length=0x12345678, read=True, write=True)
    wire = pdu.encode(header_digest=True)
    got = impl.parse(wire, header_digest=True, strict=True)
    assert got.cdb == cdb and got.expected_bidi_read_length == 0x12345678 and got.ahs == ()
    assert impl.frame(wire, header_digest=True) == [pdu]


def test_multi_pdu_stream(impl):
    stream = [P.NOPOut(itt=i, data=b"d" * i) for i in range(9)]
    wire = b"".join(p.encode(True, True) for p in stream)
    assert impl.frame(wire, header_digest=True, data_digest=True) == stream
