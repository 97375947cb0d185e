"""One owner of the kernel's iSCSI interface: iscsictld's lock file, and open-iscsi's iscsid
detected by its abstract socket.  Shared by ``iscsictld`` and ``iscsictl-start`` (which
imports only this of the daemon's entry point: a boot login pays for no logging queue or
memory locking it does not use)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import struct
from typing import Callable

from iscsictl.ipc import peer_credentials

__all__ = ["ISCSID_ABSTRACT", "LOCK_FILE", "LockHeld", "NodeLocks", "held_by", "iscsid_running",
           "listener_of", "lock_holder", "node_locks_path", "private", "take_lock",
           "unix_listeners"]

LOCK_FILE = "/run/iscsictld.pid"
ISCSID_ABSTRACT = "\0ISCSIADM_ABSTRACT_NAMESPACE"


def listener_of(address: str) -> tuple[int, int] | None:
    """(pid, uid) of the process listening on the Unix stream socket ``address`` (an
    abstract one starts with NUL): SO_PEERCRED, its credentials when it listened; None when
    nothing listens there, or when its backlog is full: the connect does not wait (a
    listener that never accepts, of any user's, would hold iscsictld's start for ever;
    iscsid accepts its clients at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.setblocking(False)  # a Unix connect completes at once, or fails EAGAIN
        try:
            s.connect(address)
            pid, uid, _ = peer_credentials(s)
        except OSError:
            return None
    return pid, uid


#: the process that holds a socket unit's socket (systemd)
INIT_PID = 1
#: ``/proc/net/unix``'s Flags bit of a listening socket (__SO_ACCEPTCON)
_ACCEPTCON = 0x10000


def unix_listeners(address: str) -> set[int]:
    """The inodes of the Unix sockets listening on ``address`` (a path, or an abstract
    name starting with NUL), as ``/proc/net/unix`` lists them (this network namespace's):
    told without connecting, which would have systemd start a socket unit's service."""
    name = "@" + address[1:] if address.startswith("\0") else address
    found = set()
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            next(f, None)
            for line in f:
                fields = line.split(None, 7)
                if len(fields) == 8 and fields[7].rstrip("\n") == name \
                        and int(fields[3], 16) & _ACCEPTCON:
                    found.add(int(fields[6]))
    except (OSError, ValueError):
        pass
    return found


def held_by(pid: int, inodes: set[int]) -> bool:
    """Whether process ``pid`` has one of the sockets ``inodes`` open."""
    links = {f"socket:[{i}]" for i in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in links:
                return True
        except OSError:
            continue
    return False


def iscsid_running() -> bool:
    """True when open-iscsi's iscsid listens on its abstract socket: a process of root's,
    or systemd holding it for iscsid (``iscsid.socket``: iscsid starts at the first
    iscsiadm), told without a connection, which would start it.  An abstract socket has
    no permissions, so a listener of another user is not taken for iscsid (any user could
    otherwise keep iscsictld from starting)."""
    inodes = unix_listeners(ISCSID_ABSTRACT)
    if not inodes:
        return False
    if held_by(INIT_PID, inodes):
        return True
    found = listener_of(ISCSID_ABSTRACT)
    return found is not None and found[1] == 0


class LockHeld(Exception):
    """The lock cannot be taken: held by another process (named; its PID as the lock file
    says it in ``holder``), or not to be opened or written (``holder`` None).
    The message is for the user; each program prefixes its own name."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


#: the name an iscsictl-start gives itself (``/proc/self/comm``: start.PROG), whose lock is
#: waited for
BOOT_LOGIN_PROG = "iscsictl-start"
#: s a process meeting an iscsictl-start's lock waits for its logins (a boot login may
#: retry 30 x 15 s, then the scan), as iscsistarts run side by side
BOOT_LOGIN_WAIT = 600.0


def held_by_boot_login(exc: LockHeld) -> bool:
    """Whether the holder ``exc`` names is an iscsictl-start (its ``/proc/PID/comm``)."""
    try:
        with open(f"/proc/{int(exc.holder or '')}/comm") as f:
            return f.read().strip() == BOOT_LOGIN_PROG
    except (OSError, ValueError):
        return False


def take_lock_within(path: str, seconds: float,
                     give_up: Callable[[LockHeld], int | None] | None = None,
                     shared: bool = False) -> int | None:
    """:func:`take_lock`, tried every 0.1 s for at most ``seconds``: the descriptor, or
    None after that; or what ``give_up(the LockHeld met)`` returns when it returns a value
    (asked at each try)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            return take_lock(path, shared)
        except LockHeld as exc:
            if give_up is not None and (value := give_up(exc)) is not None:
                return value
    return None


#: struct flock (<fcntl.h>, as Python's F_GETLK takes it: flock64 where off_t is 32 bits):
#: l_type, l_whence, l_start, l_len, l_pid, native alignment; the kernel writes up to 32
#: bytes (x86_64's tail padding), the buffer given is larger
_FLOCK = struct.Struct("@hhqqi")


def lock_holder(fd: int, shared: bool = False) -> int | None:
    """The PID of a process whose lock on ``fd``'s file keeps this one from taking it
    (``shared``: a read lock's; else a write lock's), as F_GETLK says it: one of several
    holders; None when none holds it now (released meanwhile), or the holder is in
    another PID namespace (0)."""
    want = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK,
                          _FLOCK.pack(want, os.SEEK_SET, 0, 0, 0) + bytes(16))
    except OSError:
        return None
    l_type, _, _, _, pid = _FLOCK.unpack_from(got)
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def private(fd: int) -> None:
    """Make the file open at ``fd`` root's alone (mode 0600) when others may read it: a
    lock file whose lock any user could otherwise take (a read lock needs only read
    access).  Not being allowed to (another owner's file) is left as it is."""
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        pass


def take_lock(path: str, shared: bool = False) -> int:
    """An fcntl lock that dies with us: its descriptor.  iscsictld takes it exclusively
    and writes its PID in the file; each ``iscsictl-start`` takes it ``shared`` (several
    log in side by side, as iscsistarts do, while no iscsictld runs) and writes nothing.
    Raises LockHeld naming a holder (an iscsictld, or an iscsictl-start logging in): its
    PID from the kernel's lock table, the file's only when that cannot be read.

    The file is root's alone (0600; one left readable by an older version is made so): a
    read lock needs only a descriptor open for reading, and any user holding one on a file
    of mode 0644 kept iscsictld from starting, or from starting again after a restart."""
    try:
        os.makedirs(os.path.dirname(path) or ".", 0o755, exist_ok=True)  # not 0777 (umask 0)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        private(fd)
    except OSError as exc:
        hint = " (iscsictld runs as root: it needs CAP_SYS_ADMIN)" if exc.errno == 13 else ""
        raise LockHeld(f"cannot open the lock file {path}: {exc.strerror}{hint}") from None
    try:
        fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        pid = lock_holder(fd, shared)
        holder = str(pid) if pid is not None else \
            os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LockHeld(f"process {holder} (iscsictld or iscsictl-start) owns the kernel's "
                       f"iSCSI sessions ({path})", holder) from None
    if shared:
        return fd
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # a full /run: said and stopped, as iscsid's "Unable to write
        os.close(fd)  # pid file" (it was a traceback)
        raise LockHeld(f"cannot write the lock file {path}: {exc.strerror}") from None
    return fd


#: fcntl's F_OFD_SETLK (Linux 3.15; Python names it from 3.9 where the C library does)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
#: struct flock (l_type, l_whence, l_start, l_len, l_pid; 32 bytes on 64-bit Linux)
_FLOCK = struct.Struct("hhqqi4x")
#: the first of :class:`NodeLocks`' ISID bytes (below it, the nodes')
ISID_BYTES = 1 << 32


def node_locks_path(lock_file: str) -> str:
    """The file of :class:`NodeLocks` beside iscsictld's lock file ``lock_file``."""
    return os.path.join(os.path.dirname(lock_file) or ".", "iscsictl-start.nodes")


class NodeLocks:
    """One byte of one file locked per node, by open file description (F_OFD_SETLK: the
    lock is this object's descriptor's, gone when it is closed or the process dies).

    The iscsictl-starts that log in side by side each take a node's byte before they count
    that node's sessions and log in to it: two started for one node take turns, and the
    second finds the first's session (15), as one iscsictld's per-node lock makes its own
    logins take turns (two iscsistarts both log in: two sessions, each LUN twice).  A
    node's byte is at a hash of its key: two nodes that share one take turns too.

    Past the nodes' bytes, one per ISID (:meth:`isid_byte`): each start holds the byte of
    an ISID its login offers until the session is gone or the process ends, and the
    others skip it: their PID-spaced qualifiers can meet across PID namespaces, and an
    ISID is in the state journal only once its login is done (the kernel does not show
    a software session's).

    Raises OSError when the file cannot be opened (made 0600, root's)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        private(self.fd)
        self._held: dict[int, int] = {}  # byte -> the holders in this process

    @staticmethod
    def byte(key: object) -> int:
        """The byte of the node ``key`` (any value with a stable repr): 0 .. 2**31 - 1."""
        digest = hashlib.blake2b(repr(key).encode("utf-8", "surrogateescape"),
                                 digest_size=4).digest()
        return int.from_bytes(digest, "big") & 0x7FFFFFFF

    @staticmethod
    def isid_byte(isid: int) -> int:
        """The byte of the 48-bit ISID ``isid``: 2**32 and above, past every node's."""
        return ISID_BYTES + isid

    def _set(self, kind: int, byte: int) -> None:
        fcntl.fcntl(self.fd, F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, byte, 1, 0))

    def try_take(self, byte: int) -> bool:
        """Lock ``byte`` without waiting: False when another descriptor holds it.  Taken
        again in this object, it is counted (each take wants a :meth:`release`)."""
        if byte in self._held:
            self._held[byte] += 1
            return True
        try:
            self._set(fcntl.F_WRLCK, byte)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._held[byte] = 1
        return True

    def release(self, byte: int) -> None:
        """Give up one take of ``byte``; the lock goes with the last."""
        left = self._held.get(byte, 0) - 1
        if left > 0:
            self._held[byte] = left
            return
        self._held.pop(byte, None)
        try:
            self._set(fcntl.F_UNLCK, byte)
        except OSError:
            pass  # (a closed descriptor holds nothing)

    def close(self) -> None:
        """Release every lock (closing the descriptor)."""
        self._held.clear()
        try:
            os.close(self.fd)
        except OSError:
            pass
