"""Helpers to run Debian's real open-iscsi tools against a private DB.

Debian's iscsiadm has its DB root (``/etc/iscsi``) and lock dir (``/run/lock/iscsi``) compiled
in, so :func:`iscsiadm` runs it in a private mount namespace (``unshare -m``) where a temporary
directory is bind-mounted on ``/etc/iscsi`` and another on ``/run/lock/iscsi``: the machine's
own DB is never touched.  Needs root (or CAP_SYS_ADMIN).

Without a running iscsid, iscsiadm cannot learn the config file path (it asks iscsid over
MGMT_IPC_CONFIG_FILE), so records it creates get compiled defaults only; it also runs the
``iscsid.startup`` command from iscsid.conf, so :func:`prepare_etc` writes an iscsid.conf whose
``iscsid.startup`` is ``/bin/true``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

ISCSIADM = shutil.which("iscsiadm") or "/sbin/iscsiadm"


def iscsiadm_path() -> str:
    """Path of iscsiadm; raises AssertionError (so peer tests fail, not skip) when absent."""
    path = shutil.which("iscsiadm") or ("/sbin/iscsiadm" if os.path.exists("/sbin/iscsiadm")
                                        else None)
    assert path, "iscsiadm not installed (Debian package open-iscsi; the Makefile installs it)"
    return path


def prepare_etc(etc_dir: str, initiator_name: str = "iqn.1993-08.org.debian:01:0123456789ab"
                ) -> None:
    """Make ``etc_dir`` usable as a private /etc/iscsi: an iscsid.conf that does not try to
    start iscsid, and an initiatorname.iscsi."""
    os.makedirs(etc_dir, exist_ok=True)
    conf = os.path.join(etc_dir, "iscsid.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("iscsid.startup = /bin/true\n")
    iname = os.path.join(etc_dir, "initiatorname.iscsi")
    if not os.path.exists(iname):
        with open(iname, "w") as f:
            f.write(f"InitiatorName={initiator_name}\n")


def iscsiadm(etc_dir: str, *args: str, lock_dir: str | None = None, check: bool = False,
             timeout: float = 60, sys_dir: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``iscsiadm args...`` with ``etc_dir`` bind-mounted on /etc/iscsi and ``lock_dir``
    (default: ``<etc_dir>/../iscsi-lock``) on /run/lock/iscsi, in a private mount namespace;
    ``sys_dir``: a sysfs tree made for the test, bind-mounted on /sys there.  Returns the
    CompletedProcess (text stdout/stderr)."""
    exe = iscsiadm_path()
    prepare_etc(etc_dir)
    if lock_dir is None:
        lock_dir = os.path.join(os.path.dirname(os.path.abspath(etc_dir)), "iscsi-lock")
    os.makedirs(lock_dir, exist_ok=True)
    cmd = " ".join(shlex.quote(a) for a in (exe, *args))
    script = (
        "set -e; mkdir -p /etc/iscsi /run/lock/iscsi; "
        f"mount --bind {shlex.quote(os.path.abspath(etc_dir))} /etc/iscsi; "
        f"mount --bind {shlex.quote(os.path.abspath(lock_dir))} /run/lock/iscsi; "
        + (f"mount --bind {shlex.quote(os.path.abspath(sys_dir))} /sys; " if sys_dir else "")
        + f"set +e; {cmd}"
    )
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True, timeout=timeout,
                        env=None if env is None else {**os.environ, **env})
    if check and cp.returncode != 0:
        raise AssertionError(f"iscsiadm {' '.join(args)} -> {cp.returncode}\n{cp.stderr}")
    return cp


# --------------------------------------------------------------------------------------------
# tgtd: Debian's userspace iSCSI target on a free loopback port
# --------------------------------------------------------------------------------------------
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402


def tgtd_path() -> str:
    """Path of tgtd; AssertionError (so peer tests fail, not skip) when absent."""
    path = shutil.which("tgtd") or ("/usr/sbin/tgtd" if os.path.exists("/usr/sbin/tgtd")
                                    else None)
    assert path, "tgtd not installed (Debian package tgt; the Makefile installs it)"
    assert shutil.which("tgtadm") or os.path.exists("/usr/sbin/tgtadm"), "tgtadm not installed"
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tgtd:
    """One tgtd on ``127.0.0.1:port`` with its own control port (``-C``), configured with
    tgtadm.  tgtd ignores SIGTERM while it has targets, so :meth:`stop` sends SIGKILL to its
    PID and waits.  Use as a context manager; never left running."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = 0
        self.control = 0
        self.proc: subprocess.Popen | None = None
        self._next_tid = 1

    def start(self) -> "Tgtd":
        exe = tgtd_path()
        for _ in range(20):
            self.port = free_port()
            self.control = random.randint(2000, 60000)
            log = open(os.path.join(self.workdir, "tgtd.log"), "ab")
            self.proc = subprocess.Popen(
                [exe, "-f", "-C", str(self.control), "--iscsi",
                 f"portal=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                except OSError:
                    time.sleep(0.02)
                    continue
                if self.adm("--mode", "sys", "--op", "show", check=False).returncode == 0:
                    return self
                break
            self.stop()
        raise AssertionError(f"tgtd did not start; see {self.workdir}/tgtd.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "Tgtd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def portal(self) -> str:
        return f"127.0.0.1:{self.port}"

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cp = subprocess.run(["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args],
                            capture_output=True, text=True, timeout=30)
        if check and cp.returncode != 0:
            raise AssertionError(f"tgtadm {' '.join(args)} -> {cp.returncode}: {cp.stderr}")
        return cp

    def add_target(self, iqn: str, luns: int = 0, user: tuple | None = None,
                   outgoing: tuple | None = None, initiator_name: str | None = None) -> int:
        """A target open to every initiator (or, with ``initiator_name``, to that one only:
        tgtd also leaves it out of other initiators' SendTargets answers) with ``luns``
        null-backed disk LUNs (1..luns), optionally CHAP (``user`` = (name, secret)) and
        mutual CHAP (``outgoing``).  Returns the tid."""
        tid = self._next_tid
        self._next_tid += 1
        self.adm("--mode", "target", "--op", "new", "--tid", str(tid), "-T", iqn)
        acl = ["--initiator-name", initiator_name] if initiator_name else ["-I", "ALL"]
        self.adm("--mode", "target", "--op", "bind", "--tid", str(tid), *acl)
        for lun in range(1, luns + 1):
            self.adm("--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun",
                     str(lun), "--bstype", "null", "-b", "/dev/null")
        if user:
            self.account(*user)
            self.adm("--mode", "account", "--op", "bind", "--tid", str(tid), "--user", user[0])
        if outgoing:
            self.account(*outgoing)
            self.adm("--mode", "account", "--op", "bind", "--tid", str(tid), "--user",
                     outgoing[0], "--outgoing")
        return tid

    def account(self, user: str, secret: str) -> None:
        self.adm("--mode", "account", "--op", "new", "--user", user, "--password", secret,
                 check=False)

    def discovery_auth(self, user: tuple, outgoing: tuple | None = None) -> None:
        """Require CHAP on discovery sessions (a global account bind: no --tid)."""
        self.account(*user)
        self.adm("--mode", "account", "--op", "bind", "--user", user[0])
        if outgoing:
            self.account(*outgoing)
            self.adm("--mode", "account", "--op", "bind", "--user", outgoing[0], "--outgoing")
