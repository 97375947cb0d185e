"""iscsictld: one asyncio process that owns the kernel's iSCSI sessions.

Rules of this module:

* the only asyncio code of the project lives in :mod:`iscsictl.daemon`;
* every netlink request goes through :class:`~iscsictl.netlink.AsyncIscsiNetlink`
  (requests that can block in the kernel are sent from an executor: a slow
  DESTROY_SESSION never stalls the loop);
* kernel events are routed by sid; an event for an unknown sid is logged and
  dropped (another netlink user, e.g. a boot-time login);
* a node (target, portal, iface) has at most one login in flight, and a login
  that finds the node's sessions already there answers 15 (session exists):
  two concurrent ``--loginall`` never duplicate a session (open-iscsi #108);
* sessions the kernel already runs are adopted at start, never logged in
  again (open-iscsi #292); a failed one is recovered;
* a connection error starts one recovery task per session (ERL 0, RFC 7143
  §7.1.4.1): STOP_CONN(RECOVER), Time2Wait, relogin with the same ISID on the
  same kernel session, backing off with jitter, bounded by node.session.reopen_max;
* every wait is bounded and every task is cancelled on close.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import functools
import json
import logging
import os
import random
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from iscsictl.db.errors import DBError
from iscsictl.db.files import read_regular
from iscsictl.db.record import format_portal, with_defaults
from iscsictl.db.schema import (NODE, PortalKey, leading_login_rounds, portal_key,
                                 startup_matches)
from iscsictl.ipc import (IPC_VERSION, KEEPALIVE_INTERVAL, MAX_MESSAGE, MAX_REQUEST_ITEMS,
                          MAX_REQUEST_VALUES, SERVED_VERSIONS, SILENCE_LIMIT, decode_message,
                          encode_message, peer_credentials)
from iscsictl.kernel.sysfs import Sysfs, priv_int
from iscsictl.kernel.transports import (BIND_EP_TRANSPORTS, PROC_NAME_TRANSPORT, TRANSPORTS,
                                        unsupported)
from iscsictl.lexical import ascii_digits, host_key, is_numeric_host
from iscsictl.netlink import (
    AsyncIscsiNetlink,
    ConnError,
    ConnLoginState,
    CreateSession,
    DestroySession,
    EventsLost,
    HostEvent,
    IscsiNetlinkError,
    KernelInterfaceUnavailable,
    NetlinkClosedError,
    RecvPdu,
    UnbindSession,
)
from iscsictl.netlink.enums import ISCSI_ERR_STRINGS, IscsiErr, IscsiHostEventCode, TransportCaps
from iscsictl.protocol.bhs import RawPDU, decode_bhs
from iscsictl.protocol.chap import ISSUED_CHALLENGES
from iscsictl.protocol.constants import Opcode
from iscsictl.protocol.errors import ISCSIProtocolError, TruncatedPDU
from iscsictl.protocol.names import ISID, OPEN_ISCSI_OUI, ISIDAllocator
from iscsictl.protocol.pdu import PDU, LogoutResponse, TextResponse, decode_pdu
from iscsictl.protocol.portal import Portal
from iscsictl.protocol.session import (
    AsyncEventReceived,
    ConnectionDropRequested,
    LogoutRequested,
    NegotiationRequested,
    PDURejected,
    ScsiAsyncEvent,
    SessionDropRequested,
    interpret,
)

from . import kernel_session as ks
from .errors import SessionError, err_text
from .instance import NodeLocks
from .ipc_server import (IpcListener, KeepAlive, Replies, RequestStalled, read_request,
                         request_lines)
from .mounts import busy_devices
from .params import ADOPTION_ATTRS, AUTH_ATTRS, adopted_record

__all__ = ["Daemon", "pdu_from_kernel"]

log = logging.getLogger("iscsictld")

#: logins (a connect, the Login exchange, the hand-over) under way at once to one portal:
#: its target's login thread takes them in turn (LIO's reads the first Login PDU of each
#: accepted connection before the next).  A portal's own: relogins to a portal that does
#: not answer, each holding its slot for the connect timeout, held the other portals'
#: logins and recoveries back when the bound was the daemon's (250 sessions down on a dead
#: portal kept a healthy one from its recovery past the replacement timeout)
MAX_PARALLEL_LOGINS = 32
#: nice of the netlink lane threads that hand sessions to the kernel: the kernel builds a
#: session inside the lane's sendmsg() under its one iSCSI netlink mutex, so every other
#: session waits while that thread waits for a CPU (-L all of 32 in the VM: 0.656 -> 0.636 s
#: and 0.675 -> 0.622 s, two boots)
LANE_NICE = -10
#: seconds between relogin attempts at most (before the ±50% jitter): a target back after
#: a long outage is used again within ~6 s (iscsid retries about every 2 s), before the
#: replacement timeout fails the I/O it holds; 30 s had left it unused for up to 45 s
RECOVERY_BACKOFF_MAX = 4.0
REPLACEMENT_TIMEOUT = 120  #: node.session.timeo.replacement_timeout's default, s
#: s: the kernel's recovery timer starts when the connection fails, before its error
#: event reaches the daemon (a recovery this close to the timeout walks the devices)
OFFLINE_MARGIN = 1.0
#: seconds a change of the session state file waits for the next ones (32 logins in a
#: burst write it once, not 32 times over a growing list)
STATE_SAVE_DELAY = 0.05
#: the state directory's files: every session's ISID and TSIH, rewritten as a whole within
#: STATE_SAVE_DELAY s of a change; and the journal, where a session's line is appended as
#: soon as it is this daemon's (one write), emptied once the state file holds it.  A crash
#: in between lost the ISID: the session, adopted at the restart with open-iscsi's guess,
#: was reinstated as another I_T nexus (its SCSI reservations lost) and its real ISID
#: given to a new login (the target then closed the adopted session)
STATE_FILE, STATE_JOURNAL = "sessions.json", "sessions.journal"
#: ISID qualifiers set apart for each daemon that runs side by side with others
#: (``iscsictl-start``'s): PID × 4 up.  An ISID is one per I_T nexus: two of these logging in
#: to one target through two portals of one portal group with the same ISID would have the
#: second login reinstate the first session, closing it.  A PID is below 2**22 (pid_max),
#: the OUI format's qualifier has 24 bits: a fifth login of one process (a firmware with
#: more targets) walks into the next PID's.
ISIDS_PER_PROCESS = 4
#: the file in the state directory that holds the boot id (BOOT_ID's) of the boot whose
#: automatic logins were made: a later start in that boot (a restart, an upgrade, a crash's
#: Restart=) logs in nothing, as iscsid, whose service logs them in once at boot
#: (open-iscsi.service: iscsiadm -m node --loginall=automatic), so that a target logged out
#: for maintenance stays out
AUTOSTART_MARK = "autostart"
#: s between looks at a node's lock that another process beside this one holds (its
#: login to the node under way: ~0.05 s, or its retries' time)
NODE_LOCK_POLL = 0.05
#: s a modprobe of a transport's module may take (a hung one is killed)
MODPROBE_TIMEOUT = 30.0
#: this boot's id (proc(5))
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: sessions not managed (yet) whose kernel events are kept: the most recent sids; and the
#: events kept for each (connection errors, the target's Async Messages)
MAX_UNCLAIMED = 64
MAX_UNCLAIMED_EVENTS = 8
#: seconds after kernel events were lost (a netlink receive buffer overrun) at which every
#: session is looked at in sysfs: at once, and again once the kernel has surely marked a
#: connection that failed just before (its cleanup work, queued before the error event was
#: sent: iscsi_conn_error_event, iscsi_cleanup_conn_work_fn)
RESYNC_LOOKS = (0.0, 1.0)
Progress = Callable[[dict[str, Any]], None]


def pdu_from_kernel(buf: bytes) -> PDU:
    """Decode a RECV_PDU payload: BHS, AHS, then the data segment (the kernel
    passes it without padding or digests).

    Raises:
        ISCSIProtocolError: a truncated or malformed PDU.
    """
    bhs = decode_bhs(buf)
    ahs_end = 48 + bhs.total_ahs_length * 4
    data = bytes(buf[ahs_end:ahs_end + bhs.data_segment_length])
    if len(buf) < ahs_end or len(data) != bhs.data_segment_length:
        raise TruncatedPDU(f"RECV_PDU holds {len(buf)} bytes, the header announces more")
    return decode_pdu(RawPDU(bhs, bytes(buf[:48]), bytes(buf[48:ahs_end]), data))


async def _each(jobs: list[Any], progress: Progress | None,
                names: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Run per-item coroutines concurrently; results in input order, and a
    ``{"done", "total", "result"}`` progress report as each one finishes.  An item that
    raises (a bug, not a failure it reports) is its own result, code 9 (internal error),
    logged with its traceback, with what ``names`` gives for it (a logout's ``sid``: the
    client checks every outcome has one, and refused the whole answer, 18, the sessions
    logged out unsaid): the others' results are still answered."""
    done = 0

    async def one(job: Any, name: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        try:
            result = await job
        except Exception as exc:  # noqa: BLE001 - one item's bug, not the request's
            log.exception("internal error in one item of a request")
            result = {**name, "ok": False, "code": 9, "message": f"internal error: {exc!r}"}
        done += 1
        if progress is not None:
            progress({"done": done, "total": len(jobs), "result": result})
        return result

    names = names or [{}] * len(jobs)
    if len(jobs) == 1:  # no task to run it: its answer goes out two loop turns sooner
        return [await one(jobs[0], names[0])]
    return list(await asyncio.gather(*(one(j, n) for j, n in zip(jobs, names))))


class ThreadEach(concurrent.futures.Executor):
    """An executor that runs each job on a daemon thread started for it, as iscsid forks a
    child for each SCSI scan (usr/initiator.c session_scan_host): a write to a host's
    ``scan`` blocks in the kernel for the whole LUN scan, minutes when the target stops
    answering (SCSI error handling, the session's recovery), and a pool's bound made every
    other session's scan (so its login's answer), device onlining and queue depth wait
    behind 32 such.  ``shutdown(wait=True)`` joins the jobs under way."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._running: set[threading.Thread] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any,  # type: ignore[override]
               **kwargs: Any) -> "concurrent.futures.Future[Any]":
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # noqa: BLE001 - the future's to raise
                        fut.set_exception(exc)
            finally:
                self._running.discard(thread)
        thread = threading.Thread(target=run, name=f"{self._name}_{getattr(fn, '__name__', '')}",
                                  daemon=True)
        self._running.add(thread)
        thread.start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait:
            for thread in list(self._running):
                thread.join()


def _on_thread(fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
    """``fn(*args)`` on a daemon thread of its own, as a future of the loop: unlike the
    default executor's, a thread still blocked in a network wait when the daemon stops
    neither delays its exit nor is waited for."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            (fut.set_result if ok else fut.set_exception)(value)

    def run() -> None:
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass
    threading.Thread(target=run, name=getattr(fn, "__name__", "worker"), daemon=True).start()
    return fut


def _sid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"a session id must be an integer, not {type(value).__name__}")
    if isinstance(value, str) and not ascii_digits(value):  # int() takes '1_0', ' 7', '٣'
        raise ValueError(f"a session id must be an integer, not {value!r}")
    sid = int(value)
    if not 0 <= sid <= 0xFFFFFFFF:  # the kernel's are uint32_t (struct iscsi_uevent)
        raise ValueError(f"a session id is 0..4294967295, not {sid}")
    return sid


def _flag(value: Any) -> bool:
    """A JSON true or false only: bool("false") would be true (a forced logout, say)."""
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, not {value!r}")
    return value


#: the answer to a request the daemon's stop cut short (ISCSI_ERR_AGAIN)
CUT_SHORT = ("iscsictld stopped while the request was under way: a login it cut short made "
             "no session (those done before stay); a logout still tore its session down, "
             "unless the kernel was still removing its disks: that session stays, and a "
             "later logout ends it (iscsictl -m session lists the sessions)")
#: seconds that answer may wait behind the progress lines its client has yet to read
CUT_SHORT_DRAIN = 1.0



def _sids(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise TypeError(f"sids must be a list, not {type(value).__name__}")
    if len(value) > MAX_REQUEST_ITEMS:
        raise ValueError(f"more than {MAX_REQUEST_ITEMS} sessions in one request")
    return list(dict.fromkeys(_sid(s) for s in value))  # each session once


def _records(value: Any) -> list[dict[str, str]]:
    if isinstance(value, list) and len(value) > MAX_REQUEST_ITEMS:
        raise ValueError(f"more than {MAX_REQUEST_ITEMS} records in one request")
    if not isinstance(value, list) or not all(_is_record(r) for r in value):
        raise TypeError("records must be a list of objects of strings (key -> text)")
    return value


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in value.items())


def _record(value: Any) -> dict[str, str]:
    if not _is_record(value):
        raise TypeError("a record must be an object of strings (key -> text)")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise ValueError(f"a TCP port must be an integer 1..65535, not {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


#: characters of a bad request's error said back: its checker's message may hold the value
#: (a 10 MB string where a flag belongs was answered with a 10 MB line, to each client)
MAX_ERROR_TEXT = 512


def _cut(exc: BaseException) -> str:
    """``exc``'s message, at most :data:`MAX_ERROR_TEXT` characters."""
    text = str(exc)
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT]}... ({len(text)} characters)"


#: The arguments each IPC request takes: name -> check (returns the value or raises
#: TypeError/ValueError, answered as a bad request, code 16).  Every name is required but
#: those in ``_OPTIONAL``; an argument given as null counts as not given.
REQUEST_ARGS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "ping": {},
    "sessions": {},
    "login": {"records": _records, "initiator_name": _text, "progress": _flag,
              "multiple": _flag},
    "logout": {"sids": _sids, "force": _flag, "safe": _flag, "progress": _flag},
    "stats": {"sid": _sid},
    "sendtargets": {"address": _text, "port": _port, "values": _record, "iface": _record,
                    "initiator_name": _text},
    "stop": {"logout_all": _flag},
}
_OPTIONAL = frozenset(("progress", "force", "safe", "logout_all", "multiple"))


def request_args(req: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(op, checked arguments) of a decoded IPC request (:data:`REQUEST_ARGS`).  Raises
    SessionError 16 for an unknown op, KeyError for a missing argument, TypeError or
    ValueError for one of the wrong shape."""
    op, args = req.get("op"), req.get("args")
    checks = REQUEST_ARGS.get(op) if isinstance(op, str) else None
    if checks is None:
        raise SessionError(16, f"unknown request {op!r}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise TypeError(f"args must be an object, not {type(args).__name__}")
    out = {}
    for name, check in checks.items():
        if name in args and args[name] is not None:
            out[name] = check(args[name])
        elif name not in _OPTIONAL:
            raise KeyError(name)
    return op, out


def _take_state(found: dict[str, dict[str, Any]], sid: Any, entry: Any) -> bool:
    """Put a saved session's ``{"isid": 12 hex digits or None, "tsih": 0..65535}`` in
    ``found`` under its sid (digits); False, and nothing put, for any other shape."""
    if isinstance(sid, int) and not isinstance(sid, bool):
        sid = str(sid)
    if not isinstance(sid, str) or not sid.isdigit() or not isinstance(entry, dict):
        return False
    isid, tsih = entry.get("isid"), entry.get("tsih", 0)
    if isid is not None and not (isinstance(isid, str) and len(isid) == 12 and
                                 all(c in "0123456789abcdefABCDEF" for c in isid)):
        return False
    if isinstance(tsih, bool) or not isinstance(tsih, int) or not 0 <= tsih <= 0xFFFF:
        return False
    found[sid] = {"isid": isid, "tsih": tsih}
    return True


def _num(rec: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(rec.get(key, default))
    except (TypeError, ValueError):
        return default


#: the daemon's connection states that iscsid has no word for -> iscsid's nearest
#: (usr/initiator.h iscsi_conn_state: FREE, XPT_WAIT, IN_LOGIN, LOGGED_IN, IN_LOGOUT,
#: LOGOUT_REQUESTED, CLEANUP_WAIT), so that scripts reading -m session -P 3 see only those
CONN_STATE_SHOWN = {"FAILED": "CLEANUP WAIT"}


def boot_retry_window(rec: Mapping[str, str], at_boot: bool = False) -> float:
    """Seconds a boot disk's first login keeps being tried, however soon each attempt
    fails: iscsistart's and iscsid's (iscsi_retry_initial_login: initial_login_retry_max
    login timeouts since the first try), so that a target still starting after a power
    cut, whose port refuses at once, does not fail the boot within a minute.  A boot disk's
    record: the firmware's (discovery type fw: iscsictl-start -b, -m fw -l) or one marked
    onboot (iscsictl-start -i ...'s, a boot record), and any record ``at_boot`` (the
    automatic logins at the boot's first daemon start, which no one waits for); 0 for
    others (their attempts are counted)."""
    if not at_boot and rec.get("node.discovery_type") != "fw" and \
            rec.get("node.startup") != "onboot":
        return 0.0
    return float(max(1, _num(rec, "node.session.initial_login_retry_max", 4)) *
                 max(1, _num(rec, "node.conn[0].timeo.login_timeout", 15)))


def _running(session: ks.KernelSession) -> bool:
    """Logged in, as far as the daemon knows: no login, recovery or logout under way."""
    return session.conn_state == "LOGGED IN" and (session.recovery is None
                                                  or session.recovery.done())


async def _modprobe(module: str) -> int | None:
    """``modprobe -q module``, off the loop and bounded by MODPROBE_TIMEOUT s (killed
    after it): its exit status; None when it cannot be run (no kmod: logged) or hangs."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "modprobe", "-q", module, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        log.warning("cannot run modprobe %s: %s", module, exc.strerror or exc)
        return None
    try:
        async with asyncio.timeout(MODPROBE_TIMEOUT):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("modprobe %s did not end within %g s", module, MODPROBE_TIMEOUT)
        return None


#: how long a host name's addresses are kept for the duplicate-login check, and how long
#: their lookup may take (seconds)
RESOLVED_FOR = 30.0
RESOLVE_TIMEOUT = 5.0
#: seconds between two looks for an iface's HBA host that is not there yet
HOST_RETRY = 1.0


class KeyedHolds:
    """asyncio locks or semaphores by key (``make()`` makes one), each made when first
    wanted and dropped once no one holds or waits for it: one for each node or portal ever
    logged in to was kept for the daemon's life (a cloud host logs in to each volume's own
    target).  ``len()``: the keys held or waited for now."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._by_key: dict[Any, list[Any]] = {}  # key -> [its lock, its holders and waiters]

    def __len__(self) -> int:
        return len(self._by_key)

    @contextlib.asynccontextmanager
    async def hold(self, key: Any):  # type: ignore[no-untyped-def]
        """Hold ``key``'s lock (or semaphore) while the block runs."""
        entry = self._by_key.get(key)
        if entry is None:
            entry = self._by_key[key] = [self._make(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._by_key[key]


class SessionTable(dict[int, ks.KernelSession]):
    """The daemon's sessions by sid, and by node (:attr:`~.kernel_session.NodeTarget.key`:
    target, portal, iface): how many sessions a node has is asked for every record of a
    login request and every node of a discovery daemon's round, which scanned every
    session each time (2,000 records beside 2,000 sessions held the loop 2 s).  Every
    dict method that adds or removes a session keeps the index.  A session whose node
    names its portal by a host name is also found by the address it connected to
    (:meth:`by_address`), as iscsid's session_is_running matches a host name and its
    address as one host."""

    def __init__(self) -> None:
        super().__init__()
        self._by_node: dict[tuple[str, str, int, str], dict[int, ks.KernelSession]] = {}
        self._by_address: dict[tuple[str, str, int, str], dict[int, ks.KernelSession]] = {}
        self._address_of: dict[int, tuple[str, str, int, str]] = {}

    def __setitem__(self, sid: int, session: ks.KernelSession) -> None:
        self.pop(sid, None)
        super().__setitem__(sid, session)
        self._by_node.setdefault(session.node.key, {})[sid] = session
        node, current = session.node, getattr(session, "current", None)
        named, address = getattr(node, "address", ""), getattr(current, "address", "")
        if address == named:  # not redirected: where its connection went
            address = getattr(session, "peer_address", None) or address
        if named and address and not is_numeric_host(named) and is_numeric_host(address):
            key = (node.target, host_key(address), node.port, node.iface)
            self._address_of[sid] = key
            self._by_address.setdefault(key, {})[sid] = session

    def __delitem__(self, sid: int) -> None:
        if self.pop(sid, None) is None:
            raise KeyError(sid)

    def pop(self, sid: int, *default: Any) -> Any:  # type: ignore[override]
        session = super().pop(sid, *default)
        if isinstance(session, ks.KernelSession):
            for index, key in ((self._by_node, session.node.key),
                               (self._by_address, self._address_of.pop(sid, None))):
                same = index.get(key, {}) if key is not None else {}
                same.pop(sid, None)
                if not same:
                    index.pop(key, None)
        return session

    def popitem(self) -> tuple[int, ks.KernelSession]:
        if not self:
            raise KeyError("popitem(): no session")
        sid = next(reversed(self))
        return sid, self.pop(sid)

    def clear(self) -> None:
        super().clear()
        self._by_node.clear()
        self._by_address.clear()
        self._address_of.clear()

    def setdefault(self, sid: int, session: ks.KernelSession) -> ks.KernelSession:  # type: ignore[override]
        if sid not in self:
            self[sid] = session
        return self[sid]

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for sid, session in dict(*args, **kwargs).items():
            self[sid] = session

    def of_node(self, key: tuple[str, str, int, str]) -> list[ks.KernelSession]:
        """The sessions of the node ``key``, in the order they were filed."""
        return list(self._by_node.get(key, {}).values())

    def by_address(self, key: tuple[str, str, int, str]) -> list[ks.KernelSession]:
        """The sessions of nodes that name their portal by a host name and connected to
        the address of ``key`` (target, numeric address as host_key gives it, port,
        iface)."""
        return list(self._by_address.get(key, {}).values())


class Daemon:
    """The session owner.

    Args:
        socket_path: the IPC socket (mode 0600, root only); None: no IPC (a daemon in
            another program's process, as ``iscsictl-start``'s, serves nobody).
        sysfs_root: for tests with fixture trees.
        state_dir: where session identities (ISIDs) survive a restart.
        db_root, config_root: the node database and iscsid.conf/initiatorname
            (None: ``$ISCSICTL_DB_ROOT``/``$ISCSICTL_CONFIG_ROOT``, else /etc/iscsi).
        autostart: log in to node.startup=automatic records when starting (at a boot's
            first start only: :data:`AUTOSTART_MARK`), and run the discovery daemon of the
            discovery records that ask for it (:mod:`.discoveryd`).
        takeover: take charge of the sessions found in the kernel: recover one that failed
            while no daemon ran, or whose connection fails, and log in again a boot session
            without NOP-Outs.  False for ``iscsictl-start``'s daemon, which lives for its
            logins only: it knows the sessions there (no duplicates) but leaves them as they
            are, as iscsistart's does (a recovery it started would be cut off when it ends,
            the connection left stopped).
        side_by_side: other processes make sessions beside this one, each with a daemon
            of its own (``iscsictl-start`` processes started together, one per path or
            target, as iscsistarts run): its ISIDs start at a qualifier set apart by its PID
            (:data:`ISIDS_PER_PROCESS`), and each write of the state file keeps the
            others' sessions, under a lock, and writes none it adopted (its ISID may be a
            guess: the other process has not saved it yet).
    """

    def __init__(self, socket_path: str | None, sysfs_root: str = "/sys",
                 state_dir: str = "/run/iscsictl", db_root: str | None = None,
                 config_root: str | None = None, autostart: bool = True,
                 takeover: bool = True, side_by_side: bool = False) -> None:
        self.socket_path = socket_path
        self.takeover = takeover
        self.side_by_side = side_by_side
        self.sysfs = Sysfs(sysfs_root)
        self.sysfs_root = sysfs_root
        self.state_dir = Path(state_dir)
        self.db_root, self.config_root = db_root, config_root
        self.autostart = autostart
        self.sessions = SessionTable()
        #: sessions whose login the kernel relays (iSER), by sid, until it ends
        self._logging_in: dict[int, ks.KernelSession] = {}
        self.isids = (ISIDAllocator(first=os.getpid() * ISIDS_PER_PROCESS,
                                    claim=self._claim_isid, unclaim=self._unclaim_isid)
                      if side_by_side else ISIDAllocator())
        #: side by side: the per-node locks the other processes take too (iscsictl-start
        #: sets them; :meth:`_login_one`)
        self.node_locks: NodeLocks | None = None
        self.issued_challenges = ISSUED_CHALLENGES  # its discoveries' too
        self._node_locks = KeyedHolds(asyncio.Lock)  # by node key (_login_one)
        # host name -> (until, its addresses), and the lookups under way (_addresses_of)
        self._resolved: dict[str, tuple[float, frozenset[str]]] = {}
        self._resolving: dict[str, asyncio.Future[frozenset[str]]] = {}
        self._login_slots = KeyedHolds(lambda: asyncio.Semaphore(MAX_PARALLEL_LOGINS))
        self.nl: AsyncIscsiNetlink | None = None
        self._server: IpcListener | None = None
        #: the listening socket systemd made (socket activation: iscsictld.socket), which
        #: :meth:`listen` serves instead of binding its own, and :meth:`close` leaves at
        #: its path: connections made while the daemon restarts wait in it
        self.inherited_socket: socket.socket | None = None
        self._stopped = asyncio.Event()
        self._closing = False
        self._close_task: asyncio.Future[None] | None = None  # the one close() under way
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requests: set[asyncio.Task[Any]] = set()  # answered after close() ends
        #: called once when close() has ended, before a "stop" request is answered:
        #: iscsictld releases its single-instance lock there (:mod:`.__main__`)
        self.on_closed: Callable[[], None] | None = None
        self.initiator_alias: str | None = None  # what logins declare: set by start()
        self._logged_out: set[int] = set()  # sids whose kernel destroy event is still due
        self._state_write: asyncio.TimerHandle | None = None  # a coalesced _save_state
        self._journal_fd: int | None = None  # STATE_JOURNAL, opened at its first line
        self._journal_torn = False  # its last line was cut short
        # SCSI scans, device onlining, queue depths: each blocks in the kernel for as
        # long as the target makes it, each on a thread of its own
        self._scan_pool = ThreadEach("scan")
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket bound
        self._caps: dict[str, int] = {}  # transport name -> its CAP_* bits (_transport_caps)
        # connection errors the kernel reported, and Async Messages the target sent, for a
        # session not managed yet (one being set up: the kernel runs it, and scans it, a
        # moment before this daemon files it); handled when it is.  The kernel never
        # reuses a sid within a boot.
        self._unclaimed: OrderedDict[int, list[ConnError | RecvPdu]] = OrderedDict()
        # host_no -> None while a scan runs, or the session that asked for one more after
        # it: one scan a host at a time, however many "reported LUNs changed" came
        self._rescans: dict[int, ks.KernelSession | None] = {}
        self._resync_task: asyncio.Task[Any] | None = None  # after kernel events were lost

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Open netlink, adopt live sessions, listen on the IPC socket, then (in
        the background, never delaying readiness) log in to automatic nodes."""
        from iscsictl.db.config import initiator_alias, resolve_roots

        self.initiator_alias = initiator_alias(
            resolve_roots(self.db_root, self.config_root).config_root)
        try:
            self.nl = AsyncIscsiNetlink(event_callback=self._on_event, lane_nice=LANE_NICE)
        except KernelInterfaceUnavailable:
            # like iscsid: load the software transport (it pulls in scsi_transport_iscsi);
            # without modprobe, or one that hangs, the netlink error below says what to do
            await _modprobe("iscsi_tcp")
            self.nl = AsyncIscsiNetlink(event_callback=self._on_event, lane_nice=LANE_NICE)
        self.nl.start()
        self._adopt()
        if self.socket_path is not None:
            self.listen()
        log.info("iscsictld ready %s (%d session(s) adopted)",
                 f"on {self.socket_path}" if self.socket_path else "without an IPC socket",
                 len(self.sessions))
        for s in self.sessions.values():
            if s.conn_state == "FAILED":
                self._start_recovery(s, "failed while no daemon ran", failed_earlier=True)
            elif self._nops_off(s):
                self._start_recovery(s, "its NOP-Outs were off (a boot login's): logged in "
                                        "again with the record's, as iscsid's sync_session")
        if self.autostart:
            if self._autostart_due():
                self._spawn(self._autostart())
            else:
                log.info("automatic logins: made at this boot's first start already "
                         "(iscsictl -m node -L automatic makes them again)")
            self._spawn(self._discoveryd())

    def listen(self) -> None:
        """Serve the CLI on ``socket_path`` (0600; a stale socket there is replaced), or on
        :attr:`inherited_socket` when systemd passed one.  Raises OSError when it cannot
        be bound, EADDRINUSE when systemd listens there (``iscsictld.socket``, its service
        stopped: a daemon started by hand took its path, and deleted it when it stopped,
        every command failing with 20 until the unit was restarted)."""
        from . import instance

        assert self.socket_path is not None, "a Daemon(None) serves no IPC"
        if self.inherited_socket is not None:
            self._server = IpcListener(self.inherited_socket, self._serve)
            return
        path = Path(self.socket_path)
        path.parent.mkdir(0o755, parents=True, exist_ok=True)  # not 0777 under umask 0
        if path.is_socket():
            # systemd's socket there is left to it, looked up (a connection would have it
            # start the service); any other listener's is taken over (one of any user's,
            # bound in a mount namespace of its own, is listed at that path too)
            if instance.held_by(instance.INIT_PID, instance.unix_listeners(str(path))):
                raise OSError(errno.EADDRINUSE, "systemd listens there (iscsictld.socket): "
                                                "'systemctl start iscsictld' instead")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            sock.listen(socket.SOMAXCONN)  # bursts of commands (os-brick, CSI) wait in it
            st = os.stat(path)
        except OSError:
            sock.close()
            raise
        self._bound = (st.st_dev, st.st_ino)
        self._server = IpcListener(sock, self._serve)

    async def wait_stopped(self) -> None:
        """Until :meth:`close` has ended and each "stop" request has been answered."""
        await self._stopped.wait()
        await asyncio.gather(*self._stop_requests, return_exceptions=True)

    async def close(self, logout_all: bool = False) -> None:
        """Stop serving; sessions keep running in the kernel unless ``logout_all``.  Always
        ends stopped (a failing step is logged, the others still run).  Requests under way
        are cut short while netlink is still open, so that what they undo reaches the
        kernel (a login's half-made session destroyed, a logout's session torn down), and
        each client is answered (29).  ``logout_all`` logs out after that, so that a login
        that ends meanwhile (a request's, an automatic one, the discovery daemon's) is
        logged out too.  A second call (a second SIGTERM, Ctrl-C twice) waits for the
        first's end: it closed netlink under the first's undoing of cut-short logins (as
        iscsid's signal handler, a repeated signal changes nothing)."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(logout_all))
        await asyncio.shield(self._close_task)

    async def _close(self, logout_all: bool) -> None:
        self._closing = True
        try:
            requests: list[asyncio.Task[None]] = []
            if self._server is not None:  # a "stop" request waits for this close's end
                requests = [t for t in self._server.tasks if t not in self._stop_requests]
                self._server.close()
                self._server = None
            tasks = [*requests, *self._tasks]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if logout_all:
                await self.logout([s.sid for s in list(self.sessions.values())], force=True)
            self._flush_state()
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
        except Exception:  # noqa: BLE001 - a bug must not keep the daemon from stopping
            log.exception("while stopping")
        finally:
            if self.nl is not None:
                self.nl.close()
                self.nl = None
            self._scan_pool.shutdown(wait=False, cancel_futures=True)
            if self.socket_path is not None and self._bound is not None:
                try:  # ours only (a socket unit's, bound after it, is left)
                    st = os.stat(self.socket_path)
                    if (st.st_dev, st.st_ino) == self._bound:
                        os.unlink(self.socket_path)
                except OSError:
                    pass
            if self.on_closed is not None:
                try:
                    self.on_closed()
                except Exception:  # noqa: BLE001
                    log.exception("while stopping")
            self._stopped.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A task of the daemon's own (cancelled at close); what it raises is logged, not
        left to the loop's "exception was never retrieved"."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), SessionError):  # a failure its awaiter says (the
            log.debug("%s: %s", task.get_coro().__qualname__,  # discovery daemon's
                      task.exception())  # SendTargets through an HBA: one line a round)
            return
        log.error("%s failed", task.get_coro().__qualname__, exc_info=task.exception())

    async def _logout_for_kernel(self, sid: int) -> None:
        """A logout nobody asked through IPC for (the kernel's INVALID_HOST: the session's
        host is gone): its failure is logged, there being no client to answer.  (A target's
        request for a Logout is not one: the session logs in again, :meth:`_recover`.)"""
        for r in await self.logout([sid], force=True):
            if not r.get("ok"):
                log.warning("session %d: logout failed: %s", sid, r.get("message"))

    # ------------------------------------------------------------------ configuration
    def _db(self):  # type: ignore[no-untyped-def]
        from iscsictl.db.store import NodeDB

        return NodeDB(self.db_root, self.config_root, warn=lambda m: log.warning("%s", m))

    def _initiator_name(self) -> str | None:
        """initiatorname.iscsi's InitiatorName; None (with a warning when the file cannot be
        read) when there is none: adopting sessions and automatic logins go on without it."""
        from iscsictl.db.config import read_initiator_name, resolve_roots

        try:
            name = read_initiator_name(resolve_roots(self.db_root, self.config_root).config_root)
        except DBError as exc:
            log.warning("%s", exc)
            return None
        return name.name if name else None

    def _safe_logout(self) -> bool:
        from iscsictl.db.config import IscsidConfig, resolve_roots

        conf = IscsidConfig.load(resolve_roots(self.db_root, self.config_root).config_root)
        return bool(conf.safe_logout)

    # ------------------------------------------------------------------ kernel state
    async def handle(self, transport: str) -> int:
        """The transport handle from sysfs, read at each use as iscsid's read_transports
        does (a module unloaded and loaded again has another; a cached one failed every
        login with EINVAL until a restart), loading the transport's module (like iscsid
        with libkmod) when it is missing; modprobe runs as a subprocess, off the loop.

        Raises:
            SessionError: 12 when the transport's module is not there.
        """
        handle = self.sysfs.transport_handle(transport)
        if handle is None:
            row = TRANSPORTS.get(transport)
            module = (row.module if row else None) or transport
            rc = await _modprobe(module)
            handle = self.sysfs.transport_handle(transport)
            if handle is None:
                how = "failed" if rc != 0 else "did not help"
                raise SessionError(12, f"iSCSI driver {transport} is not loaded "
                                       f"(modprobe {module} {how})")
        return handle

    def _transport_of(self, host_no: int | None) -> str:
        if host_no is None:
            return "tcp"
        name = self.sysfs.read(f"class/scsi_host/host{host_no}/proc_name")
        return PROC_NAME_TRANSPORT.get(name or "", name or "tcp")

    def _load_state(self, quiet: bool = False) -> dict[str, dict[str, Any]]:
        """The saved ISID/TSIH of each session by sid (text): the state file's, then the
        journal's lines over them.  An entry or line of another shape (a file of another
        version, or damaged) is left out, said once (``quiet``: not said; a login's look
        at the ISIDs taken, after adoption has said it): a session without one is adopted
        with open-iscsi's ISID."""
        found: dict[str, dict[str, Any]] = {}
        bad = 0
        path = self.state_dir / STATE_FILE
        try:
            data = json.loads(read_regular(str(path)))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, RecursionError) as e:  # (nested past the parser)
            if not quiet:
                log.warning("%s unreadable (%s): the sessions it saved are adopted with "
                            "open-iscsi's ISID", path, e.strerror if isinstance(e, OSError)
                            else "damaged: not the JSON written there")
            data = {}
        for sid, entry in (data.items() if isinstance(data, dict) else [(None, data)]):
            bad += not _take_state(found, sid, entry)
        try:
            journal = read_regular(str(self.state_dir / STATE_JOURNAL)).splitlines()
        except OSError:
            journal = []
        for line in journal:
            if not line.strip():  # the end a line cut short was given
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                entry = None
            bad += not _take_state(found, entry.get("sid") if isinstance(entry, dict) else None,
                                   entry)
        if bad and not quiet:
            log.warning("%d saved session state entries in %s unreadable: left out", bad,
                        self.state_dir)
        return found

    def _journal(self, session: ks.KernelSession) -> None:
        """Append ``session``'s ISID/TSIH to the state journal: one write (no fsync: a
        crash of the daemon keeps what the kernel has; a crash of the machine takes the
        sessions with it)."""
        line = json.dumps({"sid": session.sid, "isid": str(session.isid) if session.isid
                           else None, "tsih": session.tsih}).encode() + b"\n"
        if self._journal_torn:  # a line cut short before (a full disk): ended first, so
            line = b"\n" + line  # that this one is read
        try:
            fd = self._journal_file()
            with self._state_lock(fd):
                view = memoryview(line)
                while view:
                    self._journal_torn = True
                    view = view[os.write(fd, view):]
                self._journal_torn = False
        except OSError as exc:
            log.warning("cannot save session state in %s: %s", self.state_dir, exc)

    def _journal_file(self) -> int:
        """The journal's descriptor (opened, and the state directory made, at first use);
        root's alone, as the lock it carries beside other iscsictl-starts must be (any user
        could flock a file of mode 0644, and hold their state writes)."""
        if self._journal_fd is None:
            from .instance import private

            os.makedirs(self.state_dir, 0o755, exist_ok=True)
            self._journal_fd = os.open(os.path.join(self.state_dir, STATE_JOURNAL),
                                       os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                       0o600)
            private(self._journal_fd)
        return self._journal_fd

    def _state_lock(self, fd: int) -> contextlib.AbstractContextManager[None]:
        """Holds the state directory's files against the other daemons' writes
        (``side_by_side``: a flock of the journal ``fd``, held for a write or a merge);
        nothing otherwise (one daemon writes them)."""
        if not self.side_by_side:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def locked() -> Any:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return locked()

    def _save_state(self) -> None:
        """Write the sessions' ISID/TSIH (what adoption after a restart needs) within
        STATE_SAVE_DELAY s, once for every change made meanwhile (at once with no loop)."""
        if self._state_write is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_state()
            return
        self._state_write = loop.call_later(STATE_SAVE_DELAY, self._write_state)

    def _flush_state(self) -> None:
        if self._state_write is not None:
            self._state_write.cancel()
            self._write_state()

    def _write_state(self) -> None:
        """Replace the state file (``<state_dir>/sessions.json``) by the sessions' ISID/TSIH,
        atomically (:func:`~iscsictl.db.store.atomic_write`).  It runs on the loop every
        STATE_SAVE_DELAY s of a burst of logins: no pathlib text file, no mkdir each time
        (57 -> 50 us with 32 sessions on the host)."""
        from iscsictl.db.store import atomic_write

        self._state_write = None
        state = {str(s.sid): {"isid": str(s.isid) if s.isid else None, "tsih": s.tsih}
                 for s in self.sessions.values() if not (s.adopted and self.side_by_side)}
        try:
            if not os.path.isdir(self.state_dir):  # the first write, or /run was emptied
                os.makedirs(self.state_dir, 0o755, exist_ok=True)  # not 0777 under umask 0
                if self._journal_fd is not None:  # its file went with the directory: the
                    os.close(self._journal_fd)  # next line opens one there again
                    self._journal_fd = None
            if self.side_by_side:  # the others' sessions kept, theirs read under the lock
                fd = self._journal_file()
                with self._state_lock(fd):
                    alive = {str(sid) for sid in self.sysfs.session_ids()}
                    mine = {str(s.sid) for s in self.sessions.values() if not s.adopted}
                    state = {**{sid: e for sid, e in self._load_state().items()
                                if sid in alive and sid not in mine}, **state}
                    atomic_write(os.path.join(self.state_dir, STATE_FILE),
                                 json.dumps(state).encode(), 0o644)
                    os.ftruncate(fd, 0)
                    self._journal_torn = False
                return
            atomic_write(os.path.join(self.state_dir, STATE_FILE), json.dumps(state).encode(),
                         0o644)
            if self._journal_fd is not None:  # the state file holds its lines now
                os.ftruncate(self._journal_fd, 0)
                self._journal_torn = False
            elif os.path.exists(os.path.join(self.state_dir, STATE_JOURNAL)):  # a crash's
                os.truncate(os.path.join(self.state_dir, STATE_JOURNAL), 0)
        except (OSError, DBError) as exc:
            log.warning("cannot save session state in %s: %s", self.state_dir, exc)

    def _record_index(self) -> dict[tuple[str, str, int, str], dict[str, str]]:
        """Every node record by (target, address, port, iface): one DB read for all adoptions."""
        try:
            recs = self._db().read_nodes()
        except Exception as exc:  # noqa: BLE001 - a broken DB never stops adoption
            log.warning("cannot read the node DB: %s", exc)
            return {}
        index: dict[tuple[str, str, int, str], dict[str, str]] = {}
        for rec in recs:
            values = rec.as_strings()
            try:
                index.setdefault(ks.NodeTarget.from_record(values).key, values)
            except KeyError:
                continue
        return index

    def _node_defaults(self) -> dict[str, str]:
        """A new node record's values from iscsid.conf (compiled defaults when it cannot
        be read): the base of a session adopted without a record."""
        try:
            return self._db().config.new_record(NODE, lambda m: log.warning("%s", m)).as_strings()
        except Exception as exc:  # noqa: BLE001 - adoption goes on with compiled defaults
            log.warning("cannot read iscsid.conf: %s", exc)
            return with_defaults(NODE, {})

    def _adopt(self, only: int | None = None) -> None:
        """Take over every live kernel session from sysfs (``only``: that one), without a
        relogin.  One that has no target name is half-made (a daemon stopped mid-login):
        taken, so that a logout can remove it, but never recovered.  One the HBA's firmware
        runs (:meth:`_firmware_session`) is left to it, as iscsid's sync_session does; at
        the daemon's start a CAP_FW_DB host is scanned (node.session.scan permitting).

        Reads only the attributes adoption needs, lists the connections once and
        reads the node DB once: the full SessionInfo/ConnectionInfo readers (~70 sysfs
        reads and a listing of every connection, per session) took 20 ms a session
        under TCG, 1.4 s for 64 (vm-tests test_64_automatic_targets_start_and_adopt)."""
        saved = self._load_state()
        sids = [sid for sid in self.sysfs.session_ids() if sid not in self.sessions and
                sid not in self._logging_in and (only is None or sid == only)]
        if not sids:
            return
        cids: dict[int, int] = {}
        for s, c in self.sysfs.connection_ids():
            cids.setdefault(s, c)
        index = self._record_index()
        defaults: dict[str, str] | None = None
        rd = self.sysfs.read
        scanned: set[int] = set()

        def num(v: str | None) -> int | None:
            try:
                return int(v) if v is not None else None
            except ValueError:
                return None

        for sid in sids:
            base = f"class/iscsi_session/session{sid}/"
            sess_state = rd(base + "state")
            if sess_state is None:
                continue  # gone meanwhile
            host_no = self.sysfs.session_host_no(sid)
            if self._firmware_session(sid, host_no):
                transport = self._transport_of(host_no)
                log.info("session %d: run by the HBA's firmware (%s); left to it", sid, transport)
                if only is None and host_no is not None and host_no not in scanned and \
                        self._transport_caps(transport) & TransportCaps.FW_DB:
                    scanned.add(host_no)  # iscsid's sync_session rescans these hosts
                    self._scan_firmware_host(sid, host_no, online=False)
                continue
            cid = cids.get(sid)
            cbase = f"class/iscsi_connection/connection{sid}:{cid}/" if cid is not None else None

            def crd(attr: str, cbase: str | None = cbase) -> str | None:
                return rd(cbase + attr) if cbase else None

            node = ks.NodeTarget(
                target=rd(base + "targetname") or "", address=crd("persistent_address") or "",
                port=num(crd("persistent_port")) or 3260, tpgt=num(rd(base + "tpgt")) or 0,
                iface=rd(base + "ifacename") or "default", transport=self._transport_of(host_no),
            )
            record = index.get(node.key)
            if record is None:
                if not node.target:  # said as that, not as a record missing for " ,3260"
                    log.info("session %d: half-made (a login cut short, or under way in "
                             "another process): taken, never recovered", sid)
                else:  # an iscsictl-start's (it writes no record) is no news to another
                    log.log(logging.WARNING if self.takeover else logging.DEBUG,
                            "session %d: no node record for %s %s,%d; managing it with "
                            "defaults and what the kernel shows", sid, node.target,
                            node.address, node.port)
                if defaults is None:
                    defaults = self._node_defaults()
            attrs: dict[str, str | None] = {}
            boot_nic = self._boot_nic(base, node.transport) if record is None else None
            for a in (AUTH_ATTRS if record is not None else ADOPTION_ATTRS):
                if a.startswith("connection/"):
                    attrs[a] = crd(a[11:])
                elif a.startswith("host/"):
                    attrs[a] = (rd(f"class/iscsi_host/host{host_no}/{a[5:]}")
                                if host_no is not None else None)
                elif a.startswith("boot/"):
                    attrs[a] = rd(f"{boot_nic}/{a[5:]}") if boot_nic else None
                else:  # to the byte (the credentials: a firmware's need not be UTF-8,
                    attrs[a] = rd(base + a[8:])  # and a relogin sends them again)
                    if attrs[a] is None and a in AUTH_ATTRS and not os.path.lexists(
                            f"{self.sysfs.root}/{base}{a[8:]}"):
                        del attrs[a]  # a transport that hides it: not known to be unset
            if record is None:
                record = adopted_record(None, attrs, defaults or {}, node.transport)
                record["iface.transport_name"] = node.transport
            else:
                record = adopted_record(record, attrs, {})
            if host_no is not None:
                try:  # its relogins set up iscsiuio's network first (bnx2i, qedi)
                    record = dict(ks.uip_record(self.sysfs, record, host_no))
                except SessionError as exc:
                    log.warning("adopted session %d: %s", sid, exc)
            node = ks.NodeTarget.from_record(record, self.initiator_alias)
            isid = None
            state = saved.get(str(sid)) or {}
            if state.get("isid"):
                try:
                    isid = ISID(bytes.fromhex(state["isid"]))
                except ValueError:
                    isid = None
            if isid is None:
                isid = self._kernel_isid(sid)  # an HBA driver's sessions show it
            if isid is None:
                # not ours (iscsistart, iscsid, an older daemon): open-iscsi's ISID is
                # 00:02:3D + the 24-bit sid (usr/initiator.c), the one to reinstate
                isid = ISID.oui(OPEN_ISCSI_OUI, sid & 0xFFFFFF)
                log.info("session %d: no saved ISID; assuming open-iscsi's %s", sid, isid)
            self.isids.reserve(isid)
            current = Portal(crd("address") or node.address, num(crd("port")) or node.port, node.tpgt)
            self._manage(ks.KernelSession(
                sid=sid, host_no=host_no or 0, cid=cid or 0, node=node,
                isid=isid, tsih=state.get("tsih", 0), params=None, current=current, adopted=True,
                conn_state="LOGGED IN" if sess_state == "LOGGED_IN" else "FAILED",
                initiator_name=rd(base + "initiatorname") or self._initiator_name() or "",
                # an HBA's session: its new endpoints go through its own host
                bind_host=host_no if node.transport in BIND_EP_TRANSPORTS else None,
                caps=self._transport_caps(node.transport) or -1,
                nop=node.transport not in ks.KERNEL_CONNECTED or cid is None  # tcp's: yes
                or ks.supports_nop(self.sysfs, sid, cid),
            ))
            log.info("adopted session %d: %s %s", sid, node.target, current)
        self._save_state()

    def _boot_nic(self, session_dir: str, transport: str) -> str | None:
        """The boot firmware's NIC entry a boot session of a ``use_boot_info`` transport
        (bnx2i, qedi) names (``firmware/<boot_root>/<boot_nic>``, relative to sysfs), when
        the session shows all of boot_target, boot_nic and boot_root (usr/iscsi_sysfs.c
        iscsi_sysfs_read_boot); None otherwise."""
        t = TRANSPORTS.get(transport)
        if t is None or not t.use_boot_info:
            return None
        rd = self.sysfs.read
        named = [rd(session_dir + a) for a in ("boot_target", "boot_nic", "boot_root")]
        if not all(named) or any("/" in n or n in (".", "..") for n in named[1:]):
            return None
        return f"firmware/{named[2]}/{named[1]}"

    def _nops_off(self, session: ks.KernelSession) -> bool:
        """Whether an adopted session runs without the NOP-Outs its record asks for: a
        boot login's (iscsistart and iscsictl-start send none: no daemon would answer the
        target's NOP-Ins yet) shows ``ping_tmo`` and ``recv_tmo`` 0, and the kernel arms
        its NOP timer only at START_CONN (libiscsi's iscsi_conn_start), so a later
        SET_PARAM would not start it: only a relogin does, which is what iscsid's
        sync_session makes of every such session when it starts.  Without them a dead path
        is found only when a SCSI command times out."""
        if not (session.adopted and session.nop and session.conn_state == "LOGGED IN"):
            return False
        rec = session.node.record
        if _num(rec, "node.conn[0].timeo.noop_out_interval", 5) <= 0 or \
                _num(rec, "node.conn[0].timeo.noop_out_timeout", 5) <= 0:
            return False
        conn = f"class/iscsi_connection/connection{session.sid}:{session.cid}/"
        return self.sysfs.read(conn + "ping_tmo") == "0" and \
            self.sysfs.read(conn + "recv_tmo") == "0"

    # ------------------------------------------------------------------ events
    def _transport_caps(self, transport: str) -> int:
        """``class/iscsi_transport/<name>/caps`` (0 when unreadable), read once a transport."""
        caps = self._caps.get(transport)
        if caps is None:
            info = self.sysfs.transport(transport)
            if info is None:  # not loaded (yet): not remembered
                return 0
            caps = self._caps[transport] = info.caps or 0
        return caps

    def _firmware_session(self, sid: int, host_no: int | None) -> bool:
        """Whether the HBA's firmware made and runs session ``sid``, not a netlink user
        (qla4xxx flash targets): its transport keeps the targets itself (``CAP_FW_DB``), or
        the kernel names no creator (``creator`` -1, which it shows as ``off``).  iscsid
        leaves such sessions alone (usr/iscsid.c sync_session); a software relogin or
        teardown would fight the card."""
        if self._transport_caps(self._transport_of(host_no)) & TransportCaps.FW_DB:
            return True
        return priv_int(self.sysfs.read(f"class/iscsi_session/session{sid}/creator")) == -1

    def _scan_firmware_host(self, sid: int, host_no: int, online: bool = True) -> None:
        """What iscsid does for a session the HBA's firmware logged in by itself (usr/
        initiator.c iscsi_async_session_creation): its devices set running (``online``) and
        its host scanned unless iscsid.conf's node.session.scan is manual; on the scan
        threads (iscsid.conf read there too, off the loop), failures logged."""

        def work() -> None:
            if online:
                ks.set_devices_running(self.sysfs, sid)
            if self._node_defaults().get("node.session.scan", "auto") != "manual":
                try:
                    self.sysfs.scan_host(host_no)
                except OSError as exc:
                    log.warning("host %d: the LUN scan failed: %s", host_no, exc)

        self._scan_pool.submit(work)

    def _on_login_event(self, session: ks.KernelSession, ev: Any) -> None:
        """An event of a session whose login the kernel relays (:func:`ks.establish_ep`;
        a discovery session is one until its end): its Login Responses to the login; a
        connection error ends the login, or the discovery's Logout (code 8, retryable;
        its endpoint is still to be disconnected: the kernel holds it until then); the
        others are logged."""
        waiter = session.pdu_waiter
        if session.conn_state == "IN LOGOUT":  # torn down (a failed login, or a discovery's)
            log.debug("session %d: %s while it is torn down", session.sid, type(ev).__name__)
            return
        if isinstance(ev, RecvPdu):
            try:
                pdu = pdu_from_kernel(ev.pdu)
            except ISCSIProtocolError as exc:
                log.warning("session %d: malformed PDU from the kernel: %s", session.sid, exc)
                return
            if waiter is not None and not waiter.done():
                waiter.set_result(pdu)
            else:
                log.info("session %d: %s during its login dropped", session.sid,
                         type(pdu).__name__)
        elif isinstance(ev, ConnLoginState):
            self._login_state(session, ev)
        elif isinstance(ev, ConnError):
            err = int(ev.error)
            text = ISCSI_ERR_STRINGS.get(err, "unknown")
            # a discovery session is under login until its end: its Text or Logout exchange
            # may be the one
            what = ("logout" if LogoutResponse in session.pdu_wanted else
                    "SendTargets" if TextResponse in session.pdu_wanted else "login")
            log.info("session %d: connection error %d (%s) during its %s", session.sid,
                     err, text, what)
            if waiter is not None and not waiter.done():  # a login's: 11, as a TCP one's
                waiter.set_exception(SessionError(  # (iscsid's login timer ends it)
                    11 if what == "login" else 8, f"the connection failed during the {what} "
                    f"({text})", retryable=True))
            else:  # between the login's end and START_CONN's reply (the same datagram):
                self._keep_unclaimed(session.sid, ev)  # the session's once it is managed
        else:
            log.debug("session %d: %s during its login", session.sid, type(ev).__name__)

    @staticmethod
    def _login_state(session: ks.KernelSession, ev: ConnLoginState) -> None:
        """KEVENT_CONN_LOGIN_STATE: how the login of an HBA that logs in itself ended
        (``ks._offloaded_login`` waits for it on ``session.pdu_waiter``; a waiter for a
        Logout or Text Response is not given it)."""
        waiter = session.pdu_waiter
        if waiter is not None and not waiter.done() and session.pdu_wanted is ks.ANY_PDU:
            waiter.set_result(ev.state)
        else:
            log.info("session %d: the HBA says its connection is %s", session.sid,
                     getattr(ev.state, "name", ev.state))

    def _on_event(self, ev: Any) -> None:
        sid = getattr(ev, "sid", None)
        session = self.sessions.get(sid) if sid is not None else None
        if session is None and sid in self._logging_in:
            self._on_login_event(self._logging_in[sid], ev)
            return
        if isinstance(ev, RecvPdu):
            if session is None:
                if sid is not None and ev.pdu[:1] and ev.pdu[0] & 0x3F == Opcode.ASYNC_MESSAGE:
                    log.log(logging.DEBUG if self.side_by_side else logging.INFO,
                            "session %s: an Async Message before the session is filed: "
                            "kept for it", sid)  # (a logout request, a Time2Wait)
                    self._keep_unclaimed(sid, ev)
                    return  # (beside other iscsictl-starts: their relayed logins')
                log.log(logging.DEBUG if self.side_by_side else logging.WARNING,
                        "RECV_PDU for unknown session %s dropped", sid)
                return
            try:
                pdu = pdu_from_kernel(ev.pdu)
            except ISCSIProtocolError as exc:
                log.warning("session %d: malformed PDU from the kernel: %s", sid, exc)
                return
            waiter = session.pdu_waiter
            if waiter is not None and not waiter.done() and isinstance(pdu, session.pdu_wanted):
                waiter.set_result(pdu)
                return
            self._on_target_pdu(session, pdu)
        elif isinstance(ev, ConnError):
            err = int(ev.error)
            text = ISCSI_ERR_STRINGS.get(err, "unknown")
            if session is None:
                log.info("connection %s:%s error %d (%s) for a session not managed here "
                         "(yet)", sid, ev.cid, err, text)
                if sid is not None:
                    self._keep_unclaimed(sid, ev)
                return
            log.log(logging.DEBUG if session.adopted and not self.takeover else logging.ERROR,
                    "Kernel reported iSCSI connection %d:%d error (%d - %s) state (%s)",
                    ev.sid, ev.cid, err, text, session.conn_state)  # (not an iscsictl-start's
            # own news: a session it found, another's or the boot's, is left to its owner)
            waiter = session.pdu_waiter
            waited = waiter is not None and not waiter.done()
            if waited:  # a relayed Login or Logout: no answer will come (iscsid's
                waiter.set_exception(SessionError(  # __conn_error_handle)
                    4, f"the connection failed ({text})", retryable=True))
            if err == IscsiErr.INVALID_HOST:  # the host is going (an HBA's driver unloaded):
                # whatever the session does, it ends, as iscsid's session_conn_error shuts
                # it down; the kernel waits for that (libiscsi iscsi_host_remove)
                self._spawn(self._logout_for_kernel(session.sid))
            elif waited and session.conn_state == "IN LOGIN":
                pass  # that attempt of the recovery fails now; the next one follows
            elif session.conn_state == "IN LOGOUT":  # the logout under way tears it down
                session.logout_conn_failed.set()  # now (iscsid's __conn_error_handle)
            else:
                self._start_recovery(session, text)
        elif isinstance(ev, ConnLoginState):
            if session is not None:  # a relogin's (login offload)
                self._login_state(session, ev)
        elif isinstance(ev, UnbindSession):
            if session is not None:
                session.unbound.set()
        elif isinstance(ev, DestroySession):
            if session is not None and session.logging_out is not None \
                    and session.conn_state == "IN LOGOUT":  # a user's (not the Logout a
                log.debug("destroy event for session %d (our logout)", ev.sid)  # target
                # asked for, a recovery's, which is then forgotten below: it was kept,
                # its relogins refused for ever and its node's logins answered 15)
                session.destroyed.set()  # ks.logout returns: the session is gone
                waiter = session.pdu_waiter  # (its Logout Response never comes)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(SessionError(9, "the kernel destroyed the session"))
                return  # _logout_one removes it and releases its ISID
            if session is not None:
                self._forget(session, "destroyed by the kernel")
            elif ev.sid in self._logged_out:
                self._logged_out.discard(ev.sid)
                log.debug("destroy event for session %s (already removed here)", ev.sid)
            else:
                log.info("kernel event DESTROY_SESSION for session %s, which this daemon does "
                         "not manage (another netlink user): ignored", ev.sid)
        elif isinstance(ev, EventsLost):
            self._resync()
        elif isinstance(ev, CreateSession):  # ours too: only the firmware's need anything
            if self._transport_caps(self._transport_of(ev.host_no)) & TransportCaps.FW_DB:
                log.info("session %d: logged in by the HBA's firmware on host %d", ev.sid,
                         ev.host_no)
                self._scan_firmware_host(ev.sid, ev.host_no)
        elif isinstance(ev, HostEvent) and ev.code in (IscsiHostEventCode.LINKUP,
                                                         IscsiHostEventCode.LINKDOWN):
            # an offload HBA's port (qla4xxx, be2iscsi): iscsid's words (ctldev_handle)
            log.warning("Host%d: Link %s.", ev.host_no,
                        "Up" if ev.code == IscsiHostEventCode.LINKUP else "Down")
        else:
            log.debug("kernel event %s ignored", type(ev).__name__)

    def _forget(self, session: ks.KernelSession, why: str) -> None:
        """``session`` is gone from the kernel (not by our logout): stop managing it."""
        self.sessions.pop(session.sid, None)
        if session.recovery is not None and session.recovery is not asyncio.current_task():
            session.recovery.cancel()  # (the recovery itself, forgetting it, returns)
        if session.isid is not None:
            self.isids.release(session.isid)
        log.info("session %d %s", session.sid, why)
        self._save_state()

    def _resync(self) -> None:
        """Kernel events were lost (the netlink socket's receive buffer overran): a session
        whose connection error or destruction went unreported would stay failed, or stay
        listed, until the daemon restarts.  So every session is looked at in sysfs, at each
        of :data:`RESYNC_LOOKS` (counted again from a later overrun): one found gone is
        forgotten, one whose connection the kernel shows failed is recovered."""
        log.warning("kernel events were lost (netlink receive buffer overrun): looking at "
                    "every session in sysfs")
        if self._resync_task is not None:
            self._resync_task.cancel()
        self._resync_task = self._spawn(self._resync_looks())

    async def _resync_looks(self) -> None:
        loop = asyncio.get_running_loop()
        for delay in RESYNC_LOOKS:
            await asyncio.sleep(delay)
            running = {s.sid: s for s in self.sessions.values() if _running(s)}
            views = await loop.run_in_executor(
                None, self._kernel_views, [(s.sid, s.cid) for s in running.values()])
            for sid, view in views.items():
                session = self.sessions.get(sid)
                if session is not running[sid] or not _running(session):
                    continue  # changed meanwhile: its own events and tasks tell
                if view == "gone":
                    self._forget(session, "is gone from the kernel (its events were lost)")
                elif view == "failed":
                    self._start_recovery(session, "its connection failed while kernel events "
                                                  "were lost")

    def _kernel_views(self, ids: list[tuple[int, int]]) -> dict[int, str]:
        """sid -> "gone" (no session in sysfs), "failed" (its connection's ``state`` is
        ``failed`` or ``down``; the session's FAILED where the kernel has no such attribute)
        or "up", for each (sid, cid) of ``ids``: /sys/class/iscsi_session/session<sid>/state,
        /sys/class/iscsi_connection/connection<sid>:<cid>/state."""
        rd = self.sysfs.read
        views = {}
        for sid, cid in ids:
            sess = rd(f"class/iscsi_session/session{sid}/state")
            conn = rd(f"class/iscsi_connection/connection{sid}:{cid}/state")
            if sess is None:
                views[sid] = "gone"
            elif conn in ("failed", "down") or (conn is None and sess == "FAILED"):
                views[sid] = "failed"
            else:
                views[sid] = "up"
        return views

    def _keep_unclaimed(self, sid: int, ev: ConnError | RecvPdu) -> None:
        """Keep a connection error or an Async Message of session ``sid``, not (yet)
        managed here, for :meth:`_manage` (the last :data:`MAX_UNCLAIMED` sessions', the
        first :data:`MAX_UNCLAIMED_EVENTS` of each)."""
        kept = self._unclaimed.setdefault(sid, [])
        self._unclaimed.move_to_end(sid)  # the most recent sessions' are kept
        if len(kept) < MAX_UNCLAIMED_EVENTS:
            kept.append(ev)
        while len(self._unclaimed) > MAX_UNCLAIMED:
            self._unclaimed.popitem(last=False)

    def _manage(self, session: ks.KernelSession) -> None:
        """File ``session`` as this daemon's; a connection error the kernel reported for it
        before, and an Async Message its target sent, are handled now."""
        self.sessions[session.sid] = session
        if not session.adopted:  # an adopted one's state is written once adoption is done
            self._journal(session)
        for ev in self._unclaimed.pop(session.sid, ()):
            self._on_event(ev)

    def _request_rescan(self, session: ks.KernelSession) -> None:
        """Scan ``session``'s host for the LUNs its target reported changed (iscsid's
        session_scan_host), merged with a scan of that host under way or asked for: a
        target's flood of AENs is one scan, and one more after it, not one each."""
        host = session.host_no
        if host not in self._rescans:
            log.info("session %d: reported LUNs changed; rescanning", session.sid)
            self._rescans[host] = None
            self._spawn(self._rescan(session))
        else:
            if self._rescans[host] is None:
                log.debug("session %d: reported LUNs changed; host%d rescanned again after "
                          "the scan under way", session.sid, host)
            self._rescans[host] = session

    async def _rescan(self, session: ks.KernelSession | None) -> None:
        """:meth:`_request_rescan`'s scans of one host, while the session that asked for
        each is still this daemon's (a logged-out session's host number is given to the
        next one the kernel makes)."""
        assert session is not None
        host = session.host_no
        try:
            while session is not None and self.sessions.get(session.sid) is session:
                try:
                    await ks.scan_host(host, self.sysfs_root, self._scan_pool)
                except OSError as exc:  # the host gone meanwhile (a logout), or refused
                    log.warning("session %d: rescan failed: %s", session.sid, exc)
                else:  # the new LUNs get the record's depth, as after the login's scan
                    await self._size_queues(session)
                session, self._rescans[host] = self._rescans.get(host), None
        finally:
            self._rescans.pop(host, None)

    async def _size_queues(self, session: ks.KernelSession) -> None:
        """node.session.queue_depth to each device of ``session`` where its transport does
        not take it at CREATE_SESSION (iscsid's iscsi_sysfs_set_queue_depth after
        session_scan_host)."""
        node = session.node
        if node.transport not in ks.QUEUE_DEPTH_AT_CREATION:
            await asyncio.get_running_loop().run_in_executor(
                self._scan_pool, ks.set_queue_depth, self.sysfs, session.sid,
                _num(node.record, "node.session.queue_depth", 32))

    def _on_target_pdu(self, session: ks.KernelSession, pdu: Any) -> None:
        try:
            ev = interpret(pdu)
        except ISCSIProtocolError as exc:  # iscsid: "Could not handle AEN 0. Invalid sense."
            log.warning("session %d: could not handle the target's %s: %s", session.sid,
                        type(pdu).__name__, exc)
            return
        if isinstance(ev, ScsiAsyncEvent):
            if ev.reported_luns_changed and session.node.record.get("node.session.scan", "auto") == "auto":
                self._request_rescan(session)
        elif session.conn_state == "IN LOGOUT" and isinstance(ev, (LogoutRequested,
                                                                    NegotiationRequested)):
            log.info("session %d: %s while logging out: nothing more to do", session.sid,
                     type(ev).__name__)
        elif isinstance(ev, LogoutRequested):  # iscsid's words, then its logout and relogin
            log.warning("connection%d:%d: Target requests logout within %d seconds",
                        session.sid, session.cid, ev.seconds)
            self._start_recovery(session, "logout requested by the target", logout_first=True)
        elif isinstance(ev, (ConnectionDropRequested, SessionDropRequested)):
            log.info("session %d: the target drops the connection; Time2Wait %d s",
                     session.sid, ev.time2wait)
            session.time2wait_once = ev.time2wait
        elif isinstance(ev, NegotiationRequested):
            log.info("session %d: the target asks to renegotiate; logging in again", session.sid)
            self._start_recovery(session, "parameter renegotiation requested")
        elif isinstance(ev, AsyncEventReceived):
            log.info("session %d: async event %s", session.sid, ev)
        elif isinstance(ev, PDURejected):
            log.warning("session %d: the target rejected a PDU (%s)", session.sid, ev.reason)

    # ------------------------------------------------------------------ recovery
    def _start_recovery(self, session: ks.KernelSession, why: str, *,
                        failed_earlier: bool = False, logout_first: bool = False) -> None:
        """Recover ``session`` unless a recovery runs; ``failed_earlier``: it failed at an
        unknown time before now (found FAILED at start), so its devices may be offline;
        ``logout_first``: the connection is still up, and the target asked for a Logout
        (AsyncEvent 1), which goes first (:func:`~.kernel_session.logout_for_target`)."""
        if self._closing:
            return
        if session.adopted and not self.takeover:  # iscsictl-start's: not its session
            log.debug("session %d: %s; left to the daemon that manages it", session.sid, why)
            return
        if session.recovery is not None and not session.recovery.done():
            if session.conn_state in ("IN LOGIN", "LOGGED IN"):  # a new connection failed:
                session.failed_again = why  # the kernel says it once; started over at the end
                session.failed_again_logout = logout_first  # (with the Logout asked for)
            return
        if session.logging_out is not None:  # a user's logout is under way: it tears the
            return  # session down (a recovery it cancelled, ending, asked for another)
        if not session.node.target:  # half-made (adopted mid-login): nothing to log in to
            log.warning("session %d has no target name (a login that did not finish): not "
                        "recovered; iscsictl -m session -r %d -u removes it", session.sid,
                        session.sid)
            return
        session.conn_state = "IN LOGOUT" if logout_first else "TRANSPORT WAIT"
        session.internal_state = "REOPEN"
        failed_at = asyncio.get_running_loop().time()
        session.recovery = self._spawn(self._recover(session, why, failed_at, failed_earlier,
                                                     logout_first))

    async def _recover(self, session: ks.KernelSession, why: str, failed_at: float,
                       failed_earlier: bool = False, logout_first: bool = False) -> None:
        """ERL 0 recovery of one session until it is back or reopen_max is spent;
        ``logout_first``: the Logout the target asked for goes first (the connection's
        error that its end brings is this recovery's, ``conn_state`` IN LOGOUT meanwhile).

        Time2Wait counts from ``failed_at`` (when the error arrived, loop time), so
        STOP_CONN's own time is not added to it.  Back, the session's devices that went
        offline are set running (:func:`~.kernel_session.online_devices`) when they can
        have: the kernel takes them offline when the replacement timeout expires (its
        recovery_tmo, session_recovery_timedout) and the SCSI error handler only when that
        recovery failed (it waits for it while it runs: iscsi_eh_session_reset, and
        iscsi_eh_cmd_timed_out resets the timer), so not after a recovery shorter than
        the replacement timeout.  Skipping that walk then matters when many sessions come
        back at once: under QEMU TCG, perf put ~1.4 CPU-seconds of a kill of 64 in the
        worker threads that ran the walks (and the STOP_CONNs)."""
        assert self.nl is not None
        sid, cid = session.sid, session.cid
        rec = session.node.record
        reopen_max = _num(rec, "node.session.reopen_max", 0)  # 0: forever
        started = failed_at
        try:
            handle = await self.handle(session.node.transport)
        except SessionError as exc:
            log.error("session %d: cannot recover: %s", sid, exc)
            return
        loop = asyncio.get_running_loop()
        if logout_first:
            await ks.logout_for_target(self.nl, handle, session, float(
                _num(rec, "node.conn[0].timeo.logout_timeout", 15)))
            session.conn_state = "TRANSPORT WAIT"
            failed_at = started = loop.time()  # Time2Wait from the Logout's end
        await ks.release_connection(self.nl, handle, session)
        wait, session.time2wait_once = session.time2wait, None
        # RFC 7143 §13.15: no new connection before Time2Wait.  It is slept without a
        # login slot: with more sessions down than slots, a slot held while sleeping
        # made the rest wait for the first ones' whole relogin (64 down: 2x iscsid's time)
        await asyncio.sleep(max(0.0, failed_at + wait - loop.time()))
        attempt = 0
        while not self._closing and self.sessions.get(sid) is session:
            attempt += 1
            session.conn_state = "IN LOGIN"
            session.failed_again = None  # an error from here on is this connection's
            session.failed_again_logout = False
            try:
                async with self._login_slot(session.node.address, session.node.port):
                    await ks.relogin(self.nl, handle, session, self.issued_challenges)
            except NetlinkClosedError:  # the daemon stops
                return
            except Exception as exc:  # a SessionError; a bug too: logged, retried, not lost
                if not isinstance(exc, SessionError):
                    log.error("session %d: relogin failed unexpectedly", sid, exc_info=exc)
                session.conn_state = "TRANSPORT WAIT"
                if self.sysfs.read(f"class/iscsi_session/session{sid}/state") is None:
                    # destroyed, its event lost (an overrun): each relogin is refused
                    self._forget(session, "is gone from the kernel; its recovery ends")
                    return
                # iscsid's reopen_cnt, counted at each connect, gives up once it is past
                # reopen_max (initiator.c iscsi_login_eh): reopen_max + 1 attempts
                if reopen_max and attempt > reopen_max:
                    log.error("session %d: giving up after %d retries (%s); removing it",
                              sid, attempt, exc)
                    await self.logout([sid], force=True)
                    return
                delay = min(RECOVERY_BACKOFF_MAX, 0.5 * 2 ** min(attempt, 6))
                delay *= random.uniform(0.5, 1.5)  # jitter: many sessions never relogin in step
                # every n-th failed attempt said (open-iscsi 2.1.11's conn_reopen_log_freq;
                # below 1 is 1, as there: a 0 raised ZeroDivisionError and ended recovery)
                every = max(1, _num(rec, "node.session.conn_reopen_log_freq", 1))
                if attempt == 1 or attempt % every == 0:
                    log.warning("session %d: relogin attempt %d failed: %s; next in %.1f s",
                                sid, attempt, exc, delay)
                await asyncio.sleep(delay)
                continue
            session.conn_state = "LOGGED IN"
            session.internal_state = "NO CHANGE"
            session.recoveries += 1
            self._save_state()
            took = loop.time() - started
            log.info("connection%d:%d is operational after recovery (%d attempts, %.3f s; %s)",
                     sid, cid, attempt, took, why)
            # the kernel's own timer, which is what took devices offline: multipathd sets
            # it (fast_io_fail_tmo, 5 s by default), a boot session keeps its login's; the
            # record's when sysfs does not say (one read, not the walk of the devices)
            tmo = _num(rec, "node.session.timeo.replacement_timeout", REPLACEMENT_TIMEOUT)
            kernel_tmo = priv_int(self.sysfs.read(  # ("off": -1, no timer, nothing taken
                f"class/iscsi_session/session{sid}/recovery_tmo"))  # offline)
            if kernel_tmo is not None:
                tmo = kernel_tmo
            try:
                if failed_earlier or 0 <= tmo <= took + OFFLINE_MARGIN:
                    await ks.online_devices(session, self.sysfs, self._scan_pool)
            finally:
                again, session.failed_again = session.failed_again, None
                logout, session.failed_again_logout = session.failed_again_logout, False
                if again is not None:  # after this task has ended (then no recovery runs)
                    log.warning("session %d: the connection failed again (%s); recovering",
                                sid, again)
                    loop.call_soon(functools.partial(self._start_recovery, session, again,
                                                     logout_first=logout))
            return

    # ------------------------------------------------------------------ operations
    def _login_slot(self, address: str, port: int) -> contextlib.AbstractAsyncContextManager:
        """The bound of logins under way at once to the portal ``address:port``
        (:data:`MAX_PARALLEL_LOGINS`): held while the block runs."""
        return self._login_slots.hold((host_key(address), port))

    def _node_sessions(self, node: ks.NodeTarget) -> list[ks.KernelSession]:
        return self.sessions.of_node(node.key)

    async def _address_keys(self, node: ks.NodeTarget) -> list[tuple[str, str, int, str]]:
        """The node keys a login of ``node`` is the same node as, sorted: its own for a
        numeric portal; for a host name, one for each address it resolves to
        (:meth:`_addresses_of`), as iscsid's session_is_running matches a host name and
        its address (iscsi_addr_match)."""
        if is_numeric_host(node.address):
            return [node.key]
        keys = {(node.target, a, node.port, node.iface)
                for a in await self._addresses_of(node.address)}
        return sorted(keys | {node.key})

    async def _addresses_of(self, name: str) -> frozenset[str]:
        """The addresses (host_key's form) host name ``name`` resolves to: one lookup off
        the loop for every login that asks at once, kept :data:`RESOLVED_FOR` seconds,
        :data:`RESOLVE_TIMEOUT` at most; empty (said) when it does not resolve in time."""
        loop = asyncio.get_running_loop()
        cached = self._resolved.get(name)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        lookup = self._resolving.get(name)
        if lookup is None:
            async def resolve() -> frozenset[str]:
                try:
                    infos = await asyncio.wait_for(loop.getaddrinfo(
                        name, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
                except (OSError, UnicodeError, ValueError, asyncio.TimeoutError) as exc:
                    log.warning("%s does not resolve (%s): a session to its address under "
                                "another record is not found for it", name,
                                str(exc) or f"no answer in {RESOLVE_TIMEOUT:g} s")
                    infos = []
                found = frozenset(host_key(str(i[4][0])) for i in infos
                                  if i[0] in (socket.AF_INET, socket.AF_INET6))
                if len(self._resolved) > 4096:
                    self._resolved.clear()
                self._resolved[name] = (loop.time() + RESOLVED_FOR, found)
                return found
            lookup = self._resolving[name] = asyncio.ensure_future(resolve())
            lookup.add_done_callback(lambda _: self._resolving.pop(name, None))
        return await asyncio.shield(lookup)

    def _same_node_sessions(self, node: ks.NodeTarget,
                            keys: list[tuple[str, str, int, str]]) -> list[ks.KernelSession]:
        """The sessions of ``node`` and of the nodes that name the same host otherwise
        (``keys``: :meth:`_address_keys`), each once."""
        found = {s.sid: s for s in self.sessions.of_node(node.key)}
        for key in keys:
            for s in (*self.sessions.of_node(key), *self.sessions.by_address(key)):
                found.setdefault(s.sid, s)
        return list(found.values())

    async def login(self, records: list[Mapping[str, str]], initiator_name: str,
                    progress: Progress | None = None, multiple: bool = False,
                    at_boot: bool = False) -> list[dict[str, Any]]:
        """Log in to each node record (key -> text; a key left out has its compiled default,
        :func:`~iscsictl.db.record.with_defaults`), in parallel, bounded; one result each.
        Each record gets the sessions node.session.nr_sessions asks for that it lacks (none:
        code 15); ``multiple``: one more session each, whatever it has (iscsiadm's
        ``-m session -r SID -o new``, node_rec.session.multiple); ``at_boot``: each is
        tried for :func:`boot_retry_window` (the automatic logins at the boot's start)."""
        return await _each([self._login_one(r, initiator_name, multiple, at_boot)
                            for r in records], progress)

    async def _login_one(self, rec: Mapping[str, str], initiator_name: str,
                         multiple: bool = False, at_boot: bool = False) -> dict[str, Any]:
        rec = with_defaults(NODE, rec)  # here, not in login(): the first node connects at once
        try:
            node = ks.NodeTarget.from_record(rec, self.initiator_alias)
        except KeyError as exc:
            return {"ok": False, "code": 7, "message": f"node record lacks {exc}"}
        for key, value in ks.invalid_timeouts(rec).items():  # iscsid's words
            log.warning("%s: invalid %s. Must be greater than zero. Using default %s.",
                        node.describe(), key.removeprefix("node.conn[0]."), value)
        result: dict[str, Any] = {"node": node.describe(), "target": node.target,
                                  "portal": format_portal(node.address, node.port),
                                  "iface": node.iface}
        keys = await self._address_keys(node)
        async with contextlib.AsyncExitStack() as held:  # one login per node at a time:
            for key in keys:  # no duplicates (#108); sorted: no two logins wait on each other
                await held.enter_async_context(self._node_locks.hold(key))
            if self.node_locks is not None:  # and none with the processes beside this one:
                await held.enter_async_context(self._others_turn(node, keys))
                self._adopt_others(node.target)  # theirs made meanwhile, counted below
            have = len(self._same_node_sessions(node, keys))
            wanted = have + 1 if multiple else _num(rec, "node.session.nr_sessions", 1)
            if have >= wanted:
                plural = "" if wanted == 1 else "s"
                return {**result, "ok": False, "code": 15,
                        "message": f"{node.iface}: {wanted} session{plural} requested, "
                                   f"but {have} already present."}
            sids: list[int] = []
            try:
                for _ in range(wanted - have):
                    sids.append(await self._establish(node, initiator_name, at_boot))
            except SessionError as exc:
                if not self.side_by_side:  # (iscsictl-start prints it)
                    # the daemon's log keeps why, as iscsid's: a login not waited for
                    # (-W, autostart) fails nowhere else
                    log.warning("Could not login to %s: %s (%d - %s)", node.describe(), exc,
                                exc.code, err_text(exc.code))
                return {**result, "ok": False, "code": exc.code, "message": str(exc),
                        "sids": sids}
        return {**result, "ok": True, "sids": sids}

    @contextlib.asynccontextmanager
    async def _others_turn(self, node: ks.NodeTarget, keys: list[tuple[str, str, int, str]]):
        """Hold ``node``'s :class:`~.instance.NodeLocks` bytes (one per key of ``keys``,
        in order), waiting while another process beside this one holds one (its login to
        that node under way), looked at every NODE_LOCK_POLL s."""
        assert self.node_locks is not None
        taken: list[int] = []
        try:
            for byte in sorted({NodeLocks.byte(k) for k in keys}):
                waited = False
                while not self.node_locks.try_take(byte):
                    if not waited:
                        waited = True
                        log.info("%s: another process logs in to it; waiting for its turn",
                                 node.describe())
                    await asyncio.sleep(NODE_LOCK_POLL)
                taken.append(byte)
            yield
        finally:
            for byte in taken:
                self.node_locks.release(byte)

    def _adopt_others(self, target: str) -> None:
        """Side by side: adopt the sessions to ``target`` that other processes made since
        this daemon's start, or were making then (adopted with their identity half set),
        read from sysfs with their ISIDs from the shared state file, so that a login counts
        them (the ISIDs of their sessions to other targets are skipped where one is given
        out: :meth:`_claim_isid`)."""
        for sid in self.sysfs.session_ids():
            known = self.sessions.get(sid)
            if sid in self._logging_in or known is not None and not known.adopted:
                continue  # ours; one adopted is looked at again: its login was under way
                # then, its identity half set (SET_PARAMs: the target name, the address ...)
            if self.sysfs.read(f"class/iscsi_session/session{sid}/targetname") == target:
                old = self.sessions.pop(sid, None)
                if old is not None and old.isid is not None:
                    self.isids.release(old.isid)  # adopted again below, reserved again
                self._adopt(only=sid)

    def _kernel_isid(self, sid: int) -> ISID | None:
        """Session ``sid``'s ISID as sysfs shows it; None where it does not (iscsi_tcp and
        iSER never show it: only an HBA's driver does), or not an ISID."""
        try:
            isid = ISID(bytes.fromhex(self.sysfs.read(f"class/iscsi_session/session{sid}/isid")
                                      or ""))
        except ValueError:
            return None
        return isid if isid.value else None  # all zero: not set

    def _claim_isid(self, isid: ISID) -> bool:
        """Side by side, for :class:`ISIDAllocator`: take ``isid``'s byte of the
        :class:`~.instance.NodeLocks` (held until the ISID is released or this process
        ends); False when another process holds it (its login offers that ISID: PID-spaced
        qualifiers can meet across PID namespaces) or, the byte taken, the state file or
        its journal holds it for a session the kernel shows (logged in by a process that
        has ended since, which saved it at its login; the kernel does not show a
        software session's ISID): the byte is looked at first, so that neither is
        missed."""
        byte = None
        if self.node_locks is not None:  # (none: the file could not be opened, said)
            byte = NodeLocks.isid_byte(isid.value)
            try:
                if not self.node_locks.try_take(byte):
                    return False
            except OSError as exc:  # not a lock held: one the file cannot have
                log.warning("cannot lock ISID %s in %s: %s", isid, self.node_locks.path,
                            exc.strerror)
                byte = None
        if str(isid) in self._saved_isids():
            if byte is not None:
                self.node_locks.release(byte)  # type: ignore[union-attr]
            return False
        return True

    def _saved_isids(self) -> set[str]:
        """The ISIDs (12 hex digits) the state file and its journal hold for the sessions
        the kernel shows, read under the state lock (a merge under way moves the
        journal's lines into the file)."""
        try:
            fd = self._journal_file()
            with self._state_lock(fd):
                saved = self._load_state(quiet=True)
        except OSError:  # (no state directory to be had, a flock refused): read as it is
            saved = self._load_state(quiet=True)
        alive = {str(sid) for sid in self.sysfs.session_ids()}
        return {e["isid"].lower() for sid, e in saved.items() if sid in alive and e.get("isid")}

    def _unclaim_isid(self, isid: ISID) -> None:
        if self.node_locks is not None:
            self.node_locks.release(NodeLocks.isid_byte(isid.value))

    async def _bind_host(self, node: ks.NodeTarget) -> int | None:
        """:func:`~.kernel_session.bind_host` of ``node``, looked for once a second,
        login_timeout times, while the iface's host is not there (an HBA's driver just
        loaded probes its ports meanwhile), as iscsid's session_login_task_retry on
        ISCSI_ERR_HOST_NOT_FOUND; then its SessionError 23."""
        tries = max(1, _num(node.record, "node.conn[0].timeo.login_timeout", 15))
        for n in range(tries):
            try:
                return ks.bind_host(self.sysfs, node.record)
            except SessionError as exc:
                if exc.code != 23 or n == tries - 1:
                    raise
                if n == 0:
                    log.info("%s: %s; looking again for %d s", node.describe(), exc, tries - 1)
            await asyncio.sleep(HOST_RETRY)
        return None  # not reached

    async def _establish(self, node: ks.NodeTarget, initiator_name: str,
                         at_boot: bool = False) -> int:
        """Initial login: node.session.initial_login_retry_max attempts for
        retryable failures (fatal ones - authentication, not found - at once), and for a
        boot disk's or one ``at_boot`` as many as :func:`boot_retry_window` allows."""
        why = unsupported(node.transport)
        if why:
            raise SessionError(27, why)
        handle = await self.handle(node.transport)  # the driver loaded before its host is
        bind_host = await self._bind_host(node)  # looked up (iscsid's __session_login_task)
        record = ks.uip_record(self.sysfs, node.record, bind_host)
        if record is not node.record:
            node = dataclasses.replace(node, record=record)
        caps = self._transport_caps(node.transport) or -1  # unreadable: every one
        assert self.nl is not None
        rec = node.record
        attempts = max(1, _num(rec, "node.session.initial_login_retry_max", 4))
        window = boot_retry_window(rec, at_boot)
        loop = asyncio.get_running_loop()
        first_try = loop.time()
        scan = rec.get("node.session.scan", "auto") != "manual"
        attempt = -1
        # one ISID for every attempt, as iscsid's session keeps its own: one taken afresh
        # each time walked past an iscsictl-start's own qualifiers (ISIDS_PER_PROCESS) into
        # the next one's after four, and two paths to one portal group reinstated each other
        isid = self.isids.allocate()
        try:
            while True:
                attempt += 1
                try:
                    async with self._login_slot(node.address, node.port):
                        if node.transport in ks.KERNEL_CONNECTED:
                            session = await ks.establish_ep(
                                self.nl, handle, node, initiator_name, isid,
                                self.issued_challenges, self._start_scan if scan else None,
                                self._logging_in, bind_host, caps, self.sysfs)
                        else:
                            session = await ks.establish(
                                self.nl, handle, node, initiator_name, isid,
                                self.issued_challenges, self._start_scan if scan else None,
                                caps, self._destroy_due)
                    break
                except SessionError as exc:
                    if not exc.retryable or (attempt >= attempts - 1 and
                                             loop.time() - first_try >= window):
                        raise
                    log.info("login to %s failed (%s); retry %d/%s", node.describe(), exc,
                             attempt + 1, attempts - 1 if attempt < attempts - 1 else
                             f"{window} s")
                    await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)) *
                                        random.uniform(0.8, 1.2))
        except BaseException:  # failed for good, or cancelled (the daemon stops, SIGTERM:
            self.isids.release(isid)  # in a retry's wait too), or a bug: logged by the caller
            raise
        scanning, session.scanning = session.scanning, None
        self._manage(session)
        self._save_state()
        log.info("Connection%d:0 to [target: %s, portal: %s,%d] through [iface: %s] is operational now",
                 session.sid, node.target, node.address, node.port, node.iface)  # iscsid: the record's
        if scan:  # as iscsiadm: the login returns after the scan
            try:
                await (scanning or ks.scan_host(session.host_no, self.sysfs_root,
                                                self._scan_pool))
            except OSError as exc:  # the session stands; iscsiadm only warns too
                log.warning("session %d: the LUN scan failed: %s", session.sid, exc)
            await self._size_queues(session)
        return session.sid

    def _destroy_due(self, sid: int) -> None:
        """Session ``sid`` was destroyed here (a logout, a failed login's own): its
        KEVENT_DESTROY_SESSION, still on its way, is not another netlink user's."""
        self._logged_out.add(sid)
        if len(self._logged_out) > 1024:  # sids only grow: the oldest are long settled
            self._logged_out = set(sorted(self._logged_out)[-512:])

    def _start_scan(self, host_no: int) -> "concurrent.futures.Future[None]":
        """The LUN scan of a new session's host, started from the netlink lane."""
        return self._scan_pool.submit(self.sysfs.scan_host, host_no)

    @staticmethod
    def _boot_id() -> str | None:
        try:
            return read_regular(BOOT_ID).decode("ascii", "replace").strip() or None
        except OSError:
            return None

    def _autostart_due(self) -> bool:
        """Whether this start makes the automatic logins: no earlier start of this boot
        made them (:data:`AUTOSTART_MARK`), or the boot is not known."""
        boot = self._boot_id()
        return boot is None or boot != self._autostarted()

    def _autostarted(self) -> str | None:
        """The boot id :data:`AUTOSTART_MARK` holds (None: none)."""
        try:
            return read_regular(str(self.state_dir / AUTOSTART_MARK)).decode(
                "ascii", "replace").strip() or None
        except OSError:
            return None

    def _mark_autostarted(self) -> None:
        from iscsictl.db.store import atomic_write

        boot = self._boot_id()
        if boot is None:
            return
        try:
            os.makedirs(self.state_dir, 0o755, exist_ok=True)
            atomic_write(str(self.state_dir / AUTOSTART_MARK), f"{boot}\n".encode(), 0o644)
        except (OSError, DBError) as exc:
            log.warning("cannot note the automatic logins in %s: %s", self.state_dir, exc)

    async def _autostart(self) -> None:
        """node.startup (or node.conn[0].startup) = automatic: log in at the boot's first
        daemon start, bounded in parallel, each tried as iscsid tries a first login (for
        :func:`boot_retry_window`: a target still starting after a power cut); then noted
        (:data:`AUTOSTART_MARK`), unless the records or the initiator name could not be read
        (the next start tries again)."""
        def read() -> list[dict[str, str]]:
            return [r.as_strings() for r in self._db().read_nodes()]

        try:  # thousands of record files: read them off the loop
            recs = await asyncio.get_running_loop().run_in_executor(None, read)
        except Exception as exc:  # noqa: BLE001 - a broken DB never stops the daemon
            log.warning("automatic logins skipped: cannot read the node DB: %s", exc)
            return
        auto = [r for r in recs if startup_matches(r, "automatic")]  # conn[0]'s too
        if not auto:
            self._mark_autostarted()
            return
        name = self._initiator_name()
        if not name:
            log.warning("automatic logins skipped: no usable InitiatorName in initiatorname.iscsi")
            return
        leading = [r for r in auto if r.get("node.leading_login") == "Yes"]
        others = [r for r in auto if r.get("node.leading_login") != "Yes"]
        results = await self.login(others, name, at_boot=True) if others else []
        if leading:
            results += await self._leading_logins(leading, name)
        self._mark_autostarted()
        ok = sum(1 for r in results if r.get("ok"))
        present = sum(1 for r in results if r.get("code") == 15)
        for r in results:
            if not r.get("ok") and r.get("code") != 15:
                log.warning("automatic login to %s failed: %s", r.get("node"), r.get("message"))
        log.info("automatic logins: %d new, %d already present, %d failed", ok, present,
                 len(results) - ok - present)

    async def _leading_logins(self, recs: list[dict[str, str]],
                              name: str) -> list[dict[str, Any]]:
        """node.leading_login = Yes records, as iscsiadm's login_by_startup: iface by
        iface (by name), those whose target and portal have no session yet (through any
        iface) are logged in; so a portal reached through several ifaces gets one session.
        The logins' results; one still without a session is logged."""
        def present() -> set[PortalKey]:
            return {(s.node.target, host_key(s.node.address), s.node.port)
                    for s in self.sessions.values()}

        results: list[dict[str, Any]] = []
        for todo in leading_login_rounds(recs, present):
            results += await self.login(todo, name, at_boot=True)
        have = present()
        for r in recs:
            if portal_key(r) not in have:
                log.warning("automatic login: leading-login portal %s,%s of %s has no session "
                            "through any iface", r.get("node.conn[0].address"),
                            r.get("node.conn[0].port"), r.get("node.name"))
                have.add(portal_key(r))  # said once for the portal
        return results

    async def _discoveryd(self) -> None:
        """iscsid's discovery daemon: a :class:`~.discoveryd.Poller` task for each discovery
        record with ``use_discoveryd = Yes``, its discoveries run on threads of their own
        (a target that hangs the exchange holds neither the loop nor the daemon's stop)."""
        from . import discoveryd as dd

        def warn(msg: str) -> None:
            log.warning("%s", msg)
        try:
            srcs = await _on_thread(dd.sources, self._db(), warn)
        except Exception as exc:  # noqa: BLE001 - a broken DB never stops the daemon
            log.warning("discovery daemon not started: cannot read the discovery records: %s",
                        exc)
            return

        def has_session(key: dd.NodeKey) -> bool:
            return bool(self.sessions.of_node(key))

        loop = asyncio.get_running_loop()

        def through_kernel(src: dd.Source, iface: dict[str, str],
                           name: str) -> list[dict[str, Any]]:  # on the discovery's thread
            async def exchange() -> list[dict[str, Any]]:  # a task of the daemon's: its stop
                return await self._spawn(self.send_targets(  # cancels it while netlink is
                    src.address, src.port, src.values, iface, name))  # open (its undo runs)
            return asyncio.run_coroutine_threadsafe(exchange(), loop).result()

        async def discover(src: dd.Source) -> list[dict[str, str]]:
            return await _on_thread(lambda: dd.discover(self._db(), src, self._initiator_name(),
                                                        through_kernel,
                                                        initiator_alias=self.initiator_alias))

        async def login(records: list[Mapping[str, str]]) -> list[dict[str, Any]]:
            return await self.login(records, self._initiator_name() or "")

        async def logout(keys: list[dd.NodeKey]) -> None:
            sids = [s.sid for key in dict.fromkeys(keys) for s in self.sessions.of_node(key)]
            for r in await self.logout(sids):  # safe_logout holds
                if not r.get("ok"):
                    log.warning("session %s: logout failed: %s", r.get("sid"), r.get("message"))

        async def register(src: dd.Source, scn_port: int) -> float | None:
            return await _on_thread(
                lambda: dd.register(self._db(), src, self._initiator_name(), scn_port))

        async def deregister(src: dd.Source) -> None:
            await _on_thread(lambda: dd.deregister(self._db(), src, self._initiator_name()))
        for src in srcs:
            log.info("discovery daemon: %s every %s%s", src.describe(),
                     f"{src.poll} s" if src.poll else "daemon start (once)",
                     " and at each State Change Notification" if src.hears_scns else "")
            self._spawn(dd.Poller(src, discover, has_session, login, logout, register,
                                  deregister=deregister).run())

    async def logout(self, sids: list[int], force: bool = False,
                     progress: Progress | None = None,
                     safe: bool = False) -> list[dict[str, Any]]:
        """Log out of each session; one result each.  Without ``force``, and with ``safe``
        or iscsid.safe_logout = Yes, a session whose disks are mounted (or swap) is refused
        (28)."""
        safe = not force and (safe or self._safe_logout())
        return await _each([self._logout_one(sid, safe) for sid in sids], progress,
                           [{"sid": sid} for sid in sids])

    async def _logout_one(self, sid: int, safe: bool) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session is None:
            if sid in self._logging_in:  # a login here is making it: its own to undo (its
                # endpoint is that login's); iscsid's session_logout_task for an initial
                # login (IN_LOGIN or XPT_WAIT, R_STAGE_NO_CHANGE): ISCSI_ERR_INTERNAL
                return {"sid": sid, "ok": False, "code": 9,
                        "message": f"session {sid} in invalid state for logout (it is being "
                                   "logged in): try again when its login has ended"}
            if self.sysfs.session(sid) is None:
                return {"sid": sid, "ok": False, "code": 2, "message": err_text(2)}
            host_no = self.sysfs.session_host_no(sid)
            if host_no is not None and self._firmware_session(sid, host_no):
                # the card's own, never adopted (an adoption reads the whole node DB: once
                # per session of a -u of 512 of them, 75 s of the loop); safe_logout holds
                # for them too (iscsiadm's iscsi_logout_flashnode_sid checks
                # iscsi_check_session_use_count)
                busy = self._in_use(sid) if safe else None
                if busy:
                    return busy
                return await self._logout_flashnode_sid(sid, host_no)
            self._adopt(only=sid)  # that one: not a session a login here is making
            session = self.sessions.get(sid)
            if session is None:
                return {"sid": sid, "ok": False, "code": 2, "message": err_text(2)}
        assert self.nl is not None
        desc = {"sid": sid, "target": session.node.target,
                "portal": format_portal(session.node.address, session.node.port)}
        if safe:
            busy = self._in_use(sid, desc)
            if busy:
                return busy
        if session.logging_out is not None:  # another request's logout: its result
            return {**await asyncio.shield(session.logging_out), **desc}
        done = session.logging_out = asyncio.get_running_loop().create_future()
        try:
            result = await self._logout_session(session, desc)
        except BaseException:
            done.set_result({**desc, "ok": False, "code": 9, "message": "the logout was "
                             "interrupted (the daemon stops)"})
            raise
        finally:
            session.logging_out = None
        done.set_result(result)
        return result

    def _in_use(self, sid: int, desc: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The refusal (28) of a logout of session ``sid`` while its disks are mounted or
        swap (iscsid.safe_logout = Yes); None when they are not."""
        busy = busy_devices([d.block[0] for d in self.sysfs.session_devices(sid) if d.block])
        if not busy:
            return None
        return {**(desc or {"sid": sid}), "ok": False, "code": 28,
                "message": f"session {sid} is in use: {', '.join(busy)} "
                           "(iscsid.safe_logout = Yes; unmount first)"}

    async def _logout_flashnode_sid(self, sid: int, host_no: int) -> dict[str, Any]:
        """Log out of a session the HBA's firmware runs: the card logs out and removes it
        (ISCSI_UEVENT_LOGOUT_FLASHNODE_SID, as iscsiadm's iscsi_logout_flashnode_sid); no
        software teardown."""
        assert self.nl is not None
        transport = self._transport_of(host_no)
        desc = {"sid": sid, "target": self.sysfs.read(
            f"class/iscsi_session/session{sid}/targetname") or "", "portal": ""}
        try:
            await self.nl.logout_flashnode_sid(await self.handle(transport), host_no, sid)
        except SessionError as exc:  # the transport's module is gone
            return {**desc, "ok": False, "code": exc.code, "message": str(exc)}
        except IscsiNetlinkError as exc:
            return {**desc, "ok": False, "code": 10,
                    "message": f"{transport} refused the logout of its session {sid}: {exc}"}
        log.info("session %d: logged out through the HBA (%s)", sid, transport)
        return {**desc, "ok": True}

    async def _logout_session(self, session: ks.KernelSession,
                              desc: dict[str, Any]) -> dict[str, Any]:
        sid = session.sid
        timeout = float(_num(session.node.record, "node.conn[0].timeo.logout_timeout", 15))
        recovery = session.recovery
        if recovery is not None and not recovery.done() and \
                recovery is not asyncio.current_task():  # (the recovery giving up is the caller)
            recovery.cancel()  # a session being recovered has no target to talk to
            await asyncio.gather(recovery, return_exceptions=True)
            timeout = min(timeout, 1.0)
        try:
            handle = await self.handle(session.node.transport)
            await ks.logout(self.nl, handle, session, timeout, self.sysfs_root)
        except SessionError as exc:
            return {**desc, "ok": False, "code": exc.code, "message": str(exc)}
        if self.sessions.pop(sid, None) is not None:
            if not session.destroyed.is_set():  # its destroy event, not come yet, is not
                self._destroy_due(sid)  # another netlink user's
            if session.isid is not None:  # (not when forgotten meanwhile: released there)
                self.isids.release(session.isid)
        self._save_state()
        node = session.node
        log.info("Connection%d:0 to [target: %s, portal: %s,%d] through [iface: %s] is shutdown.",
                 sid, node.target, node.address, node.port, node.iface)  # iscsid's words
        return {**desc, "ok": True}

    async def send_targets(self, address: str, port: int, values: Mapping[str, str],
                           iface: Mapping[str, str], initiator_name: str) -> list[dict[str, Any]]:
        """SendTargets through ``iface``'s kernel connection (iSER: the CLI's discovery
        with ``-I``, as iscsiadm's iscsi_create_leading_conn), ``values`` the discovery
        record's (its login settings and timeouts).  Returns ``[{"name", "portals":
        [[address, port, tpgt (-1: unknown)], ...]}]``, then ``{"name", "portals": [],
        "left_out": true}`` for each target it names but leaves out.  Raises SessionError:
        27 for a transport whose discovery is not made here, 12 without its driver, a
        login's codes, 8 when the answer does not come."""
        from iscsictl.discovery.sendtargets import DiscoveryPolicy
        from iscsictl.protocol.config import LoginConfig

        transport = iface.get("iface.transport_name") or "tcp"
        if transport not in ks.KERNEL_CONNECTED:
            raise SessionError(27, unsupported(transport) or f"SendTargets through transport "
                                   f"{transport} is not made by iscsictld")
        bind_host = ks.bind_host(self.sysfs, iface)
        iface = ks.uip_record(self.sysfs, iface, bind_host)
        left_out: list[str] = []  # named by the answer, left out of it: not gone
        # the host's alias with the host's name; an iface's own name goes alone (discovery.c)
        alias = None if ks.iface_initiator_name(iface) else self.initiator_alias
        try:
            policy = DiscoveryPolicy.from_record(values)
            cfg = LoginConfig.from_discovery(values, initiator_name, initiator_alias=alias,
                                             login_timeout=policy.login_timeout,
                                             auth_timeout=policy.auth_timeout)
        except ValueError as exc:
            raise SessionError(7, f"the discovery record: {exc}") from None
        handle = await self.handle(transport)
        isid = self.isids.allocate()
        try:
            async with self._login_slot(address, port):
                targets = await ks.send_targets_ep(
                    self.nl, handle, Portal(address, port), cfg, isid,
                    iface.get("iface.iscsi_ifacename") or transport, policy.active_timeout,
                    self._logging_in, transport, bind_host, iface,
                    self._transport_caps(transport) or -1, self.sysfs, left_out)
        finally:
            self.isids.release(isid)
        return [{"name": t.name, "portals": [[p.address, p.port, -1 if p.tpgt is None
                                              else p.tpgt] for p in t.portals]}
                for t in targets] + [{"name": n, "portals": [], "left_out": True}
                                     for n in dict.fromkeys(left_out)]

    async def stats(self, sid: int) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionError(2, err_text(2))
        assert self.nl is not None
        try:
            st = await self.nl.get_stats(await self.handle(session.node.transport), sid, session.cid)
        except IscsiNetlinkError as exc:  # refused, no reply in time, one that cannot be read
            raise SessionError(9, f"GET_STATS failed: {exc}") from None
        return {"sid": sid, "stats": {**st.counters, "custom": [list(c) for c in st.custom]}}

    def session_states(self) -> dict[str, dict[str, Any]]:
        """Each session's state for ``-m session``: its connection state in iscsid's words
        (usr/session_info.c print_iscsi_state; the daemon's own FAILED, a stopped
        connection nothing recovers yet, is iscsid's CLEANUP WAIT), ISID, TSIH, ..."""
        return {str(s.sid): {"conn_state": CONN_STATE_SHOWN.get(s.conn_state, s.conn_state),
                             "internal_state": s.internal_state,
                             "isid": str(s.isid) if s.isid else None, "tsih": s.tsih,
                             "adopted": s.adopted, "target": s.node.target,
                             "recoveries": s.recoveries, "negotiated": s.negotiated}
                for s in self.sessions.values()}

    # ------------------------------------------------------------------ IPC
    async def _serve(self, conn: socket.socket) -> None:
        """One CLI connection (:class:`~.ipc_server.IpcListener` gives it): its request
        line, progress lines if asked and keep-alive lines (v3) while it is under way, the
        answer; then the connection is closed."""
        version = IPC_VERSION  # the answer's and the progress lines': the request's
        out = Replies(conn)

        def progress(event: dict[str, Any]) -> None:
            out.write(encode_message({"version": version, "progress": event}))

        try:
            _pid, uid, _gid = peer_credentials(conn)
            if uid not in (0, os.getuid()):
                reply = {"ok": False, "error": {"code": 13, "message": err_text(13)}}
            else:
                keepalive = None
                try:
                    req = decode_message(await read_request(conn, MAX_MESSAGE),
                                         SERVED_VERSIONS, MAX_REQUEST_VALUES)
                    version = req["version"]
                    if version >= 3:
                        keepalive = KeepAlive(out, encode_message(
                            {"version": version, "alive": True}), KEEPALIVE_INTERVAL)
                    try:
                        if req.get("debug") is True and version >= 3:  # CLI -d: its lines
                            with request_lines(lambda line: out.write(encode_message(
                                    {"version": version, "log": line}))):
                                result = await self._dispatch(req, progress)
                        else:
                            result = await self._dispatch(req, progress)
                    except asyncio.CancelledError:  # close(): the client still gets an answer
                        out.write(encode_message({"version": version, "ok": False, "error": {
                            "code": 29, "message": CUT_SHORT}}))
                        try:  # behind the progress lines it has not read yet
                            async with asyncio.timeout(CUT_SHORT_DRAIN):
                                await out.drain()
                        except (TimeoutError, OSError):
                            pass
                        raise
                    reply = {"ok": True, "result": result}
                except SessionError as exc:
                    reply = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
                except (ValueError, KeyError, TypeError) as exc:
                    # its arguments', mostly; from deeper, a defect: its traceback at debug
                    log.debug("IPC: request answered as bad (%s: %s)", type(exc).__name__,
                              exc, exc_info=True)
                    reply = {"ok": False, "error": {"code": 16,
                                                    "message": f"bad request: {_cut(exc)}"}}
                finally:
                    if keepalive is not None:
                        keepalive.cancel()
            out.write(encode_message({"version": version, **reply}))
            try:  # a client that reads nothing must not hold the connection for ever
                async with asyncio.timeout(SILENCE_LIMIT):
                    await out.drain()
            except TimeoutError:
                log.info("IPC: the client read no answer for %g s; connection closed",
                         SILENCE_LIMIT)
        except ConnectionError:
            pass
        except RequestStalled as exc:  # said to it too, if its socket takes the line
            log.info("IPC: %s; connection closed", exc)
            out.write(encode_message({"version": version, "ok": False, "error": {
                "code": 16, "message": f"bad request: {exc}"}}))
        except Exception:  # noqa: BLE001 - never let one client take the daemon down
            log.exception("IPC request failed")
        finally:
            await out.close()  # no send left watching the descriptor once it is closed
            conn.close()

    async def _dispatch(self, req: dict[str, Any], progress: Progress) -> Any:
        op, args = request_args(req)
        report = progress if args.get("progress") else None
        if op == "ping":
            return {"pid": os.getpid(), "sessions": len(self.sessions)}
        if op == "login":
            return await self.login(args["records"], args["initiator_name"], report,
                                    bool(args.get("multiple")))
        if op == "logout":
            return await self.logout(args["sids"], bool(args.get("force")), report,
                                     bool(args.get("safe")))
        if op == "sessions":
            return self.session_states()
        if op == "stats":
            return await self.stats(args["sid"])
        if op == "sendtargets":
            return await self.send_targets(args["address"], args["port"], args["values"],
                                           args["iface"], args["initiator_name"])
        if op == "stop":  # answered when the daemon has stopped (iscsid answers
            task = asyncio.current_task()  # MGMT_IPC_IMMEDIATE_STOP at its event loop's
            assert task is not None  # end): another iscsictld may then start at once
            self._stop_requests.add(task)
            await self.close(logout_all=bool(args.get("logout_all")))
            return None
        raise SessionError(16, f"request {op!r} is not served")  # in the table, not here
