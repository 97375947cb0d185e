"""SendTargets discovery over a plain TCP socket (RFC 7143 Appendix C), open-iscsi's way.

One attempt: connect (``discovery.sendtargets.timeo.login_timeout``), Discovery-session login
(CHAP / mutual CHAP from ``discovery.sendtargets.auth.*``, redirects followed; each Login
Response within ``timeo.active_timeout``, as iscsiadm's iscsi_login polls), ``SendTargets=All``
with Text continuation (each Text Response within ``timeo.active_timeout`` of the last PDU, as
open-iscsi restarts its timer), Logout, close
(:func:`discovering` lets the caller's work overlap the Logout).

Retries follow ``discovery.sendtargets.reopen_max``: a connection failure, a timeout of the
text exchange or a retryable rejection (status class 3) is reported through ``log`` and
retried after ``retry_delay`` seconds (never a busy loop: open-iscsi #155), at most
``reopen_max`` times, then :class:`~iscsictl.transport.errors.RetriesExceeded`.
Authentication failures (exit 24), non-retryable rejections and a Login Response that never
comes (19: iscsi_login's LOGIN_FAILED, which usr/discovery.c gives up on) and protocol
violations (5) are not retried.  ``reopen_max = 0``
means a single attempt (discovery is bounded; open-iscsi's "0 = forever" is for sessions).

No kernel module and no root are needed.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping

from ..protocol.config import LoginConfig
from ..protocol.errors import ISCSIProtocolError
from ..protocol.portal import Portal
from ..protocol.text_exchange import SEND_TARGETS_KEYS, DiscoveredTarget, parse_send_targets
from ..transport.errors import (FatalLoginError, InitiatorAuthFailed, LoginFailed,
                                LoginResponseTimeout, ProtocolFailure, RetriesExceeded,
                                ResolveError, RetryableLoginError, TransportError,
                                UnexpectedAnswer)
from ..transport.tcp import Connection, login

__all__ = ["DiscoveryPolicy", "discovering", "send_targets"]


@dataclass(frozen=True)
class DiscoveryPolicy:
    """Timeouts (seconds) and retries of one discovery (open-iscsi discovery.sendtargets.*)."""

    reopen_max: int = 5
    login_timeout: float = 15.0
    auth_timeout: float = 45.0
    active_timeout: float = 30.0
    retry_delay: float = 1.0
    logout: bool = True

    @classmethod
    def from_record(cls, values: Mapping[str, object], **overrides) -> "DiscoveryPolicy":
        """From an st_config record's values (missing or bad values keep the defaults, but
        a negative reopen_max is one attempt and no retry, where iscsiadm's discovery makes
        none at all: "connection login retries (reopen_max) -1 exceeded")."""
        def num(key: str, default, negative=None):
            try:
                v = int(values.get(key, default))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return default
            return v if v >= 0 else default if negative is None else negative
        kw = dict(
            reopen_max=num("discovery.sendtargets.reopen_max", 5, negative=0),
            login_timeout=float(num("discovery.sendtargets.timeo.login_timeout", 15) or 15),
            auth_timeout=float(num("discovery.sendtargets.timeo.auth_timeout", 45) or 45),
            active_timeout=float(num("discovery.sendtargets.timeo.active_timeout", 30) or 30),
        )
        kw.update(overrides)
        return cls(**kw)


#: the pieces of text, and apart from them the targets and portals, left out of one
#: SendTargets answer that are said one by one; the rest are counted (an answer of 16 MiB
#: of garbage is 8 million pieces: as many lines, in the daemon's log at each poll of a
#: use_discoveryd record; counted apart, garbage does not hide a real target left out)
SAID_LEFT_OUT = 20


class _Said:
    """``log`` for the first :data:`SAID_LEFT_OUT` lines, then a count of ``what``
    (:meth:`close`)."""

    def __init__(self, log: Callable[[str], None] | None, what: str) -> None:
        self.log, self.what, self.count = log, what, 0

    def __call__(self, why: str) -> None:
        self.count += 1
        if self.log is not None and self.count <= SAID_LEFT_OUT:
            self.log(why)

    def close(self) -> None:
        if self.log is not None and self.count > SAID_LEFT_OUT:
            self.log(f"SendTargets: {self.count - SAID_LEFT_OUT} more {self.what} left out of "
                     "the answer (not said one by one)")


def _exchange(host: str, port: int, config: LoginConfig, policy: DiscoveryPolicy,
              iface: Mapping[str, str] | None, meanwhile: Callable[[], object] | None = None,
              log: Callable[[str], None] | None = None, left_out: list[str] | None = None
              ) -> tuple[Connection, list[DiscoveredTarget]]:
    """One attempt, through ``iface``'s network device when it binds one
    (:mod:`iscsictl.transport.iface`): log in and ask SendTargets=All.  The logged-in
    connection (the caller closes it) and the targets; a target or portal of the answer
    that is not one is left out, said through ``log``, as a CHAP secret shorter than RFC
    7143 asks is (a node login's warning too).  Raises the transport errors."""
    each = policy.active_timeout  # iscsiadm waits that long for each Login Response
    conn = login(host, port, replace(config, login_timeout=each, auth_timeout=each),
                 iface=iface, meanwhile=meanwhile, connect_timeout=policy.login_timeout,
                 warn=log)
    pieces, entries = _Said(log, "pieces of text"), _Said(log, "targets or portals")
    try:
        try:
            pairs = conn.text([("SendTargets", "All")], policy.active_timeout,
                              skip=lambda why: pieces(f"SendTargets: {why}"),
                              keep=SEND_TARGETS_KEYS)
        except UnexpectedAnswer as e:  # an Async Message, a Reject, a PDU not the answer:
            # open-iscsi's discovery connects again (DISCOVERY_NEED_RECONNECT), reopen_max
            # times (RFC 7143 §11.9: a target may send an Async Message at any time); an
            # answer too long would be as long again: not retried
            raise RetryableLoginError(f"{e}; connecting again") from None
        try:
            return conn, parse_send_targets(pairs, Portal(host, port), entries, left_out)
        except (ValueError, ISCSIProtocolError) as e:
            raise ProtocolFailure(f"SendTargets answer from {conn.endpoint}: {e}") from None
    except BaseException:
        conn.close()
        raise
    finally:
        pieces.close()
        entries.close()


@contextmanager
def _logging_out(conn: Connection, policy: DiscoveryPolicy) -> Iterator[None]:
    """Send the Logout (``policy.logout``) before the block, await its response after it
    (not when the block raises), close the connection in any case.  The answer is in hand:
    a target that drops the logout changes nothing."""
    try:
        response = None
        if policy.logout:
            try:
                response = conn.start_logout()
            except (TransportError, LoginFailed):
                pass
        yield
        if response is not None:
            try:
                response(policy.login_timeout)
            except (TransportError, LoginFailed):
                pass
    finally:
        conn.close()


@contextmanager
def discovering(host: str, port: int, config: LoginConfig,
                policy: DiscoveryPolicy | None = None, *,
                log: Callable[[str], None] | None = None,
                sleep: Callable[[float], None] = time.sleep,
                iface: Mapping[str, str] | None = None,
                meanwhile: Callable[[], object] | None = None,
                left_out: list[str] | None = None
                ) -> Iterator[list[DiscoveredTarget]]:
    """:func:`send_targets` as a context manager: ``with discovering(...) as targets:``.
    The Logout is sent before the block runs and its response awaited when the block ends
    (not when it raises), so that work done with the targets (writing records) overlaps
    the target's side of the logout.  Raises as :func:`send_targets`, on entry.

    ``meanwhile()`` runs at most once, while the target answers the first Login PDU that
    goes out (:meth:`~iscsictl.transport.tcp.Connection.login`); not at all when no
    attempt gets that far.  What it raises propagates unchanged, not retried.
    ``left_out``: as :func:`~iscsictl.protocol.text_exchange.parse_send_targets`'s."""
    policy = policy or DiscoveryPolicy()
    attempts = 1 + max(0, policy.reopen_max)
    last: Exception | None = None
    pending = [meanwhile] if meanwhile is not None else []

    def once() -> None:
        if pending:
            pending.pop()()
    for attempt in range(attempts):
        if attempt:
            sleep(policy.retry_delay)
        try:
            conn, targets = _exchange(host, port, config, policy, iface, once, log, left_out)
            break
        except ResolveError:
            raise  # resolved once, as iscsiadm: another attempt would not change it
        except InitiatorAuthFailed as e:  # discovery.c: LOGIN_AUTHENTICATION_FAILED is fatal
            raise FatalLoginError(str(e)) from None
        except LoginResponseTimeout as e:  # iscsi_login's LOGIN_FAILED: not retried either
            raise FatalLoginError(f"{e} within {policy.active_timeout:g} s "
                                  "(discovery.sendtargets.timeo.active_timeout): giving up"
                                  ) from None
        except (RetryableLoginError, TransportError) as e:
            last = e
        if log:
            for line in getattr(last, "lines", None) or (str(last),):
                log(line)
    else:
        assert last is not None
        raise RetriesExceeded(policy.reopen_max, last)
    with _logging_out(conn, policy):
        yield targets


def send_targets(host: str, port: int, config: LoginConfig,
                 policy: DiscoveryPolicy | None = None, *,
                 log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 iface: Mapping[str, str] | None = None,
                 left_out: list[str] | None = None) -> list[DiscoveredTarget]:
    """SendTargets discovery with open-iscsi's retry policy, through ``iface``'s network
    device when it binds one (open-iscsi iface keys); ``left_out`` as
    :func:`~iscsictl.protocol.text_exchange.parse_send_targets`'s.

    ``config`` is a Discovery-session LoginConfig (``LoginConfig.from_discovery``), its
    login/auth timeouts taken from ``policy``.  ``log(msg)`` receives the lines of each
    failed attempt (iscsiadm prints them; a bind failure is two), and what the answer had
    that is not a target or a portal (left out).  Returns the targets with
    their portals (a target without TargetAddress gets the portal asked), after the Logout.

    Raises: LoginAuthFailed (24), FatalLoginError (19), LoginFailed/ProtocolFailure (5),
    RetriesExceeded (exit code 11, as iscsiadm; the last failure in ``last``).
    """
    with discovering(host, port, config, policy, log=log, sleep=sleep, iface=iface,
                     left_out=left_out) as targets:
        return targets
