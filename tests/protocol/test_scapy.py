"""The scapy iSCSI layer: crafted malformed PDUs against our decoder, and a
login exchange written to a pcap by scapy, read back and dissected."""

from __future__ import annotations

import pytest

pytest.importorskip("scapy")

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.utils import rdpcap, wrpcap  # noqa: E402

from iscsictl.protocol import pdu as P  # noqa: E402
from iscsictl.protocol.errors import (  # noqa: E402
    DataSegmentTooLong,
    InvalidPDUField,
    ISCSIProtocolError,
    UnknownOpcode,
)
from iscsictl.scapy_iscsi import ISCSI, set_digests  # noqa: E402

from .test_golden import GOLDEN  # noqa: E402


@pytest.fixture(autouse=True)
def _no_digests():
    set_digests(False, False)
    yield
    set_digests(False, False)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_layer_matches_golden_bytes(name):
    """The layer's own field table (written separately from pdu.LAYOUT)
    dissects and rebuilds every hand-written golden PDU."""
    wire, _, decoded = GOLDEN[name]
    pkt = ISCSI(wire)
    assert bytes(pkt) == wire
    assert pkt.opcode == decoded.OPCODE
    for f in type(decoded).LAYOUT:
        if hasattr(pkt, f.name) and f.name != "cdb":
            assert getattr(pkt, f.name) == getattr(decoded, f.name), f.name
    assert pkt.data == decoded.data


def test_crafted_login_response_csg2(impl):
    wire = bytes(ISCSI(opcode=0x23, transit=1, csg=2, nsg=3, data=b"a=b\0"))
    with pytest.raises(InvalidPDUField):
        impl.parse(wire)
    with pytest.raises(InvalidPDUField):
        impl.frame(wire)


def test_crafted_login_request_t_and_c(impl):
    wire = bytes(ISCSI(opcode=0x03, immediate=1, transit=1, continue_=1, csg=0, nsg=1))
    with pytest.raises(InvalidPDUField):
        impl.parse(wire)


def test_crafted_huge_dsl(impl):
    pkt = ISCSI(opcode=0x24, final=1, data_segment_length=0xFFFFFF, data=b"")
    wire = bytes(pkt)
    assert len(wire) == 48 and wire[5:8] == b"\xff\xff\xff"
    r = impl.reader()
    r.feed(wire)
    with pytest.raises(DataSegmentTooLong):
        r.pdus()
    assert r.buffered == 48


def test_crafted_r2t_with_data_and_bad_opcode(impl):
    with pytest.raises(InvalidPDUField):
        impl.parse(bytes(ISCSI(opcode=0x31, data=b"oops")))
    with pytest.raises(UnknownOpcode):
        impl.parse(bytes(ISCSI(opcode=0x1B)))


def test_crafted_with_digests(impl):
    set_digests(True, True)
    wire = bytes(ISCSI(opcode=0x25, final=1, itt=7, data=b"hello"))
    assert impl.parse(wire, True, True) == P.SCSIDataIn(itt=7, data=b"hello")
    bad = bytes(ISCSI(opcode=0x25, final=1, itt=7, data=b"hello", data_digest=b"\0\0\0\0"))
    with pytest.raises(ISCSIProtocolError):
        impl.parse(bad, True, True)
    pkt = ISCSI(wire)
    assert pkt.data == b"hello" and len(pkt.header_digest) == 4 and pkt.pad == b"\0\0\0"


def test_login_exchange_pcap(tmp_path, impl):
    isid = bytes.fromhex("00023d000001")
    req_text = b"InitiatorName=iqn.2005-03.org.open-iscsi:host1\0TargetName=iqn.2003-01.org.x:t1\0"
    rsp_text = b"TargetPortalGroupTag=1\0"
    req = P.LoginRequest(transit=True, csg=1, nsg=3, isid=isid, itt=0x10, cid=0, cmdsn=0x55,
                         exp_statsn=0, data=req_text)
    rsp = P.LoginResponse(transit=True, csg=1, nsg=3, isid=isid, tsih=0x2A, itt=0x10,
                          statsn=0x99, exp_cmdsn=0x55, max_cmdsn=0x56, status_class=0,
                          status_detail=0, data=rsp_text)
    frames = [
        IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=3260, flags="PA", seq=1)
        / req.encode(),
        IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=3260, dport=40000, flags="PA", seq=1)
        / rsp.encode(),
    ]
    path = tmp_path / "login.pcap"
    wrpcap(str(path), frames)
    back = rdpcap(str(path))
    assert len(back) == 2
    got_req, got_rsp = back[0][ISCSI], back[1][ISCSI]
    assert got_req.opcode == 0x03 and got_req.immediate == 1
    assert got_req.isid == isid and got_req.cmdsn == 0x55 and got_req.csg == 1
    assert got_req.data == req_text
    assert got_req.data.split(b"\0")[:2] == [
        b"InitiatorName=iqn.2005-03.org.open-iscsi:host1", b"TargetName=iqn.2003-01.org.x:t1"]
    assert got_rsp.opcode == 0x23 and got_rsp.isid == isid and got_rsp.tsih == 0x2A
    assert got_rsp.status_class == 0 and got_rsp.status_detail == 0
    assert got_rsp.statsn == 0x99 and got_rsp.data == rsp_text
    # and what scapy carried decodes with our engine to the same PDUs
    assert impl.parse(bytes(got_req)) == req
    assert impl.parse(bytes(got_rsp)) == rsp


def test_two_pdus_in_one_segment():
    a = P.NOPIn(itt=1, data=b"x").encode()
    b = P.TextResponse(itt=2, data=b"k=v\0").encode()
    pkt = IP() / TCP(sport=3260, dport=1234) / (a + b)
    pkt = IP(bytes(pkt))
    first = pkt[ISCSI]
    second = first.payload
    assert isinstance(second, ISCSI)
    assert first.itt == 1 and second.itt == 2 and second.data == b"k=v\0"


@pytest.mark.parametrize("digests", [False, True])
def test_ahs_not_a_multiple_of_4_is_padded(impl, digests):
    """A 5-byte AHS (one Extended CDB byte) goes out padded to the 2 words TotalAHSLength
    announces (§11.2.1.5): the same bytes as pdu.py's encoder, the data after it intact."""
    set_digests(digests, digests)
    ahs = bytes.fromhex("0002 01 00 ab")
    wire = bytes(ISCSI(opcode=0x01, final=1, attr=1, itt=1, ahs=ahs, data=b"xyz"))
    ref = P.SCSICommand(cdb=bytes(16) + b"\xab", itt=1, data=b"xyz")
    assert wire == ref.encode(digests, digests)
    assert impl.parse(wire, digests, digests) == ref
    assert ISCSI(wire).ahs == ahs + b"\0\0\0"


def test_ahs_goes_out_as_given_with_total_ahs_length_set():
    """Crafting: with TotalAHSLength set, the AHS bytes are not padded."""
    wire = bytes(ISCSI(opcode=0x01, itt=1, total_ahs_length=2, ahs=b"\0\x02\x01\0\xab"))
    assert wire[4] == 2 and len(wire) == 48 + 5
