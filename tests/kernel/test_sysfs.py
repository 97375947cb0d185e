"""sysfs readers against fixture trees that mimic Linux 6.1's layout after an iscsi_tcp login."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest

from iscsictl.kernel import sysfs as sysfs_mod
from iscsictl.kernel.sysfs import Sysfs


def w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def link(src: Path, target: str) -> None:
    src.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, src)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    # transport
    tdir = root / "devices/virtual/iscsi_transport/tcp"
    w(tdir / "handle", "18446744072637900800")
    w(tdir / "caps", "0x39")
    link(root / "class/iscsi_transport/tcp", "../../devices/virtual/iscsi_transport/tcp")
    # host0 / session1 / connection1:0 / one disk
    host = root / "devices/platform/host0"
    sdev = host / "session1"
    sess = sdev / "iscsi_session/session1"
    for k, v in {"targetname": "iqn.2003-01.org.linux-iscsi.vm:t1", "tpgt": "1",
                 "initiatorname": "iqn.1993-08.org.debian:01:abc", "ifacename": "default",
                 "state": "LOGGED_IN", "target_state": "SCANNED", "creator": "1234", "recovery_tmo": "120",
                 "abort_tmo": "15", "lu_reset_tmo": "30", "tgt_reset_tmo": "30", "username": "(null)",
                 "password": "(null)", "initial_r2t": "Yes", "immediate_data": "Yes", "first_burst_len": "65536",
                 "max_burst_len": "262144", "max_outstanding_r2t": "1", "erl": "0", "target_id": "0"}.items():
        w(sess / k, v)
    link(root / "class/iscsi_session/session1", "../../devices/platform/host0/session1/iscsi_session/session1")
    conn = sdev / "connection1:0/iscsi_connection/connection1:0"
    for k, v in {"address": "127.0.0.1", "port": "3260", "persistent_address": "127.0.0.1",
                 "persistent_port": "3260", "local_port": "40000", "exp_statsn": "2374525320",
                 "header_digest": "None", "data_digest": "CRC32C", "max_recv_dlength": "262144",
                 "max_xmit_dlength": "65536", "ping_tmo": "5", "recv_tmo": "5", "state": "up"}.items():
        w(conn / k, v)
    link(root / "class/iscsi_connection/connection1:0",
         "../../devices/platform/host0/session1/connection1:0/iscsi_connection/connection1:0")
    hattr = host / "iscsi_host/host0"
    w(hattr / "netdev", "(null)")
    w(hattr / "hwaddress", "(null)")
    w(hattr / "ipaddress", "127.0.0.1")
    w(hattr / "initiatorname", "(null)")
    link(root / "class/iscsi_host/host0", "../../devices/platform/host0/iscsi_host/host0")
    lun0 = sdev / "target0:0:0/0:0:0:0"
    w(lun0 / "state", "running")
    w(lun0 / "vendor", "LIO-ORG ")
    w(lun0 / "model", "FILEIO          ")
    (lun0 / "block/sda").mkdir(parents=True)
    lun1 = sdev / "target0:0:0/0:0:0:1"
    w(lun1 / "state", "transport-offline")
    (sdev / "target0:0:0/power").mkdir(parents=True)  # non-LUN entries are ignored
    w(root / "module/scsi_transport_iscsi/version", "2.0-870")
    return root


def test_transport(tree):
    s = Sysfs(tree)
    assert s.transport_names() == ["tcp"]
    t = s.transport("tcp")
    assert t.handle == 18446744072637900800 and t.caps == 0x39
    assert s.transport("iser") is None
    assert s.transports() == [t]
    # names no registered transport has (from a driver's proc_name): none, not OSError
    # (ENAMETOOLONG from Path.is_dir: "-m host -C flashnode" ended in "unexpected error")
    for name in ("A" * 300, "tc\0p", "../iscsi_transport/tcp", "."):
        assert s.transport(name) is None, name


def test_session(tree):
    s = Sysfs(tree)
    assert s.session_ids() == [1]
    for odd in ("session\u0661", "session1\n"):  # names the kernel never makes (session%u):
        (tree / "class/iscsi_session" / odd).mkdir()  # not session 1 again (\d, $)
    assert s.session_ids() == [1]
    info = s.session(1)
    assert info.sid == 1 and info.host_no == 0
    assert info.targetname == "iqn.2003-01.org.linux-iscsi.vm:t1" and info.tpgt == 1
    assert (info.state, info.target_state, info.creator) == ("LOGGED_IN", "SCANNED", 1234)
    assert (info.recovery_tmo, info.abort_tmo, info.lu_reset_tmo, info.tgt_reset_tmo) == (120, 15, 30, 30)
    assert info.username is None and info.password is None  # "(null)"
    assert info.username_in is None  # missing
    assert info.params["first_burst_len"] == "65536" and "isid" not in info.params
    assert dataclasses.is_dataclass(info)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.sid = 2  # type: ignore[misc]
    assert s.session(2) is None
    assert s.session_host_no(2) is None


def test_connection(tree):
    s = Sysfs(tree)
    assert s.connection_ids() == [(1, 0)] and s.connection_ids(sid=2) == []
    c = s.connection(1, 0)
    assert (c.address, c.port, c.local_port, c.state) == ("127.0.0.1", 3260, 40000, "up")
    assert c.exp_statsn == 2374525320 and c.data_digest == "CRC32C" and c.header_digest == "None"
    assert (c.max_recv_dlength, c.max_xmit_dlength, c.ping_tmo, c.recv_tmo) == (262144, 65536, 5, 5)
    assert s.connections(1) == [c]
    assert s.connection(1, 1) is None


def test_host(tree):
    s = Sysfs(tree)
    assert s.host_numbers() == [0]
    h = s.host(0)
    assert h.ipaddress == "127.0.0.1" and h.netdev is None and h.port_state is None
    assert s.host(5) is None


def test_devices(tree):
    s = Sysfs(tree)
    devs = s.session_devices(1)
    assert [d.hctl for d in devs] == ["0:0:0:0", "0:0:0:1"]
    assert devs[0].state == "running" and devs[0].block == ("sda",) and devs[0].vendor == "LIO-ORG "
    assert devs[1].state == "transport-offline" and devs[1].block == ()
    assert s.session_devices(9) == []


def test_module_version(tree, tmp_path):
    assert Sysfs(tree).module_version() == "2.0-870"
    assert Sysfs(tmp_path / "empty").module_version() is None


def test_empty_root_never_crashes(tmp_path):
    s = Sysfs(tmp_path / "nothing")
    assert s.session_ids() == [] and s.sessions() == [] and s.connections() == [] and s.hosts() == []
    assert s.transports() == [] and s.session(1) is None


def test_unreadable_attribute_is_none(tree, monkeypatch):
    real_open = os.open

    def fake_open(path, *a, **kw):
        if str(path).endswith(("/handle", "/password")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(sysfs_mod.os, "open", fake_open)
    s = Sysfs(tree)
    assert s.transport("tcp").handle is None and s.transport("tcp").caps == 0x39
    assert s.session(1).password is None and s.session(1).targetname


def test_driver_error_and_garbage(tree):
    sess = tree / "class/iscsi_session/session1"
    (sess / "tpgt").unlink()
    (sess / "tpgt").mkdir()            # read() fails with EISDIR -> None
    w(sess / "recovery_tmo", "abc")    # not an int -> None
    info = Sysfs(tree).session(1)
    assert info.tpgt is None and info.recovery_tmo is None


def test_dangling_session_link(tree):
    os.symlink("../../devices/platform/host3/session4/iscsi_session/session4", tree / "class/iscsi_session/session4")
    s = Sysfs(tree)
    assert s.session_ids() == [1, 4]
    assert s.session(4) is None and s.session_host_no(4) is None and s.session_devices(4) == []
    assert [x.sid for x in s.sessions()] == [1]


def test_online_devices_brings_back_what_went_offline_off_the_event_loop(tree):
    """After a recovery the daemon sets the devices the replacement timeout took offline
    back to running (and only those); the sysfs walk runs in the executor, never on the
    event loop's thread (64 sessions back at once spent ~17% of the loop there)."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from iscsictl.daemon import kernel_session as ks

    target = tree / "devices/platform/host0/session1/target0:0:0"
    for lun in ("0:0:0:0", "0:0:0:1"):
        link(tree / "bus/scsi/devices" / lun, os.fspath(target / lun))
    walked = []

    class Recording(Sysfs):
        def session_devices(self, sid):
            walked.append(threading.get_ident())
            return super().session_devices(sid)

    async def main():
        with ThreadPoolExecutor(1) as pool:
            await ks.online_devices(SimpleNamespace(sid=1), Recording(tree), pool)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    # with its newline: the kernel's store_state_field refuses "running" alone (EINVAL)
    assert (target / "0:0:0:1/state").read_text() == "running\n"
    assert (target / "0:0:0:0/state").read_text() == "running\n"  # was running: not written
    assert walked and loop_thread not in walked


def _flashnode(root: Path, host: int, index: str, sess: dict, conn: dict | None) -> None:
    """A flash target as Linux 6.1 lays it out: devices under the host, linked from
    bus/iscsi_flashnode/devices."""
    d = root / f"devices/pci0000:00/0000:00:05.0/host{host}/flashnode_sess-{host}:{index}"
    d.mkdir(parents=True)
    for k, v in sess.items():
        (d / k).write_bytes(v if isinstance(v, bytes) else (v + "\n").encode())
    bus = root / "bus/iscsi_flashnode/devices"
    link(bus / d.name, os.path.relpath(d, bus))
    if conn is not None:
        c = d / f"flashnode_conn-{host}:{index}:0"
        c.mkdir()
        for k, v in conn.items():
            (c / k).write_text(v + "\n")
        link(bus / c.name, os.path.relpath(c, bus))


def test_flashnode_values_read_as_iscsiadm_reads_them(tmp_path):
    """FLASHNODE_ATTRS' order and C types: a missing number all ones, atoi (u8, u16: the
    rest of the text ignored, clamped to a long, then truncated) and strtoul (u32: base 0,
    "-1" and overflow all ones), strings cut to their buffer in bytes; "(null)..." and
    "<NULL>..." and empty values left out; a value past 255 bytes read as its first 256."""
    root = tmp_path / "sys"
    _flashnode(root, 5, "0", {
        "targetname": "iqn.2001-05.com.example:t0", "tpgt": "65537", "erl": "-1",
        "def_time2wait": " 7x", "first_burst_len": "0x2000", "max_burst_len": "4294967297",
        "isid": "00023d00000100023d0001", "portal_type": "ipv6x", "targetalias": "(null)",
        "username": "<NULL>bob", "password": b"p" * 300, "tsid": "", "entry_enable": "0",
        "chap_out_idx": "99999999999999999999", "discovery_parent_type": "é" * 50},
        {"ipaddress": "fd00::10", "port": "3260", "max_recv_dlength": "010",
         "statsn": "-1", "exp_statsn": "99999999999999999999999", "ipv4_tos": "300"})
    node = Sysfs(root).flashnode(5, 0)
    assert (node.host_no, node.index, node.printed_index) == (5, 0, 0)
    v = node.values()
    assert list(v) == [a.key for a in sysfs_mod.FLASHNODE_ATTRS] and len(v) == 59
    assert (v["flashnode.session.tpgt"], v["flashnode.session.erl"],
            v["flashnode.session.def_time2wait"], v["flashnode.session.first_burst_len"],
            v["flashnode.session.max_burst_len"], v["flashnode.session.tsid"],
            v["flashnode.session.entry_enable"], v["flashnode.session.chap_out_idx"],
            v["flashnode.session.is_boot_target"], v["flashnode.session.def_taskmgmt_tmo"],
            v["flashnode.conn[0].max_recv_dlength"], v["flashnode.conn[0].statsn"],
            v["flashnode.conn[0].exp_statsn"], v["flashnode.conn[0].ipv4_tos"],
            v["flashnode.conn[0].tcp_xmit_wsf"], v["flashnode.conn[0].port"]) == (
        1, 255, 7, 8192, 1, 65535, 0, 65535, 255, 65535, 8, 4294967295, 4294967295, 44,
        4294967295, 3260)
    assert (v["flashnode.session.isid"], v["flashnode.session.portal_type"],
            v["flashnode.session.targetalias"], v["flashnode.session.username"],
            v["flashnode.session.password"], v["flashnode.conn[0].ipaddress"],
            v["flashnode.session.targetname"]) == (
        "00023d000001000", "ipv6", "", "", "p" * 255, "fd00::10", "iqn.2001-05.com.example:t0")
    # 79 bytes of 2-byte characters: 39 of them and half of one, as C cuts them
    cut = v["flashnode.session.discovery_parent_type"]
    assert cut.encode("utf-8", "surrogateescape") == ("é" * 50).encode()[:79]
    assert node.sess["password"] == "p" * 256 and "targetalias" not in node.sess
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.index = 1  # type: ignore[misc]


def test_flashnode_unreadable_value_is_missing(tmp_path):
    """No read bit for the owner: open-iscsi does not read it, even as root."""
    root = tmp_path / "sys"
    _flashnode(root, 5, "0", {"tpgt": "1"}, {"port": "3260"})
    os.chmod(root / "bus/iscsi_flashnode/devices/flashnode_sess-5:0/tpgt", 0o200)
    assert Sysfs(root).flashnode(5, 0).values()["flashnode.session.tpgt"] == 65535


def test_flashnodes_walked_as_iscsiadm_walks_them(tmp_path):
    """alphasort order; conn entries and other hosts' skipped; names read as sscanf("%d:%d")
    reads them (a sign, trailing text ignored; -3 is index 4294967293, printed -3); the walk
    stops at a name that does not parse, or at a sess entry without its conn entry."""
    root = tmp_path / "sys"
    s = Sysfs(root)
    assert s.flashnode_names() == [] and s.flashnodes(5) == sysfs_mod.FlashnodeScan()
    for index in ("0", "10", "2", "-3"):
        _flashnode(root, 5, index, {"tpgt": "1"}, {"port": "3260"})
    _flashnode(root, 6, "0", {"tpgt": "1"}, {"port": "3260"})
    scan = s.flashnodes(5)
    assert [n.index for n in scan.nodes] == [4294967293, 0, 10, 2]
    assert scan.nodes[0].printed_index == -3 and scan == s.flashnodes(5)
    assert (scan.bad_name, scan.unreadable) == (None, None)
    assert s.flashnode(5, 4294967293) == scan.nodes[0] and s.flashnode(5, 3) is None
    assert [n.host_no for n in s.flashnodes(6).nodes] == [6] and s.flashnodes(7).nodes == ()
    _flashnode(root, 5, "3", {"tpgt": "1"}, None)  # no conn entry
    (root / "bus/iscsi_flashnode/devices/flashnode_sess-6:x").mkdir()
    scan = s.flashnodes(5)
    assert [n.index for n in scan.nodes] == [4294967293, 0, 10, 2]
    assert scan.unreadable == "flashnode_sess-5:3" and scan.bad_name is None
    assert s.flashnode(5, 3) is None
    scan = s.flashnodes(6)
    assert [n.index for n in scan.nodes] == [0] and scan.bad_name == "flashnode_sess-6:x"
    (root / "bus/iscsi_flashnode/devices/flashnode_sess-5:1trailing").mkdir()
    assert s.flashnodes(5).unreadable == "flashnode_sess-5:1trailing"  # read as 5:1: absent
