"""Interop with Debian's iscsiadm (open-iscsi 2.1.8) on the same DB, in a private mount
namespace (tests/peers.py): it reads what iscsictl wrote and the reverse, with identical
output.  FAILS when iscsiadm or tgtd is missing."""

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
