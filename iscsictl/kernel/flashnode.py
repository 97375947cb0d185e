"""A flash target's ``-o update`` as open-iscsi 2.1.8 makes it, without I/O: the ``-n KEY
-v VALUE`` pairs applied to the target's record (usr/idbm.c idbm_verify_param,
idbm_rec_update_param), then one ``struct iscsi_flashnode_param_info`` per pair for
ISCSI_UEVENT_SET_FLASHNODE_PARAMS (usr/flashnode.c flashnode_build_config).

The keys, their C types and their ISCSI_FLASHNODE_* parameters are one table,
:data:`iscsictl.kernel.sysfs.FLASHNODE_ATTRS`.  The parameters go in the order the pairs were
given, each with the record's value once every pair is applied (a key given twice goes
twice, with its last value), as iscsiadm sends them.

Stricter than iscsiadm, on purpose (it reads a number with ``strtoul`` and cuts it to its
field, cuts a string to its buffer, and silently leaves out a pair it cannot encode):

* a number must be base-10 digits within its C type (InvalidValue, exit 7), a string fit
  its buffer with its NUL;
* a key iscsiadm sends nothing for (the CHAP names, passwords and in-index, and
  is_boot_target), an address ``inet_pton`` refuses, an ISID that is not 12 hex digits:
  :class:`UnsendableParam` for the whole update (iscsiadm: "Build flashnode config
  failed." when no pair is left, else the others sent and the exit 0);
* a string is sent NUL-padded (iscsiadm sends the old value's tail after a shorter new one).
"""

from __future__ import annotations

import re
import socket
import struct
from typing import Any, Sequence

from ..db.errors import InvalidKey, InvalidValue
from ..protocol.constants import ISCSI_PORT
from .sysfs import FLASHNODE_ATTRS, FlashnodeAttr

__all__ = ["UnsendableParam", "apply_updates", "flashnode_params", "BY_KEY", "SECRET_KEYS",
           "DEFAULT_PORT"]

#: the record's keys (FLASHNODE_ATTRS rows by key)
BY_KEY: dict[str, FlashnodeAttr] = {a.key: a for a in FLASHNODE_ATTRS}
#: the values that are secrets: never in a message (``********`` in listings unless -S)
SECRET_KEYS = frozenset({"flashnode.session.password", "flashnode.session.password_in"})
#: flashnode_build_config's port for a record whose port is 0 (ISCSI_LISTEN_PORT)
DEFAULT_PORT = ISCSI_PORT
#: native-endian struct formats of the numbers (iscsiadm memcpy()s them)
_NUMBER_FORMAT = {"u8": "=B", "u16": "=H", "u32": "=I"}
_ISID = re.compile(r"[0-9A-Fa-f]{12}")


class UnsendableParam(Exception):
    """A pair that cannot go to the driver: its ``key`` has no ISCSI_FLASHNODE_* parameter
    in iscsiadm, or its value cannot be encoded (``reason``).  Exit code 1 (ISCSI_ERR), as
    iscsiadm's "Build flashnode config failed."."""

    exit_code = 1

    def __init__(self, key: str, reason: str):
        super().__init__(f"Cannot send {key}: {reason}.")
        self.key = key
        self.reason = reason


def apply_updates(values: dict[str, Any], pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``values`` (a record as :meth:`Flashnode.values` gives it) with the ``(key, value)``
    pairs applied in order; a new dict.  Every key is checked before any value, as iscsiadm
    does.  Raises InvalidKey (a key not in the record, exit 7) and InvalidValue (a number
    not in base 10 or past its C type; a string with a NUL or newline, or longer than its
    buffer holds: exit 7)."""
    from ..db.record import convert
    from ..db.schema import Key

    for key, _ in pairs:
        if key not in BY_KEY:
            raise InvalidKey(key)
    out = dict(values)
    for key, text in pairs:
        a = BY_KEY[key]
        if a.ctype != "str":
            out[key] = convert(Key(key, "int", 0, width=a.ctype), text)
            continue
        shown = "********" if key in SECRET_KEYS else text
        if "\n" in text or "\0" in text:
            raise InvalidValue(key, shown, "newline or NUL in value")
        if len(text.encode("utf-8", "surrogateescape")) >= a.size:
            raise InvalidValue(key, shown, f"longer than {a.size - 1} bytes")
        out[key] = text
    return out


#: keys iscsiadm sends but qla4xxx, the one driver with set_flashnode_param, has no case
#: for: its qla4xxx_sysfs_ddb_set_param answers -ENOSYS once the pairs before it are
#: applied in memory, and never writes them to flash (a half-made update, lost at reload)
_DRIVER_REFUSES = {
    "flashnode.session.discovery_parent_type": "qla4xxx does not set it (its "
    "qla4xxx_sysfs_ddb_set_param refuses it with ENOSYS after applying the pairs before "
    "it, unsaved); the flash target's discovery parent is the firmware's",
}
#: keys whose value qla4xxx takes one byte of (``value[0]``, ``*(uint8_t *)value``)
_DRIVER_KEEPS_A_BYTE = frozenset({"flashnode.conn[0].ipv6_flow_label",
                                  "flashnode.conn[0].tcp_xmit_wsf",
                                  "flashnode.conn[0].tcp_recv_wsf"})


def flashnode_params(values: dict[str, Any], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The ISCSI_UEVENT_SET_FLASHNODE_PARAMS entries for ``keys`` (one per key, in order),
    ``{"param": IscsiFlashnodeParam, "value": bytes}`` from ``values`` (the record once
    updated).  Raises :class:`UnsendableParam`."""
    from ..netlink.enums import IscsiFlashnodeParam

    out = []
    for key in keys:
        a = BY_KEY[key]
        if a.param is None:
            raise UnsendableParam(key, "no flashnode parameter carries it (iscsiadm 2.1.8 "
                                       "sends none)")
        if key in _DRIVER_REFUSES:
            raise UnsendableParam(key, _DRIVER_REFUSES[key])
        if key in _DRIVER_KEEPS_A_BYTE and values[key] > 0xFF:
            raise UnsendableParam(key, f"{values[key]} is more than 255, and qla4xxx keeps "
                                       "only its low byte (qla4xxx_sysfs_ddb_set_param)")
        out.append({"param": IscsiFlashnodeParam[a.param], "value": _encode(a, values)})
    return out


def _encode(a: FlashnodeAttr, values: dict[str, Any]) -> bytes:
    """One value as flashnode_build_config's flashnode_fill_* lays it out."""
    value = values[a.key]
    wire = a.wire or a.ctype
    if wire == "port":
        return struct.pack("=H", value or DEFAULT_PORT)
    if wire in _NUMBER_FORMAT:
        return struct.pack(_NUMBER_FORMAT[wire], value)
    raw = value.encode("utf-8", "surrogateescape")
    if wire == "str":
        return raw.ljust(a.size, b"\0")
    if wire == "isid":
        if not _ISID.fullmatch(value):
            raise UnsendableParam(a.key, f"'{value}' is not an ISID of 12 hex digits")
        return bytes.fromhex(value)
    # "ip": the family by the record's portal type (strncmp "ipv4", 4), "ipv6": always v6
    v4 = wire == "ip" and values["flashnode.session.portal_type"].startswith("ipv4")
    try:
        return socket.inet_pton(socket.AF_INET if v4 else socket.AF_INET6, value)
    except (OSError, ValueError):
        family = "IPv4" if v4 else "IPv6"
        why = " (the flash target's portal type is ipv4)" if v4 else \
            " (the flash target's portal type is not ipv4)" if wire == "ip" else ""
        raise UnsendableParam(a.key, f"'{value}' is not an {family} address{why}") from None
