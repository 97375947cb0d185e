"""LoginMachine against the fake target: no-auth, CHAP, statuses, redirects,
continuation, hostile targets, byte-at-a-time delivery and timeouts."""

from __future__ import annotations

import pytest

from iscsictl.protocol.chap import (
    AuthenticationError,
    ChapAlgorithm,
    ChapCredentials,
    ShortSecretPolicy,
)
from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.constants import LoginStatus
from iscsictl.protocol.errors import ISCSIProtocolError
from iscsictl.protocol.login import (
    LoginProtocolError,
    LoginRedirect,
    LoginRejected,
    LoginState,
    LoginSuccess,
    LoginTimeout,
)
from iscsictl.protocol.negotiation import NegotiationError
from iscsictl.protocol.pdu import LoginRequest, NOPIn
from iscsictl.protocol.portal import Portal

from .fake_target import FakeTarget, Pair, TargetConfig, make_machine, seeded_rng

INAME = "iqn.2005-03.org.open-iscsi:host1"
TNAME = "iqn.2003-01.org.example:disk1"
MODES = ["chunk", "needed", "byte"]
SECRET = b"secretsecret"
TSECRET = b"targetsecret99"


def cfg(**kw) -> LoginConfig:
    kw.setdefault("initiator_name", INAME)
    if kw.get("session_type") != "Discovery":
        kw.setdefault("target_name", TNAME)
    return LoginConfig(**kw)


def chap_cfg(mutual=False, algs=(ChapAlgorithm.MD5,), password=SECRET, **kw) -> LoginConfig:
    creds = ChapCredentials("user", password, "tgt" if mutual else None,
                            TSECRET if mutual else None)
    return cfg(chap=creds, chap_algorithms=tuple(algs), **kw)


def chap_target(mutual=False, **kw) -> FakeTarget:
    return FakeTarget(TargetConfig(chap_users={"user": SECRET},
                                   mutual=("tgt", TSECRET) if mutual else None, **kw))


def run(config=None, target=None, mode="chunk", **mk):
    t = target or FakeTarget()
    m = make_machine(config or cfg(), **mk)
    pair = Pair(m, t, mode)
    outcome = pair.login()
    return outcome, t, m, pair


# ------------------------------------------------------------------------ no auth
@pytest.mark.parametrize("mode", MODES)
def test_no_auth_login_is_one_round_trip(mode):
    outcome, t, m, pair = run(mode=mode)
    assert isinstance(outcome, LoginSuccess)
    assert t.violations == []
    assert pair.requests == 1 and t.login_requests == 1
    assert outcome.tsih == t.c.tsih and outcome.isid == b"\x00\x02\x3d\x00\x00\x01"
    assert outcome.statsn == t.c.statsn and outcome.exp_statsn == t.c.statsn + 1
    assert outcome.exp_cmdsn == 1 and outcome.max_cmdsn == 1 + t.c.window - 1
    assert outcome.params.target_alias == "fake-disk"
    assert outcome.params.target_portal_group_tag == 1
    assert m.state is LoginState.DONE


def test_first_pdu_is_operational_transit_to_ffp():
    m = make_machine(cfg(initiator_alias="host1"))
    m.start(0.0)
    (req,) = m.pdus_to_send()
    assert isinstance(req, LoginRequest)
    assert (req.transit, req.continue_, req.csg, req.nsg) == (True, False, 1, 3)
    assert req.immediate and req.tsih == 0 and req.version_max == 0 == req.version_min
    text = req.data.split(b"\0")
    assert text[:4] == [b"InitiatorName=" + INAME.encode(), b"InitiatorAlias=host1",
                        b"TargetName=" + TNAME.encode(), b"SessionType=Normal"]
    assert b"MaxRecvDataSegmentLength=262144" in text


def test_negotiated_results_match_hand_computation_and_the_target():
    config = cfg(header_digest="CRC32C,None", data_digest="None,CRC32C", default_time2wait=5,
                 default_time2retain=30, max_burst_length=131072, first_burst_length=32768,
                 initial_r2t=False, immediate_data=True, max_outstanding_r2t=4)
    tv = dict(TargetConfig().values, DefaultTime2Wait="3", DefaultTime2Retain="10",
              MaxOutstandingR2T="8", InitialR2T="No", ImmediateData="No",
              MaxBurstLength="262144", FirstBurstLength="65536", DataDigest="CRC32C,None")
    outcome, t, _, _ = run(config, FakeTarget(TargetConfig(values=tv, mrdsl=16384)))
    assert t.violations == []
    p = outcome.params
    # by hand (RFC 7143 §13): list = first of our offer the target accepts; min/max/and/or
    assert p.header_digest is True  # offer CRC32C,None -> CRC32C
    assert p.data_digest is False  # offer None,CRC32C -> None
    assert p.default_time2wait == 5  # max(5, 3)
    assert p.default_time2retain == 10  # min(30, 10)
    assert p.max_outstanding_r2t == 4  # min(4, 8)
    assert p.max_burst_length == 131072 and p.first_burst_length == 32768
    assert p.initial_r2t is False  # No OR No
    assert p.immediate_data is False  # Yes AND No
    assert p.max_xmit_data_segment_length == 16384 and p.max_recv_data_segment_length == 262144
    for key, value in t.negotiated.items():
        assert outcome.negotiated[key] == value, key


def test_target_offers_a_key_and_the_initiator_answers():
    t = FakeTarget(TargetConfig(offers=[("TaskReporting", "FastAbort,RFC3720")]))
    outcome, t, _, pair = run(target=t)
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert t.negotiated["TaskReporting"] == "RFC3720"
    assert outcome.negotiated["TaskReporting"] == "RFC3720"
    assert pair.requests == 2


def test_target_offers_session_key_in_discovery_gets_irrelevant():
    t = FakeTarget(TargetConfig(offers=[("MaxConnections", "4")]))
    outcome, t, _, _ = run(cfg(session_type="Discovery"), t)
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert t.negotiated["MaxConnections"] == "Irrelevant"


def test_discovery_session_key_answered_irrelevant_keeps_default():
    config = cfg(session_type="Discovery", extra_keys=(("MaxBurstLength", "65536"),))
    outcome, t, _, _ = run(config)
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert outcome.params.max_burst_length == 262144  # the default: not negotiated
    assert t.answers["MaxBurstLength"] == "Irrelevant"
    assert "TargetName" not in t.declared and t.declared["SessionType"] == "Discovery"


def test_extra_round_when_target_stays_in_operational():
    outcome, t, _, pair = run(target=FakeTarget(TargetConfig(misbehave={"extra_round"})))
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert pair.requests == 2


# ------------------------------------------------------------------------ CHAP
@pytest.mark.parametrize("alg", list(ChapAlgorithm))
@pytest.mark.parametrize("mutual", [False, True], ids=["oneway", "mutual"])
@pytest.mark.parametrize("b64", [False, True], ids=["hex", "base64"])
@pytest.mark.parametrize("mode", MODES)
def test_chap_each_algorithm(alg, mutual, b64, mode):
    t = chap_target(mutual, base64=b64)
    outcome, t, m, pair = run(chap_cfg(mutual, algs=[alg]), t, mode)
    assert isinstance(outcome, LoginSuccess), outcome
    assert t.violations == [] and t.algorithm == int(alg) and t.authenticated
    assert len(t.challenge) == {5: 16, 6: 20, 7: 32, 8: 32}[int(alg)]
    assert pair.requests == 4  # AuthMethod, CHAP_A, CHAP_R(T=1), operational
    if mutual:
        assert len(t.received_challenges) == 1


@pytest.mark.parametrize("chap", [False, True])
def test_the_negotiated_values_shown_are_the_sessions(chap):
    """LoginSuccess.negotiated, shown by ``--probe`` and iscsictld's session state: the
    AuthMethod the target chose, MaxRecvDataSegmentLength ours and MaxXmitDataSegmentLength
    the target's (as iscsiadm -P 2 shows them), no iSER key on a TCP login.  Before,
    AuthMethod was always None and MaxRecvDataSegmentLength the target's."""
    config = chap_cfg(max_recv_data_segment_length=262144) if chap else \
        cfg(max_recv_data_segment_length=262144)
    outcome, t, _, _ = run(config, chap_target(mrdsl=8192) if chap else
                           FakeTarget(TargetConfig(mrdsl=8192)))
    assert isinstance(outcome, LoginSuccess), outcome
    shown = outcome.negotiated
    assert (shown["AuthMethod"], shown["MaxRecvDataSegmentLength"],
            shown["MaxXmitDataSegmentLength"]) == ("CHAP" if chap else "None", "262144", "8192")
    assert not {"RDMAExtensions", "TargetRecvDataSegmentLength",
                "InitiatorRecvDataSegmentLength", "MaxOutstandingUnexpectedPDUs"} & set(shown)


@pytest.mark.parametrize("mode", MODES)
def test_chap_mutual_byte_at_a_time(mode):
    outcome, t, _, _ = run(chap_cfg(True, algs=[ChapAlgorithm.SHA3_256]), chap_target(True), mode)
    assert isinstance(outcome, LoginSuccess) and t.violations == []


@pytest.mark.parametrize("offer,supported,chosen", [
    ((ChapAlgorithm.SHA3_256, ChapAlgorithm.SHA256, ChapAlgorithm.SHA1, ChapAlgorithm.MD5), (5, 7), 7),
    ((ChapAlgorithm.MD5, ChapAlgorithm.SHA256), (5, 6, 7, 8), 5),
    ((ChapAlgorithm.SHA1, ChapAlgorithm.SHA3_256), (8, 6), 6),
])
def test_chap_preference_order(offer, supported, chosen):
    t = chap_target(chap_algorithms=supported)
    outcome, t, _, _ = run(chap_cfg(algs=offer), t)
    assert isinstance(outcome, LoginSuccess)
    assert t.chap_a_offer == ",".join(str(int(a)) for a in offer)
    assert t.algorithm == chosen


def test_chap_no_common_algorithm():
    t = chap_target(chap_algorithms=(5,))
    with pytest.raises(AuthenticationError):
        run(chap_cfg(algs=[ChapAlgorithm.SHA256]), t)


@pytest.mark.parametrize("mode", MODES)
def test_chap_wrong_secret_is_authentication_failure(mode):
    outcome, t, m, _ = run(chap_cfg(password=b"wrongsecret!!"), chap_target(), mode)
    assert isinstance(outcome, LoginRejected)
    assert outcome.status == LoginStatus.AUTHENTICATION_FAILURE and outcome.retryable is False
    assert "authentication failure" in outcome.message and "(02/01)" in outcome.message
    assert m.state is LoginState.FAILED


def test_target_requiring_chap_refuses_no_auth_login():
    outcome, *_ = run(cfg(), chap_target())
    assert isinstance(outcome, LoginRejected)
    assert outcome.status == LoginStatus.AUTHENTICATION_FAILURE


@pytest.mark.parametrize("answer", ["Reject", "NotUnderstood", "Irrelevant"])
def test_an_authmethod_refused_leaves_none_when_we_offered_it(answer):
    """CHAP,None offered (one-way CHAP, None allowed) and the target answers Reject,
    NotUnderstood or Irrelevant: the key keeps its default, None, which we offered
    (RFC 7143 §6.2), and the login goes on, as open-iscsi's (usr/auth.c acl_chk_key:
    AUTH_OPTION_REJECT, then a pass when the target is not authenticated).  Before: an
    AuthenticationError, exit 19.  With CHAP required it still fails."""
    outcome, *_ = run(chap_cfg(auth_optional=True),
                      FakeTarget(TargetConfig(misbehave={f"auth_answer={answer}"})))
    assert isinstance(outcome, LoginSuccess)
    with pytest.raises(AuthenticationError, match=f"target refused AuthMethod=CHAP \\({answer}"):
        run(chap_cfg(auth_optional=False),
            FakeTarget(TargetConfig(misbehave={f"auth_answer={answer}"})))


def test_auth_optional_offer_accepts_none():
    outcome, t, _, pair = run(chap_cfg(auth_optional=True), FakeTarget())
    assert isinstance(outcome, LoginSuccess) and t.violations == []


def test_reflected_challenge_is_refused():
    issued: set[bytes] = set()
    outcome, t1, *_ = run(chap_cfg(True), chap_target(True), issued_challenges=issued)
    assert isinstance(outcome, LoginSuccess)
    ours = t1.received_challenges[0]
    assert ours in issued
    # a second login: the target hands us back the challenge we issued before
    t2 = chap_target(True, reflect=ours)
    with pytest.raises(AuthenticationError, match="reflected"):
        run(chap_cfg(True), t2, issued_challenges=issued)


def test_target_failing_mutual_chap():
    t = chap_target(True, misbehave={"fail_mutual"})
    with pytest.raises(AuthenticationError, match="mutual"):
        run(chap_cfg(True), t)


def test_target_sending_chap_r_unasked():
    with pytest.raises(AuthenticationError, match="did not challenge"):
        run(chap_cfg(False), chap_target(misbehave={"chap_r_unasked"}))


def test_same_secret_both_directions_refused():
    creds = ChapCredentials("user", SECRET, "tgt", SECRET)
    with pytest.raises(AuthenticationError, match="same CHAP secret"):
        make_machine(cfg(chap=creds))


def test_short_secret_warns():
    warnings: list[str] = []
    t = FakeTarget(TargetConfig(chap_users={"user": b"short"}))
    m = make_machine(chap_cfg(password=b"short"), warn=warnings.append)
    assert isinstance(Pair(m, t).login(), LoginSuccess)
    assert len(warnings) == 1 and "12" in warnings[0]


def test_short_secret_refused():
    with pytest.raises(AuthenticationError, match="at least 12"):
        make_machine(chap_cfg(password=b"short", short_secret_policy=ShortSecretPolicy.REFUSE))


def test_skip_security_with_transit_is_refused():
    with pytest.raises(ISCSIProtocolError, match="T=1"):
        run(chap_cfg(), chap_target(misbehave={"skip_security"}))


def test_auth_method_none_when_chap_required_is_refused_clearly():
    with pytest.raises(AuthenticationError, match="CHAP is required"):
        run(chap_cfg(auth_optional=False), chap_target(misbehave={"auth_none"}))


def test_bad_nsg_after_chap():
    with pytest.raises(LoginProtocolError, match="did not offer"):
        run(chap_cfg(), chap_target(misbehave={"bad_nsg"}))


# ------------------------------------------------------------------------ hostile
@pytest.mark.parametrize("switch,match", [
    ("wrong_stage", "stage"),
    ("wrong_isid", "ISID"),
    ("reject_login", "rejected"),
    ("tsih_zero", "TSIH 0"),
])
@pytest.mark.parametrize("mode", MODES)
def test_protocol_errors(switch, match, mode):
    m = make_machine()
    with pytest.raises(LoginProtocolError, match=match):
        Pair(m, FakeTarget(TargetConfig(misbehave={switch})), mode).login()
    assert m.state is LoginState.FAILED


def test_wrong_stage_in_security():
    with pytest.raises(LoginProtocolError):
        run(chap_cfg(), chap_target(misbehave={"wrong_stage"}))


def test_receive_after_the_end_is_an_error():
    outcome, t, m, _ = run()
    with pytest.raises(LoginProtocolError):
        m.receive_pdu(NOPIn(), 0.0)


@pytest.mark.parametrize("key,value", [
    ("HeaderDigest", "CRC32C"),  # outside our offer of None
    ("MaxBurstLength", "99999999"),  # out of range and above our offer
    ("MaxBurstLength", "100"),  # below 512
    ("ErrorRecoveryLevel", "5"),
    ("MaxBurstLength", "abc"),  # wrong kind
    ("ImmediateData", "Maybe"),
    ("DefaultTime2Wait", "1"),  # max: below our offer of 2
    ("InitialR2T", "Yes,No"),
])
def test_illegal_answers_raise_negotiation_error(key, value):
    with pytest.raises(NegotiationError) as exc:
        run(target=FakeTarget(TargetConfig(answer_overrides={key: value})))
    assert exc.value.key == key


def test_target_that_never_transits_is_bounded():
    with pytest.raises(LoginProtocolError, match="more than 1024"):
        run(target=FakeTarget(TargetConfig(misbehave={"never_transit"})))


def test_answered_twice():
    with pytest.raises(NegotiationError, match="twice"):
        run(target=FakeTarget(TargetConfig(misbehave={"answer_twice"})))


def test_unknown_target_key_is_answered_not_understood():
    t = FakeTarget(TargetConfig(offers=[("X-com.example.Foo", "1"), ("Bogus", "2")]))
    outcome, t, _, _ = run(target=t)
    assert isinstance(outcome, LoginSuccess)
    assert t.negotiated["X-com.example.Foo"] == "NotUnderstood"
    assert t.negotiated["Bogus"] == "NotUnderstood"


def test_rejected_offer_keeps_the_default():
    tv = dict(TargetConfig().values, HeaderDigest="CRC32C")
    outcome, *_ = run(cfg(header_digest="None"), FakeTarget(TargetConfig(values=tv)))
    assert outcome.negotiated["HeaderDigest"] == "None" and outcome.params.header_digest is False


def test_keys_of_the_security_stage_are_negotiated_not_dropped():
    """A target's AuthMethod answer that also declares MaxRecvDataSegmentLength and sends a
    key we do not know: the declaration is in force (before: lost, so we would send PDUs
    larger than the target takes), the unknown key answered NotUnderstood (§6.2)."""
    extra = [("MaxRecvDataSegmentLength", "4096"), ("X-com.example.Foo", "Bar")]
    outcome, t, _, _ = run(chap_cfg(), chap_target(security_extra=extra))
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert outcome.params.max_xmit_data_segment_length == 4096
    assert ("X-com.example.Foo", "NotUnderstood") in t.received_pairs
    assert t.negotiated["X-com.example.Foo"] == "NotUnderstood"


@pytest.mark.parametrize("key", ["HeaderDigest", "DataDigest"])
@pytest.mark.parametrize("answer", ["Reject", "NotUnderstood", "Irrelevant", None])
def test_a_required_digest_is_not_dropped_by_the_target(key, answer):
    """CRC32C offered alone (the record requires it): a special answer, or none at all,
    leaves None in force, which was not offered.  The login fails, as open-iscsi's, instead
    of running the session without digests (before: LoginSuccess, digests off)."""
    target = FakeTarget(TargetConfig(answer_overrides={key: answer}))
    with pytest.raises(NegotiationError, match=f"{key}: .*None in force; our offer was 'CRC32C'"):
        run(cfg(**{"header_digest" if key == "HeaderDigest" else "data_digest": "CRC32C"}),
            target)


@pytest.mark.parametrize("key", ["HeaderDigest", "DataDigest"])
def test_a_required_digest_the_target_offers_away_in_the_security_stage_fails(key):
    """CRC32C required, and the target offers None first, beside AuthMethod: we answer
    Reject, which leaves the default None in force, not one of ours.  The login fails, as
    when the operational stage leaves it so (before: the key settled there as None, our
    operational offer skipped it as settled, and the session ran without digests)."""
    target = chap_target(security_extra=[(key, "None")])
    setting = "header_digest" if key == "HeaderDigest" else "data_digest"
    with pytest.raises(NegotiationError, match=f"{key}: the target offered 'None'.*None in "
                                               "force; ours: 'CRC32C'"):
        run(chap_cfg(**{setting: "CRC32C"}), target)
    outcome, *_ = run(chap_cfg(**{setting: "CRC32C,None"}), chap_target(
        security_extra=[(key, "None")]))  # None acceptable: taken
    assert isinstance(outcome, LoginSuccess) and outcome.negotiated[key] == "None"


@pytest.mark.parametrize("answer", ["Reject", None])
def test_an_optional_digest_left_to_the_default_is_none(answer):
    target = FakeTarget(TargetConfig(answer_overrides={"HeaderDigest": answer}))
    outcome, *_ = run(cfg(header_digest="CRC32C,None"), target)
    assert isinstance(outcome, LoginSuccess) and outcome.params.header_digest is False


def test_not_understood_vendor_offer_of_ours_is_tolerated():
    outcome, *_ = run(cfg(extra_keys=(("X-com.example.Mine", "1"),)))
    assert isinstance(outcome, LoginSuccess)


# ------------------------------------------------------------------------ status codes
REJECTS = [s for s in LoginStatus if s.status_class in (2, 3)]


@pytest.mark.parametrize("status", REJECTS, ids=lambda s: s.name)
@pytest.mark.parametrize("mode", MODES)
def test_status_class_2_and_3(status, mode):
    outcome, t, m, _ = run(target=FakeTarget(TargetConfig(status=int(status))), mode=mode)
    assert isinstance(outcome, LoginRejected)
    assert outcome.status == status
    assert outcome.retryable is (status.status_class == 3)
    assert status.description in outcome.message
    assert f"({status >> 8:02x}/{status & 0xff:02x})" in outcome.message
    assert ("initiator error" if status.status_class == 2 else "target error") in outcome.message


def test_target_not_found_for_wrong_name():
    outcome, *_ = run(cfg(target_name="iqn.2003-01.org.example:other"))
    assert isinstance(outcome, LoginRejected) and outcome.status == LoginStatus.NOT_FOUND


@pytest.mark.parametrize("status,permanent", [(0x0101, False), (0x0102, True)])
@pytest.mark.parametrize("addr,portal", [
    ("192.0.2.7:3261,2", Portal("192.0.2.7", 3261, 2)),
    ("[2001:db8::1]:3260,1", Portal("2001:db8::1", 3260, 1)),
    ("storage.example.com,5", Portal("storage.example.com", 3260, 5)),
    ("192.0.2.8", Portal("192.0.2.8", 3260, None)),
])
@pytest.mark.parametrize("mode", ["chunk", "byte"])
def test_redirect(status, permanent, addr, portal, mode):
    t = FakeTarget(TargetConfig(status=status, redirect_to=addr))
    outcome, *_ = run(target=t, mode=mode)
    assert isinstance(outcome, LoginRedirect)
    assert outcome.portal == portal and outcome.permanent is permanent
    assert outcome.status == status


def test_a_redirect_is_read_as_a_successful_response_is():
    """Its last pair without the NUL, a TargetAlias not in UTF-8: the redirect is followed
    (open-iscsi's iscsi_process_login_response reads a class 1 response's text as any
    other); it failed the login, exit 5, where a success with the same text logged in."""
    from iscsictl.protocol.pdu import LoginResponse

    m = make_machine()
    m.start(0.0)
    m.pdus_to_send()
    outcome = m.receive_pdu(LoginResponse(
        status_class=1, status_detail=2, itt=0x10,
        data=b"TargetAlias=d\xffisk\0TargetAddress=192.0.2.7:3261,2"), 0.0)
    assert isinstance(outcome, LoginRedirect) and outcome.permanent
    assert outcome.portal == Portal("192.0.2.7", 3261, 2)


def test_redirect_without_address_is_an_error():
    with pytest.raises(LoginProtocolError, match="TargetAddress"):
        run(target=FakeTarget(TargetConfig(status=0x0101)))


def test_redirect_to_garbage_is_an_error():
    with pytest.raises(LoginProtocolError, match="TargetAddress"):
        run(target=FakeTarget(TargetConfig(status=0x0102, redirect_to="[zz::1]:3260,1")))


# ------------------------------------------------------------------------ continuation
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("segment", [1, 7, 40, 200])
def test_target_continues_its_answers(mode, segment):
    t = FakeTarget(TargetConfig(login_segment=segment))
    outcome, t, _, pair = run(target=t, mode=mode)
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert pair.requests > 1
    assert outcome.params.target_alias == "fake-disk"


@pytest.mark.parametrize("mode", MODES)
def test_target_continues_in_security_stage(mode):
    t = chap_target(True, login_segment=16)
    outcome, t, _, pair = run(chap_cfg(True, algs=[ChapAlgorithm.SHA256]), t, mode)
    assert isinstance(outcome, LoginSuccess) and t.violations == []


@pytest.mark.parametrize("mode", ["chunk", "byte"])
def test_our_text_continues_past_8192_bytes(mode):
    extra = tuple((f"X-com.example.k{i}", "v" * 200) for i in range(100))
    m = make_machine(cfg(extra_keys=extra))
    m.start(0.0)
    reqs = m.pdus_to_send()
    assert len(reqs) == 1 and reqs[0].continue_ and not reqs[0].transit
    assert len(reqs[0].data) == 8192
    t = FakeTarget()
    t.receive_data(reqs[0].encode())
    outcome = Pair(m, t, mode).login()
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert t.login_requests >= 3
    assert outcome.negotiated["X-com.example.k99"] == "NotUnderstood"


def test_target_text_while_our_sequence_is_incomplete():
    extra = tuple((f"X-com.example.k{i}", "v" * 200) for i in range(100))
    m = make_machine(cfg(extra_keys=extra))
    m.start(0.0)
    (req,) = m.pdus_to_send()
    bogus = FakeTarget()
    bogus._resp(req, b"TargetAlias=x\0")
    with pytest.raises(LoginProtocolError, match="incomplete"):
        m.receive_data(bogus.data_to_send(), 0.0)


# ------------------------------------------------------------------------ needed()
@pytest.mark.parametrize("mode", ["needed", "byte"])
def test_bytes_after_the_final_response_stay_unread(mode):
    trailer = NOPIn(ttt=7, statsn=0x1001, data=b"after").encode()
    outcome, t, m, pair = run(target=FakeTarget(TargetConfig(extra_after_login=trailer)),
                              mode=mode)
    assert isinstance(outcome, LoginSuccess)
    assert pair.leftover == trailer


@pytest.mark.parametrize("mode", ["needed", "byte"])
def test_bytes_after_a_rejection_stay_unread(mode):
    t = FakeTarget(TargetConfig(status=0x0203))
    m = make_machine()
    m.start(0.0)
    t.receive_data(m.data_to_send())
    stream = t.data_to_send() + b"\xff" * 10
    outcome = None
    while outcome is None:
        n = 1 if mode == "byte" else m.needed()
        chunk, stream = stream[:n], stream[n:]
        outcome = m.receive_data(chunk, 0.0)
    assert stream == b"\xff" * 10


def test_needed_is_exact():
    m = make_machine()
    m.start(0.0)
    t = FakeTarget()
    t.receive_data(m.data_to_send())
    resp = t.data_to_send()
    assert m.needed() == 48
    m.receive_data(resp[:48], 0.0)
    assert m.needed() == len(resp) - 48
    assert isinstance(m.receive_data(resp[48:], 0.0), LoginSuccess)


# ------------------------------------------------------------------------ timeouts
def test_login_timeout():
    m = make_machine(cfg(login_timeout=15.0))
    m.start(100.0)
    assert m.deadline == 115.0
    m.check_timeout(114.9)
    with pytest.raises(LoginTimeout, match="login"):
        m.check_timeout(115.0)
    assert m.state is LoginState.FAILED


def test_auth_timeout_applies_in_security_after_first_response():
    m = make_machine(chap_cfg(login_timeout=5.0, auth_timeout=45.0))
    t = chap_target()
    m.start(0.0)
    assert m.deadline == 5.0  # the first request: login_timeout
    t.receive_data(m.data_to_send())
    assert m.receive_data(t.data_to_send(), 1.0) is None  # AuthMethod=CHAP answered
    assert m.deadline == 46.0
    m.check_timeout(45.9)
    with pytest.raises(LoginTimeout, match="authentication"):
        m.check_timeout(46.0)


def test_no_timeout_after_success():
    outcome, t, m, _ = run()
    m.check_timeout(1e9)


def test_operational_stage_uses_login_timeout_again():
    m = make_machine(chap_cfg(login_timeout=5.0, auth_timeout=45.0))
    t = chap_target()
    m.start(0.0)
    for now in (1.0, 2.0, 3.0):
        t.receive_data(m.data_to_send())
        m.receive_data(t.data_to_send(), now)
    assert m.state is LoginState.OPERATIONAL
    assert m.deadline == 8.0


def test_a_login_answered_slowly_ends_at_its_total_timeout():
    """total_timeout (a node login's, iscsid's one login timer): a target answering each
    request with T=0 and nothing else, just before its deadline, ends the login then
    (before: each request restarted the deadline, 1024 answers bounded it: hours)."""
    from iscsictl.protocol.pdu import LoginResponse

    m = make_machine(cfg(login_timeout=30.0, total_timeout=30.0))
    m.start(0.0)
    now, n = 0.0, 0
    with pytest.raises(LoginTimeout, match=r"login timed out: not done within 30 s"):
        while True:
            m.pdus_to_send()
            now += 20.0
            m.check_timeout(now)
            last, n = m._last, n + 1
            m.receive_pdu(LoginResponse(transit=False, csg=last.csg, isid=last.isid,
                                        itt=last.itt, statsn=n, exp_cmdsn=1, max_cmdsn=1), now)
    assert n == 1 and now == 40.0
    assert LoginConfig.from_node({"node.name": TNAME}, INAME).total_timeout == 30.0


# ------------------------------------------------------------------------ kernel relay path
def test_pdu_path_matches_byte_path():
    m = make_machine()
    t = FakeTarget()
    m.start(0.0)
    (req,) = m.pdus_to_send()
    t.handle(req)
    raw = t.data_to_send()
    from iscsictl.protocol.pdu import parse_pdu

    outcome = m.receive_pdu(parse_pdu(raw), 0.0)
    assert isinstance(outcome, LoginSuccess)


def test_relogin_with_tsih_must_match():
    m = make_machine(tsih=0x77)
    m.start(0.0)
    t = FakeTarget()
    t.handle(m.pdus_to_send()[0])
    from iscsictl.protocol.pdu import parse_pdu

    with pytest.raises(LoginProtocolError, match="TSIH"):
        m.receive_pdu(parse_pdu(t.data_to_send()), 0.0)


def test_random_rng_is_used_for_mutual_challenge():
    m = make_machine(chap_cfg(True), rng=seeded_rng(99))
    outcome = Pair(m, chap_target(True)).login()
    assert isinstance(outcome, LoginSuccess)


@pytest.mark.parametrize("code,retryable", [(0x0299, False), (0x0203, False), (0x03FE, True)])
def test_unknown_status_details(code, retryable):
    outcome, *_ = run(target=FakeTarget(TargetConfig(status=code)), mode="byte")
    assert isinstance(outcome, LoginRejected) and outcome.retryable is retryable
    assert int(outcome.status) == code
    assert f"({code >> 8:02x}/{code & 0xff:02x})" in outcome.message


@pytest.mark.parametrize("code", [0x0400, 0x0F01])
def test_unknown_status_class_is_a_protocol_error(code):
    with pytest.raises(LoginProtocolError, match="status class"):
        run(target=FakeTarget(TargetConfig(status=code)))


@pytest.mark.parametrize("status", [0x0203, 0x0201, 0x0301])
def test_failure_response_with_zeroed_isid_still_counts(status):
    t = FakeTarget(TargetConfig(status=status, misbehave={"zero_isid_on_failure"}))
    outcome, *_ = run(target=t)
    assert isinstance(outcome, LoginRejected) and outcome.status == status


@pytest.mark.parametrize("answer", [("InitiatorAlias", "NotUnderstood"),
                                    ("SessionType", "Irrelevant")])
def test_notunderstood_for_one_of_our_declarations_is_taken(answer):
    """RFC 7143 §6.2: a target that does not know a key answers NotUnderstood; one to our
    InitiatorAlias (or Irrelevant to a declaration) leaves the login going, as the
    negotiator meant to (before: 'NotUnderstood is not a declaration', no login: the first
    request's declarations were not marked sent)."""
    t = FakeTarget(TargetConfig(extra_answers=[answer]))
    outcome, *_ = run(cfg(initiator_alias="host1"), t)
    assert isinstance(outcome, LoginSuccess)


# ------------------------------------------------------------------------ iSER
def test_an_iser_login_declares_and_takes_the_rdma_lengths():
    """RFC 7145 §6.3-6.5 as iscsid offers them: RDMAExtensions=Yes, the initiator's
    receive length as InitiatorRecvDataSegmentLength and its send limit (8192 when the
    record sets none) as TargetRecvDataSegmentLength, no MaxRecvDataSegmentLength and no
    digests; each length the smaller of the two sides' declarations."""
    values = dict(TargetConfig().values, RDMAExtensions="Yes")
    t = FakeTarget(TargetConfig(values=values, extra_answers=[
        ("InitiatorRecvDataSegmentLength", "65536"), ("TargetRecvDataSegmentLength", "4096")]))
    outcome, t, _, _ = run(cfg(iser=True, header_digest="CRC32C"), t)
    assert isinstance(outcome, LoginSuccess) and t.violations == []
    assert t.declared["InitiatorRecvDataSegmentLength"] == "262144"
    assert t.declared["TargetRecvDataSegmentLength"] == "8192"
    assert "MaxRecvDataSegmentLength" not in t.declared
    assert (t.answers["RDMAExtensions"], t.answers["HeaderDigest"]) == ("Yes", "None")
    p = outcome.params
    assert (p.rdma_extensions, p.max_recv_data_segment_length,
            p.max_xmit_data_segment_length, p.header_digest) == (True, 65536, 4096, False)


def test_an_iser_login_to_a_target_without_rdma_fails():
    with pytest.raises(NegotiationError, match="RDMAExtensions"):
        run(cfg(iser=True))


def test_a_target_alias_open_iscsi_would_copy_does_not_break_the_login():
    """TargetAlias only informs: one over 255 bytes (or not UTF-8) is read as it can be,
    as open-iscsi copies it, not a broken login (before: 5, retried for ever)."""
    from iscsictl.protocol.text import decode_text

    outcome, t, m, _ = run(target=FakeTarget(TargetConfig(alias="a" * 300)))
    assert isinstance(outcome, LoginSuccess)
    assert outcome.params.target_alias == "a" * 255
    pairs = decode_text(b"TargetAlias=B\xfcro-disk\0TargetPortalGroupTag=1\0",
                        lenient=frozenset(("TargetAlias",)))
    assert pairs == [("TargetAlias", "B\ufffdro-disk"), ("TargetPortalGroupTag", "1")]
    with pytest.raises(ISCSIProtocolError, match="not valid UTF-8"):
        decode_text(b"TargetAlias=B\xfcro-disk\0")  # without it: refused, as before
    with pytest.raises(ISCSIProtocolError, match="not valid UTF-8"):  # other keys: refused
        decode_text(b"TargetName=B\xfcro\0", lenient=frozenset(("TargetAlias",)))
    # cut to whole characters within the limit: a 3-byte one that would cross it goes
    pairs = decode_text(b"TargetAlias=" + b"a" * 253 + "\u20ac".encode() + b"\0",
                        lenient=frozenset(("TargetAlias",)))
    assert pairs == [("TargetAlias", "a" * 253)]
    pairs = decode_text(b"TargetAlias=" + b"\xfc" * 100 + b"\0",  # each U+FFFD 3 bytes
                        lenient=frozenset(("TargetAlias",)))
    assert pairs == [("TargetAlias", "\ufffd" * 85)]


def test_a_long_target_alias_is_cut_in_one_pass(monkeypatch):
    """A 64 KiB TargetAlias is cut to 255 bytes at once (before: a character at a time,
    each step re-encoding the rest: ~1 s of the daemon's loop per login of a hostile
    target).  Counted in the steps' limit lookups, not timed."""
    import iscsictl.protocol.text as text_mod

    looked_up = []
    real = text_mod._value_limit

    def counting(key):
        looked_up.append(key)
        return real(key)
    monkeypatch.setattr(text_mod, "_value_limit", counting)
    body = b"TargetAlias=" + "\u00e9".encode() * 32768 + b"\0"
    pairs = text_mod.decode_text(body, lenient=frozenset(("TargetAlias",)))
    assert pairs == [("TargetAlias", "\u00e9" * 127)]
    assert len(looked_up) < 10  # a character at a time: 32,000
