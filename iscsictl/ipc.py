"""The CLI <-> iscsictld protocol: versioned JSON lines on a Unix socket.

Not compatible with iscsiadm<->iscsid (by design, DESIGN.md).  Root only: the
daemon checks the peer's uid with SO_PEERCRED.  One request per connection
(the CLI's lifetime is one command), one line each way::

    -> {"version": 3, "op": "login", "args": {...}}
    <- {"version": 3, "alive": true}                  (every KEEPALIVE_INTERVAL s)
    <- {"version": 3, "ok": true, "result": ...}
    <- {"version": 3, "ok": false, "error": {"code": 15, "message": "session exists"}}

``code`` is open-iscsi's ISCSI_ERR_* number, so the CLI exits with it.  The daemon answers
in the request's version.  Version 2 changed one thing: a ``login`` record may leave out
the keys at their compiled default (the daemon restores them); version 1 sent every key.
Version 3 added the keep-alive lines: while the daemon works on a request it sends one
every :data:`KEEPALIVE_INTERVAL` s, so that the client, which waits as long as the daemon
works (a login of many nodes, each bounded by its own timeouts), can tell a daemon that
stopped (its loop stuck: nothing for :data:`SILENCE_LIMIT` s) from a long request.
iscsiadm waits for iscsid's login answer without a limit.  A v3 request may also say
``"debug": true`` (beside ``op``; the CLI's ``-d``): the daemon then sends the log lines it
writes while serving it, each as it is written, before the answer::

    <- {"version": 3, "log": "-> Login Request T=1 C=0 CSG=1 NSG=3 ..."}

(a daemon from before they were added ignores the flag and sends none).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = [
    "DAEMON_LINES",
    "DEFAULT_SOCKET",
    "IPC_VERSION",
    "KEEPALIVE_INTERVAL",
    "SERVED_VERSIONS",
    "SILENCE_LIMIT",
    "DaemonClient",
    "DaemonError",
    "DaemonNotRunning",
    "decode_message",
    "encode_message",
    "peer_credentials",
    "socket_path",
]

IPC_VERSION = 3
#: versions the daemon serves (a v1 CLI sends whole records, which v2 reads the same;
#: v1 and v2 get no keep-alive lines)
SERVED_VERSIONS = (1, 2, 3)
#: seconds between the daemon's keep-alive lines while a v3 request is under way
KEEPALIVE_INTERVAL = 2.0
#: seconds without a line (answer, progress, keep-alive) after which the client counts the
#: daemon as stuck: 15 keep-alives missed
SILENCE_LIMIT = 30.0
#: seconds a client waits for the daemon to accept its connection
CONNECT_TIMEOUT = 5.0
DEFAULT_SOCKET = "/run/iscsictld.sock"
#: sessions or records one request may name: far above what a host runs (the kernel's
#: session ids, a thousand sessions), far below what would hold the daemon's loop for
#: seconds; a client sends more in several requests
MAX_REQUEST_ITEMS = 16384
#: JSON values one request may hold (:func:`message_values`), bounded before it is
#: decoded: 64 an item on average, where a login's record is ~15-40 keys not at their
#: default; the CLI splits a bulk request by the same count (cli/kernel_ops.py).  Without
#: it, 16 MiB of ``{},`` decoded into 5 million objects: ~450 MB and 0.4 s of the daemon's
#: loop (``json.loads`` holds the GIL)
MAX_REQUEST_VALUES = 64 * MAX_REQUEST_ITEMS
MAX_MESSAGE = 16 << 20  # bytes: a reply listing thousands of sessions fits
#: where the daemon's log lines for this command's requests go, each as it comes (set by
#: the CLI's ``-d``; unset: none are asked for)
DAEMON_LINES: ContextVar[Callable[[str], None] | None] = ContextVar("iscsictl_daemon_lines",
                                                                   default=None)


def socket_path() -> str:
    """The daemon's socket: ``$ISCSICTL_SOCKET`` (unless empty) or /run/iscsictld.sock."""
    return os.environ.get("ISCSICTL_SOCKET") or DEFAULT_SOCKET


class DaemonError(Exception):
    """The daemon answered with an error; ``code`` is the ISCSI_ERR_* number."""

    def __init__(self, code: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = code
        self.detail = detail


class DaemonNotRunning(DaemonError):
    """No daemon answers on the socket (ISCSI_ERR_ISCSID_NOTCONN, 20)."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(
            20,
            f"could not connect to iscsictld at {path} ({why}): start it with "
            "'iscsictld' (or 'systemctl start iscsictld')",
        )


def _io(op: Callable[..., Any], *args: Any) -> Any:
    """A send or receive on the daemon's connection; its failure (the daemon gone midway:
    a reset, a broken pipe) a DaemonError (18).  A timeout propagates as it is."""
    try:
        return op(*args)
    except socket.timeout:
        raise
    except OSError as exc:
        raise DaemonError(18, f"lost the connection to iscsictld: {exc.strerror or exc}") \
            from None


def encode_message(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def message_values(data: bytes) -> int:
    """How many JSON values ``data`` may hold, counted from above by its separators and
    brackets (a C scan, nothing decoded): every value but a container's first follows a
    ``,`` or a ``:``; the punctuation inside strings (an IQN's, an IPv6 address's) only
    makes the count larger."""
    return sum(map(data.count, (b",", b":", b"[", b"{")))


def decode_message(line: bytes, versions: tuple[int, ...] = (IPC_VERSION,),
                   max_values: int | None = None) -> dict[str, Any]:
    """Raises ValueError for anything that is not a JSON object of one of ``versions`` (an
    integer: not true, not 3.0, which compare equal to 1 and 3), and, with ``max_values``,
    for a line that may hold more values than that (it is not decoded)."""
    if max_values is not None and message_values(line) > max_values:
        raise ValueError(f"more than {max_values} JSON values in one request")
    try:
        obj = json.loads(line)
    except RecursionError:  # '[[[[...': nested deeper than the interpreter's stack
        raise ValueError("nested too deep") from None
    version = obj.get("version") if isinstance(obj, dict) else None
    if type(version) is not int or version not in versions:
        raise ValueError(f"not an iscsictl IPC v{'/v'.join(map(str, versions))} message")
    return obj


def _error_code(code: Any) -> bool:
    """An answer's error code is one of open-iscsi's, and not success."""
    from .exitcodes import BY_CODE

    return type(code) is int and code in BY_CODE and code != 0


def _outcomes(result: Any, kinds: dict[str, type], required: tuple[str, ...] = ()) -> None:
    """A list of objects, each with ``ok`` and, when not ok, a valid ``code``; ``kinds``:
    the type of each other member it may have (``required``: must have); ``sids`` holds
    integers."""
    if not isinstance(result, list):
        raise TypeError(f"expected a list, not {type(result).__name__}")
    for r in result:
        if not isinstance(r, dict) or type(r.get("ok")) is not bool:
            raise TypeError(f"an outcome without ok: {r!r:.80}")
        if not r["ok"] and not _error_code(r.get("code")):
            raise ValueError(f"error code {r.get('code')!r:.40}")
        for key in required:
            if key not in r:
                raise TypeError(f"an outcome without {key}: {r!r:.80}")
        for key, kind in kinds.items():
            if key in r and (not isinstance(r[key], kind) or isinstance(r[key], bool)):
                raise TypeError(f"{key} of {type(r[key]).__name__} in {r!r:.80}")
        if not all(type(sid) is int for sid in r.get("sids") or ()):
            raise TypeError(f"sids {r['sids']!r:.80}")


def _objects(result: Any) -> None:
    if not isinstance(result, dict) or not all(isinstance(v, dict) for v in result.values()):
        raise TypeError(f"expected an object of objects: {result!r:.80}")


def _stats(result: Any) -> None:
    st = result.get("stats") if isinstance(result, dict) else None
    if not isinstance(st, dict) or not all(type(v) is int for k, v in st.items()
                                           if k != "custom"):
        raise TypeError(f"expected the stats counters: {result!r:.80}")
    if not all(isinstance(c, list) and len(c) == 2 for c in st.get("custom", ())):
        raise TypeError(f"custom stats {st.get('custom')!r:.80}")


#: What the client checks of each op's ``result`` before the CLI reads it: a daemon of
#: another version (or a bug) is answered 18, "could not read iscsictld's answer", not a
#: traceback or an exit code that is no one's (the daemon checks requests the same way,
#: its REQUEST_ARGS).
RESULT_CHECKS: dict[str, Callable[[Any], None]] = {
    "login": lambda r: _outcomes(r, {"sids": list, "node": str, "message": str}),
    "logout": lambda r: _outcomes(r, {"sid": int, "message": str}, required=("sid",)),
    "sessions": _objects,
    "stats": _stats,
}


class DaemonClient:
    """Blocking client for the CLI.

    Args:
        path: the socket (default :func:`socket_path`).
        timeout: seconds to wait for each line of the answer, then DaemonError 33 (None:
            :data:`SILENCE_LIMIT`).  A progress or keep-alive line counts, so a request
            may take as long as the daemon works on it: it sends a keep-alive line every
            :data:`KEEPALIVE_INTERVAL` s.
    """

    def __init__(self, path: str | None = None, timeout: float | None = None) -> None:
        self.path = path or socket_path()
        self.timeout = SILENCE_LIMIT if timeout is None else timeout

    def post(self, op: str, **args: Any) -> None:
        """Send one request and do not wait for its answer (iscsiadm's ``-W``: the
        request is the daemon's once sent; it carries it out whether or not anyone reads
        the answer).  Raises :class:`DaemonError` when it cannot be sent."""
        s = self._connect()
        try:
            _io(s.sendall, encode_message({"version": IPC_VERSION, "op": op, "args": args}))
        except socket.timeout:
            raise DaemonError(33, "iscsictld did not take the request: it may be stuck (see "
                                  "its log)") from None
        finally:
            s.close()

    def _connect(self) -> socket.socket:
        """A connection to the daemon, whose listener must be root's or this user's
        (SO_PEERCRED, as the C client checks the command server's), else
        :class:`DaemonError` 13 and nothing is sent.  A full accept queue (EAGAIN: a Unix socket's
        connect does not wait in it when non-blocking) is tried again until
        CONNECT_TIMEOUT s have passed, as iscsiadm's ipc_connect retries: the daemon is
        busy, not gone."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(CONNECT_TIMEOUT)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            try:
                while True:
                    try:
                        s.connect(self.path)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise socket.timeout from None
                        time.sleep(0.01)
            except FileNotFoundError:
                raise DaemonNotRunning(self.path, "no socket") from None
            except ConnectionRefusedError:
                raise DaemonNotRunning(self.path, "connection refused") from None
            except PermissionError:
                raise DaemonError(13, f"daemon access denied on {self.path}: run as root") from None
            except socket.timeout:
                raise DaemonError(20, f"iscsictld at {self.path} did not accept the "
                                      f"connection within {CONNECT_TIMEOUT:g} s: it may be "
                                      "stuck (see its log)") from None
            except OSError as exc:  # not a socket, a path too long for AF_UNIX, ...
                raise DaemonNotRunning(self.path, exc.strerror or str(exc)) from None
            try:
                uid: int | None = peer_credentials(s)[1]
            except OSError:
                uid = None
            if uid not in (0, os.geteuid()):  # requests carry CHAP secrets: only root's
                raise DaemonError(13, f"{self.path} is served by uid {uid}, not root: "  # (or
                                      "not iscsictld; nothing was sent")  # our own) daemon
        except BaseException:
            s.close()
            raise
        return s

    def call(self, op: str, progress: Callable[[dict[str, Any]], None] | None = None,
             **args: Any) -> Any:
        """Send one request; the result, or raise :class:`DaemonError`.

        With ``progress``, the daemon streams ``{"progress": {...}}`` lines
        before the answer (bulk logins and logouts) and each is passed to it; with
        :data:`DAEMON_LINES` set, its log lines for the request go there.
        """
        if progress is not None:
            args["progress"] = True
        request: dict[str, Any] = {"version": IPC_VERSION, "op": op, "args": args}
        lines = DAEMON_LINES.get()
        if lines is not None:
            request["debug"] = True
        s = self._connect()
        try:
            s.settimeout(self.timeout)
            _io(s.sendall, encode_message(request))
            buf = bytearray()
            reply = None
            while reply is None:
                chunk = _io(s.recv, 1 << 16)
                if not chunk:
                    raise DaemonError(18, "iscsictld closed the connection without an answer")
                buf += chunk
                if len(buf) > MAX_MESSAGE:
                    raise DaemonError(18, "iscsictld's answer is too large")
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf = bytearray(rest)
                    try:
                        msg = decode_message(line, SERVED_VERSIONS)
                    except ValueError as exc:
                        raise DaemonError(18, f"could not read iscsictld's answer: {exc}") from None
                    if msg["version"] != IPC_VERSION:
                        raise DaemonError(18, f"iscsictld speaks IPC v{msg['version']}, this "
                                              f"iscsictl v{IPC_VERSION}: restart iscsictld "
                                              "(it was started before an upgrade)")
                    if "progress" in msg:
                        if progress is not None:
                            progress(msg["progress"])
                        continue
                    if msg.get("alive") is True:
                        continue
                    if "log" in msg:
                        if lines is not None and isinstance(msg["log"], str):
                            lines(msg["log"])
                        continue
                    reply = msg
                    break
        except socket.timeout:
            raise DaemonError(33, f"iscsictld sent nothing for {self.timeout:g} s, not even a "
                                  "keep-alive: it may be stuck (see its log); what the request "
                                  "did is unknown ('iscsictl -m session' shows the sessions)") \
                from None
        finally:
            s.close()
        if reply.get("ok") is True:
            result = reply.get("result")
            try:
                RESULT_CHECKS.get(op, lambda r: None)(result)
            except (TypeError, ValueError) as exc:
                raise DaemonError(18, f"could not read iscsictld's answer to {op}: {exc}") \
                    from None
            return result
        err = reply.get("error")
        code = err.get("code", 1) if isinstance(err, dict) else None
        if not _error_code(code):
            raise DaemonError(18, f"could not read iscsictld's answer: error {err!r:.200}")
        raise DaemonError(code, str(err.get("message", "unknown error")), err.get("detail"))


_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of the connected Unix socket
    ``sock`` (SO_PEERCRED: a client's when it connected, a listener's when it listened).
    Raises OSError."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    return pid, uid, gid
