"""What iscsid does to itself before it serves (open-iscsi 2.1.8 ``usr/iscsid.c``): its
priority raised by 10 (``oom_adjust``'s ``nice(-10)``), its memory locked (``mlockall``),
its threads marked I/O flushers (``prctl(PR_SET_IO_FLUSHER)``, Linux 5.6) and its open file
limit raised to 16384 (``increase_max_files``: a login holds a socket, and logins to many
portals run at once; systemd's default soft limit is 1024).  The daemon is
what recovers the sessions the system may be writing back or paging through: it must not
wait for a CPU behind the work of the I/O it serves, be paged out to a disk it serves, or
wait in its own memory allocations for that I/O to complete.

Linux keeps the nice value and the I/O-flusher flag per thread, and a thread or child
inherits them from the thread that creates it; so :func:`protect_daemon` runs on the main
thread before the daemon starts its other threads (the netlink lanes, the LUN scans), and
after it has started its command server, which runs users' commands at their own priority.
The locked memory is not inherited by a child.  The OOM killer's pardon is the service
manager's (``OOMScoreAdjust=`` in ``contrib/systemd/iscsictld.service``).
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..libc import function

#: iscsid's ``nice(-10)`` (usr/iscsi_util.c ``oom_adjust``): relative to the inherited nice
PRIORITY_RAISE = 10
#: iscsid's ISCSI_MAX_FILES (usr/iscsi_util.c ``increase_max_files``)
MAX_FILES = 16384
# <sys/mman.h>: lock what is mapped now and later, each page as it is first touched (Linux
# 4.4): the 8 MiB reserved for each thread's stack are not filled in to be locked
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
# <linux/prctl.h> (Linux 5.6): allocations of this thread and the ones it starts do no I/O
# to reclaim memory (PF_MEMALLOC_NOIO) and are throttled on their own writes only
PR_SET_IO_FLUSHER, PR_GET_IO_FLUSHER = 57, 58


def protect_daemon() -> list[str]:
    """Raise the calling thread's priority by :data:`PRIORITY_RAISE`, lock the process's
    memory as it is touched, mark the calling thread an I/O flusher and raise the open file
    limit to :data:`MAX_FILES` (:func:`raise_open_files`).  Each step is independent; a
    refusal (no CAP_SYS_NICE, CAP_IPC_LOCK or CAP_SYS_RESOURCE, a kernel without the call)
    leaves that one undone.  Returns one line per refusal, naming the step and the error,
    for the caller to log; never raises."""
    refused = []
    why = raise_open_files()
    if why:
        refused.append(why)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) - PRIORITY_RAISE)
    except OSError as exc:
        refused.append(f"priority not raised by {PRIORITY_RAISE} (nice): {exc.strerror}")
    err = _libc_call("mlockall", MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)
    if err:
        refused.append(f"memory not locked (mlockall): {os.strerror(err)}")
    else:
        err = lock_code()
        if err:
            refused.append(f"code not read in and locked (mlock): {os.strerror(err)}")
    err = _libc_call("prctl", *map(ctypes.c_ulong, (PR_SET_IO_FLUSHER, 1, 0, 0, 0)))
    if err:
        refused.append(f"not marked an I/O flusher (PR_SET_IO_FLUSHER): {os.strerror(err)}")
    return refused


def lock_code(maps: str = "/proc/self/maps") -> int:
    """Read in and lock now every page of the executables and libraries mapped (each file
    with an executable mapping: its code, read-only data and relocations), where
    ``MCL_ONFAULT`` locks each page only once it is touched: code the daemon has not run
    yet (a relogin's, never run by a daemon that adopted its sessions) would be read from
    the disk when first run, perhaps the dead iSCSI root disk that relogin is to bring
    back (iscsid's ``mlockall(MCL_CURRENT | MCL_FUTURE)`` reads in all it maps).  Data
    files mapped (a locale archive) and the threads' stack reserves are not.  0, or the
    errno of the first mapping that could not be locked (the others still are)."""
    mlock = function("mlock")
    if mlock is None:
        return errno.ENOSYS
    mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    try:
        with open(maps) as f:
            rows = [line.split(None, 5) for line in f]
    except OSError as exc:
        return exc.errno or errno.EIO
    rows = [r for r in rows if len(r) == 6 and r[5].startswith("/")]
    code = {r[5] for r in rows if "x" in r[1]}
    first = 0
    for r in rows:
        if r[5] not in code or "r" not in r[1]:
            continue
        start, end = (int(x, 16) for x in r[0].split("-"))
        if mlock(start, end - start) != 0:
            first = first or ctypes.get_errno() or errno.EINVAL
    return first


def raise_open_files(limit: int = MAX_FILES) -> str | None:
    """The soft limit of open files raised to ``limit`` (the hard one too when it is
    lower: CAP_SYS_RESOURCE), as iscsid's increase_max_files; a limit already as high is
    left.  None, or why it could not be raised (it is then as high as the hard one)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft == infinite or soft >= limit:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (limit, hard if hard == infinite or hard >= limit else limit))
        return None
    except (OSError, ValueError) as exc:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass
        why = exc.strerror if isinstance(exc, OSError) else os.strerror(errno.EPERM)
        return f"open file limit not raised to {limit} (setrlimit): {why}"  # Python's
        # ValueError: a hard limit raised without CAP_SYS_RESOURCE


def unprotect(nice: int) -> None:
    """Undo what a process the daemon starts after :func:`protect_daemon` (a command server
    started again) inherits of it: its nice value back to ``nice`` (the daemon's before),
    its I/O-flusher mark off.  Never raises: a refusal leaves that one."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    if io_flusher():
        _libc_call("prctl", *map(ctypes.c_ulong, (PR_SET_IO_FLUSHER, 0, 0, 0, 0)))


def io_flusher() -> bool:
    """Whether the calling thread is marked an I/O flusher (``PR_GET_IO_FLUSHER``)."""
    prctl = function("prctl")
    return prctl is not None and prctl(*map(ctypes.c_ulong, (PR_GET_IO_FLUSHER, 0, 0, 0, 0))) == 1


def _libc_call(name: str, *args: int | ctypes.c_ulong) -> int:
    """``libc.name(*args)`` returning 0 or its errno (ENOSYS where libc lacks it); prctl's
    arguments are unsigned longs (a variadic call would leave a plain int's upper half
    undefined)."""
    fn = function(name)
    if fn is None:
        return errno.ENOSYS
    if fn(*args) == 0:
        return 0
    return ctypes.get_errno() or errno.EINVAL
