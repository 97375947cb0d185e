"""iscsid's discovery daemon (open-iscsi usr/discoveryd.c) inside iscsictld.

A discovery record with ``discovery.sendtargets.use_discoveryd = Yes`` (SendTargets) or
``discovery.isns.use_discoveryd = Yes`` (iSNS) makes the daemon, from its start, discover
through that record every ``discoveryd_poll_inval`` seconds and keep the kernel's sessions
in step with what it finds (discoveryd.c ``update_sessions``):

* each portal found, as (target, portal, iface), that has no session is logged in, with the
  node record a discovery builds (compiled defaults, iscsid.conf, the iface record, the
  discovery's fields); none is written to the node DB, as iscsid writes none;
* each portal an earlier round found and this one does not is logged out.

The ifaces are read again each round: every iface record, else ``default`` (discoveryd.c:
iface_link_ifaces, any transport, for SendTargets and iSNS alike).  SendTargets goes
through each, a software (tcp) iface's from the host's stack, an iSER or offload HBA
iface's on a connection the kernel makes (``through_kernel``: the daemon's, as the CLI's
``-I`` discovery through such an iface).  iSNS is queried from the host's stack, once per
initiator name the ifaces use, and what it answers is bound to each iface, whose sessions
then go its way (an iSER iface's over iSER).  A round that fails changes nothing:
it is logged and the next round tries again (SendTargets makes one attempt a round,
``reopen_max`` 0, as discoveryd.c).  The poll interval: SendTargets' default 30; below 0
is 30; 0 is one round, then the record's sessions are left alone.

An iSNS record polled more than once also hears State Change Notifications (RFC 4171
§5.6.5.8), as iscsid's discoveryd: the initiator names (initiatorname.iscsi's and the
ifaces') are registered in a network entity named after this host's address toward the
server (as iscsid's: its reverse DNS name, else the address), with a portal whose
SCN port is a TCP port of :class:`ScnReceiver`'s, and registered for SCNs of targets
added, updated and removed; each SCN starts a round at once.  The registration is made
again before half its Registration Period has passed, and after it failed.

Deliberate differences from iscsid: stopping iscsictld logs out nothing (iscsid's
discoveryd children log out their targets on SIGTERM); a restarted daemon adopts the
sessions and its first round finds them present.  An iSNS record's default interval (-1)
makes iscsid wait for SCNs only; iscsictl also polls every :data:`ISNS_SCN_POLL` seconds,
for a server that drops an SCN, but while registered for SCNs such a poll only logs in (an
SCN's round logs out).  An SCN starts a whole round, where iscsid queries the target it
names.  A record's settings are read once, when the daemon starts, as iscsid
reads them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iscsictl.db.errors import DBError
from iscsictl.lexical import host_key

log = logging.getLogger("iscsictld")

DEFAULT_POLL = 30  #: s between rounds when the record's interval is below 0 (DISC_DEF_POLL_INVL)
ISNS_SCN_POLL = 30  #: s between iSNS rounds where iscsid would wait for SCNs only
SCN_IDLE = 3600.0  #: s an SCN connection may stay silent before it is closed
#: SCN connections open at once; more are closed at once (each holds a descriptor of the
#: daemon's, whose loop and relogins need theirs).  open-isns's isnsd opens one for each
#: initiator name registered (the host's and each iface's own): 8 refused the ninth's
MAX_SCN_CONNECTIONS = 64
DEREGISTER_TIMEOUT = 5.0  #: s the stop waits for the iSNS server's answer to the DevDereg
#: s before a registration that failed is tried again (iscsid's discoveryd sleeps 5 s
#: between its attempts): the server drops one not refreshed within its period, and the
#: SCNs with it, so the next round (an hour away with a long poll interval) is too late
REGISTER_RETRY = 5.0

#: (target, portal address, portal port, iface): one node, as the daemon's sessions key it
NodeKey = tuple[str, str, int, str]
Record = Mapping[str, str]


def node_key(rec: Record) -> NodeKey:
    """A node record's (target, address, port, iface), as ``NodeTarget.key`` makes it."""
    try:
        port = int(rec.get("node.conn[0].port", 3260))
    except ValueError:
        port = 3260
    return (rec["node.name"], host_key(rec["node.conn[0].address"]), port,
            rec.get("iface.iscsi_ifacename") or "default")


@dataclass(frozen=True)
class Round:
    """What one round does (discoveryd.c update_sessions): ``login`` the records found that
    have no session, ``logout`` the nodes found before and not now; ``tracked`` is what
    the next round compares with (every node found now, logged in or not)."""

    login: tuple[Record, ...]
    logout: tuple[NodeKey, ...]
    tracked: dict[NodeKey, Record]


class Found(list):
    """A round's node records (a list), and ``left_out``: the targets the answer named but
    that were left out of it, or lost a portal (their nodes are not gone)."""

    left_out: frozenset[str] = frozenset()


def plan_round(tracked: Mapping[NodeKey, Record], found: Sequence[Record],
               has_session: Callable[[NodeKey], bool]) -> Round:
    """The :class:`Round` for ``found`` (node records; a node found twice counts once, the
    first) after ``tracked`` (the last round's ``tracked``).  A node of a target ``found``
    left out (:class:`Found`) is not logged out: it stays tracked as it was."""
    now: dict[NodeKey, Record] = {}
    for rec in found:
        now.setdefault(node_key(rec), rec)
    left_out = getattr(found, "left_out", frozenset())
    kept = {k: r for k, r in tracked.items() if k not in now and k[0] in left_out}
    return Round(login=tuple(r for k, r in now.items() if not has_session(k)),
                 logout=tuple(k for k in tracked if k not in now and k not in kept),
                 tracked={**now, **kept})


@dataclass(frozen=True)
class Source:
    """One discovery record the daemon polls: ``type`` ``sendtargets`` | ``isns``, its
    address and port, its values (open-iscsi text) and the poll interval in seconds (0: one
    round).  ``scn_watch``: the interval is :data:`ISNS_SCN_POLL`'s, an iSNS record's -1
    (iscsid waits for SCNs only): while registered for SCNs, the rounds its timer starts
    log in what they find and log out nothing (a server restarted empty sends no SCN, and
    its answer was every session's logout); an SCN's round does both."""

    type: str
    address: str
    port: int
    values: Mapping[str, str]
    poll: int
    scn_watch: bool = False

    @property
    def hears_scns(self) -> bool:
        """An iSNS record polled more than once registers for SCNs."""
        return self.type == "isns" and self.poll != 0

    def describe(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{'SendTargets' if self.type == 'sendtargets' else 'iSNS'} {addr}:{self.port}"


def _interval(values: Mapping[str, str], key: str) -> int:
    try:
        return int(values.get(key, "-1"))
    except ValueError:
        return -1


#: discovery type -> (its record's key prefix, the interval its negative interval means)
_DAEMON_KEYS = {"sendtargets": ("discovery.sendtargets", DEFAULT_POLL),
                "isns": ("discovery.isns", ISNS_SCN_POLL)}


def sources(db: Any, warn: Callable[[str], None]) -> list[Source]:
    """The discovery records of ``db`` (a NodeDB) that ask for the discovery daemon; an
    unreadable one is said through ``warn`` and skipped."""
    out = []
    for did in db.list_discovery():
        try:
            values = db.read_discovery(did).as_strings()
        except DBError as exc:
            warn(f"discovery record {did.address},{did.port}: {exc}: not polled")
            continue
        prefix, below_zero = _DAEMON_KEYS.get(did.type, (None, 0))
        if prefix is None or values.get(f"{prefix}.use_discoveryd") != "Yes":
            continue
        poll = _interval(values, f"{prefix}.discoveryd_poll_inval")
        out.append(Source(did.type, did.address, did.port, values,
                          below_zero if poll < 0 else poll,
                          scn_watch=poll < 0 and did.type == "isns"))
    return out


class DiscoveryFailed(Exception):
    """A round's discovery failed (the message says how); nothing is changed."""


#: SendTargets on a connection the kernel makes through an iface (iSER, offload HBAs):
#: ``through_kernel(src, iface values, initiator name)`` -> ``[{"name", "portals":
#: [[address, port, tpgt (-1: unknown)], ...]}]``, blocking its caller's thread; raises
#: what the daemon's SendTargets raises (SessionError)
ThroughKernel = Callable[["Source", dict[str, str], str], list[dict[str, Any]]]


def daemon_ifaces(db: Any) -> list[tuple[str, dict[str, str]]]:
    """The ifaces iscsid's discoveryd discovers through, as (name, values): every
    iface record but the built-in ``default`` and ``iser``, of any transport
    (usr/iface.c iface_link_ifaces; idbm_bind_ifaces_to_nodes takes each, iface_is_valid
    refusing none that has a transport), else ``default``.  An unreadable record is not
    one.  Raises DBError."""
    from iscsictl.db import schema

    out = []
    for name in db.list_ifaces():
        if name in schema.BUILTIN_IFACES:
            continue
        try:
            out.append((name, db.read_iface(name).as_strings()))
        except DBError:
            continue
    return out or [("default", db.read_iface("default").as_strings())]


def discover(db: Any, src: Source, initiator_name: str | None,
             through_kernel: ThroughKernel | None = None,
             initiator_alias: str | None = None) -> list[dict[str, str]]:
    """One round's discovery (blocking: run it off the loop): the node records of what
    ``src`` finds through each iface (:func:`daemon_ifaces`; a SendTargets through an iSER
    or HBA iface through ``through_kernel``); ``initiator_alias`` declared with the host's
    name (an iface's own name goes alone, as discovery.c's).  A :class:`Found`: the
    targets an answer named but left out for their names are its ``left_out``.  Raises
    DiscoveryFailed, also for a SendTargets through an iface of the kernel's without
    ``through_kernel``."""
    from iscsictl.db.store import DiscoveryID
    from iscsictl.discovery.isns import IsnsQueryFailed, query_through_ifaces

    did = DiscoveryID(src.type, src.address, src.port)
    left_out: list[str] = []  # targets named but left out of the answer
    try:
        ifaces = daemon_ifaces(db)
    except DBError as exc:
        raise DiscoveryFailed(f"cannot read the iface records: {exc}") from None

    def host_name() -> str:  # the host's, for an iface without its own
        if not initiator_name:
            raise DiscoveryFailed("no InitiatorName in initiatorname.iscsi")
        return initiator_name

    if src.type == "isns":
        try:
            found = [(g.target, g.address, g.port, g.tag, ifn) for ifn, g in
                     query_through_ifaces(src.address, src.port, ifaces, host_name,
                                          log=lambda m: log.info("%s", m),
                                          left_out=left_out)]
        except IsnsQueryFailed as exc:
            raise DiscoveryFailed(str(exc)) from None
    else:
        found = _send_targets(src, ifaces, host_name, through_kernel, initiator_alias,
                              left_out)
    out = Found()
    out.left_out = frozenset(left_out)
    for target, address, port, tpgt, ifn in found:
        try:
            out.append(db.new_node_record(target, address, port, tpgt, ifn,
                                          discovery=did).as_strings())
        except DBError as exc:  # a name the DB cannot hold: that node is left out
            log.warning("%s: %s %s,%d left out: %s", src.describe(), target, address, port,
                        exc)
    return out


def _send_targets(src: Source, ifaces: list[tuple[str, dict[str, str]]],
                  host_name: Callable[[], str], through_kernel: ThroughKernel | None,
                  initiator_alias: str | None = None, left_out: list[str] | None = None
                  ) -> list[tuple[str, str, int, int, str]]:
    """One SendTargets exchange through each iface (one attempt: reopen_max 0, as iscsid's
    discoveryd), with the iface's initiator name or the host's; (target, address, port,
    tpgt, iface) of each portal found.  Raises DiscoveryFailed."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.protocol.config import LoginConfig
    from iscsictl.transport.iface import iface_initiator_name

    found = []
    for ifn, iface in ifaces:
        name = iface_initiator_name(iface)
        alias = None if name else initiator_alias
        name = name or host_name()
        transport = iface.get("iface.transport_name") or "tcp"
        if transport != "tcp":  # on the kernel's connection through the iface's transport
            if through_kernel is None:
                raise DiscoveryFailed(f"iface {ifn}: SendTargets through {transport} is "
                                      "the daemon's")
            try:
                answer = through_kernel(src, iface, name)
            except Exception as exc:  # noqa: BLE001 - the daemon's SessionError and its like
                raise DiscoveryFailed(f"iface {ifn}: {exc}") from None
            found.extend((t["name"], str(a), int(p), int(g), ifn)
                         for t in answer for a, p, g in t["portals"])
            if left_out is not None:
                left_out.extend(t["name"] for t in answer if t.get("left_out"))
            continue
        try:
            policy = DiscoveryPolicy.from_record(src.values, reopen_max=0)
            cfg = LoginConfig.from_discovery(src.values, name, initiator_alias=alias,
                                             login_timeout=policy.login_timeout,
                                             auth_timeout=policy.auth_timeout)
            targets = send_targets(src.address, src.port, cfg, policy, iface=iface,
                                   left_out=left_out,
                                   log=lambda m: log.info("%s: %s", src.describe(), m))
        except ValueError as exc:
            raise DiscoveryFailed(f"the discovery record: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the transport's and login's errors
            raise DiscoveryFailed(str(getattr(exc, "last", None) or exc)) from None
        found.extend((t.name, p.address, p.port, -1 if p.tpgt is None else p.tpgt, ifn)
                     for t in targets for p in t.portals)
    return found


def register(db: Any, src: Source, initiator_name: str | None,
             scn_port: int) -> float | None:
    """Register this host's initiator names with ``src``'s iSNS server for SCNs to
    ``scn_port`` (blocking: run it off the loop).  Returns the seconds until it must be
    made again (half the Registration Period; None: never).  Raises DiscoveryFailed."""
    from iscsictl.discovery.isns import IsnsQueryFailed, register_for_scns

    names = _initiator_names(db, initiator_name)
    try:
        period, refused = register_for_scns(src.address, src.port, names, None, scn_port)
    except IsnsQueryFailed as exc:
        raise DiscoveryFailed(str(exc)) from None
    for line in refused:
        log.warning("%s: %s", src.describe(), line)
    return period / 2 if period else None


def deregister(db: Any, src: Source, initiator_name: str | None) -> None:
    """Remove this host's network entity (:func:`register`'s) from ``src``'s iSNS server
    (blocking: run it off the loop): a stopped daemon gets no SCNs.  iscsid's discoveryd
    leaves it to the registration period.  Raises DiscoveryFailed."""
    from iscsictl.discovery.isns import IsnsQueryFailed
    from iscsictl.discovery.isns import deregister as dereg

    try:
        dereg(src.address, src.port, _initiator_names(db, initiator_name)[0], None)
    except IsnsQueryFailed as exc:
        raise DiscoveryFailed(str(exc)) from None


def _initiator_names(db: Any, initiator_name: str | None) -> list[str]:
    """The host's initiator name, then each iface's own (isns_create_node_list: every
    iface's): the storage nodes this host registers.  Raises DiscoveryFailed when there is
    none."""
    from iscsictl.transport.iface import iface_initiator_name

    try:
        ifaces = [values for _, values in daemon_ifaces(db)]
    except DBError as exc:
        raise DiscoveryFailed(f"cannot read the iface records: {exc}") from None
    names = [n for n in [initiator_name, *(iface_initiator_name(i) for i in ifaces)] if n]
    if not names:
        raise DiscoveryFailed("no InitiatorName in initiatorname.iscsi")
    return list(dict.fromkeys(names))


def _shown(name: str) -> str:
    """An iSCSI name from an SCN as a log line can hold it: bytes that were not UTF-8
    (decoded as surrogates) as ``\\udcXX`` escapes."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


class ScnReceiver:
    """Where iSNS servers deliver State Change Notifications: a TCP port of its own on every
    address (:attr:`port` once :meth:`start` returns).  Each SCN is answered (SCNRsp,
    RFC 4171 §5.7.5.8) and sets :attr:`heard`; a message that is not an SCN closes its
    connection.  A connection silent for :data:`SCN_IDLE` s is closed; one from an address
    not ``server``'s (its name resolved at :meth:`start`; None: any) at once, as one past
    :data:`MAX_SCN_CONNECTIONS` (the daemon runs as root on that port: any host could
    otherwise hold its descriptors, or make it discover without end)."""

    def __init__(self, server: str | None = None) -> None:
        self.heard = asyncio.Event()
        self.port = 0
        self.received = 0
        self.server = server
        self._senders: set[str] | None = None
        self._open = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        """Listen; the port.  One socket for IPv4 and IPv6 (``asyncio.start_server`` would
        bind each family to a different ephemeral port), IPv4 alone where IPv6 is off."""
        sock = None
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0))
        except OSError:
            if sock is not None:
                sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("0.0.0.0", 0))
            except OSError:
                sock.close()
                raise
        if self.server is not None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    self.server, None, type=socket.SOCK_STREAM)
                self._senders = {_plain_address(info[4][0]) for info in infos}
            except OSError as exc:  # resolved again at the next start; any sender till then
                log.warning("iSNS server %s not resolved (%s): SCNs taken from any address",
                            self.server, exc)
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = sock.getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from iscsictl.protocol.isns import (HEADER_LEN, IsnsFormatError, decode_notification,
                                            encode_notification_rejection,
                                            encode_notification_response)
        peer = writer.get_extra_info("peername")
        sender = _plain_address(peer[0]) if peer else "?"
        if self._senders is not None and sender not in self._senders:
            log.warning("a connection to the SCN port from %s, not the iSNS server %s: closed",
                        sender, self.server)
            writer.close()
            return
        if self._open >= MAX_SCN_CONNECTIONS:
            log.warning("a connection to the SCN port from %s: %d open already; closed",
                        sender, self._open)
            writer.close()
            return
        self._open += 1
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(HEADER_LEN), SCN_IDLE)
                payload = await asyncio.wait_for(
                    reader.readexactly(int.from_bytes(header[4:6], "big")), SCN_IDLE)
                try:
                    note = decode_notification(header, payload)
                except IsnsFormatError as exc:
                    refusal = encode_notification_rejection(header)
                    if refusal is None:
                        log.warning("iSNS message from %s: %s: connection closed", peer, exc)
                        return
                    # an SCN this side cannot read: refused, as open-isns's receiver does
                    # (the server need not send it again), and a round made all the same
                    log.warning("iSNS SCN from %s not understood (%s): refused, discovering",
                                peer, exc)
                    writer.write(refusal)
                    await writer.drain()
                    self.heard.set()
                    continue
                writer.write(encode_notification_response(note))
                await writer.drain()
                self.received += 1
                log.info("iSNS SCN for %s: %s", _shown(note.destination),
                         ", ".join(f"{_shown(name)} ({bits:#x})" for name, bits in note.changes))
                self.heard.set()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def _plain_address(address: str) -> str:
    """``address`` as one form for each host: an IPv4-mapped IPv6 address (a dual-stack
    socket's IPv4 peer) as the IPv4 address, an IPv6 scope dropped."""
    address = address.split("%", 1)[0]
    return address[7:] if address.startswith("::ffff:") and "." in address else address


class Poller:
    """The rounds of one :class:`Source`, run by :meth:`run` until cancelled (or after the
    one round of a 0 interval).

    Args:
        src: the discovery record.
        discover: ``discover(src) -> awaitable node records`` (raises DiscoveryFailed).
        has_session: whether a node has a session in the daemon.
        login: ``login(records) -> awaitable results`` (the daemon's login results).
        logout: ``logout(nodes) -> awaitable``: log out every session of those nodes.
        register: ``register(src, scn_port) -> awaitable`` seconds until the registration
            must be made again (None: never); raises DiscoveryFailed.  Used for a source
            that :attr:`~Source.hears_scns`.
        deregister: ``deregister(src) -> awaitable``, when :meth:`run` ends (the daemon
            stops) after a registration, bounded by :data:`DEREGISTER_TIMEOUT`; raises
            DiscoveryFailed (logged).
        sleep: ``asyncio.sleep``, or a test's.
    """

    def __init__(self, src: Source,
                 discover: Callable[[Source], Awaitable[list[dict[str, str]]]],
                 has_session: Callable[[NodeKey], bool],
                 login: Callable[[list[Record]], Awaitable[list[dict[str, Any]]]],
                 logout: Callable[[list[NodeKey]], Awaitable[object]],
                 register: Callable[[Source, int], Awaitable[float | None]] | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 deregister: Callable[[Source], Awaitable[object]] | None = None) -> None:
        self.src = src
        self._discover, self._has_session = discover, has_session
        self._login, self._logout, self._sleep = login, logout, sleep
        self._register, self._deregister = register, deregister
        self.registered = False
        self.tracked: dict[NodeKey, Record] = {}
        self.rounds = 0
        self.scns: ScnReceiver | None = None
        self._registration_due: float | None = 0.0  # loop time; None: never again
        self._pending: set[asyncio.Task[None]] = set()  # a round's logins and logouts
        self._logging_in: set[NodeKey] = set()  # nodes whose login is under way

    async def run(self) -> None:
        if self.src.hears_scns and self._register is not None:
            self.scns = ScnReceiver(self.src.address)
            try:
                await self.scns.start()
            except OSError as exc:
                log.error("%s: no port for State Change Notifications (%s): polling only",
                          self.src.describe(), exc)
                self.scns = None
        try:
            log_out = True  # (the first round has none to log out)
            while True:
                if self.scns is not None:
                    await self._keep_registered(self.scns.port)
                await self.round(log_out=log_out)
                if not self.src.poll:  # one round: its logins are its whole work
                    await self.settle()
                    return
                if self.scns is None:  # no SCN port: the polls are all there is
                    await self._sleep(self.src.poll)
                    log_out = True
                else:  # an SCN's round logs out what is gone; a poll's only when no SCN
                    # can come (the registration failed)
                    log_out = await self._until_next_round(self.scns) or \
                        not self.src.scn_watch or not self.registered
        finally:
            for task in list(self._pending):  # the daemon stops: its own stop ends them
                task.cancel()
            await asyncio.gather(*self._pending, return_exceptions=True)
            if self.scns is not None:
                self.scns.close()
            if self.registered and self._deregister is not None:
                await self._leave()

    async def _until_next_round(self, scns: ScnReceiver) -> bool:
        """Wait for the next round: the interval's end, or at once when an SCN comes (True
        then); the registration made again meanwhile when it comes due (iscsid's discoveryd keeps a
        timer of min(period / 2, poll interval): RFC 4171 §6.2.6, a registration the
        server does not see refreshed within its period is removed, and with it the SCNs).
        One that failed is made again :data:`REGISTER_RETRY` s later, at once when the
        round in between took longer (a round against an unreachable server takes its
        connect timeout, as long: the retry was put off to the next round)."""
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self.src.poll
        heard = False
        while True:
            now = loop.time()
            due = self._registration_due
            wake = next_round if due is None else min(next_round, due)
            try:
                await asyncio.wait_for(scns.heard.wait(), max(0.0, wake - now))
                heard = True
                break
            except asyncio.TimeoutError:
                pass
            if loop.time() >= next_round:
                break
            await self._keep_registered(scns.port)
        scns.heard.clear()
        return heard

    async def _leave(self) -> None:
        """The registration removed (the daemon stops), bounded: a server that does not
        answer delays the stop by :data:`DEREGISTER_TIMEOUT` s at most."""
        try:
            await asyncio.wait_for(self._deregister(self.src), DEREGISTER_TIMEOUT)  # type: ignore[misc]
        except (DiscoveryFailed, asyncio.TimeoutError) as exc:
            log.warning("%s: could not deregister: %s", self.src.describe(),
                        str(exc) or f"no answer within {DEREGISTER_TIMEOUT:g} s")
            return
        self.registered = False
        log.info("%s: deregistered", self.src.describe())

    async def _keep_registered(self, scn_port: int) -> None:
        loop = asyncio.get_running_loop()
        due = self._registration_due
        if due is None or loop.time() < due or self._register is None:
            return
        try:
            again = await self._register(self.src, scn_port)
        except DiscoveryFailed as exc:
            log.error("%s: could not register for State Change Notifications: %s; again in "
                      "%g s", self.src.describe(), exc, REGISTER_RETRY)
            self._registration_due = loop.time() + REGISTER_RETRY
            return
        self._registration_due = None if again is None else loop.time() + again
        self.registered = True
        log.info("%s: registered for State Change Notifications on port %d",
                 self.src.describe(), scn_port)

    async def round(self, wait: bool = False, log_out: bool = True) -> Round | None:
        """One round: discover, then log out of the nodes gone and in to the new ones, in
        tasks of their own that the next round does not wait for (a portal that never
        answered held every later round of the record for its login's retries and LUN
        scans; open-iscsi's discoveryd logs in with iscsi_login_portal_nowait); a node
        whose login is under way is not logged in again.  ``wait``: return once they are
        done.  Without ``log_out`` (:attr:`Source.scn_watch`'s timer) the nodes gone stay
        tracked, for a later round to log out.  None when the discovery failed."""
        self.rounds += 1
        try:
            found = await self._discover(self.src)
        except DiscoveryFailed as exc:
            log.error("Could not perform %s discovery: %s", self.src.describe(), exc)
            return None
        todo = plan_round(self.tracked, found, self._has_session)
        if not log_out and todo.logout:
            log.info("%s: %d node(s) not found by the poll: kept until a State Change "
                     "Notification's round", self.src.describe(), len(todo.logout))
            todo = Round(todo.login, (), {**{k: self.tracked[k] for k in todo.logout},
                                          **todo.tracked})
        self.tracked = todo.tracked
        if todo.logout:
            log.info("%s: %d node(s) no longer found: logging out", self.src.describe(),
                     len(todo.logout))
            self._start(self._log_out(list(todo.logout)))
        login = [r for r in todo.login if node_key(r) not in self._logging_in]
        if login:
            keys = {node_key(r) for r in login}
            self._logging_in |= keys  # now: the next round may come before the task runs
            self._start(self._log_in(login, keys))
        if wait:
            await self.settle()
        return todo

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for the logins and logouts the rounds started."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _log_in(self, records: list[Record], keys: set[NodeKey]) -> None:
        try:
            results = await self._login(records)
        except Exception as exc:  # noqa: BLE001 - a bug: said, the next round tries again
            log.error("%s: logins failed: %s", self.src.describe(), exc)
            return
        finally:
            self._logging_in -= keys
        for r in results:
            if not r.get("ok") and r.get("code") != 15:
                log.warning("%s: login to %s failed: %s", self.src.describe(),
                            r.get("node"), r.get("message"))
        # a round that no longer found a node while its login ran had no session to log
        # out yet, and no later round will (the node is no longer tracked): now
        gone = [node_key(rec) for rec, r in zip(records, results)
                if r.get("ok") and node_key(rec) not in self.tracked]
        if gone:
            log.info("%s: %d node(s) no longer found while their login ran: logging out",
                     self.src.describe(), len(gone))
            await self._log_out(gone)

    async def _log_out(self, nodes: list[NodeKey]) -> None:
        try:
            await self._logout(nodes)
        except Exception as exc:  # noqa: BLE001 - a bug: said, not lost
            log.error("%s: logouts failed: %s", self.src.describe(), exc)
