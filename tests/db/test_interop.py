"""Interop with Debian's real iscsiadm (open-iscsi 2.1.8) on a private /etc/iscsi.

These tests FAIL when iscsiadm is missing: the Makefile installs it (Debian package open-iscsi).
"""

import os
import stat
import time

import pytest

from iscsictl.db.record import format_record
from iscsictl.db.store import NodeDB, NodeID
from peers import iscsiadm, prepare_etc

pytestmark = pytest.mark.peer

T1 = "iqn.2001-04.com.example:storage.t1"
T2 = "iqn.2001-04.com.example:storage.t2"


@pytest.fixture
def etc(tmp_path):
    d = tmp_path / "etc-iscsi"
    prepare_etc(str(d))
    return str(d)


def adm(etc, *args, ok=True):
    cp = iscsiadm(etc, *args)
    if ok:
        assert cp.returncode == 0, f"iscsiadm {args}: rc={cp.returncode} {cp.stderr}"
    return cp


def show(etc, nid, secrets=False):
    args = ["-m", "node", "-T", nid.target, "-p", f"{nid.portal},{nid.tpgt}" if not nid.legacy
            else nid.portal, "-I", nid.iface, "-o", "show"]
    if secrets:
        args.append("-S")
    return adm(etc, *args).stdout


def test_iscsiadm_records_read_by_us(etc):
    adm(etc, "-m", "iface", "-I", "eth1", "-o", "new")
    adm(etc, "-m", "iface", "-I", "iface-ipv6", "-o", "new")
    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "new")
    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "eth1", "-o", "new")
    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "iface-ipv6", "-o", "new")
    adm(etc, "-m", "node", "-T", T2, "-p", "[fd00::5]:3260,2", "-o", "new")
    adm(etc, "-m", "node", "-T", T2, "-p", "10.0.0.2", "-o", "new")  # legacy, tpgt -1
    base = ["-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "default", "-o", "update"]
    adm(etc, *base, "-n", "node.session.auth.password", "-v", "secretpw")
    adm(etc, *base, "-n", "node.session.auth.username", "-v", "user1")
    adm(etc, *base, "-n", "node.session.auth.password_in", "-v", "inpw")
    adm(etc, *base, "-n", "node.startup", "-v", "automatic")
    adm(etc, *base, "-n", "node.session.auth.chap_algs", "-v", "SHA256,MD5")
    adm(etc, *base, "-n", "node.conn[0].iscsi.HeaderDigest", "-v", "CRC32C,None")

    warnings = []
    db = NodeDB(etc, etc, warn=warnings.append)
    ids = db.list_nodes()
    assert len(ids) == 5
    # flat and tree listings equal iscsiadm's
    assert "\n".join(db.flat_listing()) + "\n" == adm(etc, "-m", "node").stdout
    assert "\n".join(db.tree_listing()) + "\n" == adm(etc, "-m", "node", "-P", "1").stdout
    for nid in ids:
        rec = db.read_node(nid)
        assert format_record(rec) == show(etc, nid), nid
        assert format_record(rec, show_secrets=True) == show(etc, nid, secrets=True), nid
        # and our file form is byte for byte what iscsiadm wrote
        with open(db.node_path(nid)) as f:
            assert format_record(rec, for_file=True) == f.read(), nid
    assert not warnings
    rec = db.read_node(NodeID(T1, "10.0.0.1", 3260, 1, "default"))
    assert rec["node.session.auth.password"] == "secretpw"
    assert rec["node.session.auth.password_length"] == 8
    # iface records
    ifrec = db.read_iface("iface-ipv6")
    out = adm(etc, "-m", "iface", "-I", "iface-ipv6").stdout
    assert format_record(ifrec) == out
    with open(db.iface_path("eth1")) as f:
        assert format_record(db.read_iface("eth1"), for_file=True) == f.read()


def test_our_records_read_by_iscsiadm(etc):
    db = NodeDB(etc, etc)
    db.create_iface("eth1")
    db.create_node(T1, "10.0.0.1", 3260, 1)
    db.create_node(T1, "10.0.0.1", 3260, 1, "eth1")
    db.create_node(T2, "fd00::5", 3260, 2)
    db.create_node(T2, "10.0.0.2", 3260)  # legacy
    nid = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    db.update_node(nid, "node.session.auth.password", "secretpw")
    db.update_node(nid, "node.session.auth.username", "user1")
    db.update_node(nid, "node.conn[0].timeo.login_timeout", "17")
    db.update_node(nid, "node.session.auth.chap_algs", "SHA3-256 SHA1")
    for n in db.list_nodes():
        assert show(etc, n) == format_record(db.read_node(n)), n
        assert show(etc, n, secrets=True) == format_record(db.read_node(n), show_secrets=True)
    assert adm(etc, "-m", "node").stdout == "\n".join(db.flat_listing()) + "\n"
    # iscsiadm can update and delete our records; we read the result
    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "default", "-o", "update",
        "-n", "node.session.auth.password", "-v", "changed")
    rec = db.read_node(nid)
    assert rec["node.session.auth.password"] == "changed"
    assert rec["node.conn[0].timeo.login_timeout"] == 17
    adm(etc, "-m", "node", "-T", T2, "-p", "[fd00::5]:3260,2", "-o", "delete")
    assert db.list_nodes(target=T2) == [NodeID(T2, "10.0.0.2", 3260, -1, "default", True)]
    assert not os.path.lexists(os.path.join(etc, "static", f"{T2},fd00::5,3260,2,default"))
    assert "eth1 tcp,<empty>,<empty>,<empty>,<empty>" in adm(etc, "-m", "iface").stdout
    # and we delete what iscsiadm sees
    db.delete_node(nid)
    assert adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-I", "default",
               ok=False).returncode == 21


def test_discovery_records_interop(etc):
    db = NodeDB(etc, etc)
    adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.9", "-o", "new")
    adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.9", "-o", "update",
        "-n", "discovery.sendtargets.auth.password", "-v", "pw")
    adm(etc, "-m", "discoverydb", "-t", "isns", "-p", "10.0.0.8", "-o", "new")
    from iscsictl.db.store import DiscoveryID
    st = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    isns = DiscoveryID("isns", "10.0.0.8", 3205)
    assert db.list_discovery() == [st, isns]
    out = adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.9").stdout
    assert format_record(db.read_discovery(st)) == out
    out = adm(etc, "-m", "discoverydb", "-t", "isns", "-p", "10.0.0.8").stdout
    assert format_record(db.read_discovery(isns)) == out
    assert adm(etc, "-m", "discovery").stdout == "".join(
        d.listing() + "\n" for d in db.list_discovery())
    # ours, shown by iscsiadm
    ours = DiscoveryID("sendtargets", "10.0.0.7", 3260)
    db.create_discovery(ours)
    db.update_discovery(ours, "discovery.sendtargets.auth.username", "u")
    out = adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.7").stdout
    assert format_record(db.read_discovery(ours)) == out
    # nodes discovered through it are visible to iscsiadm, linked, and deleted with it
    db.reconcile_discovery(ours, [NodeID(T1, "10.0.0.7", 3260, 1)])
    assert adm(etc, "-m", "node").stdout == f"10.0.0.7:3260,1 {T1}\n"
    adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.7", "-o", "delete")
    assert db.list_nodes() == []


def test_discovery_records_of_before_svn_780_are_read_and_converted(etc):
    """open-iscsi before svn 780 kept a discovery record as the file
    ``send_targets/<ip>,<port>`` (``isns/`` alike), which iscsiadm still lists and reads
    (idbm_open_rec_r) and makes a directory of on its next write (idbm_open_rec_w).  Ours:
    listed and shown as iscsiadm shows it, converted on an update (iscsiadm reads the
    change), deleted as a file (the other records' links beside it kept)."""
    from iscsictl.db.store import DiscoveryID

    db = NodeDB(etc, etc)
    for t, addr in (("st", "10.0.0.9"), ("isns", "10.0.0.8"), ("st", "10.0.0.7")):
        adm(etc, "-m", "discoverydb", "-t", t, "-p", addr, "-o", "new")
    st, isns = DiscoveryID("sendtargets", "10.0.0.9", 3260), DiscoveryID("isns", "10.0.0.8", 3205)
    for did, name in ((st, "st_config"), (isns, "isns_config")):  # made flat, as before 780
        portal = os.path.join(etc, did.type_dir, f"{did.address},{did.port}")
        os.rename(os.path.join(portal, name), portal + ".old")
        os.rmdir(portal)
        os.rename(portal + ".old", portal)
    other = DiscoveryID("sendtargets", "10.0.0.7", 3260)
    db.reconcile_discovery(other, [NodeID(T1, "10.0.0.7", 3260, 1)])
    assert db.list_discovery() == [other, st, isns]
    assert adm(etc, "-m", "discovery").stdout == "".join(
        d.listing() + "\n" for d in db.list_discovery())
    for did, t in ((st, "st"), (isns, "isns")):
        assert format_record(db.read_discovery(did)) == adm(
            etc, "-m", "discoverydb", "-t", t, "-p", did.address).stdout
    db.update_discovery(st, "discovery.sendtargets.auth.username", "u")
    assert os.path.isfile(os.path.join(etc, "send_targets", "10.0.0.9,3260", "st_config"))
    out = adm(etc, "-m", "discoverydb", "-t", "st", "-p", "10.0.0.9").stdout
    assert "discovery.sendtargets.auth.username = u\n" in out
    assert format_record(db.read_discovery(st)) == out
    db.delete_discovery(isns)
    assert db.list_discovery() == [other, st]
    assert os.listdir(os.path.join(etc, "isns")) == []
    assert db.list_nodes() == [NodeID(T1, "10.0.0.7", 3260, 1)]
    assert adm(etc, "-m", "node").stdout == f"10.0.0.7:3260,1 {T1}\n"


def test_a_flat_discovery_records_conversion_cut_short_puts_it_back(etc, monkeypatch):
    """Ctrl-C while a pre-svn-780 discovery record is converted (set aside in the DB's
    .tmp, its directory made, the record being written): the file is back where it was,
    whole (before: left in .tmp, which a later write's sweep of old temp files deletes,
    the record and its CHAP credentials lost)."""
    from iscsictl.db.store import DiscoveryID

    db = NodeDB(etc, etc)
    st = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(st, values={"discovery.sendtargets.auth.username": "keep"})
    portal = os.path.join(etc, "send_targets", "10.0.0.9,3260")
    os.rename(os.path.join(portal, "st_config"), portal + ".old")
    os.rmdir(portal)
    os.rename(portal + ".old", portal)

    def interrupted(self, path, rec):
        raise KeyboardInterrupt
    monkeypatch.setattr(NodeDB, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        db.update_discovery(st, "discovery.sendtargets.auth.password", "x")
    monkeypatch.undo()
    assert os.path.isfile(portal) and os.listdir(os.path.join(etc, ".tmp")) == []
    rec = NodeDB(etc, etc).read_discovery(st)
    assert rec["discovery.sendtargets.auth.username"] == "keep"


def test_a_legacy_file_is_listed_with_its_own_tag(etc):
    """iscsiadm 2.0.874 wrote ``nodes/T/IP,PORT`` files holding the real ``node.tpgt``:
    iscsiadm lists the tag it reads there, not the unknown tag of the file's name."""
    os.makedirs(os.path.join(etc, "nodes", T1))
    with open(os.path.join(etc, "nodes", T1, "10.0.0.1,3260"), "w") as f:
        f.write(f"node.name = {T1}\nnode.tpgt = 1\nnode.startup = automatic\n"
                "iface.iscsi_ifacename = default\nnode.conn[0].address = 10.0.0.1\n"
                "node.conn[0].port = 3260\n")
    db = NodeDB(etc, etc)
    adm(etc, "-m", "node", "-T", T2, "-p", "10.0.0.2", "-o", "new")  # legacy, node.tpgt = -1
    assert db.flat_listing() == [f"10.0.0.1:3260,1 {T1}", f"10.0.0.2:3260,4294967295 {T2}"]
    assert "\n".join(db.flat_listing()) + "\n" == adm(etc, "-m", "node").stdout
    assert "\n".join(db.tree_listing()) + "\n" == adm(etc, "-m", "node", "-P", "1").stdout
    (nid,) = db.list_nodes(target=T1)
    assert nid.legacy and nid.tpgt == -1 and nid.listed_tpgt == 1  # still the file <ip>,<port>
    assert db.read_node(nid)["node.startup"] == "automatic"


def test_changes_beside_iscsiadms_lose_nothing(etc, tmp_path):
    """iscsiadm rewrites a record in place under its lock (usr/idbm.c idbm_lock:
    /run/lock/iscsi/lock.write); iscsictl takes that lock around its changes of iscsiadm's
    database (here ``iscsiadm_lock_dir``: the directory iscsiadm sees as /run/lock/iscsi).
    A rediscovery and ``-o update``s of ours while iscsiadm's ``-o update``s run on the same
    record: every change of both is there at the end, and no record was found damaged
    (before: 8-17% of our updates failed on an empty file, and a rediscovery that read one
    rewrote the record from the defaults, its CHAP secret lost)."""
    import subprocess

    from iscsictl.db.store import DiscoveryID
    from peers import _namespace, iscsiadm_path

    lock_dir = str(tmp_path / "iscsi-lock")
    warnings = []
    db = NodeDB(etc, etc, warn=warnings.append, iscsiadm_lock_dir=lock_dir)
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    nid = NodeID(T1, "10.0.0.9", 3260, 1)
    db.reconcile_discovery(did, [nid])
    db.update_node(nid, "node.session.auth.authmethod", "CHAP")
    db.update_node(nid, "node.session.auth.password", "s3cret")
    rounds = 20
    loop = (f"for i in $(seq 1 {rounds}); do {iscsiadm_path()} -m node -T {T1} -p "
            "10.0.0.9:3260,1 -o update -n node.session.timeo.replacement_timeout -v "
            "$((100+i)) || exit 1; done")
    theirs = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               _namespace(etc, lock_dir, None) + loop])
    ours = 0
    while theirs.poll() is None:
        ours += 1
        db.reconcile_discovery(did, [nid])
        db.update_node(nid, "node.conn[0].timeo.noop_out_interval", str(ours))
    assert theirs.wait() == 0 and ours > 1
    rec = db.read_node(nid)
    assert (rec["node.session.auth.password"], rec["node.session.timeo.replacement_timeout"],
            rec["node.conn[0].timeo.noop_out_interval"]) == ("s3cret", 100 + rounds, ours)
    assert warnings == [] and not os.path.exists(os.path.join(lock_dir, "lock.write"))


def _discovered(etc: str, tmp_path, n: int):  # type: ignore[no-untyped-def]
    """A DB at ``etc`` under iscsiadm's lock at ``tmp_path/iscsi-lock``, with ``n``
    records a SendTargets discovery of 10.0.0.9 made: (the NodeDB, the discovery's ID, the
    lock directory)."""
    from iscsictl.db.store import DiscoveryID

    lock_dir = str(tmp_path / "iscsi-lock")
    db = NodeDB(etc, etc, iscsiadm_lock_dir=lock_dir)
    did = DiscoveryID("sendtargets", "10.0.0.9", 3260)
    db.create_discovery(did)
    db.reconcile_discovery(did, [NodeID(f"{T1}-{i}", "10.0.0.9", 3260, 1) for i in range(n)])
    return db, did, lock_dir


def _iscsiadm_while(monkeypatch, etc: str, lock_dir: str, ours, args: str):  # type: ignore[no-untyped-def]
    """``ours()`` in a thread, and once it has taken iscsiadm's lock, ``iscsiadm args``
    (private mount namespace, the DB at ``etc``, the lock in ``lock_dir``); after both:
    (each take of the lock by ours, its lock.write path; iscsiadm's CompletedProcess)."""
    import subprocess
    import threading

    from peers import _namespace, iscsiadm_path

    real_link, takes = os.link, []

    def link(src, dst, *a, **kw):
        real_link(src, dst, *a, **kw)
        takes.append(dst)
    monkeypatch.setattr(os, "link", link)
    thread = threading.Thread(target=ours)
    thread.start()
    while not takes and thread.is_alive():
        time.sleep(0.001)
    theirs = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _namespace(etc, lock_dir, None)
         + f"{iscsiadm_path()} {args}"], capture_output=True, text=True, timeout=60)
    thread.join()
    return takes, theirs


def test_a_bulk_update_leaves_iscsiadm_its_lock_between_runs(etc, tmp_path, monkeypatch):
    """An update of many records of ours (``-m node -o update`` of all) on a disk whose
    flush takes 10 ms, and iscsiadm's one-record ``-o update`` started meanwhile (it takes
    its lock once for each record of the DB, trying every 10 ms: idbm_lock).  Ours takes
    the lock once per run of records, not once per record, and leaves it free between
    runs; both changes are there at the end.  Before, each record held the lock for two
    fsyncs and took it again at once: an iscsiadm update beside a 4000-record one of
    ours waited 87 s."""
    from iscsictl.db import store

    n = 400
    db, _, lock_dir = _discovered(etc, tmp_path, n)
    nids = db.list_nodes()
    real_fsync, real_syncfs = os.fsync, store.syncfs
    monkeypatch.setattr(os, "fsync", lambda fd: (time.sleep(0.01), real_fsync(fd))[1])
    monkeypatch.setattr(store, "syncfs", lambda p: (time.sleep(0.01), real_syncfs(p))[1])
    results: list = []
    takes, theirs = _iscsiadm_while(
        monkeypatch, etc, lock_dir, lambda: results.extend(db.update_nodes(
            nids, {"node.session.timeo.replacement_timeout": "33"})),
        f"-m node -T {T1}-7 -p 10.0.0.9:3260,1 -o update -n node.session.cmds_max -v 64")
    monkeypatch.undo()
    assert (theirs.returncode, theirs.stderr) == (0, "")
    assert len(results) == n and not [r for _, r in results if isinstance(r, Exception)]
    assert 1 < len(takes) <= n // 8, len(takes)  # runs of records (more on a slow host)
    assert {db.read_node(nid)["node.session.timeo.replacement_timeout"] for nid in nids} \
        == {33}
    assert db.read_node(NodeID(f"{T1}-7", "10.0.0.9", 3260, 1))["node.session.cmds_max"] == 64
    assert not os.path.exists(os.path.join(lock_dir, "lock.write"))


def test_a_discovery_records_deletion_leaves_iscsiadm_its_lock_between_runs(etc, tmp_path,
                                                                           monkeypatch):
    """``discoverydb -o delete`` of a source with many records (each deletion slowed to a
    disk's pace) and iscsiadm's ``discoverydb -o new`` of another source started meanwhile
    (a change that reads no node directory: iscsiadm's node changes read them unlocked,
    and fail on one deleted under them, as beside another iscsiadm): ours takes the lock
    once per run of records, not once for the whole deletion, and leaves it free between
    runs; iscsiadm's record is there at the end and every record of the source gone.
    Before, the deletion held it throughout (10,000 records: 9 s)."""
    from iscsictl.db.store import DiscoveryID

    n = 300
    db, did, lock_dir = _discovered(etc, tmp_path, n)
    other = NodeID(T2, "10.0.0.7", 3260, 1)
    db.create_node(T2, "10.0.0.7", 3260, 1)
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda p, *a, **kw: (time.sleep(0.002),
                                                           real_unlink(p, *a, **kw))[1])
    deleted: list = []
    takes, theirs = _iscsiadm_while(monkeypatch, etc, lock_dir,
                                    lambda: deleted.extend(db.delete_discovery(did)),
                                    "-m discoverydb -t st -p 10.0.0.5 -o new")
    monkeypatch.undo()
    # (iscsiadm asks iscsid for nothing it needs here: "can not connect" said)
    assert theirs.returncode == 0 and "added" in theirs.stdout, theirs
    assert len(deleted) == n and db.list_nodes() == [other]
    assert len(takes) > 2, len(takes)  # runs, and the discovery record's own
    assert db.list_discovery() == [DiscoveryID("sendtargets", "10.0.0.5", 3260)]
    assert not os.path.exists(os.path.join(lock_dir, "lock.write"))


def test_a_rediscovery_leaves_iscsiadm_its_lock_between_runs(etc, tmp_path, monkeypatch):
    """A rediscovery whose answer moved every target to another portal group tag (each
    record's flush slowed to a disk's pace), and iscsiadm's ``discoverydb -o new`` of
    another source started meanwhile: ours takes the lock once per run of records found,
    not once for all of them, and leaves it free between runs; iscsiadm's record is there
    at the end, every record moved with its settings, none left under the old tag.
    Before, the records found were made under one take (10,000 retagged: 20 s; after 30 s
    iscsiadm goes on without the lock: idbm_lock)."""
    from iscsictl.db.store import DiscoveryID

    n = 300
    db, did, lock_dir = _discovered(etc, tmp_path, n)
    db.update_node(NodeID(f"{T1}-7", "10.0.0.9", 3260, 1), "node.session.cmds_max", "64")
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (time.sleep(0.005), real_fsync(fd))[1])
    results: list = []
    found = [NodeID(f"{T1}-{i}", "10.0.0.9", 3260, 2) for i in range(n)]
    takes, theirs = _iscsiadm_while(monkeypatch, etc, lock_dir,
                                    lambda: results.append(db.reconcile_discovery(did, found)),
                                    "-m discoverydb -t st -p 10.0.0.5 -o new")
    monkeypatch.undo()
    assert theirs.returncode == 0 and "added" in theirs.stdout, theirs
    (res,) = results
    assert (len(res.updated), len(res.deleted), res.failed) == (n, n, [])
    assert len(takes) > 5, len(takes)  # runs of the found (one take before: 3 in all)
    assert sorted(db.list_nodes()) == sorted(found)
    assert db.read_node(NodeID(f"{T1}-7", "10.0.0.9", 3260, 2))["node.session.cmds_max"] == 64
    assert DiscoveryID("sendtargets", "10.0.0.5", 3260) in db.list_discovery()
    assert not os.path.exists(os.path.join(lock_dir, "lock.write"))


def test_hand_edited_lines_are_read_as_idbm_reads_them(etc):
    """idbm_recinfo_config (records and iscsid.conf alike): 'name=value' (no blank before
    the '=') is no setting, nor a line without a value, nor a last line without its
    newline (fgets), nor 2047 bytes and more before a newline, whose rest is read as the
    next line; 'name==value' is one.  Before, iscsictl applied what iscsid ignores."""
    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "new")
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    db = NodeDB(etc, etc)
    path = db.node_path(nid)
    with open(path) as f:
        text = f.read()
    text = text.replace("node.startup = manual", "node.startup=automatic").replace(
        "node.session.queue_depth = 32", "node.session.queue_depth==16").replace(
        "node.session.cmds_max = 128", "node.session.cmds_max =") + (
        "#" + "x" * 2046 + "node.session.nr_sessions = 3\n"
        "node.conn[0].timeo.login_timeout = 9")  # no newline at its end
    with open(path, "w") as f:
        f.write(text)
    warnings = []
    ours = format_record(NodeDB(etc, etc, warn=warnings.append).read_node(nid))
    theirs = show(etc, nid)
    keys = ("node.startup", "node.session.queue_depth", "node.session.cmds_max",
            "node.session.nr_sessions", "node.conn[0].timeo.login_timeout")
    pick = lambda out: [x for x in out.splitlines() if x.split(" = ")[0] in keys]  # noqa: E731
    assert pick(ours) == pick(theirs)
    got = dict(x.split(" = ") for x in pick(ours))
    assert (got["node.startup"], got["node.session.queue_depth"], got["node.session.cmds_max"],
            got["node.session.nr_sessions"]) == ("manual", "16", "128", "3")
    assert got["node.conn[0].timeo.login_timeout"] != "9"
    assert any("does not have '=' separator" in w for w in warnings)


def test_a_line_holding_a_nul_byte_is_skipped_as_idbm_skips_it(etc):
    """A NUL byte in a record (a disk error, an editor): idbm_recinfo_config's strlen ends
    before the line's newline, and it skips that line as one too long; the record's other
    lines are read (before: the whole record was taken for binary, left out of every
    listing and login).  A file of zeros, as a crash may leave, is still corrupt."""
    from iscsictl.db.errors import CorruptRecord

    adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "new")
    nid = NodeID(T1, "10.0.0.1", 3260, 1)
    path = NodeDB(etc, etc).node_path(nid)
    with open(path, "rb") as f:
        data = f.read()
    data = data.replace(b"node.startup = manual", b"node.startup = automatic").replace(
        b"node.session.queue_depth = 32", b"node.session.queue_depth = 16\0 (damaged)").replace(
        b"node.session.cmds_max = 128", b"\0node.session.cmds_max = 64")
    with open(path, "wb") as f:
        f.write(data)
    warnings = []
    ours = format_record(NodeDB(etc, etc, warn=warnings.append).read_node(nid))
    theirs = show(etc, nid)
    keys = ("node.startup", "node.session.queue_depth", "node.session.cmds_max")
    pick = lambda out: [x for x in out.splitlines() if x.split(" = ")[0] in keys]  # noqa: E731
    assert pick(ours) == pick(theirs) == ["node.startup = automatic",
                                          "node.session.cmds_max = 128",
                                          "node.session.queue_depth = 32"]
    assert sum("holding a NUL byte" in w for w in warnings) == 2
    assert [r["node.name"] for r in NodeDB(etc, etc).read_nodes()] == [T1]
    with open(path, "wb") as f:
        f.write(bytes(len(data)))
    with pytest.raises(CorruptRecord, match="binary data"):
        NodeDB(etc, etc).read_node(nid)


def test_rewrite_keeps_the_file_as_iscsiadm_does(etc, tmp_path):
    """iscsiadm rewrites a record with ``fopen(path, "w")`` (usr/idbm.c idbm_rec_write): a
    symlinked record stays a link to the file it names, and a record keeps its owner and
    mode.  Our atomic rewrite keeps both too, and narrows the mode to the owner once the
    record holds a CHAP secret (where iscsiadm would leave it readable by all)."""
    db = NodeDB(etc, etc)
    elsewhere = tmp_path / "managed"
    elsewhere.mkdir()
    results = {}
    for tool in ("iscsiadm", "iscsictl"):
        db.create_node(T1, "10.0.0.1", 3260, 1)
        nid = NodeID(T1, "10.0.0.1", 3260, 1, "default")
        path = db.node_path(nid)
        target = elsewhere / tool
        os.replace(path, target)
        os.symlink(target, path)
        os.chmod(target, 0o640)
        os.chown(target, 0, 7)
        if tool == "iscsiadm":
            adm(etc, "-m", "node", "-T", T1, "-p", "10.0.0.1:3260,1", "-o", "update",
                "-n", "node.session.timeo.replacement_timeout", "-v", "33")
        else:
            db.update_node(nid, "node.session.timeo.replacement_timeout", "33")
        st = os.stat(path)
        results[tool] = (os.readlink(path) == str(target), stat.S_IMODE(st.st_mode),
                         st.st_gid, db.read_node(nid)["node.session.timeo.replacement_timeout"])
        db.delete_node(nid)
    assert results["iscsictl"] == results["iscsiadm"] == (True, 0o640, 7, 33)


def test_a_secret_narrows_a_kept_mode(etc):
    db = NodeDB(etc, etc)
    db.create_node(T1, "10.0.0.1", 3260, 1)
    nid = NodeID(T1, "10.0.0.1", 3260, 1, "default")
    path = db.node_path(nid)
    os.chmod(path, 0o644)  # as iscsiadm makes a record under umask 022
    db.update_node(nid, "node.startup", "automatic")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    db.update_node(nid, "node.session.auth.password", "s3cret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    db.update_node(nid, "node.session.auth.username", "u")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
