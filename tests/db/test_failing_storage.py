"""No record lost, and nothing outside the database touched, under failing storage and
hostile files (a review of session 59).  ENOSPC is simulated as tests/db/test_store.py
does (os.write failing), or with a real tmpfs out of inodes (root only)."""

import errno
import os
import subprocess
import time

import pytest

from iscsictl.db.errors import DBError
from iscsictl.db.store import DiscoveryID, NodeDB, NodeID

T1 = "iqn.2001-04.com.example:t1"
T2 = "iqn.2001-04.com.example:t2"


def _full(fd, data):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_tmp_dir_symlink_sweep_deletes_files_outside_the_db_root(db, tmp_path):
    """<db>/.tmp a symbolic link to another directory (a restored tree, a hand-made link):
    the first write's sweep of a crash's temp files does not follow it (it deleted every
    file there an hour old); the link is replaced by a directory, said."""
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    keep = victim / "important.conf"
    keep.write_text("not iscsictl's\n")
    old = time.time() - 7200
    os.utime(keep, (old, old))
    os.makedirs(db.db_root)
    os.symlink(str(victim), os.path.join(db.db_root, ".tmp"))
    db.create_node(T1, "10.0.0.1", 3260, 1)
    assert keep.exists(), "a file outside the DB root was deleted through .tmp"
    tmp = os.path.join(db.db_root, ".tmp")
    assert os.path.isdir(tmp) and not os.path.islink(tmp) and os.listdir(tmp) == []
    assert db.warnings == [f"{tmp} was a symbolic link: replaced by a directory"]
    assert db.list_nodes(target=T1)


def test_tmp_that_is_a_file_is_refused(db):
    os.makedirs(db.db_root)
    with open(os.path.join(db.db_root, ".tmp"), "w") as f:
        f.write("kept\n")
    with pytest.raises(DBError, match="exists and is not a directory"):
        db.create_node(T1, "10.0.0.1", 3260, 1)
    with open(os.path.join(db.db_root, ".tmp")) as f:
        assert f.read() == "kept\n"


@pytest.mark.parametrize("discovered", [False, True])
def test_failed_new_over_an_existing_record_keeps_its_links(db, monkeypatch, discovered):
    """``-m node -o new`` over an existing record (create_node(overwrite=True), what
    op_new calls) on a full disk: the record file is kept (atomic write), and so are its
    static/ or send_targets/ link (removed first, they were lost: a later ``-m discovery
    -o delete`` no longer deleted that record); once it succeeds, the discovered record
    is a static one, its send_targets/ link gone, as iscsiadm's idbm_add_node leaves it."""
    if discovered:
        did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
        db.create_discovery(did)
        db.reconcile_discovery(did, [NodeID(T1, "10.0.0.8", 3260, 1, "default")])
        link = os.path.join(db.db_root, "send_targets", "10.0.0.8,3260",
                            f"{T1},10.0.0.8,3260,1,default")
    else:
        db.create_node(T1, "10.0.0.8", 3260, 1)
        link = os.path.join(db.db_root, "static", f"{T1},10.0.0.8,3260,1,default")
    assert os.path.islink(link)
    with monkeypatch.context() as m:
        m.setattr(os, "write", _full)
        with pytest.raises(DBError):
            db.create_node(T1, "10.0.0.8", 3260, 1, "default", overwrite=True)
    assert db.list_nodes(target=T1)  # the record itself is intact ...
    assert os.path.islink(link), "... but the failed -o new removed its link"
    if discovered:
        assert db.discovery_nodes(did) == [NodeID(T1, "10.0.0.8", 3260, 1, "default")]
    db.create_node(T1, "10.0.0.8", 3260, 1, "default", overwrite=True)
    static = os.path.join(db.db_root, "static", f"{T1},10.0.0.8,3260,1,default")
    assert os.path.islink(static) and os.path.exists(static)
    assert os.path.islink(link) == (not discovered)


def test_rediscovery_keeps_the_settings_of_a_record_over_1mib(db):
    """A record iscsiadm reads (1.2 MiB: its settings, then many comment lines) is larger
    than iscsictl reads: a rediscovery keeps it as it is, a failure of that record (it
    was made anew from the defaults, its CHAP secret and node.startup lost, exit 0)."""
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.8", 3260, 1, "default")
    db.reconcile_discovery(did, [nid])
    db.update_node_many(nid, {"node.startup": "automatic",
                              "node.session.auth.password": "s3cret"})
    path = db.node_path(nid)
    with open(path, "ab") as f:
        f.write(b"# a comment iscsiadm skips\n" * 45000)  # ~1.2 MiB
    res = db.reconcile_discovery(did, [nid])
    assert [(n, type(e).__name__) for n, e in res.failed] == [(nid, "RecordTooLarge")]
    with open(path, "rb") as f:
        data = f.read()
    assert b"node.session.auth.password = s3cret" in data, "CHAP secret lost"
    assert b"node.startup = automatic" in data


def test_discovery_on_a_full_disk_leaves_no_empty_directories(db, monkeypatch):
    """New records of a discovery that cannot be written (ENOSPC) leave no target or
    portal directory behind, as write_node leaves none."""
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    nids = [NodeID(f"{T1}-{i}", "10.0.0.8", 3260, 1, "default") for i in range(3)]
    with monkeypatch.context() as m:
        m.setattr(os, "write", _full)
        res = db.reconcile_discovery(did, nids)
    assert sorted(n for n, _ in res.failed) == nids
    nodes = os.path.join(db.db_root, "nodes")
    left = [d for d, subdirs, files in os.walk(nodes) if not subdirs and not files
            and d != nodes]
    assert left == [], f"empty directories left: {left}"


def test_rediscovery_does_not_overwrite_a_non_record_file_through_a_symlink(db, tmp_path):
    """A node record path that is a symbolic link to a file outside the DB root that is
    no record (missing node.name): a rediscovery makes the record anew in the link's
    place (said), not through the link over the outside file."""
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.8", 3260, 1, "default")
    db.reconcile_discovery(did, [nid])
    outside = tmp_path / "outside.txt"
    outside.write_text("precious: not a record\n")
    path = db.node_path(nid)
    os.unlink(path)
    os.symlink(str(outside), path)
    res = db.reconcile_discovery(did, [nid])
    assert outside.read_text() == "precious: not a record\n"
    assert res.added == [nid] and not res.failed and not os.path.islink(path)
    assert db.read_node(nid).values["node.name"] == T1
    assert db.warnings[-1].endswith(": the symbolic link replaced by a record from defaults")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")
def test_delete_works_on_a_filesystem_out_of_inodes(tmp_path):
    """A DB whose filesystem has no free inode (or, on ext4, no block for a directory to
    grow), records made by iscsiadm (no .locks/ yet): ``-o delete`` deletes, without
    iscsictl's lock (said once), as iscsiadm deletes (it failed: 'cannot create lock dir
    .locks: No space left on device', exit 6; the way to free space refused)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=40", "tmpfs", str(mnt)],
                   check=True)
    try:
        (mnt / "etc").mkdir()
        root = str(mnt / "db")
        first = NodeDB(root, str(mnt / "etc"), lock_timeout=0.5)
        first.create_node(T1, "10.0.0.1", 3260, 1)
        first.create_node(T2, "10.0.0.2", 3260, 1)
        subprocess.run(["rm", "-rf", os.path.join(root, ".locks"), os.path.join(root, ".tmp")],
                       check=True)  # as iscsiadm leaves a DB
        i = 0
        while True:  # every inode taken
            try:
                (mnt / f"fill{i}").touch()
            except OSError:
                break
            i += 1
        db = NodeDB(root, str(mnt / "etc"), lock_timeout=0.5)
        [nid] = db.list_nodes(target=T1)
        db.delete_node(nid)
        assert db.list_nodes(target=T1) == []
        assert len(db.warnings) == 1 and db.warnings[0].endswith(
            "No space left on device: deleting without iscsictl's lock")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _st(db, nid):
    did = DiscoveryID("sendtargets", nid.address, nid.port)
    db.create_discovery(did)
    db.reconcile_discovery(did, [nid])
    return did, os.path.join(db.db_root, "send_targets", f"{nid.address},{nid.port}",
                             nid.link_name)


def test_firmware_refind_moves_the_link_and_keeps_the_new_one(db):
    """update_node_many(discovery=fw) of a record SendTargets found: its fw/ link made,
    the send_targets/ one gone (the keep= of update_node_many's _unlink_node_links)."""
    nid = NodeID(T1, "10.0.0.8", 3260, 1, "default")
    _did, st_link = _st(db, nid)
    assert os.path.islink(st_link)
    db.update_node_many(nid, {}, discovery=DiscoveryID("fw", "", 0))
    fw_link = os.path.join(db.db_root, "fw", nid.link_name)
    assert os.path.islink(fw_link), "the link just made was removed"
    assert not os.path.islink(st_link)


def test_firmware_refind_that_cannot_link_keeps_the_old_link(db, monkeypatch):
    """The new link cannot be made (ENAMETOOLONG, EMLINK...): the old source's link is
    kept (the 'new link first' order of update_node_many)."""
    nid = NodeID(T1, "10.0.0.8", 3260, 1, "default")
    _did, st_link = _st(db, nid)
    real = os.symlink

    def failing(src, dst, *a, **k):
        if "/fw/" in dst:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)
    monkeypatch.setattr(os, "symlink", failing)
    with pytest.raises(DBError):
        db.update_node_many(nid, {}, discovery=DiscoveryID("fw", "", 0))
    assert os.path.islink(st_link), "the old link went before the new one was made"


def test_refound_by_another_source_that_cannot_be_written_keeps_its_link(db, monkeypatch):
    """_refresh_found of a record another SendTargets source found (moved): the write
    fails (ENOSPC): the old source's link is kept (relinked=)."""
    nid = NodeID(T1, "10.0.0.8", 3260, 1, "default")
    _did, st_link = _st(db, nid)
    other = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(other)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        res = db.reconcile_discovery(other, [nid])
    assert res.failed
    assert os.path.islink(st_link), "the old source's link lost on a failed write"


def test_a_lock_timeout_on_one_found_record_keeps_the_targets_stale_portals(db, tmp_path):
    """A found record there but not refreshed (a lock another holds for 0.5 s: LockTimeout)
    keeps no other record of its target: the portal the target no longer has is deleted
    (only a found record that could not be made keeps the target's others)."""
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    p1 = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    p2 = NodeID(T1, "10.0.0.2", 3260, 1, "default")
    db.reconcile_discovery(did, [p1, p2])
    db.update_node_many(p1, {"node.startup": "automatic"})  # refresh must rewrite p1
    other = NodeDB(db.db_root, str(tmp_path / "etc"), lock_timeout=0.5)
    with other.record_lock(other._lock_key(p1)):
        res = db.reconcile_discovery(did, [p1])
    assert [type(e).__name__ for _, e in res.failed] == ["LockTimeout"]
    assert p2 in res.deleted, "stale portal of the target kept because of p1's lock timeout"


def test_an_oversized_found_record_keeps_the_targets_stale_portals_for_good(db):
    """A found record over 1 MiB (RecordTooLarge, a failure for good) is there: the target's
    stale portals are deleted all the same (kept, they were at every rediscovery)."""
    did = DiscoveryID("sendtargets", "10.0.0.8", 3260)
    db.create_discovery(did)
    p1 = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    p2 = NodeID(T1, "10.0.0.2", 3260, 1, "default")
    db.reconcile_discovery(did, [p1, p2])
    with open(db.node_path(p1), "ab") as f:
        f.write(b"# pad\n" * 200000)
    res = db.reconcile_discovery(did, [p1])
    assert [type(e).__name__ for _, e in res.failed] == ["RecordTooLarge"]
    assert res.deleted == [p2] and db.node_exists(p1)


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_record_that_cannot_be_written_leaves_no_staged_copy(db, monkeypatch, failing):
    """A record write that fails (ENOSPC at the write, or at the fsync a journal commit
    makes) removes its staged copy at once: .tmp/ holds nothing, where a copy of a record
    with a CHAP secret would wait for the hour's sweep."""
    db.create_node(T1, "10.0.0.8", 3260, 1)
    nid = db.list_nodes()[0]
    rec = db.read_node(nid)
    rec.set("node.session.auth.password", "secret-pass-1")
    before = open(db.node_path(nid), "rb").read()
    with monkeypatch.context() as m:
        m.setattr(os, failing, _full if failing == "write" else
                  lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
        with pytest.raises(DBError):
            db.write_node(rec)
    assert open(db.node_path(nid), "rb").read() == before
    tmp = os.path.join(db.db_root, ".tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []
