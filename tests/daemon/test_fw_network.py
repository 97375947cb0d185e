"""``iscsictl-start -N`` (iscsistart's ``--fwparam_network``) against the host's real kernel:
each test makes a network namespace with a veth pair whose one end has the firmware NIC's
MAC, writes a firmware table (tests/ibft_tree.py) naming it, runs the command in the
namespace (``ip netns exec``) and reads what the kernel then has (``ip -j``).  The same
against iscsistart on the VM's kernel, with a VLAN: vm-tests/guest_tests/
test_iscsiadm_flows.py::test_firmware_network_as_iscsistart."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iscsictl.kernel.firmware import BootContext
from iscsictl.kernel.fw_network import FwNetworkError, NicSetup, nic_setup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests" / "guest"))
import ibft  # noqa: E402
from ibft_tree import write_tree  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MAC = ibft.NIC["mac"]
NIC = dict(ibft.NIC, ip="10.98.0.2", prefix=24, gateway="10.98.0.1")
ON_LINK = dict(ibft.BOOT_TARGET, ip="10.98.0.7")
ROUTED = dict(ibft.DATA_TARGET, ip="10.99.0.5")


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def netns():
    """A namespace ``iscsictl-fw<pid>`` holding veth ``v0`` (the NIC's MAC, down, no
    address) and its peer ``v1``; deleted afterwards."""
    name = f"iscsictl-fw{os.getpid()}"
    ip("netns", "del", name)
    for cmd in (("netns", "add", name),
                ("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
                ("-n", name, "link", "set", "v0", "address", MAC)):
        r = ip(*cmd)
        assert r.returncode == 0, r.stderr
    yield name
    ip("netns", "del", name)


def sysfs(tmp_path: Path, nics: list[dict], targets: list[dict], netns: str) -> Path:
    """The firmware's tree, and ``class/net`` as the namespace has it (so the NIC, which
    names no PCI function, is found by its MAC)."""
    root = tmp_path / "sys"
    write_tree(root, ibft.INITIATOR, nics, targets)
    for link in json.loads(ip("-n", netns, "-j", "link", "show").stdout):
        d = root / "class" / "net" / link["ifname"]
        d.mkdir(parents=True)
        kind = "772" if link["link_type"] == "loopback" else "1"
        for name, value in (("type", kind), ("ifindex", link["ifindex"]),
                            ("address", link.get("address", ""))):
            (d / name).write_text(f"{value}\n")
    return root


def run_n(netns: str, root: Path, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ, ISCSICTL_SYSFS_ROOT=str(root), PYTHONPATH=str(REPO))
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m",
                        "iscsictl.daemon.start", "-N", *args],
                       capture_output=True, text=True, env=env, timeout=60)
    return r.returncode, r.stdout, r.stderr


def state(netns: str, dev: str = "v0") -> dict:
    """The device's flags and addresses, and every route but the kernel's own."""
    link = json.loads(ip("-n", netns, "-j", "addr", "show", "dev", dev).stdout)[0]
    routes = []
    for family in ("-4", "-6"):
        for r in json.loads(ip("-n", netns, "-j", family, "route", "show").stdout):
            if r.get("protocol") not in ("kernel", "ra") and not r["dst"].startswith("fe80"):
                routes.append({k: r.get(k) for k in ("dst", "gateway", "dev", "scope")})
    return {"up": "UP" in link["flags"],
            "addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                                if a.get("scope") != "link"),
            "routes": sorted(routes, key=lambda r: r["dst"])}


def test_the_nic_comes_up_with_its_address_and_a_route_to_each_target(netns, tmp_path):
    """Two targets on the firmware's one NIC: the address set once, a route to the one in
    the NIC's subnet on-link and to the other through the gateway; a second run (a rerun
    in an initramfs, or the NIC already set up by the firmware's DHCP) changes nothing
    and is no error."""
    root = sysfs(tmp_path, [NIC], [ON_LINK, ROUTED], netns)
    assert state(netns) == {"up": False, "addresses": [], "routes": []}
    rc, out, err = run_n(netns, root)
    assert (rc, err) == (0, "")
    assert out == ("Setting up software interface v0\n"
                   "  v0 up, 10.98.0.2/24 on v0, route to 10.98.0.7 on v0\n"
                   "Setting up software interface v0\n"
                   "  route to 10.99.0.5 via 10.98.0.1 on v0\n")
    want = {"up": True, "addresses": ["10.98.0.2/24"], "routes": [
        {"dst": "10.98.0.7", "gateway": None, "dev": "v0", "scope": "link"},
        {"dst": "10.99.0.5", "gateway": "10.98.0.1", "dev": "v0", "scope": None}]}
    assert state(netns) == want
    rc, out, err = run_n(netns, root)
    assert (rc, out, err) == (0, "Setting up software interface v0\n  already set up\n" * 2, "")
    assert state(netns) == want


def test_an_ipv6_nic_and_target(netns, tmp_path):
    """IPv6 (iscsistart refuses it: its inet_aton reads IPv4 only)."""
    nic = dict(NIC, ip="fd00:98::2", prefix=64, gateway="fd00:98::1")
    root = sysfs(tmp_path, [nic], [dict(ROUTED, ip="fd00:99::5")], netns)
    rc, out, err = run_n(netns, root)
    assert (rc, err) == (0, "")
    assert out == ("Setting up software interface v0\n"
                   "  v0 up, fd00:98::2/64 on v0, route to fd00:99::5 via fd00:98::1 on v0\n")
    assert state(netns) == {"up": True, "addresses": ["fd00:98::2/64"], "routes": [
        {"dst": "fd00:99::5", "gateway": "fd00:98::1", "dev": "v0", "scope": None}]}
    # usable at once: no duplicate address detection (before: tentative for ~2 s, and a
    # connect to the boot target right after -N failed with EADDRNOTAVAIL)
    link = json.loads(ip("-n", netns, "-j", "addr", "show", "dev", "v0").stdout)[0]
    mine, = [a for a in link["addr_info"] if a["local"] == "fd00:98::2"]
    assert not mine.get("tentative") and mine.get("nodad") is True, mine


def test_a_nic_that_cannot_be_set_up_is_named_and_the_others_still_are(netns, tmp_path):
    """The first target is outside the NIC's subnet and the firmware gives no gateway:
    said, nothing set for it, exit 1; the second target's NIC (the same device) is still
    set up, as iscsistart goes on to the next target."""
    nics = [dict(NIC, gateway=None), dict(NIC, index=1, flags=ibft.FLAG_VALID)]
    root = sysfs(tmp_path, nics, [dict(ROUTED, index=0), dict(ON_LINK, index=1, nic=1)],
                  netns)
    rc, out, err = run_n(netns, root)
    assert rc == 1
    assert out == ("Setting up software interface v0\n"
                   "Setting up software interface v0\n"
                   "  v0 up, 10.98.0.2/24 on v0, route to 10.98.0.7 on v0\n")
    assert err == ("iscsictl-start: Setting up software interface v0 failed: the target "
                   "10.99.0.5 is outside 10.98.0.0/24 and ibft/ethernet0 has no gateway\n")
    assert state(netns)["routes"] == [
        {"dst": "10.98.0.7", "gateway": None, "dev": "v0", "scope": "link"}]


def test_a_nic_no_device_has_is_said(netns, tmp_path):
    root = sysfs(tmp_path, [dict(NIC, mac="52:54:00:98:00:99")], [ON_LINK], netns)
    rc, out, err = run_n(netns, root)
    assert (rc, out) == (1, "Setting up software interface 52:54:00:98:00:99\n")
    assert err == ("iscsictl-start: Setting up software interface 52:54:00:98:00:99 failed: "
                   "no network device has ibft/ethernet0's MAC 52:54:00:98:00:99\n")
    assert state(netns) == {"up": False, "addresses": [], "routes": []}


def test_a_vlan_device_is_made_when_the_kernel_can(netns, tmp_path):
    """The firmware's VLAN 5 on v0: a device v0.5 made for it (iscsistart needs one there
    already), or, on a kernel without 802.1Q (this host's, often), the reason and the
    module to load.  The VM's kernel has it: the VLAN is tested there in full."""
    can = ip("-n", netns, "link", "add", "link", "v1", "name", "probe", "type", "vlan",
             "id", "9").returncode == 0
    root = sysfs(tmp_path, [dict(NIC, vlan=5)], [ON_LINK], netns)
    rc, out, err = run_n(netns, root)
    if can:
        assert (rc, err) == (0, "")
        assert out == ("Setting up software interface v0\n  made v0.5 (VLAN 5 on v0), v0 up, "
                       "v0.5 up, 10.98.0.2/24 on v0.5, route to 10.98.0.7 on v0.5\n")
        assert state(netns, "v0.5")["addresses"] == ["10.98.0.2/24"]
    else:
        assert (rc, out) == (1, "Setting up software interface v0\n")
        assert err == ("iscsictl-start: Setting up software interface v0 failed: making VLAN "
                       "device v0.5 (VLAN 5 on v0): Operation not supported (the kernel has "
                       "no 802.1Q VLANs: modprobe 8021q)\n")
    assert state(netns)["addresses"] == []


def test_an_offload_nics_device_is_brought_up_and_left_to_its_hba(netns, tmp_path):
    """The NIC's MAC is an iSCSI host's (bnx2i): -b logs in through that host, whose
    network is the HBA's own (its iface record): the network device is set up, no address
    or route, as open-iscsi's iface_setup_from_boot_context brings it up (a cxgb4i
    connection is refused on a device that is down).  Before, it was left down.  The NIC
    names its PCI function, whose network device is v0."""
    pci = tmp_path / "pci0000:00" / "0000:00:03.0"
    (pci / "net" / "v0").mkdir(parents=True)
    root = sysfs(tmp_path, [dict(NIC, device=str(pci))], [ON_LINK], netns)
    for rel, value in (("class/iscsi_host/host5/hwaddress", MAC),
                       ("class/scsi_host/host5/proc_name", "bnx2i")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value + "\n")
    assert run_n(netns, root) == (0, "Setting up offload interface v0\n  v0 up\n", "")
    assert state(netns) == {"up": True, "addresses": [], "routes": []}
    assert run_n(netns, root) == (0, "Setting up offload interface v0\n  already set up\n", "")


def test_without_firmware_targets(netns, tmp_path):
    root = tmp_path / "sys"
    root.mkdir()
    assert run_n(netns, root) == (21, "Could not setup fw entries.\n", "")


# ---- the sans-I/O half ---------------------------------------------------------------------

def _ctx(**kw) -> BootContext:
    base = dict.fromkeys((f.name for f in dataclasses.fields(BootContext)), "")
    base.update(boot_root="ibft", boot_nic="ethernet0", boot_target="target0",
                target_flags=3, target_port=3260, nic_flags=3, prefix=24, origin=1,
                mac=MAC, ipaddr="10.98.0.2", target_address="10.98.0.7",
                gateway="10.98.0.1", vlan="0")
    base.update(kw)
    return BootContext(**base)


def test_nic_setup_reads_the_firmware_as_iscsistart():
    assert nic_setup(_ctx(), "eth0") == NicSetup(
        "eth0", 0, ipaddress.ip_interface("10.98.0.2/24"), ipaddress.ip_address("10.98.0.7"),
        None)
    routed = nic_setup(_ctx(target_address="192.0.2.9", prefix=0, mask="255.255.0.0",
                            vlan="100"), "eth0")
    assert (str(routed.interface), str(routed.gateway), routed.vlan) == \
        ("10.98.0.2/16", "10.98.0.1", 100)
    assert routed.vlan_name == "eth0.100"
    assert nic_setup(_ctx(vlan="4094"), "enp129s0f1np1").vlan_name == "vlan4094"


@pytest.mark.parametrize("kw, netdev, message", [
    ({}, "", "no network device has ibft/ethernet0's MAC 52:54:00:98:00:02"),
    ({"ipaddr": ""}, "eth0", "ibft/ethernet0 has no IP address"),
    ({"ipaddr": "0.0.0.0"}, "eth0", "ibft/ethernet0 has no IP address"),
    ({"ipaddr": "10.98.0"}, "eth0", "ibft/ethernet0's address '10.98.0' is not an IP address"),
    ({"prefix": 0}, "eth0", "no subnet prefix for 10.98.0.2 (prefix-len 0)"),
    ({"prefix": 40, "mask": "255.0.255.0"}, "eth0", "the subnet mask '255.0.255.0' is not one"),
    ({"target_address": "fd00::7"}, "eth0",
     "the target fd00::7 is IPv6 and ibft/ethernet0's address 10.98.0.2 IPv4"),
    ({"target_address": "192.0.2.9", "gateway": "fd00::1"}, "eth0",
     "ibft/ethernet0's gateway fd00::1 is not IPv4"),
    ({"target_address": "192.0.2.9", "gateway": "0.0.0.0"}, "eth0",
     "the target 192.0.2.9 is outside 10.98.0.0/24 and ibft/ethernet0 has no gateway"),
    ({"vlan": "x1"}, "eth0", "ibft/ethernet0's VLAN 'x1' is not a number"),
    ({"vlan": "1²"}, "eth0", "ibft/ethernet0's VLAN '1²' is not a number"),  # int refuses it
    ({"vlan": "4095"}, "eth0", "ibft/ethernet0's VLAN 4095 is not a VLAN id (1-4094)"),
])
def test_nic_setup_refuses_what_cannot_be_set_up(kw, netdev, message):
    with pytest.raises(FwNetworkError) as e:
        nic_setup(_ctx(**kw), netdev)
    assert str(e.value) == message


def test_without_cap_net_admin_the_reason_is_said(netns):
    """An unprivileged caller (root's imports, then uid nobody): the kernel's EPERM, and
    what it takes."""
    code = ("import ipaddress as a, os, pyroute2\n"
            "from iscsictl.kernel.fw_network import FwNetworkError, NicSetup, RtnlShell\n"
            "s = NicSetup('v0', 0, a.ip_interface('10.98.0.2/24'), a.ip_address('10.98.0.7'), "
            "None)\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "try:\n    with RtnlShell() as shell:\n        shell.apply(s)\n"
            "except FwNetworkError as e:\n    print(e)\n")
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, "setting v0 up: Operation not permitted (needs CAP_NET_ADMIN: run as root)\n", "")
    assert state(netns) == {"up": False, "addresses": [], "routes": []}
