"""CHAP for iSCSI login (RFC 7143 §12.1.3, RFC 1994), initiator side.

Exchange: we offer ``CHAP_A`` (algorithms in preference order); the target
picks one and sends ``CHAP_I`` (identifier) and ``CHAP_C`` (challenge); we
answer ``CHAP_N`` (our name) and ``CHAP_R = H(CHAP_I || secret || CHAP_C)``,
and for mutual CHAP our own ``CHAP_I``/``CHAP_C``; the target then proves
itself with its ``CHAP_N``/``CHAP_R``, which we check in constant time.

Binary values travel as ``0x`` hex or ``0b`` base64 (§6.1).  Randomness comes
from an injected ``rng(n) -> bytes``, and the challenges issued before (a reflection's
check) are passed in: the core holds no hidden state.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, MutableSet
from dataclasses import dataclass
from enum import Enum, IntEnum

from .errors import ISCSIProtocolError

__all__ = [
    "AuthenticationError",
    "ChapAlgorithm",
    "ChapInitiator",
    "ISSUED_CHALLENGES",
    "RecentChallenges",
    "ShortSecretPolicy",
    "chap_response",
    "decode_binary",
    "encode_binary",
    "CHAP_ALGORITHM_NAMES",
    "MIN_SECRET_LENGTH",
]

MIN_SECRET_LENGTH = 12  #: bytes: RFC 7143 §12.1.3 asks for at least 96 bits
MAX_SECRET_LENGTH = 256  #: bytes (open-iscsi's limit)


class RecentChallenges(MutableSet[bytes]):
    """The challenges a process's logins issued, the ``limit`` most recent: what a target
    could reflect (RFC 7143 §12.1.3: an initiator never answers a challenge it sent) is a
    login's still under way, so the oldest are dropped and the set stays small on a host
    whose sessions log in again and again (a set of all of them grew ~150 bytes a login,
    for ever)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._items: dict[bytes, None] = {}  # insertion order: the oldest first
        self._lock = threading.Lock()  # logins in threads (discoveries) share one

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: bytes) -> None:
        with self._lock:
            self._items.pop(value, None)
            self._items[value] = None
            while len(self._items) > self._limit:
                del self._items[next(iter(self._items))]

    def discard(self, value: bytes) -> None:
        with self._lock:
            self._items.pop(value, None)


#: The challenges this process's logins issued: the daemon's node logins and relogins,
#: discoveries (the CLI's, iscsictld's discovery daemon's) and probes pass it, so that a
#: target reflecting another of them is caught whichever kind of login issued it.
ISSUED_CHALLENGES = RecentChallenges()


class AuthenticationError(ISCSIProtocolError):
    """CHAP failed on our side: the target's proof is wrong or missing, the
    target reflected a challenge, no common algorithm, a secret too short."""

    reject_reason = None


class ChapAlgorithm(IntEnum):
    """CHAP_A values (IANA PPP authentication algorithms)."""

    MD5 = 5
    SHA1 = 6
    SHA256 = 7
    SHA3_256 = 8

    @property
    def hashlib_name(self) -> str:
        return {5: "md5", 6: "sha1", 7: "sha256", 8: "sha3_256"}[self.value]

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hashlib_name).digest_size

    @property
    def usable(self) -> bool:
        """Whether this host's crypto library computes it: a FIPS host's refuses MD5
        (hashlib.new raises ValueError), and open-iscsi's acl_init_chap_digests leaves out
        of CHAP_A what EVP_DigestInit_ex refuses."""
        return _usable(self.hashlib_name)


@functools.cache
def _usable(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


#: open-iscsi's names (node.session.auth.chap_algs) -> algorithm
CHAP_ALGORITHM_NAMES = {
    "MD5": ChapAlgorithm.MD5,
    "SHA1": ChapAlgorithm.SHA1,
    "SHA256": ChapAlgorithm.SHA256,
    "SHA3-256": ChapAlgorithm.SHA3_256,
}


class ShortSecretPolicy(Enum):
    """What to do with a secret shorter than 12 bytes (RFC 7143 §12.1.3)."""

    ALLOW = "allow"
    WARN = "warn"
    REFUSE = "refuse"


def chap_response(algorithm: ChapAlgorithm, identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """``H(identifier octet || secret || challenge)`` (RFC 1994 §4.1)."""
    h = hashlib.new(algorithm.hashlib_name)
    h.update(bytes((identifier,)))
    h.update(secret)
    h.update(challenge)
    return h.digest()


_NUMBER = re.compile(r"[0-9]{1,10}|0[xX][0-9a-fA-F]{1,8}")


def _number(text: str) -> int:
    """CHAP_A and CHAP_I are numbers (RFC 7143 §12.1.3): decimal or 0x hex.
    (int(text, 0) would also take '0b11' as binary, where 0b means base64,
    and '1_0' or ' 7'.)

    Raises:
        ValueError: any other form.
    """
    if not _NUMBER.fullmatch(text):
        raise ValueError(text)
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)


def encode_binary(data: bytes, base64_form: bool = False) -> str:
    """``0x`` + lower-case hex, or ``0b`` + base64 (§6.1 binary-value)."""
    if base64_form:
        return "0b" + base64.b64encode(data).decode("ascii")
    return "0x" + data.hex()


#: the most bytes a CHAP_C or CHAP_R may decode to (RFC 7143 §12.1.3; open-iscsi's
#: AUTH_LARGE_BINARY_MAX_LEN)
CHAP_MAX_BINARY = 1024


def decode_binary(text: str) -> bytes:
    """Decode a ``0x``/``0X`` hex or ``0b``/``0B`` base64 value (its padding optional).

    Raises:
        AuthenticationError: neither form, or malformed digits.
    """
    prefix, body = text[:2], text[2:]
    try:
        if prefix in ("0x", "0X"):
            if len(body) % 2:
                body = "0" + body
            return bytes.fromhex(body)
        if prefix in ("0b", "0B"):  # its '=' padding may be left out, as open-iscsi's
            # acl_base64_to_data takes it (one character too many is still malformed)
            return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (ValueError, binascii.Error):
        pass
    raise AuthenticationError(f"malformed binary value {text[:40]!r}")


@dataclass(frozen=True)
class ChapCredentials:
    """CHAP names and secrets (open-iscsi ``*.auth.*`` keys).

    ``username``/``password`` authenticate us to the target; the ``_in``
    pair, when set, is what the target must prove (mutual CHAP).
    """

    username: str
    password: bytes
    username_in: str | None = None
    password_in: bytes | None = None

    @property
    def mutual(self) -> bool:
        return bool(self.username_in and self.password_in)

    def __repr__(self) -> str:  # never print secrets
        return f"ChapCredentials(username={self.username!r}, mutual={self.mutual})"


class ChapInitiator:
    """The initiator's half of one CHAP exchange.

    Args:
        credentials: our name/secret and, for mutual CHAP, the target's.
        algorithms: CHAP_A values in preference order.
        rng: ``rng(n) -> n random bytes`` for our identifier and challenge.
        issued_challenges: challenges we have sent (shared between logins by
            the caller); a target challenge found here is a reflection.
        short_secret_policy: how to treat secrets under 12 bytes.
        warn: called with a message for WARN-level findings.
    Raises:
        AuthenticationError: a secret too short under REFUSE, too long, or
            the same secret configured for both directions.
    """

    def __init__(
        self,
        credentials: ChapCredentials,
        algorithms: tuple[ChapAlgorithm, ...] = (ChapAlgorithm.MD5,),
        rng: Callable[[int], bytes] | None = None,
        issued_challenges: MutableSet[bytes] | None = None,
        short_secret_policy: ShortSecretPolicy = ShortSecretPolicy.WARN,
        warn: Callable[[str], None] | None = None,
        base64_form: bool = False,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one CHAP algorithm is needed")
        self.credentials = credentials
        self._warn = warn or (lambda msg: None)
        # one this host's crypto library refuses (MD5 on a FIPS host) is not offered, as
        # acl_init_chap_digests leaves it out: chosen, its challenge could not be answered
        self.algorithms = tuple(a for a in algorithms if a.usable)
        for a in algorithms:
            if not a.usable:
                self._warn(f"Ignoring CHAP algorithm {a.name}: this host's crypto library "
                           "refuses it")
        if not self.algorithms:
            raise AuthenticationError("no CHAP algorithm asked for is one this host's crypto "
                                      f"library allows ({', '.join(a.name for a in algorithms)}"
                                      " refused)")
        self._rng = rng
        self._issued = issued_challenges if issued_challenges is not None else set()
        self._base64 = base64_form
        self.algorithm: ChapAlgorithm | None = None
        self._our_id: int | None = None
        self._our_challenge: bytes | None = None
        self._check_secrets(short_secret_policy)

    def _check_secrets(self, policy: ShortSecretPolicy) -> None:
        creds = self.credentials
        for label, secret in (("password", creds.password), ("password_in", creds.password_in)):
            if secret is None:
                continue
            if len(secret) > MAX_SECRET_LENGTH:
                raise AuthenticationError(f"CHAP {label} is longer than {MAX_SECRET_LENGTH} bytes")
            if len(secret) < MIN_SECRET_LENGTH and policy is not ShortSecretPolicy.ALLOW:
                msg = (f"CHAP {label} has {len(secret)} bytes; RFC 7143 asks for at least "
                       f"{MIN_SECRET_LENGTH} (96 bits)")
                if policy is ShortSecretPolicy.REFUSE:
                    raise AuthenticationError(msg)
                self._warn(msg)
        if creds.mutual and creds.password_in == creds.password:
            raise AuthenticationError(
                "the same CHAP secret is configured for both directions (RFC 7143 §12.1.3)"
            )

    def offer(self) -> list[tuple[str, str]]:
        """``CHAP_A`` with our algorithms in preference order."""
        return [("CHAP_A", ",".join(str(int(a)) for a in self.algorithms))]

    def respond(self, keys: dict[str, str]) -> list[tuple[str, str]]:
        """Answer the target's CHAP_A/CHAP_I/CHAP_C.

        Returns: CHAP_N, CHAP_R and, for mutual CHAP, CHAP_I and CHAP_C.
        Raises:
            AuthenticationError: an algorithm we did not offer, a missing or
                malformed identifier or challenge, a reflected challenge.
        """
        try:
            alg = ChapAlgorithm(_number(keys.get("CHAP_A", "")))
        except ValueError:
            raise AuthenticationError(f"target chose CHAP_A={keys.get('CHAP_A')!r}") from None
        if alg not in self.algorithms:
            raise AuthenticationError(f"target chose CHAP_A={int(alg)}, which we did not offer")
        self.algorithm = alg
        try:
            ident = _number(keys["CHAP_I"])
        except (KeyError, ValueError):
            raise AuthenticationError("target sent no valid CHAP_I") from None
        if not 0 <= ident <= 255:
            raise AuthenticationError(f"CHAP_I={ident} is not an octet")
        if "CHAP_C" not in keys:
            raise AuthenticationError("target sent no CHAP_C")
        challenge = decode_binary(keys["CHAP_C"])
        if not challenge:
            raise AuthenticationError("target sent an empty CHAP_C")
        if len(challenge) > CHAP_MAX_BINARY:
            raise AuthenticationError(f"target's CHAP_C is {len(challenge)} bytes; the limit "
                                      f"is {CHAP_MAX_BINARY} (RFC 7143 §12.1.3)")
        if challenge in self._issued:
            raise AuthenticationError("target reflected a challenge we issued (RFC 7143 §12.1.3)")
        out = [
            ("CHAP_N", self.credentials.username),
            ("CHAP_R", encode_binary(
                chap_response(alg, ident, self.credentials.password, challenge), self._base64)),
        ]
        if self.credentials.mutual:
            if self._rng is None:
                raise ValueError("mutual CHAP needs an rng")
            ours = challenge
            while ours == challenge:  # never hand the target its own challenge back
                ours = self._rng(alg.digest_size)
            self._our_id = self._rng(1)[0]
            self._our_challenge = ours
            self._issued.add(ours)
            out += [("CHAP_I", str(self._our_id)), ("CHAP_C", encode_binary(ours, self._base64))]
        return out

    @property
    def expects_target_proof(self) -> bool:
        return self._our_challenge is not None

    def verify_target(self, keys: dict[str, str]) -> None:
        """Check the target's CHAP_N/CHAP_R (mutual CHAP).

        Raises:
            AuthenticationError: the name or the response does not match, or
                the target sent none.
        """
        creds = self.credentials
        assert self._our_challenge is not None and self.algorithm is not None
        if "CHAP_N" not in keys or "CHAP_R" not in keys:
            raise AuthenticationError("target did not answer our CHAP challenge (mutual CHAP)")
        if not hmac.compare_digest(keys["CHAP_N"].encode(), (creds.username_in or "").encode()):
            raise AuthenticationError(f"target authenticated as {keys['CHAP_N']!r}, "
                                      f"expected {creds.username_in!r}")
        expected = chap_response(self.algorithm, self._our_id or 0, creds.password_in or b"",
                                 self._our_challenge)
        if not hmac.compare_digest(decode_binary(keys["CHAP_R"]), expected):
            raise AuthenticationError("target failed mutual CHAP authentication")
