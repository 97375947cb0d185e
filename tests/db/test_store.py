"""NodeDB on real files in tmp_path."""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from iscsictl.db import config as dbconfig
from iscsictl.db import store
from iscsictl.db.errors import (CorruptRecord, DBError, InvalidKey, LockTimeout, ReadOnlyKey,
                                RecordExists, RecordNotFound)
from iscsictl.db.store import DiscoveryID, NodeDB, NodeID

T1 = "iqn.2001-04.com.example:t1"
T2 = "iqn.2001-04.com.example:t2"


def test_create_read_update_delete(db, tmp_path):
    rec = db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    path = tmp_path / "db/nodes" / T1 / "10.0.0.1,3260,1/default"
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.path.islink(tmp_path / "db/static" / f"{T1},10.0.0.1,3260,1,default")
    assert db.read_node(nid) == db.read_node(nid)
    assert db.read_node(nid)["node.session.initial_login_retry_max"] == 4  # no iscsid.conf
    with pytest.raises(RecordExists):
        db.create_node(T1, "10.0.0.1", 3260, 1)
    rec = db.update_node(nid, "node.session.auth.password", "s3cret")
    assert rec["node.session.auth.password_length"] == 6
    assert "node.session.auth.password = s3cret" in path.read_text()
    with pytest.raises(ReadOnlyKey):
        db.update_node(nid, "node.conn[0].address", "1.1.1.1")
    with pytest.raises(InvalidKey):
        db.update_node(nid, "node.nope", "1")
    db.delete_node(nid)
    assert not (tmp_path / "db/nodes" / T1).exists()
    assert not os.path.lexists(tmp_path / "db/static" / f"{T1},10.0.0.1,3260,1,default")
    with pytest.raises(RecordNotFound) as e:
        db.read_node(nid)
    assert e.value.exit_code == 21
    assert not [p for p in (tmp_path / "db").rglob("*.tmp") if p.is_file()]


def test_legacy_tpgt_unknown_and_ipv6(db, tmp_path):
    db.create_node(T1, "fe80::1", 3260)
    assert (tmp_path / "db/nodes" / T1 / "fe80::1,3260").is_file()
    (nid,) = db.list_nodes()
    assert nid.legacy and nid.tpgt == -1
    assert db.flat_listing() == [f"[fe80::1]:3260,4294967295 {T1}"]
    db.update_node(nid, "node.startup", "automatic")
    assert db.read_node(nid)["node.startup"] == "automatic"
    # same portal with a known tpgt converts the legacy file
    db.create_node(T1, "fe80::1", 3260, 2)
    assert [n.tpgt for n in db.list_nodes()] == [2]


def test_iscsid_conf_overlay_only_at_creation(db, tmp_path):
    conf = tmp_path / "etc/iscsid.conf"
    conf.write_text("# comment\nnode.session.initial_login_retry_max = 8\n"
                    "node.conn[0].timeo.login_timeout = 15\nnode.name = evil\n"
                    "discovery.sendtargets.iscsi.MaxRecvDataSegmentLength = 65536\n"
                    "iscsid.safe_logout = Yes\n")
    db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = db.list_nodes()[0]
    r = db.read_node(nid)
    assert r["node.session.initial_login_retry_max"] == 8
    assert r["node.conn[0].timeo.login_timeout"] == 15
    assert r["node.name"] == T1
    assert db.config.safe_logout
    d = db.create_discovery(DiscoveryID("sendtargets", "10.0.0.9", 3260))
    assert d["discovery.sendtargets.iscsi.MaxRecvDataSegmentLength"] == 65536
    # editing iscsid.conf later does not change existing records
    conf.write_text("node.session.initial_login_retry_max = 2\n")
    db2 = NodeDB(db.db_root, db.config_root)
    assert db2.read_node(nid)["node.session.initial_login_retry_max"] == 8


def test_filters_and_sorting(db):
    for t in (T2, T1):
        for a in ("10.0.0.2", "10.0.0.1"):
            db.create_node(t, a, 3260, 1)
    db.create_iface("eth1")
    db.create_node(T1, "10.0.0.1", 3260, 1, "eth1")
    ids = db.list_nodes()
    assert ids == sorted(ids) and len(ids) == 5
    assert len(db.list_nodes(target=T1)) == 3
    assert len(db.list_nodes(address="10.0.0.1")) == 3
    assert len(db.list_nodes(iface="eth1")) == 1
    assert db.list_nodes(target="iqn.none") == []
    db.create_node(T1, "10.0.0.1", 3260, 2)  # another portal group at one portal
    assert [n.tpgt for n in db.list_nodes(target=T1, address="10.0.0.1", tpgt=2)] == [2]
    assert {n.tpgt for n in db.list_nodes(target=T1, address="10.0.0.1", tpgt=1)} == {1}
    db.delete_node(NodeID(T1, "10.0.0.1", 3260, 2, "default"))
    assert db.tree_listing(target=T1) == [
        f"Target: {T1}", "\tPortal: 10.0.0.1:3260,1", "\t\tIface Name: default",
        "\tPortal: 10.0.0.1:3260,1", "\t\tIface Name: eth1",
        "\tPortal: 10.0.0.2:3260,1", "\t\tIface Name: default"]


def test_atomic_write_failure_keeps_old(db, tmp_path, monkeypatch):
    db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = db.list_nodes()[0]
    before = open(db.node_path(nid), "rb").read()

    def boom(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(DBError) as e:
        db.update_node(nid, "node.startup", "automatic")
    assert "No space left" in str(e.value) and e.value.exit_code == 6
    with pytest.raises(DBError):  # a new record: no empty directories left for it
        db.create_node(T2, "10.0.0.1", 3260, 1)
    assert not (tmp_path / "db/nodes" / T2).exists()
    monkeypatch.undo()
    assert open(db.node_path(nid), "rb").read() == before
    assert not [p for p in (tmp_path / "db").rglob("*") if p.name.endswith(".tmp")
                and p.is_file()]


def test_lock_timeout_names_holder(db, tmp_path):
    lock = db.record_lock("some-record")
    code = textwrap.dedent(f"""
        import sys, time
        from iscsictl.db.store import FileLock
        with FileLock({lock.path!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(LockTimeout) as e:
            with db.record_lock("some-record"):
                pass
        assert time.monotonic() - t0 < 5
        assert e.value.holder_pid == p.pid
        assert f"PID {p.pid}" in str(e.value) and e.value.exit_code == 6
    finally:
        p.kill()
        p.wait()
    # the lock died with its holder
    with db.record_lock("some-record"):
        pass


def test_deleted_records_leave_no_lock_files(db, tmp_path):
    """A record's lock file goes with the record (and a delete of a record that is not
    there leaves none): ``.locks`` does not grow with every record ever written."""
    locks = tmp_path / "db" / store.LOCK_DIRNAME
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    for i in range(20):
        db.create_node(f"{T1}-{i}", "10.0.0.1", 3260, 1)
    db.create_iface("if0")
    assert len(os.listdir(locks)) > 20
    for nid in db.list_nodes():
        db.delete_node(nid)
    db.delete_iface("if0")
    db.delete_discovery(did)
    with pytest.raises(RecordNotFound):
        db.delete_node(NodeID(T2, "10.0.0.1", 3260, 1, "default"))
    with pytest.raises(RecordNotFound):
        db.delete_iface("if1")
    assert os.listdir(locks) == [os.path.basename(db.db_lock().path)]


def test_a_lock_removed_by_its_holder_is_taken_anew(db):
    """A waiter that gets the lock of a file its holder removed (the record deleted) takes
    the lock of the file at the path instead: never two holders at once."""
    import threading

    holder = db.record_lock("k")
    holder.acquire()
    got = threading.Event()
    waiter = db.record_lock("k")
    waiter.timeout = 10
    t = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    t.start()
    time.sleep(0.3)  # the waiter has opened the file and polls its flock
    holder.remove_when_released()
    holder.release()
    assert got.wait(10)
    t.join()
    try:
        third = db.record_lock("k")
        third.timeout = 0.3
        with pytest.raises(LockTimeout):
            third.acquire()
    finally:
        waiter.release()
    with db.record_lock("k"):
        pass


def test_reader_not_blocked_by_writer_lock(db):
    db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = db.list_nodes()[0]
    with db.record_lock(NodeDB._lock_key(nid)), db.db_lock():
        assert db.read_node(nid)["node.name"] == T1
        assert db.flat_listing()
        with pytest.raises(LockTimeout):
            db.update_node(nid, "node.startup", "automatic")


def test_corrupt_records_reported_and_skipped(db, tmp_path):
    for i in range(3):
        db.create_node(T1, f"10.0.0.{i}", 3260, 1)
    nodes = tmp_path / "db/nodes" / T1
    (nodes / "10.0.0.0,3260,1/default").write_bytes(b"")
    (nodes / "10.0.0.1,3260,1/default").write_bytes(b"\x00\xff\x00garbage")
    (nodes / "garbage-dir").mkdir()
    (nodes / "10.0.0.2,3260,1/eth9").mkdir()  # a directory where a record file belongs
    (tmp_path / "db/nodes" / T2).mkdir()
    (tmp_path / "db/nodes" / T2 / "10.1.1.1,3260,1").write_text("x")  # file where dir belongs
    seen = []
    db2 = NodeDB(db.db_root, db.config_root, warn=seen.append)
    recs = db2.read_nodes()
    assert [r["node.conn[0].address"] for r in recs] == ["10.0.0.2"]
    assert any("10.0.0.0,3260,1/default" in w and "empty" in w for w in seen)
    assert any("10.0.0.1,3260,1/default" in w and "binary" in w for w in seen)
    assert any("garbage-dir" in w for w in seen)
    assert any("10.0.0.2,3260,1/eth9: a directory where a record file belongs" in w
               for w in seen)
    with pytest.raises(CorruptRecord):
        db2.read_node(NodeID(T1, "10.0.0.0", 3260, 1))
    # a file no record can be (~14x its size in memory to parse): refused, read no further
    path = nodes / "10.0.0.2,3260,1/default"
    good = path.read_bytes()
    path.write_bytes(good + b"x = y\n" * (store.MAX_RECORD_BYTES // 6))
    with pytest.raises(CorruptRecord, match=f"larger than {store.MAX_RECORD_BYTES} bytes"):
        db2.read_node(NodeID(T1, "10.0.0.2", 3260, 1))
    path.write_bytes(good)
    # corrupt records can still be deleted
    db2.delete_node(NodeID(T1, "10.0.0.0", 3260, 1))
    db2.delete_node(NodeID(T1, "10.0.0.1", 3260, 1))
    assert len(db2.list_nodes()) == 1


def test_discovery_records_and_reconcile(db, tmp_path):
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.update_discovery(did, "discovery.sendtargets.auth.password", "pw")
    r = db.read_discovery(did)
    assert r["discovery.sendtargets.auth.password_length"] == 2
    with pytest.raises(ReadOnlyKey):
        db.update_discovery(did, "discovery.sendtargets.address", "1.1.1.1")
    isns = DiscoveryID("isns", "10.0.0.8", 3205)
    db.create_discovery(isns)
    assert db.list_discovery() == [did, isns]
    assert [d.listing() for d in db.list_discovery()] == [
        "10.0.0.9:3260 via sendtargets", "10.0.0.8:3205 via isns"]
    a = NodeID(T1, "10.0.0.9", 3260, 1)
    b = NodeID(T2, "10.0.0.9", 3260, 1)
    res = db.reconcile_discovery(did, [a, b])
    assert res.added == [a, b] and not res.deleted
    assert db.discovery_nodes(did) == [a, b]
    assert db.read_node(a)["node.discovery_type"] == "send_targets"
    assert db.read_node(a)["node.discovery_address"] == "10.0.0.9"
    db.update_node(a, "node.startup", "automatic")
    # a corrupt record elsewhere does not break the reconciliation
    db.create_node("iqn.other", "10.5.5.5", 3260, 1)
    (tmp_path / "db/nodes/iqn.other/10.5.5.5,3260,1/default").write_text("junk\n")
    res = db.reconcile_discovery(did, [a])
    assert res.updated == [a] and res.deleted == [b] and not res.failed
    assert db.read_node(a)["node.startup"] == "automatic"  # user settings kept
    assert db.list_nodes(target=T2) == []
    deleted = db.delete_discovery(did)
    assert deleted == [a]
    assert not (tmp_path / "db/send_targets/10.0.0.9,3260").exists()
    with pytest.raises(RecordNotFound):
        db.read_discovery(did)


def test_discovery_batch_keeps_a_record_made_meanwhile(db, tmp_path, monkeypatch):
    """A record another writer creates while a discovery batch has its temp files written
    is not replaced by the batch's rename: the batch writes it through write_node (its
    lock, its own atomic write), and leaves no temp file behind."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    a, b = NodeID(T1, "10.0.0.9", 3260, 1), NodeID(T2, "10.0.0.9", 3260, 1)
    theirs = tmp_path / "db/nodes" / T2 / "10.0.0.9,3260,1/default"
    real, real_rename = store.syncfs, store.rename_noreplace
    renamed = []

    other = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"))
    portal_dirs_seen = []

    def syncfs(path):  # the first flush comes between the temp files and their renames
        real(path)
        if not theirs.exists():
            portal_dirs_seen.extend(os.listdir(tmp_path / "db/nodes" / T1 / "10.0.0.9,3260,1"))
            other.create_node(T2, "10.0.0.9", 3260, 1, values={
                "node.session.auth.authmethod": "CHAP",
                "node.session.auth.password": "s3cret"})
    monkeypatch.setattr(store, "syncfs", syncfs)
    monkeypatch.setattr(store, "rename_noreplace",
                        lambda src, dst: (renamed.append(dst), real_rename(src, dst)))
    res = db.reconcile_discovery(did, [a, b])
    assert res.added == [a] and res.updated == [b] and not res.failed
    assert str(theirs) in renamed  # the batch tried, and left theirs as it was made
    rec = db.read_node(b)  # theirs, its CHAP kept (before: the batch's defaults over it)
    assert rec["node.session.auth.password"] == "s3cret"
    assert (rec["node.discovery_address"], rec["node.discovery_type"]) == \
        ("10.0.0.9", "send_targets")
    assert db.discovery_nodes(did) == [a, b]
    # the temp files were never where iscsiadm reads records, nor left anywhere
    assert portal_dirs_seen == [] and os.listdir(tmp_path / "db/.tmp") == []
    leftovers = [n for _, _, names in os.walk(tmp_path / "db/nodes") for n in names
                 if n.endswith(".new")]
    assert leftovers == []


def test_a_rediscovery_does_not_undo_an_update_made_meanwhile(db, tmp_path, monkeypatch):
    """Another process's -o update between a rediscovery's read of a record and its write
    (the record's discovery fields change: another portal of the same array found it)
    waits for the record's lock, and lands (before: read without the lock, written back
    whole, the update lost with both commands exiting 0)."""
    import threading

    first, second = DiscoveryID("sendtargets", "10.0.0.9", 3260), \
        DiscoveryID("sendtargets", "10.0.0.8", 3260)
    for did in (first, second):
        db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db.reconcile_discovery(first, [nid])
    other = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=10)
    real_parse, updater = store.parse_record, []

    def parse(*a, **kw):  # the rediscovery has read the record: the update comes now
        if not updater:
            updater.append(threading.Thread(target=other.update_node, args=(
                nid, "node.session.timeo.replacement_timeout", "7")))
            updater[0].start()
            time.sleep(0.3)
        return real_parse(*a, **kw)
    monkeypatch.setattr(store, "parse_record", parse)
    res = db.reconcile_discovery(second, [nid], delete_stale=False)
    updater[0].join(10)
    assert res.updated == [nid] and not res.failed
    rec = db.read_node(nid)
    assert rec["node.session.timeo.replacement_timeout"] == 7
    assert rec["node.discovery_address"] == "10.0.0.8"


def test_a_rediscovery_converts_an_old_style_record_of_the_portal(db, tmp_path):
    """A record of tpgt unknown (the file nodes/T/ip,port: -o new without a tag, or
    iscsiadm 2.0.874) found by a discovery with its tag: one record, tagged, its settings
    kept (before: a second record from the defaults beside it)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.create_node(T1, "10.0.0.1", 3260, values={"node.startup": "automatic"})
    assert (tmp_path / "db/nodes" / T1 / "10.0.0.1,3260").is_file()
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    res = db.reconcile_discovery(did, [nid])
    assert res.updated == [nid] and not res.added and not res.failed
    assert db.list_nodes() == [nid]
    assert not (tmp_path / "db/nodes" / T1 / "10.0.0.1,3260").exists()
    rec = db.read_node(nid)
    assert (rec["node.startup"], rec["node.tpgt"]) == ("automatic", 1)
    assert db.discovery_nodes(did) == [nid]


def test_a_rediscovery_without_a_tag_keeps_the_old_style_records_settings(db, tmp_path):
    """A target that answers SendTargets without a tag (no TargetAddress: tpgt unknown)
    gets the old-style file nodes/T/ip,port, as iscsiadm's; found again, that record keeps
    its settings, and ``-o new`` leaves it alone (iscsiadm's idbm_rec_read finds the file).
    Before: looked for as nodes/T/ip,port,-1/iface, never found, so every rediscovery made
    it again from the defaults (its CHAP secret and startup lost)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.9", 3260, -1)
    assert db.reconcile_discovery(did, [nid]).added == [nid]
    (legacy,) = db.list_nodes()
    assert legacy.legacy and (tmp_path / "db/nodes" / T1 / "10.0.0.9,3260").is_file()
    db.update_node(legacy, "node.session.auth.password", "s3cret")
    db.update_node(legacy, "node.startup", "automatic")
    for kw in ({}, {"create": True, "refresh": False, "delete_stale": False}):
        res = db.reconcile_discovery(did, [nid], **kw)
        assert not res.added and not res.failed, (kw, res)
        assert res.updated == ([] if kw else [nid])
        rec = db.read_node(legacy)
        assert (rec["node.session.auth.password"], rec["node.startup"]) == ("s3cret",
                                                                             "automatic")
    assert db.list_nodes() == [legacy]


def test_a_rediscovery_under_a_new_tag_moves_the_records_settings(db, tmp_path):
    """The target's portal group renumbered (same target, portal and iface, tag 1 -> 2): the
    record moves to the new tag with its settings, then the stale one goes (before: a new
    record from the defaults, the old one and its CHAP secret deleted; iscsiadm keeps the
    old record, stale, beside a new one from the defaults).  ``-o new`` alone makes the new
    tag's record from the defaults, as iscsiadm's."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    one, two = NodeID(T1, "10.0.0.1", 3260, 1), NodeID(T1, "10.0.0.1", 3260, 2)
    other = NodeID(T2, "10.0.0.1", 3260, 1)
    db.reconcile_discovery(did, [one, other])
    db.update_node(one, "node.session.auth.password", "s3cret")
    res = db.reconcile_discovery(did, [two, other], create=True, refresh=False,
                                 delete_stale=False)
    assert res.added == [two] and db.read_node(two)["node.session.auth.password"] == ""
    db.delete_node(two)
    res = db.reconcile_discovery(did, [two, other])
    assert (res.updated, res.deleted, res.added, res.failed) == ([two, other], [one], [], [])
    assert db.list_nodes() == [two, other] and db.discovery_nodes(did) == [two, other]
    assert db.read_node(two)["node.session.auth.password"] == "s3cret"
    assert db.read_node(two)["node.tpgt"] == 2


def test_a_target_that_stops_sending_its_tag_keeps_its_records_settings(db):
    """Found again without a tag (a TargetAddress without one, or none: allowed), the
    record moves to the old-style file with its settings, as a renumbered tag's does
    (before: deleted as stale, and a record from the defaults made: the CHAP secret lost
    without a word, the next login refused)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    one, untagged = NodeID(T1, "10.0.0.1", 3260, 1), NodeID(T1, "10.0.0.1", 3260, -1)
    db.reconcile_discovery(did, [one])
    db.update_node(one, "node.session.auth.password", "s3cret")
    res = db.reconcile_discovery(did, [untagged])
    assert (res.updated, res.deleted, res.added, res.failed) == ([untagged], [one], [], [])
    (now,) = db.list_nodes()
    assert now.legacy and now.tpgt == -1
    assert db.read_node(now)["node.session.auth.password"] == "s3cret"
    res = db.reconcile_discovery(did, [one])  # and back under a tag
    assert (res.updated, res.deleted, res.added) == ([one], [], [])
    assert db.list_nodes() == [one] and db.read_node(one)["node.session.auth.password"] == \
        "s3cret"


def test_a_portal_address_spelled_otherwise_keeps_its_records_settings(db):
    """The target sends one IPv6 address spelled otherwise (FD00:0::2, then fd00::2): the
    record moves to the new spelling with its settings, as a renumbered tag's (before:
    deleted as stale, a record from the defaults made; iscsiadm's stale match,
    iscsi_addr_match, takes both as one address and keeps the old record)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    upper, lower = NodeID(T1, "FD00:0::2", 3261, 2), NodeID(T1, "fd00::2", 3261, 2)
    db.reconcile_discovery(did, [upper])
    db.update_node(upper, "node.startup", "automatic")
    res = db.reconcile_discovery(did, [lower])
    assert (res.updated, res.deleted, res.added, res.failed) == ([lower], [upper], [], [])
    assert db.list_nodes() == [lower] and db.discovery_nodes(did) == [lower]
    rec = db.read_node(lower)
    assert (rec["node.startup"], rec["node.conn[0].address"]) == ("automatic", "fd00::2")


def test_a_portal_named_by_its_address_instead_of_its_host_name_keeps_its_settings(db):
    """The target's TargetAddress names the portal ``localhost``, then ``127.0.0.1`` (and
    back): the record moves to the new name with its CHAP, as a renumbered tag's (before:
    deleted as stale and made again from the defaults, its CHAP lost; iscsiadm's stale
    match, iscsi_addr_match, looks both up and keeps the old record)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    named, numeric = NodeID(T1, "localhost", 3260, 1), NodeID(T1, "127.0.0.1", 3260, 1)
    db.reconcile_discovery(did, [named])
    db.update_node_many(named, {"node.session.auth.authmethod": "CHAP",
                                "node.session.auth.username": "myuser",
                                "node.session.auth.password": "s3cret-12345"})
    for old, new in ((named, numeric), (numeric, named)):
        res = db.reconcile_discovery(did, [new])
        assert (res.updated, res.deleted, res.added, res.failed) == ([new], [old], [], [])
        rec = db.read_node(new)
        assert (rec["node.session.auth.username"], rec["node.conn[0].address"]) == \
            ("myuser", new.address)
    other = NodeID(T1, "127.0.0.2", 3260, 1)  # another address: not the same portal
    res = db.reconcile_discovery(did, [other])
    assert (res.added, res.deleted) == ([other], [named])
    assert db.read_node(other)["node.session.auth.username"] == ""


def test_an_old_style_file_that_holds_its_tag_is_converted_by_an_update(db, tmp_path):
    """nodes/T/ip,port with node.tpgt = 1 inside (iscsiadm 2.0.874's; RHEL 7 DBs carried
    forward): an update writes it as <ip>,<port>,1/default, as idbm_rec_write converts it,
    so that a record made later for that portal through another iface sits beside it
    (before: the update kept the file, and that -o new removed it, its CHAP settings and
    the update with it)."""
    (tmp_path / "db/nodes" / T1).mkdir(parents=True)
    (tmp_path / "db/nodes" / T1 / "10.0.0.1,3260").write_text(
        f"# BEGIN RECORD 2.0-874\nnode.name = {T1}\nnode.tpgt = 1\n"
        "node.conn[0].address = 10.0.0.1\nnode.conn[0].port = 3260\n"
        "iface.iscsi_ifacename = default\niface.transport_name = tcp\n"
        "node.session.auth.username = u\nnode.session.auth.password = secretpw\n"
        "# END RECORD\n")
    db.create_iface("if2")
    (legacy,) = db.list_nodes()
    assert legacy.legacy
    db.update_node(legacy, "node.startup", "automatic")
    converted = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    assert db.list_nodes() == [converted]
    assert not (tmp_path / "db/nodes" / T1 / "10.0.0.1,3260").exists()
    db.create_node(T1, "10.0.0.1", 3260, 1, "if2")
    assert db.list_nodes() == [converted, NodeID(T1, "10.0.0.1", 3260, 1, "if2")]
    rec = db.read_node(converted)
    assert (rec["node.startup"], rec["node.session.auth.password"]) == ("automatic",
                                                                        "secretpw")


def test_an_old_style_record_outlives_a_failed_conversion(db, tmp_path, monkeypatch):
    """The conversion's write fails (a full disk): the old-style record is still there
    (before: removed first, so the record and its settings were lost)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.create_node(T1, "10.0.0.1", 3260, values={"node.startup": "automatic"})

    def full(*a, **kw):
        raise DBError("cannot write: No space left on device")
    monkeypatch.setattr(store, "atomic_write", full)
    res = db.reconcile_discovery(did, [NodeID(T1, "10.0.0.1", 3260, 1)])
    assert [n for n, _ in res.failed] == [NodeID(T1, "10.0.0.1", 3260, 1)]
    monkeypatch.undo()
    (legacy,) = db.list_nodes()
    assert legacy.legacy and db.read_node(legacy)["node.startup"] == "automatic"


def test_two_batches_of_one_process_do_not_share_temp_files(db, tmp_path, monkeypatch):
    """Two discoveries' batches at once in one process (threads; or two containers'
    processes of one pid on a shared DB): each record is its own (before: the temp file
    was named by pid and index, so one's record could land in the other's path)."""
    import threading
    dids = [DiscoveryID("sendtargets", f"10.0.0.{i}", 3260) for i in (8, 9)]
    for did in dids:
        db.create_discovery(did)
    names = {did: [f"iqn.2001-04.com.example:{did.address[-1]}{i}" for i in range(20)]
             for did in dids}
    barrier, real = threading.Barrier(2), store.syncfs

    def syncfs(path):  # both batches have written their temp files before either renames
        real(path)
        try:
            barrier.wait(2)
        except threading.BrokenBarrierError:
            pass
    monkeypatch.setattr(store, "syncfs", syncfs)

    def discover(did):
        NodeDB(db.db_root, db.config_root).reconcile_discovery(
            did, [NodeID(t, did.address, 3260, 1) for t in names[did]])
    threads = [threading.Thread(target=discover, args=(did,)) for did in dids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for did in dids:
        for t in names[did]:
            rec = db.read_node(NodeID(t, did.address, 3260, 1))
            assert (rec["node.name"], rec["node.conn[0].address"]) == (t, did.address)


def test_temp_files_a_crash_left_are_removed(db, tmp_path):
    """In <db>/.tmp, a temp file an hour old is a crash's: removed by the next writer.  In
    a portal directory (where earlier versions wrote them, and iscsiadm reads them as
    records) a record's own are removed with it."""
    db.create_node(T1, "10.0.0.1", 3260, 1)
    stale, fresh = tmp_path / "db/.tmp/.default.x.tmp", tmp_path / "db/.tmp/9.0.new"
    stale.write_text("node.session.auth.password = old\n")
    fresh.write_text("")
    os.utime(stale, (time.time() - 7200,) * 2)
    NodeDB(str(tmp_path / "db"), str(tmp_path / "etc")).create_node(T2, "10.0.0.1", 3260, 1)
    assert not stale.exists() and fresh.exists()
    pdir = tmp_path / "db/nodes" / T1 / "10.0.0.1,3260,1"
    (pdir / ".default.abc123.tmp").write_text("")
    (pdir / ".default.4242.new").write_text("")
    db.delete_node(NodeID(T1, "10.0.0.1", 3260, 1))
    assert not (tmp_path / "db/nodes" / T1).exists()


@pytest.mark.parametrize("libc", ["renameat2", "EINVAL", "no renameat2"])
def test_rename_noreplace(tmp_path, monkeypatch, libc):
    """rename_noreplace renames, and refuses (FileExistsError, both files intact) when the
    destination exists: with renameat2, on a filesystem that refuses its flag (EINVAL),
    and without it in libc."""
    if libc == "EINVAL":
        import ctypes

        def refusing(*_args):
            ctypes.set_errno(22)
            return -1
        monkeypatch.setattr(store, "_libc_renameat2", lambda: refusing)
    elif libc == "no renameat2":
        monkeypatch.setattr(store, "_libc_renameat2", lambda: None)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_text("new")
    store.rename_noreplace(str(src), str(dst))
    assert dst.read_text() == "new" and not src.exists()
    src.write_text("newer")
    with pytest.raises(FileExistsError):
        store.rename_noreplace(str(src), str(dst))
    assert dst.read_text() == "new" and src.read_text() == "newer"
    with pytest.raises(FileNotFoundError):
        store.rename_noreplace(str(tmp_path / "missing"), str(tmp_path / "other"))


def test_ifaces(db, tmp_path):
    assert db.list_ifaces() == ["default", "iser"]
    assert db.read_iface("iser")["iface.transport_name"] == "iser"
    db.create_iface("eth0")
    with pytest.raises(RecordExists):
        db.create_iface("eth0")
    db.update_iface("eth0", "iface.net_ifacename", "eth0")
    with pytest.raises(ReadOnlyKey):
        db.update_iface("eth0", "iface.iscsi_ifacename", "x")
    assert db.list_ifaces() == ["eth0", "default", "iser"]
    # node records take the iface's settings at creation
    r = db.create_node(T1, "10.0.0.1", 3260, 1, "eth0")
    assert r["iface.net_ifacename"] == "eth0"
    with pytest.raises(RecordNotFound):
        db.create_node(T1, "10.0.0.1", 3260, 1, "nope")
    f = tmp_path / "db/ifaces/eth0"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    db.delete_iface("eth0")
    with pytest.raises(DBError):
        db.delete_iface("default")
    with pytest.raises(DBError):
        db.create_iface("x" * 65)


def test_a_link_loop_in_the_tree_is_warned_and_skipped_or_an_error(db, tmp_path):
    """ELOOP where listing follows a link: a target directory that is a loop is skipped
    with a warning; a nodes directory that is one is a DBError (the CLI's clear message)."""
    warned = []
    db.warn = warned.append
    db.create_node(T1, "10.0.0.1", 3260, 1)
    db.create_node(T1 + "b", "10.0.0.1", 3260, 1)
    nodes = tmp_path / "db/nodes"
    (nodes / "iqn.2003-01.org.example:loop").symlink_to("iqn.2003-01.org.example:loop")
    assert [n.target for n in db.list_nodes()] == [T1, T1 + "b"]
    assert any("Too many levels of symbolic links: skipped" in w for w in warned)
    os.rename(nodes, tmp_path / "db/nodes.real")
    nodes.symlink_to("nodes")
    with pytest.raises(DBError, match="cannot list"):
        db.list_nodes()


def _unlistable(monkeypatch, path: str) -> None:
    """``os.scandir`` of ``path`` refused (EACCES), as for a user on root's 0700 DB."""
    import errno

    real_scandir = os.scandir

    def scandir(p="."):
        if os.fspath(p) == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_scandir(p)
    monkeypatch.setattr(os, "scandir", scandir)


def test_a_portal_directory_that_cannot_be_listed_is_said(db, tmp_path, monkeypatch):
    """Its records cannot be read (EACCES, EIO): said, as a target directory's is, not
    left out without a word (a listing then lacked them, and a delete said nothing)."""
    warned = []
    db.warn = warned.append
    db.create_node(T1, "10.0.0.1", 3260, 1)
    db.create_node(T1, "10.0.0.2", 3260, 1)
    bad = str(tmp_path / "db/nodes" / T1 / "10.0.0.2,3260,1")
    _unlistable(monkeypatch, bad)
    assert [n.address for n in db.list_nodes()] == ["10.0.0.1"]
    assert warned == [f"{bad}: cannot list: Permission denied"]


def test_discovery_records_that_cannot_be_listed_are_an_error(db, tmp_path, monkeypatch):
    """``send_targets/`` unreadable (a user's -m discovery on root's 0700 DB): an error that
    says so, where the listing was a silent "no records" (21); none there is none."""
    db.create_discovery(DiscoveryID("sendtargets", "10.0.0.9", 3260))
    bad = str(tmp_path / "db/send_targets")
    _unlistable(monkeypatch, bad)
    with pytest.raises(DBError, match=f"^{bad}: cannot list: Permission denied$"):
        db.list_discovery()
    monkeypatch.undo()
    shutil.rmtree(bad)
    assert db.list_discovery() == []


def test_a_discovery_record_that_cannot_be_deleted_is_an_error(db, tmp_path, monkeypatch):
    import errno

    did = DiscoveryID("st", "10.0.0.9", 3260)
    db.create_discovery(did)
    path = db.discovery_path(did)
    real_unlink = os.unlink

    def unlink(p, *a, **kw):
        if p == path:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_unlink(p, *a, **kw)

    monkeypatch.setattr(store.os, "unlink", unlink)
    with pytest.raises(DBError, match="cannot delete .*Input/output error"):
        db.delete_discovery(did)


def test_iface_names_listings_cannot_show_are_refused(db):
    for name in (".hidden", " ", "a b", "a\tb", "a\x1b[31mb", "\u202e"):
        with pytest.raises(DBError, match="invalid iface name"):
            db.create_iface(name)
    db.create_iface("eth0.100_x-1")
    assert "eth0.100_x-1" in db.list_ifaces()


def test_initiator_name_and_roots(tmp_path, monkeypatch):
    root = str(tmp_path / "cfg")
    assert dbconfig.read_initiator_name(root) is None
    n = dbconfig.ensure_initiator_name(root)
    assert n.name.startswith("iqn.1993-08.org.debian:01:") and len(n.name) == 26 + 12
    p = tmp_path / "cfg/initiatorname.iscsi"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert dbconfig.ensure_initiator_name(root) == n
    p.write_text("InitiatorName=iqn.x:y\nInitiatorAlias=host1\n")
    assert dbconfig.read_initiator_name(root) == dbconfig.InitiatorName("iqn.x:y", "host1")
    # a name (or alias) appended under the first: the first is the one, as iscsid's
    # cfg_get_string_param reads it (the last was taken: the targets' ACLs refused it)
    p.write_text("InitiatorName=\nInitiatorName=iqn.x:y\nInitiatorAlias=host1\n"
                 "InitiatorName=iqn.x:new\nInitiatorAlias=host2\n")
    assert dbconfig.read_initiator_name(root) == dbconfig.InitiatorName("iqn.x:y", "host1")
    monkeypatch.setenv("ISCSICTL_DB_ROOT", "/a")
    monkeypatch.delenv("ISCSICTL_CONFIG_ROOT", raising=False)
    assert dbconfig.resolve_roots() == dbconfig.Roots("/a", "/etc/iscsi")
    assert dbconfig.resolve_roots("/b", "/c") == dbconfig.Roots("/b", "/c")


def test_the_db_is_found_where_rhel_fedora_and_suse_keep_it(tmp_path):
    """/var/lib/iscsi/nodes without /etc/iscsi/nodes (their open-iscsi's -Ddbroot): the
    DB is there, or iscsictl saw no records, and its automatic logins made none; with
    /etc/iscsi/nodes (Debian, upstream), or neither: /etc/iscsi."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    assert dbconfig.default_db_root(str(etc), str(var)) == str(etc)
    (var / "nodes").mkdir(parents=True)
    assert dbconfig.default_db_root(str(etc), str(var)) == str(var)
    (etc / "nodes").mkdir(parents=True)
    assert dbconfig.default_db_root(str(etc), str(var)) == str(etc)


def test_an_unreadable_initiator_name_is_an_error_and_never_replaced(tmp_path):
    root = tmp_path / "cfg"
    (root / "initiatorname.iscsi").mkdir(parents=True)  # EISDIR, like EACCES or EIO
    for read in (dbconfig.read_initiator_name, dbconfig.ensure_initiator_name):
        with pytest.raises(DBError) as e:
            read(str(root))
        assert e.value.exit_code == 6 and "cannot read" in str(e.value)
    assert (root / "initiatorname.iscsi").is_dir()


@pytest.mark.parametrize("text", [b"# notes\nInitiatorname=iqn.1993-08.org.debian:01:abc\n",
                                  b"\xef\xbb\xbfInitiatorName=iqn.x:y\n",
                                  b"InitiatorAlias=db7\n", b"InitiatorName=\n", b"\x00\x01\xff",
                                  b"InitiatorName:iqn.x:y\n", b""])
def test_a_nameless_initiator_file_is_an_error_and_never_replaced(tmp_path, text):
    """A file without a name (a typo, an alias only, junk, empty) may be the one whose
    name the targets' ACLs know, mistyped: an error (6), left as it is; Debian's startup
    checks refuse it too.  Only a missing file, or GenerateName=yes, gets a new name."""
    p = tmp_path / "initiatorname.iscsi"
    p.write_bytes(text)
    with pytest.raises(DBError, match="does not contain a valid InitiatorName") as e:
        dbconfig.ensure_initiator_name(str(tmp_path))
    assert e.value.exit_code == 6 and p.read_bytes() == text


def test_generate_name_yes_asks_for_a_new_name(tmp_path):
    p = tmp_path / "initiatorname.iscsi"
    p.write_text("## Debian: a new name at the first start\nGenerateName=yes\n")
    n = dbconfig.ensure_initiator_name(str(tmp_path))
    assert n.name.startswith("iqn.1993-08.org.debian:01:")
    assert p.read_text().endswith(f"\nInitiatorName={n.name}\n") and "GenerateName" not in \
        p.read_text()
    assert dbconfig.ensure_initiator_name(str(tmp_path)) == n


def test_listing_10000_records(tmp_path, capsys):
    """Build 10,000 node records directly on disk and time the flat listing (report only)."""
    root = tmp_path / "db"
    body = "# BEGIN RECORD 2.1.8\nnode.name = x\n# END RECORD\n"
    for i in range(10000):
        d = root / "nodes" / f"iqn.2001-04.com.example:t{i // 4:05d}" / f"10.0.{i % 4}.1,3260,1"
        d.mkdir(parents=True)
        (d / "default").write_text(body)
    db = NodeDB(str(root), str(tmp_path))
    t0 = time.perf_counter()
    lines = db.flat_listing()
    dt = time.perf_counter() - t0
    assert len(lines) == 10000
    with capsys.disabled():
        print(f"\n[db] flat listing of 10,000 node records: {dt * 1000:.1f} ms")


def test_a_target_filter_that_cannot_be_a_name_matches_nothing(tmp_path):
    """No path outside the DB is ever listed, and a NUL is no error: nothing matches."""
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "db"))
    db.create_node("iqn.2001-04.com.example:t", "10.0.0.1")
    for bad in ("..", ".", "", "a/b", "../db", "a\0b"):
        assert db.list_nodes(target=bad) == [], bad


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "socket", "dir", "file"])
def test_read_regular_reads_only_a_regular_file_and_never_blocks(tmp_path, kind):
    """A FIFO would block open(2) until a writer came, /dev/zero would be read until memory
    ran out: only a regular file is read, and finding out never blocks."""
    import errno
    import socket

    from iscsictl.db.files import read_regular

    path = str(tmp_path / "f")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "file":
        (tmp_path / "f").write_bytes(b"x" * 70000)
    else:
        os.symlink(kind, path)
    if kind == "file":
        assert read_regular(path) == b"x" * 70000
        assert read_regular(path, 5) == b"xxxxx" and read_regular(path, 0) == b""
        return
    if kind == "socket":  # open(2) of a socket fails by itself
        with pytest.raises(OSError) as e:
            read_regular(path)
        assert e.value.errno == errno.ENXIO
        return
    with pytest.raises(OSError) as e:
        read_regular(path)
    if kind == "dir":
        assert isinstance(e.value, IsADirectoryError)
    else:
        assert e.value.errno == errno.EINVAL and e.value.strerror == "not a regular file"


def test_read_regular_reads_a_procfs_file_whose_size_says_0():
    """procfs shows st_size 0: the file is still read to its end (the daemon's boot id,
    which tells a restart from a boot's first start: empty, the automatic logins would run
    at every restart)."""
    from iscsictl.db.files import read_regular

    path = "/proc/sys/kernel/random/boot_id"
    assert os.stat(path).st_size == 0
    with open(path, "rb") as f:
        assert read_regular(path) == f.read()
    assert len(read_regular(path)) == 37  # a UUID and its newline


def test_a_fifo_or_device_in_place_of_a_database_file_is_an_error_not_a_hang(tmp_path):
    """A node record, iscsid.conf and initiatorname.iscsi replaced by a FIFO (or a symlink
    to /dev/zero): each command that reads one says so and ends (a process with a timeout:
    a hang fails the test instead of stopping the run)."""
    root = tmp_path / "etc"
    root.mkdir()
    (root / "initiatorname.iscsi").write_text("InitiatorName=iqn.2001-04.com.example:i\n")
    (root / "iscsid.conf").write_text("node.startup = manual\n")

    def iscsictl(*args):
        return subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", str(root),
                               "--config-root", str(root), *args],
                              capture_output=True, text=True, timeout=30)
    assert iscsictl("-m", "node", "-o", "new", "-T", T1, "-p", "10.0.0.1:3260,1").returncode == 0
    rec = root / "nodes" / T1 / "10.0.0.1,3260,1" / "default"
    for make in (os.mkfifo, lambda p: os.symlink("/dev/zero", p)):
        rec.unlink()
        make(rec)
        r = iscsictl("-m", "node", "-T", T1, "-p", "10.0.0.1")
        assert r.returncode == 6 and f"cannot read {rec}: not a regular file" in r.stderr
        r = iscsictl("-m", "node", "-o", "show")  # every record read
        assert r.returncode == 6 and "not a regular file" in r.stderr
    conf = root / "iscsid.conf"
    conf.unlink()
    os.mkfifo(conf)  # warned, and the compiled defaults apply
    r = iscsictl("-m", "node", "-o", "new", "-T", T2, "-p", "10.0.0.2")
    assert r.returncode == 0 and f"cannot read {conf}: not a regular file" in r.stderr
    name = root / "initiatorname.iscsi"
    name.unlink()
    os.mkfifo(name)  # an error, and never replaced by a generated name
    r = iscsictl("-m", "node", "-T", T2, "-l")
    assert r.returncode == 6 and f"cannot read {name}: not a regular file" in r.stderr
    assert stat.S_ISFIFO(name.lstat().st_mode)


@pytest.mark.parametrize("umask", [0, 0o022])
def test_db_directories_and_lock_are_root_s_alone_whatever_the_umask(tmp_path, umask):
    """The first write makes the DB root (and the config root, for initiatorname.iscsi)
    when missing: 0700 (what iscsiadm's mkdir 0770 gives under its umask 0077: the target
    names are not every user's to list) and 0755, not 0777 (os.makedirs gives only the
    last directory the mode asked: the root had come with the lock directory under it);
    iscsiadm's lock file 0600, as its open 0666 under that umask."""
    old = os.umask(umask)
    try:
        db = NodeDB(str(tmp_path / "etc-iscsi"), str(tmp_path / "conf"),
                    iscsiadm_lock_dir=str(tmp_path / "lock"))
        db.create_node("iqn.2001-04.com.example:t", "10.0.0.1", 3260, 1)
        dbconfig.ensure_initiator_name(str(tmp_path / "conf"))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.lstat().st_mode)
             for p in tmp_path.rglob("*")
             if not p.is_symlink() and (p.is_dir() or p.name == "lock")}
    assert modes.pop("conf") == 0o755 and modes.pop("lock/lock") == 0o600
    assert set(modes.values()) == {0o700}, sorted(modes.items())  # nodes/..., .locks ...


def test_a_link_that_cannot_be_made_is_a_failure(db, tmp_path):
    """A 223-byte target name, an IPv6 portal and a long iface name make a link name over
    NAME_MAX: the record is written but not linked, and that is said (a failure, exit 6, as
    iscsiadm's "Could not make link"), not only warned while the record is reported added
    (it was then never deleted with its discovery)."""
    name = "iqn.2001-04.com.example:" + "x" * (223 - len("iqn.2001-04.com.example:"))
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.create_iface("i" * 60)
    nid = NodeID(name, "fd00:1234:5678:9abc:def0:1234:5678:9abc", 3260, 1, "i" * 60)
    res = db.reconcile_discovery(did, [nid])
    assert not res.added and [n for n, _ in res.failed] == [nid]
    assert "File name too long" in str(res.failed[0][1])


def test_a_file_where_the_temp_directory_goes_is_a_clear_error(db, tmp_path):
    db.create_node(T1, "10.0.0.1", 3260, 1)
    (tmp_path / "db/.tmp").rmdir()
    (tmp_path / "db/.tmp").write_text("")
    with pytest.raises(DBError, match=r"\.tmp: it exists and is not a directory"):
        NodeDB(str(tmp_path / "db"), str(tmp_path / "etc")).create_node(T2, "10.0.0.1", 3260, 1)


def test_an_iface_file_without_a_transport_is_not_an_iface(db, tmp_path):
    """open-iscsi's iface_is_valid: no iface.transport_name, no iface (iscsiadm warns "not a
    valid iSCSI interface configuration file" and skips it); before, it was read as a tcp
    iface, which a discovery without -I then bound through."""
    ifaces = tmp_path / "db/ifaces"
    ifaces.mkdir(parents=True, exist_ok=True)
    (ifaces / "handmade").write_text("iface.iscsi_ifacename = handmade\n"
                                     "iface.hwaddress = 00:10:18:aa:bb:01\n")
    (ifaces / "empty").write_text("iface.transport_name =\n")
    (ifaces / "good").write_text("iface.transport_name = tcp\n")
    for name in ("handmade", "empty"):
        with pytest.raises(CorruptRecord, match="not a valid iSCSI interface"):
            db.read_iface(name)
    assert db.read_iface("good")["iface.transport_name"] == "tcp"


def test_a_discovery_record_that_is_not_a_file_is_said_and_can_be_deleted(db, tmp_path):
    """st_config made a directory (or a FIFO, a dangling link) by hand: the listing says it
    skips it (node records damaged so are said too), and -o delete still removes it."""
    ok, bad = DiscoveryID("sendtargets", "10.0.0.1", 3260), \
        DiscoveryID("sendtargets", "10.0.0.2", 3260)
    db.create_discovery(ok)
    db.create_discovery(bad)
    path = db.discovery_path(bad)
    os.unlink(path)
    os.mkdir(path)
    said = []
    db.warn = said.append
    assert db.list_discovery() == [ok]
    assert said == [f"{path}: not a regular file: discovery record skipped"]
    db.delete_discovery(bad)
    assert not os.path.lexists(os.path.dirname(path)) and db.list_discovery() == [ok]


def test_iscsiadms_lock_is_taken_for_its_database_only(tmp_path):
    """The database at /etc/iscsi (iscsiadm's) takes iscsiadm's lock around each change, at
    /run/lock/iscsi; any other root none (nothing is made when a NodeDB is)."""
    (tmp_path / "etc").mkdir()
    assert isinstance(NodeDB("/etc/iscsi", str(tmp_path / "etc")).iscsiadm_lock,
                      store.IscsiadmLock)
    assert NodeDB("/etc/iscsi", str(tmp_path / "etc")).iscsiadm_lock.lock_dir == \
        "/run/lock/iscsi"
    assert not isinstance(NodeDB(str(tmp_path / "db"), str(tmp_path / "etc")).iscsiadm_lock,
                          store.IscsiadmLock)


def test_iscsiadms_lock_is_taken_for_the_other_builds_root_and_through_links(tmp_path,
                                                                            monkeypatch):
    """Fedora's, RHEL's and SUSE's iscsiadm keep the database in /var/lib/iscsi: it was
    changed there without the lock (an iscsiadm -o update between a read and a write was
    undone, reads saw half-written records); a link to a system root, or a system root
    that is a link, is that database too."""
    (tmp_path / "etc").mkdir()
    assert isinstance(NodeDB("/var/lib/iscsi", str(tmp_path / "etc")).iscsiadm_lock,
                      store.IscsiadmLock)
    real, link = tmp_path / "real", tmp_path / "system"
    real.mkdir()
    link.symlink_to(real)
    monkeypatch.setattr(store, "SYSTEM_DB_ROOTS", (str(link),))  # a system root that is a link
    assert isinstance(NodeDB(str(real), str(tmp_path / "etc")).iscsiadm_lock, store.IscsiadmLock)
    assert isinstance(NodeDB(str(link), str(tmp_path / "etc")).iscsiadm_lock, store.IscsiadmLock)
    assert not isinstance(NodeDB(str(tmp_path / "db"), str(tmp_path / "etc")).iscsiadm_lock,
                          store.IscsiadmLock)


def test_a_change_waits_for_iscsiadms_lock_and_says_which_file_holds_it(tmp_path):
    """iscsiadm's lock held (its ``lock.write`` link, left by a holder that died): a change
    waits for it, bounded, and says which file to remove; nothing is changed.  Taken and
    given back, and nested changes (a rediscovery's deletes) take it once."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "run-lock" / "iscsi"  # made, /run/lock too where there is none
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=0.3,
                iscsiadm_lock_dir=str(lock_dir))
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db.reconcile_discovery(did, [nid])
    assert sorted(os.listdir(lock_dir)) == ["lock"]  # given back
    res = db.reconcile_discovery(did, [])  # its delete_node nested: no wait on itself
    assert res.deleted == [nid]
    db.reconcile_discovery(did, [nid])
    os.link(lock_dir / "lock", lock_dir / "lock.write")
    with pytest.raises(LockTimeout, match="lock.write .iscsiadm's lock; remove it"):
        db.update_node(nid, "node.startup", "automatic")
    assert db.read_node(nid)["node.startup"] == "manual"
    os.unlink(lock_dir / "lock.write")
    assert db.update_node(nid, "node.startup", "automatic")["node.startup"] == "automatic"


def test_a_dead_holders_iscsiadm_lock_is_taken_over_after_iscsiadms_wait(tmp_path,
                                                                        monkeypatch):
    """A ``lock.write`` that no take or release has touched for ISCSIADM_LOCK_WAIT s (its
    holder killed mid-change) is taken over, said, and given back, as iscsiadm goes on
    after its 30 s (before: every change failed with 6 until someone removed the file)."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "run-lock" / "iscsi"
    warnings = []
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=5,
                iscsiadm_lock_dir=str(lock_dir), warn=warnings.append)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db.create_node(T1, "10.0.0.1", 3260, 1)
    os.link(lock_dir / "lock", lock_dir / "lock.write")  # and its holder died
    monkeypatch.setattr(store, "ISCSIADM_LOCK_WAIT", 0.2)
    start = time.monotonic()
    assert db.update_node(nid, "node.startup", "automatic")["node.startup"] == "automatic"
    assert 0.1 < time.monotonic() - start < 4
    assert sorted(os.listdir(lock_dir)) == ["lock"]  # given back
    assert warnings == [f"{lock_dir}/lock.write unchanged for 0.2 s (its holder is gone): "
                        "taken over, as iscsiadm goes on after its 30 s"]


def _live_lock(tmp_path):  # type: ignore[no-untyped-def]
    """A DB under iscsiadm's lock at ``run-lock/iscsi`` (0.3 s lock waits), one record, and
    ``lock.write`` held (its link made); (db, the record's NodeID, the lock directory)."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "run-lock" / "iscsi"
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=0.3,
                iscsiadm_lock_dir=str(lock_dir))
    db.create_node(T1, "10.0.0.1", 3260, 1)
    os.link(lock_dir / "lock", lock_dir / "lock.write")
    return db, NodeID(T1, "10.0.0.1", 3260, 1), lock_dir


def test_a_lock_taken_over_by_one_is_not_taken_over_again_by_another(tmp_path, monkeypatch):
    """Two iscsictl processes that found one dead holder's ``lock.write`` stale: the first
    replaces it with its own link, and the second, judging it again under an flock of
    ``lock``, sees that live link and waits for it (before: it removed the first's link and
    made its own, two holders changing the database at once)."""
    db, nid, lock_dir = _live_lock(tmp_path)  # lock.write: the first's take-over, live
    judged = []

    def stale_when_first_judged(self):  # the second judged it before the first's take-over
        judged.append(os.path.exists(self.write_path))
        return len(judged) == 1 or real_stale(self)

    real_stale = store.IscsiadmLock._stale
    monkeypatch.setattr(store.IscsiadmLock, "_stale", stale_when_first_judged)
    with pytest.raises(LockTimeout):
        db.update_node(nid, "node.startup", "automatic")
    assert len(judged) > 1 and db.read_node(nid)["node.startup"] == "manual"
    assert os.path.exists(lock_dir / "lock.write")  # the first's link, left to it


def test_a_live_lock_is_not_taken_over_when_the_wall_clock_jumps(tmp_path, monkeypatch):
    """The wall clock stepped an hour forward (NTP at boot) while iscsiadm holds its lock:
    the live ``lock.write`` looks an hour old, but is not taken over until it has stayed
    unchanged ISCSIADM_LOCK_WATCH s under this process's own (monotonic) watch (before: at
    once, and two writers changed the database together).  Seen that long, it is."""
    db, nid, lock_dir = _live_lock(tmp_path)  # lock.write: iscsiadm's, live
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    with pytest.raises(LockTimeout):
        db.update_node(nid, "node.startup", "automatic")
    assert os.path.exists(lock_dir / "lock.write")
    monkeypatch.setattr(store, "ISCSIADM_LOCK_WATCH", 0.5)
    db.lock_timeout = db.iscsiadm_lock.timeout = 5
    assert db.update_node(nid, "node.startup", "automatic")["node.startup"] == "automatic"


def test_an_iface_name_with_a_comma_is_read_back_from_its_links(db):
    """A discovery link's name is read as iscsiadm reads it (get_params_from_disc_link: the
    target up to the first ',', the iface the rest), so an iface named with a ',' (iscsiadm
    takes one) keeps its records linked and their staleness seen (before: read from the
    right, ``7,x`` made another record's name, ``a,b`` none: such records were relinked
    each time, or never deleted)."""
    for name in ("7,x", "a,b"):
        db.create_iface(name, {"iface.transport_name": "tcp"})
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    a, b = NodeID(T1, "10.0.0.9", 3260, 1, "7,x"), NodeID(T2, "10.0.0.9", 3260, 1, "a,b")
    db.reconcile_discovery(did, [a, b])
    assert db.discovery_nodes(did) == [a, b]
    res = db.reconcile_discovery(did, [a])
    assert (res.updated, res.deleted, res.failed) == ([a], [b], [])
    assert db.list_nodes() == [a]
    assert store._parse_link_name("iqn.x,y:t,10.0.0.1,3260,1,default") == NodeID(
        "iqn.x,y:t", "10.0.0.1", 3260, 1, "default")  # a target of ours with a ','


@pytest.mark.parametrize("planted", ["dangling link", "file"])
def test_iscsiadms_lock_directory_planted_as_a_file_or_link_is_not_taken(tmp_path, planted):
    """A user may put a file or a dangling link where /run/lock/iscsi belongs (/run/lock is
    any user's): judged as a directory of theirs, its lock not taken (said) and the change
    made (before: "cannot take iscsiadm's lock ...: File exists", every DB change exit 6).
    A missing parent is made root's alone, not 0777 under umask 0."""
    import stat

    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "run" / "lock" / "iscsi"
    if planted == "file":
        lock_dir.parent.mkdir(parents=True)
        lock_dir.write_text("")
    else:
        lock_dir.parent.mkdir(parents=True)
        os.symlink(tmp_path / "nowhere", lock_dir)
    warnings = []
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=0.3,
                iscsiadm_lock_dir=str(lock_dir), warn=warnings.append)
    db.create_node(T1, "10.0.0.1", 3260, 1)
    assert db.list_nodes() == [NodeID(T1, "10.0.0.1", 3260, 1)]
    assert len(warnings) == 1 and "is not a directory" in warnings[0]
    assert not (tmp_path / "nowhere").exists()
    fresh = tmp_path / "bare" / "lock" / "iscsi"
    old = os.umask(0)
    try:
        NodeDB(str(tmp_path / "db2"), str(tmp_path / "etc"),
               iscsiadm_lock_dir=str(fresh)).create_node(T1, "10.0.0.1", 3260, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o755


def test_iscsiadms_lock_in_a_directory_any_user_may_write_is_not_taken(tmp_path):
    """/run/lock is any user's on Debian: an ``iscsi`` directory there that is not root's
    alone could point ``lock`` anywhere (root would create or open that file) or hold
    ``lock.write`` for ever.  Its lock is not taken (said once) and the change made; a
    ``lock`` that is a symbolic link is not followed."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "iscsi"
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    warnings = []
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=0.3,
                iscsiadm_lock_dir=str(lock_dir), warn=warnings.append)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db.create_node(T1, "10.0.0.1", 3260, 1)
    db.update_node(nid, "node.startup", "automatic")
    assert db.read_node(nid)["node.startup"] == "automatic" and os.listdir(lock_dir) == []
    assert len(warnings) == 1 and "not root's alone" in warnings[0]
    lock_dir.chmod(0o755)
    target = tmp_path / "elsewhere"
    os.symlink(target, lock_dir / "lock")
    with pytest.raises(DBError, match="cannot take iscsiadm's lock"):
        db.update_node(nid, "node.startup", "manual")
    assert not target.exists() and db.read_node(nid)["node.startup"] == "automatic"


def test_a_record_found_by_another_source_is_unlinked_from_the_first(db):
    """A record found again by portal B, or made again by ``-m node -o new``, is B's (or
    static) alone: the first source's link goes, as iscsiadm's idbm_add_node deletes the old
    record with its link before writing.  Before: the link stayed, so deleting the first
    discovery record, or its rediscovery no longer finding the target, deleted a record
    another source now holds."""
    a = DiscoveryID("sendtargets", "192.168.1.1", 3260)
    b = DiscoveryID("sendtargets", "192.168.1.2", 3260)
    for did in (a, b):
        db.create_discovery(did)
    nid = NodeID(T1, "10.1.1.1", 3260, 1)
    db.reconcile_discovery(a, [nid])
    db.update_node(nid, "node.startup", "automatic")
    assert db.reconcile_discovery(b, [nid]).updated == [nid]
    assert (db.discovery_nodes(a), db.discovery_nodes(b)) == ([], [nid])
    assert db.read_node(nid)["node.startup"] == "automatic"
    assert db.reconcile_discovery(a, []).deleted == [] and db.delete_discovery(a) == []
    assert db.list_nodes() == [nid]
    # made again by -o new (static): B's link goes too
    db.create_node(T1, "10.1.1.1", 3260, 1, overwrite=True)
    assert db.discovery_nodes(b) == [] and db.delete_discovery(b) == []
    assert db.list_nodes() == [nid] and db.read_node(nid)["node.discovery_type"] == "static"


def test_a_damaged_record_is_read_again_under_iscsiadms_lock_a_short_while_only(tmp_path):
    """A record found damaged is read again once iscsiadm's lock is free (its in-place
    rewrite done), but a reader waits for that REREAD_WAIT s at most, not the lock timeout
    (the daemon's loop reads records at adoption), then says the record is damaged."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "lock"
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=10,
                iscsiadm_lock_dir=str(lock_dir))
    db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    path = db.node_path(nid)
    good = open(path, "rb").read()
    open(path, "wb").close()  # iscsiadm's fopen("w"), its lock held
    os.link(lock_dir / "lock", lock_dir / "lock.write")
    start = time.monotonic()
    with pytest.raises(CorruptRecord, match="empty"):
        db.read_node(nid)
    assert time.monotonic() - start < store.REREAD_WAIT + 2
    os.unlink(lock_dir / "lock.write")
    open(path, "wb").write(good)
    assert db.read_node(nid)["node.name"] == T1


def test_an_old_style_record_whose_port_is_no_ascii_number_is_skipped(db, tmp_path):
    """A file ``nodes/T/<ip>,<port>`` whose port str.isdigit takes but int refuses ('3²')
    is no old-style record (before: a ValueError out of a rediscovery)."""
    d = tmp_path / "db/nodes" / T1
    d.mkdir(parents=True)
    (d / "10.0.0.1,3²").write_text("node.name = x\n")
    assert db._unlinked_answers(DiscoveryID("sendtargets", "10.0.0.9", 3260), {T1}, set()) == set()


def test_a_rediscovery_deletes_no_record_another_discovery_found_meanwhile(db, tmp_path,
                                                                           monkeypatch):
    """Discovery A no longer finds R, discovery B does, both at once: B refreshes R (its
    fields and link B's now) after A listed its records; A leaves R alone, as iscsiadm's
    delete_stale_rec reads each record's discovery fields first.  It deleted R, and R's
    settings with it."""
    a = DiscoveryID("sendtargets", "10.0.0.1", 3260)
    b = DiscoveryID("sendtargets", "10.0.0.2", 3260)
    r = NodeID("iqn.2026-01.test:shared", "10.0.0.9", 3260, 1, "default")
    db.create_discovery(a)
    db.create_discovery(b)
    db.reconcile_discovery(a, [r])
    db.update_node(r, "node.startup", "automatic")
    real = NodeDB.discovery_nodes

    def listed(self, did):
        out = real(self, did)
        if did == a:  # B's discovery runs while A holds its list
            assert NodeDB(db.db_root, db.config_root).reconcile_discovery(b, [r]).updated == [r]
        return out

    monkeypatch.setattr(NodeDB, "discovery_nodes", listed)
    res = db.reconcile_discovery(a, [])
    assert res.deleted == [] and res.failed == []
    rec = db.read_node(r)
    assert rec.values["node.discovery_address"] == "10.0.0.2"
    assert rec.values["node.startup"] == "automatic"
    monkeypatch.setattr(NodeDB, "discovery_nodes", real)
    assert db.reconcile_discovery(b, []).deleted == [r]  # B's own stale record still goes


@pytest.mark.parametrize("first_tag", [1, -1])
def test_a_record_whose_move_to_its_new_tag_fails_is_kept(db, monkeypatch, first_tag):
    """A target's portal group renumbered (or an old-style record found with a tag) on a
    full disk: the record's settings could not be written under the new tag, so the old
    record stays (iscsiadm's stale match ignores the tag); it was deleted as stale, and the
    target had no record left."""
    import errno

    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    old = NodeID(T1, "10.0.0.8", 3260, first_tag, "default")
    db.reconcile_discovery(did, [old])
    [nid] = db.list_nodes(target=T1)
    db.update_node(nid, "node.startup", "automatic")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        res = db.reconcile_discovery(did, [NodeID(T1, "10.0.0.8", 3260, 2, "default")])
    assert res.deleted == [] and len(res.failed) == 1
    [kept] = db.list_nodes(target=T1)
    assert db.read_node(kept).values["node.startup"] == "automatic"
    res = db.reconcile_discovery(did, [NodeID(T1, "10.0.0.8", 3260, 2, "default")])
    [moved] = db.list_nodes(target=T1)  # room again: moved, the old one gone
    assert moved.tpgt == 2 and db.read_node(moved).values["node.startup"] == "automatic"


def test_a_discovery_whose_records_cannot_reach_the_disk_puts_none_in_place(db, monkeypatch):
    """syncfs failing (EIO, ENOSPC) after the records' temp files were written: none is
    renamed into place, each said failed, no temp file left (the error was dropped, and
    the discovery said 0 for records that may be empty after a crash).  A temp file whose
    write failed is removed too (it stayed an hour, on a full disk)."""
    import ctypes
    import errno

    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    nids = [NodeID(f"{T1}-{i}", "10.0.0.8", 3260, 1, "default") for i in range(3)]

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(store, "_libc_syncfs", lambda: failing_syncfs)
    res = db.reconcile_discovery(did, nids)
    assert res.added == [] and sorted(n for n, _ in res.failed) == nids
    assert all("Input/output error" in str(e) for _, e in res.failed)
    assert db.list_nodes() == []
    monkeypatch.undo()
    real_write, calls = os.write, []

    def full_at_the_second(fd, data):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as m:
        m.setattr(os, "write", full_at_the_second)
        res = db.reconcile_discovery(did, nids)
    assert len(res.added) == 2 and [n for n, _ in res.failed] == [nids[1]]
    tmp = os.path.join(db.db_root, ".tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


def _bulk_db(root, n):  # type: ignore[no-untyped-def]
    """A DB at ``root`` with ``n`` records a discovery made and one old-style record."""
    (root / "etc").mkdir(parents=True)
    db = NodeDB(str(root / "db"), str(root / "etc"), lock_timeout=0.5)
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    db.reconcile_discovery(did, [NodeID(f"{T1}-{i}", "10.0.0.8", 3260, 1) for i in range(n)])
    db.create_node(T2, "10.0.0.9", 3260)  # tag unknown: the file <ip>,<port>
    return db


def test_a_bulk_update_writes_in_runs_what_one_record_at_a_time_writes(tmp_path, monkeypatch):
    """``update_nodes`` of many records (``-m node -o update`` of all, an iface's update):
    the records byte for byte what ``update_node_many`` of each writes, a damaged one
    failed alone, the old-style one written alone, a symlinked one written through
    its link with its mode kept, no temp file left; and the filesystem flushed twice for
    the run, not each record twice (before: two fsyncs per record)."""
    one, bulk = _bulk_db(tmp_path / "one", 30), _bulk_db(tmp_path / "bulk", 30)
    nids = bulk.list_nodes()
    assert nids == one.list_nodes() and len(nids) == 31 and any(n.legacy for n in nids)
    for db in (one, bulk):
        elsewhere = os.path.join(db.db_root, "..", "managed")
        os.replace(db.node_path(nids[3]), elsewhere)
        os.symlink(os.path.abspath(elsewhere), db.node_path(nids[3]))
        os.chmod(elsewhere, 0o640)
        with open(db.node_path(nids[5]), "wb") as f:
            f.write(b"\0garbage")
    updates = {"node.session.timeo.replacement_timeout": "33", "node.startup": "automatic"}
    flushes, real = [], store.syncfs
    monkeypatch.setattr(store, "syncfs", lambda p: (flushes.append(p), real(p)))
    # one run whatever the machine's speed (a busy one took over UPDATE_RUN_TIME once: two
    # runs, four flushes)
    monkeypatch.setattr(store, "UPDATE_RUN_TIME", 60.0)
    got = list(bulk.update_nodes(nids + [nids[0]], updates))
    assert flushes == [bulk.db_root] * 2
    expected = []
    for nid in nids:
        try:
            expected.append((nid, one.update_node_many(nid, updates).values))
        except DBError as e:
            expected.append((nid, type(e)))
    assert [(nid, r.values if isinstance(r, store.Record) else type(r)) for nid, r in got] \
        == expected
    assert [nid for nid, r in got if isinstance(r, DBError)] == [nids[5]]
    assert isinstance(got[5][1], CorruptRecord)
    files = {}
    for db in (one, bulk):
        files[db] = {str(p.relative_to(db.db_root)): p.read_bytes()
                     for p in (tmp_path / db.db_root).rglob("*")
                     if p.is_file() and ".locks" not in p.parts}
    assert files[one] == files[bulk] and not any(".tmp" in f for f in files[bulk])
    assert b"node.startup = automatic" in files[bulk][f"nodes/{T2}/10.0.0.9,3260"]
    path = bulk.node_path(nids[3])
    assert os.path.islink(path) and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert bulk.read_node(nids[3])["node.startup"] == "automatic"


def test_a_bulk_update_whose_records_cannot_reach_the_disk_changes_none(tmp_path, monkeypatch):
    """syncfs failing (EIO) after a run's temp files were written: no record of the run is
    renamed in place, each is said failed, and no temp file is left."""
    import ctypes
    import errno

    db = _bulk_db(tmp_path, 12)
    nids = [n for n in db.list_nodes() if not n.legacy]

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(store, "_libc_syncfs", lambda: failing_syncfs)
    got = list(db.update_nodes(nids, {"node.startup": "automatic"}))
    assert [n for n, _ in got] == nids
    assert all(isinstance(r, DBError) and "Input/output error" in str(r) for _, r in got)
    assert {db.read_node(n)["node.startup"] for n in nids} == {"manual"}
    assert os.listdir(os.path.join(db.db_root, ".tmp")) == []


def test_an_iface_entry_that_cannot_be_looked_at_is_left_out_alone(db, tmp_path):
    """A symlink loop in ifaces/ is warned about and left out; the other ifaces are still
    listed and bound to a discovery (before: the whole listing was empty, so a
    rediscovery fell back to `default` and deleted every record of the others),
    as usr/iface.c iface_for_each_iface skips one entry it cannot read."""
    for name in ("ifa", "ifb"):
        db.create_iface(name)
    os.symlink("ifx", tmp_path / "db/ifaces/ifx")
    assert db.list_ifaces() == ["ifa", "ifb", "default", "iser"]
    assert "Could not read iface ifx: Too many levels of symbolic links" in db.warnings
    assert [name for name, _ in db.discovery_ifaces()] == ["ifa", "ifb"]
    assert db.unreadable_ifaces() == {"ifx"}


@pytest.mark.parametrize("damage", ["emptied", "symlink loop", "deleted"])
def test_a_rediscovery_keeps_the_records_of_an_iface_it_cannot_read(db, tmp_path, damage):
    """An iface record emptied by a crash, or made a symlink loop, is left out of the
    discovery's binding with a warning, and its node records are not deleted as stale
    (they were: their settings lost without a word; iscsiadm deletes them too); an iface
    deleted by the user (no file) is not one: its records go, as iscsiadm's."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    for name in ("ifa", "ifb"):
        db.create_iface(name)
    a, b = NodeID(T1, "10.0.0.9", 3260, 1, "ifa"), NodeID(T1, "10.0.0.9", 3260, 1, "ifb")
    db.reconcile_discovery(did, [a, b])
    db.update_node(b, "node.session.timeo.replacement_timeout", "17")
    path = tmp_path / "db/ifaces/ifb"
    path.unlink()
    if damage == "emptied":
        path.write_text("")
    elif damage == "symlink loop":
        os.symlink("ifb", path)
    bound = [name for name, _ in db.discovery_ifaces()]
    assert bound == ["ifa"]
    assert any("iface ifb left out of the discovery, its node records kept" in w
               or "Could not read iface ifb" in w for w in db.warnings) == (damage != "deleted")
    res = db.reconcile_discovery(did, [NodeID(T1, "10.0.0.9", 3260, 1, i) for i in bound])
    assert res.deleted == ([b] if damage == "deleted" else [])
    if damage != "deleted":
        assert db.read_node(b)["node.session.timeo.replacement_timeout"] == 17
    assert db.read_node(a) is not None


@pytest.mark.parametrize("how", ["copied", "minimal"])
def test_a_rediscovery_refreshes_a_record_where_it_is_not_where_it_says(db, tmp_path, how):
    """A record file whose keys name another record (copied from t1's to clone its settings,
    its node.name left; or written by hand with only a few keys, so port, tag and iface
    default) is refreshed in its place and named after it, with a warning (before: written
    over the record it names, t1's settings lost at each rediscovery; or a phantom
    127.0.0.1:3260,-1 record made with node.startup automatic)."""
    did = DiscoveryID("sendtargets", "10.0.0.9", 3261)
    db.create_discovery(did)
    a, b = NodeID(T1, "10.0.0.9", 3261, 1), NodeID(T2, "10.0.0.9", 3261, 1)
    db.reconcile_discovery(did, [a, b])
    db.update_node(a, "node.session.auth.username", "t1user")
    db.update_node(b, "node.session.timeo.replacement_timeout", "7")
    theirs = tmp_path / "db/nodes" / T2 / "10.0.0.9,3261,1/default"
    if how == "copied":
        mine = (tmp_path / "db/nodes" / T1 / "10.0.0.9,3261,1/default").read_text()
        theirs.write_text(mine.replace("replacement_timeout = 120",
                                       "replacement_timeout = 7"))
    else:
        theirs.write_text(f"node.name = {T2}\nnode.conn[0].address = 10.0.0.9\n"
                          "node.session.timeo.replacement_timeout = 7\n")
    res = db.reconcile_discovery(did, [a, b])
    assert sorted(res.updated) == [a, b] and not res.added and not res.deleted
    assert any(str(theirs) in w and "kept as the record of its place" in w
               for w in db.warnings)
    assert db.read_node(a)["node.session.auth.username"] == "t1user"
    rb = db.read_node(b)
    assert (rb["node.name"], rb["node.conn[0].port"], rb["node.tpgt"]) == (T2, 3261, 1)
    assert rb["node.session.timeo.replacement_timeout"] == 7
    assert sorted(db.list_nodes()) == [a, b]


def _rewritten_in_place(path, lock_dir, before_lock: bool):  # -> threading.Thread
    """iscsiadm rewriting ``path`` in place: emptied (``fopen(path, "w")``), filled 0.2 s
    later, under its lock (``lock.write``) from the start (idbm_discovery_write, as its
    node writer) or, ``before_lock``, emptied before it takes the lock and filled after it
    gave it back (usr/iface.c iface_conf_write).  The thread, started."""
    import threading
    content = open(path, "rb").read()

    def rewrite() -> None:
        if before_lock:
            open(path, "wb").close()
        os.link(lock_dir / "lock", lock_dir / "lock.write")
        if not before_lock:
            open(path, "wb").close()
        time.sleep(0.2)
        if not before_lock:
            open(path, "wb").write(content)
        os.unlink(lock_dir / "lock.write")
        if before_lock:
            time.sleep(0.05)
            open(path, "wb").write(content)
    t = threading.Thread(target=rewrite)
    t.start()
    return t


def test_a_discovery_record_or_iface_iscsiadm_rewrites_in_place_is_read_whole(tmp_path):
    """A discovery record and an iface read while iscsiadm rewrites them in place (the
    file empty meanwhile): read again, whole, as a node record is.  Before, the empty
    discovery record was "recreated from defaults" by a discovery (its CHAP lost), and the
    iface left out of a rediscovery, whose records were then deleted as stale."""
    (tmp_path / "etc").mkdir()
    lock_dir = tmp_path / "run-lock"
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), iscsiadm_lock_dir=str(lock_dir))
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.update_discovery(did, "discovery.sendtargets.auth.username", "discuser")
    db.create_iface("if1", {"iface.transport_name": "tcp",
                            "iface.initiatorname": "iqn.2001-04.com.example:if1"})
    db.reconcile_discovery(did, [])  # (the lock file made)
    for path, before_lock, read in (
            (db.discovery_path(did), False,
             lambda: db.read_discovery(did)["discovery.sendtargets.auth.username"]),
            (db.iface_path("if1"), True,
             lambda: db.read_iface("if1")["iface.initiatorname"])):
        t = _rewritten_in_place(path, lock_dir, before_lock)
        time.sleep(0.05)
        try:
            assert read() in ("discuser", "iqn.2001-04.com.example:if1")
        finally:
            t.join()


def test_a_rediscovery_keeps_the_records_of_an_iface_it_left_out_whole_again_later(tmp_path):
    """An iface that could not be read when the discovery chose its ifaces (empty longer
    than a re-read waits) but is whole when the records are reconciled: its records are
    kept, as the discovery said.  Before, they were deleted as stale."""
    (tmp_path / "etc").mkdir()
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"))
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.create_iface("if1", {"iface.transport_name": "tcp"})
    db.create_iface("if2", {"iface.transport_name": "tcp"})
    kept = NodeID(T1, "10.0.0.1", 3260, 1, "if1")
    db.reconcile_discovery(did, [kept, NodeID(T1, "10.0.0.1", 3260, 1, "if2")])
    whole = open(db.iface_path("if1"), "rb").read()
    open(db.iface_path("if1"), "wb").close()
    warned = []
    db.warn = warned.append
    chosen = [name for name, _ in db.discovery_ifaces()]
    open(db.iface_path("if1"), "wb").write(whole)
    db.reconcile_discovery(did, [NodeID(T1, "10.0.0.1", 3260, 1, name) for name in chosen])
    assert chosen == ["if2"] and any("if1 left out" in w for w in warned), warned
    assert db.node_exists(kept)


def test_a_record_a_crash_left_empty_is_damaged_at_once(tmp_path):
    """An empty node record or iface, emptied long ago (a crash of a writer): damaged at
    once, not read again for REREAD_WAIT s at each read (the daemon's loop reads records)."""
    (tmp_path / "etc").mkdir()
    db = NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"),
                iscsiadm_lock_dir=str(tmp_path / "run-lock"))
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db.reconcile_discovery(did, [nid])
    db.create_iface("if1", {"iface.transport_name": "tcp"})
    for path, read in ((db.node_path(nid), lambda: db.read_node(nid)),
                       (db.iface_path("if1"), lambda: db.read_iface("if1"))):
        open(path, "wb").close()
        os.utime(path, (time.time() - 60, time.time() - 60))
        start = time.monotonic()
        with pytest.raises(CorruptRecord, match="corrupt record"):
            read()
        assert time.monotonic() - start < store.REREAD_WAIT / 2


def test_a_waiter_for_a_lock_file_its_holder_removed_takes_the_new_one(tmp_path,
                                                                        monkeypatch):
    """A record's deleter removes its lock's file as it lets go (remove_when_released); a
    waiter then holding the removed file's lock, while a newcomer holds the new file at the
    path, lets the old one go and waits for the new one: else both would hold "the" lock
    (two writers of one record)."""
    import threading

    from iscsictl.db import store
    from iscsictl.db.store import FileLock

    monkeypatch.setattr(store, "_LOCK_POLL", 1.0)  # the newcomer comes between two polls
    path = str(tmp_path / "record.lock")
    deleter = FileLock(path)
    deleter.acquire()
    deleter.remove_when_released()
    waiter, got = FileLock(path, timeout=10), threading.Event()
    t = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    t.start()
    newcomer = FileLock(path, timeout=0.2)
    try:
        time.sleep(0.2)  # the waiter polls the deleter's file
        deleter.release()
        newcomer.acquire()  # a new file at the path
        assert not got.wait(1.5)  # its poll came: the old file's lock, let go
        newcomer.release()
        assert got.wait(5)
    finally:
        newcomer.release()
        t.join(10)
        waiter.release()


def test_names_iscsiadm_cannot_read_back_are_refused(db):
    """An iface name holds 64 bytes (ISCSI_MAX_IFACE_LEN, bytes not characters), and no
    name holds a newline (a record's path component: iscsiadm's listing splits on it)."""
    from iscsictl.db.errors import InvalidRecordName

    db.create_iface("i" * 64)
    for name in ("i" * 65, "\u00e9" * 33):
        with pytest.raises(InvalidRecordName):
            db.create_iface(name)
    with pytest.raises(InvalidRecordName):
        db.create_node("iqn.2003-01.org.example:a\nb", "10.0.0.1", 3260, 1)
    assert [n for n in db.list_ifaces() if n.startswith("ii")] == ["i" * 64]
