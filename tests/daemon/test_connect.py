"""The daemon's TCP connect (numeric addresses without a resolver, names with one)
and its iscsiadm-style failures, against real listeners on loopback."""

import asyncio
import os
import socket
import time

import pytest

from iscsictl.daemon.errors import SessionError
from iscsictl.daemon.kernel_session import connect
from iscsictl.daemon.params import (RELOGIN_ALWAYS, SESSION_OBJECT_PARAMS, ParamContext,
                                    negotiated_params, relogin_changes, session_params)
from iscsictl.protocol.negotiation import NegotiatedParameters


def test_a_link_local_address_with_a_zone_connects_through_that_interface():
    """``fe80::…%eth0`` (a record's, a redirect's): the sockaddr carries the interface's
    index, as iscsid's resolve_address has getaddrinfo fill it in.  It carried 0, the zone
    text ignored: connect(2) said EINVAL, and every login and relogin to such a portal
    failed.  A zone that names no interface is a retryable connect failure."""
    from iscsictl.daemon.kernel_session import _resolve

    [(family, _, _, _, sockaddr)] = asyncio.run(_resolve("fe80::1%lo", 3260))
    assert family == socket.AF_INET6
    assert sockaddr == ("fe80::1", 3260, 0, socket.if_nametoindex("lo"))
    with pytest.raises(SessionError) as e:
        asyncio.run(_resolve("fe80::1%nosuch0", 3260))
    assert (e.value.code, e.value.retryable, str(e.value)) == (
        8, True, "cannot make connection to fe80::1%nosuch0: no network interface nosuch0")
    # a zone on an address of no scope is refused by getaddrinfo whatever it names: said
    # as that, and not retried (it said "no network interface lo")
    with pytest.raises(SessionError) as e:
        asyncio.run(_resolve("fd00::10%lo", 3260))
    assert (e.value.code, e.value.retryable, str(e.value)) == (
        8, False, "cannot make connection to fd00::10%lo: a zone (%...) is for a link-local "
                  "address only, and fd00::10 is not one")


def test_out_of_descriptors_a_connect_is_a_retryable_connect_failure(monkeypatch):
    """socket() refused (EMFILE: logins to many portals at once under a low limit): a
    connect failure, 8 and retried, as iscsid's "cannot create TCP socket"; it escaped as
    an internal error (9), with a traceback, and the login was not retried."""
    import errno

    def no_fd(*args):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    async def go():  # the loop made first: it needs descriptors of its own
        with monkeypatch.context() as m:
            m.setattr(socket, "socket", no_fd)
            await connect("127.0.0.1", 3260, 1.0)

    with pytest.raises(SessionError) as e:
        asyncio.run(go())
    assert (e.value.code, e.value.retryable, str(e.value)) == (
        8, True, "cannot make connection to 127.0.0.1: cannot create a TCP socket: Too many "
                 "open files")


@pytest.mark.parametrize("family,host,address", [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
    (socket.AF_INET6, "::1", "::1"),
    (socket.AF_INET, "127.0.0.1", "localhost"),
])
def test_connects(family, host, address):
    srv = socket.socket(family)
    srv.bind((host, 0))
    srv.listen()

    async def go():
        s = await connect(address, srv.getsockname()[1], 2.0)
        try:
            assert s.getpeername()[1] == srv.getsockname()[1]
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            s.close()
    try:
        asyncio.run(go())
    finally:
        srv.close()


def test_refused_is_code_8_retryable():
    """iscsid reports a login whose connect fails as ISCSI_ERR_TRANS_TIMEOUT (8)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.close()  # nothing listens there now
    with pytest.raises(SessionError) as e:
        asyncio.run(connect("127.0.0.1", port, 2.0))
    assert e.value.code == 8 and e.value.retryable
    assert str(e.value) == "cannot make connection to 127.0.0.1: Connection refused"


def test_the_node_iface_binds_the_socket():
    """A node record's iface.net_ifacename binds the login's socket (SO_BINDTODEVICE); a
    device that cannot be bound fails as iscsid's login does (8, retryable) with iscsiadm's
    two messages."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    async def bound_to(iface):
        s = await connect("127.0.0.1", port, 2.0, iface=iface)
        try:
            return s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")
        finally:
            s.close()
    try:
        assert asyncio.run(bound_to({"iface.net_ifacename": "lo"})) == b"lo"
        assert asyncio.run(bound_to({"iface.net_ifacename": "default"})) == b""
        for iface, message in (
                ({"iface.net_ifacename": "nosuch0"}, "Could not bind connection 0 to nosuch0; "
                 "cannot make connection to 127.0.0.1: No such device"),
                ({"iface.ipaddress": "127.0.0.1"}, "Cannot bind 127.0.0.1 to net/scsi "
                 "interface. This is not supported with software iSCSI (iscsi_tcp).; cannot "
                 "make connection to 127.0.0.1: no network device to bind to")):
            with pytest.raises(SessionError) as e:
                asyncio.run(bound_to(iface))
            assert (e.value.code, e.value.retryable, str(e.value)) == (8, True, message)
    finally:
        srv.close()


def test_a_connect_that_hangs_times_out_as_code_8():
    """A listener whose accept queue is full drops the SYN (the connect hangs, as toward a
    host that does not answer): the connect ends at its timeout, 8 and retryable, and no
    socket is left open."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)  # one connection waits in the queue, the next is dropped
    port = srv.getsockname()[1]
    queued = []
    try:
        for _ in range(2):
            c = socket.socket()
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", port))
            except OSError:
                c.close()
                break
            queued.append(c)
        start = time.monotonic()
        with pytest.raises(SessionError) as e:
            asyncio.run(connect("127.0.0.1", port, 0.3))
        assert 0.25 < time.monotonic() - start < 3
        assert (e.value.code, e.value.retryable, str(e.value)) == (
            8, True, "cannot make connection to 127.0.0.1: timed out after 0.3 s")
    finally:
        for c in queued:
            c.close()
        srv.close()


def _login_to_a_silent_portal() -> tuple[SessionError, float, bytes]:
    """userspace_login of a node (login_timeout 1 s) whose portal accepts the connection
    and never answers: (the SessionError, the seconds it took, the first 48 bytes the
    portal got)."""
    from iscsictl.daemon import kernel_session as ks
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    node = ks.NodeTarget.from_record(with_defaults(NODE, {
        "node.name": "iqn.2001-04.com.example:silent", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": str(srv.getsockname()[1]), "node.tpgt": "1",
        "node.conn[0].timeo.login_timeout": "1"}))
    start = time.monotonic()
    try:
        with pytest.raises(SessionError) as e:
            asyncio.run(ks.userspace_login(node, "iqn.2001-04.com.example:i",
                                           ISID.random(0x123456, 1)))
        took = time.monotonic() - start
        conn, _ = srv.accept()  # the login's connection was made
        with conn:
            first = conn.recv(48)
    finally:
        srv.close()
    return e.value, took, first


def test_a_target_that_never_answers_the_login_times_out_as_code_11():
    """A portal that accepts the connection and never sends a Login Response: the login
    ends at node.conn[0].timeo.login_timeout, 11 (iscsid's iscsi_login_timedout in IN_LOGIN:
    ISCSI_ERR_PDU_TIMEOUT; 8 is a connect's) and retryable."""
    error, took, first = _login_to_a_silent_portal()
    assert first[0] & 0x3f == 0x03  # its Login Request sent
    assert (error.code, error.retryable, str(error)) == (
        11, True, "login timed out: no Login Response")
    assert 0.9 < took < 5


def test_the_connect_and_the_login_share_one_login_timer(monkeypatch):
    """login_timeout bounds the connect and the login together, as iscsid's one timer
    armed at iscsi_conn_connect (before: the login had its own whole timeout after a
    connect that took most of it, so up to twice login_timeout).  A connect of 0.6 s
    (a SYN sent again) and a target that never answers: over at 1 s, not 1.6 s."""
    from iscsictl.daemon import kernel_session as ks

    real_connect = ks.connect

    async def slow_connect(*args, **kwargs):
        await asyncio.sleep(0.6)
        return await real_connect(*args, **kwargs)
    monkeypatch.setattr(ks, "connect", slow_connect)
    error, took, _ = _login_to_a_silent_portal()
    assert (error.code, str(error)) == (11, "login timed out: not done within 1 s")
    assert 0.9 < took < 1.4


def test_incoming_chap_without_outgoing_is_code_7_before_any_connect():
    """-U/-W (or a record's *_in keys) without the initiator's own credentials: refused as
    iscsid refuses it, not logged in without CHAP (the target then unverified)."""
    from iscsictl.daemon.kernel_session import NodeTarget, userspace_login
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID

    node = NodeTarget.from_record(with_defaults(NODE, {
        "node.name": "iqn.2001-04.com.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "9", "node.tpgt": "1",
        "node.session.auth.username_in": "tgt", "node.session.auth.password_in": "x" * 12}))
    with pytest.raises(SessionError) as e:
        asyncio.run(userspace_login(node, "iqn.2001-04.com.example:i", ISID.random(0x123456, 1)))
    assert (e.value.code, e.value.retryable) == (7, False)
    assert "has no outgoing credentials configured" in str(e.value)


def test_unresolvable_name_is_code_4():
    with pytest.raises(SessionError) as e:
        asyncio.run(connect("no-such-host.invalid", 3260, 2.0))
    assert e.value.code == 4 and "cannot resolve host name no-such-host.invalid" in str(e.value)


@pytest.mark.parametrize("port", [0, -1, 70000])
def test_a_port_that_is_not_one_is_code_7(port):
    """A record handed over IPC is not checked by the DB: port 70000 made connect_ex raise
    OverflowError, which no handler took (no answer, the ISID kept)."""
    with pytest.raises(SessionError) as e:
        asyncio.run(connect("127.0.0.1", port, 1))
    assert e.value.code == 7 and f"port {port} is not 1..65535" in str(e.value)


def test_relogin_skips_only_the_session_object_parameters():
    rec = {"node.session.auth.username": "u", "node.session.auth.password": "p" * 12}
    ctx = ParamContext(record=rec, params=NegotiatedParameters(), initiator_name="iqn.x:i",
                       target_name="iqn.x:t", persistent_address="10.0.0.1", persistent_port=3260,
                       tpgt=1, iface="default", exp_statsn=5)
    full = dict(session_params(ctx))
    again = dict(session_params(ctx, relogin=True))
    assert set(full) - set(again) == SESSION_OBJECT_PARAMS & set(full)
    assert {p.name for p in again} >= {"PERSISTENT_ADDRESS", "PERSISTENT_PORT", "PING_TMO", "RECV_TMO"}


def test_a_firmware_records_boot_names_go_to_the_session_as_iscsids():
    """A record made from the firmware's table carries its names (``ibft``, ``ethernet0``,
    ``target0``): set after the initiator name, as iscsi_session_set_params, so that the
    session shows them (boot_root, boot_nic, boot_target in sysfs); other records send
    none; a relogin leaves them to the kernel's session."""
    from iscsictl.netlink import IscsiParam as P

    rec = {"node.session.boot_root": "ibft", "node.session.boot_nic": "ethernet0",
           "node.session.boot_target": "target0"}
    ctx = ParamContext(record=rec, params=NegotiatedParameters(), initiator_name="iqn.x:i",
                       target_name="iqn.x:t", persistent_address="10.0.0.1", persistent_port=3260,
                       tpgt=1, iface="default", exp_statsn=5)
    names = [p for p, _ in session_params(ctx)]
    assert names[names.index(P.INITIATOR_NAME):] == [
        P.INITIATOR_NAME, P.BOOT_ROOT, P.BOOT_NIC, P.BOOT_TARGET, P.DISCOVERY_SESS]
    assert [v for p, v in session_params(ctx) if p.name.startswith("BOOT_")] == [
        "ibft", "ethernet0", "target0"]
    assert not {P.BOOT_ROOT, P.BOOT_NIC} & {p for p, _ in session_params(ctx, relogin=True)}
    plain = ParamContext(**{**ctx.__dict__, "record": {}})
    assert not {p.name for p, _ in session_params(plain)} & {"BOOT_ROOT", "BOOT_NIC",
                                                             "BOOT_TARGET"}


def test_relogin_sends_the_digests_and_what_changed_only():
    from iscsictl.netlink import IscsiParam as P

    ctx = ParamContext(record={}, params=NegotiatedParameters(header_digest=True),
                       initiator_name="iqn.x:i", target_name="iqn.x:t",
                       persistent_address="10.0.0.1", persistent_port=3260, tpgt=1,
                       iface="default", exp_statsn=5)
    wanted = session_params(ctx, relogin=True) + negotiated_params(ctx)
    # adopted session: nothing known, everything goes
    assert relogin_changes(wanted, {}) == wanted
    # the kernel holds every value of the first login; ISID answered ENOSYS then
    held = {p: v for p, v in wanted} | {P.ISID: None}
    again = relogin_changes(wanted, held)
    assert {p for p, _ in again} == RELOGIN_ALWAYS
    assert dict(again)[P.HDRDGST_EN] == "1"
    # the target negotiates a different FirstBurstLength this time: it goes too
    ctx2 = ParamContext(**{**ctx.__dict__, "params": NegotiatedParameters(
        header_digest=True, first_burst_length=8192)})
    changed = relogin_changes(session_params(ctx2, relogin=True) + negotiated_params(ctx2), held)
    assert {p for p, _ in changed} == RELOGIN_ALWAYS | {P.FIRST_BURST}
    assert P.ISID not in {p for p, _ in changed}


def test_each_record_value_reaches_its_own_kernel_parameter():
    """Each timeout of the record goes to its own parameter, as iscsid's
    iscsi_session_set_params (distinct values: a swap shows; both NOP-Out keys default to
    5): noop_out_timeout is PING_TMO, noop_out_interval RECV_TMO.  Without ``ping_tmo`` in
    sysfs (an HBA sending its own NOP-Outs: nop False) neither goes; a parameter the
    transport answered ENOSYS to is not sent again at a relogin."""
    from iscsictl.netlink import IscsiParam as P

    rec = {"node.session.timeo.replacement_timeout": "121",
           "node.session.err_timeo.abort_timeout": "16",
           "node.session.err_timeo.lu_reset_timeout": "31",
           "node.session.err_timeo.tgt_reset_timeout": "32",
           "node.conn[0].timeo.noop_out_timeout": "7",
           "node.conn[0].timeo.noop_out_interval": "11"}
    ctx = ParamContext(record=rec, params=NegotiatedParameters(), initiator_name="iqn.x:i",
                       target_name="iqn.x:t", persistent_address="10.0.0.1", persistent_port=3260,
                       tpgt=1, iface="default", exp_statsn=5)
    sent = dict(session_params(ctx))
    assert {p: sent[p] for p in (P.SESS_RECOVERY_TMO, P.ABORT_TMO, P.LU_RESET_TMO,
                                 P.TGT_RESET_TMO, P.PING_TMO, P.RECV_TMO)} == {
        P.SESS_RECOVERY_TMO: "121", P.ABORT_TMO: "16", P.LU_RESET_TMO: "31",
        P.TGT_RESET_TMO: "32", P.PING_TMO: "7", P.RECV_TMO: "11"}
    no_nop = ParamContext(**{**ctx.__dict__, "nop": False})
    assert not {P.PING_TMO, P.RECV_TMO} & {p for p, _ in session_params(no_nop)}
    wanted = session_params(ctx, relogin=True)
    assert P.PING_TMO in dict(wanted)
    assert P.PING_TMO not in dict(relogin_changes(wanted, {P.PING_TMO: None}))
    assert P.PING_TMO in dict(relogin_changes(wanted, {P.PING_TMO: "5"}))


def test_iface_initiatorname_overrides_the_host_name():
    from iscsictl.transport.iface import iface_initiator_name

    assert iface_initiator_name({"iface.initiatorname": "iqn.2026-11.x:iface0"}) == "iqn.2026-11.x:iface0"
    assert iface_initiator_name({"iface.initiatorname": "<empty>"}) is None
    assert iface_initiator_name({}) is None


def _fake_target_portal(config):
    """A loopback listener whose connections the protocol's fake target answers; its port
    and a closer."""
    import threading

    from protocol.fake_target import FakeTarget, serve_socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            serve_socket(FakeTarget(config), conn)
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], srv.close


def _failed_login(record: dict, **target) -> SessionError:
    """The SessionError of a first login (userspace_login) with the node record's keys
    ``record`` against the fake target made with ``target`` (TargetConfig's fields)."""
    from iscsictl.daemon.kernel_session import NodeTarget, userspace_login
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID
    from protocol.fake_target import TargetConfig

    name = "iqn.2001-04.com.example:failing"
    port, close = _fake_target_portal(TargetConfig(name=name, **target))
    node = NodeTarget.from_record(with_defaults(NODE, {
        "node.name": name, "node.conn[0].address": "127.0.0.1", "node.conn[0].port": str(port),
        "node.tpgt": "1", **record}))
    try:
        with pytest.raises(SessionError) as e:
            asyncio.run(userspace_login(node, "iqn.2001-04.com.example:i",
                                        ISID.random(0x123456, 1)))
    finally:
        close()
    return e.value


@pytest.mark.parametrize("password_in, why", [
    ("wrong-target-12", "target failed mutual CHAP authentication"),
    ("secret-init-123", "the same CHAP secret is configured for both directions"),
])
def test_an_authentication_the_initiator_ends_is_19_not_retried(password_in, why):
    """The target's mutual proof wrong, or one secret both ways: iscsid's
    iscsi_recv_login_rsp takes the login's LOGIN_AUTHENTICATION_FAILED as
    ISCSI_ERR_FATAL_LOGIN, 19, and tries no more (24 is the target's refusal).  Before:
    24, and one secret both ways escaped as an internal error (9, a traceback)."""
    error = _failed_login({
        "node.session.auth.authmethod": "CHAP", "node.session.auth.username": "init",
        "node.session.auth.password": "secret-init-123", "node.session.auth.username_in": "tgt",
        "node.session.auth.password_in": password_in},
        chap_users={"init": b"secret-init-123"}, mutual=("tgt", b"right-target-12"))
    assert (error.code, error.retryable) == (19, False)
    assert why in str(error)


def test_a_short_chap_secret_is_warned_of_with_the_node_it_is_for(caplog):
    """The login machine's warning (RFC 7143 §12.1.3's 12 bytes) names the record, so that
    a daemon logging in many nodes says which one to fix.  Before, it named none."""
    caplog.set_level("WARNING")
    _failed_login({"node.session.auth.authmethod": "CHAP",
                   "node.session.auth.username": "init",
                   "node.session.auth.password": "short"},
                  chap_users={"init": b"another-secret"})
    warned = [r.getMessage() for r in caplog.records if "CHAP password" in r.getMessage()]
    assert len(warned) == 1 and "target: iqn.2001-04.com.example:failing, portal: 127.0.0.1," \
        in warned[0] and "CHAP password has 5 bytes" in warned[0], warned


@pytest.mark.parametrize("target, record, why", [
    ({"misbehave": {"reject_login"}}, {}, "target rejected our Login Request"),
    ({"misbehave": {"wrong_stage"}}, {}, "Login Response for stage"),
    ({"answer_overrides": {"HeaderDigest": "None"}},
     {"node.conn[0].iscsi.HeaderDigest": "CRC32C"}, "HeaderDigest"),
    ({"status": 0x0400}, {}, "unknown login status class 4"),
])
def test_a_login_that_breaks_the_rules_or_fails_negotiation_is_19_not_retried(
        target, record, why):
    """A Reject, a Login Response for the wrong stage, a required digest refused: iscsid's
    __login_response_status takes LOGIN_INVALID_PDU and LOGIN_NEGOTIATION_FAILED as
    CONN_LOGIN_FAILED (ISCSI_ERR_FATAL_LOGIN, 19) and tries no more; it was 5, retried
    initial_login_retry_max times with back-off (the discovery's path said 19).  A status
    class RFC 7143 does not define is __check_iscsi_status_class's CONN_LOGIN_FAILED too
    (where a discovery connects again)."""
    error = _failed_login(record, **target)
    assert (error.code, error.retryable) == (19, False), str(error)
    assert why in str(error)


@pytest.mark.parametrize("target, why", [
    ({"status": 0x0101}, "redirect (status class 1) without TargetAddress"),
    ({"status": 0x0102, "redirect_to": "[zz::1]:3260,1"}, "redirect to a bad TargetAddress"),
    ({"login_segment": 16384, "extra_answers": [("X-com.example.big", "x" * 9000)]},
     "exceeds"),
])
def test_a_redirect_without_a_usable_address_or_an_oversized_response_is_retried(target, why):
    """iscsid's LOGIN_REDIRECTION_FAILED and LOGIN_IO_ERROR: CONN_LOGIN_RETRY, 5 once the
    retries are spent, not 19 at once as a broken rule or a failed negotiation."""
    error = _failed_login({}, **target)
    assert (error.code, error.retryable) == (5, True), str(error)
    assert why in str(error)


def test_a_connection_reset_during_the_login_is_11_and_retried():
    """A reset (RST) while the Login Response is awaited: iscsid ignores the connection's
    error during a login and its login timer ends it (ISCSI_ERR_PDU_TIMEOUT), retried.  It
    escaped as an internal error (9), not retried, with a traceback in the daemon's log."""
    import struct

    from iscsictl.daemon.kernel_session import NodeTarget, userspace_login
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def reset():
        conn, _ = srv.accept()
        conn.recv(48)  # the Login Request's header: then a reset, no answer
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    import threading

    th = threading.Thread(target=reset, daemon=True)
    th.start()
    node = NodeTarget.from_record(with_defaults(NODE, {
        "node.name": "iqn.2001-04.com.example:reset", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": str(srv.getsockname()[1]), "node.tpgt": "1"}))
    try:
        with pytest.raises(SessionError) as e:
            asyncio.run(userspace_login(node, "iqn.2001-04.com.example:i",
                                        ISID.random(0x123456, 1)))
    finally:
        th.join(5)
        srv.close()
    assert (e.value.code, e.value.retryable) == (11, True)
    assert str(e.value).startswith("the connection failed during login: ")


def test_a_node_login_declares_the_initiator_alias_as_iscsid(tmp_path):
    """InitiatorAlias in every node login's first request, as iscsid's: initiatorname.iscsi's
    InitiatorAlias=, else the host's name (uname's nodename); it was never sent, so targets
    listed the host's sessions without its name."""
    import os

    from iscsictl.daemon import kernel_session as ks
    from iscsictl.db.config import initiator_alias
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE

    (tmp_path / "initiatorname.iscsi").write_text(
        "InitiatorName=iqn.2026-11.x:i\nInitiatorAlias=db-server-07\n")
    assert initiator_alias(str(tmp_path)) == "db-server-07"
    (tmp_path / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.x:i\n")
    assert initiator_alias(str(tmp_path)) == os.uname().nodename
    assert initiator_alias(str(tmp_path / "none")) == os.uname().nodename
    node = ks.NodeTarget.from_record(with_defaults(NODE, {
        "node.name": "iqn.2001-04.com.example:t", "node.conn[0].address": "127.0.0.1",
        "node.conn[0].port": "3260", "node.tpgt": "1"}), "db-server-07")
    assert ks.login_config(node, "iqn.2026-11.x:i").login_keys()[:3] == [
        ("InitiatorName", "iqn.2026-11.x:i"), ("InitiatorAlias", "db-server-07"),
        ("TargetName", "iqn.2001-04.com.example:t")]


@pytest.mark.parametrize("transport,negotiated,sent", [
    ("tcp", 3, "4"), ("tcp", 1, "1"), ("tcp", 8, "8"), ("tcp", 65535, "32768"),
    ("cxgb4i", 6, "8"), ("cxgb3i", 5, "8"), ("iser", 3, "3"), ("bnx2i", 3, "3"),
])
def test_max_r2t_is_a_power_of_two_where_the_driver_takes_no_other(transport, negotiated,
                                                                  sent):
    """libiscsi_tcp's iscsi_tcp_set_max_r2t (iscsi_tcp, cxgb3i, cxgb4i) refuses a
    MaxOutstandingR2T that is no power of two (it sizes a kfifo): such a negotiated value
    is given rounded up (a pool larger than the target fills); other drivers get it as it
    is.  Before, a login that negotiated 3 was refused at the handover, each time."""
    from iscsictl.netlink import IscsiParam as P

    ctx = ParamContext(record={}, params=NegotiatedParameters(max_outstanding_r2t=negotiated),
                       initiator_name="iqn.x:i", target_name="iqn.x:t",
                       persistent_address="10.0.0.1", persistent_port=3260, tpgt=1,
                       iface="default", exp_statsn=5, transport=transport)
    assert dict(negotiated_params(ctx))[P.MAX_R2T] == sent


@pytest.mark.parametrize("status, moved", [(0x0102, True), (0x0101, False)])
def test_a_first_login_reports_where_a_permanent_redirect_moved_the_target(status, moved):
    """userspace_login calls ``moved`` with the portal a permanent redirect (0102) names,
    where the session's relogins will go (iscsid's failback_saddr); a temporary one (0101)
    is not reported: its relogins go back to the node's portal."""
    from iscsictl.daemon.kernel_session import NodeTarget, userspace_login
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID
    from iscsictl.protocol.portal import Portal
    from protocol.fake_target import TargetConfig

    name = "iqn.2001-04.com.example:moved"
    there, close_there = _fake_target_portal(TargetConfig(name=name))
    here, close_here = _fake_target_portal(TargetConfig(
        name=name, status=status, redirect_to=f"127.0.0.1:{there},1"))
    node = NodeTarget.from_record(with_defaults(NODE, {
        "node.name": name, "node.conn[0].address": "127.0.0.1", "node.conn[0].port": str(here),
        "node.tpgt": "1"}))
    reported = []
    try:
        sock, _, portal = asyncio.run(userspace_login(
            node, "iqn.2001-04.com.example:i", ISID.random(0x123456, 1), moved=reported.append))
        sock.close()
    finally:
        close_here()
        close_there()
    assert portal == Portal("127.0.0.1", there, 1)
    assert reported == ([portal] if moved else [])


@pytest.mark.parametrize("status, retryable, code", [
    (0x0201, False, 24), (0x0202, False, 24), (0x0203, False, 19), (0x0300, True, 5)])
def test_a_rejected_logins_exit_code_is_iscsiadms(status, retryable, code):
    """Authentication failure (0201) and authorization failure (0202, "initiator failed
    authorization with target": an ACL denial) are 24, as iscsid's CONN_LOGIN_AUTH_FAILED;
    other initiator errors 19, target errors 5 (retried)."""
    from iscsictl.daemon.kernel_session import rejected_code
    from iscsictl.protocol.login import LoginRejected

    assert rejected_code(LoginRejected(status, retryable=retryable)) == code
