"""iscsictl beside Debian's iscsiadm 2.1.8 where a differential sweep of both (session 59:
~1,300 cases of node, iface, discovery, host and session modes without iscsid, each tool
on its own copy of one DB) found them apart: where iscsictl now does as iscsiadm, and the
README's deliberate differences it found, pinned.  iscsiadm runs in a private mount
namespace with a minimal sysfs (iscsi_tcp loaded, no host) bound on /sys, which iscsictl
is given too."""

import os
import shutil

import pytest

from peers import iscsiadm

pytestmark = pytest.mark.peer

T1 = "iqn.2001-04.com.example:t1"
T2 = "iqn.2001-04.com.example:t2"


@pytest.fixture
def rig(cli, tmp_path, monkeypatch):
    """(cli, run): ``run(*args)`` -> ((rc, out, err) of iscsiadm, (rc, out, err) of iscsictl),
    each on its own copy of the DB as it is when called; ``cli.root`` is iscsictl's copy, and
    ``rig.adm_root`` iscsiadm's."""
    sys_dir = tmp_path / "sys"
    for rel, value in (("module/scsi_transport_iscsi/version", "2.0-870"),
                       ("class/iscsi_transport/tcp/handle", "18446744072107233344"),
                       ("class/iscsi_transport/tcp/caps", "0x39")):
        (sys_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (sys_dir / rel).write_text(value + "\n")
    for name in ("iscsi_session", "iscsi_connection", "iscsi_host", "scsi_host",
                 "iscsi_iface"):
        (sys_dir / "class" / name).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", str(sys_dir))
    adm_root = str(tmp_path / "adm" / "etc")

    class Rig:
        def setup(self, *args):
            """Run in iscsiadm's DB, then copy it to iscsictl's."""
            cp = iscsiadm(adm_root, *args, sys_dir=str(sys_dir))
            assert cp.returncode == 0, cp.stderr
            shutil.rmtree(cli.root)
            shutil.copytree(adm_root, cli.root, symlinks=True)

        def run(self, *args):
            a = iscsiadm(adm_root, *args, sys_dir=str(sys_dir))
            b = cli(*args)
            err = "\n".join(line for line in a.stderr.splitlines()
                            if "can not connect to iSCSI daemon" not in line)
            return ((a.returncode, a.stdout, err),
                    (b.rc, b.out, b.err.replace("iscsictl:", "iscsiadm:").rstrip("\n")))

        def read(self, root, rel):
            with open(os.path.join(root, rel)) as f:
                return f.read()

    r = Rig()
    r.adm_root = adm_root
    r.cli = cli
    os.makedirs(adm_root, exist_ok=True)
    r.setup("-m", "iface")  # prepares both DBs (iscsid.conf, initiatorname.iscsi)
    return r


# --- as iscsiadm ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [("iface.bogus", "1"), ("iface.iscsi_ifacename", "x"),
                                        ("node.startup", "automatic")])
def test_a_refused_iface_update_says_iscsiadm_s_two_lines(rig, name, value):
    """Both lines of iscsiadm's iface_param_update ("Could not update iface eth7: invalid
    parameter" was left out); the exit code is 7 where iscsiadm's is 0 (README: a change
    refused is no success)."""
    rig.setup("-m", "iface", "-I", "eth7", "-o", "new")
    a, b = rig.run("-m", "iface", "-I", "eth7", "-o", "update", "-n", name, "-v", value)
    assert a[2].endswith("iscsiadm: Could not update iface eth7: invalid parameter")
    assert (b[1], b[2]) == (a[1], a[2])
    assert (a[0], b[0]) == (0, 7)


def test_an_update_of_the_default_iface_says_iscsiadm_s_two_lines(rig):
    a, b = rig.run("-m", "iface", "-I", "default", "-o", "update", "-n", "iface.mtu", "-v", "1")
    assert a[2] == ("iscsiadm: iface default is a special interface and cannot be modified.\n"
                    "iscsiadm: Could not update iface default: invalid parameter")
    assert (b[1], b[2]) == (a[1], a[2]) and (a[0], b[0]) == (0, 7)


def test_host_level_4_prints_the_version_header_without_hosts(rig):
    a, b = rig.run("-m", "host", "-P", "4")
    assert a[0] == b[0] == 21
    assert b[1] == a[1] == "iSCSI Transport Class version 2.0-870\nversion 2.1.8\n"


# --- deliberate differences (README) --------------------------------------------------------

def test_an_empty_target_name_or_portal_selects_nothing(rig):
    """iscsiadm takes ``-T ""`` and ``-p ""`` as no filter: ``-T "$T" -o delete`` with $T
    unset deletes every record.  iscsictl: ``-T ""`` matches no record (21), ``-p ""`` is
    no portal (7); nothing is deleted or changed."""
    rig.setup("-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "new")
    rig.setup("-m", "node", "-T", T2, "-p", "10.0.0.2", "-o", "new")
    a, b = rig.run("-m", "node", "-p", "", "-o", "update", "-n", "node.startup",
                   "-v", "automatic")
    assert (a[0], b[0]) == (0, 7) and "invalid portal ''" in b[2]
    assert "node.startup = automatic" in rig.read(
        rig.adm_root, f"nodes/{T1}/10.0.0.1,3260,1/default")
    assert "node.startup = manual" in rig.read(
        rig.cli.root, f"nodes/{T1}/10.0.0.1,3260,1/default")
    a, b = rig.run("-m", "node", "-T", "", "-o", "delete")
    assert (a[0], b) == (0, (21, "", "iscsiadm: No records found"))
    assert not os.path.exists(os.path.join(rig.adm_root, "nodes", T1))
    assert os.path.exists(os.path.join(rig.cli.root, "nodes", T1))


@pytest.mark.parametrize("args", [("-m", "discovery", "-t", "bogus"),
                                  ("-m", "node", "-d", "abc"),
                                  ("-m", "host", "-H", "abc")])
def test_what_iscsiadm_reads_loosely_is_refused(rig, args):
    """An unknown discovery type without -p (iscsiadm ignores it and lists), a level or a
    host number that is no number (iscsiadm's atoi: 0): 7, as ``-P abc``."""
    a, b = rig.run(*args)
    assert a[0] != 7 and b[0] == 7, (a, b)


def test_a_new_record_for_portals_the_db_does_not_hold_is_21(rig):
    """``-o new -p`` without -T makes a record for each portal the DB holds there: none is
    an error, which iscsiadm says (without its reason) and exits 0."""
    a, b = rig.run("-m", "node", "-o", "new", "-p", "10.0.0.6")
    assert a == (0, "", "iscsiadm: Error while adding record: ")  # its reason empty
    assert b == (21, "", "iscsiadm: Error while adding record: no records found")


def test_iscsiadm_reads_and_deletes_a_record_linked_relatively(rig):
    """iscsictl links static/ and send_targets/ entries relatively (``../nodes/...``: the
    database can be moved, or used at another root), iscsiadm absolutely
    (``/etc/iscsi/nodes/...``); each reads and deletes the other's."""
    assert rig.cli("-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "new").rc == 0
    link = os.path.join(rig.cli.root, "static", f"{T1},10.0.0.1,3260,1,default")
    assert os.readlink(link) == f"../nodes/{T1}/10.0.0.1,3260,1"
    shutil.rmtree(rig.adm_root)
    shutil.copytree(rig.cli.root, rig.adm_root, symlinks=True)
    shown = iscsiadm(rig.adm_root, "-m", "node")
    assert shown.returncode == 0 and shown.stdout == f"10.0.0.1:3260,1 {T1}\n", shown
    gone = iscsiadm(rig.adm_root, "-m", "node", "-T", T1, "-o", "delete")
    assert gone.returncode == 0
    assert os.listdir(os.path.join(rig.adm_root, "static")) == []
