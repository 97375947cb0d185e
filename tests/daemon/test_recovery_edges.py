"""The daemon's recovery and logout at their edges (no kernel: netlink faked, the relogin
and logout stubbed or run against a small fake): a recovery that gives up, an error that
comes while a recovery finishes, two logouts of one session, a logout of a session this
daemon did not make while it makes another."""

import asyncio
import logging
import os
import socket

import pytest

from fake_kernel import session_in_sysfs, transport_in_sysfs
from iscsictl.daemon import kernel_session as ks
from iscsictl.daemon.errors import SessionError
from iscsictl.daemon.service import Daemon
from iscsictl.netlink import ConnError
from iscsictl.protocol.names import ISID
from iscsictl.protocol.portal import Portal


def _session(sid=3, record=None, address="127.0.0.1"):
    node = ks.NodeTarget("iqn.2003-01.org.example:t", address, 3260, 1, "default", "tcp",
                         dict(record or {}))
    return ks.KernelSession(sid=sid, host_no=0, cid=0, node=node, isid=ISID.en(7, sid), tsih=1,
                            params=None, current=Portal(address, 3260, 1))


def _daemon(tmp_path):
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    transport_in_sysfs(d.sysfs.root, "tcp", 1)
    return d


class _StopOnly:
    """The netlink calls a recovery makes before its relogin (STOP_CONN)."""

    async def stop_conn(self, *args):
        return None

    def close(self):
        pass


def _failing_recovery(tmp_path, monkeypatch, reopen_max: str, error: SessionError,
                      logouts: list):
    """A daemon whose session 3 (node.session.reopen_max ``reopen_max``, no Time2Wait)
    fails every relogin with ``error``; its logouts are recorded in ``logouts``."""
    d = _daemon(tmp_path)
    s = _session(3, {"node.session.reopen_max": reopen_max})
    s.time2wait_once = 0
    d.sessions[3] = s
    session_in_sysfs(tmp_path, 3, "FAILED")
    d.nl = _StopOnly()

    async def relogin(nl, handle, session, challenges):
        session.attempts = getattr(session, "attempts", 0) + 1
        raise error

    async def logout(nl, handle, session, timeout, root):
        logouts.append(session.sid)

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(ks, "logout", logout)
    return d, s


def test_a_recovery_that_gives_up_removes_the_session_and_the_daemon_still_stops(
        tmp_path, monkeypatch):
    """node.session.reopen_max spent: the session is logged out from the recovery itself.
    Before, that logout cancelled the task it ran in and waited for it: a RecursionError,
    the session stuck in TRANSPORT WAIT for good, every later logout and the daemon's stop
    failing the same way (SIGTERM ignored).  It is spent after reopen_max + 1 attempts, as
    iscsid's reopen_cnt (initiator.c iscsi_login_eh: ``reopen_cnt > reopen_max``); 1 gave
    up after the first, before any retry."""
    logouts = []
    d, s = _failing_recovery(tmp_path, monkeypatch, "1",
                             SessionError(8, "cannot make connection: refused", retryable=True),
                             logouts)

    async def main():
        d._start_recovery(s, "test")
        done, _ = await asyncio.wait([s.recovery], timeout=5)
        assert done and s.recovery.exception() is None
        assert logouts == [3] and 3 not in d.sessions
        assert s.attempts == 2
        await asyncio.wait_for(d.close(), 5)
        assert d._stopped.is_set()

    asyncio.run(main())


def test_relogin_attempts_back_off_to_a_few_seconds_at_most(tmp_path, monkeypatch):
    """Failed relogins wait 1 s doubling, with jitter, but never more than
    RECOVERY_BACKOFF_MAX (4 s) x 1.5: a target back after a long outage is used again within
    seconds (iscsid retries about every 2 s), before the replacement timeout fails the I/O
    it would not have failed (the cap was 30 s: up to 45 s)."""
    from iscsictl.daemon import service

    d, s = _failing_recovery(tmp_path, monkeypatch, "12",
                             SessionError(24, "authorization failure", retryable=True), [])
    waits = []
    real_sleep = asyncio.sleep

    async def sleep(delay, *args):
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the recovery's waits (the loop's own too)

    async def main():
        d._start_recovery(s, "test")
        await asyncio.wait([s.recovery], timeout=5)
        await asyncio.wait_for(d.close(), 5)

    asyncio.run(main())
    backoffs = [w for w in waits if w > 0]
    assert len(backoffs) >= 11, waits
    assert max(backoffs) <= service.RECOVERY_BACKOFF_MAX * 1.5 <= 6
    assert backoffs[0] <= 1.5 and max(backoffs[-5:]) >= service.RECOVERY_BACKOFF_MAX * 0.5


class _LogoutKernel(_StopOnly):
    """STOP_CONN and SEND_PDU accepted; the opcodes sent, and the relogins, in ``calls``."""

    def __init__(self):
        self.calls = []

    async def stop_conn(self, *args):
        self.calls.append("stop_conn")

    async def send_pdu(self, handle, sid, cid, hdr, data):
        self.calls.append(("send_pdu", hdr[0] & 0x3F))


def _event_while_finishing(tmp_path, monkeypatch, event) -> tuple:
    """Session 3 recovering (no Time2Wait, its devices walked: replacement timeout 0), and
    ``event`` (a kernel event) given while the recovery sets the devices running; the
    recovery and any it starts over run out.  Returns (session, the netlink calls and
    relogins in order, the session's conn_state when the event came)."""
    d = _daemon(tmp_path)
    s = _session(3, {"node.session.timeo.replacement_timeout": "0",
                     "node.conn[0].timeo.logout_timeout": "1"})
    s.time2wait_once = 0
    d.sessions[3] = s
    d.nl = nl = _LogoutKernel()
    walking, state = [], []  # the walk's start, an Event made in the loop

    async def relogin(nl_, handle, session, challenges):
        nl.calls.append("relogin")
        session.time2wait_once = 0

    async def online_devices(session, sysfs, executor=None):
        walking[0].set()
        await asyncio.sleep(0.2)

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(ks, "online_devices", online_devices)

    async def main():
        walking.append(asyncio.Event())
        d._start_recovery(s, "first error")
        await asyncio.wait_for(walking[0].wait(), 5)
        state.append(s.conn_state)
        d._on_event(event)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if nl.calls.count("relogin") == 2 and s.recovery.done():
                break
        await d.close()

    asyncio.run(main())
    return s, nl.calls, state[0]


def test_an_error_while_a_recovery_finishes_starts_another(tmp_path, monkeypatch, caplog):
    """The new connection fails while the recovery still sets the devices running: the
    kernel reports that once, so the recovery starts over when it ends (before: ignored,
    the session left failed while the daemon showed LOGGED IN)."""
    with caplog.at_level(logging.WARNING):
        s, calls, state = _event_while_finishing(
            tmp_path, monkeypatch, ConnError(102, None, sid=3, cid=0, error=1020))
    assert state == "LOGGED IN" and calls.count("relogin") == 2
    assert s.conn_state == "LOGGED IN" and ("send_pdu", 0x06) not in calls
    assert "the connection failed again" in caplog.text


def test_a_targets_one_time_time2wait_is_waited_once(tmp_path, monkeypatch):
    """The Time2Wait an Async Message or a Logout Response asked for (time2wait_once) is
    the next recovery's only (RFC 7143 §11.9.1, §11.15.4): used, it is gone, and a later
    recovery waits the negotiated DefaultTime2Wait again."""
    d = _daemon(tmp_path)
    s = _session(3)
    s.time2wait_once = 0
    d.sessions[3] = s
    session_in_sysfs(tmp_path, 3, "FAILED")
    d.nl = _StopOnly()
    seen = []

    async def relogin(nl, handle, session, challenges):
        seen.append(session.time2wait_once)
    monkeypatch.setattr(ks, "relogin", relogin)

    async def main():
        d._start_recovery(s, "the connection failed")
        await asyncio.wait_for(asyncio.shield(s.recovery), 5)
        await d.close()
    asyncio.run(main())
    assert seen == [None] and s.time2wait_once is None


def _async_message(event, **fields):
    from iscsictl.protocol.pdu import AsyncMessage

    return AsyncMessage(async_event=event, **fields).encode_header()[0]


def test_a_session_the_kernel_destroys_during_a_logout_its_target_asked_for_is_forgotten(
        tmp_path, monkeypatch):
    """The target asks for a Logout (AsyncEvent 1): the recovery sends it, its session IN
    LOGOUT meanwhile, and the kernel destroys the session (its host removed, another
    netlink user).  That destruction was taken for a user's logout under way: the session
    stayed filed, relogged in for ever (each BIND_CONN refused) and its node's logins were
    refused with 15 while -m session showed none.  It is forgotten."""
    from iscsictl.netlink import DestroySession, RecvPdu

    d = _daemon(tmp_path)
    s = _session(3, {"node.conn[0].timeo.logout_timeout": "5"})
    s.time2wait_once = 0
    d.sessions[3] = s
    d.nl = _LogoutKernel()
    relogins = []

    async def relogin(nl, handle, session, challenges):
        relogins.append(session.sid)

    monkeypatch.setattr(ks, "relogin", relogin)

    async def main():
        d._on_event(RecvPdu(101, None, sid=3, cid=0, pdu=_async_message(1, parameter3=10)))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if s.pdu_waiter is not None:
                break
        assert s.conn_state == "IN LOGOUT" and ("send_pdu", 0x06) in d.nl.calls
        d._on_event(DestroySession(104, None, host_no=0, sid=3))
        await asyncio.wait([s.recovery], timeout=5)
        await d.close()

    asyncio.run(main())
    assert 3 not in d.sessions and relogins == [] and s.recovery.cancelled()


def test_a_recovering_session_gone_from_the_kernel_is_forgotten(tmp_path, monkeypatch,
                                                                caplog):
    """Its destruction's event lost (a netlink overrun while many sessions went at once: the
    resync looks only at sessions not recovering), each relogin refused: the recovery, at
    its first failed attempt, finds the session gone from sysfs and ends, the session
    forgotten (it was retried for ever, its node's logins refused with 15)."""
    logouts = []
    d, s = _failing_recovery(tmp_path, monkeypatch, "0", SessionError(
        9, "session 3: the kernel refused the relogin: EINVAL", retryable=True), logouts)
    session_in_sysfs(tmp_path, 4, "LOGGED_IN")  # another session, there
    (tmp_path / "class/iscsi_session/session3/state").unlink()
    (tmp_path / "class/iscsi_session/session3/targetname").unlink()
    (tmp_path / "class/iscsi_session/session3").rmdir()

    async def main():
        d._start_recovery(s, "test")
        await asyncio.wait([s.recovery], timeout=5)
        await d.close()

    with caplog.at_level(logging.INFO, logger="iscsictld"):
        asyncio.run(main())
    assert 3 not in d.sessions and s.attempts == 1 and logouts == []
    assert not s.recovery.cancelled()  # it ended itself, not by cancelling itself
    assert "session 3 is gone from the kernel; its recovery ends" in caplog.text


def test_a_logout_request_while_a_recovery_finishes_gets_its_logout(tmp_path, monkeypatch):
    """AsyncEvent 1 right after a relogin, its recovery still setting the devices running:
    the recovery started over with a plain relogin, and no Logout was sent (RFC 7143
    §11.9.1: the initiator MUST; iscsid's recovery is over by then and sends it).  It now
    starts with the Logout."""
    from iscsictl.netlink import RecvPdu

    _, calls, _ = _event_while_finishing(tmp_path, monkeypatch, RecvPdu(
        101, None, sid=3, cid=0, pdu=_async_message(1, parameter3=10)))
    first, second = (i for i, c in enumerate(calls) if c == "relogin")
    assert ("send_pdu", 0x06) in calls[first:second], calls


def test_an_async_message_before_the_session_is_filed_is_kept_for_it(tmp_path):
    """The kernel runs a new session a moment before the daemon files it: an Async Message
    in between (a Time2Wait, a logout request) was dropped as for an unknown session; it is
    kept, as a connection error is, and handled when the session is filed."""
    from iscsictl.netlink import RecvPdu

    d = _daemon(tmp_path)
    d._on_event(RecvPdu(101, None, sid=3, cid=0, pdu=_async_message(2, parameter2=30)))
    d._manage(s := _session(3))
    assert s.time2wait == 30


def test_a_targets_time2wait_is_at_most_an_hour(tmp_path):
    """AsyncEvent 2 with Parameter2 65535 had the next recovery wait 18 hours (iscsid's
    too); RFC 7143 §13.15 bounds Time2Wait to 3600 s."""
    from iscsictl.netlink import RecvPdu

    d = _daemon(tmp_path)
    d.sessions[3] = s = _session(3)
    d._on_event(RecvPdu(101, None, sid=3, cid=0, pdu=_async_message(2, parameter2=65535)))
    assert s.time2wait_once == 65535 and s.time2wait == 3600


def test_two_logouts_of_one_session_make_one(tmp_path, monkeypatch):
    """Two requests (two clients, or a client and the target's logout request) log the
    session out once; both get its result (before: two UNBINDs, two Logout PDUs, two
    teardowns, the ISID released twice)."""
    d = _daemon(tmp_path)
    s = _session(3)
    d.sessions[3] = s
    d.nl = _StopOnly()
    calls = []

    async def logout(nl, handle, session, timeout, root):
        calls.append(session.sid)
        await asyncio.sleep(0.1)

    monkeypatch.setattr(ks, "logout", logout)

    async def main():
        return await asyncio.gather(d.logout([3], force=True), d.logout([3], force=True))

    first, second = asyncio.run(main())
    assert calls == [3]
    assert first[0]["ok"] and second[0]["ok"] and 3 not in d.sessions


def test_a_logout_of_an_unmanaged_session_adopts_that_one_only(tmp_path):
    """A logout names a session another program made (iscsistart's boot session): only
    that one is adopted.  Before, every unmanaged session was, a login this daemon was
    making too (its CREATE_SESSION made it visible): adopted with no target, the error
    kept for it replayed on that stand-in, whose recovery stopped the new connection."""
    d = _daemon(tmp_path)
    session_in_sysfs(tmp_path, 7, "LOGGED_IN", "iqn.2003-01.org.example:boot")
    session_in_sysfs(tmp_path, 8, "FREE")  # a login of this daemon, under way
    d._on_event(ConnError(102, None, sid=8, cid=0, error=1020))  # kept for it
    d._adopt(only=7)
    assert sorted(d.sessions) == [7]
    assert 8 in d._unclaimed


def test_a_logout_of_a_session_this_daemon_is_logging_in_is_refused(tmp_path):
    """``-m session -u`` lists a session an iSER login here is still making (its endpoint
    bound): its logout is refused, "try again", 9 (iscsid's session_logout_task says an
    initial login's "in invalid state for logout", ISCSI_ERR_INTERNAL; before session 55:
    32, "target likely not connected", a reconnect's), and it is not adopted.  Before:
    adopted and torn down, the login's endpoint disconnected by the kernel, then again by
    the login's undo, by a handle the kernel may have given another session's endpoint
    meanwhile."""
    d = _daemon(tmp_path)
    session_in_sysfs(tmp_path, 8, "FREE")
    d._logging_in[8] = _iser_session(8)
    (result,) = asyncio.run(d.logout([8]))
    assert (result["ok"], result["code"]) == (False, 9) and result["message"].startswith(
        "session 8 in invalid state for logout (it is being logged in)")
    d._adopt()
    assert d.sessions == {}


def test_a_half_made_session_is_never_recovered(tmp_path, caplog):
    """Adopted with no target name (a login that did not finish): no recovery (it had
    died on "a Normal session needs a TargetName"), and the warning says how to remove
    it."""
    d = _daemon(tmp_path)
    s = _session(9)
    s.node = ks.NodeTarget("", "", 3260, 0, "default", "tcp", {})
    d.sessions[9] = s

    async def main():
        d._start_recovery(s, "failed while no daemon ran")
        assert s.recovery is None

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert "session 9 has no target name" in caplog.text and "-r 9 -u" in caplog.text


def test_a_scan_that_fails_after_a_login_is_a_warning(tmp_path, monkeypatch, caplog):
    """The session stands; iscsiadm only warns (before: the OSError escaped the login
    request, and a client logging in to several records got no answer)."""
    d = _daemon(tmp_path)
    d.nl = _StopOnly()
    node = ks.NodeTarget.from_record({"node.name": "iqn.2003-01.org.example:t",
                                      "node.conn[0].address": "127.0.0.1",
                                      "node.conn[0].port": "3260", "node.tpgt": "1"})

    async def establish(nl, handle, node, name, isid, issued, scan, caps=-1, destroying=None):
        return ks.KernelSession(sid=4, host_no=5, cid=0, node=node, isid=isid, tsih=1,
                                params=None, current=Portal("127.0.0.1", 3260, 1))

    async def scan_host(host_no, root, executor=None):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(ks, "establish", establish)
    monkeypatch.setattr(ks, "scan_host", scan_host)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(d._establish(node, "iqn.2005-03.org.open-iscsi:i")) == 4
    assert "session 4: the LUN scan failed" in caplog.text and 4 in d.sessions


def test_a_logout_the_target_asks_for_that_the_kernel_refuses_still_logs_in_again(
        tmp_path, monkeypatch, caplog):
    """The target's "logout requested": the Logout goes through the kernel first (its
    SEND_PDU refused here), then the session logs in again on a new connection, as
    iscsid's logout timer ends in __conn_error_handle; it is never logged out for good.
    (test_offload_iscsid holds the whole exchange against iscsid's.)"""
    from iscsictl.netlink import IscsiKernelError
    from iscsictl.protocol.pdu import AsyncMessage

    d = _daemon(tmp_path)
    s = _session(3, {"node.conn[0].timeo.logout_timeout": "1"})
    s.time2wait_once = 0
    d.sessions[3] = s
    calls = []

    class Refusing(_StopOnly):
        async def send_pdu(self, handle, sid, cid, hdr, data):
            calls.append(("send_pdu", hdr[0] & 0x3F))
            raise IscsiKernelError(5, "SEND_PDU")
    d.nl = Refusing()

    async def relogin(nl, handle, session, challenges):
        calls.append(("relogin", session.conn_state))

    async def logout(nl, handle, session, timeout, root):
        calls.append(("logout",))

    monkeypatch.setattr(ks, "relogin", relogin)
    monkeypatch.setattr(ks, "logout", logout)

    async def main():
        d._on_target_pdu(s, AsyncMessage(async_event=1, parameter3=5))  # logout requested
        assert s.conn_state == "IN LOGOUT"
        d._on_event(ConnError(0, None, 3, 0, 1011))  # its end, while logging out: no 2nd
        await s.recovery

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert calls == [("send_pdu", 0x06), ("relogin", "IN LOGIN")]
    assert d.sessions[3] is s and s.conn_state == "LOGGED IN"
    assert "Target requests logout within 5 seconds" in caplog.text
    assert "no clean Logout" in caplog.text and "logging in again" in caplog.text


def test_a_connection_error_during_a_logout_has_it_tear_down_at_once(tmp_path):
    """The daemon's event routing: a connection error while the session logs out starts no
    recovery and tells the logout (ks.logout ends its wait for the kernel's unbind and
    tears the session down: test_handover's
    test_a_connection_that_fails_while_the_kernel_removes_the_devices_is_torn_down).
    Before: dropped, the logout under way said to end it."""
    d = _daemon(tmp_path)
    s = _session(3)
    d.sessions[3] = s
    s.conn_state = "IN LOGOUT"
    d._on_event(ConnError(0, None, 3, 0, 1011))
    assert s.logout_conn_failed.is_set() and s.recovery is None


class _Blocking:
    """Async netlink requests recorded as made; those named in ``block`` wait on ``gate``
    first (as behind the netlink socket's lock), the lane jobs (the teardown) at once."""

    def __init__(self, block=()):
        self.calls, self.block, self.gate = [], set(block), asyncio.Event()

    def __getattr__(self, op):
        async def request(*args, **kwargs):
            if op in self.block:
                await self.gate.wait()
            self.calls.append(op)
            return {"ep_connect": 77, "ep_poll": 1}.get(op, 0)
        return request

    def run_blocking(self, fn, *args):
        self.calls.append(fn.__name__)
        job = asyncio.get_running_loop().create_future()
        job.set_result(True)
        return job


def _iser_session(sid=3):
    from iscsictl.db import schema
    from iscsictl.db.record import with_defaults

    s = _session(sid)
    s.node = ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "iface.transport_name": "iser"}))
    return s


def _cancelled_midway(coro, nl):
    """``coro`` run until it waits on ``nl``'s gate, cancelled there, the gate opened."""
    async def main():
        task = asyncio.ensure_future(coro)
        for _ in range(50):  # enough turns of the loop to reach the gate
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        await asyncio.sleep(0)
        nl.gate.set()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False
    return asyncio.run(main())


def test_a_logout_cancelled_during_its_ep_disconnect_still_tears_down(monkeypatch):
    """The daemon stops while a logout of an iSER session waits to disconnect its endpoint:
    the disconnect ends, and so does the teardown (before: cut short there, the endpoint's
    handle forgotten undisconnected and the session left unbound in the kernel)."""
    s = _iser_session()
    s.ep = 77
    s.unbound.set()

    async def no_logout_pdu(*args, **kwargs):
        return None
    monkeypatch.setattr(ks, "_relayed_logout", no_logout_pdu)
    nl = _Blocking(block={"ep_disconnect"})
    assert _cancelled_midway(ks.logout(nl, 1, s, 0.1, "/nonexistent"), nl)
    assert nl.calls == ["unbind_session", "ep_disconnect", "_tear_down"] and s.ep is None


def test_a_relogin_cancelled_before_its_bind_disconnects_its_endpoint():
    """A relogin cancelled (the daemon stops, a logout takes over) between its EP_CONNECT
    and its BIND_CONN: the endpoint, which no STOP_CONN would free (not bound), is
    disconnected (before: left in the kernel with its connection until reboot)."""
    s = _iser_session()
    nl = _Blocking(block={"bind_conn"})
    assert _cancelled_midway(ks.relogin(nl, 1, s), nl)
    assert nl.calls[:2] == ["ep_connect", "ep_poll"] and "ep_disconnect" in nl.calls
    assert s.ep is None


def test_a_stop_with_logout_all_logs_out_a_login_that_ends_meanwhile(tmp_path, monkeypatch):
    """``close(logout_all=True)`` while a login is under way: no session is left behind
    (before: the logouts ran first, and a login ending during them stayed in the kernel)."""
    d = _daemon(tmp_path)
    logged_out, gate = [], None

    async def establish(nl, handle, node, name, isid, issued, scan, caps=-1, destroying=None):
        await gate.wait()  # ends while the stop's logouts run
        return ks.KernelSession(sid=9, host_no=5, cid=0, node=node, isid=isid, tsih=1,
                                params=None, current=Portal("127.0.0.1", 3260, 1))

    async def logout(nl, handle, session, timeout, root):
        gate.set()
        await asyncio.sleep(0.05)
        logged_out.append(session.sid)

    monkeypatch.setattr(ks, "establish", establish)
    monkeypatch.setattr(ks, "logout", logout)

    async def main():
        nonlocal gate
        gate = asyncio.Event()
        d.nl = _StopOnly()
        d.sessions[3] = _session(3)
        d._spawn(d.login([{"node.name": "iqn.2003-01.org.example:u",
                           "node.conn[0].address": "127.0.0.1", "node.conn[0].port": "3260",
                           "node.session.scan": "manual"}], "iqn.2005-03.org.open-iscsi:i"))
        await asyncio.sleep(0.01)
        await d.close(logout_all=True)

    asyncio.run(main())
    assert d.sessions == {} and 3 in logged_out


@pytest.mark.parametrize("discovery_type,startup,at_boot,boot", [
    ("fw", "manual", False, True), ("static", "onboot", False, True),
    ("static", "automatic", True, True), ("static", "manual", False, False)])
def test_a_boot_disks_login_keeps_trying_as_long_as_iscsistarts(tmp_path, monkeypatch,
                                                                discovery_type, startup,
                                                                at_boot, boot):
    """The firmware's target (a boot disk: iscsictl-start -b, -m fw -l), an onboot record
    (iscsictl-start -i ...'s) or an automatic one logged in at the boot's daemon start is
    tried for initial_login_retry_max login timeouts (iscsistart's and iscsid's
    iscsi_retry_initial_login), however soon each try fails; any other record that many
    times.  Before: 30 tries of a port that refused at once were over within a minute,
    where iscsistart waits 7.5, and the boot failed while the array was still starting
    (iscsictl-start -i's once; the automatic logins', 8 tries in ~11 s where iscsid's
    take 2 minutes with Debian's iscsid.conf, until session 62)."""
    from iscsictl.daemon import service

    d = _daemon(tmp_path)
    d.nl = _StopOnly()
    tries = []

    async def establish(nl, handle, node, name, isid, issued, scan, caps=-1, destroying=None):
        tries.append(asyncio.get_running_loop().time())
        raise SessionError(8, "connection refused", retryable=True)
    monkeypatch.setattr(ks, "establish", establish)
    monkeypatch.setattr(service.random, "uniform", lambda a, b: 0.2)  # short pauses
    node = ks.NodeTarget.from_record({
        "node.name": "iqn.2003-01.org.example:boot", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1", "node.discovery_type": discovery_type,
        "node.startup": startup,
        "node.session.initial_login_retry_max": "2", "node.conn[0].timeo.login_timeout": "1"})
    with pytest.raises(SessionError):
        asyncio.run(d._establish(node, "iqn.2005-03.org.open-iscsi:i", at_boot))
    if boot:
        assert len(tries) > 2 and tries[-1] - tries[0] >= 1.5
    else:
        assert len(tries) == 2


def test_a_login_keeps_its_isid_through_its_retries(tmp_path, monkeypatch):
    """Every attempt of one login offers the same ISID, as iscsid's session keeps its own
    (before: one was taken afresh each time, so an iscsictl-start whose path came up at
    its fifth attempt used the ISIDs set apart for the next one's PID, and two paths to
    one portal group had one ISID: each login reinstated the other's session).  The ISID
    is free again once the login has failed for good."""
    from iscsictl.daemon import service

    d = Daemon(None, sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False,
               takeover=False, side_by_side=True)
    transport_in_sysfs(d.sysfs.root, "tcp", 1)
    d.nl = _StopOnly()
    offered = []

    async def establish(nl, handle, node, name, isid, issued, scan, caps=-1, destroying=None):
        offered.append(isid.qualifier)
        raise SessionError(8, "connection refused", retryable=True)
    monkeypatch.setattr(ks, "establish", establish)
    monkeypatch.setattr(service.random, "uniform", lambda a, b: 0.01)
    node = ks.NodeTarget.from_record({
        "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1",
        "node.session.initial_login_retry_max": "6"})
    with pytest.raises(SessionError):
        asyncio.run(d._establish(node, "iqn.2005-03.org.open-iscsi:i"))
    assert offered == [os.getpid() * service.ISIDS_PER_PROCESS] * 6
    assert len(d.isids) == 0


def test_automatic_logins_are_made_at_a_boots_first_start_only(tmp_path, monkeypatch):
    """node.startup = automatic (or node.conn[0].startup, as iscsiadm's match_startup_mode)
    logs in at the boot's first start; a restart in the same boot logs in nothing, as
    iscsid (its service logs them in once at boot), so that a target logged out for
    maintenance stays out.  Before, every start (a restart, an upgrade, a crash's
    Restart=) logged them in again, and conn[0]'s automatic was not looked at."""
    from iscsictl.daemon import service
    from iscsictl.db.store import NodeDB

    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(service, "BOOT_ID", str(boot))
    (tmp_path / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.test:auto\n")
    db = NodeDB(str(tmp_path), str(tmp_path))
    for name, key in (("a", "node.startup"), ("b", "node.conn[0].startup"), ("c", None)):
        db.create_node(f"iqn.2026-11.test:{name}", "192.0.2.1", 3260, 1,
                       values={key: "automatic"} if key else None)
    logins = []

    def daemon():
        d = _daemon(tmp_path)

        async def login(records, name, progress=None, multiple=False, at_boot=False):
            assert at_boot  # tried as iscsid tries a first login: a target still starting
            logins.append(sorted(r["node.name"] for r in records))
            return [{"ok": True} for _ in records]
        d.login = login
        return d

    first = daemon()
    assert first._autostart_due()
    asyncio.run(first._autostart())
    assert logins == [["iqn.2026-11.test:a", "iqn.2026-11.test:b"]]
    assert not daemon()._autostart_due()  # a restart: nothing logged in again
    boot.write_text("boot-2\n")
    assert daemon()._autostart_due()  # the next boot's first start


def test_automatic_leading_logins_make_one_session_a_portal(tmp_path, monkeypatch):
    """node.leading_login = Yes among the automatic records, as iscsiadm's login_by_startup:
    iface by iface, only the portals without a session yet are logged in, so a portal
    reached through two ifaces gets one session (before: one through each, two disks for
    one LUN); the first iface whose login fails leaves the portal to the next."""
    from iscsictl.daemon import service
    from iscsictl.db.store import NodeDB

    monkeypatch.setattr(service, "BOOT_ID", str(tmp_path / "none"))
    (tmp_path / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.test:auto\n")
    db = NodeDB(str(tmp_path), str(tmp_path))
    target = "iqn.2026-11.test:lead"
    for ifn in ("eth-a", "eth-b"):
        db.create_iface(ifn)
        db.create_node(target, "192.0.2.1", 3260, 1, ifn, values={
            "node.startup": "automatic", "node.leading_login": "Yes"})
    d = _daemon(tmp_path)
    batches = []

    async def login(records, name, progress=None, multiple=False, at_boot=False):
        assert at_boot
        batches.append([r["iface.iscsi_ifacename"] for r in records])
        if len(batches) == 1:  # through eth-a: refused
            return [{"ok": False, "code": 8} for _ in records]
        d.sessions[5] = _session(5)  # through eth-b: the portal's session
        d.sessions[5].node = ks.NodeTarget(target, "192.0.2.1", 3260, 1, "eth-b", "tcp", {})
        return [{"ok": True} for _ in records]
    d.login = login
    asyncio.run(d._autostart())
    assert batches == [["eth-a"], ["eth-b"]]
    batches.clear()
    asyncio.run(d._autostart())  # the portal has its session: no login through either
    assert batches == []


def test_a_record_asking_for_no_session_gets_none_from_the_daemon(tmp_path):
    """node.session.nr_sessions = 0 in a login request (the automatic logins', -L's from
    an older CLI): 15, "0 sessions requested", no login made (one was)."""
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE

    d = _daemon(tmp_path)

    async def establish(node, initiator_name, at_boot=False):
        raise AssertionError("a login was made")
    d._establish = establish
    rec = with_defaults(NODE, {"node.name": "iqn.2003-01.org.example:t",
                               "node.conn[0].address": "192.0.2.1", "node.tpgt": "1",
                               "node.session.nr_sessions": "0"})
    result = asyncio.run(d._login_one(rec, "iqn.2026-11.test:i"))
    assert (result["ok"], result["code"]) == (False, 15)
    assert "0 sessions requested, but 0 already present." in result["message"]


@pytest.mark.parametrize("state, awaited", [("LOGGED IN", False), ("TRANSPORT WAIT", False),
                                            ("IN LOGIN", False), ("IN LOGIN", True),
                                            ("IN LOGOUT", True)])
def test_a_host_going_away_ends_the_session_whatever_it_is_doing(tmp_path, state, awaited):
    """ISCSI_ERR_INVALID_HOST (the HBA's driver unloaded: libiscsi iscsi_host_remove waits
    until its sessions are gone): the session is logged out in every state, as iscsid's
    session_conn_error shuts it down.  While a relogin awaited its Login Response, or the
    Logout a target asked for its answer, it was dropped, and rmmod hung."""
    d = _daemon(tmp_path)
    s = _session(3)
    d.sessions[3] = s
    logouts = []

    async def logout_for_kernel(sid):
        logouts.append(sid)

    d._logout_for_kernel = logout_for_kernel

    async def main():
        s.conn_state = state
        if awaited:
            s.pdu_waiter = asyncio.get_running_loop().create_future()
        d._on_event(ConnError(102, None, sid=3, cid=0, error=1018))
        await asyncio.sleep(0.01)
        if awaited:  # the waiter learns the connection failed too
            assert isinstance(s.pdu_waiter.exception(), SessionError)

    asyncio.run(main())
    assert logouts == [3]


def test_relogins_to_a_portal_that_does_not_answer_hold_no_other_portals_recovery(
        tmp_path, monkeypatch):
    """More sessions down on a dead portal than a portal's login slots, each relogin held
    there until its connect times out: a session of another portal recovers meanwhile.
    With the daemon's one bound for every portal it waited for their timeouts (250 of them
    kept it past the replacement timeout, its I/O failed)."""
    from iscsictl.daemon import service

    d = _daemon(tmp_path)
    d.nl = _StopOnly()
    dead = [_session(sid) for sid in range(1, service.MAX_PARALLEL_LOGINS + 9)]
    healthy = _session(100, address="127.0.0.2")
    for s in [*dead, healthy]:
        s.time2wait_once = 0
        d.sessions[s.sid] = s
    connects_end = asyncio.Event()
    relogins = []

    async def relogin(nl, handle, session, challenges):
        relogins.append(session.sid)
        if session is healthy:
            connects_end.set()  # the dead portal's connects "time out" once it is back
            return
        await connects_end.wait()
        raise SessionError(8, "cannot make connection: timed out", retryable=True)

    monkeypatch.setattr(ks, "relogin", relogin)

    async def main():
        for s in dead:
            d._start_recovery(s, "test")
        await asyncio.sleep(0.05)  # every slot of the dead portal taken
        d._start_recovery(healthy, "test")
        await asyncio.wait_for(healthy.recovery, 10)
        assert healthy.conn_state == "LOGGED IN"
        await asyncio.wait_for(d.close(), 10)

    asyncio.run(main())
    assert relogins.index(100) == service.MAX_PARALLEL_LOGINS  # after the slots' holders


def test_a_flood_of_reported_luns_changed_is_one_scan_and_one_more(tmp_path, monkeypatch):
    """Each "reported LUNs changed" AEN asks for a scan of the session's host (iscsid's
    session_scan_host); those that come while one runs are one more scan after it, not a
    task each (a target's flood of AENs started half a million scans)."""
    from iscsictl.protocol.pdu import AsyncMessage

    ua = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3F, 0x0E, 0, 0, 0, 0])
    aen = AsyncMessage(async_event=0, data=len(ua).to_bytes(2, "big") + ua)
    d = _daemon(tmp_path)
    s = _session(3)
    d.sessions[3] = s
    scans: list[int] = []
    gate: list[asyncio.Event] = []

    async def scan_host(host_no, root, executor=None):
        scans.append(host_no)
        gate.append(asyncio.Event())
        await gate[-1].wait()

    monkeypatch.setattr(ks, "scan_host", scan_host)

    async def main():
        for _ in range(1000):
            d._on_target_pdu(s, aen)
        await asyncio.sleep(0)
        assert scans == [0] and len(d._tasks) <= 1
        gate[0].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert scans == [0, 0]  # the AENs that came during the first: one more scan
        gate[1].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert scans == [0, 0] and d._rescans == {}
        d._on_target_pdu(s, aen)  # a later one: a scan of its own
        await asyncio.sleep(0)
        assert scans == [0, 0, 0]
        gate[2].set()
        await asyncio.sleep(0)

    asyncio.run(main())


def test_an_aens_rescan_sets_the_queue_depth_and_stops_with_its_session(tmp_path, monkeypatch):
    """After an AEN's scan, an offload session's devices get node.session.queue_depth, as
    after its login's scan (iscsid's session_scan_host then iscsi_sysfs_set_queue_depth);
    a scan asked for during another is not made once the session is gone (its host
    number may be the next session's)."""
    from iscsictl.protocol.pdu import AsyncMessage

    ua = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3F, 0x0E, 0, 0, 0, 0])
    aen = AsyncMessage(async_event=0, data=len(ua).to_bytes(2, "big") + ua)
    d = _daemon(tmp_path)
    s = _session(3, {"node.session.queue_depth": "32"})
    s.node = ks.NodeTarget(s.node.target, s.node.address, 3260, 1, "default", "bnx2i",
                           dict(s.node.record))
    d.sessions[3] = s
    done: list = []
    gate = asyncio.Event()

    async def scan_host(host_no, root, executor=None):
        done.append(("scan", host_no))
        await gate.wait()

    monkeypatch.setattr(ks, "scan_host", scan_host)
    monkeypatch.setattr(ks, "set_queue_depth", lambda sysfs, sid, depth: done.append(
        ("depth", sid, depth)))

    async def main():
        d._on_target_pdu(s, aen)
        await asyncio.sleep(0)
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert done == [("scan", 0), ("depth", 3, 32)] and d._rescans == {}
        gate.clear()
        done.clear()
        d._on_target_pdu(s, aen)
        await asyncio.sleep(0)
        d._on_target_pdu(s, aen)  # one more asked for, then the session goes
        del d.sessions[3]
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert done == [("scan", 0), ("depth", 3, 32)] and d._rescans == {}

    asyncio.run(main())


@pytest.mark.parametrize("first, second", [("127.0.0.1", "localhost"),
                                           ("localhost", "127.0.0.1")])
def test_a_host_name_and_its_address_are_one_node_for_the_duplicate_check(
        tmp_path, first, second):
    """Records of one target naming its portal by host name and by address: a login of
    the second, in the same request or after, is "1 session requested, but 1 already
    present." (15), as iscsid's session_is_running (iscsi_addr_match resolves the name);
    each got a session of its own: two paths to the same LUNs without multipath."""
    d = _daemon(tmp_path)
    sids = iter(range(1, 100))

    async def establish(node, initiator_name, at_boot=False):
        await asyncio.sleep(0.05)  # the login's exchange: the two overlap
        sid = next(sids)
        d.sessions[sid] = ks.KernelSession(
            sid=sid, host_no=sid, cid=0, node=node, isid=None, tsih=1, params=None,
            current=Portal(node.address, node.port, 1), peer_address="127.0.0.1")
        return sid
    d._establish = establish

    def rec(address):
        return {"node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": address,
                "node.conn[0].port": "3260", "node.tpgt": "1"}

    async def main():
        together = await d.login([rec(first), rec(second)], "iqn.2026-11.x:i")
        (refused,) = [r for r in together if not r["ok"]]  # whichever came second
        assert refused["code"] == 15
        assert "1 session requested, but 1 already present." in refused["message"]
        assert list(d.sessions) == [1]
        for address in (first, second):  # one after the other: the same
            (again,) = await d.login([rec(address)], "iqn.2026-11.x:i")
            assert again["code"] == 15
        assert list(d.sessions) == [1]

    asyncio.run(main())


def test_the_node_locks_of_logins_done_are_not_kept(tmp_path):
    """The per-node lock of a login is dropped once no login holds or waits for it: one
    was kept for each node ever logged in to, for the daemon's life (a cloud host logs in
    to each volume's own target)."""
    d = _daemon(tmp_path)
    seen = []

    async def establish(node, initiator_name, at_boot=False):
        seen.append(len(d._node_locks))
        await asyncio.sleep(0.01)
        raise SessionError(8, "connection refused", retryable=True)
    d._establish = establish

    async def main():
        for n in range(3):
            await d.login([{"node.name": f"iqn.2003-01.org.example:t{n}.{m}",
                            "node.conn[0].address": "192.0.2.1", "node.conn[0].port": "3260",
                            "node.tpgt": "1"} for m in range(4)], "iqn.2026-11.x:i")
    asyncio.run(main())
    assert seen[:4] == [1, 2, 3, 4] and max(seen) == 4  # held while they log in
    assert len(d._node_locks) == 0


@pytest.mark.parametrize("event_came", [True, False])
def test_a_logout_whose_destroy_event_came_leaves_no_sid_waiting_for_it(
        tmp_path, monkeypatch, event_came):
    """A logout notes its sid as one whose destroy event is still due only when that event
    has not come (ks.logout's teardown without it); every user's logout was noted, the
    set trimmed only at 1,024.  Either way its ISID is free again."""
    d = _daemon(tmp_path)
    d.sessions[3] = s = _session(3)
    s.isid = d.isids.allocate()
    released = []
    release = d.isids.release
    d.isids.release = lambda isid: (released.append(isid), release(isid))
    d.nl = _StopOnly()

    async def logout(nl, handle, session, timeout, root):
        if event_came:
            session.destroyed.set()  # the daemon's event routing, during the logout
    monkeypatch.setattr(ks, "logout", logout)
    (result,) = asyncio.run(d.logout([3]))
    assert result["ok"] and 3 not in d.sessions
    assert (3 in d._logged_out) is not event_came
    assert released == [s.isid]


def test_keyed_holds_serialise_a_key_and_drop_it_when_unused():
    """KeyedHolds: one holder of a key at a time (a lock), others' keys free meanwhile;
    a key no one holds or waits for (a waiter cancelled too) is not kept."""
    from iscsictl.daemon.service import KeyedHolds

    holds, order = KeyedHolds(asyncio.Lock), []

    async def hold(key, what, wait=0.02):
        async with holds.hold(key):
            order.append(f"{what}+")
            await asyncio.sleep(wait)
            order.append(f"{what}-")

    async def main():
        await asyncio.gather(hold("a", "a1"), hold("a", "a2"), hold("b", "b1", 0.01))
        assert len(holds) == 0
        first = asyncio.ensure_future(hold("c", "c1", 10))
        waiter = asyncio.ensure_future(hold("c", "c2"))
        await asyncio.sleep(0.01)
        assert len(holds) == 1
        waiter.cancel()
        first.cancel()
        await asyncio.gather(first, waiter, return_exceptions=True)
        assert len(holds) == 0
    asyncio.run(main())
    assert order[:2] == ["a1+", "b1+"] and order.index("a1-") < order.index("a2+")


def test_a_host_names_addresses_are_looked_up_once_and_a_slow_lookup_is_said(
        tmp_path, monkeypatch, caplog):
    """The duplicate check's lookups: one for every login of a request at one host name
    (it was one each, 1,000 at once on the executor the netlink sends use), and a lookup
    that takes too long leaves the check to the record's own name, said in the log."""
    from iscsictl.daemon import service
    d = _daemon(tmp_path)
    calls = []
    slow = {"slow.example": 1.0}

    async def getaddrinfo(self, host, port, **kw):
        calls.append(host)
        await asyncio.sleep(slow.get(host, 0.01))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(service, "RESOLVE_TIMEOUT", 0.1)

    def node(address, n=0):
        return ks.NodeTarget(f"iqn.2003-01.org.example:t{n}", address, 3260, 1, "default",
                             "tcp", {})

    async def main():
        keys = await asyncio.gather(*(d._address_keys(node("db.example", n))
                                      for n in range(200)))
        assert calls == ["db.example"]
        assert ("iqn.2003-01.org.example:t7", "127.0.0.1", 3260, "default") in keys[7]
        await d._address_keys(node("db.example"))  # kept: no lookup
        assert calls == ["db.example"]
        with caplog.at_level(logging.WARNING):
            assert await d._address_keys(node("slow.example")) == [node("slow.example").key]
        assert "slow.example does not resolve (no answer in 0.1 s)" in caplog.text

    asyncio.run(main())


def test_a_transport_loaded_again_is_used_with_its_new_handle(tmp_path, monkeypatch):
    """The transport handle is read from sysfs at each use, as iscsid's read_transports:
    after ``rmmod bnx2i; modprobe bnx2i`` the kernel knows only the new handle (before:
    the first one was kept for the daemon's life, and every login failed with EINVAL
    until a restart); a transport gone and not loadable is 12."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-modprobe"))
    d = _daemon(tmp_path)
    transport_in_sysfs(tmp_path, "bnx2i", 18446744072107250000)
    assert asyncio.run(d.handle("bnx2i")) == 18446744072107250000
    transport_in_sysfs(tmp_path, "bnx2i", 18446744072107260000)  # unloaded, loaded again
    assert asyncio.run(d.handle("bnx2i")) == 18446744072107260000
    for name in ("handle", "caps"):
        (tmp_path / "class/iscsi_transport/bnx2i" / name).unlink()
    (tmp_path / "class/iscsi_transport/bnx2i").rmdir()  # unloaded
    with pytest.raises(SessionError) as e:
        asyncio.run(d.handle("bnx2i"))
    assert e.value.code == 12 and "iSCSI driver bnx2i is not loaded" in str(e.value)


def test_a_failed_connection_is_shown_in_iscsids_words(tmp_path):
    """A session whose connection stopped with nothing recovering it yet (adopted FAILED
    by iscsictl-start, or after the kernel refused its DESTROY_SESSION) shows iscsid's
    CLEANUP WAIT, not FAILED, which iscsiadm's print_iscsi_state never prints."""
    d = _daemon(tmp_path)
    s = _session()
    s.conn_state = "FAILED"
    d.sessions[s.sid] = s
    assert d.session_states()[str(s.sid)]["conn_state"] == "CLEANUP WAIT"
    s.conn_state = "LOGGED IN"
    assert d.session_states()[str(s.sid)]["conn_state"] == "LOGGED IN"


def test_a_login_result_names_its_portal_as_the_cli_json_does(tmp_path):
    """The daemon's login and logout results give the portal as ``-m node --json`` does,
    ``[fd00::1]:3260`` (it was ``fd00::1,3260``)."""
    d = _daemon(tmp_path)
    s = _session(address="fd00::1")
    d.sessions[s.sid] = s
    rec = {"node.name": s.node.target, "node.conn[0].address": "fd00::1",
           "node.conn[0].port": "3260", "node.tpgt": "1"}
    result, = asyncio.run(d.login([rec], "iqn.2026-11.org.example:i"))
    assert (result["code"], result["portal"]) == (15, "[fd00::1]:3260"), result


def test_a_logout_item_that_fails_by_a_bug_keeps_its_sid(tmp_path, caplog):
    """One session's logout raising (a bug; a mount point not in UTF-8 did, in the safe
    logout's check) is that session's failure, 9, named by its sid: the client checks
    every outcome has one (before: the whole answer was refused, exit 18, and the sessions
    logged out were never said)."""
    from iscsictl.ipc import RESULT_CHECKS

    d = _daemon(tmp_path)

    async def logout_one(sid, safe):
        if sid == 2:
            raise RuntimeError("a bug")
        return {"sid": sid, "ok": True}
    d._logout_one = logout_one
    with caplog.at_level(logging.ERROR, logger="iscsictld"):
        out = asyncio.run(d.logout([1, 2, 3]))
    assert out == [{"sid": 1, "ok": True}, {"sid": 2, "ok": False, "code": 9,
                    "message": "internal error: RuntimeError('a bug')"}, {"sid": 3, "ok": True}]
    RESULT_CHECKS["logout"](out)
    assert "internal error in one item of a request" in caplog.text
