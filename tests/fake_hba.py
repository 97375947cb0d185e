"""A fake kernel with offload HBAs behind NETLINK_ISCSI, for the tests of the HBA
administration commands (``-m host -C chap|stats|flashnode``, ``-m iface -o apply``): no
qla4xxx card is here, and no peer can stand in for one, so this is the one mock of the kind.

It serves a Unix datagram socket; ``tests/nlshim.c`` (an LD_PRELOAD library, built here by
:func:`build_shim`) points a process's NETLINK_ISCSI socket at it, so open-iscsi's own
iscsiadm and iscsictl run unmodified against the same fake kernel and sysfs tree, and what
each sent can be compared byte for byte.  It answers as Linux 6.1's scsi_transport_iscsi
does (``iscsi_if_rx``/``iscsi_if_recv_msg``): an unknown transport handle is EINVAL, a
transport without the operation ENOSYS (EINVAL for GET_CHAP), an unknown host ENODEV, a
missing flash target ENODEV; errors come back as ``ISCSI_KEVENT_IF_ERROR`` with the request's
``nlmsg_type``; GET_CHAP and GET_HOST_STATS reply by multicast (``nlmsg_type`` 0), and
GET_HOST_STATS is then echoed by unicast as well.  Behind the transport, the driver is
modelled on qla4xxx (drivers/scsi/qla4xxx/ql4_os.c): a CHAP table of 128 entries, an entry
in use by a flash target cannot be changed or deleted (EBUSY), an index past the table is
EINVAL, a second login to a flash target EPERM, a logout of one not logged in ESRCH.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field

from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import ChapTypeE, IscsiChapParam as C
from iscsictl.netlink.enums import IscsiUeventE as E

from fake_kernel import echo, if_error, split_messages

SHIM_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nlshim.c")

#: the operations of scsi_transport_iscsi's struct iscsi_transport each request needs
OPS = {
    E.GET_CHAP: "get_chap", E.SET_CHAP: "set_chap", E.DELETE_CHAP: "delete_chap",
    E.GET_HOST_STATS: "get_host_stats", E.SET_IFACE_PARAMS: "set_iface_param",
    E.NEW_FLASHNODE: "new_flashnode", E.DEL_FLASHNODE: "del_flashnode",
    E.SET_FLASHNODE_PARAMS: "set_flashnode_param", E.LOGIN_FLASHNODE: "login_flashnode",
    E.LOGOUT_FLASHNODE: "logout_flashnode", E.LOGOUT_FLASHNODE_SID: "logout_flashnode_sid",
    E.PING: "send_ping",
}
QLA4XXX_OPS = frozenset(OPS.values())
#: MAX_CHAP_ENTRIES_40XX (ql4_def.h)
MAX_CHAP_ENTRIES = 128


def build_shim(out_dir: str) -> str:
    """Compile tests/nlshim.c into ``out_dir``; returns the library's path."""
    lib = os.path.join(out_dir, "nlshim.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", lib, SHIM_SOURCE, "-ldl"],
                   check=True, capture_output=True, text=True)
    return lib


@dataclass
class ChapEntry:
    chap_type: int
    username: bytes
    password: bytes


@dataclass
class Host:
    """One SCSI host of the fake kernel: its transport's name, its CHAP table, the flash
    targets (index -> has a conn entry), which of them are logged in, its stats."""

    transport: str
    chap: dict[int, ChapEntry] = field(default_factory=dict)
    chap_in_use: set[int] = field(default_factory=set)
    flashnodes: dict[int, bool] = field(default_factory=dict)
    logged_in: set[int] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=dict)
    #: the driver's own counters after ``struct iscsi_offload_host_stats``: (desc, value)
    stats_custom: list[tuple[bytes, int]] = field(default_factory=list)
    #: ping destination -> the ISCSI_PING_* status its completion carries (absent: success;
    #: None: no completion ever comes)
    ping: dict[str, int | None] = field(default_factory=dict)


class FakeHbaKernel:
    """The fake kernel, serving ``path`` from a thread (a context manager).

    Args:
        path: where to bind its Unix datagram socket (``ISCSI_FAKE_NETLINK``).
        transports: handle -> (name, the operations its driver has: :data:`QLA4XXX_OPS`).
        hosts: host number -> :class:`Host`.

    ``requests`` records each request as it came: ``(raw bytes, decoded message)``.
    """

    def __init__(self, path: str, transports: dict[int, tuple[str, frozenset[str]]],
                 hosts: dict[int, Host]) -> None:
        self.path = path
        self.transports = transports
        self.hosts = hosts
        self.requests: list[tuple[bytes, dict]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "FakeHbaKernel":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"", self.path)
        self._thread.join(5)
        self.sock.close()
        os.unlink(self.path)

    def env(self, shim: str) -> dict[str, str]:
        """The environment variables that point a process at this kernel."""
        return {"LD_PRELOAD": shim, "ISCSI_FAKE_NETLINK": self.path}

    def sent(self, ev_type: int) -> list[tuple[bytes, dict]]:
        """The requests of one type, in order."""
        return [r for r in self.requests if r[1]["type"] == ev_type]

    # ------------------------------------------------------------------ the kernel's side
    def _serve(self) -> None:
        while not self._stop:
            data, peer = self.sock.recvfrom(1 << 16)
            if self._stop:
                break
            for raw in split_messages(data):
                for reply in self._answer(raw):
                    try:
                        self.sock.sendto(reply, peer)
                    except OSError:  # the process is gone (ECONNREFUSED): as the kernel
                        pass

    def _answer(self, raw: bytes) -> list[bytes]:
        (msg,) = m.decode_messages(raw)
        self.requests.append((raw, msg))
        t = msg["type"]
        transport = self.transports.get(msg["transport_handle"])
        if transport is None:
            return [if_error(raw, errno.EINVAL)]
        name, ops = transport
        if t not in OPS:
            return [if_error(raw, errno.EINVAL)]
        if OPS[t] not in ops:
            return [if_error(raw, errno.EINVAL if t == E.GET_CHAP else errno.ENOSYS)]
        host = self.hosts.get(msg["host_no"])
        if host is None:
            return [if_error(raw, errno.ENODEV)]
        handler = getattr(self, "_" + OPS[t])
        try:
            return handler(raw, msg, host)
        except OSError as e:
            return [if_error(raw, e.errno)]

    def _get_chap(self, raw, msg, host):
        start, wanted = msg["chap_tbl_idx"], msg["num_entries"]
        size = m.iscsi_chap_rec_payload.size()
        entries = []
        for idx in sorted(i for i in host.chap if i >= start):
            e = host.chap[idx]
            entries.append(m.iscsi_chap_rec_payload.to_bytes(
                chap_tbl_idx=idx, chap_type=e.chap_type, username=e.username,
                password=e.password, password_length=len(e.password)))
            if len(entries) == wanted:
                break
        # the buffer is num_entries records long whatever the driver filled (iscsi_get_chap)
        payload = b"".join(entries).ljust(wanted * size, b"\0")
        return [m.encode_message(E.GET_CHAP, transport_handle=msg["transport_handle"],
                                 nlmsg_type=0, host_no=msg["host_no"], chap_tbl_idx=start,
                                 num_entries=len(entries), payload=payload)]

    def _set_chap(self, raw, msg, host):
        rec = {"idx": 0, "type": 0, "user": b"", "secret": b"", "len": 0}
        for a in m.decode_nlas(m.iscsi_param_info_nla, msg["payload"]):
            v = a["value"]
            if a["param"] == C.INDEX:
                rec["idx"] = struct.unpack_from("=H", v.ljust(2, b"\0"))[0]
            elif a["param"] == C.CHAP_TYPE:
                rec["type"] = v[0]
            elif a["param"] == C.USERNAME:
                rec["user"] = v[:256]
            elif a["param"] == C.PASSWORD:
                rec["secret"] = v[:256]
            elif a["param"] == C.PASSWORD_LEN:
                rec["len"] = v[0]
        if rec["idx"] >= MAX_CHAP_ENTRIES:  # qla4xxx_set_chap_entry: the first free one
            free = [i for i in range(MAX_CHAP_ENTRIES) if i not in host.chap]
            if not free:
                raise OSError(errno.EBUSY, "CHAP entry not available")
            rec["idx"] = free[0]
        if rec["idx"] in host.chap_in_use:
            raise OSError(errno.EBUSY, "CHAP entry in use")
        host.chap[rec["idx"]] = ChapEntry(
            ChapTypeE.IN if rec["type"] == ChapTypeE.IN else ChapTypeE.OUT,
            rec["user"].split(b"\0")[0], rec["secret"].split(b"\0")[0][:rec["len"]])
        return [echo(raw, r_retcode=0)]

    def _delete_chap(self, raw, msg, host):
        idx = msg["chap_tbl_idx"]
        if idx > MAX_CHAP_ENTRIES:
            raise OSError(errno.EINVAL, "Invalid Chap index")
        if idx in host.chap_in_use:
            raise OSError(errno.EBUSY, "CHAP entry in use")
        host.chap.pop(idx, None)
        return [echo(raw, r_retcode=0)]

    def _get_host_stats(self, raw, msg, host):
        payload = m.iscsi_offload_host_stats_payload.to_bytes(
            **host.stats, custom_length=len(host.stats_custom)) + b"".join(
            m.iscsi_host_stats_custom_payload.to_bytes(desc=d, value=v)
            for d, v in host.stats_custom)
        return [m.encode_message(E.GET_HOST_STATS, transport_handle=msg["transport_handle"],
                                 nlmsg_type=0, host_no=msg["host_no"], payload=payload),
                echo(raw, r_retcode=0)]

    def _set_iface_param(self, raw, msg, host):
        m.decode_nlas(m.iscsi_iface_param_info_nla, msg["payload"])  # ValueError if malformed
        return [echo(raw, r_retcode=0)]

    def _new_flashnode(self, raw, msg, host):
        idx = max(host.flashnodes, default=-1) + 1
        host.flashnodes[idx] = True
        return [echo(raw, r_flashnode_idx=idx)]

    def _flashnode(self, msg, host, conn: bool = False) -> int:
        idx = msg["flashnode_idx"]
        if idx not in host.flashnodes or (conn and not host.flashnodes[idx]):
            raise OSError(errno.ENODEV, "no such flashnode")
        return idx

    def _del_flashnode(self, raw, msg, host):
        del host.flashnodes[self._flashnode(msg, host)]
        return [echo(raw, r_retcode=0)]

    def _set_flashnode_param(self, raw, msg, host):
        self._flashnode(msg, host, conn=True)
        m.decode_nlas(m.iscsi_flashnode_param_info_nla, msg["payload"])
        return [echo(raw, r_retcode=0)]

    def _login_flashnode(self, raw, msg, host):
        idx = self._flashnode(msg, host, conn=True)
        if idx in host.logged_in:
            raise OSError(errno.EPERM, "already logged in")
        host.logged_in.add(idx)
        return [echo(raw, r_retcode=0)]

    def _logout_flashnode(self, raw, msg, host):
        idx = self._flashnode(msg, host, conn=True)
        if idx not in host.logged_in:
            raise OSError(errno.ESRCH, "not logged in")
        host.logged_in.discard(idx)
        return [echo(raw, r_retcode=0)]

    def _logout_flashnode_sid(self, raw, msg, host):
        return [echo(raw, r_retcode=0)]

    def _send_ping(self, raw, msg, host):
        """qla4xxx_send_ping: an IPv4 iface pings an IPv4 address, an IPv6 one (its
        iface_num 0 or 1) an IPv6 address; anything else is ENOSYS.  The reply comes first,
        then the firmware's completion: ISCSI_KEVENT_PING_COMP by multicast (nlmsg_type 0),
        as iscsi_ping_comp_event sends it, with the request's pid."""
        import ipaddress

        address, _ = m.decode_sockaddr(msg["payload"])
        v6 = ipaddress.ip_address(address).version == 6
        if msg["iface_type"] != (2 if v6 else 1) or v6 and msg["iface_num"] > 1:
            raise OSError(errno.ENOSYS, "not supported")
        replies = [echo(raw, r_retcode=0)]
        status = host.ping.get(address, 0)
        if status is not None:
            replies.append(m.encode_message(
                E.KEVENT_PING_COMP, transport_handle=msg["transport_handle"], nlmsg_type=0,
                r_host_no=msg["host_no"], r_status=status,
                r_pid=msg["pid"], r_data_size=0))
        return replies
