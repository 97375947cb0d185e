"""iscsictld: one asyncio process that owns the kernel's iSCSI sessions.

Rules of this module:

* the only asyncio code of the project lives in :mod:`iscsictl.daemon`;
* every netlink request goes through :class:`~iscsictl.netlink.AsyncIscsiNetlink`
  (sends in an executor: a slow DESTROY_SESSION never stalls the loop);
* kernel events are routed by sid; an event for an unknown sid is logged and
  dropped (another netlink user, e.g. a boot-time login);
* a node (target, portal, iface) has at most one login in flight, and a login
  that finds the node's sessions already there answers 15 (session exists):
  two concurrent ``--loginall`` never duplicate a session (open-iscsi #108);
* sessions the kernel already runs are adopted at start, never logged in again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from iscsictl.ipc import IPC_VERSION, MAX_MESSAGE, decode_message, encode_message
from iscsictl.kernel.sysfs import Sysfs
from iscsictl.netlink import (
    AsyncIscsiNetlink,
    ConnError,
    DestroySession,
    IscsiKernelError,
    KernelInterfaceUnavailable,
    RecvPdu,
    UnbindSession,
)
from iscsictl.netlink.enums import ISCSI_ERR_STRINGS
from iscsictl.protocol.errors import ISCSIProtocolError
from iscsictl.protocol.names import ISID, ISIDAllocator
from iscsictl.protocol.bhs import RawPDU, decode_bhs
from iscsictl.protocol.errors import TruncatedPDU
from iscsictl.protocol.pdu import PDU, decode_pdu
from iscsictl.protocol.portal import Portal
from iscsictl.protocol.session import (
    AsyncEventReceived,
    LogoutRequested,
    PDURejected,
    ScsiAsyncEvent,
    interpret,
)

from . import kernel_session as ks
from .errors import SessionError, err_text

__all__ = ["Daemon"]

log = logging.getLogger("iscsictld")

#: scsi_host proc_name -> open-iscsi transport name
PROC_NAME_TRANSPORT = {
    "iscsi_tcp": "tcp", "ib_iser": "iser", "qla4xxx": "qla4xxx", "bnx2i": "bnx2i",
    "cxgb3i": "cxgb3i", "cxgb4i": "cxgb4i", "be2iscsi": "be2iscsi", "qedi": "qedi",
}
MAX_PARALLEL_LOGINS = 32


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


class Daemon:
    """The session owner.

    Args:
        socket_path: the IPC socket (mode 0600, root only).
        sysfs_root: for tests with fixture trees.
        state_dir: where session identities (ISIDs) survive a restart.
    """

    def __init__(self, socket_path: str, sysfs_root: str = "/sys",
                 state_dir: str = "/run/iscsictl") -> None:
        self.socket_path = socket_path
        self.sysfs = Sysfs(sysfs_root)
        self.sysfs_root = sysfs_root
        self.state_dir = Path(state_dir)
        self.sessions: dict[int, ks.KernelSession] = {}
        self.isids = ISIDAllocator()
        self.issued_challenges: set[bytes] = set()
        self._node_locks: dict[tuple[str, str, int, str], asyncio.Lock] = {}
        self._login_sem = asyncio.Semaphore(MAX_PARALLEL_LOGINS)
        self.nl: AsyncIscsiNetlink | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()
        self._handles: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # SCSI scans block in the kernel for the whole LUN scan: give them their own
        # threads so 32 parallel logins scan in parallel (the default pool has ~6)
        self._scan_pool = ThreadPoolExecutor(MAX_PARALLEL_LOGINS, thread_name_prefix="scan")

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Open netlink, adopt live sessions, listen on the IPC socket."""
        try:
            self.nl = AsyncIscsiNetlink(event_callback=self._on_event)
        except KernelInterfaceUnavailable:
            # like iscsid: load the software transport (it pulls in scsi_transport_iscsi)
            proc = await asyncio.create_subprocess_exec("modprobe", "-q", "iscsi_tcp")
            await proc.wait()
            self.nl = AsyncIscsiNetlink(event_callback=self._on_event)
        self.nl.start()
        self._adopt()
        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(path), limit=MAX_MESSAGE)
        finally:
            os.umask(old)
        log.info("iscsictld ready on %s (%d session(s) adopted)", path, len(self.sessions))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def close(self, logout_all: bool = False) -> None:
        """Stop serving; sessions keep running in the kernel unless ``logout_all``."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if logout_all:
            await self.logout([s.sid for s in list(self.sessions.values())])
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nl is not None:
            self.nl.close()
            self.nl = None
        self._scan_pool.shutdown(wait=False, cancel_futures=True)
        try:
            Path(self.socket_path).unlink()
        except FileNotFoundError:
            pass
        self._stopped.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ kernel state
    def handle(self, transport: str) -> int:
        """The transport handle from sysfs (loading iscsi_tcp when needed).

        Raises:
            SessionError: 12 when the transport's module is not there.
        """
        if transport in self._handles:
            return self._handles[transport]
        info = self.sysfs.transport(transport)
        if info is None or info.handle is None:
            module = {"tcp": "iscsi_tcp", "iser": "ib_iser"}.get(transport, transport)
            rc = os.system(f"modprobe -q {module} >/dev/null 2>&1")  # noqa: S605 - fixed name
            info = self.sysfs.transport(transport)
            if info is None or info.handle is None:
                raise SessionError(12, f"iSCSI driver {transport} is not loaded "
                                       f"(modprobe {module} {'failed' if rc else 'did not help'})")
        self._handles[transport] = info.handle
        return info.handle

    def _transport_of(self, host_no: int | None) -> str:
        if host_no is None:
            return "tcp"
        name = self.sysfs.read(f"class/scsi_host/host{host_no}/proc_name")
        return PROC_NAME_TRANSPORT.get(name or "", name or "tcp")

    def _load_state(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "sessions.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        data = {str(s.sid): {"isid": str(s.isid) if s.isid else None, "tsih": s.tsih}
                for s in self.sessions.values()}
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "sessions.json.tmp"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.state_dir / "sessions.json")
        except OSError as exc:
            log.warning("cannot save session state in %s: %s", self.state_dir, exc)

    def _adopt(self) -> None:
        """Take over every live kernel session from sysfs, without a relogin."""
        saved = self._load_state()
        for info in self.sysfs.sessions():
            conns = self.sysfs.connections(info.sid)
            conn = conns[0] if conns else None
            node = ks.NodeTarget(
                target=info.targetname or "", address=(conn.persistent_address if conn else "") or "",
                port=(conn.persistent_port if conn else None) or 3260, tpgt=info.tpgt or 0,
                iface=info.ifacename or "default", transport=self._transport_of(info.host_no),
            )
            isid = None
            if (s := saved.get(str(info.sid))) and s.get("isid"):
                try:
                    isid = ISID(bytes.fromhex(s["isid"]))
                    self.isids.reserve(isid)
                except ValueError:
                    isid = None
            current = Portal((conn.address if conn else None) or node.address,
                             (conn.port if conn else None) or node.port, node.tpgt)
            self.sessions[info.sid] = ks.KernelSession(
                sid=info.sid, host_no=info.host_no or 0, cid=conn.cid if conn else 0, node=node,
                isid=isid, tsih=(saved.get(str(info.sid)) or {}).get("tsih", 0), params=None,
                current=current, adopted=True,
                conn_state="LOGGED IN" if info.state == "LOGGED_IN" else "FAILED",
            )
            log.info("adopted session %d: %s %s", info.sid, node.target, current)

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: Any) -> None:
        sid = getattr(ev, "sid", None)
        session = self.sessions.get(sid) if sid is not None else None
        if isinstance(ev, RecvPdu):
            if session is None:
                log.debug("RECV_PDU for unknown session %s dropped", sid)
                return
            try:
                pdu = pdu_from_kernel(ev.pdu)
            except ISCSIProtocolError as exc:
                log.warning("session %d: malformed PDU from the kernel: %s", sid, exc)
                return
            if session.pdu_waiter is not None and not session.pdu_waiter.done():
                session.pdu_waiter.set_result(pdu)
                return
            self._on_target_pdu(session, pdu)
        elif isinstance(ev, ConnError):
            err = int(ev.error)
            text = ISCSI_ERR_STRINGS.get(err, "unknown")
            if session is None:
                log.warning("connection error %s for unknown session %s ignored", err, sid)
                return
            log.error("Kernel reported iSCSI connection %d:%d error (%d - %s) state (%s)",
                      ev.sid, ev.cid, err, text, session.conn_state)
            session.conn_state = "FAILED"
        elif isinstance(ev, UnbindSession):
            if session is not None:
                session.unbound.set()
        elif isinstance(ev, DestroySession):
            if self.sessions.pop(ev.sid, None) is not None:
                log.info("session %d destroyed by the kernel", ev.sid)

    def _on_target_pdu(self, session: ks.KernelSession, pdu: Any) -> None:
        ev = interpret(pdu)
        if isinstance(ev, ScsiAsyncEvent):
            if ev.reported_luns_changed and session.node.record.get("node.session.scan", "auto") == "auto":
                log.info("session %d: reported LUNs changed; rescanning", session.sid)
                self._spawn(ks.scan_host(session.host_no, self.sysfs_root, self._scan_pool))
        elif isinstance(ev, LogoutRequested):
            log.info("session %d: the target asks for a logout within %d s", session.sid, ev.seconds)
            self._spawn(self.logout([session.sid]))
        elif isinstance(ev, AsyncEventReceived):
            log.info("session %d: async event %s", session.sid, ev)
        elif isinstance(ev, PDURejected):
            log.warning("session %d: the target rejected a PDU (%s)", session.sid, ev.reason)

    # ------------------------------------------------------------------ operations
    def _node_sessions(self, node: ks.NodeTarget) -> list[ks.KernelSession]:
        return [s for s in self.sessions.values() if s.node.key == node.key]

    async def login(self, records: list[Mapping[str, str]], initiator_name: str) -> list[dict[str, Any]]:
        """Log in to each node record (in parallel, bounded); one result each."""
        return list(await asyncio.gather(*(self._login_one(r, initiator_name) for r in records)))

    async def _login_one(self, rec: Mapping[str, str], initiator_name: str) -> dict[str, Any]:
        try:
            node = ks.NodeTarget.from_record(rec)
        except KeyError as exc:
            return {"ok": False, "code": 7, "message": f"node record lacks {exc}"}
        result: dict[str, Any] = {"node": node.describe(), "target": node.target,
                                  "portal": f"{node.address},{node.port}", "iface": node.iface}
        lock = self._node_locks.setdefault(node.key, asyncio.Lock())
        async with lock:  # one login per node at a time: no duplicates (#108)
            try:
                wanted = max(1, int(rec.get("node.session.nr_sessions", 1)))
            except ValueError:
                wanted = 1
            have = len(self._node_sessions(node))
            if have >= wanted:
                return {**result, "ok": False, "code": 15,
                        "message": f"{node.iface}: {wanted} session requested, but {have} already present."}
            sids = []
            try:
                async with self._login_sem:
                    for _ in range(wanted - have):
                        sids.append(await self._establish(node, initiator_name))
            except SessionError as exc:
                return {**result, "ok": False, "code": exc.code, "message": str(exc),
                        "sids": sids}
        return {**result, "ok": True, "sids": sids}

    async def _establish(self, node: ks.NodeTarget, initiator_name: str) -> int:
        if node.transport != "tcp":
            raise SessionError(27, f"transport {node.transport} is not supported yet")
        handle = self.handle(node.transport)
        assert self.nl is not None
        rec = node.record
        try:
            attempts = max(1, int(rec.get("node.session.initial_login_retry_max", 4)))
        except ValueError:
            attempts = 4
        last: SessionError | None = None
        for attempt in range(attempts):
            isid = self.isids.allocate()
            try:
                session = await ks.establish(self.nl, handle, node, initiator_name, isid,
                                             self.issued_challenges)
                break
            except SessionError as exc:
                self.isids.release(isid)
                last = exc
                if not exc.retryable or attempt == attempts - 1:
                    raise
                log.info("login to %s failed (%s); retry %d/%d", node.describe(), exc,
                         attempt + 1, attempts - 1)
                await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))
        else:  # pragma: no cover - the loop always breaks or raises
            raise last or SessionError(5, "login failed")
        self.sessions[session.sid] = session
        self._save_state()
        log.info("Connection%d:0 to [target: %s, portal: %s,%d] through [iface: %s] is operational now",
                 session.sid, node.target, session.current.address, session.current.port, node.iface)
        if rec.get("node.session.scan", "auto") != "manual":
            await ks.scan_host(session.host_no, self.sysfs_root, self._scan_pool)
        return session.sid

    async def logout(self, sids: list[int]) -> list[dict[str, Any]]:
        """Log out of each session; one result each."""
        return list(await asyncio.gather(*(self._logout_one(sid) for sid in sids)))

    async def _logout_one(self, sid: int) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session is None:
            info = self.sysfs.session(sid)
            if info is None:
                return {"sid": sid, "ok": False, "code": 2, "message": err_text(2)}
            self._adopt()
            session = self.sessions.get(sid)
            if session is None:
                return {"sid": sid, "ok": False, "code": 2, "message": err_text(2)}
        assert self.nl is not None
        desc = {"sid": sid, "target": session.node.target,
                "portal": f"{session.node.address},{session.node.port}"}
        try:
            timeout = float(session.node.record.get("node.conn[0].timeo.logout_timeout", 15))
        except ValueError:
            timeout = 15.0
        try:
            handle = self.handle(session.node.transport)
            await ks.logout(self.nl, handle, session, timeout)
        except SessionError as exc:
            return {**desc, "ok": False, "code": exc.code, "message": str(exc)}
        self.sessions.pop(sid, None)
        if session.isid is not None:
            self.isids.release(session.isid)
        self._save_state()
        return {**desc, "ok": True}

    async def rescan(self, sid: int) -> None:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionError(2, err_text(2))
        await ks.scan_host(session.host_no, self.sysfs_root, self._scan_pool)

    async def stats(self, sid: int) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionError(2, err_text(2))
        assert self.nl is not None
        try:
            st = await self.nl.get_stats(self.handle(session.node.transport), sid, session.cid)
        except IscsiKernelError as exc:
            raise SessionError(9, f"GET_STATS failed: {exc}") from None
        return {"sid": sid, "stats": {**st.counters, "custom": [list(c) for c in st.custom]}}

    def session_states(self) -> dict[str, dict[str, Any]]:
        return {str(s.sid): {"conn_state": s.conn_state, "internal_state": s.internal_state,
                             "isid": str(s.isid) if s.isid else None, "tsih": s.tsih,
                             "adopted": s.adopted, "target": s.node.target,
                             "negotiated": s.negotiated}
                for s in self.sessions.values()}

    # ------------------------------------------------------------------ IPC
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid not in (0, os.getuid()):
                reply = {"ok": False, "error": {"code": 13, "message": err_text(13)}}
            else:
                try:
                    line = await reader.readline()
                    req = decode_message(line)
                    reply = {"ok": True, "result": await self._dispatch(req)}
                except SessionError as exc:
                    reply = {"ok": False, "error": {"code": exc.code, "message": str(exc)}}
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": {"code": 16, "message": f"bad request: {exc}"}}
            writer.write(encode_message({"version": IPC_VERSION, **reply}))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # noqa: BLE001 - never let one client take the daemon down
            log.exception("IPC request failed")
        finally:
            writer.close()

    async def _dispatch(self, req: dict[str, Any]) -> Any:
        op, args = req["op"], req.get("args") or {}
        if op == "ping":
            return {"pid": os.getpid(), "sessions": len(self.sessions)}
        if op == "login":
            return await self.login(args["records"], args["initiator_name"])
        if op == "logout":
            return await self.logout([int(s) for s in args["sids"]])
        if op == "sessions":
            return self.session_states()
        if op == "rescan":
            await self.rescan(int(args["sid"]))
            return None
        if op == "stats":
            return await self.stats(int(args["sid"]))
        if op == "stop":
            self._spawn(self.close(logout_all=bool(args.get("logout_all"))))
            return None
        raise SessionError(16, f"unknown request {op!r}")
