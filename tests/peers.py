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

import contextlib
import os
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import time

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
             env: dict[str, str] | None = None,
             iscsid: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``iscsiadm args...`` with ``etc_dir`` bind-mounted on /etc/iscsi and ``lock_dir``
    (default: ``<etc_dir>/../iscsi-lock``) on /run/lock/iscsi, in a private mount namespace;
    ``sys_dir``: a sysfs tree made for the test, bind-mounted on /sys there.  ``iscsid``:
    the environment that points a process's NETLINK_ISCSI at a fake kernel
    (``fake_hba.FakeHbaKernel.env``): the real iscsid then runs there too, for the command's
    length (iscsiadm asks it for the initiator name and iscsid.conf's path, e.g. in an
    iSNS discovery).  Returns the CompletedProcess (text stdout/stderr)."""
    cmd = " ".join(shlex.quote(a) for a in (iscsiadm_path(), *args))
    script = _namespace(etc_dir, lock_dir, sys_dir) + (
        f"{_iscsid_up(iscsid)} timeout -k 2 {timeout - 15:g} {cmd}; rc=$?; {_ISCSID_DOWN}; "
        "exit $rc" if iscsid else f"set +e; {cmd}")
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True, timeout=timeout,
                        env=None if env is None else {**os.environ, **env})
    if check and cp.returncode != 0:
        raise AssertionError(f"iscsiadm {' '.join(args)} -> {cp.returncode}\n{cp.stderr}")
    return cp


def _namespace(etc_dir: str, lock_dir: str | None, sys_dir: str | None) -> str:
    """Shell: ``etc_dir`` on /etc/iscsi, ``lock_dir`` (default ``<etc_dir>/../iscsi-lock``)
    on /run/lock/iscsi and ``sys_dir`` (if given) on /sys, for a private mount namespace."""
    prepare_etc(etc_dir)
    if lock_dir is None:
        lock_dir = os.path.join(os.path.dirname(os.path.abspath(etc_dir)), "iscsi-lock")
    os.makedirs(lock_dir, exist_ok=True)
    return ("set -e; mkdir -p /etc/iscsi /run/lock/iscsi; "
            f"mount --bind {shlex.quote(os.path.abspath(etc_dir))} /etc/iscsi; "
            f"mount --bind {shlex.quote(os.path.abspath(lock_dir))} /run/lock/iscsi; "
            + (f"mount --bind {shlex.quote(os.path.abspath(sys_dir))} /sys; " if sys_dir else ""))


def _iscsid_up(env: dict[str, str], log: str = "/dev/null") -> str:
    """Shell: iscsid started (``env`` its environment, its output to ``log``) in its own
    session (it signals its process group when it exits), waited for on its abstract MGMT
    socket (at most 10 s); ``$ipid`` its pid, ``set +e`` after.  Refused (exit 99) while
    another iscsid serves the socket: the commands would talk to that one."""
    exe = shutil.which("iscsid") or "/sbin/iscsid"
    assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    up = "grep -q ISCSIADM_ABSTRACT_NAMESPACE /proc/net/unix"
    return (f"if {up}; then echo 'an iscsid is running already' >&2; exit 99; fi; "
            f"env {assign} setsid {exe} -f >{shlex.quote(log)} 2>&1 & ipid=$!; n=0; "
            f"until {up}; do n=$((n+1)); [ $n -gt 200 ] && break; sleep 0.05; done; set +e; ")


#: Shell: the iscsid of :func:`_iscsid_up` stopped (SIGKILL if SIGTERM has not ended it in
#: 5 s) and reaped
_ISCSID_DOWN = ("kill $ipid; n=0; "
                "while ! grep -qs '^State:.*Z' /proc/$ipid/status && [ -e /proc/$ipid ]; do "
                "n=$((n+1)); [ $n -gt 100 ] && kill -9 $ipid; sleep 0.05; done; wait $ipid")


class IscsidShell:
    """The real iscsid kept running, its NETLINK_ISCSI pointed at a fake kernel (``iscsid``:
    that environment, as :func:`iscsiadm`'s), in a private mount namespace made as
    :func:`iscsiadm` makes it; :meth:`run` runs iscsiadm commands there one after another
    while it runs, so that what iscsid does between them (a relogin after a connection
    error, the logout of a session an earlier command made) can be watched.  A context
    manager: iscsid is stopped (and the namespace's shell ended) at its end.  iscsid's own
    output goes to ``log``."""

    def __init__(self, etc_dir: str, iscsid: dict[str, str], sys_dir: str | None = None,
                 log: str = "/dev/null") -> None:
        self.etc_dir, self.iscsid, self.sys_dir, self.log = etc_dir, iscsid, sys_dir, log
        self.out = os.path.join(os.path.dirname(os.path.abspath(etc_dir)), "iscsid-shell")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "IscsidShell":
        os.makedirs(self.out, exist_ok=True)
        out, err = (shlex.quote(os.path.join(self.out, f)) for f in ("stdout", "stderr"))
        loop = (f'while read -r line; do eval "$line" </dev/null >{out} 2>{err}; '
                'echo "rc $?"; done; ')
        script = (_namespace(self.etc_dir, None, self.sys_dir) + _iscsid_up(self.iscsid, self.log)
                  + 'echo "iscsid $ipid"; ' + loop + _ISCSID_DOWN)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.iscsid}, bufsize=0)
        self.iscsid_pid = int(self._line("iscsid's start", 15).split()[1])
        return self

    def _line(self, what: str, timeout: float) -> str:
        """The shell's next line of output; AssertionError (the shell ended) when none comes
        within ``timeout`` s."""
        assert self.proc is not None and self.proc.stdout
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.__exit__()
                raise AssertionError(f"{what}: no end within {timeout} s")
            chunk = self.proc.stdout.read(1)
            if not chunk:
                rc = self.proc.wait(10)
                self.proc = None
                raise AssertionError(f"{what}: the namespace's shell ended (exit {rc})")
            line += chunk
        return line.decode()

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """``iscsiadm args...`` in the namespace, iscsid running; its CompletedProcess.
        AssertionError when it has not ended within ``timeout`` s (the shell is then
        ended too)."""
        assert self.proc is not None and self.proc.stdin
        cmd = " ".join(shlex.quote(a) for a in (iscsiadm_path(), *args))
        self.proc.stdin.write(f"timeout -k 2 {timeout:g} {cmd}\n".encode())
        line = self._line(f"iscsiadm {' '.join(args)}", timeout + 5)
        outputs = []
        for name in ("stdout", "stderr"):
            with open(os.path.join(self.out, name)) as f:
                outputs.append(f.read())
        return subprocess.CompletedProcess(["iscsiadm", *args], int(line.split()[1]), *outputs)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.stdin is not None
        proc.stdin.close()  # the loop ends, iscsid is stopped
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            try:
                os.kill(self.iscsid_pid, signal.SIGKILL)  # its own session: not the shell's
            except (AttributeError, ProcessLookupError):
                pass


# --------------------------------------------------------------------------------------------
# tgtd: Debian's userspace iSCSI target on a free loopback port
# --------------------------------------------------------------------------------------------


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


class _LoopbackDaemon:
    """A peer daemon run by a test on ``127.0.0.1:port``: killed (SIGKILL) and waited for
    by :meth:`stop`; a context manager, never left running.  Subclasses define start()."""

    port = 0
    proc: subprocess.Popen | None = None

    def start(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def portal(self) -> str:
        return f"127.0.0.1:{self.port}"


class Tgtd(_LoopbackDaemon):
    """One tgtd on ``127.0.0.1:port`` with its own control port (``-C``), configured with
    tgtadm (tgtd ignores SIGTERM while it has targets: hence the SIGKILL)."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = 0
        self.control = 0
        self.proc: subprocess.Popen | None = None
        self._next_tid = 1
        self.targets: list[str] = []
        self._iqns: dict[int, str] = {}  # tid -> its name

    def start(self) -> "Tgtd":
        exe = tgtd_path()
        for _ in range(20):
            self.port = free_port()
            self.control = random.randint(2000, 32767)  # tgtd refuses a larger -C
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
        self.targets.append(iqn)
        self._iqns[tid] = iqn
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

    def delete_target(self, tid: int) -> None:
        """Remove the target :meth:`add_target` returned ``tid`` for (a test's own, on a
        tgtd other tests share: their SendTargets answers are counted)."""
        self.adm("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))
        self.targets.remove(self._iqns.pop(tid))

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


# --------------------------------------------------------------------------------------------
# isnsd: open-isns's iSNS server on a free loopback port
# --------------------------------------------------------------------------------------------
def isnsd_path() -> str:
    """Path of isnsd; AssertionError (so peer tests fail, not skip) when absent."""
    path = shutil.which("isnsd") or ("/usr/sbin/isnsd" if os.path.exists("/usr/sbin/isnsd")
                                     else None)
    assert path, "isnsd not installed (Debian package open-isns-server; the Makefile installs it)"
    assert shutil.which("isnsadm") or os.path.exists("/usr/sbin/isnsadm"), \
        "isnsadm not installed (Debian package open-isns-utils)"
    return path


class Isnsd(_LoopbackDaemon):
    """One isnsd on ``127.0.0.1:port``: no security, a default discovery domain (every node
    sees every other), its database in ``workdir``."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        os.makedirs(os.path.join(workdir, "db"), exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def _conf(self, name: str, lines: list[str]) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def start(self) -> "Isnsd":
        exe = isnsd_path()
        for _ in range(10):
            self.port = free_port()
            conf = self._conf("isnsd.conf", [
                f"BindAddress = 127.0.0.1:{self.port}", "SourceName = iqn.2026-11.test:isnsd",
                "Security = 0", f"Database = {self.workdir}/db", "DefaultDiscoveryDomain = 1",
                "SLPRegister = 0", f"PIDFile = {self.workdir}/isnsd.pid",
                f"ControlSocket = {self.workdir}/isnsctl", "RegistrationPeriod = 0",
                "ESIRetries = 0"])
            log = open(os.path.join(self.workdir, "isnsd.log"), "ab")
            self.proc = subprocess.Popen([exe, "-f", "-4", "-c", conf], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise AssertionError(f"isnsd did not start; see {self.workdir}/isnsd.log")

    def isnsadm(self, *args: str) -> str:
        """``isnsadm args...`` (open-isns's own client) as a storage node of its own; its
        output.  AssertionError when it fails."""
        conf = self._conf("isnsadm.conf", ["SourceName = iqn.2026-11.test:isnsadm",
                                           "Security = 0"])
        cp = subprocess.run(["isnsadm", "-c", conf, "-s", self.portal, *args],
                            capture_output=True, text=True, errors="replace", timeout=30)
        assert cp.returncode == 0, f"isnsadm {' '.join(args)}: {cp.stderr}"
        return cp.stdout

    def query(self, *attrs: str) -> str:
        return self.isnsadm("--query", *attrs)

    def register_targets(self, entity: str, portal: str, names: list[str], tag: int = 1
                         ) -> None:
        """Register targets behind one portal (a portal group each, tag ``tag``) in one
        network entity, as an administrator does for a target without an iSNS client of its
        own (isnsadm --register), and wait until the server lists them.  (tgtd's own iSNS
        client is not used: tgtd 1.0.85 stops answering logins once the server has sent it
        State Change Notifications about two targets, and two tgtds register as the same
        entity.)"""
        objs = [f"entity={entity}"]
        for i, name in enumerate(names):
            objs += [f"target={name}"] + ([f"portal={portal}"] if i == 0 else []) \
                + [f"pg,pgt={tag}"]
        self.isnsadm("--register", *objs)
        self.wait_for_targets(names)

    def wait_for_targets(self, names: list[str], timeout: float = 10) -> None:
        """Until a portal group of each of these targets is registered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.query("iscsi-node-type=Target")
            if all(f'Portal group name = "{n}"' in out for n in names):
                return
            time.sleep(0.1)
        raise AssertionError(f"isnsd at {self.portal} did not get {names}")


@contextlib.contextmanager
def listener_of_another_user(name: str, uid: int = 65534):
    """A process of user ``uid`` (nobody) listening on the abstract Unix socket ``name``
    (no leading NUL) until the block ends: what any local user can do, an abstract socket
    having no permissions.  Yields its pid."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test
        try:
            os.close(ready_r)
            os.setgid(uid)
            os.setuid(uid)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind("\0" + name)
            srv.listen(8)
            os.write(ready_w, b"1")
            while True:
                conn, _ = srv.accept()
                conn.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1", "the other user's listener did not start"
        yield pid
    finally:
        os.close(ready_r)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
