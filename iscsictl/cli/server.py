"""The command server: ``iscsictl`` commands without a Python start each.

iscsictld runs it (``python -m iscsictl.cli.server --socket PATH --watch-stdin``).  It
imports the CLI once and forks workers ahead of need; each connection of the ``iscsictl``
client (``_fastpath/client.c``, which documents the wire format) is taken by one worker,
which takes over the client's stdin/stdout/stderr, arguments, environment, working directory
and umask (and its nice value, group ids and audit login uid), and runs
:func:`iscsictl.cli.main.run` exactly as the Python front end
``iscsictl-py`` would.  The client learns the worker's pid and, when it ends, its exit code
or signal.

Workers are forked from the server's state after import (copy-on-write; :func:`gc.freeze`
keeps the collector from touching the inherited objects), ahead of need, and warm up until
their first command arrives: they run what every command runs and copy the pages they still
share with the server (:func:`copy_shared_pages`; else a first discovery takes ~1,000
copy-on-write faults, ~50 ms under QEMU TCG).  A worker runs one command at a time and may
then run the next (at most MAX_COMMANDS): a forked replacement would compete with the
running command for the CPU.  It serves again only when the command left nothing behind
(no thread, no descriptor, no unflushed output, the same standard streams and signal
dispositions; the environment, working directory, umask and descriptors 0-2 are each
command's own) and its client has closed the connection, so no signal the client forwards
can reach the next command; otherwise it exits and the server forks another.

Only root is served (SO_PEERCRED; the socket is 0600).  A request the server cannot take
(bad magic, another protocol version, oversized, not root) is closed before anything runs,
and the client runs ``iscsictl-py`` instead.  Stopping (SIGTERM, SIGINT, or end of file on
stdin with ``--watch-stdin``: the daemon that started it is gone) closes the socket and
waits for the commands under way.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import gc
import importlib
import os
import pkgutil
import select
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Callable

from iscsictl.ipc import peer_credentials

PROTOCOL_VERSION = 1
MAGIC = b"ICLI"
#: struct request of client.c: magic, version, umask, argc, envc, body_len
REQUEST = struct.Struct("=4sIIIII")
#: struct reply of client.c: kind, value
REPLY = struct.Struct("=Ii")
REPLY_STARTED, REPLY_EXITED, REPLY_KILLED = 1, 2, 3
MAX_BODY = 1 << 20  # bytes: arguments + environment (Linux's ARG_MAX is 2 MiB for both)
#: environment variables a request may bring: each is set (and the next command's unset)
#: by a setenv(3) that scans the whole environment, so 100,000 took ~19 s, and as long
#: again for the next command the worker served, any client's; beyond it the client runs
#: iscsictl-py, a process of its own that inherits them
MAX_ENV = 4096
REQUEST_TIMEOUT = 5.0  # s a client may take to send its whole request
#: workers at once: a client beyond them waits in the listener's backlog until one is free,
#: at most SHED_AFTER s (each holds a forked interpreter; a burst of stalled clients must
#: not fork without end)
MAX_WORKERS = 64
#: s a client may wait with every one of MAX_WORKERS workers busy (hung discoveries, say)
#: before the server closes its connection unread: its client then runs ``iscsictl-py``
SHED_AFTER = 1.0
STOP_GRACE = 30.0  # s the commands under way get when the server stops
MAX_COMMANDS = 200  # commands one worker runs before it is replaced by a fresh fork
CLIENT_GONE_TIMEOUT = 2.0  # s a worker waits for its client to close before serving again
FORK_RETRY = 1.0  # s after a failed fork (EAGAIN, EMFILE ...) before the next try
#: failed forks in a row with no worker left: the server stops (clients run iscsictl-py)
MAX_FAILED_FORKS = 10

#: Modules a command may import on its way (lazily, inside functions) besides iscsictl's own
#: (encodings.idna: the socket module's first connect to a portal imports it).
PRELOAD = ("argparse", "ctypes", "hashlib", "ipaddress", "json", "secrets", "socket",
           "tempfile", "crc32c", "encodings.idna")
#: iscsictl modules no command imports
SKIP = ("iscsictl.daemon", "iscsictl.scapy_iscsi", "iscsictl.cli.server", "iscsictl.cli.__main__")


class RequestError(Exception):
    """A request the server does not take (the client then runs ``iscsictl-py``)."""


def cli_socket_path(daemon_socket: str | None = None) -> str:
    """The command server's socket: ``$ISCSICTL_CLI_SOCKET``, else ``daemon_socket`` (default
    :func:`iscsictl.ipc.socket_path`) with a final ``.sock`` replaced by ``-cli.sock`` (or
    ``-cli`` appended).  client.c derives it the same way."""
    explicit = os.environ.get("ISCSICTL_CLI_SOCKET")
    if explicit:
        return explicit
    if daemon_socket is None:
        from ..ipc import socket_path

        daemon_socket = socket_path()
    if daemon_socket.endswith(".sock"):
        return daemon_socket[:-5] + "-cli.sock"
    return daemon_socket + "-cli"


def preload() -> int:
    """Import every module a command may need; returns how many iscsictl modules are loaded."""
    import iscsictl

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # crc32c missing: the commands that need it report it themselves
            pass
    for mod in pkgutil.walk_packages(iscsictl.__path__, "iscsictl.",
                                     onerror=lambda name: None):
        if not mod.name.startswith(SKIP):
            try:
                importlib.import_module(mod.name)
            except Exception as exc:  # an optional module (e.g. the Cython build) may be absent
                _log(f"not preloaded: {mod.name}: {exc}")
    importlib.import_module("iscsictl.cli.main").build_parser()  # cached, shared by workers
    return sum(1 for name in sys.modules if name.startswith("iscsictl."))


def parse_request(header: bytes, body: bytes) -> tuple[int, str, list[str], dict[str, str]]:
    """(umask, cwd, args, env) from a request's header and body; :class:`RequestError` if
    malformed.  Strings are decoded like Python's own argv and environ (os.fsdecode)."""
    magic, version, umask, argc, envc, body_len = REQUEST.unpack(header)
    if magic != MAGIC or version != PROTOCOL_VERSION:
        raise RequestError(f"not a version {PROTOCOL_VERSION} request")
    if len(body) != body_len or not body.endswith(b"\0"):
        raise RequestError("truncated request")
    parts = body[:-1].split(b"\0")
    if len(parts) != 1 + argc + envc:
        raise RequestError(f"request has {len(parts)} strings, header says {1 + argc + envc}")
    cwd = os.fsdecode(parts[0])
    args = [os.fsdecode(p) for p in parts[1:1 + argc]]
    env = {}
    for p in parts[1 + argc:]:
        name, sep, value = p.partition(b"=")
        if sep and name:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return umask & 0o7777, cwd, args, env


def _log(message: str) -> None:
    try:
        print(f"iscsictl command server: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _recv_exact(conn: socket.socket, n: int, deadline: float,
                fds: list[int] | None = None) -> bytes:
    """``n`` bytes from ``conn`` by ``deadline`` (time.monotonic()), else RequestError."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestError(f"no whole request within {REQUEST_TIMEOUT:g} s")
        conn.settimeout(left)
        try:
            if fds is not None and not buf:
                data, got, _flags, _addr = socket.recv_fds(conn, n, 3)
                fds.extend(got)
            else:
                data = conn.recv(n - len(buf))
        except TimeoutError:
            raise RequestError(f"no whole request within {REQUEST_TIMEOUT:g} s") from None
        if not data:
            raise RequestError("the client closed the connection")
        buf += data
    return bytes(buf)


def _read_request(conn: socket.socket) -> tuple[int, str, list[str], dict[str, str], list[int]]:
    deadline = time.monotonic() + REQUEST_TIMEOUT  # for the whole request, not each read
    fds: list[int] = []
    try:
        header = _recv_exact(conn, REQUEST.size, deadline, fds)
        envc, body_len = REQUEST.unpack(header)[4:]
        if body_len > MAX_BODY:
            raise RequestError(f"request of {body_len} bytes")
        if envc > MAX_ENV:
            raise RequestError(f"request with {envc} environment variables (more than "
                               f"{MAX_ENV}): its client runs iscsictl-py")
        if len(fds) != 3:
            raise RequestError(f"request with {len(fds)} file descriptors, not 3")
        umask, cwd, args, env = parse_request(header, _recv_exact(conn, body_len, deadline))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return umask, cwd, args, env, fds


def _warm_up(wake: selectors.BaseSelector) -> None:
    """Touch, in an idle worker, what every command touches (argument parsing, the
    environment, output, the record parser), so that the copy-on-write faults of a fresh
    fork are taken before a command arrives; stops as soon as ``wake`` has an event."""
    from ..db import schema
    from ..db.record import Record, format_record, parse_record
    from . import main as cli_main
    from .output import Output

    env = dict(os.environ)
    with open(os.devnull, "w") as null:
        steps = (
            lambda: cli_main.build_parser().parse_args(
                ["-m", "node", "-T", "iqn.2001-04.com.example:warm", "-p", "192.0.2.1", "-l"]),
            lambda: (os.environ.clear(), os.environ.update(env)),
            lambda: cli_main.run(["--version"], Output(out=null, err=null)),
            lambda: parse_record(schema.NODE, format_record(
                Record(schema.NODE, {"node.name": "iqn.2001-04.com.example:warm",
                                     "node.conn[0].address": "192.0.2.1"}), for_file=True)),
        )
        for step in (*steps, lambda: copy_shared_pages(lambda: bool(wake.select(0)))):
            if wake.select(0):
                return
            try:
                step()
            except Exception:  # noqa: BLE001: warming is best effort
                pass


#: madvise(2) advice (<asm-generic/mman-common.h>, Linux 5.14): write-fault the range in
MADV_POPULATE_WRITE = 23
#: The top byte of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst):
#: bit 63 "page present", bit 56 "page exclusively mapped"
_PRESENT, _EXCLUSIVE = 0x80, 0x01
#: top byte -> b"s" for a present page not exclusively mapped (still shared with the
#: server after the fork), b"-" for any other
_SHARED = bytes(b"s"[0] if b & (_PRESENT | _EXCLUSIVE) == _PRESENT else b"-"[0]
                for b in range(256))
#: pages copied by one madvise() between two looks at stop() (1 MiB: ~0.8 ms on this host)
_CHUNK = 256


def copy_shared_pages(stop: Callable[[], bool] = lambda: False) -> int:
    """Copy, ahead of a command, the pages a fresh fork still shares with the server in its
    private writable mappings (the Python heap, the interpreter's data): a command writes to
    most of them (reference counts), and each first write is a copy-on-write fault (~1,000
    in a first discovery, ~50 ms under QEMU TCG).  The present, not exclusively mapped
    pages of each ``rw-p`` mapping (``/proc/self/pagemap``) are write-faulted by
    ``madvise(MADV_POPULATE_WRITE)``, run by run; pages never touched stay unallocated, so
    the worker's memory grows only by what it shared (~12 MiB).  Stops as soon as
    ``stop()`` is true (a client arrived; asked before each 1 MiB).  Returns the pages
    copied: 0 where the kernel lacks the advice (before 5.14) or pagemap cannot be read."""
    import ctypes
    import re

    from ..libc import function

    madvise = function("madvise")
    if madvise is None:
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read().splitlines()
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    copied = 0
    try:
        for line in maps:
            fields = line.split(None, 2)
            if len(fields) < 2 or fields[1] != b"rw-p":
                continue
            start, end = (int(x, 16) for x in fields[0].split(b"-"))
            try:
                entries = os.pread(fd, (end - start) // page * 8, start // page * 8)
            except OSError:
                continue
            for run in re.finditer(b"s+", entries[7::8].translate(_SHARED)):
                for first in range(run.start(), run.end(), _CHUNK):
                    if stop():
                        return copied
                    n = min(_CHUNK, run.end() - first)
                    if madvise(start + first * page, n * page, MADV_POPULATE_WRITE) == 0:
                        copied += n
                    elif ctypes.get_errno() == errno.EINVAL:
                        return copied  # a kernel without the advice
    finally:
        os.close(fd)
    return copied


def _accept_one(listener: socket.socket, ctl: socket.socket,
                warm_up: bool = True) -> socket.socket | None:
    """Warm up (a fresh worker), then wait for a client (None: the server closed ``ctl``:
    stop)."""
    wake = selectors.DefaultSelector()
    wake.register(listener, selectors.EVENT_READ, "client")
    wake.register(ctl, selectors.EVENT_READ, "ctl")
    try:
        if warm_up:
            _warm_up(wake)
        while True:
            for key, _ in wake.select():
                if key.data == "ctl":
                    return None  # end of file: the server stops or retires this worker
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another worker took it
                conn.setblocking(True)
                return conn
    finally:
        wake.close()


#: The signals a worker gives their usual dispositions (a command may be stopped by any).
WORKER_SIGNALS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGHUP: signal.SIG_DFL,
                  signal.SIGQUIT: signal.SIG_DFL, signal.SIGUSR1: signal.SIG_DFL,
                  signal.SIGUSR2: signal.SIG_DFL,
                  signal.SIGINT: signal.default_int_handler,  # KeyboardInterrupt, as usual
                  signal.SIGIO: signal.SIG_IGN}  # a command's client gone: _watching_client


class ClientGone(BaseException):
    """The client of the running command ended (SIGKILL, the OOM killer): the command
    stops, as iscsiadm's own process would have (not an Exception: nothing of the
    command's catches it)."""


def _state() -> tuple:
    """What a command must leave as it found it for its worker to serve again: the open
    descriptors, the number of threads, the standard streams."""
    import threading

    return (frozenset(os.listdir("/proc/self/fd")), threading.active_count(),
            (sys.stdin, sys.stdout, sys.stderr))


def _as_found(before: tuple) -> bool:
    """Whether the process is as :func:`_state` found it ``before`` a command, and its
    signal dispositions the worker's (else the worker is not used again)."""
    return (_state() == before
            and all(signal.getsignal(s) == h for s, h in WORKER_SIGNALS.items()))


def _client_gone(conn: socket.socket) -> bool:
    """Wait (at most CLIENT_GONE_TIMEOUT s) until the client has closed its end of ``conn``:
    from then on it can forward no signal to this process, so the next command cannot get
    one meant for the last.  False on a timeout, data, an error or a forwarded SIGINT."""
    try:
        conn.settimeout(CLIENT_GONE_TIMEOUT)
        return conn.recv(1) == b""
    except (OSError, KeyboardInterrupt):
        return False


def _worker(listener: socket.socket, ctl: socket.socket) -> None:
    """A forked worker: take a client from ``listener``, hand the connection to the server
    over ``ctl`` (so it can report a death by signal), run the command, report its exit
    code; then, if the command left the process as it found it and the client is gone, say
    so over ``ctl`` ("i") and take the next client (at most MAX_COMMANDS), else exit with
    the command's code.  Never returns."""
    code = 1
    try:
        for sig, disposition in WORKER_SIGNALS.items():
            signal.signal(sig, disposition)
        log = os.dup(2)  # the server's stderr (its log), for after each command
        before = _state()
        own, privileges = _context("self"), _privileges("self")
        for served in range(MAX_COMMANDS):
            code = 1
            conn = _accept_one(listener, ctl, warm_up=not served)
            if conn is None:
                os._exit(0)
            socket.send_fds(ctl, [b"a"], [conn.fileno()])
            code, reusable = _serve(conn, own, privileges, (ctl, listener))
            os.dup2(log, 2)  # the client's let go of: what it says next goes to the log
            if not (reusable and served + 1 < MAX_COMMANDS and _client_gone(conn)) or \
                    listener.fileno() == -1:  # (let go of: the server stops or died)
                os._exit(code & 0xFF)
            conn.close()
            if not _as_found(before):
                os._exit(code & 0xFF)
            ctl.send(b"i")
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # noqa: BLE001: a worker must end by os._exit
        try:
            sys.stderr.write(f"iscsictl: unexpected error: {type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(code & 0xFF)


#: what a client must share with the server for its command to run here: its network
#: namespace (the connections a discovery makes), its mount namespace and its root (the
#: files it reads and writes), its user namespace (root in one of its own, a service's
#: ``PrivateUsers=``, is root on the host by uid but has no capability here): a client in
#: another (``ip netns exec``, a chroot, ``unshare -U``) runs iscsictl-py in its own, as
#: iscsiadm runs in the caller's
_CONTEXT = ("ns/net", "ns/mnt", "root", "ns/user")


def _context(pid: int | str) -> tuple[tuple[int, int], ...] | None:
    """The (device, inode) of ``pid``'s :data:`_CONTEXT` (None: not readable)."""
    try:
        return tuple((st.st_dev, st.st_ino) for st in (os.stat(f"/proc/{pid}/{what}")
                                                        for what in _CONTEXT))
    except OSError:
        return None


#: ``/proc/PID/status`` fields of a process's privileges: capability sets (hex masks) the
#: client must hold all of the server's in, then the no_new_privs flag and seccomp mode
_CAPS, _LIMITS = ("CapPrm", "CapEff", "CapBnd"), ("NoNewPrivs", "Seccomp")
#: LSM labels of callers confined by no policy: SELinux's unconfined types (an admin's
#: shell, sudo: unconfined_t; a service started from /usr/local or /opt, as iscsictld:
#: unconfined_service_t) and AppArmor's unconfined.  Such a caller is served whatever the
#: server's own label (an exact match alone served no root shell on an SELinux host)
_UNCONFINED = frozenset((b"unconfined_t", b"unconfined_service_t", b"unconfined"))


def _unconfined(label: bytes) -> bool:
    """Whether an LSM label (``/proc/PID/attr/current``) is :data:`_UNCONFINED`'s: no
    label; SELinux ``user:role:TYPE:level``; AppArmor ``unconfined`` or ``profile (mode)``."""
    if not label:
        return True
    fields = label.split(b":")
    return (fields[2] if len(fields) >= 3 else label.split(b" ")[0]) in _UNCONFINED


def _status(pid: int | str) -> dict[str, bytes]:
    """``/proc/PID/status``'s fields, by name ({} when not readable)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                name, _, value = line.partition(b":")
                fields[name.decode("ascii", "replace")] = value.strip()
    except OSError:
        return {}
    return fields


def _privileges(pid: int | str, fields: dict[str, bytes] | None = None
                ) -> tuple[tuple[int, ...], tuple[int, ...], bytes] | None:
    """``pid``'s capability sets (:data:`_CAPS`), its :data:`_LIMITS` and its LSM label
    (``/proc/PID/attr/current``: b"" when none); None when not readable.  ``fields``: its
    :func:`_status`, when read already."""
    fields = _status(pid) if fields is None else fields
    try:
        caps = tuple(int(fields[k], 16) for k in _CAPS)
        limits = tuple(int(fields.get(k, b"0")) for k in _LIMITS)
    except (KeyError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as f:
            label = f.read().rstrip(b"\0\n")
    except OSError:
        label = b""
    return caps, limits, label


def _as_privileged(client: tuple | None, own: tuple | None) -> bool:
    """Whether a client with :func:`_privileges` ``client`` may have its command run with
    this process's ``own``: it holds every capability this process has (permitted,
    effective, bounding), has no no_new_privs this process has not, no seccomp mode at
    all (a filter's rules cannot be compared), and its LSM label is this process's or
    :func:`_unconfined`.  A root shell with its capabilities dropped (a hardened unit's,
    ``setpriv``, ``capsh``) runs iscsictl-py as itself, as iscsiadm would run: here its
    command had the server's capabilities (a DB it could not write was written,
    CAP_SYS_ADMIN netlink requests made).  Not compared: Landlock domains and cgroup
    limits (``IPAddressDeny=``, ``DeviceAllow=``), which /proc does not show."""
    if client is None or own is None:
        return False
    (caps, (nnp, seccomp), label), (own_caps, (own_nnp, _), own_label) = client, own
    return (all(c & o == o for c, o in zip(caps, own_caps)) and nnp <= own_nnp
            and seccomp == 0 and (label == own_label or _unconfined(label)))


#: ``/proc/PID/loginuid`` of a process no login has marked (the kernel's AUDIT_UID_UNSET)
_LOGINUID_UNSET = b"4294967295"


def _loginuid(pid: int | str) -> bytes | None:
    """``pid``'s audit login uid (None: the kernel keeps none, or not readable)."""
    try:
        with open(f"/proc/{pid}/loginuid", "rb") as f:
            return f.read().strip()
    except OSError:
        return None


def _caller(pid: int, fields: dict[str, bytes]) -> tuple | None:
    """What a command takes on of its caller (``pid``, its :func:`_status` ``fields``), to
    run as the process it would have been: its nice value, its group ids and groups (the
    files it makes are theirs) and its audit login uid (an administrator's, which the audit
    log then names).  None when they cannot be read."""
    try:
        gids = tuple(int(g) for g in fields["Gid"].split()[:3])
        groups = tuple(int(g) for g in fields.get("Groups", b"").split())
        return os.getpriority(os.PRIO_PROCESS, pid), gids, groups, _loginuid(pid)
    except (KeyError, ValueError, OSError):
        return None


def _set_loginuid(value: bytes) -> bool:
    try:
        with open("/proc/self/loginuid", "wb") as f:
            f.write(value)
        return True
    except OSError:
        return False


def _take_on(caller: tuple) -> Callable[[], bool] | None:
    """Become :func:`_caller`'s ``caller``; returns what undoes it, which says whether this
    worker is as it was (its login uid given back, which the kernel refuses where login
    uids are immutable: then it serves no other).  None, nothing changed, when its login
    uid cannot be taken (this process has another, or no CAP_AUDIT_CONTROL): the client
    then runs iscsictl-py as itself."""
    nice, gids, groups, loginuid = caller
    own_loginuid = _loginuid("self")
    if loginuid != own_loginuid:
        if own_loginuid != _LOGINUID_UNSET or loginuid is None or \
                not _set_loginuid(loginuid):
            return None
    own_nice, own_gids, own_groups = (os.getpriority(os.PRIO_PROCESS, 0), os.getresgid(),
                                      tuple(os.getgroups()))
    if nice != own_nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if (gids, groups) != (own_gids, own_groups):
        os.setgroups(groups)
        os.setresgid(*gids)

    def undo() -> bool:
        try:
            if (gids, groups) != (own_gids, own_groups):
                os.setresgid(*own_gids)
                os.setgroups(own_groups)
            if nice != own_nice:
                os.setpriority(os.PRIO_PROCESS, 0, own_nice)
        except OSError:  # (no CAP_SYS_NICE to go back up): this worker serves no other
            return False
        return loginuid == own_loginuid or (own_loginuid is not None and
                                            _set_loginuid(own_loginuid))
    return undo


def _serve(conn: socket.socket, own: tuple | None = None,
           privileges: tuple | None = None,
           server: tuple[socket.socket, socket.socket] | None = None) -> tuple[int, bool]:
    """Run the client's command in this process as its own: its descriptors 0-2, working
    directory, umask, environment and arguments.  (exit code, whether the worker may serve
    again); exits at once (1: the client runs iscsictl-py) for a request it does not take:
    another user's, one from another :data:`_CONTEXT` than ``own`` (this process's), or
    one whose process is not :func:`_as_privileged` as ``privileges`` (this process's).
    The command runs as its caller's process would: its nice value, groups and audit login
    uid (:func:`_take_on`).  ``server``: this worker's (ctl, listener), the listener let go
    of while the command runs should the server stop or die (:func:`_watching_client`)."""
    pid, uid, _ = peer_credentials(conn)
    fields = _status(pid)
    caller = _caller(pid, fields)
    if uid != 0 or own is None or _context(pid) != own or caller is None or \
            not _as_privileged(_privileges(pid, fields), privileges):
        os._exit(1)  # the client runs iscsictl-py, as that user, where it is
    undo = _take_on(caller)
    if undo is None:
        os._exit(1)  # (as above)
    try:
        umask, cwd, args, env, fds = _read_request(conn)
        os.chdir(cwd)
    except (RequestError, OSError) as exc:
        _log(f"request refused: {exc}")
        os._exit(1)  # nothing ran: the client runs iscsictl-py instead
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.umask(umask)
    _set_environ(env)
    sys.argv = ["iscsictl", *args]
    try:
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
    except (AttributeError, OSError, ValueError):
        pass
    if _hung_up(conn):  # interrupted while it waited for a worker: nothing is run
        os._exit(1)
    conn.sendall(REPLY.pack(REPLY_STARTED, os.getpid()))
    from ..lexical import forget_lookups
    from .main import run, terminating

    forget_lookups()  # a name is looked up anew by each command

    try:
        with _watching_client(conn, server), terminating():  # a forwarded SIGTERM or SIGHUP
            code, reusable = run(args), True  # unwinds the command, then ends this worker
    except KeyboardInterrupt:
        code, reusable = 130, False
    except ClientGone:
        code, reusable = 128 + signal.SIGKILL, False
    return code, _finish(code, conn) and undo() and reusable


@contextlib.contextmanager
def _watching_client(conn: socket.socket,
                     server: tuple[socket.socket, socket.socket] | None = None):
    """While the command runs, its client's end is watched (O_ASYNC: SIGIO when the
    connection changes): should the client end before its command (killed: it only
    reads), ClientGone is raised in the command.  With ``server`` (the worker's ctl and
    its copy of the listener), the server's end too: when it stops (it shuts ``ctl``
    down) or dies, the listener is let go of, so that no client waits in its backlog for
    this command's end (a connection no one accepts holds the client's stdio too)."""
    watched = [conn] if server is None else [conn, server[0]]

    def gone(signum, frame) -> None:
        if server is not None and server[1].fileno() != -1 and _hung_up(server[0]):
            server[1].close()
        if _hung_up(conn):
            raise ClientGone()
    flags = [fcntl.fcntl(s, fcntl.F_GETFL) for s in watched]
    for s in watched:
        fcntl.fcntl(s, fcntl.F_SETOWN, os.getpid())
    signal.signal(signal.SIGIO, gone)
    for s, f in zip(watched, flags):
        fcntl.fcntl(s, fcntl.F_SETFL, f | os.O_ASYNC)
    try:
        gone(signal.SIGIO, None)  # gone already, before SIGIO was asked for
        yield
    finally:
        for s, f in zip(watched, flags):
            fcntl.fcntl(s, fcntl.F_SETFL, f)
        signal.signal(signal.SIGIO, signal.SIG_IGN)


def _hung_up(conn: socket.socket) -> bool:
    """Whether the client has closed its end (it gave up waiting, or was killed)."""
    p = select.poll()
    p.register(conn, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR)
               for _, ev in p.poll(0))


def _set_environ(env: dict[str, str]) -> None:
    """Make ``os.environ`` (and the C environment) ``env``, changing only what differs:
    commands from one shell share theirs (~30 putenv calls less each, 2 ms under TCG)."""
    current = os.environ
    for name in [name for name in current if name not in env]:
        del current[name]
    for name, value in env.items():
        if current.get(name) != value:
            current[name] = value


def _finish(code: int, conn: socket.socket) -> bool:
    """Flush, let go of the client's stdio (descriptors 0-2 become /dev/null) and report
    the exit code: the client (and a pipe reader after it) need not wait for this process's
    teardown or next command.  False when output could not be flushed: it may still be
    buffered, and must not reach the next command's client."""
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:  # the command's directory is not held while the worker waits (its filesystem
        os.chdir("/")  # may be unmounted, at shutdown too)
    except OSError:
        flushed = False
    try:
        conn.sendall(REPLY.pack(REPLY_EXITED, code & 0xFF))
    except OSError:
        pass
    return flushed


class _Worker:
    __slots__ = ("pid", "ctl", "conn", "client", "served", "retired")

    def __init__(self, pid: int, ctl: socket.socket) -> None:
        self.pid = pid
        ctl.setblocking(False)  # the server reads what is there (socket.recv_fds ignores flags)
        self.ctl: socket.socket | None = ctl  # None once closed (retired, or it ended)
        self.conn: socket.socket | None = None  # the client's connection while it runs one
        self.client: int | None = None  # a pidfd of that client, while it runs one
        self.served = 0  # commands it finished and came back from
        self.retired = False  # the server told it to exit (its ctl closed)

    @property
    def idle(self) -> bool:
        return self.ctl is not None and self.conn is None


class CommandServer:
    """Accepts commands on ``path`` (0600); each runs in a forked worker.

    ``idle`` workers are forked ahead; each warms up, then waits in accept() on the shared
    socket, so a command meets neither a fork nor the server's own loop.  A worker that takes
    a client passes the connection to the server (which reports a death by signal).  A
    worker that comes back from a command serves the next one (a fresh fork first copies the
    ~12 MiB it shares with the server while it warms up).  Only a client waiting while no
    worker is idle makes the server fork another; beyond ``idle`` idle workers, the least
    used is retired.  ``watch_fd``: a descriptor whose end of file stops the server (the
    daemon's pipe)."""

    MAX_EARLY_DEATHS = 3  # idle workers dying in a row: something is broken, stop serving

    def __init__(self, path: str, watch_fd: int | None = None, idle: int = 2,
                 max_workers: int = MAX_WORKERS) -> None:
        self.path = path
        self.watch_fd = watch_fd
        self.idle = idle
        self.max_workers = max(1, max_workers)
        self.sel = selectors.DefaultSelector()
        self.workers: dict[int, _Worker] = {}  # by pidfd
        self.stopping = False
        self.listener: socket.socket | None = None
        self._bound: tuple[int, int] | None = None  # (st_dev, st_ino) of the bound socket
        self._early_deaths = 0
        self._watching: str | None = None  # the listener is in self.sel ("demand"/"full")
        #: a fork failed (EMFILE, EAGAIN ...): the next try, at the latest (a worker's end
        #: tries at once)
        self._retry_at: float | None = None
        self._failed_forks = 0  # in a row
        #: a client waits with max_workers busy: when its connection is closed unread
        self._shed_at: float | None = None
        self._wake_r, self._wake_w = socket.socketpair()

    def bind(self) -> None:
        """Create the socket (replacing a stale one); OSError if the path is unusable."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        s.listen(128)
        s.setblocking(False)  # the workers poll it, and one of them wins each client
        self.listener = s
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)

    def _stop(self, *_args) -> None:
        self.stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def serve(self) -> None:
        """Serve until stopped, then wait (at most STOP_GRACE s) for the commands under way."""
        assert self.listener is not None
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self.watch_fd is not None:
            self.sel.register(self.watch_fd, selectors.EVENT_READ, "watch")
        gc.freeze()  # the workers inherit the imported modules: keep their pages shared
        self._top_up(self.idle)
        deadline = None
        while True:
            if self.stopping and self.listener is not None:
                self._close_listener()
                deadline = time.monotonic() + STOP_GRACE
            if self.stopping and not self.workers:
                break
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if deadline is not None and timeout == 0.0:
                _log(f"stopping with {len(self.workers)} commands still running")
                break
            for due in (self._retry_at, self._shed_at):
                if due is not None:
                    wait = max(0.0, due - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
            for key, _ in self.sel.select(timeout):
                what = key.data
                if what == "wake":
                    try:
                        self._wake_r.recv(64)
                    except BlockingIOError:
                        pass
                elif what == "watch":
                    if not os.read(self.watch_fd, 4096):
                        self.sel.unregister(self.watch_fd)
                        self.stopping = True
                elif what == "demand":  # a client waits and no worker is idle
                    self._top_up(1)
                elif what == "full":  # ... and none can be forked: shed after SHED_AFTER
                    self._shed_at = time.monotonic() + SHED_AFTER
                elif what[0] == "ctl":
                    self._messages(what[1])
                elif what[0] == "client":
                    self._client_ended(what[1], what[2])
                else:
                    self._reap(what[1])
            if self._retry_at is not None and time.monotonic() >= self._retry_at:
                self._retry_at = None
                self._top_up(max(self.idle, 1))  # a client may be waiting in the backlog
            if self._shed_at is not None and time.monotonic() >= self._shed_at:
                self._shed_at = None
                self._shed()
            self._watch_listener()

    def _close_listener(self) -> None:
        """No new clients (they run iscsictl-py); idle workers are told to exit (busy ones
        when they come back), and busy ones to let go of their copies of the listener
        (their ``ctl`` shut down for writing: :func:`_watching_client`), so that clients
        queued there are refused at once, not kept until those commands end."""
        self._watch_listener(False)
        self.listener.close()
        self.listener = None
        try:  # ours only: a new iscsictld's server may already serve there (the lock is
            st = os.stat(self.path)  # released before this server's commands end)
            if (st.st_dev, st.st_ino) == self._bound:
                os.unlink(self.path)
        except OSError:
            pass
        for w in self.workers.values():
            if w.idle:
                self._retire(w)
            elif w.ctl is not None:
                try:
                    w.ctl.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _idle_count(self) -> int:
        return sum(w.idle for w in self.workers.values())

    def _top_up(self, wanted: int) -> None:
        """Fork workers until ``wanted`` are idle, at most ``max_workers`` in all.  A fork
        that fails is tried again when a worker ends or :data:`FORK_RETRY` s later; after
        :data:`MAX_FAILED_FORKS` in a row with no worker at all, the server stops."""
        while not self.stopping and self._idle_count() < wanted and \
                len(self.workers) < self.max_workers and self._retry_at is None:
            try:
                self._fork_worker()
            except OSError as exc:  # counted while no worker runs: one could take a client
                self._failed_forks = 0 if self.workers else self._failed_forks + 1
                self._retry_at = time.monotonic() + FORK_RETRY
                if not self.workers and self._failed_forks >= MAX_FAILED_FORKS:
                    _log(f"cannot start a worker ({exc.strerror}), {self._failed_forks} times "
                         "with none running: stopping (commands run as iscsictl-py)")
                    self.stopping = True
                else:
                    _log(f"cannot start a worker ({exc.strerror}): clients wait, tried again "
                         f"in {FORK_RETRY:g} s or when a worker ends")
            else:
                self._failed_forks = 0

    def _watch_listener(self, want: bool | None = None) -> None:
        """Watch the listener (for a client no worker is there to take) while none is idle:
        for a worker to fork ("demand"), or, all ``max_workers`` busy, for the client to shed
        ("full"); not while a fork or a shed is due (a client no worker could take would
        wake the loop for ever)."""
        mode = None
        if want is not False and self.listener is not None and not self.stopping \
                and not self._idle_count() and self._retry_at is None:
            if len(self.workers) < self.max_workers:
                mode = "demand"
            elif self._shed_at is None:
                mode = "full"
        if mode != self._watching:
            if self._watching:
                self.sel.unregister(self.listener)
            if mode:
                self.sel.register(self.listener, selectors.EVENT_READ, mode)
            self._watching = mode

    def _shed(self) -> None:
        """The clients waiting while every one of ``max_workers`` workers is still busy: their
        connections closed unread, so each runs ``iscsictl-py`` (client.c: no
        REPLY_STARTED, nothing has run); a worker free meanwhile takes them instead."""
        if self.listener is None or self._idle_count() or len(self.workers) < self.max_workers:
            return
        shed = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # BlockingIOError: none left (the listener is non-blocking)
                break
            conn.close()
            shed += 1
        if shed:
            _log(f"all {self.max_workers} workers busy for {SHED_AFTER:g} s: {shed} client(s) "
                 "sent to iscsictl-py")

    def _fork_worker(self) -> None:
        """One more worker; raises OSError (nothing left behind) when it cannot be made."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            try:
                self.sel.close()
                for s in (self._wake_r, self._wake_w, ours):
                    s.close()
                for pidfd, w in self.workers.items():
                    os.close(pidfd)
                    for s in (w.ctl, w.conn):
                        if s is not None:
                            s.close()
                    if w.client is not None:
                        os.close(w.client)
                if self.watch_fd is not None:  # stdin: keep 0-2 taken, or a received
                    null = os.open(os.devnull, os.O_RDONLY)  # descriptor would land there
                    os.dup2(null, self.watch_fd)
                    os.close(null)
            finally:
                _worker(self.listener, theirs)
        theirs.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # no descriptor left to watch it by: it must not run unwatched
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            ours.close()
            raise
        self.workers[pidfd] = _Worker(pid, ours)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", pidfd))
        self.sel.register(ours, selectors.EVENT_READ, ("ctl", pidfd))

    def _messages(self, pidfd: int) -> None:
        """A worker's messages: it took a client (keep the connection for its exit status),
        or it is back (retire one if too many are idle).  (Nothing when :meth:`_reap`
        already read them: a command can end before its worker's message is read, and both
        events come in the same round.)"""
        w = self.workers.get(pidfd)
        if w is None or w.ctl is None:
            return
        self._drain(w)
        if w.idle:
            if self.stopping:
                self._retire(w)
            elif self._idle_count() > self.idle:
                self._retire(min((v for v in self.workers.values() if v.idle),
                                 key=lambda v: v.served))

    def _drain(self, w: _Worker) -> None:
        """Apply what ``w`` said on ``ctl``: "a" with a descriptor (it took that client),
        "i" (it finished the command and waits for the next); end of file (it ended)
        closes ``ctl``."""
        while w.ctl is not None:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(w.ctl, 16, 1)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if msg == b"a" and len(fds) == 1 and w.conn is None:
                w.conn = socket.socket(fileno=fds[0])
                self._early_deaths = 0
                self._watch_client(w)
            elif msg == b"i" and not fds and w.conn is not None:
                self._unwatch_client(w)
                w.conn.close()
                w.conn = None
                w.served += 1
            else:  # end of file (or nonsense: treated as its end)
                for fd in fds:
                    os.close(fd)
                self._close_ctl(w)

    def _watch_client(self, w: _Worker) -> None:
        """Watch the process of ``w``'s client (a pidfd): should it end while its command
        is stopped (Ctrl-Z stops both), :meth:`_client_ended` continues the command, which
        then sees its client gone and ends.  A client gone already: the command is
        continued at once; one that cannot be watched (no descriptor left) is not."""
        assert w.conn is not None
        try:
            w.client = os.pidfd_open(peer_credentials(w.conn)[0])
        except ProcessLookupError:
            self._continue(w)
            return
        except OSError:
            return
        self.sel.register(w.client, selectors.EVENT_READ, ("client", w, w.client))

    def _unwatch_client(self, w: _Worker) -> None:
        if w.client is not None:
            self.sel.unregister(w.client)
            os.close(w.client)
            w.client = None

    def _client_ended(self, w: _Worker, pidfd: int) -> None:
        """The client whose process ``pidfd`` watches ended: if it is still ``w``'s (not an
        event left from a client ``w`` is done with), its command is continued, in case its
        client stopped it (Ctrl-Z) and was then killed: else nothing would ever continue
        it, and its locks and its client's stdio would be held for ever."""
        if w.client != pidfd or not select.select([pidfd], [], [], 0)[0]:
            return  # (its number another client's pidfd since: that one has not ended)
        self._unwatch_client(w)
        self._continue(w)

    def _continue(self, w: _Worker) -> None:
        """SIGCONT to ``w`` while it runs a command (not once reaped: its pid may be
        another process's by then)."""
        if w.conn is not None and any(v is w for v in self.workers.values()):
            try:
                os.kill(w.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _close_ctl(self, w: _Worker) -> None:
        self.sel.unregister(w.ctl)
        w.ctl.close()
        w.ctl = None

    def _retire(self, w: _Worker) -> None:
        """Tell an idle worker to exit (end of file on its ``ctl``)."""
        w.retired = True
        self._close_ctl(w)

    def _reap(self, pidfd: int) -> None:
        self.sel.unregister(pidfd)
        w = self.workers.pop(pidfd)
        self._retry_at = None  # its descriptors and memory are free again: fork at once
        os.close(pidfd)
        _, status = os.waitpid(w.pid, 0)
        if w.ctl is not None:
            self._drain(w)  # what it said before it ended
            if w.ctl is not None:
                self._close_ctl(w)
        self._unwatch_client(w)
        if w.conn is None:  # ended idle
            if not (self.stopping or w.retired):
                self._early_deaths += 1
                _log(f"idle worker {w.pid} ended (wait status {status:#x})")
                if self._early_deaths >= self.MAX_EARLY_DEATHS:
                    _log("workers keep dying: stopping (commands run iscsictl-py)")
                    self._stop()
                    return
            self._top_up(self.idle)
            return
        if os.WIFSIGNALED(status):
            reply = REPLY.pack(REPLY_KILLED, os.WTERMSIG(status))
        else:  # the worker reported it already; this covers one that could not
            reply = REPLY.pack(REPLY_EXITED, os.waitstatus_to_exitcode(status))
        try:
            w.conn.sendall(reply)  # a request refused: the client ignores it and falls back
        except OSError:
            pass
        w.conn.close()
        self._top_up(self.idle)


def _own_oom_score() -> None:
    """The OOM killer's usual regard for the users' commands: a score adjustment the
    daemon's unit gave (``OOMScoreAdjust=-1000``, set by systemd before the daemon starts
    this server) is the daemon's, not theirs; a runaway command stays killable.  Lowering
    it back needs CAP_SYS_RESOURCE, which root has: without it, it stays."""
    path = "/proc/self/oom_score_adj"
    try:
        with open(path) as f:
            if int(f.read()) == 0:
                return
        with open(path, "w") as f:
            f.write("0")
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m iscsictl.cli.server",
                                description="iscsictl's command server (iscsictld starts it)")
    p.add_argument("--socket", default=None, help="socket path (default: cli_socket_path())")
    p.add_argument("--watch-stdin", action="store_true",
                   help="stop at end of file on stdin (the starting daemon is gone)")
    p.add_argument("--max-workers", type=int, default=MAX_WORKERS, metavar="N",
                   help="commands run at once (default %(default)s; more wait up to "
                        f"{SHED_AFTER:g} s, then run as iscsictl-py)")
    p.add_argument("--nice", type=int, default=None, metavar="N",
                   help="run at nice N, without the I/O-flusher mark (iscsictld starting "
                        "it again, after it raised its own priority)")
    args = p.parse_args(argv)
    _own_oom_score()
    if args.nice is not None:
        from iscsictl.daemon.protect import unprotect
        unprotect(args.nice)
    path = args.socket or cli_socket_path()
    server = CommandServer(path, watch_fd=0 if args.watch_stdin else None,
                           max_workers=args.max_workers)
    preload()  # first: a socket that answers serves at once
    try:
        server.bind()
    except OSError as exc:
        _log(f"cannot listen on {path}: {exc.strerror}")
        return 1
    try:
        server.serve()
    finally:
        if server.listener is not None:
            server._close_listener()
    return 0


if __name__ == "__main__":
    sys.exit(main())
