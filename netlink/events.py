"""Typed kernel events (``ISCSI_KEVENT_*``) built from decoded messages.

Every event is a frozen dataclass with the kernel's field names and ``msg``, the
decoded pyroute2 message (all fields, including ``payload``).  A message whose
type has no event class here (including a multicast reply to someone else's
GET_STATS/GET_CHAP/GET_HOST_STATS) becomes :class:`UnknownEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .enums import IscsiConnState, IscsiErr, IscsiHostEventCode, IscsiPingStatusCode
from .enums import IscsiUeventE as E

__all__ = [
    "KernelEvent", "RecvPdu", "ConnError", "DestroySession", "UnbindSession", "CreateSession", "PathReq",
    "IfDown", "ConnLoginState", "HostEvent", "PingComp", "UnknownEvent", "EventsLost", "EVENTS_LOST",
    "event_from_message",
]


def _enum(cls: Any, value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class KernelEvent:
    """Base: ``type`` is ``iscsi_uevent.type``; ``msg`` the decoded message."""

    type: int
    msg: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class RecvPdu(KernelEvent):
    """ISCSI_KEVENT_RECV_PDU (101): ``r.recv_req{sid,cid}``; ``pdu`` = BHS (48 B) + AHS + data."""

    sid: int = 0
    cid: int = 0
    pdu: bytes = b""


@dataclass(frozen=True)
class ConnError(KernelEvent):
    """ISCSI_KEVENT_CONN_ERROR (102): ``r.connerror{sid,cid,error}``; error is IscsiErr (or int if unknown)."""

    sid: int = 0
    cid: int = 0
    error: IscsiErr | int = 0


@dataclass(frozen=True)
class DestroySession(KernelEvent):
    """ISCSI_KEVENT_DESTROY_SESSION (104): ``r.d_session{host_no,sid}`` (host_no first on the wire)."""

    host_no: int = 0
    sid: int = 0


@dataclass(frozen=True)
class UnbindSession(KernelEvent):
    """ISCSI_KEVENT_UNBIND_SESSION (105): ``r.unbind_session{sid,host_no}``."""

    sid: int = 0
    host_no: int = 0


@dataclass(frozen=True)
class CreateSession(KernelEvent):
    """ISCSI_KEVENT_CREATE_SESSION (106): ``r.c_session_ret{sid,host_no}`` (firmware-created sessions)."""

    sid: int = 0
    host_no: int = 0


@dataclass(frozen=True)
class PathReq(KernelEvent):
    """ISCSI_KEVENT_PATH_REQ (107, group 2): ``r.req_path.host_no``; ``path`` = struct iscsi_path bytes."""

    host_no: int = 0
    path: bytes = b""


@dataclass(frozen=True)
class IfDown(KernelEvent):
    """ISCSI_KEVENT_IF_DOWN (108, group 2): ``r.notify_if_down.host_no``."""

    host_no: int = 0


@dataclass(frozen=True)
class ConnLoginState(KernelEvent):
    """ISCSI_KEVENT_CONN_LOGIN_STATE (109): ``r.conn_login{sid,cid,state}`` (login offload result)."""

    sid: int = 0
    cid: int = 0
    state: IscsiConnState | int = 0


@dataclass(frozen=True)
class HostEvent(KernelEvent):
    """ISCSI_KEVENT_HOST_EVENT (110): ``r.host_event{host_no,data_size,code}`` + data."""

    host_no: int = 0
    code: IscsiHostEventCode | int = 0
    data: bytes = b""


@dataclass(frozen=True)
class PingComp(KernelEvent):
    """ISCSI_KEVENT_PING_COMP (111): ``r.ping_comp{host_no,status,pid,data_size}`` + data."""

    host_no: int = 0
    status: IscsiPingStatusCode | int = 0
    pid: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class UnknownEvent(KernelEvent):
    """Any other message delivered as an event (unexpected types, other processes' multicast replies)."""


class EventsLost(KernelEvent):
    """Not a kernel message: the socket's receive buffer overran (``recvmsg(2)`` failed
    with ENOBUFS), so the kernel dropped messages at this point of the stream: events, or
    a reply (its request then times out).  The consumer's view of the kernel's state may be
    stale and must be looked at again (netlink(7): "It is up to the application to detect
    when this happens ... and resynchronize").  ``type`` 0, ``msg`` None: use
    :data:`EVENTS_LOST`."""


#: The one :class:`EventsLost` the clients deliver.
EVENTS_LOST = EventsLost(0, None)


def event_from_message(msg: Any) -> KernelEvent:
    """Decoded message -> typed event. Never raises for a decoded message."""
    t = msg.get("type", 0)
    p = msg.get("payload", b"")
    try:
        if t == E.KEVENT_RECV_PDU:
            return RecvPdu(t, msg, msg["r_sid"], msg["r_cid"], p)
        if t == E.KEVENT_CONN_ERROR:
            return ConnError(t, msg, msg["r_sid"], msg["r_cid"], _enum(IscsiErr, msg["r_error"]))
        if t == E.KEVENT_DESTROY_SESSION:
            return DestroySession(t, msg, msg["r_host_no"], msg["r_sid"])
        if t == E.KEVENT_UNBIND_SESSION:
            return UnbindSession(t, msg, msg["r_sid"], msg["r_host_no"])
        if t == E.KEVENT_CREATE_SESSION:
            return CreateSession(t, msg, msg["r_sid"], msg["r_host_no"])
        if t == E.KEVENT_PATH_REQ:
            return PathReq(t, msg, msg["r_host_no"], p)
        if t == E.KEVENT_IF_DOWN:
            return IfDown(t, msg, msg["r_host_no"])
        if t == E.KEVENT_CONN_LOGIN_STATE:
            return ConnLoginState(t, msg, msg["r_sid"], msg["r_cid"], _enum(IscsiConnState, msg["r_state"]))
        if t == E.KEVENT_HOST_EVENT:
            return HostEvent(t, msg, msg["r_host_no"], _enum(IscsiHostEventCode, msg["r_code"]),
                             p[: msg["r_data_size"]])
        if t == E.KEVENT_PING_COMP:
            return PingComp(t, msg, msg["r_host_no"], _enum(IscsiPingStatusCode, msg["r_status"]),
                            msg["r_pid"], p[: msg["r_data_size"]])
    except KeyError:
        pass
    return UnknownEvent(t, msg)
