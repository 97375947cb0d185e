"""SendTargets (RFC 7143 §11.10, §11.11, §13.3, appendix C): TextExchange with
TTT continuation against the fake target, and parse_send_targets."""

from __future__ import annotations

import pytest

from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.constants import RESERVED_TAG
from iscsictl.protocol.login import LoginSuccess
from iscsictl.protocol.pdu import Reject, TextRequest, TextResponse
from iscsictl.protocol.portal import Portal
from iscsictl.protocol.text import TextFormatError, decode_text
from iscsictl.protocol.text_exchange import (
    DiscoveredTarget,
    TextExchange,
    TextExchangeError,
    parse_send_targets,
)

from .fake_target import FakeTarget, FFPHarness, Pair, TargetConfig, make_machine

INAME = "iqn.2005-03.org.open-iscsi:host1"


def many_targets(n: int) -> list[tuple[str, list[str]]]:
    out = []
    for i in range(n):
        addrs = [f"192.0.2.{i % 250 + 1}:3260,1"]
        if i % 3 == 0:
            addrs.append(f"[2001:db8::{i:x}]:3261,2")
        out.append((f"iqn.2003-01.org.example:disk{i:04d}", addrs))
    return out


def discover(tcfg: TargetConfig, mode="chunk", value="All", session_type="Discovery", **kw):
    t = FakeTarget(tcfg)
    config = LoginConfig(initiator_name=INAME, session_type=session_type,
                         target_name=None if session_type == "Discovery" else tcfg.name)
    outcome = Pair(make_machine(config), t, mode).login()
    assert isinstance(outcome, LoginSuccess)
    ex = TextExchange([("SendTargets", value)], itt=0x20, cmdsn=outcome.cmdsn,
                      exp_statsn=outcome.exp_statsn, **kw)
    pairs = FFPHarness(t, mode).text(ex)
    return pairs, t, ex


@pytest.mark.parametrize("mode", ["chunk", "byte"])
def test_thousand_targets_across_many_pdus(mode):
    targets = many_targets(1000)
    pairs, t, ex = discover(TargetConfig(targets=targets, text_segment=4096), mode)
    assert t.violations == []
    assert t.text_requests > 10  # one request per continued response
    found = parse_send_targets(pairs)
    assert [d.name for d in found] == [n for n, _ in targets]
    assert found[0].portals == [Portal("192.0.2.1", 3260, 1), Portal("2001:db8::0", 3261, 2)]
    assert found[1].portals == [Portal("192.0.2.2", 3260, 1)]
    assert ex.done and ex.cmdsn == 1 + t.text_requests
    assert ex.exp_statsn == (t.statsn) & 0xFFFFFFFF


def test_tiny_segments_split_pairs_everywhere():
    pairs, t, _ = discover(TargetConfig(targets=many_targets(20), text_segment=7))
    assert t.violations == [] and len(parse_send_targets(pairs)) == 20


def test_responses_cut_at_pair_boundaries_without_c_bit():
    """F=0, C=0 responses each end a set of pairs (§11.11.2); none may be lost."""
    pairs, t, _ = discover(TargetConfig(targets=many_targets(100), text_segment=300,
                                        text_split_pairs=True))
    assert t.text_requests > 5
    assert len(parse_send_targets(pairs)) == 100


def test_response_size_limit_enforced():
    with pytest.raises(TextFormatError, match="longer than"):
        discover(TargetConfig(targets=many_targets(1000), text_segment=4096),
                 max_response_bytes=20000)


def test_response_size_limit_enforced_across_pair_boundary_pieces():
    with pytest.raises(TextFormatError, match="longer than"):
        discover(TargetConfig(targets=many_targets(1000), text_segment=4096,
                              text_split_pairs=True), max_response_bytes=20000)


def test_send_targets_for_one_name_in_a_normal_session():
    targets = many_targets(5)
    tc = TargetConfig(name=targets[2][0], targets=targets)
    pairs, t, _ = discover(tc, value=targets[2][0], session_type="Normal")
    assert [d.name for d in parse_send_targets(pairs)] == [targets[2][0]]


def test_wrong_itt_in_text_response():
    with pytest.raises(TextExchangeError, match="ITT"):
        discover(TargetConfig(misbehave={"text_wrong_itt"}))


def test_exchange_errors():
    ex = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex.start()
    (req,) = ex.pdus_to_send()
    assert isinstance(req, TextRequest) and req.final and req.ttt == RESERVED_TAG
    assert req.data == b"SendTargets=All\0" and not req.immediate
    with pytest.raises(TextExchangeError, match="rejected"):
        ex.receive_pdu(Reject(reason=4))
    ex2 = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex2.start()
    with pytest.raises(TextExchangeError, match="Target Transfer Tag"):
        ex2.receive_pdu(TextResponse(final=False, continue_=True, itt=5, ttt=RESERVED_TAG,
                                     data=b"TargetName=iqn.2001-04.com.example:t"))
    # F=0 without a Target Transfer Tag (§11.11.4 forbids it) ends the answer, as open-iscsi
    # reads it (before: the discovery failed)
    ex4 = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex4.start()
    ex4.pdus_to_send()
    assert ex4.receive_pdu(TextResponse(final=False, itt=5, ttt=RESERVED_TAG,
                                        data=b"TargetName=iqn.2001-04.com.example:t\0")) == \
        [("TargetName", "iqn.2001-04.com.example:t")]
    assert ex4.done and ex4.pdus_to_send() == []
    ex3 = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex3.start()
    assert ex3.receive_pdu(TextResponse(final=True, itt=5, data=b"")) == []
    with pytest.raises(TextExchangeError, match="after"):
        ex3.receive_pdu(TextResponse(final=True, itt=5))
    # F=1 with C=1 (§11.11.2: a response with C=1 has F=0): the answer's last set of pairs
    # is incomplete; not taken as an answer without it
    ex5 = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex5.start()
    with pytest.raises(TextExchangeError, match="final Text Response with C=1"):
        ex5.receive_pdu(TextResponse(final=True, continue_=True, itt=5,
                                     data=b"TargetName=iqn.2001-04.com.example:t\0TargetAdd"))


def test_our_long_request_is_continued():
    pairs = [(f"X-com.example.k{i}", "v" * 200) for i in range(100)]
    ex = TextExchange(pairs, itt=9, cmdsn=10, exp_statsn=1, max_send_segment=8192)
    ex.start()
    (first,) = ex.pdus_to_send()
    assert first.continue_ and not first.final and len(first.data) == 8192
    assert ex.receive_pdu(TextResponse(final=False, itt=9, ttt=0x77)) is None
    (second,) = ex.pdus_to_send()
    assert second.cmdsn == 11 and second.data
    assert first.ttt == 0xFFFFFFFF and second.ttt == 0x77  # the target's: not a new request


def test_a_final_response_in_the_middle_of_our_long_request_is_an_error():
    pairs = [(f"X-com.example.k{i}", "v" * 200) for i in range(100)]
    ex = TextExchange(pairs, itt=9, cmdsn=10, exp_statsn=1, max_send_segment=8192)
    ex.start()
    ex.pdus_to_send()
    with pytest.raises(TextExchangeError, match="before our continued request"):
        ex.receive_pdu(TextResponse(final=True, itt=9))


# ------------------------------------------------------------------------ parse_send_targets
def T(name, *portals):
    return DiscoveredTarget(name, list(portals))


@pytest.mark.parametrize("pairs,expected", [
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:3260,1")],
     [T("iqn.2003-01.org.example:a", Portal("10.0.0.1", 3260, 1))]),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "[fd00::1]:3261,7")],
     [T("iqn.2003-01.org.example:a", Portal("fd00::1", 3261, 7))]),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "san.example.com:3262,2")],
     [T("iqn.2003-01.org.example:a", Portal("san.example.com", 3262, 2))]),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1")],
     [T("iqn.2003-01.org.example:a", Portal("10.0.0.1", 3260, None))]),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1,3")],
     [T("iqn.2003-01.org.example:a", Portal("10.0.0.1", 3260, 3))]),
    # duplicates merged, order kept; a name seen again adds portals to the first entry
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:3260,1"),
      ("TargetAddress", "10.0.0.1:3260,1"), ("TargetName", "iqn.2003-01.org.example:b"),
      ("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.2:3260,1")],
     [T("iqn.2003-01.org.example:a", Portal("10.0.0.1", 3260, 1), Portal("10.0.0.2", 3260, 1)),
      T("iqn.2003-01.org.example:b")]),
    # other keys are ignored
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAlias", "x"), ("X-foo", "1")],
     [T("iqn.2003-01.org.example:a")]),
])
def test_parse_send_targets(pairs, expected):
    assert parse_send_targets(pairs) == expected


def test_missing_address_uses_the_portal_asked():
    here = Portal("192.0.2.1", 3260, 1)
    out = parse_send_targets([("TargetName", "iqn.2003-01.org.example:a")], default_portal=here)
    assert out == [T("iqn.2003-01.org.example:a", here)]


@pytest.mark.parametrize("pairs,match", [
    ([("TargetAddress", "10.0.0.1:3260,1"), ("TargetName", "iqn.2003-01.org.example:a")],
     "before any TargetName"),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "[fd00::1:3260,1")], "'\\['"),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:99999,1")], "port"),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:3260,x")], "tag"),
    # str.isdigit() takes these; int() raised ValueError past the TextExchangeError for '²'
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:\u00b2")], "port"),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1,\u00b3")], "tag"),
    ([("TargetName", "iqn.2003-01.org.example:a"), ("TargetAddress", "10.0.0.1:\u0663")], "port"),
    ([("TargetName", "not a name")], "SendTargets"),
])
def test_parse_send_targets_refuses(pairs, match):
    with pytest.raises(TextExchangeError, match=match):
        parse_send_targets(pairs)


def test_endless_empty_continuation_is_bounded():
    ex = TextExchange([("SendTargets", "All")], itt=5, cmdsn=1, exp_statsn=1)
    ex.start()
    with pytest.raises(TextExchangeError, match="4097 Text Responses in one exchange, 0 bytes"):
        for _ in range(10000):
            ex.receive_pdu(TextResponse(final=False, itt=5, ttt=0x99))


@pytest.mark.parametrize("segment", [7, 300, 4096])
def test_pieces_cut_mid_pair_without_c_bit_as_tgtd_does(segment):
    pairs, t, _ = discover(TargetConfig(targets=many_targets(200), text_segment=segment,
                                        text_no_c=True))
    assert t.text_requests > 1
    assert len(parse_send_targets(pairs)) == 200


def test_bad_entries_are_left_out_when_asked():
    """With ``skip``: a bad name (and its addresses) and a bad address are left out, each
    said once; without it, the first one raises."""
    pairs = [("TargetName", "foo.bar"), ("TargetAddress", "10.0.0.1:3260,1"),
             ("TargetName", "iqn.2001-04.com.example:t"), ("TargetAddress", "999.1.1.1,1"),
             ("TargetAddress", "10.0.0.2:3260,1")]
    said = []
    found = parse_send_targets(pairs, skip=said.append)
    assert [(t.name, [str(p) for p in t.portals]) for t in found] == [
        ("iqn.2001-04.com.example:t", ["10.0.0.2:3260,1"])]
    assert len(said) == 2 and "target left out" in said[0] and "portal left out" in said[1]
    with pytest.raises(TextExchangeError):
        parse_send_targets(pairs)


def test_a_target_whose_every_address_is_bad_is_left_out_not_given_the_portal_asked():
    pairs = [("TargetName", "iqn.2001-04.com.example:a"), ("TargetAddress", "10.0.0.300:3260,2"),
             ("TargetName", "iqn.2001-04.com.example:b")]
    said = []
    found = parse_send_targets(pairs, Portal("10.0.0.9", 3260), skip=said.append)
    assert [(t.name, [str(p) for p in t.portals]) for t in found] == [
        ("iqn.2001-04.com.example:b", ["10.0.0.9:3260"])]  # no address at all: the one asked
    assert said[-1] == ("SendTargets: iqn.2001-04.com.example:a: no usable TargetAddress: "
                        "target left out")


def test_an_over_long_value_costs_its_entry_not_the_whole_answer():
    """A TargetName over 223 bytes or a TargetAlias over 255 in a SendTargets answer: the
    name's entry is left out (said), the alias ignored, the other targets kept (before: the
    text decoder refused the whole answer, and the discovery failed)."""
    long_name = "iqn.2001-04.com.example:" + "n" * 220
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in [
        ("TargetName", long_name), ("TargetAddress", "10.0.0.1:3260,1"),
        ("TargetName", "iqn.2001-04.com.example:b"), ("TargetAlias", "a" * 300),
        ("TargetAddress", "10.0.0.2:3260,1")])
    ex = TextExchange([("SendTargets", "All")], itt=9, cmdsn=10, exp_statsn=1)
    ex.start()
    ex.pdus_to_send()
    pairs = ex.receive_pdu(TextResponse(final=True, itt=9, data=data))
    said = []
    found = parse_send_targets(pairs, skip=said.append)
    assert [(t.name, [str(p) for p in t.portals]) for t in found] == [
        ("iqn.2001-04.com.example:b", ["10.0.0.2:3260,1"])]
    assert len(said) == 1 and "target left out" in said[0]
    with pytest.raises(TextFormatError):  # the login's text keeps its limits
        decode_text(data)


def test_many_addresses_of_one_target_cost_linear_time(monkeypatch):
    """One target with thousands of TargetAddress values (a 16 MiB SendTargets answer
    holds ~540k): duplicates are found by hashing, not by comparing each new portal with
    every portal before it (O(n²): minutes of CPU, out of reach of active_timeout)."""
    n = 5000
    pairs = [("TargetName", "iqn.2003-01.org.example:t1")]
    pairs += [("TargetAddress", f"10.0.{i >> 8}.{i & 255}:3260,1") for i in range(n)]
    pairs += [("TargetAddress", "10.0.0.7:3260,1")]  # a duplicate: merged
    compared = 0
    eq = Portal.__eq__

    def counting_eq(self, other):
        nonlocal compared
        compared += 1
        return eq(self, other)

    monkeypatch.setattr(Portal, "__eq__", counting_eq)
    (t,) = parse_send_targets(pairs)
    assert len(t.portals) == n and t.portals[7] == Portal("10.0.0.7", 3260, 1)
    assert compared < 2 * n  # the list scan made n * (n - 1) / 2 = 12.5 million


def test_decode_text_with_skip_keeps_the_good_pairs():
    """With ``skip``, each piece that is not a pair is said and left out, the rest kept in
    order; without it, the first one raises (a login's text stays strict)."""
    data = (b"A=1\0\0B\0C=\xff\0bad key=2\0D=\xc3\xa9\0E=tail")
    said = []
    assert decode_text(data, skip=said.append) == [("A", "1"), ("D", "é")]
    assert said == ["text without its NUL delimiter left out: b'E=tail'",
                    "text pair without '=': b'B': left out",
                    "text pair is not valid UTF-8: b'C=\\xff': left out",
                    "invalid key name b'bad key': left out"]
    with pytest.raises(TextFormatError):
        decode_text(data)
    assert decode_text(b"no NUL at all", skip=said.append) == []


@pytest.mark.parametrize("bad", ["name", "address"])
def test_a_pair_not_in_utf8_takes_its_target_out_not_its_neighbours(bad):
    """A TargetName not in UTF-8 takes its addresses out with it, and a TargetAddress not
    in UTF-8 is a bad portal: before, the undecodable pair was dropped at decode, so the
    name's addresses went to the target before it (a record for another target's portal)
    and a target whose only address was dropped was given the portal asked.  The targets
    left out, or that lost a portal, are named (a rediscovery keeps their records)."""
    good, other = b"iqn.2001-04.com.example:good", b"iqn.2001-04.com.example:caf\xe9"
    raw = (b"TargetName=" + good + b"\0TargetAddress=127.0.0.1:3260,1\0"
           + b"TargetName=" + (other if bad == "name" else other[:-1] + b"e") + b"\0"
           + (b"TargetAddress=10.9.9.9:3260,7\0" if bad == "name"
              else b"TargetAddress=10.9.9.\xe9:3260,7\0"))
    said = []
    pairs, _, _ = discover(TargetConfig(send_targets_raw=raw), skip=said.append)
    left_out = []
    found = parse_send_targets(pairs, Portal("192.0.2.9", 3260), said.append, left_out)
    got = [(t.name, [str(p) for p in t.portals]) for t in found]
    assert got == [("iqn.2001-04.com.example:good", ["127.0.0.1:3260,1"])], said
    assert any("not valid UTF-8" in why for why in said), said
    assert left_out == (["iqn.2001-04.com.example:caf\ufffd"] if bad == "name"
                        else ["iqn.2001-04.com.example:cafe"])


def test_an_answer_over_a_mebibyte_is_taken_by_default():
    """TextExchange's own bound is the TCP path's (16 MiB): the discovery through the
    kernel (iSER, offload) made it with the default, 1 MiB, and refused ~1,500 targets of
    16 IPv6 portals each that the TCP path took (open-iscsi's buffer grows unbounded)."""
    targets = [(f"iqn.2003-01.org.example:a-rather-long-target-name-{i:05d}",
                [f"[2001:db8:{i:x}::{p:x}]:3260,{p}" for p in range(1, 17)])
               for i in range(2000)]
    pairs, t, ex = discover(TargetConfig(targets=targets))
    assert len([k for k, _ in pairs if k == "TargetName"]) == 2000
    assert sum(len(k) + len(v) + 2 for k, v in pairs) > 1 << 20  # past the old bound
