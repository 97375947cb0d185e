"""``iscsictld``: run the daemon (foreground; systemd Type=notify).

It refuses to start while another iscsictld or open-iscsi's iscsid owns the
kernel's iSCSI netlink interface (both would act on every kernel event).
Stopping it (SIGTERM, SIGINT) leaves sessions running in the kernel; the next
start adopts them without logging in again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import queue
import signal
import socket
import sys
from collections.abc import Callable

from iscsictl import __version__
from iscsictl.ipc import DEFAULT_SOCKET, socket_path

from .instance import (BOOT_LOGIN_WAIT, LOCK_FILE, LockHeld, held_by_boot_login,
                       iscsid_running, take_lock, take_lock_within)
from .ipc_server import rendered
from .protect import lock_code, protect_daemon
from .service import Daemon


#: the first descriptor systemd passes (sd-daemon.h SD_LISTEN_FDS_START)
SD_LISTEN_FDS_START = 3


def sd_listen_socket() -> socket.socket | None:
    """The listening socket systemd passed, socket activation's protocol (sd_listen_fds(3)):
    when ``LISTEN_PID`` is this process and ``LISTEN_FDS`` at least 1, the descriptor
    :data:`SD_LISTEN_FDS_START` (close-on-exec from here on); else None.  ``LISTEN_*`` are
    taken out of the environment, whichever (the command server and the logins' helpers
    must not take them for theirs).  Raises OSError when that descriptor is not a
    listening Unix stream socket."""
    pid, fds = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if pid != str(os.getpid()) or not fds.isdigit() or int(fds) < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    try:
        if (sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM
                or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            raise OSError(f"descriptor {SD_LISTEN_FDS_START} systemd passed is not a "
                          "listening Unix stream socket (ListenStream= in iscsictld.socket)")
    except OSError:
        sock.detach()  # not ours to close
        raise
    sock.set_inheritable(False)
    return sock


def sd_notify(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(message.encode(), addr)
        except OSError:
            pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iscsictld", description="The iSCSI daemon: it owns the kernel's iSCSI sessions "
        "(logins, recovery, logouts) and serves iscsictl.  Runs in the foreground "
        "(systemd Type=notify) and logs to stderr.")
    p.add_argument("--socket", default=socket_path(), metavar="PATH",
                   help=f"the IPC socket (default $ISCSICTL_SOCKET or {DEFAULT_SOCKET})")
    p.add_argument("--lock-file", default=os.environ.get("ISCSICTLD_LOCK", LOCK_FILE),
                   metavar="PATH", help="the single-instance lock, holding the daemon's pid "
                   f"(default $ISCSICTLD_LOCK or {LOCK_FILE})")
    p.add_argument("--state-dir", default="/run/iscsictl", metavar="DIR",
                   help="where the sessions' ISIDs and TSIHs are kept for adoption after a "
                   "restart (default %(default)s)")
    p.add_argument("-d", "--debug", nargs="?", type=_level, const=1, default=0,
                   metavar="LEVEL", help="log each step (a LEVEL, as iscsid's -d 8, is "
                   "taken: above 0 is all of it)")
    p.add_argument("--logout-on-exit", action="store_true",
                   help="log out of every session when stopping")
    p.add_argument("--db-root", default=None, metavar="DIR",
                   help="node DB root (default $ISCSICTL_DB_ROOT or /etc/iscsi)")
    p.add_argument("--config-root", default=None, metavar="DIR",
                   help="iscsid.conf/initiatorname.iscsi dir (default $ISCSICTL_CONFIG_ROOT "
                   "or /etc/iscsi)")
    p.add_argument("--no-autostart", action="store_true",
                   help="do not log in to node.startup=automatic records at start, "
                        "and run no discovery daemon (use_discoveryd records)")
    p.add_argument("--no-command-server", action="store_true",
                   help="do not run the command server (each iscsictl command then "
                        "starts Python)")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="iscsid's: taken, and changes nothing (iscsictld never forks)")
    p.add_argument("-v", "--version", action="version",
                   version=f"iscsictld version {__version__}", help="print the version")
    return p


def _level(text: str) -> int:
    """iscsid's ``-d debug_level`` (0-8): a number."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"debug level {text!r}: a number (0-8)")
    return int(text)


def _after_boot_login(path: str, exc: LockHeld) -> int | None:
    """The lock, once the iscsictl-starts holding it have ended their logins (at most
    :data:`~.instance.BOOT_LOGIN_WAIT` s, systemd's start timeout extended to match); None
    when the holder is no iscsictl-start, or it has not ended by then.  Before, iscsictld
    exited 1 at once, and systemd's restarts ran out within seconds: no daemon for the
    boot."""
    if not held_by_boot_login(exc):
        return None
    print(f"iscsictld: waiting for process {exc.holder} (iscsictl-start) to end its "
          "logins", file=sys.stderr)
    sd_notify(f"EXTEND_TIMEOUT_USEC={int((BOOT_LOGIN_WAIT + 60) * 1e6)}")
    return take_lock_within(path, BOOT_LOGIN_WAIT)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if iscsid_running():
        print("iscsictld: open-iscsi's iscsid is running (or its iscsid.socket listens) and "
              "owns the kernel's iSCSI interface; stop it first (systemctl disable --now "
              "iscsid.socket iscsid)", file=sys.stderr)
        return 18
    try:
        lock = [take_lock(args.lock_file)]
    except LockHeld as exc:
        fd = _after_boot_login(args.lock_file, exc)
        if fd is None:
            print(f"iscsictld: {exc}", file=sys.stderr)
            return 1
        lock = [fd]

    def release_lock() -> None:
        if lock:
            os.close(lock.pop())
    writer = _start_logging(logging.DEBUG if args.debug else logging.INFO)
    try:
        return asyncio.run(_run(args, release_lock))
    except KeyboardInterrupt:
        return 0
    finally:
        writer.stop()  # every queued line is written first
        release_lock()


class LineQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler for a writer thread in this process: the message is rendered when
    the record is made (its arguments may change later), the record is not copied and its
    traceback is left for the writer to format (the stock one copies every record and
    formats it twice, for a queue that might be pickled: 10 -> 5 us a line on the host).
    The message is :func:`~.ipc_server.rendered`: a newline in a value a client or a
    target sent (a record's target name) would forge a log line of its own."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = rendered(record)
        record.args = None
        return record


def _start_logging(level: int) -> logging.handlers.QueueListener:
    """Log lines go to stderr (the journal under systemd) from a writer thread, so the
    event loop never waits on a slow pipe, journald or a network file system: a
    record costs the loop a queue put; its time stamp is taken when it is made."""
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d iscsictld: %(message)s",
                                       datefmt="%H:%M:%S"))
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    root.setLevel(level)
    lines = LineQueueHandler(q)
    lines.setLevel(level)  # a request traced for its client (CLI -d) makes DEBUG records
    root.addHandler(lines)
    writer = logging.handlers.QueueListener(q, out)
    writer.start()
    return writer


async def _run(args: argparse.Namespace, release_lock: Callable[[], None]) -> int:
    """The daemon until it stops.  The lock is released as soon as the daemon has closed
    (netlink, its socket): before a "stop" request is answered and before the command
    server's commands under way end (up to STOP_GRACE s), so an ``iscsictl -k 0`` then
    ``iscsictld`` (an upgrade) finds it free, and a ``-k 0`` run by the command server
    itself does not wait for its own end."""
    from iscsictl.netlink import IscsiNetlinkError

    from .commands import CommandServerProcess

    daemon = Daemon(args.socket, state_dir=args.state_dir, db_root=args.db_root,
                    config_root=args.config_root, autostart=not args.no_autostart)
    try:
        daemon.inherited_socket = sd_listen_socket()
    except OSError as exc:
        print(f"iscsictld: {exc}", file=sys.stderr)
        return 1
    if daemon.inherited_socket is not None:
        where = daemon.inherited_socket.getsockname()
        if where != args.socket:  # the CLI looks for it at --socket's path
            logging.getLogger("iscsictld").warning(
                "serving on %s, the socket systemd passed; commands look for %s",
                where or "an unnamed socket", args.socket)
    daemon.on_closed = release_lock
    commands = None if args.no_command_server else CommandServerProcess(args.socket)
    if commands is not None:
        await commands.start()  # it imports the CLI while the daemon starts
    # as iscsid: before the daemon's other threads (they inherit it), after the command
    # server's start (it runs users' commands at their own priority)
    for refusal in protect_daemon():
        logging.getLogger("iscsictld").warning("%s", refusal)
    try:
        await daemon.start()
    except (IscsiNetlinkError, OSError) as exc:
        if isinstance(exc, IscsiNetlinkError):
            print(f"iscsictld: {exc}", file=sys.stderr)
        else:  # the IPC socket (a path too long, a file in its place, ...)
            print(f"iscsictld: cannot serve on {args.socket}: {exc.strerror or exc}",
                  file=sys.stderr)
            await daemon.close()  # netlink, opened before
        if commands is not None:
            await commands.stop()
        return 12 if isinstance(exc, IscsiNetlinkError) else 1
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()  # referenced: the loop keeps only weak ones

    def stop() -> None:
        task = loop.create_task(daemon.close(logout_all=args.logout_on_exit))
        stopping.add(task)
        task.add_done_callback(stopping.discard)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    lock_code()  # again: the libraries the daemon's start loaded (its extensions, ssl ...)
    sd_notify("READY=1")
    await daemon.wait_stopped()
    sd_notify("STOPPING=1")
    if commands is not None:
        await commands.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
