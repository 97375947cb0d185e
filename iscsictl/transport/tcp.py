"""A small blocking TCP shell around the sans-I/O machines (discovery, userspace probe).

Everything iSCSI is decided in :mod:`iscsictl.protocol`; this module only moves bytes with
deadlines and maps failures to the typed errors of :mod:`.errors`:

* :meth:`Connection.open` resolves ``host`` with getaddrinfo (IPv4, IPv6, host names) and
  connects to each address in turn within ``timeout`` seconds;
* :meth:`Connection.login` drives a :class:`~iscsictl.protocol.login.LoginMachine`, reading
  exactly :meth:`~LoginMachine.needed` bytes, with the machine's own deadline (login_timeout,
  then auth_timeout in the security stage);
* :func:`login` follows redirects (status class 1), at most ``max_redirects`` times;
* :meth:`Connection.text`, :meth:`Connection.scsi` and :meth:`Connection.logout` run in full
  feature phase with the negotiated digests.

No state outlives the socket; no sleeping or retrying here (see
:mod:`iscsictl.discovery.sendtargets` for open-iscsi's reopen policy).
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from ..protocol.chap import ISSUED_CHALLENGES, AuthenticationError
from ..protocol.config import LoginConfig
from ..protocol.constants import LoginStatus
from ..protocol.errors import DataSegmentTooLong, ISCSIProtocolError
from ..protocol.framing import PDUReader
from ..protocol.login import (LoginMachine, LoginRedirect, LoginRedirectFailed, LoginRejected,
                              LoginSuccess, LoginTimeout, UnknownStatusClass)
from ..protocol.names import ISID
from ..protocol.pdu import NOPIn, decode_pdu
from ..protocol.portal import Portal
from ..protocol.scsi import CommandSession, ScsiResult
from ..protocol.session import LogoutExchange, LogoutResult, nop_out_reply
from ..protocol.text_exchange import MAX_RESPONSE_BYTES, TextExchange, UnexpectedPDU
from .iface import BindError, bind_socket
from .errors import (ConnectError, ConnectionClosed, FatalLoginError, InitiatorAuthFailed,
                     LoginAuthFailed, LoginFailed, ProtocolFailure, ResolveError,
                     LoginResponseTimeout, RetryableLoginError, TransportTimeout,
                     UnexpectedAnswer)

__all__ = ["Connection", "login", "new_isid", "DEFAULT_MAX_REDIRECTS"]

DEFAULT_MAX_REDIRECTS = 8
_AUTH_STATUSES = (LoginStatus.AUTHENTICATION_FAILURE, LoginStatus.AUTHORIZATION_FAILURE)
_RECV_CHUNK = 1 << 16


def new_isid() -> bytes:
    """A Random-format ISID (RFC 7143 §11.12.5: type 3, 24 random bits, a 16-bit random
    qualifier) for a userspace session (``--probe``, a discovery).  No kernel session can
    hold it: the daemon's and iscsid's are OUI-format (00:02:3d + a counter), so a login
    with this one never reinstates (§6.3.5) a session the host runs."""
    r = int.from_bytes(os.urandom(5), "big")
    return ISID.random(r >> 16, r & 0xFFFF).to_bytes()


@dataclass(frozen=True)
class Endpoint:
    """Where a connection went: the host as asked, the numeric address, the port."""

    host: str
    address: str
    port: int

    def __str__(self) -> str:
        a = f"[{self.address}]" if ":" in self.address else self.address
        return f"{a}:{self.port}"


@contextmanager
def _login_errors(what: str) -> Iterator[None]:
    """The login machine's errors as the transport's: what the initiator itself finds
    wrong is InitiatorAuthFailed (the target's mutual CHAP proof, no CHAP_A in common) or
    FatalLoginError (a Login Response that breaks the rules, a Reject): never tried again,
    as open-iscsi's discovery takes every failure its iscsi_login reports."""
    try:
        yield
    except AuthenticationError as e:
        raise InitiatorAuthFailed(f"{what}: authentication failed: {e}") from None
    except (LoginRedirectFailed, DataSegmentTooLong, UnknownStatusClass) as e:  # open-
        # iscsi's LOGIN_REDIRECTION_FAILED and LOGIN_IO_ERROR, and a status class it does
        # not know (usr/discovery.c's default case): its discovery connects again
        raise RetryableLoginError(f"{what}: {e}") from None
    except ISCSIProtocolError as e:
        raise FatalLoginError(f"{what}: {e}") from None
    except ValueError as e:  # bad configuration (e.g. empty CHAP secret)
        raise LoginFailed(f"{what}: {e}") from None


class Connection:
    """One TCP connection to a target portal (blocking, deadline-bound reads).

    Created by :meth:`open`; logged in by :meth:`login`; then :meth:`text`, :meth:`scsi`,
    :meth:`logout`; :meth:`close` always (also a context manager).  :attr:`peer` names
    the other end in errors ("the target"; an iSNS client sets "the iSNS server").
    """

    peer = "the target"

    def __init__(self, sock: socket.socket, endpoint: Endpoint):
        self.sock = sock
        self.endpoint = endpoint
        self.success: LoginSuccess | None = None
        self._reader: PDUReader | None = None
        self._hd = self._dd = False
        self._cmds: CommandSession | None = None
        self._itt = 0x10

    # ---- connect ---------------------------------------------------------------------
    @classmethod
    def open(cls, host: str, port: int, timeout: float,
             iface: Mapping[str, str] | None = None) -> "Connection":
        """Connect to ``host``:``port`` (every getaddrinfo address in turn) within ``timeout``
        seconds in all, through ``iface``'s network device when it binds one (open-iscsi
        iface keys, see :mod:`.iface`).  Raises ResolveError (a name that does not resolve),
        ConnectError (refused, unreachable: exit 4), BindError (4) or TransportTimeout (exit 8)."""
        deadline = time.monotonic() + timeout
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                       socket.IPPROTO_TCP)
        except socket.gaierror as e:
            raise ResolveError(host, f"cannot resolve host name ({e.strerror})") from None
        except UnicodeError:  # the idna codec: an empty or over-long label
            raise ResolveError(host, "cannot resolve host name (not a valid name)") from None
        last: Exception | None = None
        for family, stype, proto, _, addr in infos:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock = socket.socket(family, stype, proto)
            try:
                bind_socket(sock, iface, addr[0])
            except BindError:
                sock.close()
                raise
            try:
                sock.settimeout(left)
                sock.connect(addr)
            except socket.timeout:
                sock.close()
                last = TransportTimeout(f"cannot make connection to {addr[0]}: "
                                        "Connection timed out")
                continue
            except OSError as e:
                sock.close()
                last = ConnectError(addr[0], e.strerror or str(e))
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(sock, Endpoint(host, addr[0], port))
        if last is None:
            last = TransportTimeout(f"cannot make connection to {host}: Connection timed out")
        raise last

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- raw reads and writes --------------------------------------------------------
    def recv(self, n: int, deadline: float, what: str) -> bytes:
        """Up to ``n`` bytes, by ``deadline`` (time.monotonic).  Raises TransportTimeout
        or ConnectionClosed (also at EOF); ``what`` prefixes their message."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportTimeout(f"{what}: timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(n)
        except socket.timeout:
            raise TransportTimeout(f"{what}: timed out") from None
        except OSError as e:
            raise ConnectionClosed(f"{what}: connection reset by {self.peer} {self.endpoint} "
                                   f"({e.strerror or e})") from None
        if not data:
            raise ConnectionClosed(f"{what}: connection closed by {self.peer} "
                                   f"{self.endpoint}")
        return data

    def send(self, data: bytes, what: str) -> None:
        """All of ``data``.  Raises ConnectionClosed."""
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ConnectionClosed(f"{what}: {e.strerror or e}") from None

    # ---- login -----------------------------------------------------------------------
    def login(self, config: LoginConfig, isid: bytes | None = None, *, itt: int = 0,
              warn=None, meanwhile: Callable[[], object] | None = None
              ) -> LoginSuccess | LoginRedirect:
        """Log in on this connection.  Returns LoginSuccess (then full feature phase) or
        LoginRedirect.  Raises LoginAuthFailed (24), FatalLoginError (19), LoginFailed (5),
        TransportTimeout (8; LoginResponseTimeout when no Login Response came in time),
        ConnectionClosed (4).

        ``meanwhile()``, when given, runs once the first Login PDU is sent, before its
        response is read: the caller's own work (writing a record) overlaps the target's.
        Its time counts against the login's timeout; what it raises propagates unchanged."""
        what = f"login to {self.endpoint}"
        with _login_errors(what):
            m = LoginMachine(config, isid=isid or new_isid(), itt=itt, rng=os.urandom,
                             issued_challenges=ISSUED_CHALLENGES, warn=warn)
            m.start(time.monotonic())
            self.send(m.data_to_send(), what)
        if meanwhile is not None:
            meanwhile()
        with _login_errors(what):
            outcome = None
            while outcome is None:
                deadline = m.deadline if m.deadline is not None \
                    else time.monotonic() + config.login_timeout
                try:
                    chunk = self.recv(max(1, m.needed()), deadline, what)
                except TransportTimeout:
                    try:
                        m.check_timeout(time.monotonic())
                    except LoginTimeout as e:
                        raise LoginResponseTimeout(f"{what}: {e}") from None
                    raise
                outcome = m.receive_data(chunk, time.monotonic())
                out = m.data_to_send()
                if out:
                    self.send(out, what)
        if isinstance(outcome, LoginRejected):
            msg = f"{what}: {outcome.message}"
            if outcome.status in _AUTH_STATUSES:
                raise LoginAuthFailed(msg)
            if not outcome.retryable:
                raise FatalLoginError(msg)
            raise RetryableLoginError(msg)
        if isinstance(outcome, LoginSuccess):
            self.success = outcome
            p = outcome.params
            self._hd, self._dd = bool(p.header_digest), bool(p.data_digest)
            self._reader = PDUReader(self._hd, self._dd,
                                     max_data_segment_length=p.max_recv_data_segment_length)
            self._cmds = CommandSession(outcome.cmdsn, outcome.exp_statsn, outcome.max_cmdsn)
        return outcome

    # ---- full feature phase ------------------------------------------------------------
    def _next_itt(self) -> int:
        self._itt += 1
        return self._itt

    def _pdus(self, deadline: float, what: str, idle: float | None = None,
              until: Callable[[], bool] | None = None):
        """Yield target PDUs, one taken from the reader at a time, until the caller stops
        (those behind it stay there for the next exchange: a NOP-In read with a response
        is still answered); answers NOP-In pings on the way (RFC 7143 §11.19).  ``idle``:
        each PDU yielded moves the deadline to ``idle`` seconds later (only a silence that
        long times out; NOP-Ins move nothing: a target that pings and never answers is
        given up, as open-iscsi's active_timeout).  Every PDU's CmdSN window is taken;
        ``until()``, when given, ends the iteration once it is true after a PDU (one not
        yielded too)."""
        assert self._reader is not None and self._cmds is not None
        while True:
            try:
                raw = self._reader.next_pdu()
                if raw is None:
                    self._reader.feed(self.recv(_RECV_CHUNK, deadline, what))
                    continue
                pdu = decode_pdu(raw)
            except ISCSIProtocolError as e:
                raise ProtocolFailure(f"{what}: {e}") from None
            self._cmds.note_window(pdu)
            if isinstance(pdu, NOPIn):
                if pdu.ttt != 0xFFFFFFFF:
                    self.send(nop_out_reply(pdu, self._cmds.cmdsn, self._cmds.exp_statsn
                                            ).encode(self._hd, self._dd), what)
            else:
                if idle is not None:
                    deadline = time.monotonic() + idle
                yield pdu
            if until is not None and until():
                return

    def _await_window(self, deadline: float, what: str) -> None:
        """Until the target's CmdSN window takes a command (RFC 7143 §4.2.2.1: a target
        ignores one outside it; a NOP-In or a response opens it), by ``deadline``; what
        comes meanwhile that is not a NOP-In is dropped (nothing is outstanding)."""
        cs = self._cmds
        assert cs is not None
        if cs.window_closed:
            for _ in self._pdus(deadline, what, until=lambda: not cs.window_closed):
                pass

    def text(self, pairs: list[tuple[str, str]], timeout: float,
             max_response_bytes: int = MAX_RESPONSE_BYTES,
             skip: Callable[[str], None] | None = None,
             keep: frozenset[str] | None = None) -> list[tuple[str, str]]:
        """One Text Request/Response exchange (with continuation); the response pairs.
        ``timeout``: seconds the target may stay silent, restarted by each PDU it sends
        (open-iscsi's active_timeout, reset after each PDU in discovery.c): a long answer
        sent slowly is waited for;
        ``skip``, ``keep``: as :class:`.TextExchange`'s (a bad pair left out, said to it;
        the keys kept)."""
        assert self._cmds is not None and self.success is not None
        cs = self._cmds
        what = f"text exchange with {self.endpoint}"
        self._await_window(time.monotonic() + timeout, what)
        ex = TextExchange(pairs, itt=self._next_itt(), cmdsn=cs.cmdsn, exp_statsn=cs.exp_statsn,
                          max_send_segment=self.success.params.max_xmit_data_segment_length,
                          max_response_bytes=max_response_bytes, skip=skip, keep=keep)
        ex.start()
        self.send(ex.data_to_send(self._hd, self._dd), what)
        try:
            for pdu in self._pdus(time.monotonic() + timeout, what, idle=timeout):
                res = ex.receive_pdu(pdu)
                out = ex.data_to_send(self._hd, self._dd)
                if out:
                    self.send(out, what)
                if res is not None:
                    break
        except UnexpectedPDU as e:
            raise UnexpectedAnswer(f"{what}: {e}") from None
        except ISCSIProtocolError as e:
            raise ProtocolFailure(f"{what}: {e}") from None
        cs.cmdsn, cs.exp_statsn = ex.cmdsn, ex.exp_statsn
        return res

    def scsi(self, lun: int, cdb: bytes, read_length: int, timeout: float) -> ScsiResult:
        """Run one read-type SCSI command; its result (status, data, sense)."""
        assert self._cmds is not None
        what = f"SCSI command to {self.endpoint} LUN {lun}"
        deadline = time.monotonic() + timeout
        self._await_window(deadline, what)
        itt, pdu = self._cmds.command(lun, cdb, read_length)
        self.send(pdu.encode(self._hd, self._dd), what)
        try:
            for p in self._pdus(deadline, what):
                done = self._cmds.receive_pdu(p)
                if done is not None and done[0] == itt:
                    return done[1]
        except ISCSIProtocolError as e:
            raise ProtocolFailure(f"{what}: {e}") from None
        raise ProtocolFailure(f"{what}: no response")  # pragma: no cover

    def logout(self, timeout: float) -> LogoutResult:
        """Logout (close the session).  Raises ProtocolFailure, TransportTimeout,
        ConnectionClosed."""
        return self.start_logout()(timeout)

    def start_logout(self) -> Callable[[float], LogoutResult]:
        """Send the Logout Request (close the session); returns the function that waits at
        most ``timeout`` seconds for the Logout Response and returns its result, so that
        other work can overlap the target's.  Raises ConnectionClosed; the function raises
        ProtocolFailure, TransportTimeout, ConnectionClosed."""
        assert self._cmds is not None
        cs = self._cmds
        lo = LogoutExchange(itt=self._next_itt(), cmdsn=cs.cmdsn, exp_statsn=cs.exp_statsn)
        what = f"logout from {self.endpoint}"
        self.send(lo.request.encode(self._hd, self._dd), what)

        def response(timeout: float) -> LogoutResult:
            deadline = time.monotonic() + timeout
            try:
                for p in self._pdus(deadline, what):
                    return lo.receive_pdu(p)
            except ISCSIProtocolError as e:
                raise ProtocolFailure(f"{what}: {e}") from None
            raise ProtocolFailure(f"{what}: no response")  # pragma: no cover
        return response


def login(host: str, port: int, config: LoginConfig, *, isid: bytes | None = None,
          max_redirects: int = DEFAULT_MAX_REDIRECTS, warn=None,
          iface: Mapping[str, str] | None = None,
          meanwhile: Callable[[], object] | None = None,
          connect_timeout: float | None = None) -> Connection:
    """Connect (through ``iface``'s device, if it binds one) and log in, following at most
    ``max_redirects`` redirects.  The connect timeout is ``connect_timeout`` seconds
    (default ``config.login_timeout``).  Returns
    a logged-in Connection (close it).  Raises the errors of :meth:`Connection.open` and
    :meth:`Connection.login`; LoginFailed when the redirect limit is passed.
    ``meanwhile``: as in :meth:`Connection.login`, on the first connection only (not run
    when it cannot be made)."""
    isid = isid or new_isid()
    by = None  # the portal that redirected the login here
    for _ in range(max_redirects + 1):
        try:
            conn = Connection.open(host, port, config.login_timeout if connect_timeout is None
                                   else connect_timeout, iface)
        except ConnectError as e:
            if by is None:
                raise
            # open-iscsi: LOGIN_REDIRECTION_FAILED, retried (a discovery goes on to its
            # reopen_max); not the "resolved once" of the address asked
            raise ConnectError(f"{Portal(host, port).host_port()}, where {by} redirected the "
                               "login", e.reason) from None
        try:
            out = conn.login(config, isid, warn=warn, meanwhile=meanwhile)
            meanwhile = None
        except BaseException:
            conn.close()
            raise
        if isinstance(out, LoginSuccess):
            return conn
        conn.close()
        by = Portal(host, port).host_port()
        host, port = out.portal.address, out.portal.port
    raise LoginFailed(f"login: more than {max_redirects} redirects (last to {host}:{port})")
