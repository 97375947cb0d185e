"""CHAP (RFC 1994, RFC 7143 §12.1.3) against vectors computed independently:
hashlib on hand-written inputs, and known answers written into the test."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.protocol.chap import (
    AuthenticationError,
    ChapAlgorithm,
    ChapCredentials,
    ChapInitiator,
    ShortSecretPolicy,
    chap_response,
    decode_binary,
    encode_binary,
)

CHALLENGE = bytes.fromhex("00112233445566778899aabbccddeeff")
SECRET = b"secretsecret"
# H(0x01 || b"secretsecret" || CHALLENGE), computed once with hashlib and written down
KNOWN = {
    ChapAlgorithm.MD5: "3d3d7f13199a65926f355637d73daf5c",
    ChapAlgorithm.SHA1: "49e1aa2619e4e569c7225d7cd5c1f61a55ca4345",
    ChapAlgorithm.SHA256: "257057db4d4b74df190de053df3e0a4c7f0eff17c7d88ed0e20f53eb1c0d4a73",
    ChapAlgorithm.SHA3_256: "b09c7123d338e0a7e868c76214f0e6546b1f1f56fe6c1c084d2e507b59c7b8fc",
}
HASHLIB = {ChapAlgorithm.MD5: hashlib.md5, ChapAlgorithm.SHA1: hashlib.sha1,
           ChapAlgorithm.SHA256: hashlib.sha256, ChapAlgorithm.SHA3_256: hashlib.sha3_256}


def test_iana_values():
    assert [int(a) for a in ChapAlgorithm] == [5, 6, 7, 8]


@pytest.mark.parametrize("alg", list(ChapAlgorithm))
def test_known_answer_vectors(alg):
    independent = HASHLIB[alg](b"\x01" + b"secretsecret" + CHALLENGE).hexdigest()
    assert independent == KNOWN[alg]
    assert chap_response(alg, 1, SECRET, CHALLENGE).hex() == KNOWN[alg]


@pytest.mark.parametrize("alg", list(ChapAlgorithm))
@pytest.mark.parametrize("form", ["hex", "HEX", "base64"])
def test_initiator_response_one_way(alg, form):
    chal = {"hex": "0x" + CHALLENGE.hex(), "HEX": "0X" + CHALLENGE.hex().upper(),
            "base64": "0b" + base64.b64encode(CHALLENGE).decode()}[form]
    ci = ChapInitiator(ChapCredentials("alice", SECRET), (alg,))
    out = dict(ci.respond({"CHAP_A": str(int(alg)), "CHAP_I": "1", "CHAP_C": chal}))
    assert out == {"CHAP_N": "alice", "CHAP_R": "0x" + KNOWN[alg]}


def test_initiator_response_base64_form():
    ci = ChapInitiator(ChapCredentials("alice", SECRET), (ChapAlgorithm.MD5,), base64_form=True)
    out = dict(ci.respond({"CHAP_A": "5", "CHAP_I": "0x01", "CHAP_C": "0x" + CHALLENGE.hex()}))
    assert out["CHAP_R"] == "0b" + base64.b64encode(bytes.fromhex(KNOWN[ChapAlgorithm.MD5])).decode()


def test_identifier_is_one_octet_in_the_hash():
    ci = ChapInitiator(ChapCredentials("a", SECRET), (ChapAlgorithm.SHA1,))
    out = dict(ci.respond({"CHAP_A": "6", "CHAP_I": "255", "CHAP_C": "0x" + CHALLENGE.hex()}))
    assert out["CHAP_R"] == "0x" + hashlib.sha1(b"\xff" + SECRET + CHALLENGE).hexdigest()


def _fixed_rng(*chunks):
    it = iter(chunks)
    return lambda n: next(it)[:n]


def test_mutual_challenge_and_target_verification():
    ours = bytes(range(16))
    creds = ChapCredentials("alice", SECRET, "target", b"targetsecret99")
    ci = ChapInitiator(creds, (ChapAlgorithm.MD5,), rng=_fixed_rng(ours, b"\xa7"))
    out = dict(ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()}))
    assert out["CHAP_I"] == "167" and out["CHAP_C"] == "0x" + ours.hex()
    assert ci.expects_target_proof
    # the target's answer, written down: md5(0xa7 || b"targetsecret99" || 00..0f)
    ci.verify_target({"CHAP_N": "target", "CHAP_R": "0x3fcd06aeb8d0fdf95cf1c0a823942803"})
    with pytest.raises(AuthenticationError, match="failed mutual"):
        ci.verify_target({"CHAP_N": "target", "CHAP_R": "0x3fcd06aeb8d0fdf95cf1c0a823942804"})
    with pytest.raises(AuthenticationError, match="authenticated as"):
        ci.verify_target({"CHAP_N": "intruder", "CHAP_R": "0x3fcd06aeb8d0fdf95cf1c0a823942803"})
    for half in ({}, {"CHAP_N": "target"}, {"CHAP_R": "0x3fcd06aeb8d0fdf95cf1c0a823942803"}):
        with pytest.raises(AuthenticationError, match="did not answer"):
            ci.verify_target(half)


@pytest.mark.parametrize("alg", list(ChapAlgorithm))
def test_mutual_challenge_length_is_digest_size(alg):
    creds = ChapCredentials("alice", SECRET, "target", b"targetsecret99")
    ci = ChapInitiator(creds, (alg,), rng=lambda n: b"\x42" * n)
    out = dict(ci.respond({"CHAP_A": str(int(alg)), "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()}))
    assert len(decode_binary(out["CHAP_C"])) == HASHLIB[alg]().digest_size


def test_our_challenge_never_equals_the_targets():
    creds = ChapCredentials("alice", SECRET, "target", b"targetsecret99")
    other = b"\x01" * 16
    ci = ChapInitiator(creds, (ChapAlgorithm.MD5,), rng=_fixed_rng(CHALLENGE, other, b"\x05"))
    out = dict(ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()}))
    assert out["CHAP_C"] == "0x" + other.hex()


def test_reflection_detected_from_shared_set():
    issued = {CHALLENGE}
    ci = ChapInitiator(ChapCredentials("a", SECRET), (ChapAlgorithm.MD5,), issued_challenges=issued)
    with pytest.raises(AuthenticationError, match="reflected"):
        ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()})


@pytest.mark.parametrize("keys,match", [
    ({"CHAP_A": "6", "CHAP_I": "1", "CHAP_C": "0x00"}, "did not offer"),
    ({"CHAP_A": "x", "CHAP_I": "1", "CHAP_C": "0x00"}, "CHAP_A"),
    ({"CHAP_A": "5", "CHAP_C": "0x00"}, "CHAP_I"),
    ({"CHAP_A": "5", "CHAP_I": "256", "CHAP_C": "0x00"}, "octet"),
    ({"CHAP_A": "5", "CHAP_I": "-1", "CHAP_C": "0x00"}, "CHAP_I"),
    ({"CHAP_A": "5", "CHAP_I": "0x100", "CHAP_C": "0x00"}, "octet"),
    ({"CHAP_A": "5", "CHAP_I": "0b11", "CHAP_C": "0x00"}, "CHAP_I"),
    ({"CHAP_A": "5", "CHAP_I": "1_0", "CHAP_C": "0x00"}, "CHAP_I"),
    ({"CHAP_A": "5", "CHAP_I": " 7", "CHAP_C": "0x00"}, "CHAP_I"),
    ({"CHAP_A": " 5", "CHAP_I": "7", "CHAP_C": "0x00"}, "CHAP_A"),
    ({"CHAP_A": "\u0665", "CHAP_I": "7", "CHAP_C": "0x00"}, "CHAP_A"),
    ({"CHAP_A": "5", "CHAP_I": "1"}, "CHAP_C"),
    ({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x"}, "empty"),
    ({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0xzz"}, "malformed"),
    ({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "abcd"}, "malformed"),
    # RFC 7143 §12.1.3: at most 1024 bytes (open-iscsi refuses more, as now we do)
    ({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + "ab" * 1025}, "1025 bytes; the limit is 1024"),
    ({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0b" + "A" * 6000}, "4500 bytes; the limit"),
])
def test_bad_target_challenges(keys, match):
    ci = ChapInitiator(ChapCredentials("a", SECRET), (ChapAlgorithm.MD5,))
    with pytest.raises(AuthenticationError, match=match):
        ci.respond(keys)


def test_a_challenge_of_1024_bytes_is_answered():
    ci = ChapInitiator(ChapCredentials("a", SECRET), (ChapAlgorithm.MD5,))
    assert ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + "ab" * 1024})[0] == ("CHAP_N", "a")


@pytest.mark.parametrize("text,data", [
    ("0x0a0b", b"\x0a\x0b"), ("0XABCD", b"\xab\xcd"), ("0xabc", b"\x0a\xbc"),
    ("0bAAEC", b"\x00\x01\x02"), ("0BAAEC", b"\x00\x01\x02"),
    # base64 without its '=' padding, as open-iscsi's acl_base64_to_data takes it
    ("0bAAE", b"\x00\x01"), ("0bAQIDBAU", b"\x01\x02\x03\x04\x05"),
    ("0bAQIDBAU=", b"\x01\x02\x03\x04\x05"),
])
def test_decode_binary(text, data):
    assert decode_binary(text) == data


@pytest.mark.parametrize("text", ["", "0", "0x0g", "0b!!", "0bAAEC0", "0bAQIDBAU==", "ab",
                                  "0c12"])
def test_decode_binary_refuses(text):
    with pytest.raises(AuthenticationError):
        decode_binary(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_binary_round_trip(data, b64):
    assert decode_binary(encode_binary(data, b64)) == data


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_decode_binary_only_raises_authentication_error(text):
    try:
        decode_binary(text)
    except AuthenticationError:
        pass


def test_secret_policies():
    warnings: list[str] = []
    ChapInitiator(ChapCredentials("a", b"short"), warn=warnings.append)
    assert len(warnings) == 1 and "96 bits" in warnings[0]
    ChapInitiator(ChapCredentials("a", b"short"), short_secret_policy=ShortSecretPolicy.ALLOW,
                  warn=warnings.append)
    assert len(warnings) == 1
    with pytest.raises(AuthenticationError):
        ChapInitiator(ChapCredentials("a", b"short"), short_secret_policy=ShortSecretPolicy.REFUSE)
    with pytest.raises(AuthenticationError, match="longer"):
        ChapInitiator(ChapCredentials("a", b"x" * 257))
    # the bounds themselves are secrets: 12 bytes (96 bits) without a word, 256 taken
    for n in (12, 256):
        ChapInitiator(ChapCredentials("a", b"x" * n, "t", b"y" * n),
                      short_secret_policy=ShortSecretPolicy.REFUSE, warn=warnings.append)
    assert len(warnings) == 1
    with pytest.raises(AuthenticationError, match="same"):
        ChapInitiator(ChapCredentials("a", SECRET, "t", SECRET))
    with pytest.raises(ValueError):
        ChapInitiator(ChapCredentials("a", SECRET), algorithms=())


def test_mutual_needs_both_the_name_and_the_secret_of_the_target():
    """username_in without password_in (or the reverse) is one-way CHAP: no challenge of
    ours is sent, so the login does not wait for a proof the target cannot give."""
    for name, secret in (("t", None), (None, b"targetsecret"), ("t", b""), ("", b"x" * 12)):
        creds = ChapCredentials("a", SECRET, name, secret)
        assert not creds.mutual
        ci = ChapInitiator(creds, rng=lambda n: b"\x42" * n)
        out = dict(ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()}))
        assert set(out) == {"CHAP_N", "CHAP_R"} and not ci.expects_target_proof


def test_mutual_without_an_rng_is_a_programming_error():
    ci = ChapInitiator(ChapCredentials("a", SECRET, "t", b"targetsecret"))
    with pytest.raises(ValueError, match="rng"):
        ci.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + CHALLENGE.hex()})


def test_credentials_repr_hides_secrets():
    assert "secret" not in repr(ChapCredentials("a", SECRET, "t", b"othersecret!!"))


def test_recent_challenges_keep_the_newest_only():
    """The daemon's issued challenges: the newest ``limit`` (a reflection is of a login's
    under way), so that a session logging in again and again does not grow it for ever."""
    from iscsictl.protocol.chap import RecentChallenges

    recent = RecentChallenges(limit=3)
    for n in range(10):
        recent.add(bytes([n]))
    assert list(recent) == [b"\x07", b"\x08", b"\x09"] and len(recent) == 3
    assert b"\x09" in recent and b"\x00" not in recent
    recent.add(b"\x07")  # again: the newest now
    recent.add(b"\x0a")
    assert list(recent) == [b"\x09", b"\x07", b"\x0a"]
    recent.discard(b"\x09")
    assert list(recent) == [b"\x07", b"\x0a"]
