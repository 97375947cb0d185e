"""Software iSCSI (iscsi_tcp), iSER (ib_iser) and offload HBA (cxgb4i, be2iscsi ...)
sessions against the kernel: log in, hand over, scan, log out, tear down.  The daemon's
only path to NETLINK_ISCSI sessions.

The shape was proven on Debian's 6.1 kernel with LIO
(/work/shared/reference/login-then-bind-experiment.md, runs 1-7): the first
login runs on *our own* TCP socket through the sans-I/O LoginMachine, reading
exactly each PDU (``LoginMachine.needed()``: every byte after the final Login
Response belongs to the kernel), then the socket is handed to the kernel::

    CREATE_SESSION(initial_cmdsn = the login's CmdSN) -> sid, host_no
        (sent once the TCP connection is up, so that the kernel builds the session
        and its SCSI host while the Login exchange is on the wire, as iscsid does;
        destroyed if the login fails)
    CREATE_CONN(sid, 0) -> cid
    BIND_CONN(sid, cid, transport_eph = our socket's fd, is_leading=1)
    SET_PARAM x N  (node settings, then negotiated values; ENOSYS tolerated
                    for ISID / IFMARKER_EN / OFMARKER_EN)
    START_CONN; then "- - -" into /sys/class/scsi_host/hostN/scan (started from
        the netlink lane as soon as START_CONN is answered)

This is as fast as the kernel-relayed login (60 ms to /dev/sda under TCG)
and keeps CHAP and redirects in the sans-I/O core.  After BIND the kernel
owns the connection: Logout goes through SEND_PDU and its response comes back
as RECV_PDU (the kernel stamps ITT, CmdSN and ExpStatSN).  Teardown:
UNBIND_SESSION (devices removed) -> Logout PDU (bounded by logout_timeout)
-> STOP_CONN(TERM) -> DESTROY_CONN -> DESTROY_SESSION(_ASYNC); the UNBIND and the last
three are jobs on a netlink lane, as the handover is, so that the sessions of a bulk logout
do not queue behind each other on the loop's socket.

iSER (:func:`establish_ep`, as iscsid's ktransport_ep_connect transports): the kernel
makes the connection (TRANSPORT_EP_CONNECT, EP_POLL until it is up), CREATE_BOUND_SESSION
on that endpoint, CREATE_CONN, BIND_CONN(the endpoint), the node record's SET_PARAMs (as
iscsid's session_conn_poll), the Login relayed through SEND_PDU / RECV_PDU as a relogin's
is, then the negotiated SET_PARAMs, and START_CONN once the kernel took them (:func:`_restart`).
A relogin binds a new endpoint; the endpoint is disconnected before the connection is
stopped while the daemon holds it (a connection error makes the kernel disconnect it).
The offload HBAs whose logins iscsid relays go the same way, their endpoints made through
the host the iface is bound to (TRANSPORT_EP_CONNECT_THROUGH_HOST: :func:`bind_host`);
each transport's part is a row of :mod:`iscsictl.kernel.transports`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import ipaddress
import logging
import os
import select
import socket
from collections.abc import Callable, Mapping, MutableSet, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from iscsictl.db.schema import iface_bound_by
from iscsictl.kernel.sysfs import Sysfs, read_attribute
from iscsictl.kernel.transports import TRANSPORTS, SetHostIp
from iscsictl.lexical import host_key, is_numeric_host
from iscsictl.netlink import (
    IscsiConnState,
    IscsiHostParam,
    IscsiKernelError,
    IscsiNetlink,
    IscsiNetlinkError,
    IscsiParam,
    NetlinkClosedError,
    StopConnFlag,
    run_through,
)
from iscsictl.protocol.chap import AuthenticationError
from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.constants import Opcode
from iscsictl.protocol.errors import DataSegmentTooLong, ISCSIProtocolError
from iscsictl.protocol.keys import KEYS
from iscsictl.protocol.login import (
    LoginMachine,
    LoginRedirect,
    LoginRedirectFailed,
    LoginRejected,
    LoginSuccess,
    LoginTimeout,
)
from iscsictl.protocol.names import ISID
from iscsictl.protocol.negotiation import NegotiatedParameters
from iscsictl.protocol.pdu import LogoutResponse, Reject
from iscsictl.protocol.portal import Portal
from iscsictl.transport.iface import BindError, bind_socket, iface_initiator_name

from .errors import SessionError
from .params import (OPTIONAL, SECRET_PARAMS, ParamContext, negotiated_params, relogin_changes,
                     session_params)

__all__ = ["KERNEL_CONNECTED", "KernelSession", "NodeTarget", "connect", "ep_connect",
           "ep_disconnect", "establish", "establish_ep", "logout", "force_teardown",
           "rejected_code", "release_connection", "relogin", "stop_conn_recover"]

log = logging.getLogger("iscsictld")

#: ``KernelSession.pdu_wanted`` of a relayed login: every PDU is the login machine's to judge
ANY_PDU: tuple[type, ...] = (object,)
#: transports whose connections the kernel makes (TRANSPORT_EP_CONNECT, then EP_POLL) and
#: whose logins go through them (relayed by SEND_PDU / RECV_PDU, or the HBA's own: qla4xxx):
#: iSER and the offload HBAs (iscsictl.kernel.transports)
KERNEL_CONNECTED = frozenset(t.name for t in TRANSPORTS.values() if t.kernel_connected)
#: bytes: the most a discovery session through the kernel's connection declares it receives
#: (MaxRecvDataSegmentLength): the kernel takes a Text Response's data into the
#: connection's one buffer of ISCSI_DEF_MAX_RECV_SEG_LEN (libiscsi's conn->data; ib_iser's
#: login buffer), a longer one fails the connection (libiscsi_tcp: "received buffer of len
#: %u but conn buffer is only %u"); iscsid caps it so (usr/initiator_common.c, for
#: CAP_TEXT_NEGO)
KERNEL_TEXT_MAX_RECV_DLENGTH = 8192
#: seconds between EP_POLLs (each asks the kernel to wait 1 ms, as iscsid's): doubling
EP_POLL_FIRST, EP_POLL_MAX = 0.002, 0.05
#: seconds between a Login or Text PDU's SEND_PDUs while the kernel refuses it with EPERM.
#: Both go out on the connection's one login task, which libiscsi frees only after it has
#: passed the previous Login/Text Response up (__iscsi_complete_pdu: iscsi_recv_pdu, then
#: iscsi_complete_task), so one sent as soon as that answer is read can find the task
#: still busy ("Login/Text in progress. Cannot start new task." in the kernel's log).
#: iscsiadm's discovery starts over then ("failed to send SendTargets PDU"), iscsid's
#: login fails and is retried; here the PDU is sent again, for 0.9 s at most
LOGIN_TASK_BUSY_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
_LOGIN_TASK_OPCODES = frozenset({Opcode.LOGIN_REQUEST, Opcode.TEXT_REQUEST})
#: CmdSN of the login and CREATE_SESSION's initial_cmdsn (the proven value)
INITIAL_CMDSN = 1
MAX_REDIRECTS = 5
#: seconds: the most Time2Wait a target may ask for (RFC 7143 §13.15's range for
#: DefaultTime2Wait; an Async Message's Parameter2 of 65535 would wait 18 hours)
MAX_TIME2WAIT = KEYS["DefaultTime2Wait"].high
#: seconds a logout waits, after DESTROY_SESSION_ASYNC, for the kernel's
#: KEVENT_DESTROY_SESSION (sent once the session, its host and its devices are removed:
#: scsi_transport_iscsi.c iscsi_free_session); kernels whose destroy work runs on their
#: one-at-a-time iscsi_destroy workqueue make the last of a mass logout wait for the others
DESTROY_TIMEOUT = 30.0
#: seconds between looks at sysfs while waiting for it: an event lost to a receive
#: buffer overrun (ENOBUFS) must not hold a logout for DESTROY_TIMEOUT
DESTROY_POLL = 0.25
#: seconds between looks at a session's ``target_state`` while a logout waits for the
#: kernel to remove its devices (UNBIND_SESSION's work: sd_shutdown's SYNCHRONIZE CACHE
#: has the target write its volatile cache), which has no time limit: as iscsid, which
#: sends the Logout only on KEVENT_UNBIND_SESSION; the look finds an unbind whose event the
#: kernel skipped (a session already UNBOUND, __iscsi_unbind_session) or an overrun lost
UNBIND_POLL = 0.5


#: the connection timeouts iscsid takes as not set when 0, and what it uses instead
#: (usr/initiator.c __session_conn_create; iscsi_settings.h DEF_LOGIN_TIMEO ...): 0 would
#: end every login at once, or have the kernel fail an idle connection at its first NOP-Out
_TIMEO = "node.conn[0].timeo."
_ZERO_TIMEOUTS = ((_TIMEO + "logout_timeout", None, "15"),
                  (_TIMEO + "login_timeout", None, "30"),
                  (_TIMEO + "noop_out_timeout", _TIMEO + "noop_out_interval", "5"),
                  (_TIMEO + "noop_out_interval", _TIMEO + "noop_out_timeout", "5"))


def invalid_timeouts(rec: Mapping[str, str]) -> dict[str, str]:
    """``{key: value iscsid uses}`` for the node.conn[0].timeo values of ``rec`` iscsid
    refuses: a login or logout timeout of 0, a NOP-Out interval or timeout of 0 when the
    other is set (both 0: no NOP-Outs, as a boot login's)."""
    out = {}
    for key, other, default in _ZERO_TIMEOUTS:
        if rec.get(key, "").strip() == "0" and (
                other is None or rec.get(other, default).strip() not in ("0", "")):
            out[key] = default
    return out


@dataclass(frozen=True)
class NodeTarget:
    """A node record's identity and settings (open-iscsi key -> value strings; the
    connection timeouts iscsid refuses replaced as it does: :func:`invalid_timeouts`)."""

    target: str
    address: str
    port: int
    tpgt: int
    iface: str
    transport: str
    record: Mapping[str, str] = field(repr=False, hash=False, compare=False, default_factory=dict)
    #: the InitiatorAlias its logins declare (the daemon's: db.config.initiator_alias)
    initiator_alias: str | None = field(default=None, repr=False, hash=False, compare=False)

    @classmethod
    def from_record(cls, rec: Mapping[str, str],
                    initiator_alias: str | None = None) -> NodeTarget:
        def num(key: str, default: int) -> int:
            try:
                return int(rec.get(key, default))
            except (TypeError, ValueError):
                return default
        return cls(
            target=rec["node.name"],
            address=rec["node.conn[0].address"],
            port=num("node.conn[0].port", 3260),
            tpgt=num("node.tpgt", -1),
            iface=rec.get("iface.iscsi_ifacename") or "default",
            transport=rec.get("iface.transport_name") or "tcp",
            record={**rec, **invalid_timeouts(rec)},
            initiator_alias=initiator_alias,
        )

    @functools.cached_property
    def key(self) -> tuple[str, str, int, str]:
        """What makes two logins the same node (target, portal, iface): the address in
        one form a host (:func:`iscsictl.lexical.host_key`: ``FD00::1`` is ``fd00::1``);
        made once (the record's fields do not change)."""
        return (self.target, host_key(self.address), self.port, self.iface)

    def describe(self) -> str:
        """iscsiadm's ``[iface: X, target: T, portal: A,P]``."""
        return f"[iface: {self.iface}, target: {self.target}, portal: {self.address},{self.port}]"


@dataclass
class KernelSession:
    """A session the kernel runs and the daemon manages."""

    sid: int
    host_no: int
    cid: int
    node: NodeTarget
    isid: ISID | None
    tsih: int
    params: NegotiatedParameters | None
    current: Portal
    conn_state: str = "LOGGED IN"  # iscsi_conn_state as iscsiadm prints it
    internal_state: str = "NO CHANGE"
    negotiated: dict[str, str] = field(default_factory=dict)
    adopted: bool = False
    initiator_name: str = ""
    #: Time2Wait (s) a target asked for (Async Message, Logout Response); used once
    time2wait_once: int | None = None
    recovery: asyncio.Task | None = field(default=None, repr=False)  # type: ignore[type-arg]
    recoveries: int = 0
    login_config: LoginConfig | None = field(default=None, repr=False)
    unbound: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: set by the daemon's event routing on a connection error during a logout: the
    #: teardown goes on at once (iscsid's __conn_error_handle with a logout under way)
    logout_conn_failed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: set by the daemon's event routing on KEVENT_DESTROY_SESSION during a logout
    destroyed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: the daemon's event routing resolves it with the next PDU from the kernel (RECV_PDU)
    #: that is one of ``pdu_wanted``; the others go on to its handler of target PDUs
    pdu_waiter: asyncio.Future | None = field(default=None, repr=False)  # type: ignore[type-arg]
    pdu_wanted: tuple[type, ...] = field(default=ANY_PDU, repr=False)
    #: what this daemon set on the kernel session (SET_PARAM), None where the
    #: transport answered ENOSYS; empty for an adopted session
    kernel_params: dict[int, str | None] = field(default_factory=dict, repr=False)
    #: the LUN scan :func:`establish` started with the session, until the daemon awaits it
    scanning: asyncio.Future | None = field(default=None, repr=False)  # type: ignore[type-arg]
    #: why the connection failed again while its recovery was logging in or finishing
    #: (the kernel reports an error once): the recovery starts over when it ends
    failed_again: str | None = field(default=None, repr=False)
    #: that last was the target's request for a Logout (AsyncEvent 1) on the connection,
    #: still up: the recovery started over sends it first (RFC 7143 §11.9.1)
    failed_again_logout: bool = field(default=False, repr=False)
    #: the logout under way: a second one waits for its result
    logging_out: asyncio.Future | None = field(default=None, repr=False)  # type: ignore[type-arg]
    #: the kernel endpoint (EP_CONNECT's handle) bound to the connection of an iSER
    #: session; None for tcp, for an adopted session, and once a connection error made the
    #: kernel disconnect it (its handle may then be another endpoint's)
    ep: int | None = field(default=None, repr=False)
    #: the address its connection went to (a host name's, resolved): the daemon's session
    #: table finds it by that too (SessionTable.by_address); None: ``current``'s
    peer_address: str | None = field(default=None, repr=False)
    #: (host name, port) -> getaddrinfo's last answers for its relogins' connections: used
    #: when the resolver fails (:func:`_resolve`); its login's connection seeds it
    resolved: dict[tuple[str, int], list[tuple[Any, ...]]] = field(default_factory=dict,
                                                                   repr=False)
    #: the offload HBA's host its endpoints go through (TRANSPORT_EP_CONNECT_THROUGH_HOST:
    #: the transport's bind_ep_required and an iface bound to a host); None: any
    bind_host: int | None = field(default=None, repr=False)
    #: where a permanent redirect (Login status 0102, RFC 7143 §11.13.5) moved the target:
    #: relogins start there (iscsid's failback_saddr); None: at the node's portal.  Kept in
    #: memory only, as iscsid does: a daemon restart forgets it
    failback: Portal | None = field(default=None, repr=False)
    #: the transport's CAP_* (``class/iscsi_transport/<name>/caps``; -1: every one): the
    #: parameters it has no capability for are not sent (params.NEEDS_CAP)
    caps: int = field(default=-1, repr=False)
    #: the kernel sends the NOP-Outs (its connection shows ``ping_tmo``): PING_TMO and
    #: RECV_TMO are sent
    nop: bool = field(default=True, repr=False)

    @property
    def time2wait(self) -> int:
        """Seconds to wait before reconnecting (RFC 7143 §7.1): the target's
        one-time request (:data:`MAX_TIME2WAIT` at most), else the negotiated
        DefaultTime2Wait (default 2)."""
        if self.time2wait_once is not None:
            return min(self.time2wait_once, MAX_TIME2WAIT)
        return self.params.default_time2wait if self.params else 2


def rejected_code(outcome: LoginRejected) -> int:
    """iscsiadm's exit code for a login status (usr/initiator.c)."""
    code = int(outcome.status)
    if code in (0x0201, 0x0202):
        return 24  # ISCSI_ERR_LOGIN_AUTH_FAILED
    if outcome.retryable:
        return 5  # ISCSI_ERR_LOGIN
    return 19  # ISCSI_ERR_FATAL_LOGIN


#: the lookups under way, by (host name, port): one each, whoever waits for it
_LOOKUPS: dict[tuple[str, int], asyncio.Future[list[tuple[Any, ...]]]] = {}


async def _lookup(address: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo(``address``, ``port``) in the loop's executor, one lookup under way for
    each name and port however many wait for it: a resolver that hangs holds a thread of
    the executor (the sysfs walks' too) per lookup, and a lookup is not cancelled when its
    waiter gives up (a timeout), so one for each relogin attempt of many sessions queued
    without end while DNS was down."""
    loop = asyncio.get_running_loop()
    key = (address, port)
    job = _LOOKUPS.get(key)
    if job is None or job.get_loop() is not loop:
        job = _LOOKUPS[key] = asyncio.ensure_future(
            loop.getaddrinfo(address, port, type=socket.SOCK_STREAM))

        def done(f: asyncio.Future[list[tuple[Any, ...]]]) -> None:
            if _LOOKUPS.get(key) is f:
                del _LOOKUPS[key]
            if not f.cancelled():
                f.exception()  # retrieved: its waiters may all have given up
        job.add_done_callback(done)
    return await asyncio.shield(job)


async def _resolve(address: str, port: int, timeout: float | None = None,
                   known: dict[tuple[str, int], list[tuple[Any, ...]]] | None = None,
                   ) -> list[tuple[Any, ...]]:
    """getaddrinfo's answers for a TCP connection to ``address:port`` (a numeric address
    without the resolver, which runs in a thread), within ``timeout`` s (the login's
    timer: a resolver that times out on its first server held a relogin past it).
    ``known``: a session's last answers by (name, port), kept there; when the resolver
    fails, the last answer is used (said), as iscsid reconnects to the address it resolved
    when it made the session (usr/initiator.c session_conn_reopen): a DNS outage must not
    keep a session from recovering.  SessionError 7 for a port that is not one, 4 for a
    host name that does not resolve."""
    if not 0 < port <= 65535:  # a record handed over IPC unchecked (connect_ex: OverflowError)
        raise SessionError(7, f"cannot connect to {address}: port {port} is not 1..65535")
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.version == 6 and "%" in address:  # a zone: its scope id, as iscsid's
            try:  # resolve_address has getaddrinfo fill in (numeric: no resolver)
                return socket.getaddrinfo(address, port, socket.AF_INET6, socket.SOCK_STREAM,
                                          0, socket.AI_NUMERICHOST)
            except socket.gaierror:  # a zone that names no interface (yet: retried), or
                if not (ip.is_link_local or ip.is_multicast):  # is on an address of no
                    raise SessionError(  # scope (getaddrinfo refuses it: never)
                        8, f"cannot make connection to {address}: a zone (%...) is for a "
                           f"link-local address only, and {ip} is not one") from None
                raise SessionError(8, f"cannot make connection to {address}: no network "
                                      f"interface {address.partition('%')[2]}",
                                   retryable=True) from None
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sockaddr = (address, port) if family == socket.AF_INET else (address, port, 0, 0)
        return [(family, socket.SOCK_STREAM, 0, "", sockaddr)]
    except ValueError:
        pass
    try:
        async with asyncio.timeout(timeout):
            infos = await _lookup(address, port)
    except socket.gaierror as exc:
        why = str(exc.strerror)
    except UnicodeError:  # the idna codec: an empty or over-long label
        why = "not a valid name"
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
    else:
        if known is not None:
            known[address, port] = infos
        return infos
    last = None if known is None else known.get((address, port))
    if last is None:
        raise SessionError(4, f"cannot resolve host name {address}: {why}")
    log.warning("cannot resolve host name %s (%s): connecting to its last address, %s",
                address, why, last[0][4][0])
    return last


async def connect(address: str, port: int, timeout: float, window_size: int = 0,
                  iface: Mapping[str, str] | None = None,
                  known: dict[tuple[str, int], list[tuple[Any, ...]]] | None = None,
                  ) -> socket.socket:
    """A connected non-blocking TCP socket (TCP_NODELAY; SO_RCVBUF/SO_SNDBUF
    = node.conn[0].tcp.window_size when set), bound to the network device ``iface``
    (open-iscsi iface keys: iface.hwaddress, iface.net_ifacename) names, if any.  A host
    name is resolved within ``timeout`` s, ``known`` as :func:`_resolve` keeps it.

    Raises:
        SessionError: 8 (refused, unreachable or timed out, or the iface's device cannot
            be bound; retryable: iscsid reports any failed connect of a login as
            ISCSI_ERR_TRANS_TIMEOUT, its login timer ending the XPT_WAIT state,
            usr/initiator.c), 4 (a host name that does not resolve), 7 (a port that is not
            one).
    """
    loop = asyncio.get_running_loop()
    infos = await _resolve(address, port, timeout, known)
    last: Exception | None = None
    for family, type_, proto, _, sockaddr in infos:
        try:  # out of descriptors (EMFILE, ENFILE) or memory: a connect failure, retried
            sock = socket.socket(family, type_, proto)  # (iscsid's "cannot create TCP
        except OSError as exc:  # socket", usr/io.c)
            raise SessionError(8, f"cannot make connection to {address}: cannot create a "
                               f"TCP socket: {exc.strerror or exc}", retryable=True) from None
        try:
            try:
                bind_socket(sock, iface, sockaddr[0])
            except BindError as exc:
                raise SessionError(8, "; ".join(exc.lines), retryable=True) from None
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if window_size:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window_size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, window_size)
            if not _connected_at_once(sock, sockaddr):
                async with asyncio.timeout(timeout):  # not wait_for: no task of its own
                    await loop.sock_connect(sock, sockaddr)
            return sock
        except asyncio.TimeoutError:
            sock.close()
            raise SessionError(8, f"cannot make connection to {address}: timed out after {timeout:g} s",
                               retryable=True) from None
        except OSError as exc:
            sock.close()
            last = exc
        except SessionError:
            sock.close()
            raise
    reason = os.strerror(last.errno) if isinstance(last, OSError) and last.errno else str(last)
    raise SessionError(8, f"cannot make connection to {address}: {reason}", retryable=True)


def _connected_at_once(sock: socket.socket, sockaddr: tuple) -> bool:
    """Start ``sock``'s (non-blocking) connect; True when it is already made, as on
    loopback, where the handshake completes inside connect(2) although it says EINPROGRESS
    (the event loop's wait cost 0.47 ms more in the idle VM).  False
    while it is in progress; OSError when it has failed (refused, unreachable)."""
    err = sock.connect_ex(sockaddr)
    if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY, errno.EINTR):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        if not poller.poll(0):
            return False
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))
    return True


def _timed_out(machine: LoginMachine, now: float) -> str:
    """Why ``machine``'s deadline passed: no Login Response in time, or the whole login
    not done within its total (the machine's own words)."""
    try:
        machine.check_timeout(max(now, machine.deadline or now))
    except LoginTimeout as exc:
        return str(exc).partition(": ")[2]
    return "no Login Response"


async def _login_on_socket(sock: socket.socket, machine: LoginMachine,
                           since: float | None = None) -> object:
    """The login on ``sock``; its outcome.  The connection failing meanwhile (a reset, a
    close, a send refused) is SessionError 11, retryable: iscsid ignores a connection
    error during a login ("let it timeout") and its login timer ends it with
    ISCSI_ERR_PDU_TIMEOUT."""
    try:
        return await _login_exchange(sock, machine, since)
    except OSError as exc:  # not the timeout: _login_exchange makes that a LoginTimeout
        raise SessionError(11, "the connection failed during login: "
                               f"{exc.strerror or exc}", retryable=True) from None


async def _login_exchange(sock: socket.socket, machine: LoginMachine,
                          since: float | None = None) -> object:
    loop = asyncio.get_running_loop()
    machine.start(loop.time(), since)
    await loop.sock_sendall(sock, machine.data_to_send())
    while True:
        assert machine.deadline is not None
        remaining = machine.deadline - loop.time()
        if remaining <= 0:
            machine.check_timeout(loop.time())
        try:
            async with asyncio.timeout(max(remaining, 0.001)):
                data = await loop.sock_recv(sock, machine.needed())
        except asyncio.TimeoutError:
            raise LoginTimeout(f"login timed out: {_timed_out(machine, loop.time())}") from None
        if not data:
            # iscsid lets its login timer end such a login (__conn_error_handle: "ignoring
            # conn error in login"): ISCSI_ERR_PDU_TIMEOUT; said here at once
            raise SessionError(11, "the target closed the connection during login",
                               retryable=True)
        outcome = machine.receive_data(data, loop.time())
        out = machine.data_to_send()
        if out:
            await loop.sock_sendall(sock, out)
        if outcome is not None:
            return outcome


def _redirect_failed(exc: BaseException, by: Portal | None) -> BaseException:
    """``exc``, a connection to where ``by`` (None: no redirect) sent the login that could
    not be made, as a SessionError that says so and may be retried: iscsid takes it as
    LOGIN_REDIRECTION_FAILED, a login to retry (a name that does not resolve during a DNS
    hiccup would otherwise end an automatic node's login for good)."""
    if by is None or not isinstance(exc, SessionError):
        return exc
    return SessionError(exc.code, f"{exc} (where {by.host_port()} redirected the login)",
                        retryable=True)


async def connect_node(node: NodeTarget, portal: Portal, timeout: float,
                       known: dict[tuple[str, int], list[tuple[Any, ...]]] | None = None,
                       ) -> socket.socket:
    """:func:`connect` to ``portal`` (the node's, or where a redirect sent it) with the
    node record's TCP window and iface binding; ``known``: :func:`_resolve`'s."""
    try:
        window = int(node.record.get("node.conn[0].tcp.window_size", 0))
    except ValueError:
        window = 0
    if not 0 <= window <= 0x7FFFFFFF:  # setsockopt's int (the record's C int holds no more)
        window = 0
    return await connect(portal.address, portal.port, timeout, window, node.record, known)


def login_config(node: NodeTarget, initiator_name: str) -> LoginConfig:
    """The login's settings from ``node``'s record (and its initiator alias), within its
    transport driver's limits (Transport.create_conn); SessionError 7 for a record no login
    can be made from (CHAP half set, no target name ...: LoginConfig's ValueError)."""
    try:
        cfg = LoginConfig.from_node(node.record, initiator_name,
                                    initiator_alias=node.initiator_alias)
    except ValueError as exc:
        raise SessionError(7, f"{node.describe()}: {exc}") from None
    t = TRANSPORTS.get(node.transport)
    return cfg if t is None else t.create_conn(cfg)


async def userspace_login(
    node: NodeTarget,
    initiator_name: str,
    isid: ISID,
    issued_challenges: MutableSet[bytes] | None = None,
    connected: Callable[[], None] | None = None,
    moved: Callable[[Portal], None] | None = None,
) -> tuple[socket.socket, LoginSuccess, Portal]:
    """Log in on our own socket, following redirects; ``connected()`` is called each time a
    TCP connection is up, before its first Login PDU, and ``moved(portal)`` at each
    permanent redirect (status 0102), with the portal it names.

    Returns: the socket (positioned right after the final Login Response),
    the login result and the portal actually used.
    Raises:
        SessionError with iscsiadm's code (4, 5, 8, 11 a login that timed out, 19, 24).
    """
    cfg = login_config(node, initiator_name)
    portal = Portal(node.address, node.port, node.tpgt)
    by: Portal | None = None  # the portal that redirected the login here
    for _ in range(MAX_REDIRECTS + 1):
        since = asyncio.get_running_loop().time()  # one timer, the connect's and the login's
        try:
            sock = await connect_node(node, portal, cfg.login_timeout)
        except SessionError as exc:
            raise _redirect_failed(exc, by) from None
        ok = False
        try:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: connected to %s from %s", node.describe(), portal.host_port(),
                          Portal(*sock.getsockname()[:2]).host_port())
            if connected is not None:
                connected()
            try:  # (the machine refuses some CHAP settings as it is made)
                machine = LoginMachine(cfg, isid=isid.to_bytes(), cmdsn=INITIAL_CMDSN,
                                       rng=os.urandom, issued_challenges=issued_challenges,
                                       warn=_warner(node))
                outcome = await _login_on_socket(sock, machine, since)
            except (LoginTimeout, ISCSIProtocolError) as exc:
                raise _login_failure(exc) from None
            if isinstance(outcome, LoginRedirect):
                log.info("login redirected to %s (%s)", outcome.portal,
                         "permanent" if outcome.permanent else "temporary")
                if outcome.permanent and moved is not None:
                    moved(outcome.portal)
                by, portal = portal, outcome.portal
                continue
            if isinstance(outcome, LoginRejected):
                raise SessionError(rejected_code(outcome), outcome.message,
                                   retryable=outcome.retryable)
            assert isinstance(outcome, LoginSuccess)
            ok = True
            return sock, outcome, portal
        finally:
            if not ok:
                sock.close()
    raise SessionError(5, f"login redirected more than {MAX_REDIRECTS} times")


def _held(params: list[tuple[int, str]], results: list) -> dict[int, str | None]:
    """What the kernel holds after a SET_PARAM batch, ``{param: value}`` with None for an
    OPTIONAL one it does not implement (ENOSYS/EINVAL: ISID, IFMARKER_EN, OFMARKER_EN on
    6.1).  The first refusal of a required one raises IscsiKernelError, its ``op`` naming
    the parameter and the value."""
    held: dict[int, str | None] = {}
    for (param, value), exc in zip(params, results):
        if exc is None:
            held[param] = value
        elif exc.errno in (errno.ENOSYS, errno.EINVAL) and param in OPTIONAL:
            held[param] = None
        else:  # named with its value: "SET_PARAM MAX_R2T=3: EINVAL"
            shown = "********" if param in SECRET_PARAMS else value
            raise IscsiKernelError(exc.errno, f"SET_PARAM {IscsiParam(param).name}={shown}",
                                   exc.source) from exc
    return held


class HandoverFailed(Exception):
    """A kernel step after CREATE_SESSION failed with ``cause``; ``sid`` must be torn down."""

    def __init__(self, cause: BaseException, sid: int) -> None:
        super().__init__(str(cause))
        self.cause, self.sid = cause, sid


def host_params(record: Mapping[str, str]) -> list[tuple[int, str]]:
    """What iscsid's iscsi_host_set_params sets on a session's SCSI host (shown by ``-m
    session -P 3`` and ``-m host``): the iface's net_ifacename and hwaddress, when set."""
    out = []
    for param, key in ((IscsiHostParam.NETDEV_NAME, "iface.net_ifacename"),
                       (IscsiHostParam.HWADDRESS, "iface.hwaddress")):
        value = record.get(key)
        if value not in (None, "", "<empty>"):
            out.append((param, str(value)))
    return out


def _login_offload(node: NodeTarget) -> bool:
    """Whether ``node``'s transport's HBA logs in itself (Transport.login_offload)."""
    t = TRANSPORTS.get(node.transport)
    return t is not None and t.login_offload


def bind_host(sysfs: Sysfs, record: Mapping[str, str]) -> int | None:
    """The host a login through ``record``'s iface must go through (usr/initiator.c
    __session_create): for a transport whose endpoints need one (``bind_ep_required``:
    the offload HBAs), the host the iface is bound to by hwaddress, net_ifacename or
    ipaddress; None when the transport needs none or the iface names none (then any host
    the kernel picks: plain TRANSPORT_EP_CONNECT, as iscsid).

    Raises:
        SessionError: 23 (ISCSI_ERR_HOST_NOT_FOUND) when the iface names a host that is
            not there.
    """
    t = TRANSPORTS.get(record.get("iface.transport_name") or "tcp")
    if t is None or not t.bind_ep_required:
        return None
    named = iface_bound_by(record)
    if not named:
        return None
    host_no = sysfs.bound_host(record)
    if host_no is None:
        key, value = next(iter(named.items()))
        raise SessionError(23, f"no {t.name} host has the {key.partition('.')[2]} {value} of "
                               f"iface {record.get('iface.iscsi_ifacename') or 'default'}")
    return host_no


async def _set_host_params(nl, handle: int, host_no: int,  # type: ignore[no-untyped-def]
                           params: Sequence[tuple[int, str]]) -> None:
    """SET_HOST_PARAM of each of ``params`` on host ``host_no``, as iscsid's host_set_param:
    a driver that sets no such value (ENOSYS, EINVAL) is passed over; another refusal
    raises IscsiKernelError."""
    for param, value in params:
        try:
            await nl.set_host_param(handle, host_no, param, value)
        except IscsiKernelError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EINVAL):
                raise
            log.debug("host%d does not take %s (%s)", host_no, IscsiHostParam(param).name,
                      exc)


#: seconds between iscsiuio's GET_IFACE requests while the HBA's network is not up (iscsid
#: tries the login again a second later: usr/initiator.c queue_session_login_task_retry)
UIP_RETRY_PAUSE = 1.0


def uip_record(sysfs: Sysfs, record: Mapping[str, str],
               host_no: int | None) -> Mapping[str, str]:
    """``record`` as iscsiuio is to see it, for a transport whose network iscsiuio sets up
    (bnx2i, qedi): its ``iface.net_ifacename`` filled from host ``host_no``'s sysfs
    ``netdev`` when it names none (usr/initiator_common.c iscsi_set_net_config: "uip
    needs the netdev name"); ``record`` itself for any other transport.

    Raises:
        SessionError: 23 (ISCSI_ERR_HOST_NOT_FOUND) when the iface names no host
            (``host_no`` None: iscsid finds none by iscsi_sysfs_get_host_no_from_hwinfo).
    """
    t = TRANSPORTS.get(record.get("iface.transport_name") or "tcp")
    if t is None or not t.iscsiuio:
        return record
    name = record.get("iface.iscsi_ifacename") or t.name
    if host_no is None:
        raise SessionError(23, f"iface {name} names no {t.name} host: bind it to the HBA's "
                               "port by its iface.hwaddress (iscsiuio sets up that port)")
    from iscsictl.kernel.iscsiuio import with_host_netdev

    filled = with_host_netdev(record, sysfs, host_no)
    if filled is None:
        raise SessionError(23, f"host{host_no} of iface {name} shows no netdev for iscsiuio")
    return filled


def _ifup(netdev: str) -> None:
    """Bring ``netdev`` up, as iscsid's net_ifup_netdev (IFF_UP); a failure is logged, as
    iscsid's "Could not brining up netdev" warning, and the login goes on."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=netdev)
            if not found:
                raise NetlinkError(errno.ENODEV, "no such device")
            ipr.link("set", index=found[0], state="up")
    except (NetlinkError, OSError) as exc:
        why = os.strerror(exc.code) if isinstance(exc, NetlinkError) else exc.strerror
        log.warning("Could not bring up netdev %s (%s). Try running 'ifup %s' first if "
                    "login fails.", netdev, why or exc, netdev)


async def uip_net_config(record: Mapping[str, str], tries: int = 1) -> None:
    """iscsid's iscsi_set_net_config for a transport whose network iscsiuio sets up
    (``Transport.iscsiuio``; nothing for any other): ISCSID_UIP_IPC_GET_IFACE with the
    iface ``record`` (:func:`uip_record`'s), asked again :data:`UIP_RETRY_PAUSE` s apart,
    up to ``tries`` times, until iscsiuio answers that the HBA's network is up.  Sent
    before each connect: a relogin's too ("uIP will need to be re-triggered on the
    connection re-open", usr/initiator.c).

    Raises:
        SessionError: 5 when iscsiuio is not running (iscsid: ISCSI_ERR_LOGIN); 23 when
            its network is still not up after ``tries`` (iscsid gives
            ISCSI_ERR_HOST_NOT_FOUND after node.conn[0].timeo.login_timeout retries: not
            retryable, the first login's initial_login_retry_max attempts do not multiply
            them; a relogin goes on as its recovery does).
    """
    from iscsictl.kernel import iscsiuio

    t = TRANSPORTS.get(record.get("iface.transport_name") or "tcp")
    if t is None or not t.iscsiuio:
        return
    request = iscsiuio.get_iface_request(record)
    netdev = record.get("iface.net_ifacename")
    why = ""
    for attempt in range(max(1, tries)):
        if attempt:
            await asyncio.sleep(UIP_RETRY_PAUSE)
        try:
            answer = await asyncio.to_thread(iscsiuio.exchange, request,
                                             iscsiuio.GET_IFACE_TIMEOUT)
        except iscsiuio.UipNotRunning as exc:
            raise SessionError(5, f"{exc.strerror}; transport {t.name} needs it to set up "
                                  f"{netdev} (start it: systemctl start iscsiuio)") from None
        except iscsiuio.UipError as exc:
            why = exc.strerror
            continue
        if answer.device_up:
            return
        why = "still initializing" if answer.initializing else f"its answer: {answer.said}"
        log.debug("iscsiuio: %s not ready (%s)", netdev, why)
    raise SessionError(23, f"iscsiuio has not brought up {netdev} for iface "
                           f"{record.get('iface.iscsi_ifacename') or t.name}: {why}")


async def host_net_setup(nl, handle: int, host_no: int,  # type: ignore[no-untyped-def]
                         record: Mapping[str, str], tries: int = 1) -> None:
    """iscsid's iscsi_host_set_net_params on host ``host_no`` before a login or a
    discovery through it, for a transport with ``set_host_ip`` (cxgb3i, bnx2i, qedi): an
    iface without ``iface.ipaddress`` refused where the transport requires one (bnx2i,
    qedi) and passed where it is optional (cxgb3i); else the iface's net device brought
    up (not qedi's, which has none; bnx2i's is the host's, :func:`uip_record`; iscsid
    brings up a cxgb3i host's own when the iface names none), iscsiuio's network set up
    (:func:`uip_net_config`, ``tries``), and the host given the iface's ipaddress,
    net_ifacename and hwaddress (:func:`host_net_params`).

    Raises:
        SessionError: 5 for an iface without the address its transport requires, and as
            :func:`uip_net_config`; 9 when the kernel refuses a host parameter.
    """
    t = TRANSPORTS.get(record.get("iface.transport_name") or "tcp")
    if t is None or t.set_host_ip is SetHostIp.NOT_REQ:
        return
    if "iface.ipaddress" not in iface_bound_by(record):
        if t.set_host_ip is SetHostIp.REQ:
            raise SessionError(5, "Please set the iface.ipaddress for iface "
                                  f"{record.get('iface.iscsi_ifacename') or t.name}, then "
                                  "retry the login command.")
        return
    netdev = iface_bound_by(record).get("iface.net_ifacename")
    if netdev and not t.no_netdev:
        await asyncio.to_thread(_ifup, netdev)
    await uip_net_config(record, tries)
    try:
        await _set_host_params(nl, handle, host_no, host_net_params(record))
    except IscsiNetlinkError as exc:
        raise _kernel_failure(exc) from None


def host_net_params(record: Mapping[str, str]) -> list[tuple[int, str]]:
    """What iscsid's iscsi_host_set_net_params sets on an HBA's host before it connects,
    for a transport whose ``set_host_ip`` is not NOT_REQ (cxgb3i): the iface's ipaddress,
    and its net_ifacename and hwaddress when it is bound by them; [] when the iface has no
    address (the optional case; a required one is the caller's to refuse)."""
    t = TRANSPORTS.get(record.get("iface.transport_name") or "tcp")
    values = iface_bound_by(record)
    if t is None or t.set_host_ip is SetHostIp.NOT_REQ or "iface.ipaddress" not in values:
        return []
    keys = ((IscsiHostParam.IPADDRESS, "iface.ipaddress"),
            (IscsiHostParam.NETDEV_NAME, "iface.net_ifacename"),
            (IscsiHostParam.HWADDRESS, "iface.hwaddress"))
    return [(param, values[key]) for param, key in keys if key in values]


#: The nice of a workqueue's rescuer thread, which the kernel sets itself
#: (kernel/workqueue.c RESCUER_NICE_LEVEL, MIN_NICE): iscsi_q_<host>'s when nothing else
#: does, and Debian's node.session.xmit_thread_priority.
RESCUER_NICE = -20


def xmit_priority(record: Mapping[str, str]) -> int | None:
    """node.session.xmit_thread_priority as a nice value to set (clamped to -20..19, as
    setpriority(2) clamps it), or None when there is nothing to do: the kernel's own
    :data:`RESCUER_NICE`, or no number."""
    try:
        nice = min(max(int(record.get("node.session.xmit_thread_priority", RESCUER_NICE)),
                       -20), 19)
    except (TypeError, ValueError):
        return None
    return None if nice == RESCUER_NICE else nice


def set_xmit_priority(host_no: int, nice: int, proc: str = "/proc") -> bool:
    """Give the transmit workqueue thread of SCSI host ``host_no`` (``iscsi_q_<host_no>``,
    iscsi_tcp's; found by its name in ``/proc/<pid>/comm``) the nice value ``nice``, as
    open-iscsi 2.1.8's session_increase_wq_priority does when it creates a session.  False,
    with iscsid's warning, when there is no such thread or it cannot be set."""
    name = f"iscsi_q_{host_no}\n"
    try:
        pids = [p for p in os.listdir(proc) if p.isascii() and p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        try:
            with open(f"{proc}/{pid}/comm") as f:
                if f.read() != name:
                    continue
            os.setpriority(os.PRIO_PROCESS, int(pid), nice)
            log.debug("host%d: iscsi_q_%d (pid %s) set to nice %d", host_no, host_no, pid, nice)
            return True
        except OSError:
            continue
    log.warning("Could not set host%d's priority (xmit_thread_priority %d). READ/WRITE "
                "throughput and latency could be affected.", host_no, nice)
    return False


#: Starts a LUN scan of a SCSI host (its number) and returns the scan's future.
ScanStarter = Callable[[int], concurrent.futures.Future]


def _hand_over(knl, handle: int, initial_cmdsn: int, cmds_max: int, queue_depth: int,  # type: ignore[no-untyped-def]
               fd: int, params: list[tuple[int, str]], host: Sequence[tuple[int, str]] = (),
               ids: Any = None, scan: ScanStarter | None = None, nice: int | None = None):
    """The kernel's side of a login, blocking, on the netlink lane (``knl``: IscsiNetlink):
    CREATE_SESSION (initial_cmdsn = the login's CmdSN; skipped when ``ids``, the
    SessionIds of a session created already, are given), then in one datagram CREATE_CONN,
    BIND_CONN(fd), the SET_PARAMs, the SET_HOST_PARAMs (``host``), START_CONN; then
    ``scan(host_no)`` once the session runs (the LUN scan starts here, on the lane, not
    after a turn of the event loop), and ``nice`` given to the host's transmit thread
    (:func:`set_xmit_priority`; None: left as it is).  Returns (SessionIds, cid, held
    params, the scan's future or None: no ``scan``, or it could not start); raises what
    CREATE_SESSION raises, or :class:`HandoverFailed` for a later step (the first refusal
    in the kernel's order; the session is to be torn down, started or not).  A refused
    host parameter is logged only: it names the host's device for listings, the session
    does not need it."""
    if ids is None:
        ids = knl.create_session(handle, initial_cmdsn, cmds_max, queue_depth)
    cid = 0  # iscsi_tcp's conn gets the index asked for (iscsi_conn_setup's conn_idx)
    try:
        got_cid, bound, *rest, started = knl.create_and_start_conn(
            handle, ids.sid, cid, fd, params, host_no=ids.host_no, host_params=host)
        set_results = rest[:len(params)]
        for (param, _), result in zip(host, rest[len(params):]):
            if isinstance(result, Exception):
                log.warning("session %d: host%d refused %s: %s", ids.sid, ids.host_no,
                            IscsiHostParam(param).name, result)
        for result in (got_cid, bound):
            if isinstance(result, Exception):
                raise result
        if got_cid != cid:
            raise IscsiKernelError(errno.EPROTO, "CREATE_CONN", "retcode")  # not the cid asked
        held = _held(params, set_results)
        if isinstance(started, Exception):
            raise started
    except Exception as exc:
        raise HandoverFailed(exc, ids.sid) from exc
    scanning = None
    if scan is not None:
        try:
            scanning = scan(ids.host_no)
        except Exception as exc:  # noqa: BLE001 - e.g. the pool is shut down; the caller scans
            log.debug("session %d: the LUN scan did not start on the lane: %s", ids.sid, exc)
    if nice is not None:
        set_xmit_priority(ids.host_no, nice)
    return ids, cid, held, scanning


async def _to_the_end(job: "asyncio.Future[Any]") -> "tuple[asyncio.Future[Any], bool]":
    """Await ``job`` to its end even if this task is cancelled meanwhile (a started kernel
    job cannot be stopped, and what it made must be undone); returns (job, cancelled)."""
    return job, await run_through(job)


async def _lane_job(nl, fn: Callable[..., Any], *args: Any) -> Any:  # type: ignore[no-untyped-def]
    """``fn(client, *args)`` as a netlink lane job (``nl.run_blocking``), awaited to its end
    even when this task is cancelled meanwhile (then CancelledError follows); its result,
    or what it raised."""
    job, cancelled = await _to_the_end(nl.run_blocking(fn, *args))
    if cancelled:
        raise asyncio.CancelledError
    return job.result()


async def _discard(nl, handle: int, early: "asyncio.Future[Any]",  # type: ignore[no-untyped-def]
                   destroying: Callable[[int], None] | None) -> None:
    """Destroy the session made ahead of a login that failed or is not to be used (once
    its creation ends): DESTROY_SESSION, synchronous (it has no connection, no device), so
    that it is gone when the login's failure is reported; else the forced teardown.
    ``destroying`` is told its sid first."""
    job, _ = await _to_the_end(early)
    if job.exception() is not None:
        return
    sid = job.result().sid
    if destroying is not None:
        destroying(sid)
    try:
        await nl.destroy_session(handle, sid)
    except IscsiNetlinkError as exc:  # refused, or no reply in time
        log.debug("session %d: DESTROY_SESSION: %s; tearing it down", sid, exc)
        await force_teardown(nl, handle, sid, 0)


#: what the kernel answers once the session's connection has failed: ENOTCONN while it
#: cleans the connection up (iscsi_if_set_param, iscsi_if_transport_conn), EPERM in a
#: SEND_PDU's retcode (libiscsi's iscsi_conn_send_pdu: no PDU on a failed connection)
_CONNECTION_GONE = frozenset((errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE))


def _kernel_failure(exc: IscsiNetlinkError) -> SessionError:
    """SessionError 9 for what the kernel answered while a session was set up (a refusal),
    or did not (no reply in time, one that could not be read); 4, retryable, where its
    answer says the connection failed meanwhile (the target or the path dropped it): that
    attempt's end, as iscsid's iscsi_login_eh(ISCSI_ERR_LOGIN), not the session's."""
    if isinstance(exc, IscsiKernelError):
        if exc.errno in _CONNECTION_GONE or (exc.errno == errno.EPERM and
                                             exc.source == "retcode"):
            return SessionError(4, f"the connection failed while the session was set up: "
                                   f"{exc}", retryable=True)
        return SessionError(9, f"the kernel refused the session: {exc}")
    # the kernel does its work inside sendmsg(): without its answer, what it made is unknown
    return SessionError(9, f"no answer from the kernel while setting up the session ({exc}): "
                           "a half-made session may be left (iscsictl -m session lists it)")


async def establish(
    nl,  # AsyncIscsiNetlink
    handle: int,
    node: NodeTarget,
    initiator_name: str,
    isid: ISID,
    issued_challenges: MutableSet[bytes] | None = None,
    scan: ScanStarter | None = None,
    caps: int = -1,
    destroying: Callable[[int], None] | None = None,
) -> KernelSession:
    """Log in and hand the connection to the kernel; the running session.

    ``scan``: started with the session's host number once the kernel runs it (on the
    netlink lane); the session's ``scanning`` is its future, for the caller to await.
    ``caps``: the transport's CAP_* (the parameters it lacks one for are not sent).
    ``destroying``: called with the sid of each kernel session this login makes and
    destroys itself (one made while the login was on the wire, for a login that failed),
    before the destruction: the KEVENT_DESTROY_SESSION that follows is the login's.

    ``iface.initiatorname``, when the node's iface sets one, replaces
    ``initiator_name`` for this session (open-iscsi's per-iface InitiatorName).

    Raises:
        SessionError: login failures (4, 5, 8, 11, 19, 24); 9 when the kernel refused the
            session or did not answer a request in time.
    """
    initiator_name = iface_initiator_name(node.record) or initiator_name
    rec = node.record
    cmds_max, queue_depth = _queue_sizes(rec)
    early: asyncio.Future[Any] | None = None
    failback: list[Portal] = []  # where the last permanent redirect sent the login

    def connected() -> None:  # the kernel builds the session while the login is on the wire
        nonlocal early
        if early is None:
            early = nl.run_blocking(IscsiNetlink.create_session, handle, INITIAL_CMDSN,
                                    cmds_max, queue_depth)
    try:
        sock, result, portal = await userspace_login(node, initiator_name, isid,
                                                     issued_challenges, connected,
                                                     failback.append)
    except BaseException:
        if early is not None:
            await _discard(nl, handle, early, destroying)
        raise
    assert early is not None
    try:
        peer = str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        peer = None
    try:
        # the parameters first: built while the kernel may still be making the session
        tpgt = result.params.target_portal_group_tag
        ctx = ParamContext(
            record=rec, params=result.params, initiator_name=initiator_name,
            target_name=node.target, persistent_address=node.address,
            persistent_port=node.port, tpgt=tpgt if tpgt is not None else max(node.tpgt, 0),
            iface=node.iface, exp_statsn=result.exp_statsn, caps=caps,
            transport=node.transport,
        )
        params = session_params(ctx) + negotiated_params(ctx)
        job, cancelled = await _to_the_end(early)
        try:
            ids = job.result()
        except IscsiNetlinkError as exc:
            raise _kernel_failure(exc) from None
        if cancelled or result.cmdsn != INITIAL_CMDSN:
            await _discard(nl, handle, early, destroying)
            if cancelled:
                raise asyncio.CancelledError
            ids = None  # the kernel's session must start at the login's CmdSN: made below
        # the kernel's work inside sendmsg() overlaps the loop's (other logins) on the lane
        job, cancelled = await _to_the_end(nl.run_blocking(
            _hand_over, handle, result.cmdsn, cmds_max, queue_depth, sock.fileno(),
            params, host_params(rec), ids, scan, xmit_priority(rec)))
        try:
            ids, cid, held, started_scan = job.result()
        except HandoverFailed as failed:  # gone (synchronously: no devices) when reported
            if destroying is not None:
                destroying(failed.sid)
            await force_teardown(nl, handle, failed.sid, 0, synchronous=True)
            if isinstance(failed.cause, IscsiNetlinkError):
                raise _kernel_failure(failed.cause) from None
            raise failed.cause from None
        except IscsiNetlinkError as exc:
            raise _kernel_failure(exc) from None
        if cancelled:
            if destroying is not None:
                destroying(ids.sid)
            await force_teardown(nl, handle, ids.sid, cid)
            raise asyncio.CancelledError
        sid = ids.sid
        log.debug("session %d (host%d): the connection handed to the kernel (BIND_CONN, "
                  "%d SET_PARAMs, START_CONN)", sid, ids.host_no, len(params))
    finally:
        # The kernel holds its own reference to the socket (sockfd_lookup in
        # BIND_CONN); our descriptor is no longer needed (proven: run5).
        sock.close()
    return KernelSession(
        sid=sid, host_no=ids.host_no, cid=cid, node=node, isid=isid, tsih=result.tsih,
        params=result.params, current=portal, negotiated=result.negotiated,
        initiator_name=initiator_name, kernel_params=held, caps=caps, peer_address=peer,
        scanning=None if started_scan is None else asyncio.wrap_future(started_scan),
        failback=failback[-1] if failback else None,
    )


async def ep_connect(nl, handle: int, portal: Portal, timeout: float,  # type: ignore[no-untyped-def]
                     host_no: int | None = None,
                     known: dict[tuple[str, int], list[tuple[Any, ...]]] | None = None,
                     ) -> tuple[int, str]:
    """A kernel-made connection to ``portal`` (iSER, offload HBAs): TRANSPORT_EP_CONNECT
    (non-blocking; ..._THROUGH_HOST ``host_no`` when given: usr/netlink.c
    ktransport_ep_connect's ``bind_ep``), then EP_POLL until the kernel says it is up.
    Returns its endpoint handle, which the caller binds (BIND_CONN) or gives to
    :func:`ep_disconnect`, and the numeric address it connected to (a name resolved
    within ``timeout`` s, ``known`` as :func:`_resolve` keeps it).

    Raises:
        SessionError: 8 (the kernel refused the connection, it failed, or it was not up
            within ``timeout`` s; retryable, as iscsid's ISCSI_ERR_TRANS_TIMEOUT), 4/7 (a
            host name that does not resolve, a port that is not one).
    """
    loop = asyncio.get_running_loop()
    address = (await _resolve(portal.address, portal.port, timeout, known))[0][4][0]
    where = f"{portal.address}:{portal.port}"
    # to its end even when this task is cancelled meanwhile (a logout, the daemon
    # stopping): the endpoint the kernel made is then disconnected, not forgotten (a
    # firmware connection slot, a TCP connection the target keeps open)
    job, cancelled = await _to_the_end(asyncio.ensure_future(nl.ep_connect(
        handle, address, portal.port, non_blocking=True, host_no=host_no)))
    exc = job.exception()
    if cancelled:
        if exc is None:
            await ep_disconnect(nl, handle, job.result())
        raise asyncio.CancelledError
    if isinstance(exc, IscsiNetlinkError):
        raise SessionError(8, f"cannot make connection to {where}: {exc}",
                           retryable=True) from None
    ep = job.result()
    deadline, delay = loop.time() + timeout, EP_POLL_FIRST
    try:
        while await nl.ep_poll(handle, ep, 1) <= 0:
            if loop.time() >= deadline:
                raise SessionError(8, f"cannot make connection to {where}: timed out after "
                                      f"{timeout:g} s", retryable=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, EP_POLL_MAX)
    except IscsiNetlinkError as exc:
        await ep_disconnect(nl, handle, ep)
        if isinstance(exc, IscsiKernelError) and exc.source == "retcode":
            # the driver's ep_poll answers a failed connection with -1 (bnx2i, iSER):
            # iscsid's "cannot make a connection to %s:%s (%d,%d)"
            raise SessionError(8, f"cannot make connection to {where}: the connection "
                                  f"failed (TRANSPORT_EP_POLL answered -{exc.errno})",
                               retryable=True) from None
        raise SessionError(8, f"cannot make connection to {where}: {exc}",
                           retryable=True) from None
    except BaseException:
        await ep_disconnect(nl, handle, ep)
        raise
    return ep, address


async def ep_disconnect(nl, handle: int, ep: int) -> None:  # type: ignore[no-untyped-def]
    """TRANSPORT_EP_DISCONNECT of an endpoint this daemon holds, best effort (a refusal or
    no answer is logged).  Run to its end when the caller is cancelled meanwhile, then
    CancelledError: its caller has forgotten the handle, so a disconnect cut short would
    leak the endpoint.  Raises NetlinkClosedError (the daemon stops)."""
    async def disconnect() -> None:
        try:
            await nl.ep_disconnect(handle, ep)
        except IscsiNetlinkError as exc:
            if isinstance(exc, NetlinkClosedError):
                raise
            log.debug("endpoint %d: EP_DISCONNECT: %s", ep, exc)
    job, cancelled = await _to_the_end(asyncio.ensure_future(disconnect()))
    if cancelled:
        raise asyncio.CancelledError
    job.result()


def _queue_sizes(rec: Mapping[str, str]) -> tuple[int, int]:
    """(node.session.cmds_max, node.session.queue_depth); open-iscsi's defaults when unset
    or not numbers."""
    try:
        return int(rec.get("node.session.cmds_max", 128)), \
            int(rec.get("node.session.queue_depth", 32))
    except ValueError:
        return 128, 32


def _login_failure(exc: BaseException) -> SessionError | None:
    """The SessionError of a failed first login (iscsiadm's code): None for what is not a
    login's failure.  An authentication the initiator itself ends (the target's mutual
    proof wrong, no CHAP_A in common, a reflected challenge, one secret both ways) is 19,
    not retried, as iscsid's iscsi_recv_login_rsp (LOGIN_AUTHENTICATION_FAILED ->
    ISCSI_ERR_FATAL_LOGIN); 24 is the target's refusal (status 0201/0202).  A negotiation
    that fails or a Login Response that breaks the rules (a Reject, a wrong stage, version
    or status class) is 19 too, not retried: iscsid's __login_response_status takes
    LOGIN_NEGOTIATION_FAILED, LOGIN_INVALID_PDU and LOGIN_VERSION_MISMATCH as
    CONN_LOGIN_FAILED (ISCSI_ERR_FATAL_LOGIN); no Login Response in time is 11, retried,
    as its iscsi_login_timedout in IN_LOGIN (ISCSI_ERR_PDU_TIMEOUT)."""
    if isinstance(exc, SessionError):
        return exc
    if isinstance(exc, AuthenticationError):
        return SessionError(19, f"authentication failed: {exc}")
    if isinstance(exc, LoginTimeout):
        return SessionError(11, str(exc), retryable=True)
    if isinstance(exc, (LoginRedirectFailed, DataSegmentTooLong)):  # iscsid's
        # LOGIN_REDIRECTION_FAILED and LOGIN_IO_ERROR: CONN_LOGIN_RETRY, ISCSI_ERR_LOGIN
        return SessionError(5, f"login failed: {exc}", retryable=True)
    if isinstance(exc, ISCSIProtocolError):
        return SessionError(19, f"login failed: {exc}")
    if isinstance(exc, IscsiNetlinkError):
        return _kernel_failure(exc)
    return None


async def establish_ep(
    nl,  # AsyncIscsiNetlink
    handle: int,
    node: NodeTarget,
    initiator_name: str,
    isid: ISID,
    issued_challenges: MutableSet[bytes] | None = None,
    scan: ScanStarter | None = None,
    logging_in: dict[int, KernelSession] | None = None,
    bind_host: int | None = None,
    caps: int = -1,
    sysfs: Sysfs | None = None,
) -> KernelSession:
    """Log in through a connection the kernel makes (iSER, offload HBAs:
    :data:`KERNEL_CONNECTED`), as iscsid does for its ktransport_ep_connect transports
    (usr/initiator.c session_conn_poll): :func:`ep_connect`, CREATE_BOUND_SESSION on the
    endpoint, CREATE_CONN, BIND_CONN, the node record's SET_PARAMs and the host's, the
    login relayed through SEND_PDU / RECV_PDU, then the negotiated SET_PARAMs, START_CONN
    once the kernel took them (:func:`_restart`), and the LUN scan started on the lane.
    A redirect tears the session down and starts over at the new portal.

    ``logging_in``: the daemon's sessions under login by sid, where its event routing
    finds them (their Login Responses come as RECV_PDU); the session is there from its
    creation until this returns.  ``bind_host``: the HBA's host the endpoint goes through
    (:func:`bind_host`).  ``caps``: the transport's CAP_*; ``sysfs``: where the new
    connection shows whether the kernel sends the NOP-Outs (:func:`supports_nop`; None:
    it does).  ``scan`` and the rest as :func:`establish`.

    Raises:
        SessionError: login failures (4, 5, 8, 11, 19, 24); 9 when the kernel refused the
            session or did not answer in time.  Whatever it made is gone by then.
    """
    initiator_name = iface_initiator_name(node.record) or initiator_name
    cfg = login_config(node, initiator_name)

    async def running(session: KernelSession, outcome: LoginSuccess) -> KernelSession:
        if not _login_offload(node):
            await _restart(nl, handle, session, outcome)
        session.tsih, session.params = outcome.tsih, outcome.params
        session.negotiated, session.conn_state = outcome.negotiated, "LOGGED IN"
        if scan is not None:
            session.scanning = asyncio.wrap_future(scan(session.host_no))
        return session
    return await _login_through_kernel(nl, handle, node, isid, cfg, _queue_sizes(node.record),
                                       logging_in, issued_challenges, running, keep=True,
                                       bind_host=bind_host, caps=caps, sysfs=sysfs)


async def _login_through_kernel(nl, handle: int, node: NodeTarget, isid: ISID,  # type: ignore[no-untyped-def]
                                cfg: LoginConfig, sizes: tuple[int, int],
                                logging_in: dict[int, KernelSession] | None,
                                issued_challenges: MutableSet[bytes] | None,
                                then: Callable[[KernelSession, LoginSuccess], Any],
                                keep: bool, bind_host: int | None = None, caps: int = -1,
                                sysfs: Sysfs | None = None) -> Any:
    """A login through a connection the kernel makes: the HBA's network settings
    (:func:`host_net_params`, on ``bind_host``), :func:`ep_connect` (through ``bind_host``
    when given), a session bound to the endpoint (``sizes``: cmds_max, queue_depth; in
    ``logging_in`` meanwhile), BIND_CONN, the node record's parameters for the transport
    (``caps``, and the NOP timeouts when ``sysfs`` shows the connection has them:
    :func:`_params_before_login`), the host's iface values (:func:`host_params`), the
    login relayed (a redirect tears that down and starts over at the new portal); then
    ``await then(session, outcome)``, whose value is returned.  What was made is undone
    when anything fails, and after ``then`` unless ``keep``.  Failures are raised as
    SessionError (:func:`_login_failure`)."""
    pending = logging_in if logging_in is not None else {}
    portal = Portal(node.address, node.port, node.tpgt)
    if bind_host is not None:
        await host_net_setup(nl, handle, bind_host, node.record,
                             max(1, int(cfg.login_timeout)))
    by: Portal | None = None  # the portal that redirected the login here
    failback: Portal | None = None  # where the last permanent redirect sent it
    for _ in range(MAX_REDIRECTS + 1):
        since = asyncio.get_running_loop().time()  # one timer, the connect's and the login's
        try:
            ep, peer = await ep_connect(nl, handle, portal, cfg.login_timeout, bind_host)
        except SessionError as exc:
            raise _redirect_failed(exc, by) from None
        session: KernelSession | None = None
        try:
            session = await _bound_session(nl, handle, ep, node, isid, portal, cfg, sizes,
                                           pending)
            session.bind_host, session.caps, session.peer_address = bind_host, caps, peer
            await _bind_endpoint(nl, handle, session)
            session.nop = sysfs is None or supports_nop(sysfs, session.sid, session.cid)
            if _login_offload(node):  # started once it returns
                outcome = await _offloaded_login(nl, handle, session, cfg, lambda what: None,
                                                 "login")
            else:
                await _params_before_login(nl, handle, session)
                await _set_host_params(nl, handle, session.host_no, host_params(node.record))
                outcome = await _relayed_login(nl, handle, session, cfg, issued_challenges,
                                               lambda what: None, "login", since=since)
            if isinstance(outcome, LoginRedirect):
                log.info("login redirected to %s (%s)", outcome.portal,
                         "permanent" if outcome.permanent else "temporary")
                by, portal = portal, outcome.portal
                failback = outcome.portal if outcome.permanent else failback
                raise _Redirected
            if isinstance(outcome, LoginRejected):
                raise SessionError(rejected_code(outcome), outcome.message,
                                   retryable=outcome.retryable)
            assert isinstance(outcome, LoginSuccess)
            session.failback = failback
            result = await then(session, outcome)
            if not keep:
                await _undo(nl, handle, ep, session)
            return result
        except BaseException as exc:
            await _undo(nl, handle, ep, session)
            if isinstance(exc, _Redirected):
                continue
            failure = _login_failure(exc)
            if failure is None or failure is exc:
                raise
            raise failure from None
        finally:
            if session is not None:
                pending.pop(session.sid, None)
    raise SessionError(5, f"login redirected more than {MAX_REDIRECTS} times")


def supports_nop(sysfs: Sysfs, sid: int, cid: int) -> bool:
    """Whether the kernel sends connection ``sid:cid``'s NOP-Outs: its sysfs entry has
    ``ping_tmo`` (usr/iscsi_sysfs.c iscsi_sysfs_session_supports_nop; an offload HBA's
    firmware may send its own, and its driver then shows none)."""
    return sysfs.read(f"class/iscsi_connection/connection{sid}:{cid}/ping_tmo") is not None


async def _params_before_login(nl, handle: int, session: KernelSession) -> None:  # type: ignore[no-untyped-def]
    """iscsid's iscsi_session_set_params on a connection the kernel makes, after its bind
    and before the login relayed through it (usr/initiator.c session_conn_poll): the node
    record's group (:func:`~.params.session_params`) for the transport, in one batch;
    what the kernel holds already is not sent again (a relogin's session object), and
    :func:`_restart` leaves out what this sent.  Raises IscsiKernelError for the refusal
    of a parameter the transport must take."""
    ctx = _context(session, None, 0)
    changes = relogin_changes(session_params(ctx, relogin=bool(session.kernel_params)),
                              session.kernel_params)
    if not changes:
        return
    for param, _ in changes:
        session.kernel_params.pop(param, None)
    results = await nl.set_params(handle, session.sid, session.cid, changes)
    session.kernel_params.update(_held(changes, results))


class _Redirected(Exception):
    """A redirected login's session is torn down before the next portal is tried."""


async def _bound_session(nl, handle: int, ep: int, node: NodeTarget, isid: ISID,  # type: ignore[no-untyped-def]
                         portal: Portal, cfg: LoginConfig, sizes: tuple[int, int],
                         pending: dict[int, KernelSession]) -> KernelSession:
    """CREATE_BOUND_SESSION on endpoint ``ep`` (``sizes``: cmds_max, queue_depth): the
    session, in ``pending`` from now on, for :func:`_bind_endpoint`.  Raises
    IscsiNetlinkError."""
    ids = await nl.create_bound_session(handle, ep, INITIAL_CMDSN, *sizes)
    session = KernelSession(sid=ids.sid, host_no=ids.host_no, cid=0, node=node, isid=isid,
                            tsih=0, params=None, current=portal, conn_state="IN LOGIN",
                            initiator_name=cfg.initiator_name, login_config=cfg, ep=ep)
    pending[ids.sid] = session
    return session


async def _bind_endpoint(nl, handle: int, session: KernelSession) -> None:  # type: ignore[no-untyped-def]
    """CREATE_CONN and BIND_CONN(the session's endpoint): ready for the relayed login.
    Raises IscsiNetlinkError (the session is the caller's to undo: :func:`_undo`)."""
    if await nl.create_conn(handle, session.sid, 0) != 0:
        raise IscsiKernelError(errno.EPROTO, "CREATE_CONN", "retcode")  # not the cid asked
    await nl.bind_conn(handle, session.sid, 0, session.ep, True)


async def _undo(nl, handle: int, ep: int, session: KernelSession | None) -> None:  # type: ignore[no-untyped-def]
    """What :func:`ep_connect` and :func:`_bound_session` made, gone, in iscsid's order
    (session_conn_shutdown): the endpoint, then the connection and the session."""
    held = ep if session is None else session.ep
    cancelled = False
    if session is not None:
        session.conn_state = "IN LOGOUT"  # its events from here on are the teardown's
        session.ep = None
    if held is not None:
        try:
            await ep_disconnect(nl, handle, held)
        except asyncio.CancelledError:
            cancelled = True  # disconnected all the same: the teardown follows
    if session is not None:
        await force_teardown(nl, handle, session.sid, 0, synchronous=True)
    if cancelled:
        raise asyncio.CancelledError


#: a discovery session's timers as iscsid sets them (discovery.c iscsi_alloc_session: a
#: zeroed session, noop_out_* 0): no NOP-Out, which RFC 7143 §4.3 does not allow there (the
#: kernel armed its NOP timer, and a target rejecting the NOP-Out of a slow SendTargets
#: answer failed the discovery), no recovery, no error handling timers
DISCOVERY_SESSION_TIMERS = {
    "node.session.timeo.replacement_timeout": "0", "node.session.iscsi.FastAbort": "No",
    "node.session.err_timeo.abort_timeout": "0", "node.session.err_timeo.lu_reset_timeout": "0",
    "node.session.err_timeo.tgt_reset_timeout": "0", "node.conn[0].timeo.noop_out_timeout": "0",
    "node.conn[0].timeo.noop_out_interval": "0"}


async def send_targets_ep(
    nl,  # AsyncIscsiNetlink
    handle: int,
    portal: Portal,
    cfg: LoginConfig,
    isid: ISID,
    iface: str,
    active_timeout: float,
    logging_in: dict[int, KernelSession] | None = None,
    transport: str = "iser",
    bind_host: int | None = None,
    iface_record: Mapping[str, str] | None = None,
    caps: int = -1,
    sysfs: Sysfs | None = None,
    left_out: list[str] | None = None,
) -> list[Any]:
    """SendTargets=All through a connection the kernel makes (iSER, an offload HBA's:
    ``transport``, through ``bind_host`` as :func:`establish_ep`, with the HBA settings
    of ``iface_record``), as iscsiadm's discovery does for a transport with CAP_TEXT_NEGO
    (usr/discovery.c iscsi_create_leading_conn, iscsi_create_session): the endpoint, a
    discovery session bound to it (CREATE_BOUND_SESSION(initial_cmdsn 1, cmds_max 32,
    queue_depth 1)), the record's values (DiscoverySession=1 among them; ``caps`` and
    ``sysfs`` as :func:`establish_ep`'s), the Login (``cfg``: a Discovery session's)
    relayed, the negotiated values set and START_CONN, the Text exchange and the Logout
    relayed, then all torn down.  A redirect starts over at the new portal.  Returns the
    DiscoveredTargets (a target without TargetAddress gets ``portal``, the one asked, also
    after a redirect).

    Raises:
        SessionError: 4, 5, 8, 11, 19, 24 as a login's; 8 when no Text Response comes
            within ``active_timeout`` s; 5 for an answer that is not SendTargets'; 9 when
            the kernel refuses a step.
    """
    from iscsictl.protocol.session import LogoutExchange
    from iscsictl.protocol.text_exchange import SEND_TARGETS_KEYS, TextExchange

    node = NodeTarget(target="", address=portal.address, port=portal.port, tpgt=-1,
                      iface=iface, transport=transport,
                      record={**(iface_record or {}), **DISCOVERY_SESSION_TIMERS})
    t = TRANSPORTS.get(transport)
    if t is not None:
        cfg = t.create_conn(cfg)
    if cfg.max_recv_data_segment_length > KERNEL_TEXT_MAX_RECV_DLENGTH:
        cfg = replace(cfg, max_recv_data_segment_length=KERNEL_TEXT_MAX_RECV_DLENGTH)

    async def ask(session: KernelSession, outcome: LoginSuccess) -> list[Any]:
        ctx = _context(session, outcome, outcome.exp_statsn)
        if not _login_offload(node):  # an HBA that logs in itself has started already
            *_, started = await nl.set_params_and_start_conn(handle, session.sid, 0,
                                                             negotiated_params(ctx))
            if started is not None:
                raise started
        text = TextExchange([("SendTargets", "All")], itt=0, cmdsn=outcome.cmdsn,
                            exp_statsn=outcome.exp_statsn, match_itt=False,
                            keep=SEND_TARGETS_KEYS)
        # a target without TargetAddress: the portal the discovery asked, a redirect's
        # too (iscsiadm's add_target_record uses the discovery record's address)
        asked = Portal(portal.address, portal.port)
        targets = await _relayed_send_targets(nl, handle, session, text, asked, active_timeout,
                                              left_out)
        await _relayed_logout(nl, handle, session, LogoutExchange(
            itt=0, cmdsn=text.cmdsn, exp_statsn=text.exp_statsn), cfg.login_timeout)
        return targets
    return await _login_through_kernel(nl, handle, node, isid, cfg, (32, 1), logging_in, None,
                                       ask, keep=False, bind_host=bind_host, caps=caps,
                                       sysfs=sysfs)


async def _relayed_pdu(nl, handle: int, session: KernelSession, pdu: Any,  # type: ignore[no-untyped-def]
                       timeout: float, what: str) -> Any:
    """``pdu`` sent through the kernel (SEND_PDU: the kernel stamps its ITT, CmdSN and
    ExpStatSN) and the answer that comes back (RECV_PDU, one of ``session.pdu_wanted``).
    SessionError 8 when none comes within ``timeout`` s."""
    session.pdu_waiter = asyncio.get_running_loop().create_future()
    try:
        await _send_pdu(nl, handle, session.sid, session.cid, pdu.encode_header()[0], pdu.data)
        async with asyncio.timeout(timeout):  # not wait_for: no task of its own
            return await session.pdu_waiter
    except asyncio.TimeoutError:
        raise SessionError(8, f"no {what} within {timeout:g} s", retryable=True) from None
    finally:
        session.pdu_waiter = None


async def _send_pdu(nl, handle: int, sid: int, cid: int, hdr: bytes, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """SEND_PDU of ``hdr`` (BHS) and ``data``; a Login or Text PDU the kernel refuses with
    EPERM (its login task still busy) sent again after each of
    :data:`LOGIN_TASK_BUSY_PAUSES`.  Raises the kernel's refusal when that runs out, or at
    once for any other refusal or PDU."""
    pauses = iter(LOGIN_TASK_BUSY_PAUSES if hdr[0] & 0x3F in _LOGIN_TASK_OPCODES else ())
    while True:
        try:
            return await nl.send_pdu(handle, sid, cid, hdr, data)
        except IscsiKernelError as exc:
            pause = next(pauses, None)
            if exc.errno != errno.EPERM or exc.source != "retcode" or pause is None:
                raise
        log.debug("session %d: SEND_PDU refused (login task busy); again in %g s", sid, pause)
        await asyncio.sleep(pause)


async def _relayed_send_targets(nl, handle: int, session: KernelSession, exchange: Any,  # type: ignore[no-untyped-def]
                                portal: Portal, timeout: float,
                                left_out: list[str] | None = None) -> list[Any]:
    """The SendTargets Text ``exchange`` (made with ``match_itt=False``: the kernel gives
    the task tags) through the kernel; the targets of its answer (those it names but
    leaves out added to ``left_out``, :func:`~.text_exchange.parse_send_targets`)."""
    from iscsictl.protocol.pdu import TextResponse
    from iscsictl.protocol.text_exchange import parse_send_targets

    exchange.start()
    session.pdu_wanted = (TextResponse, Reject)
    try:
        pairs = None
        while pairs is None:
            for req in exchange.pdus_to_send():
                pairs = exchange.receive_pdu(
                    await _relayed_pdu(nl, handle, session, req, timeout, "SendTargets answer"))
    except ISCSIProtocolError as exc:
        raise SessionError(5, f"SendTargets: {exc}") from None
    finally:
        session.pdu_wanted = ANY_PDU
    try:
        return parse_send_targets(pairs, portal, lambda why: log.info("SendTargets: %s", why),
                                  left_out)
    except ValueError as exc:
        raise SessionError(5, f"SendTargets answer: {exc}") from None


async def _relayed_logout(nl, handle: int, session: KernelSession, exchange: Any,  # type: ignore[no-untyped-def]
                          timeout: float, then: str = "tearing down") -> Any:
    """The Logout ``exchange`` through the kernel, best effort: a target that does not
    answer within ``timeout`` s, or answers badly, is logged (``then``: what follows).
    Returns the LogoutResult, or None without a Logout Response.  Raises only
    CancelledError."""
    session.pdu_wanted = (LogoutResponse, Reject)  # an Async Message meanwhile is an event
    try:
        pdu = await _relayed_pdu(nl, handle, session, exchange.request, timeout,
                                 "Logout Response")
        if isinstance(pdu, LogoutResponse):
            result = exchange.receive_pdu(pdu, match_itt=False)
            if not result.ok:
                log.warning("session %d: logout response %s", session.sid, result.response)
            return result
        log.warning("session %d: the target rejected the Logout; %s", session.sid, then)
    except (SessionError, IscsiNetlinkError, ISCSIProtocolError) as exc:
        log.warning("session %d: no clean Logout (%s); %s", session.sid, exc, then)
    finally:
        session.pdu_wanted = ANY_PDU
    return None


async def logout_for_target(nl, handle: int, session: KernelSession,  # type: ignore[no-untyped-def]
                            timeout: float) -> None:
    """The Logout a target asked for (RFC 7143 §11.9.1, AsyncEvent 1), through the
    kernel, before the session's recovery logs in again: as iscsid's iscsi_send_logout
    (an immediate Logout, reason "close the session"; usr/initiator.c) and its
    __conn_error_handle once the Logout Response is in (or ``timeout`` s have passed:
    its logout timer).  The session and its disks stay; their I/O waits for the new
    connection.  A Logout Response 2 or 3 sets the Time2Wait before it
    (``session.time2wait_once``, §11.15.4), as iscsid's iscsi_recv_logout_rsp.  Raises
    only CancelledError."""
    from iscsictl.protocol.session import LogoutExchange

    result = await _relayed_logout(
        nl, handle, session, LogoutExchange(itt=0, cmdsn=0, exp_statsn=0, cid=session.cid),
        timeout, then="logging in again")
    if result is not None and int(result.response) in (2, 3):
        session.time2wait_once = result.time2wait


async def _bind(nl, handle: int, sid: int, cid: int, fd: int) -> None:  # type: ignore[no-untyped-def]
    """BIND_CONN, riding out the kernel's own connection cleanup: while its
    cleanup work is pending the kernel answers -ENOTCONN (open-iscsi #387);
    STOP_CONN(RECOVER) flushes that work.  Bounded: three tries."""
    for attempt in range(3):
        try:
            await nl.bind_conn(handle, sid, cid, fd, True)
            return
        except IscsiKernelError as exc:
            if exc.errno != errno.ENOTCONN or attempt == 2:
                raise
            log.debug("session %d: BIND_CONN -ENOTCONN (kernel cleanup pending); flushing", sid)
            await stop_conn_recover(nl, handle, sid, cid)
            await asyncio.sleep(0.1 * (attempt + 1))


def _seed_resolved(session: KernelSession) -> None:
    """Where the session's connection went (its login's, or the kernel's current address
    of an adopted one), as the answer a relogin connects to when the resolver fails for
    its portal's host name (:func:`_resolve`).  None for a numeric portal, or when no
    numeric address is known."""
    node, current = session.node, session.current
    address = session.peer_address or (current.address if current is not None else None)
    if not address or is_numeric_host(node.address):
        return
    port = current.port if current is not None else node.port
    try:  # numeric only (a link-local's zone becomes its scope id): never the resolver
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return
    session.resolved[node.address, node.port] = infos


async def relogin(
    nl,  # AsyncIscsiNetlink
    handle: int,
    session: KernelSession,
    issued_challenges: MutableSet[bytes] | None = None,
) -> None:
    """Connection recovery at ERL 0 (RFC 7143 §7.1.4.1, session reinstatement):
    a new TCP connection to the persistent portal, or where a permanent redirect moved the
    target (``session.failback``, iscsid's failback_saddr: a temporary redirect is not
    remembered), bound to the *same* kernel sid/cid, then a
    login with the same ISID and TSIH 0 relayed through SEND_PDU/RECV_PDU so the
    kernel stamps its own CmdSN (a userspace CmdSN made LIO ignore commands in
    the experiment, run6), then the SET_PARAMs the kernel does not hold from the login
    (:func:`~.params.relogin_changes`: STOP_CONN(RECOVER) clears the digests; ExpStatSN, the
    segment lengths, what the target negotiated otherwise) and START_CONN once it took
    them (:func:`_restart`).  Held I/O resumes.

    The caller has done STOP_CONN(RECOVER) and waited Time2Wait (RFC 7143 §13.15):
    the connection is made now and its Login PDU follows at once.  (A connection
    made during Time2Wait would hold an LIO portal's login thread, which reads the
    first Login PDU of each accepted connection in turn, for every initiator.)  An
    attempt that fails once the connection may be bound stops it (STOP_CONN(RECOVER), as
    iscsid's session_conn_reopen does) before it raises, so that the next one binds a
    clean connection.
    Raises:
        SessionError: 4/5/8/11/19/24 for login failures, 9 for kernel refusals and
            requests the kernel did not answer (ReplyTimeout), all retryable; 9, not
            retryable, for a session whose ISID is unknown.  NetlinkClosedError
            and CancelledError pass through (the daemon stops, or a logout took over).
    """
    node, sid, cid = session.node, session.sid, session.cid
    if session.isid is None:  # an adopted session whose ISID was not saved
        raise SessionError(9, f"session {sid}: its ISID is unknown; cannot reinstate it")
    if session.login_config is None:  # built once per session: recovery is latency-bound
        session.login_config = login_config(node, session.initiator_name)
    cfg = session.login_config
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    debug = log.isEnabledFor(logging.DEBUG)  # a relogin's steps are timed only for -d

    def step(what: str) -> None:
        if debug:
            log.debug("session %d: relogin: %s at +%.1f ms", sid, what,
                      (loop.time() - t0) * 1000)

    portal = session.failback or Portal(node.address, node.port, node.tpgt)
    if (node.address, node.port) not in session.resolved:
        _seed_resolved(session)
    by_kernel = node.transport in KERNEL_CONNECTED
    for _ in range(MAX_REDIRECTS + 1):
        sock, bound = None, False
        since = asyncio.get_running_loop().time()  # one timer, the connect's and the login's
        if by_kernel:  # the kernel's endpoint, ours until it is bound
            await uip_net_config(node.record)
            eph, _ = await ep_connect(nl, handle, portal, cfg.login_timeout,
                                      session.bind_host, session.resolved)
            session.ep = eph
        else:
            sock = await connect_node(node, portal, cfg.login_timeout, session.resolved)
            eph = sock.fileno()
        step("connected")
        try:
            await _bind(nl, handle, sid, cid, eph)
            bound = True
            step("bound")
            offload = _login_offload(node)
            if by_kernel and not offload:  # iscsid's session_conn_poll, as at the login
                await _params_before_login(nl, handle, session)
                await _set_host_params(nl, handle, session.host_no, host_params(node.record))
            outcome = await (_offloaded_login(nl, handle, session, cfg, step) if offload else
                             _relayed_login(nl, handle, session, cfg, issued_challenges, step,
                                            since=since))
            if isinstance(outcome, LoginRedirect):
                log.info("session %d: relogin redirected to %s (%s)", sid, outcome.portal,
                         "permanent" if outcome.permanent else "temporary")
                portal = outcome.portal
                if outcome.permanent:
                    session.failback = portal
            elif isinstance(outcome, LoginRejected):
                raise SessionError(rejected_code(outcome), outcome.message, retryable=True)
            else:
                step("logged in")
                if not offload:
                    await _restart(nl, handle, session, outcome)
                    step("parameters set, started")
                session.tsih = outcome.tsih
                session.params = outcome.params
                session.negotiated = outcome.negotiated
                session.current = portal
                return
        except asyncio.CancelledError:  # a logout or the daemon's stop: the session is
            if by_kernel and not bound and session.ep == eph:  # theirs; an endpoint not
                session.ep = None  # bound yet is this attempt's (no STOP_CONN frees it)
                await ep_disconnect(nl, handle, eph)
            raise
        except NetlinkClosedError:
            raise  # the daemon stops
        except Exception as exc:
            failure = _relogin_failure(exc, sid)
            if failure is None:
                raise
            # as iscsid's session_conn_reopen: the bound socket is released and the
            # kernel's cleanup flushed, so that the next attempt binds a clean connection
            await release_connection(nl, handle, session)
            raise failure from None
        finally:
            if sock is not None:
                sock.close()  # once bound, the kernel holds its own reference
        await release_connection(nl, handle, session)  # before binding the next one
        # The target closes a redirected connection (RFC 7143 §11.13.5), and the kernel
        # reports that as a connection error, read before STOP_CONN's answer: that error
        # was the old connection's, not a failure of the one to come (iscsid's
        # __conn_error_handle ignores it in XPT_WAIT).  Kept, it started the recovery over
        # once this one was done, for ever: a redirecting portal's session went down
        # every Time2Wait.
        session.failed_again, session.failed_again_logout = None, False
    raise SessionError(5, f"relogin redirected more than {MAX_REDIRECTS} times", retryable=True)


def _warner(node: NodeTarget) -> Callable[[str], None]:
    """The login machine's warnings (a short CHAP secret) in the log, naming the node."""
    return lambda message: log.warning("%s: %s", node.describe(), message)


async def release_connection(nl, handle: int, session: KernelSession) -> None:  # type: ignore[no-untyped-def]
    """The session's connection let go for a relogin (iscsid's __session_conn_reopen): its
    kernel endpoint disconnected (a transport whose connection the kernel makes, when this
    daemon holds it), then STOP_CONN(RECOVER), best effort.  After a connection error too:
    the kernel's cleanup has disconnected the endpoint but keeps a reference to it, and
    its handle allocated, until this EP_DISCONNECT (scsi_transport_iscsi.c
    iscsi_cleanup_conn_work_fn, iscsi_if_disconnect_bound_ep); without it each connection
    error would leak an endpoint."""
    if session.ep is not None:
        ep, session.ep = session.ep, None
        await ep_disconnect(nl, handle, ep)
    await stop_conn_recover(nl, handle, session.sid, session.cid)


async def _relayed_login(nl, handle: int, session: KernelSession, cfg: LoginConfig,  # type: ignore[no-untyped-def]
                         issued_challenges: MutableSet[bytes] | None,
                         step: Callable[[str], None], what: str = "relogin",
                         since: float | None = None) -> object:
    """The login relayed through SEND_PDU / RECV_PDU on the session's bound connection;
    its outcome (LoginSuccess, LoginRedirect or LoginRejected).  Raises what the kernel or
    the login raised; SessionError(11) when no Login Response comes before the login
    timeout (``what``: the word for it in that message), counted from ``since`` (the
    loop's time the connect started) when given."""
    loop = asyncio.get_running_loop()
    sid, cid = session.sid, session.cid
    assert session.isid is not None
    # no SET_PARAM before the relayed login (the order proven in the experiment,
    # run7): STOP_CONN(RECOVER) switched the digests off, so the Login Response is
    # read without them; what the login changed follows it
    machine = LoginMachine(cfg, isid=session.isid.to_bytes(), cid=cid, rng=os.urandom,
                           issued_challenges=issued_challenges, warn=_warner(session.node),
                           kernel_relay=True)
    machine.start(loop.time(), since)
    ready = _encoded(machine)
    step("logging in")
    outcome = None
    while outcome is None:
        for hdr, data in ready:
            session.pdu_waiter = loop.create_future()
            await _send_pdu(nl, handle, sid, cid, hdr, data)
        step("Login PDU sent")
        assert machine.deadline is not None and session.pdu_waiter is not None
        try:
            async with asyncio.timeout(max(machine.deadline - loop.time(), 0.001)):
                pdu = await session.pdu_waiter  # not wait_for: no task of its own
        except asyncio.TimeoutError:
            raise SessionError(11, f"{what} timed out: {_timed_out(machine, loop.time())}",
                               retryable=True) from None
        finally:
            session.pdu_waiter = None
        step("Login Response received")
        outcome = machine.receive_pdu(pdu, loop.time())
        ready = _encoded(machine)
    return outcome


def _offered(cfg: LoginConfig) -> NegotiatedParameters:
    """The values a login offers, as the ones in force: what iscsid's
    iscsi_session_set_neg_params gives an HBA that logs in itself (the record's, copied by
    iscsi_copy_operational_params; a MaxXmitDataSegmentLength of 0 is 8192)."""
    return NegotiatedParameters(
        header_digest=cfg.header_digest.startswith("CRC32C"),
        data_digest=cfg.data_digest.startswith("CRC32C"),
        max_recv_data_segment_length=cfg.max_recv_data_segment_length,
        max_xmit_data_segment_length=cfg.max_xmit_data_segment_length or 8192,
        max_burst_length=cfg.max_burst_length, first_burst_length=cfg.first_burst_length,
        initial_r2t=cfg.initial_r2t, immediate_data=cfg.immediate_data,
        max_outstanding_r2t=cfg.max_outstanding_r2t, max_connections=cfg.max_connections,
        data_pdu_in_order=cfg.data_pdu_in_order,
        data_sequence_in_order=cfg.data_sequence_in_order,
        error_recovery_level=cfg.error_recovery_level,
        default_time2wait=cfg.default_time2wait, default_time2retain=cfg.default_time2retain)


async def _offloaded_login(nl, handle: int, session: KernelSession, cfg: LoginConfig,  # type: ignore[no-untyped-def]
                           step: Callable[[str], None], what: str = "relogin") -> LoginSuccess:
    """A login the HBA makes itself (CAP_LOGIN_OFFLOAD: qla4xxx), as iscsid's
    setup_offload_login_phase: the record's values set as the session's (every SET_PARAM,
    the operational ones as offered: :func:`_offered`), the host's iface values
    (:func:`host_params`), START_CONN, and the HBA's word
    (KEVENT_CONN_LOGIN_STATE, routed to ``session.pdu_waiter``).  The connection is
    started when this returns.

    Raises:
        SessionError: 15 (START_CONN's EEXIST: the HBA has that session already), 5 (the
            HBA's login failed: state FREE), 11 (no word within the login timeout,
            iscsid's iscsi_login_timedout; both retryable); IscsiKernelError for another
            refusal."""
    assert session.isid is not None
    outcome = LoginSuccess(_offered(cfg), session.isid.to_bytes(), 0, session.cid, INITIAL_CMDSN,
                           0, 0, INITIAL_CMDSN, INITIAL_CMDSN, {})
    session.pdu_waiter = asyncio.get_running_loop().create_future()
    try:
        try:  # a discovery session says so before the HBA logs in (usr/discovery.c)
            await _restart(nl, handle, session, outcome, host_params(session.node.record))
        except IscsiKernelError as exc:
            if exc.errno == errno.EEXIST:
                raise SessionError(15, "the HBA has this session already (START_CONN: "
                                       "EEXIST)") from None
            raise
        step("started: the HBA logs in")
        try:
            async with asyncio.timeout(cfg.login_timeout):
                state = await session.pdu_waiter
        except asyncio.TimeoutError:
            raise SessionError(11, f"{what} timed out: the HBA did not say it logged in",
                               retryable=True) from None
    finally:
        session.pdu_waiter = None
    if state != IscsiConnState.LOGGED_IN:
        raise SessionError(5, f"the HBA's {what} failed (connection state "
                              f"{getattr(state, 'name', state)})", retryable=True)
    return outcome


async def _restart(nl, handle: int, session: KernelSession, outcome: LoginSuccess,  # type: ignore[no-untyped-def]
                   host: Sequence[tuple[int, str]] = ()) -> None:
    """Every SET_PARAM the login changed (one datagram: the loop serves every recovering
    session; each exchange costs it), then START_CONN once the kernel took them all (the
    kernel handles each message of a datagram whatever the one before got: a START_CONN
    sent with them resumed the held I/O on a connection a refused parameter had left
    half set, a MaxR2T pool freed by an ENOMEM; iscsid's setup_full_feature_phase starts
    nothing after a refusal either); with ``host``, those host parameters between the two
    (iscsid's setup_offload_login_phase).  Raises IscsiKernelError for the first refusal
    (the parameters the kernel held are noted in ``session.kernel_params`` either way)."""
    ctx = _context(session, outcome, outcome.exp_statsn)
    # an adopted session's first relogin (nothing known of what the kernel holds) sends the
    # session object's values too, as iscsid's every reopen does: a record changed since
    # (replacement_timeout ...) reaches the kernel; after that, what changed only
    changes = relogin_changes(session_params(ctx, relogin=bool(session.kernel_params))
                              + negotiated_params(ctx), session.kernel_params)
    for param, _ in changes:  # unknown until the kernel answers (a refusal may come midway)
        session.kernel_params.pop(param, None)
    results = await nl.set_params(handle, session.sid, session.cid, changes)
    session.kernel_params.update(_held(changes, results))
    if host:
        await _set_host_params(nl, handle, session.host_no, host)
    await nl.start_conn(handle, session.sid, session.cid)


def _relogin_failure(exc: Exception, sid: int) -> SessionError | None:
    """The retryable SessionError for what ended a relogin attempt; None for an
    exception that is not a login's or the kernel's (a bug: it propagates)."""
    if isinstance(exc, SessionError):
        return exc
    if isinstance(exc, AuthenticationError):
        return SessionError(24, f"authentication failed: {exc}", retryable=True)
    if isinstance(exc, ISCSIProtocolError):
        return SessionError(5, f"relogin failed: {exc}", retryable=True)
    if isinstance(exc, IscsiKernelError):
        return SessionError(9, f"session {sid}: the kernel refused the relogin: {exc}",
                            retryable=True)
    if isinstance(exc, IscsiNetlinkError):  # no reply in time, an undecodable one
        return SessionError(9, f"session {sid}: relogin: {exc}", retryable=True)
    return None


async def stop_conn_recover(nl, handle: int, sid: int, cid: int) -> None:  # type: ignore[no-untyped-def]
    """STOP_CONN(RECOVER), best effort: the connection's I/O is held for recovery, the
    socket bound to it released and the kernel's pending cleanup flushed.  A refusal or a
    reply that does not come is logged; raises only NetlinkClosedError."""
    try:
        await nl.stop_conn(handle, sid, cid, StopConnFlag.RECOVER)
    except NetlinkClosedError:
        raise
    except IscsiNetlinkError as exc:
        log.debug("session %d: STOP_CONN(RECOVER): %s", sid, exc)


def _encoded(machine: LoginMachine) -> list[tuple[bytes, bytes]]:
    """The machine's pending Login PDUs as (BHS, data segment) for SEND_PDU."""
    return [(req.encode_header()[0], req.data) for req in machine.pdus_to_send()]


def _context(session: KernelSession, result: LoginSuccess | None, exp_statsn: int) -> ParamContext:
    params = result.params if result else (session.params or NegotiatedParameters())
    tpgt = params.target_portal_group_tag
    node = session.node
    return ParamContext(
        record=node.record, params=params, initiator_name=session.initiator_name,
        target_name=node.target, persistent_address=node.address, persistent_port=node.port,
        tpgt=tpgt if tpgt is not None else max(node.tpgt, 0), iface=node.iface,
        exp_statsn=exp_statsn,
        caps=session.caps, nop=session.nop,
        discovery=session.login_config is not None and session.login_config.discovery,
        transport=node.transport,
    )


async def online_devices(session: KernelSession, sysfs, executor=None) -> None:  # type: ignore[no-untyped-def]
    """After recovery: devices the replacement timeout took offline go back to
    running.  No rescan: the LUNs did not change, and a rescan would race the
    I/O the kernel resumes at START_CONN (open-iscsi's session_online_devs).

    The sysfs walk and the writes run in ``executor`` (default: the loop's), not on
    the event loop (with 64 sessions coming back at once, the walk on the loop was ~17%
    of the loop's time under QEMU TCG, py-spy: time the other relogins waited for)."""

    await asyncio.get_running_loop().run_in_executor(executor, set_devices_running, sysfs,
                                                     session.sid)


def set_devices_running(sysfs, sid: int) -> None:  # type: ignore[no-untyped-def]
    """Session ``sid``'s devices that are offline (the replacement timeout, or a firmware
    session's devices before iscsid takes notice) set ``running`` through their sysfs
    ``state``, with the newline the kernel requires (store_state_field: any other text is
    EINVAL; iscsid's iscsi_sysfs_set_device_online writes ``running\\n``); blocking (a
    sysfs walk and writes); failures logged."""
    for d in sysfs.session_devices(sid):
        if d.state not in ("offline", "transport-offline"):
            continue
        try:
            with open(f"{sysfs.root}/bus/scsi/devices/{d.hctl}/state", "w") as f:
                f.write("running\n")
        except OSError as exc:
            log.warning("session %d: cannot bring %s back online: %s", sid, d.hctl, exc)


#: transports whose session takes node.session.queue_depth at its creation (CREATE_SESSION's
#: queue_depth is their host's cmd_per_lun); the others' devices (bnx2i, qedi, cxgbi,
#: be2iscsi: the HBA's host, its template's depth) get it after the scan, as iscsid's
#: session_scan_host writes it to every device (iscsi_sysfs_set_queue_depth)
QUEUE_DEPTH_AT_CREATION = frozenset(("tcp", "iser"))


def set_queue_depth(sysfs, sid: int, depth: int) -> None:  # type: ignore[no-untyped-def]
    """``depth`` (node.session.queue_depth) to the ``queue_depth`` of each of session
    ``sid``'s devices; blocking (a sysfs walk and writes); failures logged."""
    for d in sysfs.session_devices(sid):
        try:
            sysfs.set_queue_depth(d, depth)
        except OSError as exc:
            log.warning("session %d: cannot set %s's queue depth %d: %s", sid, d.hctl,
                        depth, exc)


async def scan_host(host_no: int, sysfs_root: str = "/sys", executor=None) -> None:  # type: ignore[no-untyped-def]
    """Synchronous LUN scan of ``host<N>`` (like iscsiadm: returns after the scan),
    off the event loop, in ``executor`` (default: the loop's).  Raises OSError."""
    await asyncio.get_running_loop().run_in_executor(executor, Sysfs(sysfs_root).scan_host,
                                                     host_no)


async def logout(nl, handle: int, session: KernelSession, timeout: float,  # type: ignore[no-untyped-def]
                 sysfs_root: str = "/sys") -> None:
    """Unbind (devices removed), Logout PDU through the kernel, tear down, and return once
    the kernel reports the session destroyed (``session.destroyed``, set by the daemon on
    KEVENT_DESTROY_SESSION), as iscsiadm's logout returns after iscsid's synchronous
    DESTROY_SESSION: a listing right after shows no session.  The loop never blocks on the
    destruction (DESTROY_SESSION_ASYNC); only this logout waits for it.  Should the event
    be lost (a receive buffer overrun), the session's
    ``<sysfs_root>/class/iscsi_session/session<sid>``, looked at every :data:`DESTROY_POLL`
    s, ends the wait once it is gone.  No Logout PDU is sent while that entry's ``state``
    is not LOGGED_IN (a failed session, or one whose relogin was cancelled: the kernel
    refuses it with EPERM), as iscsid's session_logout_task shuts such a session down.

    The wait for the unbind has no time limit while the session's ``target_state`` says
    the kernel has not finished removing the devices (sd's SYNCHRONIZE CACHE goes through
    this connection: a Logout or STOP_CONN before its answer leaves the target's volatile
    cache unwritten); it ends on the event or on ``UNBOUND`` (the event skipped or lost,
    looked at every :data:`UNBIND_POLL` s), and after ``timeout``
    (node.conn[0].timeo.logout_timeout) only where sysfs has no ``target_state`` (older
    kernels).  The wait for the
    target's Logout Response is bounded by ``timeout`` (a dead target never answers); the
    wait for the destruction by :data:`DESTROY_TIMEOUT` (then a warning: the kernel goes on
    with it).  Cancelled (the daemon stops) while it waits for the target or the unbind,
    the logout goes straight to the teardown, then raises CancelledError; but a session
    whose devices the kernel is still removing is left to it, logged in (a later logout
    finds it UNBOUND), as iscsid leaves its sessions when it stops.  Cancelled during a
    kernel request, that request runs to its end first.  Raises SessionError 9 when the
    kernel refuses the destruction (the session stays, its connection stopped:
    ``conn_state`` FAILED), as iscsid's "can not safely destroy".  A session the kernel
    destroys meanwhile (KEVENT_DESTROY_SESSION: a host removed, another netlink user)
    ends the logout at that step, logged out: its sid is no longer the kernel's (each
    request refused, EINVAL), as iscsid's session_conn_shutdown skips a gone session.
    """
    from iscsictl.protocol.session import LogoutExchange

    sid, cid = session.sid, session.cid
    session.conn_state = "IN LOGOUT"
    session.logout_conn_failed.clear()  # an error of an earlier state's is no concern here
    cancelled = False  # then the session is torn down all the same: never left half unbound
    target_state = os.path.join(sysfs_root, "class", "iscsi_session", f"session{sid}",
                                "target_state")
    try:
        await _lane_job(nl, IscsiNetlink.unbind_session, handle, sid)
        await _unbound(session, timeout, target_state)
    except asyncio.CancelledError:
        if read_attribute(target_state) not in (None, "UNBOUND"):
            log.warning("session %d: logout cut short (the daemon stops) while the kernel "
                        "removes its devices: left to it, logged in", sid)
            raise
        cancelled = True
    except NetlinkClosedError:
        raise
    except IscsiNetlinkError as exc:  # refused, or no reply in time: the teardown follows
        log.warning("session %d: UNBIND_SESSION failed (%s); continuing", sid, exc)
    kernel_state = read_attribute(os.path.join(os.path.dirname(target_state), "state"))
    if session.destroyed.is_set():  # by the kernel meanwhile (a host removed, another
        # netlink user): no Logout PDU or teardown for a sid it refuses (EINVAL); an
        # iSER session's endpoint is still disconnected
        log.info("session %d: destroyed by the kernel during the logout", sid)
    elif session.logout_conn_failed.is_set():
        log.warning("session %d: its connection failed during the logout; tearing down", sid)
    elif kernel_state not in (None, "LOGGED_IN"):  # the kernel takes no Logout PDU (EPERM):
        # failed, or a relogin under way; iscsid's session_logout_task shuts such a session
        # down without one (session_conn_shutdown)
        log.info("session %d: its connection is not logged in (%s): no Logout PDU; tearing "
                 "down", sid, kernel_state)
    elif not cancelled and not _login_offload(session.node):  # the HBA logs out itself
        try:
            await _relayed_logout(nl, handle, session,
                                  LogoutExchange(itt=0, cmdsn=0, exp_statsn=0, cid=cid), timeout)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        log.info("session %d: logout cut short (the daemon stops); tearing down", sid)
    if session.ep is not None:  # iSER: the endpoint first, as iscsid's session_conn_shutdown
        ep, session.ep = session.ep, None
        try:
            await ep_disconnect(nl, handle, ep)
        except asyncio.CancelledError:
            cancelled = True  # disconnected all the same: the teardown follows
    entry = os.path.join(sysfs_root, "class", "iscsi_session", f"session{sid}")
    if not session.destroyed.is_set() and not await force_teardown(nl, handle, sid, cid):
        if session.destroyed.is_set() or not os.path.lexists(entry):
            log.info("session %d: destroyed by the kernel during the logout", sid)
        else:  # refused (logged): no event comes
            session.conn_state = "FAILED"  # stopped, and still the kernel's: still managed
            raise SessionError(9, f"session {sid}: the kernel refused to destroy it; it is "
                                  "still there (its connection stopped)")
    if cancelled:
        raise asyncio.CancelledError
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DESTROY_TIMEOUT

    def gone_or_late() -> bool:
        if not os.path.lexists(entry):
            return True
        if loop.time() < deadline:
            return False
        log.warning("session %d: the kernel has not reported it destroyed within %g s; its "
                    "removal goes on", sid, DESTROY_TIMEOUT)
        return True
    await _until((session.destroyed,), DESTROY_POLL, gone_or_late)


async def _until(events: tuple[asyncio.Event, ...], interval: float,
                 look: Callable[[], bool]) -> None:
    """Until one of ``events`` is set, or ``look()``, called every ``interval`` s while
    none is, says True.  One waiter per event for the whole wait (a logout of hundreds
    of sessions made two tasks each, every look, on the loop)."""
    if any(e.is_set() for e in events):
        return
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        while True:
            done, _ = await asyncio.wait(waits, timeout=interval,
                                         return_when=asyncio.FIRST_COMPLETED)
            if done or look():
                return
    finally:
        for w in waits:
            w.cancel()


async def _unbound(session: KernelSession, timeout: float, target_state: str) -> None:
    """Until the kernel has removed the session's devices: its KEVENT_UNBIND_SESSION
    (``session.unbound``), or ``target_state`` UNBOUND; without that attribute, at most
    ``timeout`` s (see :func:`logout`).  A connection error meanwhile
    (``session.logout_conn_failed``) ends the wait: the kernel's device removal (its
    SYNCHRONIZE CACHE) would wait for the session's replacement timeout, and the teardown
    that follows ends it at once (iscsid's __conn_error_handle: session_conn_shutdown).
    So does the session's destruction by the kernel (``session.destroyed``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    said = False

    def unbound_or_late() -> bool:
        nonlocal said
        state = read_attribute(target_state)  # one small sysfs file: on the loop
        if state == "UNBOUND":
            return True
        if loop.time() < deadline:
            return False
        if state is None:
            log.warning("session %d: no unbind event within %g s; continuing", session.sid,
                        timeout)
            return True
        if not said:
            said = True
            log.warning("session %d: the kernel is still removing its devices after %g s "
                        "(their caches written); the Logout waits for it", session.sid,
                        timeout)
        return False
    await _until((session.unbound, session.logout_conn_failed, session.destroyed), UNBIND_POLL,
                 unbound_or_late)


def _tear_down(knl, handle: int, sid: int, cid: int,  # type: ignore[no-untyped-def]
               synchronous: bool = False) -> bool:
    """:func:`force_teardown`'s requests, blocking, on a netlink lane (``knl``: IscsiNetlink).
    Each one is sent whatever the one before answered, refused or left unanswered
    (ReplyTimeout); only a closed socket stops them.  Whether the kernel took the
    session's destruction (DESTROY_SESSION_ASYNC or DESTROY_SESSION answered 0)."""
    for op, args in ((knl.stop_conn, (handle, sid, cid, StopConnFlag.TERM)),
                     (knl.destroy_conn, (handle, sid, cid))):
        try:
            op(*args)
        except NetlinkClosedError:
            raise
        except IscsiNetlinkError as exc:
            log.debug("session %d: %s: %s", sid, op.__name__, exc)
    # the kernel's own work removes the session (ASYNC), else this request does (a kernel
    # without DESTROY_SESSION_ASYNC, or one that did not answer it); ``synchronous``: the
    # other way round
    destroys = [("DESTROY_SESSION_ASYNC", knl.destroy_session_async),
                ("DESTROY_SESSION", knl.destroy_session)]
    for name, destroy in destroys[::-1] if synchronous else destroys:
        try:
            destroy(handle, sid)
            return True
        except NetlinkClosedError:
            raise
        except IscsiNetlinkError as exc:
            refused = exc
            log.debug("session %d: %s: %s", sid, name, exc)
    log.warning("session %d: DESTROY_SESSION failed: %s", sid, refused)
    return False


async def force_teardown(nl, handle: int, sid: int, cid: int,  # type: ignore[no-untyped-def]
                         synchronous: bool = False) -> bool:
    """STOP_CONN(TERM), DESTROY_CONN, DESTROY_SESSION(_ASYNC), each error
    logged and passed: a stuck or half-torn-down session can always be removed.  Returns
    whether the kernel took the destruction (its KEVENT_DESTROY_SESSION follows).

    ``synchronous``: DESTROY_SESSION first (its answer comes once the session and its host
    are removed; the kernel's netlink requests wait meanwhile), for a session without
    devices whose failure is reported next (a refused handover), as a failed login's
    session is (``_discard``); DESTROY_SESSION_ASYNC is the fallback.

    The three run as one job on a netlink lane (its own socket, no turn of the event loop
    between them), not one by one through the loop's socket, whose one-request-at-a-time
    lock would line every session's requests up behind each other's executor and loop
    turns (`-U all` of 32 in the VM: 1.27 s against 1.69 s).  A cancelled teardown still
    runs to its end, then raises CancelledError.  Raises NetlinkClosedError (the daemon
    stops); a refused or unanswered request is logged."""
    return bool(await _lane_job(nl, _tear_down, handle, sid, cid, synchronous))
