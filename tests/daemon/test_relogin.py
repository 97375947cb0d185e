"""Connection recovery's relogin (kernel_session.relogin) through the real asyncio netlink
client and the daemon's event routing, against a fake kernel that relays each SEND_PDU to
the sans-I/O fake target and sends its answer back as a RECV_PDU event: the requests in
order on success, and after any failure once the connection may be bound (a refusal, a
request the kernel never answers, a login the target rejects) a retryable SessionError
with STOP_CONN(RECOVER) sent first, as iscsid's session_conn_reopen does, so that the next
attempt binds a clean connection."""

import asyncio
import errno
import socket
import sys
from pathlib import Path

import pytest

from fake_kernel import RecordingKernel, echo
from iscsictl.daemon import kernel_session as ks
from iscsictl.daemon.errors import SessionError
from iscsictl.daemon.service import Daemon
from iscsictl.db import schema
from iscsictl.db.record import with_defaults
from iscsictl.netlink import AsyncIscsiNetlink, StopConnFlag
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E
from iscsictl.protocol.names import ISID
from iscsictl.protocol.portal import Portal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "protocol"))
from fake_target import FakeTarget, TargetConfig  # noqa: E402

SID, CID = 5, 0


class RelayKernel(RecordingKernel):
    """iscsi_tcp's answers for a relogin: SEND_PDU's payload goes to ``target`` (padded,
    as on the wire) and each PDU it answers comes back as a KEVENT_RECV_PDU after the
    reply; ``silent`` and ``fail`` as in RecordingKernel, which records every request.
    ``busy``: after each Login/Text Response passed up, the next ``busy`` Login/Text PDUs
    are refused with EPERM (libiscsi's login task not yet freed: it passes the answer up
    before it completes the task); ``refused`` counts them."""

    def __init__(self, target, silent=(), fail=None, busy=0):
        super().__init__(fail, silent)
        self.target, self.busy, self.refused, self._busy_left = target, busy, 0, 0

    def answer(self, msg, raw):
        out = [echo(raw, r_retcode=0)]
        if msg["type"] == E.SEND_PDU:
            pdu = msg["payload"]
            if self._busy_left and pdu[0] & 0x3F in (0x03, 0x04):
                self._busy_left -= 1
                self.refused += 1
                return [echo(raw, r_retcode=-errno.EPERM)]
            self.target.receive_data(pdu + b"\0" * (-len(pdu) % 4))
            stream = self.target.data_to_send()
            while stream:
                dlen = int.from_bytes(stream[5:8], "big")
                size = 48 + stream[4] * 4 + dlen
                if stream[0] & 0x3F in (0x23, 0x24):
                    self._busy_left = self.busy
                out.append(m.encode_message(E.KEVENT_RECV_PDU, nlmsg_type=0, r_sid=SID,
                                            r_cid=CID, payload=stream[:size]))
                stream = stream[size + (-dlen % 4):]
        return out


@pytest.fixture
def portal():
    """A listening TCP socket for the relogin's connect (the kernel, faked, does the I/O)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


def relogin(tmp_path, port, kernel, timeout=0.3, login_timeout="2", state=None,
            recovering=False, address="127.0.0.1", peer=None, current=None):
    """ks.relogin of session SID, the daemon routing the kernel's events; the session.
    ``state``: its conn_state meanwhile (the recovery's IN LOGIN); ``recovering``: a
    recovery runs it (a connection error is then noted in ``failed_again``); ``address``:
    its portal's (a host name), ``peer``: where its login's connection went, ``current``:
    the address its connection has (an adopted session's, from sysfs; default
    ``address``)."""
    node = ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": TargetConfig().name, "node.conn[0].address": address,
        "node.conn[0].port": str(port), "node.tpgt": "1",
        "node.conn[0].timeo.login_timeout": login_timeout}))
    session = ks.KernelSession(sid=SID, host_no=9, cid=CID, node=node, isid=ISID.en(7, 1),
                               tsih=0x0100, params=None,
                               current=Portal(current or address, port, 1),
                               initiator_name="iqn.2026-11.org.example:i", peer_address=peer)
    daemon = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                    db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    daemon.sessions[SID] = session
    if state is not None:
        session.conn_state = state

    async def run():
        nl = AsyncIscsiNetlink(kernel.transport, timeout=timeout, event_callback=daemon._on_event)
        if recovering:
            session.recovery = asyncio.get_running_loop().create_future()
        try:
            await ks.relogin(nl, 3, session)
        finally:
            nl.close()
            if recovering:
                session.recovery.cancel()

    asyncio.run(run())
    return session


def test_relogin_relays_the_login_then_sets_the_parameters_and_starts(tmp_path, portal):
    target = FakeTarget()
    kernel = RelayKernel(target)
    session = relogin(tmp_path, portal, kernel)
    types = kernel.types()
    assert types[0] == E.BIND_CONN and kernel.requests[0]["sid"] == SID
    sends = types.count(E.SEND_PDU)
    assert sends >= 1 and types[1:1 + sends] == [E.SEND_PDU] * sends
    assert set(types[1 + sends:-1]) == {E.SET_PARAM} and types[-1] == E.START_CONN
    assert E.STOP_CONN not in types
    assert target.phase == "ffp" and target.violations == []
    assert session.tsih == TargetConfig().tsih and session.params is not None


def test_an_adopted_sessions_first_relogin_sets_the_session_objects_values_too(tmp_path,
                                                                                 portal):
    """Adopted (nothing known of what the kernel holds): the first relogin sends the session
    object's values as well (replacement_timeout: SESS_RECOVERY_TMO), as iscsid's every
    reopen does, so that a record changed since reaches the kernel (before: never); then
    what the kernel holds is known, and the next relogins send what changed only."""
    from iscsictl.netlink import IscsiParam as P

    kernel = RelayKernel(FakeTarget())
    session = relogin(tmp_path, portal, kernel)  # kernel_params empty: as adopted
    params = {P(r["param"]) for r in kernel.requests if r["type"] == E.SET_PARAM}
    assert P.SESS_RECOVERY_TMO in params and P.TARGET_NAME in params
    assert P.SESS_RECOVERY_TMO in session.kernel_params  # known from now on: sent no more


@pytest.mark.parametrize("silent", [E.BIND_CONN, E.SEND_PDU, E.START_CONN],
                         ids=lambda t: t.name)
def test_a_request_the_kernel_never_answers_is_a_retryable_failure(tmp_path, portal, silent):
    """A ReplyTimeout (not an IscsiKernelError) ended the recovery task before: the
    session stayed down for good."""
    kernel = RelayKernel(FakeTarget(), silent={silent})
    with pytest.raises(SessionError) as caught:
        relogin(tmp_path, portal, kernel)
    assert caught.value.retryable and caught.value.code == 9
    assert "within 0.3 s" in str(caught.value)  # the client's ReplyTimeout, named
    last = kernel.requests[-1]
    assert last["type"] == E.STOP_CONN and last["flag"] == StopConnFlag.RECOVER


@pytest.mark.parametrize("case", ["refused bind", "rejected login", "refused param",
                                  "refused start"])
def test_every_failure_after_the_bind_stops_the_connection_before_the_retry(tmp_path, portal,
                                                                            case):
    """... and a parameter the kernel refused (ENOMEM: a MaxR2T pool it freed first) starts
    nothing: START_CONN went in the parameters' datagram, and the held I/O resumed on the
    half-set connection before the stop (iscsid starts nothing after a refusal)."""
    config = TargetConfig(status=0x0300 if case == "rejected login" else 0)  # target error
    fail = {"refused bind": {E.BIND_CONN: errno.EINVAL},
            "refused param": {E.SET_PARAM: errno.ENOMEM},
            "refused start": {E.START_CONN: errno.EIO}}.get(case)
    kernel = RelayKernel(FakeTarget(config), fail=fail)
    with pytest.raises(SessionError) as caught:
        relogin(tmp_path, portal, kernel)
    assert caught.value.retryable
    assert caught.value.code == (5 if case == "rejected login" else 9)  # ISCSI_ERR_LOGIN / _INTERNAL
    last = kernel.requests[-1]
    assert last["type"] == E.STOP_CONN and last["flag"] == StopConnFlag.RECOVER
    assert kernel.types().count(E.STOP_CONN) == 1
    assert (E.START_CONN in kernel.types()) == (case == "refused start")


class SilentTarget:
    """A target that takes the Login PDU and never answers it."""

    def receive_data(self, data):
        pass

    def data_to_send(self):
        return b""


def test_a_login_response_that_never_comes_ends_the_attempt_at_the_login_timeout(tmp_path,
                                                                                   portal):
    """node.conn[0].timeo.login_timeout bounds the wait for the relayed Login Response:
    ISCSI_ERR_PDU_TIMEOUT (11, iscsid's iscsi_login_timedout in IN_LOGIN), retryable, the
    connection stopped for the next attempt."""
    kernel = RelayKernel(SilentTarget())
    with pytest.raises(SessionError) as caught:
        relogin(tmp_path, portal, kernel, login_timeout="1")
    assert caught.value.retryable and caught.value.code == 11
    assert "no Login Response" in str(caught.value)
    assert kernel.types().count(E.SEND_PDU) == 1
    last = kernel.requests[-1]
    assert last["type"] == E.STOP_CONN and last["flag"] == StopConnFlag.RECOVER


class DroppingKernel(RelayKernel):
    """The new connection fails as the first Login PDU goes out (the target closed it):
    the kernel reports ISCSI_ERR_TCP_CONN_CLOSE, and no Login Response comes."""

    def answer(self, msg, raw):
        if msg["type"] == E.SEND_PDU:
            return [echo(raw, r_retcode=0), m.encode_message(
                E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=SID, r_cid=CID, r_error=1020)]
        return super().answer(msg, raw)


def test_a_connection_error_during_a_relogin_ends_that_attempt_at_once(tmp_path, portal):
    """The recovery's relayed Login waits for its Login Response; the kernel reports the
    connection failed: the attempt ends then, retryable, not at the login timeout (iscsid's
    __conn_error_handle: iscsi_login_eh at once), and the error starts no other recovery."""
    import time

    start = time.monotonic()
    with pytest.raises(SessionError) as caught:
        relogin(tmp_path, portal, DroppingKernel(FakeTarget()), login_timeout="10",
                state="IN LOGIN")
    assert time.monotonic() - start < 5
    assert caught.value.retryable and "the connection failed (" in str(caught.value)


class RedirectingKernel(RelayKernel):
    """The first connection bound is to a portal that redirects (0x0101) to ``to``, and
    closes the connection after its answer, as RFC 7143 §11.13.5 requires: the kernel
    reports ISCSI_ERR_TCP_CONN_CLOSE for it (iscsi_sw_tcp_state_change ->
    iscsi_conn_failure) right after the Login Response; the next one is to a target that
    logs in."""

    def __init__(self, to, status=0x0101):
        super().__init__(FakeTarget(TargetConfig(status=status, redirect_to=to)))
        self.binds = 0

    def answer(self, msg, raw):
        if msg["type"] == E.BIND_CONN:
            self.binds += 1
            if self.binds == 2:
                self.target = FakeTarget()
        out = super().answer(msg, raw)
        if msg["type"] == E.SEND_PDU and self.binds == 1:
            out.append(m.encode_message(E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=SID,
                                        r_cid=CID, r_error=1020))
        return out


def test_a_redirected_relogin_keeps_its_new_connection(tmp_path, portal):
    """The old connection's error, which the redirect brings, is not a failure of the new
    one: the recovery does not start over when it ends (it did, every Time2Wait, for ever:
    iscsid's __conn_error_handle ignores it in XPT_WAIT)."""
    with socket.socket() as moved:
        moved.bind(("127.0.0.1", 0))
        moved.listen(4)
        port = moved.getsockname()[1]
        kernel = RedirectingKernel(f"127.0.0.1:{port},1")
        session = relogin(tmp_path, portal, kernel, state="IN LOGIN", recovering=True)
    assert kernel.binds == 2 and session.current.port == port
    types = kernel.types()
    assert types.count(E.STOP_CONN) == 1 and types[-1] == E.START_CONN
    assert session.failed_again is None


@pytest.mark.parametrize("status, permanent", [(0x0101, False), (0x0102, True)])
def test_a_permanent_redirect_is_where_the_next_relogin_goes(tmp_path, portal, status,
                                                              permanent):
    """A relogin redirected permanently (0102) makes the new portal the session's failback,
    and the next relogin connects there first (iscsid's failback_saddr): the node's
    portal, closed by then, is not tried.  A temporary redirect (0101) is not kept."""
    with socket.socket() as moved:
        moved.bind(("127.0.0.1", 0))
        moved.listen(4)
        port = moved.getsockname()[1]
        session = relogin(tmp_path, portal, RedirectingKernel(f"127.0.0.1:{port},1", status))
        assert session.current == Portal("127.0.0.1", port, 1)
        assert session.failback == (session.current if permanent else None)
        if not permanent:
            return
        session.node.record["node.conn[0].port"] = "1"  # the old portal: nothing listens
        session.node = ks.NodeTarget.from_record(session.node.record)
        kernel = RelayKernel(FakeTarget())
        daemon = Daemon(str(tmp_path / "s2"), sysfs_root=str(tmp_path),
                        state_dir=str(tmp_path / "st2"), db_root=str(tmp_path),
                        config_root=str(tmp_path), autostart=False)
        daemon.sessions[SID] = session

        async def again():
            nl = AsyncIscsiNetlink(kernel.transport, timeout=0.3,
                                   event_callback=daemon._on_event)
            try:
                await ks.relogin(nl, 3, session)
            finally:
                nl.close()
        asyncio.run(again())
    assert kernel.types()[0] == E.BIND_CONN and kernel.types()[-1] == E.START_CONN
    assert session.current == session.failback


class CleaningUpKernel(RelayKernel):
    """The first BIND_CONN is answered -ENOTCONN in its retcode, as the kernel does while
    the connection's cleanup work is pending (open-iscsi #387); the rest as RelayKernel."""

    def __init__(self, target):
        super().__init__(target)
        self.binds = 0

    def answer(self, msg, raw):
        if msg["type"] == E.BIND_CONN:
            self.binds += 1
            if self.binds == 1:
                return [echo(raw, r_retcode=-errno.ENOTCONN)]
        return super().answer(msg, raw)


def test_a_bind_refused_while_the_kernel_cleans_up_is_flushed_and_made_again(tmp_path,
                                                                             portal):
    """BIND_CONN -ENOTCONN (the kernel's cleanup of the old connection pending): a
    STOP_CONN(RECOVER) flushes that work and the bind is made again, in the same attempt;
    not the attempt's failure, which cost a back-off and another connection."""
    target = FakeTarget()
    kernel = CleaningUpKernel(target)
    relogin(tmp_path, portal, kernel)
    types = kernel.types()
    assert types[:3] == [E.BIND_CONN, E.STOP_CONN, E.BIND_CONN]
    assert kernel.requests[1]["flag"] == StopConnFlag.RECOVER
    assert types[-1] == E.START_CONN and target.phase == "ffp"


def test_a_login_timeout_of_0_is_iscsids_30_s(tmp_path, portal):
    """node.conn[0].timeo.login_timeout = 0 is not "no time at all" (every attempt ended
    at its first wait): iscsid's __session_conn_create takes its default, 30 s; the
    NOP-Out timeout 0 beside an interval becomes 5 as well (the kernel would fail an idle
    connection at its first NOP-Out); both 0 stay 0 (no NOP-Outs, a boot login's)."""
    target = FakeTarget()
    session = relogin(tmp_path, portal, RelayKernel(target), login_timeout="0")
    assert target.phase == "ffp" and session.node.record[
        "node.conn[0].timeo.login_timeout"] == "30"
    timeo = "node.conn[0].timeo."
    assert ks.invalid_timeouts({timeo + "noop_out_interval": "5", timeo + "noop_out_timeout": "0",
                                timeo + "logout_timeout": "0"}) == {
        timeo + "noop_out_timeout": "5", timeo + "logout_timeout": "15"}
    assert ks.invalid_timeouts({timeo + "noop_out_interval": "0",
                                timeo + "noop_out_timeout": "10"}) == {
        timeo + "noop_out_interval": "5"}
    assert ks.invalid_timeouts({timeo + "noop_out_interval": "0",
                                timeo + "noop_out_timeout": "0"}) == {}


def test_a_login_pdu_refused_while_the_login_task_is_busy_is_sent_again(tmp_path, portal):
    """libiscsi passes a Login Response up before it frees the login task the next Login
    PDU needs; a PDU sent in between is refused with EPERM.  It is sent again, the same
    bytes, and the relogin completes (iscsid's would fail and start over).  The target
    answers in 64-byte pieces: every piece asks for another Login PDU."""
    target = FakeTarget(TargetConfig(login_segment=64))
    kernel = RelayKernel(target, busy=2)
    session = relogin(tmp_path, portal, kernel)
    assert target.phase == "ffp" and target.violations == [] and session.params is not None
    sends = [r["payload"] for r in kernel.requests if r["type"] == E.SEND_PDU]
    assert kernel.refused >= 2 and len(sends) == len(set(sends)) + kernel.refused
    assert kernel.types()[-1] == E.START_CONN


def test_a_login_task_that_stays_busy_fails_the_attempt(tmp_path, portal, monkeypatch):
    """The refusal outlasting LOGIN_TASK_BUSY_PAUSES is the kernel's answer: a retryable
    failure naming it, the connection stopped for the next attempt."""
    monkeypatch.setattr(ks, "LOGIN_TASK_BUSY_PAUSES", (0.001, 0.001))
    kernel = RelayKernel(FakeTarget(TargetConfig(login_segment=64)), busy=100)
    with pytest.raises(SessionError) as caught:
        relogin(tmp_path, portal, kernel)
    assert caught.value.retryable and "EPERM" in str(caught.value)
    assert kernel.refused == 3
    last = kernel.requests[-1]
    assert last["type"] == E.STOP_CONN and last["flag"] == StopConnFlag.RECOVER


@pytest.mark.parametrize("opcode, error, source, calls", [
    (0x03, errno.EPERM, "retcode", 3),   # Login: sent again until accepted
    (0x04, errno.EPERM, "retcode", 3),   # Text: the same task
    (0x06, errno.EPERM, "retcode", 1),   # Logout: a command task; EPERM is the session's state
    (0x03, errno.EINVAL, "retcode", 1),  # another refusal
    (0x03, errno.EPERM, "iferror", 1),   # no CAP_SYS_ADMIN
])
def test_only_a_login_or_text_pdu_refused_with_eperm_is_sent_again(opcode, error, source, calls):
    from iscsictl.netlink import IscsiKernelError

    seen = []

    class Netlink:
        async def send_pdu(self, handle, sid, cid, hdr, data):
            seen.append(hdr)
            if len(seen) < 3:
                raise IscsiKernelError(error, "SEND_PDU", source)

    hdr = bytes([opcode | 0x40]) + bytes(47)
    if calls == 1:
        with pytest.raises(IscsiKernelError):
            asyncio.run(ks._send_pdu(Netlink(), 3, SID, CID, hdr, b""))
    else:
        asyncio.run(ks._send_pdu(Netlink(), 3, SID, CID, hdr, b""))
    assert seen == [hdr] * calls


@pytest.mark.parametrize("dns, adopted", [("down", False), ("hung", False), ("down", True)])
def test_a_relogin_to_a_host_name_rides_out_a_resolver_that_fails(tmp_path, portal,
                                                                   monkeypatch, caplog, dns,
                                                                   adopted):
    """Each relogin looked the portal's host name up again, outside the login's timer: with
    the resolver down the session could not recover though its target was up, and a hung
    one held each attempt for the resolver's own timeout.  The lookup is now bounded by
    login_timeout, and when it fails the relogin connects to where the session's login
    went (an adopted session's: where sysfs says its connection is), said (iscsid
    reconnects to the address it resolved: session_conn_reopen)."""
    import time

    async def getaddrinfo(self, host, port, *args, **kwargs):
        assert host == "storage.example"
        if dns == "down":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        await asyncio.sleep(60)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    target = FakeTarget()
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="iscsictld"):
        session = relogin(tmp_path, portal, RelayKernel(target), login_timeout="1",
                          address="storage.example",  # an adopted one: where sysfs says
                          **({"current": "127.0.0.1"} if adopted else {"peer": "127.0.0.1"}))
    assert time.monotonic() - started < 30
    assert target.phase == "ffp" and session.tsih == TargetConfig().tsih
    why = "Temporary failure in name resolution" if dns == "down" else "no answer within 1 s"
    assert f"cannot resolve host name storage.example ({why}): connecting to its last " \
           "address, 127.0.0.1" in caplog.text


def test_a_host_name_is_looked_up_once_however_many_wait_for_it(monkeypatch):
    """A lookup is not cancelled when its waiter gives up, and each holds a thread of the
    loop's executor: one per relogin attempt of many sessions queued without end while DNS
    hung.  Those under way at once share one."""
    calls = []

    async def getaddrinfo(self, host, port, *args, **kwargs):
        calls.append(host)
        await asyncio.sleep(0.3)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)

    async def main():
        waits = [ks._resolve("storage.example", 3260, 0.05) for _ in range(20)]
        failed = await asyncio.gather(*waits, return_exceptions=True)
        known = {}
        found = await ks._resolve("storage.example", 3260, 5, known)
        return failed, found, known

    failed, found, known = asyncio.run(main())
    assert all(isinstance(e, SessionError) and e.code == 4 for e in failed)
    assert calls == ["storage.example"]  # the one under way, waited for again
    assert found[0][4] == ("192.0.2.7", 3260) and known[("storage.example", 3260)] == found


def test_a_link_local_address_keeps_its_zone_for_a_relogin_without_dns():
    """The answer kept for a relogin when the resolver fails is the address's own, its zone
    its scope id: a sockaddr of ``(fe80::1%lo, port, 0, 0)`` cannot be connected (EINVAL)."""
    node = ks.NodeTarget("iqn.2003-01.org.example:t", "storage.example", 3260, 1, "default",
                         "tcp", {})
    session = ks.KernelSession(sid=SID, host_no=9, cid=CID, node=node, isid=ISID.en(7, 1),
                               tsih=1, params=None, current=Portal("storage.example", 3260, 1),
                               peer_address="fe80::1%lo")
    ks._seed_resolved(session)
    (info,) = session.resolved[("storage.example", 3260)]
    assert info[0] == socket.AF_INET6 and info[4][3] == socket.if_nametoindex("lo")
    numeric = ks.KernelSession(sid=SID, host_no=9, cid=CID, node=ks.NodeTarget(
        "iqn.2003-01.org.example:t", "10.0.0.1", 3260, 1, "default", "tcp", {}),
        isid=None, tsih=1, params=None, current=Portal("10.0.0.1", 3260, 1))
    ks._seed_resolved(numeric)
    assert numeric.resolved == {}  # a numeric portal needs no resolver
