"""What the offload HBA commands share: the host's transport and its handle (sysfs), and a
NETLINK_ISCSI socket of the command's own.

iscsiadm opens its own netlink socket for these commands (usr/netlink.c ctldev_open), as
iscsictl does here: an HBA's CHAP table, statistics, flash targets and network settings
belong to its driver, not to a session, so no daemon is involved (none needs to run).  The
kernel answers only root (CAP_SYS_ADMIN) in the initial network namespace.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from . import errors as E

if TYPE_CHECKING:
    from ..netlink import IscsiNetlink

TRANS_NOT_FOUND = E.BY_NAME["ISCSI_ERR_TRANS_NOT_FOUND"]
INTERNAL = E.BY_NAME["ISCSI_ERR_INTERNAL"]


def host_transport(sysfs, o, host_no: int) -> str:  # type: ignore[no-untyped-def]
    """The transport of a host (usr/iscsi_sysfs.c iscsi_sysfs_get_transport_by_hba): its
    driver's ``proc_name`` without ``iscsi_``, which must be a registered transport
    (``class/iscsi_transport/<name>``); exit 12 otherwise.  (iscsiadm would then try to
    load a module of that name; iscsictl does not.)"""
    name = sysfs.host_transport(host_no)
    if name is None:
        o.error(f"Could not read proc_name for host{host_no} rc 5.")  # EIO
    elif sysfs.transport(name) is not None:
        return name
    raise E.CliError(f"Could not match hostno {host_no} to transport.", TRANS_NOT_FOUND)


def transport_handle(sysfs, name: str) -> int:  # type: ignore[no-untyped-def]
    """``class/iscsi_transport/<name>/handle``: the ``iscsi_uevent.transport_handle`` of its
    requests.  CliError 12 when the transport is not registered, 9 when the handle cannot be
    read (it is readable by root only)."""
    info = sysfs.transport(name)
    if info is None:
        raise E.CliError(f"Could not find transport {name}.", TRANS_NOT_FOUND)
    if info.handle is None:
        raise E.CliError(f"Could not read the handle of transport {name} (needs root).",
                         INTERNAL)
    return info.handle


@contextmanager
def hba_netlink() -> Iterator[IscsiNetlink]:
    """A blocking NETLINK_ISCSI client in the iscsid multicast group (GET_CHAP's and
    GET_HOST_STATS's answers are multicast), closed on exit.  A socket that cannot be opened
    (no scsi_transport_iscsi, no privilege, not the initial network namespace) is CliError
    9, ISCSI_ERR_INTERNAL, as iscsiadm's "Netlink open failed."."""
    from ..netlink import IscsiNetlink, IscsiNetlinkError

    try:
        nl = IscsiNetlink()
    except (IscsiNetlinkError, OSError) as e:
        raise E.CliError(f"Netlink open failed: {e}", INTERNAL) from None
    with nl:
        yield nl


def kernel_errno(exc: BaseException) -> int | None:
    """The errno a refused request carries (IscsiKernelError), None for anything else (no
    reply in time, an answer that cannot be read)."""
    from ..netlink import IscsiKernelError

    return exc.errno if isinstance(exc, IscsiKernelError) else None


def describe(exc: Any) -> str:
    """A failed request said in one phrase: the kernel's errno by name and text, else the
    netlink layer's own message."""
    import errno as _errno
    import os

    err = kernel_errno(exc)
    if err is None:
        return str(exc)
    return f"{_errno.errorcode.get(err, err)}, {os.strerror(err)}"
