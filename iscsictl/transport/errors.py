"""Typed errors of the blocking TCP shell.

Every class carries ``exit_code``: open-iscsi's ``ISCSI_ERR_*`` number (``include/iscsi_err.h``)
that iscsiadm exits with for the same failure, so the CLI maps them without branches.
"""

from __future__ import annotations

ISCSI_ERR_TRANS = 4
ISCSI_ERR_LOGIN = 5
ISCSI_ERR_TRANS_TIMEOUT = 8
ISCSI_ERR_PDU_TIMEOUT = 11
ISCSI_ERR_FATAL_LOGIN = 19
ISCSI_ERR_LOGIN_AUTH_FAILED = 24
ISCSI_ERR_NO_OBJS_FOUND = 21


class TransportError(Exception):
    """A connection-level failure (refused, unreachable, reset, closed by the target).
    Exit code 4 (ISCSI_ERR_TRANS)."""

    exit_code = ISCSI_ERR_TRANS


class ConnectError(TransportError):
    """``connect()`` failed.  Message as iscsiadm's: ``cannot make connection to ADDR: REASON``.
    ``address`` is the numeric address tried, ``reason`` the strerror text."""

    def __init__(self, address: str, reason: str):
        super().__init__(f"cannot make connection to {address}: {reason}")
        self.address = address
        self.reason = reason


class ResolveError(ConnectError):
    """The host name does not resolve (getaddrinfo failed): ``cannot make connection to
    NAME: cannot resolve host name (REASON)``.  Not retried by a discovery: iscsiadm
    resolves the discovery address once, before its first attempt.  Exit code 4."""


class ConnectionClosed(TransportError):
    """The target closed the connection (EOF or reset) before the exchange ended.
    Exit code 4 (ISCSI_ERR_TRANS), as iscsiadm for a connection dropped during login."""


class TransportTimeout(TransportError):
    """No answer within the configured timeout (login_timeout, auth_timeout, active_timeout,
    or the connect timeout).  Exit code 8 (ISCSI_ERR_TRANS_TIMEOUT)."""

    exit_code = ISCSI_ERR_TRANS_TIMEOUT


class LoginResponseTimeout(TransportTimeout):
    """The connection stood but no Login Response came within the login's timeout (the
    target took the Login Request and said nothing).  Exit code 8, as TransportTimeout;
    a discovery gives up on it (19, :func:`~iscsictl.discovery.sendtargets.discovering`)."""


class LoginFailed(Exception):
    """The login did not reach full feature phase: a protocol violation by the target, a
    negotiation failure, or a retryable rejection (status class 3).  Exit code 5
    (ISCSI_ERR_LOGIN)."""

    exit_code = ISCSI_ERR_LOGIN


class FatalLoginError(LoginFailed):
    """A non-retryable rejection (status class 2 other than authentication), e.g. target
    not found (02/03).  Exit code 19 (ISCSI_ERR_FATAL_LOGIN)."""

    exit_code = ISCSI_ERR_FATAL_LOGIN


class LoginAuthFailed(LoginFailed):
    """Authentication failed: the target answered 02/01 or 02/02, or its mutual-CHAP proof
    was wrong (:class:`InitiatorAuthFailed`).  Exit code 24 (ISCSI_ERR_LOGIN_AUTH_FAILED)."""

    exit_code = ISCSI_ERR_LOGIN_AUTH_FAILED


class InitiatorAuthFailed(LoginAuthFailed):
    """The initiator ended the authentication: the target's mutual-CHAP proof was wrong,
    or it offered no CHAP_A the record allows.  24 for a node's login; a discovery's is 19
    (:class:`FatalLoginError`: open-iscsi's discovery takes its iscsi_login's
    LOGIN_AUTHENTICATION_FAILED as fatal, usr/discovery.c)."""


class RetryableLoginError(LoginFailed):
    """The target rejected the login with status class 3 (target error, e.g. service
    unavailable): worth another attempt later.  Exit code 5 (ISCSI_ERR_LOGIN)."""


class ProtocolFailure(LoginFailed):
    """The target broke the rules after login (text exchange, SCSI, logout).  Exit code 5."""


class UnexpectedAnswer(ProtocolFailure):
    """A PDU where a Text Response was awaited (a Reject, an Asynchronous Message): a
    discovery connects again (open-iscsi's DISCOVERY_NEED_RECONNECT).  Exit code 5."""


class RetriesExceeded(TransportError):
    """Every connection attempt failed: ``connection login retries (reopen_max) N exceeded``.
    ``last`` is the last error.  Exit code 11 (ISCSI_ERR_PDU_TIMEOUT) whatever it was, as
    iscsiadm's discovery gives (usr/discovery.c, once reopen_cnt runs out)."""

    exit_code = ISCSI_ERR_PDU_TIMEOUT

    def __init__(self, reopen_max: int, last: Exception):
        super().__init__(f"connection login retries (reopen_max) {reopen_max} exceeded")
        self.reopen_max = reopen_max
        self.last = last
