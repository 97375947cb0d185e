"""NodeDB: open-iscsi's persistent database on disk (Debian layout, ``/etc/iscsi``).

Layout (open-iscsi ``usr/idbm.c``)::

    nodes/<target>/<ip>,<port>,<tpgt>/<iface>            node record file
    nodes/<target>/<ip>,<port>                           legacy node record *file* (tpgt -1)
    send_targets/<ip>,<port>/st_config                   SendTargets discovery record
    send_targets/<ip>,<port>/<target>,<ip>,<port>,<tpgt>,<iface>  -> node portal dir
    isns/<ip>,<port>/isns_config                         iSNS discovery record (+ same links)
    isns/<target>,<ip>,<port>,<tpgt>,<iface>             old-style iSNS links
    static/<target>,<ip>,<port>,<tpgt>,<iface>           -> node portal dir (-o new)
    fw/<target>,<ip>,<port>,<tpgt>,<iface>               -> node portal dir (firmware)
    ifaces/<name>                                        iface record (default, iser built in)

IPv6 addresses are raw in path names.  Directories are created 0700 and files 0600 (they may
hold CHAP secrets), what iscsiadm makes under its umask 0077.  Like iscsiadm, a record created
with tpgt -1 is the legacy file ``<ip>,<port>``; creating the same portal with a known tpgt
converts it.

Concurrency: every write is atomic (temp file in the same directory, fsync, rename, fsync of the
directory; many records at once, a discovery's new ones or an update of many, flush the
filesystem once for all instead), so readers take no lock and never wait.  Writers take a
per-record ``flock`` lock (dies with its holder) and, only around creating/removing
directories and links, a short DB-wide lock.  Lock files live in ``<db_root>/.locks/``
(iscsiadm ignores it), hold the holder's PID and go with their record when it is deleted; a
wait is bounded (``lock_timeout``, default 30 s) and ends in LockTimeout naming the holder.  iscsiadm's own ``/run/lock/iscsi``
lock is taken too around every change to a database at ``/etc/iscsi``
(:class:`IscsiadmLock`): iscsiadm rewrites a record in place, so without it a change of ours
could read its record half-written, or undo its change.

Damaged records (empty, binary, missing node.name, wrong path shape) are reported through the
``warn`` callback (and ``NodeDB.warnings``) by path and skipped by listings and discovery.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import os
import re
import stat
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator

from ..lexical import C_SPACE, ascii_digits, host_key
from . import schema
from .config import IscsidConfig, resolve_roots
from .errors import (BindingChange, CorruptRecord, DBError, InvalidKey, InvalidRecordName,
                     InvalidValue, LockTimeout, ReadOnlyKey, RecordExists, RecordInUse,
                     RecordNotFound, RecordTooLarge, SpecialIface)
from .files import read_regular
from .record import (Record, convert, format_file_variants, format_node_flat, format_node_tree,
                     format_portal, format_record, parse_record)

NODES = "nodes"
SEND_TARGETS = "send_targets"
ISNS = "isns"
STATIC = "static"
FW = "fw"
IFACES = "ifaces"
ST_CONFIG = "st_config"
ISNS_CONFIG = "isns_config"
LOCK_DIRNAME = ".locks"
TMP_DIRNAME = ".tmp"
#: bytes a record file may hold: ~200 keys of at most MAX_LINE bytes, with room to spare
MAX_RECORD_BYTES = 1 << 20
#: an iface file's transport, which open-iscsi requires (iface_is_valid: no default)
_TRANSPORT_LINE = re.compile(rb"^[ \t]*iface\.transport_name[ \t]*=[ \t]*[^\s#]", re.M)
STALE_TMP_AGE = 3600.0  # s: a temp file in TMP_DIRNAME older than this is a crash's
#: iscsiadm's and iscsid's modes: mkdir 0770 and open 0666 under their umask(0077) (main of
#: iscsiadm.c, iscsid.c), so a user's umask 022 does not list the targets to every user
DIR_MODE = 0o700
FILE_MODE = 0o600
DEFAULT_LOCK_TIMEOUT = 30.0
#: s iscsiadm waits for its lock before it goes on without it (idbm_lock: 3000 x 10 ms): a
#: ``lock.write`` unchanged that long is a dead holder's, taken over
ISCSIADM_LOCK_WAIT = 30.0
#: s a ``lock.write`` old by the wall clock must also stay unchanged under this process's
#: watch before it is taken over (IscsiadmLock._stale)
ISCSIADM_LOCK_WATCH = 2.0
#: iscsiadm's database lock (open-iscsi usr/initiator.h LOCK_DIR, LOCK_FILE,
#: LOCK_WRITE_FILE), taken for a database at one of :data:`SYSTEM_DB_ROOTS`
ISCSIADM_LOCK_DIR = "/run/lock/iscsi"
SYSTEM_DB_ROOT = "/etc/iscsi"
#: where open-iscsi's builds keep the database iscsiadm uses: Debian's and Ubuntu's
#: /etc/iscsi, Fedora's, RHEL's and SUSE's /var/lib/iscsi (meson -Ddbroot); each compared
#: once symbolic links are resolved, on both sides
SYSTEM_DB_ROOTS = (SYSTEM_DB_ROOT, "/var/lib/iscsi")
#: s a reader waits for iscsiadm's lock to read again a record found damaged
REREAD_WAIT = 0.5
#: what a discovery sets in each new node record made from its template
IDENTITY_KEYS = ("node.name", "node.conn[0].address", "node.conn[0].port", "node.tpgt")
#: a node record's discovery source (its link is under that source's directory)
DISCOVERY_KEYS = ("node.discovery_type", "node.discovery_address", "node.discovery_port")
_LOCK_POLL = 0.01
#: NodeDB.update_nodes: records from which they are written in runs with one flush each; a
#: run's most records and s; s iscsiadm's lock is left free between runs (it polls it every
#: 10 ms: idbm_lock)
UPDATE_BATCH_MIN = 8
UPDATE_RUN = 256
UPDATE_RUN_TIME = 0.2
UPDATE_GAP = 0.03


# --------------------------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class NodeID:
    """Identity of a node record: target name, portal (address, port), tpgt, iface name.
    ``legacy`` marks a pre-svn-780 record file ``nodes/<target>/<ip>,<port>`` (tpgt -1)."""

    target: str
    address: str
    port: int
    tpgt: int
    iface: str = "default"
    legacy: bool = field(default=False, compare=False)
    legacy_tpgt: int = field(default=-1, compare=False)

    @property
    def listed_tpgt(self) -> int:
        """The tag a listing shows: a legacy file's own ``node.tpgt`` (iscsiadm 2.0.874 wrote
        the real tag into it; iscsiadm lists what it reads), else ``tpgt``."""
        return self.legacy_tpgt if self.legacy else self.tpgt

    @property
    def portal(self) -> str:
        """``ip:port`` / ``[ip6]:port`` as iscsiadm prints it."""
        return format_portal(self.address, self.port)

    @property
    def portal_dir(self) -> str:
        """Directory name ``<ip>,<port>,<tpgt>`` (or legacy file name ``<ip>,<port>``)."""
        if self.legacy:
            return f"{self.address},{self.port}"
        return f"{self.address},{self.port},{self.tpgt}"

    @property
    def link_name(self) -> str:
        """Discovery link name ``<target>,<ip>,<port>,<tpgt>,<iface>``."""
        return f"{self.target},{self.address},{self.port},{self.tpgt},{self.iface}"

    def flat(self, signed: bool = False) -> str:
        """The ``iscsiadm -m node`` line for this record (no newline); ``signed``: an unknown
        tag as -1, as a discovery prints it (see :func:`format_node_flat`)."""
        return format_node_flat(self.address, self.port, self.listed_tpgt, self.target, signed)

    @classmethod
    def of(cls, rec: Record) -> "NodeID":
        """The identity of a node record."""
        v = rec.values
        return cls(v["node.name"], v["node.conn[0].address"], v["node.conn[0].port"],
                   v["node.tpgt"], v["iface.iscsi_ifacename"] or "default")


@dataclass(frozen=True, order=True)
class DiscoveryID:
    """Identity of a discovery record: ``type`` (``sendtargets`` | ``isns``), address, port."""

    type: str
    address: str
    port: int

    @property
    def kind(self) -> schema.RecordKind:
        return schema.DISCOVERY_KINDS[self.type]

    @property
    def type_dir(self) -> str:
        return SEND_TARGETS if self.type == "sendtargets" else ISNS

    @property
    def config_name(self) -> str:
        return ST_CONFIG if self.type == "sendtargets" else ISNS_CONFIG

    def listing(self) -> str:
        """``ip:port via sendtargets|isns`` (``iscsiadm -m discovery``: idbm's
        ``"%s:%d via %s"``, an IPv6 address unbracketed)."""
        return f"{self.address}:{self.port} via {self.type}"


@dataclass
class ReconcileResult:
    """Outcome of :meth:`NodeDB.reconcile_discovery`: NodeIDs added, updated, deleted, and the
    ones that failed with their error."""

    added: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (NodeID, DBError)


def _check_iface_name_length(name: str) -> None:
    """InvalidRecordName for an iface name over 64 bytes (usr/iface.c iface_alloc:
    ISCSI_MAX_IFACE_LEN counts bytes, not characters; iscsiadm cannot read a longer one)."""
    if len(os.fsencode(name)) > schema.MAX_IFACE_NAME:
        raise InvalidRecordName(f"iface name {name!r} longer than {schema.MAX_IFACE_NAME} "
                                "bytes")


def _check_component(what: str, name: str) -> None:
    if not name or "/" in name or "\0" in name or name in (".", "..") or "\n" in name:
        raise InvalidRecordName(f"invalid {what} {name!r}")


def _is_flat(portal: str) -> bool:
    """Whether the discovery portal ``<type dir>/<ip>,<port>`` is a file, not a directory: a
    record of open-iscsi before svn 780 (iscsiadm follows a link to one: stat)."""
    return os.path.isfile(portal)


def _parse_portal_dir(name: str):
    """``ip,port,tpgt`` -> (ip, port, tpgt); ``ip,port`` -> (ip, port, None); else None."""
    parts = name.rsplit(",", 2)
    try:
        if len(parts) == 3:
            if not parts[0]:
                return None
            return parts[0], int(parts[1]), int(parts[2])
        if len(parts) == 2 and parts[0]:
            return parts[0], int(parts[1]), None
    except ValueError:
        return None
    return None


def _parse_link_name(name: str) -> NodeID | None:
    """A discovery link's name ``<target>,<ip>,<port>,<tpgt>,<iface>`` as iscsiadm reads it
    (usr/idbm.c get_params_from_disc_link): the target up to the first ',' (an iSCSI name
    has none), the iface the rest (an iface name may hold one); failing that, the last four
    fields from the right (a target name with a ',', which iscsiadm cannot read).  None
    for what is not such a name."""
    for parts in (name.split(",", 4), name.rsplit(",", 4)):
        if len(parts) == 5 and parts[0] and parts[1] and parts[4]:
            try:
                return NodeID(parts[0], parts[1], int(parts[2]), int(parts[3]), parts[4])
            except ValueError:
                continue
    return None


# --------------------------------------------------------------------------------------------
# atomic writes and locks
# --------------------------------------------------------------------------------------------
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (Linux ``syncfs``; ``sync`` where unavailable).
    One call replaces per-file fsyncs when many records are written at once.  Raises
    OSError when the data could not be written (EIO, ENOSPC: what an fsync of each file
    would have said; it went unsaid, and records not on the disk passed for written)."""
    import ctypes

    fn = _libc_syncfs()
    if fn is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if fn(fd) == 0:
                return
            err = ctypes.get_errno()
        finally:
            os.close(fd)
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), path)
    os.sync()


@functools.cache
def _libc_syncfs():  # type: ignore[no-untyped-def]
    """libc's ``syncfs`` (looked up once), or None."""
    from ..libc import function

    return function("syncfs")


_AT_FDCWD = -100  # <fcntl.h>
_RENAME_NOREPLACE = 1  # <linux/fs.h>: renameat2(2) fails with EEXIST instead of replacing


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError then): atomically
    with renameat2(2) RENAME_NOREPLACE (Linux 3.15; tmpfs, ext4, xfs, btrfs ...), else, on a
    filesystem or libc without it, by a look before the rename.  Raises OSError."""
    fn = _libc_renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        import ctypes

        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EEXIST gives FileExistsError
            raise OSError(err, os.strerror(err), src, None, dst)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)


@functools.cache
def _libc_renameat2():  # type: ignore[no-untyped-def]
    """libc's ``renameat2`` (glibc 2.28) with its argument types, or None."""
    import ctypes

    from ..libc import function

    fn = function("renameat2")
    if fn is None:
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


def atomic_write(path: str, data: bytes, mode: int = FILE_MODE,
                 tmp_dir: str | None = None, *, keep: bool = False,
                 private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a temp file ``.<name>.*.tmp`` (in ``tmp_dir``
    when given, on the same filesystem; else in ``path``'s directory), created with
    ``mode``, fsync'ed, renamed over ``path``, then the directory fsync'ed.  On any failure
    the temp file is removed and the old file is left intact.  Raises DBError (exit code
    6) carrying the OS error.

    With ``keep``, a file already at ``path`` is rewritten as iscsiadm's in-place
    ``fopen(path, "w")`` rewrite leaves it (idbm_rec_write): a symlink is written through
    (its target replaced, the link kept), and the new file takes the old one's owner, group
    and mode, ``mode`` being used only for a new file.  With ``private`` too (``data`` holds
    a secret), the kept mode loses its group and other bits."""
    owner = None
    if keep:
        path, mode, owner = _kept(path, mode, private)
    _replace(path, data, mode, owner, tmp_dir)


def _kept(path: str, mode: int, private: bool) -> tuple[str, int, tuple[int, int] | None]:
    """(path, mode, (uid, gid) or None) of :func:`atomic_write`'s ``keep``: the file a
    symlink at ``path`` names, and the existing file's mode and owner."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        return path, mode, None
    if not stat.S_ISREG(st.st_mode):
        return path, mode, None  # not a regular file: made anew (a directory: refused)
    kept = stat.S_IMODE(st.st_mode) & (0o7700 if private else 0o7777)
    return path, kept, (st.st_uid, st.st_gid)


def _stage(path: str, data: bytes, mode: int, owner: tuple[int, int] | None,
           tmp_dir: str | None, sync: bool = True) -> str:
    """The temp file holding ``data`` that is to be renamed over ``path`` (in ``tmp_dir``,
    else beside ``path``), with ``owner`` and ``mode``, fsync'ed when ``sync``.  Raises
    DBError; nothing is left behind then."""
    d, base = os.path.split(path)
    try:
        import tempfile  # lazily: listings and reads never write

        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=tmp_dir or d or ".")
    except OSError as e:
        raise DBError(f"cannot write {path}: {e.strerror}") from e
    try:
        try:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # not root: the file is ours
                    os.fchown(fd, *owner)
            os.fchmod(fd, mode)  # after fchown, which clears set-user/group-ID bits
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as e:
        _remove_quiet(tmp)
        if isinstance(e, OSError):
            raise DBError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    return tmp


def _remove_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _replace(path: str, data: bytes, mode: int, owner: tuple[int, int] | None,
             tmp_dir: str | None) -> None:
    tmp = _stage(path, data, mode, owner, tmp_dir)
    try:
        os.replace(tmp, path)
    except BaseException as e:
        _remove_quiet(tmp)
        if isinstance(e, OSError) and e.errno == errno.EXDEV and tmp_dir:
            return _replace(path, data, mode, owner, None)  # another fs: beside the file
        if isinstance(e, OSError):
            raise DBError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    try:
        _fsync_dir(os.path.dirname(path) or ".")
    except OSError:
        pass


class FileLock:
    """An exclusive ``flock`` on ``path`` (created 0600), released when the holder exits or
    dies.  The holder's PID is written into the file so that a waiter that gives up after
    ``timeout`` seconds raises LockTimeout(holder_pid).  Use as a context manager.

    The holder of a record's lock that deletes the record also removes the lock's file
    (:meth:`remove_when_released`), so that ``.locks`` does not keep one file for every
    record ever written.  A waiter that then gets the lock of the removed file lets it go
    and takes the lock of the file now at ``path``: two holders never hold different files
    of one name."""

    def __init__(self, path: str, timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._remove = False

    def acquire(self) -> None:
        start = time.monotonic()
        while True:
            fd = self._lock_file(start)
            try:  # still the file at path?  (its holder may have removed it meanwhile)
                st, now = os.fstat(fd), os.stat(self.path)
                if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                    break
            except FileNotFoundError:
                pass
            except OSError as e:
                os.close(fd)
                raise DBError(f"cannot lock {self.path}: {e.strerror}") from e
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        self._remove = False

    def _lock_file(self, start: float) -> int:
        """Open (or create) the file at ``path`` and flock it, waiting until ``start`` +
        ``timeout``; the locked descriptor."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise DBError(f"cannot open lock {self.path}: {e.strerror}") from e
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise DBError(f"cannot lock {self.path}: {e.strerror}") from e
            waited = time.monotonic() - start
            if waited >= self.timeout:
                holder = None
                try:
                    txt = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    holder = int(txt) if ascii_digits(txt) else None
                except OSError:
                    pass
                os.close(fd)
                raise LockTimeout(self.path, holder, waited)
            time.sleep(min(_LOCK_POLL, max(0.0, self.timeout - waited)))

    def remove_when_released(self) -> None:
        """Remove the lock's file at :meth:`release` (its record is gone), while it is
        still held."""
        self._remove = True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if self._remove:
                    os.unlink(self.path)
                else:
                    os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _NoLock:
    """What :meth:`NodeDB._deleting` holds when no lock file can be made."""

    def remove_when_released(self) -> None:
        pass


_NO_LOCK = _NoLock()


class IscsiadmLock:
    """iscsiadm's lock on the node database (open-iscsi usr/idbm.c idbm_lock): the hard link
    ``<lock_dir>/lock.write`` of ``<lock_dir>/lock``, made to lock and removed to unlock.
    :class:`NodeDB` holds it around each change it makes, so that iscsiadm (which holds it
    while it reads and rewrites a record in place) and iscsictl never see each other's
    record half-written nor undo each other's change.  Reentrant within its NodeDB (a change
    made of others takes it once); another thread waits.  A wait is bounded by ``timeout``
    s and ends in LockTimeout.  A holder that died leaves the link behind: iscsiadm waits its
    30 s and goes on unlocked (removing the link when done); iscsictl takes a link that no
    take or release has touched for :data:`ISCSIADM_LOCK_WAIT` s over (its ctime: each
    link and unlink of the one inode sets it; and seen unchanged a while: :meth:`_stale`),
    says so (:attr:`taken_over`), and holds it;
    two iscsictl processes never both take one over (:meth:`_take_over`)."""

    def __init__(self, lock_dir: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        import threading

        self.lock_dir, self.timeout = lock_dir, timeout
        self.write_path = os.path.join(lock_dir, "lock.write")
        self.untrusted: str | None = None  # why the lock is not taken, if it is not
        self.taken_over: str | None = None  # a dead holder's lock taken over, said once
        self._mutex = threading.RLock()
        self._depth, self._held = 0, False
        self._seen: tuple | None = None  # (lock.write's inode and ctime, since when seen)

    def acquire(self, timeout: float | None = None) -> None:
        """Take it (once per holder: nested takes count), waiting ``timeout`` s at most
        (default: the NodeDB's lock timeout); LockTimeout after that."""
        self._mutex.acquire()
        try:
            if self._depth == 0:
                self._held = self._take(self.timeout if timeout is None else timeout)
        except BaseException:
            self._mutex.release()
            raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._held:
                with contextlib.suppress(OSError):  # gone: removed by someone as stale
                    os.unlink(self.write_path)
        finally:
            self._mutex.release()

    def __enter__(self) -> "IscsiadmLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @contextlib.contextmanager
    def within(self, timeout: float):  # type: ignore[no-untyped-def]
        """The lock, waited for ``timeout`` s at most (a reader's: see NodeDB.read_node)."""
        self.acquire(timeout)
        try:
            yield self
        finally:
            self.release()

    def _take(self, timeout: float) -> bool:
        """Whether the lock was taken: not in a directory another user can write to (on
        Debian /run/lock is any user's: one who made ``iscsi`` there first could point
        ``lock`` anywhere, or hold ``lock.write`` for ever), which is said instead
        (:attr:`untrusted`) and the change made without it."""
        lock = os.path.join(self.lock_dir, "lock")
        try:  # (/run/lock made too where a system has none: iscsiadm would fail there;
            # root's alone, not 0777 under umask 0, where any user could rename it away)
            os.makedirs(os.path.dirname(self.lock_dir), 0o755, exist_ok=True)
            try:
                os.mkdir(self.lock_dir, DIR_MODE)
            except FileExistsError:  # there; or a file or link a user put in its place,
                pass  # which is judged below as a directory of theirs (it was exit 6)
            st = os.lstat(self.lock_dir)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, os.geteuid()) or \
                    st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid != 0):
                what = "root's alone" if stat.S_ISDIR(st.st_mode) else "a directory"
                self.untrusted = (f"iscsiadm's lock directory {self.lock_dir} is not "
                                  f"{what} (owner {st.st_uid}, mode "
                                  f"{stat.S_IMODE(st.st_mode):o}): its lock not taken")
                return False
            os.close(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                             | os.O_NOCTTY, FILE_MODE))
        except OSError as e:
            raise DBError(f"cannot take iscsiadm's lock {lock}: {e.strerror}") from e
        start = time.monotonic()
        while True:
            try:
                os.link(lock, self.write_path)
                return True
            except FileExistsError:
                if self._stale() and self._take_over(lock):
                    self.taken_over = (f"{self.write_path} unchanged for {ISCSIADM_LOCK_WAIT:g} "
                                       "s (its holder is gone): taken over, as iscsiadm "
                                       "goes on after its 30 s")
                    return True
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise LockTimeout(f"{self.write_path} (iscsiadm's lock; remove it if no "
                                      "iscsiadm or iscsictl command runs)", None, waited)
                time.sleep(_LOCK_POLL)
            except OSError as e:
                raise DBError(f"cannot take iscsiadm's lock {self.write_path}: "
                              f"{e.strerror}") from e

    def _take_over(self, lock: str) -> bool:
        """Whether a stale ``lock.write`` was replaced by this holder's.  Two iscsictl
        processes that both found it stale take turns under an flock of ``lock`` (iscsiadm
        takes none), each judging it again there, so the second sees the first's new link
        as live instead of removing it (before: both went on as holders)."""
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another takes it over now: wait for its link to go
            if not self._stale():
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.write_path)
            try:
                os.link(lock, self.write_path)
            except FileExistsError:  # iscsiadm took it between the two
                return False
            return True
        finally:
            os.close(fd)  # and with it the flock

    def _stale(self) -> bool:
        """Whether ``lock.write`` is a dead holder's: unchanged (its inode and ctime) for
        :data:`ISCSIADM_LOCK_WAIT` s by the wall clock, and for as long by this process's
        own watch, up to :data:`ISCSIADM_LOCK_WATCH` s, on the monotonic clock: a wall
        clock stepped forward (NTP at boot) makes a live holder's link look old, and it
        was taken over from under it."""
        try:
            st = os.lstat(self.write_path)
        except FileNotFoundError:
            self._seen = None
            return False
        mark, now = (st.st_ino, st.st_ctime_ns), time.monotonic()
        if self._seen is None or self._seen[0] != mark:
            self._seen = (mark, now)
        return (time.time() - st.st_ctime >= ISCSIADM_LOCK_WAIT
                and now - self._seen[1] >= min(ISCSIADM_LOCK_WAIT, ISCSIADM_LOCK_WATCH))


def _holds_secret(rec: Record) -> bool:
    return any(rec.values.get(k) not in (None, "") for k in schema.SECRET_KEYS)


def _changes_db(method):
    """A NodeDB method that changes the database: run under iscsiadm's lock
    (:class:`IscsiadmLock`), where the database is iscsiadm's."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._changing():
            return method(self, *args, **kwargs)
    return locked


# --------------------------------------------------------------------------------------------
# the DB
# --------------------------------------------------------------------------------------------
def _changed_within(path: str, seconds: float) -> bool:
    """Whether the file ``path`` was written in the last ``seconds`` s (False: not there)."""
    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except OSError:
        return False


class NodeDB:
    """open-iscsi's node database under ``db_root`` with iscsid.conf from ``config_root``.

    ``db_root``/``config_root`` default through :func:`iscsictl.db.config.resolve_roots`
    (argument, ``ISCSICTL_DB_ROOT``/``ISCSICTL_CONFIG_ROOT``, ``/etc/iscsi``).
    ``lock_timeout`` bounds every lock wait (seconds).  ``warn(msg)`` receives one line per
    damaged record or bad value (also appended to ``self.warnings``).  ``version`` is written
    after ``# BEGIN RECORD``.  ``iscsiadm_lock_dir``: where iscsiadm's lock is taken around
    each change (:class:`IscsiadmLock`); by default :data:`ISCSIADM_LOCK_DIR` for a
    database at one of :data:`SYSTEM_DB_ROOTS`, none for any other (iscsiadm's is there
    only: a private root's commands, the tests', take no system-wide lock).
    """

    def __init__(self, db_root: str | None = None, config_root: str | None = None, *,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 warn: Callable[[str], None] | None = None,
                 version: str = schema.FORMAT_VERSION,
                 iscsiadm_lock_dir: str | None | bool = True,
                 config_file: str | None = None):
        roots = resolve_roots(db_root, config_root)
        self.config_file = config_file  # iscsid.conf under another name (iscsistart's -c)
        self.db_root = roots.db_root
        self.config_root = roots.config_root
        self.lock_timeout = lock_timeout
        if iscsiadm_lock_dir is True:
            system = os.path.realpath(self.db_root) in {os.path.realpath(root)
                                                        for root in SYSTEM_DB_ROOTS}
            iscsiadm_lock_dir = ISCSIADM_LOCK_DIR if system else None
        self.iscsiadm_lock: IscsiadmLock | contextlib.nullcontext = (
            IscsiadmLock(iscsiadm_lock_dir, lock_timeout) if iscsiadm_lock_dir
            else contextlib.nullcontext())
        self._untrusted_said = False
        self._no_lock_said = False  # (_deleting: said once)
        self.version = version
        self.warnings: list[str] = []
        self._warn_cb = warn
        self._config: IscsidConfig | None = None
        self._tmp_checked = False  # _tmp_dir made (and swept of a crash's files) once
        #: ifaces :meth:`discovery_ifaces` left out, unreadable: a rediscovery's reconcile
        #: keeps their records even if they are whole again by then
        self.left_out_ifaces: set[str] = set()

    # ---- helpers ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _changing(self):  # type: ignore[no-untyped-def]
        """iscsiadm's lock held around a change (:func:`_changes_db`), with what it says
        about itself (not taken, or taken over) said once."""
        with self.iscsiadm_lock as held:
            if getattr(held, "untrusted", None) and not self._untrusted_said:
                self._untrusted_said = True
                self.warn(held.untrusted)
            if getattr(held, "taken_over", None):
                self.warn(held.taken_over)
                held.taken_over = None
            yield

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self._warn_cb:
            self._warn_cb(msg)

    @property
    def config(self) -> IscsidConfig:
        """iscsid.conf of ``config_root``, or ``config_file`` (read once per NodeDB)."""
        if self._config is None:
            self._config = IscsidConfig.load(self.config_root, self.warn, self.config_file)
        return self._config

    def _p(self, *parts: str) -> str:
        return os.path.join(self.db_root, *parts)

    def _mkdirs(self, *parts: str) -> str:
        path = self.db_root
        if not os.path.isdir(path):
            os.makedirs(path, DIR_MODE, exist_ok=True)
        for p in parts:
            path = os.path.join(path, p)
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise DBError(f"{path} exists and is not a directory")
            except OSError as e:
                raise DBError(f"Could not make dir {path}: {e.strerror}") from e
        return path

    def _lock_path(self, key: str) -> str:
        d = self._p(LOCK_DIRNAME)
        if not os.path.isdir(d):
            try:  # the root first: makedirs gives only its last directory the mode asked
                os.makedirs(self.db_root, DIR_MODE, exist_ok=True)
                os.mkdir(d, 0o700)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise DBError(f"cannot create lock dir {d}: it exists and is not a "
                                  "directory") from None
            except OSError as e:
                raise DBError(f"cannot create lock dir {d}: {e.strerror}") from e
        import hashlib  # lazily: only writers take record locks

        return os.path.join(d, hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest())

    def _tmp_dir(self) -> str:
        """``<db_root>/.tmp`` (0700), where records are written before their rename: not in
        the directories iscsiadm reads, which would take a temp file a crash left there for
        a record (it skips only '.' and '..').  Files a crash left are removed an hour on.
        A ``.tmp`` that is a symbolic link is replaced by a directory (said; its sweep would
        delete files outside the database, and a rename from another filesystem fails),
        and any other file there refused (DBError)."""
        d = self._p(TMP_DIRNAME)
        if self._tmp_checked:
            return d
        try:
            try:
                os.mkdir(d, 0o700)
            except FileNotFoundError:  # no DB root yet
                os.makedirs(self.db_root, DIR_MODE, exist_ok=True)
                os.mkdir(d, 0o700)
        except FileExistsError:
            self._sweep_tmp_dir(d)
        except OSError as e:
            raise DBError(f"cannot create {d}: {e.strerror}") from e
        self._tmp_checked = True
        return d

    def _sweep_tmp_dir(self, d: str) -> None:
        """Remove the files a crash left in ``d`` (:meth:`_tmp_dir`), read through a
        descriptor of ``d`` itself, not of what a link there names."""
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            # (a link is ENOTDIR with O_DIRECTORY, ELOOP without)
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(d):
                # a link: iscsictl's own name, replaced
                try:
                    os.unlink(d)
                    os.mkdir(d, 0o700)
                except OSError as e2:
                    raise DBError(f"cannot replace the symbolic link {d} by a directory: "
                                  f"{e2.strerror}") from None
                self.warn(f"{d} was a symbolic link: replaced by a directory")
                return
            if e.errno == errno.ENOTDIR:
                raise DBError(f"cannot use {d}: it exists and is not a directory") from None
            return  # unreadable: nothing swept, the write says why if it fails
        old = time.time() - STALE_TMP_AGE
        try:
            for entry in os.scandir(fd):
                if entry.is_file(follow_symlinks=False) and \
                        entry.stat(follow_symlinks=False).st_mtime < old:
                    os.unlink(entry.name, dir_fd=fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def record_lock(self, key: str) -> FileLock:
        """The per-record write lock for ``key`` (e.g. a record's relative path)."""
        return FileLock(self._lock_path(key), self.lock_timeout)

    def db_lock(self) -> FileLock:
        """The short DB-wide lock taken around directory and link creation/removal."""
        return FileLock(self._lock_path("<db>"), self.lock_timeout)

    @contextlib.contextmanager
    def _deleting(self, key: str | None):  # type: ignore[no-untyped-def]
        """:meth:`record_lock` of ``key`` (None: :meth:`db_lock`) for a delete, or, when its
        file cannot be made for want of space (a filesystem out of inodes or quota), no
        lock, said: the delete that frees the space is not refused, as iscsiadm's is not
        (its lock is in /run).  Nothing is written there meanwhile: a write needs a temp
        file of its own."""
        lock: FileLock | None = None
        try:
            lock = self.db_lock() if key is None else self.record_lock(key)
            lock.acquire()
        except DBError as e:
            if getattr(e.__cause__, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if not self._no_lock_said:
                self._no_lock_said = True
                self.warn(f"{e}: deleting without iscsictl's lock")
            lock = None
        if lock is None:  # (outside the except: the delete's own errors are not its)
            yield _NO_LOCK
            return
        try:
            yield lock
        finally:
            lock.release()

    def _read_bytes(self, path: str) -> bytes:
        try:
            data = read_regular(path, MAX_RECORD_BYTES + 1)
            if len(data) > MAX_RECORD_BYTES:  # not a record: and parsing it costs ~14x
                raise RecordTooLarge(path, f"larger than {MAX_RECORD_BYTES} bytes")
            return data
        except FileNotFoundError:
            raise RecordNotFound(f"no record {path}") from None
        except IsADirectoryError:
            raise CorruptRecord(path, "is a directory") from None
        except OSError as e:
            raise DBError(f"cannot read {path}: {e.strerror}") from e

    def _serialize(self, rec: Record) -> bytes:
        return format_record(rec, for_file=True, version=self.version).encode(
            "utf-8", "surrogateescape")

    def _write_file(self, path: str, rec: Record) -> None:
        """Write ``rec`` to its file ``path`` (atomic_write's ``keep``: a record replaced
        keeps its owner and mode, less group and other bits once it holds a secret, and a
        symlinked record is written through its link, as iscsiadm's rewrite in place)."""
        atomic_write(path, self._serialize(rec), tmp_dir=self._tmp_dir(), keep=True,
                     private=_holds_secret(rec))

    def _stage_file(self, path: str, rec: Record) -> tuple[str, str]:
        """(temp file, the file it is to be renamed over) of :meth:`_write_file`'s write of
        ``rec`` to ``path``, the temp file not yet flushed (the caller flushes many at
        once: :func:`syncfs`).  Raises DBError."""
        path, mode, owner = _kept(path, FILE_MODE, _holds_secret(rec))
        return _stage(path, self._serialize(rec), mode, owner, self._tmp_dir(), sync=False), path

    # ---- node paths -----------------------------------------------------------------------
    def node_path(self, nid: NodeID) -> str:
        """Path of the node record file of ``nid``; one of tag -1 is the old-style file
        ``<ip>,<port>`` (what idbm_rec_write makes of it: a SendTargets answer without a
        TargetAddress), but where a directory ``<ip>,<port>,-1`` holds it."""
        if nid.legacy:
            return self._p(NODES, nid.target, nid.portal_dir)
        path = self._p(NODES, nid.target, nid.portal_dir, nid.iface)
        if nid.tpgt == schema.TPGT_UNKNOWN and not os.path.lexists(path):
            return self._p(NODES, nid.target, f"{nid.address},{nid.port}")
        return path

    def _portal_dir_path(self, nid: NodeID) -> str:
        return self._p(NODES, nid.target, f"{nid.address},{nid.port},{nid.tpgt}")

    @staticmethod
    def _lock_key(nid: NodeID) -> str:
        return f"node\0{nid.target}\0{nid.address}\0{nid.port}\0{nid.tpgt}\0{nid.iface}"

    # ---- listing ---------------------------------------------------------------------------
    def list_nodes(self, target: str | None = None, address: str | None = None,
                   port: int | None = None, tpgt: int | None = None,
                   iface: str | None = None, dangling: bool = True) -> list[NodeID]:
        """Node records matching the filters (None = any), sorted like ``iscsiadm -m node``
        (target dir, then portal dir, then iface, by byte order).  Uses directory names only
        (legacy record files are opened to learn their iface); never parses record files, never
        locks.  Entries whose path has the wrong shape are warned and skipped; so, without
        ``dangling``, is a record that is a symbolic link to nothing (a listing's: a delete
        still finds it, to remove the link)."""
        nodes_dir = self._p(NODES)
        out: list[NodeID] = []
        if target is not None:
            if not target or target in (".", "..") or "/" in target or "\0" in target:
                return out  # no record can have that name (and no path outside the DB)
            targets = [target]
        else:
            try:
                targets = sorted(e.name for e in os.scandir(nodes_dir)
                                 if e.name[0] != "." and self._is_dir(e))
            except (FileNotFoundError, NotADirectoryError):
                return out
            except OSError as e:
                raise DBError(f"{nodes_dir}: cannot list: {e.strerror}") from None
        for t in targets:
            tdir = os.path.join(nodes_dir, t)
            try:
                entries = sorted((e.name, is_dir) for e in os.scandir(tdir)
                                 if (is_dir := self._is_dir(e)) is not None)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                self.warn(f"{tdir}: cannot list: {e.strerror}")
                continue
            for name, is_dir in entries:
                if name[0] == ".":
                    continue
                pp = _parse_portal_dir(name)
                if pp is None:
                    self.warn(f"{os.path.join(tdir, name)}: not a portal '<ip>,<port>,<tpgt>': "
                              "skipped")
                    continue
                a, p, g = pp
                if (address is not None and a != address) or (port is not None and p != port):
                    continue
                if not is_dir:
                    if g is not None:
                        self.warn(f"{os.path.join(tdir, name)}: a file where a portal directory "
                                  "belongs: skipped")
                        continue
                    if tpgt is not None and tpgt != schema.TPGT_UNKNOWN:
                        continue
                    fields = self._legacy_fields(os.path.join(tdir, name))
                    if fields is None:
                        continue
                    ifname, file_tpgt = fields
                    if iface is None or iface == ifname:
                        out.append(NodeID(t, a, p, schema.TPGT_UNKNOWN, ifname, legacy=True,
                                          legacy_tpgt=file_tpgt))
                    continue
                if g is None:
                    self.warn(f"{os.path.join(tdir, name)}: directory without tpgt: skipped")
                    continue
                if tpgt is not None and g != tpgt:
                    continue
                pdir = os.path.join(tdir, name)
                try:
                    ifaces = []
                    for e in os.scandir(pdir):
                        if e.name[0] == ".":
                            continue
                        is_dir = self._is_dir(e)
                        if is_dir is False and not dangling and e.is_symlink() \
                                and not e.is_file():
                            self.warn(f"{e.path}: a symbolic link to no record file: skipped")
                        elif is_dir is False:
                            ifaces.append(e.name)
                        elif is_dir:
                            self.warn(f"{e.path}: a directory where a record file belongs: "
                                      "skipped")
                    ifaces.sort()
                except OSError as e:  # its records cannot be read: said, as the target's
                    self.warn(f"{pdir}: cannot list: {e.strerror}")
                    continue
                for ifn in ifaces:
                    if iface is None or iface == ifn:
                        out.append(NodeID(t, a, p, g, ifn))
        return out

    find_nodes = list_nodes

    def _is_dir(self, entry: os.DirEntry) -> bool | None:
        """``entry.is_dir()`` (following a link); None, with a warning, when it cannot be
        told (a link loop, ELOOP)."""
        try:
            return entry.is_dir()
        except OSError as e:
            self.warn(f"{entry.path}: {e.strerror}: skipped")
            return None

    def _legacy_fields(self, path: str) -> tuple[str, int] | None:
        """A legacy record file's iface name (``iface.iscsi_ifacename``, else default) and its
        own ``node.tpgt`` (-1 when absent or not a number); None when it cannot be read."""
        try:
            data = read_regular(path, MAX_RECORD_BYTES)
        except OSError:
            return None
        ifname, tpgt = "default", schema.TPGT_UNKNOWN
        for line in data.split(b"\n"):
            key, eq, v = line.partition(b"=")
            key, v = key.strip(), v.strip()
            if not eq or not v:
                continue
            if key == b"iface.iscsi_ifacename":
                ifname = v.decode("utf-8", "surrogateescape")
            elif key == b"node.tpgt" and (v[1:] if v[:1] == b"-" else v).isdigit() \
                    and len(v) <= 11 and -1 <= int(v) <= 0xFFFF:
                tpgt = int(v)
        return ifname, tpgt

    def flat_listing(self, **filters) -> list[str]:
        """Lines of ``iscsiadm -m node`` (no newlines)."""
        return [n.flat() for n in self.list_nodes(dangling=False, **filters)]

    def tree_listing(self, **filters) -> list[str]:
        """Lines of ``iscsiadm -m node -P 1`` (see :func:`.record.format_node_tree`)."""
        return format_node_tree(self.list_nodes(dangling=False, **filters))

    # ---- node read -------------------------------------------------------------------------
    def read_node(self, nid: NodeID) -> Record:
        """Read and parse one node record.  Raises RecordNotFound, CorruptRecord.  Reads take
        no lock; one found damaged is read again (:meth:`_read_settled`)."""
        path = self.node_path(nid)
        return self._read_settled(path, lambda data: parse_record(schema.NODE, data, path,
                                                                  self.warn))

    def _read_settled(self, path: str, parse: Callable[[bytes], Record],
                      emptied_first: bool = False) -> Record:
        """``parse`` of the file ``path``, read without a lock; one found damaged (not one
        too large) is read again under iscsiadm's lock, where iscsiadm could have been
        rewriting it in place (an empty or cut file meanwhile).  ``emptied_first`` (an
        iface: iscsiadm's iface writer empties its file before it takes the lock, and
        fills it after, usr/iface.c iface_conf_write): one still empty and emptied within
        the last 2 s is read again every 20 ms within :data:`REREAD_WAIT` s; one empty for
        longer (a crash's) is damaged at once.  iscsiadm's rewrite takes milliseconds: a
        reader (the daemon's loop among them) waits that long at most.  Raises as
        ``parse`` and :meth:`_read_bytes`."""
        data = self._read_bytes(path)
        try:
            return parse(data)
        except RecordTooLarge:
            raise
        except CorruptRecord as damaged:
            if not isinstance(self.iscsiadm_lock, IscsiadmLock):
                raise
            deadline = time.monotonic() + REREAD_WAIT
            while True:
                try:
                    with self.iscsiadm_lock.within(max(0.0, deadline - time.monotonic())):
                        data = self._read_bytes(path)
                    return parse(data)
                except LockTimeout:
                    raise damaged from None
                except CorruptRecord as again:
                    if data or not emptied_first or time.monotonic() >= deadline or \
                            not _changed_within(path, 2.0):
                        raise again from None
                time.sleep(0.02)

    def read_nodes(self, nids: Iterable[NodeID] | None = None, **filters) -> list[Record]:
        """Parsed records ``nids`` names, or (None) those matching the filters of
        :meth:`list_nodes`; damaged ones are warned and skipped (as iscsiadm's
        idbm_for_each_rec skips them)."""
        out = []
        for nid in self.list_nodes(**filters) if nids is None else nids:
            try:
                out.append(self.read_node(nid))
            except RecordNotFound:
                continue
            except DBError as e:
                self.warn(str(e))
        return out

    def node_exists(self, nid: NodeID) -> bool:
        return os.path.lexists(self.node_path(nid))

    def discovery_exists(self, did: DiscoveryID) -> bool:
        return os.path.lexists(self.discovery_path(did))

    # ---- node create / write ---------------------------------------------------------------
    def new_node_record(self, target: str, address: str, port: int = schema.ISCSI_LISTEN_PORT,
                        tpgt: int = schema.TPGT_UNKNOWN, iface: str = "default", *,
                        discovery: DiscoveryID | None = None) -> Record:
        """A node record as open-iscsi creates one: compiled defaults overlaid with iscsid.conf
        (``idbm_node_setup_from_conf``), the identity, the iface record's settings and, when
        ``discovery`` found it, that discovery's fields (``node.discovery_*``).  Nothing is
        written.  Raises InvalidRecordName, RecordNotFound (unknown iface)."""
        for what, v in (("target name", target), ("portal address", address),
                        ("iface name", iface)):
            _check_component(what, v)
        _check_iface_name_length(iface)
        rec = self.config.new_record(schema.NODE, self.warn)
        ifrec = self.read_iface(iface)
        for k in schema.IFACE_KEYS:
            rec.values[k.name] = ifrec.values[k.name]
        v = rec.values
        v["node.name"] = target
        v["node.conn[0].address"] = address
        v["node.conn[0].port"] = convert(schema.NODE.by_name["node.conn[0].port"], port)
        v["node.tpgt"] = convert(schema.NODE.by_name["node.tpgt"], tpgt)
        if discovery is not None:
            self._set_discovery_fields(rec, discovery)
        return rec

    @_changes_db
    def create_node(self, target: str, address: str, port: int = schema.ISCSI_LISTEN_PORT,
                    tpgt: int = schema.TPGT_UNKNOWN, iface: str = "default", *,
                    values: dict | None = None, discovery: DiscoveryID | None = None,
                    overwrite: bool = False) -> Record:
        """Create a node record (``iscsiadm -m node -o new``, or a discovered record when
        ``discovery`` is given).  ``values``: extra ``{key: value}`` applied after the defaults
        (validated, lookup keys allowed).  tpgt -1 gives the legacy file ``<ip>,<port>``;
        a known tpgt links the record under ``static/`` (or under the discovery record's dir).
        Raises RecordExists (unless ``overwrite``), RecordNotFound (unknown iface),
        InvalidKey/InvalidValue, InvalidRecordName, LockTimeout."""
        rec = self.new_node_record(target, address, port, tpgt, iface, discovery=discovery)
        for k, val in (values or {}).items():
            rec.set(k, val)
        if overwrite:  # iscsiadm's idbm_add_node: the old record's links go with it, once
            nid = NodeID.of(rec)  # the new one is written (a failed write loses neither)
            with self.record_lock(self._lock_key(nid)):
                self._write_node_locked(rec, nid, relinked=nid if self.node_exists(nid)
                                        else None)
            return rec
        self.write_node(rec, create=not overwrite)
        return rec

    @staticmethod
    def _discovery_fields(did: DiscoveryID) -> dict[str, object]:
        """The node.discovery_* values of a record ``did`` found."""
        return {"node.discovery_type": "send_targets" if did.type == "sendtargets"
                else did.type, "node.discovery_address": did.address,
                "node.discovery_port": did.port}

    def _set_discovery_fields(self, rec: Record, did: DiscoveryID) -> None:
        rec.values.update(self._discovery_fields(did))

    @_changes_db
    def write_node(self, rec: Record, *, create: bool = False) -> NodeID:
        """Write a whole node record (atomically) where its identity says, creating
        directories and the discovery/static link.  ``create=True`` refuses an existing record
        (RecordExists).  Returns the NodeID."""
        nid = NodeID.of(rec)
        for what, v in (("target name", nid.target), ("portal address", nid.address),
                        ("iface name", nid.iface)):
            _check_component(what, v)
        with self.record_lock(self._lock_key(nid)):
            return self._write_node_locked(rec, nid, create)

    def _write_node_locked(self, rec: Record, nid: NodeID, create: bool = False,
                           relinked: NodeID | None = None) -> NodeID:
        """:meth:`write_node` under the record's lock, which the caller holds.  The
        directories, the file and the link are made under the DB lock, so that a sibling
        record's delete cannot remove a directory just made for this one.  ``relinked``:
        the record whose discovery links the new one replaces, removed once it is written
        and linked (but the link it keeps)."""
        legacy = nid.tpgt == schema.TPGT_UNKNOWN
        with self.db_lock():
            tdir = self._mkdirs(NODES, nid.target)
            legacy_path = os.path.join(tdir, f"{nid.address},{nid.port}")
            if legacy:
                if os.path.isdir(legacy_path):
                    raise InvalidValue("node.tpgt", "-1", f"{legacy_path} is a directory")
                path = legacy_path
                if create and os.path.lexists(path):
                    raise RecordExists(f"node record {nid.flat()} exists ({path})")
            else:
                pdir = os.path.join(tdir, f"{nid.address},{nid.port},{nid.tpgt}")
                path = os.path.join(pdir, nid.iface)
                if create and os.path.lexists(path):
                    raise RecordExists(f"node record {nid.flat()} iface {nid.iface} exists")
                self._mkdirs(NODES, nid.target, pdir.rsplit("/", 1)[1])
            try:
                self._write_file(path, rec)
            except DBError:  # e.g. a full disk: no empty directories left behind
                if not legacy:
                    self._rmdir_quiet(os.path.dirname(path))
                self._rmdir_quiet(tdir)
                raise
            if not legacy:
                if os.path.isfile(legacy_path) and not os.path.islink(legacy_path):
                    # the old style record of this portal, converted (as iscsiadm does):
                    # removed once the new one is written, so a failed write loses neither
                    try:
                        os.unlink(legacy_path)
                    except FileNotFoundError:
                        pass
            made = None if legacy else self._link_node(rec, nid)
            if relinked is not None:
                self._unlink_node_links(relinked, keep=made)
        rec.path = path
        return NodeID(nid.target, nid.address, nid.port, nid.tpgt, nid.iface, legacy)

    def _legacy_record(self, nid: NodeID) -> NodeID | None:
        """The old-style record (the file ``<ip>,<port>``, tpgt unknown) of ``nid``'s target,
        portal and iface, if there is one (iscsiadm's idbm_rec_read looks there first)."""
        path = self._p(NODES, nid.target, f"{nid.address},{nid.port}")
        if not os.path.isfile(path) or os.path.islink(path):
            return None
        fields = self._legacy_fields(path)
        if fields is None or fields[0] != nid.iface:
            return None
        return NodeID(nid.target, nid.address, nid.port, schema.TPGT_UNKNOWN, nid.iface,
                      legacy=True)

    def _refresh_found(self, nid: NodeID, did: DiscoveryID, legacy: NodeID | None = None
                       ) -> bool:
        """A record found again by ``did``: its discovery fields set and its link ensured,
        its settings kept; read and written under its lock, so that an update made
        meanwhile is not undone.  ``legacy``: the record found in its place under another
        tag (the old-style file, tpgt unknown, or :meth:`_retagged`'s), converted to
        ``nid``'s tpgt (both locks held).  False when the record is damaged
        (warned) or gone: the caller makes it anew."""
        with contextlib.ExitStack() as locks:
            if legacy is not None and self._lock_key(legacy) != self._lock_key(nid):
                locks.enter_context(self.record_lock(self._lock_key(legacy)))
            locks.enter_context(self.record_lock(self._lock_key(nid)))
            path = self.node_path(legacy or nid)
            try:
                raw = self._read_bytes(path)
                rec = parse_record(schema.NODE, raw, path, self.warn)
            except RecordNotFound:
                return False
            except RecordTooLarge:  # iscsiadm reads it: kept, its settings not lost
                raise
            except CorruptRecord as e:
                if os.path.islink(path):  # made anew in its place, not written where the
                    try:  # link points (a file outside the database, perhaps no record)
                        os.unlink(path)
                    except OSError as e2:
                        raise DBError(f"{e}; cannot remove the link: {e2.strerror}") from None
                    self.warn(f"{e}: the symbolic link replaced by a record from defaults")
                else:
                    self.warn(f"{e}: recreated from defaults")
                return False
            source = [rec.values.get(k) for k in DISCOVERY_KEYS]
            self._set_discovery_fields(rec, did)
            v = rec.values
            # an old-style file (no tag in its place) keeps the tag it holds, as idbm reads it
            tpgt = v["node.tpgt"] if nid.tpgt == schema.TPGT_UNKNOWN else nid.tpgt
            named = NodeID.of(rec)
            if legacy is None and named != replace(nid, tpgt=tpgt):
                # a file copied from another record without its name changed, or written by
                # hand with only some keys: it is the record of its place (before, its
                # settings were written over the record it names, at each rediscovery)
                self.warn(f"{path} names {named.flat(signed=True)} iface {named.iface}: "
                          "kept as the record of its place, named after it")
            # the identity the target answered: its spelling of the address, and the tag
            # a legacy record did not know
            v["node.name"], v["node.conn[0].address"] = nid.target, nid.address
            v["node.conn[0].port"], v["node.tpgt"] = nid.port, tpgt
            v["iface.iscsi_ifacename"] = nid.iface
            if legacy is None and self._serialize(rec) == raw:  # unchanged: the file kept,
                if nid.tpgt != schema.TPGT_UNKNOWN:  # its link checked (an old-style file
                    with self.db_lock():  # has none: as idbm_add_node, "a bogus tpgt")
                        self._link_node(rec, nid)
                return True
            # found by another source now: the old one's link goes, as iscsiadm rewrites
            # the record (once it is written)
            moved = source != [rec.values.get(k) for k in DISCOVERY_KEYS]
            self._write_node_locked(rec, nid, relinked=(legacy or nid) if moved else None)
        return True

    def _link_node(self, rec: Record, nid: NodeID, dirs: dict | None = None) -> str | None:
        """Link ``rec``'s portal directory from its discovery source's directory (an
        existing link is kept); the link's path, None when its source has none; DBError
        when the link cannot be made.  ``dirs``: a cache of the discovery directories
        (None: not there), for callers linking many at once."""
        values = rec.values
        dtype = values["node.discovery_type"]
        rel_node = f"{NODES}/{nid.target}/{nid.portal_dir}"  # checked names: no '/' in them
        if dtype in ("send_targets", "isns"):
            source = (dtype, values["node.discovery_address"], values["node.discovery_port"])
            ddir = "" if dirs is None else dirs.get(source, "")
            if ddir == "":
                ddir = self._p(SEND_TARGETS if dtype == "send_targets" else ISNS,
                               f"{source[1]},{source[2]}")
                if not os.path.isdir(ddir):
                    ddir = None
                if dirs is not None:
                    dirs[source] = ddir
            if ddir is not None:
                link, target = f"{ddir}/{nid.link_name}", f"../../{rel_node}"
                if dtype == "isns":  # the old-style link it replaces (iscsiadm's overwrite)
                    self._unlink_quiet(self._p(ISNS, nid.link_name))
            elif dtype == "isns":
                # no server directory (-m discovery -t isns stores no discovery record):
                # iscsiadm's old-style link in isns/ itself (setup_disc_to_node_link)
                link, target = f"{self._mkdirs(ISNS)}/{nid.link_name}", f"../{rel_node}"
            else:
                return None  # no discovery record dir: iscsiadm links nothing either
        elif dtype in ("static", "fw"):
            d = self._mkdirs(STATIC if dtype == "static" else FW)
            link, target = f"{d}/{nid.link_name}", f"../{rel_node}"
        else:
            return None
        try:
            os.symlink(target, link)
        except FileExistsError:
            pass  # linked already (or a dangling link: kept, as iscsiadm does)
        except OSError as e:  # e.g. a name over NAME_MAX: the record would be orphaned
            raise DBError(f"Could not make link {link}: {e.strerror}") from e
        return link

    # ---- node update / delete --------------------------------------------------------------
    @_changes_db
    def update_node(self, nid: NodeID, name: str, value) -> Record:
        """``-o update -n name -v value`` on one record: read, validate (read-only keys refused,
        passwords set their length), write atomically, all under the record's lock.
        Raises RecordNotFound, CorruptRecord, InvalidKey, ReadOnlyKey, InvalidValue,
        LockTimeout."""
        return self.update_node_many(nid, {name: value})

    @_changes_db
    def update_node_many(self, nid: NodeID, updates: dict, *,
                         discovery: DiscoveryID | None = None, iface_copy: bool = False
                         ) -> Record:
        """Several ``-o update`` settings applied in one read-modify-write.  With
        ``discovery`` the record is being found again by that source: its discovery fields
        are set, lookup keys may change too, and the source's link is ensured; another
        source's goes (a record the firmware finds now, a SendTargets source had found:
        iscsiadm rewrites it, its old link removed, so that deleting that source does not
        delete the boot disk's record).  With
        ``iface_copy`` the updates are its iface's new ``iface.*`` values (the record holds
        a copy of them, which node mode may not change)."""
        path = self.node_path(nid)
        with contextlib.ExitStack() as locks:
            locks.enter_context(self.record_lock(self._lock_key(nid)))
            rec, source = self._updated(path, updates, discovery, iface_copy)
            moved = source != [rec.values.get(k) for k in DISCOVERY_KEYS]
            tagged = NodeID.of(rec)
            if nid.legacy and tagged.tpgt != schema.TPGT_UNKNOWN:
                # an old-style file that holds its tag (iscsiadm 2.0.87x wrote them):
                # written as that tag's record and the file removed, as idbm_rec_write
                # converts it ("Old style portal as a file, but with tpgt"); a record of
                # another iface then made for that portal no longer takes its place
                if self._lock_key(tagged) != self._lock_key(nid):
                    locks.enter_context(self.record_lock(self._lock_key(tagged)))
                self._write_node_locked(rec, tagged)
                return rec
            self._write_file(path, rec)
            if discovery is not None and not nid.legacy:
                with self.db_lock():  # the new link first: a failure keeps the old
                    made = self._link_node(rec, nid)
                    if moved:
                        self._unlink_node_links(nid, keep=made)
        return rec

    def _updated(self, path: str, updates: dict, discovery: DiscoveryID | None,
                 iface_copy: bool) -> tuple[Record, list]:
        """The record at ``path`` with :meth:`update_node_many`'s ``updates`` applied, and
        its discovery source (:data:`DISCOVERY_KEYS`' values) before them."""
        rec = parse_record(schema.NODE, self._read_bytes(path), path, self.warn)
        source = [rec.values.get(k) for k in DISCOVERY_KEYS]
        if discovery is None:  # a key the DB's open-iscsi version has not: no key of its
            for k in updates:  # records (idbm_verify_param), not taken and dropped
                key = schema.NODE.by_name.get(k)
                if key is not None and not schema.key_in_version(key, self.version):
                    raise InvalidKey(k)
        for k, v in updates.items():
            rec.set(k, v, check_update=discovery is None and not iface_copy)
        if discovery is not None:
            self._set_discovery_fields(rec, discovery)
        return rec, source

    def update_nodes(self, nids: Iterable[NodeID], updates: dict, *, iface_copy: bool = False
                     ) -> Iterator[tuple[NodeID, Record | DBError]]:
        """:meth:`update_node_many` of each of ``nids``: (NodeID, its Record as written, or
        the DBError that left it as it was), in ``nids``' order.

        Many records are written in runs (at most :data:`UPDATE_RUN` records or
        :data:`UPDATE_RUN_TIME` s each), each under one take of iscsiadm's lock: each
        record read, changed and written to a temp file under its own lock, the filesystem
        flushed once (syncfs), the files renamed in place and the filesystem flushed again.
        Between two runs the lock is left free for :data:`UPDATE_GAP` s, for an iscsiadm
        that waits for it (it tries every 10 ms: taken again at once, it was starved).
        Before, each record took two fsyncs and its own take of the lock: a 4000-record
        update kept a one-record iscsiadm update waiting 87 s on a disk with 10 ms
        flushes.  An old-style record (tag unknown, which its write may convert) is
        written alone after its run's."""
        nids = list(dict.fromkeys(nids))  # (one record's lock is not taken twice)
        if len(nids) < UPDATE_BATCH_MIN:  # an fsync each costs less than a whole fs's flush
            for nid in nids:
                try:
                    yield nid, self.update_node_many(nid, updates, iface_copy=iface_copy)
                except DBError as e:
                    yield nid, e
            return
        done = 0
        while done < len(nids):
            if done and isinstance(self.iscsiadm_lock, IscsiadmLock):
                time.sleep(UPDATE_GAP)
            results = self._update_run(nids[done:done + UPDATE_RUN], updates, iface_copy)
            done += len(results)
            yield from results

    @_changes_db
    def _update_run(self, nids: list, updates: dict, iface_copy: bool) -> list:
        """One run of :meth:`update_nodes` from the start of ``nids``: its results, as many
        as it took."""
        start = time.monotonic()
        results: dict = {}
        staged: list = []  # (NodeID, Record, temp file, final path)
        alone: list = []
        try:
            with contextlib.ExitStack() as locks:
                for nid in nids:
                    if nid.legacy:
                        alone.append(nid)
                    else:
                        try:
                            path = self.node_path(nid)
                            locks.enter_context(self.record_lock(self._lock_key(nid)))
                            rec, _ = self._updated(path, updates, None, iface_copy)
                            staged.append((nid, rec, *self._stage_file(path, rec)))
                        except DBError as e:
                            results[nid] = e
                    if time.monotonic() - start >= UPDATE_RUN_TIME:
                        break
                self._put_staged(staged, results)
        finally:
            for _nid, _rec, tmp, _path in staged:
                _remove_quiet(tmp)  # (gone once renamed)
        for nid in alone:
            try:
                results[nid] = self.update_node_many(nid, updates, iface_copy=iface_copy)
            except DBError as e:
                results[nid] = e
        return [(nid, results[nid]) for nid in nids if nid in results]

    def _put_staged(self, staged: list, results: dict) -> None:
        """Flush ``staged``'s temp files, rename each over its record, flush again; each
        record's result into ``results``."""
        try:
            syncfs(self.db_root)
        except OSError as e:  # not on the disk: none is put in place
            for nid, _rec, _tmp, path in staged:
                results[nid] = DBError(f"cannot write {path}: {e.strerror}")
            return
        for nid, rec, tmp, path in staged:
            try:
                os.replace(tmp, path)
                results[nid] = rec
            except OSError as e:
                if e.errno != errno.EXDEV:  # (a linked record's file on another fs: below)
                    results[nid] = DBError(f"cannot write {path}: {e.strerror}")
                    continue
                try:
                    self._write_file(path, rec)
                    results[nid] = rec
                except DBError as e2:
                    results[nid] = e2
        try:  # the renames on the disk too
            syncfs(self.db_root)
        except OSError as e:
            self.warn(f"{self.db_root}: the updated records may not be on the disk: "
                      f"{e.strerror}")

    @_changes_db
    def delete_node(self, nid: NodeID, *, found_by: DiscoveryID | None = None) -> bool:
        """Delete one node record, the links that point at it (send_targets/*, isns/*, isns/,
        static/, fw/), and its portal and target directories when they become empty.
        Works on damaged records.  ``found_by``: only while the record still says that
        discovery found it (its node.discovery_* fields, read under its lock: another
        discovery may have found it meanwhile, as iscsiadm's delete_stale_rec checks);
        False, nothing deleted, when it does not.  Raises RecordNotFound, LockTimeout."""
        path = self.node_path(nid)
        with self._deleting(self._lock_key(nid)) as lock:
            if not os.path.lexists(path):
                lock.remove_when_released()
                raise RecordNotFound(f"no record {path}")
            if found_by is not None:
                try:
                    rec = parse_record(schema.NODE, self._read_bytes(path), path, lambda m: None)
                except DBError:
                    rec = None  # damaged: whose it is cannot be read; deleted as before
                wanted = self._discovery_fields(found_by)
                if rec is not None and any(rec.values.get(k) != v for k, v in wanted.items()):
                    return False
            with self._deleting(None):
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        raise CorruptRecord(path, "is a directory")
                    os.unlink(path)
                except FileNotFoundError:
                    raise RecordNotFound(f"no record {path}") from None
                except OSError as e:
                    raise DBError(f"Could not remove {path}: {e.strerror}") from e
                if not nid.legacy:
                    self._unlink_node_links(nid)
                    pdir = self._portal_dir_path(nid)
                    self._remove_old_temp_files(pdir, nid.iface)
                    self._rmdir_quiet(pdir)
                self._rmdir_quiet(self._p(NODES, nid.target))
            lock.remove_when_released()
        return True

    @staticmethod
    def _remove_old_temp_files(pdir: str, iface: str) -> None:
        """The temp files of ``iface``'s record that a crash left in its portal directory
        before they were written in :meth:`_tmp_dir` (``.<iface>.*.tmp``, ``.<iface>.<pid>
        .new``): iscsiadm reads them as records, and they keep the directory."""
        try:
            names = os.listdir(pdir)
        except OSError:
            return
        for name in names:
            if name.startswith(f".{iface}.") and name.endswith((".tmp", ".new")):
                try:
                    os.unlink(os.path.join(pdir, name))
                except OSError:
                    pass

    @staticmethod
    def _unlink_quiet(path: str) -> None:
        """Remove a link if it is one (nothing else, and no error when it is not there)."""
        if os.path.islink(path):
            try:
                os.unlink(path)
            except OSError:
                pass

    @staticmethod
    def _rmdir_quiet(path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass

    def _unlink_node_links(self, nid: NodeID, keep: str | None = None) -> None:
        """Remove the discovery links to ``nid``'s record (but ``keep``, a path)."""
        name = nid.link_name
        keep = keep and os.path.normpath(keep)
        cands = [self._p(STATIC, name), self._p(FW, name), self._p(ISNS, name)]
        for base in (SEND_TARGETS, ISNS):
            try:
                for e in os.scandir(self._p(base)):
                    if e.is_dir(follow_symlinks=False):
                        cands.append(os.path.join(e.path, name))
            except OSError:
                pass
        for c in cands:
            if os.path.islink(c) and os.path.normpath(c) != keep:
                try:
                    os.unlink(c)
                except OSError as e:
                    self.warn(f"cannot remove link {c}: {e.strerror}")

    # ---- discovery records -----------------------------------------------------------------
    def discovery_path(self, did: DiscoveryID) -> str:
        """The file of ``did``'s discovery record: ``<type dir>/<ip>,<port>/<config name>``,
        or the file ``<type dir>/<ip>,<port>`` itself where that is one (a record of open-iscsi
        before svn 780, which iscsiadm still reads: idbm_open_rec_r)."""
        portal = self._p(did.type_dir, f"{did.address},{did.port}")
        return portal if _is_flat(portal) else os.path.join(portal, did.config_name)

    def list_discovery(self) -> list[DiscoveryID]:
        """Discovery records (send_targets/ then isns/), sorted; by directory names only.
        DBError when a directory of them cannot be listed (permission denied)."""
        out = []
        for dtype, base in (("sendtargets", SEND_TARGETS), ("isns", ISNS)):
            try:  # a file: a record of open-iscsi before svn 780 (discovery_path)
                names = sorted(e.name for e in os.scandir(self._p(base))
                               if e.is_dir(follow_symlinks=False) or e.name[0] != "."
                               and _parse_portal_dir(e.name) is not None and _is_flat(e.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:  # (it was a silent "no records", 21: permission denied)
                raise DBError(f"{self._p(base)}: cannot list: {e.strerror}") from None
            for n in names:
                pp = _parse_portal_dir(n)
                if pp is None or pp[2] is not None:
                    self.warn(f"{self._p(base, n)}: not a discovery '<ip>,<port>' dir: skipped")
                    continue
                did = DiscoveryID(dtype, pp[0], pp[1])
                path = self.discovery_path(did)
                if os.path.isfile(path):
                    out.append(did)
                elif os.path.lexists(path):  # a directory, FIFO, dangling link ...
                    self.warn(f"{path}: not a regular file: discovery record skipped")
        return out

    def new_discovery_record(self, did: DiscoveryID) -> Record:
        """A discovery record with compiled + iscsid.conf defaults and the identity."""
        _check_component("discovery address", did.address)
        rec = self.config.new_record(did.kind, self.warn)
        rec.values["discovery.sendtargets.address"] = did.address
        rec.values["discovery.sendtargets.port"] = int(did.port)
        rec.values["discovery.type"] = did.type
        return rec

    @_changes_db
    def create_discovery(self, did: DiscoveryID, *, values: dict | None = None,
                         overwrite: bool = True) -> Record:
        """Create (``discoverydb -o new``) a discovery record.  iscsiadm overwrites an existing
        one, hence ``overwrite=True`` by default; with False, RecordExists."""
        rec = self.new_discovery_record(did)
        for k, v in (values or {}).items():
            rec.set(k, v)
        return self.store_discovery(did, rec, overwrite=overwrite)

    @_changes_db
    def store_discovery(self, did: DiscoveryID, rec: Record, *,
                        overwrite: bool = True) -> Record:
        """Write ``rec`` (made by :meth:`new_discovery_record`) as ``did``'s discovery
        record, as :meth:`create_discovery` does; ``rec`` itself, its ``path`` set."""
        path = self.discovery_path(did)
        with self.record_lock(self._discovery_lock_key(did)):
            with self.db_lock():
                if not overwrite and os.path.lexists(path):
                    raise RecordExists(f"Discovery record [{did.address},{did.port}] exists")
            path = self._write_discovery(did, rec)
        rec.path = path
        return rec

    def _discovery_lock_key(self, did: DiscoveryID) -> str:
        return "disc\0" + self._p(did.type_dir, f"{did.address},{did.port}")

    def _write_discovery(self, did: DiscoveryID, rec: Record) -> str:
        """Write ``rec`` as ``did``'s discovery record (its lock held) in its directory,
        which a record of open-iscsi before svn 780, the file ``<ip>,<port>`` itself,
        becomes first, as iscsiadm converts it (idbm_open_rec_w); returns its path."""
        portal = self._p(did.type_dir, f"{did.address},{did.port}")
        path, aside = os.path.join(portal, did.config_name), None
        try:
            with self.db_lock():
                if _is_flat(portal):  # set aside until its directory holds it (a crash
                    aside = f"{self._tmp_dir()}/{os.getpid()}.{did.address},{did.port}"
                    with contextlib.suppress(OSError):  # touched first: no sweep of old
                        os.utime(portal)  # temp files (an hour untouched) takes it there
                    try:  # meanwhile leaves it there, not nowhere)
                        os.rename(portal, aside)
                    except OSError as e:
                        aside = None
                        raise DBError(f"cannot convert {portal} to a directory: "
                                      f"{e.strerror}") from None
                self._mkdirs(did.type_dir, f"{did.address},{did.port}")
            self._write_file(path, rec)
        except BaseException:  # (Ctrl-C too)
            if aside is not None:  # back as it was
                with self.db_lock():
                    self._rmdir_quiet(portal)
                    with contextlib.suppress(OSError):
                        os.rename(aside, portal)
            raise
        if aside is not None:
            with contextlib.suppress(OSError):
                os.unlink(aside)
        return path

    def read_discovery(self, did: DiscoveryID) -> Record:
        """Parse one discovery record.  Raises RecordNotFound, CorruptRecord."""
        path = self.discovery_path(did)
        try:  # (one found damaged read again, as a node record)
            return self._read_settled(path, lambda data: parse_record(did.kind, data, path,
                                                                      self.warn))
        except RecordNotFound:
            raise RecordNotFound(
                f"Discovery record [{did.address},{did.port}] not found.") from None

    @_changes_db
    def update_discovery(self, did: DiscoveryID, name: str, value) -> Record:
        """``discoverydb -o update -n name -v value``.  Raises as :meth:`update_node`."""
        return self.update_discovery_many(did, {name: value})

    @_changes_db
    def update_discovery_many(self, did: DiscoveryID, updates: dict) -> Record:
        """Several ``discoverydb -o update`` settings (key -> value, in order) in one
        read-modify-write: none is written when one is refused.  Raises as
        :meth:`update_node`."""
        with self.record_lock(self._discovery_lock_key(did)):
            rec = self.read_discovery(did)
            for name, value in updates.items():
                rec.update_key(name, value)
            rec.path = self._write_discovery(did, rec)
        return rec

    def discovery_nodes(self, did: DiscoveryID, old_style: bool = True) -> list[NodeID]:
        """Node records linked to the discovery record (by link names), sorted; for an iSNS
        server, with ``old_style``, also those linked from ``isns/`` itself that name it
        (:meth:`_old_style_isns_nodes`: a rediscovery's stale match)."""
        d = self._p(did.type_dir, f"{did.address},{did.port}")
        out = []
        try:
            entries = list(os.scandir(d))
        except OSError:  # none (a -m discovery -t isns keeps no server directory)
            entries = []
        for e in entries:
            if e.name == did.config_name or e.name[0] == ".":
                continue
            nid = _parse_link_name(e.name)
            if nid is None:
                self.warn(f"{e.path}: not a node link name: skipped")
                continue
            out.append(nid)
        if did.type == "isns" and old_style:
            out.extend(self._old_style_isns_nodes(did))
        return sorted(set(out))

    def _old_style_isns_nodes(self, did: DiscoveryID) -> list[NodeID]:
        """The records linked from ``isns/`` itself (iscsiadm's links of a ``-m discovery -t
        isns``, made without a server directory) that name ``did``'s server as their source:
        iscsiadm's stale-record match is by the record's discovery fields."""
        out = []
        try:
            entries = [e for e in os.scandir(self._p(ISNS)) if e.is_symlink()]
        except OSError:
            return out
        for e in entries:
            nid = _parse_link_name(e.name)
            if nid is None:
                continue
            try:
                v = self.read_node(nid).values
            except DBError:
                continue  # gone or damaged: not this source's to judge
            if (v.get("node.discovery_type") == "isns"
                    and v.get("node.discovery_address") == did.address
                    and v.get("node.discovery_port") == did.port):
                out.append(nid)
        return out

    def _in_runs(self, items: list, work: Callable[[Any], None],
                 run_end: Callable[[], None] | None = None) -> None:
        """``work(item)`` for each of ``items``, under iscsiadm's lock taken once a run (at
        most :data:`UPDATE_RUN` items or :data:`UPDATE_RUN_TIME` s) and left free
        :data:`UPDATE_GAP` s between runs, as :meth:`update_nodes`' runs: a change of
        thousands of records under one take held an iscsiadm beside it for as long (its
        own deletions take the lock a record at a time).  ``run_end()``, if given, ends
        each run, the lock still held."""
        done = 0
        while done < len(items):
            if done and isinstance(self.iscsiadm_lock, IscsiadmLock):
                time.sleep(UPDATE_GAP)
            start = time.monotonic()
            with self._changing():
                for item in items[done:done + UPDATE_RUN]:
                    work(item)
                    done += 1
                    if time.monotonic() - start >= UPDATE_RUN_TIME:
                        break
                if run_end is not None:
                    run_end()

    def delete_discovery(self, did: DiscoveryID, *, delete_nodes: bool = True) -> list[NodeID]:
        """Delete a discovery record (``discoverydb -o delete``) and, by default, the node
        records discovered through it, in runs (:meth:`_in_runs`).  Returns the deleted
        NodeIDs.  Raises RecordNotFound."""
        if not os.path.lexists(self.discovery_path(did)):
            raise RecordNotFound(f"Discovery record [{did.address},{did.port}] not found.")
        deleted: list[NodeID] = []

        def delete(nid: NodeID) -> None:
            try:
                self.delete_node(nid)
                deleted.append(nid)
            except RecordNotFound:
                pass
            except DBError as e:
                self.warn(str(e))
        if delete_nodes:  # the links in its directory only (iscsiadm's idbm_rm_disc_node_links)
            self._in_runs(self.discovery_nodes(did, old_style=False), delete)
        self._delete_discovery_record(did)
        return deleted

    @_changes_db
    def _delete_discovery_record(self, did: DiscoveryID) -> None:
        """``did``'s discovery record deleted, and its directory's links (a record of
        open-iscsi before svn 780 is the file ``<ip>,<port>``: no directory, no links)."""
        with self._deleting(self._discovery_lock_key(did)) as lock:
            path = self.discovery_path(did)
            d = os.path.dirname(path) if path.endswith(f"/{did.config_name}") else None
            with self._deleting(None):
                try:
                    if os.path.isdir(path) and not os.path.islink(path):  # made by hand
                        import shutil

                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise DBError(f"cannot delete {path}: {e.strerror}") from None
                for e in list(os.scandir(d)) if d and os.path.isdir(d) else []:
                    if e.is_symlink():
                        try:
                            os.unlink(e.path)
                        except OSError:
                            pass
                if d:
                    self._rmdir_quiet(d)
            lock.remove_when_released()

    def reconcile_discovery(self, did: DiscoveryID, found: Iterable[NodeID], *,
                            values: dict | None = None, delete_stale: bool = True,
                            create: bool = True, refresh: bool = True,
                            in_use: Callable[[NodeID], bool] | None = None,
                            keep_targets: Iterable[str] = ()) -> ReconcileResult:
        """Apply a discovery result as iscsiadm's default NEW|DELETE|UPDATE op does, but only
        over the records linked to this discovery source (no scan of the whole DB):

        * found and absent: created from iscsid.conf defaults (+ ``values``) with
          node.discovery_* set and linked under the discovery record's directory
          (``create``: iscsiadm's OP_NEW or OP_UPDATE);
        * found and present: kept with their settings; discovery fields refreshed and link
          ensured, under the record's lock (a damaged one is rewritten from defaults, with
          a warning; an old-style record of that portal, tpgt unknown, is converted to the
          tag found, and so is one this source linked under another tag, no longer
          found, the tag found being unknown too: a target that stopped sending its tag)
          (``refresh``: OP_UPDATE; otherwise left as they are);
        * linked before but not found now: deleted (``delete_stale``: OP_DELETE), but for
          one a running session uses (``in_use``), failed with RecordInUse as iscsiadm's
          delete_stale_rec; not those of ``keep_targets`` either (targets the answer
          named but that were left out of it, or lost a portal: still there, their
          records kept with their settings), nor those of a target whose record found
          could not be made (a full disk, a name over NAME_MAX: its old records are all
          it has; iscsiadm deletes them first; a record found that is there, but could
          not be refreshed, keeps no other), nor those of an iface whose record cannot be
          read now (:meth:`unreadable_ifaces`: damaged, not deleted).

        Per-record failures are collected in ``result.failed`` and never stop the others.
        The records found are made, and the stale ones deleted, in runs (:meth:`_in_runs`):
        an iscsiadm beside a rediscovery of thousands of records waits for one run, not
        for the whole (10,000 records whose tag changed: 20 s; after 30 s iscsiadm goes on
        without the lock: idbm_lock)."""
        res = ReconcileResult()
        found = list(dict.fromkeys(found))
        old, unmoved = self._reconcile_found(did, found, res, values, create, refresh,
                                             delete_stale)
        if not delete_stale:
            return res
        keep = set(keep_targets) | {nid.target for nid, _ in res.failed
                                    if not self.node_exists(nid)}

        gone = sorted(old - set(found) - unmoved)
        if gone:  # an iface whose record cannot be read now, or could not when the
            # discovery chose its ifaces (iscsiadm rewriting it), is not a deleted one
            unreadable = self.unreadable_ifaces() | self.left_out_ifaces
            gone = [nid for nid in gone if nid.iface not in unreadable]

        def stale(nid: NodeID) -> None:
            try:
                if in_use is not None and in_use(nid):
                    raise RecordInUse(nid.iface, nid.target, nid.address, nid.port)
                if self.delete_node(nid, found_by=did):
                    res.deleted.append(nid)
            except RecordNotFound:
                with self.db_lock():  # dangling link: remove it
                    self._unlink_node_links(nid)
            except DBError as e:
                res.failed.append((nid, e))
        self._in_runs([nid for nid in gone if nid.target not in keep], stale)
        return res

    def _reconcile_found(self, did: DiscoveryID, found: list, res: ReconcileResult,
                         values: dict | None, create: bool, refresh: bool,
                         delete_stale: bool) -> tuple[set, set]:
        """:meth:`reconcile_discovery`'s records found, made or refreshed into ``res``;
        returns (the records this source had linked, with, when ``delete_stale``, those
        its answer found that no link names; the records whose move to the tag found
        failed: not stale).  What it reads first (the links, the targets' listing) is read
        under one take of iscsiadm's lock, the records found are made in runs: a record an
        iscsiadm made or deleted between two runs is found by :meth:`_refresh_found` and
        :meth:`_create_nodes_batch` as it is then."""
        with self._changing():
            old = set(self.discovery_nodes(did))
            try:  # a target without a directory has no record: one listing, not a lookup each
                targets = set(os.listdir(self._p(NODES)))
            except FileNotFoundError:
                targets = set()
            except OSError:
                targets = None
            if delete_stale and did.type == "sendtargets" and targets:
                old |= self._unlinked_answers(did, targets, old)
        fresh: list = []
        template: Record | None = None
        retagged: dict | None = None
        unmoved: set = set()  # records whose move to the tag found failed: kept

        def make(nid: NodeID) -> None:
            nonlocal template, retagged
            legacy = None
            try:
                known = targets is None or nid.target in targets
                exists = known and self.node_exists(nid)
                if known and not exists:  # the old-style file (tpgt unknown) of that portal:
                    legacy = self._legacy_record(nid)  # converted to a known tag, or itself
                    if legacy is None and refresh:  # one this source found under another
                        if retagged is None:  # tag (or untagged now, tpgt -1): moved
                            retagged = self._retagged(old, found)
                        legacy = retagged.get((nid.target, host_key(nid.address), nid.port,
                                               nid.iface)) or self._renamed(retagged, nid)
                    exists = legacy is not None
                if not (refresh if exists else create):
                    return
                if exists and self._refresh_found(nid, did, legacy):
                    res.updated.append(nid)
                    return
                # absent, or damaged (then rewritten from the defaults)
                if template is None or template.values["iface.iscsi_ifacename"] != nid.iface:
                    template = self.new_node_record(nid.target, nid.address, nid.port,
                                                    nid.tpgt, nid.iface)
                    for k, v in (values or {}).items():
                        template.set(k, v)
                    self._set_discovery_fields(template, did)
                _check_component("target name", nid.target)
                _check_component("portal address", nid.address)
                rec = template.copy()
                v = rec.values
                v["node.name"], v["node.conn[0].address"] = nid.target, nid.address
                v["node.conn[0].port"], v["node.tpgt"] = nid.port, nid.tpgt
                if not exists and nid.tpgt != schema.TPGT_UNKNOWN:
                    fresh.append((rec, nid, template))  # written in the run's batch
                    return
                self.write_node(rec)
                res.added.append(nid)
            except DBError as e:
                res.failed.append((nid, e))
                if legacy is not None:  # its settings are still only there (a full disk):
                    unmoved.add(legacy)  # not stale (iscsiadm keeps it: its match of a
                    # stale record ignores the tag)

        def write_fresh() -> None:  # the run's new records, in one batch
            if fresh:
                self._create_nodes_batch(fresh, res, did)
                fresh.clear()
        self._in_runs(found, make, write_fresh)
        return old, unmoved

    def _unlinked_answers(self, did: DiscoveryID, targets: set, linked: set) -> set:
        """The records a discovery from ``did`` made that no link of it names (``linked``):
        old-style files ``<target>/<ip>,<port>`` (tag -1: a TargetAddress without a tag, or
        none), which idbm_add_node links nowhere, and records whose link is missing (a
        nodes/ tree restored without send_targets/, a link name longer than NAME_MAX);
        told by their node.discovery_* fields, as iscsiadm's delete_stale_rec tells a stale
        record over the whole DB.  A record's bytes are searched for its discovery address
        before it is parsed: a thousand records of other sources cost a read each."""
        out = set()
        needle = f"\nnode.discovery_address = {did.address}\n".encode()
        for target in targets:
            try:
                with os.scandir(self._p(NODES, target)) as entries:
                    portals = [(e.name, e.path, e.is_dir(follow_symlinks=False))
                               for e in entries if e.name[0] != "."]
            except OSError:
                continue
            for name, path, is_dir in portals:
                pp = _parse_portal_dir(name)
                if pp is None or (pp[2] is None) == is_dir:
                    continue  # not a portal, or a portal of the wrong kind
                address, port, tpgt = pp
                if not is_dir:
                    candidates = [(path, NodeID(target, address, port, schema.TPGT_UNKNOWN,
                                                legacy=True))]
                else:
                    try:
                        with os.scandir(path) as files:
                            candidates = [(f.path, nid) for f in files if f.name[0] != "."
                                          and f.is_file(follow_symlinks=False)
                                          and (nid := NodeID(target, address, port, tpgt,
                                                             f.name)) not in linked]
                    except OSError:
                        continue
                for file, nid in candidates:
                    try:
                        if needle not in read_regular(file, MAX_RECORD_BYTES):
                            continue
                        v = self.read_node(nid).values
                    except (OSError, DBError):
                        continue  # gone or damaged: not this source's to judge
                    if (v.get("node.discovery_type"), v.get("node.discovery_address"),
                            v.get("node.discovery_port")) != ("send_targets", did.address,
                                                              did.port):
                        continue
                    if nid.legacy:
                        nid = NodeID(target, address, port, schema.TPGT_UNKNOWN,
                                     v.get("iface.iscsi_ifacename") or "default", legacy=True)
                    out.add(nid)
        return out

    @staticmethod
    def _retagged(linked: set, found: list) -> dict:
        """The records a discovery linked that it no longer finds, by (target, address as
        :func:`~iscsictl.lexical.host_key` gives it, port, iface): where one is found again
        under another tag (the target's portal group renumbered) or its address spelled
        otherwise (``[FD00:0::2]`` then ``[fd00::2]``), its settings go to the new record
        before the stale one is deleted (iscsiadm keeps the old record, stale, beside a new
        one from the defaults; its stale match, iscsi_addr_match, takes the two spellings
        as one address)."""
        gone = sorted(set(linked) - set(found), key=lambda n: (n.tpgt, n.link_name))
        return {(n.target, host_key(n.address), n.port, n.iface): n for n in reversed(gone)}

    @staticmethod
    def _renamed(retagged: dict, nid: NodeID) -> NodeID | None:
        """The record :meth:`_retagged` holds for ``nid``'s portal named the other way (a
        host name then its address, or the reverse: the target's TargetAddress changed),
        told as iscsiadm's stale match tells it (iscsi_addr_match: both looked up); None
        where neither address is a name (no lookup is made then)."""
        from ..lexical import is_numeric_host, same_host
        for (target, _, port, iface), old in retagged.items():
            if (target, port, iface) == (nid.target, nid.port, nid.iface) and not (
                    is_numeric_host(old.address) and is_numeric_host(nid.address)) \
                    and same_host(old.address, nid.address):
                return old
        return None

    def _create_nodes_batch(self, items: list, res: ReconcileResult, did: DiscoveryID) -> None:
        """Create many new node records durably with two filesystem flushes instead of two
        fsyncs per record; ``items``: (record, NodeID, the template it is a copy of with
        only its identity keys (:data:`IDENTITY_KEYS`) set).  Every record is written to a
        temp file in :meth:`_tmp_dir`, the filesystem is flushed (syncfs), each temp file is
        renamed to its final name under the DB lock (a record that appeared meanwhile is
        found again instead: :meth:`_refresh_found`, which keeps what it holds), discovery
        links are made, and the filesystem is flushed again before returning.  A crash
        leaves whole records or none, and its temp files where no reader looks."""
        staged = []
        with self.db_lock():
            nodes = self._mkdirs(NODES)
            made: set = set()
            for rec, nid, template in items:  # names checked by the caller: no '/' in them
                tdir = f"{nodes}/{nid.target}"
                pdir = f"{tdir}/{nid.address},{nid.port},{nid.tpgt}"
                try:
                    for d in (tdir, pdir):
                        if d in made:
                            continue
                        try:
                            os.mkdir(d, DIR_MODE)
                        except FileExistsError:
                            if not os.path.isdir(d):
                                raise DBError(f"{d} exists and is not a directory") from None
                        made.add(d)
                except OSError as e:
                    res.failed.append((nid, DBError(f"Could not make dir: {e.strerror}")))
                    continue
                except DBError as e:
                    res.failed.append((nid, e))
                    continue
                staged.append((rec, nid, pdir, template))
        written: list = []
        renamed: set = set()
        def formatted():  # each template's run of records from that template's lines
            for _, run in itertools.groupby(staged, lambda s: id(s[3])):
                run = list(run)
                yield from format_file_variants(run[0][3], [s[0] for s in run],
                                                IDENTITY_KEYS, version=self.version)
        texts = formatted()
        import secrets  # lazily: only a discovery's batch names its temp files so

        # unique to this batch (two threads, or two containers' processes of one pid, may
        # share the DB), and created exclusively
        tmp_dir = f"{self._tmp_dir()}/{os.getpid()}.{secrets.token_hex(4)}."
        meanwhile, elsewhere = [], []  # records made by another meanwhile; on another fs
        try:
            for i, ((rec, nid, pdir, _), text) in enumerate(zip(staged, texts)):
                path, tmp = f"{pdir}/{nid.iface}", f"{tmp_dir}{i}.new"
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                    try:
                        view = memoryview(text.encode("utf-8", "surrogateescape"))
                        while view:  # a short write (a full disk) is not a whole record
                            view = view[os.write(fd, view):]
                    finally:
                        os.close(fd)
                except OSError as e:
                    res.failed.append((nid, DBError(f"cannot write {path}: {e.strerror}")))
                    try:  # a temp file cut short: not left to fill the disk further
                        os.unlink(tmp)
                    except OSError:
                        pass
                    continue
                written.append((rec, nid, tmp, path))
            try:
                syncfs(self.db_root)
            except OSError as e:  # not on the disk: none is put in place (the finally
                for _rec, nid, _tmp, path in written:  # removes their temp files)
                    res.failed.append((nid, DBError(f"cannot write {path}: {e.strerror}")))
                written_ok: list = []
            else:
                written_ok = written
            with self.db_lock():  # no sibling's delete removes a directory made above
                dirs: dict = {}
                for rec, nid, tmp, path in written_ok:
                    try:
                        try:
                            rename_noreplace(tmp, path)
                        except FileNotFoundError:  # its directory removed before the lock
                            self._mkdirs(NODES, nid.target, os.path.basename(
                                os.path.dirname(path)))
                            rename_noreplace(tmp, path)
                    except FileExistsError:
                        meanwhile.append((rec, nid))
                        continue
                    except DBError as e:  # its directories could not be made again
                        res.failed.append((nid, e))
                        continue
                    except OSError as e:
                        if e.errno == errno.EXDEV:
                            elsewhere.append((rec, nid))
                        else:
                            res.failed.append((nid, DBError(f"cannot write {path}: "
                                                            f"{e.strerror}")))
                        continue
                    renamed.add(tmp)
                    rec.path = path
                    try:
                        self._link_node(rec, nid, dirs)
                    except DBError as e:  # written, but not linked: said, as iscsiadm
                        res.failed.append((nid, e))
                        continue
                    res.added.append(nid)
            for rec, nid in meanwhile:
                try:
                    if not self._refresh_found(nid, did):
                        self.write_node(rec)  # made damaged, or gone again
                    res.updated.append(nid)
                except DBError as e:
                    res.failed.append((nid, e))
            for rec, nid in elsewhere:
                try:
                    self.write_node(rec)
                    res.added.append(nid)
                except DBError as e:
                    res.failed.append((nid, e))
        finally:
            for _rec, _nid, tmp, _path in written:
                if tmp not in renamed:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
            self._remove_dirs_of_failed(items, res)
        try:  # the renames and links on the disk too
            syncfs(self.db_root)
        except OSError as e:
            self.warn(f"{self.db_root}: the new records may not be on the disk: {e.strerror}")

    def _remove_dirs_of_failed(self, items: list, res: ReconcileResult) -> None:
        """The target and portal directories :meth:`_create_nodes_batch` made for records it
        could not write (a full disk), removed when empty, as :meth:`write_node` does."""
        failed = {nid for nid, _ in res.failed}
        dirs = [(nid.target, nid.portal_dir) for _rec, nid, _t in items if nid in failed]
        if dirs:
            with self.db_lock():  # (a sibling's write makes its directories under it)
                for target, portal_dir in dirs:
                    self._rmdir_quiet(self._p(NODES, target, portal_dir))
                    self._rmdir_quiet(self._p(NODES, target))

    # ---- iface records ---------------------------------------------------------------------
    def iface_path(self, name: str) -> str:
        return self._p(IFACES, name)

    @property
    def ifaces_dir(self) -> str:
        """The directory of iface records (``<db root>/ifaces``)."""
        return self._p(IFACES)

    def list_ifaces(self) -> list[str]:
        """Iface names: the files in ifaces/ (sorted) then the built-ins ``default``, ``iser``
        (iscsiadm prints files first, then the built-ins).  An entry that cannot be looked
        at (a symlink loop, EIO) is warned about and left out, the others kept, as
        usr/iface.c iface_for_each_iface skips one it cannot read (before, one such entry
        emptied the whole list); :meth:`unreadable_ifaces` names them."""
        names = []
        for entry in self._iface_entries():
            try:
                if not entry.is_file():
                    continue
            except OSError as e:
                self.warn(f"Could not read iface {entry.name}: {e.strerror}")
                continue
            names.append(entry.name)
        return sorted(names) + list(schema.BUILTIN_IFACES)

    def _iface_entries(self) -> list[os.DirEntry]:
        """The entries of ifaces/ that can name an iface record (not hidden, not a
        built-in's name, not open-iscsi's example file); none when it cannot be listed."""
        try:
            with os.scandir(self._p(IFACES)) as entries:
                return [e for e in entries if e.name[0] != "."
                        and e.name not in schema.BUILTIN_IFACES
                        and e.name != schema.IFACE_EXAMPLE]
        except FileNotFoundError:
            return []
        except OSError as e:
            self.warn(f"{self._p(IFACES)}: cannot list the iface records: {e.strerror}")
            return []

    def unreadable_ifaces(self) -> set[str]:
        """The names in ifaces/ whose record cannot be read now (a symlink loop, a file
        emptied or cut short by a crash, no transport, no permission): not ifaces a
        discovery binds to, but not deleted ones either.  A rediscovery keeps their node
        records (:meth:`reconcile_discovery`), where iscsiadm's would delete them as
        stale."""
        out = set()
        for entry in self._iface_entries():
            try:
                if entry.is_dir():
                    continue
                self.read_iface(entry.name)
            except (OSError, DBError):
                out.add(entry.name)
        return out

    def discovery_ifaces(self) -> list[tuple[str, Record]]:
        """The ifaces a discovery that names none binds its records to, as (name, record):
        every software-iSCSI (tcp) iface record other than the built-ins, else ``default``
        (open-iscsi's idbm_bind_ifaces_to_nodes over iface_link_ifaces).  An unreadable
        record is not one: it is warned about (iscsiadm says it only at debug level), and
        a rediscovery keeps its node records (:meth:`unreadable_ifaces`)."""
        out = []
        for name in self.list_ifaces():
            if name in schema.BUILTIN_IFACES:
                continue
            try:
                rec = self.read_iface(name)
            except DBError as e:
                self.warn(f"{e}: iface {name} left out of the discovery, its node records "
                          "kept")
                self.left_out_ifaces.add(name)  # (whatever it is when they are reconciled)
                continue
            if (rec.values.get("iface.transport_name") or "tcp") == "tcp":
                out.append((name, rec))
        return out or [("default", self.read_iface("default"))]

    def read_iface(self, name: str) -> Record:
        """An iface record; ``default`` (tcp) and ``iser`` (iser) are built in (no file).
        Raises RecordNotFound, CorruptRecord."""
        if name in schema.BUILTIN_IFACES:
            return Record(schema.IFACE, {"iface.iscsi_ifacename": name,
                                         "iface.transport_name": schema.BUILTIN_IFACES[name]})
        _check_component("iface name", name)
        if name == schema.IFACE_EXAMPLE:
            raise RecordNotFound(f"Could not read iface {name}: open-iscsi's example file, "
                                 "skipped as open-iscsi skips it")
        path = self.iface_path(name)

        def parse(data: bytes) -> Record:
            if _TRANSPORT_LINE.search(data) is None:  # parse_record would give it tcp's
                raise CorruptRecord(path, "has no iface.transport_name: not a valid iSCSI "
                                          "interface configuration file (open-iscsi skips it)")
            return parse_record(schema.IFACE, data, path, self.warn)
        try:  # (one found damaged read again, as a node record: iscsiadm empties it first)
            rec = self._read_settled(path, parse, emptied_first=True)
        except RecordNotFound:
            raise RecordNotFound(f"Could not read iface {name}: not found") from None
        rec.values["iface.iscsi_ifacename"] = name
        return rec

    @staticmethod
    def check_new_iface_name(name: str) -> None:
        """Whether ``name`` can be a new iface's (:meth:`create_iface`'s rules); raises
        InvalidRecordName, or SpecialIface for a built-in's."""
        _check_component("iface name", name)
        if name[0] == "." or any(c.isspace() or not c.isprintable()
                                 and not "\udc80" <= c <= "\udcff" for c in name):
            raise InvalidRecordName(f"invalid iface name {name!r}: a leading '.', blanks and "
                                    "control characters are not allowed")
        _check_iface_name_length(name)
        if name in schema.BUILTIN_IFACES:
            raise SpecialIface(name, "created")
        if name == schema.IFACE_EXAMPLE:
            raise InvalidRecordName(f"invalid iface name {name!r}: the name of open-iscsi's "
                                    "example file, which it skips")

    @_changes_db
    def create_iface(self, name: str, values: dict | None = None) -> Record:
        """``-m iface -I name -o new``.  Raises RecordExists, SpecialIface (the built-ins),
        InvalidRecordName (empty, '/', longer than 64 bytes; a leading '.', which listings skip
        as the store's own files; blanks or control and format characters, which its
        listings and record lines cannot show as one word; a byte not in UTF-8 is kept)."""
        self.check_new_iface_name(name)
        rec = Record(schema.IFACE, {"iface.iscsi_ifacename": name})
        for k, v in (values or {}).items():
            rec.set(k, v)
        path = self.iface_path(name)
        with self.record_lock("iface\0" + name):
            with self.db_lock():
                self._mkdirs(IFACES)
                if os.path.lexists(path):
                    raise RecordExists(f"Interface {name} already exists")
            self._write_file(path, rec)
        rec.path = path
        return rec

    @_changes_db
    def update_iface(self, name: str, key: str, value) -> Record:
        """``-m iface -I name -o update -n key -v value``.  Built-ins are refused
        (SpecialIface), and an empty ``iface.transport_name`` (InvalidValue: a file without
        it is no iface to open-iscsi, or to :meth:`read_iface`); otherwise raises as
        :meth:`update_node`."""
        return self.update_iface_many(name, {key: value})

    @_changes_db
    def update_iface_many(self, name: str, updates: dict) -> Record:
        """Several :meth:`update_iface` settings (key -> value, in order) in one
        read-modify-write: none is written when one is refused."""
        if name in schema.BUILTIN_IFACES:
            raise SpecialIface(name, "modified")
        for key, value in updates.items():
            if key == "iface.iscsi_ifacename":  # its file's name: iscsiadm's words
                raise ReadOnlyKey(key, "rename")
            if key == "iface.transport_name" and not str(value).strip(C_SPACE):
                raise InvalidValue(key, str(value), "an iface needs its transport (tcp, "
                                                    "iser, bnx2i, qla4xxx, ...)")
        path = self.iface_path(name)
        with self.record_lock("iface\0" + name):
            rec = self.read_iface(name)
            # the keys of the iface's address block as its file has it (iface_conf_update's
            # idbm_recinfo_iface, iface_file_is_ipv6): a key of the other one is no key of
            # this iface, refused before anything is set (it was taken, then not written)
            block = "ipv6" if schema.iface_file_is_ipv6(rec.values) else "ipv4"
            for key in updates:
                k = schema.IFACE.by_name.get(key)
                if k is not None and k.block and k.block != block:
                    raise InvalidKey(key)
            # a binding is not changed from one kind to the other, as the iface is read
            # (verify_iface_params): one command may set both on an unbound iface
            binding = ("iface.hwaddress", "iface.net_ifacename")
            bound = [rec.values.get(k) not in (None, "", "<empty>", "default") for k in binding]
            for key, value in updates.items():
                if key in binding and bound[1 - binding.index(key)]:
                    raise BindingChange(binding[1 - binding.index(key)], key)
                rec.update_key(key, value)
            self._write_file(path, rec)
        return rec

    @_changes_db
    def delete_iface(self, name: str) -> None:
        """``-m iface -I name -o delete``.  Built-ins refused (SpecialIface); raises
        RecordNotFound."""
        if name in schema.BUILTIN_IFACES:
            raise SpecialIface(name, "deleted")
        _check_component("iface name", name)
        path = self.iface_path(name)
        with self._deleting("iface\0" + name) as lock:
            try:
                os.unlink(path)
            except FileNotFoundError:
                lock.remove_when_released()
                raise RecordNotFound(f"iface {name} not found") from None
            except OSError as e:
                raise DBError(f"Could not delete iface {name}: {e.strerror}") from e
            lock.remove_when_released()
