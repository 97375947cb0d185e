"""The login's rules, one Login Response at a time (RFC 7143 §11.13, §6.2, §12.1): a
target that breaks one ends the login with the error that names it, and the exit code
that error maps to (24 an authentication failure, 19 a protocol one).  The responses are
written by hand here, so each test can break exactly one rule (a mutation run found these
refusals untested: a login failed later, and differently, without them)."""

from __future__ import annotations

import pytest

from iscsictl.protocol.chap import AuthenticationError, ChapCredentials
from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.login import LoginMachine, LoginProtocolError, LoginSuccess
from iscsictl.protocol.negotiation import NegotiationError
from iscsictl.protocol.pdu import LoginRequest, LoginResponse, NOPIn
from iscsictl.protocol.text import decode_text, encode_text

from .fake_target import seeded_rng

ISID = b"\x00\x02\x3d\x00\x00\x01"
SEC, OP, FFP = 0, 1, 3
OPS = [("HeaderDigest", "None"), ("DataDigest", "None"), ("ErrorRecoveryLevel", "0"),
       ("MaxRecvDataSegmentLength", "65536")]


def machine(chap: bool = False, **cfg) -> LoginMachine:
    creds = ChapCredentials("user", b"secretsecret") if chap else None
    config = LoginConfig(initiator_name="iqn.2005-03.org.open-iscsi:host1",
                         target_name="iqn.2003-01.org.example:disk1", chap=creds, **cfg)
    m = LoginMachine(config, isid=ISID, rng=seeded_rng(3), itt=0x10)
    m.start(0.0)
    return m


def request(m: LoginMachine) -> LoginRequest:
    (req,) = m.pdus_to_send()
    return req


def answer(req: LoginRequest, pairs=(), **kw) -> LoginResponse:
    """The response a good target gives ``req`` (its stage, its T bit and NSG), with
    ``kw`` changed."""
    fields = dict(transit=req.transit, csg=req.csg, nsg=req.nsg if req.transit else 0,
                  isid=req.isid, tsih=7, itt=req.itt, statsn=1, exp_cmdsn=req.cmdsn,
                  max_cmdsn=req.cmdsn, data=encode_text(list(pairs)))
    fields.update(kw)
    return LoginResponse(**fields)


def to_operational(m: LoginMachine) -> LoginRequest:
    """A login without CHAP taken to its operational stage; our request there."""
    req = request(m)
    if req.csg == SEC:
        assert m.receive_pdu(answer(req, [("AuthMethod", "None")]), 0.0) is None
        req = request(m)
    assert req.csg == OP and req.transit and req.nsg == FFP
    return req


def test_a_good_target_logs_in():
    m = machine()
    req = to_operational(m)
    assert isinstance(m.receive_pdu(answer(req, OPS), 0.0), LoginSuccess)


@pytest.mark.parametrize("change, match", [
    (dict(itt=0x11), "Login Response ITT 0x00000011, ours is 0x00000010"),
    (dict(version_active=1), "target chose version 1; we offered 0"),
    (dict(continue_=True), "target set T and C together"),
    (dict(nsg=OP), "target moves to stage 1"),  # T=1 to the stage it is in
    (dict(csg=SEC), "Login Response for stage 0"),
])
def test_a_response_that_breaks_a_rule_of_its_header(change, match):
    m = machine()
    req = to_operational(m)
    with pytest.raises(LoginProtocolError, match=match):
        m.receive_pdu(answer(req, OPS, **change), 0.0)


def test_a_response_after_the_login_ended_or_before_it_began():
    m = machine()
    req = to_operational(m)
    m.receive_pdu(answer(req, OPS), 0.0)
    with pytest.raises(LoginProtocolError, match="NOPIn after the login ended"):
        m.receive_pdu(NOPIn(), 0.0)
    with pytest.raises(RuntimeError, match="already started"):
        m.start(0.0)
    idle = LoginMachine(m.config, isid=ISID, rng=seeded_rng(3))
    with pytest.raises(RuntimeError, match="before start"):
        idle.receive_pdu(answer(req), 0.0)
    with pytest.raises(ValueError, match="6 bytes"):
        LoginMachine(m.config, isid=ISID[:5])


def test_a_key_twice_in_one_response_of_the_security_stage():
    m = machine(chap=True)
    req = request(m)
    with pytest.raises(NegotiationError) as e:
        m.receive_pdu(answer(req, [("TargetAlias", "a"), ("AuthMethod", "CHAP"),
                                   ("AuthMethod", "CHAP")], transit=False, nsg=0), 0.0)
    assert str(e.value).startswith("AuthMethod") and "sent twice" in str(e.value)


@pytest.mark.parametrize("key, value", [("AuthMethod", "CHAP"), ("TargetAlias", "a")])
def test_a_security_key_repeated_in_a_later_response(key, value):
    """§6.2: a key is negotiated once; AuthMethod (or TargetAlias) again in the security
    stage's second response (its first was T=0) is a NegotiationError."""
    m = machine(chap=True)
    req = request(m)
    m.receive_pdu(answer(req, [("AuthMethod", "CHAP"), ("TargetAlias", "a")], transit=False,
                         nsg=0), 0.0)
    req = request(m)  # our CHAP_A
    assert dict(decode_text(req.data)).keys() == {"CHAP_A"}
    with pytest.raises(NegotiationError, match=f"{key}.*sent twice"):
        m.receive_pdu(answer(req, [(key, value), ("CHAP_A", "5"), ("CHAP_I", "1"),
                                   ("CHAP_C", "0x" + "11" * 16)], transit=False, nsg=0), 0.0)


def test_a_chap_key_in_each_response_is_no_repeat():
    """CHAP_A, CHAP_I, CHAP_C ... belong to steps of one exchange (§12.1.3): the
    target's CHAP_N/CHAP_R of mutual CHAP after its CHAP_A/CHAP_I/CHAP_C are no repeat."""
    m = machine(chap=True)
    req = request(m)
    m.receive_pdu(answer(req, [("AuthMethod", "CHAP")], transit=False, nsg=0), 0.0)
    req = request(m)
    m.receive_pdu(answer(req, [("CHAP_A", "5"), ("CHAP_I", "1"),
                               ("CHAP_C", "0x" + "11" * 16)], transit=False, nsg=0), 0.0)
    req = request(m)  # our CHAP_N, CHAP_R, T=1
    assert dict(decode_text(req.data)).keys() == {"CHAP_N", "CHAP_R"} and req.transit
    assert m.receive_pdu(answer(req), 0.0) is None  # to the operational stage
    assert request(m).csg == OP


@pytest.mark.parametrize("method, error, match", [
    ("None", AuthenticationError, "AuthMethod=None.*CHAP is required"),
    ("SRP", NegotiationError, "answer 'SRP' is not one of our offer"),
    ("CHAP,None", AuthenticationError, r"refused AuthMethod=CHAP \(CHAP,None\)"),
    ("Reject", AuthenticationError, r"refused AuthMethod=CHAP \(Reject\)"),
])
def test_an_authmethod_answer_not_of_our_offer(method, error, match):
    m = machine(chap=True, auth_optional=False)  # AuthMethod=CHAP offered alone
    req = request(m)
    with pytest.raises(error, match=match):
        m.receive_pdu(answer(req, [("AuthMethod", method)], transit=False, nsg=0), 0.0)


def test_a_target_that_skips_chap_we_require():
    """AuthMethod=CHAP answered with T=1 to the operational stage: refused, no login
    without CHAP (our request asked to stay: T=0, which a target may not override)."""
    m = machine(chap=True, auth_optional=False)
    req = request(m)
    assert req.csg == SEC and not req.transit
    with pytest.raises(LoginProtocolError, match="target set T=1 although we did not"):
        m.receive_pdu(answer(req, [("AuthMethod", "CHAP")], transit=True, nsg=OP), 0.0)


def test_an_operational_response_without_t_goes_on_whatever_its_nsg():
    """T=0 (its NSG reserved, §11.13.1): the target needs another round, not done."""
    m = machine()
    req = to_operational(m)
    assert m.receive_pdu(answer(req, OPS, transit=False, nsg=FFP), 0.0) is None
    req = request(m)
    assert isinstance(m.receive_pdu(answer(req), 0.0), LoginSuccess)


@pytest.mark.parametrize("answers, refused", [
    ([("ImmediateData", "Yes"), ("InitialR2T", "Yes")], True),
    ([("ImmediateData", "No"), ("InitialR2T", "No")], True),
    ([("ImmediateData", "No"), ("InitialR2T", "Yes")], False),
])
def test_a_first_burst_over_the_max_burst_matters_only_when_unsolicited_data_is_sent(
        answers, refused):
    """§13.14: FirstBurstLength must not exceed MaxBurstLength, which is about unsolicited
    data: refused when ImmediateData=Yes or InitialR2T=No, taken otherwise (and in a
    discovery session, which has neither)."""
    m = machine(first_burst_length=65536, immediate_data=True, initial_r2t=False)
    req = to_operational(m)
    response = answer(req, OPS + [("MaxBurstLength", "512"), ("FirstBurstLength", "65536")]
                      + answers)
    if refused:
        with pytest.raises(NegotiationError, match="FirstBurstLength.*exceeds MaxBurstLength"):
            m.receive_pdu(response, 0.0)
    else:
        assert isinstance(m.receive_pdu(response, 0.0), LoginSuccess)


def test_security_keys_in_the_operational_stage():
    m = machine()
    req = to_operational(m)
    with pytest.raises(LoginProtocolError, match="security keys in the operational stage"):
        m.receive_pdu(answer(req, OPS + [("AuthMethod", "None")]), 0.0)


def test_full_feature_phase_straight_from_the_security_stage_is_refused():
    """We ask to leave the security stage for the operational one only: a target that
    goes to full feature phase from there is refused."""
    m = machine(chap=True)  # AuthMethod=CHAP,None: None taken
    req = request(m)
    m.receive_pdu(answer(req, [("AuthMethod", "None")]), 0.0)
    req = request(m)
    assert req.csg == SEC and req.transit and req.nsg == OP
    with pytest.raises(LoginProtocolError, match="target moves to stage 3, which we did not "
                                                 "offer"):
        m.receive_pdu(answer(req, nsg=FFP), 0.0)


@pytest.mark.parametrize("key, value", [
    ("InitiatorName", "iqn.2001-04.com.example:another"),
    ("SessionType", "Discovery"),
    ("InitiatorAlias", "forged"),
    ("SendTargets", "All"),
])
def test_a_target_declaring_the_initiators_key_fails_the_login(key, value):
    """Keys only an initiator declares (RFC 7143 §13.3, §13.5, §13.7, §13.21) from the
    target: its login fails, as open-iscsi's get_op_params_text_keys fails a key it does
    not take.  Before, the forged SessionType or InitiatorName was taken as negotiated."""
    m = machine()
    req = to_operational(m)
    with pytest.raises(NegotiationError, match=f"{key}: is the initiator's to declare"):
        m.receive_pdu(answer(req, OPS + [(key, value)]), 0.0)


@pytest.mark.parametrize("offer", [("TaskReporting", "ResponseFence"),
                                   ("iSCSIProtocolLevel", "2")])
def test_an_offer_in_the_final_response_fails_the_login(offer):
    """RFC 7143 §6.3: a target's Login Response with T=1 must not hold a key that needs the
    initiator's answer, since no request follows.  Before, the answer was dropped and the
    login succeeded with the two sides disagreeing."""
    m = machine()
    req = to_operational(m)
    with pytest.raises(NegotiationError, match=f"{offer[0]}: offered in the target's final"):
        m.receive_pdu(answer(req, OPS + [offer]), 0.0)


def test_an_offer_whose_answer_is_optional_or_not_understood_may_end_the_login():
    """IFMarker=No (an AND offered No: the answer optional, §6.2.4), as RFC 3720 targets
    offer it, and a vendor key (NotUnderstood) in the final response: the login succeeds."""
    m = machine()
    req = to_operational(m)
    outcome = m.receive_pdu(answer(req, OPS + [("IFMarker", "No"),
                                               ("X-com.example.mode", "fast")]), 0.0)
    assert isinstance(outcome, LoginSuccess)
    assert outcome.negotiated["IFMarker"] == "No"
