"""The sans-I/O iSCSI core (RFC 7143): PDUs, framing, digests, names, login.

No sockets, no asyncio, no clock, no files: callers feed bytes and the time
in, and get bytes and events out.  See the modules for details:

* :mod:`.pdu` typed PDUs and their codec; :mod:`.bhs` the hot BHS codec;
* :mod:`.framing` byte stream to whole PDUs; :mod:`.digest` CRC32C;
* :mod:`.names` iSCSI names and ISIDs; :mod:`.lun` LUN fields;
* :mod:`.errors` the typed errors; :mod:`.constants` RFC code points.
"""

import importlib
from typing import Any

#: public name -> defining module (imported on first use: the CLI's paths stay light)
_EXPORTS = {
    "PDUReader": "framing", "decode_lun": "lun", "encode_lun": "lun", "ISID": "names",
    "ISIDAllocator": "names", "ISIDFormat": "names", "normalize_name": "names",
    "validate_name": "names", "decode_pdu": "pdu", "parse_pdu": "pdu",
}
_STAR_MODULES = ("constants", "errors", "pdu")
_SUBMODULES = frozenset(
    f[:-3] for f in __import__("os").listdir(__path__[0]) if f.endswith(".py") and f != "__init__.py"
)

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """PEP 562: import the defining module on first use of a name."""
    if name.startswith("_") or name in _SUBMODULES:
        raise AttributeError(name)  # let the import system load the submodule
    module = _EXPORTS.get(name)
    if module is not None:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    for module in _STAR_MODULES:
        mod = importlib.import_module(f".{module}", __name__)
        if name in getattr(mod, "__all__", ()):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
