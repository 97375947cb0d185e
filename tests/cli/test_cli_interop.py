"""Interop with Debian's iscsiadm (open-iscsi 2.1.8) on the same DB, in a private mount
namespace (tests/peers.py): it reads what iscsictl wrote and the reverse, with identical
output.  FAILS when iscsiadm or tgtd is missing."""

import json
import os

import pytest

from cli_targets import T_OPEN
from peers import iscsiadm

pytestmark = pytest.mark.peer


def adm(cli, *args):
    return iscsiadm(cli.root, *args)


def same(cli, *args, rc=0, order=True):
    """Same exit code and output.  ``order=False``: iscsiadm lists in readdir order
    (discovery -P 1), so the lines are compared as a multiset."""
    a = adm(cli, *args)
    b = cli(*args)
    key = (lambda t: t) if order else (lambda t: sorted(t.splitlines()))
    assert (b.rc, key(b.out)) == (a.returncode, key(a.stdout)), f"{args}\nours:\n{b.out}{b.err}\n" \
                                                      f"iscsiadm:\n{a.stdout}{a.stderr}"
    assert b.rc == rc
    return b


def test_iscsiadm_reads_our_discovery(cli, tgt):
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0, r.err
    same(cli, "-m", "node")
    same(cli, "-m", "node", "-P", "1")
    same(cli, "-m", "node", "-T", T_OPEN, "-p", tgt.portal)
    same(cli, "-m", "node", "-T", T_OPEN, "-p", f"{tgt.portal},1", "-o", "show", "-S")
    same(cli, "-m", "discovery")
    same(cli, "-m", "discovery", "-P", "1", order=False)
    same(cli, "-m", "discoverydb", "-t", "st", "-p", tgt.portal, "-o", "show")
    same(cli, "-m", "iface")
    same(cli, "-m", "iface", "-P", "1")


def test_we_read_iscsiadm_records(cli):
    T = "iqn.2001-04.com.example:interop"
    for args in (["-m", "iface", "-I", "eth7", "-o", "new"],
                 ["-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-o", "new"],
                 ["-m", "node", "-T", T, "-p", "[fd00::7]:3261,2", "-o", "new"],
                 ["-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-I", "eth7", "-o", "new"],
                 ["-m", "node", "-T", T, "-p", "10.0.0.9", "-o", "new"],
                 ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-o", "new"]):
        assert adm(cli, *args).returncode == 0
    base = ["-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-I", "default", "-o", "update"]
    for k, v in (("node.session.auth.username", "u1"), ("node.session.auth.password", "pw1"),
                 ("node.startup", "automatic"), ("node.conn[0].iscsi.HeaderDigest", "CRC32C")):
        assert adm(cli, *base, "-n", k, "-v", v).returncode == 0
    same(cli, "-m", "node")
    same(cli, "-m", "node", "-P", "1")
    same(cli, "-m", "node", "-T", T)
    same(cli, "-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-S")
    same(cli, "-m", "node", "-p", "10.0.0.2", rc=21)
    same(cli, "-m", "iface")
    same(cli, "-m", "iface", "-P", "1")
    same(cli, "-m", "iface", "-I", "eth7")
    same(cli, "-m", "discovery")
    same(cli, "-m", "discovery", "-P", "1", order=False)
    same(cli, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-o", "show")
    # our update, their read
    assert cli(*base, "-n", "node.session.queue_depth", "-v", "64").rc == 0
    same(cli, "-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-I", "default")
    # our new, their listing; their delete, our listing
    r = cli("-m", "node", "-o", "new", "-T", T + "2", "-p", "10.0.0.3:3260,1")
    assert r.out == adm(cli, "-m", "node", "-o", "new", "-T", T + "3",
                        "-p", "10.0.0.3:3260,1").stdout.replace(T + "3", T + "2")
    same(cli, "-m", "node")
    assert adm(cli, "-m", "node", "-T", T + "2", "-o", "delete").returncode == 0
    same(cli, "-m", "node")


#: Read-only commands compared with iscsiadm on an empty DB, then on one with records:
#: listings at every print level, filters that match nothing, bad levels, unknown names.
LISTINGS = (
    ["-m", "node"], ["-m", "node", "-P", "0"], ["-m", "node", "-P", "1"],
    ["-m", "node", "-P", "2"], ["-m", "node", "-P", "-1"],
    ["-m", "node", "-T", "iqn.2001-04.com.example:none"],
    ["-m", "node", "-T", "iqn.2001-04.com.example:none", "-o", "show"],
    ["-m", "node", "-p", "10.9.9.9"], ["-m", "node", "-I", "default"],
    ["-m", "discovery"], ["-m", "discovery", "-P", "0"], ["-m", "discovery", "-P", "1"],
    ["-m", "discoverydb"], ["-m", "discoverydb", "-P", "1"],
    ["-m", "discoverydb", "-t", "st", "-p", "10.9.9.9", "-o", "show"],
    ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-u"],  # 7: not a discovery option
    ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-L", "all"],
    ["-m", "discoverydb", "-t", "fw"],  # 7: -D missing
    ["-m", "fw", "-P", "1"], ["-m", "fw", "-o", "show"],
    ["-m", "iface"], ["-m", "iface", "-P", "1"], ["-m", "iface", "-I", "default"],
    ["-m", "iface", "-I", "default", "-P", "1"], ["-m", "iface", "-I", "nosuch"],
    ["-m", "iface", "-I", "nosuch", "-P", "1"], ["-m", "iface", "-P", "2"],
    ["-m", "node", "-P", "3"], ["-m", "discovery", "-P", "2"],
    ["-m", "discovery", "-p", "10.0.0.5"], ["-m", "discovery", "-p", "10.0.0.5", "-o", "show"],
    ["-m", "discovery", "-p", "10.9.9.9"], ["-m", "discovery", "-p", "10.0.0.5", "-o", "new"],
    ["-m", "node", "-I", "nosuch"], ["-m", "node", "-I", "eth7"],
    ["-m", "node", "-T", "iqn.2001-04.com.example:listing", "-I", "nosuch", "-o", "show"],
    ["-m", "node", "-T", "iqn.2001-04.com.example:listing", "-p", "10.0.0.1", "-I", "nosuch",
     "-o", "delete"],
)


def _differences(cli) -> list[str]:
    out = []
    for args in LISTINGS:
        a, b = adm(cli, *args), cli(*args)
        if (b.rc, sorted(b.out.splitlines())) != (a.returncode, sorted(a.stdout.splitlines())):
            out.append(f"{' '.join(args)}: ours {b.rc}\n{b.out}{b.err}"
                       f"iscsiadm {a.returncode}\n{a.stdout}{a.stderr}")
    return out


def test_listings_and_their_errors_match_iscsiadm(cli):
    """Exit code and output (as a multiset of lines: iscsiadm lists in readdir order)."""
    differences = _differences(cli)
    T = "iqn.2001-04.com.example:listing"
    for args in (["-m", "node", "-T", T, "-p", "10.0.0.1:3260,1", "-o", "new"],
                 ["-m", "node", "-T", T + "b", "-p", "10.0.0.2", "-o", "new"],
                 ["-m", "iface", "-I", "eth7", "-o", "new"],
                 ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-o", "new"]):
        assert adm(cli, *args).returncode == 0
    differences += _differences(cli)
    assert not differences, "\n".join(differences)


#: Commands that change the DB (and their errors), run in this order on two fresh DBs, one by
#: iscsiadm and one by iscsictl.  Left out on purpose, where iscsictl refuses what iscsiadm
#: takes: -o new of an iface that exists (iscsiadm rewrites it), a value of the wrong type,
#: a portal or target name that is not one, -o new without -T and -p (iscsiadm re-creates
#: every record from the defaults); and iface -o update, which iscsiadm refuses without the
#: iscsi_tcp module loaded (iscsictl needs none).
W = ("-m", "node", "-T", "iqn.2001-04.com.example:w")
ST = ("-m", "discoverydb", "-t", "st")
WRITES = (
    ["-m", "iface", "-I", "eth8", "-o", "new"],
    ["-m", "iface", "-I", "eth7", "-o", "update", "-n", "iface.bogus", "-v", "x"],
    ["-m", "iface", "-I", "nosuch", "-o", "update", "-n", "iface.mtu", "-v", "9000"],
    ["-m", "iface", "-I", "nosuch", "-o", "delete"],
    ["-m", "iface", "-I", "default", "-o", "delete"],
    ["-m", "iface", "-o", "new"],
    [*W, "-p", "10.0.0.1", "-o", "new"],
    [*W, "-p", "10.0.0.1", "-o", "new"],
    [*W, "-p", "10.0.0.1:3261,2", "-o", "new"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.session.queue_depth", "-v", "64"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.bogus", "-v", "1"],
    [*W, "-o", "update", "-n", "node.startup", "-v", "automatic"],
    [*W, "-o", "update", "-n", "node.startup", "-v", "sometimes"],
    [*W, "-p", "10.0.0.9", "-o", "update", "-n", "node.startup", "-v", "manual"],
    ["-m", "node", "-o", "update", "-n", "node.session.timeo.replacement_timeout", "-v", "30"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "iface.net_ifacename", "-v", "x"],
    [*W, "-p", "10.0.0.1", "-o", "bogus"],
    [*W, "-o", "show"],
    [*ST, "-p", "10.0.0.5", "-o", "new"],
    [*ST, "-p", "10.0.0.5", "-o", "new"],
    [*ST, "-p", "10.0.0.5", "-o", "update",
     "-n", "discovery.sendtargets.auth.authmethod", "-v", "CHAP"],
    [*ST, "-p", "10.0.0.5", "-o", "update", "-n", "discovery.bogus", "-v", "1"],
    [*ST, "-p", "10.0.0.5", "-o", "show"],
    [*ST, "-p", "10.0.0.6", "-o", "update",
     "-n", "discovery.sendtargets.auth.authmethod", "-v", "CHAP"],
    [*ST, "-p", "10.0.0.6", "-o", "delete"],
    [*ST, "-p", "10.0.0.5", "-o", "delete"],
    [*ST, "-o", "new"],
    ["-m", "discoverydb", "-t", "bogus", "-p", "10.0.0.5", "-o", "new"],
    ["-m", "discovery", "-t", "bogus", "-p", "10.0.0.5"],
    ["-m", "discovery", "-t", "st", "-p", "10.0.0.8", "-I", "nosuch"],  # 21, no record made
    [*ST, "-p", "10.0.0.7", "-I", "nosuch", "-D"],  # 21; -D made the record first
    ["-m", "discovery"],
    [*W, "-p", "10.0.0.1:3261", "-o", "delete"],
    ["-m", "node"],
    [*W, "-o", "delete"],
    ["-m", "node", "-o", "delete"],
    [*W, "-o", "delete"],
)


def test_writes_and_their_errors_match_iscsiadm(cli, tmp_path):
    """Exit code and stdout of each command, on two DBs taken through the same steps.
    iscsiadm asks iscsid where iscsid.conf is (MGMT_IPC_CONFIG_FILE) and, with no iscsid
    here, builds records from its compiled defaults: ours gets an iscsid.conf that sets
    nothing, so both start from the compiled defaults (which this compares too)."""
    ours, theirs = cli, type(cli)(str(tmp_path / "theirs"))
    with open(os.path.join(ours.root, "iscsid.conf"), "w") as f:
        f.write("iscsid.startup = /bin/true\n")
    differences = []
    for args in WRITES:
        a, b = adm(theirs, *args), ours(*args)
        if (b.rc, b.out) != (a.returncode, a.stdout):
            differences.append(f"{' '.join(args)}: ours {b.rc}\n{b.out}{b.err}"
                               f"iscsiadm {a.returncode}\n{a.stdout}{a.stderr}")
    assert not differences, "\n".join(differences)


def _offload_sysfs(root) -> str:
    """A sysfs tree as Linux 6.1 lays out a software host and two offload HBAs' (qla4xxx
    with two IPv4 interfaces, bnx2i with an IPv6 one): ``class/iscsi_host`` and
    ``class/scsi_host`` entries link into the hosts' device directories, and each
    interface is a device under its host (``iscsi_iface/<name>``) with its class link."""
    from pathlib import Path

    root = Path(root)

    def w(rel, value):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value + "\n")

    def link(rel, target):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(os.path.relpath(root / target, (root / rel).parent))

    def host(n, parent, proc, attrs, ifaces=()):
        d = f"devices/{parent}/host{n}"
        w(f"{d}/scsi_host/host{n}/proc_name", proc)
        w(f"{d}/scsi_host/host{n}/state", "running")
        for k, v in attrs.items():
            w(f"{d}/iscsi_host/host{n}/{k}", v)
        link(f"class/iscsi_host/host{n}", f"{d}/iscsi_host/host{n}")
        link(f"class/scsi_host/host{n}", f"{d}/scsi_host/host{n}")
        link(f"bus/scsi/devices/host{n}", d)
        for name, values in ifaces:
            for k, v in values.items():
                w(f"{d}/iscsi_iface/{name}/{k}", v)
            link(f"class/iscsi_iface/{name}", f"{d}/iscsi_iface/{name}")

    w("module/scsi_transport_iscsi/version", "2.0-870")
    for name, caps in (("tcp", "0x39"), ("qla4xxx", "0x7a00"), ("bnx2i", "0x3a55")):
        w(f"class/iscsi_transport/{name}/handle", "18446744072107233344")
        w(f"class/iscsi_transport/{name}/caps", caps)
    for name in ("iscsi_session", "iscsi_connection"):
        (root / "class" / name).mkdir(parents=True)
    host(3, "platform", "iscsi_tcp", {"ipaddress": "10.0.0.9", "hwaddress": "(null)",
                                      "netdev": "(null)", "initiatorname": "(null)"})
    host(5, "pci0000:00/0000:00:05.0", "qla4xxx",
         {"ipaddress": "192.168.1.50", "hwaddress": "00:0e:1e:aa:bb:cc",
          "initiatorname": "iqn.2000-04.com.qlogic:isp4032.ab12", "port_state": "LINK UP",
          "port_speed": "1 Gbps"},
         [("ipv4-iface-5-0", {"ipaddress": "192.168.1.50", "gateway": "192.168.1.1",
                              "subnet": "255.255.255.0", "bootproto": "static", "port": "3260",
                              "mtu": "1500", "vlan_id": "0", "vlan_priority": "0"}),
          # no gateway, bootproto or VLAN; a port C's atoi reads in part, a u16 MTU wrapped
          ("ipv4-iface-5-1", {"ipaddress": "192.168.2.50", "subnet": "255.255.0.0",
                              "port": " 3261x", "mtu": "70000"})])
    host(6, "pci0000:00/0000:00:06.0", "bnx2i",
         {"ipaddress": "fd00::50", "hwaddress": "00:10:18:AA:BB:01", "netdev": "eth7",
          "initiatorname": "(null)"},
         [("ipv6-iface-6-0", {"ipaddress": "fd00::50", "ipaddr_autocfg": "nd",
                              "link_local_addr": "fe80::210:18ff:feaa:bb01",
                              "link_local_autocfg": "auto", "router_addr": "fe80::1",
                              "port": "3260", "mtu": "9000", "vlan_id": "12",
                              "vlan_priority": "300"})])
    return str(root)


def test_offload_hosts_and_their_interfaces_listed_as_iscsiadm(cli, tmp_path, monkeypatch):
    """-m host on HBA ports: iscsiadm reads the same sysfs tree (bind-mounted on /sys in its
    mount namespace); each level's output is the same, the Interface blocks included."""
    sys_dir = _offload_sysfs(tmp_path / "sys")
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", sys_dir)
    for args in (("-m", "host"), ("-m", "host", "-P", "1"), ("-m", "host", "-P", "2")):
        a = iscsiadm(cli.root, *args, sys_dir=sys_dir)
        b = cli(*args)
        assert (b.rc, b.out) == (a.returncode, a.stdout), f"{args}\nours:\n{b.out}{b.err}\n" \
                                                          f"iscsiadm:\n{a.stdout}{a.stderr}"
        assert args == ("-m", "host") or b.out.count("\tInterface:\n") == 3
    # -H: the one host (iscsiadm 2.1.8 prints them all: host_cmd's docstring)
    b = cli("-m", "host", "-P", "1", "-H", "00:10:18:aa:bb:01")
    assert b.out.startswith("Host Number: 6\n") and b.out.count("Interface:") == 1
    assert "\tLink Local Address: [fe80::210:18ff:feaa:bb01]\n\tLink Local Autocfg: auto\n" \
           "\tRouter Address: [fe80::1]\n" in b.out
    ifaces = {h["host_no"]: h["ifaces"] for h in json.loads(cli("-m", "host", "--json").out)}
    assert ifaces[3] == [] and [i["name"] for i in ifaces[5]] == ["ipv4-iface-5-0",
                                                                  "ipv4-iface-5-1"]
    assert ifaces[6][0]["vlan_id"] == "12" and "gateway" not in ifaces[5][1]
