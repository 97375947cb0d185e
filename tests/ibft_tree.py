"""A ``firmware/ibft`` (or ``firmware/iscsi_boot<N>``) sysfs tree as the kernel writes it,
for host tests.  The rules are Linux 6.1's (drivers/firmware/iscsi_ibft.c and
drivers/scsi/iscsi_boot_sysfs.c), checked against the real module in the VM (where
test_boot_firmware_targets_as_iscsiadm reads the kernel's tree of the same table):

* an attribute whose value the firmware left null or empty is absent;
* values end with a newline, except ``subnet-mask``;
* ``lun`` is the 8 LUN bytes, each ``%x`` without padding;
* a NIC whose ``pci_bdf`` names a PCI function has a ``device`` link to it.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from pathlib import Path


def _put(d: Path, name: str, value, newline: bool = True) -> None:
    if value in (None, "", "0.0.0.0", "::"):
        return
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(f"{value}{chr(10) if newline else ''}")


def _lun_text(n: int) -> str:
    raw = struct.pack(">H6x", n if n < 256 else 0x4000 | n)
    return "".join(f"{b:x}" for b in raw)


def _mask(prefix: int) -> str:
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)


def write_tree(sys_root: Path, initiator: str, nics: list[dict], targets: list[dict], *,
               root: str = "ibft", isid: str | None = None) -> Path:
    """Write the tree under ``sys_root/firmware/<root>``; the dicts are those of
    vm-tests/guest/ibft.py (``device``: a path the NIC's ``device`` link points at)."""
    base = sys_root / "firmware" / root
    ini = base / "initiator"
    for k, v in (("index", 0), ("flags", 3), ("initiator-name", initiator), ("isid", isid)):
        _put(ini, k, v)
    for n in nics:
        d = base / f"ethernet{n['index']}"
        for k, v in (("index", n["index"]), ("flags", n["flags"]), ("ip-addr", n.get("ip")),
                     ("gateway", n.get("gateway")),
                     ("primary-dns", n.get("dns")), ("secondary-dns", n.get("dns2")),
                     ("dhcp", n.get("dhcp")), ("mac", n["mac"]),
                     ("hostname", n.get("hostname"))):
            _put(d, k, v)
        d.mkdir(parents=True, exist_ok=True)
        (d / "vlan").write_text(f"{n.get('vlan', 0)}\n")
        (d / "origin").write_text(f"{n.get('origin', 1)}\n")
        if n.get("prefix"):
            _put(d, "prefix-len", n["prefix"])
            if ":" not in (n.get("ip") or ""):  # an IPv4 mask, for IPv4 NICs
                _put(d, "subnet-mask", _mask(n["prefix"]), newline=False)
        if n.get("device"):
            os.symlink(n["device"], d / "device")
    for t in targets:
        d = base / f"target{t['index']}"
        d.mkdir(parents=True, exist_ok=True)
        for k, v in (("index", t["index"]), ("flags", t["flags"]), ("ip-addr", t["ip"]),
                     ("port", t["port"]), ("lun", _lun_text(t["lun"])), ("nic-assoc", t["nic"]),
                     ("chap-type", 2 if t.get("rev_chap_name") else 1 if t.get("chap_name")
                      else 0)):
            (d / k).write_text(f"{v}\n")
        for k, key in (("target-name", "name"), ("chap-name", "chap_name"),
                       ("chap-secret", "chap_secret"), ("rev-chap-name", "rev_chap_name"),
                       ("rev-chap-name-secret", "rev_chap_secret")):
            _put(d, k, t.get(key))
    return base
