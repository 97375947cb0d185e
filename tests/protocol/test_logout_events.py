"""Logout (RFC 7143 §11.14, §11.15) against the fake target, and interpret()
of Async Message, NOP-In and Reject events (§11.9, §11.19, §11.17)."""

from __future__ import annotations

import pytest

from iscsictl.protocol.constants import RESERVED_TAG, LogoutReason, LogoutResponse, RejectReason
from iscsictl.protocol.errors import ISCSIProtocolError
from iscsictl.protocol.login import LoginSuccess
from iscsictl.protocol.lun import encode_lun
from iscsictl.protocol.pdu import LogoutRequest, NOPIn, NOPOut, Reject, SCSICommand, TextResponse
from iscsictl.protocol.session import (
    ConnectionDropRequested,
    LogoutExchange,
    LogoutRequested,
    NegotiationRequested,
    NopInReceived,
    PDURejected,
    ScsiAsyncEvent,
    SessionDropRequested,
    TaskTermination,
    VendorAsyncEvent,
    interpret,
    nop_out_reply,
)

from .fake_target import FakeTarget, FFPHarness, Pair, TargetConfig, make_machine


def logged_in(tc=None, mode="chunk"):
    t = FakeTarget(tc or TargetConfig())
    outcome = Pair(make_machine(), t, mode).login()
    assert isinstance(outcome, LoginSuccess)
    return t, outcome, FFPHarness(t, mode)


@pytest.mark.parametrize("reason", list(LogoutReason))
@pytest.mark.parametrize("mode", ["chunk", "byte"])
def test_logout_reasons(reason, mode):
    t, o, h = logged_in(TargetConfig(time2wait=7, time2retain=33), mode)
    ex = LogoutExchange(itt=0x31, cmdsn=o.cmdsn, exp_statsn=o.exp_statsn, cid=0, reason=reason)
    assert isinstance(ex.request, LogoutRequest) and ex.request.immediate
    h.send([ex.request])
    (resp,) = h.pdus()
    result = ex.receive_pdu(resp)
    assert result.ok and result.response is LogoutResponse.SUCCESS
    assert (result.time2wait, result.time2retain) == (7, 33)
    assert t.logout.reason_code == int(reason)
    assert t.violations == []
    assert t.phase == ("closed" if reason is LogoutReason.CLOSE_SESSION else "ffp")


@pytest.mark.parametrize("code", [1, 2, 3, 9])
def test_logout_failure_codes(code):
    t, o, h = logged_in(TargetConfig(logout_response=code))
    ex = LogoutExchange(itt=1, cmdsn=o.cmdsn, exp_statsn=o.exp_statsn,
                        reason=LogoutReason.CLOSE_CONNECTION, cid=5)
    h.send([ex.request])
    result = ex.receive_pdu(h.pdus()[0])
    assert not result.ok
    assert int(result.response) == code
    if code <= 3:
        assert isinstance(result.response, LogoutResponse)


def test_logout_wrong_pdu():
    ex = LogoutExchange(itt=1, cmdsn=1, exp_statsn=1)
    with pytest.raises(ISCSIProtocolError):
        ex.receive_pdu(TextResponse(itt=1))


# ------------------------------------------------------------------------ interpret()
def events(t, h):
    return [interpret(p) for p in h.pdus()]


UA_REPORTED_LUNS = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3F, 0x0E, 0, 0, 0, 0])


def test_scsi_async_event_reported_luns_changed():
    t, o, h = logged_in()
    t.async_message(0, lun=encode_lun(3), sense=UA_REPORTED_LUNS)
    (ev,) = events(t, h)
    assert isinstance(ev, ScsiAsyncEvent)
    assert ev.lun == 3 and ev.sense == UA_REPORTED_LUNS and ev.reported_luns_changed
    t.async_message(0, sense=bytes([0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]))  # descriptor, power on
    (ev,) = events(t, h)
    assert not ev.reported_luns_changed


def test_async_events():
    t, o, h = logged_in()
    t.async_message(1, p3=20)
    t.async_message(2, p1=4, p2=3, p3=40)
    t.async_message(3, p2=5, p3=60)
    t.async_message(4, p3=15)
    t.async_message(5, lun=encode_lun(2))
    t.async_message(255, vcode=9, data=b"vendor")
    t.async_message(77)
    assert events(t, h) == [
        LogoutRequested(20), ConnectionDropRequested(4, 3, 40), SessionDropRequested(5, 60),
        NegotiationRequested(15), TaskTermination(2), VendorAsyncEvent(255, 9, b"vendor"),
        VendorAsyncEvent(77, 0, b""),
    ]


def test_nop_in_ping_needs_a_reply_that_echoes():
    t, o, h = logged_in()
    lun = encode_lun(1)
    t.nop_in_ping(ttt=0x1234, data=b"are you there", lun=lun)
    (ev,) = events(t, h)
    assert isinstance(ev, NopInReceived) and ev.needs_reply
    reply = nop_out_reply(ev.pdu, cmdsn=o.cmdsn, exp_statsn=o.exp_statsn)
    assert isinstance(reply, NOPOut)
    assert (reply.ttt, reply.lun, reply.data, reply.itt) == (0x1234, lun, b"are you there", RESERVED_TAG)
    assert reply.immediate and reply.cmdsn == o.cmdsn
    h.send([reply])
    assert t.nop_outs == [reply] and t.violations == []


def test_nop_in_answering_our_ping_needs_no_reply():
    ev = interpret(NOPIn(itt=5, ttt=RESERVED_TAG))
    assert isinstance(ev, NopInReceived) and not ev.needs_reply


def test_reject_events():
    hdr = SCSICommand(itt=9).encode()[:48]
    ev = interpret(Reject(reason=int(RejectReason.PROTOCOL_ERROR), data=hdr))
    assert ev == PDURejected(RejectReason.PROTOCOL_ERROR, hdr)
    ev = interpret(Reject(reason=0x77, data=hdr))
    assert ev.reason == 0x77


def test_other_pdus_pass_through():
    p = TextResponse(itt=1)
    assert interpret(p) is p
