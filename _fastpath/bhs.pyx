# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Basic Header Segment codec, Cython twin of iscsictl.protocol._bhs_py (RFC 7143 §11.2.1).

Same API and semantics as the pure reference: ``BHS`` (the fields every opcode
shares, readable and writable), ``RawPDU``, ``decode_bhs(buf, offset=0)`` and
``encode_bhs(bhs)``.  The errors are the pure module's classes
(:mod:`iscsictl.protocol.errors`), so both implementations raise the same ones.

Decoding reads the 48 bytes through a C pointer and assembles the big-endian
integers by hand; the Python integers of a field are made only when the field
is read.  A value assigned from Python that does not fit its field is kept as
given (so it reads back unchanged, as in the pure class) and makes
``encode_bhs`` raise ValueError, as the pure codec does.  ``words`` takes
any sequence of seven ints and reads back as a tuple.  ``immediate`` and
``reserved0`` are C booleans: they read back as True or False, in both twins.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_INCREF, PyObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from iscsictl.protocol.errors import TruncatedPDU

__all__ = ["BHS", "RawPDU", "decode_bhs", "encode_bhs"]

DEF BHS_LEN = 48

_FIELDS = (
    "opcode", "immediate", "reserved0", "flags", "b2", "b3",
    "total_ahs_length", "data_segment_length", "lun", "itt", "words",
)

# limits of the integer fields, for values assigned from Python
_LIMITS = {
    "opcode": 0x3F, "flags": 0xFF, "b2": 0xFF, "b3": 0xFF, "total_ahs_length": 0xFF,
    "data_segment_length": 0xFFFFFF, "lun": 0xFFFFFFFFFFFFFFFF, "itt": 0xFFFFFFFF,
}


cdef inline uint32_t _be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


@cython.freelist(64)
@cython.auto_pickle(False)
cdef class BHS:
    """The fields of a Basic Header Segment that every opcode shares.

    Attributes (as in the pure class):
        opcode: byte 0 bits 0-5.
        immediate: byte 0 bit 6 (the I bit).
        reserved0: byte 0 bit 7 (reserved: 0 on send).
        flags: byte 1.  b2, b3: bytes 2 and 3.
        total_ahs_length: TotalAHSLength, in 4-byte words.
        data_segment_length: DataSegmentLength, bytes (without padding).
        lun: bytes 8-15 as an unsigned 64-bit integer.
        itt: the Initiator Task Tag.
        words: bytes 20-47 as a tuple of seven unsigned 32-bit integers.
    """

    cdef public bint immediate
    cdef public bint reserved0
    cdef uint8_t _opcode, _flags, _b2, _b3, _ahs
    cdef uint32_t _dsl, _itt
    cdef uint64_t _lun
    cdef uint32_t _w[7]
    cdef dict _odd  # fields assigned values that do not fit: name -> value as given

    def __init__(self, opcode, immediate=False, flags=0, b2=0, b3=0,
                 total_ahs_length=0, data_segment_length=0, lun=0, itt=0,
                 words=(0, 0, 0, 0, 0, 0, 0), reserved0=False):
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

    # -- values assigned from Python ---------------------------------------
    cdef bint _fits(self, str name, object value, object limit):
        """True when ``value`` fits; otherwise it is remembered as given."""
        if isinstance(value, int):  # int, bool, IntEnum (Opcode...)
            if 0 <= value <= limit:
                if self._odd is not None and name in self._odd:
                    del self._odd[name]
                return True
        if self._odd is None:
            self._odd = {}
        self._odd[name] = value
        return False

    cdef object _get(self, str name, object value):
        if self._odd is not None and name in self._odd:
            return self._odd[name]
        return value

    @property
    def opcode(self):
        return self._get("opcode", self._opcode)

    @opcode.setter
    def opcode(self, value):
        if self._fits("opcode", value, 0x3F):
            self._opcode = value

    @property
    def flags(self):
        return self._get("flags", self._flags)

    @flags.setter
    def flags(self, value):
        if self._fits("flags", value, 0xFF):
            self._flags = value

    @property
    def b2(self):
        return self._get("b2", self._b2)

    @b2.setter
    def b2(self, value):
        if self._fits("b2", value, 0xFF):
            self._b2 = value

    @property
    def b3(self):
        return self._get("b3", self._b3)

    @b3.setter
    def b3(self, value):
        if self._fits("b3", value, 0xFF):
            self._b3 = value

    @property
    def total_ahs_length(self):
        return self._get("total_ahs_length", self._ahs)

    @total_ahs_length.setter
    def total_ahs_length(self, value):
        if self._fits("total_ahs_length", value, 0xFF):
            self._ahs = value

    @property
    def data_segment_length(self):
        return self._get("data_segment_length", self._dsl)

    @data_segment_length.setter
    def data_segment_length(self, value):
        if self._fits("data_segment_length", value, 0xFFFFFF):
            self._dsl = value

    @property
    def lun(self):
        return self._get("lun", self._lun)

    @lun.setter
    def lun(self, value):
        if self._fits("lun", value, 0xFFFFFFFFFFFFFFFF):
            self._lun = value

    @property
    def itt(self):
        return self._get("itt", self._itt)

    @itt.setter
    def itt(self, value):
        if self._fits("itt", value, 0xFFFFFFFF):
            self._itt = value

    @property
    def words(self):
        if self._odd is not None and "words" in self._odd:
            return self._odd["words"]
        return (self._w[0], self._w[1], self._w[2], self._w[3],
                self._w[4], self._w[5], self._w[6])

    @words.setter
    def words(self, value):
        # any sequence of seven ints, as the pure codec takes (read back as a tuple)
        cdef int i
        if type(value) is not tuple:
            try:
                if len(value) == 7:
                    value = tuple(value)
            except TypeError:  # not a sequence: kept as given, refused on encode
                pass
        ok = type(value) is tuple and len(value) == 7
        if ok:
            for v in value:
                if not (isinstance(v, int) and 0 <= v <= 0xFFFFFFFF):
                    ok = False
                    break
        if ok:
            for i in range(7):
                self._w[i] = value[i]
            if self._odd is not None and "words" in self._odd:
                del self._odd["words"]
        else:
            if self._odd is None:
                self._odd = {}
            self._odd["words"] = value

    # -- comparison and display -----------------------------------------------
    def __eq__(self, other):
        cdef BHS o
        if isinstance(other, BHS):
            o = <BHS>other
            if self._odd is None and o._odd is None:
                return (self._opcode == o._opcode and self.immediate == o.immediate
                        and self.reserved0 == o.reserved0 and self._flags == o._flags
                        and self._b2 == o._b2 and self._b3 == o._b3 and self._ahs == o._ahs
                        and self._dsl == o._dsl and self._lun == o._lun
                        and self._itt == o._itt
                        and self._w[0] == o._w[0] and self._w[1] == o._w[1]
                        and self._w[2] == o._w[2] and self._w[3] == o._w[3]
                        and self._w[4] == o._w[4] and self._w[5] == o._w[5]
                        and self._w[6] == o._w[6])
        elif type(other).__name__ != "BHS":
            return NotImplemented
        for n in _FIELDS:
            try:
                if getattr(self, n) != getattr(other, n):
                    return False
            except AttributeError:
                return False
        return True

    def __ne__(self, other):
        r = self.__eq__(other)
        if r is NotImplemented:
            return r
        return not r

    __hash__ = None

    def __reduce__(self):  # copy and pickle, as the pure class (odd values kept as given)
        return (BHS, (self.opcode, self.immediate, self.flags, self.b2, self.b3,
                      self.total_ahs_length, self.data_segment_length, self.lun, self.itt,
                      self.words, self.reserved0))

    def __repr__(self):
        return (
            f"BHS(opcode=0x{self.opcode:02x}, immediate={bool(self.immediate)}, "
            f"flags=0x{self.flags:02x}, ahs={self.total_ahs_length}, "
            f"dsl={self.data_segment_length}, itt=0x{self.itt:08x})"
        )


@cython.freelist(64)
@cython.auto_pickle(False)
cdef class RawPDU:
    """One whole PDU as framed from the stream, digests already checked.

    Attributes:
        bhs: the decoded :class:`BHS`.
        header: the 48 BHS bytes as received.
        ahs: the Additional Header Segments (TotalAHSLength * 4 bytes).
        data: the data segment without padding.
    """

    cdef public object bhs
    cdef public object header
    cdef public object ahs
    cdef public object data

    def __init__(self, bhs, header, ahs, data):
        self.bhs = bhs
        self.header = header
        self.ahs = ahs
        self.data = data

    def __reduce__(self):  # copy and pickle, as the pure class
        return (RawPDU, (self.bhs, self.header, self.ahs, self.data))

    def __repr__(self):
        return f"RawPDU({self.bhs!r}, ahs={len(self.ahs)}B, data={len(self.data)}B)"


cdef BHS _decode_ptr(const uint8_t *p):
    """Decode 48 bytes at ``p`` (the caller checked the length)."""
    cdef BHS b = BHS.__new__(BHS)
    cdef uint8_t b0 = p[0]
    cdef int i
    b._opcode = b0 & 0x3F
    b.immediate = (b0 & 0x40) != 0
    b.reserved0 = (b0 & 0x80) != 0
    b._flags = p[1]
    b._b2 = p[2]
    b._b3 = p[3]
    b._ahs = p[4]
    b._dsl = (<uint32_t>p[5] << 16) | (<uint32_t>p[6] << 8) | p[7]
    b._lun = (<uint64_t>_be32(p + 8) << 32) | _be32(p + 12)
    b._itt = _be32(p + 16)
    for i in range(7):
        b._w[i] = _be32(p + 20 + 4 * i)
    return b


# -- C entry points for the framing twin, exported in a capsule ----------------
# (a capsule rather than a cimport: the extension is built from _fastpath/ but
# imported as iscsictl._fastpath, and a cimport would look for the wrong name.)

ctypedef struct _BHSAPI:
    PyObject *(*decode)(const uint8_t *p) except NULL
    PyObject *(*make_raw)(object bhs, object header, object ahs, object data) except NULL


cdef PyObject *_capi_decode(const uint8_t *p) except NULL:
    cdef BHS b = _decode_ptr(p)
    Py_INCREF(b)
    return <PyObject *>b


cdef PyObject *_capi_make_raw(object bhs, object header, object ahs, object data) except NULL:
    cdef RawPDU r = RawPDU.__new__(RawPDU)
    r.bhs = bhs
    r.header = header
    r.ahs = ahs
    r.data = data
    Py_INCREF(r)
    return <PyObject *>r


cdef _BHSAPI _api
_api.decode = _capi_decode
_api.make_raw = _capi_make_raw
_C_API = PyCapsule_New(<void *>&_api, b"iscsictl._fastpath.bhs._C_API", NULL)


def decode_bhs(buf, offset=0):
    """Decode the 48-byte BHS at ``buf[offset:offset+48]``.

    ``buf`` is bytes, bytearray or anything with the buffer protocol; ``offset``
    and the length count bytes, whatever the buffer's item size.

    Raises:
        TruncatedPDU: fewer than 48 bytes are available.
        ValueError: a negative ``offset``.
    """
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    if offset > PY_SSIZE_T_MAX:  # past any buffer: no bytes there
        offset = PY_SSIZE_T_MAX
    return _decode(buf, offset)


cdef _decode(buf, Py_ssize_t offset):
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef BHS out
    if type(buf) is bytes:
        n = PyBytes_GET_SIZE(buf)
        if n - offset < BHS_LEN:
            raise TruncatedPDU(f"BHS needs {BHS_LEN} bytes, got {max(n - offset, 0)}")
        return _decode_ptr(<const uint8_t *>PyBytes_AS_STRING(buf) + offset)
    if type(buf) is bytearray:
        n = PyByteArray_GET_SIZE(buf)
        if n - offset < BHS_LEN:
            raise TruncatedPDU(f"BHS needs {BHS_LEN} bytes, got {max(n - offset, 0)}")
        return _decode_ptr(<const uint8_t *>PyByteArray_AS_STRING(buf) + offset)
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        n = view.len
        if n - offset < BHS_LEN:
            raise TruncatedPDU(f"BHS needs {BHS_LEN} bytes, got {max(n - offset, 0)}")
        out = _decode_ptr(<const uint8_t *>view.buf + offset)
    finally:
        PyBuffer_Release(&view)
    return out


def encode_bhs(bhs):
    """Encode ``bhs`` (this module's BHS or any object with its attributes)
    into 48 bytes.

    Raises:
        ValueError: a field does not fit its width (e.g. DataSegmentLength
            beyond 2**24 - 1, more than seven words).
    """
    cdef BHS b
    cdef uint8_t *p
    cdef int i
    if isinstance(bhs, BHS):
        b = <BHS>bhs
    else:
        b = BHS.__new__(BHS)
        for n in _FIELDS:
            setattr(b, n, getattr(bhs, n))
    if b._odd:
        _raise_odd(b._odd)
    out = PyBytes_FromStringAndSize(NULL, BHS_LEN)
    p = <uint8_t *>PyBytes_AS_STRING(out)
    p[0] = b._opcode | (0x40 if b.immediate else 0) | (0x80 if b.reserved0 else 0)
    p[1] = b._flags
    p[2] = b._b2
    p[3] = b._b3
    p[4] = b._ahs
    p[5] = <uint8_t>(b._dsl >> 16)
    p[6] = <uint8_t>(b._dsl >> 8)
    p[7] = <uint8_t>b._dsl
    _put32(p + 8, <uint32_t>(b._lun >> 32))
    _put32(p + 12, <uint32_t>b._lun)
    _put32(p + 16, b._itt)
    for i in range(7):
        _put32(p + 20 + 4 * i, b._w[i])
    return out


cdef _raise_odd(dict odd):
    # the pure codec's messages, in its order of checks
    if "data_segment_length" in odd:
        raise ValueError(f"DataSegmentLength {odd['data_segment_length']} out of range")
    if "total_ahs_length" in odd:
        raise ValueError(f"TotalAHSLength {odd['total_ahs_length']} out of range")
    if "words" in odd:
        raise ValueError("a BHS has exactly seven words at bytes 20-47, "
                         "each an unsigned 32-bit integer")
    for name in ("opcode", "flags", "b2", "b3", "lun", "itt"):
        if name in odd:
            raise ValueError(f"{name}={odd[name]!r} does not fit its field")
