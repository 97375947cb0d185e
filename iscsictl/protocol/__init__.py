"""The sans-I/O iSCSI core (RFC 7143): PDUs, framing, digests, names, login.

No sockets, no asyncio, no clock, no files: callers feed bytes and the time
in, and get bytes and events out.  See the modules for details:

* :mod:`.pdu` typed PDUs and their codec; :mod:`.bhs` the hot BHS codec;
* :mod:`.framing` byte stream to whole PDUs; :mod:`.digest` CRC32C;
* :mod:`.names` iSCSI names and ISIDs; :mod:`.lun` LUN fields;
* :mod:`.errors` the typed errors; :mod:`.constants` RFC code points.
"""

from .constants import *  # noqa: F401,F403
from .errors import *  # noqa: F401,F403
from .framing import PDUReader
from .lun import decode_lun, encode_lun
from .names import ISID, ISIDAllocator, ISIDFormat, normalize_name, validate_name
from .pdu import *  # noqa: F401,F403
from .pdu import decode_pdu, parse_pdu

__all__ = [
    "ISID", "ISIDAllocator", "ISIDFormat", "PDUReader", "decode_lun", "decode_pdu",
    "encode_lun", "normalize_name", "parse_pdu", "validate_name",
]
