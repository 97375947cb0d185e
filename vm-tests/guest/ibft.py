"""An iSCSI Boot Firmware Table (iBFT) as a boot firmware (iPXE) leaves it, for the VM.

The host builds :data:`VM_TABLE` with :func:`build_table` and hands it to QEMU
(``-acpitable file=...``); in the guest the kernel's ``iscsi_ibft`` module finds it with
``acpi_get_table("iBFT")`` and shows it under ``/sys/firmware/ibft``.  The guest tests
import the same constants, so what they expect is what the table says.

Layout (IBM "iSCSI Boot Firmware Table" v1.03; Linux drivers/firmware/iscsi_ibft.c, whose
checks this follows: revision 1, a zero byte sum, each structure's exact length): the
36-byte ACPI header and 12 reserved bytes, the Control structure at offset 48, then the
Initiator, NIC and Target structures and the strings they point at (``{u16 length, u16
offset}``, offsets from the table's start, NUL-terminated as iPXE writes them).  IP
addresses are 16 bytes, IPv4 as IPv4-mapped IPv6.  Only the standard library is used.
"""

from __future__ import annotations

import ipaddress
import struct

HEADER_LEN = 48          # ACPI header (36) + reserved (12)
CONTROL_LEN = 18         # struct ibft_control
INITIATOR_LEN = 74       # struct ibft_initiator
NIC_LEN = 102            # struct ibft_nic
TARGET_LEN = 54          # struct ibft_tgt
ID_CONTROL, ID_INITIATOR, ID_NIC, ID_TARGET = 1, 2, 3, 4
FLAG_VALID, FLAG_BOOT_SELECTED = 0x01, 0x02
ORIGIN_MANUAL = 1


def _ip(text: str | None) -> bytes:
    if not text:
        return bytes(16)
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return bytes(10) + b"\xff\xff" + addr.packed
    return addr.packed


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def _lun(n: int) -> bytes:
    """SAM single-level LUN (peripheral addressing for n < 256, flat space above)."""
    return struct.pack(">H6x", n if n < 256 else 0x4000 | n)


class _Table:
    def __init__(self) -> None:
        self.data = bytearray(HEADER_LEN)

    def _align(self, to: int = 16) -> int:
        self.data += bytes(-len(self.data) % to)
        return len(self.data)

    def add(self, blob: bytes) -> int:
        off = self._align()
        self.data += blob
        return off

    def string(self, text: str | None) -> tuple[int, int]:
        if not text:
            return 0, 0
        raw = text.encode()
        off = self._align(2)
        self.data += raw + b"\0"
        return len(raw), off

    def patch(self, off: int, blob: bytes) -> None:
        self.data[off:off + len(blob)] = blob


def build_table(initiator: str, nics: list[dict], targets: list[dict], *,
                oem_id: str = "ISCCTL", oem_table_id: str = "vmtests") -> bytes:
    """The whole table, checksummed.

    ``nics``: dicts with ``index``, ``flags``, ``ip``, ``prefix``, ``mac`` and optionally
    ``gateway``, ``dns`` (primary), ``dns2``, ``dhcp``, ``vlan``, ``hostname``, ``origin``,
    ``pci_bdf`` (bus << 8 | devfn; 0xffff names no device).  ``targets``: dicts with
    ``index``, ``flags``, ``ip``, ``port``, ``lun``, ``nic`` (index), ``name`` and
    optionally ``chap_name``, ``chap_secret``, ``rev_chap_name``, ``rev_chap_secret``.
    At most two NICs and two targets (the Control structure has two slots each)."""
    if len(nics) > 2 or len(targets) > 2:
        raise ValueError("the Control structure has room for two NICs and two targets")
    t = _Table()
    control = t.add(bytes(CONTROL_LEN))
    ini = t.add(bytes(INITIATOR_LEN))
    nic_offs = [t.add(bytes(NIC_LEN)) for _ in nics]
    tgt_offs = [t.add(bytes(TARGET_LEN)) for _ in targets]

    name_len, name_off = t.string(initiator)
    t.patch(ini, struct.pack("<BBHBB", ID_INITIATOR, 1, INITIATOR_LEN, 0,
                             FLAG_VALID | FLAG_BOOT_SELECTED)
            + bytes(64) + struct.pack("<HH", name_len, name_off))
    for off, n in zip(nic_offs, nics):
        host_len, host_off = t.string(n.get("hostname"))
        t.patch(off, struct.pack("<BBHBB", ID_NIC, 1, NIC_LEN, n["index"], n["flags"])
                + _ip(n["ip"]) + struct.pack("<BB", n["prefix"], n.get("origin", ORIGIN_MANUAL))
                + _ip(n.get("gateway")) + _ip(n.get("dns")) + _ip(n.get("dns2"))
                + _ip(n.get("dhcp")) + struct.pack("<H", n.get("vlan", 0)) + _mac(n["mac"])
                + struct.pack("<HHH", n.get("pci_bdf", 0xffff), host_len, host_off))
    for off, g in zip(tgt_offs, targets):
        strings = [t.string(g.get(k)) for k in ("name", "chap_name", "chap_secret",
                                                "rev_chap_name", "rev_chap_secret")]
        chap_type = 2 if g.get("rev_chap_name") else 1 if g.get("chap_name") else 0
        t.patch(off, struct.pack("<BBHBB", ID_TARGET, 1, TARGET_LEN, g["index"], g["flags"])
                + _ip(g["ip"]) + struct.pack("<H", g["port"]) + _lun(g["lun"])
                + struct.pack("<BB", chap_type, g["nic"])
                + b"".join(struct.pack("<HH", ln, o) for ln, o in strings))
    slots = [ini, nic_offs[0] if nics else 0, tgt_offs[0] if targets else 0,
             nic_offs[1] if len(nics) > 1 else 0, tgt_offs[1] if len(targets) > 1 else 0]
    t.patch(control, struct.pack("<BBHBBH5H", ID_CONTROL, 1, CONTROL_LEN, 0, 0, 0, *slots))
    t._align(16)
    data = t.data
    data[0:36] = (b"iBFT" + struct.pack("<IBB", len(data), 1, 0)
                  + oem_id.encode().ljust(6)[:6] + oem_table_id.encode().ljust(8)[:8]
                  + struct.pack("<I", 1) + b"ISCT" + struct.pack("<I", 1))
    data[9] = (-sum(data)) & 0xff
    return bytes(data)


# ---- the table the scenario VM boots with -------------------------------------------------
INITIATOR = "iqn.2026-11.org.example.vm:ibft-host"
NIC = {"index": 0, "flags": FLAG_VALID | FLAG_BOOT_SELECTED, "ip": "10.98.0.2", "prefix": 24,
       "gateway": "10.98.0.1", "dns": "10.98.0.53", "mac": "52:54:00:98:00:02",
       "hostname": "ibft-vm", "pci_bdf": 0x0000}  # 00:00.0, QEMU's host bridge: no netdev there
BOOT_TARGET = {"index": 0, "flags": FLAG_VALID | FLAG_BOOT_SELECTED, "ip": "127.0.0.1",
               "port": 3260, "lun": 0, "nic": 0, "name": "iqn.2003-01.org.example.vm:ibft-boot",
               "chap_name": "ibftuser", "chap_secret": "ibft-secret-12"}
DATA_TARGET = {"index": 1, "flags": FLAG_VALID, "ip": "127.0.0.1", "port": 3261, "lun": 1,
               "nic": 0, "name": "iqn.2003-01.org.example.vm:ibft-data",
               "chap_name": "ibftuser2", "chap_secret": "ibft-secret-34",
               "rev_chap_name": "ibfttarget", "rev_chap_secret": "ibft-target-56"}


def vm_table() -> bytes:
    """The table of the scenario VM (one NIC, a boot target with CHAP, a second target with
    mutual CHAP on another port and LUN 1).  The NIC names the PCI host bridge, which has
    no network function: its device is the Ethernet device with its MAC (the test makes
    one), as on a machine whose NIC's iSCSI function and network function differ."""
    return build_table(INITIATOR, [NIC], [BOOT_TARGET, DATA_TARGET])


def serve_in_guest(create_target) -> None:
    """In the guest: the firmware's NIC (:func:`nic_in_guest`) and the two targets the
    table describes with ``create_target(iqn, **LioTarget.create keywords)``: CHAP, and
    mutual CHAP on the second portal, for the firmware's initiator name only.
    :func:`unserve_in_guest` undoes what is not the targets'."""
    mib = 1 << 20
    nic_in_guest()
    b, d = BOOT_TARGET, DATA_TARGET
    create_target(b["name"], luns=[8 * mib], initiator_iqn=INITIATOR,
                  auth={"userid": b["chap_name"], "password": b["chap_secret"]})
    create_target(d["name"], luns=[8 * mib, 4 * mib], portal=(d["ip"], d["port"]),
                  initiator_iqn=INITIATOR,
                  auth={"userid": d["chap_name"], "password": d["chap_secret"],
                        "mutual_userid": d["rev_chap_name"],
                        "mutual_password": d["rev_chap_secret"]})


def nic_in_guest() -> None:
    """In the guest: load iscsi_ibft (the kernel shows the table) and make the NIC's
    Ethernet device, dummy ``ibft0`` with the table's MAC (down, no address)."""
    import subprocess

    for cmd in (["modprobe", "iscsi_ibft"], ["modprobe", "dummy"],
                ["ip", "link", "add", "ibft0", "type", "dummy"],
                ["ip", "link", "set", "ibft0", "address", NIC["mac"]]):
        subprocess.run(cmd, check=True, capture_output=True)


def unserve_in_guest() -> None:
    import subprocess

    subprocess.run(["ip", "link", "del", "ibft0"], capture_output=True)
    subprocess.run(["rmmod", "iscsi_ibft"], capture_output=True)
