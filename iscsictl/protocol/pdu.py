"""Typed iSCSI PDUs with RFC 7143 field names, and their codec.

Each PDU class is a frozen dataclass whose ``LAYOUT`` table places its fields
in the 48-byte BHS (RFC 7143 §11, one figure per opcode).  One generic codec
reads and writes every class from that table, so the table is the single
source of the wire format; bits no field claims are reserved, and strict
decoding reports them.

Shapes: integers are unsigned and big-endian on the wire; ``lun`` is the raw
8-byte SAM LUN field (see :mod:`iscsictl.protocol.lun`); ``isid`` is 6 bytes;
``data`` is the data segment without padding; ``ahs`` is a tuple of
:class:`AHS`.  ``encode()`` adds padding and, when asked, CRC32C digests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import index
from typing import Any, ClassVar, NamedTuple

from .bhs import RawPDU, decode_bhs
from .constants import (
    BHS_LENGTH,
    RESERVED_TAG,
    AHSType,
    LoginStage,
    LoginStatus,
    Opcode,
)
from .digest import crc32c_digest, pad_length
from .errors import (
    AHSError,
    DataDigestError,
    HeaderDigestError,
    InvalidPDUField,
    ReservedFieldError,
    TruncatedPDU,
    UnknownOpcode,
)

__all__ = [
    "AHS",
    "AsyncMessage",
    "LoginRequest",
    "LoginResponse",
    "LogoutRequest",
    "LogoutResponse",
    "NOPIn",
    "NOPOut",
    "PDU",
    "PDU_CLASSES",
    "R2T",
    "Reject",
    "SCSICommand",
    "SCSIDataIn",
    "SCSIDataOut",
    "SCSIResponse",
    "SNACKRequest",
    "TaskManagementRequest",
    "TaskManagementResponse",
    "TextRequest",
    "TextResponse",
    "decode_ahs",
    "decode_pdu",
    "encode_ahs",
    "parse_pdu",
]

_ZERO_LUN = bytes(8)


class Field(NamedTuple):
    """Where a PDU field lives in the BHS.

    ``offset``/``size`` in bytes; ``mask`` selects bits of a one-byte field
    (the value is shifted down); ``kind`` is int, bool or bytes.
    """

    name: str
    offset: int
    size: int = 4
    mask: int = 0
    kind: type = int


def _u(name: str, offset: int, size: int = 4) -> Field:
    return Field(name, offset, size)


def _bit(name: str, offset: int, mask: int) -> Field:
    return Field(name, offset, 1, mask, bool)


def _bits(name: str, offset: int, mask: int) -> Field:
    return Field(name, offset, 1, mask, int)


def _raw(name: str, offset: int, size: int) -> Field:
    return Field(name, offset, size, 0, bytes)


def _shift(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


# ---------------------------------------------------------------------------
# Additional Header Segments (§11.2.2)


@dataclass(frozen=True, slots=True)
class AHS:
    """One Additional Header Segment.

    Attributes:
        ahs_type: AHSType (§11.2.2.2), 0..63.
        specific: the AHS-Specific bytes, AHSLength of them (the byte after
            AHSType included), without padding.
    """

    ahs_type: int
    specific: bytes


def encode_ahs(segments: tuple[AHS, ...] | list[AHS]) -> bytes:
    """Concatenate AHS entries, each padded to 4 bytes."""
    out = bytearray()
    for seg in segments:
        n = len(seg.specific)
        if n > 0xFFFF or not 0 <= seg.ahs_type <= 0x3F:
            raise ValueError(f"AHS type {seg.ahs_type} with {n} bytes cannot be encoded")
        out += n.to_bytes(2, "big") + bytes((seg.ahs_type,)) + seg.specific
        out += bytes(pad_length(3 + n))
    return bytes(out)


def decode_ahs(buf: bytes, strict: bool = False) -> tuple[AHS, ...]:
    """Split TotalAHSLength*4 bytes into AHS entries.

    Raises:
        AHSError: an entry's AHSLength runs past the end (the length lies).
        ReservedFieldError: (strict) reserved AHSType bits set.
    """
    out = []
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 4:
            raise AHSError(f"{len(buf) - pos} stray bytes after the last AHS")
        length = int.from_bytes(buf[pos:pos + 2], "big")
        ahs_type = buf[pos + 2]
        end = pos + 3 + length
        if end > len(buf):
            raise AHSError(
                f"AHSLength {length} at offset {pos} runs past TotalAHSLength {len(buf)}"
            )
        if strict and ahs_type & 0xC0:
            raise ReservedFieldError(f"reserved AHSType bits set: 0x{ahs_type:02x}")
        out.append(AHS(ahs_type & 0x3F, bytes(buf[pos + 3:end])))
        pos = end + pad_length(3 + length)
    if pos != len(buf):
        raise AHSError("AHS padding runs past TotalAHSLength")
    return tuple(out)


# ---------------------------------------------------------------------------
# The PDU base and the generic codec


@dataclass(frozen=True, slots=True, kw_only=True)
class PDU:
    """Base of every typed PDU.

    Class attributes:
        OPCODE: the :class:`Opcode`.
        LAYOUT: the BHS fields after byte 0 and the lengths (bytes 4-7).
        AHS_ALLOWED / DATA_ALLOWED: False where the RFC fixes the length at 0.
    """

    OPCODE: ClassVar[Opcode]
    LAYOUT: ClassVar[tuple[Field, ...]]
    AHS_ALLOWED: ClassVar[bool] = True
    DATA_ALLOWED: ClassVar[bool] = True
    _RESERVED_MASK: ClassVar[int] = 0

    ahs: tuple[AHS, ...] = ()
    data: bytes = b""

    # -- hooks a class overrides when a field spans BHS and AHS ---------------
    def _wire_values(self) -> tuple[dict[str, Any], tuple[AHS, ...]]:
        return {f.name: getattr(self, f.name) for f in self.LAYOUT}, self.ahs

    @classmethod
    def _from_wire(cls, values: dict[str, Any], ahs: tuple[AHS, ...], data: bytes) -> PDU:
        return cls(ahs=ahs, data=data, **values)

    def _validate(self) -> None:
        """Semantic checks on a decoded PDU (reserved code values, §11.2)."""

    # -- encoding ---------------------------------------------------------------
    def encode_header(self) -> tuple[bytes, bytes]:
        """The 48-byte BHS and the AHS bytes of this PDU."""
        values, ahs = self._wire_values()
        ahs_bytes = encode_ahs(ahs)
        if (ahs_bytes and not self.AHS_ALLOWED) or (self.data and not self.DATA_ALLOWED):
            raise ValueError(f"{type(self).__name__} carries no AHS or data segment")
        hdr = bytearray(BHS_LENGTH)
        hdr[0] = self.OPCODE | (0x40 if values.get("immediate") else 0)
        for f in self.LAYOUT:
            v = values[f.name]
            if f.name == "immediate":
                continue
            if f.kind is bytes:
                if len(v) != f.size:
                    raise ValueError(f"{f.name} needs {f.size} bytes, got {len(v)}")
                hdr[f.offset:f.offset + f.size] = v
            elif f.mask:
                v = _int(f.name, v) << _shift(f.mask)
                if v & ~f.mask:
                    raise ValueError(f"{f.name}={values[f.name]} does not fit its bits")
                hdr[f.offset] |= v
            else:
                try:
                    hdr[f.offset:f.offset + f.size] = _int(f.name, v).to_bytes(f.size, "big")
                except OverflowError:
                    raise ValueError(f"{f.name}={v} does not fit {f.size} bytes") from None
        if len(ahs_bytes) > 255 * 4:
            raise ValueError(f"{len(ahs_bytes)} bytes of AHS exceed TotalAHSLength 255 words")
        hdr[4] = len(ahs_bytes) // 4
        if len(self.data) > 0xFFFFFF:
            raise ValueError("data segment longer than 2**24 - 1 bytes")
        hdr[5:8] = len(self.data).to_bytes(3, "big")
        return bytes(hdr), ahs_bytes

    def encode(self, header_digest: bool = False, data_digest: bool = False) -> bytes:
        """The PDU on the wire: BHS, AHS, [header digest], data, pad, [data digest].

        Args:
            header_digest: append CRC32C over BHS+AHS (HeaderDigest=CRC32C).
            data_digest: append CRC32C over data+padding when data is present.
        Raises:
            ValueError: a field is not an integer (a float or str is not rounded
                or parsed) or does not fit its width.
        """
        hdr, ahs_bytes = self.encode_header()
        out = [hdr, ahs_bytes]
        if header_digest:
            out.append(crc32c_digest(hdr + ahs_bytes))
        if self.data:
            padded = self.data + bytes(pad_length(len(self.data)))
            out.append(padded)
            if data_digest:
                out.append(crc32c_digest(padded))
        return b"".join(out)

    # -- convenience --------------------------------------------------------------
    @property
    def opcode(self) -> Opcode:
        return self.OPCODE


def _int(name: str, value: Any) -> int:
    """``value`` as an int: an int, bool or IntEnum, never a float or str rounded or parsed.

    Raises:
        ValueError: anything else.
    """
    try:
        return index(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def _reserved_mask(cls: type[PDU]) -> int:
    """All BHS bits that no field of ``cls`` (nor the common fields) claims."""
    used = bytearray(BHS_LENGTH)
    # the I bit (byte 0 bit 6) only where the PDU has one: it is reserved in
    # every target PDU and in SCSI Data-Out (§11.7.1) and SNACK Request (§11.16)
    used[0] = 0x3F | (0x40 if any(f.name == "immediate" for f in cls.LAYOUT) else 0)
    used[4:8] = b"\xff\xff\xff\xff"  # TotalAHSLength, DataSegmentLength
    for f in cls.LAYOUT:
        if f.name == "immediate":
            continue
        if f.mask:
            used[f.offset] |= f.mask
        else:
            used[f.offset:f.offset + f.size] = b"\xff" * f.size
    return ~int.from_bytes(used, "big") & ((1 << (8 * BHS_LENGTH)) - 1)


PDU_CLASSES: dict[int, type[PDU]] = {}


def _register(cls: type[PDU]) -> type[PDU]:
    cls._RESERVED_MASK = _reserved_mask(cls)
    names = {f.name for f in fields(cls)}
    missing = [f.name for f in cls.LAYOUT if f.name not in names]
    assert not missing, f"{cls.__name__}: LAYOUT names {missing} are not fields"
    PDU_CLASSES[cls.OPCODE] = cls
    return cls


def decode_pdu(raw: RawPDU, strict: bool = False) -> PDU:
    """Give a framed PDU its type and RFC field names.

    Args:
        raw: a whole PDU from :class:`iscsictl.protocol.framing.PDUReader`.
        strict: also report non-zero reserved bits (RFC 7143 §11.2 has
            receivers ignore them; strict mode is for conformance checks).
    Raises:
        UnknownOpcode, InvalidPDUField, ReservedFieldError, AHSError.
    """
    hdr = raw.header
    cls = PDU_CLASSES.get(hdr[0] & 0x3F)
    if cls is None:
        raise UnknownOpcode(hdr[0] & 0x3F)
    if hdr[4] and not cls.AHS_ALLOWED:
        raise InvalidPDUField(f"{cls.__name__} must have TotalAHSLength 0, got {hdr[4]}")
    if raw.data and not cls.DATA_ALLOWED:
        raise InvalidPDUField(f"{cls.__name__} must have DataSegmentLength 0")
    if strict and int.from_bytes(hdr, "big") & cls._RESERVED_MASK:
        bits = int.from_bytes(hdr, "big") & cls._RESERVED_MASK
        byte = BHS_LENGTH - 1 - (bits.bit_length() - 1) // 8
        raise ReservedFieldError(f"{cls.__name__}: reserved bits set in BHS byte {byte}")
    values: dict[str, Any] = {}
    for f in cls.LAYOUT:
        if f.name == "immediate":
            values[f.name] = bool(hdr[0] & 0x40)
        elif f.kind is bytes:
            values[f.name] = bytes(hdr[f.offset:f.offset + f.size])
        elif f.mask:
            v = (hdr[f.offset] & f.mask) >> _shift(f.mask)
            values[f.name] = bool(v) if f.kind is bool else v
        else:
            values[f.name] = int.from_bytes(hdr[f.offset:f.offset + f.size], "big")
    pdu = cls._from_wire(values, decode_ahs(bytes(raw.ahs), strict), bytes(raw.data))
    pdu._validate()
    return pdu


def parse_pdu(
    buf: bytes,
    header_digest: bool = False,
    data_digest: bool = False,
    strict: bool = False,
) -> PDU:
    """Decode exactly one whole PDU held in ``buf`` (tests, pcaps, tools).

    Raises:
        TruncatedPDU: ``buf`` is shorter or longer than the PDU it announces.
        HeaderDigestError, DataDigestError, and the errors of :func:`decode_pdu`.
    """
    bhs = decode_bhs(buf)
    ahs_len = bhs.total_ahs_length * 4
    pos = BHS_LENGTH + ahs_len
    dsl = bhs.data_segment_length
    need = pos + (4 if header_digest else 0) + dsl + pad_length(dsl)
    need += 4 if (data_digest and dsl) else 0
    if len(buf) != need:
        raise TruncatedPDU(f"PDU announces {need} bytes, buffer holds {len(buf)}")
    if header_digest:
        if crc32c_digest(buf[:pos]) != buf[pos:pos + 4]:
            raise HeaderDigestError("header digest mismatch")
        pos += 4
    data = buf[pos:pos + dsl]
    raw = RawPDU(bhs, bytes(buf[:BHS_LENGTH]), bytes(buf[BHS_LENGTH:BHS_LENGTH + ahs_len]), bytes(data))
    if data_digest and dsl:
        end = pos + dsl + pad_length(dsl)
        if crc32c_digest(buf[pos:end]) != buf[end:end + 4]:
            raise DataDigestError("data digest mismatch", raw)
    return decode_pdu(raw, strict)


# ---------------------------------------------------------------------------
# Helpers for fields several PDUs share


def _sense_data(data: bytes) -> bytes:
    """SenseLength (2 bytes) + sense data at the start of a data segment
    (§11.4.7.2, §11.9.4); empty when the segment holds none."""
    if len(data) < 2:
        return b""
    n = int.from_bytes(data[:2], "big")
    if 2 + n > len(data):
        raise InvalidPDUField(f"SenseLength {n} runs past the data segment")
    return data[2:2 + n]


def _check_login_stages(pdu: LoginRequest | LoginResponse) -> None:
    # NSG is valid only when T is 1; otherwise it is reserved (§11.12.3), and a
    # receiver ignores reserved fields (§11.2): it is kept as received, unchecked
    for name in ("csg", "nsg") if pdu.transit else ("csg",):
        v = getattr(pdu, name)
        if v not in LoginStage._value2member_map_:
            raise InvalidPDUField(f"{type(pdu).__name__}: {name.upper()}={v} is reserved")
    if pdu.transit and pdu.continue_:
        raise InvalidPDUField(f"{type(pdu).__name__}: T and C both set (§11.12.2)")


# ---------------------------------------------------------------------------
# Initiator PDUs


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class NOPOut(PDU):
    """NOP-Out (§11.18): a ping, or the answer to a target's NOP-In."""

    OPCODE = Opcode.NOP_OUT
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("final", 1, 0x80), _raw("lun", 8, 8),
        _u("itt", 16), _u("ttt", 20), _u("cmdsn", 24), _u("exp_statsn", 28),
    )
    immediate: bool = True
    final: bool = True
    lun: bytes = _ZERO_LUN
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SCSICommand(PDU):
    """SCSI Command (§11.3).

    ``cdb`` is the whole CDB: bytes beyond 16 travel in an Extended CDB AHS
    (§11.2.2.3); ``expected_bidi_read_length`` travels in its own AHS
    (§11.2.2.4).  ``ahs`` holds any other AHS.
    """

    OPCODE = Opcode.SCSI_COMMAND
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("final", 1, 0x80), _bit("read", 1, 0x40),
        _bit("write", 1, 0x20), _bits("attr", 1, 0x07), _raw("lun", 8, 8), _u("itt", 16),
        _u("expected_data_transfer_length", 20), _u("cmdsn", 24), _u("exp_statsn", 28),
        _raw("cdb", 32, 16),
    )
    immediate: bool = False
    final: bool = True
    read: bool = False
    write: bool = False
    attr: int = 1  # SIMPLE
    lun: bytes = _ZERO_LUN
    itt: int = 0
    expected_data_transfer_length: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0
    cdb: bytes = bytes(16)
    expected_bidi_read_length: int | None = None

    def _wire_values(self) -> tuple[dict[str, Any], tuple[AHS, ...]]:
        values, ahs = PDU._wire_values(self)
        cdb = self.cdb
        extra: list[AHS] = []
        if len(cdb) > 16:
            extra.append(AHS(AHSType.EXTENDED_CDB, b"\0" + cdb[16:]))
        values["cdb"] = cdb[:16].ljust(16, b"\0")
        if self.expected_bidi_read_length is not None:
            n = _int("expected_bidi_read_length", self.expected_bidi_read_length)
            if not 0 <= n <= 0xFFFFFFFF:
                raise ValueError(f"expected_bidi_read_length={n} does not fit 4 bytes")
            extra.append(AHS(
                AHSType.EXPECTED_BIDIRECTIONAL_READ_DATA_LENGTH,
                b"\0" + n.to_bytes(4, "big"),
            ))
        return values, tuple(extra) + tuple(ahs)

    @classmethod
    def _from_wire(cls, values: dict[str, Any], ahs: tuple[AHS, ...], data: bytes) -> PDU:
        rest = []
        for seg in ahs:
            if seg.ahs_type == AHSType.EXTENDED_CDB:
                if len(seg.specific) < 2:
                    raise AHSError("empty Extended CDB AHS")
                values["cdb"] = values["cdb"] + seg.specific[1:]
            elif seg.ahs_type == AHSType.EXPECTED_BIDIRECTIONAL_READ_DATA_LENGTH:
                if len(seg.specific) != 5:
                    raise AHSError("Expected Bidirectional Read Data Length AHS needs AHSLength 5")
                values["expected_bidi_read_length"] = int.from_bytes(seg.specific[1:], "big")
            else:
                rest.append(seg)
        return cls(ahs=tuple(rest), data=data, **values)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagementRequest(PDU):
    """Task Management Function Request (§11.5)."""

    OPCODE = Opcode.TASK_MGMT_REQUEST
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("final", 1, 0x80), _bits("function", 1, 0x7F),
        _raw("lun", 8, 8), _u("itt", 16), _u("referenced_task_tag", 20), _u("cmdsn", 24),
        _u("exp_statsn", 28), _u("ref_cmdsn", 32), _u("exp_datasn", 36),
    )
    immediate: bool = True
    final: bool = True
    function: int = 1
    lun: bytes = _ZERO_LUN
    itt: int = 0
    referenced_task_tag: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0
    ref_cmdsn: int = 0
    exp_datasn: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LoginRequest(PDU):
    """Login Request (§11.12).  The I bit is always 1."""

    OPCODE = Opcode.LOGIN_REQUEST
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("transit", 1, 0x80), _bit("continue_", 1, 0x40),
        _bits("csg", 1, 0x0C), _bits("nsg", 1, 0x03), _u("version_max", 2, 1),
        _u("version_min", 3, 1), _raw("isid", 8, 6), _u("tsih", 14, 2), _u("itt", 16),
        _u("cid", 20, 2), _u("cmdsn", 24), _u("exp_statsn", 28),
    )
    immediate: bool = True
    transit: bool = False
    continue_: bool = False
    csg: int = LoginStage.SECURITY_NEGOTIATION
    nsg: int = LoginStage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_min: int = 0
    isid: bytes = bytes(6)
    tsih: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0

    def _validate(self) -> None:
        _check_login_stages(self)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TextRequest(PDU):
    """Text Request (§11.10)."""

    OPCODE = Opcode.TEXT_REQUEST
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("final", 1, 0x80), _bit("continue_", 1, 0x40),
        _raw("lun", 8, 8), _u("itt", 16), _u("ttt", 20), _u("cmdsn", 24), _u("exp_statsn", 28),
    )
    immediate: bool = False
    final: bool = True
    continue_: bool = False
    lun: bytes = _ZERO_LUN
    itt: int = 0
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0

    def _validate(self) -> None:
        if self.final and self.continue_:
            raise InvalidPDUField("TextRequest: F and C both set (§11.10.2)")


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SCSIDataOut(PDU):
    """SCSI Data-Out (§11.7)."""

    OPCODE = Opcode.SCSI_DATA_OUT
    LAYOUT = (
        _bit("final", 1, 0x80), _raw("lun", 8, 8), _u("itt", 16), _u("ttt", 20),
        _u("exp_statsn", 28), _u("datasn", 36), _u("buffer_offset", 40),
    )
    final: bool = True
    lun: bytes = _ZERO_LUN
    itt: int = 0
    ttt: int = RESERVED_TAG
    exp_statsn: int = 0
    datasn: int = 0
    buffer_offset: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LogoutRequest(PDU):
    """Logout Request (§11.14)."""

    OPCODE = Opcode.LOGOUT_REQUEST
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("immediate", 0, 0x40), _bit("final", 1, 0x80), _bits("reason_code", 1, 0x7F),
        _u("itt", 16), _u("cid", 20, 2), _u("cmdsn", 24), _u("exp_statsn", 28),
    )
    immediate: bool = True
    final: bool = True
    reason_code: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SNACKRequest(PDU):
    """SNACK Request (§11.16)."""

    OPCODE = Opcode.SNACK_REQUEST
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("final", 1, 0x80), _bits("type", 1, 0x0F), _raw("lun", 8, 8), _u("itt", 16),
        _u("ttt_or_snack_tag", 20), _u("exp_statsn", 28), _u("begrun", 40), _u("runlength", 44),
    )
    final: bool = True
    type: int = 0
    lun: bytes = _ZERO_LUN
    itt: int = RESERVED_TAG
    ttt_or_snack_tag: int = RESERVED_TAG
    exp_statsn: int = 0
    begrun: int = 0
    runlength: int = 0


# ---------------------------------------------------------------------------
# Target PDUs


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class NOPIn(PDU):
    """NOP-In (§11.19): a target's ping, or the answer to a NOP-Out."""

    OPCODE = Opcode.NOP_IN
    LAYOUT = (
        _bit("final", 1, 0x80), _raw("lun", 8, 8), _u("itt", 16), _u("ttt", 20),
        _u("statsn", 24), _u("exp_cmdsn", 28), _u("max_cmdsn", 32),
    )
    final: bool = True
    lun: bytes = _ZERO_LUN
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SCSIResponse(PDU):
    """SCSI Response (§11.4).  ``data`` is SenseLength + sense + response data."""

    OPCODE = Opcode.SCSI_RESPONSE
    LAYOUT = (
        _bit("final", 1, 0x80), _bit("bidi_read_residual_overflow", 1, 0x10),
        _bit("bidi_read_residual_underflow", 1, 0x08), _bit("residual_overflow", 1, 0x04),
        _bit("residual_underflow", 1, 0x02), _u("response", 2, 1), _u("status", 3, 1),
        _u("itt", 16), _u("snack_tag", 20), _u("statsn", 24), _u("exp_cmdsn", 28),
        _u("max_cmdsn", 32), _u("exp_datasn", 36), _u("bidi_read_residual_count", 40),
        _u("residual_count", 44),
    )
    final: bool = True
    bidi_read_residual_overflow: bool = False
    bidi_read_residual_underflow: bool = False
    residual_overflow: bool = False
    residual_underflow: bool = False
    response: int = 0
    status: int = 0
    itt: int = 0
    snack_tag: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    exp_datasn: int = 0
    bidi_read_residual_count: int = 0
    residual_count: int = 0

    @property
    def sense_data(self) -> bytes:
        """The SCSI sense data (§11.4.7.2): empty when none was sent.

        Raises:
            InvalidPDUField: SenseLength runs past the data segment.
        """
        return _sense_data(self.data)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagementResponse(PDU):
    """Task Management Function Response (§11.6)."""

    OPCODE = Opcode.TASK_MGMT_RESPONSE
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("final", 1, 0x80), _u("response", 2, 1), _u("itt", 16), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32),
    )
    final: bool = True
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LoginResponse(PDU):
    """Login Response (§11.13)."""

    OPCODE = Opcode.LOGIN_RESPONSE
    LAYOUT = (
        _bit("transit", 1, 0x80), _bit("continue_", 1, 0x40), _bits("csg", 1, 0x0C),
        _bits("nsg", 1, 0x03), _u("version_max", 2, 1), _u("version_active", 3, 1),
        _raw("isid", 8, 6), _u("tsih", 14, 2), _u("itt", 16), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("status_class", 36, 1),
        _u("status_detail", 37, 1),
    )
    transit: bool = False
    continue_: bool = False
    csg: int = LoginStage.SECURITY_NEGOTIATION
    nsg: int = LoginStage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_active: int = 0
    isid: bytes = bytes(6)
    tsih: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    status_class: int = 0
    status_detail: int = 0

    @property
    def status(self) -> LoginStatus | int:
        """Status-Class << 8 | Status-Detail, as a LoginStatus when known."""
        code = (self.status_class << 8) | self.status_detail
        try:
            return LoginStatus(code)
        except ValueError:
            return code

    def _validate(self) -> None:
        # a failed login's response (Status-Class not 0) ends the login: its T, C, CSG and
        # NSG carry nothing (§6.3.1), and its status is read whatever they hold, as
        # open-iscsi's iscsi_login_rsp reads it
        if self.status_class == 0:
            _check_login_stages(self)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class TextResponse(PDU):
    """Text Response (§11.11)."""

    OPCODE = Opcode.TEXT_RESPONSE
    LAYOUT = (
        _bit("final", 1, 0x80), _bit("continue_", 1, 0x40), _raw("lun", 8, 8), _u("itt", 16),
        _u("ttt", 20), _u("statsn", 24), _u("exp_cmdsn", 28), _u("max_cmdsn", 32),
    )
    final: bool = True
    continue_: bool = False
    lun: bytes = _ZERO_LUN
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0

    def _validate(self) -> None:
        if self.final and self.continue_:
            raise InvalidPDUField("TextResponse: F and C both set (§11.11.2)")


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SCSIDataIn(PDU):
    """SCSI Data-In (§11.7).  ``status`` is valid only when ``status_present``."""

    OPCODE = Opcode.SCSI_DATA_IN
    LAYOUT = (
        _bit("final", 1, 0x80), _bit("acknowledge", 1, 0x40), _bit("residual_overflow", 1, 0x04),
        _bit("residual_underflow", 1, 0x02), _bit("status_present", 1, 0x01),
        _u("status", 3, 1), _raw("lun", 8, 8), _u("itt", 16), _u("ttt", 20), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("datasn", 36), _u("buffer_offset", 40),
        _u("residual_count", 44),
    )
    final: bool = True
    acknowledge: bool = False
    residual_overflow: bool = False
    residual_underflow: bool = False
    status_present: bool = False
    status: int = 0
    lun: bytes = _ZERO_LUN
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn: int = 0
    buffer_offset: int = 0
    residual_count: int = 0

    def _validate(self) -> None:
        if self.status_present and not self.final:
            raise InvalidPDUField("SCSIDataIn: S bit set without F (§11.7.2)")


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LogoutResponse(PDU):
    """Logout Response (§11.15).  Times in seconds."""

    OPCODE = Opcode.LOGOUT_RESPONSE
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("final", 1, 0x80), _u("response", 2, 1), _u("itt", 16), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("time2wait", 40, 2), _u("time2retain", 42, 2),
    )
    final: bool = True
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    time2wait: int = 0
    time2retain: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class R2T(PDU):
    """Ready To Transfer (§11.8)."""

    OPCODE = Opcode.R2T
    AHS_ALLOWED = False
    DATA_ALLOWED = False
    LAYOUT = (
        _bit("final", 1, 0x80), _raw("lun", 8, 8), _u("itt", 16), _u("ttt", 20), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("r2tsn", 36), _u("buffer_offset", 40),
        _u("desired_data_transfer_length", 44),
    )
    final: bool = True
    lun: bytes = _ZERO_LUN
    itt: int = 0
    ttt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    r2tsn: int = 0
    buffer_offset: int = 0
    desired_data_transfer_length: int = 0


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncMessage(PDU):
    """Asynchronous Message (§11.9).  Parameter meanings depend on async_event."""

    OPCODE = Opcode.ASYNC_MESSAGE
    LAYOUT = (
        _bit("final", 1, 0x80), _raw("lun", 8, 8), _u("itt", 16), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("async_event", 36, 1),
        _u("async_vcode", 37, 1), _u("parameter1", 38, 2), _u("parameter2", 40, 2),
        _u("parameter3", 42, 2),
    )
    final: bool = True
    lun: bytes = _ZERO_LUN
    itt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    async_event: int = 0
    async_vcode: int = 0
    parameter1: int = 0
    parameter2: int = 0
    parameter3: int = 0

    @property
    def sense_data(self) -> bytes:
        """SCSI sense data of a SCSI Async Event (§11.9.4): empty if none.

        Raises:
            InvalidPDUField: SenseLength runs past the data segment.
        """
        return _sense_data(self.data)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(PDU):
    """Reject (§11.17).  ``data`` holds the rejected PDU's header."""

    OPCODE = Opcode.REJECT
    AHS_ALLOWED = False
    LAYOUT = (
        _bit("final", 1, 0x80), _u("reason", 2, 1), _u("itt", 16), _u("statsn", 24),
        _u("exp_cmdsn", 28), _u("max_cmdsn", 32), _u("datasn_r2tsn", 36),
    )
    final: bool = True
    reason: int = 0
    itt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn_r2tsn: int = 0

    @property
    def rejected_header(self) -> bytes:
        """The first 48 bytes of the rejected PDU (or what the target sent)."""
        return self.data[:BHS_LENGTH]
