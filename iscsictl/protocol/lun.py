"""LUN encoding in the 8-byte SAM LUN structure (SAM-5 §4.7; RFC 7143 §11.3.4).

Two addressing methods are supported, as the Linux kernel and LIO use them:

* peripheral device addressing (method 00b, bus 0): LUNs 0..255,
  ``00 LL 00 00 00 00 00 00``;
* flat space addressing (method 01b): LUNs 256..16383,
  ``(0x40 | LUN >> 8) (LUN & 0xff) 00 00 00 00 00 00``.
"""

from __future__ import annotations

__all__ = ["decode_lun", "encode_lun", "MAX_FLAT_LUN"]

MAX_FLAT_LUN = 0x3FFF


def encode_lun(lun: int) -> bytes:
    """The 8-byte LUN field for LUN number ``lun``.

    Raises:
        ValueError: ``lun`` is negative or beyond flat addressing (16383).
    """
    if 0 <= lun <= 0xFF:
        return bytes((0x00, lun)) + bytes(6)
    if lun <= MAX_FLAT_LUN:
        return bytes((0x40 | (lun >> 8), lun & 0xFF)) + bytes(6)
    raise ValueError(f"LUN {lun} is beyond flat space addressing (0..{MAX_FLAT_LUN})")


def decode_lun(field: bytes) -> int:
    """The LUN number of an 8-byte LUN field (first level only).

    Raises:
        ValueError: not 8 bytes, or an addressing method other than peripheral
            (bus 0) and flat space.
    """
    if len(field) != 8:
        raise ValueError(f"a LUN field has 8 bytes, got {len(field)}")
    method = field[0] >> 6
    if method == 0b00:
        bus = field[0] & 0x3F
        if bus:
            raise ValueError(f"peripheral addressing with bus {bus} is not supported")
        return field[1]
    if method == 0b01:
        return ((field[0] & 0x3F) << 8) | field[1]
    raise ValueError(f"LUN addressing method {method:02b}b is not supported")
