"""The BHS codec twins: same API, same values, same errors; a Cython BHS and
a pure BHS compare equal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsictl.protocol import _bhs_py
from iscsictl.protocol import bhs as selector
from iscsictl.protocol.errors import TruncatedPDU

from .strategies import PROPERTY

FIELDS = ("opcode", "immediate", "reserved0", "flags", "b2", "b3",
          "total_ahs_length", "data_segment_length", "lun", "itt", "words")


@PROPERTY
@given(buf=st.binary(min_size=48, max_size=60), offset=st.integers(0, 12))
def test_decode_encode(impl, buf, offset):
    if len(buf) - offset < 48:
        with pytest.raises(TruncatedPDU):
            impl.bhs.decode_bhs(buf, offset)
        return
    b = impl.bhs.decode_bhs(buf, offset)
    ref = _bhs_py.decode_bhs(buf, offset)
    for name in FIELDS:
        assert getattr(b, name) == getattr(ref, name), name
    assert type(b.words) is tuple and len(b.words) == 7
    assert type(b.immediate) is bool and type(b.reserved0) is bool
    assert b == ref and ref == b and not (b != ref)
    assert impl.bhs.encode_bhs(b) == buf[offset:offset + 48]
    assert _bhs_py.encode_bhs(b) == buf[offset:offset + 48]
    assert impl.bhs.encode_bhs(ref) == buf[offset:offset + 48]
    for kind in (bytes, bytearray, memoryview):
        assert impl.bhs.decode_bhs(kind(buf), offset) == b


def test_attributes_writable(impl):
    b = impl.bhs.BHS(0x25)
    assert b.words == (0,) * 7 and b.immediate is False
    b.flags = 0x81
    b.itt = 0xFFFFFFFF
    b.lun = 0xFFFFFFFFFFFFFFFF
    b.words = (1, 2, 3, 4, 5, 6, 7)
    b.data_segment_length = 0xFFFFFF
    b.immediate = True
    wire = impl.bhs.encode_bhs(b)
    assert wire[0] == 0x65 and wire[1] == 0x81 and wire[5:8] == b"\xff\xff\xff"
    assert wire[8:20] == b"\xff" * 12 and wire[44:48] == b"\0\0\0\x07"
    assert impl.bhs.decode_bhs(wire) == b
    b2 = impl.bhs.BHS(0x25, True, 0x81, 0, 0, 0, 0xFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF,
                      (1, 2, 3, 4, 5, 6, 7))
    assert b2 == b
    b2.b3 = 1
    assert b2 != b


@pytest.mark.parametrize("field,value", [
    ("data_segment_length", 1 << 24), ("total_ahs_length", 256), ("flags", 256),
    ("b2", -1), ("itt", 1 << 32), ("lun", 1 << 64), ("opcode", 64),
    ("words", (0,) * 6), ("words", (0,) * 8), ("words", (0, 0, 0, 0, 0, 0, 1 << 32)),
])
def test_encode_out_of_range(impl, field, value):
    b = impl.bhs.BHS(0)
    setattr(b, field, value)
    assert getattr(b, field) == value  # kept as given, refused on encode
    with pytest.raises(ValueError):
        impl.bhs.encode_bhs(b)
    setattr(b, field, _bhs_py.BHS(0).__getattribute__(field))
    impl.bhs.encode_bhs(b)  # back in range: encodes again


def test_int_enum_values(impl):
    from iscsictl.protocol.constants import Opcode

    b = impl.bhs.BHS(Opcode.NOP_IN, flags=0x80)
    assert b.opcode == 0x20
    assert impl.bhs.encode_bhs(b)[:2] == b"\x20\x80"


def test_raw_pdu(impl):
    b = impl.bhs.BHS(1)
    raw = impl.bhs.RawPDU(b, bytes(48), b"", b"abc")
    assert raw.bhs is b and raw.data == b"abc" and raw.ahs == b""
    assert "RawPDU" in repr(raw) and "BHS" in repr(b)
    raw.data = b"x"
    assert raw.data == b"x"


def test_equality_with_other_types(impl):
    b = impl.bhs.BHS(1)
    assert b != 1 and b != "BHS" and b != None  # noqa: E711


def test_selector_reports_cython_when_built():
    try:
        import iscsictl._fastpath.bhs  # noqa: F401
    except ImportError:
        assert selector.IMPLEMENTATION == "python"
    else:
        assert selector.IMPLEMENTATION == ("python" if selector.NO_EXTENSIONS else "cython")


# --- the twins agree beyond the ints and tuples the project passes -----------------


@pytest.mark.parametrize("words", [[1, 2, 3, 4, 5, 6, 7], range(1, 8)])
def test_words_any_sequence_of_seven(impl, words):
    from collections import namedtuple

    seven = namedtuple("Seven", "a b c d e f g")
    for value in (words, seven(*words)):
        wire = impl.bhs.encode_bhs(impl.bhs.BHS(1, words=value))
        assert wire[20:48] == b"".join(w.to_bytes(4, "big") for w in range(1, 8))


@pytest.mark.parametrize("field,value", [
    ("itt", 2.0), ("lun", 1.5), ("data_segment_length", None), ("total_ahs_length", "1"),
    ("flags", "1"), ("opcode", 1.0), ("b2", b"\x01"), ("words", (0.0,) * 7),
    ("words", iter(range(7))), ("words", None),
])
def test_encode_non_int_is_value_error(impl, field, value):
    """Encode raises ValueError (its documented error) for a value that is not an int,
    not TypeError or struct.error."""
    b = impl.bhs.BHS(1)
    setattr(b, field, value)
    with pytest.raises(ValueError):
        impl.bhs.encode_bhs(b)


def test_encode_names_the_same_field_first(impl):
    """Several bad fields: both twins name the first in one fixed order (the lengths,
    words, then opcode, flags, b2, b3, lun, itt), whatever the order of assignment."""
    b = impl.bhs.BHS(1)
    b.itt = -1
    b.flags = 300
    b.opcode = 99
    with pytest.raises(ValueError, match="^opcode=99 "):
        impl.bhs.encode_bhs(b)
    b.words = (0,) * 6
    with pytest.raises(ValueError, match="seven words"):
        impl.bhs.encode_bhs(b)


def test_decode_offset_past_any_buffer(impl):
    with pytest.raises(TruncatedPDU, match="got 0"):
        impl.bhs.decode_bhs(bytes(48), 1 << 63)
    with pytest.raises(TruncatedPDU, match="got 0"):
        impl.bhs.decode_bhs(bytearray(100), 1 << 70)
    with pytest.raises(ValueError):
        impl.bhs.decode_bhs(bytes(48), -1)


def test_decode_counts_bytes_not_items(impl):
    """A buffer of 4-byte items: 12 items are the 48 bytes of a BHS."""
    import array

    wire = bytes(range(48))
    ref = _bhs_py.decode_bhs(wire)
    for buf in (memoryview(wire).cast("I"), array.array("I", memoryview(wire).cast("I"))):
        assert impl.bhs.decode_bhs(buf) == ref
        assert impl.bhs.decode_bhs(buf, 0).itt == 0x10111213
        with pytest.raises(TruncatedPDU, match="got 44"):
            impl.bhs.decode_bhs(buf, 4)


def test_copy_and_pickle(impl):
    import copy
    import pickle

    b = impl.bhs.BHS(0x25, True, 0x81, 1, 2, 3, 4, 5, 6, (1, 2, 3, 4, 5, 6, 7), True)
    odd = impl.bhs.BHS(1)
    odd.itt = 1 << 40  # kept as given, refused on encode: copied as given
    raw = impl.bhs.RawPDU(b, bytes(48), b"", b"abc")
    for dup in (copy.copy, copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))):
        assert dup(b) == b and dup(b) is not b
        assert dup(odd).itt == 1 << 40
        r = dup(raw)
        assert (r.bhs, r.header, r.ahs, r.data) == (b, bytes(48), b"", b"abc")


def test_flag_fields_read_back_as_booleans(impl):
    """``immediate`` and ``reserved0`` keep the truth of what is assigned (the Cython
    twin's ``bint``), in both twins."""
    b = impl.bhs.BHS(1, immediate="x", reserved0=0)
    assert b.immediate is True and b.reserved0 is False
    b.immediate, b.reserved0 = 0, [1]
    assert b.immediate is False and b.reserved0 is True
    assert impl.bhs.encode_bhs(b)[0] == 0x81
