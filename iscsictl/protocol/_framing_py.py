"""Framing: a byte stream in, whole PDUs out (pure-Python reference).

:class:`PDUReader` takes bytes as they arrive (one at a time or many PDUs in
one chunk) and yields :class:`RawPDU` objects with digests checked.  It knows
the negotiated digests and the receive limits, and refuses a PDU whose
DataSegmentLength or TotalAHSLength is over those limits as soon as its BHS is
in, before buffering its payload (RFC 7143 §7.8: such a stream cannot be
resynchronised, so the error is fatal).

``needed()`` tells a shell how many more bytes complete the next PDU, so it can
read exactly one PDU and leave every later byte in the socket: that is how a
login socket is handed to the kernel with nothing of the kernel's lost.

``_fastpath/framing.pyx`` is the Cython twin with the same API.
"""

from __future__ import annotations

from ._bhs_py import _Flag, _Ssize
from .bhs import RawPDU, decode_bhs
from .constants import BHS_LENGTH, LOGIN_MAX_DATA_SEGMENT_LENGTH
from .digest import crc32c_digest
from .errors import DataDigestError, DataSegmentTooLong, FramingError, HeaderDigestError

__all__ = ["PDUReader", "MAX_AHS_LENGTH"]

MAX_AHS_LENGTH = 255 * 4  #: the most TotalAHSLength can announce, bytes


class PDUReader:
    """Turns a byte stream into whole PDUs.

    Args:
        header_digest: a CRC32C header digest follows BHS+AHS.
        data_digest: a CRC32C data digest follows data+padding (when DSL > 0).
        max_data_segment_length: the largest DataSegmentLength accepted, bytes
            (our MaxRecvDataSegmentLength; 8192 during login).
        max_ahs_length: the largest TotalAHSLength accepted, bytes.

    A fatal error (header digest mismatch, a length over the limits) leaves
    the reader broken: every later call raises the same error.
    """

    # typed as the Cython twin's attributes (bint, Py_ssize_t): checked when assigned
    header_digest = _Flag()
    data_digest = _Flag()
    max_data_segment_length = _Ssize()
    max_ahs_length = _Ssize()

    def __init__(
        self,
        header_digest: bool = False,
        data_digest: bool = False,
        max_data_segment_length: int = LOGIN_MAX_DATA_SEGMENT_LENGTH,
        max_ahs_length: int = MAX_AHS_LENGTH,
    ) -> None:
        self._buf = bytearray()
        self._bhs = None  # decoded BHS of the PDU being assembled
        self._total = 0  # whole length of that PDU, bytes
        self._hd = self._dd = False  # its digests, as framed (set_digests: later PDUs)
        self._error: Exception | None = None
        self._pending: DataDigestError | None = None  # held back by pdus()
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.max_data_segment_length = max_data_segment_length
        self.max_ahs_length = max_ahs_length

    # -- configuration --------------------------------------------------------
    def set_digests(self, header_digest: bool, data_digest: bool) -> None:
        """Switch digests on or off (after login negotiated them).

        The settings apply to the PDUs framed from now on: a PDU whose BHS
        ``needed()`` or ``next_pdu()`` has already framed keeps the length and
        digests it was framed with.
        """
        self.header_digest = header_digest
        self.data_digest = data_digest

    def set_max_data_segment_length(self, length: int) -> None:
        """Set the DataSegmentLength limit, bytes (after negotiation)."""
        self.max_data_segment_length = length

    # -- input ----------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a returned PDU."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._error is not None:
            raise self._error
        self._buf += data

    def needed(self) -> int:
        """Bytes still missing to complete the next PDU (at least 1 if none
        is buffered; 0 when a whole PDU is ready)."""
        if self._error is not None:
            raise self._error
        if self._bhs is None:
            if len(self._buf) < BHS_LENGTH:
                return BHS_LENGTH - len(self._buf)
            self._start_pdu()
        return max(self._total - len(self._buf), 0)

    # -- output ---------------------------------------------------------------
    def next_pdu(self) -> RawPDU | None:
        """The next whole PDU, or None until more bytes arrive.

        Raises:
            HeaderDigestError, FramingError: fatal, the reader is broken.
            DataDigestError: the PDU (``.pdu``) was consumed; the stream goes on.
        """
        if self._error is not None:
            raise self._error
        if self._pending is not None:
            err, self._pending = self._pending, None
            raise err
        buf = self._buf
        if self._bhs is None:
            if len(buf) < BHS_LENGTH:
                return None
            self._start_pdu()
        total = self._total
        if len(buf) < total:
            return None
        bhs = self._bhs
        self._bhs = None
        mv = memoryview(buf)
        try:
            ahs_end = BHS_LENGTH + bhs.total_ahs_length * 4
            pos = ahs_end
            if self._hd:
                if crc32c_digest(mv[:ahs_end]) != mv[pos:pos + 4]:
                    self._error = HeaderDigestError(
                        f"header digest mismatch (opcode 0x{bhs.opcode:02x}, ITT 0x{bhs.itt:08x})"
                    )
                    raise self._error
                pos += 4
            dsl = bhs.data_segment_length
            raw = RawPDU(bhs, bytes(mv[:BHS_LENGTH]), bytes(mv[BHS_LENGTH:ahs_end]),
                         bytes(mv[pos:pos + dsl]))
            if self._dd and dsl:
                end = pos + dsl + (-dsl & 3)
                if crc32c_digest(mv[pos:end]) != mv[end:end + 4]:
                    raise DataDigestError(
                        f"data digest mismatch (opcode 0x{bhs.opcode:02x}, ITT 0x{bhs.itt:08x})",
                        raw,
                    )
        finally:
            mv.release()
            if self._error is None:
                del buf[:total]
        return raw

    def pdus(self) -> list[RawPDU]:
        """Every whole PDU buffered now.

        A data digest mismatch ends the list: when PDUs came before it, they
        are returned and the DataDigestError is raised by the next call (so
        no good PDU already consumed is lost).
        """
        out: list[RawPDU] = []
        while True:
            try:
                pdu = self.next_pdu()
            except DataDigestError as exc:
                if not out:
                    raise
                self._pending = exc
                return out
            if pdu is None:
                return out
            out.append(pdu)

    # -- internals ------------------------------------------------------------
    def _start_pdu(self) -> None:
        bhs = decode_bhs(self._buf)
        ahs = bhs.total_ahs_length * 4
        dsl = bhs.data_segment_length
        if dsl > self.max_data_segment_length:
            self._error = DataSegmentTooLong(dsl, self.max_data_segment_length)
            raise self._error
        if ahs > self.max_ahs_length:
            self._error = FramingError(
                f"TotalAHSLength {ahs} bytes exceeds the limit of {self.max_ahs_length}"
            )
            raise self._error
        hd, dd = bool(self.header_digest), bool(self.data_digest)
        total = BHS_LENGTH + ahs + dsl + (-dsl & 3)
        if hd:
            total += 4
        if dd and dsl:
            total += 4
        self._bhs = bhs
        self._total = total
        self._hd, self._dd = hd, dd
