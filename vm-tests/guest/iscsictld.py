"""iscsictld in the guest: start it logging into a scenario's directory, stop it.

The daemon runs under its own session (setsid) so nothing it does can signal
the test runner; ``stop()`` ends it with SIGTERM (sessions stay in the kernel
unless ``logout=True``) and SIGKILL after a bound.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cli import VENV_BIN, end_process, wait_for
from iscsictl.cli.server import cli_socket_path
from iscsictl.ipc import DaemonClient, DaemonError


#: s until a started daemon must answer: a deadline, not a speed figure (a cold first start
#: imports everything over 9p under TCG: 2-5 s on a quiet host, 10-18 s measured on a busy one)
START_TIMEOUT = 60.0
#: where the daemon notes the boot whose automatic logins it made (service.AUTOSTART_MARK
#: in its default state directory; not imported: the daemon's modules take seconds here)
AUTOSTART = Path("/run/iscsictl/autostart")


class Iscsictld:
    def __init__(self, log_dir: Path, socket_path: str = "/run/iscsictld.sock",
                 debug: bool = True) -> None:
        self.log_path = Path(log_dir) / "iscsictld.log"
        self.socket_path = socket_path
        self.debug = debug  # -d (scenarios); benchmarks run it as deployed, like iscsid
        self.proc: subprocess.Popen | None = None
        self.client = DaemonClient(socket_path, timeout=120)
        self.env: dict[str, str] = {}  # extra environment (DB roots for automatic logins)

    def start(self, timeout: float = START_TIMEOUT, *extra: str, boot: bool = True) -> None:
        """Start the daemon and wait until it answers ``ping`` (RuntimeError after ``timeout``
        s, the daemon stopped first: a scenario that failed here leaves no daemon behind
        to hold the lock for the next ones).  ``boot``: as the boot's first start (its
        automatic logins made, whatever an earlier scenario's daemon noted in AUTOSTART);
        False: a restart in the same boot."""
        if boot:
            AUTOSTART.unlink(missing_ok=True)
        subprocess.run(["modprobe", "iscsi_tcp"], check=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ, ISCSICTL_SOCKET=self.socket_path, **self.env)
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "iscsictld"), *(["-d"] if self.debug else []), *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"iscsictld exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                self.client.call("ping")
                return
            except DaemonError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("iscsictld did not answer within %s s" % timeout)

    def wait_command_server(self, timeout: float = 60.0) -> int:
        """Wait until the daemon's command server listens with its idle workers forked
        (it imports the CLI first: ~1.5 s in the VM); its pid."""
        path = Path(cli_socket_path(self.socket_path))

        def ready() -> int | None:
            kids = children(self.proc.pid) if self.proc else []
            servers = [p for p in kids if "iscsictl.cli.server" in cmdline(p)]
            if path.exists() and servers and len(children(servers[0])) >= 2:
                return servers[0]
            return None

        return wait_for(f"a command server on {path}", ready, timeout)

    def logout_all_and_stop(self) -> None:
        """Teardown for scenarios: (re)start the daemon if a scenario killed it, log out
        every session it manages (forced), stop it."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            states = self.client.call("sessions")
            if states:
                self.client.call("logout", sids=[int(s) for s in states], force=True)
        finally:
            self.stop()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            end_process(self.proc, timeout)


def children(pid: int) -> list[int]:
    """The pids of a process's children (none once it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    """A process's command line, arguments separated by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
