"""iscsictld protects itself as iscsid does (iscsictl/daemon/protect.py): real system calls,
each in a child process of its own so that the test runner keeps its priority and memory.
The VM scenario test_kernel_ipc checks the running daemon and its command server."""

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, os, resource, sys, threading
from iscsictl.daemon.protect import io_flusher, protect_daemon
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024 if sys.argv[1] == "root" else 2048))
if sys.argv[1] == "unprivileged":
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    os.setgid(65534); os.setuid(65534)
before = os.getpriority(os.PRIO_PROCESS, 0)
refused = protect_daemon()
later = {}
def probe():
    later.update(nice=os.getpriority(os.PRIO_PROCESS, 0), flusher=io_flusher())
t = threading.Thread(target=probe); t.start(); t.join()
locked = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmLck:")][0]
# the interpreter's own file's mappings: their size, and what of them this process has
# mapped in (kB; smaps' Locked is proportional to the pages' sharers, Rss is not)
exe, code, cur = os.path.realpath(sys.executable), [0, 0], None
for l in open("/proc/self/smaps"):
    f = l.split()
    if "-" in f[0] and len(f) >= 5:
        cur = len(f) == 6 and f[5] == exe
    elif cur and f[0] in ("Size:", "Rss:"):
        code[f[0] == "Rss:"] += int(f[1])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, open("/proc/self/status").read().encode()); os._exit(0)
os.close(w); child = os.read(r, 65536).decode(); os.waitpid(pid, 0)
child_locked = [int(l.split()[1]) for l in child.splitlines() if l.startswith("VmLck:")][0]
print(json.dumps(dict(before=before, after=os.getpriority(os.PRIO_PROCESS, 0), later=later,
                      locked=locked, child_locked=child_locked, refused=refused, code=code,
                      files=resource.getrlimit(resource.RLIMIT_NOFILE))))
"""


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority and locking memory need root")
def test_root_raises_priority_locks_memory_and_threads_inherit():
    r = probe("root")
    assert r["after"] == r["before"] - 10
    assert r["later"]["nice"] == r["after"]  # a thread started afterwards inherits it
    assert r["locked"] > 0 and r["child_locked"] == 0  # a child does not inherit the lock
    # the interpreter's code read in (and so locked) whole, not as first run
    # (MCL_ONFAULT): a relogin's code is not read from the disk it is to bring back
    size, present = r["code"]
    assert size > 0 and present == size, r["code"]
    # PR_SET_IO_FLUSHER and a hard limit raised need CAP_SYS_RESOURCE, which a container
    # may withhold from root: then those are the refusals, named; otherwise later threads
    # are flushers too, and the open file limit is iscsid's (increase_max_files: from
    # systemd's 1024)
    if r["refused"]:
        assert r["refused"] == [
            "open file limit not raised to 16384 (setrlimit): Operation not permitted",
            "not marked an I/O flusher (PR_SET_IO_FLUSHER): Operation not permitted"], r
        assert not r["later"]["flusher"] and r["files"] == [1024, 1024]
    else:
        assert r["later"]["flusher"] and r["files"] == [16384, 16384]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_unprivileged_refusals_are_named_and_change_nothing():
    r = probe("unprivileged")
    assert r["after"] == r["before"] and r["locked"] == 0 and not r["later"]["flusher"]
    assert r["files"] == [2048, 2048]  # as far as the hard limit goes
    assert [line.split(" (")[0] for line in r["refused"]] == [
        "open file limit not raised to 16384", "priority not raised by 10",
        "memory not locked", "not marked an I/O flusher"], r


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root")
def test_unprotect_gives_a_child_back_its_priority_and_takes_the_flusher_mark_off():
    """What a command server started again after protect_daemon inherits of the daemon
    (its raised priority, the I/O-flusher mark) is undone by unprotect(nice)."""
    code = r"""
import json, os
from iscsictl.daemon.protect import io_flusher, protect_daemon, unprotect
before = os.getpriority(os.PRIO_PROCESS, 0)
refused = protect_daemon()
r, w = os.pipe()
if os.fork() == 0:
    flagged = io_flusher()
    unprotect(before)
    os.write(w, json.dumps([flagged, io_flusher(), os.getpriority(os.PRIO_PROCESS, 0)]).encode())
    os._exit(0)
os.close(w)
print(json.dumps(dict(before=before, refused=refused, child=json.loads(os.read(r, 4096)))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    r = json.loads(out)
    flagged, flusher, nice = r["child"]
    assert nice == r["before"] and not flusher
    assert flagged == (not any("IO_FLUSHER" in why for why in r["refused"]))  # inherited
