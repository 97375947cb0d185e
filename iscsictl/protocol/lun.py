"""LUN numbers <-> the 8-byte SAM LUN field (SAM-5 §4.7; RFC 7143 §11.3.4).

The mapping is the Linux kernel's (``scsilun_to_int``/``int_to_scsilun`` in
``drivers/scsi/scsi_common.c``), which LIO uses both to fill REPORT LUNS
(``spc_emulate_report_luns``) and to look up a command's LUN
(``scsilun_to_int(&hdr->lun)``): the field is four 16-bit big-endian
addressing levels, and level ``i`` (bytes ``2i`` and ``2i+1``) gives bits
``16i`` to ``16i+15`` of the number.  So:

* LUNs 0..255 are peripheral device addressing (method 00b, bus 0):
  ``00 LL 00 00 00 00 00 00``;
* LUN 256 is ``01 00 00 ...`` (LIO's REPORT LUNS entry for it), and any
  number below 2**16 is ``HH LL 00 ...``;
* a flat space address (method 01b) ``(0x40 | hi) lo 00 ...``, as tgt reports
  its LUNs from 256 up, is the number ``0x4000 + (hi << 8 | lo)``: the number
  Linux shows for that LUN (tgt's LUN 256 is Linux's LUN 16640).

Every 8-byte field has exactly one number and back, so
``encode_lun(decode_lun(field)) == field``: a LUN taken from REPORT LUNS goes
back to the target with the very bytes it sent (SAM's rule), whatever the
addressing method.
"""

from __future__ import annotations

__all__ = ["decode_lun", "encode_lun", "MAX_LUN"]

MAX_LUN = (1 << 64) - 1  #: the largest LUN number: all 64 bits of the field


def encode_lun(lun: int) -> bytes:
    """The 8-byte LUN field for LUN number ``lun`` (kernel ``int_to_scsilun``).

    Args:
        lun: 0..2**64 - 1, as Linux numbers LUNs (e.g. ``0:0:0:LUN`` in sysfs).
    Raises:
        ValueError: ``lun`` is negative or beyond 64 bits.
    """
    if not 0 <= lun <= MAX_LUN:
        raise ValueError(f"LUN {lun} is out of range (0..2**64-1)")
    return b"".join(((lun >> (16 * i)) & 0xFFFF).to_bytes(2, "big") for i in range(4))


def decode_lun(field: bytes) -> int:
    """The LUN number of an 8-byte LUN field (kernel ``scsilun_to_int``): 0..2**64 - 1.

    Raises:
        ValueError: ``field`` is not 8 bytes.
    """
    if len(field) != 8:
        raise ValueError(f"a LUN field has 8 bytes, got {len(field)}")
    return sum(int.from_bytes(field[2 * i:2 * i + 2], "big") << (16 * i) for i in range(4))
