"""NETLINK_ISCSI message layouts, declared with pyroute2 ``nlmsg`` classes.

Pinned header revision: **Linux 6.1** (the Debian 12 kernel, linux 6.1.x),
``include/scsi/iscsi_if.h``; x86_64, host byte order (little-endian there).
Every datagram is ``struct nlmsghdr`` (16 B) + ``struct iscsi_uevent`` (56 B,
``__attribute__((aligned(8)))``) + an optional trailing payload::

    struct iscsi_uevent {
        uint32_t type;              /* @0  (abs. 16) enum iscsi_uevent_e */
        uint32_t iferror;           /* @4  reply: -errno (read as int32) */
        uint64_t transport_handle;  /* @8  /sys/class/iscsi_transport/<t>/handle */
        union { ... } u;            /* @16 24 bytes: requests (u -> k) */
        union { ... } r;            /* @40 16 bytes: replies and events (k -> u) */
    } __attribute__ ((aligned (sizeof(uint64_t))));

One class per ``iscsi_uevent.type`` value (:data:`MESSAGE_CLASSES`); the same
class encodes a request and decodes its reply, since the kernel echoes the
uevent with ``r`` filled in.  Field naming: the header fields keep their names
(``type``, ``iferror``, ``transport_handle``); the ``u`` member's fields keep
the kernel names (``sid``, ``cid``, ``initial_cmdsn`` ...; the one clash,
``tgt_dscvr.type``, is ``dscvr_type``); the ``r`` member's fields are prefixed
``r_`` (``r_sid``, ``r_host_no``, ``r_retcode``, ``r_handle`` ...).  The bytes
after the uevent are ``msg['payload']`` (bytes); the payload structures are the
``*_payload`` classes at the bottom of this module, decoded on demand.

Events arrive with ``nlmsg_type = 0``: :class:`IscsiMarshal` keys on
``iscsi_uevent.type`` at absolute offset 16.  Decoded messages are plain dicts
(:func:`decode_messages`); the classes stay the one declaration of each layout,
from which both the encoder and the decoder derive a ``struct.Struct``.
"""

from __future__ import annotations

import logging
import socket as _socket
import struct
from typing import Any, Callable, Iterator

from ._lazy import lazy_package

lazy_package("pyroute2")  # only pyroute2.netlink is needed: not the whole library's __init__
from pyroute2.netlink import nla, nlmsg, nlmsg_base, nlmsg_decoder_generic, nlmsg_encoder_generic  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkDecodeError  # noqa: E402
from pyroute2.netlink.marshal import Marshal  # noqa: E402

from .enums import IscsiUeventE as E

__all__ = [
    "NLMSG_HDRLEN", "ISCSI_UEVENT_SIZE", "U_UNION_SIZE", "R_UNION_SIZE", "iscsi_uevent",
    "MESSAGE_CLASSES", "IscsiMarshal", "encode_message", "message_encoder", "decode_messages",
    "sockaddr_in_payload", "sockaddr_in6_payload", "encode_sockaddr", "decode_sockaddr",
    "iscsi_stats_payload", "iscsi_stats_custom_payload", "iscsi_chap_rec_payload",
    "iscsi_path_payload", "iscsi_offload_host_stats_payload", "iscsi_host_stats_custom_payload",
    "iscsi_param_info_nla", "iscsi_iface_param_info_nla", "iscsi_flashnode_param_info_nla",
    "encode_nlas", "decode_nlas",
]

log = logging.getLogger(__name__)

NLMSG_HDRLEN = 16
ISCSI_UEVENT_SIZE = 56
U_UNION_SIZE = 24
R_UNION_SIZE = 16

_HEADER_FIELDS = (("type", "I"), ("iferror", "I"), ("transport_handle", "Q"))


def _size(fields: tuple[tuple[str, str], ...]) -> int:
    return sum(struct.calcsize(f if f[0] in "<>=!@" else "=" + f) for _, f in fields)


class iscsi_uevent(nlmsg):
    """Base of every NETLINK_ISCSI message: nlmsghdr + ``struct iscsi_uevent`` + payload.

    Subclasses set ``fields`` (the 56 bytes) and ``ev_type``.  ``msg['payload']``
    holds the trailing bytes (``nlmsg_len - 72`` of them).  ``nlmsg_len`` is not
    aligned (as open-iscsi sends it); the datagram is zero-padded to 4 bytes.
    """

    __slots__ = ()
    align = 0
    fields = _HEADER_FIELDS + ((("__u", "24x"), ("__r", "16x")))
    ev_type: int = E.UNKNOWN
    #: name of the kernel union member used in ``u`` and ``r`` (documentation and tests)
    u_member: str = ""
    r_member: str = ""

    def ft_encode(self, offset: int) -> tuple[int, int]:
        offset, _ = nlmsg_encoder_generic.ft_encode(self, offset)
        payload = bytes(self.get("payload") or b"")
        self.data.extend(payload)
        offset += len(payload)
        diff = ((offset + 3) & ~3) - offset
        self.data.extend(b"\0" * diff)
        return offset + diff, diff

    def decode(self) -> None:
        if len(self.data) - self.offset < NLMSG_HDRLEN + ISCSI_UEVENT_SIZE:
            raise NetlinkDecodeError(ValueError("datagram shorter than nlmsghdr + iscsi_uevent (72 bytes)"))
        (length,) = struct.unpack_from("=I", self.data, self.offset)
        if length < NLMSG_HDRLEN + ISCSI_UEVENT_SIZE or self.offset + length > len(self.data):
            raise NetlinkDecodeError(ValueError(f"bad nlmsg_len {length} for {len(self.data) - self.offset} bytes"))
        super().decode()

    def ft_decode(self, offset: int) -> None:
        nlmsg_decoder_generic.ft_decode(self, offset)
        for key in [k for k in self if k.startswith("__")]:
            del self[key]
        start = offset + ISCSI_UEVENT_SIZE
        self["payload"] = bytes(self.data[start : self.offset + self.length])


def _u(*fields: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    pad = U_UNION_SIZE - _size(fields)
    assert pad >= 0, fields
    return tuple(fields) + ((("__upad", f"{pad}x"),) if pad else ())


def _r(*fields: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    fields = tuple(("r_" + n, f) for n, f in fields)
    pad = R_UNION_SIZE - _size(fields)
    assert pad >= 0, fields
    return fields + ((("__rpad", f"{pad}x"),) if pad else ())


# The declarative table: type -> (u member, u fields, r member, r fields, C text of both, payload).
_U_NONE: tuple[tuple[str, str], ...] = (("__u", "24x"),)
_SID_CID = (("sid", "I"), ("cid", "I"))
_RETCODE = ("retcode", _r(("retcode", "i")), "int retcode;")
_TABLE: list[tuple[int, str, tuple, str, str, tuple, str, str]] = []


def _row(ev: int, u_member: str, u_fields: tuple, u_c: str, r: tuple, payload: str = "none") -> None:
    r_member, r_fields, r_c = r
    _TABLE.append((ev, u_member, u_fields, u_c, r_member, r_fields, r_c, payload))


_row(E.CREATE_SESSION, "c_session", _u(("initial_cmdsn", "I"), ("cmds_max", "H"), ("queue_depth", "H")),
     "struct msg_create_session { uint32_t initial_cmdsn; uint16_t cmds_max; uint16_t queue_depth; } c_session;",
     ("c_session_ret", _r(("sid", "I"), ("host_no", "I")),
      "struct msg_create_session_ret { uint32_t sid; uint32_t host_no; } c_session_ret;"))
_row(E.DESTROY_SESSION, "d_session", _u(("sid", "I")),
     "struct msg_destroy_session { uint32_t sid; } d_session;", _RETCODE)
_row(E.CREATE_CONN, "c_conn", _u(*_SID_CID),
     "struct msg_create_conn { uint32_t sid; uint32_t cid; } c_conn;",
     ("c_conn_ret", _r(("sid", "I"), ("cid", "I")),
      "struct msg_create_conn_ret { uint32_t sid; uint32_t cid; } c_conn_ret;  /* cid (uint32_t)-1: failed */"))
_row(E.DESTROY_CONN, "d_conn", _u(*_SID_CID),
     "struct msg_destroy_conn { uint32_t sid; uint32_t cid; } d_conn;", _RETCODE)
_row(E.BIND_CONN, "b_conn", _u(("sid", "I"), ("cid", "I"), ("transport_eph", "Q"), ("is_leading", "I")),
     "struct msg_bind_conn { uint32_t sid; uint32_t cid; uint64_t transport_eph; uint32_t is_leading; } b_conn;",
     _RETCODE)
_row(E.SET_PARAM, "set_param", _u(("sid", "I"), ("cid", "I"), ("param", "I"), ("len", "I")),
     "struct msg_set_param { uint32_t sid; uint32_t cid; uint32_t param; /* enum iscsi_param */ uint32_t len; } set_param;",
     _RETCODE, "NUL-terminated ASCII value, len bytes including the NUL")
_row(E.START_CONN, "start_conn", _u(*_SID_CID),
     "struct msg_start_conn { uint32_t sid; uint32_t cid; } start_conn;", _RETCODE)
_row(E.STOP_CONN, "stop_conn", _u(("sid", "I"), ("cid", "I"), ("conn_handle", "Q"), ("flag", "I")),
     "struct msg_stop_conn { uint32_t sid; uint32_t cid; uint64_t conn_handle; uint32_t flag; } stop_conn;",
     _RETCODE)
_row(E.SEND_PDU, "send_pdu", _u(("sid", "I"), ("cid", "I"), ("hdr_size", "I"), ("data_size", "I")),
     "struct msg_send_pdu { uint32_t sid; uint32_t cid; uint32_t hdr_size; uint32_t data_size; } send_pdu;",
     _RETCODE, "hdr_size bytes of BHS(+AHS), then data_size bytes of data")
_row(E.GET_STATS, "get_stats", _u(*_SID_CID),
     "struct msg_get_stats { uint32_t sid; uint32_t cid; } get_stats;", _RETCODE,
     "reply (multicast, nlmsg_type 0): struct iscsi_stats + custom_length x struct iscsi_stats_custom")
_row(E.GET_PARAM, "(none)", _U_NONE, "/* no union member: the kernel answers -ENOSYS */", _RETCODE)
_row(E.TRANSPORT_EP_CONNECT, "ep_connect", _u(("non_blocking", "I")),
     "struct msg_transport_connect { uint32_t non_blocking; } ep_connect;",
     ("ep_connect_ret", _r(("handle", "Q")), "struct msg_transport_connect_ret { uint64_t handle; } ep_connect_ret;"),
     "struct sockaddr_in / sockaddr_in6 of the target portal")
_row(E.TRANSPORT_EP_POLL, "ep_poll", _u(("ep_handle", "Q"), ("timeout_ms", "I")),
     "struct msg_transport_poll { uint64_t ep_handle; uint32_t timeout_ms; } ep_poll;", _RETCODE)
_row(E.TRANSPORT_EP_DISCONNECT, "ep_disconnect", _u(("ep_handle", "Q")),
     "struct msg_transport_disconnect { uint64_t ep_handle; } ep_disconnect;", _RETCODE)
_row(E.TGT_DSCVR, "tgt_dscvr", _u(("dscvr_type", "I"), ("host_no", "I"), ("enable", "I")),
     "struct msg_tgt_dscvr { enum iscsi_tgt_dscvr type; uint32_t host_no; uint32_t enable; } tgt_dscvr;",
     _RETCODE, "struct sockaddr_in / sockaddr_in6 of the discovery server")
_row(E.SET_HOST_PARAM, "set_host_param", _u(("host_no", "I"), ("param", "I"), ("len", "I")),
     "struct msg_set_host_param { uint32_t host_no; uint32_t param; /* enum iscsi_host_param */ uint32_t len; } set_host_param;",
     _RETCODE, "NUL-terminated ASCII value, len bytes including the NUL")
_row(E.UNBIND_SESSION, "d_session", _u(("sid", "I")),
     "struct msg_destroy_session { uint32_t sid; } d_session;", _RETCODE)
_row(E.CREATE_BOUND_SESSION, "c_bound_session",
     _u(("ep_handle", "Q"), ("initial_cmdsn", "I"), ("cmds_max", "H"), ("queue_depth", "H")),
     "struct msg_create_bound_session { uint64_t ep_handle; uint32_t initial_cmdsn; uint16_t cmds_max; uint16_t queue_depth; } c_bound_session;",
     ("c_session_ret", _r(("sid", "I"), ("host_no", "I")),
      "struct msg_create_session_ret { uint32_t sid; uint32_t host_no; } c_session_ret;"))
_row(E.TRANSPORT_EP_CONNECT_THROUGH_HOST, "ep_connect_through_host", _u(("host_no", "I"), ("non_blocking", "I")),
     "struct msg_transport_connect_through_host { uint32_t host_no; uint32_t non_blocking; } ep_connect_through_host;",
     ("ep_connect_ret", _r(("handle", "Q")), "struct msg_transport_connect_ret { uint64_t handle; } ep_connect_ret;"),
     "struct sockaddr_in / sockaddr_in6 of the target portal")
_row(E.PATH_UPDATE, "set_path", _u(("host_no", "I")),
     "struct msg_set_path { uint32_t host_no; } set_path;", _RETCODE, "struct iscsi_path (64 bytes)")
_row(E.SET_IFACE_PARAMS, "set_iface_params", _u(("host_no", "I"), ("count", "I")),
     "struct msg_set_iface_params { uint32_t host_no; uint32_t count; } set_iface_params;", _RETCODE,
     "count x nlattr{struct iscsi_iface_param_info + value}")
_row(E.PING, "iscsi_ping", _u(("host_no", "I"), ("iface_num", "I"), ("iface_type", "I"), ("payload_size", "I"), ("pid", "I")),
     "struct msg_iscsi_ping { uint32_t host_no; uint32_t iface_num; uint32_t iface_type; uint32_t payload_size; uint32_t pid; } iscsi_ping;",
     _RETCODE, "struct sockaddr_in / sockaddr_in6 of the destination")
_row(E.GET_CHAP, "get_chap", _u(("host_no", "I"), ("num_entries", "I"), ("chap_tbl_idx", "H")),
     "struct msg_get_chap { uint32_t host_no; uint32_t num_entries; uint16_t chap_tbl_idx; } get_chap;", _RETCODE,
     "reply (multicast): num_entries x struct iscsi_chap_rec (524 bytes each)")
_row(E.DELETE_CHAP, "delete_chap", _u(("host_no", "I"), ("chap_tbl_idx", "H")),
     "struct msg_delete_chap { uint32_t host_no; uint16_t chap_tbl_idx; } delete_chap;", _RETCODE)
_row(E.SET_FLASHNODE_PARAMS, "set_flashnode", _u(("host_no", "I"), ("flashnode_idx", "I"), ("count", "I")),
     "struct msg_set_flashnode_param { uint32_t host_no; uint32_t flashnode_idx; uint32_t count; } set_flashnode;",
     _RETCODE, "count x nlattr{struct iscsi_flashnode_param_info + value}")
_row(E.NEW_FLASHNODE, "new_flashnode", _u(("host_no", "I"), ("len", "I")),
     "struct msg_new_flashnode { uint32_t host_no; uint32_t len; } new_flashnode;",
     ("new_flashnode_ret", _r(("flashnode_idx", "I")), "struct msg_new_flashnode_ret { uint32_t flashnode_idx; } new_flashnode_ret;"),
     "portal type string \"ipv4\" or \"ipv6\", len bytes")
for _ev, _m, _s in ((E.DEL_FLASHNODE, "del_flashnode", "msg_del_flashnode"),
                    (E.LOGIN_FLASHNODE, "login_flashnode", "msg_login_flashnode"),
                    (E.LOGOUT_FLASHNODE, "logout_flashnode", "msg_logout_flashnode")):
    _row(_ev, _m, _u(("host_no", "I"), ("flashnode_idx", "I")),
         f"struct {_s} {{ uint32_t host_no; uint32_t flashnode_idx; }} {_m};", _RETCODE)
_row(E.LOGOUT_FLASHNODE_SID, "logout_flashnode_sid", _u(("host_no", "I"), ("sid", "I")),
     "struct msg_logout_flashnode_sid { uint32_t host_no; uint32_t sid; } logout_flashnode_sid;", _RETCODE)
_row(E.SET_CHAP, "set_path", _u(("host_no", "I")),
     "struct msg_set_path { uint32_t host_no; } set_path;  /* sic: SET_CHAP reuses set_path */", _RETCODE,
     "nlattr{struct iscsi_param_info + value} entries with enum iscsi_chap_param ids")
_row(E.GET_HOST_STATS, "get_host_stats", _u(("host_no", "I")),
     "struct msg_get_host_stats { uint32_t host_no; } get_host_stats;", _RETCODE,
     "reply (multicast): struct iscsi_offload_host_stats (664 bytes) + custom entries")
_row(E.DESTROY_SESSION_ASYNC, "d_session", _u(("sid", "I")),
     "struct msg_destroy_session { uint32_t sid; } d_session;", _RETCODE)

# kernel -> user events: u is zero.
_row(E.KEVENT_RECV_PDU, "(zero)", _U_NONE, "",
     ("recv_req", _r(("sid", "I"), ("cid", "I"), ("recv_handle", "Q")),
      "struct msg_recv_req { uint32_t sid; uint32_t cid; uint64_t recv_handle; } recv_req;"),
     "the received PDU: BHS (48 bytes) + AHS + data")
_row(E.KEVENT_CONN_ERROR, "(zero)", _U_NONE, "",
     ("connerror", _r(("sid", "I"), ("cid", "I"), ("error", "I")),
      "struct msg_conn_error { uint32_t sid; uint32_t cid; uint32_t error; /* enum iscsi_err */ } connerror;"))
_row(E.KEVENT_IF_ERROR, "(echo of the request)", (("u_raw", "24s"),),
     "/* the failed request's u union, echoed */",
     ("retcode", (("r_raw", "16s"),), "/* the request's r union, untouched; iferror = -errno */"))
_row(E.KEVENT_DESTROY_SESSION, "(zero)", _U_NONE, "",
     ("d_session", _r(("host_no", "I"), ("sid", "I")),
      "struct msg_session_destroyed { uint32_t host_no; uint32_t sid; } d_session;"))
_row(E.KEVENT_UNBIND_SESSION, "(zero)", _U_NONE, "",
     ("unbind_session", _r(("sid", "I"), ("host_no", "I")),
      "struct msg_unbind_session { uint32_t sid; uint32_t host_no; } unbind_session;"))
_row(E.KEVENT_CREATE_SESSION, "(zero)", _U_NONE, "",
     ("c_session_ret", _r(("sid", "I"), ("host_no", "I")),
      "struct msg_create_session_ret { uint32_t sid; uint32_t host_no; } c_session_ret;"))
_row(E.KEVENT_PATH_REQ, "(zero)", _U_NONE, "",
     ("req_path", _r(("host_no", "I")), "struct msg_req_path { uint32_t host_no; } req_path;"),
     "struct iscsi_path (64 bytes); multicast group 2 (iscsiuio)")
_row(E.KEVENT_IF_DOWN, "(zero)", _U_NONE, "",
     ("notify_if_down", _r(("host_no", "I")), "struct msg_notify_if_down { uint32_t host_no; } notify_if_down;"),
     "multicast group 2 (iscsiuio)")
_row(E.KEVENT_CONN_LOGIN_STATE, "(zero)", _U_NONE, "",
     ("conn_login", _r(("sid", "I"), ("cid", "I"), ("state", "I")),
      "struct msg_conn_login { uint32_t sid; uint32_t cid; uint32_t state; /* enum iscsi_conn_state */ } conn_login;"))
_row(E.KEVENT_HOST_EVENT, "(zero)", _U_NONE, "",
     ("host_event", _r(("host_no", "I"), ("data_size", "I"), ("code", "I")),
      "struct msg_host_event { uint32_t host_no; uint32_t data_size; enum iscsi_host_event_code code; } host_event;"),
     "data_size bytes of event data")
_row(E.KEVENT_PING_COMP, "(zero)", _U_NONE, "",
     ("ping_comp", _r(("host_no", "I"), ("status", "I"), ("pid", "I"), ("data_size", "I")),
      "struct msg_ping_comp { uint32_t host_no; uint32_t status; uint32_t pid; uint32_t data_size; } ping_comp;"),
     "data_size bytes of ping data")


def _build() -> dict[int, type[iscsi_uevent]]:
    classes: dict[int, type[iscsi_uevent]] = {}
    for ev, u_member, u_fields, u_c, r_member, r_fields, r_c, payload in _TABLE:
        ev = E(ev)
        kind = "kevent" if ev >= 100 else "uevent"
        name = f"{kind}_{ev.name.removeprefix('KEVENT_').lower()}"
        fields = _HEADER_FIELDS + tuple(u_fields) + tuple(r_fields)
        assert _size(fields) == ISCSI_UEVENT_SIZE, (name, _size(fields))
        prefix = "ISCSI_KEVENT_" if ev >= 100 else "ISCSI_UEVENT_"
        doc = (f"``{prefix}{ev.name.removeprefix('KEVENT_')}`` ({int(ev)}): u.{u_member}, r.{r_member}.\n\n"
               "C layout (include/scsi/iscsi_if.h, Linux 6.1)::\n\n"
               "    struct iscsi_uevent { uint32_t type; uint32_t iferror; uint64_t transport_handle;\n"
               f"        union {{ {u_c or '/* zero */'} }} u;\n"
               f"        union {{ {r_c} }} r; }};\n\n"
               f"Fields: {', '.join(n for n, _ in fields if not n.startswith('__'))}.\n"
               f"Payload after the uevent: {payload}.\n")
        cls = type(name, (iscsi_uevent,), {"__slots__": (), "fields": fields, "ev_type": ev,
                                            "u_member": u_member, "r_member": r_member, "__doc__": doc,
                                            "__module__": __name__})
        classes[ev] = cls
        globals()[name] = cls
        __all__.append(name)
    return classes


#: The single table mapping ``iscsi_uevent.type`` -> message class (encoding and decoding).
MESSAGE_CLASSES: dict[int, type[iscsi_uevent]] = _build()


_NLMSGHDR = struct.Struct("=IHHII")


class IscsiMarshal(Marshal):
    """pyroute2 Marshal keyed on ``iscsi_uevent.type`` (``'I'`` at absolute offset 16).

    :meth:`parse` never raises on kernel input: a truncated or malformed message
    is logged and skipped (and, because its length cannot be trusted, so is the
    rest of that datagram).
    """

    msg_map = MESSAGE_CLASSES
    key_format = "I"
    key_offset = 16
    default_message_class = iscsi_uevent
    error_type = -1  # NLMSG_ERROR keys never occur: the key is ev.type, not nlmsg_type

    def parse(self, data: bytes, seq: Any = None, callback: Any = None,
              skip_alien_seq: bool = False) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        return iter(decode_messages(data))


_PEEK = struct.Struct("=IH")  # nlmsg_len, nlmsg_type
_KEY = struct.Struct("=I")    # iscsi_uevent.type, at absolute offset 16
_MIN_LEN = NLMSG_HDRLEN + ISCSI_UEVENT_SIZE


def decode_messages(data: bytes) -> list[dict[str, Any]]:
    """Decode one received datagram into messages (malformed ones are logged and skipped).

    Each message is a plain dict: ``header`` (the nlmsghdr as ``length``, ``type``,
    ``flags``, ``sequence_number``, ``pid``), every field of its class's ``fields`` by
    name (``type``, ``iferror``, ``transport_handle``, the ``u`` and ``r_`` members) and
    ``payload`` (the bytes after the 56-byte uevent).  Never raises on kernel input: a
    truncated or malformed message is logged and dropped (and, because its length cannot be
    trusted, so is the rest of that datagram)."""
    data = bytes(data)
    end = len(data)
    out = []
    offset = 0
    while offset < end:
        if end - offset < _MIN_LEN:
            log.warning("iscsi netlink: dropping %d trailing bytes (shorter than a uevent)", end - offset)
            break
        length, _nl_type = _PEEK.unpack_from(data, offset)
        if length < _MIN_LEN or offset + length > end:
            log.warning("iscsi netlink: malformed message (nlmsg_len=%d, %d bytes left), dropped",
                        length, end - offset)
            break
        (key,) = _KEY.unpack_from(data, offset + 16)
        fast = _codec(key)
        if fast is not None:
            # what pyroute2's decode() yields, by one struct call (~1 us, not ~8):
            # replies to the ~40 requests of a login and every event come this way
            values = fast[0].unpack_from(data, offset)
            msg = dict(zip(fast[1], values[5:]))
            msg["header"] = {"length": values[0], "type": values[1], "flags": values[2],
                             "sequence_number": values[3], "pid": values[4]}
            msg["payload"] = data[offset + _MIN_LEN:offset + length]
            out.append(msg)
        else:
            full = MESSAGE_CLASSES.get(key, iscsi_uevent)(data[offset:offset + length])
            try:
                full.decode()
            except Exception as exc:  # noqa: BLE001 - kernel input must never crash the loop
                log.warning("iscsi netlink: cannot decode message type %d: %s", key, exc)
            else:
                out.append(dict(full))
        offset += (length + 3) & ~3
    return out


_FIELD_NAMES = {ev: frozenset(n for n, _ in cls.fields) for ev, cls in MESSAGE_CLASSES.items()}
_CODECS: dict[int, tuple[struct.Struct, tuple[str, ...], dict[str, int]] | None] = {}


def _codec(ev_type: int) -> tuple[struct.Struct, tuple[str, ...], dict[str, int]] | None:
    """One ``struct.Struct`` for nlmsghdr + a message class's 56-byte uevent, derived once
    from its pyroute2 ``fields`` (which stay the single declaration of the layout): every
    field is a plain host-endian struct code with explicit pads, so packing them in order is
    the C layout.  Returns that Struct, the uevent's field names in value order (after the
    header's five values) and ``{name: value index}``; None (use pyroute2's codec) for a
    type not in the table or a class that does not fit that."""
    try:
        return _CODECS[ev_type]
    except KeyError:
        pass
    codec = None
    cls = MESSAGE_CLASSES.get(ev_type)
    if cls is not None and not any(f[0] in "<>!=@" for _, f in cls.fields):
        uevent = "".join(f for _, f in cls.fields)
        if struct.calcsize("=" + uevent) == ISCSI_UEVENT_SIZE:
            names = tuple(n for n, f in cls.fields if not f.endswith("x"))
            codec = (struct.Struct(_NLMSGHDR.format + uevent), names,
                     {n: i + 5 for i, n in enumerate(names)})
    _CODECS[ev_type] = codec
    return codec


def _unknown_fields(ev_type: int, fields: dict[str, Any]) -> KeyError:
    unknown = sorted(set(fields) - _FIELD_NAMES[ev_type])
    return KeyError(f"{MESSAGE_CLASSES[ev_type].__name__} has no field(s) {unknown}")


def message_encoder(ev_type: int, *names: str) -> Callable[..., bytes]:
    """A fast encoder of ``ev_type`` requests that set the uevent fields ``names`` (its
    ``u``/``r`` members, besides ``transport_handle``): ``encode(nlmsg_seq, nlmsg_pid,
    transport_handle, *values, payload=b"")``, the values in the order of ``names``, returns
    the bytes :func:`encode_message` returns for the same fields (positional values, for
    requests sent many at a time: a login's SET_PARAMs).  Unknown field names raise
    ``KeyError`` here; a header field (``type``, ``iferror``, ``transport_handle``) or a name
    given twice, ``ValueError``."""
    if not set(names) <= _FIELD_NAMES[ev_type]:
        raise _unknown_fields(ev_type, dict.fromkeys(names))
    if len(set(names)) != len(names) or {"type", "iferror", "transport_handle"} & set(names):
        raise ValueError(f"fields {names}: each once, and none of the uevent's header")
    if _codec(ev_type) is None:
        def slow(nlmsg_seq: int, nlmsg_pid: int, transport_handle: int, *values: Any,
                 payload: bytes = b"") -> bytes:
            return encode_message(ev_type, transport_handle=transport_handle, payload=payload,
                                  nlmsg_seq=nlmsg_seq, nlmsg_pid=nlmsg_pid,
                                  **dict(zip(names, values)))
        return slow
    # One Struct for just what varies (nlmsg_len, nlmsg_seq, nlmsg_pid, transport_handle and
    # ``names``) and the two type fields; every other field is zero, packed as pad bytes:
    # one pack() call of a few arguments per request (a SET_PARAM 1.1 us on the host, not 2.1).
    fmt, layout = "=IH2xII", []  # nlmsg_len, nlmsg_type, nlmsg_flags = 0, nlmsg_seq, nlmsg_pid
    for name, code in MESSAGE_CLASSES[ev_type].fields:
        if name in ("type", "transport_handle") or name in names:
            fmt += code
            layout.append(name)
        else:
            fmt += code if code.endswith("x") else f"{struct.calcsize('=' + code)}x"
    st = struct.Struct(fmt)
    order = [names.index(name) for name in layout[2:]]  # layout: type, transport_handle, names
    in_order = order == list(range(len(names)))
    fixed = NLMSG_HDRLEN + ISCSI_UEVENT_SIZE

    def encode(nlmsg_seq: int, nlmsg_pid: int, transport_handle: int, *values: Any,
               payload: bytes = b"") -> bytes:
        length = fixed + len(payload)
        if not in_order:
            values = tuple(values[i] for i in order)
        return st.pack(length, ev_type, nlmsg_seq, nlmsg_pid, ev_type, transport_handle,
                       *values) + payload + _PADS[-length & 3]
    return encode


_PADS = (b"", b"\0", b"\0\0", b"\0\0\0")  # NLMSG_ALIGN's zeros, by the bytes missing


def encode_message(ev_type: int, *, transport_handle: int = 0, payload: bytes = b"", nlmsg_seq: int = 0,
                   nlmsg_pid: int = 0, nlmsg_type: int | None = None, **fields: Any) -> bytes:
    """Encode nlmsghdr + uevent (+ payload) for ``ev_type`` using :data:`MESSAGE_CLASSES`.

    ``nlmsg_seq``/``nlmsg_pid`` fill the nlmsghdr (the kernel ignores both and replies with 0).
    ``nlmsg_type`` defaults to ``ev_type`` (requests); the fake kernel in the tests
    passes 0 for multicast events.  Unknown field names raise ``KeyError``.
    Returns the datagram bytes (padded to 4; ``nlmsg_len`` is not padded).
    """
    cls = MESSAGE_CLASSES[ev_type]
    codec = _codec(ev_type)
    if codec is not None:
        st, names, index = codec
        values = [0] * (5 + len(names))
        payload = bytes(payload)
        length = NLMSG_HDRLEN + ISCSI_UEVENT_SIZE + len(payload)
        values[0:5] = (length, ev_type if nlmsg_type is None else nlmsg_type, 0, nlmsg_seq, nlmsg_pid)
        values[index["type"]] = ev_type
        values[index["transport_handle"]] = transport_handle
        try:
            for name, value in fields.items():
                values[index[name]] = value
        except KeyError:
            raise _unknown_fields(ev_type, fields) from None
        return st.pack(*values) + payload + bytes(-length & 3)
    if not fields.keys() <= _FIELD_NAMES[ev_type]:
        raise _unknown_fields(ev_type, fields)
    msg = cls()
    msg["header"]["type"] = ev_type if nlmsg_type is None else nlmsg_type
    msg["header"]["flags"] = 0
    msg["header"]["sequence_number"] = nlmsg_seq
    msg["header"]["pid"] = nlmsg_pid
    msg["type"] = ev_type
    msg["transport_handle"] = transport_handle
    msg.update(fields)
    msg["payload"] = payload
    msg.encode()
    return bytes(msg.data)


# --------------------------------------------------------------------------- payloads

class _struct(nlmsg_base, nlmsg_encoder_generic, nlmsg_decoder_generic):
    """A headerless C struct declared with pyroute2 ``fields`` (payload after the uevent)."""

    __slots__ = ()
    header = None
    align = 0

    @classmethod
    def size(cls) -> int:
        return _size(cls.fields)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Decode one struct at ``offset``; raises ValueError when truncated."""
        if len(data) - offset < cls.size():
            raise ValueError(f"{cls.__name__}: need {cls.size()} bytes at {offset}, have {len(data) - offset}")
        s = cls(bytes(data), offset=offset)
        s.decode()
        names = {n for n, _ in cls.fields}
        return {k: v for k, v in s.items() if k in names and not k.startswith("__")}

    @classmethod
    def to_bytes(cls, **values: Any) -> bytes:
        s = cls()
        s.update(values)
        s.encode()
        return bytes(s.data)


class sockaddr_in_payload(_struct):
    """``struct sockaddr_in`` (16 B): sin_family u16 (host order), sin_port be16, sin_addr 4 B, 8 B zero."""

    __slots__ = ()
    fields = (("family", "H"), ("port", ">H"), ("addr", "4s"), ("__zero", "8x"))


class sockaddr_in6_payload(_struct):
    """``struct sockaddr_in6`` (28 B): family u16, port be16, flowinfo be32, addr 16 B, scope_id u32."""

    __slots__ = ()
    fields = (("family", "H"), ("port", ">H"), ("flowinfo", ">I"), ("addr", "16s"), ("scope_id", "I"))


def encode_sockaddr(address: str, port: int) -> bytes:
    """``(address, port)`` -> sockaddr_in (IPv4 text) or sockaddr_in6 (IPv6 text; a zone,
    ``fe80::1%eth0`` or ``%2``, is its ``sin6_scope_id``, as getaddrinfo gives it).
    ValueError if neither, or for a zone no interface has."""
    try:
        return sockaddr_in_payload.to_bytes(family=_socket.AF_INET, port=port,
                                            addr=_socket.inet_pton(_socket.AF_INET, address))
    except OSError:
        pass
    host, _, zone = address.partition("%")
    try:
        packed = _socket.inet_pton(_socket.AF_INET6, host)
    except OSError:
        raise ValueError(f"not an IPv4 or IPv6 address: {address!r}") from None
    scope_id = 0
    if zone:
        try:
            scope_id = int(zone) if zone.isdigit() else _socket.if_nametoindex(zone)
        except OSError:
            raise ValueError(f"no network interface {zone!r} (the zone of {address!r})") from None
    return sockaddr_in6_payload.to_bytes(family=_socket.AF_INET6, port=port, flowinfo=0, addr=packed,
                                         scope_id=scope_id)


def decode_sockaddr(data: bytes) -> tuple[str, int]:
    """sockaddr_in/in6 bytes -> ``(address, port)``. ValueError on another family or short data."""
    if len(data) < 2:
        raise ValueError("sockaddr too short")
    (family,) = struct.unpack_from("=H", data)
    if family == _socket.AF_INET:
        d = sockaddr_in_payload.from_bytes(data)
        return _socket.inet_ntop(_socket.AF_INET, d["addr"]), d["port"]
    if family == _socket.AF_INET6:
        d = sockaddr_in6_payload.from_bytes(data)
        return _socket.inet_ntop(_socket.AF_INET6, d["addr"]), d["port"]
    raise ValueError(f"unsupported address family {family}")


_STATS_U32 = ("noptx_pdus scsicmd_pdus tmfcmd_pdus login_pdus text_pdus dataout_pdus logout_pdus snack_pdus "
              "noprx_pdus scsirsp_pdus tmfrsp_pdus textrsp_pdus datain_pdus logoutrsp_pdus r2t_pdus async_pdus "
              "rjt_pdus digest_err timeout_err").split()


class iscsi_stats_payload(_struct):
    """``struct iscsi_stats`` (96 B) - per-connection counters, followed by ``custom_length`` customs::

        struct iscsi_stats {
            uint64_t txdata_octets; uint64_t rxdata_octets;          /* bytes */
            uint32_t noptx_pdus, scsicmd_pdus, tmfcmd_pdus, login_pdus, text_pdus,
                     dataout_pdus, logout_pdus, snack_pdus;          /* xmit pdus */
            uint32_t noprx_pdus, scsirsp_pdus, tmfrsp_pdus, textrsp_pdus, datain_pdus,
                     logoutrsp_pdus, r2t_pdus, async_pdus, rjt_pdus; /* recv pdus */
            uint32_t digest_err; uint32_t timeout_err;
            uint32_t custom_length;
            struct iscsi_stats_custom custom[] __attribute__ ((aligned (sizeof(uint64_t))));
        };
    """

    __slots__ = ()
    fields = (("txdata_octets", "Q"), ("rxdata_octets", "Q")) + tuple((n, "I") for n in _STATS_U32) + (
        ("custom_length", "I"),)


class iscsi_stats_custom_payload(_struct):
    """``struct iscsi_stats_custom { char desc[64]; uint64_t value; }`` (72 B)."""

    __slots__ = ()
    fields = (("desc", "64s"), ("value", "Q"))


class iscsi_host_stats_custom_payload(iscsi_stats_custom_payload):
    """``struct iscsi_host_stats_custom { char desc[64]; uint64_t value; }`` (72 B)."""

    __slots__ = ()


class iscsi_chap_rec_payload(_struct):
    """``struct iscsi_chap_rec`` (524 B, not packed)::

        struct iscsi_chap_rec {
            uint16_t chap_tbl_idx;                 /* @0 */
            enum chap_type_e chap_type;            /* @4 OUT=0 IN=1 */
            char username[256];                    /* @8 */
            uint8_t password[256];                 /* @264 */
            uint8_t password_length;               /* @520, 3 B tail padding */
        };
    """

    __slots__ = ()
    fields = (("chap_tbl_idx", "H"), ("__pad0", "2x"), ("chap_type", "I"), ("username", "256s"),
              ("password", "256s"), ("password_length", "B"), ("__pad1", "3x"))


class iscsi_path_payload(_struct):
    """``struct iscsi_path`` (64 B, aligned 8; PATH_UPDATE / KEVENT_PATH_REQ)::

        struct iscsi_path {
            uint64_t handle; uint8_t mac_addr[6]; uint8_t mac_addr_old[6];
            uint32_t ip_addr_len;   /* 4 or 16 */
            union { struct in_addr v4_addr; struct in6_addr v6_addr; } src;   /* @24 */
            union { struct in_addr v4_addr; struct in6_addr v6_addr; } dst;   /* @40 */
            uint16_t vlan_id; uint16_t pmtu;                                   /* @56 @58 */
        } __attribute__ ((aligned (sizeof(uint64_t))));
    """

    __slots__ = ()
    fields = (("handle", "Q"), ("mac_addr", "6s"), ("mac_addr_old", "6s"), ("ip_addr_len", "I"),
              ("src", "16s"), ("dst", "16s"), ("vlan_id", "H"), ("pmtu", "H"), ("__pad", "4x"))


_HOST_STATS_U64 = """mactx_frames mactx_bytes mactx_multicast_frames mactx_broadcast_frames mactx_pause_frames
mactx_control_frames mactx_deferral mactx_excess_deferral mactx_late_collision mactx_abort
mactx_single_collision mactx_multiple_collision mactx_collision mactx_frames_dropped mactx_jumbo_frames
macrx_frames macrx_bytes macrx_unknown_control_frames macrx_pause_frames macrx_control_frames macrx_dribble
macrx_frame_length_error macrx_jabber macrx_carrier_sense_error macrx_frame_discarded macrx_frames_dropped
mac_crc_error mac_encoding_error macrx_length_error_large macrx_length_error_small macrx_multicast_frames
macrx_broadcast_frames iptx_packets iptx_bytes iptx_fragments iprx_packets iprx_bytes iprx_fragments
ip_datagram_reassembly ip_invalid_address_error ip_error_packets ip_fragrx_overlap ip_fragrx_outoforder
ip_datagram_reassembly_timeout ipv6tx_packets ipv6tx_bytes ipv6tx_fragments ipv6rx_packets ipv6rx_bytes
ipv6rx_fragments ipv6_datagram_reassembly ipv6_invalid_address_error ipv6_error_packets ipv6_fragrx_overlap
ipv6_fragrx_outoforder ipv6_datagram_reassembly_timeout tcptx_segments tcptx_bytes tcprx_segments
tcprx_byte tcp_duplicate_ack_retx tcp_retx_timer_expired tcprx_duplicate_ack tcprx_pure_ackr
tcptx_delayed_ack tcptx_pure_ack tcprx_segment_error tcprx_segment_outoforder tcprx_window_probe
tcprx_window_update tcptx_window_probe_persist ecc_error_correction iscsi_pdu_tx iscsi_data_bytes_tx
iscsi_pdu_rx iscsi_data_bytes_rx iscsi_io_completed iscsi_unexpected_io_rx iscsi_format_error
iscsi_hdr_digest_error iscsi_data_digest_error iscsi_sequence_error""".split()


class iscsi_offload_host_stats_payload(_struct):
    """``struct iscsi_offload_host_stats`` (664 B): 82 x uint64_t counters (MAC 32, IP 24, TCP 15,
    ECC 1, iSCSI 10; kernel names), ``uint32_t custom_length`` @656, then
    ``struct iscsi_host_stats_custom custom[]`` aligned 8 @664."""

    __slots__ = ()
    fields = tuple((n, "Q") for n in _HOST_STATS_U64) + (("custom_length", "I"), ("__pad", "4x"))


def _make_param_nla(name: str, fields: tuple, doc: str) -> type:
    def ft_encode(self: Any, offset: int) -> tuple[int, int]:
        value = bytes(self.get("value") or b"")
        self["len"] = len(value)
        for fname, fmt in self.fields:
            offset = self.encode_field(fmt, self.data, offset, self.get(fname) or 0)
        self.data.extend(value)
        offset += len(value)
        diff = ((offset + 3) & ~3) - offset
        self.data.extend(b"\0" * diff)
        return offset + diff, diff

    def ft_decode(self: Any, offset: int) -> None:
        for fname, fmt in self.fields:
            self[fname], offset = self.decode_field(fmt, self.data, offset)
        end = self.offset + self.length
        self["value"] = bytes(self.data[offset : min(end, offset + self["len"])])
        self.pop("attrs", None)

    return type(name, (nla,), {"__slots__": (), "fields": fields, "__doc__": doc, "__module__": __name__,
                               "ft_encode": ft_encode, "ft_decode": ft_decode,
                               "info_size": classmethod(lambda cls: _size(cls.fields))})


iscsi_param_info_nla = _make_param_nla(
    "iscsi_param_info_nla", (("len", "I"), ("param", "H")),
    """nlattr + ``struct iscsi_param_info { uint32_t len; uint16_t param; uint8_t value[]; } __packed;`` (6 B).

    Used by SET_CHAP with ``enum iscsi_chap_param`` ids; ``nla_type`` = param.""")
iscsi_iface_param_info_nla = _make_param_nla(
    "iscsi_iface_param_info_nla",
    (("iface_num", "I"), ("len", "I"), ("param", "H"), ("iface_type", "B"), ("param_type", "B")),
    """nlattr + ``struct iscsi_iface_param_info { uint32_t iface_num; uint32_t len; uint16_t param;
    uint8_t iface_type; /* 1 IPv4, 2 IPv6 */ uint8_t param_type; /* enum iscsi_param_type */
    uint8_t value[]; } __packed;`` (12 B). ``nla_type`` = param.""")
iscsi_flashnode_param_info_nla = _make_param_nla(
    "iscsi_flashnode_param_info_nla", (("len", "I"), ("param", "H")),
    """nlattr + ``struct iscsi_flashnode_param_info { uint32_t len; uint16_t param; uint8_t value[]; } __packed;``
    (6 B). ``nla_type`` = param (enum iscsi_flashnode_param).""")


def encode_nlas(cls: type, entries: list[dict[str, Any]]) -> bytes:
    """Concatenate nlattr-wrapped param infos; each entry gives the info fields and ``value`` (bytes).

    ``nla_type`` is the entry's ``param``; ``len`` is computed from ``value``.
    """
    out = bytearray()
    for entry in entries:
        a = cls()
        a["header"]["type"] = entry["param"]
        a.update(entry)
        a.encode()
        out += a.data
    return bytes(out)


def decode_nlas(cls: type, data: bytes) -> list[dict[str, Any]]:
    """Inverse of :func:`encode_nlas`. ValueError on a truncated attribute."""
    out: list[dict[str, Any]] = []
    offset = 0
    data = bytes(data)
    while offset + 4 <= len(data):
        nla_len, _ = struct.unpack_from("=HH", data, offset)
        if nla_len < 4 + cls.info_size() or offset + nla_len > len(data):
            raise ValueError(f"truncated nlattr at {offset} (nla_len {nla_len})")
        a = cls(data, offset=offset)
        a.decode()
        out.append({k: v for k, v in a.items() if k != "header"})
        offset += (nla_len + 3) & ~3
    return out
