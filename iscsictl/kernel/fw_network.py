"""The boot firmware's NIC brought up for a software-iSCSI boot (``iscsictl-start -N``,
open-iscsi's ``iscsistart -N``): the NIC's network device up with the firmware's address,
and a host route to each boot target through it.

Source: open-iscsi 2.1.8 usr/fwparam_ibft/fw_entry.c ``fw_setup_nics`` and
usr/iscsi_net_util.c ``net_setup_netdev``.  For each target the firmware describes, in
its order, on the NIC that target names:

* the network device is the NIC's (:attr:`BootContext.netdev`, else the Ethernet device
  with the NIC's MAC); with a VLAN id, the VLAN device on it with that id;
* the device (and with a VLAN the device below it) is set up, and given the NIC's address
  with its prefix;
* a host route to the target goes through the device: on-link when the target is in the
  NIC's subnet, else through the firmware's gateway.  A route or address already there is
  no error, so a second run changes nothing.

:func:`nic_setup` is the sans-I/O half: a :class:`BootContext` in, a :class:`NicSetup`
out, or :class:`FwNetworkError` naming what the firmware's values lack.
:class:`RtnlShell` is the I/O half: one rtnetlink socket (pyroute2's ``IPRoute``) in the
calling process's network namespace.

Deliberate differences from iscsistart 2.1.8 (what it does otherwise, iscsictl does):

* IPv6 NICs and targets are set up (iscsistart reads each address with ``inet_aton`` and
  refuses an IPv6 one);
* a VLAN that has no device yet gets one, ``<dev>.<id>`` (iscsistart: "No matching vlan
  found for fw entry", a TODO in its source); an existing one is found by its lower device
  and id (iscsistart: by MAC and ``SIOCGIFVLAN``);
* an address is added beside the device's others (iscsistart's ``SIOCSIFADDR`` replaces
  the device's first IPv4 address);
* a NIC whose iSCSI function belongs to an offload HBA is told apart as ``-b`` tells it
  (:func:`iscsictl.kernel.firmware.offload_iface`: an iSCSI host with the NIC's MAC, or an
  ``iscsi_boot<N>`` table), not by the network driver's name (cxgb3, cxgb4, bnx2, bnx2x);
  its network device is left alone, as iscsistart leaves it;
* a NIC without a network device is found by its MAC (iscsistart: "No netdev name in fw
  entry").
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from ..lexical import ascii_digits
from .firmware import BootContext

__all__ = ["FwNetworkError", "NicSetup", "RtnlShell", "nic_setup"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

VLAN_ID_MAX = 4094   # IEEE 802.1Q: 4095 is reserved (the kernel's VLAN_VID_MASK - 1)
IFNAMSIZ = 16        # include/uapi/linux/if.h, the NUL included
RTPROT_BOOT = 3      # include/uapi/linux/rtnetlink.h: what SIOCADDRT's routes get
RT_SCOPE_LINK = 253  # an on-link route (the ioctl's scope for a route without a gateway)
IFF_UP = 0x1
IFA_F_NODAD = 0x02  # include/uapi/linux/if_addr.h: no duplicate address detection


class FwNetworkError(Exception):
    """The firmware's values for a NIC cannot be set up, or the kernel refused a step;
    the message says which value or step, and why."""


@dataclass(frozen=True)
class NicSetup:
    """What one boot target needs of the network.

    ``netdev``: the NIC's network device (the VLAN's lower device when ``vlan`` is not 0);
    ``interface``: the NIC's address with its prefix (iBFT ``ip-addr`` and ``prefix-len``,
    else ``subnet-mask``); ``target``: the target's address; ``gateway``: the firmware's
    gateway when the target is outside the NIC's subnet, else None (on-link)."""

    netdev: str
    vlan: int
    interface: IPInterface
    target: IPAddress
    gateway: IPAddress | None

    @property
    def vlan_name(self) -> str:
        """The name a VLAN device made for this NIC gets: ``<netdev>.<vlan>``, or
        ``vlan<vlan>`` when that is longer than a device name can be."""
        name = f"{self.netdev}.{self.vlan}"
        return name if len(name) < IFNAMSIZ else f"vlan{self.vlan}"


def _address(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise FwNetworkError(f"{what} {text!r} is not an IP address") from None


def _prefix(ctx: BootContext, addr: IPAddress) -> int:
    """The subnet prefix: ``prefix-len`` when in range, else IPv4's ``subnet-mask``."""
    if 0 < ctx.prefix <= addr.max_prefixlen:
        return ctx.prefix
    if addr.version == 4 and ctx.mask:
        try:
            return ipaddress.IPv4Network(f"0.0.0.0/{ctx.mask.strip()}").prefixlen
        except ValueError:
            raise FwNetworkError(f"the subnet mask {ctx.mask!r} is not one") from None
    raise FwNetworkError(f"no subnet prefix for {addr} (prefix-len {ctx.prefix})")


def nic_setup(ctx: BootContext, netdev: str) -> NicSetup:
    """The setup of ``ctx``'s NIC on device ``netdev`` (the caller's choice: the context's,
    or the one with its MAC).  Raises FwNetworkError for a missing device, a missing or
    malformed address, prefix, gateway or VLAN id, or families that differ."""
    nic = f"{ctx.boot_root}/{ctx.boot_nic}"
    if not netdev:
        raise FwNetworkError(f"no network device has {nic}'s MAC {ctx.mac}")
    if not ctx.ipaddr or ctx.ipaddr in ("0.0.0.0", "::"):
        raise FwNetworkError(f"{nic} has no IP address")
    addr = _address(ctx.ipaddr, f"{nic}'s address")
    interface = ipaddress.ip_interface(f"{addr}/{_prefix(ctx, addr)}")
    target = _address(ctx.target_address, f"{ctx.boot_root}/{ctx.boot_target}'s address")
    if target.version != addr.version:
        raise FwNetworkError(f"the target {target} is IPv{target.version} and {nic}'s "
                             f"address {addr} IPv{addr.version}")
    gateway = None
    if target not in interface.network:
        if not ctx.gateway or ctx.gateway in ("0.0.0.0", "::"):
            raise FwNetworkError(f"the target {target} is outside {interface.network} and "
                                 f"{nic} has no gateway")
        gateway = _address(ctx.gateway, f"{nic}'s gateway")
        if gateway.version != addr.version:
            raise FwNetworkError(f"{nic}'s gateway {gateway} is not IPv{addr.version}")
    vlan_text = ctx.vlan.strip()
    if vlan_text and not ascii_digits(vlan_text):
        raise FwNetworkError(f"{nic}'s VLAN {ctx.vlan!r} is not a number")
    vlan = int(vlan_text or 0)
    if vlan > VLAN_ID_MAX:
        raise FwNetworkError(f"{nic}'s VLAN {vlan} is not a VLAN id (1-{VLAN_ID_MAX})")
    return NicSetup(netdev, vlan, interface, target, gateway)


def _why(e: Exception) -> str:
    code = getattr(e, "code", None)
    if not isinstance(code, int) or code <= 0:
        return str(e)
    return os.strerror(code) + (" (needs CAP_NET_ADMIN: run as root)" if code == 1 else "")


class RtnlShell:
    """Applies :class:`NicSetup` through rtnetlink in this process's network namespace.

    ``ipr``: a pyroute2 ``IPRoute`` (made when None).  Use as a context manager, or call
    :meth:`close`.  Needs CAP_NET_ADMIN; every refusal is a FwNetworkError naming the
    step and the kernel's reason."""

    def __init__(self, ipr: Any = None) -> None:
        if ipr is None:
            from pyroute2 import IPRoute
            try:
                ipr = IPRoute()
            except OSError as e:
                raise FwNetworkError(f"opening rtnetlink: {e.strerror or e}") from None
        self._ipr = ipr

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> RtnlShell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, step: str, fn: Any, *args: Any, exist_ok: bool = False,
              **kw: Any) -> bool:
        """Run one request; False when it was there already (EEXIST and ``exist_ok``)."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            fn(*args, **kw)
        except NetlinkError as e:
            if exist_ok and e.code == 17:  # EEXIST
                return False
            raise FwNetworkError(f"{step}: {_why(e)}") from None
        except OSError as e:  # the socket itself (EPERM without CAP_NET_ADMIN, ...)
            raise FwNetworkError(f"{step}: {e.strerror or e}") from None
        return True

    def _index(self, name: str) -> int:
        found: list[int] = []
        self._call(f"looking up {name}", lambda: found.extend(self._ipr.link_lookup(ifname=name)))
        if not found:
            raise FwNetworkError(f"there is no network device {name}")
        return found[0]

    def _vlan_device(self, setup: NicSetup, lower: int) -> tuple[int, str, bool]:
        """(index, name, made): the VLAN device on ``lower`` with the setup's id, made
        when there is none."""
        links: list[Any] = []
        self._call("listing the network devices", lambda: links.extend(self._ipr.get_links()))
        for link in links:
            if (link.get(("linkinfo", "kind")) == "vlan" and link.get("link") == lower
                    and link.get(("linkinfo", "data", "vlan_id")) == setup.vlan):
                return link["index"], link.get("ifname"), False
        name = setup.vlan_name
        step = f"making VLAN device {name} (VLAN {setup.vlan} on {setup.netdev})"
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            self._ipr.link("add", ifname=name, kind="vlan", link=lower, vlan_id=setup.vlan)
        except NetlinkError as e:
            hint = " (the kernel has no 802.1Q VLANs: modprobe 8021q)" if e.code == 95 else ""
            raise FwNetworkError(f"{step}: {_why(e)}{hint}") from None
        return self._index(name), name, True

    def _up(self, index: int, name: str) -> list[str]:
        """Device ``index`` (``name``) set up: ``["<name> up"]``, or [] when it was."""
        links: list[Any] = []
        self._call(f"reading {name}", lambda: links.extend(self._ipr.get_links(index)))
        if links and links[0]["flags"] & IFF_UP:
            return []
        self._call(f"setting {name} up", self._ipr.link, "set", index=index, state="up")
        return [f"{name} up"]

    def link_up(self, netdev: str) -> list[str]:
        """Network device ``netdev`` set up, no address or route: an offload NIC's, whose
        HBA has its own network (iface_setup_from_boot_context's net_ifup_netdev).  As
        :meth:`apply` returns and raises."""
        return self._up(self._index(netdev), netdev)

    def apply(self, setup: NicSetup) -> list[str]:
        """Bring the setup up; returns what changed, one short phrase each (nothing when
        all was there).  Raises FwNetworkError at the first step the kernel refuses."""
        done = []
        lower = self._index(setup.netdev)
        index, name = lower, setup.netdev
        devices = [(lower, setup.netdev)]
        if setup.vlan:
            index, name, made = self._vlan_device(setup, lower)
            if made:
                done.append(f"made {name} (VLAN {setup.vlan} on {setup.netdev})")
            devices.append((index, name))
        for i, n in devices:
            done += self._up(i, n)
        # an IPv6 address without duplicate address detection: usable when -N returns,
        # not ~2 s later (a connect meanwhile fails with EADDRNOTAVAIL)
        nodad = {"flags": IFA_F_NODAD} if setup.interface.version == 6 else {}
        if self._call(f"adding {setup.interface} to {name}", self._ipr.addr, "add",
                      index=index, address=str(setup.interface.ip),
                      prefixlen=setup.interface.network.prefixlen, exist_ok=True, **nodad):
            done.append(f"{setup.interface} on {name}")
        host = f"{setup.target}/{setup.target.max_prefixlen}"
        route: dict[str, Any] = {"dst": host, "oif": index, "proto": RTPROT_BOOT}
        if setup.gateway:
            route["gateway"] = str(setup.gateway)
        else:
            route["scope"] = RT_SCOPE_LINK
        via = f" via {setup.gateway}" if setup.gateway else ""
        if self._call(f"adding a route to {setup.target}{via} on {name}", self._ipr.route,
                      "add", exist_ok=True, **route):
            done.append(f"route to {setup.target}{via} on {name}")
        return done
