"""SendTargets discovery overlaps its file writes with the target's work, and keeps
open-iscsi's order on the wire and in the DB: the discovery record is written while the
first Login Request is out (and written when the discovery fails), the node records while
the Logout is, whose response is still awaited before the connection closes.  Against the
fake target on a loopback socket, holding a response until the files are there."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

from protocol.fake_target import FakeTarget, TargetConfig

TARGETS = [f"iqn.2003-01.org.example:held{i}" for i in range(3)]


class HeldTarget:
    """The fake target serving one connection on 127.0.0.1.  It holds its first Login
    Response until ``login_until()``, and its Logout Response until ``logout_until()`` is
    true (at most 5 s each), noting whether that happened and whether the initiator closed
    the connection meanwhile."""

    def __init__(self, login_until=lambda: True, logout_until=lambda: True, port=0):
        self.target = FakeTarget(TargetConfig(
            targets=[(t, ["127.0.0.1:3260,1"]) for t in TARGETS]))
        self.until = {"login": login_until, "logout": logout_until}
        self.held: dict[str, bool] = {}
        self.holding = {"login": threading.Event(), "logout": threading.Event()}
        self.closed_while_held = False
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.accepted.set()
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    self.target.receive_data(data)
                    if "login" not in self.held:
                        self._hold(conn, "login")
                    if self.target.logout is not None and "logout" not in self.held:
                        self._hold(conn, "logout")
                    out = self.target.data_to_send()
                    if out:
                        conn.sendall(out)
            except ConnectionResetError:  # the initiator gave up on the session
                pass

    def _hold(self, conn: socket.socket, what: str) -> None:
        self.holding[what].set()
        deadline = time.monotonic() + 5
        while not self.until[what]() and time.monotonic() < deadline:
            if select.select([conn], [], [], 0.005)[0] and not conn.recv(1, socket.MSG_PEEK):
                self.closed_while_held = True
                break
        self.held[what] = self.until[what]()

    def close(self) -> None:
        if not self.accepted.is_set():  # the discovery stopped before it connected
            socket.create_connection(("127.0.0.1", self.port)).close()
        self.thread.join(10)
        self.listener.close()


def _discover(cli, target: HeldTarget):
    try:
        return cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{target.port}")
    finally:
        target.close()


def test_records_are_written_while_the_logout_is_on_the_wire(cli):
    def written():
        return all(os.path.isfile(os.path.join(cli.root, "nodes", t, "127.0.0.1,3260,1",
                                               "default")) for t in TARGETS)

    target = HeldTarget(logout_until=written)
    r = _discover(cli, target)
    assert r.rc == 0, r.err
    assert sorted(r.out.splitlines()) == [f"127.0.0.1:3260,1 {t}" for t in TARGETS]
    assert target.target.logout is not None  # the session was logged out
    assert target.held["logout"] is True  # the records were there before the Logout Response
    assert not target.closed_while_held  # and the response was awaited
    assert target.target.violations == []


def test_the_discovery_record_is_there_before_the_login_ends(cli):
    target = HeldTarget(login_until=lambda: os.path.isfile(st_config))
    st_config = os.path.join(cli.root, "send_targets", f"127.0.0.1,{target.port}", "st_config")
    r = _discover(cli, target)
    assert r.rc == 0, r.err
    assert target.held["login"] is True and not target.closed_while_held
    for t in TARGETS:  # linked from the discovery record's directory
        assert os.path.islink(os.path.join(os.path.dirname(st_config),
                                           f"{t},127.0.0.1,3260,1,default"))


def test_a_failed_discovery_still_leaves_its_record(cli):
    """As iscsiadm (idbm_add_discovery before the exchange): a discovery of a portal that
    refuses the connection leaves its discovery record, and no node record."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{port}")
    assert r.rc != 0 and "Could not perform SendTargets discovery" in r.err
    assert os.path.isfile(os.path.join(cli.root, "send_targets", f"127.0.0.1,{port}",
                                       "st_config"))
    assert cli("-m", "discovery").out == f"127.0.0.1:{port} via sendtargets\n"
    assert not os.path.exists(os.path.join(cli.root, "nodes"))


def test_a_discovery_record_that_cannot_be_written_is_a_db_error(cli):
    """The record written while the Login is out fails: the discovery stops there with the
    DB's error (not a SendTargets failure) and writes no node record."""
    open(os.path.join(cli.root, ".locks"), "w").close()  # a file where the lock dir goes
    r = _discover(cli, HeldTarget())
    assert r.rc == 6 and "Could not perform SendTargets discovery" not in r.err, r.err
    assert "cannot create lock dir" in r.err
    assert not os.path.exists(os.path.join(cli.root, "nodes"))


def test_meanwhile_runs_between_the_login_request_and_its_response():
    """discovering()'s ``meanwhile`` (the discovery record's write) runs once the target
    holds the Login Request and before its response is read (the target holds it until
    then), and only once."""
    from iscsictl.discovery.sendtargets import discovering
    from iscsictl.protocol.config import LoginConfig

    ran = threading.Event()
    calls = []

    def meanwhile():
        calls.append(target.holding["login"].wait(5))
        ran.set()

    target = HeldTarget(login_until=ran.is_set)
    try:
        cfg = LoginConfig.from_discovery({}, "iqn.2026-11.org.example:i")
        with discovering("127.0.0.1", target.port, cfg, meanwhile=meanwhile) as found:
            assert sorted(t.name for t in found) == TARGETS
    finally:
        target.close()
    assert calls == [True] and target.held["login"] is True


def test_a_portal_without_a_tag_is_printed_as_iscsiadms_discovery_prints_it(cli):
    """A TargetAddress with no portal group tag: the record's tag is unknown (-1), which a
    discovery prints as -1 (iscsiadm's idbm_print_node_flat, '%d') and the node listing as
    4294967295 (Debian's iscsiadm 2.1.8 there); the discovery printed 4294967295 too."""
    held = HeldTarget()
    held.target = FakeTarget(TargetConfig(targets=[(TARGETS[0], ["127.0.0.1:3260"])]))
    r = _discover(cli, held)
    assert (r.rc, r.out) == (0, f"127.0.0.1:3260,-1 {TARGETS[0]}\n"), r.err
    assert cli("-m", "node").out == f"127.0.0.1:3260,4294967295 {TARGETS[0]}\n"


def test_a_portal_without_a_tag_is_logged_in_by_discoverys_l(cli, monkeypatch):
    """``-l``: the record of tag -1 (the old-style file ``<ip>,<port>``) is read and logged
    in to, as iscsiadm's login_portals after the discovery (before: "no record
    .../127.0.0.1,3260,-1/default", left out, exit 21)."""
    from iscsictl.cli import kernel_ops

    logged_in = []
    monkeypatch.setattr(kernel_ops, "login_records", lambda records, *a, **kw: (
        logged_in.extend(r["node.name"] for r in records), 0)[1])
    held = HeldTarget()
    held.target = FakeTarget(TargetConfig(targets=[(TARGETS[0], ["127.0.0.1:3260"])]))
    try:
        r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{held.port}", "-l")
    finally:
        held.close()
    assert (r.rc, r.err, logged_in) == (0, "", [TARGETS[0]])


def test_l_logs_in_where_the_ops_wrote_no_record_and_p2_prints_nothing(cli, monkeypatch):
    """``-l`` beside ops that write no node record (``-o delete``, ``-o show``) logs in to
    what was found with records made in memory, as iscsiadm's login_portals of its record
    list (before: "no record", exit 21, nothing tried); and ``-P 2`` prints no listing, as
    iscsiadm's exec_disc_op_on_recs prints only at levels 0 and 1 (before: -P 1's tree)."""
    from iscsictl.cli import kernel_ops

    logged_in = []
    monkeypatch.setattr(kernel_ops, "login_records", lambda records, *a, **kw: (
        logged_in.extend(r["node.name"] for r in records), 0)[1])
    for args in (["-o", "delete", "-l"], ["-o", "show", "-l"], ["-P", "2"]):
        held = HeldTarget()
        held.target = FakeTarget(TargetConfig(targets=[(TARGETS[0], ["127.0.0.1:3260,1"])]))
        try:
            r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{held.port}", *args)
        finally:
            held.close()
        assert (r.rc, r.err) == (0, ""), args
        if "-P" in args:
            assert r.out == ""
    assert logged_in == [TARGETS[0]] * 2


def test_a_portal_without_a_tag_no_longer_answered_is_deleted_as_stale(cli):
    """The old-style record (tag -1) a discovery made has no link under the discovery
    record (idbm_add_node makes none): found by its node.discovery_* fields, as
    iscsiadm's delete_stale_rec finds it, it is deleted when the portal no longer names
    the target (before: kept for ever beside the target's new record)."""
    port = 0  # the same portal both times
    for targets in ([(TARGETS[0], ["127.0.0.1:3260"]), (TARGETS[1], ["127.0.0.1:3260,1"])],
                    [(TARGETS[0], ["127.0.0.9:3260,1"]), (TARGETS[1], ["127.0.0.1:3260,1"])]):
        held = HeldTarget(port=port)
        port = held.port
        held.target = FakeTarget(TargetConfig(targets=targets))
        assert _discover(cli, held).rc == 0
    assert cli("-m", "node").out == (f"127.0.0.9:3260,1 {TARGETS[0]}\n"
                                     f"127.0.0.1:3260,1 {TARGETS[1]}\n")


def test_a_portal_without_a_tag_found_again_gets_no_link(cli):
    """A second discovery of a portal without a tag (an old-style record, tag -1) makes no
    link under the discovery record, as the first did not (idbm_add_node: "a bogus tpgt",
    no links): before, the second made one to a directory that does not exist, and
    ``-m discovery -P 1`` listed the node twice (compared with iscsiadm reading the DB)."""
    import os

    from peers import iscsiadm
    port = 0
    for _ in range(2):
        held = HeldTarget(port=port)
        port = held.port
        held.target = FakeTarget(TargetConfig(targets=[(TARGETS[0], ["127.0.0.1:3260"])]))
        assert _discover(cli, held).rc == 0
    links = os.listdir(os.path.join(cli.root, "send_targets", f"127.0.0.1,{port}"))
    assert links == ["st_config"]
    ours = cli("-m", "discovery", "-P", "1")
    theirs = iscsiadm(cli.root, "-m", "discovery", "-P", "1")
    assert ours.out.count("Iface Name: default") == 1
    assert (ours.rc, sorted(ours.out.splitlines())) == (
        theirs.returncode, sorted(theirs.stdout.splitlines())), (ours.out, theirs.stdout)


def test_nonpersistent_beside_delete_or_new_still_applies_them(cli):
    """``-o nonpersistent`` keeps the discovery record out of the DB, but ``-o delete`` and
    ``-o new`` beside it still apply to the node records, as iscsiadm's
    exec_disc_op_on_recs (before: both were dropped)."""
    port = 0
    answers = ([TARGETS[0], TARGETS[1]], [TARGETS[0], TARGETS[2]], [TARGETS[0], TARGETS[2]])
    ops = ((), ("-o", "nonpersistent", "-o", "delete"), ("-o", "nonpersistent", "-o", "new"))
    listed = []
    for names, extra in zip(answers, ops):
        held = HeldTarget(port=port)
        port = held.port
        held.target = FakeTarget(TargetConfig(targets=[(t, ["127.0.0.1:3260,1"])
                                                       for t in names]))
        try:
            assert cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{port}", *extra).rc == 0
        finally:
            held.close()
        listed.append(sorted(cli("-m", "node").out.split()[1::2]))
    assert listed == [[TARGETS[0], TARGETS[1]], [TARGETS[0]], [TARGETS[0], TARGETS[2]]]


def test_a_portal_without_a_tag_is_listed_under_its_discovery_as_iscsiadm_lists_it(cli):
    """``-m discovery -P 1``: the old-style record a SendTargets answer without a tag made
    is listed under its DiscoveryAddress (iscsiadm groups records by their
    node.discovery_* fields), not under STATIC; compared with iscsiadm reading the DB."""
    from peers import iscsiadm

    held = HeldTarget()
    held.target = FakeTarget(TargetConfig(targets=[(TARGETS[0], ["127.0.0.1:3260"]),
                                                   (TARGETS[1], ["127.0.0.1:3260,1"])]))
    assert _discover(cli, held).rc == 0
    ours = cli("-m", "discovery", "-P", "1")
    theirs = iscsiadm(cli.root, "-m", "discovery", "-P", "1")
    assert (ours.rc, sorted(ours.out.splitlines())) == (
        theirs.returncode, sorted(theirs.stdout.splitlines())), (ours.out, theirs.stdout)
    static = ours.out.split("STATIC:\n")[1]
    assert static.startswith("No targets found.") and TARGETS[0] in ours.out


def test_a_bad_entry_in_the_answer_leaves_out_that_entry_only(cli):
    """A TargetName no record can hold, or a TargetAddress that is not a portal,
    among good ones: that one is left out with a line saying so, the others are written
    (before, the whole discovery failed with exit 1, 'unknown error', and wrote nothing).
    A name outside RFC 3722's characters (``disk_1``) is a target, as in iscsiadm."""
    held = HeldTarget()
    held.target = FakeTarget(TargetConfig(targets=[
        ("iqn.2026-11.org.example:bad/slash", ["127.0.0.1:3260,1"]),
        ("iqn.2026-11.org.example:Disk_1", ["127.0.0.1:3260,1"]),
        (TARGETS[0], ["a..b:3260,1", "127.0.0.1:3260,1"]),
        (TARGETS[1], ["127.0.0.1:3260,1"])]))
    r = _discover(cli, held)
    assert r.rc == 0, r.err
    assert sorted(r.out.splitlines()) == sorted(
        f"127.0.0.1:3260,1 {t}" for t in ["iqn.2026-11.org.example:Disk_1", *TARGETS[:2]])
    assert "iqn.2026-11.org.example:bad/slash" in r.err and "target left out" in r.err
    assert "'a..b:3260,1'" in r.err and "portal left out" in r.err
    assert len(cli("-m", "node").out.splitlines()) == 3


def test_pairs_that_are_not_pairs_cost_themselves_only(cli):
    """A SendTargets answer with a TargetAddress before any TargetName, a TargetAlias not
    in UTF-8, a vendor piece without '=', and a last piece without its NUL: each is left
    out with a line saying so (but the TargetAlias: a key discovery does not use is dropped
    unread), the good target is written, exit 0, as open-iscsi's reader skips them
    (before: exit 1 'unknown error' or 5, and nothing written)."""
    held = HeldTarget()
    held.target = FakeTarget(TargetConfig(send_targets_raw=(
        b"TargetAddress=10.9.9.9:3260,1\0"
        + f"TargetName={TARGETS[0]}\0".encode() + b"TargetAlias=caf\xe9\0X-vendor\0"
        + b"TargetAddress=127.0.0.1:3260,1\0TargetName=iqn.2001-04.com.exa")))
    r = _discover(cli, held)
    assert (r.rc, r.out) == (0, f"127.0.0.1:3260,1 {TARGETS[0]}\n"), r.err
    for said in ("TargetAddress=10.9.9.9:3260,1 before any TargetName: left out",
                 "without '=': b'X-vendor': left out",
                 "text without its NUL delimiter left out: b'TargetName=iqn.2001-04.com.exa'"):
        assert said in r.err, (said, r.err)
    assert "TargetAlias" not in r.err
    assert cli("-m", "node").out == f"127.0.0.1:3260,1 {TARGETS[0]}\n"


def test_the_discovery_declares_the_initiator_alias_as_iscsiadm(cli):
    """A SendTargets discovery's first Login Request declares InitiatorAlias,
    initiatorname.iscsi's (else the host's name), as iscsiadm's, which asks iscsid for both
    (discovery.c request_initiator_name); through an iface with its own InitiatorName that
    name goes alone (discovery.c: "MNC TODO add iface alias").  No alias was sent."""
    from cli_targets import INIT

    with open(os.path.join(cli.root, "initiatorname.iscsi"), "a") as f:
        f.write("InitiatorAlias=db-server-07\n")
    target = HeldTarget()
    r = _discover(cli, target)
    assert r.rc == 0, r.err
    assert target.target.received_pairs[:3] == [
        ("InitiatorName", INIT), ("InitiatorAlias", "db-server-07"),
        ("SessionType", "Discovery")]
    own = "iqn.2026-11.test.discovery:own-name"
    assert cli("-m", "iface", "-I", "named", "-o", "new").rc == 0
    assert cli("-m", "iface", "-I", "named", "-o", "update", "-n", "iface.initiatorname",
               "-v", own).rc == 0
    target = HeldTarget()
    try:
        r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{target.port}", "-I", "named")
    finally:
        target.close()
    assert r.rc == 0, r.err
    pairs = dict(target.target.received_pairs)
    assert pairs["InitiatorName"] == own and "InitiatorAlias" not in pairs


def test_a_target_left_out_of_a_rediscovery_keeps_its_records(cli):
    """A rediscovery whose answer names a target but cannot be taken for it (a portal group
    tag out of range, a name that is not one) leaves the target out with a line saying so,
    and keeps its records as they are, settings and all, as iscsiadm's, whose
    delete_stale_rec deletes a record only for a target the answer no longer has (before:
    the target counted as gone, and its records were deleted)."""
    first = HeldTarget()
    r = _discover(cli, first)
    assert r.rc == 0, r.err
    assert cli("-m", "node", "-T", TARGETS[1], "-o", "update", "-n", "node.startup",
               "-v", "automatic").rc == 0
    held = HeldTarget(port=first.port)  # the same discovery record
    held.target = FakeTarget(TargetConfig(targets=[
        (TARGETS[0], ["127.0.0.1:3260,1"]), (TARGETS[1], ["127.0.0.1:3260,99999"])]))
    r = _discover(cli, held)
    assert r.rc == 0 and "target left out" in r.err, r
    shown = cli("-m", "node", "-T", TARGETS[1], "-o", "show")
    assert shown.rc == 0 and "node.startup = automatic\n" in shown.out, shown
    assert TARGETS[2] not in cli("-m", "node").out  # gone from the answer: deleted
