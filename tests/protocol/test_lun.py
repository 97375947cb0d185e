"""LUN numbers and the 8-byte LUN field: the Linux kernel's mapping, which LIO uses for
REPORT LUNS and for a command's LUN (drivers/scsi/scsi_common.c)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsictl.protocol.lun import MAX_LUN, decode_lun, encode_lun

from .strategies import PROPERTY


def int_to_scsilun(lun: int) -> bytes:
    """drivers/scsi/scsi_common.c int_to_scsilun(), line for line."""
    out = bytearray(8)
    for i in range(0, 8, 2):
        out[i] = (lun >> 8) & 0xFF
        out[i + 1] = lun & 0xFF
        lun >>= 16
    return bytes(out)


def scsilun_to_int(field: bytes) -> int:
    """drivers/scsi/scsi_common.c scsilun_to_int(), line for line."""
    lun = 0
    for i in range(0, 8, 2):
        lun |= (field[i] << ((i + 1) * 8)) | (field[i + 1] << (i * 8))
    return lun


@pytest.mark.parametrize("field,number", [
    ("0000000000000000", 0),
    ("00ff000000000000", 255),  # peripheral device addressing, bus 0
    ("0100000000000000", 256),  # LIO's REPORT LUNS entry for LUN 256
    ("3fff000000000000", 16383),
    ("4100000000000000", 0x4100),  # tgt's LUN 256 (flat space): Linux shows 16640
    ("40ff000000000000", 0x40FF),
    ("c101000000000000", 0xC101),  # the REPORT LUNS well-known LUN
    ("0001000500000000", 0x0005_0001),  # a second level: not the same LUN as 1
    ("0102030405060708", 0x0708_0506_0304_0102),
    ("ffffffffffffffff", MAX_LUN),
])
def test_linux_numbers(field, number):
    raw = bytes.fromhex(field)
    assert decode_lun(raw) == number == scsilun_to_int(raw)
    assert encode_lun(number) == raw == int_to_scsilun(number)


@PROPERTY
@given(raw=st.binary(min_size=8, max_size=8))
def test_every_field_round_trips(raw):
    """Any 8 bytes (any addressing method) give one number, which gives the same bytes."""
    n = decode_lun(raw)
    assert n == scsilun_to_int(raw) and 0 <= n <= MAX_LUN
    assert encode_lun(n) == raw


@PROPERTY
@given(n=st.integers(0, MAX_LUN))
def test_every_number_round_trips(n):
    assert encode_lun(n) == int_to_scsilun(n)
    assert decode_lun(encode_lun(n)) == n


@pytest.mark.parametrize("n", [-1, -300, MAX_LUN + 1])
def test_encode_out_of_range(n):
    with pytest.raises(ValueError, match=rf"^LUN {n} is out of range"):
        encode_lun(n)


@pytest.mark.parametrize("field", [b"", bytes(7), bytes(9)])
def test_decode_needs_8_bytes(field):
    with pytest.raises(ValueError, match=f"8 bytes, got {len(field)}"):
        decode_lun(field)
