"""Hostile input: every malformed PDU gives a typed ISCSIProtocolError, never
another exception, never a hang, and no memory committed to lengths over the
limits (RFC 7143 §7.8, §11.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from iscsictl.protocol import pdu as P
from iscsictl.protocol.errors import (
    AHSError,
    DataDigestError,
    DataSegmentTooLong,
    FramingError,
    HeaderDigestError,
    InvalidPDUField,
    ISCSIProtocolError,
    ReservedFieldError,
    TruncatedPDU,
    UnknownOpcode,
)

from .strategies import PROPERTY, pdus


def with_byte(wire: bytes, index: int, value: int) -> bytes:
    b = bytearray(wire)
    b[index] = value
    return bytes(b)


@pytest.mark.parametrize("opcode", [0x07, 0x0F, 0x11, 0x1C, 0x27, 0x30, 0x33, 0x3C, 0x3E])
def test_unknown_opcode(impl, opcode):
    wire = with_byte(P.NOPIn().encode(), 0, opcode)
    with pytest.raises(UnknownOpcode) as ei:
        impl.parse(wire)
    assert ei.value.opcode == opcode
    with pytest.raises(UnknownOpcode):
        impl.frame(wire)


@pytest.mark.parametrize("index,value", [
    (0, 0x80 | 0x20),  # the '.' bit of byte 0 in a target PDU
    (0, 0x40 | 0x20),  # the I bit in a target PDU is reserved
    (1, 0x80 | 0x10),  # NOP-In byte 1 below F
    (2, 0x01),  # bytes 2-3
    (40, 0xFF),  # bytes 36-47
])
def test_reserved_bits_strict_only(impl, index, value):
    pdu = P.NOPIn(statsn=5)
    wire = with_byte(pdu.encode(), index, value)
    with pytest.raises(ReservedFieldError):
        impl.parse(wire, strict=True)
    assert impl.parse(wire) == pdu  # §11.2: receivers ignore reserved fields


@pytest.mark.parametrize("pdu", [P.SCSIDataOut(itt=3, data=b"abcd"), P.SNACKRequest(itt=3)])
def test_reserved_i_bit_of_data_out_and_snack_strict_only(impl, pdu):
    """SCSI Data-Out (§11.7.1) and SNACK Request (§11.16) have no I bit: byte 0
    bit 6 is reserved there as in target PDUs, though they come from the initiator."""
    wire = bytes(pdu.encode())
    assert wire[0] & 0x40 == 0
    wire = with_byte(wire, 0, wire[0] | 0x40)
    with pytest.raises(ReservedFieldError, match="byte 0"):
        impl.parse(wire, strict=True)
    assert impl.parse(wire) == pdu
    # the initiator PDUs that have an I bit still take it under strict
    cmd = P.SCSICommand(immediate=True, itt=3)
    assert impl.parse(cmd.encode(), strict=True) == cmd


def test_reserved_ahs_type_bits_strict_only(impl):
    pdu = P.SCSICommand(ahs=(P.AHS(5, b"\0abc"),))
    wire = bytearray(pdu.encode())
    wire[48 + 2] |= 0x80
    with pytest.raises(ReservedFieldError):
        impl.parse(bytes(wire), strict=True)
    assert impl.parse(bytes(wire)) == pdu


@pytest.mark.parametrize("cls", [P.LoginRequest, P.LoginResponse])
@pytest.mark.parametrize("flags", [0x08 | 0x01, 0x80 | 0x04 | 0x02, 0x80 | 0x40 | 0x05])
def test_login_stage_and_tc(impl, cls, flags):
    """CSG=2, or NSG=2 with T=1 (reserved, §11.12.3), and T+C together (§11.12.2)."""
    wire = with_byte(cls(csg=1, nsg=1).encode(), 1, flags)
    with pytest.raises(InvalidPDUField):
        impl.parse(wire)
    with pytest.raises(InvalidPDUField):
        impl.frame(wire)


@pytest.mark.parametrize("flags", [0x08 | 0x01, 0x80 | 0x40 | 0x05])
def test_a_failed_logins_response_is_read_whatever_its_reserved_stage_bits(impl, flags):
    """A Login Response with a non-zero Status-Class: T, C, CSG and NSG are reserved
    there (§6.3.1, §11.13.1), so CSG=2 or T+C do not hide its status (02/01, the
    initiator's authentication failure: 24, not a broken PDU's 19)."""
    wire = with_byte(P.LoginResponse(status_class=2, status_detail=1).encode(), 1, flags)
    for got in (impl.parse(wire), impl.frame(wire)[0]):
        assert (got.status_class, got.status_detail) == (2, 1)


@pytest.mark.parametrize("cls", [P.LoginRequest, P.LoginResponse])
def test_login_nsg_is_reserved_without_transit(impl, cls):
    """With T=0, NSG is a reserved field (§11.12.3): any value, 2 included, is
    ignored (§11.2), not refused; the decoded PDU keeps it as received."""
    wire = with_byte(cls(csg=1, nsg=1).encode(), 1, 0x04 | 0x02)  # T=0, CSG=1, NSG=2
    for got in (impl.parse(wire), impl.frame(wire)[0]):
        assert (got.transit, got.csg, got.nsg) == (False, 1, 2)


@pytest.mark.parametrize("cls", [P.TextRequest, P.TextResponse])
def test_text_final_and_continue(impl, cls):
    wire = with_byte(cls().encode(), 1, 0xC0)
    with pytest.raises(InvalidPDUField):
        impl.parse(wire)


def test_data_in_status_without_final(impl):
    wire = with_byte(P.SCSIDataIn().encode(), 1, 0x01)
    with pytest.raises(InvalidPDUField):
        impl.parse(wire)


@pytest.mark.parametrize("n", [0, 1, 20, 47])
def test_truncated_bhs(impl, n):
    wire = P.NOPIn().encode()[:n]
    with pytest.raises(TruncatedPDU):
        impl.bhs.decode_bhs(wire)
    with pytest.raises(TruncatedPDU):
        impl.parse(wire)
    r = impl.reader()
    r.feed(wire)
    assert r.next_pdu() is None and r.pdus() == [] and r.needed() == 48 - n


def test_truncated_and_overlong_buffers(impl):
    wire = P.NOPIn(data=b"abcdef").encode()
    for bad in (wire[:-1], wire[:50], wire + b"\0\0\0\0"):
        with pytest.raises(TruncatedPDU):
            impl.parse(bad)


def test_decode_bhs_offset(impl):
    wire = P.NOPIn(itt=9).encode()
    assert impl.bhs.decode_bhs(b"xx" + wire, 2).itt == 9
    with pytest.raises(TruncatedPDU):
        impl.bhs.decode_bhs(b"xx" + wire, 3)
    with pytest.raises(ValueError):
        impl.bhs.decode_bhs(wire, -1)


@pytest.mark.parametrize("dsl", [8193, 0x10000, 0xFFFFFF])
def test_data_segment_too_long_before_payload(impl, dsl):
    hdr = bytearray(P.TextResponse().encode())
    hdr[5:8] = dsl.to_bytes(3, "big")
    r = impl.reader(max_data_segment_length=8192)
    r.feed(bytes(hdr))  # only the 48-byte BHS
    with pytest.raises(DataSegmentTooLong) as ei:
        r.next_pdu()
    assert ei.value.fatal and ei.value.length == dsl and ei.value.limit == 8192
    assert r.buffered == 48  # nothing of the payload was ever buffered
    with pytest.raises(DataSegmentTooLong):  # sticky, and feeding is refused
        r.feed(b"\0" * 1000)
    assert r.buffered == 48
    with pytest.raises(DataSegmentTooLong):
        r.needed()


def test_data_segment_too_long_via_needed(impl):
    hdr = bytearray(P.TextResponse().encode())
    hdr[5:8] = (9000).to_bytes(3, "big")
    r = impl.reader()
    r.feed(bytes(hdr))
    with pytest.raises(DataSegmentTooLong):
        r.needed()


def test_total_ahs_length_over_limit(impl):
    wire = P.SCSICommand(cdb=bytes(16 + 60)).encode()  # AHS of 64 bytes
    r = impl.reader(max_ahs_length=32)
    r.feed(wire[:48])
    with pytest.raises(FramingError) as ei:
        r.next_pdu()
    assert ei.value.fatal and r.buffered == 48


@pytest.mark.parametrize("ahs", [
    "00 09 01 00 00 00 00 00",  # AHSLength 9 runs past TotalAHSLength 8
    "00 01 05 00 00 00 00 00",  # a 4-byte AHS, then 4 bytes that claim AHSLength 0 (ok)...
])
def test_ahs_length_lies(impl, ahs):
    body = bytes.fromhex(ahs)
    wire = bytearray(P.SCSICommand().encode())
    wire[4] = len(body) // 4
    wire = bytes(wire) + body
    if ahs.startswith("00 09"):
        with pytest.raises(AHSError):
            impl.parse(wire)
        with pytest.raises(AHSError):
            impl.frame(wire)
    else:
        impl.parse(wire)  # well-formed: two AHS entries


@pytest.mark.parametrize("ahs_type,specific", [
    (1, b"\0"),  # Extended CDB AHS with no CDB bytes
    (2, b"\0"), (2, b"\0\0\0\0"), (2, b"\0" * 9),  # bidi AHS with AHSLength != 5
])
def test_bidi_and_extended_cdb_ahs_lengths(impl, ahs_type, specific):
    wire = P.SCSICommand(ahs=(P.AHS(ahs_type, specific),)).encode()
    with pytest.raises(AHSError):
        impl.parse(wire)


def test_header_digest_mismatch(impl):
    wire = bytearray(P.NOPIn(itt=3).encode(header_digest=True))
    wire[-1] ^= 0x40  # the digest itself
    with pytest.raises(HeaderDigestError) as ei:
        impl.parse(bytes(wire), header_digest=True)
    assert ei.value.fatal
    r = impl.reader(header_digest=True)
    r.feed(bytes(wire) + P.NOPIn().encode(header_digest=True))
    with pytest.raises(HeaderDigestError):
        r.pdus()
    with pytest.raises(HeaderDigestError):  # sticky
        r.next_pdu()


def test_data_digest_mismatch_continues(impl):
    bad = bytearray(P.NOPIn(itt=1, data=b"hello").encode(data_digest=True))
    bad[50] ^= 1  # a data byte
    good = P.NOPIn(itt=2, data=b"world").encode(data_digest=True)
    with pytest.raises(DataDigestError) as ei:
        impl.parse(bytes(bad), data_digest=True)
    assert not ei.value.fatal
    r = impl.reader(data_digest=True)
    r.feed(bytes(bad) + good)
    with pytest.raises(DataDigestError) as ei:
        r.next_pdu()
    assert ei.value.pdu.bhs.itt == 1
    assert ei.value.reject_reason == 2
    (raw,) = r.pdus()
    assert P.decode_pdu(raw) == P.NOPIn(itt=2, data=b"world")


def test_pad_bytes_are_in_the_data_digest(impl):
    wire = bytearray(P.NOPIn(data=b"abc").encode(data_digest=True))
    wire[48 + 3] = 0x55  # the pad byte
    with pytest.raises(DataDigestError):
        impl.parse(bytes(wire), data_digest=True)


@pytest.mark.parametrize("cls", [P.TaskManagementRequest, P.LogoutRequest, P.R2T,
                                 P.SNACKRequest, P.TaskManagementResponse, P.LogoutResponse])
def test_no_data_allowed(impl, cls):
    wire = bytearray(cls().encode() + b"abcd")
    wire[7] = 4
    with pytest.raises(InvalidPDUField):
        impl.parse(bytes(wire))
    with pytest.raises(InvalidPDUField):
        impl.frame(bytes(wire))
    ahs = bytearray(cls().encode() + bytes.fromhex("00 01 05 00"))
    ahs[4] = 1
    with pytest.raises(InvalidPDUField):
        impl.parse(bytes(ahs))


def test_encode_rejects_out_of_range():
    with pytest.raises(ValueError):
        P.NOPOut(itt=1 << 32).encode()
    with pytest.raises(ValueError):
        P.LoginRequest(csg=4).encode()
    with pytest.raises(ValueError):
        P.NOPOut(lun=b"\0").encode()
    with pytest.raises(ValueError):
        P.R2T(data=b"x").encode()
    with pytest.raises(ValueError):
        P.SCSICommand(cdb=bytes(1025), expected_bidi_read_length=0).encode()  # > 255 AHS words


@pytest.mark.parametrize("pdu", [
    P.SCSICommand(expected_bidi_read_length=1 << 32),
    P.SCSICommand(expected_bidi_read_length=-1),
    P.SCSICommand(expected_bidi_read_length=1.0),
    P.NOPOut(itt=1.9),  # not rounded to ITT 1
    P.NOPOut(itt="7"),  # not parsed
    P.NOPOut(final=0.5),
    P.SCSICommand(attr="1"),
])
def test_encode_refuses_what_is_not_an_int_in_range(pdu):
    """encode() raises ValueError, as documented, for any value that is not an int in
    its field's range: never OverflowError or TypeError, never a float rounded."""
    with pytest.raises(ValueError):
        pdu.encode()


def test_encode_takes_ints_bools_and_int_enums():
    from iscsictl.protocol.constants import TaskAttribute

    wire = P.SCSICommand(final=1, attr=TaskAttribute.ORDERED, itt=True,
                         expected_bidi_read_length=0xFFFFFFFF).encode()
    back = P.parse_pdu(wire)
    assert (back.final, back.attr, back.itt, back.expected_bidi_read_length) == \
        (True, 2, 1, 0xFFFFFFFF)


# --- fuzzing ------------------------------------------------------------------

def _drive(impl, chunks, strict, hd, dd):
    """Feed chunks through a reader and decode everything; return normally or
    raise only ISCSIProtocolError.  Bounded: at most len(data) PDUs."""
    r = impl.reader(header_digest=hd, data_digest=dd, max_data_segment_length=1 << 16)
    for chunk in chunks:
        r.feed(chunk)
        for _ in range(len(chunk) + 1):
            try:
                raw = r.next_pdu()
            except DataDigestError:
                continue
            if raw is None:
                break
            P.decode_pdu(raw, strict)


FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=PROPERTY.suppress_health_check)


@FUZZ
@given(data=st.binary(min_size=0, max_size=400), strict=st.booleans(),
       hd=st.booleans(), dd=st.booleans())
def test_fuzz_random_bytes(impl, data, strict, hd, dd):
    try:
        _drive(impl, [data], strict, hd, dd)
    except ISCSIProtocolError:
        pass
    try:
        impl.parse(data, hd, dd, strict)
    except ISCSIProtocolError:
        pass


@FUZZ
@given(pdu=pdus(), flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)),
                                  min_size=1, max_size=6),
       strict=st.booleans(), hd=st.booleans(), dd=st.booleans(),
       cut=st.integers(0, 1 << 16))
def test_fuzz_mutated_pdus(impl, pdu, flips, strict, hd, dd, cut):
    wire = bytearray(pdu.encode(hd, dd))
    for pos, x in flips:
        wire[pos % len(wire)] ^= x
    wire = bytes(wire)
    c = cut % (len(wire) + 1)
    try:
        _drive(impl, [wire[:c], wire[c:]], strict, hd, dd)
    except ISCSIProtocolError:
        pass
    try:
        impl.parse(wire, hd, dd, strict)
    except ISCSIProtocolError:
        pass
