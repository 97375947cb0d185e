"""The daemon's side of the CLI socket on the event loop, without asyncio streams.

``asyncio.start_unix_server`` takes several turns of the loop and a task, a transport, a
protocol, a reader and a writer per connection before its handler sees the first byte;
the CLI's request is a single line that is usually there when the connection is accepted.
Here the loop's reader callback on the listening socket accepts, and the handler reads the
socket directly (the loop waits for it only when the line is not there yet): a request
answered 3.1 -> 1.0 ms in the VM, in every command that asks the daemon.

The wire format is :mod:`iscsictl.ipc`'s (one JSON line each way, progress, keep-alive
and debug lines before the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

from iscsictl.lexical import one_line

log = logging.getLogger("iscsictld")

#: accept(2) errors that mean "no resources now": the listener is left alone this long
#: (asyncio's own servers do the same) instead of being retried at every turn of the loop
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_RETRY_DELAY = 1.0  # s
ACCEPTS_PER_TURN = 64  # connections taken in one callback, then the loop runs the others
#: s a client has to send its whole request line (the CLI sends it at once on connecting):
#: a client that stalls must not hold a descriptor of the daemon's for ever
REQUEST_TIMEOUT = 10.0

Handler = Callable[[socket.socket], Awaitable[None]]


class IpcListener:
    """Accept connections on the bound, listening ``sock`` and run ``handler(conn)`` in a
    task for each (a non-blocking socket the handler owns and closes).  The tasks are
    kept in ``tasks`` until they end; :meth:`close` stops accepting (tasks under way go on,
    as asyncio's servers leave theirs)."""

    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                log.warning("IPC socket: cannot accept a connection (%s); retrying in %g s",
                            exc.strerror, ACCEPT_RETRY_DELAY)
                self._loop.remove_reader(self.sock.fileno())
                self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self.handler(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        else:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def read_line(conn: socket.socket, limit: int) -> bytes:
    """The first line from ``conn`` (with its newline), read as it is there; what came
    before the end of the stream when it ends first (as ``StreamReader.readline``: the
    request is then answered as a bad one).  Raises ValueError beyond ``limit`` bytes."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while True:
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            chunk = await loop.sock_recv(conn, 65536)
        if not chunk:
            return bytes(buf)
        end = chunk.find(b"\n")
        if end >= 0:
            buf += chunk[:end + 1]
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"a request of more than {limit} bytes")


class RequestStalled(Exception):
    """A client sent no whole request line within :data:`REQUEST_TIMEOUT`."""


async def read_request(conn: socket.socket, limit: int, timeout: float | None = None) -> bytes:
    """:func:`read_line` within ``timeout`` s (default :data:`REQUEST_TIMEOUT`);
    RequestStalled after it (the caller closes the connection: a stalled client must not
    hold one of the daemon's descriptors)."""
    if timeout is None:
        timeout = REQUEST_TIMEOUT
    try:
        async with asyncio.timeout(timeout):
            return await read_line(conn, limit)
    except TimeoutError:
        raise RequestStalled(f"no whole request within {timeout:g} s") from None


class Replies:
    """Lines to the client in order: each is sent at once when the socket takes it (the
    usual case), else queued and sent by a task; :meth:`drain` waits until all are out.
    ``write`` never blocks and never raises: a send error is raised by :meth:`drain`."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._queue: list[bytes] = []
        self._sender: asyncio.Task[None] | None = None
        self._error: OSError | None = None

    def write(self, data: bytes) -> None:
        if self._error is not None:
            return
        if not self._queue:
            try:
                sent = self._conn.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._error = exc
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._queue.append(data)
        if self._sender is None:
            self._sender = self._loop.create_task(self._send_queued())

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                await self._loop.sock_sendall(self._conn, self._queue[0])
                self._queue.pop(0)
        except OSError as exc:
            self._error = exc
            self._queue.clear()
        finally:
            self._sender = None

    async def drain(self) -> None:
        if self._sender is not None:
            await self._sender
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """Stop sending (what is still queued is dropped) and wait for the sender to end:
        the socket is then no longer watched by the loop, and may be closed."""
        sender, self._sender = self._sender, None
        self._queue.clear()
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


class KeepAlive:
    """``line`` written to ``out`` every ``interval`` s (a loop timer, no task) until
    :meth:`cancel`: the IPC v3 keep-alive that tells a client waiting on a long request that
    the loop still runs.  Written by the loop itself, so a stuck loop sends none."""

    def __init__(self, out: Replies, line: bytes, interval: float) -> None:
        self._out, self._line, self._interval = out, line, interval
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval, self._beat)

    def _beat(self) -> None:
        self._out.write(self._line)
        self._timer = self._loop.call_later(self._interval, self._beat)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: the loggers a traced request's lines come from: iscsictl's library (the login and text
#: PDUs, iscsictl.pdu) and the daemon's own
TRACED_LOGGERS = ("iscsictl", "iscsictld")
#: where the log records of the request the current task serves go as well, when its client
#: asked for them (IPC ``"debug": true``); tasks the request starts inherit it
_REQUEST_LINES: ContextVar[Callable[[str], None] | None] = ContextVar("iscsictld_request_lines",
                                                                     default=None)


def rendered(record: logging.LogRecord) -> str:
    """``record``'s message as iscsictld writes it: one line, its control characters
    escaped (:func:`~iscsictl.lexical.one_line`: a newline in a target name a client or
    a target sent would forge a log line), unless its maker escaped each of its lines
    (``extra=``:data:`iscsictl.protocol.trace.ESCAPED`: a PDU and its text keys)."""
    text = record.getMessage()
    return text if getattr(record, "escaped", False) else one_line(text)


class RequestLines(logging.Handler):
    """Each record made while serving a request that asked for its debug lines, to that
    request's client (its message, :func:`rendered`).  Records made elsewhere (another
    request, a kernel event, a thread) are not its client's."""

    def emit(self, record: logging.LogRecord) -> None:
        write = _REQUEST_LINES.get()
        if write is not None:
            try:
                write(rendered(record))
            except Exception:  # noqa: BLE001 - a record that cannot be rendered
                self.handleError(record)


_HANDLER = RequestLines(logging.DEBUG)
_traced = 0  # requests traced now
_saved_levels: dict[str, int] = {}


@contextlib.contextmanager
def request_lines(write: Callable[[str], None]) -> Iterator[None]:
    """Within: the log records of this task and of the tasks it starts, from
    :data:`TRACED_LOGGERS` at DEBUG and above, are passed to ``write`` (iscsiadm's ``-d``
    answered with iscsictld's own steps: the CLI prints them).  While any request is traced
    those loggers make DEBUG records (the handlers that print the daemon's log keep their
    own level); after, they are as before, and a task the request left running (a session's
    recovery) writes nothing more."""
    global _traced
    live = True

    def lines(text: str) -> None:
        if live:
            write(text)

    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    if _traced == 0:
        for name in TRACED_LOGGERS:
            _saved_levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.DEBUG)
    _traced += 1
    token = _REQUEST_LINES.set(lines)
    try:
        yield
    finally:
        live = False
        _REQUEST_LINES.reset(token)
        _traced -= 1
        if _traced == 0:
            for name, level in _saved_levels.items():
                logging.getLogger(name).setLevel(level)
