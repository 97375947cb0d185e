"""iSNS discovery over TCP (RFC 4171), open-iscsi's way: the I/O around
:class:`iscsictl.protocol.isns.TargetQuery`.

One connection to the server (through an iface's network device when the caller passes
one that binds one; the CLI does not, as iscsiadm's libisns does not bind); the query (and, for a server that wants the querying node registered, a registration, the query
again and a deregistration) on it; close.  The connect is bounded by
:data:`CONNECT_TIMEOUT` and each answer by :data:`CALL_TIMEOUT` (open-isns's
``Network.ConnectTimeout`` and ``Network.CallTimeout``, which iscsiadm's libisns uses).
Nothing is retried: iscsiadm makes a disconnect fatal too.

No kernel module, no root and no daemon are needed.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Mapping

from ..protocol.isns import (Function, IsnsFormatError, MessageReader, PortalGroup, Request,
                             Response, Status, TargetQuery, deregistration, encode_request,
                             registration, registration_period, scn_registration, status_text)
from ..transport.errors import TransportError
from ..transport.tcp import Connection

__all__ = ["CALL_TIMEOUT", "CONNECT_TIMEOUT", "IsnsQueryFailed", "IsnsRegFailed",
           "deregister", "query_targets", "query_through_ifaces", "register_for_scns"]

CONNECT_TIMEOUT = 5.0  #: seconds (open-isns Network.ConnectTimeout)
CALL_TIMEOUT = 60.0  #: seconds for each answer (open-isns Network.CallTimeout)

ISCSI_ERR_ISNS_QUERY = 25
ISCSI_ERR_ISNS_REG_FAILED = 26


class IsnsQueryFailed(Exception):
    """The discovery failed: the server refused the query, could not be reached, or broke
    the protocol.  Exit code 25 (ISCSI_ERR_ISNS_QUERY), iscsiadm's for all of them."""

    exit_code = ISCSI_ERR_ISNS_QUERY


class IsnsRegFailed(IsnsQueryFailed):
    """The server wanted the initiator registered and refused the registration.  Exit code
    26 (ISCSI_ERR_ISNS_REG_FAILED)."""

    exit_code = ISCSI_ERR_ISNS_REG_FAILED


def _read_response(conn: Connection, reader: MessageReader, server: str):
    """The next response to ``reader``'s transaction, read within CALL_TIMEOUT."""
    deadline = time.monotonic() + CALL_TIMEOUT
    what = f"iSNS server {server}"
    while True:
        want, buf = reader.needed(), b""
        while len(buf) < want:
            buf += conn.recv(want - len(buf), deadline, what)
        resp = reader.feed(buf)
        if resp is not None:
            return resp


def query_targets(host: str, port: int, initiator: str, *,
                  iface: Mapping[str, str] | None = None, log=None,
                  left_out: list[str] | None = None) -> list[PortalGroup]:  # type: ignore[no-untyped-def]
    """The portal groups of the targets ``initiator`` may see, from the iSNS server at
    ``host``:``port`` (a name, IPv4 or IPv6 address).

    ``log`` (a callable taking a line) hears of a deregistration that failed, which does
    not fail the discovery, and of each target left out for its name; ``left_out``, when
    given, gets those targets' names.  Raises IsnsRegFailed (26) or IsnsQueryFailed (25),
    whose message says why (the server's status as iscsiadm words it, or the connection's
    failure)."""
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = TargetQuery(initiator, first_xid=random.randrange(1, 0x8000))
    try:
        conn = Connection.open(host, port, CONNECT_TIMEOUT, iface=iface)
    except TransportError as e:
        raise IsnsQueryFailed(str(e)) from None
    conn.peer = "the iSNS server"
    with conn:
        reader = MessageReader()
        req = query.start()
        try:
            while req is not None:
                conn.send(encode_request(req), f"iSNS server {server}")
                reader.expect(req.xid)
                req = query.receive(_read_response(conn, reader, server))
        except (IsnsFormatError, TransportError) as e:
            if query.answered:  # only the deregistration failed: the answer stands
                failed = None
                if log is not None:
                    log(f"Could not deregister {initiator} with iSNS server: {e}")
            else:
                failed = IsnsQueryFailed(f"iSNS server {server}: {e}"
                                         if isinstance(e, IsnsFormatError) else str(e))
        else:
            failed = None
    if failed is not None:
        _deregister_after(query, host, port, iface, server, log)
        raise failed
    if query.dereg_error is not None and log is not None:
        log(f"Could not deregister {initiator} with iSNS server: "
            f"{status_text(query.dereg_error.status)}.")
    for name, why in query.left_out.items():
        if log is not None:
            log(f"iSNS discovery: {why}")
        if left_out is not None:
            left_out.append(name)
    err = query.error
    if err is not None:
        cls = IsnsRegFailed if err.function == Function.DEV_ATTR_REG else IsnsQueryFailed
        raise cls(str(err))
    return query.groups


def _deregister_after(query: TargetQuery, host: str, port: int,  # type: ignore[no-untyped-def]
                      iface: Mapping[str, str] | None, server: str, log) -> None:
    """``query``'s :meth:`~iscsictl.protocol.isns.TargetQuery.deregistration`, when it
    registered the initiator before the exchange broke off, on a new connection; its own
    failure is only told to ``log``."""
    req = query.deregistration()
    if req is None:
        return
    try:
        conn = Connection.open(host, port, CONNECT_TIMEOUT, iface=iface)
        conn.peer = "the iSNS server"
        with conn:
            reader = MessageReader()
            conn.send(encode_request(req), f"iSNS server {server}")
            reader.expect(req.xid)
            query.receive(_read_response(conn, reader, server))
    except (IsnsFormatError, TransportError) as e:
        if log is not None:
            log(f"Could not deregister {query.initiator} with iSNS server: {e}")
        return
    if query.dereg_error is not None and log is not None:
        log(f"Could not deregister {query.initiator} with iSNS server: "
            f"{status_text(query.dereg_error.status)}.")


def query_through_ifaces(host: str, port: int, ifaces: Iterable[tuple[str, Mapping[str, str]]],
                         host_initiator: Callable[[], str], *, log=None,
                         left_out: list[str] | None = None,
                         ) -> list[tuple[str, PortalGroup]]:  # type: ignore[no-untyped-def]
    """iscsiadm's iSNS discovery for each of ``ifaces`` (``(name, iface record)``): the
    portal groups the server lets the iface's initiator name see, else the host's
    (``host_initiator()``, called only when an iface has none), as ``(iface name,
    group)``; one query per distinct name (iSNS answers per initiator, not per iface).
    ``log`` and ``left_out`` as :func:`query_targets`'s.  Raises what
    :func:`query_targets` raises, and what ``host_initiator`` raises."""
    from ..transport.iface import iface_initiator_name

    found, answers = [], {}
    for ifn, iface in ifaces:
        name = iface_initiator_name(iface) or host_initiator()
        if name not in answers:
            answers[name] = query_targets(host, port, name, log=log, left_out=left_out)
        found.extend((ifn, g) for g in answers[name])
    return found


class _Server:
    """A connection to an iSNS server: :meth:`call` sends a request and reads its answer;
    ``name`` is the server as messages name it, ``local`` this host's address toward it."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn, self.name = conn, name
        self.local = conn.sock.getsockname()[0]
        self._reader = MessageReader()

    def call(self, req: Request) -> Response:
        self._conn.send(encode_request(req), f"iSNS server {self.name}")
        self._reader.expect(req.xid)
        return _read_response(self._conn, self._reader, self.name)


@contextmanager
def _server(host: str, port: int) -> Iterator[_Server]:
    """A :class:`_Server` at ``host``:``port`` for the block; its failures, and answers
    that are not iSNS, become IsnsRegFailed."""
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        conn = Connection.open(host, port, CONNECT_TIMEOUT)
    except TransportError as e:
        raise IsnsRegFailed(str(e)) from None
    conn.peer = "the iSNS server"
    with conn:
        try:
            yield _Server(conn, name)
        except (IsnsFormatError, ValueError) as e:
            raise IsnsRegFailed(f"iSNS server {name}: {e}") from None
        except TransportError as e:
            raise IsnsRegFailed(str(e)) from None


#: the entity this process registers as, once named (iscsid's static isns_entity_id)
_ENTITY_ID: list[str] = []


def entity_id(local: str) -> str:
    """The network entity this host registers as: the name of ``local``, the address it
    reaches the iSNS server from (reverse DNS, else the address itself), as iscsid's
    isns_build_objs names it (getnameinfo): one per host, where a host name (``localhost``,
    a cloned VM's) is shared, and a Replace registration of one host's would drop the
    other's.  Named once per process, as iscsid's: a later lookup answered otherwise (DNS
    down) would register a second entity holding the same nodes (refused), and the
    deregistration at the daemon's stop would name one the server does not have."""
    if not _ENTITY_ID:
        try:
            _ENTITY_ID.append(socket.getnameinfo((local, 0), 0)[0])
        except OSError:
            _ENTITY_ID.append(local)
    return _ENTITY_ID[0]


def register_for_scns(host: str, port: int, initiators: list[str], entity: str | None,
                      scn_port: int) -> tuple[int | None, list[str]]:
    """Register ``initiators`` (storage nodes of type Initiator) in network entity
    ``entity`` (None: :func:`entity_id` of this end of the connection) with the iSNS
    server at ``host``:``port``, with one portal: the address this
    host reaches the server from, TCP port and SCN port ``scn_port``; then register each
    for State Change Notifications (open-iscsi's discoveryd isns_scn_register).  Returns
    the registration period (s; None: it does not expire) and a line for each initiator
    whose SCN registration the server refused.  Raises IsnsRegFailed (26) when the
    registration fails or the server cannot be reached."""
    xid = random.randrange(1, 0x8000)
    refused: list[str] = []
    with _server(host, port) as server:
        resp = server.call(registration(initiators, entity or entity_id(server.local),
                                        server.local, scn_port, xid))
        if resp.status != Status.SUCCESS:
            raise IsnsRegFailed(f"Could not register with iSNS server {server.name}: "
                                f"{status_text(resp.status)}.")
        period = registration_period(resp)
        for n, name in enumerate(dict.fromkeys(initiators), 1):
            answer = server.call(scn_registration(name, xid + n))
            if answer.status != Status.SUCCESS:
                refused.append(f"SCN registration for node {name} failed: "
                               f"{status_text(answer.status)}")
    return period, refused


def deregister(host: str, port: int, initiator: str, entity: str | None) -> None:
    """Remove network entity ``entity`` (registered by :func:`register_for_scns`, with
    ``initiator`` among its nodes; None: :func:`entity_id`'s, as there) from the iSNS
    server, so that it sends no more State Change Notifications to a port nobody listens
    on.  Raises IsnsRegFailed."""
    with _server(host, port) as server:
        resp = server.call(deregistration(initiator, entity or entity_id(server.local),
                                          random.randrange(1, 0x8000)))
        if resp.status != Status.SUCCESS:
            raise IsnsRegFailed(f"Could not deregister from iSNS server {server.name}: "
                                f"{status_text(resp.status)}.")
