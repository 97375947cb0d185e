"""The PDU trace behind ``-d``: each Login and Text PDU of an exchange, sent and received,
its header fields and its keys, CHAP_R never shown."""

from __future__ import annotations

import logging

import pytest

from iscsictl.protocol import trace
from iscsictl.protocol.login import LoginSuccess
from iscsictl.protocol.pdu import LoginRequest, LoginResponse, Reject, TextResponse
from .fake_target import FakeTarget, Pair, TargetConfig, make_machine
from .test_login_engine import SECRET, TSECRET, chap_cfg, chap_target
from .test_sendtargets_fake import discover


def test_a_login_request_is_its_header_fields_and_one_key_a_line():
    req = LoginRequest(transit=True, csg=1, nsg=3, isid=bytes.fromhex("400001370000"),
                       itt=0x10, cmdsn=7, data=b"InitiatorName=iqn.x\0HeaderDigest=None\0")
    assert trace.describe(req, "->").split("\n") == [
        "-> Login Request T=1 C=0 CSG=1 NSG=3 ISID=400001370000 TSIH=0 ITT=0x10 CID=0 "
        "CmdSN=7 ExpStatSN=0",
        "    InitiatorName=iqn.x",
        "    HeaderDigest=None",
    ]


def test_a_login_response_shows_its_status_and_a_text_response_its_transfer_tag():
    rsp = LoginResponse(status_class=2, status_detail=1, tsih=0, statsn=4, exp_cmdsn=1,
                        max_cmdsn=1)
    assert trace.describe(rsp, "<-") == (
        "<- Login Response status=0x0201 T=0 C=0 CSG=0 NSG=0 ISID=000000000000 TSIH=0 "
        "ITT=0x0 StatSN=4 ExpCmdSN=1 MaxCmdSN=1")
    text = TextResponse(final=False, ttt=0x22, data=b"TargetName=iqn.a\0TargetAdd")
    assert trace.describe(text, "<-").split("\n") == [
        "<- Text Response F=0 C=0 ITT=0x0 TTT=0x22 StatSN=0 ExpCmdSN=0 MaxCmdSN=0",
        "    TargetName=iqn.a",
        "    TargetAdd",  # a piece that ends mid-pair, as it came
    ]
    assert trace.describe(Reject(reason=4), "<-") == "<- Reject"


def test_chap_r_is_hidden_and_bytes_not_in_utf8_are_escaped():
    req = LoginRequest(data=b"CHAP_N=user\0CHAP_R=0x0123456789abcdef\0TargetAlias=d\xffisk\0")
    lines = trace.describe(req, "->").split("\n")[1:]
    assert lines == ["    CHAP_N=user", "    CHAP_R=********", "    TargetAlias=d\\xffisk"]


def test_a_control_character_a_target_sent_is_escaped_and_makes_no_line(caplog):
    """A TargetAlias with a newline made a trace line of its own, which could pass for a
    key the target did not send; it is escaped, and the record says its lines are (the
    daemon's log keeps the newlines between them)."""
    rsp = TextResponse(data=b"TargetAlias=disk\n    TargetAddress=10.9.9.9:3260,1\x1b[2K\0")
    assert trace.describe(rsp, "<-").split("\n")[1:] == [
        "    TargetAlias=disk\\n    TargetAddress=10.9.9.9:3260,1\\x1b[2K"]
    caplog.set_level(logging.DEBUG, logger="iscsictl.pdu")
    trace.trace(rsp, "<-")
    assert [r.escaped for r in caplog.records] == [True]


@pytest.fixture
def pdu_lines(caplog):
    caplog.set_level(logging.DEBUG, logger="iscsictl.pdu")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "iscsictl.pdu"]


def test_a_mutual_chap_login_traces_every_pdu_and_no_response_to_a_challenge(pdu_lines):
    m = make_machine(chap_cfg(mutual=True))
    assert isinstance(Pair(m, chap_target(mutual=True)).login(), LoginSuccess)
    lines = pdu_lines()
    heads = [" ".join(line.split(" ")[:3]) for line in lines]
    assert heads == ["-> Login Request", "<- Login Response"] * 4  # method, A, R, operational
    text = "\n".join(lines)
    assert "\n    AuthMethod=CHAP\n" in text and "\n    CHAP_A=5\n" in text
    assert text.count("CHAP_R=********") == 2  # ours and the target's
    assert "CHAP_R=0x" not in text
    assert SECRET.decode() not in text and TSECRET.decode() not in text
    assert lines[-1].startswith("<- Login Response status=0x0000 T=1 C=0 CSG=1 NSG=3")


def test_a_send_targets_exchange_traces_its_request_and_the_answer(pdu_lines):
    pairs, _, ex = discover(TargetConfig(targets=[("iqn.2003-01.org.example:a",
                                                   ["10.0.0.1:3260,1"])]))
    assert pairs
    lines = [line for line in pdu_lines() if "Text" in line.split("\n")[0]]
    assert lines[0].split("\n") == [
        f"-> Text Request F=1 C=0 ITT=0x20 TTT=0xffffffff CmdSN={ex.cmdsn - 1} "
        "ExpStatSN=4097",
        "    SendTargets=All"]
    assert lines[1].split("\n")[0].startswith("<- Text Response F=1 C=0 ITT=0x20 ")
    assert lines[1].split("\n")[1:] == ["    TargetName=iqn.2003-01.org.example:a",
                                        "    TargetAddress=10.0.0.1:3260,1"]


def test_nothing_is_described_unless_debug_is_enabled(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="iscsictl.pdu")
    described = []
    monkeypatch.setattr(trace, "describe", lambda *a: described.append(a) or "")
    m = make_machine()
    assert isinstance(Pair(m, FakeTarget()).login(), LoginSuccess)
    assert described == [] and not [r for r in caplog.records if r.name == "iscsictl.pdu"]
