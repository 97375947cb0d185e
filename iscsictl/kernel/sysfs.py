"""Readers of the iSCSI transport class in sysfs (``drivers/scsi/scsi_transport_iscsi.c``, Linux 6.1).

Layout read here (``root`` defaults to ``/sys`` and is injectable for tests)::

    class/iscsi_transport/<name>/{handle,caps}             handle: decimal u64 (CAP_SYS_ADMIN); caps: hex
    class/iscsi_session/session<sid>  -> ../../devices/platform/host<N>/session<sid>/iscsi_session/session<sid>
    class/iscsi_connection/connection<sid>:<cid>/*
    class/iscsi_host/host<N>/*
    bus/scsi/devices/host<N>/iscsi_iface/<name>             an offload HBA's network interfaces
    class/iscsi_iface/<name>/*                              (ipv4-iface-<N>-<n>, ipv6-iface-...)
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
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = [
    "Sysfs", "TransportInfo", "SessionInfo", "ConnectionInfo", "HostInfo", "HostIface",
    "ScsiDevice", "SESSION_PARAM_ATTRS", "CONNECTION_ATTRS", "HOST_ATTRS", "IFACE_ATTRS",
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

_SESSION_RE = re.compile(r"^session(\d+)$")
_CONN_RE = re.compile(r"^connection(\d+):(\d+)$")
_HOST_RE = re.compile(r"^host(\d+)$")
_TARGET_RE = re.compile(r"^target(\d+):(\d+):(\d+)$")
_LUN_RE = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")


def _int(s: str | None, base: int = 10) -> int | None:
    if s is None:
        return None
    try:
        return int(s, base)
    except ValueError:
        return None


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


def read_attribute(path: str) -> str | None:
    """One sysfs attribute (absolute ``path``), stripped of the trailing newline; None if
    missing, unreadable (the errors drivers return from show()) or "(null)"."""
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
    text = raw.decode("utf-8", "replace").rstrip("\n")
    return None if text == "(null)" else text


class Sysfs:
    """Reader of the iSCSI sysfs tree under ``root`` (default ``/sys``)."""

    def __init__(self, root: str | os.PathLike[str] = "/sys") -> None:
        self.root = Path(root)
        self._root = os.fspath(self.root).rstrip("/")

    # -- primitives
    def read(self, path: str | os.PathLike[str]) -> str | None:
        """One attribute, stripped of the trailing newline; None if missing/unreadable/"(null)".
        ``path`` is absolute or relative to the root.  (One open/read/close on a string path:
        ``-m session`` reads dozens of attributes a session.)"""
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
        if not d.is_dir():
            return None
        caps = self.read(d / "caps")
        return TransportInfo(name, _int(self.read(d / "handle")), _int(caps, 16) if caps is not None else None)

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
            target_state=r("target_state"), creator=_int(r("creator")), recovery_tmo=_int(r("recovery_tmo")),
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

    def host(self, host_no: int, only: Collection[str] | None = None) -> HostInfo | None:
        """``class/iscsi_host/host<N>``, or None when absent (``only``: as in :meth:`session`)."""
        rel = f"class/iscsi_host/host{host_no}"
        if not os.path.isdir(f"{self._root}/{rel}"):
            return None
        r = self._reader(rel, only)
        return HostInfo(host_no=host_no, **{a: r(a) for a in HOST_ATTRS})

    def hosts(self) -> list[HostInfo]:
        return [h for h in map(self.host, self.host_numbers()) if h is not None]

    def host_ifaces(self, host_no: int) -> list[HostIface]:
        """The network interfaces the driver of an offload HBA registered under its SCSI host
        (``bus/scsi/devices/host<N>/iscsi_iface/*``, in byte order: open-iscsi's
        ``alphasort``); [] for iscsi_tcp, which registers none, or a host that is gone."""
        names = sorted(self._names(f"bus/scsi/devices/host{host_no}/iscsi_iface"))
        out = []
        for name in names:
            r = self._reader(f"class/iscsi_iface/{name}", None)
            out.append(HostIface(name, {a: v for a in IFACE_ATTRS if (v := r(a)) is not None}))
        return out

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
