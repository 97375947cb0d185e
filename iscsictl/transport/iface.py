"""What an iface record changes about a software-iSCSI (``tcp``) connection, for discovery
and for logins alike: the network device it binds to (open-iscsi's ``bind_conn_to_iface``,
usr/io.c) and the initiator name it uses (``iface.initiatorname``).

An iface record (or the ``iface.*`` copy in a node record) binds by, in this order:

* ``iface.hwaddress``: the Ethernet device with that MAC (``net_get_netdev_from_hwaddress``,
  usr/iscsi_net_util.c: ARPHRD_ETHER devices only, any case; loopback never matches);
* ``iface.net_ifacename``: that device by name;
* neither: the routing table chooses (the ``default`` iface).

``iface.ipaddress`` alone cannot bind a software-iSCSI connection: open-iscsi refuses it too
(the address is an offload HBA's).  Other transports are not bound here.  The device is
applied with ``SO_BINDTODEVICE`` before ``connect()``, so the connection leaves through that
device or not at all (two ifaces on two NICs of one subnet: two paths for multipath).
Unset values are empty, ``<empty>`` or ``default`` (open-iscsi's DEFAULT_NETDEV and
DEFAULT_HWADDRESS).
"""

from __future__ import annotations

import socket
from typing import Mapping

from ..kernel.sysfs import Sysfs
from .errors import TransportError

__all__ = ["BindError", "bind_socket", "iface_initiator_name", "iface_netdev"]

_UNSET = frozenset(("", "<empty>", "default"))
#: where a MAC is looked up when the caller passes no Sysfs (tests replace it with a tree)
SYSFS = Sysfs()


class BindError(TransportError):
    """The iface's device cannot be bound.  ``lines``: iscsiadm's two messages, the reason
    (``Could not bind connection 0 to eth9``, ``Cannot match <MAC> to net/scsi interface.``,
    ``Cannot bind <IP> to net/scsi interface. ...``) then ``cannot make connection to ADDR:
    WHY``.  Exit code 4 (ISCSI_ERR_TRANS); retried like a failed connect."""

    def __init__(self, reason: str, address: str, why: str):
        super().__init__(f"{reason} (cannot make connection to {address}: {why})")
        self.lines = (reason, f"cannot make connection to {address}: {why}")


def _set(iface: Mapping[str, object], key: str) -> str | None:
    v = iface.get(key)
    v = "" if v is None else str(v).strip()
    return None if v in _UNSET else v


def iface_initiator_name(iface: Mapping[str, object]) -> str | None:
    """The iface's own InitiatorName (``iface.initiatorname``), if it sets one: it replaces
    initiatorname.iscsi's for the sessions and discoveries through that iface."""
    v = iface.get("iface.initiatorname")
    v = "" if v is None else str(v).strip()
    return None if v in ("", "<empty>") else v


def iface_netdev(iface: Mapping[str, object], sysfs: Sysfs | None = None) -> str | None:
    """The device a ``tcp`` iface binds to, or None (not bound, or not ``tcp``).

    ``iface``: open-iscsi keys (``iface.transport_name``, ``iface.hwaddress``,
    ``iface.net_ifacename``, ``iface.ipaddress``); ``sysfs`` (default :data:`SYSFS`, /sys)
    reads ``class/net`` for a MAC.
    Raises LookupError with iscsiadm's message: no Ethernet device has the MAC, or the iface
    sets only an IP address."""
    if (_set(iface, "iface.transport_name") or "tcp") != "tcp":
        return None
    hw = _set(iface, "iface.hwaddress")
    if hw is not None:
        dev = (sysfs or SYSFS).netdev_by_hwaddress(hw)
        if dev is None:
            raise LookupError(f"Cannot match {hw} to net/scsi interface.")
        return dev
    dev = _set(iface, "iface.net_ifacename")
    if dev is not None:
        return dev
    ip = _set(iface, "iface.ipaddress")
    if ip is not None:
        raise LookupError(f"Cannot bind {ip} to net/scsi interface. This is not supported "
                          "with software iSCSI (iscsi_tcp).")
    return None


def bind_socket(sock: socket.socket, iface: Mapping[str, object] | None, address: str,
                sysfs: Sysfs | None = None) -> str | None:
    """Bind ``sock`` (not yet connected) to ``iface``'s device, if it names one; the device.

    ``address`` is the portal's, for the message.  Raises BindError (the device is unknown,
    the MAC matches nothing, an IP-only iface, or SO_BINDTODEVICE failed: ENODEV, EPERM)."""
    if not iface:
        return None
    try:
        dev = iface_netdev(iface, sysfs)
    except LookupError as e:
        raise BindError(str(e), address, "no network device to bind to") from None
    if dev is None:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise BindError(f"Could not bind connection 0 to {dev}", address, why) from None
    return dev
