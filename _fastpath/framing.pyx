# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Framing, Cython twin of iscsictl.protocol._framing_py (RFC 7143 §11.2, §7.8).

Same API and error behaviour as the pure :class:`PDUReader`: ``feed``,
``needed``, ``next_pdu``, ``pdus``, ``buffered``, ``set_digests``,
``set_max_data_segment_length``; fatal errors (header digest mismatch, a
length over the limits) are sticky; a data digest mismatch raises
DataDigestError carrying ``.pdu`` and the stream goes on with the next PDU.

The buffer is one bytearray with a read position: a returned PDU only moves
the position, and consumed bytes are dropped in one piece on the next
``feed``, so framing a long stream costs O(bytes) and never shifts the
buffer once per PDU.  BHS objects come from the Cython BHS twin through its
C API capsule; CRC32C comes from the ``crc32c`` package.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_Import
from cpython.ref cimport Py_DECREF, PyObject
from libc.stdint cimport uint8_t, uint32_t

# crc32c is imported on first digest: its package __init__ reads its version through
# importlib.metadata, which a CLI that never computes a digest should not pay for.
cdef object _crc32c = None

from iscsictl.protocol.constants import LOGIN_MAX_DATA_SEGMENT_LENGTH
from iscsictl.protocol.errors import (
    DataDigestError,
    DataSegmentTooLong,
    FramingError,
    HeaderDigestError,
)

import iscsictl._fastpath.bhs  # the capsule below lives there

__all__ = ["PDUReader", "MAX_AHS_LENGTH"]

MAX_AHS_LENGTH = 255 * 4  #: the most TotalAHSLength can announce, bytes

DEF BHS_LEN = 48
DEF COMPACT_AT = 65536  # drop consumed bytes once this many have piled up

cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_READ

ctypedef struct _BHSAPI:
    PyObject *(*decode)(const uint8_t *p) except NULL
    PyObject *(*make_raw)(object bhs, object header, object ahs, object data) except NULL

cdef _BHSAPI *_api = <_BHSAPI *>PyCapsule_Import(b"iscsictl._fastpath.bhs._C_API", 0)


cdef inline uint32_t _le32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline uint32_t _crc(const uint8_t *p, Py_ssize_t n) except? 0xFFFFFFFF:
    global _crc32c
    if _crc32c is None:
        from crc32c import crc32c
        _crc32c = crc32c
    # The view is of the reader's bytearray through a raw pointer, which locks nothing:
    # the GIL is held for the whole sum (gil_release_mode 0; the package's default lets it
    # go above 32 KiB), so no other thread can resize the buffer under it.
    return _crc32c(PyMemoryView_FromMemory(<char *>p, n, PyBUF_READ), 0, 0)


@cython.auto_pickle(False)
cdef class PDUReader:
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

    cdef bytearray _buf
    cdef Py_ssize_t _pos  # first byte not yet returned in a PDU
    cdef object _bhs  # decoded BHS of the PDU being assembled, or None
    cdef Py_ssize_t _total  # whole length of that PDU, bytes
    cdef Py_ssize_t _ahs_len, _dsl
    cdef bint _hd, _dd  # its digests, as framed (set_digests: later PDUs)
    cdef object _error
    cdef object _pending  # DataDigestError held back by pdus() for the next call
    cdef public bint header_digest
    cdef public bint data_digest
    cdef public Py_ssize_t max_data_segment_length
    cdef public Py_ssize_t max_ahs_length

    def __init__(self, bint header_digest=False, bint data_digest=False,
                 Py_ssize_t max_data_segment_length=LOGIN_MAX_DATA_SEGMENT_LENGTH,
                 Py_ssize_t max_ahs_length=MAX_AHS_LENGTH):
        self._buf = bytearray()
        self._pos = 0
        self._bhs = None
        self._total = 0
        self._hd = self._dd = False
        self._error = None
        self._pending = None
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.max_data_segment_length = max_data_segment_length
        self.max_ahs_length = max_ahs_length

    # -- configuration --------------------------------------------------------
    def set_digests(self, bint header_digest, bint data_digest):
        """Switch digests on or off (after login negotiated them).

        The settings apply to the PDUs framed from now on: a PDU whose BHS
        ``needed()`` or ``next_pdu()`` has already framed keeps the length and
        digests it was framed with.
        """
        self.header_digest = header_digest
        self.data_digest = data_digest

    def set_max_data_segment_length(self, Py_ssize_t length):
        """Set the DataSegmentLength limit, bytes (after negotiation)."""
        self.max_data_segment_length = length

    # -- input ----------------------------------------------------------------
    @property
    def buffered(self):
        """Bytes held that are not yet part of a returned PDU."""
        return PyByteArray_GET_SIZE(self._buf) - self._pos

    def feed(self, data):
        """Append received bytes."""
        if self._error is not None:
            raise self._error
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self._buf)
        if self._pos:
            if self._pos >= size:
                del self._buf[:]
                self._pos = 0
            elif self._pos >= COMPACT_AT or self._pos * 2 >= size:
                del self._buf[:self._pos]
                self._pos = 0
        self._buf += data

    def needed(self):
        """Bytes still missing to complete the next PDU (at least 1 if none
        is buffered; 0 when a whole PDU is ready)."""
        if self._error is not None:
            raise self._error
        cdef Py_ssize_t avail = PyByteArray_GET_SIZE(self._buf) - self._pos
        if self._bhs is None:
            if avail < BHS_LEN:
                return BHS_LEN - avail
            self._start_pdu()
        return max(self._total - avail, 0)

    # -- output ---------------------------------------------------------------
    cpdef next_pdu(self):
        """The next whole PDU, or None until more bytes arrive.

        Raises:
            HeaderDigestError, FramingError: fatal, the reader is broken.
            DataDigestError: the PDU (``.pdu``) was consumed; the stream goes on.
        """
        cdef const uint8_t *p
        cdef Py_ssize_t avail, ahs_end, pos, dsl, end
        cdef PyObject *rawp
        if self._error is not None:
            raise self._error
        if self._pending is not None:
            err, self._pending = self._pending, None
            raise err
        avail = PyByteArray_GET_SIZE(self._buf) - self._pos
        if self._bhs is None:
            if avail < BHS_LEN:
                return None
            self._start_pdu()
        if avail < self._total:
            return None
        dsl = self._dsl
        ahs_end = BHS_LEN + self._ahs_len
        # The reads below go through a raw pointer: keep them inside the bytes buffered.
        # They reach what _start_pdu framed (the flags it recorded, not the attributes
        # now), so this holds whenever avail >= _total; checked all the same.
        end = ahs_end + (4 if self._hd else 0) + dsl + (-dsl & 3) + (4 if self._dd and dsl else 0)
        if end > avail:
            self._error = FramingError(f"PDU of {end} bytes framed as {self._total}")
            raise self._error
        bhs = self._bhs
        self._bhs = None
        p = <const uint8_t *>PyByteArray_AS_STRING(self._buf) + self._pos
        pos = ahs_end
        if self._hd:
            if _crc(p, ahs_end) != _le32(p + pos):
                self._error = HeaderDigestError(
                    f"header digest mismatch (opcode 0x{p[0] & 0x3F:02x}, ITT 0x{bhs.itt:08x})"
                )
                raise self._error
            pos += 4
        rawp = _api.make_raw(
            bhs,
            PyBytes_FromStringAndSize(<const char *>p, BHS_LEN),
            PyBytes_FromStringAndSize(<const char *>p + BHS_LEN, self._ahs_len) if self._ahs_len else b"",
            PyBytes_FromStringAndSize(<const char *>p + pos, dsl) if dsl else b"",
        )
        raw = <object>rawp
        Py_DECREF(raw)
        self._pos += self._total
        if self._dd and dsl:
            end = pos + dsl + (-dsl & 3)
            if _crc(p + pos, end - pos) != _le32(p + end):
                raise DataDigestError(
                    f"data digest mismatch (opcode 0x{p[0] & 0x3F:02x}, ITT 0x{bhs.itt:08x})",
                    raw,
                )
        return raw

    def pdus(self):
        """Every whole PDU buffered now.

        A data digest mismatch ends the list: when PDUs came before it, they
        are returned and the DataDigestError is raised by the next call.
        """
        cdef list out = []
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
    cdef _start_pdu(self):
        cdef const uint8_t *p = <const uint8_t *>PyByteArray_AS_STRING(self._buf) + self._pos
        cdef Py_ssize_t ahs = p[4] * 4
        cdef Py_ssize_t dsl = (<Py_ssize_t>p[5] << 16) | (<Py_ssize_t>p[6] << 8) | p[7]
        cdef Py_ssize_t total
        cdef PyObject *bp
        cdef bint hd = self.header_digest, dd = self.data_digest
        if dsl > self.max_data_segment_length:
            self._error = DataSegmentTooLong(dsl, self.max_data_segment_length)
            raise self._error
        if ahs > self.max_ahs_length:
            self._error = FramingError(
                f"TotalAHSLength {ahs} bytes exceeds the limit of {self.max_ahs_length}"
            )
            raise self._error
        total = BHS_LEN + ahs + dsl + (-dsl & 3)
        if hd:
            total += 4
        if dd and dsl:
            total += 4
        bp = _api.decode(p)
        self._bhs = <object>bp
        Py_DECREF(self._bhs)
        self._ahs_len = ahs
        self._dsl = dsl
        self._total = total
        self._hd = hd
        self._dd = dd
