"""Typed errors of the sans-I/O core.

Every error a peer can provoke is an :class:`ISCSIProtocolError` subclass;
nothing else escapes the decoders.  An error that maps to a Reject PDU carries
the RFC 7143 reason (§11.17.1) in ``reject_reason``; one that makes the
connection unusable (a header digest error, a length that cannot be trusted)
sets ``fatal``: the caller must drop the connection (§7.8).
"""

from __future__ import annotations

from .constants import RejectReason

__all__ = [
    "AHSError",
    "DataDigestError",
    "DataSegmentTooLong",
    "DigestError",
    "FramingError",
    "HeaderDigestError",
    "InvalidISCSIName",
    "InvalidPDUField",
    "ISCSIProtocolError",
    "PDUError",
    "ReservedFieldError",
    "TruncatedPDU",
    "UnknownOpcode",
]


class ISCSIProtocolError(Exception):
    """Base of every protocol error.

    Attributes:
        reject_reason: the Reject reason code that answers this error, or None
            when the error is not answered with a Reject.
        fatal: True when the byte stream can no longer be trusted and the
            connection must be dropped.
    """

    reject_reason: RejectReason | None = RejectReason.PROTOCOL_ERROR
    fatal: bool = False


class PDUError(ISCSIProtocolError):
    """A PDU that does not follow its RFC 7143 §11 layout."""


class UnknownOpcode(PDUError):
    """An opcode that RFC 7143 does not define (or not for this direction)."""

    reject_reason = RejectReason.COMMAND_NOT_SUPPORTED

    def __init__(self, opcode: int) -> None:
        super().__init__(f"unknown or unsupported opcode 0x{opcode:02x}")
        self.opcode = opcode


class InvalidPDUField(PDUError):
    """A defined field carries a reserved or impossible value (§11.2)."""

    reject_reason = RejectReason.INVALID_PDU_FIELD


class ReservedFieldError(PDUError):
    """Non-zero reserved bits, reported only by strict decoding.

    RFC 7143 §11.2 asks receivers to ignore reserved fields; the decoders do so
    by default and raise this only with ``strict=True`` (for conformance checks).
    """

    reject_reason = RejectReason.INVALID_PDU_FIELD


class TruncatedPDU(PDUError):
    """Fewer bytes than a BHS, or than the lengths the BHS announces."""


class AHSError(PDUError):
    """TotalAHSLength and the AHS entries inside it disagree (§11.2.2)."""


class FramingError(PDUError):
    """The stream announces a PDU the receiver must not buffer.

    Raised before any payload is read, so no memory is committed to it.  The
    lengths are believed to be what the peer meant, but the connection is
    dropped all the same: the payload was never consumed.
    """

    fatal = True


class DataSegmentTooLong(FramingError):
    """DataSegmentLength beyond the negotiated MaxRecvDataSegmentLength."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"DataSegmentLength {length} exceeds MaxRecvDataSegmentLength {limit}"
        )
        self.length = length
        self.limit = limit


class DigestError(ISCSIProtocolError):
    """A CRC32C digest that does not match (§13.1)."""


class HeaderDigestError(DigestError):
    """Header digest mismatch: lengths cannot be trusted, drop the connection."""

    fatal = True
    reject_reason = None


class DataDigestError(DigestError):
    """Data digest mismatch: the PDU is discarded; its header is trusted, so the
    connection can frame the next one (§7.8).  A target answers such a PDU with a Reject
    (reason DATA_DIGEST_ERROR, :attr:`reject_reason`); an initiator, which sends no
    Reject, discards it (this project's userspace sessions then end the exchange).

    Attributes:
        pdu: the raw PDU whose data digest failed (its header is trusted).
    """

    reject_reason = RejectReason.DATA_DIGEST_ERROR

    def __init__(self, message: str, pdu: object = None) -> None:
        super().__init__(message)
        self.pdu = pdu


class InvalidISCSIName(ValueError):
    """An iSCSI name that breaks RFC 3720 §3.2.6 / RFC 3722."""
