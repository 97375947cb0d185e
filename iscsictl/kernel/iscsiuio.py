"""iscsiuio's IPC: what iscsid and iscsiadm tell the userspace network stack of the bnx2i
and qedi HBAs (``transport.iscsiuio``), and what it answers.

Source: open-iscsi 2.1.8 usr/uip_mgmt_ipc.h (the messages), usr/uip_mgmt_ipc.c
(``uip_broadcast_params``, ``uip_broadcast_ping_req``), usr/iscsid_req.c
(``uip_broadcast``: how the answer is waited for and read), usr/config.h (``struct
iface_rec``, the payload), iscsiuio/src/unix/iscsid_ipc.c (the server:
``process_iscsid_broadcast``).

A request is one connection to the abstract Unix socket ``@ISCSID_UIP_ABSTRACT_NAMESPACE``
(iscsiuio takes root's only, by SO_PEERCRED), one write of a header (``command``,
``payload_len``: two native 32-bit words) and the payload, and one answer of three native
32-bit words (``command``, ``err``, ``ping_sc``), after which iscsiuio closes it.  The
payload is open-iscsi's in-memory ``struct iface_rec`` byte for byte (native layout:
iscsiuio is built from the same header), and for a ping the target's ``struct
sockaddr_storage`` and the payload size after it.

* ``ISCSID_UIP_IPC_GET_IFACE`` (iscsid before each connect through such an HBA, iscsiadm
  before each ping and discovery): iscsiuio finds or makes the NIC of ``netdev``, brings
  its stack up with the iface's address (static, or DHCP when it is 0.0.0.0), VLAN and
  MTU, and answers ``DEVICE_UP`` when it runs, ``DEVICE_INITIALIZING`` while it starts
  (try again), ``ERR`` otherwise.  Every answer but ``DEVICE_UP`` is "not ready" to
  iscsid (``ISCSI_ERR_AGAIN``): it tries again a second later.
* ``ISCSID_UIP_IPC_PING``: iscsiuio pings the address from the NIC's stack and answers
  with the ping's status in ``ping_sc`` (0: it came back).

Sans-I/O apart from :func:`exchange`, the one blocking request.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["GET_IFACE_TIMEOUT", "IFACE_REC_FIELDS", "IfaceRec", "NAMESPACE", "UipCommand",
           "UipError", "UipNotRunning", "UipResponse", "UipStatus", "exchange",
           "get_iface_request", "iface_rec", "ping_request", "socket_name", "with_host_netdev"]

#: The abstract socket's name (usr/uip_mgmt_ipc.h ISCSID_UIP_NAMESPACE).  Tests put a
#: server of their own at another name: ``$ISCSICTL_UIP_SOCKET`` (:func:`socket_name`).
NAMESPACE = "ISCSID_UIP_ABSTRACT_NAMESPACE"
#: seconds iscsid waits for GET_IFACE's answer (iscsid_req.c uip_broadcast: five reads of
#: a non-blocking socket, a second apart)
GET_IFACE_TIMEOUT = 5.0


class UipCommand(IntEnum):
    """usr/uip_mgmt_ipc.h ``enum iscsid_uip_cmd``."""

    UNKNOWN = 0
    GET_IFACE = 1
    PING = 2


class UipStatus(IntEnum):
    """usr/uip_mgmt_ipc.h ``enum iscsid_uip_mgmt_ipc_err``: an answer's ``err``."""

    OK = 0
    ERR = 1
    ERR_NOT_FOUND = 2
    ERR_NOMEM = 3
    DEVICE_UP = 4
    DEVICE_INITIALIZING = 5


# usr/config.h and include/iscsi_proto.h sizes
ISCSI_MAX_IFACE_LEN = 65
IFNAMSIZ = 16
NI_MAXHOST = 1025
ISCSI_MAX_STR_LEN = 80
ISCSI_HWADDRESS_BUF_SIZE = 18
ISCSI_TRANSPORT_NAME_MAXLEN = 16
TARGET_NAME_MAXLEN = 255  # VALUE_MAXLEN

_S = ctypes.c_char
_U8, _U16, _U32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32

#: ``struct iface_rec`` (usr/config.h, open-iscsi 2.1.8) in declaration order: field,
#: C type, the iface record's key that fills it (None: not in the record).
IFACE_REC_FIELDS: tuple[tuple[str, type, str | None], ...] = (
    ("list", ctypes.c_void_p * 2, None),  # struct list_head: next, prev
    ("name", _S * ISCSI_MAX_IFACE_LEN, "iface.iscsi_ifacename"),
    ("iface_num", _U32, "iface.iface_num"),
    ("netdev", _S * IFNAMSIZ, "iface.net_ifacename"),
    ("ipaddress", _S * NI_MAXHOST, "iface.ipaddress"),
    ("subnet_mask", _S * NI_MAXHOST, "iface.subnet_mask"),
    ("gateway", _S * NI_MAXHOST, "iface.gateway"),
    ("bootproto", _S * ISCSI_MAX_STR_LEN, "iface.bootproto"),
    ("ipv6_linklocal", _S * NI_MAXHOST, "iface.ipv6_linklocal"),
    ("ipv6_router", _S * NI_MAXHOST, "iface.ipv6_router"),
    ("ipv6_autocfg", _S * NI_MAXHOST, "iface.ipv6_autocfg"),
    ("linklocal_autocfg", _S * NI_MAXHOST, "iface.linklocal_autocfg"),
    ("router_autocfg", _S * NI_MAXHOST, "iface.router_autocfg"),
    ("prefix_len", _U8, "iface.prefix_len"),
    ("vlan_id", _U16, "iface.vlan_id"),
    ("vlan_priority", _U8, "iface.vlan_priority"),
    ("vlan_state", _S * ISCSI_MAX_STR_LEN, "iface.vlan_state"),
    ("state", _S * ISCSI_MAX_STR_LEN, "iface.state"),
    ("mtu", _U16, "iface.mtu"),
    ("port", _U16, "iface.port"),
    ("delayed_ack", _S * ISCSI_MAX_STR_LEN, "iface.delayed_ack"),
    ("nagle", _S * ISCSI_MAX_STR_LEN, "iface.tcp_nagle"),
    ("tcp_wsf_state", _S * ISCSI_MAX_STR_LEN, "iface.tcp_wsf_state"),
    ("tcp_wsf", _U8, "iface.tcp_wsf"),
    ("tcp_timer_scale", _U8, "iface.tcp_timer_scale"),
    ("tcp_timestamp", _S * ISCSI_MAX_STR_LEN, "iface.tcp_timestamp"),
    ("dhcp_dns", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_dns"),
    ("dhcp_slp_da", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_slp_da"),
    ("tos_state", _S * ISCSI_MAX_STR_LEN, "iface.tos_state"),
    ("tos", _U8, "iface.tos"),
    ("gratuitous_arp", _S * ISCSI_MAX_STR_LEN, "iface.gratuitous_arp"),
    ("dhcp_alt_client_id_state", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_alt_client_id_state"),
    ("dhcp_alt_client_id", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_alt_client_id"),
    ("dhcp_req_vendor_id_state", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_req_vendor_id_state"),
    ("dhcp_vendor_id_state", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_vendor_id_state"),
    ("dhcp_vendor_id", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_vendor_id"),
    ("dhcp_learn_iqn", _S * ISCSI_MAX_STR_LEN, "iface.dhcp_learn_iqn"),
    ("fragmentation", _S * ISCSI_MAX_STR_LEN, "iface.fragmentation"),
    ("incoming_forwarding", _S * ISCSI_MAX_STR_LEN, "iface.incoming_forwarding"),
    ("ttl", _U8, "iface.ttl"),
    ("gratuitous_neighbor_adv", _S * ISCSI_MAX_STR_LEN, "iface.gratuitous_neighbor_adv"),
    ("redirect", _S * ISCSI_MAX_STR_LEN, "iface.redirect"),
    ("mld", _S * ISCSI_MAX_STR_LEN, "iface.mld"),
    ("flow_label", _U32, "iface.flow_label"),
    ("traffic_class", _U32, "iface.traffic_class"),
    ("hop_limit", _U8, "iface.hop_limit"),
    ("nd_reachable_tmo", _U32, "iface.nd_reachable_tmo"),
    ("nd_rexmit_time", _U32, "iface.nd_rexmit_time"),
    ("nd_stale_tmo", _U32, "iface.nd_stale_tmo"),
    ("dup_addr_detect_cnt", _U8, "iface.dup_addr_detect_cnt"),
    ("router_adv_link_mtu", _U32, "iface.router_adv_link_mtu"),
    ("def_task_mgmt_tmo", _U16, "iface.def_task_mgmt_timeout"),
    ("header_digest", _S * ISCSI_MAX_STR_LEN, "iface.header_digest"),
    ("data_digest", _S * ISCSI_MAX_STR_LEN, "iface.data_digest"),
    ("immediate_data", _S * ISCSI_MAX_STR_LEN, "iface.immediate_data"),
    ("initial_r2t", _S * ISCSI_MAX_STR_LEN, "iface.initial_r2t"),
    ("data_seq_inorder", _S * ISCSI_MAX_STR_LEN, "iface.data_seq_inorder"),
    ("data_pdu_inorder", _S * ISCSI_MAX_STR_LEN, "iface.data_pdu_inorder"),
    ("erl", _U8, "iface.erl"),
    ("max_recv_dlength", _U32, "iface.max_receive_data_len"),
    ("first_burst_len", _U32, "iface.first_burst_len"),
    ("max_out_r2t", _U16, "iface.max_outstanding_r2t"),
    ("max_burst_len", _U32, "iface.max_burst_len"),
    ("chap_auth", _S * ISCSI_MAX_STR_LEN, "iface.chap_auth"),
    ("bidi_chap", _S * ISCSI_MAX_STR_LEN, "iface.bidi_chap"),
    ("strict_login_comp", _S * ISCSI_MAX_STR_LEN, "iface.strict_login_compliance"),
    ("discovery_auth", _S * ISCSI_MAX_STR_LEN, "iface.discovery_auth"),
    ("discovery_logout", _S * ISCSI_MAX_STR_LEN, "iface.discovery_logout"),
    ("port_state", _S * ISCSI_MAX_STR_LEN, None),  # sysfs only
    ("port_speed", _S * ISCSI_MAX_STR_LEN, None),
    ("hwaddress", _S * ISCSI_HWADDRESS_BUF_SIZE, "iface.hwaddress"),
    ("transport_name", _S * ISCSI_TRANSPORT_NAME_MAXLEN, "iface.transport_name"),
    ("alias", _S * (TARGET_NAME_MAXLEN + 1), None),  # boot only
    ("iname", _S * (TARGET_NAME_MAXLEN + 1), "iface.initiatorname"),
)


class IfaceRec(ctypes.Structure):
    """usr/config.h ``struct iface_rec`` with this machine's native layout."""

    _fields_ = [(name, ctype) for name, ctype, _ in IFACE_REC_FIELDS]


class _Header(ctypes.Structure):
    """``struct iscsid_uip_broadcast_header``: an enum and a uint32_t."""

    _fields_ = [("command", ctypes.c_int), ("payload_len", _U32)]


class _PingRec(ctypes.Structure):
    """``struct ipc_broadcast_ping_rec``; ``status`` is iscsiadm's pointer, never read by
    iscsiuio and not counted in ``payload_len``."""

    _fields_ = [("ifrec", IfaceRec),
                ("ipaddr", ctypes.c_uint64 * 16),  # struct sockaddr_storage: 128, 8-aligned
                ("datalen", ctypes.c_int), ("status", ctypes.c_void_p)]


#: ``struct iscsid_uip_mgmt_rsp``: command, err, ping_sc (three enums)
_RESPONSE = struct.Struct("=iii")


@dataclass(frozen=True)
class UipResponse:
    """iscsiuio's answer: the command it answers, ``err`` (a :class:`UipStatus` value) and
    ``ping_sc`` (a ping's status: 0 success, else the kernel's ``enum
    iscsi_ping_status_code`` or a negative errno of iscsiuio's)."""

    command: int
    err: int
    ping_sc: int

    @property
    def device_up(self) -> bool:
        """The NIC's stack runs (``ISCSID_UIP_MGMT_IPC_DEVICE_UP``)."""
        return self.err == UipStatus.DEVICE_UP

    @property
    def initializing(self) -> bool:
        """The NIC's stack is starting (``ISCSID_UIP_MGMT_IPC_DEVICE_INITIALIZING``)."""
        return self.err == UipStatus.DEVICE_INITIALIZING

    @property
    def said(self) -> str:
        """``err`` by its name (``ERR``, ``DEVICE_UP`` ...), or its number."""
        try:
            return UipStatus(self.err).name
        except ValueError:
            return str(self.err)


class UipError(OSError):
    """iscsiuio could not be asked, or did not answer: what iscsid logs and returns
    (``errno``: the system's, or ETIMEDOUT / EPROTO)."""


class UipNotRunning(UipError):
    """Nothing listens on iscsiuio's socket ("uIP daemon is not up")."""


def _text(value: str | None, size: int) -> bytes:
    """A record's string as the C record holds it: ``<empty>`` is "", at most ``size`` - 1
    bytes and NUL-terminated (strlcpy)."""
    if not value or value == "<empty>":
        return b""
    return value.encode("utf-8", "replace")[:size - 1]


def _number(value: str | None, ctype: type) -> int:
    """A record's number as idbm stores it in a field of ``ctype``: decimal, cut to the
    field's width; what is not a number is 0."""
    try:
        n = int(str(value).strip(), 10)
    except (TypeError, ValueError):
        return 0
    return n & ((1 << (8 * ctypes.sizeof(ctype))) - 1)


def iface_rec(values: Mapping[str, str]) -> IfaceRec:
    """``struct iface_rec`` from an iface record's values (open-iscsi key -> text, as the
    DB reads them; the node record's ``iface.*`` values serve as well).  Keys absent are
    "" or 0, as iscsid's zeroed record."""
    rec = IfaceRec()
    for name, ctype, key in IFACE_REC_FIELDS:
        if key is None:
            continue
        value = values.get(key)
        if issubclass(ctype, ctypes.Array):
            setattr(rec, name, _text(value, ctypes.sizeof(ctype)))
        else:
            setattr(rec, name, _number(value, ctype))
    return rec


def _message(command: UipCommand, payload: bytes) -> bytes:
    return bytes(_Header(command, len(payload))) + payload


def get_iface_request(values: Mapping[str, str]) -> bytes:
    """ISCSID_UIP_IPC_GET_IFACE for the iface ``values`` (whose ``iface.net_ifacename`` is
    the NIC's: iscsid fills it from the host's sysfs ``netdev`` when the record has none,
    usr/initiator_common.c iscsi_set_net_config)."""
    return _message(UipCommand.GET_IFACE, bytes(iface_rec(values)))


def ping_request(values: Mapping[str, str], address: str, datalen: int) -> bytes:
    """ISCSID_UIP_IPC_PING of ``address`` (an IPv4 or IPv6 literal) with ``datalen`` bytes
    of payload, from the iface ``values``' NIC (usr/uip_mgmt_ipc.c uip_broadcast_ping_req:
    ``payload_len`` counts the record, the sockaddr_storage and the int, not the pointer
    after them).  Raises ValueError for an address that is not a literal."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        sa = struct.pack("=H2s4s", socket.AF_INET, b"", ip.packed)
    else:
        sa = struct.pack("=H2sI16sI", socket.AF_INET6, b"", 0, ip.packed, 0)
    rec = _PingRec(ifrec=iface_rec(values), datalen=datalen)
    ctypes.memmove(rec.ipaddr, sa, len(sa))
    payload_len = _PingRec.datalen.offset + ctypes.sizeof(ctypes.c_int)
    return _message(UipCommand.PING, bytes(rec)[:payload_len])


def with_host_netdev(values: Mapping[str, str], sysfs: Any,
                     host_no: int) -> Mapping[str, str] | None:
    """The iface ``values`` as iscsiuio is to see them: ``iface.net_ifacename`` from host
    ``host_no``'s sysfs ``netdev`` (``sysfs``: a :class:`~iscsictl.kernel.sysfs.Sysfs`)
    when the record names none (usr/initiator_common.c iscsi_set_net_config, iscsiadm's
    exec_ping_op: "uip needs the netdev name"); ``values`` when it names one; None when
    neither has one."""
    from iscsictl.db.schema import iface_bound_by

    if "iface.net_ifacename" in iface_bound_by(values):
        return values
    info = sysfs.host(host_no, only=("netdev",))
    if info is None or not info.netdev:
        return None
    return {**values, "iface.net_ifacename": info.netdev}


def socket_name() -> str:
    """The abstract socket asked: ``$ISCSICTL_UIP_SOCKET`` or :data:`NAMESPACE`."""
    return os.environ.get("ISCSICTL_UIP_SOCKET") or NAMESPACE


def exchange(request: bytes, timeout: float, name: str | None = None) -> UipResponse:
    """Send ``request`` to iscsiuio and read its answer, waiting at most ``timeout`` s for
    it (blocking: run it off an event loop).

    Raises:
        UipNotRunning: nothing listens at the socket (iscsiuio is not running).
        UipError: the request could not be written, the answer did not come within
            ``timeout`` (ETIMEDOUT) or was cut short (EPROTO).
    """
    addr = "\0" + (name or socket_name())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise UipNotRunning(exc.errno, "iscsiuio is not running (nothing listens on "
                                           f"@{addr[1:]})") from None
        except OSError as exc:
            raise UipError(exc.errno, f"cannot reach iscsiuio: {exc.strerror}") from None
        from iscsictl.ipc import peer_credentials

        pid, uid, _ = peer_credentials(sock)
        if uid != 0:  # an abstract socket has no permissions: anyone may listen there
            raise UipError(errno.EPERM, f"the process on @{addr[1:]} (pid {pid}, uid {uid}) "
                                        "is not root's: not iscsiuio; the iface record is "
                                        "not sent to it")
        try:
            sock.sendall(request)
            answer = b""
            while len(answer) < _RESPONSE.size:
                chunk = sock.recv(_RESPONSE.size - len(answer))
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            raise UipError(errno.ETIMEDOUT, f"iscsiuio did not answer within {timeout:g} s"
                           ) from None
        except OSError as exc:
            raise UipError(exc.errno, f"iscsiuio: {exc.strerror}") from None
    if len(answer) < _RESPONSE.size:
        raise UipError(errno.EPROTO, f"iscsiuio closed the connection after {len(answer)} of "
                                     f"the answer's {_RESPONSE.size} bytes")
    return UipResponse(*_RESPONSE.unpack(answer))
