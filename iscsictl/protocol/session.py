"""Full-feature-phase PDUs that userspace handles: Logout, NOP, Asynchronous
Message, Reject (RFC 7143 §11.9, §11.14-§11.19).

:class:`LogoutExchange` builds the Logout Request and reads its response.
:func:`interpret` turns a target PDU that reached userspace (through the
kernel's RECV_PDU, or a userspace session) into a typed event for the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import RESERVED_TAG, AsyncEvent, LogoutReason, LogoutResponse, RejectReason
from .errors import ISCSIProtocolError
from .lun import decode_lun
from .pdu import PDU, AsyncMessage, LogoutRequest, NOPIn, NOPOut, Reject
from .pdu import LogoutResponse as LogoutResponsePDU

__all__ = [
    "AsyncEventReceived",
    "ConnectionDropRequested",
    "LogoutExchange",
    "LogoutResult",
    "LogoutRequested",
    "NegotiationRequested",
    "NopInReceived",
    "PDURejected",
    "ScsiAsyncEvent",
    "SessionDropRequested",
    "TaskTermination",
    "VendorAsyncEvent",
    "interpret",
    "nop_out_reply",
]


@dataclass(frozen=True)
class LogoutResult:
    """The target's Logout Response: response code and times in seconds."""

    response: LogoutResponse | int
    time2wait: int
    time2retain: int

    @property
    def ok(self) -> bool:
        return self.response == LogoutResponse.SUCCESS


class LogoutExchange:
    """One Logout Request/Response (§11.14, §11.15).

    The request is immediate, so it does not consume a CmdSN.
    """

    def __init__(self, *, itt: int, cmdsn: int, exp_statsn: int, cid: int = 0,
                 reason: LogoutReason = LogoutReason.CLOSE_SESSION) -> None:
        self.request = LogoutRequest(
            reason_code=int(reason), itt=itt, cid=cid, cmdsn=cmdsn, exp_statsn=exp_statsn
        )

    def receive_pdu(self, pdu: PDU, match_itt: bool = True) -> LogoutResult:
        """Read the Logout Response.

        Args:
            match_itt: check the ITT; False when the kernel relayed the request
                (SEND_PDU assigns its own ITT, CmdSN and ExpStatSN).
        Raises:
            ISCSIProtocolError: not a Logout Response (for our ITT).
        """
        if not isinstance(pdu, LogoutResponsePDU) or (match_itt and pdu.itt != self.request.itt):
            raise ISCSIProtocolError(f"expected the Logout Response, got {type(pdu).__name__}")
        try:
            response: LogoutResponse | int = LogoutResponse(pdu.response)
        except ValueError:
            response = pdu.response
        return LogoutResult(response, pdu.time2wait, pdu.time2retain)


# --- events -----------------------------------------------------------------------


class AsyncEventReceived:
    """Base of the Asynchronous Message events (§11.9.1)."""


@dataclass(frozen=True)
class ScsiAsyncEvent(AsyncEventReceived):
    """AsyncEvent 0: SCSI sense data for a LUN (e.g. REPORTED LUNS DATA HAS CHANGED)."""

    lun: int | None
    sense: bytes

    @property
    def reported_luns_changed(self) -> bool:
        """Sense key UNIT ATTENTION with ASC/ASCQ 3F/0E (SPC-4): rescan the LUNs."""
        from .scsi import parse_sense  # local: scsi is optional for most users

        s = parse_sense(self.sense)
        return s is not None and s.sense_key == 0x6 and (s.asc, s.ascq) == (0x3F, 0x0E)


@dataclass(frozen=True)
class LogoutRequested(AsyncEventReceived):
    """AsyncEvent 1: log out within ``seconds`` (Parameter3)."""

    seconds: int


@dataclass(frozen=True)
class ConnectionDropRequested(AsyncEventReceived):
    """AsyncEvent 2: the target drops connection ``cid``; reconnect after
    ``time2wait`` seconds, within ``time2retain``."""

    cid: int
    time2wait: int
    time2retain: int


@dataclass(frozen=True)
class SessionDropRequested(AsyncEventReceived):
    """AsyncEvent 3: the target drops every connection of the session."""

    time2wait: int
    time2retain: int


@dataclass(frozen=True)
class NegotiationRequested(AsyncEventReceived):
    """AsyncEvent 4: the target asks for parameter renegotiation within
    ``seconds`` (the kernel data path cannot renegotiate: drop and relogin)."""

    seconds: int


@dataclass(frozen=True)
class TaskTermination(AsyncEventReceived):
    """AsyncEvent 5: all active tasks for a LU are being terminated."""

    lun: int | None


@dataclass(frozen=True)
class VendorAsyncEvent(AsyncEventReceived):
    """AsyncEvent 255 (or an unknown code): passed on, not acted on."""

    event: int
    vcode: int
    data: bytes


@dataclass(frozen=True)
class NopInReceived:
    """A target NOP-In.  ``needs_reply`` when the target pings us (TTT set):
    answer with :func:`nop_out_reply`."""

    pdu: NOPIn

    @property
    def needs_reply(self) -> bool:
        return self.pdu.ttt != RESERVED_TAG


@dataclass(frozen=True)
class PDURejected:
    """A Reject: the target refused one of our PDUs."""

    reason: RejectReason | int
    rejected_header: bytes


def _lun(field: bytes) -> int | None:
    try:
        return decode_lun(field)
    except ValueError:
        return None


def interpret(pdu: PDU) -> object:
    """The event for a target PDU that reached userspace in full feature phase.

    Returns: an :class:`AsyncEventReceived` subclass, :class:`NopInReceived`,
    :class:`PDURejected`, or the PDU itself for anything else (e.g. a Logout
    Response, which its :class:`LogoutExchange` reads).
    """
    if isinstance(pdu, AsyncMessage):
        ev = pdu.async_event
        if ev == AsyncEvent.SCSI_ASYNC_EVENT:
            return ScsiAsyncEvent(_lun(pdu.lun), pdu.sense_data)
        if ev == AsyncEvent.LOGOUT_REQUEST:
            return LogoutRequested(pdu.parameter3)
        if ev == AsyncEvent.CONNECTION_DROP:
            return ConnectionDropRequested(pdu.parameter1, pdu.parameter2, pdu.parameter3)
        if ev == AsyncEvent.SESSION_DROP:
            return SessionDropRequested(pdu.parameter2, pdu.parameter3)
        if ev == AsyncEvent.NEGOTIATION_REQUEST:
            return NegotiationRequested(pdu.parameter3)
        if ev == AsyncEvent.TASK_TERMINATION:
            return TaskTermination(_lun(pdu.lun))
        return VendorAsyncEvent(ev, pdu.async_vcode, pdu.data)
    if isinstance(pdu, NOPIn):
        return NopInReceived(pdu)
    if isinstance(pdu, Reject):
        try:
            reason: RejectReason | int = RejectReason(pdu.reason)
        except ValueError:
            reason = pdu.reason
        return PDURejected(reason, pdu.rejected_header)
    return pdu


def nop_out_reply(nop_in: NOPIn, cmdsn: int, exp_statsn: int) -> NOPOut:
    """The NOP-Out that answers a target's ping (§11.18: ITT 0xffffffff,
    the NOP-In's TTT and LUN, immediate, echoing its data)."""
    return NOPOut(immediate=True, lun=nop_in.lun, itt=RESERVED_TAG, ttt=nop_in.ttt,
                  cmdsn=cmdsn, exp_statsn=exp_statsn, data=nop_in.data)
