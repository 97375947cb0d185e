"""-m node / -m iface / help / exit codes without a network peer."""

import io
import json
import os
import subprocess
import sys

import pytest

T1 = "iqn.2001-04.com.example:storage.t1"
T2 = "iqn.2001-04.com.example:storage.t2"


def test_empty_db(cli):
    r = cli("-m", "node")
    assert (r.rc, r.out, r.err) == (21, "", "iscsictl: No records found\n")
    assert cli("-m", "discovery").rc == 21
    assert cli("-m", "iface").out == ("default tcp,<empty>,<empty>,<empty>,<empty>\n"
                                      "iser iser,<empty>,<empty>,<empty>,<empty>\n")


def test_version(cli):
    from iscsictl import __version__
    r = cli("-V")
    assert (r.rc, r.out, r.err) == (0, f"iscsictl version {__version__}\n", "")
    r = cli("--json", "--version")  # (it printed the text line)
    assert r.rc == 0 and json.loads(r.out) == {"version": __version__, "record_format": "2.1.8"}


def test_node_new_list_show_update_delete(cli):
    r = cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1")
    assert r.out == ("New iSCSI node [tcp:[hw=,ip=,net_if=,iscsi_if=default] "
                     f"10.0.0.1,3260,1 {T1}] added\n")
    r = cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1")
    assert "10.0.0.1,3260,-1" in r.out
    assert cli("-m", "node", "-o", "new", "-T", T2, "-p", "[fd00::5]:3261,2").rc == 0
    r = cli("-m", "node")
    assert r.out == (f"10.0.0.1:3260,4294967295 {T1}\n10.0.0.1:3260,1 {T1}\n"
                     f"[fd00::5]:3261,2 {T2}\n")
    r = cli("-m", "node", "-P", "1")
    assert r.out.startswith(f"Target: {T1}\n\tPortal: 10.0.0.1:3260,-1\n\t\tIface Name: default\n")
    # filters: -p without a port means 3260
    assert cli("-m", "node", "-p", "[fd00::5]").rc == 21
    r = cli("-m", "node", "-p", "[fd00::5]:3261")
    assert r.rc == 0 and r.out.startswith("# BEGIN RECORD 2.1.8\n") and f"node.name = {T2}" in r.out
    # update, read-only keys, bad values
    base = ["-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1"]
    assert cli(*base, "-o", "update", "-n", "node.session.auth.password", "-v", "pw123").rc == 0
    r = cli(*base, "-o", "show")
    assert "node.session.auth.password = ********\n" in r.out
    assert "node.session.auth.password = pw123\n" in cli(*base, "-o", "show", "-S").out
    r = cli(*base, "-o", "update", "-n", "node.name", "-v", "x")
    assert r.rc == 7 and ("Cannot modify node.name. It is used to look up the record and "
                          "cannot be changed.") in r.err
    r = cli(*base, "-o", "update", "-n", "node.foo", "-v", "x")
    assert r.rc == 7 and "Cannot modify node.foo. Invalid param name." in r.err
    r = cli(*base, "-o", "update", "-n", "iface.ipaddress", "-v", "x")
    assert r.rc == 7 and "Use iface mode to update this value." in r.err
    r = cli(*base, "-o", "update", "-n", "node.startup", "-v", "bogus")
    assert r.rc == 7 and "unknown value format 'bogus'" in r.err
    # JSON
    doc = json.loads(cli("--json", *base, "-o", "show").out)
    assert doc[0]["node.name"] == T1 and doc[0]["node.session.auth.password"] == "********"
    # delete
    assert cli(*base, "-o", "delete").rc == 0
    assert cli(*base).rc == 21
    assert cli("-m", "node", "-o", "delete").rc == 0
    assert cli("-m", "node").rc == 21


def test_a_dangling_symlink_as_a_record_is_left_out_of_show_and_update(cli):
    """A dangling symlink in a record's place (a record deleted meanwhile is the same): said
    and left out of ``-o show`` and ``-o update`` of every record, the others shown and
    updated, exit 0, as a damaged record is (before: the others handled, then 21, "no
    objects found"; iscsiadm's update exits 0).  Named alone: no record, 21."""
    for t, ip in ((T1, "10.0.0.1"), (T2, "10.0.0.2")):
        assert cli("-m", "node", "-o", "new", "-T", t, "-p", f"{ip}:3260,1").rc == 0
    bad = os.path.join(cli.root, "nodes", T2, "10.0.0.2,3260,1", "default")
    os.unlink(bad)
    os.symlink("/nonexistent/default", bad)
    r = cli("-m", "node", "-o", "show")
    assert r.rc == 0 and f"node.name = {T1}\n" in r.out and T2 not in r.out, r.err
    assert bad in r.err
    r = cli("-m", "node", "-o", "update", "-n", "node.startup", "-v", "automatic")
    assert r.rc == 0 and bad in r.err, r.err
    assert "node.startup = automatic\n" in cli("-m", "node", "-T", T1).out
    assert cli("-m", "node", "-T", T2).rc == 21
    # the listing names it and leaves it out (it listed it, a record not there)
    for args in (("-m", "node"), ("-m", "node", "-P", "1"), ("--json", "-m", "node")):
        r = cli(*args)
        assert r.rc == 0 and T1 in r.out and T2 not in r.out and bad in r.err, (args, r)
    # a delete still finds it, and removes the link
    assert cli("-m", "node", "-T", T2, "-o", "delete").rc == 0
    assert not os.path.lexists(bad)
    r = cli("-m", "node")
    assert r.rc == 0 and r.err == ""


def test_a_text_value_with_blanks_at_an_end_is_refused(cli):
    """A record file's reader strips a value's blanks (idbm_recinfo_config): ``-v ' '`` was
    written, and every later read warned of a line without a value; ``-v ' pw '`` was read
    back as another password.  Both are refused (7), the record unchanged; ``-v ''``
    clears the value."""
    base = ["-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1"]
    assert cli(*base, "-o", "new").rc == 0
    assert cli(*base, "-o", "update", "-n", "node.session.auth.username", "-v", "bob").rc == 0
    before = open(os.path.join(cli.root, "nodes", T1, "10.0.0.1,3260,1", "default")).read()
    r = cli(*base, "-o", "update", "-n", "node.session.auth.username", "-v", "  ")
    assert r.rc == 7 and "blanks only: -v '' clears it" in r.err, r
    r = cli(*base, "-o", "update", "-n", "node.session.auth.password", "-v", " pw1234 ")
    assert r.rc == 7 and "leading or trailing blanks" in r.err and "pw1234" not in r.err, r
    after = open(os.path.join(cli.root, "nodes", T1, "10.0.0.1,3260,1", "default")).read()
    assert after == before
    r = cli(*base, "-o", "update", "-n", "node.session.auth.username", "-v", "")
    assert r.rc == 0
    r = cli(*base, "-o", "show")
    assert "node.session.auth.username = <empty>\n" in r.out and r.err == "", r


def test_corrupt_record_reported_by_path(cli):
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1").rc == 0
    assert cli("-m", "node", "-o", "new", "-T", T2, "-p", "10.0.0.2:3260,1").rc == 0
    bad = os.path.join(cli.root, "nodes", T2, "10.0.0.2,3260,1", "default")
    with open(bad, "wb") as f:
        f.write(b"\x00\xff garbage")
    os.makedirs(os.path.join(cli.root, "nodes", "junk-target", "not-a-portal"))
    r = cli("-m", "node")
    assert r.rc == 0 and f"10.0.0.1:3260,1 {T1}" in r.out
    assert "not-a-portal" in r.err
    # as iscsiadm's for_each_matched_rec: a damaged record is no record (21), so that
    # os-brick makes it again with -o new (it gave up on 6); the file is named
    r = cli("-m", "node", "-T", T2)
    assert r.rc == 21 and bad in r.err and r.err.endswith("No records found\n")
    r = cli("-m", "node", "-T", T2, "-o", "update", "-n", "node.startup", "-v", "automatic")
    assert r.rc == 21 and bad in r.err
    r = cli("-m", "node")  # one readable: shown, exit 0 (the damaged one named)
    assert r.rc == 0
    assert cli("-m", "node", "-o", "show").rc == 0
    assert cli("-m", "node", "-o", "new", "-T", T2, "-p", "10.0.0.2:3260,1").rc == 0
    assert cli("-m", "node", "-T", T2).rc == 0  # made again from the defaults


def test_an_update_that_fails_for_one_record_still_says_what_it_wrote(cli, monkeypatch):
    """``-o update --json`` with one record's write failed (here a full disk): the records
    updated and the one that failed, with the text's exit code (before: no JSON at all)."""
    from iscsictl.db.errors import DBError
    from iscsictl.db.store import NodeDB
    for t, ip in ((T1, "10.0.0.1"), (T2, "10.0.0.2")):
        assert cli("-m", "node", "-o", "new", "-T", t, "-p", f"{ip}:3260,1").rc == 0
    real = NodeDB.update_node_many

    def full_for_t2(self, nid, updates, **kw):
        if nid.target == T2:
            raise DBError(f"cannot write {nid.target}: No space left on device")
        return real(self, nid, updates, **kw)
    monkeypatch.setattr(NodeDB, "update_node_many", full_for_t2)
    r = cli("--json", "-m", "node", "-o", "update", "-n", "node.startup", "-v", "automatic")
    doc = json.loads(r.out)
    assert r.rc == 6 and [n["target"] for n in doc["updated"]] == [T1]
    assert [(n["target"], n["rc"]) for n in doc["failed"]] == [(T2, 6)]
    assert "No space left" in doc["failed"][0]["error"]
    assert "Could not execute operation on all records" in r.err


def test_a_delete_of_records_another_command_deletes_meanwhile_is_no_error(cli, monkeypatch):
    """Two deletes of the same records at once (two scripts' cleanups): a record the other
    deleted first is as asked, not an error (before: "no record ..." for each, then exit
    21, "no objects found", though the rest were deleted)."""
    from iscsictl.db.store import NodeDB
    for t, ip in ((T1, "10.0.0.1"), (T2, "10.0.0.2")):
        assert cli("-m", "node", "-o", "new", "-T", t, "-p", f"{ip}:3260,1").rc == 0
    real = NodeDB.delete_node

    def other_first(self, nid, **kw):
        if nid.target == T2:
            real(self, nid)  # the other command's
        return real(self, nid, **kw)
    monkeypatch.setattr(NodeDB, "delete_node", other_first)
    r = cli("--json", "-m", "node", "-o", "delete")
    assert (r.rc, r.err) == (0, ""), r
    assert [n["target"] for n in json.loads(r.out)["deleted"]] == [T1]
    assert cli("-m", "node").rc == 21


def test_iface_ops(cli):
    r = cli("-m", "iface", "-I", "eth9", "-o", "new")
    assert (r.rc, r.out) == (0, "eth9 updated.\nNew interface eth9 added\n")
    r = cli("-m", "iface", "-I", "eth9", "-o", "update", "-n", "iface.ipaddress", "-v", "10.9.9.9")
    assert (r.rc, r.out) == (0, "eth9 updated.\n")
    assert cli("-m", "iface").out.startswith("eth9 tcp,<empty>,10.9.9.9,<empty>,<empty>\n")
    assert "iface.ipaddress = 10.9.9.9\n" in cli("-m", "iface", "-I", "eth9").out
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "eth9").rc == 0
    r = cli("-m", "iface", "-P", "1")
    assert f"Iface: eth9\n\tTarget: {T1}\n\t\tPortal: 10.0.0.1:3260,1\n" in r.out
    r = cli("-m", "iface", "-I", "eth9", "-o", "delete")
    assert (r.rc, r.out) == (0, "eth9 unbound and deleted.\n")
    assert cli("-m", "node").rc == 21
    assert cli("-m", "iface", "-I", "nope").rc == 6
    r = cli("-m", "iface", "-I", "default", "-o", "delete")  # iscsiadm's iface_conf_delete
    assert (r.rc, r.err) == (7, "iscsictl: iface default is a special interface and cannot "
                                "be deleted.\n")
    r = cli("-m", "iface", "-I", "iser", "-o", "update", "-n", "iface.mtu", "-v", "9000")
    assert (r.rc, r.err) == (7, "iscsictl: iface iser is a special interface and cannot "
                                "be modified.\n"  # then iface_param_update's line
                                "iscsictl: Could not update iface iser: invalid parameter\n")
    assert len(json.loads(cli("--json", "-m", "iface").out)) == 2


@pytest.mark.parametrize("args,code,msg", [
    (["-m", "node", "-o", "new", "-T", "not an iqn", "-p", "10.0.0.1"], 7, "invalid target name"),
    (["-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:99999"], 7, "invalid portal"),
    (["-m", "node", "-p", "bad:port:x:"], 7, "invalid portal"),
    (["-m", "node", "-p", "[fe80::1"], 7, "unterminated"),
    (["-m", "node", "-p", "300.1.1.1"], 7, "not an IPv4 address"),
    (["-m", "node", "-p", "010.0.0.1"], 7, "leading zero (the C library reads it as octal)"),
    # str.isdigit() takes other scripts' digits, which int() turns into numbers or refuses
    (["-m", "node", "-p", "1.2.3.4:\u00b2"], 7, "port '\u00b2' is not 1..65535"),
    (["-m", "node", "-p", "1.2.3.4,\u00b2"], 7, "portal group tag"),
    (["-m", "node", "-o", "new", "-T", T1, "-p", "\u0661.\u0662.\u0663.\u0664"], 7,
     "is not a host name or address"),
    # a DNS label is 1-63 characters (getaddrinfo's idna codec raised UnicodeError)
    (["-m", "discovery", "-t", "st", "-p", "a..b"], 7, "is not a host name or address"),
    (["-m", "discovery", "-t", "st", "-p", "a" * 64], 7, "is not a host name or address"),
    (["-m", "iface", "-I", ".hidden", "-o", "new"], 7, "a leading '.'"),
    (["-m", "iface", "-I", "a\x1b[31mb", "-o", "new"], 7, "control characters"),
    (["-m", "discovery", "-t", "st", "-p", "10.0.0.1:0"], 7, "invalid portal"),
    (["-m", "discovery", "-t", "bogus", "-p", "10.0.0.1"], 7, "not supported"),
    (["-m", "discovery", "-t", "slp", "-p", "10.0.0.1"], 7, "SLP discovery is not fully"),
    (["-m", "discovery", "-t", "static", "-p", "10.0.0.1"], 7, "not supported"),
    (["-m", "node", "-x", "1"], 7, ""),
    (["-m", "node", "-t", "st"], 7, "node mode: option '-t' is not allowed/supported"),
    (["-m", "nodes"], 7, "iscsictl: mode nodes is not yet supported (the modes: discovery, "
                         "discoverydb, node, session, iface, host, fw)\n"),
    # every -m is checked, as iscsiadm's option loop checks each (the last one ran)
    (["-m", "bogus", "-m", "node"], 7, "mode bogus is not yet supported"),
    (["-m", "fw", "-m", "node", "-T", T1, "-o", "delete"], 7,
     "fw mode: option '-T' is not allowed/supported"),
    (["-m", "host", "-C", "chap"], 7, "CHAP mode requires host no and valid operation"),
    (["-m", "host", "-P", "5"], 7, "Invalid info level 5. Try 0 - 4."),
    (["-m", "iface", "-C", "ping", "-I", "default"], 7, "Ping requires destination ipaddress."),
    (["-m", "node", "-o", "frobnicate"], 7, "can not recognize operation: 'frobnicate'"),
    # accepted and ignored before (a listing, exit 0), refused as iscsiadm refuses them
    (["-m", "node", "-L", ""], 7, "Invalid loginall option ."),
    (["-m", "node", "-U", ""], 7, "Invalid logoutall option ."),
    (["-m", "discoverydb", "-o", "new"], 7, "Invalid operation. Operation not supported."),
    (["-m", "discoverydb", "-o", "delete"], 7, "Invalid operation. Operation not supported."),
    (["-m", "discoverydb", "-o", "show", "-o", "update"], 7, "Operation not supported."),
    (["-m", "discovery", "-o", "delete"], 7, "iscsictl: Invalid operation.\n"),
    (["-m", "discovery", "-o", "nonpersistent"], 7, "iscsictl: Invalid operation.\n"),
    # acted on before (a login started, a listing), refused as iscsiadm's exec_node_op does
    (["-m", "node", "-T", T1, "-l", "-u"], 7, "Both login and logout passed in"),
    (["-m", "node", "-T", T1, "-l", "-o", "delete"], 7, "Login/logout and op passed in"),
    (["-m", "node", "-o", "nonpersistent"], 7, "operation is not supported."),
    # the first of two ops was run (an iface written), refused as exec_iface_op does
    (["-m", "iface", "-I", "eth9", "-o", "new", "-o", "delete"], 7, "one operation at a time"),
    (["-m", "iface", "-I", "default", "-o", "show", "-o", "update"], 7, "one operation"),
    ([], 7, "no mode"),
])
def test_bad_arguments(cli, args, code, msg):
    r = cli(*args)
    assert r.rc == code, r.err
    assert msg in r.err
    assert "Traceback" not in r.err


def test_help_and_process(cli):
    r = cli.proc("--help")
    assert r.rc == 0 and "-m node" in r.out
    r = cli.proc("-m", "node", "--help")
    assert r.rc == 0 and "--probe" in r.out and "--targetname" in r.out
    # each mode's own options, their arguments: no --probe, --force or --safe outside node
    # and session modes; what a mode takes only as iscsiadm does, doing nothing, said so
    session = cli.proc("-m", "session", "--help").out
    assert "  -r, --sid SID " in session and "--force" in session and "--probe" not in session
    assert "  -i, --interval SECONDS  taken and ignored, as by iscsiadm\n" in session
    host = cli.proc("-m", "host", "--help").out
    assert "--force" not in host and "  -t, --type TYPE         taken and ignored" in host
    assert "  -h, --help " in host and max(map(len, host.splitlines()[2:])) <= 102
    r = cli.proc("-m", "node")
    assert (r.rc, r.err) == (21, "iscsictl: No records found\n")
    r = cli.proc("-m", "node", "-p", "x::y::z")
    assert r.rc == 7 and r.err.startswith("iscsictl: invalid portal") and "Traceback" not in r.err


def test_cli_does_not_import_protocol_for_listing(cli):
    import subprocess, sys
    code = ("import sys, io; from iscsictl.cli.main import run; "
            "from iscsictl.cli.output import Output; "
            f"run(['--db-root', {cli.root!r}, '--config-root', {cli.root!r}, '-m', 'node'], "
            "Output(io.StringIO(), io.StringIO())); "
            "print(sorted(m for m in sys.modules if m.startswith('iscsictl.protocol') "
            "or m.startswith('iscsictl.transport') or m.startswith('iscsictl.netlink')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("encoding,name,want", [("utf-8", b"x\xff", b"x\xff"),
                                                ("ascii", "x\u00e9".encode(), b"x\\xe9")])
def test_a_name_the_output_cannot_encode_is_written_not_fatal(cli, encoding, name, want):
    """With a strict stdout (a UTF-8 locale; PYTHONIOENCODING here), a name that is not
    UTF-8 on disk (a lone surrogate once decoded) is written back as its byte, as iscsiadm
    writes it, or escaped where even that cannot be written: the command does not stop
    half done (the iface was made, then its line failed: exit 1)."""
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    cp = subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", cli.root,
                         "--config-root", cli.root, "-m", "iface", "-I", name, "-o", "new"],
                        capture_output=True, env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert want + b" added" in cp.stdout and b"Traceback" not in cp.stderr
    listing = subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", cli.root,
                              "--config-root", cli.root, "-m", "iface"],
                             capture_output=True, env=env, timeout=60)
    assert listing.returncode == 0 and listing.stdout.startswith(want + b" ")


def test_a_fully_qualified_host_name_is_a_portal(cli):
    """'storage.example.com.' (RFC 1034 §3.1's absolute name, one final dot) names a host
    as iscsiadm takes it; it was refused as an empty label before."""
    r = cli("-m", "node", "-o", "new", "-T", T1, "-p", "storage.example.com.:3261,2")
    assert r.rc == 0, r.err
    assert cli("-m", "node").out == f"storage.example.com.:3261,2 {T1}\n"
    r = cli("-m", "node", "-T", T1, "-p", "storage.example.com.:3261", "-o", "delete")
    assert r.rc == 0, r.err
    assert cli("-m", "node", "-p", "storage.example.com..").rc == 7


def test_an_iface_update_reaches_the_node_records_bound_to_it(cli):
    """A node record holds a copy of its iface's values, which a login reads (the device it
    binds to, the initiator name): `-m iface -o update` updates those records too, as
    iscsiadm's iface_param_update does (before, they kept the old NIC)."""
    assert cli("-m", "iface", "-I", "eth9", "-o", "new").rc == 0
    r = cli("-m", "iface", "-I", "eth9", "-o", "update", "-n", "iface.net_ifacename",
            "-v", "eth1")
    assert r.rc == 0, r.err
    for portal in ("10.0.0.1:3260,1", "10.0.0.2:3260,1"):
        r = cli("-m", "node", "-o", "new", "-T", T1, "-p", portal, "-I", "eth9")
        assert r.rc == 0, r.err
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.3:3260,1").rc == 0
    # both pairs of one command, as iscsiadm applies them (before: the last -n with the
    # last -v only); a bad pair among them and none is written
    r = cli("-m", "iface", "-I", "eth9", "-o", "update", "-n", "iface.net_ifacename",
            "-v", "eth3", "-n", "iface.mtu", "-v", "abc")
    assert r.rc == 7 and "iface.mtu" in r.err
    assert "iface.net_ifacename = eth1\n" in cli("-m", "iface", "-I", "eth9").out
    r = cli("-m", "iface", "-I", "eth9", "-o", "update", "-n", "iface.net_ifacename",
            "-v", "eth2", "-n", "iface.initiatorname", "-v", "iqn.2026-11.org.example:host-b")
    assert (r.rc, r.out) == (0, "eth9 updated.\n"), r.err
    for portal in ("10.0.0.1:3260", "10.0.0.2:3260"):
        shown = cli("-m", "node", "-T", T1, "-p", portal, "-I", "eth9", "-o", "show").out
        assert "iface.net_ifacename = eth2\n" in shown
        assert "iface.initiatorname = iqn.2026-11.org.example:host-b\n" in shown
    other = cli("-m", "node", "-T", T1, "-p", "10.0.0.3:3260", "-o", "show").out
    assert "iface.net_ifacename = <empty>\n" in other  # bound to default: untouched


def test_an_iface_num_is_the_kernels_u32_in_the_iface_and_its_node_records_alike(cli):
    """iface.iface_num (iscsi_iface_param_info's u32): -3 was taken by the iface record and
    refused by its nodes' copies (exit 7 after "updated.", the two out of step), and
    4294967295 refused by the iface; now both records take the same values."""
    assert cli("-m", "iface", "-I", "eth9", "-o", "new").rc == 0
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "eth9").rc == 0
    base = ("-m", "iface", "-I", "eth9", "-o", "update", "-n", "iface.iface_num", "-v")
    r = cli(*base, "-3")
    assert r.rc == 7 and r.out == "" and "out of range [0, 4294967295]" in r.err
    r = cli(*base, "4294967295")
    assert (r.rc, r.out) == (0, "eth9 updated.\n"), r.err
    shown = cli("-m", "node", "-T", T1, "-I", "eth9", "-o", "show").out
    assert "iface.iface_num = 4294967295\n" in shown
    assert "iface.iface_num = 4294967295\n" in cli("-m", "iface", "-I", "eth9").out


def test_o_new_beside_l_makes_the_record_and_logs_in_to_nothing_as_iscsiadm(cli):
    """exec_node_op acts on -o new before it looks at -l/-u (nothing runs iscsictld here:
    a login tried would exit 20)."""
    r = cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1", "-l")
    assert r.rc == 0 and r.out.startswith("New iSCSI node"), (r.rc, r.err)
    assert cli("-m", "node").out == f"10.0.0.1:3260,1 {T1}\n"


def test_a_tag_in_p_selects_nothing_as_in_iscsiadm(cli):
    """iscsiadm matches node records by name, address, port and iface
    (__iscsi_match_session), not by the tag a -p may carry; ',-1', which -P 1 prints for a
    record of unknown tag, is taken too (before: 21 for a tag that differed, 7 for -1)."""
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1").rc == 0
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.2:3260").rc == 0
    r = cli("-m", "node", "-T", T1, "-p", "10.0.0.1:3260,2", "-o", "update",
            "-n", "node.startup", "-v", "automatic")
    assert r.rc == 0, r.err
    assert "node.startup = automatic" in cli("-m", "node", "-T", T1, "-p", "10.0.0.1").out
    assert "Portal: 10.0.0.2:3260,-1" in cli("-m", "node", "-P", "1").out
    assert cli("-m", "node", "-T", T1, "-p", "10.0.0.2:3260,-1").rc == 0
    assert cli("-m", "node", "-T", T1, "-p", "10.0.0.1,7", "-o", "delete").rc == 0
    assert cli("-m", "node").out == f"10.0.0.2:3260,4294967295 {T1}\n"  # as iscsiadm prints it
    # and the portal as that listing prints it, as iscsiadm's str_to_ipport reads it (an
    # unsigned 4294967295 into an int: -1), so `iscsiadm -m node | while read p t` works
    r = cli("-m", "node", "-T", T1, "-p", "10.0.0.2:3260,4294967295", "-o", "update",
            "-n", "node.startup", "-v", "automatic")
    assert r.rc == 0, r.err
    assert "node.startup = automatic" in cli("-m", "node", "-T", T1, "-p", "10.0.0.2").out
    assert cli("-m", "node", "-o", "new", "-T", T2, "-p", "[fd00::1]:3260,4294967295").rc == 0
    assert f"[fd00::1]:3260,4294967295 {T2}\n" in cli("-m", "node").out


def test_an_iface_binding_is_not_changed_from_one_kind_to_the_other(cli):
    """An iface bound by its device name cannot be re-bound by MAC by an update, nor the
    other way (iscsiadm's verify_iface_params; before, both keys were written and the
    binding became ambiguous): 7, iscsiadm's message, the file unchanged."""
    for name, key, value, other, other_value in (
            ("byname", "iface.net_ifacename", "eth1", "iface.hwaddress", "52:54:00:aa:bb:02"),
            ("bymac", "iface.hwaddress", "52:54:00:aa:bb:02", "iface.net_ifacename", "eth1")):
        assert cli("-m", "iface", "-I", name, "-o", "new").rc == 0
        assert cli("-m", "iface", "-I", name, "-o", "update", "-n", key, "-v", value).rc == 0
        before = cli("-m", "iface", "-I", name).out
        r = cli("-m", "iface", "-I", name, "-o", "update", "-n", other, "-v", other_value)
        assert r.rc == 7 and "Can not update interface binding from " \
            f"{key.split('.')[1]} to {other.split('.')[1]}. You must delete" in r.err, r.err
        assert cli("-m", "iface", "-I", name).out == before
        r = cli("-m", "iface", "-I", name, "-o", "update", "-n", key, "-v", value)
        assert r.rc == 0, r.err  # the same binding may change its value
    # an unbound iface may be given both in one command, new or updated (checked against
    # the iface as read, as verify_iface_params: the second key tripped on the first)
    both = ("-n", "iface.net_ifacename", "-v", "eth1", "-n", "iface.hwaddress",
            "-v", "52:54:00:aa:bb:02")
    for name, ops in (("newboth", ("-o", "new")), ("updboth", ("-o", "update"))):
        if name == "updboth":
            assert cli("-m", "iface", "-I", name, "-o", "new").rc == 0
        r = cli("-m", "iface", "-I", name, *ops, *both)
        assert r.rc == 0 and r.err == "", r.err
        assert cli("-m", "iface").out.count(f"{name} tcp,52:54:00:aa:bb:02,<empty>,eth1,") == 1


def test_closed_or_full_stdout_and_stderr(cli):
    """Started with stdout or stderr closed, a command runs as usual and exits with its own
    code (what it would print goes nowhere, as iscsiadm's printf to a closed descriptor);
    a result that cannot be written (a full disk) is said on stderr and exit 1, never 0 and
    never a traceback."""
    import shlex
    import subprocess
    import sys

    cli("-m", "node", "-o", "new", "-T", "iqn.2001-04.com.example:t1", "-p", "10.0.0.1:3260,1")
    base = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "iscsictl.cli", "--db-root",
                                             cli.root, "--config-root", cli.root))

    def sh(args, redirect):
        cp = subprocess.run(["sh", "-c", f"{base} {args} {redirect}"], capture_output=True,
                            text=True, timeout=60)
        return cp.returncode, cp.stdout, cp.stderr

    assert sh("-m node", ">&-") == (0, "", "")
    assert sh("-m node -T iqn.2001-04.com.example:none", "2>&-") == (21, "", "")
    assert sh("-m node", "2>&-") == (0, "10.0.0.1:3260,1 iqn.2001-04.com.example:t1\n", "")
    for args in ("-m node", "-m node -o show", "-m node --json"):
        rc, out, err = sh(args, ">/dev/full")
        assert (rc, err) == (1, "iscsictl: cannot write the output: No space left on "
                                "device\n"), args


def test_an_iface_keeps_its_transport_and_a_damaged_one_can_be_deleted(cli):
    """iface.transport_name cannot be emptied (a file without it is no iface to open-iscsi:
    it could be neither shown, nor updated back, nor deleted); an iface file damaged by hand
    so is still deleted, with its node records."""
    assert cli("-m", "iface", "-I", "if0", "-o", "new").rc == 0
    for blank in ("", " "):
        r = cli("-m", "iface", "-I", "if0", "-o", "update", "-n", "iface.transport_name",
                "-v", blank)
        assert r.rc == 7 and "an iface needs its transport" in r.err, r
    assert "iface.transport_name = tcp\n" in cli("-m", "iface", "-I", "if0").out
    cli("-m", "node", "-o", "new", "-T", "iqn.2001-04.com.example:t1", "-p", "10.0.0.1:3260,1",
        "-I", "if0")
    path = os.path.join(cli.root, "ifaces", "if0")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("iface.transport_name = tcp\n", ""))
    assert cli("-m", "iface", "-I", "if0").rc == 6
    r = cli("-m", "iface", "-I", "if0", "-o", "delete")
    assert r.rc == 0 and "deleted all the same" in r.err and "if0 unbound and deleted." in r.out
    assert not os.path.exists(path) and cli("-m", "node").rc == 21


def test_a_name_not_in_utf8_is_written_as_its_bytes_on_stderr_too(cli):
    """A name from the command line that is not UTF-8 comes back as the bytes given, on
    stderr as on stdout (iscsiadm's printf), not as Python's \\udcff escapes."""
    import subprocess
    import sys

    cp = subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", cli.root,
                         "--config-root", cli.root, "-m", "iface", "-I", b"if\xff\xfe"],
                        capture_output=True, timeout=60)
    assert cp.returncode == 6 and b"if\xff\xfe" in cp.stderr and b"udcff" not in cp.stderr


def test_iface_names_and_new_ifaces_are_refused_as_iscsiadm_refuses_them(cli):
    """-I is 1 to 64 bytes in every mode (iface_alloc, as iscsiadm reads it: 7); a name
    of 40 two-byte characters got into the DB, where iscsiadm cannot read or delete it.
    -o new of a built-in is 7 with iface_conf_write's words (it was 6, "exists
    already"), and a refused -o new ends with iscsiadm's "Could not create" line."""
    long = "\u00e9" * 40  # 80 bytes
    for args in (("-m", "iface", "-I", long, "-o", "new"), ("-m", "node", "-I", ""),
                 ("-m", "discovery", "-t", "st", "-p", "127.0.0.1", "-I", "a" * 65)):
        r = cli(*args)
        assert r.rc == 7 and "Invalid iface name " in r.err \
            and "Must be from 1 to 64 characters." in r.err, (args, r.err)
    assert not os.path.exists(os.path.join(cli.root, "ifaces"))
    assert cli("-m", "iface", "-I", "\u00e9" * 32, "-o", "new").rc == 0  # 64 bytes
    r = cli("-m", "iface", "-I", "iser", "-o", "new")
    assert (r.rc, r.err) == (7, "iscsictl: iface iser is a special interface and is not "
                                "stored in /etc/iscsi/ifaces.\n"
                                "iscsictl: Could not create new interface iser.\n")


def test_a_new_iface_that_exists_is_kept_with_the_values_given_and_exit_0(cli):
    """``-o new`` of an iface that exists: iscsiadm rewrites it from the defaults (its
    binding lost) and exits 0; iscsictl keeps it, applies the -n/-v given, says so and
    exits 0, so that a provisioning script's ``-o new`` then ``-o update`` runs again
    (before: 6, "already exists", and a ``set -e`` script stopped there)."""
    assert cli("-m", "iface", "-I", "eth7", "-o", "new", "-n", "iface.net_ifacename",
               "-v", "eth1").rc == 0
    r = cli("-m", "iface", "-I", "eth7", "-o", "new", "-n", "iface.initiatorname",
            "-v", "iqn.2026-11.org.example:eth7")
    assert (r.rc, r.out) == (0, "eth7 updated.\n")  # not "New interface eth7 added"
    assert r.err == ("iscsictl: interface eth7 already exists: kept as it is, not reset to "
                     "the defaults\n")
    shown = cli("-m", "iface", "-I", "eth7").out
    assert "iface.net_ifacename = eth1\n" in shown
    assert "iface.initiatorname = iqn.2026-11.org.example:eth7\n" in shown


def test_iface_mode_takes_the_first_of_several_ifaces_whatever_the_operation(cli):
    """iscsiadm's main takes the first -I in iface mode, for every operation, and says so
    by its name; before, -o new made each one and a listing showed each (exit 6 for one
    not there), and -o delete said it in node mode's words."""
    warning = "iscsictl: iface mode only accepts one interface. Using the first one new0.\n"
    r = cli("-m", "iface", "-I", "new0", "-I", "new1", "-o", "new")
    assert (r.rc, r.out, r.err) == (0, "new0 updated.\nNew interface new0 added\n", warning)
    assert not os.path.exists(os.path.join(cli.root, "ifaces", "new1"))
    r = cli("-m", "iface", "-I", "new0", "-I", "nosuch")
    assert r.rc == 0 and r.err == warning and "iface.iscsi_ifacename = new0\n" in r.out


def test_several_ifaces_in_node_and_iface_mode_act_through_the_first_only(tmp_path):
    """iscsiadm's main: node mode and iface mode take the first -I and say so ("NODE mode
    only accepts one interface. Using the first one ...").  Before: each one,
    so that ``-m node -o delete -I a -I b`` and ``-m iface -o delete -I a -I b`` deleted
    both ifaces' records."""
    import io

    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output

    root = tmp_path / "db"
    root.mkdir()
    (root / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.x:init\n")

    def cli(*args):
        out, err = io.StringIO(), io.StringIO()
        rc = run(["--db-root", str(root), "--config-root", str(root), *args], Output(out, err))
        return rc, out.getvalue(), err.getvalue()
    for name in ("ifa", "ifb"):
        assert cli("-m", "iface", "-I", name, "-o", "new")[0] == 0
        assert cli("-m", "node", "-T", "iqn.2003-01.org.example:t", "-p", "10.0.0.1:3260,1",
                   "-I", name, "-o", "new")[0] == 0
    rc, out, err = cli("-m", "node", "-I", "ifb", "-I", "nonexistent", "-o", "show")
    assert (rc, err) == (0, "iscsictl: NODE mode only accepts one interface. Using the first "
                            "one driver  hwaddress  ipaddress .\n")  # iscsiadm's, to the byte
    assert "iface.iscsi_ifacename = ifb" in out  # the later -I never read (it was 3)
    assert cli("-m", "node", "-I", "nonexistent", "-I", "ifb")[0] == 3
    rc, _, err = cli("-m", "node", "-o", "delete", "-I", "ifa", "-I", "ifb")
    assert rc == 0 and "NODE mode only accepts one interface. Using the first one driver " \
        " hwaddress  ipaddress ." in err
    assert cli("-m", "node", "-I", "ifb")[0] == 0  # ifb's record is still there
    rc, _, err = cli("-m", "iface", "-o", "delete", "-I", "ifb", "-I", "ifa")
    assert rc == 0 and err == "iscsictl: iface mode only accepts one interface. Using the " \
        "first one ifb.\n"
    assert cli("-m", "iface", "-I", "ifa")[0] == 0 and cli("-m", "iface", "-I", "ifb")[0] != 0
    assert cli("-m", "node")[0] == 21  # ifb's record went with ifb, ifa's by -o delete


def test_a_be2iscsi_vlan_change_reaches_the_ports_other_iface(cli):
    """be2iscsi's ipv4 and ipv6 ifaces of one port share its VLAN: an iface's iface.vlan_*
    change goes to every iface of the same transport, hwaddress and iface_num, as
    iscsiadm's update_sync_params (the template's sync_vlan_settings); its other settings,
    another port's and another driver's ifaces stay (before: the other iface kept its old
    VLAN, and an applyall sent the port two)."""
    mac = "00:00:c9:00:00:01"
    for name, t, hw in ((f"be2iscsi.{mac}.ipv4.0", "be2iscsi", mac),
                        (f"be2iscsi.{mac}.ipv6.0", "be2iscsi", mac),
                        ("be2iscsi.other.ipv4.0", "be2iscsi", "00:00:c9:00:00:02"),
                        (f"qla4xxx.{mac}.ipv4.0", "qla4xxx", mac)):
        assert cli("-m", "iface", "-I", name, "-o", "new").rc == 0
        assert cli("-m", "iface", "-I", name, "-o", "update", "-n", "iface.transport_name",
                   "-v", t, "-n", "iface.hwaddress", "-v", hw).rc == 0
    assert cli("-m", "node", "-T", "iqn.2001-04.com.example:v", "-p", "10.0.0.1", "-I",
               f"be2iscsi.{mac}.ipv6.0", "-o", "new").rc == 0
    r = cli("-m", "iface", "-I", f"be2iscsi.{mac}.ipv4.0", "-o", "update",
            "-n", "iface.vlan_id", "-v", "100", "-n", "iface.mtu", "-v", "9000")
    assert r.rc == 0, r.err

    def value(name, key):
        return next(x.split(" = ")[1] for x in cli("-m", "iface", "-I", name).out.splitlines()
                    if x.startswith(key + " = "))
    assert [value(n, "iface.vlan_id") for n in (f"be2iscsi.{mac}.ipv4.0",
                                                f"be2iscsi.{mac}.ipv6.0",
                                                "be2iscsi.other.ipv4.0",
                                                f"qla4xxx.{mac}.ipv4.0")] == ["100", "100",
                                                                                "0", "0"]
    assert value(f"be2iscsi.{mac}.ipv6.0", "iface.mtu") == "0"
    node = cli("-m", "node", "-T", "iqn.2001-04.com.example:v").out
    assert "iface.vlan_id = 100\n" in node  # its copy of the iface too
    # a change of port and VLAN at once: the VLAN goes to the old port's ifaces (matched
    # before the update, as iscsiadm), not to the new port's
    r = cli("-m", "iface", "-I", f"be2iscsi.{mac}.ipv4.0", "-o", "update", "-n",
            "iface.hwaddress", "-v", "00:00:c9:00:00:02", "-n", "iface.vlan_id", "-v", "7")
    assert r.rc == 0, r.err
    assert [value(n, "iface.vlan_id") for n in (f"be2iscsi.{mac}.ipv6.0",
                                                "be2iscsi.other.ipv4.0")] == ["7", "0"]


def test_an_iface_takes_the_keys_of_its_address_block_only(cli):
    """iscsiadm's iface_conf_update offers the keys of the iface's block as it is
    (iface_get_iptype: its address, else 'ipv6' in its name): a key of the other block is
    'Invalid param name', 7, nothing written (before: 'updated.', and the value was not
    written, the file holding one block); setting an IPv6 address moves it over."""
    assert cli("-m", "iface", "-I", "p1", "-o", "new").rc == 0
    r = cli("-m", "iface", "-I", "p1", "-o", "update", "-n", "iface.ipv6_autocfg", "-v", "nd")
    assert (r.rc, r.out) == (7, "")
    assert "Cannot modify iface.ipv6_autocfg. Invalid param name." in r.err
    assert cli("-m", "iface", "-I", "p1", "-o", "update", "-n", "iface.gateway",
               "-v", "10.0.0.1").rc == 0
    assert "iface.gateway = 10.0.0.1\n" in cli("-m", "iface", "-I", "p1").out
    assert cli("-m", "iface", "-I", "p1", "-o", "update", "-n", "iface.ipaddress",
               "-v", "fd00::9").rc == 0
    r = cli("-m", "iface", "-I", "p1", "-o", "update", "-n", "iface.ipv6_autocfg", "-v", "nd")
    assert (r.rc, r.out) == (0, "p1 updated.\n")
    with open(os.path.join(cli.root, "ifaces", "p1")) as f:
        assert "iface.ipv6_autocfg = nd\n" in f.read()


def test_show_writes_each_record_as_it_reads_it(cli, monkeypatch):
    """``-m node -o show`` (text and ``--json``) of many records: each record written out
    once read, the JSON the one array ``json.dumps`` makes of the list, a damaged record
    named and left out (before: every record read, then one document of all: 610 MiB for
    16000 records)."""
    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output
    from iscsictl.db.store import NodeDB
    for i in range(3):
        assert cli("-m", "node", "-o", "new", "-T", f"{T1}-{i}", "-p", "10.0.0.1:3260,1").rc == 0
    with open(f"{cli.root}/nodes/{T1}-1/10.0.0.1,3260,1/default", "w") as f:
        f.write("\0")
    real, reads = NodeDB.read_node, []

    def read_node(self, nid):
        reads.append(nid.target)
        return real(self, nid)
    monkeypatch.setattr(NodeDB, "read_node", read_node)
    seen = []

    class Out(io.StringIO):
        def write(self, text):
            seen.append((len(reads), text))
            return super().write(text)
    for args in ((), ("--json",)):
        reads.clear(), seen.clear()
        out, err = Out(), io.StringIO()
        rc = run(["--db-root", cli.root, "--config-root", cli.root, *args, "-m", "node",
                  "-o", "show"], Output(out, err))
        assert rc == 0 and f"{T1}-1/10.0.0.1,3260,1/default" in err.getvalue()
        assert seen[0][0] == 1 and len(reads) == 3
        if args:
            doc = json.loads(out.getvalue())
            assert out.getvalue() == json.dumps(doc, indent=2) + "\n"
            assert [d["node.name"] for d in doc] == [f"{T1}-0", f"{T1}-2"]
        else:
            assert out.getvalue().count("# BEGIN RECORD") == 2


def test_deleting_a_builtin_iface_keeps_its_records(cli):
    """``-m iface -I default -o delete`` (or ``iser``) is refused before anything is done:
    iscsiadm deletes every node record bound to it, then refuses the iface
    (exec_iface_op's delete_node of each, then iface_conf_delete), so that one command
    emptied a software-iSCSI host's DB while saying nothing was deleted."""
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1").rc == 0
    assert cli("-m", "node", "-o", "new", "-T", T2, "-p", "10.0.0.2:3260,1", "-I", "iser").rc == 0
    for name in ("default", "iser"):
        r = cli("-m", "iface", "-I", name, "-o", "delete")
        assert (r.rc, r.err) == (7, f"iscsictl: iface {name} is a special interface and "
                                    "cannot be deleted.\n")
    assert cli("-m", "node").out == f"10.0.0.1:3260,1 {T1}\n10.0.0.2:3260,1 {T2}\n"


def test_iface_tree_leaves_out_a_file_that_is_no_iface(cli):
    """``-m iface -P 1`` leaves out, with a warning, an iface file without
    iface.transport_name, as the flat listing does (iscsiadm's print_iface_tree reads the
    ifaces with iscsi_ifaces_get, which skips it)."""
    assert cli("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1").rc == 0
    os.makedirs(f"{cli.root}/ifaces", exist_ok=True)
    with open(f"{cli.root}/ifaces/notrans", "w") as f:
        f.write("iface.iscsi_ifacename = notrans\niface.net_ifacename = eth3\n")
    flat, tree = cli("-m", "iface"), cli("-m", "iface", "-P", "1")
    assert "notrans" not in flat.out and "notrans" not in tree.out
    assert tree.out.startswith(f"Iface: default\n\tTarget: {T1}\n")
    assert tree.err == flat.err and "notrans" in tree.err
