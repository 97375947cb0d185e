"""iSCSI names and ISIDs.

Names (RFC 3720 §3.2.6, RFC 7143 §4.2.7, the stringprep profile of RFC 3722):
``iqn.YYYY-MM.reversed.domain[:unique]``, ``eui.`` + 16 hex digits (EUI-64),
``naa.`` + 16 or 32 hex digits (RFC 3980).  At most 223 bytes of UTF-8 after
normalisation (NFKC and case folding).

ISIDs (RFC 7143 §11.12.5): 6 bytes, ``T(2 bits) A(6) | B(16) | C(8) | D(16)``
in three formats: OUI (T=00), IANA Enterprise Number (T=01) and Random (T=10).
"""

from __future__ import annotations

import re
import stringprep
import unicodedata
from collections.abc import Callable
from enum import IntEnum

from .errors import InvalidISCSIName

__all__ = [
    "ISID",
    "ISIDAllocator",
    "ISIDFormat",
    "MAX_NAME_LENGTH",
    "OPEN_ISCSI_OUI",
    "normalize_name",
    "usable_name",
    "validate_name",
]

MAX_NAME_LENGTH = 223  #: bytes of UTF-8 (RFC 3720 §3.2.6.1)
#: The OUI open-iscsi uses in its ISIDs (00:02:3D, in OUI format).
OPEN_ISCSI_OUI = 0x00023D

_IQN = re.compile(
    r"iqn\.(?P<year>\d{4})-(?P<month>\d{2})\."
    r"(?P<authority>[^:.]+(?:\.[^:.]+)*)(?::(?P<unique>.*))?\Z",
    re.S,
)
_EUI = re.compile(r"eui\.[0-9a-f]{16}\Z")
_NAA = re.compile(r"naa\.(?:[0-9a-f]{16}|[0-9a-f]{32})\Z")
_ASCII_OK = re.compile(r"[a-z0-9.:\-]*\Z")


def _prohibited(ch: str) -> bool:
    return (
        stringprep.in_table_c11(ch) or stringprep.in_table_c12(ch)
        or stringprep.in_table_c21(ch) or stringprep.in_table_c22(ch)
        or stringprep.in_table_c3(ch) or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch) or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
    )


def normalize_name(name: str) -> str:
    """The RFC 3722 form of ``name``: mapped (B.1, B.2 case folding), NFKC.

    Raises:
        InvalidISCSIName: a prohibited character (space, control, private use...).
    """
    if _ASCII_OK.match(name):  # already in normal form (the common case): no table walk
        return name
    mapped = "".join(
        stringprep.map_table_b2(ch) for ch in name if not stringprep.in_table_b1(ch)
    )
    out = unicodedata.normalize("NFKC", mapped)
    for ch in out:
        if _prohibited(ch):
            raise InvalidISCSIName(f"iSCSI name {name!r} has a prohibited character {ch!r}")
        if ch < "\x80" and not _ASCII_OK.match(ch):
            raise InvalidISCSIName(
                f"iSCSI name {name!r}: character {ch!r} is not allowed "
                "(ASCII letters, digits, '-', '.', ':')"
            )
    return out


def validate_name(name: str) -> str:
    """Check an iSCSI name (its RFC 3722 normal form: case, width) and return that form,
    for comparing names.  A name sent to a target or stored is the one given: targets
    compare it byte for byte.

    Raises:
        InvalidISCSIName: with a message that says what is wrong.
    """
    if not name:
        raise InvalidISCSIName("empty iSCSI name")
    norm = normalize_name(name)
    if len(norm.encode("utf-8")) > MAX_NAME_LENGTH:
        raise InvalidISCSIName(
            f"iSCSI name is {len(norm.encode())} bytes; the limit is {MAX_NAME_LENGTH}"
        )
    if norm.startswith("iqn."):
        m = _IQN.match(norm)
        if not m:
            raise InvalidISCSIName(
                f"{name!r} is not iqn.YYYY-MM.reversed.domain[:unique]"
            )
        if not 1 <= int(m["month"]) <= 12:
            raise InvalidISCSIName(f"{name!r}: month {m['month']} is not 01..12")
        return norm
    if norm.startswith("eui."):
        if not _EUI.match(norm):
            raise InvalidISCSIName(f"{name!r} is not eui. followed by 16 hex digits")
        return norm
    if norm.startswith("naa."):
        if not _NAA.match(norm):
            raise InvalidISCSIName(f"{name!r} is not naa. followed by 16 or 32 hex digits")
        return norm
    raise InvalidISCSIName(f"{name!r} does not start with iqn., eui. or naa.")


#: what a name given to the initiator cannot hold, whatever the target accepts: blanks and
#: controls (the text format and the DB's listings), '/' (a DB path), ',' (a discovery
#: link's separator, which iscsiadm cannot read back) and lone surrogates (no UTF-8)
_UNUSABLE = re.compile(r"[\x00-\x20\x7f-\x9f,/\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
                       r"\u205f\u3000\ud800-\udfff]")


def usable_name(name: str) -> str:
    """Check a name a target announces (SendTargets) or a user gives (``-T``) as open-iscsi
    takes it: any name of iSCSI's three types within 223 bytes, not only RFC 3722's
    character set (tgtd, SCST and arrays name targets ``iqn...:disk_1`` or in upper case,
    and log in with them; open-iscsi checks the length alone).  Returns ``name`` as given.

    Raises:
        InvalidISCSIName: empty, too long, no ``iqn.``/``eui.``/``naa.`` type (in any
            case), or a character no record can hold (blank, control, ``/``, ``,``).
    """
    if not name:
        raise InvalidISCSIName("empty iSCSI name")
    if name[:4].lower() not in ("iqn.", "eui.", "naa."):
        raise InvalidISCSIName(f"{name!r} does not start with iqn., eui. or naa.")
    bad = _UNUSABLE.search(name)
    if bad:
        raise InvalidISCSIName(f"iSCSI name {name!r}: character {bad.group()!r} is not "
                               "allowed")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_LENGTH:
        raise InvalidISCSIName(f"iSCSI name is {size} bytes; the limit is {MAX_NAME_LENGTH}")
    return name


# ---------------------------------------------------------------------------
# ISID


class ISIDFormat(IntEnum):
    """The T field of an ISID (RFC 7143 §11.12.5)."""

    OUI = 0
    EN = 1
    RANDOM = 2
    RESERVED = 3


class ISID:
    """A 6-byte Initiator Session ID.

    Construct with :meth:`oui`, :meth:`en`, :meth:`random` or from bytes.
    ``str()`` gives the 12 hex digits open-iscsi prints (``00023d000001``).
    """

    __slots__ = ("value",)

    def __init__(self, value: bytes | int) -> None:
        if isinstance(value, int):
            if not 0 <= value < 1 << 48:
                raise ValueError("an ISID has 48 bits")
            self.value = value
        else:
            if len(value) != 6:
                raise ValueError(f"an ISID has 6 bytes, got {len(value)}")
            self.value = int.from_bytes(value, "big")

    @classmethod
    def oui(cls, oui: int, qualifier: int) -> ISID:
        """OUI format: A+B hold the 22 OUI bits (I/G and U/L omitted), C+D a
        24-bit qualifier.  ``oui`` is given as the 24-bit OUI."""
        if not 0 <= qualifier < 1 << 24:
            raise ValueError("OUI-format qualifier has 24 bits")
        if not 0 <= oui < 1 << 22:
            raise ValueError("OUI (less I/G and U/L bits) has 22 bits")
        return cls((ISIDFormat.OUI << 46) | (oui << 24) | qualifier)

    @classmethod
    def en(cls, enterprise_number: int, qualifier: int) -> ISID:
        """EN format: B+C hold a 24-bit IANA Enterprise Number, D a 16-bit qualifier."""
        if not 0 <= enterprise_number < 1 << 24 or not 0 <= qualifier < 1 << 16:
            raise ValueError("EN format: 24-bit enterprise number, 16-bit qualifier")
        return cls((ISIDFormat.EN << 46) | (enterprise_number << 16) | qualifier)

    @classmethod
    def random(cls, random24: int, qualifier: int) -> ISID:
        """Random format: B+C hold a 24-bit random number, D a 16-bit qualifier."""
        if not 0 <= random24 < 1 << 24 or not 0 <= qualifier < 1 << 16:
            raise ValueError("Random format: 24-bit random number, 16-bit qualifier")
        return cls((ISIDFormat.RANDOM << 46) | (random24 << 16) | qualifier)

    @property
    def format(self) -> ISIDFormat:
        return ISIDFormat(self.value >> 46)

    @property
    def qualifier(self) -> int:
        """The qualifier: C+D (24 bits) for OUI, D (16 bits) otherwise."""
        return self.value & (0xFFFFFF if self.format == ISIDFormat.OUI else 0xFFFF)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(6, "big")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return f"{self.value:012x}"

    def __repr__(self) -> str:
        return f"ISID({str(self)!r}, {self.format.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ISID) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class ISIDAllocator:
    """Hands out ISIDs that never repeat while in use.

    open-iscsi once put one byte of the session number in its ISIDs, so the
    257th session to a target collided with the first (open-iscsi #38).  This
    allocator walks the whole qualifier space (2**24 in OUI format, 2**16
    otherwise), skipping qualifiers still in use, and raises only when every
    one is taken.  A qualifier reserved for several sessions (to different
    targets one ISID is legal, RFC 7143 §4.4.2) stays in use until each has
    released it.

    Args:
        fmt: the ISID format.
        prefix: the OUI (OUI format), enterprise number (EN) or random prefix
            (Random); for Random it defaults to one drawn from ``rng``.
        rng: ``rng(bits) -> int`` for the Random prefix (injected: no hidden
            randomness in the core).
        first: the qualifier the walk starts at (``iscsictl-start``'s: one its
            process ID sets apart, so that several running side by side, each with an
            allocator of its own, give out different ISIDs).
        claim: ``claim(isid) -> bool``, asked of each qualifier the walk would give out:
            False leaves it to someone else (another process's allocator: processes
            side by side, whose process IDs can repeat across PID namespaces, claim
            theirs in a shared lock file) and the walk goes on; an ISID given out is
            claimed until :meth:`release`.
        unclaim: ``unclaim(isid)``, called by :meth:`release` for an ISID ``claim``
            took.
    """

    def __init__(
        self,
        fmt: ISIDFormat = ISIDFormat.OUI,
        prefix: int | None = None,
        rng: Callable[[int], int] | None = None,
        first: int = 1,
        claim: Callable[[ISID], bool] | None = None,
        unclaim: Callable[[ISID], None] | None = None,
    ) -> None:
        self.format = fmt
        if fmt == ISIDFormat.OUI:
            self._make, self._space = ISID.oui, 1 << 24
            self.prefix = OPEN_ISCSI_OUI if prefix is None else prefix
        elif fmt == ISIDFormat.EN:
            if prefix is None:
                raise ValueError("EN format needs the IANA enterprise number")
            self._make, self._space, self.prefix = ISID.en, 1 << 16, prefix
        elif fmt == ISIDFormat.RANDOM:
            if prefix is None:
                if rng is None:
                    raise ValueError("Random format needs a prefix or an rng")
                prefix = rng(24)
            self._make, self._space, self.prefix = ISID.random, 1 << 16, prefix
        else:
            raise ValueError("the reserved ISID format cannot be allocated")
        self._in_use: dict[int, int] = {}  # qualifier -> the sessions holding it
        self._claim, self._unclaim = claim, unclaim
        self._claimed: set[int] = set()  # given out and claimed: unclaimed at release
        self._next = first % self._space  # qualifier 0 is skipped: it reads as "unset"

    def allocate(self) -> ISID:
        """A fresh ISID not currently in use (nor refused by ``claim``).

        Raises:
            RuntimeError: every qualifier is in use or claimed elsewhere.
        """
        q = self._next
        for _ in range(self._space):
            if q not in self._in_use and q != 0:
                isid = self._make(self.prefix, q)
                if self._claim is None or self._claim(isid):
                    break
            q = (q + 1) % self._space
        else:
            raise RuntimeError(f"all {self._space - 1} ISID qualifiers are in use")
        self._in_use[q] = 1
        if self._claim is not None:
            self._claimed.add(q)
        self._next = (q + 1) % self._space
        return isid

    def reserve(self, isid: ISID) -> None:
        """Mark an ISID found elsewhere (an adopted kernel session) as in use, once more
        for each session reserved with it."""
        if isid.format == self.format:
            self._in_use[isid.qualifier] = self._in_use.get(isid.qualifier, 0) + 1

    def release(self, isid: ISID) -> None:
        """Return an ISID whose session is gone (once for each session given or reserved
        it); free, and unclaimed if it was claimed, once the last has."""
        if isid.format != self.format:
            return
        left = self._in_use.get(isid.qualifier, 0) - 1
        if left > 0:
            self._in_use[isid.qualifier] = left
            return
        self._in_use.pop(isid.qualifier, None)
        if isid.qualifier in self._claimed:
            self._claimed.discard(isid.qualifier)
            if self._unclaim is not None:  # the one claimed (``isid`` may have another
                self._unclaim(self._make(self.prefix, isid.qualifier))  # prefix)

    def __len__(self) -> int:
        return len(self._in_use)
