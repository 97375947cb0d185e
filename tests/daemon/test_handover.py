"""The kernel's side of a login as one job on the netlink lane (kernel_session._hand_over),
through a real blocking IscsiNetlink and a fake kernel that answers each message of a
datagram in turn: the order of the requests and how they travel (CREATE_SESSION alone, the
rest in one datagram), a failure after CREATE_SESSION reported with the sid to tear down,
and a cancelled login that still waits for the job it started; and establish's session,
created while the login is on the wire: used, destroyed (synchronously) when the login
fails, made again for a login that ends at another CmdSN."""

import asyncio
import concurrent.futures
import errno
import logging
import socket
import time

import pytest

from fake_kernel import RecordingKernel, echo, if_error, transport_in_sysfs
from iscsictl.daemon import kernel_session as ks
from iscsictl.netlink import IscsiHostParam, IscsiKernelError, IscsiNetlink, IscsiParam
from iscsictl.netlink.enums import IscsiUeventE as E

PARAMS = [(IscsiParam.MAX_RECV_DLENGTH, "262144"), (IscsiParam.ISID, "00023d000001"),
          (IscsiParam.EXP_STATSN, "7")]


class Kernel(RecordingKernel):
    """Answers like iscsi_tcp on 6.1: CREATE_SESSION -> sid 5 on host 9, CREATE_CONN -> the
    cid asked (or ``cid``), SET_PARAM of a parameter in ``refuse`` (default: ISID -> ENOSYS);
    ``fail`` and ``silent`` as in RecordingKernel, which records every request (decoded)
    and how many datagrams carried them."""

    def __init__(self, fail=None, cid=None, refuse=None, silent=()):
        super().__init__(fail, silent)
        self.cid = cid
        self.refuse = {IscsiParam.ISID: errno.ENOSYS} if refuse is None else refuse

    def answer(self, msg, raw):
        t = msg["type"]
        if t == E.CREATE_SESSION:
            return [echo(raw, r_sid=5, r_host_no=9)]
        if t == E.CREATE_CONN:
            return [echo(raw, r_sid=msg["sid"], r_cid=msg["cid"] if self.cid is None else self.cid)]
        if t == E.SET_PARAM and msg["param"] in self.refuse:
            return [if_error(raw, self.refuse[msg["param"]])]
        return [echo(raw, r_retcode=0)]


def hand_over(kernel, host=(), scan=None):
    knl = IscsiNetlink(kernel.transport, timeout=1)
    try:
        return ks._hand_over(knl, 3, 17, 128, 32, 42, PARAMS, host, None, scan)
    finally:
        knl.close()


def test_a_bound_iface_names_the_host_device_before_start(caplog):
    """iscsid's iscsi_host_set_params: the iface's net_ifacename and hwaddress go to the new
    session's host (SET_HOST_PARAM, before START_CONN, in the same datagram); what the host
    refuses is only logged (it names the device for listings)."""
    record = {"iface.net_ifacename": "eth1", "iface.hwaddress": "52:54:00:aa:bb:02",
              "iface.ipaddress": "<empty>"}
    host = ks.host_params(record)
    assert host == [(IscsiHostParam.NETDEV_NAME, "eth1"),
                    (IscsiHostParam.HWADDRESS, "52:54:00:aa:bb:02")]
    assert ks.host_params({"iface.net_ifacename": "<empty>", "iface.hwaddress": ""}) == []
    kernel = Kernel(fail={E.SET_HOST_PARAM: errno.ENOSYS})
    ids, cid, held, _ = hand_over(kernel, host)
    assert [r["type"] for r in kernel.requests] == [
        E.CREATE_SESSION, E.CREATE_CONN, E.BIND_CONN, *[E.SET_PARAM] * 3,
        E.SET_HOST_PARAM, E.SET_HOST_PARAM, E.START_CONN]
    assert kernel.datagrams == 2
    assert [(r["host_no"], r["param"], r["payload"]) for r in kernel.requests[6:8]] == [
        (9, IscsiHostParam.NETDEV_NAME, b"eth1\0"),
        (9, IscsiHostParam.HWADDRESS, b"52:54:00:aa:bb:02\0")]
    assert held == {IscsiParam.MAX_RECV_DLENGTH: "262144", IscsiParam.ISID: None,
                    IscsiParam.EXP_STATSN: "7"}
    assert "host9 refused NETDEV_NAME" in caplog.text


def test_hand_over_sequence_and_held_params():
    kernel = Kernel()
    ids, cid, held, _ = hand_over(kernel)
    assert (ids.sid, ids.host_no, cid) == (5, 9, 0)
    assert [r["type"] for r in kernel.requests] == [
        E.CREATE_SESSION, E.CREATE_CONN, E.BIND_CONN, *[E.SET_PARAM] * 3, E.START_CONN]
    assert kernel.datagrams == 2  # CREATE_SESSION, then the connection's requests together
    create, conn, bind = kernel.requests[:3]
    assert (create["transport_handle"], create["initial_cmdsn"], create["cmds_max"],
            create["queue_depth"]) == (3, 17, 128, 32)  # the login's CmdSN
    assert (conn["sid"], conn["cid"]) == (5, 0)
    assert (bind["sid"], bind["cid"], bind["transport_eph"], bind["is_leading"]) == (5, 0, 42, 1)
    assert [(r["param"], r["payload"]) for r in kernel.requests[3:6]] == [
        (p, v.encode() + b"\0") for p, v in PARAMS]
    assert held == {IscsiParam.MAX_RECV_DLENGTH: "262144", IscsiParam.ISID: None,
                    IscsiParam.EXP_STATSN: "7"}  # ISID is optional: ENOSYS tolerated


@pytest.mark.parametrize("fail", [E.CREATE_CONN, E.BIND_CONN, E.START_CONN])
def test_failure_after_create_session_names_the_sid(fail):
    with pytest.raises(ks.HandoverFailed) as e:
        hand_over(Kernel({fail: errno.EINVAL}))
    assert e.value.sid == 5 and isinstance(e.value.cause, IscsiKernelError)
    assert e.value.cause.errno == errno.EINVAL and e.value.cause.op == E(fail).name


def test_first_refusal_in_the_kernels_order_is_the_cause():
    """A failed CREATE_CONN makes the rest of the datagram fail too; the cause reported is
    CREATE_CONN's, not a later ENOENT."""
    kernel = Kernel({E.CREATE_CONN: errno.ENOMEM, E.BIND_CONN: errno.ENOENT})
    with pytest.raises(ks.HandoverFailed) as e:
        hand_over(kernel)
    assert (e.value.cause.op, e.value.cause.errno) == ("CREATE_CONN", errno.ENOMEM)


def test_a_connection_other_than_the_one_asked_is_a_failure():
    with pytest.raises(ks.HandoverFailed) as e:
        hand_over(Kernel(cid=1))
    assert e.value.sid == 5 and e.value.cause.errno == errno.EPROTO


def test_required_param_refused_is_a_failure_with_the_sid():
    kernel = Kernel(refuse={IscsiParam.ISID: errno.ENOSYS, IscsiParam.MAX_RECV_DLENGTH: errno.EINVAL})
    with pytest.raises(ks.HandoverFailed) as e:
        hand_over(kernel)
    assert e.value.sid == 5
    assert (e.value.cause.op, e.value.cause.errno) == ("SET_PARAM MAX_RECV_DLENGTH=262144",
                                                        errno.EINVAL)


def test_an_optional_parameter_refused_enosys_or_einval_is_held_as_none():
    """A transport without an OPTIONAL parameter answers ENOSYS, or EINVAL (iscsi_tcp on
    6.1 for ISID, IFMARKER_EN): held as None (not sent again), and the login goes on; a
    required one refused so fails it, named."""
    from iscsictl.netlink import IscsiKernelError, IscsiParam as P

    def refused(err):
        return IscsiKernelError(err, "SET_PARAM", "iferror")
    held = ks._held([(P.ISID, "400001370000"), (P.IFMARKER_EN, "0"), (P.TARGET_NAME, "iqn.x:t")],
                    [refused(errno.EINVAL), refused(errno.ENOSYS), None])
    assert held == {P.ISID: None, P.IFMARKER_EN: None, P.TARGET_NAME: "iqn.x:t"}
    with pytest.raises(IscsiKernelError, match="SET_PARAM MAX_R2T=3"):
        ks._held([(P.MAX_R2T, "3")], [refused(errno.EINVAL)])


def test_a_refused_secret_is_named_without_its_value():
    kernel = Kernel(refuse={IscsiParam.PASSWORD: errno.EINVAL})
    knl = IscsiNetlink(kernel.transport, timeout=1)
    try:
        with pytest.raises(ks.HandoverFailed) as e:
            ks._hand_over(knl, 3, 17, 128, 32, 42, [(IscsiParam.PASSWORD, "s3cr3t-pass")])
    finally:
        knl.close()
    assert "SET_PARAM PASSWORD=********" in str(e.value) and "s3cr3t" not in str(e.value)


def test_create_session_failure_has_nothing_to_tear_down():
    kernel = Kernel({E.CREATE_SESSION: errno.ENOMEM})
    with pytest.raises(IscsiKernelError):
        hand_over(kernel)
    assert [r["type"] for r in kernel.requests] == [E.CREATE_SESSION]


class Scans:
    """A scan starter: records each host it is asked to scan and the last request the kernel
    had answered then; ``fail``: it cannot start (a pool shut down)."""

    def __init__(self, kernel, fail=False):
        self.kernel, self.fail, self.started = kernel, fail, []

    def __call__(self, host_no):
        if self.fail:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self.started.append((host_no, self.kernel.requests[-1]["type"]))
        job = concurrent.futures.Future()
        job.set_result(None)
        return job


def test_the_lun_scan_starts_on_the_lane_once_the_session_runs():
    kernel = Kernel()
    scans = Scans(kernel)
    *_, scanning = hand_over(kernel, scan=scans)
    assert scans.started == [(9, E.START_CONN)] and scanning.done()
    assert hand_over(Kernel(), scan=Scans(kernel, fail=True))[3] is None  # the caller scans
    refused = Kernel({E.START_CONN: errno.EIO})
    scans = Scans(refused)
    with pytest.raises(ks.HandoverFailed):
        hand_over(refused, scan=scans)
    assert scans.started == []  # no scan of a session that does not run


def test_cancelled_login_waits_for_its_kernel_job():
    """A login cancelled while its job runs on the lane learns the job's outcome (to undo
    it) before it ends: nothing the kernel made is forgotten."""
    async def main():
        loop = asyncio.get_running_loop()
        job = loop.create_future()
        waiter = asyncio.ensure_future(ks._to_the_end(job))
        await asyncio.sleep(0)
        waiter.cancel()  # e.g. the daemon stops
        await asyncio.sleep(0.01)
        assert not waiter.done()  # still waiting for the job
        job.set_result("session 5")
        done, cancelled = await waiter
        return done.result(), cancelled

    assert asyncio.run(main()) == ("session 5", True)


# ---- establish: the session is created while the login is on the wire ----------------------
class LaneNetlink:
    """The daemon's AsyncIscsiNetlink over the fake kernel: run_blocking runs the job in a
    thread with a blocking IscsiNetlink; the other requests are that client's, awaited."""

    def __init__(self, kernel, timeout=1):
        self.knl = IscsiNetlink(kernel.transport, timeout=timeout)

    def run_blocking(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(None, fn, self.knl, *args)

    def __getattr__(self, op):
        async def request(*args, **kw):
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: getattr(self.knl, op)(*args, **kw))
        return request


def establish(kernel, monkeypatch, outcome="ok", cmdsn=ks.INITIAL_CMDSN, scan=None, nl=None):
    """ks.establish with a stand-in login: it connects (``connected()``), then succeeds
    with ``cmdsn`` or fails with an authentication error; the kernel requests made."""
    from iscsictl.daemon.errors import SessionError
    from iscsictl.db import schema
    from iscsictl.db.record import with_defaults
    from iscsictl.protocol.login import LoginSuccess
    from iscsictl.protocol.names import ISID
    from iscsictl.protocol.negotiation import NegotiatedParameters
    from iscsictl.protocol.portal import Portal

    node = ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1"}))
    ours, theirs = socket.socketpair()
    theirs.close()

    async def login(node, initiator_name, isid, issued, connected=None, moved=None):
        connected()
        await asyncio.sleep(0.05)  # the Login exchange: CREATE_SESSION meanwhile
        assert [r["type"] for r in kernel.requests] == [E.CREATE_SESSION]
        if outcome == "moved":  # permanently, then on again: the first is where it lives
            moved(Portal("192.0.2.7", 3260, 1))
        if outcome not in ("ok", "moved"):
            raise SessionError(24, "authentication failed")
        return ours, LoginSuccess(NegotiatedParameters(), b"\0" * 6, 7, 0, cmdsn, 3, 4, cmdsn,
                                  cmdsn + 31, {}), Portal("127.0.0.1", 3260, 1)

    monkeypatch.setattr(ks, "userspace_login", login)
    nl = nl or LaneNetlink(kernel)
    try:
        async def run():
            session = await ks.establish(nl, 3, node, "iqn.2026-11.org.example:i",
                                         ISID.en(7, 1), scan=scan)
            if session.scanning is not None:
                await session.scanning
            return session
        return asyncio.run(run())
    finally:
        nl.knl.close()


def test_session_created_during_the_login_is_used(monkeypatch):
    kernel = Kernel()
    session = establish(kernel, monkeypatch, scan=(scans := Scans(kernel)))
    assert (session.sid, session.host_no) == (5, 9)
    assert scans.started == [(9, E.START_CONN)] and session.scanning.done()
    assert establish(Kernel(), monkeypatch).scanning is None
    types = [r["type"] for r in kernel.requests]
    assert types[0] == E.CREATE_SESSION and types.count(E.CREATE_SESSION) == 1
    assert kernel.requests[0]["initial_cmdsn"] == ks.INITIAL_CMDSN
    assert types[1:3] == [E.CREATE_CONN, E.BIND_CONN] and types[-1] == E.START_CONN


def test_a_permanent_redirect_during_the_login_is_where_the_session_relogs_in(monkeypatch):
    """The portal a permanent redirect named (userspace_login's ``moved``) is the session's
    failback, where its relogins go (iscsid's failback_saddr); without one, None."""
    from iscsictl.protocol.portal import Portal

    assert establish(Kernel(), monkeypatch, outcome="moved").failback == Portal(
        "192.0.2.7", 3260, 1)
    assert establish(Kernel(), monkeypatch).failback is None


def test_session_created_for_a_failed_login_is_destroyed_before_the_failure(monkeypatch):
    from iscsictl.daemon.errors import SessionError

    kernel = Kernel()
    with pytest.raises(SessionError) as e:
        establish(kernel, monkeypatch, outcome="fail")
    assert e.value.code == 24
    assert [(r["type"], r.get("sid")) for r in kernel.requests] == [
        (E.CREATE_SESSION, None), (E.DESTROY_SESSION, 5)]  # synchronous: gone when reported


def test_a_login_ending_at_another_cmdsn_gets_a_session_made_for_it(monkeypatch):
    kernel = Kernel()
    establish(kernel, monkeypatch, cmdsn=ks.INITIAL_CMDSN + 1)
    creates = [r for r in kernel.requests if r["type"] == E.CREATE_SESSION]
    assert [r["initial_cmdsn"] for r in creates] == [ks.INITIAL_CMDSN, ks.INITIAL_CMDSN + 1]
    assert [r["type"] for r in kernel.requests][1] == E.DESTROY_SESSION


def test_a_refused_handover_is_torn_down_synchronously_before_the_failure(monkeypatch):
    """The session has no device yet: DESTROY_SESSION (answered once the session and its
    host are gone), not DESTROY_SESSION_ASYNC, so that a listing right after the failure
    shows no session."""
    from iscsictl.daemon.errors import SessionError

    kernel = Kernel({E.BIND_CONN: errno.EBADF})
    with pytest.raises(SessionError) as e:
        establish(kernel, monkeypatch)
    assert e.value.code == 9 and "Bad file descriptor" in e.value.args[0]
    assert [(r["type"], r.get("sid")) for r in kernel.requests][-3:] == [
        (E.STOP_CONN, 5), (E.DESTROY_CONN, 5), (E.DESTROY_SESSION, 5)]


def test_a_synchronous_teardown_falls_back_to_the_asynchronous_destroy():
    kernel = Kernel({E.DESTROY_SESSION: errno.ENOSYS})
    nl = RecordingLanes(kernel)
    try:
        assert asyncio.run(ks.force_teardown(nl, 3, 5, 0, synchronous=True))
    finally:
        nl.knl.close()
    assert nl.jobs == [[E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION, E.DESTROY_SESSION_ASYNC]]


# ---- teardown and logout: the kernel's requests as lane jobs ----------------------------------
class RecordingLanes(LaneNetlink):
    """LaneNetlink noting which requests went out inside a lane job (``jobs``: one list per
    job) and which through the loop's own client (``direct``)."""

    def __init__(self, kernel, timeout=1):
        super().__init__(kernel, timeout)
        self.kernel, self.jobs, self.direct = kernel, [], []

    def run_blocking(self, fn, *args):
        def job(knl, *a):
            start = len(self.kernel.requests)
            try:
                return fn(knl, *a)
            finally:
                self.jobs.append([r["type"] for r in self.kernel.requests[start:]])
        return super().run_blocking(job, *args)

    def __getattr__(self, op):
        request = super().__getattr__(op)

        async def recorded(*args):
            self.direct.append(op)
            return await request(*args)
        return recorded


def test_teardown_is_one_lane_job_in_the_kernels_order():
    from iscsictl.netlink import StopConnFlag

    kernel = Kernel()
    nl = RecordingLanes(kernel)
    try:
        asyncio.run(ks.force_teardown(nl, 3, 5, 0))
    finally:
        nl.knl.close()
    assert nl.jobs == [[E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]] and nl.direct == []
    stop = kernel.requests[0]
    assert (stop["sid"], stop["cid"], stop["flag"]) == (5, 0, StopConnFlag.TERM)


def test_teardown_passes_each_refusal_and_falls_back_to_a_synchronous_destroy(caplog):
    kernel = Kernel({E.STOP_CONN: errno.ENOTCONN, E.DESTROY_SESSION_ASYNC: errno.ENOSYS,
                     E.DESTROY_SESSION: errno.EBUSY})
    nl = RecordingLanes(kernel)
    try:
        asyncio.run(ks.force_teardown(nl, 3, 5, 0))  # nothing raised: the rest still runs
    finally:
        nl.knl.close()
    assert nl.jobs == [[E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC, E.DESTROY_SESSION]]
    assert "session 5: DESTROY_SESSION failed" in caplog.text


def test_teardown_goes_on_past_requests_the_kernel_never_answers():
    """A ReplyTimeout (not an IscsiKernelError) ended the teardown before: the connection
    and the session were left in the kernel."""
    kernel = Kernel(silent={E.STOP_CONN, E.DESTROY_SESSION_ASYNC})
    nl = RecordingLanes(kernel, timeout=0.1)
    try:
        asyncio.run(ks.force_teardown(nl, 3, 5, 0))
    finally:
        nl.knl.close()
    assert nl.jobs == [[E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC, E.DESTROY_SESSION]]


def test_a_cancelled_teardown_still_runs_to_its_end():
    """Cancelled while the kernel works on STOP_CONN (daemon stop, a failed login's task),
    the teardown still destroys the connection and the session, then raises CancelledError:
    no half-torn-down session is left."""
    import threading

    release = threading.Event()

    class SlowStop(Kernel):
        def __call__(self, dgram):
            if self.requests == []:  # STOP_CONN: the kernel flushing the connection's work
                release.wait(5)
            return super().__call__(dgram)

    kernel = SlowStop()
    nl = RecordingLanes(kernel)

    async def main():
        task = asyncio.create_task(ks.force_teardown(nl, 3, 5, 0))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # waiting for the lane's job, not abandoning it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        nl.knl.close()
    assert [r["type"] for r in kernel.requests] == [E.STOP_CONN, E.DESTROY_CONN,
                                                    E.DESTROY_SESSION_ASYNC]


def _logout_node():
    from iscsictl.db import schema
    from iscsictl.db.record import with_defaults

    return ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1"}))


def _sysfs_with_session(tmp_path, sid=5):
    """A sysfs root holding ``class/iscsi_session/session<sid>``; the entry's path."""
    entry = tmp_path / "class" / "iscsi_session" / f"session{sid}"
    entry.mkdir(parents=True)
    return entry


def _logged_in_session():
    from iscsictl.protocol.portal import Portal

    return ks.KernelSession(sid=5, host_no=9, cid=0, node=_logout_node(), isid=None, tsih=1,
                            params=None, current=Portal("127.0.0.1", 3260, 1))


class DestroyingKernel(Kernel):
    """A fake kernel whose destruction of a session is reported ``delay`` s after its
    DESTROY_SESSION(_ASYNC) is answered, as the daemon's event routing does on the kernel's
    KEVENT_DESTROY_SESSION (``session.destroyed`` set on the loop); ``reported`` is the
    loop time it was."""

    def __init__(self, session, loop, delay=0.0, **kw):
        super().__init__(**kw)
        self.session, self.loop, self.delay, self.reported = session, loop, delay, None

    def answer(self, msg, raw):
        if msg["type"] in (E.DESTROY_SESSION_ASYNC, E.DESTROY_SESSION):
            self.loop.call_soon_threadsafe(self.loop.call_later, self.delay, self._report)
        return super().answer(msg, raw)

    def _report(self):
        self.reported = self.loop.time()
        self.session.destroyed.set()


@pytest.mark.parametrize("unbind", ["answered", "unanswered"])
def test_logout_unbinds_on_a_lane_sends_the_logout_then_tears_down(caplog, unbind, tmp_path):
    """ks.logout: UNBIND_SESSION as a lane job, the Logout PDU through the loop's client (its
    answer comes as a RECV_PDU event), then the teardown job; a target that does not answer
    within the logout timeout is logged and the session torn down anyway, and so is an
    UNBIND_SESSION the kernel does not answer (before, its ReplyTimeout ended the logout
    with the session left IN LOGOUT, never recovered)."""
    async def main():
        session = _logged_in_session()
        kernel = DestroyingKernel(session, asyncio.get_running_loop(),
                                  silent={E.UNBIND_SESSION} if unbind == "unanswered" else ())
        nl = RecordingLanes(kernel, timeout=0.1)
        session.unbound.set()  # KEVENT_UNBIND_SESSION, as the daemon's event callback sets it
        try:
            await ks.logout(nl, 3, session, 0.05, str(tmp_path))
        finally:
            nl.knl.close()
        return nl, kernel

    _sysfs_with_session(tmp_path)

    nl, kernel = asyncio.run(main())
    assert nl.jobs == [[E.UNBIND_SESSION], [E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]]
    assert nl.direct == ["send_pdu"]
    assert [r["type"] for r in kernel.requests] == [
        E.UNBIND_SESSION, E.SEND_PDU, E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert "session 5: no clean Logout" in caplog.text
    assert ("UNBIND_SESSION failed" in caplog.text) == (unbind == "unanswered")


def logged_out(session, sysfs_root) -> DestroyingKernel:
    """ks.logout of ``session`` (its unbind event already in) against a DestroyingKernel
    and a sysfs at ``sysfs_root``; the kernel, for its requests."""
    async def main():
        kernel = DestroyingKernel(session, asyncio.get_running_loop())
        nl = RecordingLanes(kernel, timeout=0.1)
        session.unbound.set()
        try:
            await ks.logout(nl, 3, session, 0.05, str(sysfs_root))
        finally:
            nl.knl.close()
        return kernel
    return asyncio.run(main())


@pytest.mark.parametrize("state", ["FAILED", "FREE", "LOGGED_IN"])
def test_logout_of_a_session_not_logged_in_sends_no_logout_pdu(caplog, tmp_path, state):
    """A session whose kernel state is not LOGGED_IN (failed, or its relogin cancelled by
    this logout; seen in the VM: a logout while the start-up relogin of an adopted boot
    session ran) gets no Logout PDU, which the kernel refuses with EPERM: it is torn down
    with an info line, as iscsid's session_logout_task shuts it down (before: a SEND_PDU
    refused and the warning "no clean Logout (... EPERM ...)").  LOGGED_IN: the Logout."""
    caplog.set_level(logging.INFO)
    (_sysfs_with_session(tmp_path) / "state").write_text(state + "\n")
    kernel = logged_out(_logged_in_session(), tmp_path)
    sent = [r["type"] for r in kernel.requests]
    assert sent[-3:] == [E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert (E.SEND_PDU in sent) == (state == "LOGGED_IN")
    assert ("no clean Logout" in caplog.text) == (state == "LOGGED_IN")  # none answers here
    assert (f"is not logged in ({state}): no Logout PDU" in caplog.text) == \
        (state != "LOGGED_IN")


def test_logout_returns_once_the_kernel_reports_the_session_destroyed(caplog, tmp_path):
    """DESTROY_SESSION_ASYNC is answered at once and the kernel removes the session after:
    the logout returns only when its KEVENT_DESTROY_SESSION has come (before, it returned
    at the answer, and a listing right after could still show the session; seen in the VM),
    and the loop keeps running meanwhile."""
    async def main():
        loop = asyncio.get_running_loop()
        session = _logged_in_session()
        kernel = DestroyingKernel(session, loop, delay=0.3)
        nl = RecordingLanes(kernel, timeout=0.1)
        session.unbound.set()
        ticks = []

        async def loop_runs():
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.02)

        ticker = asyncio.ensure_future(loop_runs())
        try:
            await ks.logout(nl, 3, session, 0.05, str(tmp_path))
            returned = loop.time()
        finally:
            ticker.cancel()
            nl.knl.close()
        return kernel.reported, returned, ticks

    _sysfs_with_session(tmp_path)  # still listed until the event
    reported, returned, ticks = asyncio.run(main())
    assert reported is not None and returned >= reported
    assert sum(t >= reported - 0.3 for t in ticks) >= 5  # the loop turned while it waited
    assert "not reported it destroyed" not in caplog.text


@pytest.mark.parametrize("where", ["unbind event", "logout response", "destruction"])
def test_a_cancelled_logout_still_tears_the_session_down(tmp_path, where):
    """The daemon stops (or a task is cancelled) while a logout waits for the kernel's
    unbind event or the target's Logout Response: the session is still torn down before
    CancelledError (before, it was left unbound, its disks gone and its connection up, for
    ever); once torn down, the wait for the kernel's report of it is simply given up."""
    async def main():
        loop = asyncio.get_running_loop()
        session = _logged_in_session()
        kernel = DestroyingKernel(session, loop, delay=60)
        nl = RecordingLanes(kernel, timeout=0.1)
        if where != "unbind event":
            session.unbound.set()
        timeout = 0.05 if where == "destruction" else 30  # no Logout Response comes
        task = asyncio.ensure_future(ks.logout(nl, 3, session, timeout, str(tmp_path)))
        try:
            for _ in range(200):  # until the logout waits where this case cuts it short
                await asyncio.sleep(0.01)
                types = [r["type"] for r in kernel.requests]
                if {"unbind event": E.UNBIND_SESSION, "logout response": E.SEND_PDU,
                        "destruction": E.DESTROY_SESSION_ASYNC}[where] in types:
                    break
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        finally:
            nl.knl.close()
        return [r["type"] for r in kernel.requests]

    _sysfs_with_session(tmp_path)
    types = asyncio.run(main())
    assert types[-3:] == [E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert types.count(E.DESTROY_SESSION_ASYNC) == 1


def _timed_logout(kernel, sysfs_root, gone_after=None, timeout=0.05, unbound=True) -> float:
    """Seconds ks.logout takes against ``kernel`` (a fake that reports no destruction);
    ``gone_after``: seconds after which the session's sysfs entry is removed; ``unbound``:
    KEVENT_UNBIND_SESSION has come."""
    async def main():
        loop = asyncio.get_running_loop()
        session = _logged_in_session()
        nl = RecordingLanes(kernel, timeout=0.1)
        if unbound:
            session.unbound.set()
        if gone_after is not None:
            loop.call_later(gone_after, (sysfs_root / "class/iscsi_session/session5").rmdir)
        t = loop.time()
        try:
            await ks.logout(nl, 3, session, timeout, str(sysfs_root))
        finally:
            nl.knl.close()
        return loop.time() - t

    return asyncio.run(main())


def _unbinding_logout(tmp_path, timeout, unbind_after=None, cancel_after=None,
                      conn_error_after=None):
    """ks.logout of a session whose ``target_state`` says UNBINDING (the kernel removing its
    devices: their caches written) until ``unbind_after`` s, when it says UNBOUND and
    KEVENT_UNBIND_SESSION comes; (kernel, the requests made by then, seconds taken)."""
    entry = _sysfs_with_session(tmp_path)
    (entry / "target_state").write_text("UNBINDING\n")

    async def main():
        loop = asyncio.get_running_loop()
        session = _logged_in_session()
        kernel = DestroyingKernel(session, loop)
        nl = RecordingLanes(kernel, timeout=0.1)
        seen = []

        def unbound():
            seen.extend(r["type"] for r in kernel.requests)
            (entry / "target_state").write_text("UNBOUND\n")
            session.unbound.set()
        if unbind_after is not None:
            loop.call_later(unbind_after, unbound)
        if conn_error_after is not None:  # as the daemon's event routing sets it
            loop.call_later(conn_error_after, session.logout_conn_failed.set)
        task = asyncio.ensure_future(ks.logout(nl, 3, session, timeout, str(tmp_path)))
        if cancel_after is not None:
            loop.call_later(cancel_after, task.cancel)
        t = loop.time()
        try:
            await task
        finally:
            nl.knl.close()
        return kernel, seen, loop.time() - t

    return asyncio.run(main())


def test_the_logout_waits_for_the_kernel_to_remove_the_devices_whatever_its_timeout(
        caplog, monkeypatch, tmp_path):
    """The kernel's removal of the devices (sd's SYNCHRONIZE CACHE, through this
    connection, has the target write its volatile cache) takes longer than the logout
    timeout: the Logout and the teardown wait for it, as iscsid's, which sends the Logout
    only on KEVENT_UNBIND_SESSION (before: they went at the timeout, the command cut off)."""
    monkeypatch.setattr(ks, "UNBIND_POLL", 0.05)
    kernel, seen, took = _unbinding_logout(tmp_path, timeout=0.1, unbind_after=0.6)
    assert seen == [E.UNBIND_SESSION] and took >= 0.6
    assert [r["type"] for r in kernel.requests] == [
        E.UNBIND_SESSION, E.SEND_PDU, E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert "session 5: the kernel is still removing its devices after 0.1 s" in caplog.text
    assert "no unbind event" not in caplog.text


def test_a_connection_that_fails_while_the_kernel_removes_the_devices_is_torn_down(
        caplog, monkeypatch, tmp_path):
    """The connection fails during that removal (the network going down at shutdown): the
    session is torn down at once, no Logout sent, as iscsid's __conn_error_handle with a
    logout under way (session_conn_shutdown); the kernel's removal then ends (the session
    FREE).  Before: the wait went on until the replacement timeout failed the cache
    writes (120 s by default; never with a negative one)."""
    monkeypatch.setattr(ks, "UNBIND_POLL", 0.05)
    kernel, _, took = _unbinding_logout(tmp_path, timeout=0.1, unbind_after=30,
                                        conn_error_after=0.3)
    assert 0.3 <= took < 5
    assert [r["type"] for r in kernel.requests] == [
        E.UNBIND_SESSION, E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert "session 5: its connection failed during the logout; tearing down" in caplog.text


def test_an_unbind_event_the_kernel_skipped_is_seen_in_the_target_state(caplog, monkeypatch,
                                                                         tmp_path):
    """A session already unbound (an earlier logout cut short): the kernel sends no
    KEVENT_UNBIND_SESSION (__iscsi_unbind_session); its target_state UNBOUND ends the wait
    at the next look, not at the logout timeout."""
    class Timed(Kernel):
        def answer(self, msg, raw):
            sent.setdefault(msg["type"], time.monotonic())
            return super().answer(msg, raw)

    monkeypatch.setattr(ks, "UNBIND_POLL", 0.05)
    monkeypatch.setattr(ks, "DESTROY_TIMEOUT", 0.1)
    (_sysfs_with_session(tmp_path) / "target_state").write_text("UNBOUND\n")
    sent: dict = {}
    _timed_logout(Timed(), tmp_path, timeout=1.5, unbound=False)  # no Logout Response
    assert sent[E.SEND_PDU] - sent[E.UNBIND_SESSION] < 0.75  # not at the logout timeout
    assert "no unbind event" not in caplog.text


def test_a_logout_cut_short_while_the_kernel_removes_the_devices_leaves_the_session(
        caplog, monkeypatch, tmp_path):
    """The daemon stops during that removal: no Logout, no teardown (the writes would
    fail); the session is left to the kernel, logged in, as iscsid leaves its sessions."""
    monkeypatch.setattr(ks, "UNBIND_POLL", 0.05)
    with pytest.raises(asyncio.CancelledError):
        _unbinding_logout(tmp_path, timeout=30, cancel_after=0.2)
    assert "logout cut short (the daemon stops) while the kernel removes its devices" in \
        caplog.text


def test_a_destruction_never_reported_ends_the_wait_with_a_warning(caplog, monkeypatch,
                                                                    tmp_path):
    monkeypatch.setattr(ks, "DESTROY_TIMEOUT", 0.3)
    monkeypatch.setattr(ks, "DESTROY_POLL", 0.05)
    _sysfs_with_session(tmp_path)
    assert 0.3 <= _timed_logout(Kernel(), tmp_path) < 2
    assert "session 5: the kernel has not reported it destroyed within 0.3 s" in caplog.text


def test_a_lost_destroy_event_ends_the_wait_when_sysfs_has_no_session(caplog, monkeypatch,
                                                                       tmp_path):
    """An event lost to a receive buffer overrun: the session's sysfs entry, looked at
    every DESTROY_POLL s, ends the wait once it is gone, without a warning."""
    monkeypatch.setattr(ks, "DESTROY_TIMEOUT", 5.0)
    monkeypatch.setattr(ks, "DESTROY_POLL", 0.05)
    _sysfs_with_session(tmp_path)
    assert 0.2 <= _timed_logout(Kernel(), tmp_path, gone_after=0.2) < 1.0
    assert "not reported it destroyed" not in caplog.text


def test_a_refused_destruction_is_not_waited_for(caplog, monkeypatch, tmp_path):
    """Both destroy requests refused: no KEVENT_DESTROY_SESSION will come, so the logout
    does not wait for one; it fails with 9, the session still the kernel's (before: it
    answered ok, and the daemon forgot a session the kernel still ran)."""
    from iscsictl.daemon.errors import SessionError

    monkeypatch.setattr(ks, "DESTROY_TIMEOUT", 5.0)
    _sysfs_with_session(tmp_path)
    start = time.monotonic()
    with pytest.raises(SessionError) as e:
        _timed_logout(Kernel({E.DESTROY_SESSION_ASYNC: errno.ENOSYS,
                              E.DESTROY_SESSION: errno.EBUSY}), tmp_path)
    assert time.monotonic() - start < 1.0
    assert e.value.code == 9 and "refused to destroy it" in str(e.value)
    assert "session 5: DESTROY_SESSION failed" in caplog.text
    assert "not reported it destroyed" not in caplog.text


REFUSED_SID = {t: errno.EINVAL for t in (E.SEND_PDU, E.STOP_CONN, E.DESTROY_CONN,
                                         E.DESTROY_SESSION_ASYNC, E.DESTROY_SESSION)}


def test_a_session_the_kernel_destroys_during_the_logout_is_logged_out(caplog, tmp_path):
    """KEVENT_DESTROY_SESSION while the logout waits for the unbind (a host removed, another
    netlink user): the logout ends there, the session logged out, no request sent for a
    sid the kernel no longer knows (before: it waited for the unbind, then sent the Logout
    PDU and the teardown, each refused with EINVAL, and failed with 9; the daemon kept a
    FAILED ghost that made every later login of the node 15, "already present")."""
    caplog.set_level(logging.INFO, logger="iscsictld")
    entry = _sysfs_with_session(tmp_path)
    (entry / "target_state").write_text("UNBINDING\n")  # the unbind wait: no time limit
    kernel = Kernel(REFUSED_SID)

    async def main():
        loop = asyncio.get_running_loop()
        session = _logged_in_session()
        nl = RecordingLanes(kernel, timeout=0.1)
        loop.call_later(0.2, session.destroyed.set)
        t = loop.time()
        try:
            async with asyncio.timeout(3):  # (it waited for an unbind that never comes)
                await ks.logout(nl, 3, session, 5.0, str(tmp_path))
        finally:
            nl.knl.close()
        return loop.time() - t, session
    took, session = asyncio.run(main())
    assert 0.2 <= took < 1.0
    assert [r["type"] for r in kernel.requests] == [E.UNBIND_SESSION]
    assert session.conn_state == "IN LOGOUT" and "refused" not in caplog.text
    assert "session 5: destroyed by the kernel during the logout" in caplog.text


def test_a_teardown_refused_for_a_session_gone_from_sysfs_is_a_logout(caplog, tmp_path):
    """The destruction's event lost (a receive buffer overrun) and the teardown refused
    because the kernel no longer has the sid (EINVAL), its sysfs entry gone: logged out,
    not 9 with a ghost session kept."""
    caplog.set_level(logging.INFO, logger="iscsictld")
    took = _timed_logout(Kernel(REFUSED_SID), tmp_path)  # (no sysfs entry: gone)
    assert took < 1.0
    assert "session 5: destroyed by the kernel during the logout" in caplog.text


class AnsweringKernel(DestroyingKernel):
    """A DestroyingKernel whose target answers the Logout PDU (SEND_PDU) through the daemon's
    event routing (``route``: Daemon._on_event), with ``before`` PDUs first."""

    def __init__(self, session, loop, route, before=()):
        super().__init__(session, loop)
        self.route, self.before = route, before

    def answer(self, msg, raw):
        from iscsictl.netlink import RecvPdu
        from iscsictl.protocol.pdu import LogoutResponse

        if msg["type"] == E.SEND_PDU:
            for pdu in (*self.before, LogoutResponse(time2wait=2)):
                hdr, _ = pdu.encode_header()
                self.loop.call_soon_threadsafe(
                    self.route, RecvPdu(101, None, sid=self.session.sid, cid=0, pdu=hdr))
        return super().answer(msg, raw)


def test_an_async_message_during_a_logout_does_not_end_its_wait(caplog, tmp_path):
    """The target sends an Async Message (here: it asks for a logout) before its Logout
    Response: the logout waits on for the response, and the event neither ends that wait
    (before, any PDU did, and the clean logout was lost) nor starts a second logout."""
    from iscsictl.daemon.service import Daemon
    from iscsictl.protocol.pdu import AsyncMessage

    async def main():
        d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        session = _logged_in_session()
        d.sessions[session.sid] = session
        spawned = []
        d._spawn = spawned.append
        asks = AsyncMessage(async_event=1, parameter3=5)  # logout requested within 5 s
        kernel = AnsweringKernel(session, asyncio.get_running_loop(), d._on_event, [asks])
        nl = RecordingLanes(kernel, timeout=0.5)
        session.unbound.set()
        try:
            with caplog.at_level(logging.INFO, logger="iscsictld"):
                await ks.logout(nl, 3, session, 2, str(tmp_path))
        finally:
            nl.knl.close()
            d._scan_pool.shutdown(wait=False)
        return spawned, session

    spawned, session = asyncio.run(main())
    assert "no clean Logout" not in caplog.text
    assert "LogoutRequested while logging out" in caplog.text
    assert spawned == [] and session.pdu_waiter is None and session.pdu_wanted == ks.ANY_PDU


def test_a_connection_error_during_a_logout_ends_its_wait_at_once(caplog, tmp_path):
    """The connection fails while the Logout waits for its response (the kernel reports
    the error): the teardown follows at once, not at the logout timeout (iscsid's
    __conn_error_handle shuts the session down when a logout is pending), and the error
    starts no recovery."""
    from iscsictl.daemon.service import Daemon
    from iscsictl.netlink import ConnError

    class Failing(DestroyingKernel):
        def answer(self, msg, raw):
            if msg["type"] == E.SEND_PDU:
                self.loop.call_soon_threadsafe(d._on_event, ConnError(
                    102, None, sid=5, cid=0, error=1020))
            return super().answer(msg, raw)

    async def main():
        session = _logged_in_session()
        d.sessions[session.sid] = session
        spawned = []
        d._spawn = spawned.append
        kernel = Failing(session, asyncio.get_running_loop(), delay=0.01)
        nl = RecordingLanes(kernel, timeout=0.5)
        session.unbound.set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await ks.logout(nl, 3, session, 10, str(tmp_path))
        finally:
            nl.knl.close()
            d._scan_pool.shutdown(wait=False)
        return spawned, loop.time() - start, kernel

    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    spawned, took, kernel = asyncio.run(main())
    assert took < 5 and spawned == []
    assert [r["type"] for r in kernel.requests][-3:] == [
        E.STOP_CONN, E.DESTROY_CONN, E.DESTROY_SESSION_ASYNC]
    assert "no clean Logout (the connection failed (" in caplog.text


def test_a_create_session_never_answered_is_code_9_and_frees_the_isid(monkeypatch, tmp_path):
    """CREATE_SESSION's reply lost (a receive buffer overrun): the login ends with 9, as a
    refusal does, and its ISID is free again (before, ReplyTimeout escaped: the IPC
    request got no answer at all, and the ISID stayed taken)."""
    from iscsictl.daemon.errors import SessionError
    from iscsictl.daemon.service import Daemon

    kernel = Kernel(silent={E.CREATE_SESSION})
    with pytest.raises(SessionError) as e:
        establish(kernel, monkeypatch, nl=LaneNetlink(kernel, timeout=0.1))
    assert e.value.code == 9
    assert "no answer from the kernel while setting up the session (no reply to " \
        "CREATE_SESSION" in str(e.value)

    async def daemon_login():
        d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.nl = LaneNetlink(kernel)
        transport_in_sysfs(d.sysfs.root, "tcp", 3)

        async def refused(*args, **kwargs):
            raise RuntimeError("a bug")  # anything but a SessionError
        monkeypatch.setattr(ks, "establish", refused)
        try:
            with pytest.raises(RuntimeError):
                await d._establish(_logout_node(), "iqn.2026-11.org.example:i")
            return len(d.isids)
        finally:
            d.nl.knl.close()
            d._scan_pool.shutdown(wait=False)
    assert asyncio.run(daemon_login()) == 0


@pytest.mark.parametrize("how", ["login", "handover", "cmdsn"])
def test_the_destroy_event_of_a_failed_logins_own_session_is_known(monkeypatch, tmp_path,
                                                                    caplog, how):
    """A session establish made and destroyed itself (a failed login's, a refused
    handover's, one made at the wrong CmdSN) is named to the daemon before its destruction,
    so that its KEVENT_DESTROY_SESSION is not taken for another netlink user's session
    (before, every failed login logged that at INFO)."""
    from iscsictl.daemon.errors import SessionError
    from iscsictl.daemon.service import Daemon
    from iscsictl.netlink import DestroySession
    from iscsictl.protocol.login import LoginSuccess
    from iscsictl.protocol.negotiation import NegotiatedParameters
    from iscsictl.protocol.portal import Portal

    class Sids(Kernel):  # 5, then 6, ...
        def answer(self, msg, raw):
            if msg["type"] == E.CREATE_SESSION:
                made = sum(r["type"] == E.CREATE_SESSION for r in self.requests)
                return [echo(raw, r_sid=4 + made, r_host_no=9)]
            return super().answer(msg, raw)
    kernel = Sids({E.BIND_CONN: errno.EBADF} if how == "handover" else None)
    ours, theirs = socket.socketpair()
    theirs.close()
    cmdsn = ks.INITIAL_CMDSN + (how == "cmdsn")

    async def login(node, initiator_name, isid, issued, connected=None, moved=None):
        connected()
        await asyncio.sleep(0.05)
        if how == "login":
            raise SessionError(24, "authentication failed")
        return ours, LoginSuccess(NegotiatedParameters(), b"\0" * 6, 7, 0, cmdsn, 3, 4,
                                  cmdsn, cmdsn + 31, {}), Portal("127.0.0.1", 3260, 1)
    monkeypatch.setattr(ks, "userspace_login", login)
    monkeypatch.setattr(ks, "set_queue_depth", lambda *args: None)
    named = []

    async def daemon_login():
        d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.nl = LaneNetlink(kernel)
        transport_in_sysfs(d.sysfs.root, "tcp", 3)
        due = d._destroy_due
        d._destroy_due = lambda sid: (named.append((sid, len(kernel.requests))), due(sid))
        node = _logout_node()
        node.record["node.session.initial_login_retry_max"] = "1"
        node.record["node.session.scan"] = "manual"
        try:
            try:
                await d._establish(node, "iqn.2026-11.org.example:i")
            except SessionError:
                assert how != "cmdsn"
            d._on_event(DestroySession(104, None, host_no=9, sid=5))
        finally:
            d.nl.knl.close()
            d._scan_pool.shutdown(wait=False)
    caplog.set_level(logging.DEBUG)
    asyncio.run(daemon_login())
    destroy = next(i for i, r in enumerate(kernel.requests) if r["type"] == E.DESTROY_SESSION)
    assert named == [(5, destroy if how != "handover" else destroy - 2)]  # before it
    assert "another netlink user" not in caplog.text
    assert "destroy event for session 5 (already removed here)" in caplog.text


def test_xmit_thread_priority_is_given_to_the_hosts_transmit_thread(tmp_path, monkeypatch,
                                                                    caplog):
    """node.session.xmit_thread_priority, as iscsid 2.1.8's session_increase_wq_priority:
    the nice of the thread named iscsi_q_<host> (found in /proc), clamped as setpriority
    clamps it; the kernel's own -20 (Debian's default) needs nothing; no such thread is
    iscsid's warning."""
    proc = tmp_path / "proc"
    for pid, comm in ((1, "init\n"), (40, "iscsi_q_19\n"), (41, "iscsi_q_9\n"),
                      (42, "iscsi_q_1\n")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm)
    (proc / "self").mkdir()
    calls = []
    monkeypatch.setattr(ks.os, "setpriority", lambda which, pid, nice: calls.append((pid, nice)))
    assert ks.xmit_priority({}) is None
    assert ks.xmit_priority({"node.session.xmit_thread_priority": "-20"}) is None
    assert ks.xmit_priority({"node.session.xmit_thread_priority": "5"}) == 5
    assert ks.xmit_priority({"node.session.xmit_thread_priority": "-99"}) is None  # -20
    assert ks.xmit_priority({"node.session.xmit_thread_priority": "99"}) == 19
    assert ks.set_xmit_priority(9, 5, str(proc)) is True and calls == [(41, 5)]
    with caplog.at_level(logging.WARNING):
        assert ks.set_xmit_priority(7, 5, str(proc)) is False
    assert "Could not set host7's priority" in caplog.text
    # in the handover: after START_CONN (and the scan's start), with the host's number
    seen = []
    monkeypatch.setattr(ks, "set_xmit_priority", lambda host, nice: seen.append((host, nice)))
    knl = IscsiNetlink(Kernel().transport, timeout=1)
    try:
        ks._hand_over(knl, 3, 17, 128, 32, 42, PARAMS, (), None, None, 0)
    finally:
        knl.close()
    assert seen == [(9, 0)]


def test_scans_blocked_in_the_kernel_hold_no_other_login_back(tmp_path, monkeypatch):
    """A write to a host's ``scan`` blocks in the kernel for the whole LUN scan, minutes
    when the target stops answering.  With more such logins under way than the daemon
    once had scan threads (32), a login to a healthy target is answered after its own
    scan, while the others still block (each scan a thread of its own, as iscsid forks a
    child for each: session_scan_host).  Before, it waited for them.  A FIFO stands in for
    each hung host's ``scan`` (its open for writing blocks until a reader comes)."""
    import os

    from iscsictl.daemon import service
    from iscsictl.daemon.service import Daemon
    from iscsictl.protocol.portal import Portal

    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    transport_in_sysfs(d.sysfs.root, "tcp", 1)
    hung = list(range(10, 10 + service.MAX_PARALLEL_LOGINS + 2))
    for host in (*hung, 99):
        scan = tmp_path / f"class/scsi_host/host{host}/scan"
        scan.parent.mkdir(parents=True)
        if host == 99:
            scan.write_text("")
        else:
            os.mkfifo(scan)

    async def establish(nl, handle, node, name, isid, issued, scan, *args):
        host = int(node.target.rsplit(":", 1)[1])
        s = ks.KernelSession(sid=host, host_no=host, cid=0, node=node, isid=isid, tsih=1,
                             params=None, current=Portal(node.address, 3260, 1))
        s.scanning = asyncio.wrap_future(scan(host))  # as the hand-over starts it
        return s

    async def handle(transport):
        return 1
    monkeypatch.setattr(ks, "establish", establish)
    monkeypatch.setattr(d, "handle", handle)
    monkeypatch.setattr(d, "_save_state", lambda: None)
    d.nl = object()

    def node(host):
        return ks.NodeTarget.from_record({
            "node.name": f"iqn.2026-01.org.example:{host}", "node.conn[0].port": "3260",
            "node.conn[0].address": "127.0.0.2" if host == 99 else "127.0.0.1",
            "node.tpgt": "1"})

    async def main():
        blocked = [asyncio.create_task(d._establish(node(h), "iqn.2026-01.org.example:i"))
                   for h in hung]
        await asyncio.sleep(0.3)
        healthy = asyncio.create_task(d._establish(node(99), "iqn.2026-01.org.example:i"))
        await asyncio.wait([healthy], timeout=10)
        answered = healthy.result() if healthy.done() else None
        still_blocked = not any(t.done() for t in blocked)
        readers = [os.open(tmp_path / f"class/scsi_host/host{h}/scan",
                           os.O_RDONLY | os.O_NONBLOCK) for h in hung]  # the scans end
        try:
            await asyncio.gather(*blocked)
        finally:
            for fd in readers:
                os.close(fd)
        await healthy
        return answered, still_blocked

    sid, still_blocked = asyncio.run(main())
    d._scan_pool.shutdown(wait=True)
    assert (sid, still_blocked) == (99, True)
    assert (tmp_path / "class/scsi_host/host99/scan").read_text() == "- - -"
