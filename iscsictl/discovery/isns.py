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
import time
from typing import Mapping

from ..protocol.isns import (Function, IsnsFormatError, MessageReader, PortalGroup, Status,
                             TargetQuery, encode_request, registration, registration_period,
                             scn_registration, status_text)
from ..transport.errors import TransportError
from ..transport.tcp import Connection

__all__ = ["CALL_TIMEOUT", "CONNECT_TIMEOUT", "IsnsQueryFailed", "IsnsRegFailed",
           "query_targets", "register_for_scns"]

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
                  iface: Mapping[str, str] | None = None,
                  log=None) -> list[PortalGroup]:  # type: ignore[no-untyped-def]
    """The portal groups of the targets ``initiator`` may see, from the iSNS server at
    ``host``:``port`` (a name, IPv4 or IPv6 address).

    ``log`` (a callable taking a line) hears of a deregistration the server refused, which
    does not fail the discovery.  Raises IsnsRegFailed (26) or IsnsQueryFailed (25), whose
    message says why (the server's status as iscsiadm words it, or the connection's
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
        except IsnsFormatError as e:
            raise IsnsQueryFailed(f"iSNS server {server}: {e}") from None
        except TransportError as e:
            raise IsnsQueryFailed(str(e)) from None
    if query.dereg_error is not None and log is not None:
        log(f"Could not deregister {initiator} with iSNS server: "
            f"{status_text(query.dereg_error.status)}.")
    err = query.error
    if err is not None:
        cls = IsnsRegFailed if err.function == Function.DEV_ATTR_REG else IsnsQueryFailed
        raise cls(str(err))
    return query.groups


def register_for_scns(host: str, port: int, initiators: list[str], entity: str,
                      scn_port: int) -> tuple[int | None, list[str]]:
    """Register ``initiators`` (storage nodes of type Initiator) in network entity
    ``entity`` with the iSNS server at ``host``:``port``, with one portal: the address this
    host reaches the server from, TCP port and SCN port ``scn_port``; then register each
    for State Change Notifications (open-iscsi's discoveryd isns_scn_register).  Returns
    the registration period (s; None: it does not expire) and a line for each initiator
    whose SCN registration the server refused.  Raises IsnsRegFailed (26) when the
    registration fails or the server cannot be reached."""
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    xid = random.randrange(1, 0x8000)
    try:
        conn = Connection.open(host, port, CONNECT_TIMEOUT)
    except TransportError as e:
        raise IsnsRegFailed(str(e)) from None
    refused: list[str] = []
    conn.peer = "the iSNS server"
    with conn:
        reader = MessageReader()

        def call(req):  # type: ignore[no-untyped-def]
            conn.send(encode_request(req), f"iSNS server {server}")
            reader.expect(req.xid)
            return _read_response(conn, reader, server)
        try:
            resp = call(registration(initiators, entity, conn.sock.getsockname()[0], scn_port,
                                     xid))
            if resp.status != Status.SUCCESS:
                raise IsnsRegFailed(f"Could not register with iSNS server {server}: "
                                    f"{status_text(resp.status)}.")
            period = registration_period(resp)
            for n, name in enumerate(dict.fromkeys(initiators), 1):
                answer = call(scn_registration(name, xid + n))
                if answer.status != Status.SUCCESS:
                    refused.append(f"SCN registration for node {name} failed: "
                                   f"{status_text(answer.status)}")
        except (IsnsFormatError, ValueError) as e:
            raise IsnsRegFailed(f"iSNS server {server}: {e}") from None
        except TransportError as e:
            raise IsnsRegFailed(str(e)) from None
    return period, refused
