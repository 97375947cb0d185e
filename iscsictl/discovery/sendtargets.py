"""SendTargets discovery over a plain TCP socket (RFC 7143 Appendix C), open-iscsi's way.

One attempt: connect (``discovery.sendtargets.timeo.login_timeout``), Discovery-session login
(CHAP / mutual CHAP from ``discovery.sendtargets.auth.*``, redirects followed), ``SendTargets=All``
with Text continuation (the whole exchange bounded by ``timeo.active_timeout``), Logout, close.

Retries follow ``discovery.sendtargets.reopen_max``: a connection failure, a timeout or a
retryable rejection (status class 3) is reported through ``log`` and retried after
``retry_delay`` seconds (never a busy loop: open-iscsi #155), at most ``reopen_max`` times,
then :class:`~iscsictl.transport.errors.RetriesExceeded`.  Authentication failures (exit 24),
non-retryable rejections (19) and protocol violations (5) are not retried.  ``reopen_max = 0``
means a single attempt (discovery is bounded; open-iscsi's "0 = forever" is for sessions).

No kernel module and no root are needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

from ..protocol.config import LoginConfig
from ..protocol.portal import Portal
from ..protocol.text_exchange import DiscoveredTarget, parse_send_targets
from ..transport.errors import (LoginFailed, ProtocolFailure, RetriesExceeded,
                                RetryableLoginError, TransportError)
from ..transport.tcp import login

__all__ = ["DiscoveryPolicy", "send_targets", "discover_once"]


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
        """From an st_config record's values (missing or bad values keep the defaults)."""
        def num(key: str, default):
            try:
                v = int(values.get(key, default))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return default
            return v if v >= 0 else default
        kw = dict(
            reopen_max=num("discovery.sendtargets.reopen_max", 5),
            login_timeout=float(num("discovery.sendtargets.timeo.login_timeout", 15) or 15),
            auth_timeout=float(num("discovery.sendtargets.timeo.auth_timeout", 45) or 45),
            active_timeout=float(num("discovery.sendtargets.timeo.active_timeout", 30) or 30),
        )
        kw.update(overrides)
        return cls(**kw)


def discover_once(host: str, port: int, config: LoginConfig, policy: DiscoveryPolicy,
                  warn: Callable[[str], None] | None = None,
                  iface: Mapping[str, str] | None = None) -> list[DiscoveredTarget]:
    """One discovery attempt (no retry), through ``iface``'s network device when it binds
    one (:mod:`iscsictl.transport.iface`).  Raises the transport errors."""
    conn = login(host, port, config, warn=warn, iface=iface)
    try:
        pairs = conn.text([("SendTargets", "All")], policy.active_timeout)
        try:
            targets = parse_send_targets(pairs, Portal(conn.endpoint.address, port))
        except ValueError as e:
            raise ProtocolFailure(f"SendTargets answer from {conn.endpoint}: {e}") from None
        if policy.logout:
            try:
                conn.logout(policy.login_timeout)
            except (TransportError, LoginFailed):
                pass  # the answer is in hand; a target that drops the logout changes nothing
        return targets
    finally:
        conn.close()


def send_targets(host: str, port: int, config: LoginConfig,
                 policy: DiscoveryPolicy | None = None, *,
                 log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 iface: Mapping[str, str] | None = None) -> list[DiscoveredTarget]:
    """SendTargets discovery with open-iscsi's retry policy, through ``iface``'s network
    device when it binds one (open-iscsi iface keys).

    ``config`` is a Discovery-session LoginConfig (``LoginConfig.from_discovery``), its
    login/auth timeouts taken from ``policy``.  ``log(msg)`` receives the lines of each
    failed attempt (iscsiadm prints them; a bind failure is two).  Returns the targets with their portals (a target without
    TargetAddress gets the portal asked).

    Raises: LoginAuthFailed (24), FatalLoginError (19), LoginFailed/ProtocolFailure (5),
    RetriesExceeded (exit code 11, as iscsiadm; the last failure in ``last``).
    """
    policy = policy or DiscoveryPolicy()
    attempts = 1 + max(0, policy.reopen_max)
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(policy.retry_delay)
        try:
            return discover_once(host, port, config, policy, iface=iface)
        except (RetryableLoginError, TransportError) as e:
            last = e
        if log:
            for line in getattr(last, "lines", None) or (str(last),):
                log(line)
    assert last is not None
    raise RetriesExceeded(policy.reopen_max, last)
