"""The NETLINK_ISCSI socket: a demultiplexer with a blocking and an asyncio API.

Kernel facts this module is built on (Linux 6.1 ``drivers/scsi/scsi_transport_iscsi.c``):

* a request is ``nlmsghdr{len, type = ev.type, flags = 0, seq, pid}`` + ``struct iscsi_uevent``
  + payload, sent to portid 0; the kernel runs the operation *inside* ``sendmsg()``;
* the reply is unicast with ``nlmsg_seq = 0`` and no ACK, so it can only be matched by
  ``iscsi_uevent.type``: equal to the request type, or ``ISCSI_KEVENT_IF_ERROR`` (103) with
  ``iferror = -errno``;
* GET_STATS, GET_CHAP and GET_HOST_STATS answer by *multicast* (group 1, ``nlmsg_type`` 0)
  with ``ev.type`` = the request type;
* kernel events (``ISCSI_KEVENT_*``) are multicast to group 1 and may arrive before the reply.

Hence the demultiplexer: while a request waits, every message that is not its reply is
queued, in arrival order, as a typed event (:mod:`iscsictl.netlink.events`).  Requests are
strictly one at a time (a lock in both APIs), as the kernel's replies carry no sequence number.

Error policy (chosen here, for every operation): an ``IF_ERROR`` reply, and a negative
``r.retcode`` in a normal reply (BIND_CONN, START_CONN, SEND_PDU return -ENOTCONN this way;
EP_POLL returns its poll result there), raise :class:`IscsiKernelError` with ``errno``,
``op`` and ``source``.  Non-negative retcodes are returned by the few operations that have a
meaning for them (:meth:`ep_poll`).

Events: each decoded event is appended to a queue.  With ``event_callback`` set, the blocking
client calls it for the queued events (in order) right before a request returns and from
:meth:`IscsiNetlink.process_events`; the asyncio client calls it from its reader callback.
Without a callback, take them with ``next_event()`` / ``pending_events()``.  A receive buffer
overrun (``recvmsg`` fails with ENOBUFS: the kernel dropped messages) is delivered in its
place in the stream as :data:`~.events.EVENTS_LOST`, for the consumer to resynchronize.  As
the kernel queues its replies before ``sendmsg()`` returns, a request whose reply is not
among what the socket holds after the send, where an overrun was read, raises
:class:`~.errors.ReplyLost` at once instead of waiting out its timeout.

The transport is injectable (``transport=``): anything with ``fileno()``, ``send(bytes)``,
``recv_into(buffer)`` and ``close()``; the tests use ``socket.socketpair(AF_UNIX, SOCK_DGRAM)``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, NamedTuple, Protocol, Sequence

from .enums import ISCSI_NL_GRP_ISCSID, NETLINK_ISCSI, StopConnFlag
from .enums import IscsiUeventE as E
from .errors import (IscsiKernelError, KernelInterfaceUnavailable, NetlinkClosedError,
                     NetlinkPermissionError, NotInitialNetnsError, PayloadDecodeError, ReplyLost,
                     ReplyTimeout, UnsupportedKernelLayout)
from .events import EVENTS_LOST, KernelEvent, event_from_message
from .messages import (decode_messages, encode_message, encode_nlas, encode_sockaddr, message_encoder,
                       iscsi_chap_rec_payload, iscsi_flashnode_param_info_nla, iscsi_host_stats_custom_payload,
                       iscsi_iface_param_info_nla, iscsi_offload_host_stats_payload, iscsi_param_info_nla,
                       iscsi_path_payload, iscsi_stats_custom_payload, iscsi_stats_payload)

__all__ = [
    "Transport", "open_netlink_socket", "in_initial_netns", "kernel_is_x86_32", "SessionIds",
    "ConnStats", "HostStats", "ChapRec", "IscsiNetlink", "AsyncIscsiNetlink", "DEFAULT_TIMEOUT", "DEFAULT_RCVBUF", "run_through",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_RCVBUF = 4 * 1024 * 1024
_RECV_BUFSIZE = 1024 * 1024  # larger than any iSCSI netlink message (RECV_PDU <= 56+48+8192+pad)
#: Datagrams one read takes at most before its messages are handed on.  A flood of kernel
#: events (a target's Async Messages come up as RECV_PDU events, one each) cannot hold the
#: caller (the daemon's event loop) for as long as it lasts, nor pile up undecoded in
#: memory; the socket, still readable, is read again at the loop's next pass, as iscsid's
#: poll loop reads one message a pass (usr/event_poll.c).
READ_BATCH = 256
_MULTICAST_REPLIES = {E.GET_STATS, E.GET_CHAP, E.GET_HOST_STATS}
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class Transport(Protocol):
    """What the clients need from a socket (``socket.socket`` satisfies it)."""

    def fileno(self) -> int: ...
    def send(self, data: bytes) -> int: ...
    def recv_into(self, buffer: bytearray) -> int: ...
    def close(self) -> None: ...


def in_initial_netns() -> bool | None:
    """True/False when ``/proc/self/ns/net`` and ``/proc/1/ns/net`` can be compared, None when unknown."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return None


#: machine names (``uname -m``) of 32-bit x86
_X86_32 = frozenset(("i386", "i486", "i586", "i686"))


def kernel_is_x86_32() -> bool:
    """Whether the kernel is a 32-bit x86 one (:class:`UnsupportedKernelLayout`).  Only a
    32-bit process can run on one, and a 32-bit process on an x86_64 kernel (its
    IA32_EMULATION) finds ``/proc/sys/abi/vsyscall32``, which only x86_64 kernels have
    (``uname -m`` alone would take ``linux32``'s i686 for the kernel's)."""
    return (struct.calcsize("P") == 4 and os.uname().machine in _X86_32
            and not os.path.exists("/proc/sys/abi/vsyscall32"))


def _say_small_rcvbuf(sock: socket.socket, rcvbuf: int) -> None:
    """Warn when the receive buffer came out smaller than asked (SO_RCVBUFFORCE refused, as
    without CAP_NET_ADMIN in the initial user namespace, and SO_RCVBUF capped by
    net.core.rmem_max): a burst of kernel events can then overrun it (ENOBUFS)."""
    try:
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # the kernel doubles it
    except OSError:
        return
    if got < rcvbuf:
        log.warning("iscsi netlink: receive buffer %d bytes, %d asked: a burst of kernel "
                    "events may overrun it; raise net.core.rmem_max", got, rcvbuf)


def open_netlink_socket(groups: int = ISCSI_NL_GRP_ISCSID, rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """Open, size, bind and set non-blocking a NETLINK_ISCSI socket.

    Args:
        groups: ``sockaddr_nl.nl_groups`` bitmask (1 = ISCSI_NL_GRP_ISCSID, as iscsid).
        rcvbuf: receive buffer in bytes (SO_RCVBUFFORCE when root, else SO_RCVBUF, capped by rmem_max).

    Raises:
        KernelInterfaceUnavailable: EPROTONOSUPPORT (scsi_transport_iscsi not loaded).
        NetlinkPermissionError: EPERM/EACCES (binding to the multicast group needs privileges).
        NotInitialNetnsError: the process is detectably not in the initial network namespace.
        UnsupportedKernelLayout: a 32-bit x86 kernel, whose message layout differs.
        OSError: anything else.
    """
    if kernel_is_x86_32():
        raise UnsupportedKernelLayout()
    if in_initial_netns() is False:
        raise NotInitialNetnsError("/proc/self/ns/net differs from /proc/1/ns/net")
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ISCSI)
    except OSError as exc:
        if exc.errno == errno.EPROTONOSUPPORT:
            raise KernelInterfaceUnavailable(str(exc)) from exc
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise NetlinkPermissionError("opening a NETLINK_ISCSI socket") from exc
        raise
    try:
        for opt in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF) if os.geteuid() == 0 else (socket.SO_RCVBUF,)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError as exc:
                log.debug("setsockopt(%d, %d): %s", opt, rcvbuf, exc)
        _say_small_rcvbuf(sock, rcvbuf)
        try:
            sock.bind((0, groups))
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise NetlinkPermissionError(f"subscribing to iSCSI netlink multicast groups {groups:#x}") from exc
            raise
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class SessionIds(NamedTuple):
    """``r.c_session_ret``: kernel session id and SCSI host number."""

    sid: int
    host_no: int


@dataclass(frozen=True)
class ConnStats:
    """``struct iscsi_stats`` of one connection: ``counters`` by kernel field name (octets in bytes),
    ``custom`` = [(desc, value)] from ``struct iscsi_stats_custom``."""

    sid: int
    cid: int
    counters: dict[str, int]
    custom: tuple[tuple[str, int], ...] = ()

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["counters"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class HostStats:
    """``struct iscsi_offload_host_stats``: ``counters`` by kernel field name; ``custom`` = [(desc, value)]."""

    host_no: int
    counters: dict[str, int]
    custom: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ChapRec:
    """``struct iscsi_chap_rec``: one entry of an HBA's CHAP table (password is raw bytes)."""

    chap_tbl_idx: int
    chap_type: int
    username: str
    password: bytes = field(repr=False)


def _cstr(b: bytes) -> str:
    """A C string's text: up to its NUL, bytes that are not UTF-8 kept as surrogates (so
    they are written back as the same bytes)."""
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _customs(cls: type, data: bytes, offset: int, count: int) -> tuple[tuple[str, int], ...]:
    size = cls.size()
    out = []
    for i in range(count):
        if offset + (i + 1) * size > len(data):
            raise PayloadDecodeError(f"custom stats: {count} announced, only {i} present")
        d = cls.from_bytes(data, offset + i * size)
        out.append((_cstr(d["desc"]), d["value"]))
    return tuple(out)


def _parse_stats(msg: Any) -> ConnStats:
    p = msg["payload"]
    try:
        d = iscsi_stats_payload.from_bytes(p)
    except ValueError as exc:
        raise PayloadDecodeError(str(exc)) from exc
    custom = _customs(iscsi_stats_custom_payload, p, iscsi_stats_payload.size(), d.pop("custom_length"))
    return ConnStats(msg["sid"], msg["cid"], d, custom)


def _parse_host_stats(msg: Any) -> HostStats:
    p = msg["payload"]
    try:
        d = iscsi_offload_host_stats_payload.from_bytes(p)
    except ValueError as exc:
        raise PayloadDecodeError(str(exc)) from exc
    custom = _customs(iscsi_host_stats_custom_payload, p, iscsi_offload_host_stats_payload.size(),
                      d.pop("custom_length"))
    return HostStats(msg["host_no"], d, custom)


def _parse_chap(msg: Any) -> list[ChapRec]:
    p = msg["payload"]
    size = iscsi_chap_rec_payload.size()
    n = msg["num_entries"]
    if n * size > len(p):
        raise PayloadDecodeError(f"GET_CHAP: {n} entries announced, {len(p)} bytes present")
    out = []
    for i in range(n):
        d = iscsi_chap_rec_payload.from_bytes(p, i * size)
        out.append(ChapRec(d["chap_tbl_idx"], d["chap_type"], _cstr(d["username"]),
                           bytes(d["password"][: d["password_length"]])))
    return out


def _as_event(msg: Any) -> KernelEvent:
    """A message read that is not a reply -> its event (:data:`EVENTS_LOST` as it is)."""
    return msg if msg is EVENTS_LOST else event_from_message(msg)


def _int32(v: int) -> int:
    return struct.unpack("=i", struct.pack("=I", v & 0xFFFFFFFF))[0]


_IF_ERROR = int(E.KEVENT_IF_ERROR)  # a plain int: compared for every reply


def _errno(negative: int) -> int:
    """The errno of a kernel's ``-errno`` (``ev.iferror``, ``r.retcode``); EIO for a value
    that is not one (the kernel's errnos are 1..MAX_ERRNO, 4095)."""
    err = -negative
    return err if 0 < err <= 4095 else errno.EIO


def _check_reply(req_type: int, msg: Any) -> Any:
    """Raise IscsiKernelError for IF_ERROR or a negative r.retcode; return msg otherwise."""
    if msg["type"] == _IF_ERROR:
        raise IscsiKernelError(_errno(_int32(msg["iferror"])), E(req_type).name, "iferror")
    if msg.get("r_retcode", 0) < 0:
        raise IscsiKernelError(_errno(msg["r_retcode"]), E(req_type).name, "retcode")
    return msg


#: requests whose kernel handler can block for long (device removal, flushing work; an
#: offload driver's connect: be2iscsi waits for its firmware's, bnx2i up to 2 s for its
#: offload of the connection, whatever non_blocking says)
BLOCKING_OPS = frozenset({
    E.DESTROY_SESSION, E.DESTROY_CONN, E.STOP_CONN, E.UNBIND_SESSION,
    E.TRANSPORT_EP_DISCONNECT, E.LOGOUT_FLASHNODE, E.LOGOUT_FLASHNODE_SID, E.LOGIN_FLASHNODE,
    E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_CONNECT_THROUGH_HOST,
})


class _Request(NamedTuple):
    ev_type: int
    data: bytes
    match: Callable[[Any], bool] | None
    parse: Callable[[Any], Any]
    timeout: float | None


def _no_result(msg: Any) -> None:
    return None


def _batch_results(reqs: list[_Request], replies: list[Any]) -> list[Any]:
    """Each request's parsed reply or its IscsiKernelError, in order."""
    out = []
    for req, msg in zip(reqs, replies):
        try:
            out.append(req.parse(_check_reply(req.ev_type, msg)))
        except IscsiKernelError as exc:
            out.append(exc)
    return out


def _one_datagram(reqs: list[_Request]) -> bool:
    """Whether a batch goes as one datagram: the kernel's ``iscsi_if_rx`` handles the
    messages of one skb in turn under its mutex and answers each, in order (an error reply
    included), so one ``sendmsg()`` replaces len(reqs) - unless one of them can block there."""
    return len(reqs) > 1 and not any(r.ev_type in BLOCKING_OPS for r in reqs)


def _reply_timeout(reqs: list[_Request], got: int, timeout: float) -> ReplyTimeout:
    what = E(reqs[0].ev_type).name
    return ReplyTimeout(f"no reply to {what} within {timeout:g} s" if len(reqs) == 1
                        else f"{got} of {len(reqs)} replies to a batch of {what} within {timeout:g} s")


def _reply_lost(reqs: list[_Request], got: int) -> ReplyLost:
    what = E(reqs[0].ev_type).name
    return ReplyLost((f"no reply to {what}" if len(reqs) == 1 else
                      f"{got} of {len(reqs)} replies to a batch of {what}")
                     + ": the kernel dropped it (netlink receive buffer overrun)")


#: SET_PARAM, a login's most frequent request (~30 each), without keyword plumbing
_encode_set_param = message_encoder(E.SET_PARAM, "sid", "cid", "param", "len")
#: (ev_type, the uevent fields a request sets, in its order) -> message_encoder's encoder:
#: a request's bytes by one pack() call of the values that vary
_ENCODERS: dict[tuple[Any, ...], Callable[..., bytes]] = {}


def _str_payload(value: str) -> bytes:
    """A string parameter's bytes, NUL-terminated: UTF-8, and a byte that is not (a string
    decoded with surrogateescape: a CHAP secret from the firmware) as it was."""
    if "\0" in value:
        raise ValueError("parameter value must not contain NUL")
    return value.encode("utf-8", "surrogateescape") + b"\0"


class _Operations:
    """One method per kernel operation; each builds a :class:`_Request` and hands it to ``_call``.

    In :class:`IscsiNetlink` the methods return the result; in :class:`AsyncIscsiNetlink` they
    return an awaitable of it.  ``handle`` is the transport handle (``iscsi_uevent.transport_handle``,
    from ``/sys/class/iscsi_transport/<name>/handle``); ``timeout`` is in seconds (None = the
    client's default).  Every method raises :class:`IscsiKernelError`, :class:`ReplyTimeout`,
    :class:`NotInitialNetnsError`, :class:`NetlinkClosedError`.
    """

    _pid: int = 0
    _seq: int = 0

    def _call(self, req: _Request) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _req(self, ev_type: int, handle: int, **kw: Any) -> Any:
        return self._call(self._request(ev_type, handle, **kw))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _request(self, ev_type: int, handle: int, *, payload: bytes = b"", parse: Callable[[Any], Any] = _no_result,
                 match: Callable[[Any], bool] | None = None, timeout: float | None = None, **fields: Any) -> _Request:
        key = (ev_type, *fields)
        encode = _ENCODERS.get(key)
        if encode is None:
            encode = _ENCODERS[key] = message_encoder(ev_type, *fields)
        return _Request(ev_type, encode(self._next_seq(), self._pid, handle, *fields.values(), payload=payload),
                        match, parse, timeout)

    def call(self, ev_type: int, handle: int = 0, *, payload: bytes = b"", timeout: float | None = None,
             match: Callable[[Any], bool] | None = None, **fields: Any) -> Any:
        """Send any request by type with raw uevent fields (names as in :mod:`.messages`) and return
        the decoded, checked reply message (a dict, see :func:`.messages.decode_messages`).
        For experiments in the VM; the typed methods below are the normal API."""
        data = encode_message(ev_type, transport_handle=handle, payload=payload, nlmsg_seq=self._next_seq(),
                              nlmsg_pid=self._pid, **fields)  # any field, iferror too
        return self._call(_Request(ev_type, data, match, lambda m: m, timeout))

    # ---- sessions and connections
    def create_session(self, handle: int, initial_cmdsn: int, cmds_max: int, queue_depth: int, *,
                       timeout: float | None = None) -> SessionIds:
        """ISCSI_UEVENT_CREATE_SESSION (unbound, iscsi_tcp): ``u.c_session`` -> ``SessionIds(sid, host_no)``."""
        return self._req(E.CREATE_SESSION, handle, initial_cmdsn=initial_cmdsn, cmds_max=cmds_max,
                         queue_depth=queue_depth, timeout=timeout,
                         parse=lambda m: SessionIds(m["r_sid"], m["r_host_no"]))

    def create_bound_session(self, handle: int, ep_handle: int, initial_cmdsn: int, cmds_max: int,
                             queue_depth: int, *, timeout: float | None = None) -> SessionIds:
        """ISCSI_UEVENT_CREATE_BOUND_SESSION (iser/offload, ep from ep_connect) -> ``SessionIds``."""
        return self._req(E.CREATE_BOUND_SESSION, handle, ep_handle=ep_handle, initial_cmdsn=initial_cmdsn,
                         cmds_max=cmds_max, queue_depth=queue_depth, timeout=timeout,
                         parse=lambda m: SessionIds(m["r_sid"], m["r_host_no"]))

    def destroy_session(self, handle: int, sid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_DESTROY_SESSION: synchronous in the kernel (removes the SCSI target; can be slow).
        EBUSY while connections exist."""
        return self._req(E.DESTROY_SESSION, handle, sid=sid, timeout=timeout)

    def destroy_session_async(self, handle: int, sid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_DESTROY_SESSION_ASYNC: the kernel queues the destruction and returns at once."""
        return self._req(E.DESTROY_SESSION_ASYNC, handle, sid=sid, timeout=timeout)

    def unbind_session(self, handle: int, sid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_UNBIND_SESSION: queues removal of the SCSI target; KEVENT_UNBIND_SESSION follows."""
        return self._req(E.UNBIND_SESSION, handle, sid=sid, timeout=timeout)

    def create_conn(self, handle: int, sid: int, cid: int, *, timeout: float | None = None) -> int:
        """ISCSI_UEVENT_CREATE_CONN -> the cid (``r.c_conn_ret.cid``); (u32)-1 raises ENOMEM."""
        return self._call(self._create_conn_request(handle, sid, cid, timeout))

    def _create_conn_request(self, handle: int, sid: int, cid: int, timeout: float | None) -> _Request:
        def parse(m: Any) -> int:
            if m["r_cid"] == 0xFFFFFFFF:
                raise IscsiKernelError(errno.ENOMEM, "CREATE_CONN", "retcode")
            return m["r_cid"]
        return self._request(E.CREATE_CONN, handle, sid=sid, cid=cid, timeout=timeout, parse=parse)

    def create_and_start_conn(self, handle: int, sid: int, cid: int, transport_eph: int,
                              params: Iterable[tuple[int, str]], *, is_leading: bool = True,
                              host_no: int = 0, host_params: Iterable[tuple[int, str]] = (),
                              timeout: float | None = None) -> list[Any]:
        """CREATE_CONN(cid), BIND_CONN(transport_eph), a SET_PARAM per ``(IscsiParam, text)``
        pair, a SET_HOST_PARAM on ``host_no`` per ``(IscsiHostParam, text)`` pair of
        ``host_params`` and START_CONN as one batch (iscsid's order): one datagram in
        :class:`IscsiNetlink` (the kernel's ``iscsi_if_rx`` handles the messages of an skb in
        order and answers each, so a connection comes up in one ``sendmsg()``).  Every
        request is sent whatever the earlier ones answer (after a failed CREATE_CONN or
        BIND_CONN the rest fail too).  Returns one entry per request, in order: the cid
        (``r.c_conn_ret.cid``), then None for each success, or the :class:`IscsiKernelError`
        the kernel answered.  ReplyTimeout and closed-socket errors raise."""
        return self._call_many([
            self._create_conn_request(handle, sid, cid, timeout),
            self._bind_conn_request(handle, sid, cid, transport_eph, is_leading, timeout),
            *(self._set_param_request(handle, sid, cid, p, v, timeout) for p, v in params),
            *(self._set_host_param_request(handle, host_no, p, v, timeout) for p, v in host_params),
            self._request(E.START_CONN, handle, sid=sid, cid=cid, timeout=timeout),
        ])

    def destroy_conn(self, handle: int, sid: int, cid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_DESTROY_CONN (flushes the kernel's cleanup work)."""
        return self._req(E.DESTROY_CONN, handle, sid=sid, cid=cid, timeout=timeout)

    def bind_conn(self, handle: int, sid: int, cid: int, transport_eph: int, is_leading: bool, *,
                  timeout: float | None = None) -> None:
        """ISCSI_UEVENT_BIND_CONN. ``transport_eph``: for iscsi_tcp the connected TCP socket's fd *in this
        process* (the kernel does ``sockfd_lookup``); for iser/offload the ep handle. ``r.retcode`` < 0 raises
        (EEXIST: bad fd; EINVAL: not TCP; ENOTCONN: cleanup pending)."""
        return self._call(self._bind_conn_request(handle, sid, cid, transport_eph, is_leading, timeout))

    def _bind_conn_request(self, handle: int, sid: int, cid: int, transport_eph: int, is_leading: bool,
                           timeout: float | None) -> _Request:
        return self._request(E.BIND_CONN, handle, sid=sid, cid=cid, transport_eph=transport_eph,
                             is_leading=int(bool(is_leading)), timeout=timeout)

    def set_param(self, handle: int, sid: int, cid: int, param: int, value: str, *,
                  timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SET_PARAM: ``param`` is ``IscsiParam``; ``value`` the ASCII text (ints as ``"%d"``).
        ENOTCONN unless the conn is BOUND/UP (except SESS_RECOVERY_TMO); ENOSYS when unsupported."""
        return self._call(self._set_param_request(handle, sid, cid, param, value, timeout))

    def set_params(self, handle: int, sid: int, cid: int, params: Iterable[tuple[int, str]], *,
                   timeout: float | None = None) -> list[IscsiKernelError | None]:
        """Several ISCSI_UEVENT_SET_PARAMs back to back, ``params`` as ``(IscsiParam, text)``
        pairs in order: one hold of the socket, no event-loop turn between them (the kernel
        answers each inside ``sendmsg()``).  Every one is sent whatever the others answer;
        the result has one entry per pair, None or the :class:`IscsiKernelError` the kernel
        answered (ENOSYS, ENOTCONN ...).  ReplyTimeout and closed-socket errors still raise."""
        return self._call_many([self._set_param_request(handle, sid, cid, p, v, timeout) for p, v in params])

    def set_params_and_start_conn(self, handle: int, sid: int, cid: int,
                                  params: Iterable[tuple[int, str]], *,
                                  timeout: float | None = None) -> list[IscsiKernelError | None]:
        """The SET_PARAMs of ``params`` then START_CONN, as one batch (a relogin's end, iscsid's
        order): one datagram.  Every request is sent whatever the others answer; one entry
        per request in order, the last START_CONN's: None or the :class:`IscsiKernelError`
        the kernel answered.  ReplyTimeout and closed-socket errors raise."""
        return self._call_many([
            *(self._set_param_request(handle, sid, cid, p, v, timeout) for p, v in params),
            self._request(E.START_CONN, handle, sid=sid, cid=cid, timeout=timeout),
        ])

    def _call_many(self, reqs: list[_Request]) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _set_param_request(self, handle: int, sid: int, cid: int, param: int, value: str,
                           timeout: float | None) -> _Request:
        payload = _str_payload(value)
        return _Request(E.SET_PARAM, _encode_set_param(self._next_seq(), self._pid, handle, sid, cid, int(param),
                                                       len(payload), payload=payload),
                        None, _no_result, timeout)

    def start_conn(self, handle: int, sid: int, cid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_START_CONN; ``r.retcode`` < 0 raises (EINVAL: FirstBurst > MaxBurst; ENOTCONN)."""
        return self._req(E.START_CONN, handle, sid=sid, cid=cid, timeout=timeout)

    def stop_conn(self, handle: int, sid: int, cid: int, flag: int = StopConnFlag.TERM, *,
                  timeout: float | None = None) -> None:
        """ISCSI_UEVENT_STOP_CONN with ``flag`` StopConnFlag TERM(1)/SUSPEND(2)/RECOVER(3); conn_handle 0."""
        return self._req(E.STOP_CONN, handle, sid=sid, cid=cid, conn_handle=0, flag=int(flag), timeout=timeout)

    def send_pdu(self, handle: int, sid: int, cid: int, hdr: bytes, data: bytes = b"", *,
                 timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SEND_PDU: ``hdr`` = BHS (+AHS), ``data`` = data segment (at most 8192 bytes for
        login/text on iscsi_tcp; the kernel sets ITT and CmdSN). ``r.retcode`` < 0 raises."""
        return self._req(E.SEND_PDU, handle, sid=sid, cid=cid, hdr_size=len(hdr), data_size=len(data),
                         payload=bytes(hdr) + bytes(data), timeout=timeout)

    def get_stats(self, handle: int, sid: int, cid: int, *, timeout: float | None = None) -> ConnStats:
        """ISCSI_UEVENT_GET_STATS -> ConnStats (the reply is multicast; matched on type, sid and cid)."""
        return self._req(E.GET_STATS, handle, sid=sid, cid=cid, timeout=timeout, parse=_parse_stats,
                         match=lambda m: m["type"] != E.GET_STATS or (m["sid"], m["cid"]) == (sid, cid))

    # ---- endpoints (iser / offload)
    def ep_connect(self, handle: int, address: str, port: int, *, non_blocking: bool = True,
                   host_no: int | None = None, timeout: float | None = None) -> int:
        """ISCSI_UEVENT_TRANSPORT_EP_CONNECT (or ..._THROUGH_HOST when ``host_no`` is given) with a
        sockaddr_in/in6 payload -> the ep handle (``r.ep_connect_ret.handle``, u64)."""
        sa = encode_sockaddr(address, port)
        if host_no is None:
            return self._req(E.TRANSPORT_EP_CONNECT, handle, non_blocking=int(non_blocking), payload=sa,
                             timeout=timeout, parse=lambda m: m["r_handle"])
        return self._req(E.TRANSPORT_EP_CONNECT_THROUGH_HOST, handle, host_no=host_no,
                         non_blocking=int(non_blocking), payload=sa, timeout=timeout, parse=lambda m: m["r_handle"])

    def ep_poll(self, handle: int, ep_handle: int, timeout_ms: int, *, timeout: float | None = None) -> int:
        """ISCSI_UEVENT_TRANSPORT_EP_POLL -> ``r.retcode``: > 0 connected, 0 not yet (< 0 raises)."""
        return self._req(E.TRANSPORT_EP_POLL, handle, ep_handle=ep_handle, timeout_ms=timeout_ms, timeout=timeout,
                         parse=lambda m: m["r_retcode"])

    def ep_disconnect(self, handle: int, ep_handle: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_TRANSPORT_EP_DISCONNECT."""
        return self._req(E.TRANSPORT_EP_DISCONNECT, handle, ep_handle=ep_handle, timeout=timeout)

    # ---- hosts (offload HBAs)
    def tgt_dscvr(self, handle: int, host_no: int, dscvr_type: int, enable: bool, address: str, port: int, *,
                  timeout: float | None = None) -> None:
        """ISCSI_UEVENT_TGT_DSCVR: ``dscvr_type`` IscsiTgtDscvr; sockaddr of the discovery server."""
        return self._req(E.TGT_DSCVR, handle, dscvr_type=int(dscvr_type), host_no=host_no, enable=int(enable),
                         payload=encode_sockaddr(address, port), timeout=timeout)

    def set_host_param(self, handle: int, host_no: int, param: int, value: str, *,
                       timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SET_HOST_PARAM: ``param`` IscsiHostParam, ``value`` text (NUL added)."""
        return self._call(self._set_host_param_request(handle, host_no, param, value, timeout))

    def _set_host_param_request(self, handle: int, host_no: int, param: int, value: str,
                                timeout: float | None) -> _Request:
        payload = _str_payload(value)
        return self._request(E.SET_HOST_PARAM, handle, host_no=host_no, param=int(param),
                             len=len(payload), payload=payload, timeout=timeout)

    def path_update(self, handle: int, host_no: int, path: dict[str, Any], *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_PATH_UPDATE with a ``struct iscsi_path`` given as a dict of its fields."""
        return self._req(E.PATH_UPDATE, handle, host_no=host_no, payload=iscsi_path_payload.to_bytes(**path),
                         timeout=timeout)

    def set_iface_params(self, handle: int, host_no: int, entries: Sequence[dict[str, Any]], *,
                         timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SET_IFACE_PARAMS: each entry has iface_num, param, iface_type (1 IPv4, 2 IPv6),
        param_type (IscsiParamType.ISCSI_NET_PARAM / ISCSI_IFACE_PARAM) and value (bytes)."""
        return self._req(E.SET_IFACE_PARAMS, handle, host_no=host_no, count=len(entries),
                         payload=encode_nlas(iscsi_iface_param_info_nla, list(entries)), timeout=timeout)

    def ping(self, handle: int, host_no: int, iface_num: int, iface_type: int, payload_size: int, pid: int,
             address: str, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_PING; the result arrives later as a PingComp event with the same ``pid``."""
        return self._req(E.PING, handle, host_no=host_no, iface_num=iface_num, iface_type=iface_type,
                         payload_size=payload_size, pid=pid, payload=encode_sockaddr(address, 0), timeout=timeout)

    def get_chap(self, handle: int, host_no: int, chap_tbl_idx: int, num_entries: int, *,
                 timeout: float | None = None) -> list[ChapRec]:
        """ISCSI_UEVENT_GET_CHAP (multicast reply) -> the valid entries (``u.get_chap.num_entries`` of the reply).
        The reply is this request's when it names the same host and first index (the kernel's
        iscsi_get_chap echoes both): another process's GET_CHAP answer reaches every socket."""
        return self._req(E.GET_CHAP, handle, host_no=host_no, num_entries=num_entries, chap_tbl_idx=chap_tbl_idx,
                         timeout=timeout, parse=_parse_chap,
                         match=lambda m: m["type"] != E.GET_CHAP or (
                             m["host_no"] == host_no and m["chap_tbl_idx"] == chap_tbl_idx))

    def set_chap(self, handle: int, host_no: int, entries: Sequence[dict[str, Any]], *,
                 timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SET_CHAP: entries {param: IscsiChapParam, value: bytes} (iscsi_param_info nlattrs)."""
        return self._req(E.SET_CHAP, handle, host_no=host_no,
                         payload=encode_nlas(iscsi_param_info_nla, list(entries)), timeout=timeout)

    def delete_chap(self, handle: int, host_no: int, chap_tbl_idx: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_DELETE_CHAP."""
        return self._req(E.DELETE_CHAP, handle, host_no=host_no, chap_tbl_idx=chap_tbl_idx, timeout=timeout)

    def get_host_stats(self, handle: int, host_no: int, *, timeout: float | None = None) -> HostStats:
        """ISCSI_UEVENT_GET_HOST_STATS -> HostStats.  The kernel multicasts the stats
        (nlmsg_type 0, iscsi_get_host_stats) and then unicasts the request's echo without
        them (iscsi_if_rx spares only GET_STATS and GET_CHAP that echo): the stats are the
        reply; the echo, read later, is an UnknownEvent like any late reply.  A socket in
        no multicast group never sees the stats (ReplyTimeout)."""
        return self._req(E.GET_HOST_STATS, handle, host_no=host_no, timeout=timeout, parse=_parse_host_stats,
                         match=lambda m: m["type"] != E.GET_HOST_STATS or (
                             m["header"]["type"] == 0 and m["host_no"] == host_no))

    # ---- flash nodes (qla4xxx)
    def set_flashnode_params(self, handle: int, host_no: int, flashnode_idx: int,
                             entries: Sequence[dict[str, Any]], *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_SET_FLASHNODE_PARAMS: entries {param: IscsiFlashnodeParam, value: bytes}."""
        return self._req(E.SET_FLASHNODE_PARAMS, handle, host_no=host_no, flashnode_idx=flashnode_idx,
                         count=len(entries), payload=encode_nlas(iscsi_flashnode_param_info_nla, list(entries)),
                         timeout=timeout)

    def new_flashnode(self, handle: int, host_no: int, portal_type: str = "ipv4", *,
                      timeout: float | None = None) -> int:
        """ISCSI_UEVENT_NEW_FLASHNODE with "ipv4"/"ipv6" -> the new flashnode_idx.  The
        string goes with its NUL, ``u.new_flashnode.len`` counting it (iscsiadm's
        knew_flashnode).  Raises ValueError for another portal type."""
        if portal_type not in ("ipv4", "ipv6"):
            raise ValueError(f"portal type {portal_type!r}: ipv4 or ipv6")
        payload = portal_type.encode("ascii") + b"\0"
        return self._req(E.NEW_FLASHNODE, handle, host_no=host_no, len=len(payload), payload=payload,
                         timeout=timeout, parse=lambda m: m["r_flashnode_idx"])

    def del_flashnode(self, handle: int, host_no: int, flashnode_idx: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_DEL_FLASHNODE."""
        return self._req(E.DEL_FLASHNODE, handle, host_no=host_no, flashnode_idx=flashnode_idx, timeout=timeout)

    def login_flashnode(self, handle: int, host_no: int, flashnode_idx: int, *,
                        timeout: float | None = None) -> None:
        """ISCSI_UEVENT_LOGIN_FLASHNODE."""
        return self._req(E.LOGIN_FLASHNODE, handle, host_no=host_no, flashnode_idx=flashnode_idx, timeout=timeout)

    def logout_flashnode(self, handle: int, host_no: int, flashnode_idx: int, *,
                         timeout: float | None = None) -> None:
        """ISCSI_UEVENT_LOGOUT_FLASHNODE."""
        return self._req(E.LOGOUT_FLASHNODE, handle, host_no=host_no, flashnode_idx=flashnode_idx, timeout=timeout)

    def logout_flashnode_sid(self, handle: int, host_no: int, sid: int, *, timeout: float | None = None) -> None:
        """ISCSI_UEVENT_LOGOUT_FLASHNODE_SID."""
        return self._req(E.LOGOUT_FLASHNODE_SID, handle, host_no=host_no, sid=sid, timeout=timeout)


async def run_through(job: "asyncio.Future[Any]") -> bool:
    """Await ``job`` to its end even when the awaiting task is cancelled meanwhile (a request
    inside the kernel, or a lane job, cannot be called back, and what it made may have to
    be undone); True if the task was cancelled.  The job's outcome stays in ``job``."""
    cancelled = False
    while not job.done():
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:  # noqa: BLE001 - the job's own outcome, read by the caller
            break
    return cancelled


class _Pending(NamedTuple):
    """An asyncio exchange in flight: its requests, the replies so far, done when all came."""
    reqs: list[_Request]
    replies: list[Any]
    future: "asyncio.Future[list[Any]]"


class _Core:
    """Shared state: transport, receive buffer, event queue, reply matching."""

    def __init__(self, transport: Transport | None, timeout: float, event_callback: Callable[[KernelEvent], Any] | None,
                 rcvbuf: int) -> None:
        self._transport: Transport | None = transport if transport is not None else open_netlink_socket(rcvbuf=rcvbuf)
        self._fd = self._transport.fileno()
        self._buf = bytearray(_RECV_BUFSIZE)
        self._view = memoryview(self._buf)  # decode_messages copies what it keeps
        self.timeout = timeout
        self.event_callback = event_callback
        self._pid = 0  # the kernel replies to the sender's portid whatever nlmsg_pid says
        self._overruns = 0  # ENOBUFS read so far: a reply missing after one was dropped
        # What the socket can hold queued (the kernel doubles the size set): a read after a
        # send that has taken this many bytes has read every reply queued inside sendmsg(),
        # however many events come in behind them
        try:
            self._queue_bytes = int(self._transport.getsockopt(  # type: ignore[attr-defined]
                socket.SOL_SOCKET, socket.SO_RCVBUF))
        except (AttributeError, OSError, TypeError, ValueError):
            self._queue_bytes = 2 * rcvbuf
        self._bytes_read = 0  # every datagram's bytes so far
        self._drained = False  # whether the last read stopped at an empty socket
        self._seq = 0
        # On a real netlink socket, only the kernel (port 0) may speak: any root process
        # can unicast to our port, and a forged CONN_ERROR would trigger a recovery.
        self._kernel_only = getattr(self._transport, "family", None) == socket.AF_NETLINK

    @property
    def closed(self) -> bool:
        return self._transport is None

    def fileno(self) -> int:
        return self._fd

    def _send(self, data: bytes) -> None:
        if self._transport is None:
            raise NetlinkClosedError("the iSCSI netlink socket is closed")
        try:
            self._transport.send(data)
        except ConnectionRefusedError as exc:
            raise NotInitialNetnsError("sendmsg to the kernel: ECONNREFUSED") from exc
        except PermissionError as exc:
            raise NetlinkPermissionError("sending an iSCSI netlink request") from exc
        except OSError as exc:
            if exc.errno == errno.EPROTONOSUPPORT:
                raise KernelInterfaceUnavailable(str(exc)) from exc
            raise

    def _read_datagrams(self, limit: int = READ_BATCH) -> list[Any]:
        """Read up to ``limit`` datagrams from the non-blocking transport; the decoded
        messages in arrival order, with :data:`EVENTS_LOST` where the kernel reported an
        overrun (see :func:`_as_event`).  ``_drained``: whether it stopped at an empty
        socket."""
        out: list[Any] = []
        self._drained = True
        if self._transport is None:
            return out
        for _ in range(limit):
            try:
                if self._kernel_only:
                    n, (sender, _groups) = self._transport.recvfrom_into(self._buf)  # type: ignore[attr-defined]
                    if sender != 0:
                        log.warning("iscsi netlink: dropped %d bytes from netlink port %d "
                                    "(only the kernel, port 0, is trusted)", n, sender)
                        continue
                else:
                    n = self._transport.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the next read has what came after
                    self._overruns += 1
                    log.warning("iscsi netlink: receive buffer overrun (ENOBUFS): the kernel "
                                "dropped messages; delivered as EventsLost")
                    out.append(EVENTS_LOST)
                    continue
                raise
            if n == 0:
                return out
            self._bytes_read += n
            out.extend(decode_messages(self._view[:n]))
        self._drained = False
        return out

    def _read_all_queued(self, handle: Callable[[list[Any]], None]) -> None:
        """Read what the socket holds before a request is sent, each batch to ``handle``,
        until it is found empty (or as many bytes as it can hold were read: a flood that
        outruns the reads).  After an overrun the kernel drops every message to the socket
        without a word, replies too, until a read finds it empty (netlink_rcv_wake clears
        NETLINK_S_CONGESTED only then): sent on a socket still holding a backlog, a
        request's reply was lost and the request waited out its timeout though the kernel
        had done it."""
        start = self._bytes_read
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while poller.poll(0):
            try:
                msgs = self._read_datagrams()
            except OSError as exc:  # the request is sent all the same: its own reads say
                log.error("iscsi netlink: receive failed: %s", exc)
                return
            handle(msgs)
            if self._drained or self._bytes_read - start >= self._queue_bytes:
                return

    def _caught_up(self, start: int) -> bool:
        """Whether the reads since ``_bytes_read`` was ``start`` (just after a send) have
        taken every reply the kernel queued inside sendmsg(): the socket was found empty,
        or as many bytes as it can hold were read."""
        return self._drained or self._bytes_read - start >= self._queue_bytes

    @staticmethod
    def _is_reply(req: _Request, msg: Any) -> bool:
        if msg is EVENTS_LOST:
            return False
        t = msg.get("type")
        if t == _IF_ERROR:  # the request's own: iscsi_if_send_reply(portid, nlh->nlmsg_type, ...)
            return msg["header"]["type"] == req.ev_type
        if t != req.ev_type:
            return False
        return req.match is None or bool(req.match(msg))

    def close(self) -> None:
        if self._transport is not None:
            t, self._transport = self._transport, None
            t.close()


class IscsiNetlink(_Core, _Operations):
    """Blocking NETLINK_ISCSI client (for iscsiadm-like tools, iscsistart, tests).

    Args:
        transport: an open socket-like object; default: :func:`open_netlink_socket`.
        timeout: default reply timeout in seconds for every operation (never waits forever).
        event_callback: called with each :class:`KernelEvent`, in order (see module docstring).
        rcvbuf: receive buffer size in bytes for the socket it opens.

    Use as a context manager; :meth:`close` closes the transport.  Not thread-safe: one thread
    at a time (the kernel's replies cannot be told apart across concurrent requests anyway).
    """

    def __init__(self, transport: Transport | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 event_callback: Callable[[KernelEvent], Any] | None = None, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        super().__init__(transport, timeout, event_callback, rcvbuf)
        self._events: collections.deque[KernelEvent] = collections.deque()

    def __enter__(self) -> "IscsiNetlink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _wait_readable(self, remaining: float) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(max(0, int(remaining * 1000 + 0.999))))

    def _call(self, req: _Request) -> Any:
        return req.parse(self.request(req))

    def _call_many(self, reqs: list[_Request]) -> list[Any]:
        """One datagram for the batch unless a request can block in the kernel (:func:`_one_datagram`)."""
        if not _one_datagram(reqs):
            return [_batch_results([req], self._exchange([req], req.data))[0] for req in reqs]
        return _batch_results(reqs, self._exchange(reqs, b"".join(r.data for r in reqs)))  # each NLMSG_ALIGNed

    def request(self, req: _Request) -> Any:
        """Send one encoded request and wait for its reply (checked by :func:`_check_reply`)."""
        (reply,) = self._exchange([req], req.data)
        return _check_reply(req.ev_type, reply)

    def _exchange(self, reqs: list[_Request], data: bytes) -> list[Any]:
        """Send ``data`` (the requests, encoded) and wait, up to the longest of their
        timeouts, for one reply per request in order; any other message becomes an event
        (dispatched before returning).  Raises ReplyTimeout, or ReplyLost when the reads
        after the send have caught up (:meth:`_caught_up`) with an overrun among them and
        not every reply."""
        timeout = max(self.timeout if r.timeout is None else r.timeout for r in reqs)
        deadline = time.monotonic() + timeout
        overruns: int | None = self._overruns
        self._read_all_queued(lambda msgs: self._events.extend(_as_event(m) for m in msgs))
        self._send(data)
        start = self._bytes_read
        replies: list[Any] = []
        while True:
            for msg in self._read_datagrams():
                if len(replies) < len(reqs) and self._is_reply(reqs[len(replies)], msg):
                    replies.append(msg)
                else:
                    self._events.append(_as_event(msg))
            if len(replies) == len(reqs):
                break
            if overruns is not None and self._caught_up(start):
                if self._overruns != overruns:
                    self._dispatch()
                    raise _reply_lost(reqs, len(replies))
                overruns = None  # later reads: events only
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._dispatch()
                raise _reply_timeout(reqs, len(replies), timeout)
            if self._drained:
                self._wait_readable(remaining)
        self._dispatch()
        return replies

    def _dispatch(self) -> None:
        cb = self.event_callback
        if cb is None:
            return
        while self._events:
            ev = self._events.popleft()
            try:
                cb(ev)
            except Exception:  # noqa: BLE001 - a consumer bug must not break the socket
                log.exception("iscsi netlink event callback failed on %r", ev)

    def pending_events(self) -> list[KernelEvent]:
        """Return and clear the queued events (oldest first) without reading the socket."""
        out = list(self._events)
        self._events.clear()
        return out

    def next_event(self, timeout: float | None = None) -> KernelEvent | None:
        """Oldest queued event, else read the socket for up to ``timeout`` seconds (None = default); None if none."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._events:
            for msg in self._read_datagrams():
                self._events.append(_as_event(msg))
            if self._events:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wait_readable(remaining):
                return None
        return self._events.popleft()

    def process_events(self, timeout: float = 0.0) -> int:
        """Read what is available (waiting up to ``timeout`` s for the first datagram), deliver the events to
        ``event_callback``; return how many were read. Without a callback they stay queued."""
        if self._wait_readable(timeout):
            msgs = self._read_datagrams()
            self._events.extend(_as_event(m) for m in msgs)
        else:
            msgs = []
        self._dispatch()
        return len(msgs)


class AsyncIscsiNetlink(_Core, _Operations):
    """asyncio NETLINK_ISCSI client; every operation method returns an awaitable.

    The fd is watched with ``loop.add_reader``; replies resolve the pending request's future and
    everything else becomes an event (``event_callback`` or the ``events`` asyncio.Queue).  Requests
    are serialized by an ``asyncio.Lock``.  Because the kernel executes an operation inside
    ``sendmsg()``, the operations that can block there (:data:`BLOCKING_OPS`: DESTROY_SESSION
    removes every SCSI device, DESTROY_CONN and STOP_CONN flush work) are sent from the default
    executor unless ``send_in_executor=False``; the others complete in microseconds and are sent
    directly (an executor hop per SET_PARAM would dominate a login), a batch of them
    (:meth:`set_params` ...) as one datagram, as in the blocking client.  The loop is never
    blocked.  Create it inside a running loop (or call :meth:`start`), and close with
    :meth:`close` or ``async with``.  A reply that arrives after its request timed out is
    delivered as an event (UnknownEvent or IF_ERROR), never matched to a later request of
    another type (an IF_ERROR by its nlmsg_type, the request's).  A request cancelled while
    the kernel works on it inside ``sendmsg()`` keeps the socket until that call returns and
    takes its own reply; then CancelledError.

    :meth:`run_blocking` runs a whole sequence of requests (a session's CREATE_SESSION ...
    START_CONN) on a "lane" thread with a blocking client of its own: the kernel's part of
    every request (done inside ``sendmsg()``, under the kernel's one iSCSI netlink mutex) then
    overlaps the loop's own work instead of stalling it.  There are ``lanes`` of them (default
    2): while the kernel works for one lane's job, another lane encodes and decodes its own.
    A lane's socket joins no multicast group: its replies are its own, and every event still
    comes to this client.  ``lane_transport`` makes a lane's socket (default:
    :func:`open_netlink_socket` with no group), once per lane.  ``lane_nice``, when given, is
    the nice value of the lane threads (``setpriority(2)`` on each thread; a raise needs
    CAP_SYS_NICE, and a refusal leaves the thread as it is): the kernel's part of a job runs
    in the lane's thread while holding its netlink mutex, and every other session waits on
    that holder, so it should not wait behind less urgent work for a CPU.
    """

    def __init__(self, transport: Transport | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 event_callback: Callable[[KernelEvent], Any] | None = None, rcvbuf: int = DEFAULT_RCVBUF,
                 send_in_executor: bool = True, loop: asyncio.AbstractEventLoop | None = None,
                 lane_transport: Callable[[], Transport] | None = None, lanes: int = 2,
                 lane_nice: int | None = None) -> None:
        super().__init__(transport, timeout, event_callback, rcvbuf)
        self.send_in_executor = send_in_executor
        self._lane_transport = lane_transport or (lambda: open_netlink_socket(groups=0, rcvbuf=rcvbuf))
        self._lanes = max(1, lanes)
        self._lane_nice = lane_nice
        self._lane_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lane_local = threading.local()  # .client: each lane thread's IscsiNetlink
        self._lane_clients: list[IscsiNetlink] = []  # every lane's, for close()
        self.events: asyncio.Queue[KernelEvent] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None  # the exchange awaiting its replies
        self._loop = loop
        self._reading = False
        if loop is not None:
            self.start()
        else:
            try:
                self._loop = asyncio.get_running_loop()
                self.start()
            except RuntimeError:
                pass

    def start(self) -> None:
        """Register the reader on the loop (done automatically when created inside a running loop)."""
        if self._reading:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    async def __aenter__(self) -> "AsyncIscsiNetlink":
        self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """``fn(client, *args)`` on a lane thread, ``client`` that lane's blocking
        :class:`IscsiNetlink` (its own socket); a future of its result (or exception).  Jobs
        start in order, up to ``lanes`` at a time: independent jobs only (one session each).
        Cancelling the future does not stop a job that has started."""
        if self._transport is None:
            raise NetlinkClosedError("the iSCSI netlink socket is closed")
        if self._lane_pool is None:
            self._lane_pool = concurrent.futures.ThreadPoolExecutor(
                self._lanes, thread_name_prefix="iscsi-nl", initializer=self._lane_setup)
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self._lane_pool, self._on_lane, fn, args)

    def _lane_setup(self) -> None:
        if self._lane_nice is None:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._lane_nice)
        except OSError as exc:  # EACCES/EPERM without CAP_SYS_NICE: run at the inherited nice
            log.debug("iscsi netlink lane: nice %d refused (%s)", self._lane_nice, exc)

    def _on_lane(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        client = getattr(self._lane_local, "client", None)
        if client is None:
            client = self._lane_local.client = IscsiNetlink(self._lane_transport(), timeout=self.timeout)
            self._lane_clients.append(client)
        try:
            return fn(client, *args)
        finally:
            # no multicast reaches a lane: what it queued is a reply that came too late
            stray = client.pending_events()
            if stray:
                log.debug("iscsi netlink lane: %d late replies dropped", len(stray))

    def _close_lane(self) -> None:
        if self._lane_pool is not None:
            pool, self._lane_pool = self._lane_pool, None
            pool.shutdown(wait=True)  # a started job ends within its requests' timeouts
        clients, self._lane_clients = self._lane_clients, []
        for client in clients:
            client.close()

    def close(self) -> None:
        self._close_lane()
        if self._reading and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._reading = False
        if self._pending is not None and not self._pending.future.done():
            self._pending.future.set_exception(NetlinkClosedError("the iSCSI netlink socket was closed"))
        super().close()

    def _on_readable(self) -> None:
        """The reader callback: one batch (:data:`READ_BATCH`) read and handed on, replies
        to the pending exchange, the rest to ``event_callback`` or ``events``."""
        try:
            msgs = self._read_datagrams()
        except OSError as exc:
            self._drained = True
            log.error("iscsi netlink: receive failed: %s", exc)
            return
        self._hand_on(msgs)

    def _hand_on(self, msgs: list[Any]) -> None:
        """``msgs`` read: replies to the pending exchange, the rest to ``event_callback`` or
        ``events``."""
        for msg in msgs:
            pend = self._pending
            if pend is not None and not pend.future.done() and self._is_reply(pend.reqs[len(pend.replies)], msg):
                pend.replies.append(msg)
                if len(pend.replies) == len(pend.reqs):
                    pend.future.set_result(pend.replies)
                continue
            ev = _as_event(msg)
            if self.event_callback is not None:
                try:
                    self.event_callback(ev)
                except Exception:  # noqa: BLE001
                    log.exception("iscsi netlink event callback failed on %r", ev)
            else:
                self.events.put_nowait(ev)

    def _take_replies(self, fut: "asyncio.Future[Any]", start: int) -> None:
        """Just after a send returned (``start``: ``_bytes_read`` then): batches read until
        the exchange's replies are in or the reads have caught up (:meth:`_caught_up`), the
        events among them handed on."""
        while True:
            self._on_readable()
            if fut.done() or self._caught_up(start):
                return

    def _call(self, req: _Request) -> Awaitable[Any]:
        return self._acall(req)

    async def _acall(self, req: _Request) -> Any:
        return req.parse(await self.request(req))

    async def request(self, req: _Request) -> Any:
        """Send one encoded request and await its reply (checked; raises like the blocking client)."""
        self.start()
        async with self._lock:
            (reply,) = await self._exchange([req], req.data)
        return _check_reply(req.ev_type, reply)

    def _call_many(self, reqs: list[_Request]) -> Awaitable[list[Any]]:
        return self._acall_many(reqs)

    async def _acall_many(self, reqs: list[_Request]) -> list[Any]:
        """One hold of the lock for the batch (nothing interleaves); one datagram unless a
        request can block in the kernel (:func:`_one_datagram`)."""
        self.start()
        async with self._lock:
            if _one_datagram(reqs):
                return _batch_results(reqs, await self._exchange(reqs, b"".join(r.data for r in reqs)))
            return [_batch_results([req], await self._exchange([req], req.data))[0] for req in reqs]

    async def _exchange(self, reqs: list[_Request], data: bytes) -> list[Any]:
        """Send ``data`` (the requests, encoded) and await one unchecked reply per request, in
        order, up to the longest of their timeouts; the caller holds ``_lock``.  Raises
        ReplyTimeout, or ReplyLost when the reads once the send has returned have caught up
        (:meth:`_caught_up`) without every reply and an overrun was read since the send
        began."""
        assert self._loop is not None
        timeout = max(self.timeout if r.timeout is None else r.timeout for r in reqs)
        overruns = self._overruns
        self._read_all_queued(self._hand_on)  # no exchange pending: all of it events
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        pend = self._pending = _Pending(reqs, [], fut)
        try:
            if self.send_in_executor and reqs[0].ev_type in BLOCKING_OPS:  # alone: _one_datagram
                sending = self._loop.run_in_executor(None, self._send, data)
                if await run_through(sending):
                    # Cancelled while the kernel worked inside sendmsg(): its reply is
                    # queued now.  It is taken here, with the lock still held, so that it
                    # cannot answer the next request, and nothing else was sent meanwhile.
                    self._take_replies(fut, self._bytes_read)
                    raise asyncio.CancelledError
                sending.result()
                # the replies are queued: taken now, as below; what the loop read while
                # the kernel worked counts for nothing (the reply came at the send's end)
                self._take_replies(fut, self._bytes_read)
            else:
                self._send(data)
                # The kernel handles the requests inside sendmsg() and queues the replies
                # before the call returns: take them now rather than one loop iteration
                # later (a login sends ~40 requests).  Events read here are
                # dispatched exactly as the reader callback would.
                self._take_replies(fut, self._bytes_read)
            if fut.done():
                return fut.result()
            if self._overruns != overruns:
                raise _reply_lost(reqs, len(pend.replies))
            try:
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise _reply_timeout(reqs, len(pend.replies), timeout) from None
        finally:
            self._pending = None

    async def next_event(self, timeout: float | None = None) -> KernelEvent | None:
        """Await the next queued event for up to ``timeout`` s (None = wait indefinitely); None on timeout."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:
            return None
