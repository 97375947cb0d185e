"""Interop with Debian's iscsiadm (open-iscsi 2.1.8) on the same DB, in a private mount
namespace (tests/peers.py): it reads what iscsictl wrote and the reverse, with identical
output.  FAILS when iscsiadm or tgtd is missing."""

import json
import os

import pytest

from cli_targets import T_OPEN
from offload_tree import offload_sysfs as _offload_sysfs
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
    # discoverydb without a type: 7, nothing done (it had deleted the SendTargets record)
    ["-m", "discoverydb", "-p", "10.0.0.5"], ["-m", "discoverydb", "-p", "10.0.0.5", "-D"],
    ["-m", "discoverydb", "-p", "10.0.0.5", "-o", "delete"], ["-m", "discovery"],
    # -l without -D discovers nothing: the record shown, or not found (exec_discover)
    ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-l"],
    ["-m", "discoverydb", "-t", "isns", "-p", "10.0.0.5", "-l"],
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
                 ["-m", "discoverydb", "-t", "st", "-p", "10.0.0.5", "-o", "new"],
                 ["-m", "discoverydb", "-t", "st", "-p", "[fd00::5]", "-o", "new"]):
        assert adm(cli, *args).returncode == 0
    differences += _differences(cli)
    assert not differences, "\n".join(differences)


#: Commands that change the DB (and their errors), run in this order on two fresh DBs, one by
#: iscsiadm and one by iscsictl.  Left out on purpose: where iscsictl refuses what iscsiadm
#: takes (-o new of an iface that exists, which iscsiadm rewrites; a value of the wrong type;
#: a portal or target name that is not one); -o new without -T or -p, compared on its own
#: (test_o_new_without_a_portal_or_target_binds_the_portals_held_as_iscsiadm); and iface -o
#: update, which iscsiadm refuses without the iscsi_tcp module loaded (iscsictl needs none).
W = ("-m", "node", "-T", "iqn.2001-04.com.example:w")
ST = ("-m", "discoverydb", "-t", "st")
WRITES = (
    ["-m", "iface", "-I", "eth8", "-o", "new"],
    # -n/-v applied to the new iface (iscsiadm's OP_NEW: iface_param_update), a bad one said
    ["-m", "iface", "-I", "eth6", "-o", "new", "-n", "iface.net_ifacename", "-v", "eth1",
     "-n", "iface.transport_name", "-v", "iser"],
    ["-m", "iface", "-I", "eth6", "-o", "show"],
    ["-m", "iface", "-I", "eth5", "-o", "new", "-n", "iface.bogus", "-v", "1"],
    # a key of the other address block than the iface's (iface_get_iptype) is refused
    # (an update iscsiadm takes needs the kernel's transports, which this host lacks)
    ["-m", "iface", "-I", "eth4", "-o", "new"],
    ["-m", "iface", "-I", "eth4", "-o", "update", "-n", "iface.ipv6_autocfg", "-v", "nd"],
    ["-m", "iface", "-I", "eth4", "-o", "show"],
    ["-m", "iface", "-I", "eth4.ipv6", "-o", "new"],
    ["-m", "iface", "-I", "eth4.ipv6", "-o", "update", "-n", "iface.gateway", "-v", "10.0.0.1"],
    ["-m", "iface", "-I", "eth4.ipv6", "-o", "show"],
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
    # keys of later open-iscsi versions (2.1.11, 2.1.12) are none of 2.1.8's records: 7
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.session.conn_reopen_log_freq",
     "-v", "5"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.conn[0].tcp.congestion_control",
     "-v", "bbr"],
    [*W, "-o", "update", "-n", "node.startup", "-v", "automatic"],
    [*W, "-o", "update", "-n", "node.startup", "-v", "sometimes"],
    [*W, "-p", "10.0.0.9", "-o", "update", "-n", "node.startup", "-v", "manual"],
    ["-m", "node", "-o", "update", "-n", "node.session.timeo.replacement_timeout", "-v", "30"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "iface.net_ifacename", "-v", "x"],
    # an iface key is refused before the records are looked up (verify_node_params): 7
    ["-m", "node", "-T", "iqn.2001-04.com.example:none", "-o", "update",
     "-n", "iface.ipaddress", "-v", "1"],
    # several -n/-v pairs: every pair applied; a -n without its -v left out; one bad pair
    # and none is
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.startup", "-v", "automatic",
     "-n", "node.session.cmds_max", "-v", "64"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.session.queue_depth", "-v", "16",
     "-n", "node.startup"],
    [*W, "-p", "10.0.0.1", "-o", "update", "-n", "node.startup", "-v", "manual",
     "-n", "node.bogus", "-v", "1"],
    [*W, "-p", "10.0.0.1", "-o", "bogus"],
    [*W, "-o", "show"],
    [*ST, "-p", "10.0.0.5", "-o", "new"],
    [*ST, "-p", "10.0.0.5", "-o", "new"],
    [*ST, "-p", "10.0.0.5", "-o", "update",
     "-n", "discovery.sendtargets.auth.authmethod", "-v", "CHAP"],
    [*ST, "-p", "10.0.0.5", "-o", "update", "-n", "discovery.bogus", "-v", "1"],
    [*ST, "-p", "10.0.0.5", "-o", "update", "-v", "chapuser",
     "-n", "discovery.sendtargets.auth.username", "-n", "discovery.sendtargets.reopen_max",
     "-v", "3"],
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


def test_a_drivers_empty_and_unset_values_print_as_iscsiadm_prints_them(cli, tmp_path,
                                                                         monkeypatch):
    """usr/sysfs.c sysfs_get_value: an empty file, "(null)" and "<NULL>" are no value: a
    VLAN ID or priority the driver leaves empty is <empty> (iscsictl printed 0), a "<NULL>"
    gateway <empty> (printed as is)."""
    sys_dir = _offload_sysfs(tmp_path / "sys")
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", sys_dir)
    iface = os.path.join(sys_dir, "devices/pci0000:00/0000:00:05.0/host5/iscsi_iface",
                         "ipv4-iface-5-1")
    for name, raw in (("vlan_id", b"\n"), ("vlan_priority", b""), ("gateway", b"<NULL>\n"),
                      ("bootproto", b"(null)\n")):
        with open(os.path.join(iface, name), "wb") as f:
            f.write(raw)
    a = iscsiadm(cli.root, "-m", "host", "-P", "1", sys_dir=sys_dir)
    b = cli("-m", "host", "-P", "1")
    assert (b.rc, b.out) == (a.returncode, a.stdout), f"ours:\n{b.out}\niscsiadm:\n{a.stdout}"
    assert "\tGateway: <empty>\n" in b.out and "\tVLAN ID: <empty>\n" in b.out
    iface = next(i for h in json.loads(cli("-m", "host", "--json").out) for i in h["ifaces"]
                 if i["name"] == "ipv4-iface-5-1")  # --json says the same: no value
    assert not {"vlan_id", "vlan_priority", "gateway", "bootproto"} & iface.keys()


def _both(cli, sys_dir, *args):
    """iscsiadm's and iscsictl's results for one command on the same sysfs tree; stderr
    without the program's prefix."""
    a = iscsiadm(cli.root, *args, sys_dir=sys_dir)
    b = cli(*args)
    return ((a.returncode, a.stdout, a.stderr.replace("iscsiadm: ", "")),
            (b.rc, b.out, b.err.replace("iscsictl: ", "")))


def _same_on(cli, sys_dir, *args, stderr=True):
    theirs, ours = _both(cli, sys_dir, *args)
    n = 3 if stderr else 2
    assert ours[:n] == theirs[:n], f"{args}\nours:\n{ours}\niscsiadm:\n{theirs}"
    return ours


FN = ("-m", "host", "-C", "flashnode")


def test_flash_targets_listed_as_iscsiadm(cli, tmp_path, monkeypatch):
    """-C flashnode -H N: one line each in alphasort order ([10] before [2]), an IPv6 address
    in brackets, a port iscsiadm reads as 65535 (missing) or prints <empty> (0), an empty
    name; another host's entries skipped; the walk stopped, with iscsiadm's message, at a
    name it cannot read (flashnode_sess-7: after host 5's, so they stay listed, exit 0)."""
    sys_dir = _offload_sysfs(tmp_path / "sys")
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", sys_dir)
    listing = [
        "qla4xxx: [0] 192.168.1.10:3260,1 iqn.2001-05.com.equallogic:0-8a0906-flash0",
        "qla4xxx: [1] [fd00::10]:3261,2 iqn.2001-05.com.equallogic:0-8a0906-flash1",
        "qla4xxx: [10] 192.168.1.11:65535,1 iqn.2001-05.com.equallogic:0-8a0906-flash10",
        "qla4xxx: [2] <empty>:<empty>,1 <empty>"]
    for args in ((*FN, "-H", "5"), (*FN, "-H", "5", "-o", "show"),
                 (*FN, "-H", "00:0E:1E:AA:BB:CC"), (*FN, "-H", "5", "-x", "4294967296"),
                 (*FN, "-H", "5", "-x", "-1"), (*FN, "-H", "5", "-o", "show", "-o", "bogus"),
                 (*FN, "-H", "5", "-P", "7")):
        rc, out, err = _same_on(cli, sys_dir, *args)
        assert (rc, out.splitlines(), err) == (0, listing, "Invalid iscsi target dir: "
                                                           "flashnode_sess-7\n")
    # host 3 (iscsi_tcp) has none: 21, after the same message
    rc, out, err = _same_on(cli, sys_dir, *FN, "-H", "3")
    assert (rc, out) == (21, "") and err.endswith("No flashnodes attached to host 3.\n")
    # host 6: its second entry has no conn entry; iscsiadm stops there and exits 2 (ENOENT)
    # without a word, iscsictl says which
    theirs, ours = _both(cli, sys_dir, *FN, "-H", "6")
    assert ours[:2] == theirs[:2] == (
        2, "bnx2i: [0] 10.6.0.1:3260,1 iqn.2001-05.com.example:bnx2i-flash\n")
    assert (theirs[2], ours[2]) == ("", "Could not read info for flashnode_sess-6:1, "
                                        "No such file or directory\n")


def _masked(record: str) -> str:
    """iscsiadm's record with its passwords as iscsictl prints them without -S."""
    out = []
    for line in record.splitlines(keepends=True):
        key, sep, value = line.partition(" = ")
        if key in ("flashnode.session.password", "flashnode.session.password_in") \
                and value != "<empty>\n":
            line = f"{key}{sep}********\n"
        out.append(line)
    return "".join(out)


def test_flash_target_records_shown_as_iscsiadm(cli, tmp_path, monkeypatch):
    """-x IDX: every flashnode.session.* and flashnode.conn[0].* key in iscsiadm's order, the
    values read as it reads them: a missing number all ones (255, 65535, 4294967295), atoi's
    and strtoul's (base 0: 0x2000, 010) readings truncated to the field (tpgt 65537 -> 1,
    keepalive 70000 -> 4464, 4294967297 -> 1, -1), strings cut to their buffer (isid: 15
    bytes, portal_type: 4), "(null)..." and empty values <empty>, a 300-byte password cut
    to 255.  The passwords are the one difference: iscsictl masks them unless -S, iscsiadm
    prints them (and refuses -S in host mode)."""
    sys_dir = _offload_sysfs(tmp_path / "sys")
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", sys_dir)
    for host, index in (("5", "0"), ("5", "1"), ("5", "2"), ("5", "10"), ("6", "0")):
        for op in ((), ("-o", "show")):
            a = iscsiadm(cli.root, *FN, "-H", host, "-x", index, *op, sys_dir=sys_dir)
            assert a.returncode == 0 and a.stdout.startswith("# BEGIN RECORD 2.1.8\n")
            masked, shown = cli(*FN, "-H", host, "-x", index, *op), \
                cli(*FN, "-H", host, "-x", index, *op, "-S")
            assert (masked.rc, masked.out) == (0, _masked(a.stdout))
            assert (shown.rc, shown.out, shown.err) == (0, a.stdout, "")
    # strtoull reads "abc" as 0, target 0 for iscsiadm: iscsictl refuses an index that is
    # no number (a typo must not name the first flash target)
    assert iscsiadm(cli.root, *FN, "-H", "5", "-x", "abc", sys_dir=sys_dir).returncode == 0
    r = cli(*FN, "-H", "5", "-x", "abc")
    assert (r.rc, r.out, r.err) == (7, "", "iscsictl: Invalid index abc.\n")
    rec = dict(line.split(" = ", 1) for line in
               cli(*FN, "-H", "5", "-x", "2", "-S").out.splitlines()[1:-1])
    assert len(rec) == 59 and list(rec)[0] == "flashnode.session.auto_snd_tgt_disable"
    assert list(rec)[-1] == "flashnode.conn[0].exp_statsn"
    assert (rec["flashnode.session.erl"], rec["flashnode.session.tpgt"],
            rec["flashnode.session.first_burst_len"], rec["flashnode.session.max_burst_len"],
            rec["flashnode.session.isid"], rec["flashnode.session.portal_type"],
            rec["flashnode.conn[0].keepalive_tmo"], rec["flashnode.conn[0].max_recv_dlength"],
            rec["flashnode.conn[0].statsn"], rec["flashnode.conn[0].exp_statsn"],
            rec["flashnode.conn[0].ipv4_tos"], rec["flashnode.session.tsid"],
            rec["flashnode.session.username"], rec["flashnode.session.password"]) == (
        "255", "1", "8192", "1", "00023d000001000", "ipv4", "4464", "8", "4294967295",
        "4294967295", "44", "65535", "<empty>", "p" * 255)
    # masked: a password shown only when it has a value, as node records mask theirs
    out = cli(*FN, "-H", "5", "-x", "0").out
    assert "flashnode.session.password = ********\n" in out and "chapsecret12" not in out
    assert "flashnode.session.password = <empty>\n" in cli(*FN, "-H", "5", "-x", "1").out
    a = iscsiadm(cli.root, *FN, "-H", "5", "-x", "0", "-S", sys_dir=sys_dir)
    assert (a.returncode, a.stderr) == (7, "iscsiadm: host mode: option '-S' is not "
                                           "allowed/supported\n")


def test_flash_target_errors_as_iscsiadm(cli, tmp_path, monkeypatch):
    """The errors' exit codes, messages and (empty) output are iscsiadm's: a flash target
    that is not there (2: the errno), a host with no transport (12), an index past ULLONG_MAX
    (7), an unknown -o (7), an -o other than show without -x (7) or with it (7), a new flash
    target without its portal type (7), an update of one that is not there (2)."""
    sys_dir = _offload_sysfs(tmp_path / "sys")
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", sys_dir)
    for args, rc, err in (
            (("-H", "5", "-x", "9"), 2,
             "Could not read info for flashnode 9 of host 5, No such file or directory\n"),
            (("-H", "5", "-x", "4294967295"), 2, "Could not read info for flashnode "
             "4294967295 of host 5, No such file or directory\n"),
            (("-H", "6", "-x", "1"), 2,
             "Could not read info for flashnode 1 of host 6, No such file or directory\n"),
            (("-H", "3", "-x", "0"), 2,
             "Could not read info for flashnode 0 of host 3, No such file or directory\n"),
            (("-H", "7",), 12, "Could not read proc_name for host7 rc 5.\n"
             "Could not match hostno 7 to transport.\n"),
            (("-H", "7", "-x", "0"), 12, "Could not read proc_name for host7 rc 5.\n"
             "Could not match hostno 7 to transport.\n"),
            (("-H", "5", "-x", "99999999999999999999"), 7,
             "Invalid index 99999999999999999999. Numerical result out of range.\n"),
            (("-H", "5", "-o", "bogus"), 7, "can not recognize operation: 'bogus'\n"),
            (("-H", "5", "-o", "apply"), 7, "Invalid flashnode index\n"),
            (("-H", "7", "-o", "apply"), 7, "Invalid flashnode index\n"),
            (("-H", "5", "-o", "apply", "-x", "1"), 7, "Invalid operation\n"),
            (("-H", "5", "-o", "show", "-o", "delete", "-x", "1"), 7, "Invalid operation\n"),
            # the writes' checks made before any request (tests/cli/test_flashnode_ops.py)
            (("-H", "5", "-o", "new"), 7, "Invalid type mentioned for flashnode\n"),
            (("-H", "5", "-o", "update", "-x", "9", "-n", "flashnode.session.erl", "-v", "1"),
             2, "Could not read info for flashnode 9, No such file or directory\n"
             "Update for flashnode 9 of host 5 failed.\n"),
            (("-H", "11:22:33:44:55:66",), 7, "Could not match MAC to host.\n")):
        assert _same_on(cli, sys_dir, *FN, *args) == (rc, "", err)
    assert _same_on(cli, sys_dir, "-m", "host", "-x", "99999999999999999999")[0] == 7
    # deliberate: without -H, iscsiadm 2.1.8's "no host" marker wraps to host 0 (none here:
    # 12); iscsictl says what iscsiadm's check for it means to say
    theirs, ours = _both(cli, sys_dir, *FN)
    assert theirs == (12, "", "Could not read proc_name for host0 rc 5.\n"
                              "Could not match hostno 0 to transport.\n")
    assert ours == (7, "", "FLASHNODE mode requires host no\n")


def test_flash_targets_as_json(cli, tmp_path, monkeypatch):
    """--json: the listing as a list of records, -x as one; the keys in iscsiadm's order with
    host_no, index and transport first, numbers as numbers, passwords masked unless -S."""
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", _offload_sysfs(tmp_path / "sys"))
    nodes = json.loads(cli(*FN, "-H", "5", "--json").out)
    assert [(n["host_no"], n["index"], n["transport"]) for n in nodes] == [
        (5, 0, "qla4xxx"), (5, 1, "qla4xxx"), (5, 10, "qla4xxx"), (5, 2, "qla4xxx")]
    assert list(nodes[0])[3:5] == ["flashnode.session.auto_snd_tgt_disable",
                                   "flashnode.session.discovery_session"]
    assert len(nodes[0]) == 3 + 59 and nodes[0]["flashnode.conn[0].port"] == 3260
    assert (nodes[0]["flashnode.session.password"], nodes[1]["flashnode.session.password"],
            nodes[2]["flashnode.conn[0].port"], nodes[3]["flashnode.session.targetname"]) == (
        "********", "", 65535, "")
    one = json.loads(cli(*FN, "-H", "5", "-x", "0", "--json", "-S").out)
    assert one["index"] == 0 and one["flashnode.session.password_in"] == "mutualsecret1"
    assert one["flashnode.conn[0].ipaddress"] == "192.168.1.10"
    r = cli(*FN, "-H", "3", "--json")
    assert (r.rc, r.out) == (21, "[]\n")  # nothing found: an empty listing


def test_p_selects_records_by_address_as_iscsiadm_resolves_it(cli):
    """iscsiadm's operations on records compare -p's address with a record's as the same
    host (for_each_matched_rec, iscsi_addr_match: resolved when the texts differ):
    ``-p [FE80:0::1]`` updates or deletes fe80::1's records.  Before, iscsictl compared the
    texts and found nothing (21).  Its listing resolves too, where iscsiadm's (libopeniscsiusr,
    print_nodes_config) compares the texts: one rule for every node command."""
    import glob
    T = "iqn.2001-04.com.example:resolve"

    def records() -> dict[str, str]:
        out = {}
        for path in glob.glob(os.path.join(cli.root, "nodes", "*", "*", "*")):
            with open(path) as f:
                out[path] = next(x for x in f if x.startswith("node.startup"))
        return out

    def fresh() -> None:
        for p in ("[fe80::1]:3260,1", "[fd00::a]:3261,1", "127.0.0.1:3260,1"):
            assert cli("-m", "node", "-T", T, "-p", p, "-o", "new").rc == 0

    fresh()
    assert len(records()) == 3
    for p in ("[FE80:0::1]", "[FD00:0:0::A]:3261", "[fd00::a]", "[fe80::2]"):
        found = p not in ("[fd00::a]", "[fe80::2]")
        for op in (["-o", "update", "-n", "node.startup", "-v", "automatic"], ["-o", "delete"]):
            results = []
            for tool in (lambda *a: adm(cli, *a).returncode, lambda *a: cli(*a).rc):
                rc = tool("-m", "node", "-T", T, "-p", p, *op)
                results.append((rc, records()))
                assert cli("-m", "node", "-o", "delete").rc == 0
                fresh()
            assert results[0] == results[1], (p, op)
            assert results[1][0] == (0 if found else 21), (p, op)
            assert (results[1][1] != records()) is found, (p, op)
        assert cli("-m", "node", "-p", p).rc == (0 if found else 21)


def test_the_command_line_is_read_as_iscsiadms_getopt_long_reads_it(cli):
    """getopt_long: a long option's unique prefix (--target, as Azure's and SUSE's scripts
    write it; --pr is --print), iscsiadm's own --no_wait, a value starting with '-' (a CHAP
    secret), grouped letters, and words that are no option's ignored (-m node --login all).
    Before: each was 7 ("unrecognized arguments", "expected one argument")."""
    T = "iqn.2001-04.com.example:getopt"
    same(cli, "--mode", "node", "--target", T, "--portal", "10.0.0.1:3260,1", "--op", "new")
    same(cli, "--mo", "node", "--pr", "1")
    same(cli, "-m", "node", "-T", T, "-o", "update", "-n", "node.session.auth.password",
         "-v", "-Secr3t-2024")
    same(cli, "-mnode", "-T", T, "-So", "show")
    assert "node.session.auth.password = -Secr3t-2024\n" in cli(
        "-m", "node", "-T", T, "-o", "show", "-S").out
    same(cli, "-m", "node", "--no_wait", "--loginall=bogus", rc=7)
    r = same(cli, "-m", "node", "extra")
    assert "'extra' is not an option's: ignored" in r.err
    r = same(cli, "-m", "node", "all")  # -L's word alone: what was meant, asked
    assert "iscsictl: 'all' is not an option's: ignored (-L all or -U all?)\n" in r.err
    for args in (["-m", "node", "--log"], ["-m", "node", "--no-such-option"],
                 ["-m", "node", "--login=x"], ["-m", "node", "-T"]):
        assert (cli(*args).rc, adm(cli, *args).returncode) == (7, 7), args


def test_o_new_without_a_portal_or_target_binds_the_portals_held_as_iscsiadm(cli, tmp_path):
    """iscsiadm's add_static_recs: ``-o new`` without -p (or -T) makes a record for each
    portal the DB holds of the target (or at the address), its tag kept, through -I
    (before: refused, 7, so scripts binding an iface to a target's portals failed).  The
    lines are compared as multisets: iscsiadm goes in directory order."""
    ours, theirs = cli, type(cli)(str(tmp_path / "theirs"))
    with open(os.path.join(ours.root, "iscsid.conf"), "w") as f:
        f.write("iscsid.startup = /bin/true\n")
    T = "iqn.2001-04.com.example:bind"
    a, b = adm(theirs, "-m", "node", "-o", "new", "-T", T), ours("-m", "node", "-o", "new",
                                                              "-T", T)
    assert (a.returncode, b.rc) == (0, 21)  # nothing held yet: said (iscsiadm exits 0)
    for args in (["-m", "node", "-o", "new", "-T", T, "-p", "10.0.0.1,1"],
                 ["-m", "node", "-o", "new", "-T", T, "-p", "10.0.0.2:3261,2"],
                 ["-m", "iface", "-I", "if1", "-o", "new"],
                 ["-m", "node", "-o", "new", "-T", T, "-I", "if1"],
                 ["-m", "iface", "-I", "if2", "-o", "new"],
                 ["-m", "node", "-o", "new", "-p", "10.0.0.2:3261", "-I", "if2"],
                 ["-m", "node", "-P", "1"]):
        a, b = adm(theirs, *args), ours(*args)
        assert (b.rc, sorted(b.out.splitlines())) == \
            (a.returncode, sorted(a.stdout.splitlines())), (args, a, b)
    assert ours("-m", "node", "-I", "if1").out.count(T) == 2


def test_o_new_over_a_record_says_its_settings_are_not_kept(cli, tmp_path):
    """``-o new`` of a record that exists makes it anew, its CHAP gone, as iscsiadm's does
    without a word: iscsictl says it on stderr; stdout is iscsiadm's."""
    ours, theirs = cli, type(cli)(str(tmp_path / "theirs"))
    T = "iqn.2001-04.com.example:again"
    new = ("-m", "node", "-o", "new", "-T", T, "-p", "10.0.0.1,1")
    chap = ("-m", "node", "-T", T, "-p", "10.0.0.1", "-o", "update", "-n",
            "node.session.auth.authmethod", "-v", "CHAP")
    for args in (new, chap):
        assert adm(theirs, *args).returncode == 0 and ours(*args).rc == 0
    a, b = adm(theirs, *new), ours(*new)
    assert (b.rc, b.out) == (a.returncode, a.stdout) == (0, a.stdout) and a.stdout
    assert b.err == (f"iscsictl: node record [default] 10.0.0.1,3260,1 {T} existed: made anew "
                     "from iscsid.conf and the defaults, its settings (CHAP included) not "
                     "kept\n")
    assert "node.session.auth.authmethod = None" in ours("-m", "node", "-T", T).out
    old = ("-m", "node", "-o", "new", "-T", T, "-p", "10.0.0.2")  # tag unknown: old-style
    assert ours(*old).rc == 0 and ours(*chap[:4], "-p", "10.0.0.2", *chap[6:]).rc == 0
    r = ours(*old[:6], "-p", "10.0.0.2:3260,1")  # converted: its settings gone too
    assert "10.0.0.2,3260,-1 " not in r.err and f"10.0.0.2,3260,1 {T} existed" in r.err
    assert ours(*new[:4], "-T", "iqn.2001-04.com.example:fresh", "-p", "10.0.0.1,1").err == ""


def test_a_discovery_without_a_portal_is_refused_in_iscsiadms_words(cli):
    """7, and iscsiadm's line (its `-m discovery -t isns` one has "<ipaddr>:[<ipport>]", a
    slip not copied).  Before: "discovery needs -p ip[:port]"."""
    for args in (["-m", "discovery", "-t", "st"], ["-m", "discoverydb", "-t", "st", "-D"],
                 ["-m", "discoverydb", "-t", "isns", "-D"]):
        a, b = adm(cli, *args), cli(*args)
        assert (b.rc, b.err.replace("iscsictl:", "iscsiadm:")) == (a.returncode, a.stderr)
    assert cli("-m", "discovery", "-t", "isns").rc == 7
