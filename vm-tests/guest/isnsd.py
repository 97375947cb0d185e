"""open-isns (Debian's isnsd + isnsadm) as the iSNS server of guest scenarios.

Runs INSIDE the VM as root.  :class:`Isnsd` writes an isnsd.conf for a server on
loopback (no security, every node in the default discovery domain, a file database in a
fresh directory on tmpfs, its own port and control socket), starts ``isnsd -f`` in its
own session with its output in ``<log_dir>/isnsd.log``, and stops it again (SIGTERM,
SIGKILL after a bound).  :meth:`Isnsd.adm` runs ``isnsadm --local`` against it (the
control socket: control-node rights, no key), every command and its output in
``<log_dir>/isnsadm.log``.

open-isns resolves every address, numeric ones too, with getaddrinfo(AI_ADDRCONFIG), which
glibc answers EAI_NONAME while the machine has no IPv4 address but loopback's: the guest
has only ``lo``, and isnsd then fails with 'Cannot resolve address "127.0.0.1:13205"'
(isnsadm and iscsiadm's libisns likewise).  :meth:`Isnsd.start` therefore adds a dummy
device with an address (:data:`DUMMY`) while the server runs, when there is none.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

from cli import end_process, wait_for

__all__ = ["Isnsd", "IsnsdError"]

_counter = itertools.count()
#: the dummy device and address that give the guest a non-loopback IPv4 address
DUMMY = ("isns0", "10.98.0.1/32")


class IsnsdError(RuntimeError):
    """isnsd or isnsadm failed; the message holds the command and its output."""


class Isnsd:
    """A running isnsd on ``127.0.0.1:port``.  ``start()``/``stop()``."""

    def __init__(self, log_dir: Path, port: int = 13205,
                 source_name: str = "iqn.2026-11.test:isnsd") -> None:
        self.log_dir = Path(log_dir)
        self.port = port
        self.dir = Path(f"/run/isnsd-{os.getpid()}-{next(_counter)}")
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "isnsd.conf"
        self.adm_conf = self.dir / "isnsadm.conf"
        self.control = self.dir / "isnsctl"
        self.source_name = source_name
        self.dummy: str | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start isnsd and wait (at most ``timeout`` s) until its port and control socket
        take connections; stopped again (and the dummy device removed) on any failure."""
        if shutil.which("isnsd") is None:
            raise IsnsdError("isnsd not found: install Debian's open-isns-server on the host")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        if not _has_ipv4_beyond_loopback():
            subprocess.run(["modprobe", "dummy"], check=True)
            self.dummy = DUMMY[0]
            for cmd in (["link", "add", DUMMY[0], "type", "dummy"],
                        ["addr", "add", DUMMY[1], "dev", DUMMY[0]],
                        ["link", "set", DUMMY[0], "up"]):
                subprocess.run(["ip", *cmd], check=True)
        db = self.dir / "db"
        db.mkdir(parents=True)
        self.conf.write_text(
            f"BindAddress = 127.0.0.1:{self.port}\nSourceName = {self.source_name}\n"
            f"Security = 0\nDatabase = {db}\nDefaultDiscoveryDomain = 1\nSLPRegister = 0\n"
            f"PIDFile = {self.dir / 'isnsd.pid'}\nControlSocket = {self.control}\n"
            "RegistrationPeriod = 0\nESIRetries = 0\n")
        self.adm_conf.write_text(
            f"ServerAddress = 127.0.0.1:{self.port}\nSourceName = {self.source_name}\n"
            f"Security = 0\nControlSocket = {self.control}\n")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / "isnsd.log", "ab")
        self.proc = subprocess.Popen(["isnsd", "-f", "-c", str(self.conf), "-4"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise IsnsdError(f"isnsd exited with {self.proc.returncode}; "
                                 f"see {self.log_dir / 'isnsd.log'}")
            return self.control.exists() and self._listening()
        wait_for(f"isnsd on 127.0.0.1:{self.port}", ready, timeout)

    def _listening(self) -> bool:
        """Whether isnsd itself (not another process on the port) listens on its port: a
        LISTEN socket on 127.0.0.1:port in /proc/net/tcp whose inode is one of its fds."""
        try:
            inodes = {os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")[8:-1]
                      for fd in os.listdir(f"/proc/{self.proc.pid}/fd")}
        except OSError:  # gone, or an fd closed meanwhile
            return False
        local = f"0100007F:{self.port:04X}"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            if f[1] == local and f[3] == "0A" and f[9] in inodes:
                return True
        return False

    def adm(self, *args: str) -> str:
        """``isnsadm --local ARGS`` (the control socket); its stdout.  IsnsdError on a
        non-zero exit (the message has the exit code and output)."""
        cmd = ["isnsadm", "-c", str(self.adm_conf), "--local", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        with open(self.log_dir / "isnsadm.log", "a") as f:
            f.write(f"$ {' '.join(cmd)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            raise IsnsdError(f"{' '.join(cmd)} exited with {proc.returncode}: "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def register_target(self, iqn: str, portal: tuple[str, int], tag: int,
                        entity: str = "lio.vm") -> None:
        """Register a target node in network entity ``entity`` with one portal and the
        portal group joining them (``tag``), as a target's iSNS client would."""
        self.adm("--register", f"entity={entity}", f"target={iqn}",
                 f"portal={portal[0]}:{portal[1]}/tcp", f"pg,pgt={tag}")

    def stop(self, timeout: float = 5.0) -> None:
        """End isnsd (SIGTERM, SIGKILL after ``timeout`` s) and remove its directory."""
        if self.proc is not None:
            end_process(self.proc, timeout)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dummy:
            subprocess.run(["ip", "link", "del", self.dummy], capture_output=True)
            self.dummy = None


def _has_ipv4_beyond_loopback() -> bool:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    return bool(out.strip())
