"""The boot firmware's iSCSI description, as the kernel shows it in sysfs.

Two sources, read as open-iscsi 2.1.8 reads them (usr/fwparam_ibft/fwparam_sysfs.c):

* ``firmware/ibft/`` (drivers/firmware/iscsi_ibft.c: the iSCSI Boot Firmware Table that
  iPXE or a NIC's option ROM leaves in ACPI; ``modprobe iscsi_ibft`` shows it);
* ``firmware/iscsi_boot<N>/`` (drivers/scsi/iscsi_boot_sysfs.c: an offload driver's boot
  description for its SCSI host N: be2iscsi, qla4xxx, bnx2i ...).

Each holds ``initiator/``, ``ethernet<i>/`` and ``target<j>/`` directories of one-value
attribute files (an attribute the firmware left empty is absent).  Every target whose
``flags`` is non-zero (firmware sets bit 0 "valid", some only bit 1 "boot selected") and
whose ``nic-assoc`` names an Ethernet entry with non-zero flags and a MAC becomes one
:class:`BootContext`; the others are left out, as open-iscsi leaves them out.

Reading needs CAP_SYS_ADMIN (iscsi_boot_show_attribute returns EACCES otherwise):
:class:`FirmwareAccessError` says so instead of pretending there is no firmware.
``root`` is the sysfs mount (``/sys``), injectable for tests.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..lexical import C_SPACE, ascii_digits
from .sysfs import Sysfs, read_attribute

__all__ = ["BootContext", "FirmwareAccessError", "boot_entry", "boot_targets",
           "firmware_present", "offload_iface"]

IBFT = "ibft"
#: an entry's flags bit saying the firmware booted through it (iscsi_ibft.c
#: IBFT_BLOCK_FLAG_FW_BOOT_SEL; open-iscsi's IBFT_SYSFS_FLAG_FW_SEL_BOOT)
FLAG_BOOT_SELECTED = 0x2
LLD_PREFIX = "iscsi_boot"
ISCSI_LISTEN_PORT = 3260
ORIGIN_DHCP = 3  # enum ibft_ip_prefix_origin: IBFT_IP_PREFIX_ORIGIN_DHCP
_INDEXED = re.compile(r"^(ethernet|target)([0-9]+)\Z")


class FirmwareAccessError(PermissionError):
    """The firmware's attributes are there but this process may not read them."""


@dataclass(frozen=True)
class BootContext:
    """One target of the boot firmware with its NIC and initiator (open-iscsi's struct
    boot_context, include/fw_context.h).  Strings are ``""`` where the firmware has none.

    ``boot_root``: ``ibft`` or ``iscsi_boot<N>``; ``boot_nic``/``boot_target``: the
    entries' names (``ethernet0``, ``target0``).  ``netdev``: the Linux network device of
    the NIC (its PCI function's ``net/`` entry, else the Ethernet device with its MAC; ""
    when the firmware names no PCI device).  ``lun``: the kernel's text of the 8 LUN bytes
    (each byte ``%x``, unpadded).  ``prefix``: the subnet prefix length (-1 when the table
    shows none, as open-iscsi's sysfs_get_int leaves it: `-m fw` prints it so)."""

    boot_root: str
    boot_nic: str
    boot_target: str
    target_flags: int
    target_name: str
    target_address: str
    target_port: int
    lun: str
    chap_name: str
    chap_password: str
    chap_name_in: str
    chap_password_in: str
    initiator_name: str
    isid: str
    nic_flags: int
    mac: str
    netdev: str
    ipaddr: str
    prefix: int
    mask: str
    gateway: str
    primary_dns: str
    secondary_dns: str
    dhcp: str
    vlan: str
    origin: int

    @property
    def boot_selected(self) -> bool:
        """The firmware booted from this target (flags bit 1)."""
        return bool(self.target_flags & FLAG_BOOT_SELECTED)

    @property
    def bootproto(self) -> str:
        """``DHCP`` when the NIC's address came from DHCP (origin 3, or a DHCP server other
        than 0.0.0.0: Broadcom firmware leaves that), else ``STATIC`` (fw_entry.c)."""
        if self.origin == ORIGIN_DHCP or self.dhcp not in ("", "0.0.0.0"):
            return "DHCP"
        return "STATIC"

    @property
    def host_no(self) -> int | None:
        """The offload driver's SCSI host for an ``iscsi_boot<N>`` root, else None."""
        if self.boot_root.startswith(LLD_PREFIX):
            try:
                return int(self.boot_root[len(LLD_PREFIX):])
            except ValueError:
                return None
        return None


def _roots(root: str) -> list[str]:
    """``firmware/ibft`` first, then each ``firmware/iscsi_boot<N>`` (by N)."""
    fw = os.path.join(root, "firmware")
    try:
        names = os.listdir(fw)
    except OSError:
        return []
    llds = sorted((n for n in names if n.startswith(LLD_PREFIX)),
                  key=lambda n: (len(n), n))
    return ([IBFT] if IBFT in names else []) + llds


def firmware_present(root: str = "/sys") -> bool:
    """Whether sysfs shows an iSCSI boot description at all (its contents unread)."""
    return bool(_roots(root))


class _Entry:
    """One ``initiator``/``ethernet<i>``/``target<j>`` directory's attributes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)

    def text(self, attr: str) -> str | None:
        """The attribute without its trailing newline; None when absent, unreadable by the
        driver, or unset: "(null)" or "<NULL>" (qedi prints its disabled CHAP names and
        secrets so; open-iscsi's sysfs_get_value reads them as none).  EACCES raises
        FirmwareAccessError."""
        try:
            with open(os.path.join(self.path, attr), "rb") as f:
                raw = f.read(4096)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise FirmwareAccessError(
                errno.EACCES, f"reading the boot firmware's iSCSI table ({self.path}) needs "
                              "CAP_SYS_ADMIN: run as root") from None
        except OSError:
            return None
        # up to a NUL, as open-iscsi reads a C string: qedi's DHCP table pads its addresses
        # with one ("0.0.0.0\n\0", the 8 bytes its snprintf counted); the bytes kept (a
        # CHAP secret is hashed as its bytes): surrogateescape, as the DB
        text = raw.partition(b"\0")[0].decode("utf-8", "surrogateescape").rstrip("\n")
        return None if text.startswith(("(null)", "<NULL>")) else text

    def string(self, attr: str) -> str:
        return self.text(attr) or ""

    def number(self, attr: str) -> int | None:
        v = self.text(attr)
        try:
            return int(v.strip()) if v is not None else None
        except ValueError:
            return None


def _entries(base: str) -> dict[str, list[_Entry]]:
    """The ``ethernet*``/``target*`` directories under ``base``, by kind, in index order
    (open-iscsi walks them in readdir order; sysfs's is a hash order)."""
    out: dict[str, list[tuple[int, _Entry]]] = {"ethernet": [], "target": []}
    for dirpath, dirnames, _ in os.walk(base):
        for d in dirnames:
            mt = _INDEXED.match(d)
            full = os.path.join(dirpath, d)
            if mt and not os.path.islink(full):
                out[mt.group(1)].append((int(mt.group(2)), _Entry(full)))
    return {k: [e for _, e in sorted(v, key=lambda x: x[0])] for k, v in out.items()}


def _netdev(nic: _Entry, sysfs: Sysfs) -> str | None:
    """The NIC's network device: the ``device`` link's ``net:<dev>`` entry (old kernels) or
    ``net/<dev>``; with a device but no network function there, the Ethernet device with
    the NIC's MAC (None when there is none: the target is unusable).  No ``device`` link
    (the firmware names no PCI function): ""."""
    dev = os.path.join(nic.path, "device")
    if not os.path.exists(dev):
        return ""
    try:
        names = sorted(os.listdir(dev))
    except OSError:
        names = []
    found = [(n[4:], os.path.join(dev, n)) for n in names if n.startswith("net:")]
    if not found:
        try:
            found = [(n, os.path.join(dev, "net", n))
                     for n in sorted(os.listdir(os.path.join(dev, "net")))]
        except OSError:
            pass
    if not found:
        return sysfs.netdev_by_hwaddress(nic.string("mac"))
    # a PCI function with two ports' devices (mlx4's): the one with the NIC's MAC, where
    # open-iscsi's get_iface_from_device takes the first it reads; none with it: the first
    mac = nic.string("mac").lower()
    for name, path in found:
        if mac and (read_attribute(os.path.join(path, "address")) or "").lower() == mac:
            return name
    return found[0][0]


def _context(root_name: str, initiator: _Entry, nic: _Entry, target: _Entry,
             netdev: str) -> BootContext:
    port, prefix = target.number("port"), nic.number("prefix-len")
    return BootContext(
        boot_root=root_name, boot_nic=nic.name, boot_target=target.name,
        target_flags=target.number("flags") or 0,
        target_name=target.string("target-name"), target_address=target.string("ip-addr"),
        target_port=ISCSI_LISTEN_PORT if port is None else port,
        lun=target.string("lun"),
        chap_name=target.string("chap-name"), chap_password=target.string("chap-secret"),
        chap_name_in=target.string("rev-chap-name"),
        chap_password_in=target.string("rev-chap-name-secret"),
        initiator_name=initiator.string("initiator-name"), isid=initiator.string("isid"),
        nic_flags=nic.number("flags") or 0, mac=nic.string("mac"), netdev=netdev,
        ipaddr=nic.string("ip-addr"), prefix=-1 if prefix is None else prefix,
        mask=nic.string("subnet-mask"), gateway=nic.string("gateway"),
        primary_dns=nic.string("primary-dns"), secondary_dns=nic.string("secondary-dns"),
        dhcp=nic.string("dhcp"), vlan=nic.string("vlan"), origin=nic.number("origin") or 0,
    )


def boot_entry(root: str = "/sys") -> tuple[str, str] | None:
    """The firmware table the machine booted from, as iscsistart's ``-b`` finds it
    (open-iscsi's fwparam_sysfs_boot_info, get_boot_info): ``(table, initiator name)`` of
    the first table (``ibft``, then each ``iscsi_boot<N>``) whose first Ethernet entry and
    first target entry flagged boot selected (bit 1), each looked for among all of its
    entries (which NIC the target names does not matter), have a MAC and a name and an
    address; None when no table has both.  Raises
    FirmwareAccessError without CAP_SYS_ADMIN."""
    for name in _roots(root):
        base = os.path.join(root, "firmware", name)
        if not os.path.isdir(os.path.join(base, "initiator")):
            continue
        entries = _entries(base)
        nic, target = (next((e for e in entries[kind]
                             if (e.number("flags") or 0) & FLAG_BOOT_SELECTED), None)
                       for kind in ("ethernet", "target"))
        # the first of each flagged, which must describe a NIC (a MAC) and a target (a name,
        # an address): fill_nic_context / fill_tgt_context, else the next table
        if nic is not None and target is not None and nic.text("mac") and \
                target.text("target-name") and target.text("ip-addr"):
            return name, _Entry(os.path.join(base, "initiator")).string("initiator-name")
    return None


def boot_targets(root: str = "/sys", *,
                 warn: Callable[[str], None] | None = None) -> list[BootContext]:
    """Every usable target the firmware describes, iBFT first (open-iscsi's
    fw_get_targets).  ``warn(text)`` hears why a target was left out (a ``nic-assoc`` that
    names no NIC).  Raises FirmwareAccessError without CAP_SYS_ADMIN."""
    sysfs = Sysfs(root)
    out = []
    for name in _roots(root):
        base = os.path.join(root, "firmware", name)
        if not os.path.isdir(os.path.join(base, "initiator")):
            continue
        initiator = _Entry(os.path.join(base, "initiator"))
        entries = _entries(base)
        nics = entries["ethernet"]
        for target in entries["target"]:
            if not target.number("flags") or not target.text("target-name") or \
                    target.text("ip-addr") is None:
                continue
            assoc = target.number("nic-assoc")
            if assoc is None:
                continue
            nic = next((n for n in nics if n.number("index") == assoc), None)
            if nic is None:
                if warn:
                    warn(f"{name}/{target.name}: invalid nic-assoc of {assoc} "
                         f"({len(nics)} NIC{'' if len(nics) == 1 else 's'} described)")
                continue
            if not nic.number("flags") or not nic.text("mac"):
                continue
            netdev = _netdev(nic, sysfs) if name == IBFT else ""
            if netdev is None:
                continue  # a PCI function without a network device and no MAC match
            out.append(_context(name, initiator, nic, target, netdev))
    return out


def offload_iface(ctx: BootContext, sysfs: Sysfs) -> dict[str, str] | None:
    """The iface record (``{key: text}``) an offload boot needs, or None for software iSCSI
    (open-iscsi's iface_setup_from_boot_context): the SCSI host is the ``iscsi_boot<N>``
    root's, or the offload HBA's iSCSI host whose hardware address is the NIC's MAC (a
    software session's host shows the MAC of the NIC its iface is bound to: never an offload
    port); the iface is named ``<transport>.<MAC>.<ipv4|ipv6>.0`` and carries the NIC's
    address settings, and an iBFT NIC's network device (``iface.net_ifacename``)."""
    from .default_ifaces import SOFTWARE_TRANSPORTS

    host = ctx.host_no
    if host is None and ctx.netdev:
        want = ctx.mac.lower()
        host = next((n for n in sysfs.host_numbers()
                     if ((h := sysfs.host(n, only=("hwaddress",))) and h.hwaddress or "")
                     .lower() == want
                     and sysfs.host_transport(n) not in SOFTWARE_TRANSPORTS), None)
    if host is None:
        return None
    transport = sysfs.host_transport(host)
    if not transport or transport in SOFTWARE_TRANSPORTS:
        return None
    family = "ipv6" if ":" in ctx.ipaddr else "ipv4"
    values = {
        "iface.iscsi_ifacename": f"{transport}.{ctx.mac}.{family}.0",
        "iface.transport_name": transport,
        "iface.hwaddress": ctx.mac,
    }
    for key, value in (("iface.ipaddress", ctx.ipaddr), ("iface.subnet_mask", ctx.mask),
                       ("iface.gateway", ctx.gateway), ("iface.initiatorname",
                                                        ctx.initiator_name)):
        if value.strip(C_SPACE):  # as its record file gives it back (a blank at an end
            values[key] = value.strip(C_SPACE)  # would be refused by the write)
    if ctx.vlan and ascii_digits(ctx.vlan) and int(ctx.vlan):
        values["iface.vlan_id"] = str(int(ctx.vlan))
    if ctx.host_no is None and ctx.netdev:  # an iBFT NIC's port: its device, as open-
        values["iface.net_ifacename"] = ctx.netdev  # iscsi's iface_setup_from_boot_context
    return values
