"""Typed exceptions of the iSCSI netlink layer. Every message says what to do about it."""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "IscsiNetlinkError", "KernelInterfaceUnavailable", "NetlinkPermissionError", "NotInitialNetnsError",
    "UnsupportedKernelLayout",
    "IscsiKernelError", "ReplyTimeout", "ReplyLost", "NetlinkClosedError", "PayloadDecodeError",
]


class IscsiNetlinkError(Exception):
    """Base of every error raised by ``iscsictl.netlink``."""


class KernelInterfaceUnavailable(IscsiNetlinkError):
    """``socket(AF_NETLINK, SOCK_RAW, NETLINK_ISCSI)`` failed with EPROTONOSUPPORT."""

    def __init__(self, detail: str = "") -> None:
        msg = ("the kernel has no iSCSI netlink interface: load scsi_transport_iscsi "
               "(modprobe iscsi_tcp)")
        super().__init__(msg + (f" ({detail})" if detail else ""))


class NetlinkPermissionError(IscsiNetlinkError, PermissionError):
    """EPERM: the kernel checks CAP_SYS_ADMIN (requests) / CAP_NET_ADMIN (multicast group) in the init user ns."""

    def __init__(self, what: str) -> None:
        super().__init__(_errno.EPERM, f"{what}: needs CAP_SYS_ADMIN (run as root)")


class NotInitialNetnsError(IscsiNetlinkError):
    """The iSCSI netlink interface exists only in the initial network namespace (``init_net``)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the iSCSI netlink interface answers only in the initial network namespace: run in the host "
            "network namespace (a privileged container with host networking)" + (f" ({detail})" if detail else ""))


class UnsupportedKernelLayout(IscsiNetlinkError):
    """A 32-bit x86 kernel: its ``struct iscsi_uevent`` (``aligned(8)``, not packed) has the
    64-bit members of its request union 4-aligned, so the union is 20 bytes and the reply
    union starts at offset 36, not 40.  Spoken with the 64-bit layout, every reply and
    event would be misread without an error (a CREATE_SESSION's sid taken for its host)."""

    def __init__(self) -> None:
        super().__init__("a 32-bit x86 (i386) kernel lays out the iSCSI netlink messages "
                         "differently (struct iscsi_uevent's 64-bit members 4-aligned): "
                         "iscsictl speaks the layout of 64-bit kernels and 32-bit ARM's only")


class IscsiKernelError(IscsiNetlinkError, OSError):
    """The kernel refused a request.

    Attributes:
        errno: positive errno value.
        op: the request name (``enum iscsi_uevent_e`` member name, e.g. ``BIND_CONN``).
        source: ``"iferror"`` (reply type ISCSI_KEVENT_IF_ERROR, ``iscsi_uevent.iferror`` = -errno) or
            ``"retcode"`` (a normal reply whose ``r.retcode`` is negative, e.g. -ENOTCONN from BIND_CONN,
            START_CONN or SEND_PDU while the kernel is cleaning the connection up).
    """

    def __init__(self, err: int, op: str, source: str = "iferror") -> None:
        self.op = op
        self.source = source
        name = _errno.errorcode.get(err, str(err))
        hint = ""
        if err == _errno.EPERM:
            # iscsi_if_recv_msg's capability check comes back as IF_ERROR; an EPERM in a
            # reply's retcode is the transport's own (libiscsi's iscsi_conn_send_pdu: a
            # session failed or ending queues no PDU)
            hint = (": needs CAP_SYS_ADMIN (run as root)" if source == "iferror"
                    else ": the kernel's connection takes no PDU now (failed or ending)")
        super().__init__(err, f"kernel rejected {op}: {name} ({os.strerror(err)}) [{source}]{hint}")

    def __reduce__(self):  # pragma: no cover - pickling support for executors
        return (type(self), (self.errno, self.op, self.source))


class ReplyTimeout(IscsiNetlinkError, TimeoutError):
    """No reply of the expected type arrived within the timeout (seconds)."""


class ReplyLost(ReplyTimeout):
    """The reply is known gone without waiting: the kernel answers inside ``sendmsg()``, and
    the socket read right after it found no reply but a receive buffer overrun (ENOBUFS:
    the kernel dropped messages, the reply among them).  A ReplyTimeout, for the callers:
    whether the kernel did the operation is as unknown."""


class NetlinkClosedError(IscsiNetlinkError):
    """The socket is closed."""


class PayloadDecodeError(IscsiNetlinkError, ValueError):
    """A reply's trailing payload is shorter than its header says (kernel/ABI mismatch)."""
