"""Property: for any initiator configuration and any target preferences, the
initiator's negotiated values equal what the fake target computed on its own
(RFC 7143 §6.2 rules, written separately in fake_target.RULES)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.protocol.config import DIGEST_CHOICES, LoginConfig
from iscsictl.protocol.login import LoginSuccess
from iscsictl.protocol.keys import KEYS
from iscsictl.protocol.negotiation import NegotiationError

from .fake_target import FakeTarget, Pair, TargetConfig, make_machine

INAME = "iqn.2005-03.org.open-iscsi:host1"
TNAME = "iqn.2003-01.org.example:disk1"
LEN = st.integers(512, 2**24 - 1)
YN = st.sampled_from(["Yes", "No"])


@st.composite
def initiator(draw):
    return LoginConfig(
        initiator_name=INAME, target_name=TNAME,
        session_type=draw(st.sampled_from(["Normal", "Normal", "Discovery"])),
        header_digest=draw(st.sampled_from(sorted(DIGEST_CHOICES))),
        data_digest=draw(st.sampled_from(sorted(DIGEST_CHOICES))),
        max_recv_data_segment_length=draw(LEN), first_burst_length=draw(LEN),
        max_burst_length=draw(LEN), initial_r2t=draw(st.booleans()),
        immediate_data=draw(st.booleans()), max_outstanding_r2t=draw(st.integers(1, 65535)),
        max_connections=draw(st.integers(1, 65535)),
        default_time2wait=draw(st.integers(0, 3600)),
        default_time2retain=draw(st.integers(0, 3600)),
        error_recovery_level=draw(st.integers(0, 2)),
        data_pdu_in_order=draw(st.booleans()), data_sequence_in_order=draw(st.booleans()),
    )


@st.composite
def target(draw):
    values = dict(TargetConfig().values)
    values.update({
        "HeaderDigest": draw(st.sampled_from(["None", "CRC32C", "CRC32C,None"])),
        "DataDigest": draw(st.sampled_from(["None", "CRC32C", "CRC32C,None"])),
        "MaxBurstLength": str(draw(LEN)), "FirstBurstLength": str(draw(LEN)),
        "MaxConnections": str(draw(st.integers(1, 65535))),
        "MaxOutstandingR2T": str(draw(st.integers(1, 65535))),
        "DefaultTime2Wait": str(draw(st.integers(0, 3600))),
        "DefaultTime2Retain": str(draw(st.integers(0, 3600))),
        "ErrorRecoveryLevel": str(draw(st.integers(0, 2))),
        "InitialR2T": draw(YN), "ImmediateData": draw(YN), "DataPDUInOrder": draw(YN),
        "DataSequenceInOrder": draw(YN),
    })
    return TargetConfig(values=values, mrdsl=draw(LEN),
                        login_segment=draw(st.sampled_from([8192, 8192, 100, 13])))


@settings(max_examples=150, deadline=None)
@given(initiator(), target(), st.sampled_from(["chunk", "byte"]))
def test_both_sides_agree(config, tcfg, mode):
    if config.discovery:
        from dataclasses import replace
        config = replace(config, target_name=None)
    t = FakeTarget(tcfg)
    machine = make_machine(config)
    try:
        outcome = Pair(machine, t, mode).login()
    except NegotiationError as exc:
        if exc.key in ("HeaderDigest", "DataDigest"):  # a digest we require, refused
            ours = config.header_digest if exc.key == "HeaderDigest" else config.data_digest
            assert "None" not in ours.split(",") and "CRC32C" not in tcfg.values[exc.key]
            return
        # the other refusal: FirstBurstLength above MaxBurstLength where it matters
        assert exc.key == "FirstBurstLength"
        fb, mb = int(t.negotiated["FirstBurstLength"]), int(t.negotiated["MaxBurstLength"])
        assert fb > mb
        return
    assert isinstance(outcome, LoginSuccess)
    assert t.violations == []
    for key, value in t.negotiated.items():
        assert outcome.negotiated[key] == value, key
    neg = machine._negotiator  # results(): value() of every key that has one, by name
    keys = sorted(set(KEYS) | set(neg._results) | set(neg.declared))
    p = outcome.params
    shown = dict(outcome.negotiated)  # as iscsiadm shows a session: each direction's
    assert shown.pop("MaxRecvDataSegmentLength") == str(config.max_recv_data_segment_length)
    assert shown.pop("MaxXmitDataSegmentLength") == str(p.max_xmit_data_segment_length)
    assert shown.pop("AuthMethod") == "None"  # (no CHAP drawn: test_login_engine's)
    assert shown == {k: v for k in keys if (v := neg.value(k)) is not None
                     and k not in ("MaxRecvDataSegmentLength", "AuthMethod")
                     and (k not in KEYS or not KEYS[k].rfc.startswith("RFC 7145"))}
    assert list(outcome.negotiated) == sorted(outcome.negotiated)
    assert p.max_xmit_data_segment_length == tcfg.mrdsl
    assert p.max_recv_data_segment_length == config.max_recv_data_segment_length
    if not config.discovery:
        assert p.max_burst_length == min(config.max_burst_length, int(tcfg.values["MaxBurstLength"]))
        assert p.initial_r2t == (config.initial_r2t or tcfg.values["InitialR2T"] == "Yes")
        assert p.immediate_data == (config.immediate_data and tcfg.values["ImmediateData"] == "Yes")
    else:
        assert p.max_burst_length == 262144 and p.initial_r2t and p.immediate_data
    assert p.default_time2wait == max(config.default_time2wait, int(tcfg.values["DefaultTime2Wait"]))
    assert p.default_time2retain == min(config.default_time2retain,
                                        int(tcfg.values["DefaultTime2Retain"]))
