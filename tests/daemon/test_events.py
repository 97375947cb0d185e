"""Kernel event routing in the daemon (no kernel: events built from their classes)."""

import asyncio
import json
import logging
import os
import stat

import pytest

from fake_kernel import session_in_sysfs, transport_in_sysfs
from iscsictl.daemon import kernel_session as ks
from iscsictl.daemon.service import Daemon, pdu_from_kernel
from iscsictl.daemon import service
from iscsictl.netlink import (EVENTS_LOST, ConnError, DestroySession, RecvPdu, ReplyTimeout,
                              UnbindSession)
from iscsictl.protocol.errors import ISCSIProtocolError
from iscsictl.protocol.pdu import AsyncMessage, LogoutResponse, NOPIn
from iscsictl.protocol.portal import Portal


def _session(sid=3):
    node = ks.NodeTarget("iqn.2003-01.org.example:t", "127.0.0.1", 3260, 1, "default", "tcp", {})
    return ks.KernelSession(sid=sid, host_no=0, cid=0, node=node, isid=None, tsih=1, params=None,
                            current=Portal("127.0.0.1", 3260, 1))


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    d.started = []

    def start_recovery(s, why):  # as the real one: the session is in recovery from now on
        d.started.append((s.sid, why))
        s.conn_state = "TRANSPORT WAIT"
    d._start_recovery = start_recovery
    return d


def test_pdu_from_kernel_reads_bhs_ahs_and_unpadded_data():
    pdu = NOPIn(data=b"abcde")
    hdr, ahs = pdu.encode_header()
    assert pdu_from_kernel(hdr + ahs + b"abcde") == pdu
    with pytest.raises(ISCSIProtocolError):
        pdu_from_kernel(hdr + b"ab")  # shorter than DataSegmentLength
    with pytest.raises(ISCSIProtocolError):
        pdu_from_kernel(hdr[:20])


def test_recv_pdu_resolves_the_waiter(daemon):
    loop = asyncio.new_event_loop()
    try:
        s = _session()
        daemon.sessions[s.sid] = s
        s.pdu_waiter = loop.create_future()
        hdr, _ = LogoutResponse(time2wait=2).encode_header()
        daemon._on_event(RecvPdu(101, None, sid=s.sid, cid=0, pdu=hdr))
        assert s.pdu_waiter.result() == LogoutResponse(time2wait=2)
    finally:
        loop.close()


def test_async_drop_sets_time2wait_once(daemon):
    s = _session()
    daemon.sessions[s.sid] = s
    hdr, _ = AsyncMessage(async_event=2, parameter1=0, parameter2=7, parameter3=20).encode_header()
    daemon._on_event(RecvPdu(101, None, sid=s.sid, cid=0, pdu=hdr))
    assert s.time2wait == 7 and s.time2wait_once == 7


def test_conn_error_starts_recovery_only_for_our_sessions(daemon, caplog):
    s = _session()
    daemon.sessions[s.sid] = s
    with caplog.at_level(logging.INFO, logger="iscsictld"):
        daemon._on_event(ConnError(102, None, sid=99, cid=0, error=1020))
        daemon._on_event(ConnError(102, None, sid=s.sid, cid=0, error=1020))
    assert daemon.started == [(3, "ISCSI_ERR_TCP_CONN_CLOSE: TCP connection closed")]
    assert "connection 99:0 error 1020 (ISCSI_ERR_TCP_CONN_CLOSE: TCP connection closed) " \
           "for a session not managed here (yet)" in caplog.text


def test_conn_error_before_the_session_is_filed_is_handled_when_it_is(daemon):
    """The kernel runs (and scans) a new session a moment before the daemon files it: an
    error reported in between starts the recovery once the session is filed; errors of
    sessions never filed are kept for the most recent sids only."""
    daemon._on_event(ConnError(102, None, sid=7, cid=0, error=1020))
    assert daemon.started == []
    daemon._manage(_session(5))  # another session: nothing to replay
    assert daemon.started == []
    daemon._manage(s := _session(7))
    assert daemon.started == [(7, "ISCSI_ERR_TCP_CONN_CLOSE: TCP connection closed")]
    assert daemon.sessions[7] is s
    daemon._manage(_session(7))  # handled once
    assert len(daemon.started) == 1
    from iscsictl.daemon.service import MAX_UNCLAIMED
    for sid in range(100, 101 + MAX_UNCLAIMED):
        daemon._on_event(ConnError(102, None, sid=sid, cid=0, error=1020))
    daemon._manage(_session(100))  # the oldest, forgotten
    daemon._manage(_session(100 + MAX_UNCLAIMED))
    assert [sid for sid, _ in daemon.started] == [7, 100 + MAX_UNCLAIMED]


def test_malformed_recv_pdu_is_logged_and_dropped(daemon, caplog):
    s = _session()
    daemon.sessions[s.sid] = s
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        daemon._on_event(RecvPdu(101, None, sid=s.sid, cid=0, pdu=b"\x3e" + bytes(47)))
    assert "malformed PDU from the kernel" in caplog.text
    assert daemon.sessions[s.sid] is s


def test_a_scsi_async_event_with_a_bad_sense_length_is_logged_and_dropped(daemon, caplog):
    """AsyncEvent 0 whose SenseLength runs past its data segment: said in one line and
    passed over, as iscsid's "Could not handle AEN 0. Invalid sense." (before: a traceback
    from the event callback in the daemon's log)."""
    s = _session()
    daemon.sessions[s.sid] = s
    data = (200).to_bytes(2, "big") + bytes([0x70, 0, 6]) + bytes(9)
    hdr, _ = AsyncMessage(async_event=0, data=data).encode_header()
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        daemon._on_event(RecvPdu(101, None, sid=s.sid, cid=0, pdu=hdr + data))
    assert "session 3: could not handle the target's AsyncMessage: SenseLength 200" in \
        caplog.text and "Traceback" not in caplog.text
    assert daemon.sessions[s.sid] is s and daemon.started == []


def test_an_hbas_link_up_and_down_are_warnings_as_iscsids(daemon, caplog):
    """ISCSI_KEVENT_HOST_EVENT (qla4xxx, be2iscsi): "Host5: Link Down." as iscsid's
    ctldev_handle logs it; it was a debug line, lost from the logs."""
    from iscsictl.netlink import HostEvent
    with caplog.at_level(logging.INFO, logger="iscsictld"):
        for code in (2, 1, 9):
            daemon._on_event(HostEvent(110, None, host_no=5, code=code))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [
        "Host5: Link Down.", "Host5: Link Up."]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_unbind_and_destroy_events(daemon):
    s = _session()
    daemon.sessions[s.sid] = s
    daemon._on_event(UnbindSession(105, None, sid=s.sid, host_no=0))
    assert s.unbound.is_set()
    daemon._on_event(DestroySession(104, None, host_no=0, sid=s.sid))
    assert s.sid not in daemon.sessions
    assert not s.destroyed.is_set()  # not ours: no logout waits for it


def test_the_destroy_event_of_our_logout_ends_its_wait(daemon):
    """During a logout (IN LOGOUT) the kernel's KEVENT_DESTROY_SESSION sets the session's
    ``destroyed`` (ks.logout returns then); the session stays filed until the logout
    removes it and releases its ISID."""
    async def main():
        s = _session()
        s.conn_state = "IN LOGOUT"
        s.logging_out = asyncio.get_running_loop().create_future()  # a user's -u
        daemon.sessions[s.sid] = s
        daemon._on_event(DestroySession(104, None, host_no=0, sid=s.sid))
        assert s.destroyed.is_set() and daemon.sessions[s.sid] is s
    asyncio.run(main())


def test_an_hbas_login_state_goes_to_its_login_only(daemon):
    """KEVENT_CONN_LOGIN_STATE (qla4xxx's own login) answers the offloaded login's wait; a
    wait for a Logout or Text Response is not given it (it was, as if the PDU came)."""
    from iscsictl.netlink import ConnLoginState
    from iscsictl.protocol.pdu import TextResponse

    async def main():
        s = _session()
        daemon.sessions[s.sid] = s
        loop = asyncio.get_running_loop()
        for wanted, given in (((LogoutResponse,), False), ((TextResponse,), False),
                              (ks.ANY_PDU, True)):
            s.pdu_wanted, s.pdu_waiter = wanted, loop.create_future()
            daemon._on_event(ConnLoginState(109, None, sid=s.sid, cid=0, state=3))
            assert s.pdu_waiter.done() is given, wanted
    asyncio.run(main())


def test_a_destroy_event_during_our_logout_ends_the_wait_for_its_logout_response(daemon):
    """Destroyed by the kernel while the Logout PDU waits for its answer (a host removed):
    no answer comes, and the wait ends at once (before: at the logout timeout)."""
    from iscsictl.daemon.errors import SessionError

    async def main():
        s = _session()
        s.conn_state = "IN LOGOUT"
        s.logging_out = asyncio.get_running_loop().create_future()  # a user's -u
        daemon.sessions[s.sid] = s
        s.pdu_waiter = asyncio.get_running_loop().create_future()
        daemon._on_event(DestroySession(104, None, host_no=0, sid=s.sid))
        with pytest.raises(SessionError, match="the kernel destroyed the session"):
            await asyncio.wait_for(s.pdu_waiter, 1)
    asyncio.run(main())


def _kernel_shows(root, sid, session_state, conn_state=None):
    """sysfs as the kernel shows a session (None: no session) and its connection 0 (None: no
    ``state`` attribute, as before Linux 5.x)."""
    sdir = root / f"class/iscsi_session/session{sid}"
    cdir = root / f"class/iscsi_connection/connection{sid}:0"
    for d, value in ((sdir, session_state), (cdir, conn_state)):
        d.mkdir(parents=True, exist_ok=True)
        if value is None:
            (d / "state").unlink(missing_ok=True)
        else:
            (d / "state").write_text(value + "\n")
    if session_state is None:
        sdir.rmdir()


def test_lost_events_are_made_up_for_by_looking_at_sysfs(daemon, tmp_path, monkeypatch, caplog):
    """After EVENTS_LOST (a netlink receive buffer overrun) every session the daemon thinks
    logged in is looked at in sysfs, at once and again RESYNC_LOOKS later: one whose
    connection the kernel shows failed (or, without the connection's ``state``, whose session
    is FAILED) is recovered, one gone is forgotten; sessions in a login, recovery or logout,
    and those the kernel shows up, are left alone."""
    monkeypatch.setattr(service, "RESYNC_LOOKS", (0.0, 0.2))
    shown = {3: ("FAILED", "failed"), 4: ("LOGGED_IN", "up"), 5: (None, None),
             6: ("FAILED", None), 7: ("FAILED", "failed"), 8: ("LOGGED_IN", "up"),
             9: ("LOGGED_IN", "up")}
    for sid, (sess, conn) in shown.items():
        daemon.sessions[sid] = _session(sid)
        _kernel_shows(tmp_path, sid, sess, conn)
    daemon.sessions[7].conn_state = "IN LOGOUT"
    daemon.sessions[9].conn_state = "TRANSPORT WAIT"

    async def main():
        with caplog.at_level(logging.INFO, logger="iscsictld"):
            daemon._on_event(EVENTS_LOST)
            await asyncio.sleep(0.1)
            first = sorted(daemon.started)
            _kernel_shows(tmp_path, 8, "LOGGED_IN", "failed")  # marked after the first look
            await daemon._resync_task
        return first

    first = asyncio.run(main())
    why = "its connection failed while kernel events were lost"
    assert first == [(3, why), (6, why)]
    assert sorted(daemon.started) == [(3, why), (6, why), (8, why)]
    assert 5 not in daemon.sessions and sorted(daemon.sessions) == [3, 4, 6, 7, 8, 9]
    assert "session 5 is gone from the kernel (its events were lost)" in caplog.text
    assert "kernel events were lost (netlink receive buffer overrun)" in caplog.text


def test_a_later_overrun_starts_the_looks_again(daemon, tmp_path, monkeypatch):
    """A second overrun during the looks counts them again from it: a connection the kernel
    marks failed after the first overrun's last look is still found."""
    monkeypatch.setattr(service, "RESYNC_LOOKS", (0.0, 0.2))
    daemon.sessions[3] = _session(3)
    _kernel_shows(tmp_path, 3, "LOGGED_IN", "up")

    async def main():
        daemon._on_event(EVENTS_LOST)
        await asyncio.sleep(0.1)
        first = daemon._resync_task
        daemon._on_event(EVENTS_LOST)
        await asyncio.sleep(0)
        assert first.cancelled()
        await asyncio.sleep(0.15)  # past the first overrun's second look
        _kernel_shows(tmp_path, 3, "FAILED", "failed")
        await daemon._resync_task

    asyncio.run(main())
    assert daemon.started == [(3, "its connection failed while kernel events were lost")]


def test_the_session_state_file_round_trip(daemon, tmp_path, caplog):
    """The sessions' ISID/TSIH are written (the state directory made when missing) and read
    back by the next start; a state directory that cannot be written is a warning."""
    from iscsictl.protocol.names import ISID

    s = _session(7)
    s.isid, s.tsih = ISID.random(0x123456, 9), 42
    daemon.sessions[7] = s
    old = os.umask(0)  # an inherited umask 0 (iscsid sets 0077): no 0777 directory
    try:
        daemon._write_state()  # no loop: at once; st/ does not exist yet
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "st").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "st" / "sessions.json").stat().st_mode) == 0o644
    assert daemon._load_state() == {"7": {"isid": str(s.isid), "tsih": 42}}
    assert sorted(os.listdir(tmp_path / "st")) == ["sessions.json"]  # no temp file left
    del daemon.sessions[7]
    daemon._write_state()
    assert daemon._load_state() == {}
    blocked = Daemon(str(tmp_path / "s2"), sysfs_root=str(tmp_path),
                     state_dir=str(tmp_path / "file" / "st"), db_root=str(tmp_path),
                     config_root=str(tmp_path), autostart=False)
    (tmp_path / "file").write_text("not a directory")
    blocked.sessions[7] = s
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        blocked._write_state()
    assert "cannot save session state in" in caplog.text
    assert blocked._load_state() == {}


def test_a_state_file_nested_past_the_parser_is_left_out(daemon, tmp_path, caplog):
    """A state file or journal line nested deeper than the JSON parser goes (damaged) is
    left out as any damaged one, not the daemon's end at every start (RecursionError)."""
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "sessions.json").write_text("[" * 100000)
    (tmp_path / "st" / "sessions.journal").write_text("{\"a\": " * 100000 + "\n")
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        assert daemon._load_state() == {}
    assert "saved session state entries" in caplog.text


@pytest.mark.parametrize("content", [None, b"", b"\0" * 64, b'{"7": {"isid": "00'])
def test_a_damaged_state_file_is_said(daemon, tmp_path, caplog, content):
    """A state file emptied, zeroed or cut short by a crash is said, once, with what it
    means (before: left out without a word, the sessions adopted with open-iscsi's ISID
    and nobody told); none at all is the first start's, and says nothing."""
    (tmp_path / "st").mkdir()
    if content is not None:
        (tmp_path / "st" / "sessions.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        assert daemon._load_state() == {}
    said = [r.getMessage() for r in caplog.records if "sessions.json" in r.getMessage()]
    if content is None:
        assert said == []
    else:
        assert said == [f"{tmp_path}/st/sessions.json unreadable (damaged: not the JSON "
                        "written there): the sessions it saved are adopted with open-iscsi's "
                        "ISID"]


def _restarted(tmp_path) -> Daemon:
    return Daemon(str(tmp_path / "s2"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                  db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)


def test_a_session_is_journaled_as_soon_as_it_is_the_daemons(daemon, tmp_path):
    """A crash before the state file's next write (STATE_SAVE_DELAY s later; for an iSER
    or offload login's session, the whole login) lost the ISID: the next start read the
    journal's line; the state file's next write empties it."""
    from iscsictl.protocol.names import ISID

    async def main():
        s = _session(7)
        s.isid, s.tsih = ISID.random(0x123456, 9), 42
        daemon._manage(s)
        daemon._save_state()  # due in STATE_SAVE_DELAY s: the daemon "crashes" before
        daemon._state_write.cancel()
        return s

    s = asyncio.run(main())
    assert not (tmp_path / "st" / "sessions.json").exists()
    assert _restarted(tmp_path)._load_state() == {"7": {"isid": str(s.isid), "tsih": 42}}
    daemon._write_state()
    assert (tmp_path / "st" / "sessions.journal").read_bytes() == b""
    assert _restarted(tmp_path)._load_state() == {"7": {"isid": str(s.isid), "tsih": 42}}
    import shutil

    shutil.rmtree(tmp_path / "st")  # /run emptied under the daemon: the next write makes
    daemon._write_state()  # the directory again, and the journal's lines go there
    s8 = _session(8)
    s8.isid = ISID.random(0x123456, 10)
    daemon._journal(s8)
    assert _restarted(tmp_path)._load_state()["8"] == {"isid": str(s8.isid), "tsih": 1}


def test_daemons_side_by_side_keep_each_others_saved_sessions(tmp_path):
    """iscsictl-starts run side by side, each with a daemon of its own writing the one
    state directory: each write keeps the others' sessions (read under a lock, the journal
    included: a line appended by one is in the next file another writes), and none that
    it adopted, whose ISID may be a guess (before: the last writer's file held its own
    sessions only, and a session of the other's, adopted with open-iscsi's guess, was
    saved with that guess; iscsictld then adopted them with the wrong ISIDs).  A session
    gone from the kernel is left out; their ISIDs start apart, by PID.  The journal, which
    the lock is taken on, is root's alone."""
    from iscsictl.daemon.service import ISIDS_PER_PROCESS
    from iscsictl.protocol.names import ISID

    def side_by_side():
        return Daemon(None, sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                      db_root=str(tmp_path), config_root=str(tmp_path), autostart=False,
                      takeover=False, side_by_side=True)

    a, b = side_by_side(), side_by_side()
    assert a.isids.allocate().qualifier == os.getpid() * ISIDS_PER_PROCESS
    for sid in (5, 6, 8):
        _kernel_shows(tmp_path, sid, "LOGGED_IN", "up")
    mine_a, mine_b, guessed = _session(5), _session(6), _session(5)
    mine_a.isid, mine_a.tsih = ISID.random(0x123456, 1), 11
    mine_b.isid, mine_b.tsih = ISID.random(0x123456, 2), 12
    guessed.isid, guessed.adopted = ISID.oui(0x00023D, 5), True  # b adopted a's before it saved
    a.sessions[5] = mine_a
    b.sessions.update({5: guessed, 6: mine_b})
    a._write_state()
    b._write_state()
    a._write_state()
    late = _session(8)
    late.isid, late.tsih = ISID.random(0x123456, 3), 13
    a._journal(late)  # a's line, not in its file yet
    b._write_state()
    assert _restarted(tmp_path)._load_state() == {
        "5": {"isid": str(mine_a.isid), "tsih": 11}, "6": {"isid": str(mine_b.isid), "tsih": 12},
        "8": {"isid": str(late.isid), "tsih": 13}}
    _kernel_shows(tmp_path, 8, None)
    b._write_state()
    assert set(_restarted(tmp_path)._load_state()) == {"5", "6"}
    # the journal, which their lock is taken on, is root's alone: a user's flock on it
    # would hold their writes
    assert stat.S_IMODE((tmp_path / "st" / "sessions.journal").stat().st_mode) == 0o600
    for d in (a, b):
        os.close(d._journal_fd)


def test_an_iscsictl_start_keeps_quiet_about_the_others_kernel_events(tmp_path, caplog):
    """Every netlink listener gets the kernel's events (ISCSI_NL_GRP_ISCSID): an
    iscsictl-start beside others is told of their relayed logins' PDUs and their sessions'
    connection errors.  Neither is its news: no warning or error on the boot console
    (before: "RECV_PDU for unknown session 6 dropped", and "Kernel reported iSCSI
    connection 5:0 error" for a session it leaves to its owner).  iscsictld says both."""
    def events(**kw):
        d = Daemon(None, sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False, **kw)
        d._start_recovery = lambda s, why: None

        async def main():
            s = _session(5)
            s.adopted = True
            d._manage(s)
            caplog.clear()
            d._on_event(ConnError(102, None, sid=5, cid=0, error=1011))
            d._on_event(RecvPdu(101, None, sid=6, cid=0, pdu=bytes(48)))
        with caplog.at_level(logging.DEBUG, logger="iscsictld"):
            asyncio.run(main())
        return [r.levelno for r in caplog.records if r.levelno >= logging.WARNING]

    assert events(takeover=False, side_by_side=True) == []
    assert sorted(events()) == [logging.WARNING, logging.ERROR]


def test_a_journal_line_cut_short_loses_no_later_line(daemon, tmp_path, monkeypatch):
    """A full disk cuts a line short (a short write, then ENOSPC): the next line is still
    read at a restart (it was glued to the cut one, and both sessions' ISIDs were lost)."""
    import errno

    from iscsictl.protocol.names import ISID

    sessions = []
    for sid in (1, 2, 3):
        s = _session(sid)
        s.isid = ISID.random(0x123456, sid)
        sessions.append(s)
    daemon._journal(sessions[0])
    real_write = os.write
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # a short write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        daemon._journal(sessions[1])
    daemon._journal(sessions[2])
    saved = _restarted(tmp_path)._load_state()
    assert saved["1"]["isid"] == str(sessions[0].isid)
    assert saved["3"]["isid"] == str(sessions[2].isid) and "2" not in saved


def test_saved_state_of_another_shape_is_left_out_not_a_traceback(daemon, tmp_path, caplog):
    """A state file or journal line of another version or damaged: its bad entries are
    left out with one warning (the daemon exited with a traceback at start, AttributeError
    or TypeError, and systemd restarted it in a loop); the good ones are kept."""
    st = tmp_path / "st"
    st.mkdir()
    (st / "sessions.json").write_text(json.dumps({
        "1": 5, "2": {"isid": 5}, "3": {"isid": "00023d000001", "tsih": "x"},
        "4": {"isid": "zz023d000001"}, "x": {}, "5": {"isid": "00023d000005", "tsih": 7},
        "6": {"isid": None}}))
    (st / "sessions.journal").write_text('{"sid": 8, "isid": "00023d000008", "tsih": 1}\n'
                                         'not json\n[1]\n{"sid": true}\n')
    with caplog.at_level(logging.WARNING, logger="iscsictld"):
        assert daemon._load_state() == {"5": {"isid": "00023d000005", "tsih": 7},
                                        "6": {"isid": None, "tsih": 0},
                                        "8": {"isid": "00023d000008", "tsih": 1}}
    assert "8 saved session state entries in" in caplog.text
    (st / "sessions.json").write_text("[]")
    assert daemon._load_state() == {"8": {"isid": "00023d000008", "tsih": 1}}


def test_the_session_table_knows_each_nodes_sessions():
    """Daemon.sessions answers "this node's sessions" from an index kept as sessions are
    filed and removed (a scan of every session per record held the loop for seconds at a
    few thousand): a sid filed again under another node moves, one removed goes."""
    from dataclasses import replace

    table = service.SessionTable()
    a, b = _session(1), _session(2)
    other = replace(_session(3), node=replace(a.node, address="FD00::1"))
    table[1], table[2], table[3] = a, b, other
    assert table.of_node(a.node.key) == [a, b] and table.of_node(other.node.key) == [other]
    assert replace(a.node, address="fd00::1").key == other.node.key  # one form a host
    table[2] = replace(b, node=other.node)
    assert table.of_node(a.node.key) == [a] and len(table.of_node(other.node.key)) == 2
    del table[1]
    assert table.of_node(a.node.key) == [] and table.pop(1, None) is None
    assert table.pop(3).sid == 3 and [s.sid for s in table.of_node(other.node.key)] == [2]
    with pytest.raises(KeyError):
        del table[1]
    assert dict(table) == {2: table[2]}
    table.update({1: a})  # every dict method that adds or removes one keeps the index
    assert table.setdefault(4, other) is other and table.setdefault(1, b) is a
    assert table.of_node(a.node.key) == [a] and len(table.of_node(other.node.key)) == 2
    assert table.popitem() == (4, other) and len(table.of_node(other.node.key)) == 1
    table.clear()
    assert table.of_node(a.node.key) == table.of_node(other.node.key) == []
    with pytest.raises(KeyError):
        table.popitem()


class _NoKernel:
    """The netlink calls _recover makes before the relogin (STOP_CONN), answered at once."""

    async def stop_conn(self, *args):
        return None


@pytest.mark.parametrize("tmo, kernel_tmo, failed_earlier, walked", [
    ("120", None, False, False),  # back long before the replacement timeout: none offline
    ("0", None, False, True),     # the kernel's timer fired at once: transport-offline
    ("120", None, True, True),    # found FAILED at start: failed at an unknown time
    # the kernel's own timer, not the record's: multipathd's fast_io_fail_tmo, or a boot
    # session's login value (before: the record's 120 said nothing went offline, and the
    # devices the kernel's 0 s took offline stayed so, a multipath path lost for good)
    ("120", "0", False, True),
    ("0", "120", False, False),
    ("0", "off", False, False),  # the kernel's -1: no timer, nothing taken offline
])
def test_recovery_walks_the_devices_only_when_they_can_be_offline(
        tmp_path, monkeypatch, tmo, kernel_tmo, failed_earlier, walked):
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    s = _session()
    s.node.record["node.session.timeo.replacement_timeout"] = tmo
    if kernel_tmo is not None:
        attr = tmp_path / f"class/iscsi_session/session{s.sid}/recovery_tmo"
        attr.parent.mkdir(parents=True)
        attr.write_text(kernel_tmo + "\n")
    s.time2wait_once = 0  # no Time2Wait: the test does not sleep
    d.sessions[s.sid] = s
    d.nl = _NoKernel()
    transport_in_sysfs(d.sysfs.root, "tcp", 1)
    relogins, walks = [], []

    async def relogin(nl, handle, session, challenges):
        relogins.append(session.sid)

    async def online_devices(session, sysfs, executor=None):
        walks.append(session.sid)

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(ks, "online_devices", online_devices)

    async def main():
        loop = asyncio.get_running_loop()
        await d._recover(s, "test", loop.time(), failed_earlier)

    asyncio.run(main())
    assert relogins == [s.sid] and s.conn_state == "LOGGED IN"
    assert walks == ([s.sid] if walked else [])


class _SilentKernel:
    """A kernel that never answers _recover's STOP_CONN(RECOVER)."""

    async def stop_conn(self, *args):
        raise ReplyTimeout("no reply to STOP_CONN within 0.3 s")


def _recovering(tmp_path, kernel, **record):  # type: ignore[no-untyped-def]
    """A daemon on ``kernel`` (a stand-in netlink client) managing one tcp session (its
    record's ``record`` values set, no Time2Wait): (daemon, session), for ``_recover``."""
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    s = _session()
    s.node.record.update(record)
    s.time2wait_once = 0
    d.sessions[s.sid] = s
    d.nl = kernel
    transport_in_sysfs(d.sysfs.root, "tcp", 1)
    session_in_sysfs(d.sysfs.root, s.sid, "FAILED")
    return d, s


def test_recovery_goes_on_when_the_kernel_does_not_answer_its_stop(tmp_path, monkeypatch):
    """A ReplyTimeout there ended the recovery task before: the session stayed down."""
    d, s = _recovering(tmp_path, _SilentKernel())
    relogins = []

    async def relogin(nl, handle, session, challenges):
        relogins.append(session.sid)

    monkeypatch.setattr(ks, "relogin", relogin)
    asyncio.run(d._recover(s, "test", 0.0))
    assert relogins == [s.sid] and s.conn_state == "LOGGED IN"


@pytest.mark.parametrize("freq", ["0", "-3", "2"])
def test_a_log_frequency_below_1_is_1_and_the_recovery_goes_on(tmp_path, monkeypatch, freq):
    """node.session.conn_reopen_log_freq (open-iscsi 2.1.11) 0 or less is 1, as there:
    a 0 raised ZeroDivisionError at the second failed relogin and ended the recovery, the
    session left down for good.  Relogins that fail three times, then succeed."""
    from iscsictl.daemon import service
    from iscsictl.daemon.errors import SessionError
    d, s = _recovering(tmp_path, _NoKernel(), **{"node.session.conn_reopen_log_freq": freq})
    relogins = []

    async def relogin(nl, handle, session, challenges):
        relogins.append(session.sid)
        if len(relogins) < 4:
            raise SessionError(8, "cannot make connection: refused", retryable=True)

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(service.random, "uniform", lambda a, b: 0.001)
    asyncio.run(d._recover(s, "test", 0.0))
    assert len(relogins) == 4 and s.conn_state == "LOGGED IN"


def test_a_logout_that_cancels_a_finishing_recovery_starts_no_other(tmp_path, monkeypatch):
    """The new connection failed while its recovery was setting the devices running (noted,
    to start over when it ends), and a user's logout cancels that recovery: no recovery
    starts beside the logout's teardown (before: one did, its STOP_CONN and relogin
    between the logout's unbind and teardown), as iscsid never reopens a session being
    logged out."""
    calls = []

    class Nl:
        async def stop_conn(self, handle, sid, cid, flag):
            calls.append("stop_conn")

        def close(self):
            pass

    d, s = _recovering(tmp_path, Nl(),  # replacement timeout 0: the devices are walked
                       **{"node.session.timeo.replacement_timeout": "0"})

    async def relogin(nl, handle, session, challenges):
        calls.append("relogin")
        session.time2wait_once = 0

    async def online_devices(session, sysfs, executor=None):
        walking.set()
        await asyncio.sleep(1)

    async def logout(nl, handle, session, timeout, root):
        session.conn_state = "IN LOGOUT"
        calls.append("unbind")
        await asyncio.sleep(0.3)  # the kernel removes the devices
        calls.append("teardown")

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(ks, "online_devices", online_devices)
    monkeypatch.setattr(ks, "logout", logout)

    async def main():
        nonlocal walking
        walking = asyncio.Event()
        d._start_recovery(s, "first error")
        await walking.wait()
        d._on_event(ConnError(102, None, sid=s.sid, cid=0, error=1020))  # fails again
        await d.logout([s.sid], force=True)
        await asyncio.sleep(0.2)
    walking = None
    asyncio.run(main())
    assert calls == ["stop_conn", "relogin", "unbind", "teardown"]


@pytest.mark.parametrize("failure", ["timeout", "unreadable"])
def test_get_stats_without_a_readable_answer_is_code_9(daemon, failure):
    """GET_STATS' multicast reply lost to an overrun, or too short for what it announces:
    code 9 naming it (before: a traceback in the log and no answer, or 'bad request')."""
    from iscsictl.daemon.errors import SessionError
    from iscsictl.netlink import PayloadDecodeError

    class Netlink:
        async def get_stats(self, handle, sid, cid):
            if failure == "timeout":
                raise ReplyTimeout("no reply to GET_STATS within 0.3 s")
            raise PayloadDecodeError("custom stats: 2 announced, only 0 present")

    async def handle(transport):
        return 1
    s = _session()
    daemon.sessions[s.sid] = s
    daemon.nl, daemon.handle = Netlink(), handle
    with pytest.raises(SessionError) as e:
        asyncio.run(daemon.stats(s.sid))
    assert e.value.code == 9 and str(e.value).startswith("GET_STATS failed: ")


def test_a_task_failing_as_expected_logs_no_traceback(daemon, caplog):
    """A daemon task that ends in a SessionError (the discovery daemon's SendTargets
    through an HBA, a target down) is its awaiter's to say, once: it logged an ERROR and a
    traceback at every round.  Anything else is still logged with its traceback."""
    async def fails(exc):
        raise exc

    async def main():
        for exc in (service.SessionError(8, "cannot make connection"), ValueError("a bug")):
            task = daemon._spawn(fails(exc))
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.sleep(0)

    with caplog.at_level(logging.DEBUG, logger="iscsictld"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info[0] is ValueError
