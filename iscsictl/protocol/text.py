"""The ``key=value\\0`` text format (RFC 7143 §6.1) and its PDU sequences.

* :func:`encode_text` / :func:`decode_text`: pairs to bytes and back, with the
  RFC limits (key names of at most 63 bytes, value lengths, no NUL or '=' in
  names).  Decoding keeps order and duplicates; deciding whether a duplicate
  is legal belongs to the negotiation layer.
* :class:`TextAssembler`: joins the data segments of a PDU sequence that the C
  bit continues, with a bound on the total so a peer cannot make us buffer
  without limit.
* :func:`split_text`: cuts outgoing text into segments no longer than the
  peer's MaxRecvDataSegmentLength; every segment but the last goes with C=1.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .errors import ISCSIProtocolError
from .keys import KEYS, MAX_KEY_NAME

__all__ = [
    "TextAssembler",
    "TextFormatError",
    "decode_text",
    "encode_text",
    "split_text",
    "TextPairs",
]

TextPairs = list[tuple[str, str]]

#: key-name characters (§6.1): letters, digits, '.', '-', '+', '@', '_', plus
#: '#' for the X# vendor prefix.
_KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.\-+@_#]*\Z")
_VALUE_LIMIT_UNKNOWN = 8192  # vendor or unknown keys: a whole text segment


class TextFormatError(ISCSIProtocolError):
    """Text data that breaks §6.1 (bad key name, missing '=', over a limit)."""


#: the value limit (bytes) of each standard key; names not here get _VALUE_LIMIT_UNKNOWN
_LIMITS = {name: kd.max_length for name, kd in KEYS.items()}
#: the first piece of a NUL-terminated text that is not a well-formed pair (a key name of
#: at most 63 characters, '='; a value): the common case, none, checked in one pass (a
#: match of the whole text as repeated pairs kept ~75 bytes of state a pair: 150 MB for an
#: answer of 2 MiB of tiny pairs)
_BAD_PAIR = re.compile(r"(?:^|(?<=\0))(?![A-Za-z][A-Za-z0-9.\-+@_#]{0,62}=)(?!\Z)")


def _value_limit(key: str) -> int:
    return _LIMITS.get(key, _VALUE_LIMIT_UNKNOWN)


def encode_text(pairs: TextPairs) -> bytes:
    """``key=value\\0`` for each pair, in order (UTF-8).

    Raises:
        ValueError: a key or value we were asked to send breaks the limits.
    """
    out = []
    for key, value in pairs:
        limit = _LIMITS.get(key)
        if limit is None:
            if not _KEY_NAME.match(key) or len(key) > MAX_KEY_NAME:
                raise ValueError(f"invalid text key name {key!r}")
            limit = _VALUE_LIMIT_UNKNOWN
        if "\0" in value or not value.isascii() or len(value) > limit:
            check_value(key, value)  # says which, if any
        out.append(f"{key}={value}\0")
    return "".join(out).encode()


def check_value(key: str, value: str) -> None:
    """Whether ``value`` can be sent as ``key``'s (RFC 7143 §6.1 and its key's limit:
    255 bytes for CHAP_N and InitiatorAlias, 223 for the names).

    Raises:
        ValueError: naming the key, its limit and the value's size, or its NUL, or
            bytes that are not UTF-8 (a firmware's name read with surrogateescape).
    """
    limit = _LIMITS.get(key, _VALUE_LIMIT_UNKNOWN)
    if "\0" in value:
        raise ValueError(f"{key} holds a NUL")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError(f"{key} is not UTF-8 text") from None
    if size > limit:
        raise ValueError(f"{key} is {size} bytes; at most {limit} can be sent")


def decode_text(data: bytes, value_limits: bool = True,
                skip: Callable[[str], None] | None = None,
                lenient: frozenset[str] = frozenset(),
                keep: frozenset[str] | None = None) -> TextPairs:
    """Split text data into (key, value) pairs, in order, duplicates kept.

    NUL padding is tolerated (some targets pad), and NULs before a pair or two in
    a row, as open-iscsi's login.c skips them.  Values are decoded
    as UTF-8.  ``value_limits=False`` leaves the values' lengths (§6.1) to the
    reader, which can leave one pair out where a whole answer would be lost
    (a SendTargets answer; its size is bounded as a whole).  With ``skip``, a
    pair that is not one (the errors below, the bytes after the last NUL
    included) is left out and ``skip(why)`` called instead: the good pairs of a
    SendTargets answer are kept, as open-iscsi's reader keeps them.  A key in
    ``lenient`` (an informational one: TargetAlias) whose value is not UTF-8 or is too long
    is kept all the same, its bad bytes replaced and its value cut to the limit, as
    open-iscsi copies it whatever it holds.  With ``keep``, only the pairs of those keys
    are returned, the others dropped as they are read, unchecked but for their '=': an
    answer of 16 MiB of tiny pairs costs memory for what the reader takes, not ~75
    bytes a byte.

    Raises:
        TextFormatError: without ``skip``: a pair without '=', a bad key name,
            an over-long name or value, invalid UTF-8, or text not ending in NUL.
    """
    if not data:
        return []
    if data[-1:] != b"\0":
        if skip is None:
            raise TextFormatError("text data does not end with a NUL delimiter")
        head, _, tail = data.rpartition(b"\0")
        skip(f"text without its NUL delimiter left out: {tail[:64]!r}")
        data = head + b"\0" if head else b""
        if not data:
            return []
    body = data.rstrip(b"\0")
    if not body:  # NUL padding only: no pairs
        return []
    if body.isascii():  # the common case: whole-text checks, then only the value limits
        text = body.decode("ascii") + "\0"
        if not _BAD_PAIR.search(text):
            if keep is None:
                pairs = [(k, v) for k, _, v in
                         (item.partition("=") for item in text[:-1].split("\0"))]
            else:
                pairs = _kept_pairs(keep).findall(text)
            if not value_limits or \
                    all(len(v) <= _LIMITS.get(k, _VALUE_LIMIT_UNKNOWN) for k, v in pairs):
                return pairs
    return _decode_each(body, value_limits, skip, lenient, keep)


@functools.lru_cache(maxsize=8)
def _kept_pairs(keep: frozenset[str]) -> re.Pattern[str]:
    """The pairs of ``keep``'s keys in a text of well-formed pairs (:data:`_BAD_PAIR`)."""
    keys = "|".join(re.escape(k) for k in sorted(keep))
    return re.compile(rf"(?:(?<=\0)|^)({keys})=([^\0]*)\0")


def _decode_each(body: bytes, value_limits: bool = True,
                 skip: Callable[[str], None] | None = None,
                 lenient: frozenset[str] = frozenset(),
                 keep: frozenset[str] | None = None) -> TextPairs:
    """decode_text pair by pair (non-ASCII text, and the precise error of a bad one); the
    pieces found one at a time (a list of them all would cost ~50 bytes a piece)."""
    pairs: TextPairs = []
    kept = None if keep is None else {k.encode("ascii") for k in keep}
    # (NULs before a pair or two in a row: no pair; open-iscsi skips them)
    for match in _PIECE.finditer(body):
        item = match.group()
        if kept is not None:
            key_b, eq, _ = item.partition(b"=")
            if eq and key_b not in kept:
                continue
        why = _pair_problem(item, value_limits)
        if why is not None and lenient:
            key_b, eq, value_b = item.partition(b"=")
            if eq and key_b.decode("ascii", "replace") in lenient:
                key = key_b.decode("ascii")
                value = value_b.decode("utf-8", "replace")
                if value_limits:  # whole characters to the limit (one pass: a 64 KiB
                    encoded = value.encode("utf-8")  # value cut a character at a time
                    limit = _value_limit(key)  # took a second of the daemon's loop)
                    if len(encoded) > limit:
                        value = encoded[:limit].decode("utf-8", "ignore")
                pairs.append((key, value))
                continue
        if why is not None:
            if skip is None:
                raise TextFormatError(why)
            skip(f"{why}: left out")
            continue
        key, _, value = item.partition(b"=")
        pairs.append((key.decode("ascii"), value.decode("utf-8")))
    return pairs


_PIECE = re.compile(rb"[^\0]+")


def _pair_problem(item: bytes, value_limits: bool) -> str | None:
    """What makes ``item`` (one NUL-delimited piece) not a key=value pair; None if it is."""
    key_b, eq, value_b = item.partition(b"=")
    if not eq:
        return f"text pair without '=': {item[:64]!r}"
    try:
        key = key_b.decode("ascii")
        value_b.decode("utf-8")
    except UnicodeDecodeError:
        return f"text pair is not valid UTF-8: {item[:64]!r}"
    if len(key_b) > MAX_KEY_NAME or not _KEY_NAME.match(key):
        return f"invalid key name {key_b[:80]!r}"
    if value_limits and len(value_b) > _value_limit(key):
        return f"value of {key} is {len(value_b)} bytes; the limit is {_value_limit(key)}"
    return None


class TextAssembler:
    """Collects the data segments of a C-bit continued sequence.

    Args:
        limit: the most bytes accepted for the whole sequence.
    """

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes, continued: bool) -> bytes | None:
        """Add one PDU's data; the whole text once ``continued`` is False.

        Raises:
            TextFormatError: the sequence grew past ``limit``.
        """
        self._size += len(data)
        if self._size > self.limit:
            raise TextFormatError(f"text sequence is longer than {self.limit} bytes")
        self._parts.append(data)
        if continued:
            return None
        whole = b"".join(self._parts)
        self._parts = []
        self._size = 0
        return whole

    @property
    def pending(self) -> bool:
        """True while a continued sequence is incomplete."""
        return bool(self._parts)


def split_text(data: bytes, segment: int) -> list[bytes]:
    """Cut ``data`` into pieces of at most ``segment`` bytes (at least one piece)."""
    if segment < 1:
        raise ValueError("segment length must be positive")
    if not data:
        return [b""]
    return [data[i:i + segment] for i in range(0, len(data), segment)]


