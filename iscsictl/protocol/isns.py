"""iSNS, the Internet Storage Name Service protocol (RFC 4171): what an initiator needs to
discover its targets, sans I/O.

The wire format (RFC 4171 §5.1, §5.5):

* a PDU is a 12-byte header (version 1, function ID, payload length, flags, transaction ID,
  sequence ID; network order) and a payload of at most 65,535 bytes; a message longer than
  one PDU is sent as several with the same transaction ID, sequence IDs 0, 1, ... and the
  FIRST / LAST flags on the first and last (§5.3);
* a request's payload is the Source attribute, the Message Key attributes, the Delimiter
  (tag 0, length 0) and the Operating attributes; a response's is a 4-byte status (§6.4),
  then the key attributes, the Delimiter and the operating attributes, and no Source;
* an attribute is a TLV: tag (4 bytes), length (4 bytes, a multiple of 4), value; a string
  is NUL-terminated UTF-8 padded with NULs, an IP address 16 bytes (IPv4 as ``::ffff:a.b.c.d``),
  a port 4 bytes whose bit 16 says UDP (§6.3.2); a length of 0 is a nil value (how a query
  names the attributes it wants back).

:class:`TargetQuery` is open-iscsi's iSNS discovery (``usr/discovery.c``
``discovery_isns``) as a state machine: a DevAttrQry for every visible node of type Target,
asking for the names, portals and portal groups; when the server answers "Source unknown"
(it wants the querying node registered first), a DevAttrReg of the initiator node, the
query again, and a DevDereg.  Each target's portal groups (§6.5: PG iSCSI Name, PG Portal
IP Address and Port, PG Tag) are what a node record is made from; a portal group with a nil
PG Tag (no access through that portal, §3.4) or a UDP port is left out.

For iscsid's discovery daemon (``usr/discoveryd.c``): :func:`registration` (the initiators,
their network entity and a portal with an SCN port), :func:`scn_registration`, and the
State Change Notifications the server then sends (:func:`decode_notification`,
:func:`encode_notification_response`).

Everything a server can send is checked: a malformed PDU or attribute is an
:class:`IsnsFormatError`, never an IndexError or a struct error.  Constants are from RFC 4171
and open-isns's ``include/libisns/isns-proto.h``; the status texts are open-isns's
``isns_strerror``, which iscsiadm prints.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Iterable

from .names import usable_name
from .portal import Portal

__all__ = [
    "ATTRIBUTES", "Attribute", "Flag", "Function", "HEADER_LEN", "ISNS_PORT", "IsnsError",
    "IsnsFormatError", "IsnsStatusError", "MAX_PAYLOAD", "MessageReader", "NodeType",
    "Notification", "PortalGroup", "Request", "Response", "ScnBitmap", "Status", "Tag",
    "TargetQuery", "decode_notification", "encode_notification_response", "encode_request",
    "portal_groups", "registration", "registration_period", "scn_registration",
    "status_text",
]

ISNS_PORT = 3205  #: IANA well-known port of iSNS (RFC 4171 §7)
VERSION = 0x0001  #: iSNSP version (§5.1)
HEADER_LEN = 12
MAX_PAYLOAD = 0xFFFF  #: the PDU Length field's limit (§5.1.3)
#: the largest message (all its PDUs) a reader accepts: SendTargets' 1,000 targets with
#: their portals take ~200 KB; this bounds a hostile server's answer
MAX_MESSAGE = 16 << 20

_HEADER = struct.Struct(">HHHHHH")
_TLV = struct.Struct(">II")


class Function(enum.IntEnum):
    """iSNSP function IDs (RFC 4171 §5.1.3); a response is ``function | 0x8000``."""

    DEV_ATTR_REG = 0x0001
    DEV_ATTR_QRY = 0x0002
    DEV_GET_NEXT = 0x0003
    DEV_DEREG = 0x0004
    SCN_REG = 0x0005
    SCN_DEREG = 0x0006
    SCN_EVENT = 0x0007
    SCN = 0x0008
    DD_REG = 0x0009
    DD_DEREG = 0x000A
    DDS_REG = 0x000B
    DDS_DEREG = 0x000C
    ESI = 0x000D
    HEARTBEAT = 0x000E


RESPONSE = 0x8000


class Flag(enum.IntFlag):
    """The header's flags (RFC 4171 §5.1.4)."""

    CLIENT = 0x8000
    SERVER = 0x4000
    AUTH = 0x2000
    REPLACE = 0x1000
    LAST_PDU = 0x0800
    FIRST_PDU = 0x0400


class Status(enum.IntEnum):
    """Response status codes (RFC 4171 §6.4)."""

    SUCCESS = 0
    UNKNOWN_ERROR = 1
    MESSAGE_FORMAT_ERROR = 2
    INVALID_REGISTRATION = 3
    INVALID_QUERY = 5
    SOURCE_UNKNOWN = 6
    SOURCE_ABSENT = 7
    SOURCE_UNAUTHORIZED = 8
    NO_SUCH_ENTRY = 9
    VERSION_NOT_SUPPORTED = 10
    INTERNAL_ERROR = 11
    BUSY = 12
    OPTION_NOT_UNDERSTOOD = 13
    INVALID_UPDATE = 14
    MESSAGE_NOT_SUPPORTED = 15
    SCN_EVENT_REJECTED = 16
    SCN_REGISTRATION_REJECTED = 17
    ATTRIBUTE_NOT_IMPLEMENTED = 18
    FC_DOMAIN_ID_NOT_AVAILABLE = 19
    FC_DOMAIN_ID_NOT_ALLOCATED = 20
    ESI_NOT_AVAILABLE = 21
    INVALID_DEREGISTRATION = 22
    REGISTRATION_FEATURE_NOT_SUPPORTED = 23


#: open-isns's ``isns_strerror`` texts, which iscsiadm prints
_STATUS_TEXT = {
    Status.SUCCESS: "Success", Status.UNKNOWN_ERROR: "Unknown error",
    Status.MESSAGE_FORMAT_ERROR: "Message format error",
    Status.INVALID_REGISTRATION: "Invalid registration", Status.INVALID_QUERY: "Invalid query",
    Status.SOURCE_UNKNOWN: "Source unknown", Status.SOURCE_ABSENT: "Source absent",
    Status.SOURCE_UNAUTHORIZED: "Source unauthorized", Status.NO_SUCH_ENTRY: "No such entry",
    Status.VERSION_NOT_SUPPORTED: "Version not supported",
    Status.INTERNAL_ERROR: "Internal error", Status.BUSY: "Busy",
    Status.OPTION_NOT_UNDERSTOOD: "Option not understood",
    Status.INVALID_UPDATE: "Invalid update",
    Status.MESSAGE_NOT_SUPPORTED: "Message not supported",
    Status.SCN_EVENT_REJECTED: "SCN event rejected",
    Status.SCN_REGISTRATION_REJECTED: "SCN registration rejected",
    Status.ATTRIBUTE_NOT_IMPLEMENTED: "Attribute not implemented",
    Status.FC_DOMAIN_ID_NOT_AVAILABLE: "FC domain id not available",
    Status.FC_DOMAIN_ID_NOT_ALLOCATED: "FC domain id not allocated",
    Status.ESI_NOT_AVAILABLE: "ESI not available",
    Status.INVALID_DEREGISTRATION: "Invalid deregistration",
    Status.REGISTRATION_FEATURE_NOT_SUPPORTED: "Registration feature not supported",
}


def status_text(status: int) -> str:
    """The status as iscsiadm prints it: ``Source unknown``, ``Internal error``; ``Unknown
    iSNS status code`` for a code RFC 4171 does not define."""
    return _STATUS_TEXT.get(status, "Unknown iSNS status code")  # type: ignore[call-overload]


ENTITY_PROTOCOL_ISCSI = 2  #: Entity Protocol value of an iSCSI entity (RFC 4171 §6.2.2)


class ScnBitmap(enum.IntFlag):
    """iSCSI SCN Bitmap bits (RFC 4171 §6.4.4; open-isns's ISNS_SCN_*_MASK)."""

    DD_MEMBER_ADDED = 0x01
    DD_MEMBER_REMOVED = 0x02
    OBJECT_UPDATED = 0x04
    OBJECT_ADDED = 0x08
    OBJECT_REMOVED = 0x10
    MANAGEMENT_REGISTRATION = 0x20
    TARGET_AND_SELF_ONLY = 0x40
    INITIATOR_AND_SELF_ONLY = 0x80


#: what an initiator asks to hear of (open-iscsi's discoveryd isns_register_objs)
INITIATOR_SCN = (ScnBitmap.OBJECT_UPDATED | ScnBitmap.OBJECT_ADDED | ScnBitmap.OBJECT_REMOVED
                 | ScnBitmap.TARGET_AND_SELF_ONLY)


class NodeType(enum.IntFlag):
    """iSCSI Node Type bits (RFC 4171 §6.4.2)."""

    TARGET = 0x1
    INITIATOR = 0x2
    CONTROL = 0x4


class Tag(enum.IntEnum):
    """The attribute tags this module names (RFC 4171 §6.1); others are kept as raw bytes."""

    DELIMITER = 0
    ENTITY_IDENTIFIER = 1
    ENTITY_PROTOCOL = 2
    MGMT_IP_ADDRESS = 3
    TIMESTAMP = 4
    PROTOCOL_VERSION_RANGE = 5
    REGISTRATION_PERIOD = 6
    ENTITY_INDEX = 7
    ENTITY_NEXT_INDEX = 8
    ENTITY_ISAKMP_PHASE_1 = 11
    ENTITY_CERTIFICATE = 12
    PORTAL_IP_ADDRESS = 16
    PORTAL_TCP_UDP_PORT = 17
    PORTAL_SYMBOLIC_NAME = 18
    ESI_INTERVAL = 19
    ESI_PORT = 20
    PORTAL_INDEX = 22
    SCN_PORT = 23
    PORTAL_NEXT_INDEX = 24
    PORTAL_SECURITY_BITMAP = 27
    ISCSI_NAME = 32
    ISCSI_NODE_TYPE = 33
    ISCSI_ALIAS = 34
    ISCSI_SCN_BITMAP = 35
    ISCSI_NODE_INDEX = 36
    WWNN_TOKEN = 37
    ISCSI_NODE_NEXT_INDEX = 38
    ISCSI_AUTHMETHOD = 42
    PG_ISCSI_NAME = 48
    PG_PORTAL_IP_ADDR = 49
    PG_PORTAL_TCP_UDP_PORT = 50
    PG_TAG = 51
    PG_INDEX = 52
    PG_NEXT_INDEX = 53
    DD_SET_ID = 2049
    DD_SET_SYMBOLIC_NAME = 2050
    DD_SET_STATUS = 2051
    DD_SET_NEXT_ID = 2052
    DD_ID = 2065
    DD_SYMBOLIC_NAME = 2066
    DD_MEMBER_ISCSI_INDEX = 2067
    DD_MEMBER_ISCSI_NAME = 2068
    DD_FEATURES = 2078
    DD_NEXT_ID = 2079


#: each named tag's value encoding (RFC 4171 §6.1's table): ``str`` NUL-terminated UTF-8,
#: ``u32`` / ``u64`` unsigned, ``ip`` 16 bytes, ``port`` 4 bytes (bit 16 = UDP), ``raw`` bytes
ATTRIBUTES: dict[int, str] = {
    Tag.DELIMITER: "raw", Tag.ENTITY_IDENTIFIER: "str", Tag.ENTITY_PROTOCOL: "u32",
    Tag.MGMT_IP_ADDRESS: "ip", Tag.TIMESTAMP: "u64", Tag.PROTOCOL_VERSION_RANGE: "u32",
    Tag.REGISTRATION_PERIOD: "u32", Tag.ENTITY_INDEX: "u32", Tag.ENTITY_NEXT_INDEX: "u32",
    Tag.ENTITY_ISAKMP_PHASE_1: "raw", Tag.ENTITY_CERTIFICATE: "raw",
    Tag.PORTAL_IP_ADDRESS: "ip", Tag.PORTAL_TCP_UDP_PORT: "port",
    Tag.PORTAL_SYMBOLIC_NAME: "str", Tag.ESI_INTERVAL: "u32", Tag.ESI_PORT: "port",
    Tag.PORTAL_INDEX: "u32", Tag.SCN_PORT: "port", Tag.PORTAL_NEXT_INDEX: "u32",
    Tag.PORTAL_SECURITY_BITMAP: "u32", Tag.ISCSI_NAME: "str", Tag.ISCSI_NODE_TYPE: "u32",
    Tag.ISCSI_ALIAS: "str", Tag.ISCSI_SCN_BITMAP: "u32", Tag.ISCSI_NODE_INDEX: "u32",
    Tag.WWNN_TOKEN: "u64", Tag.ISCSI_NODE_NEXT_INDEX: "u32", Tag.ISCSI_AUTHMETHOD: "str",
    Tag.PG_ISCSI_NAME: "str", Tag.PG_PORTAL_IP_ADDR: "ip", Tag.PG_PORTAL_TCP_UDP_PORT: "port",
    Tag.PG_TAG: "u32", Tag.PG_INDEX: "u32", Tag.PG_NEXT_INDEX: "u32",
    Tag.DD_SET_ID: "u32", Tag.DD_SET_SYMBOLIC_NAME: "str", Tag.DD_SET_STATUS: "u32",
    Tag.DD_SET_NEXT_ID: "u32", Tag.DD_ID: "u32", Tag.DD_SYMBOLIC_NAME: "str",
    Tag.DD_MEMBER_ISCSI_INDEX: "u32", Tag.DD_MEMBER_ISCSI_NAME: "str",
    Tag.DD_FEATURES: "u32", Tag.DD_NEXT_ID: "u32",
}
_SIZES = {"u32": 4, "u64": 8, "ip": 16, "port": 4}
_UDP = 0x10000


class IsnsError(Exception):
    """Base of the iSNS errors."""


class IsnsFormatError(IsnsError, ValueError):
    """A PDU or attribute that breaks RFC 4171's format (from the server, or a value that
    cannot be encoded)."""


class IsnsStatusError(IsnsError):
    """The server answered a request with a status other than Success.

    Attributes:
        function: the request's :class:`Function`.
        status: the response's status code (:class:`Status` when known).
    """

    def __init__(self, function: int, status: int, what: str | None = None):
        self.function = function
        self.status = status
        super().__init__(what or f"{_function_name(function)}: {status_text(status)}")


def _function_name(function: int) -> str:
    try:
        return Function(function & ~RESPONSE).name
    except ValueError:
        return f"function {function:#06x}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One TLV: ``tag`` and its decoded ``value`` (str, int, an IP address as text, the
    port as ``(port, udp)``, bytes for tags without a known encoding; None for nil)."""

    tag: int
    value: object = None

    def encode(self) -> bytes:
        """The TLV's bytes.  Raises IsnsFormatError for a value its tag cannot hold."""
        if self.value is None:
            return _TLV.pack(self.tag, 0)
        kind = ATTRIBUTES.get(self.tag, "raw")
        v = self.value
        try:
            if kind == "str":
                raw = str(v).encode("utf-8", "surrogateescape") + b"\0"
                if b"\0" in raw[:-1]:
                    raise ValueError("a NUL in a string")
                raw += b"\0" * (-len(raw) % 4)
            elif kind in ("u32", "u64"):
                raw = int(v).to_bytes(_SIZES[kind], "big")  # type: ignore[call-overload]
            elif kind == "ip":
                addr = ipaddress.ip_address(str(v))
                if isinstance(addr, ipaddress.IPv4Address):
                    addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
                raw = addr.packed
            elif kind == "port":
                port, udp = v if isinstance(v, tuple) else (v, False)
                if not 0 <= int(port) <= 0xFFFF:
                    raise ValueError(f"port {port} out of range")
                raw = (int(port) | (_UDP if udp else 0)).to_bytes(4, "big")
            else:
                raw = bytes(v)  # type: ignore[arg-type]
                raw += b"\0" * (-len(raw) % 4)
        except (ValueError, TypeError, OverflowError) as e:
            raise IsnsFormatError(f"attribute {_tag_name(self.tag)}: cannot encode {v!r}: "
                                  f"{e}") from None
        return _TLV.pack(self.tag, len(raw)) + raw


def _tag_name(tag: int) -> str:
    try:
        return Tag(tag).name
    except ValueError:
        return f"tag {tag}"


def _decode_value(tag: int, raw: bytes) -> object:
    if not raw:
        return None
    kind = ATTRIBUTES.get(tag, "raw")
    if kind == "raw":
        return raw
    if kind == "str":  # NUL-terminated (§6.1); one without its NUL is read whole, as
        text = raw.split(b"\0", 1)[0]  # open-isns reads it (attrs.c)
        # bytes that are not UTF-8 kept as surrogates (encoded back as they came): one
        # such name is left out where names are used, not the whole answer refused
        return text.decode("utf-8", "surrogateescape")
    if len(raw) != _SIZES[kind]:
        raise IsnsFormatError(f"attribute {_tag_name(tag)}: length {len(raw)}, "
                              f"not {_SIZES[kind]}")
    if kind == "ip":
        addr = ipaddress.IPv6Address(raw)
        # IPv4-mapped, and the deprecated IPv4-compatible form iscsiadm also reads as IPv4
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if raw[:12] == b"\0" * 12 and raw[12:] not in (b"\0\0\0\0", b"\0\0\0\1"):
            return str(ipaddress.IPv4Address(raw[12:]))
        return str(addr)
    value = int.from_bytes(raw, "big")
    if kind == "port":
        return value & 0xFFFF, bool(value & _UDP)
    return value


def decode_attributes(payload: bytes) -> list[Attribute]:
    """The TLVs of a payload, in order (the Delimiter included).  Raises IsnsFormatError
    for a length that is not a multiple of 4 or runs past the payload."""
    out, pos, end = [], 0, len(payload)
    while pos < end:
        if end - pos < _TLV.size:
            raise IsnsFormatError(f"{end - pos} bytes left where an attribute was expected")
        tag, length = _TLV.unpack_from(payload, pos)
        pos += _TLV.size
        if length % 4 or length > end - pos:
            raise IsnsFormatError(f"attribute {_tag_name(tag)}: length {length} "
                                  f"({end - pos} bytes left)")
        out.append(Attribute(tag, _decode_value(tag, payload[pos:pos + length])))
        pos += length
    return out


def _split_delimiter(attrs: list[Attribute]) -> tuple[tuple[Attribute, ...],
                                                        tuple[Attribute, ...]]:
    for i, a in enumerate(attrs):
        if a.tag == Tag.DELIMITER:
            return tuple(attrs[:i]), tuple(attrs[i + 1:])
    return tuple(attrs), ()


@dataclass(frozen=True)
class Request:
    """A client's request (RFC 4171 §5.6): ``source`` is the querying node's iSCSI name."""

    function: Function
    xid: int
    source: str
    keys: tuple[Attribute, ...] = ()
    operating: tuple[Attribute, ...] = ()
    replace: bool = False


def encode_request(req: Request) -> bytes:
    """One PDU (FIRST and LAST; sequence 0).  Raises IsnsFormatError for a value that
    cannot be encoded or a payload over :data:`MAX_PAYLOAD`."""
    payload = b"".join([Attribute(Tag.ISCSI_NAME, req.source).encode(),
                        *(a.encode() for a in req.keys), Attribute(Tag.DELIMITER).encode(),
                        *(a.encode() for a in req.operating)])
    if len(payload) > MAX_PAYLOAD:
        raise IsnsFormatError(f"{req.function.name}: payload of {len(payload)} bytes")
    flags = Flag.CLIENT | Flag.FIRST_PDU | Flag.LAST_PDU | (Flag.REPLACE if req.replace
                                                             else 0)
    return _HEADER.pack(VERSION, req.function, len(payload), flags, req.xid & 0xFFFF, 0) \
        + payload


@dataclass(frozen=True)
class Response:
    """A server's response (RFC 4171 §5.7): the request's function, its transaction ID,
    the status and the attributes on either side of the Delimiter."""

    function: int
    xid: int
    status: int
    keys: tuple[Attribute, ...] = ()
    operating: tuple[Attribute, ...] = ()


class MessageReader:
    """Reassembles the server's messages from a byte stream, exactly: :meth:`needed` says
    how many bytes the next step wants (a header, then its payload), :meth:`feed` takes
    them and returns a whole :class:`Response` when its last PDU is in, else None.

    A PDU that is not a response (a server's own request: SCN, ESI) is passed over; so is
    a response to another transaction (an earlier request's, late).  Raises
    IsnsFormatError for a bad version, a PDU out of sequence or a message over
    :data:`MAX_MESSAGE` bytes."""

    def __init__(self, xid: int | None = None):
        self.xid = xid
        self._header: tuple[int, ...] | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._next_seq = 0

    def expect(self, xid: int) -> None:
        """Wait for the answer to transaction ``xid`` from now on."""
        self.xid = xid & 0xFFFF
        self._parts, self._size, self._next_seq = [], 0, 0

    def needed(self) -> int:
        return HEADER_LEN if self._header is None else self._header[2]

    def feed(self, data: bytes) -> Response | None:
        if self._header is None:
            if len(data) != HEADER_LEN:
                raise IsnsFormatError(f"header of {len(data)} bytes")
            hdr = _HEADER.unpack(data)
            if hdr[0] != VERSION:
                raise IsnsFormatError(f"iSNSP version {hdr[0]:#06x}, not 1")
            self._header = hdr
            if hdr[2]:
                return None
            data = b""
        version, function, length, flags, xid, seq = self._header
        self._header = None
        if len(data) != length:
            raise IsnsFormatError(f"payload of {len(data)} bytes, not {length}")
        if not function & RESPONSE or xid != self.xid:
            return None  # the server's own message, or a late answer: not ours
        if seq != self._next_seq or bool(flags & Flag.FIRST_PDU) != (seq == 0):
            raise IsnsFormatError(f"PDU {seq} of transaction {xid} out of sequence")
        self._next_seq += 1
        self._size += length
        if self._size > MAX_MESSAGE:
            raise IsnsFormatError(f"a response of more than {MAX_MESSAGE} bytes")
        self._parts.append(data)
        if not flags & Flag.LAST_PDU:
            return None
        payload = b"".join(self._parts)
        self._parts, self._size, self._next_seq = [], 0, 0
        if len(payload) < 4:
            raise IsnsFormatError(f"response without a status ({len(payload)} bytes)")
        status = int.from_bytes(payload[:4], "big")
        keys, operating = _split_delimiter(decode_attributes(payload[4:]))
        return Response(function & ~RESPONSE, xid, status, keys, operating)


@dataclass(frozen=True, order=True)
class PortalGroup:
    """A target's portal group (RFC 4171 §3.4): the target's iSCSI name, the portal's
    address (IPv4 or IPv6, text) and TCP port, and its Portal Group Tag."""

    target: str
    address: str
    port: int
    tag: int


def portal_groups(attrs: Iterable[Attribute],
                  left_out: dict[str, str] | None = None) -> list[PortalGroup]:
    """The usable portal groups of a query's operating attributes, in the server's order.

    A PG object starts at each PG iSCSI Name (its key, with PG Portal IP Address and Port,
    §6.5); one without all four values, with a nil PG Tag or with a UDP port is left out,
    as iscsiadm leaves them out; a repeated one is kept once.  So is one whose name no
    record can hold or is not UTF-8 (:func:`~iscsictl.protocol.names.usable_name`, as a
    SendTargets answer's; Debian's iscsiadm: "Target Name invalid: ignoring it"): it goes
    in ``left_out``, the name mapped to why (any other node of the server may register
    any name, and one with a newline would forge a line of the listing).  So does a portal
    no login can use or no record hold: a PG Tag outside 0..65535 (§6.5.4: 16 bits in a
    32-bit field; a record's ``node.tpgt`` holds no more), TCP port 0, or an unspecified
    address (0.0.0.0, ::); its target's other portals are kept."""
    out: dict[PortalGroup, None] = {}
    cur: dict[int, object] | None = None

    def close(obj: dict[int, object] | None) -> None:
        if obj is None:
            return
        name, addr = obj.get(Tag.PG_ISCSI_NAME), obj.get(Tag.PG_PORTAL_IP_ADDR)
        port, tag = obj.get(Tag.PG_PORTAL_TCP_UDP_PORT), obj.get(Tag.PG_TAG)
        if not (isinstance(name, str) and isinstance(addr, str) and isinstance(tag, int)
                and isinstance(port, tuple)) or port[1]:
            return
        try:
            usable_name(name)  # (bytes that are not UTF-8, surrogates here, are refused)
        except ValueError as exc:
            if left_out is not None:
                left_out[name] = f"{exc}: target left out"
            return
        why = _unusable_portal(addr, port[0], tag)
        if why is not None:
            if left_out is not None:
                left_out.setdefault(name, f"{name}: {why}: portal left out")
            return
        out[PortalGroup(name, addr, port[0], tag)] = None

    for a in attrs:
        if a.tag == Tag.PG_ISCSI_NAME:
            close(cur)
            cur = {a.tag: a.value}
        elif a.tag in (Tag.PG_PORTAL_IP_ADDR, Tag.PG_PORTAL_TCP_UDP_PORT, Tag.PG_TAG):
            if cur is not None:
                cur[a.tag] = a.value
        elif a.tag in (Tag.ISCSI_NAME, Tag.PORTAL_IP_ADDRESS, Tag.ENTITY_IDENTIFIER):
            close(cur)  # another object's key: the PG has ended
            cur = None
    close(cur)
    return list(out)


def _unusable_portal(address: str, port: int, tag: int) -> str | None:
    """Why a PG's portal cannot be a record's (:func:`portal_groups`), or None."""
    where = Portal(address, port).host_port()
    if not 0 <= tag <= 0xFFFF:
        return f"portal {where} has PG Tag {tag}, not 0..65535"
    if port == 0:
        return f"portal {where} has TCP port 0"
    if ipaddress.ip_address(address).is_unspecified:
        return f"portal {where} has an unspecified address"
    return None


#: what iscsiadm's query asks back (discovery_isns_query), in its order
QUERY_TAGS = (Tag.ISCSI_NAME, Tag.ISCSI_NODE_TYPE, Tag.PORTAL_IP_ADDRESS,
              Tag.PORTAL_TCP_UDP_PORT, Tag.PG_ISCSI_NAME, Tag.PG_PORTAL_IP_ADDR,
              Tag.PG_PORTAL_TCP_UDP_PORT, Tag.PG_TAG)


class TargetQuery:
    """The discovery of the targets a node may see, as a state machine (open-iscsi's
    ``discovery_isns``).

    Args:
        initiator: the querying node's iSCSI name (the Source of every request).
        target: ask for this target only (by iSCSI Name) instead of every Target node.
        first_xid: the first request's transaction ID (then +1 a request).

    :meth:`start` gives the first request; :meth:`receive` takes each answer and gives the
    next request, or None when done.  Then :attr:`groups` holds the portal groups found,
    or :attr:`error` the :class:`IsnsStatusError` that ended it: a failed query
    (open-iscsi's ISCSI_ERR_ISNS_QUERY), or a failed registration (ISCSI_ERR_ISNS_REG_FAILED,
    ``error.function`` DEV_ATTR_REG; also when the server still does not know the source
    once it is registered).  :attr:`left_out` maps the targets left out for their names to
    why (:func:`portal_groups`).  Once :attr:`answered` (the query's answer taken), what
    remains is the deregistration, whose failure does not change the result: a refusal
    is in :attr:`dereg_error` (iscsiadm's discovery_isns ignores what
    ``discovery_isns_reg_node(iname, 0)`` returns).
    """

    def __init__(self, initiator: str, target: str | None = None, first_xid: int = 1):
        self.initiator = initiator
        self.target = target
        self.xid = first_xid & 0xFFFF
        self.groups: list[PortalGroup] = []
        self.left_out: dict[str, str] = {}
        self.answered = False
        self.error: IsnsStatusError | None = None
        self.dereg_error: IsnsStatusError | None = None
        self.registered = False
        self.deregistered = False
        self._waiting: Function | None = None

    def _request(self, function: Function, keys: tuple[Attribute, ...],
                 operating: tuple[Attribute, ...]) -> Request:
        req = Request(function, self.xid, self.initiator, keys, operating)
        self.xid = (self.xid + 1) & 0xFFFF
        self._waiting = function
        return req

    def _query(self) -> Request:
        key = (Attribute(Tag.ISCSI_NAME, self.target) if self.target is not None
               else Attribute(Tag.ISCSI_NODE_TYPE, int(NodeType.TARGET)))
        return self._request(Function.DEV_ATTR_QRY, (key,),
                             tuple(Attribute(t) for t in QUERY_TAGS))

    def start(self) -> Request:
        return self._query()

    def deregistration(self) -> Request | None:
        """The DevDereg that leaves the server as it was when the exchange broke off (no
        answer, one that cannot be read) after this query registered the initiator; None
        when it did not, or the deregistration was answered (iscsiadm's discovery_isns:
        ``if (registered) discovery_isns_reg_node(iname, 0)``, on a new connection)."""
        if not self.registered or self.deregistered:
            return None
        return self._request(Function.DEV_DEREG, (),
                             (Attribute(Tag.ISCSI_NAME, self.initiator),))

    def receive(self, resp: Response) -> Request | None:
        """Take the answer to the last request.  Raises IsnsFormatError when it answers
        another function."""
        waiting, self._waiting = self._waiting, None
        if waiting is None or resp.function != waiting:
            raise IsnsFormatError(f"a {_function_name(resp.function)} response where "
                                  f"{_function_name(waiting or 0)}'s was expected")
        if waiting == Function.DEV_DEREG:
            self.deregistered = True
            if resp.status != Status.SUCCESS:
                self.dereg_error = IsnsStatusError(waiting, resp.status)
            return None
        if waiting == Function.DEV_ATTR_REG:
            if resp.status != Status.SUCCESS:
                self.error = IsnsStatusError(
                    waiting, resp.status,
                    f"Could not register {self.initiator} with iSNS server: "
                    f"{status_text(resp.status)}.")
                return None
            self.registered = True
            return self._query()
        # the query's answer
        if resp.status != Status.SOURCE_UNKNOWN or self.registered:
            self.answered = True
        if resp.status == Status.SOURCE_UNKNOWN and not self.registered:
            # the server wants the source registered first: a node of type Initiator
            return self._request(Function.DEV_ATTR_REG, (), (
                Attribute(Tag.ISCSI_NAME, self.initiator),
                Attribute(Tag.ISCSI_NODE_TYPE, int(NodeType.INITIATOR))))
        if resp.status == Status.SOURCE_UNKNOWN:
            self.error = IsnsStatusError(Function.DEV_ATTR_REG, resp.status,
                                         f"iSNS server still does not know {self.initiator} "
                                         "once it is registered")
        elif resp.status != Status.SUCCESS:
            self.error = IsnsStatusError(waiting, resp.status,
                                         f"iSNS discovery failed: {status_text(resp.status)}")
        else:
            self.groups = portal_groups(resp.operating, self.left_out)
        if self.registered:  # leave the server as it was
            return self._request(Function.DEV_DEREG, (),
                                 (Attribute(Tag.ISCSI_NAME, self.initiator),))
        return None



# ---- registration and State Change Notifications (open-iscsi's discoveryd) ---------------
def registration(initiators: Iterable[str], entity: str, address: str, scn_port: int,
                 xid: int) -> Request:
    """A DevAttrReg (§5.6.5.1) that replaces network entity ``entity``'s registration with:
    the entity (protocol iSCSI), one portal at ``address`` whose TCP port and SCN port are
    ``scn_port`` (where the server delivers SCNs, §6.3.5), and each initiator as a storage
    node of type Initiator; the first initiator is the Source.  As discoveryd.c's
    isns_build_objs, with one portal (the address the server is reached from)."""
    names = list(dict.fromkeys(initiators))
    if not names:
        raise ValueError("no initiator to register")
    nodes = [a for n in names for a in (Attribute(Tag.ISCSI_NAME, n),
                                        Attribute(Tag.ISCSI_NODE_TYPE, int(NodeType.INITIATOR)))]
    return Request(Function.DEV_ATTR_REG, xid, names[0],
                   (Attribute(Tag.ENTITY_IDENTIFIER, entity),),
                   (Attribute(Tag.ENTITY_IDENTIFIER, entity),
                    Attribute(Tag.ENTITY_PROTOCOL, ENTITY_PROTOCOL_ISCSI),
                    Attribute(Tag.PORTAL_IP_ADDRESS, address),
                    Attribute(Tag.PORTAL_TCP_UDP_PORT, (scn_port, False)),
                    Attribute(Tag.SCN_PORT, (scn_port, False)), *nodes),
                   replace=True)


def deregistration(initiator: str, entity: str, xid: int) -> Request:
    """A DevDereg (§5.6.5.4) of network entity ``entity``: the server removes it with its
    portals and storage nodes (and their SCN registrations), ``initiator`` (one of them)
    the Source."""
    return Request(Function.DEV_DEREG, xid, initiator, (),
                   (Attribute(Tag.ENTITY_IDENTIFIER, entity),))


def registration_period(resp: Response) -> int | None:
    """The Registration Period (s) a DevAttrReg's answer gives the entity (§6.2.6); None
    when it gives none (0: the registration never expires, as open-isns says it)."""
    for a in resp.operating:
        if a.tag == Tag.REGISTRATION_PERIOD and isinstance(a.value, int) and a.value:
            return a.value
    return None


def scn_registration(initiator: str, xid: int,
                     bitmap: ScnBitmap = INITIATOR_SCN) -> Request:
    """An SCNReg (§5.6.5.5) of ``initiator`` (registered already) for ``bitmap``'s events."""
    return Request(Function.SCN_REG, xid, initiator, (Attribute(Tag.ISCSI_NAME, initiator),),
                   (Attribute(Tag.ISCSI_SCN_BITMAP, int(bitmap)),))


@dataclass(frozen=True)
class Notification:
    """A State Change Notification from the server (§5.6.5.8): its transaction ID, the
    node it is for (``destination``, an iSCSI name) and the nodes that changed, each with
    its SCN Bitmap."""

    xid: int
    destination: str
    changes: tuple[tuple[str, int], ...]


def decode_notification(header: bytes, payload: bytes) -> Notification:
    """The SCN in one PDU (``header``, 12 bytes, and its payload).  Its attributes: the
    Destination (an iSCSI Name) right before the Timestamp, then a pair for each node that
    changed, its SCN Bitmap and its iSCSI Name (open-isns's order; the name first is read
    too); open-isns puts its own Source first, which is passed over, as are other
    attributes among the changes (a management SCN's DD_ID).
    Raises IsnsFormatError for anything else (another function, several PDUs, names and
    bitmaps out of that order)."""
    if len(header) != HEADER_LEN:
        raise IsnsFormatError(f"header of {len(header)} bytes")
    version, function, length, flags, xid, seq = _HEADER.unpack(header)
    if version != VERSION:
        raise IsnsFormatError(f"iSNSP version {version:#06x}, not 1")
    if function != Function.SCN:
        raise IsnsFormatError(f"a {_function_name(function)} message where an SCN was expected")
    if length != len(payload) or seq or not flags & Flag.LAST_PDU:
        raise IsnsFormatError("an SCN must be one PDU")
    attrs = [a for a in decode_attributes(payload) if a.tag != Tag.DELIMITER]
    stamps = [i for i, a in enumerate(attrs) if a.tag == Tag.TIMESTAMP]
    if not stamps or stamps[0] == 0 or attrs[stamps[0] - 1].tag != Tag.ISCSI_NAME:
        raise IsnsFormatError("an SCN without a Destination and a Timestamp")
    dest = attrs[stamps[0] - 1].value
    # the changed nodes' names and bitmaps; what else a server puts among them (a
    # management SCN's DD_ID or DDS_ID after the name, §5.6.5.8) is passed over, as
    # open-isns's receiver does
    changes, rest = [], [a for a in attrs[stamps[0] + 1:]
                         if a.tag in (Tag.ISCSI_NAME, Tag.ISCSI_SCN_BITMAP)]
    bitmap_first = bool(rest) and rest[0].tag == Tag.ISCSI_SCN_BITMAP  # open-isns's order
    for pair in zip(rest[::2], rest[1::2]):
        bitmap, name = pair if bitmap_first else pair[::-1]
        if name.tag != Tag.ISCSI_NAME or bitmap.tag != Tag.ISCSI_SCN_BITMAP:
            raise IsnsFormatError("an SCN's changes are not pairs of a name and a bitmap")
        changes.append((str(name.value), int(bitmap.value or 0)))  # type: ignore[call-overload]
    if len(rest) % 2:
        raise IsnsFormatError("an SCN's last change has no bitmap")
    return Notification(xid, str(dest), tuple(changes))


def encode_notification_rejection(header: bytes) -> bytes | None:
    """The SCNRsp refusing an SCN this side cannot read (status SCN_EVENT_REJECTED, as
    open-isns's receiver answers one; no attribute: its Destination was not read), for
    the transaction of its 12-byte ``header``; None when ``header`` is no SCN's (another
    function or version: nothing to answer)."""
    if len(header) != HEADER_LEN:
        return None
    version, function, _length, _flags, xid, _seq = _HEADER.unpack(header)
    if version != VERSION or function != Function.SCN:
        return None
    return _scn_response(xid, Status.SCN_EVENT_REJECTED)


def encode_notification_response(n: Notification, status: int = Status.SUCCESS) -> bytes:
    """The SCNRsp (§5.7.5.8): ``status`` and the Destination attribute, same transaction."""
    return _scn_response(n.xid, status, Attribute(Tag.ISCSI_NAME, n.destination).encode())


def _scn_response(xid: int, status: int, attributes: bytes = b"") -> bytes:
    """An SCNRsp PDU of transaction ``xid``: ``status``, then ``attributes`` (encoded)."""
    payload = int(status).to_bytes(4, "big") + attributes
    return _HEADER.pack(VERSION, Function.SCN | RESPONSE, len(payload),
                        Flag.CLIENT | Flag.FIRST_PDU | Flag.LAST_PDU, xid, 0) + payload
