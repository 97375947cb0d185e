"""One owner of the kernel's interface (iscsictl/daemon/instance.py): open-iscsi's iscsid
told by its abstract socket, whose listener must be root's."""

import os
import socket

from iscsictl.daemon import instance
from peers import listener_of_another_user


def test_iscsid_is_a_root_listener_on_its_socket(monkeypatch):
    """A listener of root's at iscsid's name is iscsid; one of another user's is not (any
    user may listen on an abstract socket: before, that kept iscsictld and iscsictl-start
    from starting, "iscsid is running"); nothing listening, no iscsid.  (A test name, not
    iscsid's: a real iscsid elsewhere on this machine is left alone.)"""
    name = f"iscsictl-test-iscsid-{os.getpid()}"
    monkeypatch.setattr(instance, "ISCSID_ABSTRACT", "\0" + name)
    assert not instance.iscsid_running() and instance.listener_of("\0" + name) is None
    with listener_of_another_user(name) as pid:
        assert instance.listener_of("\0" + name) == (pid, 65534)
        assert not instance.iscsid_running()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as root:
        root.bind("\0" + name)
        root.listen(1)
        assert instance.iscsid_running() == (os.geteuid() == 0)


def test_a_listener_that_never_accepts_does_not_hold_the_start(monkeypatch):
    """A listener at iscsid's name whose backlog is full (any user's: listen, never accept,
    fill it with a connection of its own): the look for iscsid answers at once, none,
    instead of a connect blocked for ever (before: iscsictld and iscsictl-start hung at
    their start, systemd's restarts with them)."""
    import threading

    name = f"iscsictl-test-squat-{os.getpid()}"
    monkeypatch.setattr(instance, "ISCSID_ABSTRACT", "\0" + name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as squat:
        squat.bind("\0" + name)
        squat.listen(0)
        fillers = []
        try:
            while True:  # until the backlog is full
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.setblocking(False)
                fillers.append(c)
                c.connect("\0" + name)
        except BlockingIOError:
            pass
        answers = []
        t = threading.Thread(target=lambda: answers.append(instance.iscsid_running()),
                             daemon=True)
        t.start()
        t.join(5)
        for c in fillers:
            c.close()
    assert answers == [False]


def test_a_lock_file_that_cannot_be_written_is_said_not_a_traceback(tmp_path, monkeypatch):
    """A full /run: the pid cannot be written into the lock file: LockHeld naming it (the
    daemon and iscsictl-start say it on one line and exit 1), as iscsid's "Unable to write
    pid file"; it was a traceback."""
    import errno

    import pytest

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    path = str(tmp_path / "run" / "iscsictld.lock")
    with pytest.raises(instance.LockHeld) as e:
        instance.take_lock(path)
    assert str(e.value) == f"cannot write the lock file {path}: No space left on device"
    monkeypatch.undo()
    os.close(instance.take_lock(path))  # the descriptor was closed: the lock is free


def test_a_socket_systemd_holds_for_iscsid_is_iscsid_and_is_not_woken(monkeypatch):
    """iscsid.socket (enabled by Debian's open-iscsi package): systemd listens on iscsid's
    name and starts iscsid at the first connection.  It counts as iscsid (the two would
    act on the kernel's events), told from /proc without connecting (before: the look for
    iscsid connected, so iscsictld's and iscsictl-start's own start started iscsid).
    Here the test process stands in for systemd."""
    import select

    name = f"iscsictl-test-unit-{os.getpid()}"
    monkeypatch.setattr(instance, "ISCSID_ABSTRACT", "\0" + name)
    monkeypatch.setattr(instance, "INIT_PID", os.getpid())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unit:
        unit.bind("\0" + name)
        unit.listen(1)
        assert instance.unix_listeners("\0" + name)
        assert instance.iscsid_running()
        assert select.select([unit], [], [], 0)[0] == []  # nobody connected
    assert not instance.unix_listeners("\0" + name) and not instance.iscsid_running()


def test_iscsictl_starts_share_the_lock_and_are_named_by_the_kernel(tmp_path):
    """iscsictl-starts take the lock shared (several log in side by side) and write no PID;
    iscsictld takes it exclusively.  Whoever is refused is told a holder's PID as the
    kernel's lock table has it (F_GETLK), not the file's: that still names the last
    iscsictld, gone."""
    import subprocess
    import sys

    import pytest

    path = str(tmp_path / "iscsictld.pid")
    with open(path, "w") as f:
        f.write("4194304999\n")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        f"fd = os.open({path!r}, os.O_RDWR)\n"
        "fcntl.lockf(fd, fcntl.LOCK_SH)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        os.close(instance.take_lock(path, shared=True))  # beside the other
        with pytest.raises(instance.LockHeld) as e:
            instance.take_lock(path)
        assert e.value.holder == str(holder.pid)
    finally:
        holder.stdin.close()
        holder.wait(10)
    fd = instance.take_lock(path)  # (any descriptor of the file closed by this process
    assert os.pread(fd, 32, 0) == f"{os.getpid()}\n".encode()  # would release its lock)
    refused = subprocess.run([sys.executable, "-c", (
        "from iscsictl.daemon import instance\n"
        f"try: instance.take_lock({path!r}, shared=True)\n"
        "except instance.LockHeld as e: print(e.holder)\n")], capture_output=True, text=True)
    os.close(fd)
    assert refused.stdout == f"{os.getpid()}\n", refused.stderr
    fd = os.open(path, os.O_RDONLY)
    assert instance.lock_holder(fd) is None  # free: nobody
    os.close(fd)


def test_the_lock_file_is_roots_alone_an_older_readable_one_made_so(tmp_path):
    """A read lock needs only a descriptor open for reading: any user holding one on a lock
    file of mode 0644 kept iscsictld from starting (exit 1), or from starting again after
    a restart.  The file is made 0600, and one an older version left 0644 is made so."""
    import stat

    fresh, old = tmp_path / "run" / "iscsictld.pid", tmp_path / "old.pid"
    os.close(instance.take_lock(str(fresh)))
    old.write_text("1\n")
    old.chmod(0o644)
    os.close(instance.take_lock(str(old), shared=True))
    assert [stat.S_IMODE(p.stat().st_mode) for p in (fresh, old)] == [0o600, 0o600]
