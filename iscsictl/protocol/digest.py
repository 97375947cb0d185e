"""CRC32C header and data digests (RFC 7143 §13.1, RFC 3720 appendix B.4).

The CRC is computed by the ``crc32c`` package (hardware CRC32C where the CPU
has it).  On the wire the 32-bit CRC is sent least significant byte first:
32 zero bytes give the CRC 0x8a9136aa, sent as ``aa 36 91 8a``.  The data
digest covers the data segment *and* its padding.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["crc32c_digest", "crc32c_value", "pad_length"]

# The crc32c package is imported on first use: its __init__ reads its own version
# through importlib.metadata, which costs more than the rest of a CLI command's
# imports, and most commands (listings, logins through the daemon, discovery
# without digests) never compute a digest.
_crc32c: Callable[[bytes | bytearray | memoryview], int] | None = None


def _load() -> Callable[[bytes | bytearray | memoryview], int]:
    global _crc32c
    from crc32c import crc32c

    _crc32c = crc32c
    return crc32c


def crc32c_value(data: bytes | bytearray | memoryview) -> int:
    """The CRC32C (Castagnoli) of ``data`` as an unsigned 32-bit integer."""
    return (_crc32c or _load())(data)


def crc32c_digest(data: bytes | bytearray | memoryview) -> bytes:
    """The 4-byte iSCSI digest of ``data`` in wire byte order."""
    return (_crc32c or _load())(data).to_bytes(4, "little")


def pad_length(length: int) -> int:
    """Number of pad bytes that bring ``length`` to a 4-byte boundary (§11.2.3)."""
    return -length & 3
