"""SendTargets discovery through iface records, against tgtd on loopback: one exchange per
iface, through the iface's network device (SO_BINDTODEVICE) and with its initiator name,
records made per iface; without -I the DB's software-iSCSI ifaces (open-iscsi's
idbm_bind_ifaces_to_nodes); a failure on any iface writes nothing, as iscsiadm."""

import os

import pytest

from cli_targets import T_OPEN
from peers import Tgtd

T_NAMED = "iqn.2026-11.test.tgt:named"
IFACE_INAME = "iqn.2026-11.test.iscsictl:iface-name"

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def tgt_acl(tmp_path_factory):
    """tgtd with an open target and one whose ACL admits IFACE_INAME only (tgtd leaves it
    out of the SendTargets answer to any other initiator)."""
    with Tgtd(str(tmp_path_factory.mktemp("tgtd-acl"))) as t:
        t.add_target(T_OPEN)
        t.add_target(T_NAMED, initiator_name=IFACE_INAME)
        yield t


def iface(cli, name, **values):
    assert cli("-m", "iface", "-I", name, "-o", "new").rc == 0
    for k, v in values.items():
        r = cli("-m", "iface", "-I", name, "-o", "update", "-n", f"iface.{k}", "-v", v)
        assert r.rc == 0, r.err


def nodes(cli, name):
    """The targets with a node record for iface ``name`` (nodes/<target>/<portal>/<iface>)."""
    root = os.path.join(cli.root, "nodes")
    return sorted(t for t in os.listdir(root) for p in os.listdir(os.path.join(root, t))
                  if os.path.exists(os.path.join(root, t, p, name))) \
        if os.path.isdir(root) else []


def test_without_I_every_software_iface_discovers_its_own_targets(cli, tgt_acl):
    iface(cli, "iface0", net_ifacename="lo")
    iface(cli, "iface1", net_ifacename="lo", initiatorname=IFACE_INAME)
    iface(cli, "ifiser", transport_name="iser")
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal)
    assert r.rc == 0, r.err
    p = f"{tgt_acl.portal},1"
    # iface by iface, as iscsiadm prints them: iface1's initiator name also sees T_NAMED
    assert r.out.splitlines() == [f"{p} {T_OPEN}", f"{p} {T_OPEN}", f"{p} {T_NAMED}"]
    assert nodes(cli, "iface0") == [T_OPEN]
    assert nodes(cli, "iface1") == sorted([T_OPEN, T_NAMED])
    assert nodes(cli, "default") == [] and nodes(cli, "ifiser") == []
    # each record carries its iface, so its logins leave through that device
    r = cli("-m", "node", "-T", T_NAMED, "-p", tgt_acl.portal, "-I", "iface1")
    assert "iface.net_ifacename = lo\n" in r.out
    assert f"iface.initiatorname = {IFACE_INAME}\n" in r.out


def test_with_I_only_those_ifaces_and_an_unknown_one_is_reported(cli, tgt_acl):
    iface(cli, "iface0", net_ifacename="lo")
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal, "-I", "nosuch", "-I", "default")
    assert r.rc == 0, r.err
    assert r.err == (f"iscsictl: Could not read iface info for nosuch. Make sure an iface "
                     f"config with the file name and iface.iscsi_ifacename nosuch is in "
                     f"{os.path.join(cli.root, 'ifaces')}.\n")
    assert nodes(cli, "default") == [T_OPEN] and nodes(cli, "iface0") == []
    # nothing left to discover through: 21, and no discovery record is made (iscsiadm)
    r = cli("-m", "discovery", "-t", "st", "-p", "127.0.0.9:3999", "-I", "nosuch")
    assert r.rc == 21 and "Could not read iface info for nosuch." in r.err
    assert "127.0.0.9" not in cli("-m", "discovery").out


def test_the_tree_of_a_discovery_through_two_ifaces_names_each_portal_once(cli, tgt_acl):
    """A discovery's -P 1 prints a portal once, its ifaces below it (iscsiadm's
    idbm_print_node_tree); -m node -P 1 repeats it for each record, as libopeniscsiusr."""
    iface(cli, "iface1", net_ifacename="lo")
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal, "-I", "default",
            "-I", "iface1", "-P", "1")
    assert r.rc == 0, r.err
    block = f"\tPortal: {tgt_acl.portal},1\n\t\tIface Name: default\n\t\tIface Name: iface1\n"
    assert r.out == f"Target: {T_OPEN}\n" + block, r.out
    assert cli("-m", "node", "-P", "1").out.count(f"\tPortal: {tgt_acl.portal},1\n") == 2


def _short_record(cli, portal):
    base = ["-m", "discoverydb", "-t", "st", "-p", portal]
    assert cli(*base, "-o", "new").rc == 0
    for k, v in (("reopen_max", "0"), ("timeo.login_timeout", "1")):
        assert cli(*base, "-o", "update", "-n", f"discovery.sendtargets.{k}", "-v", v).rc == 0
    return base


def test_an_iface_that_cannot_bind_fails_the_discovery_and_writes_nothing(cli, tgt_acl):
    iface(cli, "iface0", net_ifacename="lo")  # works, but the discovery is all or nothing
    iface(cli, "ifbad", net_ifacename="nosuch0")
    base = _short_record(cli, tgt_acl.portal)
    r = cli(*base, "-D")
    assert r.rc == 11, r.err
    assert r.err.splitlines() == [
        "iscsictl: Could not bind connection 0 to nosuch0",
        "iscsictl: cannot make connection to 127.0.0.1: No such device",
        "iscsictl: connection login retries (reopen_max) 0 exceeded",
        "iscsictl: Could not perform SendTargets discovery: iSCSI PDU timed out"]
    assert cli("-m", "node").rc == 21


@pytest.mark.parametrize("values,first", [
    ({"ipaddress": "127.0.0.1"}, "Cannot bind 127.0.0.1 to net/scsi interface. This is not "
                                 "supported with software iSCSI (iscsi_tcp)."),
    ({"hwaddress": "02:00:5e:00:53:99"}, "Cannot match 02:00:5e:00:53:99 to net/scsi "
                                         "interface."),
])
def test_what_software_iscsi_cannot_bind_to(cli, tgt_acl, values, first):
    iface(cli, "ifx", **values)
    base = _short_record(cli, tgt_acl.portal)
    r = cli(*base, "-D", "-I", "ifx")
    assert r.rc == 11 and r.err.splitlines()[0] == f"iscsictl: {first}", r.err
    assert cli("-m", "node").rc == 21


def test_a_mac_binds_the_device_that_has_it(cli, tgt_acl, tmp_path, monkeypatch):
    """iface.hwaddress is looked up in sysfs (here a tree in which lo is an Ethernet device
    with a made-up MAC, and a second MAC belongs to a device the kernel does not have) and
    the device found is the one bound: through lo tgtd answers, through the other the bind
    fails with its name."""
    from iscsictl.kernel.sysfs import Sysfs
    from iscsictl.transport import iface as iface_mod

    for name, mac, index in (("lo", "02:00:5e:00:53:01", 1), ("ethx9", "02:00:5e:00:53:02", 2)):
        d = tmp_path / "sys/class/net" / name
        d.mkdir(parents=True)
        for attr, value in (("type", "1"), ("address", mac), ("ifindex", str(index))):
            (d / attr).write_text(value + "\n")
    monkeypatch.setattr(iface_mod, "SYSFS", Sysfs(tmp_path / "sys"))
    iface(cli, "ifmac", hwaddress="02:00:5E:00:53:01")  # any case
    iface(cli, "ifgone", hwaddress="02:00:5e:00:53:02")
    base = _short_record(cli, tgt_acl.portal)
    r = cli(*base, "-D", "-I", "ifgone")
    assert r.rc == 11 and r.err.splitlines()[:2] == [
        "iscsictl: Could not bind connection 0 to ethx9",
        "iscsictl: cannot make connection to 127.0.0.1: No such device"], r.err
    assert cli("-m", "node").rc == 21
    r = cli(*base, "-D", "-I", "ifmac")
    assert r.rc == 0 and nodes(cli, "ifmac") == [T_OPEN], r.err


def test_open_iscsis_example_iface_file_is_skipped(cli, tgt):
    """ifaces/iface.example (comments only; Fedora's, SUSE's and openEuler's packages still
    install it) is skipped by name, as open-iscsi skips it: not listed, not an iface, and a
    discovery without -I writes 'default' records, not 'iface.example' ones."""
    os.makedirs(os.path.join(cli.root, "ifaces"), exist_ok=True)
    with open(os.path.join(cli.root, "ifaces", "iface.example"), "w") as f:
        f.write("# iface.transport_name = tcp\n# iface.hwaddress = 00:0F:1F:92:6B:BF\n")
    assert "iface.example" not in cli("-m", "iface").out
    assert cli("-m", "iface", "-I", "iface.example").rc == 6
    assert cli("-m", "iface", "-I", "iface.example", "-o", "new").rc == 7
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0, r.err
    node = os.path.join(cli.root, "nodes", T_OPEN, f"127.0.0.1,{tgt.port},1")
    assert os.listdir(node) == ["default"]


def test_an_offload_iface_is_reported_and_left_out_and_iser_needs_the_daemon(cli, tgt_acl):
    """SendTargets through an offload HBA or iSER runs on the HBA's connection in the kernel
    (iscsiadm), which iscsictld makes: without the daemon, the discovery fails as a login
    does (20) and writes nothing.  An iface of a transport open-iscsi does not know is
    reported and left out (27 when nothing is left), not run from the host's stack with
    its initiator name into records that no login can use (before: exit 0, records for
    the iface)."""
    iface(cli, "odd", transport_name="nosuch", initiatorname=IFACE_INAME)
    for name, transport in (("qla", "qla4xxx"), ("ifiser", "iser"), ("chelsio", "cxgb4i"),
                            ("bnx", "bnx2i"), ("qedi0", "qedi")):
        iface(cli, name, transport_name=transport)
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal, "-I", "odd")
    assert r.rc == 27 and r.out == ""
    assert r.err == ("iscsictl: iface odd: SendTargets discovery: transport nosuch is not one "
                     "open-iscsi knows (operation not supported)\n")
    for name in ("qla", "ifiser", "chelsio", "bnx", "qedi0"):
        r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal, "-I", name)
        assert r.rc == 20 and r.out == ""
        assert r.err.splitlines()[-1] == ("iscsictl: Could not perform SendTargets discovery: "
                                          "could not connect to iscsid")
    assert "iscsictld" in r.err
    assert cli("-m", "node").rc == 21
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_acl.portal, "-I", "odd", "-I", "default")
    assert r.rc == 0 and r.out == f"{tgt_acl.portal},1 {T_OPEN}\n"
    assert nodes(cli, "default") == [T_OPEN] and nodes(cli, "odd") == []
