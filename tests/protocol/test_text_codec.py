"""The key=value text codec (RFC 7143 §6.1), the C-bit assembler and splitter."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.protocol.text import TextAssembler, TextFormatError, decode_text, encode_text, split_text


def test_round_trip_keeps_order_and_duplicates():
    pairs = [("InitiatorName", "iqn.2005-03.org.open-iscsi:x"), ("X-a", ""), ("X-a", "2"),
             ("TargetAlias", "dïsk")]
    data = encode_text(pairs)
    assert data == ("InitiatorName=iqn.2005-03.org.open-iscsi:x\0X-a=\0X-a=2\0"
                    "TargetAlias=dïsk\0").encode()
    assert decode_text(data) == pairs


def test_value_with_equals_sign():
    assert decode_text(b"X-k=a=b\0") == [("X-k", "a=b")]


def test_trailing_padding_tolerated():
    assert decode_text(b"A=1\0\0\0\0") == [("A", "1")]
    assert decode_text(b"") == []


@pytest.mark.parametrize("data", [b"\0", b"\0\0\0\0"])
def test_padding_alone_is_no_pairs(data):
    """Text that is NUL padding only (an empty text, padded) holds no pairs."""
    assert decode_text(data) == []
    assert decode_text(data, value_limits=False) == []


@pytest.mark.parametrize("data,match", [
    (b"A=1", "NUL"),
    (b"A1\0", "without '='"),
    (b"=1\0", "key name"),
    (b"1A=1\0", "key name"),
    (b"A B=1\0", "key name"),
    (b"K" * 64 + b"=1\0", "key name"),
    (b"A=\xff\0", "UTF-8"),
    (b"\xc3\xa9=1\0", "UTF-8"),
    (b"TargetAlias=" + b"a" * 256 + b"\0", "limit"),
    (b"CHAP_C=0x" + b"a" * 8200 + b"\0", "limit"),
])
def test_decode_refuses(data, match):
    with pytest.raises(TextFormatError, match=match):
        decode_text(data)


def test_nuls_before_a_pair_or_two_in_a_row_are_no_pair_as_open_iscsi_reads_them():
    """open-iscsi's login.c skips the NULs between pairs (before: a failed login)."""
    assert decode_text(b"\0A=1\0\0\0B=\xc3\xa9\0\0") == [("A", "1"), ("B", "é")]
    assert decode_text(b"\0\0A=1\0") == [("A", "1")]


def test_limits_at_the_edge():
    assert decode_text(b"K" * 63 + b"=1\0")[0][0] == "K" * 63
    assert decode_text(b"TargetAlias=" + b"a" * 255 + b"\0")[0][1] == "a" * 255
    assert len(decode_text(b"CHAP_C=" + b"a" * 8192 + b"\0")[0][1]) == 8192


@pytest.mark.parametrize("pairs", [[("bad key", "1")], [("A", "x\0y")], [("TargetAlias", "a" * 256)],
                                   [("K" * 64, "1")], [("", "1")]])
def test_encode_refuses(pairs):
    with pytest.raises(ValueError):
        encode_text(pairs)


def test_assembler_joins_and_bounds():
    a = TextAssembler(limit=10)
    assert a.add(b"A=1", True) is None and a.pending
    assert a.add(b"23\0", False) == b"A=123\0" and not a.pending
    a.add(b"x" * 10, True)
    with pytest.raises(TextFormatError):
        a.add(b"y", True)


def test_split_text():
    assert split_text(b"", 8) == [b""]
    assert split_text(b"abcdefghij", 4) == [b"abcd", b"efgh", b"ij"]
    with pytest.raises(ValueError):
        split_text(b"a", 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decode_random_bytes_only_raises_text_format_error(data):
    try:
        decode_text(data)
    except TextFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "X-b", "MaxBurstLength", "X#c", "TargetAlias"]),
                          st.text(st.characters(blacklist_characters="\0",
                                                blacklist_categories=("Cs",)), max_size=50)),
                max_size=10))
def test_round_trip_property(pairs):
    assert decode_text(encode_text(pairs)) == pairs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 50))
def test_assembler_reassembles_any_split(data, n):
    a = TextAssembler()
    pieces = split_text(data, n)
    for p in pieces[:-1]:
        assert a.add(p, True) is None
    assert a.add(pieces[-1], False) == data


_names = st.one_of(st.sampled_from(["A", "X-b", "MaxBurstLength", "TargetAlias", "X#c.d+e@f_g",
                                    "K" * 63, "K" * 64, "1A", "A B", "", "é", "A\0"]),
                   st.text(alphabet="Aa9.-+@_#= é\0", max_size=70))
_values = st.one_of(st.sampled_from(["", "1", "a=b", "dïsk", "a" * 255, "a" * 256, "\0"]),
                    st.text(max_size=40))


@given(st.lists(st.tuples(_names, _values), max_size=6), st.integers(0, 3), st.binary(max_size=4))
@settings(max_examples=400)
def test_whole_text_checks_agree_with_the_pair_by_pair_ones(pairs, pad, junk):
    """decode_text's one-pass path for ASCII text accepts exactly what the pair-by-pair
    decoding accepts, with the same pairs; what it refuses gets that decoding's error."""
    from iscsictl.protocol.text import _decode_each

    data = "".join(f"{k}={v}\0" for k, v in pairs).encode("utf-8", "surrogatepass")
    for sample in (data + b"\0" * pad, data + junk + b"\0", data[:-1] + junk + b"\0"):
        if not sample.rstrip(b"\0"):  # empty, or padding only
            assert decode_text(sample) == []
            continue
        try:
            expected = _decode_each(sample.rstrip(b"\0"))
        except TextFormatError as e:
            with pytest.raises(TextFormatError, match="^" + re.escape(str(e)) + "$"):
                decode_text(sample)
        else:
            assert decode_text(sample) == expected
            # keep: the same pairs of those keys, the others dropped as they are read
            for keep in (frozenset({"A", "TargetAlias"}), frozenset({"K" * 63})):
                assert decode_text(sample, keep=keep) == [p for p in expected if p[0] in keep]


def test_keep_drops_other_keys_unchecked_but_says_a_pair_without_its_equals_sign():
    said: list[str] = []
    data = "TargetName=t\0X-v=\xff\xfe\0junk\0TargetAlias=é\0TargetName=u\0".encode(
        "latin-1")
    assert decode_text(data, skip=said.append, keep=frozenset({"TargetName"})) == \
        [("TargetName", "t"), ("TargetName", "u")]
    assert said == ["text pair without '=': b'junk': left out"]
    assert decode_text(b"a=1\0b=2\0a=3\0", keep=frozenset({"a"})) == [("a", "1"), ("a", "3")]


@given(st.lists(st.tuples(_names, _values), max_size=6))
def test_encode_refuses_what_decode_would(pairs):
    """encode_text sends only what decode_text reads back as the same pairs."""
    try:
        data = encode_text(pairs)
    except ValueError:
        return
    assert decode_text(data) == pairs


def test_every_standard_key_is_a_valid_name():
    """encode_text skips the name check for the standard keys: they must all pass it."""
    from iscsictl.protocol.keys import KEYS
    from iscsictl.protocol.text import _KEY_NAME, MAX_KEY_NAME

    assert all(_KEY_NAME.match(k) and len(k) <= MAX_KEY_NAME for k in KEYS)
