"""Hostile Login Responses: whatever the target sends, LoginMachine returns an
outcome, waits for more, or raises an ISCSIProtocolError subclass; never
another exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iscsictl.protocol.chap import ChapAlgorithm, ChapCredentials
from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.errors import ISCSIProtocolError
from iscsictl.protocol.pdu import LoginResponse

from .fake_target import FakeTarget, TargetConfig, enc_text, make_machine

INAME = "iqn.2005-03.org.open-iscsi:host1"
TNAME = "iqn.2003-01.org.example:disk1"
ISID = b"\x00\x02\x3d\x00\x00\x01"

CONFIGS = {
    "none": lambda: LoginConfig(initiator_name=INAME, target_name=TNAME,
                                header_digest="CRC32C,None"),
    "chap": lambda: LoginConfig(
        initiator_name=INAME, target_name=TNAME,
        chap=ChapCredentials("user", b"secretsecret", "tgt", b"targetsecret99"),
        chap_algorithms=(ChapAlgorithm.SHA256, ChapAlgorithm.MD5)),
    "discovery": lambda: LoginConfig(initiator_name=INAME, session_type="Discovery"),
}


def target(kind):
    if kind == "chap":
        return FakeTarget(TargetConfig(chap_users={"user": b"secretsecret"},
                                       mutual=("tgt", b"targetsecret99"), login_segment=60))
    return FakeTarget(TargetConfig(login_segment=60 if kind == "none" else 8192))


def feed(m, data: bytes, now: float = 0.0):
    try:
        return m.receive_data(data, now)
    except ISCSIProtocolError:
        return "error"


KEYS = ["HeaderDigest", "DataDigest", "MaxBurstLength", "FirstBurstLength", "ImmediateData",
        "InitialR2T", "DefaultTime2Wait", "DefaultTime2Retain", "ErrorRecoveryLevel",
        "MaxRecvDataSegmentLength", "TargetPortalGroupTag", "TargetAlias", "TargetAddress",
        "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R", "MaxConnections",
        "X-vendor", "X#thing", "Bogus", "SessionType", "TaskReporting", "RDMAExtensions"]
VALUES = ["None", "CRC32C", "CHAP", "Yes", "No", "Maybe", "0", "1", "5", "7", "512", "262144",
          "99999999", "abc", "0x10", "0b", "0xzz", "Reject", "NotUnderstood", "Irrelevant",
          "", "0x00112233", "0bAAEC", "10.0.0.1:3260,1", "[::1", "CRC32C,None", "-1"]

pairs_st = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=8)


@st.composite
def responses(draw):
    """A Login Response that is close to valid, with any field possibly wrong."""
    transit = draw(st.booleans())
    cont = draw(st.booleans()) and not transit
    csg = draw(st.sampled_from([0, 1, 3]))
    nsg = draw(st.sampled_from([0, 1, 3])) if transit else 0
    status = draw(st.sampled_from([0, 0, 0, 0x0101, 0x0102, 0x0201, 0x0300, 0x0400, 0x0205]))
    data = draw(st.one_of(pairs_st.map(enc_text), st.binary(max_size=40)))
    return LoginResponse(
        transit=transit, continue_=cont, csg=csg, nsg=nsg,
        isid=draw(st.sampled_from([ISID, bytes(6)])), itt=draw(st.sampled_from([0x10, 0x11])),
        tsih=draw(st.sampled_from([0, 1, 0x123])), statsn=draw(st.integers(0, 2**32 - 1)),
        exp_cmdsn=1, max_cmdsn=draw(st.integers(0, 2**32 - 1)),
        version_active=draw(st.sampled_from([0, 0, 0, 1])),
        status_class=status >> 8, status_detail=status & 0xFF, data=data,
    ).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(CONFIGS)), st.lists(responses(), min_size=1, max_size=5))
def test_random_login_responses(kind, resps):
    m = make_machine(CONFIGS[kind]())
    m.start(0.0)
    for r in resps:
        m.data_to_send()
        out = feed(m, r)
        if out is not None:
            return


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(CONFIGS)), st.integers(0, 12), st.data())
def test_mutated_transcripts(kind, round_no, data):
    """Run a real exchange with the fake target and damage one of its replies."""
    m, t = make_machine(CONFIGS[kind]()), target(kind)
    m.start(0.0)
    for n in range(40):
        t.receive_data(m.data_to_send())
        reply = bytearray(t.data_to_send())
        if n == round_no and reply:
            how = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
            if how == "flip":
                for _ in range(data.draw(st.integers(1, 4))):
                    i = data.draw(st.integers(0, len(reply) - 1))
                    reply[i] ^= data.draw(st.integers(1, 255))
            elif how == "truncate":
                reply = reply[:data.draw(st.integers(0, len(reply) - 1))]
            elif how == "extend":
                reply += data.draw(st.binary(min_size=1, max_size=60))
            else:
                i = data.draw(st.integers(48, max(48, len(reply))))
                reply[i:i] = data.draw(pairs_st.map(enc_text))
        out = feed(m, bytes(reply))
        if out is not None:
            return
        if n >= round_no and not m._outbox:
            return  # waiting for bytes the damaged reply never completes


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_bytes(data):
    m = make_machine()
    m.start(0.0)
    feed(m, data)
