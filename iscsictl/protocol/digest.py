"""CRC32C header and data digests (RFC 7143 §13.1, RFC 3720 appendix B.4).

The CRC is computed by the ``crc32c`` package (hardware CRC32C where the CPU
has it).  On the wire the 32-bit CRC is sent least significant byte first:
32 zero bytes give the CRC 0x8a9136aa, sent as ``aa 36 91 8a``.  The data
digest covers the data segment *and* its padding.
"""

from __future__ import annotations

from crc32c import crc32c

__all__ = ["crc32c_digest", "crc32c_value", "pad_length"]


def crc32c_value(data: bytes | bytearray | memoryview) -> int:
    """The CRC32C (Castagnoli) of ``data`` as an unsigned 32-bit integer."""
    return crc32c(data)


def crc32c_digest(data: bytes | bytearray | memoryview) -> bytes:
    """The 4-byte iSCSI digest of ``data`` in wire byte order."""
    return crc32c(data).to_bytes(4, "little")


def pad_length(length: int) -> int:
    """Number of pad bytes that bring ``length`` to a 4-byte boundary (§11.2.3)."""
    return -length & 3
