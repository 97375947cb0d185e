"""An iSER login's kernel requests (kernel_session.establish_ep) against a fake kernel that
answers as ib_iser on 6.1 does: the endpoint made and polled, the session bound to it, the
connection bound, and every way it can fail leaving nothing behind (the endpoint
disconnected while no connection holds it, the session torn down once one does).  The
login itself, relayed through the kernel, is a stand-in here; the real one, against LIO
over Soft-RoCE and beside iscsid, is the VM's
test_iscsiadm_flows.py::test_iser_login_io_recovery_logout_as_iscsid."""

import asyncio
import errno
import logging

import pytest

from fake_kernel import RecordingKernel, SyncKernel, echo, transport_in_sysfs
from iscsictl.daemon import kernel_session as ks
from iscsictl.daemon.errors import SessionError
from iscsictl.daemon.service import Daemon
from iscsictl.db import schema
from iscsictl.db.record import with_defaults
from iscsictl.netlink import AsyncIscsiNetlink, IscsiParam
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E
from iscsictl.protocol.constants import LoginStatus
from iscsictl.protocol.login import LoginRedirect, LoginRejected, LoginSuccess
from iscsictl.protocol.names import ISID
from iscsictl.protocol.negotiation import NegotiatedParameters
from iscsictl.protocol.portal import Portal
from test_handover import LaneNetlink
from test_relogin import SID, FakeTarget, RelayKernel, SilentTarget, TargetConfig

EP = 77


class IserKernel(RecordingKernel):
    """EP_CONNECT -> endpoint 77; EP_POLL connected from its ``up_after``-th poll on;
    CREATE_BOUND_SESSION -> sid 5 on host 9; ``fail``/``silent`` as RecordingKernel's."""

    def __init__(self, fail=None, up_after=2):
        super().__init__(fail)
        self.up_after, self.polls = up_after, 0

    def answer(self, msg, raw):
        t = msg["type"]
        if t == E.TRANSPORT_EP_CONNECT:
            return [echo(raw, r_handle=EP)]
        if t == E.TRANSPORT_EP_POLL:
            self.polls += 1
            return [echo(raw, r_retcode=int(self.polls >= self.up_after))]
        if t == E.CREATE_BOUND_SESSION:
            return [echo(raw, r_sid=5, r_host_no=9)]
        if t == E.CREATE_CONN:
            return [echo(raw, r_sid=msg["sid"], r_cid=0)]
        return [echo(raw, r_retcode=0)]

    def steps(self):
        """(request type, ep handle or sid) of each request but the polls and SET_PARAMs."""
        return [(r["type"], r.get("ep_handle", r.get("sid"))) for r in self.requests
                if r["type"] not in (E.TRANSPORT_EP_POLL, E.SET_PARAM)]


class SlowConnect(IserKernel):
    """IserKernel whose EP_CONNECT takes 0.5 s inside the kernel (bnx2i and be2iscsi wait
    there for their firmware)."""

    def answer(self, msg, raw):
        if msg["type"] == E.TRANSPORT_EP_CONNECT:
            import time
            time.sleep(0.5)
        return super().answer(msg, raw)


@pytest.mark.parametrize("how", ["relogin", "login"])
def test_a_login_cancelled_while_ep_connect_is_in_the_kernel_disconnects_its_endpoint(how):
    """A relogin cancelled (a logout of the recovering session) or a first login cancelled
    (the daemon stopping) while TRANSPORT_EP_CONNECT is inside the kernel: the endpoint the
    kernel answers with is disconnected, as iscsid never drops a handle it was given
    (before: forgotten, a firmware connection slot and the target's TCP connection kept)."""
    async def run():
        kernel = SlowConnect(up_after=1)
        nl = AsyncIscsiNetlink(kernel.transport, timeout=2,
                               lane_transport=lambda: SyncKernel(kernel))
        if how == "relogin":
            session = ks.KernelSession(
                sid=5, host_no=9, cid=0, node=iser_node(), isid=ISID.en(7, 1), tsih=1,
                params=None, current=Portal("10.77.0.1", 3260, 1),
                initiator_name="iqn.2026-11.org.example:i")
            task = asyncio.ensure_future(ks.relogin(nl, 3, session))
        else:
            task = asyncio.ensure_future(ks.establish_ep(
                nl, 3, iser_node(), "iqn.2026-11.org.example:i", ISID.en(7, 1)))
        await asyncio.sleep(0.1)  # EP_CONNECT in the kernel
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        nl.close()
        return kernel.steps()
    assert asyncio.run(run()) == [(E.TRANSPORT_EP_CONNECT, None),
                                  (E.TRANSPORT_EP_DISCONNECT, EP)]


def login(kernel, monkeypatch, outcomes=("ok",), login_timeout="2", address="10.77.0.1"):
    """ks.establish_ep for an iser node at 10.77.0.1:3260, its relayed login a stand-in
    answering each attempt with the next of ``outcomes`` (``ok``, ``rejected``, a Portal
    to redirect to, or ``("moved", Portal)`` to redirect to permanently); the session, and
    the sessions under login each attempt saw."""
    node = ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": address,
        "node.conn[0].port": "3260", "node.tpgt": "1", "iface.transport_name": "iser",
        "iface.iscsi_ifacename": "iser", "node.conn[0].timeo.login_timeout": login_timeout}))
    answers, seen, pending = iter(outcomes), [], {}

    async def relayed(nl, handle, session, cfg, issued, step, what="relogin", since=None):
        seen.append((dict(pending), session.ep, cfg.iser, what))
        outcome = next(answers)
        if isinstance(outcome, Portal):
            return LoginRedirect(outcome, permanent=False, status=0x0101)
        if isinstance(outcome, tuple):
            return LoginRedirect(outcome[1], permanent=True, status=0x0102)
        if outcome == "rejected":
            return LoginRejected(LoginStatus(0x0201), retryable=False)
        return LoginSuccess(NegotiatedParameters(rdma_extensions=True), b"\0" * 6, 7, 0, 1,
                            3, 4, 1, 32, {})

    monkeypatch.setattr(ks, "_relayed_login", relayed)
    nl = LaneNetlink(kernel)
    try:
        session = asyncio.run(ks.establish_ep(nl, 3, node, "iqn.2026-11.org.example:i",
                                              ISID.en(7, 1), logging_in=pending))
    finally:
        nl.knl.close()
        assert pending == {}  # the session is under login only while it logs in
    return session, seen


def test_the_kernel_makes_the_connection_and_the_login_goes_through_it(monkeypatch):
    kernel = IserKernel(up_after=3)
    session, seen = login(kernel, monkeypatch)
    assert kernel.steps() == [
        (E.TRANSPORT_EP_CONNECT, None), (E.CREATE_BOUND_SESSION, EP), (E.CREATE_CONN, 5),
        (E.BIND_CONN, 5), (E.START_CONN, 5)]
    assert kernel.polls == 3 and kernel.requests[1]["ep_handle"] == EP
    assert kernel.requests[0]["payload"][:8] == bytes([2, 0, 0x0c, 0xbc, 10, 77, 0, 1])
    bind = next(r for r in kernel.requests if r["type"] == E.BIND_CONN)
    assert (bind["transport_eph"], bind["is_leading"]) == (EP, 1)
    assert [s[1:] for s in seen] == [(EP, True, "login")]
    assert list(seen[0][0]) == [5]  # its RECV_PDUs find it while it logs in
    assert (session.sid, session.host_no, session.ep, session.conn_state) == \
        (5, 9, EP, "LOGGED IN")
    assert session.peer_address == "10.77.0.1"


def test_a_host_names_session_is_known_by_the_address_the_kernel_connected_to(monkeypatch):
    """The duplicate check finds a session whose record names its portal by host name
    under the address it connected to (SessionTable.by_address); a kernel-made
    connection's is the address EP_CONNECT was given (before: none, so a second record
    naming the same portal by address got a second session: two paths without
    multipath)."""
    from iscsictl.daemon.service import SessionTable
    from iscsictl.lexical import host_key

    session, _ = login(IserKernel(), monkeypatch, address="localhost")
    assert session.peer_address in ("127.0.0.1", "::1")
    table = SessionTable()
    table[session.sid] = session
    key = ("iqn.2003-01.org.example:t", host_key(session.peer_address), 3260, "iser")
    assert table.by_address(key) == [session]


@pytest.mark.parametrize("fail, code, steps", [
    ({E.TRANSPORT_EP_CONNECT: errno.ENETUNREACH}, 8, [(E.TRANSPORT_EP_CONNECT, None)]),
    ({E.TRANSPORT_EP_POLL: errno.ECONNREFUSED}, 8,
     [(E.TRANSPORT_EP_CONNECT, None), (E.TRANSPORT_EP_DISCONNECT, EP)]),
    ({E.CREATE_BOUND_SESSION: errno.ENODEV}, 9,
     [(E.TRANSPORT_EP_CONNECT, None), (E.CREATE_BOUND_SESSION, EP),
      (E.TRANSPORT_EP_DISCONNECT, EP)]),
    ({E.BIND_CONN: errno.EINVAL}, 9,
     [(E.TRANSPORT_EP_CONNECT, None), (E.CREATE_BOUND_SESSION, EP), (E.CREATE_CONN, 5),
      (E.BIND_CONN, 5), (E.TRANSPORT_EP_DISCONNECT, EP), (E.STOP_CONN, 5),
      (E.DESTROY_CONN, 5), (E.DESTROY_SESSION, 5)]),
], ids=["connect", "poll", "session", "bind"])
def test_a_failure_leaves_no_endpoint_and_no_session(monkeypatch, fail, code, steps):
    kernel = IserKernel(fail)
    with pytest.raises(SessionError) as e:
        login(kernel, monkeypatch)
    assert e.value.code == code and e.value.retryable == (code == 8)
    assert kernel.steps() == steps


def test_an_endpoint_that_never_comes_up_times_out_and_is_disconnected(monkeypatch):
    kernel = IserKernel(up_after=10 ** 9)
    with pytest.raises(SessionError) as e:
        login(kernel, monkeypatch, login_timeout="1")
    assert (e.value.code, str(e.value)) == (
        8, "cannot make connection to 10.77.0.1:3260: timed out after 1 s")
    assert kernel.steps() == [(E.TRANSPORT_EP_CONNECT, None), (E.TRANSPORT_EP_DISCONNECT, EP)]
    assert 5 < kernel.polls < 60  # 1 ms polls, backing off to 50 ms apart


def test_an_endpoint_whose_connection_fails_is_said_so(monkeypatch):
    """The driver's ep_poll answers -1 for a connection that failed (bnx2i, iSER): said as
    that, as iscsid's "cannot make a connection" (before: read as EPERM, "the kernel's
    connection takes no PDU now"), the endpoint disconnected, worth another attempt."""
    class Failing(IserKernel):
        def answer(self, msg, raw):
            if msg["type"] == E.TRANSPORT_EP_POLL:
                return [echo(raw, r_retcode=-1)]
            return super().answer(msg, raw)

    kernel = Failing()
    with pytest.raises(SessionError) as e:
        login(kernel, monkeypatch)
    assert (e.value.code, e.value.retryable, str(e.value)) == (
        8, True, "cannot make connection to 10.77.0.1:3260: the connection failed "
                 "(TRANSPORT_EP_POLL answered -1)")
    assert kernel.steps() == [(E.TRANSPORT_EP_CONNECT, None), (E.TRANSPORT_EP_DISCONNECT, EP)]


def test_a_rejected_login_is_torn_down_and_said(monkeypatch):
    kernel = IserKernel()
    with pytest.raises(SessionError) as e:
        login(kernel, monkeypatch, outcomes=("rejected",))
    assert (e.value.code, e.value.retryable) == (24, False)
    assert str(e.value) == "login rejected: initiator error - authentication failure (02/01)"
    assert kernel.steps()[-4:] == [(E.TRANSPORT_EP_DISCONNECT, EP), (E.STOP_CONN, 5),
                                   (E.DESTROY_CONN, 5), (E.DESTROY_SESSION, 5)]


def test_a_redirect_starts_over_at_the_new_portal(monkeypatch):
    kernel = IserKernel()
    session, seen = login(kernel, monkeypatch,
                          outcomes=(Portal("10.77.0.9", 3261, 2), "ok"))
    connects = [r["payload"][:8] for r in kernel.requests if r["type"] == E.TRANSPORT_EP_CONNECT]
    assert connects == [bytes([2, 0, 0x0c, 0xbc, 10, 77, 0, 1]),
                        bytes([2, 0, 0x0c, 0xbd, 10, 77, 0, 9])]
    assert kernel.steps().count((E.DESTROY_SESSION, 5)) == 1  # the redirected one's
    assert session.current == Portal("10.77.0.9", 3261, 2) and len(seen) == 2


def test_the_last_permanent_redirect_is_where_the_session_relogs_in(monkeypatch):
    """A permanent redirect (0102) then a temporary one: the session's failback, where its
    relogins go, is the portal the permanent one named (iscsid's failback_saddr); the
    temporary one's is only where this login went."""
    moved, visited = Portal("10.77.0.8", 3260, 1), Portal("10.77.0.9", 3261, 2)
    session, seen = login(IserKernel(), monkeypatch, outcomes=(("moved", moved), visited, "ok"))
    assert (session.failback, session.current, len(seen)) == (moved, visited, 3)
    session, _ = login(IserKernel(), monkeypatch, outcomes=(visited, "ok"))
    assert session.failback is None


def test_a_redirect_to_a_name_that_does_not_resolve_is_retryable_and_named(monkeypatch):
    """The kernel's connection to where a redirect sent the login cannot be made (a name
    that does not resolve): a retryable SessionError naming the redirect, as iscsid's
    LOGIN_REDIRECTION_FAILED (it was 4, not retryable: an automatic node given up)."""
    kernel = IserKernel()
    with pytest.raises(SessionError) as e:
        login(kernel, monkeypatch, outcomes=(Portal("no-such-host.invalid", 3260, 1), "ok"))
    assert e.value.retryable and e.value.code == 4
    assert str(e.value).endswith("(where 10.77.0.1:3260 redirected the login)"), e.value


# ---- the login relayed for real: the daemon's event routing and the fake target -----------
class IserRelayKernel(IserKernel):
    """IserKernel whose SEND_PDU goes to ``target`` and whose answers come back as
    KEVENT_RECV_PDU events (test_relogin.RelayKernel's relay); ``conn_error``: the
    kernel reports the connection failed (KEVENT_CONN_ERROR) after the first SEND_PDU;
    ``busy`` as RelayKernel's (Login/Text PDUs refused while the login task is busy)."""

    def __init__(self, target, conn_error=False, busy=0):
        super().__init__(up_after=1)
        self.relay, self.conn_error = RelayKernel(target, busy=busy), conn_error

    def answer(self, msg, raw):
        if msg["type"] == E.SEND_PDU:
            out = self.relay.answer(msg, raw)
            if self.conn_error:
                out.append(m.encode_message(E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=SID,
                                            r_cid=0, r_error=1011))
            return out
        return super().answer(msg, raw)


def iser_node(**values):
    return ks.NodeTarget.from_record(with_defaults(schema.NODE, {
        "node.name": TargetConfig().name, "node.conn[0].address": "10.77.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1", "iface.transport_name": "iser",
        "iface.iscsi_ifacename": "iser", "node.conn[0].timeo.login_timeout": "2", **values}))


def iser_target(**kw):
    values = dict(TargetConfig().values, RDMAExtensions="Yes")
    return FakeTarget(TargetConfig(values=values, extra_answers=[
        ("InitiatorRecvDataSegmentLength", "65536"), ("TargetRecvDataSegmentLength", "4096")],
        **kw))


def through_the_daemon(tmp_path, kernel, coro):
    """``coro(nl, daemon)`` run with the daemon routing the fake kernel's events."""
    daemon = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
                    db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)

    async def run():
        nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5, event_callback=daemon._on_event,
                               lane_transport=lambda: SyncKernel(kernel))  # the teardown's
        try:
            return await coro(nl, daemon)
        finally:
            nl.close()
    return asyncio.run(run()), daemon


def test_the_login_pdus_go_through_the_kernel_and_its_answers_reach_the_login(tmp_path):
    """The Login Responses come as RECV_PDU events of a session the daemon does not manage
    yet: its event routing hands them to the login under way.  The node record's
    parameters go before the login, the negotiated ones after it, as iscsid's
    (iscsi_session_set_params, then iscsi_session_set_neg_params); ib_iser's caps (0x89:
    no digests, no markers) leave out HDRDGST_EN, DATADGST_EN, IFMARKER_EN, OFMARKER_EN."""
    target = iser_target()
    kernel = IserRelayKernel(target)
    session, daemon = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.establish_ep(
        nl, 3, iser_node(), "iqn.2026-11.org.example:i", ISID.en(7, 1),
        logging_in=d._logging_in, caps=0x89))
    assert target.phase == "ffp" and target.violations == []
    types = kernel.types()
    sends = types.count(E.SEND_PDU)
    assert types[:5] == [E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_POLL, E.CREATE_BOUND_SESSION,
                         E.CREATE_CONN, E.BIND_CONN]
    first = types.index(E.SEND_PDU)
    before = [IscsiParam(r["param"]) for r in kernel.requests[5:first]]
    assert before == [IscsiParam.TARGET_NAME, IscsiParam.PERSISTENT_ADDRESS,
                      IscsiParam.PERSISTENT_PORT, IscsiParam.SESS_RECOVERY_TMO,
                      IscsiParam.FAST_ABORT, IscsiParam.ABORT_TMO, IscsiParam.LU_RESET_TMO,
                      IscsiParam.TGT_RESET_TMO, IscsiParam.PING_TMO, IscsiParam.RECV_TMO,
                      IscsiParam.IFACE_NAME, IscsiParam.INITIATOR_NAME,
                      IscsiParam.DISCOVERY_SESS]
    assert types[first:first + sends] == [E.SEND_PDU] * sends and types[-1] == E.START_CONN
    after = {IscsiParam(r["param"]) for r in kernel.requests[first + sends:-1]}
    assert not after & set(before) and IscsiParam.MAX_R2T in after
    assert not after & {IscsiParam.HDRDGST_EN, IscsiParam.DATADGST_EN, IscsiParam.IFMARKER_EN,
                        IscsiParam.OFMARKER_EN}
    p = session.params
    assert (p.rdma_extensions, p.max_recv_data_segment_length,
            p.max_xmit_data_segment_length) == (True, 65536, 4096)
    sets = {r["param"]: r["payload"] for r in kernel.requests if r["type"] == E.SET_PARAM}
    assert sets[IscsiParam.MAX_XMIT_DLENGTH] == b"4096\0"
    assert daemon._logging_in == {} and daemon.sessions == {}  # the caller adds it


def test_a_connection_error_during_the_login_ends_it_at_once(tmp_path):
    """The kernel reports the connection failed (and has disconnected its endpoint): the
    login ends without waiting for its timeout, 11 and retryable as a TCP login's failed
    connection (iscsid's login timer ends both with ISCSI_ERR_PDU_TIMEOUT; it said 8), and
    the teardown disconnects the endpoint all the same, as iscsid's session_conn_shutdown:
    the kernel holds it, and its handle, until then (iscsi_cleanup_conn_work_fn,
    iscsi_if_disconnect_bound_ep)."""
    kernel = IserRelayKernel(SilentTarget(), conn_error=True)

    async def attempt(nl, d):
        with pytest.raises(SessionError) as e:
            await ks.establish_ep(nl, 3, iser_node(), "iqn.2026-11.org.example:i",
                                  ISID.en(7, 1), logging_in=d._logging_in)
        return e.value
    error, daemon = through_the_daemon(tmp_path, kernel, attempt)
    assert (error.code, error.retryable, str(error)) == (
        11, True, "the connection failed during the login (ISCSI_ERR_CONN_FAILED: iSCSI "
                 "connection failed)")
    assert kernel.steps()[-4:] == [(E.TRANSPORT_EP_DISCONNECT, EP), (E.STOP_CONN, 5),
                                   (E.DESTROY_CONN, 5), (E.DESTROY_SESSION, 5)]
    assert daemon._logging_in == {}


def test_an_iser_relogin_binds_a_new_endpoint(tmp_path):
    """Connection recovery of an iSER session: a new endpoint (the kernel disconnected the
    old one when the connection failed), bound to the same sid/cid, the login relayed."""
    target = iser_target()
    kernel = IserRelayKernel(target)
    session = ks.KernelSession(sid=SID, host_no=9, cid=0, node=iser_node(), isid=ISID.en(7, 1),
                               tsih=0x0100, params=None, current=Portal("10.77.0.1", 3260, 1),
                               initiator_name="iqn.2026-11.org.example:i")

    async def recover(nl, d):
        d.sessions[SID] = session
        await ks.relogin(nl, 3, session)
    through_the_daemon(tmp_path, kernel, recover)
    assert target.phase == "ffp" and target.violations == []
    assert kernel.types()[:3] == [E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_POLL, E.BIND_CONN]
    bind = kernel.requests[2]
    assert (bind["sid"], bind["transport_eph"]) == (SID, EP) and session.ep == EP
    assert kernel.types()[-1] == E.START_CONN


def test_send_targets_runs_on_a_discovery_session_the_kernel_relays(tmp_path):
    """iscsiadm's discovery through an iSER iface (usr/discovery.c): a discovery session on
    the kernel's endpoint (cmds_max 32, queue depth 1), the Login, START_CONN, the Text
    exchange and the Logout through the kernel, then the endpoint, connection and session
    gone; the targets the answer names."""
    from iscsictl.protocol.config import LoginConfig

    target = FakeTarget(TargetConfig(targets=[
        ("iqn.2003-01.org.example:a", ["10.77.0.1:3260,1", "[fd00::1]:3261,2"]),
        ("iqn.2003-01.org.example:b", []),
        ("iqn.2003-01.org.example:c", ["10.77.0.1:3260,99999"])]))  # named, left out
    kernel = IserRelayKernel(target)
    cfg = LoginConfig(initiator_name="iqn.2026-11.org.example:i", session_type="Discovery")
    left_out: list[str] = []
    targets, daemon = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.77.0.1", 3260), cfg, ISID.en(7, 1), "iser", 2, d._logging_in,
        left_out=left_out))
    assert [(t.name, [(p.address, p.port, p.tpgt) for p in t.portals]) for t in targets] == [
        ("iqn.2003-01.org.example:a", [("10.77.0.1", 3260, 1), ("fd00::1", 3261, 2)]),
        ("iqn.2003-01.org.example:b", [("10.77.0.1", 3260, None)])]
    assert left_out == ["iqn.2003-01.org.example:c"]  # not gone for a rediscovery
    assert target.violations == [] and daemon._logging_in == {}
    create = next(r for r in kernel.requests if r["type"] == E.CREATE_BOUND_SESSION)
    assert (create["cmds_max"], create["queue_depth"], create["initial_cmdsn"]) == (32, 1, 1)
    steps = [t for t in kernel.types() if t not in (E.TRANSPORT_EP_POLL, E.SET_PARAM)]
    sends = steps.count(E.SEND_PDU)
    assert steps[:4] == [E.TRANSPORT_EP_CONNECT, E.CREATE_BOUND_SESSION, E.CREATE_CONN,
                         E.BIND_CONN]
    assert steps[4:] == [E.SEND_PDU] * (sends - 2) + [E.START_CONN, E.SEND_PDU, E.SEND_PDU,
                                                      E.TRANSPORT_EP_DISCONNECT, E.STOP_CONN,
                                                      E.DESTROY_CONN, E.DESTROY_SESSION]
    sets = {r["param"]: r["payload"] for r in kernel.requests if r["type"] == E.SET_PARAM}
    assert sets[IscsiParam.DISCOVERY_SESS] == b"1\0"
    # iscsid's zeroed discovery session (discovery.c iscsi_alloc_session): no NOP-Outs
    # (RFC 7143 §4.3), no recovery or error handling timers
    for param in (IscsiParam.SESS_RECOVERY_TMO, IscsiParam.FAST_ABORT, IscsiParam.ABORT_TMO,
                  IscsiParam.LU_RESET_TMO, IscsiParam.TGT_RESET_TMO, IscsiParam.PING_TMO,
                  IscsiParam.RECV_TMO):
        assert sets[param] == b"0\0", param


def test_a_target_without_an_address_gets_the_portal_asked_after_a_redirect(tmp_path):
    """A discovery redirected (0x0101) to another portal: a target the answer names without
    TargetAddress gets the portal the discovery asked, as iscsiadm's add_target_record
    gives it the discovery record's address (before: the redirected portal)."""
    from iscsictl.protocol.config import LoginConfig

    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:b", [])],
                                     status=0x0101, redirect_to="10.77.0.2:3262"))
    kernel = IserRelayKernel(target)
    cfg = LoginConfig(initiator_name="iqn.2026-11.org.example:i", session_type="Discovery")
    targets, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.77.0.1", 3260), cfg, ISID.en(7, 1), "iser", 2, d._logging_in))
    connects = [r for r in kernel.requests if r["type"] == E.TRANSPORT_EP_CONNECT]
    assert len(connects) == 2  # the redirect followed
    assert [(t.name, [(p.address, p.port, p.tpgt) for p in t.portals]) for t in targets] == [
        ("iqn.2003-01.org.example:b", [("10.77.0.1", 3260, None)])]


class ClosedAtLogout(IserRelayKernel):
    """IserRelayKernel whose connection fails when the Logout goes out: the target closed
    it (LIO closes a discovery connection at its Logout), its answer lost."""

    def answer(self, msg, raw):
        if msg["type"] == E.SEND_PDU and msg["payload"][0] & 0x3F == 0x06:
            self.transport.b.send(m.encode_message(  # an event: on the daemon's event socket
                E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=msg["sid"], r_cid=0, r_error=1011))
            return [echo(raw, r_retcode=0)]
        return super().answer(msg, raw)


def test_a_discovery_connection_closed_at_its_logout_is_said_so(tmp_path, caplog):
    """The connection fails at the Logout of a discovery session: the logout ends at once
    (not at its timeout), the targets are the answer's all the same, the log names the
    logout (not a login), and the endpoint the kernel holds is disconnected."""
    from iscsictl.protocol.config import LoginConfig

    kernel = ClosedAtLogout(FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", [])])))
    cfg = LoginConfig(initiator_name="iqn.2026-11.org.example:i", session_type="Discovery")
    with caplog.at_level(logging.INFO, logger="iscsictld"):
        targets, daemon = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
            nl, 3, Portal("10.77.0.1", 3260), cfg, ISID.en(7, 1), "iser", 2, d._logging_in))
    assert [t.name for t in targets] == ["iqn.2003-01.org.example:a"]
    said = [r.getMessage() for r in caplog.records]
    failed = "the connection failed during the logout (ISCSI_ERR_CONN_FAILED: iSCSI " \
             "connection failed)"
    assert said == ["session 5: connection error 1011 (ISCSI_ERR_CONN_FAILED: iSCSI connection "
                    "failed) during its logout", f"session 5: no clean Logout ({failed}); "
                    "tearing down"]
    assert kernel.steps()[-4:] == [(E.TRANSPORT_EP_DISCONNECT, EP), (E.STOP_CONN, 5),
                                   (E.DESTROY_CONN, 5), (E.DESTROY_SESSION, 5)]


def test_a_sendtargets_refused_while_the_login_task_is_busy_is_sent_again(tmp_path):
    """The Text PDU goes out on the login task the last Login Response may still hold
    (iscsiadm's discovery says "failed to send SendTargets PDU" then and starts over from
    the endpoint): refused once with EPERM, it is sent again and the discovery completes
    on the one session."""
    from iscsictl.protocol.config import LoginConfig

    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", [])]))
    kernel = IserRelayKernel(target, busy=1)
    cfg = LoginConfig(initiator_name="iqn.2026-11.org.example:i", session_type="Discovery")
    targets, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.77.0.1", 3260), cfg, ISID.en(7, 1), "iser", 2, d._logging_in))
    assert [t.name for t in targets] == ["iqn.2003-01.org.example:a"]
    assert kernel.relay.refused == 1 and target.violations == []
    sent = [r["payload"][0] & 0x3F for r in kernel.requests if r["type"] == E.SEND_PDU]
    assert sent == [0x03, 0x04, 0x04, 0x06]  # Login, Text refused, Text, Logout
    steps = kernel.types()
    assert steps.count(E.TRANSPORT_EP_CONNECT) == steps.count(E.CREATE_BOUND_SESSION) == 1


class DropsFirstConnection(IserRelayKernel):
    """The first connection the kernel makes fails right after BIND_CONN (the target or
    the fabric dropped it: KEVENT_CONN_ERROR), and the kernel answers as Linux 6.1 does
    for a failed connection: SET_PARAM refused ENOTCONN (iscsi_if_set_param), SEND_PDU
    with r.retcode -ENOTCONN (iscsi_if_transport_conn).  The second connection works."""

    def answer(self, msg, raw):
        from fake_kernel import if_error

        if self.types().count(E.TRANSPORT_EP_CONNECT) == 1:
            if msg["type"] == E.BIND_CONN:
                return [echo(raw, r_retcode=0), m.encode_message(
                    E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=msg["sid"], r_cid=0, r_error=1011)]
            if msg["type"] == E.SET_PARAM:
                return [if_error(raw, errno.ENOTCONN)]
            if msg["type"] == E.SEND_PDU:
                return [echo(raw, r_retcode=-errno.ENOTCONN)]
        return super().answer(msg, raw)


def test_a_connection_the_kernel_made_that_fails_during_the_login_is_tried_again(tmp_path):
    """That ENOTCONN is the attempt's end, not the kernel's refusal of the session: the
    login makes a new connection (node.session.initial_login_retry_max), as iscsid's
    iscsi_login_eh(ISCSI_ERR_LOGIN) and session_conn_reopen (before: 9, not retried)."""
    kernel = DropsFirstConnection(iser_target())
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    rec = {"node.name": "iqn.2003-01.org.example:disk1", "node.conn[0].address": "10.77.0.1",
           "node.conn[0].port": "3260", "node.tpgt": "1", "iface.transport_name": "iser",
           "iface.iscsi_ifacename": "iser", "node.conn[0].timeo.login_timeout": "2",
           "node.session.initial_login_retry_max": "4", "node.session.scan": "manual"}

    async def main():
        d.nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5, event_callback=d._on_event,
                                 lane_transport=lambda: SyncKernel(kernel))
        transport_in_sysfs(d.sysfs.root, "iser", 3)
        try:
            return await d.login([rec], "iqn.2026-11.org.example:i")
        finally:
            d.nl.close()
            d._scan_pool.shutdown(wait=False)
    result, = asyncio.run(main())
    assert result["ok"], result
    assert kernel.types().count(E.TRANSPORT_EP_CONNECT) == 2



class FailsAfterStart(IserRelayKernel):
    """IserRelayKernel whose connection fails at once after START_CONN: the kernel's
    KEVENT_CONN_ERROR in the same datagram as START_CONN's reply."""

    def answer(self, msg, raw):
        if msg["type"] == E.START_CONN:
            return [echo(raw, r_retcode=0), m.encode_message(
                E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=msg["sid"], r_cid=0, r_error=1011)]
        return super().answer(msg, raw)


def test_a_connection_error_with_the_first_logins_start_is_recovered(tmp_path, caplog):
    """A connection error the kernel reports right after START_CONN, before the login has
    ended, is the session's once it is managed: its recovery starts (before: it was
    logged as "during its login" and dropped, and the session stayed LOGGED IN here while
    the kernel's connection had failed, nothing recovering it)."""
    kernel = FailsAfterStart(iser_target())
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    rec = {"node.name": TargetConfig().name, "node.conn[0].address": "10.77.0.1",
           "node.conn[0].port": "3260", "node.tpgt": "1", "iface.transport_name": "iser",
           "iface.iscsi_ifacename": "iser", "node.conn[0].timeo.login_timeout": "2",
           "node.session.scan": "manual"}
    states = []

    async def main():
        d.nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5, event_callback=d._on_event,
                                 lane_transport=lambda: SyncKernel(kernel))
        transport_in_sysfs(d.sysfs.root, "iser", 3)
        try:
            result, = await d.login([rec], "iqn.2026-11.org.example:i")
            session = d.sessions.get(5)
            states.append((result["ok"], session is not None and session.conn_state,
                           session is not None and session.recovery is not None))
        finally:
            await d.close()
            d._scan_pool.shutdown(wait=False)
    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert states == [(True, "TRANSPORT WAIT", True)]
    assert "Kernel reported iSCSI connection 5:0 error (1011" in caplog.text
