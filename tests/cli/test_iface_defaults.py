"""The offload HBAs' default iface records (iscsictl/kernel/default_ifaces.py) side by side
with the real iscsiadm 2.1.8: both run on the same sysfs tree (offload_tree: a software
host, a qla4xxx with two IPv4 interfaces, a bnx2i with an IPv6 one), each on its own
/etc/iscsi, and must print the same and write the same files byte for byte, but where
iscsictl differs on purpose."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fake_hba import Host
from iscsictl.kernel.default_ifaces import default_iface_records, setup_default_ifaces
from iscsictl.kernel.sysfs import Sysfs
from offload_tree import HbaRig, offload_sysfs

QLA0 = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.0"
QLA1 = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.1"
BNX = "bnx2i.00:10:18:AA:BB:01.ipv6.0"


@pytest.fixture
def rig(tmp_path, shim):
    with HbaRig(tmp_path, shim, {3: Host("tcp"), 5: Host("qla4xxx"), 6: Host("bnx2i")}) as r:
        yield r


def _files(rig, tool: str) -> dict[str, bytes]:
    d = Path(rig.dir, f"etc-{tool}", "ifaces")
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}


def _both(rig, *args: str):
    adm, ictl = rig.adm(*args), rig.ictl(*args)
    assert (ictl.returncode, ictl.stdout) == (adm.returncode, adm.stdout), (adm, ictl)
    return adm, ictl


def _host_attr(rig, host: int, attr: str, value: str | None) -> None:
    p = Path(rig.sys_dir, "class/iscsi_host", f"host{host}", attr)
    if value is None:
        p.unlink()
    else:
        p.write_text(value + "\n")


def _drop_kernel_ifaces(rig, host: int) -> None:
    """The host's driver registers no interface (bnx2i and qedi do not)."""
    for name in os.listdir(Path(rig.sys_dir, "bus/scsi/devices", f"host{host}", "iscsi_iface")):
        os.unlink(Path(rig.sys_dir, "class/iscsi_iface", name))
    shutil.rmtree(Path(rig.sys_dir, "bus/scsi/devices", f"host{host}", "iscsi_iface"))


def test_iface_mode_makes_each_offload_ports_record_as_iscsiadm(rig):
    adm, _ = _both(rig, "-m", "iface")
    assert adm.stdout.splitlines()[:3] == [
        f"{BNX} bnx2i,00:10:18:AA:BB:01,fd00::50,eth7,<empty>",
        f"{QLA0} qla4xxx,00:0e:1e:aa:bb:cc,192.168.1.50,default,"
        "iqn.2000-04.com.qlogic:isp4032.ab12",
        f"{QLA1} qla4xxx,00:0e:1e:aa:bb:cc,192.168.2.50,default,"
        "iqn.2000-04.com.qlogic:isp4032.ab12"]
    files = _files(rig, "adm")
    assert list(files) == [BNX, QLA0, QLA1]  # nothing for the software host
    assert _files(rig, "ictl") == files
    qla1 = files[QLA1].decode()
    # the tree's odd values as libopeniscsiusr reads them: " 3261x" strtoll'd, an MTU of
    # 70000 cut to u16, no VLAN shown: all ones; a priority of 300 cut to u8 (bnx2i's)
    for line in ("iface.port = 3261", "iface.mtu = 4464", "iface.vlan_id = 65535",
                 "iface.vlan_priority = 255", "iface.iface_num = 1",
                 "iface.subnet_mask = 255.255.0.0"):
        assert line in qla1.splitlines()
    assert "iface.vlan_priority = 44" in files[BNX].decode().splitlines()
    for name in (QLA0, BNX):
        _both(rig, "-m", "iface", "-I", name, "-o", "show")
    assert os.stat(Path(rig.dir, "etc-ictl", "ifaces", QLA0)).st_mode & 0o777 == 0o600


def test_a_record_there_is_kept_and_a_deleted_one_made_again(rig):
    _both(rig, "-m", "iface")
    _both(rig, "-m", "iface", "-I", QLA0, "-o", "update", "-n", "iface.mtu", "-v", "9000")
    _both(rig, "-m", "iface", "-I", QLA1, "-o", "delete")
    _both(rig, "-m", "iface")
    files = _files(rig, "adm")
    assert _files(rig, "ictl") == files
    assert "iface.mtu = 9000" in files[QLA0].decode().splitlines()
    assert QLA1 in files


def test_a_host_without_kernel_ifaces_gets_one_record_from_the_host(rig):
    _drop_kernel_ifaces(rig, 6)
    _both(rig, "-m", "iface")
    files = _files(rig, "adm")
    assert _files(rig, "ictl") == files
    assert BNX in files  # IPv6: the host's address has two colons
    text = files[BNX].decode().splitlines()
    assert "iface.ipaddress = fd00::50" in text and "iface.net_ifacename = eth7" in text


def test_an_idle_ports_record_is_written_with_its_names_address_block(rig):
    """An idle bnx2i port shows no address (its first connection's only): both tools make
    ``bnx2i.<MAC>.ipv4.0`` with ``iface.ipaddress = default``.  iscsictl wrote it with the
    IPv6 block (usr/iface.c takes ``default`` for an IPv6 address), which iscsiadm's reader,
    picking the block by the name, refuses: its ``-m iface`` listed nothing (7).  It is
    written as libopeniscsiusr writes it, by the name, and iscsiadm reads iscsictl's DB."""
    _drop_kernel_ifaces(rig, 6)
    _host_attr(rig, 6, "ipaddress", None)
    name = "bnx2i.00:10:18:AA:BB:01.ipv4.0"
    _both(rig, "-m", "iface")
    files = _files(rig, "adm")
    assert _files(rig, "ictl") == files and "iface.ipaddress = default" in \
        files[name].decode().splitlines() and "iface.ttl" in files[name].decode()
    cp = rig.ictl("-m", "iface", "-I", name, "-o", "update", "-n", "iface.ttl", "-v", "64")
    assert cp.returncode == 0, cp.stderr
    shutil.rmtree(Path(rig.dir, "etc-adm"))
    shutil.copytree(Path(rig.dir, "etc-ictl"), Path(rig.dir, "etc-adm"))
    adm = rig.adm("-m", "iface")
    assert adm.returncode == 0 and f"{name} bnx2i,00:10:18:AA:BB:01,default," in adm.stdout
    assert rig.adm("-m", "iface", "-I", name).returncode == 0


def test_a_host_without_kernel_ifaces_or_hardware_address_gets_none(rig):
    _drop_kernel_ifaces(rig, 6)
    _host_attr(rig, 6, "hwaddress", "(null)")
    _both(rig, "-m", "iface")
    assert list(_files(rig, "ictl")) == list(_files(rig, "adm")) == [QLA0, QLA1]


def test_a_node_record_on_an_offload_port_before_any_iface_command(rig):
    """iscsiadm's iface_conf_read makes the default records when an -I is not there yet
    (usr/iface.c), and so does iscsictl; iscsiadm's usr/iface.c leaves the net device empty
    where its ``-m iface`` (libopeniscsiusr) writes ``default``, iscsictl writes
    ``default`` on both paths."""
    args = ("-m", "node", "-o", "new", "-T", "iqn.2001-05.com.example:t1", "-p",
            "192.168.1.10:3260", "-I", QLA1)
    adm, ictl = rig.adm(*args), rig.ictl(*args)
    assert adm.returncode == ictl.returncode == 0, (adm, ictl)
    assert ictl.stdout == adm.stdout.replace("net_if=,", "net_if=default,")
    assert list(_files(rig, "ictl")) == list(_files(rig, "adm")) == [BNX, QLA0, QLA1]
    cp = rig.ictl("-m", "node", "-I", QLA1, "-o", "show")
    assert cp.returncode == 0 and f"iface.iscsi_ifacename = {QLA1}" in cp.stdout


def test_a_software_host_bound_by_mac_gets_no_record_where_iscsiadm_makes_one(rig):
    """libopeniscsiusr skips an iscsi_tcp host only while its hwaddress is unset."""
    _host_attr(rig, 3, "hwaddress", "52:54:00:12:34:56")
    rig.adm("-m", "iface"), rig.ictl("-m", "iface")
    assert "tcp.52:54:00:12:34:56.ipv4.0" in _files(rig, "adm")
    assert list(_files(rig, "ictl")) == [BNX, QLA0, QLA1]


def test_the_dhcp_alt_client_id_state_is_read_where_iscsiadm_loses_it(rig):
    iface = Path(rig.sys_dir, "class/iscsi_iface/ipv4-iface-5-0")
    (iface / "dhcp_alt_client_id_en").write_text("enabled\n")
    (iface / "dhcp_alt_client_id").write_text("qla-port-0\n")
    rig.adm("-m", "iface"), rig.ictl("-m", "iface")
    adm = _files(rig, "adm")[QLA0].decode().splitlines()
    ictl = _files(rig, "ictl")[QLA0].decode().splitlines()
    assert "iface.dhcp_alt_client_id = qla-port-0" in adm
    assert "iface.dhcp_alt_client_id_state = enabled" not in adm
    assert [x for x in ictl if x not in adm] == ["iface.dhcp_alt_client_id_state = enabled"]


def test_records_that_cannot_be_written_are_said_and_nothing_raises(tmp_path):
    from iscsictl.db.store import NodeDB

    sysfs = Sysfs(offload_sysfs(tmp_path / "sys"))
    assert [r["iface.iscsi_ifacename"] for r in default_iface_records(sysfs)] == [
        QLA0, QLA1, BNX]
    root = tmp_path / "etc"
    root.mkdir()
    (root / "ifaces").write_text("not a directory\n")
    said: list[str] = []
    db = NodeDB(str(root), str(root), warn=said.append)
    assert setup_default_ifaces(db, sysfs, said.append) == []
    assert len(said) == 3 and all(s.startswith("Could not create default iface conf ")
                                  for s in said), said
    (root / "ifaces").unlink()
    assert setup_default_ifaces(db, sysfs, said.append) == [QLA0, QLA1, BNX]
    assert setup_default_ifaces(db, sysfs, said.append) == []


@pytest.mark.parametrize("text,ctype,value", [
    (" 3261x", "u16", 3261), ("70000", "u16", 4464), ("-1", "u8", 255), ("", "u32", 0),
    ("0x20", "u32", 0), ("-0", "u16", 0),
    # 11 bytes read: never past strtoll's range
    ("99999999999999999999", "u32", 99999999999 & 0xFFFFFFFF), (None, "u16", 7)])
def test_numbers_are_read_as_libopeniscsiusr_reads_them(text, ctype, value):
    from iscsictl.kernel.default_ifaces import SysfsRow, _value

    assert _value(SysfsRow("a", "iface.x", ctype, 7), text) == value


def test_a_discovery_through_an_offload_port_before_any_iface_command(rig):
    """The -I of a discovery is made first as well (iscsiadm's do_target_discovery reads it
    with iface_conf_read): the port is found and the discovery goes to its transport:
    qla4xxx's and bnx2i's run through the kernel, so through iscsictld (not running here:
    20), where it said "Could not read iface info" before."""
    for port in (QLA0, BNX):
        cp = rig.ictl("-m", "discovery", "-t", "st", "-p", "127.0.0.1:1", "-I", port)
        assert cp.returncode == 20 and "could not connect to iscsid" in cp.stderr, cp
    assert list(_files(rig, "ictl")) == [BNX, QLA0, QLA1]


def _nic(sys_root: Path, name: str, driver: str | None, kind: int = 1) -> None:
    dev = sys_root / "devices/pci0000:00" / name
    dev.mkdir(parents=True)
    if driver is not None:
        drv = sys_root / "bus/pci/drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        (dev / "driver").symlink_to(os.path.relpath(drv, dev))
    net = sys_root / "class/net" / name
    net.mkdir(parents=True)
    (net / "type").write_text(f"{kind}\n")
    (net / "device").symlink_to(os.path.relpath(dev, net))


def test_the_offload_drivers_a_hosts_nics_call_for_are_loaded(tmp_path, monkeypatch):
    """As iscsiadm's iscsi_default_iface_setup before every iface command: an Ethernet NIC
    driven by cxgb3/cxgb4/bnx2/bnx2x gets its offload iSCSI driver loaded when its
    transport is not registered (bnx2i only with iscsiuio installed), so that its hosts,
    and the default records made of them, appear (before: never loaded, no record)."""
    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output
    from iscsictl.kernel import default_ifaces

    root = tmp_path / "sys"
    _nic(root, "eth0", "virtio_net")
    _nic(root, "eth2", "cxgb4")
    _nic(root, "eth3", "cxgb4")
    _nic(root, "eth4", "bnx2x")
    _nic(root, "ib0", "cxgb4", kind=32)  # not Ethernet
    _nic(root, "dummy0", None)
    sysfs = Sysfs(str(root))
    assert sysfs.ethernet_drivers() == [("eth0", "virtio_net"), ("eth2", "cxgb4"),
                                        ("eth3", "cxgb4"), ("eth4", "bnx2x")]
    assert default_ifaces.offload_drivers_to_load(sysfs, iscsiuio=False) == ["cxgb4i"]
    assert default_ifaces.offload_drivers_to_load(sysfs, iscsiuio=True) == ["cxgb4i", "bnx2i"]
    (root / "class/iscsi_transport/cxgb4i").mkdir(parents=True)  # loaded already
    assert default_ifaces.offload_drivers_to_load(sysfs, iscsiuio=True) == ["bnx2i"]
    shutil.rmtree(root / "class/iscsi_transport")

    asked = []

    def modprobe(module):
        asked.append(module)
        return "FATAL: Module cxgb4i not found" if module == "cxgb4i" else None
    monkeypatch.setattr(default_ifaces, "_modprobe", modprobe)
    monkeypatch.setattr(default_ifaces, "ISCSIUIO_PATHS", (str(tmp_path / "none"),))
    db = tmp_path / "etc"
    db.mkdir()
    (db / "iscsid.conf").write_text("iscsid.startup = /bin/true\n")
    for k, v in (("ISCSICTL_SYSFS_ROOT", root), ("ISCSICTL_DB_ROOT", db),
                 ("ISCSICTL_CONFIG_ROOT", db), ("ISCSICTL_SOCKET", tmp_path / "none.sock")):
        monkeypatch.setenv(k, str(v))
    out, err = __import__("io").StringIO(), __import__("io").StringIO()
    assert run(["-m", "iface"], Output(out, err)) == 0
    assert asked == ["cxgb4i"]
    assert err.getvalue() == ("iscsictl: Could not insert module cxgb4i: FATAL: Module cxgb4i "
                              "not found\n")
    # host mode too, above level 0 and for a -H MAC (iscsiadm's host_info_print and
    # parse_host_info: transport_probe_for_offload); not for the plain listing
    for args in (["-m", "host"], ["-m", "host", "-P", "1"], ["-m", "host", "-H", "0:7:43:1:2:3"],
                 ["-m", "host", "-C", "stats", "-H", "0:7:43:1:2:3"]):
        asked.clear()
        run(args, Output(__import__("io").StringIO(), __import__("io").StringIO()))
        assert asked == ([] if args == ["-m", "host"] else ["cxgb4i"]), args


def test_the_readme_name_of_a_port_without_kernel_ifaces_is_made_on_demand(rig):
    """open-iscsi's README names an offload port whose driver registers no interface
    (bnx2i, cxgb3i/cxgb4i, qedi) ``<transport>.<MAC>``: iscsiadm's iface_conf_read, not
    finding it, makes it (iface_setup_host_bindings: the transport and the MAC) and reads
    it again, in node, discovery and iface mode alike; iscsictl too, the file byte for byte
    as iscsiadm's (before: 3 in node mode, 7 in iface mode, only libopeniscsiusr's
    ``<transport>.<MAC>.<family>.0`` being made)."""
    _drop_kernel_ifaces(rig, 6)
    name = "bnx2i.00:10:18:AA:BB:01"
    args = ("-m", "node", "-o", "new", "-T", "iqn.2001-05.com.example:t1", "-p",
            "10.8.0.1:3260", "-I", name)
    adm, ictl = rig.adm(*args), rig.ictl(*args)
    assert adm.returncode == ictl.returncode == 0, (adm, ictl)
    assert _files(rig, "ictl")[name] == _files(rig, "adm")[name]
    assert "iface.transport_name = bnx2i\n" in _files(rig, "ictl")[name].decode()
    _both(rig, "-m", "iface", "-I", name, "-o", "update", "-n", "iface.ipaddress",
          "-v", "10.9.0.20")
    assert _files(rig, "ictl")[name] == _files(rig, "adm")[name]
