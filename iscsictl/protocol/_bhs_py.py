"""Basic Header Segment codec, pure-Python reference (RFC 7143 §11.2.1).

This is the hot path: every PDU crosses it.  It splits the 48-byte BHS into
the fields every opcode shares and the raw opcode-specific words, without
interpreting them; :mod:`iscsictl.protocol.pdu` gives those words their
RFC names.  ``_fastpath/bhs.pyx`` is the Cython twin with the same API.

Layout (big-endian)::

    byte 0      .|I| opcode(6)            byte 1     flags (F, ...)
    bytes 2-3   opcode-specific           byte 4     TotalAHSLength (words)
    bytes 5-7   DataSegmentLength         bytes 8-15 LUN or opcode-specific
    bytes 16-19 Initiator Task Tag        bytes 20-47 seven opcode-specific words
"""

from __future__ import annotations

import operator
from struct import Struct

from .constants import BHS_LENGTH
from .errors import TruncatedPDU

__all__ = ["BHS", "RawPDU", "decode_bhs", "encode_bhs"]

_BHS = Struct(">BBBBIQI7I")
#: the widths encode_bhs checks beyond the two lengths (ValueError, not struct.error)
_LIMITS = (("opcode", 0x3F), ("flags", 0xFF), ("b2", 0xFF), ("b3", 0xFF),
           ("lun", 0xFFFFFFFFFFFFFFFF), ("itt", 0xFFFFFFFF))


class _Flag:
    """An attribute kept as the truth of what is assigned, as the Cython twin's ``bint``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> object:
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj: object, value: object) -> None:
        setattr(obj, self.slot, bool(value))


class _Ssize(_Flag):
    """An integer attribute checked on assignment, as the Cython twin's ``Py_ssize_t``.

    Raises:
        TypeError: not an integer (``operator.index`` refuses it).
        OverflowError: outside -2**63 .. 2**63 - 1.
    """

    def __set__(self, obj: object, value: object) -> None:
        n = operator.index(value)  # type: ignore[arg-type]
        if not -(1 << 63) <= n < (1 << 63):
            raise OverflowError(f"{self.slot[1:]} = {n} does not fit a C ssize_t")
        setattr(obj, self.slot, n)


class BHS:
    """The fields of a Basic Header Segment that every opcode shares.

    Attributes:
        opcode: byte 0 bits 0-5.
        immediate: byte 0 bit 6 (the I bit; reserved in target PDUs).
        reserved0: byte 0 bit 7 (reserved: 0 on send).
        flags: byte 1 (the F bit and opcode-specific flags).
        b2, b3: bytes 2 and 3, opcode-specific.
        total_ahs_length: TotalAHSLength, in 4-byte words.
        data_segment_length: DataSegmentLength, in bytes (without padding).
        lun: bytes 8-15 as an unsigned 64-bit integer (LUN, or ISID+TSIH).
        itt: the Initiator Task Tag.
        words: bytes 20-47 as seven unsigned 32-bit integers.
    """

    _FIELDS = (
        "opcode", "immediate", "reserved0", "flags", "b2", "b3",
        "total_ahs_length", "data_segment_length", "lun", "itt", "words",
    )
    __slots__ = (
        "opcode", "_immediate", "_reserved0", "flags", "b2", "b3",
        "total_ahs_length", "data_segment_length", "lun", "itt", "words",
    )
    immediate = _Flag()
    reserved0 = _Flag()

    def __init__(
        self,
        opcode: int,
        immediate: bool = False,
        flags: int = 0,
        b2: int = 0,
        b3: int = 0,
        total_ahs_length: int = 0,
        data_segment_length: int = 0,
        lun: int = 0,
        itt: int = 0,
        words: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 0),
        reserved0: bool = False,
    ) -> None:
        self.opcode = opcode
        self.immediate = immediate
        self.reserved0 = reserved0
        self.flags = flags
        self.b2 = b2
        self.b3 = b3
        self.total_ahs_length = total_ahs_length
        self.data_segment_length = data_segment_length
        self.lun = lun
        self.itt = itt
        self.words = words

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BHS) and type(other).__name__ != "BHS":
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in BHS._FIELDS)

    def __repr__(self) -> str:
        return (
            f"BHS(opcode=0x{self.opcode:02x}, immediate={self.immediate}, "
            f"flags=0x{self.flags:02x}, ahs={self.total_ahs_length}, "
            f"dsl={self.data_segment_length}, itt=0x{self.itt:08x})"
        )


class RawPDU:
    """One whole PDU as framed from the stream, digests already checked.

    Attributes:
        bhs: the decoded :class:`BHS`.
        header: the 48 BHS bytes as received.
        ahs: the Additional Header Segments (TotalAHSLength * 4 bytes).
        data: the data segment without padding.
    """

    __slots__ = ("bhs", "header", "ahs", "data")

    def __init__(self, bhs: BHS, header: bytes, ahs: bytes, data: bytes) -> None:
        self.bhs = bhs
        self.header = header
        self.ahs = ahs
        self.data = data

    def __repr__(self) -> str:
        return f"RawPDU({self.bhs!r}, ahs={len(self.ahs)}B, data={len(self.data)}B)"


def decode_bhs(buf: bytes | bytearray | memoryview, offset: int = 0) -> BHS:
    """Decode the 48-byte BHS at ``buf[offset:offset+48]``.

    ``buf`` is bytes, bytearray or anything with the buffer protocol; ``offset``
    and the length count bytes, whatever the buffer's item size.

    Raises:
        TruncatedPDU: fewer than 48 bytes are available.
        ValueError: a negative ``offset``.
    """
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    n = len(buf) if type(buf) is bytearray or type(buf) is bytes else memoryview(buf).nbytes
    if n - offset < BHS_LENGTH:
        raise TruncatedPDU(f"BHS needs {BHS_LENGTH} bytes, got {max(n - offset, 0)}")
    b0, b1, b2, b3, w1, lun, itt, *words = _BHS.unpack_from(buf, offset)
    bhs = BHS.__new__(BHS)
    bhs.opcode = b0 & 0x3F
    bhs.immediate = bool(b0 & 0x40)
    bhs.reserved0 = bool(b0 & 0x80)
    bhs.flags = b1
    bhs.b2 = b2
    bhs.b3 = b3
    bhs.total_ahs_length = w1 >> 24
    bhs.data_segment_length = w1 & 0xFFFFFF
    bhs.lun = lun
    bhs.itt = itt
    bhs.words = tuple(words)
    return bhs


def encode_bhs(bhs: BHS) -> bytes:
    """Encode ``bhs`` into 48 bytes.

    Raises:
        ValueError: a field is not an int or does not fit its width (e.g.
            DataSegmentLength beyond 2**24 - 1), or ``words`` is not a sequence
            of seven such ints.  Checked in a fixed order: DataSegmentLength,
            TotalAHSLength, words, then opcode, flags, b2, b3, lun, itt.
    """
    if not _fits(bhs.data_segment_length, 0xFFFFFF):
        raise ValueError(f"DataSegmentLength {bhs.data_segment_length} out of range")
    if not _fits(bhs.total_ahs_length, 0xFF):
        raise ValueError(f"TotalAHSLength {bhs.total_ahs_length} out of range")
    words = bhs.words
    try:
        ok = len(words) == 7 and all(_fits(w, 0xFFFFFFFF) for w in words)
    except TypeError:  # not a sequence
        ok = False
    if not ok:
        raise ValueError("a BHS has exactly seven words at bytes 20-47, "
                         "each an unsigned 32-bit integer")
    for name, limit in _LIMITS:
        value = getattr(bhs, name)
        if not _fits(value, limit):
            raise ValueError(f"{name}={value!r} does not fit its field")
    b0 = bhs.opcode | (0x40 if bhs.immediate else 0) | (0x80 if bhs.reserved0 else 0)
    return _BHS.pack(
        b0, bhs.flags, bhs.b2, bhs.b3,
        (bhs.total_ahs_length << 24) | bhs.data_segment_length,
        bhs.lun, bhs.itt, *words,
    )


def _fits(value: object, limit: int) -> bool:
    """``value`` is an int (bool and IntEnum included) in 0..``limit``."""
    return isinstance(value, int) and 0 <= value <= limit
