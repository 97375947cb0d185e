"""Negotiation rules, table-driven over every negotiable key (RFC 7143 §6.2, §13),
plus the Negotiator's special answers and hypothesis properties.

The expected results are written by hand from the RFC, not computed by the
code under test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.protocol.keys import KEYS, Kind, Stage
from iscsictl.protocol.negotiation import (
    NegotiationError,
    Negotiator,
    check_answer,
    parse_number,
    respond,
)

E = NegotiationError
NEGOTIABLE = {Kind.MIN, Kind.MAX, Kind.AND, Kind.OR, Kind.LIST}

# key -> [(our offer, the peer's answer, the result or NegotiationError)]
CHECK_TABLE: dict[str, list[tuple[str, str, object]]] = {
    # LIST (§6.2.1): the answer is one value out of our offer
    "AuthMethod": [("CHAP,None", "CHAP", "CHAP"), ("CHAP,None", "None", "None"),
                   ("CHAP", "None", E), ("CHAP", "CHAP,None", E), ("CHAP", "SRP", E)],
    "CHAP_A": [("7,5", "5", "5"), ("7,5", "7", "7"), ("7", "5", E), ("7,5", "6", E)],
    "HeaderDigest": [("CRC32C,None", "None", "None"), ("CRC32C,None", "CRC32C", "CRC32C"),
                     ("None", "CRC32C", E), ("None", "crc32c", E), ("CRC32C", "None,CRC32C", E)],
    "DataDigest": [("None,CRC32C", "CRC32C", "CRC32C"), ("CRC32C", "CRC32C", "CRC32C"),
                   ("CRC32C", "None", E)],
    "TaskReporting": [("ResponseFence,RFC3720", "RFC3720", "RFC3720"),
                      ("RFC3720", "FastAbort", E)],
    # MIN (§13.2, §13.13, §13.14, §13.16, §13.17, §13.20): answer <= offer, within range
    "MaxConnections": [("4", "1", "1"), ("4", "4", "4"), ("4", "5", E), ("1", "0", E),
                       ("1", "65536", E), ("8", "0x2", "2")],
    "MaxBurstLength": [("16776192", "262144", "262144"), ("262144", "262144", "262144"),
                       ("65536", "262144", E), ("262144", "511", E), ("262144", "abc", E),
                       ("16777215", "16777216", E), ("262144", "-1", E), ("262144", "", E)],
    "FirstBurstLength": [("262144", "65536", "65536"), ("65536", "65537", E),
                         ("65536", "512", "512")],
    "DefaultTime2Retain": [("20", "0", "0"), ("0", "20", E), ("3600", "3600", "3600"),
                           ("3600", "3601", E)],
    "MaxOutstandingR2T": [("4", "1", "1"), ("1", "2", E), ("1", "0", E)],
    "ErrorRecoveryLevel": [("2", "0", "0"), ("0", "1", E), ("2", "3", E), ("2", "2", "2")],
    "iSCSIProtocolLevel": [("1", "0", "0"), ("1", "2", E), ("31", "31", "31"), ("31", "32", E)],
    "MaxOutstandingUnexpectedPDUs": [("10", "0", "0"), ("0", "1", E), ("4294967295", "7", "7")],
    # MAX (§13.15): answer >= offer, within range
    "DefaultTime2Wait": [("2", "2", "2"), ("2", "10", "10"), ("2", "1", E), ("2", "3601", E),
                         ("0", "3600", "3600")],
    # OR (§13.10, §13.18, §13.19): our Yes fixes Yes
    "InitialR2T": [("No", "No", "No"), ("No", "Yes", "Yes"), ("Yes", "Yes", "Yes"),
                   ("Yes", "No", E), ("No", "Maybe", E), ("No", "yes", E)],
    "DataPDUInOrder": [("Yes", "Yes", "Yes"), ("Yes", "No", E), ("No", "Yes", "Yes")],
    "DataSequenceInOrder": [("No", "No", "No"), ("Yes", "No", E), ("No", "Yes", "Yes")],
    # AND (§13.11): our No fixes No
    "ImmediateData": [("Yes", "Yes", "Yes"), ("Yes", "No", "No"), ("No", "No", "No"),
                      ("No", "Yes", E), ("Yes", "Maybe", E)],
    "IFMarker": [("No", "No", "No"), ("No", "Yes", E), ("Yes", "No", "No")],
    "OFMarker": [("No", "No", "No"), ("No", "Yes", E)],
    "RDMAExtensions": [("Yes", "Yes", "Yes"), ("Yes", "No", "No"), ("No", "Yes", E)],
}

# key -> [(peer's offer, our local value, (answer, result))]
RESPOND_TABLE: dict[str, list[tuple[str, str | None, tuple[str, str]]]] = {
    "HeaderDigest": [("CRC32C,None", "None,CRC32C", ("CRC32C", "CRC32C")),
                     ("None", "CRC32C", ("Reject", "None")),
                     ("Bogus,None", None, ("None", "None"))],
    "MaxBurstLength": [("262144", "65536", ("65536", "65536")),
                       ("1000", "65536", ("1000", "1000")),
                       ("100", "65536", ("Reject", "262144")),
                       ("x", None, ("Reject", "262144"))],
    "DefaultTime2Wait": [("1", "3", ("3", "3")), ("20", "3", ("20", "20"))],
    "InitialR2T": [("No", "No", ("No", "No")), ("No", "Yes", ("Yes", "Yes")),
                   ("Maybe", "No", ("Reject", "Yes"))],
    "ImmediateData": [("Yes", "Yes", ("Yes", "Yes")), ("Yes", "No", ("No", "No"))],
    "ErrorRecoveryLevel": [("2", None, ("0", "0")), ("3", "2", ("Reject", "0"))],
}


def _negotiable_keys():
    return sorted(k for k, kd in KEYS.items() if kd.kind in NEGOTIABLE)


def test_the_table_covers_every_negotiable_key():
    assert sorted(CHECK_TABLE) == _negotiable_keys()


CASES = [(k, o, a, r) for k, rows in CHECK_TABLE.items() for (o, a, r) in rows]


@pytest.mark.parametrize("key,offer,answer,expected", CASES,
                         ids=[f"{k}:{o}/{a}" for k, o, a, _ in CASES])
def test_check_answer(key, offer, answer, expected):
    kd = KEYS[key]
    if expected is E:
        with pytest.raises(NegotiationError) as exc:
            check_answer(kd, offer, answer)
        assert exc.value.key == key
    else:
        assert check_answer(kd, offer, answer) == expected


RCASES = [(k, o, loc, r) for k, rows in RESPOND_TABLE.items() for (o, loc, r) in rows]


@pytest.mark.parametrize("key,offer,local,expected", RCASES)
def test_respond(key, offer, local, expected):
    assert respond(KEYS[key], offer, local) == expected


def test_respond_refuses_declarative_keys():
    with pytest.raises(ValueError):
        respond(KEYS["TargetAlias"], "x", None)


def _special_result(kd, special):
    """What a special answer leaves: the default, but No for an AND key."""
    return "No" if kd.kind is Kind.AND else kd.default if kd.default is not None else special


@pytest.mark.parametrize("key", _negotiable_keys())
@pytest.mark.parametrize("special", ["Reject", "NotUnderstood", "Irrelevant"])
def test_special_answers_keep_the_default(key, special):
    kd = KEYS[key]
    offer = {Kind.LIST: kd.default or "None", Kind.AND: "Yes", Kind.OR: "No"}.get(
        kd.kind, str(kd.low or 1))
    assert check_answer(kd, offer, special) == _special_result(kd, special)


@pytest.mark.parametrize("special", ["Reject", "NotUnderstood", "Irrelevant"])
def test_a_refused_immediate_data_is_no(special):
    """ImmediateData=Yes (its default) refused: no immediate data, as open-iscsi reads it."""
    assert check_answer(KEYS["ImmediateData"], "Yes", special) == "No"
    assert check_answer(KEYS["InitialR2T"], "No", special) == "Yes"  # OR: the default is the safe side


@pytest.mark.parametrize("special", ["Reject", "NotUnderstood", "Irrelevant"])
def test_a_special_answer_to_a_list_without_the_default_fails(special):
    with pytest.raises(NegotiationError, match="HeaderDigest: answered"):
        check_answer(KEYS["HeaderDigest"], "CRC32C", special)


def test_a_list_offer_without_the_default_must_be_answered():
    n = Negotiator({"HeaderDigest": "CRC32C", "DataDigest": "None"})
    n.offers_for(Stage.OPERATIONAL)
    with pytest.raises(NegotiationError, match="HeaderDigest: not answered"):
        n.check_settled()
    n.receive([("HeaderDigest", "CRC32C")])
    n.check_settled()  # DataDigest unanswered: its default None was offered


@pytest.mark.parametrize("text,value", [("0x10", 16), ("0X1f", 31), ("512", 512), ("00512", 512), ("0", 0),
                                        ("0" * 63 + "2", 2)])
def test_parse_number_forms(text, value):
    assert parse_number(KEYS["DefaultTime2Wait"], text) == value


@pytest.mark.parametrize("text", ["", " 512", "512 ", "+512", "-512", "5_12", "0x", "0x_200",
                                  "\u0665\u0661\u0662", "5\u00b2", "1e3", "0b10", "0" * 64 + "1"])
def test_parse_number_refuses(text):
    with pytest.raises(NegotiationError):
        parse_number(KEYS["MaxBurstLength"], text)


# ------------------------------------------------------------------------ Negotiator
def test_negotiator_unknown_and_vendor_keys_not_understood():
    n = Negotiator({"HeaderDigest": "None"})
    answers = n.receive([("X-com.example.Foo", "1"), ("X#Bar", "2"), ("Bogus", "3")])
    assert answers == [("X-com.example.Foo", "NotUnderstood"), ("X#Bar", "NotUnderstood"),
                       ("Bogus", "NotUnderstood")]


def test_negotiator_irrelevant_in_discovery():
    n = Negotiator({}, discovery=True)
    keys = [k for k, kd in KEYS.items() if not kd.discovery and kd.kind in NEGOTIABLE]
    assert set(keys) >= {"MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                         "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder",
                         "DataSequenceInOrder"}
    offers = [(k, KEYS[k].default) for k in keys]
    assert n.receive(offers) == [(k, "Irrelevant") for k in keys]
    # connection/session keys relevant to discovery are answered normally
    n2 = Negotiator({}, discovery=True)
    assert n2.receive([("DefaultTime2Wait", "5")]) == [("DefaultTime2Wait", "5")]


def test_results_are_the_values_in_force_of_every_key():
    """results(): what value() says for each key: an unanswered AND/OR offer that fixes
    the outcome (ImmediateData=No, InitialR2T=Yes) counts, one that does not keeps the
    default; declarations, settled keys and vendor keys, by name."""
    n = Negotiator({"ImmediateData": "No", "InitialR2T": "Yes", "DataPDUInOrder": "No",
                    "MaxBurstLength": "65536", "X-com.example.Foo": "1"})
    n.offers_for(Stage.OPERATIONAL)
    n.receive([("MaxBurstLength", "4096"), ("X-com.example.Foo", "2"),
               ("MaxRecvDataSegmentLength", "1024")])
    results = n.results()
    assert results["ImmediateData"] == "No" and results["InitialR2T"] == "Yes"
    assert results["DataPDUInOrder"] == KEYS["DataPDUInOrder"].default  # OR: No is not final
    assert results["MaxBurstLength"] == "4096" and results["X-com.example.Foo"] == "2"
    assert results["MaxRecvDataSegmentLength"] == "1024"
    keys = set(KEYS) | {"X-com.example.Foo"}
    assert results == {k: v for k in sorted(keys) if (v := n.value(k)) is not None}
    assert list(results) == sorted(results)


def test_negotiator_twice_is_an_error():
    n = Negotiator({"MaxBurstLength": "65536"})
    n.offers_for(KEYS["MaxBurstLength"].stage)
    n.receive([("MaxBurstLength", "512")])
    with pytest.raises(NegotiationError, match="twice"):
        n.receive([("MaxBurstLength", "512")])


def test_negotiator_special_answer_to_an_offer_we_never_made():
    with pytest.raises(NegotiationError):
        Negotiator({}).receive([("MaxBurstLength", "Reject")])


def test_negotiator_reject_keeps_default_and_optional_answers():
    n = Negotiator({"MaxBurstLength": "65536", "InitialR2T": "Yes", "ImmediateData": "No",
                    "DataPDUInOrder": "No"})
    n.offers_for(KEYS["MaxBurstLength"].stage)
    n.receive([("MaxBurstLength", "Reject")])
    assert n.value("MaxBurstLength") == "262144"
    assert n.value("InitialR2T") == "Yes"  # OR with our Yes: fixed without an answer
    assert n.value("ImmediateData") == "No"  # AND with our No: fixed
    assert n.value("DataPDUInOrder") == "Yes"  # not fixed: no answer -> default
    assert set(n.unanswered) == {"InitialR2T", "ImmediateData", "DataPDUInOrder"}


def test_negotiator_bad_declaration():
    with pytest.raises(NegotiationError):
        Negotiator({}).receive([("TargetPortalGroupTag", "70000")])
    with pytest.raises(NegotiationError):
        Negotiator({}).receive([("MaxRecvDataSegmentLength", "100")])
    with pytest.raises(NegotiationError):
        Negotiator({}).receive([("TargetAlias", "Reject")])


# ------------------------------------------------------------------------ properties
def _offer_strategy(kd):
    if kd.kind is Kind.LIST:
        pool = list(kd.values or ("5", "6", "7", "8"))
        return st.lists(st.sampled_from(pool), min_size=1, unique=True).map(",".join)
    if kd.boolean:
        return st.sampled_from(["Yes", "No"])
    return st.integers(kd.low, kd.high).map(str)


def _answer_strategy(kd):
    specials = st.sampled_from(["Reject", "NotUnderstood", "Irrelevant"])
    junk = st.text(max_size=12)
    if kd.kind is Kind.LIST:
        pool = list(kd.values or ("5", "6", "7", "8")) + ["Bogus", ""]
        return st.one_of(st.sampled_from(pool), st.lists(st.sampled_from(pool), max_size=3).map(",".join), specials, junk)
    if kd.boolean:
        return st.one_of(st.sampled_from(["Yes", "No", "yes", "Maybe", ""]), specials, junk)
    nums = st.integers(-5, (kd.high or 0) * 2 + 5)
    return st.one_of(nums.map(str), nums.map(lambda n: hex(n) if n >= 0 else str(n)), specials, junk)


@st.composite
def key_offer_answer(draw):
    kd = KEYS[draw(st.sampled_from(_negotiable_keys()))]
    return kd, draw(_offer_strategy(kd)), draw(_answer_strategy(kd))


@settings(max_examples=400, deadline=None)
@given(key_offer_answer())
def test_check_answer_result_is_always_legal(case):
    kd, offer, answer = case
    try:
        r = check_answer(kd, offer, answer)
    except NegotiationError:
        return
    if answer in ("Reject", "NotUnderstood", "Irrelevant"):
        assert r == _special_result(kd, answer)
        return
    if kd.kind is Kind.LIST:
        assert r in offer.split(",")
    elif kd.kind is Kind.MIN:
        assert kd.low <= int(r) <= int(offer)
    elif kd.kind is Kind.MAX:
        assert int(offer) <= int(r) <= kd.high
    elif kd.kind is Kind.AND:
        assert r in ("Yes", "No") and (offer == "Yes" or r == "No")
    elif kd.kind is Kind.OR:
        assert r in ("Yes", "No") and (offer == "No" or r == "Yes")


@settings(max_examples=300, deadline=None)
@given(key_offer_answer(), st.data())
def test_respond_is_always_legal(case, data):
    kd, _, peer_offer = case
    local = data.draw(_offer_strategy(kd))
    answer, result = respond(kd, peer_offer, local)
    if answer == "Reject":
        return
    assert answer == result
    if kd.kind is Kind.LIST:
        assert result in peer_offer.split(",") and result in local.split(",")
    elif kd.kind is Kind.MIN:
        assert int(result) == min(int(peer_offer, 0), int(local))
    elif kd.kind is Kind.MAX:
        assert int(result) == max(int(peer_offer, 0), int(local))
    elif kd.kind is Kind.AND:
        assert result == ("Yes" if peer_offer == local == "Yes" else "No")
    elif kd.kind is Kind.OR:
        assert result == ("Yes" if "Yes" in (peer_offer, local) else "No")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(KEYS) + ["X-v", "Bogus"]),
                          st.text(max_size=10)), max_size=8), st.booleans())
def test_negotiator_receive_only_raises_negotiation_error(pairs, discovery):
    n = Negotiator({"HeaderDigest": "None", "MaxBurstLength": "65536"}, discovery=discovery)
    n.offers_for(KEYS["HeaderDigest"].stage)
    try:
        n.receive(pairs)
    except NegotiationError:
        pass
    n.results()
