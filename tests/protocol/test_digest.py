"""CRC32C against RFC 3720 appendix B.4 (wire order: least significant byte first)."""

from __future__ import annotations

import pytest

from iscsictl.protocol.digest import crc32c_digest, crc32c_value, pad_length

from .test_golden import RFC_READ10, RFC_READ10_CRC

VECTORS = [
    ("32 bytes of zeroes", bytes(32), "aa 36 91 8a"),
    ("32 bytes of ones", b"\xff" * 32, "43 ab a8 62"),
    ("32 bytes of incrementing 00..1f", bytes(range(32)), "4e 79 dd 46"),
    ("32 bytes of decrementing 1f..00", bytes(range(31, -1, -1)), "5c db 3f 11"),
    ("iSCSI Read (10) Command PDU", RFC_READ10, "56 3a 96 d9"),
]


@pytest.mark.parametrize("name,data,wire", VECTORS, ids=[v[0] for v in VECTORS])
def test_rfc3720_b4(name, data, wire):
    assert crc32c_digest(data) == bytes.fromhex(wire)
    assert crc32c_value(data) == int.from_bytes(bytes.fromhex(wire), "little")
    assert crc32c_digest(memoryview(bytearray(data))) == bytes.fromhex(wire)


def test_read10_vector_is_the_golden_one():
    assert RFC_READ10_CRC == bytes.fromhex("563a96d9")


@pytest.mark.parametrize("n,pad", [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (8191, 1)])
def test_pad_length(n, pad):
    assert pad_length(n) == pad
