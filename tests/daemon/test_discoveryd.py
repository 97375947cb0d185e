"""The discovery daemon (iscsictl/daemon/discoveryd.py): its rounds against real peers on
loopback (tgtd for SendTargets, open-isns's isnsd for iSNS), the node records it builds,
and the daemon's glue.  The logins themselves need the kernel: they are recorded here and
made for real in the VM (vm-tests/guest_tests/test_iscsiadm_flows.py, beside iscsid's)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import pytest

from iscsictl.daemon import discoveryd as dd
from iscsictl.daemon.service import Daemon
from iscsictl.db.store import DiscoveryID, NodeDB
from iscsictl.discovery.isns import entity_id
from peers import Isnsd, Tgtd

INIT = "iqn.2026-11.test:discoveryd"
T1, T2, T3 = (f"iqn.2026-11.test.dd:t{i}" for i in (1, 2, 3))


@pytest.fixture
def db(tmp_path):
    (tmp_path / "initiatorname.iscsi").write_text(f"InitiatorName={INIT}\n")
    (tmp_path / "iscsid.conf").write_text(
        "node.startup = automatic\nnode.session.auth.authmethod = CHAP\n"
        "node.session.auth.username = from-conf\n")
    return NodeDB(str(tmp_path), str(tmp_path))


@pytest.fixture
def tgt(tmp_path):
    with Tgtd(str(tmp_path / "tgtd")) as t:
        t.add_target(T1)
        t.add_target(T2)
        yield t


def st_source(db, port, poll=-1, use="Yes", address="127.0.0.1"):
    db.create_discovery(DiscoveryID("sendtargets", address, port), values={
        "discovery.sendtargets.use_discoveryd": use,
        "discovery.sendtargets.discoveryd_poll_inval": str(poll)})
    (src,) = [s for s in dd.sources(db, print) if s.port == port]
    return src


def iface_file(tmp_path, name, transport="tcp", **values):
    """An iface record ``name`` in the DB at ``tmp_path``: its transport and ``values``
    (``iface.<key>`` = value)."""
    (tmp_path / "ifaces").mkdir(exist_ok=True)
    (tmp_path / "ifaces" / name).write_text("".join(
        f"iface.{k} = {v}\n" for k, v in {"iscsi_ifacename": name,
                                          "transport_name": transport, **values}.items()))


def rec(target, port=3260, iface="default", address="127.0.0.1"):
    return {"node.name": target, "node.conn[0].address": address,
            "node.conn[0].port": str(port), "iface.iscsi_ifacename": iface}


# ---- one round's plan ------------------------------------------------------------------
def test_a_round_logs_in_what_has_no_session_and_out_what_is_gone():
    a, b, c = rec(T1), rec(T2), rec(T3)
    first = dd.plan_round({}, [a, b], lambda k: False)
    assert first.login == (a, b) and first.logout == ()
    # b has its session; c is new; a is no longer found
    second = dd.plan_round(first.tracked, [b, c], lambda k: k == dd.node_key(b))
    assert second.login == (c,)
    assert second.logout == (dd.node_key(a),)
    assert set(second.tracked) == {dd.node_key(b), dd.node_key(c)}


def test_a_target_left_out_of_the_answer_is_not_logged_out():
    """A target the SendTargets answer names but that is left out of it (a tag out of
    range, a name not in UTF-8) is not gone: its nodes are neither logged out nor
    forgotten, as a rediscovery keeps its records (before: logged out, its disks
    removed, for a malformed entry)."""
    a, b = rec(T1), rec(T2)
    first = dd.plan_round({}, [a, b], lambda k: False)
    found = dd.Found([a])
    found.left_out = frozenset({T2})
    second = dd.plan_round(first.tracked, found, lambda k: True)
    assert second.logout == () and set(second.tracked) == set(first.tracked)
    third = dd.plan_round(second.tracked, [a], lambda k: True)  # gone from the answer
    assert third.logout == (dd.node_key(b),)


def test_a_round_names_the_targets_its_answer_left_out(db, tmp_path):
    """dd.discover's result says which targets the SendTargets answer named but left out
    (against the fake target: one with a portal group tag out of range)."""
    from protocol.fake_target import FakeTarget, TargetConfig, serve_socket

    listener = socket.create_server(("127.0.0.1", 0))
    target = FakeTarget(TargetConfig(targets=[(T1, ["127.0.0.1:3260,1"]),
                                              (T2, ["127.0.0.1:3260,99999"])]))
    thread = threading.Thread(target=lambda: serve_socket(target, listener.accept()[0]),
                              daemon=True)
    thread.start()
    try:
        found = dd.discover(db, st_source(db, listener.getsockname()[1]), INIT)
    finally:
        thread.join(10)
        listener.close()
    assert [r["node.name"] for r in found] == [T1] and found.left_out == {T2}


def test_a_node_found_twice_is_one_and_ifaces_make_different_nodes():
    a, again, other_iface = rec(T1), rec(T1), rec(T1, iface="eth1")
    r = dd.plan_round({}, [a, again, other_iface], lambda k: False)
    assert r.login == (a, other_iface)
    assert dd.node_key(rec(T1, port=3261)) != dd.node_key(a)


def test_a_node_that_failed_its_login_is_tried_again_and_not_logged_out():
    a = rec(T1)
    first = dd.plan_round({}, [a], lambda k: False)
    again = dd.plan_round(first.tracked, [a], lambda k: False)  # its login had failed
    assert again.login == (a,) and again.logout == ()


# ---- which records are polled, how often -----------------------------------------------
def test_the_records_that_ask_for_the_discovery_daemon_and_their_intervals(db):
    for port, use, poll in ((3260, "Yes", None), (3261, "Yes", "0"), (3262, "No", "5"),
                            (3263, "Yes", "-7"), (3264, "Yes", "12")):
        values = {"discovery.sendtargets.use_discoveryd": use}
        if poll is not None:
            values["discovery.sendtargets.discoveryd_poll_inval"] = poll
        db.create_discovery(DiscoveryID("sendtargets", "10.0.0.1", port), values=values)
    db.create_discovery(DiscoveryID("isns", "10.0.0.2", 3205),
                        values={"discovery.isns.use_discoveryd": "Yes"})
    db.create_discovery(DiscoveryID("isns", "10.0.0.3", 3205), values={
        "discovery.isns.use_discoveryd": "Yes", "discovery.isns.discoveryd_poll_inval": "9"})
    got = [(s.type, s.address, s.port, s.poll, s.hears_scns, s.scn_watch)
           for s in dd.sources(db, print)]
    assert got == [("sendtargets", "10.0.0.1", 3260, 30, False, False),
                   ("sendtargets", "10.0.0.1", 3261, 0, False, False),
                   ("sendtargets", "10.0.0.1", 3263, 30, False, False),
                   ("sendtargets", "10.0.0.1", 3264, 12, False, False),
                   ("isns", "10.0.0.2", 3205, 30, True, True),
                   ("isns", "10.0.0.3", 3205, 9, True, False)]


def test_an_unreadable_discovery_record_is_said_and_skipped(db, tmp_path):
    st_source(db, 3260)
    bad = DiscoveryID("sendtargets", "10.9.9.9", 3260)
    db.create_discovery(bad)
    (tmp_path / "send_targets" / "10.9.9.9,3260" / "st_config").write_bytes(b"\0\0")
    said = []
    assert [s.address for s in dd.sources(db, said.append)] == ["127.0.0.1"]
    assert len(said) == 1 and "10.9.9.9,3260" in said[0]


# ---- a round's discovery, against real peers ---------------------------------------------
def test_sendtargets_records_as_a_discovery_builds_them(db, tgt, tmp_path):
    src = st_source(db, tgt.port)
    recs = dd.discover(db, src, INIT)
    assert sorted(r["node.name"] for r in recs) == [T1, T2]
    for r in recs:
        assert (r["node.conn[0].address"], r["node.conn[0].port"], r["node.tpgt"]) == \
            ("127.0.0.1", str(tgt.port), "1")
        assert r["iface.iscsi_ifacename"] == "default"
        assert (r["node.discovery_address"], r["node.discovery_port"],
                r["node.discovery_type"]) == ("127.0.0.1", str(tgt.port), "send_targets")
        # iscsid.conf's node settings, as iscsid's idbm_node_setup_from_conf
        assert r["node.startup"] == "automatic"
        assert r["node.session.auth.username"] == "from-conf"
    nodes = tmp_path / "nodes"
    assert not nodes.exists() or not any(nodes.iterdir()), "iscsid writes no node record"


def test_each_software_iface_gets_its_records_and_its_initiator_name(db, tgt, tmp_path):
    tgt.add_target(T3, initiator_name="iqn.2026-11.test:other")  # seen by that name only
    iface_file(tmp_path, "if-a")
    iface_file(tmp_path, "if-b", initiatorname="iqn.2026-11.test:other")
    got = sorted((r["iface.iscsi_ifacename"], r["node.name"])
                 for r in dd.discover(db, st_source(db, tgt.port), INIT))
    assert got == [("if-a", T1), ("if-a", T2), ("if-b", T1), ("if-b", T2), ("if-b", T3)]


def test_a_round_declares_the_hosts_initiator_alias_as_iscsids_discoveryd(db, tmp_path):
    """Each SendTargets login declares the daemon's InitiatorAlias with the host's name
    (iscsid's discoveryd: discovery.c's request_initiator_name); an iface with its own
    name declares that name alone.  No alias was sent."""
    from protocol.fake_target import FakeTarget, TargetConfig, serve_socket

    listener = socket.create_server(("127.0.0.1", 0))
    targets: list[FakeTarget] = []

    def serve() -> None:
        for _ in range(2):  # one connection a software iface
            conn, _ = listener.accept()
            targets.append(FakeTarget(TargetConfig(targets=[(T1, ["127.0.0.1:3260,1"])])))
            serve_socket(targets[-1], conn)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    iface_file(tmp_path, "if-a")
    iface_file(tmp_path, "if-b", initiatorname="iqn.2026-11.test:other")
    try:
        recs = dd.discover(db, st_source(db, listener.getsockname()[1]), INIT,
                           initiator_alias="db-server-07")
    finally:
        thread.join(10)
        listener.close()
    assert len(recs) == 2
    declared = sorted((dict(t.received_pairs)["InitiatorName"],
                       dict(t.received_pairs).get("InitiatorAlias")) for t in targets)
    assert declared == [(INIT, "db-server-07"), ("iqn.2026-11.test:other", None)]


def test_an_hba_or_iser_iface_discovers_on_the_kernels_connection(db, tgt, tmp_path):
    """iscsid's discoveryd sends SendTargets through every iface (iface_link_ifaces): an
    offload HBA's or iSER's on a connection the kernel makes, which the daemon's
    ``through_kernel`` does (its SendTargets, as the CLI's ``-I``); a software iface's from
    the host's stack.  Whatever fails through one iface fails the round (nothing changes)."""
    iface_file(tmp_path, "if-a")
    iface_file(tmp_path, "hba", "bnx2i", hwaddress="00:10:18:aa:bb:01",
               initiatorname="iqn.2026-11.test:hba")
    src = st_source(db, tgt.port)
    asked = []

    def through_kernel(source, iface, name):
        asked.append((source, iface["iface.transport_name"], iface["iface.hwaddress"], name))
        return [{"name": T3, "portals": [["10.6.0.9", 3260, 2], ["10.6.0.10", 3261, -1]]},
                {"name": T2, "portals": [], "left_out": True}]  # named, left out
    records = dd.discover(db, src, INIT, through_kernel)
    assert records.left_out == {T2}  # not gone: a round logs it out no more than tcp's
    got = sorted((r["iface.iscsi_ifacename"], r["node.name"], r["node.conn[0].address"],
                  r["node.tpgt"]) for r in records)
    assert got == [("hba", T3, "10.6.0.10", "-1"), ("hba", T3, "10.6.0.9", "2"),
                   ("if-a", T1, "127.0.0.1", "1"), ("if-a", T2, "127.0.0.1", "1")]
    assert asked == [(src, "bnx2i", "00:10:18:aa:bb:01", "iqn.2026-11.test:hba")]
    hba = next(r for r in records if r["iface.iscsi_ifacename"] == "hba")
    assert hba["iface.transport_name"] == "bnx2i"  # its logins go the same way

    def refused(source, iface, name):
        raise RuntimeError("iscsiuio is not running")
    with pytest.raises(dd.DiscoveryFailed, match="iface hba: iscsiuio is not running"):
        dd.discover(db, src, INIT, refused)
    with pytest.raises(dd.DiscoveryFailed, match="iface hba: SendTargets through bnx2i"):
        dd.discover(db, src, INIT)


def test_a_failed_discovery_is_one_attempt_and_raises(db):
    """``reopen_max`` 0 whatever the record says: the next round is the retry."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted = []

    def hang_up():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()
    threading.Thread(target=hang_up, daemon=True).start()
    try:
        src = st_source(db, srv.getsockname()[1])
        assert src.values["discovery.sendtargets.reopen_max"] == "5"
        with pytest.raises(dd.DiscoveryFailed):
            dd.discover(db, src, INIT)
        assert len(accepted) == 1
    finally:
        srv.close()


def test_no_initiator_name_fails_the_round(db, tgt, tmp_path):
    with pytest.raises(dd.DiscoveryFailed, match="InitiatorName"):
        dd.discover(db, st_source(db, tgt.port), None)


def test_isns_records(db, tmp_path):
    with Isnsd(str(tmp_path / "isnsd")) as server:
        server.register_targets("array", "127.0.0.1:3260", [T1, T2], tag=7)
        db.create_discovery(DiscoveryID("isns", "127.0.0.1", server.port), values={
            "discovery.isns.use_discoveryd": "Yes"})
        (src,) = dd.sources(db, print)
        recs = dd.discover(db, src, INIT)
    assert sorted((r["node.name"], r["node.conn[0].port"], r["node.tpgt"],
                   r["node.discovery_type"]) for r in recs) == \
        [(T1, "3260", "7", "isns"), (T2, "3260", "7", "isns")]


def test_isns_records_are_bound_to_every_iface_as_iscsids(db, tmp_path):
    """iscsid's isns_disc_new_portals binds what iSNS answers to every iface record
    (iface_link_ifaces, any transport): an iSER iface's sessions go over iSER, and its
    initiator name is registered too (before: the software ifaces only, so the daemon
    logged in over TCP where only iser0 was set up)."""
    iface_file(tmp_path, "iser0", "iser", initiatorname="iqn.2026-11.x:iser-host")
    iface_file(tmp_path, "eth1", "tcp")
    with Isnsd(str(tmp_path / "isnsd")) as server:
        server.register_targets("array", "127.0.0.1:3260", [T1], tag=7)
        db.create_discovery(DiscoveryID("isns", "127.0.0.1", server.port), values={
            "discovery.isns.use_discoveryd": "Yes"})
        (src,) = dd.sources(db, print)
        recs = dd.discover(db, src, INIT)
    assert sorted((r["node.name"], r["iface.iscsi_ifacename"], r["iface.transport_name"])
                  for r in recs) == [(T1, "eth1", "tcp"), (T1, "iser0", "iser")]
    assert dd._initiator_names(db, INIT) == [INIT, "iqn.2026-11.x:iser-host"]


# ---- the rounds --------------------------------------------------------------------------
class Sessions:
    """What the rounds asked for, with a session for each login that is not refused."""

    def __init__(self, refuse=()):
        self.keys: set = set()
        self.logins: list[list[str]] = []
        self.logouts: list[list[str]] = []
        self.refuse = set(refuse)

    def has(self, key):
        return key in self.keys

    async def login(self, recs):
        self.logins.append(sorted(r["node.name"] for r in recs))
        out = []
        for r in recs:
            ok = r["node.name"] not in self.refuse
            if ok:
                self.keys.add(dd.node_key(r))
            out.append({"ok": ok, "node": r["node.name"], "code": 0 if ok else 24,
                        "message": "authentication failure"})
        return out

    async def logout(self, keys):
        self.logouts.append(sorted(k[0] for k in keys))
        self.keys -= set(keys)


def poller(db, src, sessions):
    async def discover(s):
        return await asyncio.to_thread(dd.discover, db, s, INIT)
    return dd.Poller(src, discover, sessions.has, sessions.login, sessions.logout)


def test_a_round_does_not_wait_for_its_logins_nor_starts_one_under_way_again(db):
    """A login that takes long (a portal that never answers: its retries, a LUN scan) runs
    beside the next rounds, which find what changed meanwhile (they waited for it: one
    such portal held the record's discovery for minutes), and is not started again while
    it is under way (open-iscsi's discoveryd: iscsi_login_portal_nowait)."""
    node = {"node.name": T1, "node.conn[0].address": "10.0.0.1", "node.conn[0].port": "3260",
            "iface.iscsi_ifacename": "default"}
    other = {**node, "node.name": T2}
    answers = [[node], [node], [node, other]]
    released = asyncio.Event()
    logins = []

    async def discover(src):
        return answers.pop(0)

    async def login(recs):
        names = [r["node.name"] for r in recs]
        logins.append(names)
        if T1 in names:
            await released.wait()  # T1's portal does not answer
        return [{"ok": True, "node": n} for n in names]

    async def logout(keys):
        pass

    p = dd.Poller(dd.Source("st", "10.0.0.1", 3260, {}, 1), discover, lambda k: False,
                  login, logout)

    async def rounds():
        await p.round()
        await p.round()  # T1's login still under way: not started again
        await p.round()  # T2 found meanwhile: logged in at once
        await asyncio.sleep(0)
        assert logins == [[T1], [T2]] and sum(not t.done() for t in p._pending) == 1
        released.set()
        await p.settle()
        assert not p._pending and not p._logging_in

    asyncio.run(rounds())


def test_a_node_gone_while_its_login_runs_is_logged_out_when_the_login_ends(caplog):
    """A round that no longer finds a node whose login is still under way has no session
    to log out yet: the login's end logs it out (before: the session stayed, and no later
    round logged it out, the node being no longer tracked).  A node found again
    meanwhile keeps its session."""
    node = {"node.name": T1, "node.conn[0].address": "10.0.0.1", "node.conn[0].port": "3260",
            "iface.iscsi_ifacename": "default"}
    back = {**node, "node.name": T2}
    answers = [[node, back], [], [back]]
    released = asyncio.Event()
    sessions = Sessions()
    login = sessions.login

    async def slow_login(recs):
        await released.wait()  # the portal answers late
        return await login(recs)

    async def discover(src):
        return answers.pop(0)

    p = dd.Poller(dd.Source("st", "10.0.0.1", 3260, {}, 1), discover, sessions.has,
                  slow_login, sessions.logout)

    async def rounds():
        await p.round()  # T1 and T2 found: their login starts
        await p.round()  # both gone: nothing to log out yet
        await asyncio.sleep(0.01)  # that logout runs
        await p.round()  # T2 back
        released.set()
        await p.settle()

    with caplog.at_level(logging.INFO):
        asyncio.run(rounds())
    assert sessions.logins == [[T1, T2]]
    assert sessions.logouts == [[T1, T2], [T1]]
    assert {k[0] for k in sessions.keys} == {T2}
    assert "1 node(s) no longer found while their login ran: logging out" in caplog.text


def test_rounds_follow_the_targets_the_portal_reports(db, tgt, caplog):
    s = Sessions(refuse={T3})
    p = poller(db, st_source(db, tgt.port, poll=5), s)

    async def rounds():
        await p.round(wait=True)
        await p.round(wait=True)  # nothing changed: nothing to do
        tgt.adm("--mode", "target", "--op", "delete", "--tid", "2", "--force")
        await p.round(wait=True)
        tgt.add_target(T3)
        await p.round(wait=True)
        await p.round(wait=True)  # T3's login failed: tried again
        tgt.stop()
        assert await p.round(wait=True) is None  # a failed discovery changes nothing
    asyncio.run(rounds())
    assert s.logins == [[T1, T2], [T3], [T3]]
    assert s.logouts == [[T2]]
    assert sorted(k[0] for k in p.tracked) == [T1, T3]
    assert "Could not perform SendTargets 127.0.0.1" in caplog.text
    assert f"login to {T3} failed: authentication failure" in caplog.text


def test_an_interval_of_0_is_one_round(db, tgt):
    s = Sessions()
    slept = []

    async def sleep(n):
        slept.append(n)

    p = poller(db, st_source(db, tgt.port, poll=0), s)
    p._sleep = sleep
    asyncio.run(asyncio.wait_for(p.run(), 30))
    assert p.rounds == 1 and slept == [] and s.logins == [[T1, T2]]


def test_rounds_repeat_at_the_interval(db, tgt):
    s, slept = Sessions(), []

    async def sleep(n):
        slept.append(n)
        if len(slept) == 3:
            raise asyncio.CancelledError

    p = poller(db, st_source(db, tgt.port, poll=7), s)
    p._sleep = sleep
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(p.run())
    assert slept == [7, 7, 7] and p.rounds == 3


# ---- the daemon's glue ---------------------------------------------------------------------
def test_the_daemon_starts_a_poller_per_record_and_logs_in_what_it_finds(db, tgt, tmp_path):
    st_source(db, tgt.port, poll=0)
    db.create_discovery(DiscoveryID("sendtargets", "localhost", tgt.port), values={
        "discovery.sendtargets.use_discoveryd": "No"})  # polled, it would log in again
    daemon = Daemon(None, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "st"),
                    db_root=db.db_root, config_root=db.db_root)
    asked = []

    async def login(records, initiator_name, progress=None, multiple=False):
        asked.append((sorted(r["node.name"] for r in records), initiator_name))
        return [{"ok": True} for _ in records]
    daemon.login = login

    async def run():
        await daemon._discoveryd()
        await asyncio.wait_for(asyncio.gather(*daemon._tasks), 30)
    asyncio.run(run())
    assert asked == [([T1, T2], INIT)]


def test_the_daemon_discovers_through_an_hba_iface_with_its_sendtargets(db, tgt, tmp_path):
    """The discovery's thread hands an HBA iface's SendTargets to the daemon's loop (its
    :meth:`Daemon.send_targets`, here a stand-in: the kernel's part is tested in
    test_offload_login.py) and waits for it; what it finds is logged in."""
    st_source(db, tgt.port, poll=0)
    iface_file(tmp_path, "hba", "cxgb4i")
    daemon = Daemon(None, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "st"),
                    db_root=db.db_root, config_root=db.db_root)
    asked, sent = [], []

    async def login(records, initiator_name, progress=None, multiple=False):
        asked.append(sorted((r["iface.iscsi_ifacename"], r["node.name"]) for r in records))
        return [{"ok": True} for _ in records]

    async def send_targets(address, port, values, iface, initiator_name):
        sent.append((address, port, iface["iface.iscsi_ifacename"], initiator_name,
                     threading.current_thread() is threading.main_thread()))
        return [{"name": T3, "portals": [[address, port, 1]]}]
    daemon.login, daemon.send_targets = login, send_targets

    async def run():
        await daemon._discoveryd()
        await asyncio.wait_for(asyncio.gather(*daemon._tasks), 30)
    asyncio.run(run())
    assert sent == [("127.0.0.1", tgt.port, "hba", INIT, True)]  # on the loop's thread
    assert asked == [[("hba", T3)]]


def test_a_stop_cancels_an_hba_ifaces_sendtargets_under_way(db, tgt, tmp_path):
    """The daemon stops while an HBA iface's SendTargets (the kernel's discovery session)
    is under way on its loop: it is cancelled before netlink closes, so that its undo (the
    endpoint, the session) reaches the kernel (before: left running, it failed on the
    closed socket, and the discovery session stayed in the kernel)."""
    st_source(db, tgt.port, poll=0)
    iface_file(tmp_path, "hba", "cxgb4i")
    daemon = Daemon(None, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "st"),
                    db_root=db.db_root, config_root=db.db_root)
    events = []

    class Netlink:
        def close(self):
            events.append("netlink closed")

    async def send_targets(address, port, values, iface, initiator_name):
        events.append("exchange")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
    daemon.send_targets = send_targets

    async def run():
        daemon.nl = Netlink()
        await daemon._discoveryd()
        for _ in range(500):
            if events:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(daemon.close(), 10)
    asyncio.run(run())
    assert events == ["exchange", "cancelled", "netlink closed"]


def test_an_isns_record_hears_state_change_notifications(db, tmp_path):
    """iscsid's discoveryd against open-isns: the initiator registered for SCNs; a target
    registered later and one deregistered each start a round at once (the interval, an
    hour, never comes), the first logged in, the second out."""
    with Isnsd(str(tmp_path / "isnsd")) as server:
        server.register_targets("array", "127.0.0.1:3260", [T1, T2])
        db.create_discovery(DiscoveryID("isns", "127.0.0.1", server.port), values={
            "discovery.isns.use_discoveryd": "Yes",
            "discovery.isns.discoveryd_poll_inval": "3600"})
        (src,) = dd.sources(db, print)
        s = Sessions()

        async def register(src, port):
            return await asyncio.to_thread(dd.register, db, src, INIT, port)

        async def deregister(src):
            await asyncio.to_thread(dd.deregister, db, src, INIT)
        p = poller(db, src, s)
        p._register, p._deregister = register, deregister

        async def until(what, cond):
            for _ in range(300):
                if cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{what}: logins {s.logins}, logouts {s.logouts}")

        async def run():
            task = asyncio.ensure_future(p.run())
            try:
                await until("the first round", lambda: s.logins == [[T1, T2]])
                entity = await asyncio.to_thread(server.query, f"iscsi-name={INIT}")
                assert "Initiator" in entity
                # named as iscsid's isns_build_objs names it: the name of this end's
                # address (not the host name, which cloned hosts share)
                assert f'Entity identifier = "{entity_id("127.0.0.1")}"' in entity
                await asyncio.to_thread(server.register_targets, "array2", "127.0.0.1:3261",
                                        [T3])
                await until("the added target's login", lambda: [T3] in s.logins)
                await asyncio.to_thread(server.isnsadm, "--deregister", f"iscsi-name={T2}")
                await until("the removed target's logout", lambda: s.logouts == [[T2]])
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        asyncio.run(run())
        # stopped: the entity is gone from the server (no SCNs to a port nobody hears)
        assert not p.registered and "Initiator" not in server.query(f"iscsi-name={INIT}")
    assert p.rounds >= 3 and p.scns.received >= 2
    assert s.logins[:2] == [[T1, T2], [T3]]


def test_a_deregistration_the_server_does_not_answer_delays_the_stop_a_bounded_time(
        db, caplog, monkeypatch):
    """The daemon stops even when the iSNS server is gone: the DevDereg's failure is said,
    and a server that never answers holds the stop for DEREGISTER_TIMEOUT s at most."""
    monkeypatch.setattr(dd, "DEREGISTER_TIMEOUT", 0.3)
    src = dd.Source("isns", "127.0.0.1", 1, {}, poll=3600)
    calls = []

    async def hangs(src):
        calls.append(src)
        await asyncio.sleep(30)

    async def refused(src):
        await asyncio.to_thread(dd.deregister, db, src, INIT)  # nothing listens on port 1

    for deregister, said in ((hangs, "no answer within 0.3 s"), (refused, "refused")):
        p = dd.Poller(src, None, None, None, None, deregister=deregister)
        p.registered = True
        loop_time = asyncio.run(_timed(p._leave()))
        assert loop_time < 2 and p.registered
        assert said in caplog.text.lower() or said in caplog.text
    assert calls == [src]


async def _timed(coro):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await coro
    return loop.time() - t0


def _registration_failing_once(monkeypatch):
    """REGISTER_RETRY 0.05 s, an iSNS source polled hourly, and a registration that fails
    the first time: (the source, the registration, the SCN ports it was called with)."""
    monkeypatch.setattr(dd, "REGISTER_RETRY", 0.05)
    calls = []

    async def register(src, port):
        calls.append(port)
        if len(calls) == 1:
            raise dd.DiscoveryFailed("cannot make connection to 127.0.0.1:9")
        return None
    return dd.Source("isns", "127.0.0.1", 9, {}, 3600), register, calls


def test_a_registration_that_fails_is_said_and_made_again_within_seconds(db, caplog,
                                                                         monkeypatch):
    """Not at the next round (an hour away with a long interval: the server drops a
    registration not refreshed within its period, and its SCNs), but REGISTER_RETRY s
    later, as iscsid's discoveryd (5 s between its attempts)."""
    src, register, calls = _registration_failing_once(monkeypatch)

    async def discover(src):
        return []
    p = dd.Poller(src, discover, lambda k: False, None, None, register)

    async def two():
        await p._keep_registered(5)
        await p._keep_registered(5)  # not due yet
        assert calls == [5]
        await asyncio.sleep(0.06)
        await p._keep_registered(5)
        await p._keep_registered(5)  # registered for good: not again
    asyncio.run(two())
    assert calls == [5, 5]
    assert "could not register for State Change Notifications" in caplog.text


def test_a_failed_registration_is_retried_after_a_round_longer_than_the_retry(
        db, monkeypatch):
    """A registration that failed, then a round longer than REGISTER_RETRY (against an
    unreachable server both take the connect timeout, 5 s): the retry, already due when
    the round ends, is made then (before: not until the next round, an hour away with a
    long interval, so no SCNs all that time)."""
    src, register, calls = _registration_failing_once(monkeypatch)

    async def discover(src):
        await asyncio.sleep(0.2)  # longer than the retry
        raise dd.DiscoveryFailed("cannot make connection to 127.0.0.1:9")

    async def run():
        p = dd.Poller(src, discover, lambda k: False, None, None, register)
        task = asyncio.create_task(p.run())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if p.registered:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return p
    p = asyncio.run(run())
    assert len(calls) == 2 and p.registered


@pytest.mark.parametrize("scn_watch, registered, logouts", [
    (True, True, []), (False, True, [[T1]]), (True, False, [[T1]])])
def test_an_isns_records_own_poll_logs_in_but_out_only_when_asked(scn_watch, registered,
                                                                  logouts, caplog):
    """An iSNS record's default interval (-1): iscsid waits for SCNs only, iscsictld also
    polls (a server may drop an SCN), but while registered for SCNs such a poll logs
    nothing out: an iSNS server restarted empty sends no SCN, and its empty answer logged
    every session out.  Before, it did.  An interval the user set logs out what is gone,
    as iscsid's poll does, and so does the poll when no SCN can come (its registration
    failed)."""
    node = {"node.name": T1, "node.conn[0].address": "10.0.0.1", "node.conn[0].port": "3260",
            "iface.iscsi_ifacename": "default"}
    answers = [[node], [], []]
    sessions, done = Sessions(), asyncio.Event()

    async def discover(src):
        if answers:
            return answers.pop(0)
        await asyncio.sleep(0.05)  # the rounds' logouts run
        done.set()
        await asyncio.Event().wait()

    async def register(src, port):
        if not registered:
            raise dd.DiscoveryFailed("no answer")
    p = dd.Poller(dd.Source("isns", "127.0.0.1", 9, {}, 1, scn_watch=scn_watch), discover,
                  sessions.has, sessions.login, sessions.logout, register)

    async def main():
        task = asyncio.create_task(p.run())
        await asyncio.wait_for(done.wait(), 15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert (sessions.logins, sessions.logouts) == ([[T1]], logouts)
    assert ("not found by the poll: kept" in caplog.text) == (not logouts)


def test_a_node_the_poll_kept_is_logged_out_by_an_scns_round():
    """What a poll of an iSNS record's -1 interval did not find stays tracked: the next
    round an SCN starts (log_out) that does not find it either logs it out."""
    node = {"node.name": T1, "node.conn[0].address": "10.0.0.1", "node.conn[0].port": "3260",
            "iface.iscsi_ifacename": "default"}
    answers = [[node], [], []]
    sessions = Sessions()

    async def discover(src):
        return answers.pop(0)
    p = dd.Poller(dd.Source("isns", "127.0.0.1", 9, {}, 30, scn_watch=True), discover,
                  sessions.has, sessions.login, sessions.logout)

    async def rounds():
        await p.round(wait=True)
        await p.round(wait=True, log_out=False)  # the poll: kept
        assert sessions.logouts == [] and dd.node_key(node) in p.tracked
        await p.round(wait=True)  # an SCN's round
    asyncio.run(rounds())
    assert sessions.logouts == [[T1]]


def test_the_registration_is_kept_between_rounds_longer_than_half_its_period(db):
    """A poll interval longer than half the registration period (open-isns's 10 min period
    with an hourly poll): the registration is made again when due between rounds, as
    iscsid's discoveryd timer does (before: only at a round, so the server dropped it,
    and its SCNs, for most of each interval).  A period of 0.4 s (due every 0.2 s) and a
    poll of 1 s: ~5 registrations a round, one round."""
    src = dd.Source("isns", "127.0.0.1", 9, {}, 1)
    registered, rounds = [], []

    async def register(src, port):
        registered.append(asyncio.get_running_loop().time())
        return 0.2

    async def discover(src):
        rounds.append(asyncio.get_running_loop().time())
        return []
    p = dd.Poller(src, discover, lambda k: False, None, None, register)

    async def main():
        task = asyncio.create_task(p.run())
        await asyncio.sleep(0.9)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())
    assert len(rounds) == 1 and len(registered) >= 4
    assert max(b - a for a, b in zip(registered, registered[1:])) < 0.35


def test_the_scn_port_takes_the_iscsi_servers_connections_only_and_few(db):
    """The SCN port (the daemon is root there, on every address): a connection from an
    address not the iSNS server's is closed at once, as one past MAX_SCN_CONNECTIONS
    (before: any host could hold the daemon's descriptors for an hour each, or make it
    discover without end)."""
    async def closed_at_once(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(reader.read(1), 5) == b""
        finally:
            writer.close()

    async def run():
        elsewhere = dd.ScnReceiver("192.0.2.1")  # TEST-NET-1: never this host
        await elsewhere.start()
        assert await closed_at_once(elsewhere.port)
        elsewhere.close()
        local = dd.ScnReceiver("127.0.0.1")
        await local.start()
        held = [await asyncio.open_connection("127.0.0.1", local.port)
                for _ in range(dd.MAX_SCN_CONNECTIONS)]
        for _ in range(100):
            if local._open == dd.MAX_SCN_CONNECTIONS:
                break
            await asyncio.sleep(0.01)
        assert local._open == dd.MAX_SCN_CONNECTIONS
        assert await closed_at_once(local.port)
        for _, writer in held:
            writer.close()
        local.close()
    asyncio.run(run())


def test_an_scn_that_cannot_be_read_is_refused_and_still_starts_a_round(db):
    """An SCN this side cannot read (here: a change without its bitmap) is answered with
    SCN_EVENT_REJECTED (16), as open-isns's receiver answers one, on the same transaction,
    and still starts a round (something changed); the connection stays for the next
    (before: closed without an answer, and the server sent it again and again)."""
    import struct

    from iscsictl.protocol import isns as I

    def tlv(tag, value):
        value += b"\0" * (-len(value) % 4)
        return struct.pack(">II", tag, len(value)) + value

    def scn(xid, *attrs):
        payload = b"".join(attrs)
        return struct.pack(">HHHHHH", 1, 0x0008, len(payload), 0x4C00, xid, 0) + payload

    dest, target = b"iqn.2026-11.x:init\0", b"iqn.2026-11.x:t1\0"
    bad = scn(7, tlv(32, dest), tlv(4, bytes(8)), tlv(35, b"\0\0\0\x04"))
    good = scn(8, tlv(32, dest), tlv(4, bytes(8)), tlv(35, b"\0\0\0\x04"), tlv(32, target))

    async def run():
        r = dd.ScnReceiver("127.0.0.1")
        await r.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        try:
            answers = []
            for message in (bad, good):
                writer.write(message)
                header = await asyncio.wait_for(reader.readexactly(12), 5)
                body = await asyncio.wait_for(reader.readexactly(
                    int.from_bytes(header[4:6], "big")), 5)
                answers.append((struct.unpack(">HHHHHH", header)[1::3],
                                int.from_bytes(body[:4], "big")))
            assert answers == [((0x8008, 7), I.Status.SCN_EVENT_REJECTED), ((0x8008, 8), 0)]
            assert r.heard.is_set() and r.received == 1
        finally:
            writer.close()
            r.close()
    asyncio.run(run())


def test_an_scn_naming_a_target_whose_name_is_not_utf8_is_taken(db, caplog):
    """An SCN whose changed node is named in Latin-1 (any node may register any name)
    was refused and its round made as for a broken SCN, at every change of that node: it
    is taken (status 0, the server's Destination sent back byte for byte), and the name
    logged with its byte escaped."""
    import struct

    def tlv(tag, value):
        value += b"\0" * (-len(value) % 4)
        return struct.pack(">II", tag, len(value)) + value

    dest = b"iqn.2026-11.x:init\0"
    payload = tlv(32, dest) + tlv(4, bytes(8)) + tlv(35, b"\0\0\0\x04") \
        + tlv(32, b"iqn.2026-11.x:caf\xe9\0")
    message = struct.pack(">HHHHHH", 1, 0x0008, len(payload), 0x4C00, 9, 0) + payload

    async def run():
        r = dd.ScnReceiver("127.0.0.1")
        await r.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
        try:
            writer.write(message)
            header = await asyncio.wait_for(reader.readexactly(12), 5)
            body = await asyncio.wait_for(reader.readexactly(
                int.from_bytes(header[4:6], "big")), 5)
            assert int.from_bytes(body[:4], "big") == 0
            assert body[4:] == tlv(32, dest)
            assert r.heard.is_set() and r.received == 1
        finally:
            writer.close()
            r.close()
    with caplog.at_level(logging.INFO, logger="iscsictld"):
        asyncio.run(run())
    assert "iqn.2026-11.x:caf\\udce9 (0x4)" in caplog.text


def test_the_daemon_logs_out_what_went_only_if_safe_logout_allows_it(db, tmp_path,
                                                                     monkeypatch):
    """A target gone from the answer is logged out as an iscsiadm logout is: with
    iscsid.safe_logout = Yes, not while its disks are in use (iscsid's session_logout_task
    checks every logout, discoveryd's too).  Before, the discovery daemon's logouts
    skipped the check: a target missing from one round lost its mounted filesystems."""
    import types

    with open(f"{db.db_root}/iscsid.conf", "a") as f:
        f.write("iscsid.safe_logout = Yes\n")
    db.create_discovery(DiscoveryID("isns", "192.0.2.1", 3205), values={
        "discovery.isns.use_discoveryd": "Yes", "discovery.isns.discoveryd_poll_inval": "1"})
    rounds = []

    def discover(db_, src, name, through_kernel=None, initiator_alias=None):
        rounds.append((src, initiator_alias))
        return [rec(T1, address="192.0.2.9")] if len(rounds) == 1 else []  # then gone

    def register(*args):
        raise dd.DiscoveryFailed("no iSNS server here")
    monkeypatch.setattr(dd, "discover", discover)
    monkeypatch.setattr(dd, "register", register)
    daemon = Daemon(None, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "st"),
                    db_root=db.db_root, config_root=db.db_root)
    daemon.initiator_alias = "db-server-07"  # start()'s, from initiatorname.iscsi
    daemon.sessions[7] = types.SimpleNamespace(
        sid=7, node=types.SimpleNamespace(key=(T1, "192.0.2.9", 3260, "default")))

    async def login(records, initiator_name, progress=None, multiple=False):
        return [{"ok": False, "code": 15} for _ in records]
    daemon.login = login
    asked = []

    async def logout_one(sid, safe):
        asked.append((sid, safe))
        return {"sid": sid, "ok": False, "code": 28, "message": "in use"}
    daemon._logout_one = logout_one

    async def run():
        await daemon._discoveryd()
        for _ in range(100):
            if asked:
                break
            await asyncio.sleep(0.05)
        for t in list(daemon._tasks):
            t.cancel()
        await asyncio.gather(*daemon._tasks, return_exceptions=True)
    asyncio.run(run())
    assert asked[:1] == [(7, True)]
    assert rounds[0][1] == "db-server-07"  # the rounds declare the daemon's alias
