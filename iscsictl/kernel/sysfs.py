"""Readers of the iSCSI transport class in sysfs (``drivers/scsi/scsi_transport_iscsi.c``, Linux 6.1).

Layout read here (``root`` defaults to ``/sys`` and is injectable for tests)::

    class/iscsi_transport/<name>/{handle,caps}             handle: decimal u64 (CAP_SYS_ADMIN); caps: hex
    class/iscsi_session/session<sid>  -> ../../devices/platform/host<N>/session<sid>/iscsi_session/session<sid>
    class/iscsi_connection/connection<sid>:<cid>/*
    class/iscsi_host/host<N>/*
    bus/scsi/devices/host<N>/iscsi_iface/<name>             an offload HBA's network interfaces
    class/iscsi_iface/<name>/*                              (ipv4-iface-<N>-<n>, ipv6-iface-...)
    bus/iscsi_flashnode/devices/flashnode_sess-<N>:<i>      an HBA's flash targets (qla4xxx):
    bus/iscsi_flashnode/devices/flashnode_conn-<N>:<i>:0    devices under host<N>, the conn
                                                            one under its sess one
    devices/.../host<N>/session<sid>/target<h>:<c>:<t>/<h>:<c>:<t>:<l>/{state,vendor,model,block/<sdX>}
    module/scsi_transport_iscsi/version
    class/net/<dev>/{ifindex,type,address}                  type 1: ARPHRD_ETHER

Two writes live here too, those of a SCSI rescan (root only; they raise OSError):
``class/scsi_host/host<N>/scan`` ("- - -": every channel, target and LUN) and a device's
``rescan`` ("1": INQUIRY and capacity read again, for a LUN whose size changed).

Rules: every reader returns frozen dataclasses; an attribute that is missing, unreadable
(EACCES: ``handle``, ``password`` need CAP_SYS_ADMIN), fails to read (the driver returns an
error) or reads ``(null)`` (the kernel's text for an unset string) becomes ``None``.
Integers that do not parse become ``None`` too.  Nothing here raises for a missing or
half-torn-down session: the object simply has fewer values, or the reader returns ``None``.
Flash targets are the one exception: their values are turned into numbers as iscsiadm
turns them (:meth:`Flashnode.values`, a missing one included: all ones), because iscsiadm
prints every one and ``-m host -C flashnode`` prints what it prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple

__all__ = [
    "Sysfs", "TransportInfo", "SessionInfo", "ConnectionInfo", "HostInfo", "HostIface",
    "ScsiDevice", "SESSION_PARAM_ATTRS", "CONNECTION_ATTRS", "HOST_ATTRS", "IFACE_ATTRS",
    "FlashnodeAttr", "FLASHNODE_ATTRS", "Flashnode", "FlashnodeScan",
]

#: Negotiated/operational session attributes kept verbatim in ``SessionInfo.params``
#: (names as in sysfs; visibility depends on the transport, e.g. isid/tsid are hidden for iscsi_tcp).
SESSION_PARAM_ATTRS = (
    "initial_r2t", "immediate_data", "first_burst_len", "max_burst_len", "max_outstanding_r2t",
    "data_pdu_in_order", "data_seq_in_order", "erl", "fast_abort", "isid", "tsid", "def_time2wait",
    "def_time2retain", "tgt_reset_tmo", "targetalias", "boot_root", "boot_nic", "boot_target",
    "auto_snd_tgt_disable", "discovery_session", "portal_type", "chap_auth", "discovery_logout",
    "bidi_chap", "discovery_auth_optional", "def_taskmgmt_tmo", "discovery_parent_idx",
    "discovery_parent_type", "target_id", "chap_in_idx", "chap_out_idx",
)
#: Attributes of ``class/iscsi_connection/connection<sid>:<cid>``.
CONNECTION_ATTRS = (
    "address", "port", "local_port", "persistent_address", "persistent_port", "exp_statsn",
    "header_digest", "data_digest", "max_recv_dlength", "max_xmit_dlength", "ping_tmo", "recv_tmo",
    "ifmarker", "ofmarker", "statsn", "keepalive_tmo", "max_segment_size", "tcp_timestamp_stat",
    "tcp_wsf_disable", "tcp_nagle_disable", "tcp_timer_scale", "tcp_timestamp_enable",
    "fragment_disable", "ipv4_tos", "ipv6_traffic_class", "ipv6_flow_label", "is_fw_assigned_ipv6",
    "tcp_xmit_wsf", "tcp_recv_wsf", "local_ipaddr", "state",
)
#: Attributes of ``class/iscsi_host/host<N>``.
HOST_ATTRS = ("netdev", "hwaddress", "ipaddress", "initiatorname", "port_state", "port_speed")
#: Attributes of ``class/iscsi_iface/<name>`` that ``-m host`` prints (ISCSI_NET_PARAM's
#: names in scsi_transport_iscsi.c; ipv4 and ipv6 ones, a driver shows those it has).
IFACE_ATTRS = ("ipaddress", "gateway", "subnet", "bootproto", "ipaddr_autocfg", "link_local_addr",
               "link_local_autocfg", "router_addr", "port", "mtu", "vlan_id", "vlan_priority")


class FlashnodeAttr(NamedTuple):
    """One value of a flash target: its ``key`` as iscsiadm prints it, the sysfs ``attr``
    it is read from, in ``flashnode_sess-H:I`` (``part`` "sess") or ``flashnode_conn-H:I:0``
    ("conn"), and the C type iscsiadm reads it into: "u8", "u16" (sysfs_get_uint8/16:
    ``atoi``), "u32" (sysfs_get_uint: ``strtoul``, base 0) or "str" (sysfs_get_str, into
    a buffer of ``size`` bytes, its NUL included).

    ``param``: the ``enum iscsi_flashnode_param`` member (ISCSI_FLASHNODE_<param>) that
    ``-o update`` sends the value as (usr/flashnode.c flashnode_build_config); None for
    the six keys iscsiadm sends nothing for.  ``wire``: how the value goes, when not as its
    C type (native-endian numbers, a string as its whole buffer): "u32" (a u16 sent in
    4 bytes), "port" (u16, 0 sent as 3260), "isid" (12 hex digits as 6 bytes), "ip" (4 or
    16 bytes by the record's portal type), "ipv6" (16 bytes)."""

    key: str
    attr: str
    part: str
    ctype: str
    param: str | None
    size: int = 0
    wire: str | None = None


_S, _C = "sess", "conn"
#: A flash target's values in the order iscsiadm prints them (usr/idbm.c
#: idbm_recinfo_flashnode; read by usr/iscsi_sysfs.c iscsi_sysfs_get_flashnode_info; the
#: attributes are scsi_transport_iscsi.c's iscsi_flashnode_sess_attrs and _conn_attrs), and
#: the ISCSI_FLASHNODE_* parameter ``-o update`` sends each as (usr/flashnode.c
#: flashnode_build_config; :mod:`iscsictl.kernel.flashnode`).
#: Buffer sizes: TARGET_NAME_MAXLEN 255, AUTH_STR_MAX_LEN 256, ISCSI_MAX_STR_LEN 80,
#: NI_MAXHOST 1025, and the record's own isid[16] and portal_type[5].
FLASHNODE_ATTRS: tuple[FlashnodeAttr, ...] = tuple(FlashnodeAttr(*row) for row in (
    ("flashnode.session.auto_snd_tgt_disable", "auto_snd_tgt_disable", _S, "u8",
     "AUTO_SND_TGT_DISABLE"),
    ("flashnode.session.discovery_session", "discovery_session", _S, "u8", "DISCOVERY_SESS"),
    ("flashnode.session.portal_type", "portal_type", _S, "str", "PORTAL_TYPE", 5),
    ("flashnode.session.entry_enable", "entry_enable", _S, "u8", "ENTRY_EN"),
    ("flashnode.session.immediate_data", "immediate_data", _S, "u8", "IMM_DATA_EN"),
    ("flashnode.session.initial_r2t", "initial_r2t", _S, "u8", "INITIAL_R2T_EN"),
    ("flashnode.session.data_seq_in_order", "data_seq_in_order", _S, "u8", "DATASEQ_INORDER"),
    ("flashnode.session.data_pdu_in_order", "data_pdu_in_order", _S, "u8", "PDU_INORDER"),
    ("flashnode.session.chap_auth_en", "chap_auth", _S, "u8", "CHAP_AUTH_EN"),
    ("flashnode.session.discovery_logout_en", "discovery_logout", _S, "u8", "DISCOVERY_LOGOUT_EN"),
    ("flashnode.session.bidi_chap_en", "bidi_chap", _S, "u8", "BIDI_CHAP_EN"),
    ("flashnode.session.discovery_auth_optional", "discovery_auth_optional", _S, "u8",
     "DISCOVERY_AUTH_OPTIONAL"),
    ("flashnode.session.erl", "erl", _S, "u8", "ERL"),
    ("flashnode.session.first_burst_len", "first_burst_len", _S, "u32", "FIRST_BURST"),
    ("flashnode.session.def_time2wait", "def_time2wait", _S, "u16", "DEF_TIME2WAIT"),
    ("flashnode.session.def_time2retain", "def_time2retain", _S, "u16", "DEF_TIME2RETAIN"),
    ("flashnode.session.max_outstanding_r2t", "max_outstanding_r2t", _S, "u16", "MAX_R2T"),
    ("flashnode.session.isid", "isid", _S, "str", "ISID", 16, "isid"),
    ("flashnode.session.tsid", "tsid", _S, "u16", "TSID"),
    ("flashnode.session.max_burst_len", "max_burst_len", _S, "u32", "MAX_BURST"),
    ("flashnode.session.def_taskmgmt_tmo", "def_taskmgmt_tmo", _S, "u16", "DEF_TASKMGMT_TMO"),
    ("flashnode.session.targetalias", "targetalias", _S, "str", "ALIAS", 255),
    ("flashnode.session.targetname", "targetname", _S, "str", "NAME", 255),
    ("flashnode.session.discovery_parent_idx", "discovery_parent_idx", _S, "u16",
     "DISCOVERY_PARENT_IDX"),
    ("flashnode.session.discovery_parent_type", "discovery_parent_type", _S, "str",
     "DISCOVERY_PARENT_TYPE", 80),
    ("flashnode.session.tpgt", "tpgt", _S, "u16", "TPGT"),
    ("flashnode.session.chap_out_idx", "chap_out_idx", _S, "u16", "CHAP_OUT_IDX", 0, "u32"),
    ("flashnode.session.chap_in_idx", "chap_in_idx", _S, "u16", None),
    ("flashnode.session.username", "username", _S, "str", None, 256),
    ("flashnode.session.username_in", "username_in", _S, "str", None, 256),
    ("flashnode.session.password", "password", _S, "str", None, 256),
    ("flashnode.session.password_in", "password_in", _S, "str", None, 256),
    ("flashnode.session.is_boot_target", "is_boot_target", _S, "u8", None),
    ("flashnode.conn[0].is_fw_assigned_ipv6", "is_fw_assigned_ipv6", _C, "u8",
     "IS_FW_ASSIGNED_IPV6"),
    ("flashnode.conn[0].header_digest_en", "header_digest", _C, "u8", "HDR_DGST_EN"),
    ("flashnode.conn[0].data_digest_en", "data_digest", _C, "u8", "DATA_DGST_EN"),
    ("flashnode.conn[0].snack_req_en", "snack_req", _C, "u8", "SNACK_REQ_EN"),
    ("flashnode.conn[0].tcp_timestamp_stat", "tcp_timestamp_stat", _C, "u8", "TCP_TIMESTAMP_STAT"),
    ("flashnode.conn[0].tcp_nagle_disable", "tcp_nagle_disable", _C, "u8", "TCP_NAGLE_DISABLE"),
    ("flashnode.conn[0].tcp_wsf_disable", "tcp_wsf_disable", _C, "u8", "TCP_WSF_DISABLE"),
    ("flashnode.conn[0].tcp_timer_scale", "tcp_timer_scale", _C, "u8", "TCP_TIMER_SCALE"),
    ("flashnode.conn[0].tcp_timestamp_en", "tcp_timestamp_enable", _C, "u8", "TCP_TIMESTAMP_EN"),
    ("flashnode.conn[0].fragment_disable", "fragment_disable", _C, "u8", "IP_FRAG_DISABLE"),
    ("flashnode.conn[0].max_xmit_dlength", "max_xmit_dlength", _C, "u32", "MAX_XMIT_DLENGTH"),
    ("flashnode.conn[0].max_recv_dlength", "max_recv_dlength", _C, "u32", "MAX_RECV_DLENGTH"),
    ("flashnode.conn[0].keepalive_tmo", "keepalive_tmo", _C, "u16", "KEEPALIVE_TMO"),
    ("flashnode.conn[0].port", "port", _C, "u16", "PORT", 0, "port"),
    ("flashnode.conn[0].ipaddress", "ipaddress", _C, "str", "IPADDR", 1025, "ip"),
    ("flashnode.conn[0].redirect_ipaddr", "redirect_ipaddr", _C, "str",
     "REDIRECT_IPADDR", 1025, "ip"),
    ("flashnode.conn[0].max_segment_size", "max_segment_size", _C, "u32", "MAX_SEGMENT_SIZE"),
    ("flashnode.conn[0].local_port", "local_port", _C, "u16", "LOCAL_PORT"),
    ("flashnode.conn[0].ipv4_tos", "ipv4_tos", _C, "u8", "IPV4_TOS"),
    ("flashnode.conn[0].ipv6_traffic_class", "ipv6_traffic_class", _C, "u8", "IPV6_TC"),
    ("flashnode.conn[0].ipv6_flow_label", "ipv6_flow_label", _C, "u16", "IPV6_FLOW_LABEL"),
    ("flashnode.conn[0].link_local_ipv6", "link_local_ipv6", _C, "str",
     "LINK_LOCAL_IPV6", 1025, "ipv6"),
    ("flashnode.conn[0].tcp_xmit_wsf", "tcp_xmit_wsf", _C, "u32", "TCP_XMIT_WSF"),
    ("flashnode.conn[0].tcp_recv_wsf", "tcp_recv_wsf", _C, "u32", "TCP_RECV_WSF"),
    ("flashnode.conn[0].statsn", "statsn", _C, "u32", "STATSN"),
    ("flashnode.conn[0].exp_statsn", "exp_statsn", _C, "u32", "EXP_STATSN"),
))
#: bus/iscsi_flashnode/devices, where iscsiadm looks for flash targets (ISCSI_FLASHNODE_DIR)
FLASHNODE_DIR = "bus/iscsi_flashnode/devices"
#: NAME_SIZE of open-iscsi's sysfs_attr_get_value: the most of a value it reads
_C_VALUE_SIZE = 256
#: iscsi_sysfs_for_each_flashnode's ``sscanf(name, "flashnode_sess-%d:%d")``: each ``%d``
#: skips blanks, takes a sign and digits; what follows the second is not looked at
_FNODE_NAME_RE = re.compile(r"flashnode_sess-[ \t\n\r\v\f]*([+-]?[0-9]+)"
                            r":[ \t\n\r\v\f]*([+-]?[0-9]+)")

_SESSION_RE = re.compile(r"^session([0-9]+)\Z")
_CONN_RE = re.compile(r"^connection([0-9]+):([0-9]+)\Z")
_HOST_RE = re.compile(r"^host([0-9]+)\Z")
_TARGET_RE = re.compile(r"^target([0-9]+):([0-9]+):([0-9]+)\Z")
_LUN_RE = re.compile(r"^([0-9]+):([0-9]+):([0-9]+):([0-9]+)\Z")


def _int(s: str | None, base: int = 10) -> int | None:
    if s is None:
        return None
    try:
        return int(s, base)
    except ValueError:
        return None


def priv_int(s: str | None) -> int | None:
    """A session's private number (``recovery_tmo``, ``creator``), which the kernel shows
    as ``off`` when it is -1 (scsi_transport_iscsi.c iscsi_priv_session_attr_show; open-iscsi
    reads it so since 7a8471b)."""
    return -1 if s == "off" else _int(s)


@dataclass(frozen=True)
class TransportInfo:
    """``class/iscsi_transport/<name>``: ``handle`` (u64 for ``iscsi_uevent.transport_handle``; None
    without CAP_SYS_ADMIN) and ``caps`` (CAP_* bitmask, e.g. 0x39 for tcp)."""

    name: str
    handle: int | None
    caps: int | None


@dataclass(frozen=True)
class SessionInfo:
    """``class/iscsi_session/session<sid>``. Timeouts in seconds. ``host_no`` from the device path.
    ``state``: LOGGED_IN/FAILED/FREE; ``target_state``: UNBOUND/ALLOCATED/SCANNED/UNBINDING;
    ``creator``: netlink portid of the creating process (-1 for firmware sessions)."""

    sid: int
    host_no: int | None
    targetname: str | None
    tpgt: int | None
    initiatorname: str | None
    ifacename: str | None
    state: str | None
    target_state: str | None
    creator: int | None
    recovery_tmo: int | None
    abort_tmo: int | None
    lu_reset_tmo: int | None
    tgt_reset_tmo: int | None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    username_in: str | None = field(default=None, repr=False)
    password_in: str | None = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionInfo:
    """``class/iscsi_connection/connection<sid>:<cid>``. Lengths in bytes; ``state``: up/down/failed/bound.
    ``header_digest``/``data_digest``: "None" or "CRC32C". ``attrs`` holds every CONNECTION_ATTRS value read."""

    sid: int
    cid: int
    address: str | None
    port: int | None
    persistent_address: str | None
    persistent_port: int | None
    local_port: int | None
    exp_statsn: int | None
    header_digest: str | None
    data_digest: str | None
    max_recv_dlength: int | None
    max_xmit_dlength: int | None
    ping_tmo: int | None
    recv_tmo: int | None
    state: str | None
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostInfo:
    """``class/iscsi_host/host<N>``: netdev, hwaddress, ipaddress (the socket's local address for tcp),
    initiatorname, port_state, port_speed (strings as the kernel prints them)."""

    host_no: int
    netdev: str | None
    hwaddress: str | None
    ipaddress: str | None
    initiatorname: str | None
    port_state: str | None
    port_speed: str | None


@dataclass(frozen=True)
class HostIface:
    """One network interface of an offload HBA's port (``class/iscsi_iface/<name>``,
    ``name`` as ``ipv4-iface-5-0``): its :data:`IFACE_ATTRS` values as the kernel prints
    them, the ones it does not have left out."""

    name: str
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScsiDevice:
    """A SCSI device below a session: ``<h>:<c>:<t>:<l>`` with its ``state`` (running/offline/blocked/
    transport-offline...), block device names (``("sda",)``; empty for non-disk devices) and
    ``path``, its sysfs directory; ``vendor`` and ``model`` (INQUIRY's, space-padded) are read
    from there when asked (no listing prints them)."""

    host: int
    channel: int
    target: int
    lun: int
    state: str | None
    block: tuple[str, ...] = ()
    path: str = ""

    @property
    def hctl(self) -> str:
        return f"{self.host}:{self.channel}:{self.target}:{self.lun}"

    @property
    def vendor(self) -> str | None:
        return read_attribute(f"{self.path}/vendor") if self.path else None

    @property
    def model(self) -> str | None:
        return read_attribute(f"{self.path}/model") if self.path else None


@dataclass(frozen=True)
class Flashnode:
    """A target in an offload HBA's flash (qla4xxx's "flash DDB" entries), index ``index``
    of SCSI host ``host_no``: the text of its ``flashnode_sess-H:I`` and
    ``flashnode_conn-H:I:0`` attributes as open-iscsi's sysfs_get_value reads them
    (:func:`read_c_value`: one that is missing, empty, or begins with "(null)" or "<NULL>"
    is left out).  :meth:`values` gives them as iscsiadm holds them."""

    host_no: int
    index: int
    sess: Mapping[str, str] = field(default_factory=dict)
    conn: Mapping[str, str] = field(default_factory=dict, repr=False)

    def values(self) -> dict[str, int | str]:
        """``{key: value}`` for each of :data:`FLASHNODE_ATTRS`, in their order, read into
        their C types as iscsi_sysfs_get_flashnode_info does: a number left out is all
        ones (255, 65535, 4294967295: sysfs_get_uint8/16/uint's ``-1``), else ``atoi``'s
        or ``strtoul``'s (base 0) reading truncated to its width; a string is cut to its
        buffer (in bytes), "" when left out."""
        out: dict[str, int | str] = {}
        for a in FLASHNODE_ATTRS:
            text = (self.sess if a.part == _S else self.conn).get(a.attr)
            out[a.key] = c_string(text, a.size) if a.ctype == "str" else \
                _c_number(text, a.ctype)
        return out

    @property
    def printed_index(self) -> int:
        """The index as iscsiadm prints it and names its directories (``%d`` of a uint32:
        4294967295 is -1)."""
        return _i32(self.index)


@dataclass(frozen=True)
class FlashnodeScan:
    """A host's flash targets as iscsi_sysfs_for_each_flashnode finds them: ``nodes`` in
    ``alphasort`` order of their names, up to where it stopped: at ``bad_name``, an entry
    whose name is not ``flashnode_sess-H:I`` (it logs it and stops), or at ``unreadable``,
    the sess entry of this host it could not read (its conn entry missing: ENOENT)."""

    nodes: tuple[Flashnode, ...] = ()
    bad_name: str | None = None
    unreadable: str | None = None


_WIDTH = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF}
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _c_number(text: str | None, ctype: str) -> int:
    from ..lexical import c_atoi, c_strtoul

    mask = _WIDTH[ctype]
    if text is None:
        return mask
    if ctype == "u32":
        return c_strtoul(text, 0)[0] & mask
    return min(max(c_atoi(text), _LONG_MIN), _LONG_MAX) & mask  # glibc: (int)strtol()


def c_string(text: str | None, size: int) -> str:
    """``text`` as strlcpy copies it into a C buffer of ``size`` bytes: cut to ``size - 1``
    bytes (bytes that are not UTF-8 kept as surrogates); "" for None."""
    if not text:
        return ""
    raw = text.encode("utf-8", "surrogateescape")
    return raw[:size - 1].decode("utf-8", "surrogateescape") if len(raw) >= size else text


def _i32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _sscanf_int(digits: str) -> int:
    """``%d`` of glibc's sscanf: strtol's long (clamped), stored in an int (uint32 here)."""
    return min(max(int(digits), _LONG_MIN), _LONG_MAX) & 0xFFFFFFFF


def read_c_value(path: str) -> str | None:
    """One attribute as open-iscsi's sysfs_get_value reads it (usr/sysfs.c): one read of
    at most NAME_SIZE (256) bytes, the trailing newlines stripped; None when it cannot be
    read, has no read permission bit for its owner, is empty, or begins with "(null)" or
    "<NULL>".  A value of 256 bytes or more is its first 256 as they are (open-iscsi
    leaves that buffer unterminated and reads on into its stack; the record's fields then
    cut it, all but the addresses to 255 bytes or less).  Bytes that are not UTF-8 are kept
    as surrogates."""
    import stat

    try:
        if not os.stat(path).st_mode & stat.S_IRUSR:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, _C_VALUE_SIZE)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = (raw if len(raw) >= _C_VALUE_SIZE else raw.rstrip(b"\n")).decode(
        "utf-8", "surrogateescape")
    return None if not text or text.startswith(("(null)", "<NULL>")) else text


def read_attribute(path: str) -> str | None:
    """One sysfs attribute (absolute ``path``), stripped of the trailing newline; None if
    missing, unreadable (the errors drivers return from show()) or "(null)".  Bytes that are
    not UTF-8 are kept (surrogateescape), as the node DB keeps them, so that a session's
    target name matches its record's and is printed as its bytes, as iscsiadm prints it (a
    firmware's CHAP secret is sent again as its bytes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # ENOENT, EACCES
        return None
    try:
        raw = os.read(fd, 1 << 16)
    except OSError:  # EIO and the errors drivers return from show()
        return None
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "surrogateescape").rstrip("\n")
    return None if text == "(null)" else text


class Sysfs:
    """Reader of the iSCSI sysfs tree under ``root`` (default ``/sys``)."""

    def __init__(self, root: str | os.PathLike[str] = "/sys") -> None:
        self.root = Path(root)
        self._root = os.fspath(self.root).rstrip("/")

    # -- primitives
    def read(self, path: str | os.PathLike[str]) -> str | None:
        """One attribute, stripped of the trailing newline; None if missing/unreadable/"(null)"
        (:func:`read_attribute`).  ``path`` is absolute or relative to the root.  (One
        open/read/close on a string path: ``-m session`` reads dozens a session.)"""
        p = os.fspath(path)
        return read_attribute(p if p[:1] == "/" else f"{self._root}/{p}")

    def _reader(self, rel_dir: str, only: Collection[str] | None) -> Callable[[str], str | None]:
        """``attr -> read(<rel_dir>/<attr>)``, or None for an attribute outside ``only``."""
        base = f"{self._root}/{rel_dir}/"
        if only is None:
            return lambda a: self.read(base + a)
        return lambda a: self.read(base + a) if a in only else None

    def _names(self, rel: str) -> list[str]:
        try:
            return os.listdir(f"{self._root}/{rel}")
        except OSError:
            return []

    def _list(self, rel: str, rx: re.Pattern[str]) -> list[re.Match[str]]:
        return [mt for mt in map(rx.match, self._names(rel)) if mt]

    # -- transports
    def transport_names(self) -> list[str]:
        """Names under class/iscsi_transport (e.g. ``["tcp", "iser"]``), sorted."""
        return sorted(self._names("class/iscsi_transport"))

    def transport(self, name: str) -> TransportInfo | None:
        """``class/iscsi_transport/<name>``, or None when the transport is not registered."""
        d = self.root / "class/iscsi_transport" / name
        # os.path.isdir: False, not OSError, for a name too long for a path (a driver's
        # proc_name of 300 bytes) or holding a NUL; a '/' would name another directory
        if "/" in name or name in ("", ".", "..") or not os.path.isdir(d):
            return None
        caps = self.read(d / "caps")
        return TransportInfo(name, _int(self.read(d / "handle")), _int(caps, 16) if caps is not None else None)

    def transport_handle(self, name: str) -> int | None:
        """``class/iscsi_transport/<name>/handle`` alone (one read: what each request to the
        transport needs), None when the transport is not registered."""
        return _int(self.read(f"class/iscsi_transport/{name}/handle"))

    def transports(self) -> list[TransportInfo]:
        return [t for t in map(self.transport, self.transport_names()) if t is not None]

    # -- network devices
    def netdev_by_hwaddress(self, hwaddress: str) -> str | None:
        """The Ethernet device (``class/net/<dev>/type`` 1, ARPHRD_ETHER) whose MAC is
        ``hwaddress`` (any case), in ifindex order as open-iscsi's net_get_netdev_from_hwaddress
        (usr/iscsi_net_util.c) walks them; None when no device has it (loopback never does)."""
        want = hwaddress.strip().lower()
        found = []
        for name in self._names("class/net"):
            base = f"class/net/{name}/"
            if self.read(base + "type") == "1" and (self.read(base + "address") or "").lower() == want:
                found.append((_int(self.read(base + "ifindex")) or 0, name))
        return min(found)[1] if found else None

    def ethernet_drivers(self) -> list[tuple[str, str]]:
        """``(device, driver)`` of each Ethernet device (``type`` 1) with a driver
        (``class/net/<dev>/device/driver``, the name ethtool's GDRVINFO gives), in name
        order."""
        out = []
        for name in sorted(self._names("class/net")):
            base = f"{self._root}/class/net/{name}"
            if self.read(f"{base}/type") != "1":
                continue
            try:
                driver = os.path.basename(os.readlink(f"{base}/device/driver"))
            except OSError:  # a virtual device, or gone meanwhile
                continue
            out.append((name, driver))
        return out

    # -- sessions
    def session_ids(self) -> list[int]:
        """Sorted sids under class/iscsi_session."""
        return sorted(int(mt.group(1)) for mt in self._list("class/iscsi_session", _SESSION_RE))

    def session_device_path(self, sid: int) -> Path | None:
        """Resolved ``devices/.../host<N>/session<sid>`` directory of a session, or None.

        sysfs class entries are symlinks into ``devices/`` whose directories are real, so
        one ``readlink`` resolves them (a full ``realpath`` stats every component, a dozen
        for each session); anything else is resolved the long way."""
        link = f"{self._root}/class/iscsi_session/session{sid}"
        try:
            target = os.readlink(link)
        except OSError:  # gone, or not a symlink (a fixture tree may differ)
            target = None
        real = os.path.normpath(os.path.join(os.path.dirname(link), target)) if target else None
        if real is None or not os.path.isdir(real):
            try:
                real = os.fspath(Path(link).resolve(strict=True))
            except OSError:
                return None
        # real = .../host<N>/session<sid>/iscsi_session/session<sid>
        dev = Path(real).parent.parent
        return dev if dev.name == f"session{sid}" else None

    def session_host_no(self, sid: int) -> int | None:
        """host_no of a session, from its device path ``.../host<N>/session<sid>``."""
        dev = self.session_device_path(sid)
        if dev is None:
            return None
        mt = _HOST_RE.match(dev.parent.name)
        return int(mt.group(1)) if mt else None

    def session_exists(self, sid: int) -> bool:
        """Whether ``class/iscsi_session/session<sid>`` is there (one stat)."""
        return os.path.isdir(f"{self._root}/class/iscsi_session/session{sid}")

    def session(self, sid: int, only: Collection[str] | None = None) -> SessionInfo | None:
        """``class/iscsi_session/session<sid>``, or None when it does not exist.  ``only``:
        read just these attributes (the other fields are None; ``host_no`` is always read)."""
        rel = f"class/iscsi_session/session{sid}"
        if not os.path.isdir(f"{self._root}/{rel}"):
            return None
        r = self._reader(rel, only)
        params = {a: v for a in SESSION_PARAM_ATTRS if (v := r(a)) is not None}
        return SessionInfo(
            sid=sid, host_no=self.session_host_no(sid), targetname=r("targetname"), tpgt=_int(r("tpgt")),
            initiatorname=r("initiatorname"), ifacename=r("ifacename"), state=r("state"),
            target_state=r("target_state"), creator=priv_int(r("creator")),
            recovery_tmo=priv_int(r("recovery_tmo")),
            abort_tmo=_int(r("abort_tmo")), lu_reset_tmo=_int(r("lu_reset_tmo")),
            tgt_reset_tmo=_int(params.get("tgt_reset_tmo")), username=r("username"), password=r("password"),
            username_in=r("username_in"), password_in=r("password_in"), params=params)

    def sessions(self) -> list[SessionInfo]:
        return [s for s in map(self.session, self.session_ids()) if s is not None]

    # -- connections
    def connection_ids(self, sid: int | None = None) -> list[tuple[int, int]]:
        """Sorted (sid, cid) pairs under class/iscsi_connection, optionally of one session."""
        ids = sorted((int(mt.group(1)), int(mt.group(2))) for mt in self._list("class/iscsi_connection", _CONN_RE))
        return [i for i in ids if sid is None or i[0] == sid]

    def connection(self, sid: int, cid: int,
                   only: Collection[str] | None = None) -> ConnectionInfo | None:
        """``class/iscsi_connection/connection<sid>:<cid>``, or None when absent (``only``:
        as in :meth:`session`)."""
        rel = f"class/iscsi_connection/connection{sid}:{cid}"
        if not os.path.isdir(f"{self._root}/{rel}"):
            return None
        r = self._reader(rel, only)
        attrs = {a: v for a in CONNECTION_ATTRS if (v := r(a)) is not None}
        g = attrs.get
        return ConnectionInfo(
            sid=sid, cid=cid, address=g("address"), port=_int(g("port")), persistent_address=g("persistent_address"),
            persistent_port=_int(g("persistent_port")), local_port=_int(g("local_port")),
            exp_statsn=_int(g("exp_statsn")), header_digest=g("header_digest"), data_digest=g("data_digest"),
            max_recv_dlength=_int(g("max_recv_dlength")), max_xmit_dlength=_int(g("max_xmit_dlength")),
            ping_tmo=_int(g("ping_tmo")), recv_tmo=_int(g("recv_tmo")), state=g("state"), attrs=attrs)

    def connections(self, sid: int | None = None) -> list[ConnectionInfo]:
        return [c for c in (self.connection(s, c) for s, c in self.connection_ids(sid)) if c is not None]

    # -- hosts
    def host_numbers(self) -> list[int]:
        return sorted(int(mt.group(1)) for mt in self._list("class/iscsi_host", _HOST_RE))

    def host_transport(self, host_no: int) -> str | None:
        """A SCSI host's iSCSI transport: its driver's ``proc_name`` without ``iscsi_``
        (iscsi_tcp -> tcp; bnx2i stays), as open-iscsi's iscsi_sysfs_get_transport_by_hba;
        None when unreadable."""
        proc = self.read(f"class/scsi_host/host{host_no}/proc_name")
        return proc[6:] if proc and proc.startswith("iscsi_") else proc

    def host(self, host_no: int, only: Collection[str] | None = None,
             c_values: bool = False) -> HostInfo | None:
        """``class/iscsi_host/host<N>``, or None when absent (``only``: as in :meth:`session`).
        ``c_values``: each attribute as iscsiadm's host mode reads it (:func:`read_c_value`,
        usr/sysfs.c: one that begins with ``<NULL>`` is none too); else as
        libopeniscsiusr's session listing does (:meth:`read`)."""
        rel = f"class/iscsi_host/host{host_no}"
        if not os.path.isdir(f"{self._root}/{rel}"):
            return None
        if c_values:
            def r(a: str) -> str | None:
                return read_c_value(f"{self._root}/{rel}/{a}")
        else:
            r = self._reader(rel, only)
        return HostInfo(host_no=host_no, **{a: r(a) for a in HOST_ATTRS})

    def hosts(self) -> list[HostInfo]:
        return [h for h in map(self.host, self.host_numbers()) if h is not None]

    def bound_host(self, iface: Mapping[str, str]) -> int | None:
        """The host an iface record (``iface.*`` keys) is bound to (usr/iscsi_sysfs.c
        iscsi_sysfs_get_host_no_from_hwinfo): the first host, in ``alphasort`` order of
        ``host<N>``, whose ``hwaddress`` is the record's ``iface.hwaddress`` (any case);
        without one, whose ``netdev`` is its ``iface.net_ifacename``; without either,
        whose ``ipaddress`` is its ``iface.ipaddress`` (:func:`iface_bound_by`); of those,
        only a host whose driver is the record's ``iface.transport_name`` (its
        ``proc_name``): the kernel hands a host's number to the transport a request names
        without checking that the host is that driver's (scsi_transport_iscsi.c
        iscsi_set_iface_params, iscsi_send_ping, EP_CONNECT_THROUGH_HOST), so one wrong MAC
        would run qla4xxx's code on a bnx2i host.  None when no host matches or nothing is
        set."""
        from iscsictl.db.schema import iface_bound_by
        from iscsictl.kernel.transports import TRANSPORTS

        row = TRANSPORTS.get(iface.get("iface.transport_name") or "tcp")
        for key, want in iface_bound_by(iface).items():
            attr = {"iface.hwaddress": "hwaddress", "iface.net_ifacename": "netdev"}.get(
                key, "ipaddress")
            fold = str.lower if attr == "hwaddress" else str
            for n in sorted(self.host_numbers(), key=lambda n: f"host{n}"):
                have = getattr(self.host(n, only=(attr,)), attr, None)
                if have is None or fold(have) != fold(want):
                    continue
                driver = self.read(f"class/scsi_host/host{n}/proc_name")
                if row is None or driver is None or driver == row.proc_name:
                    return n
            return None  # the first set value decides
        return None

    def host_iface_names(self, host_no: int) -> list[str]:
        """The names of the network interfaces the driver of an offload HBA registered under
        its SCSI host (``bus/scsi/devices/host<N>/iscsi_iface/*``, as ``ipv4-iface-5-0``, in
        byte order: open-iscsi's ``alphasort``); [] for iscsi_tcp, which registers none, or
        a host that is gone."""
        return sorted(self._names(f"bus/scsi/devices/host{host_no}/iscsi_iface"))

    def iface_reader(self, name: str) -> Callable[[str], str | None]:
        """``attr -> class/iscsi_iface/<name>/<attr>`` as :meth:`read` reads it."""
        return self._reader(f"class/iscsi_iface/{name}", None)

    def host_ifaces(self, host_no: int) -> list[HostIface]:
        """:meth:`host_iface_names` with their :data:`IFACE_ATTRS` values, as iscsiadm's
        iscsi_sysfs_read_iface reads them (:func:`read_c_value`, usr/sysfs.c
        sysfs_get_value: an empty value, "(null)" and "<NULL>" are none)."""
        out = []
        for name in self.host_iface_names(host_no):
            d = f"{self._root}/class/iscsi_iface/{name}"
            out.append(HostIface(name, {a: v for a in IFACE_ATTRS
                                        if (v := read_c_value(f"{d}/{a}")) is not None}))
        return out

    # -- flash targets (offload HBAs)
    def flashnode_names(self) -> list[str]:
        """The entries of ``bus/iscsi_flashnode/devices`` (sess and conn ones) in byte order,
        as iscsiadm's ``scandir(..., alphasort)`` lists them; [] when there is none."""
        return sorted(self._names(FLASHNODE_DIR), key=os.fsencode)

    def flashnode(self, host_no: int, index: int) -> Flashnode | None:
        """Flash target ``index`` of host ``host_no`` (both uint32, named with ``%d`` as
        iscsiadm names them), or None when its sess or conn entry does not exist (iscsiadm
        reports ENOENT)."""
        sess = f"flashnode_sess-{_i32(host_no)}:{_i32(index)}"
        conn = f"flashnode_conn-{_i32(host_no)}:{_i32(index)}:0"
        base = f"{self._root}/{FLASHNODE_DIR}/"
        if not (os.path.exists(base + sess) and os.path.exists(base + conn)):
            return None
        values = {}
        for part, name in ((_S, sess), (_C, conn)):
            values[part] = {a.attr: v for a in FLASHNODE_ATTRS if a.part == part
                            and (v := read_c_value(f"{base}{name}/{a.attr}")) is not None}
        return Flashnode(host_no, index & 0xFFFFFFFF, values[_S], values[_C])

    def flashnodes(self, host_no: int) -> FlashnodeScan:
        """Host ``host_no``'s flash targets as iscsi_sysfs_for_each_flashnode walks them:
        the conn entries skipped, a name read with ``sscanf("flashnode_sess-%d:%d")``
        (trailing text ignored; the walk stops at a name that does not parse), another
        host's entries skipped, the walk stopped at one that cannot be read."""
        nodes: list[Flashnode] = []
        for name in self.flashnode_names():
            if name.startswith("flashnode_conn"):
                continue
            mt = _FNODE_NAME_RE.match(name)
            if mt is None:
                return FlashnodeScan(tuple(nodes), bad_name=name)
            host, index = (_sscanf_int(g) for g in mt.groups())
            if host != host_no & 0xFFFFFFFF:
                continue
            node = self.flashnode(host_no, index)
            if node is None:
                return FlashnodeScan(tuple(nodes), unreadable=name)
            nodes.append(node)
        return FlashnodeScan(tuple(nodes))

    # -- SCSI devices
    def session_devices(self, sid: int) -> list[ScsiDevice]:
        """SCSI devices below a session (``target*/H:C:T:L``), sorted by H:C:T:L; [] if none or gone."""
        dev = self.session_device_path(sid)
        if dev is None:
            return []
        out: list[ScsiDevice] = []
        try:
            targets = [n for n in os.listdir(dev) if _TARGET_RE.match(n)]
        except OSError:
            return []
        for t in targets:
            try:
                luns = [mt for mt in map(_LUN_RE.match, os.listdir(dev / t)) if mt]
            except OSError:
                continue
            for mt in luns:
                ldir = dev / t / mt.group(0)
                try:
                    block = tuple(sorted(os.listdir(ldir / "block")))
                except OSError:
                    block = ()
                h, c, tt, lun = (int(x) for x in mt.groups())
                out.append(ScsiDevice(h, c, tt, lun, self.read(ldir / "state"), block, str(ldir)))
        return sorted(out, key=lambda d: (d.host, d.channel, d.target, d.lun))

    # -- writes (root only)
    def scan_host(self, host_no: int) -> None:
        """Scan ``host<N>`` for new LUNs; returns when the kernel's scan is done (the
        devices' ``sd_probe`` may still run).  Raises OSError (EACCES without root, ENOENT
        for a host that is gone)."""
        self._write(f"{self._root}/class/scsi_host/host{host_no}/scan", "- - -")

    def rescan_device(self, device: ScsiDevice) -> None:
        """Read a device's INQUIRY data and capacity again (a LUN resized on the target).
        Raises OSError."""
        self._write(f"{device.path}/rescan", "1")

    def set_queue_depth(self, device: ScsiDevice, depth: int) -> None:
        """A device's queue depth (iscsid's iscsi_sysfs_set_queue_depth: ``"%d"``).
        Raises OSError."""
        self._write(f"{device.path}/queue_depth", str(depth))

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    # -- module
    def module_version(self) -> str | None:
        """``module/scsi_transport_iscsi/version`` (e.g. "2.0-870"), None when not loaded."""
        return self.read("module/scsi_transport_iscsi/version")
