"""Issue 6 fault injection: recovery, replacement timeout, daemon restart, scale.

Each scenario asserts on the real kernel's state and on the data on disk."""

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cli import Cli, read, sessions_in_sysfs, wait_disks
from iscsictld import Iscsictld

MIB = 1 << 20
PORTAL = "127.0.0.1"


@pytest.fixture
def env(scenario_dir, lio):
    cli = Cli(scenario_dir / "etc")
    d = Iscsictld(scenario_dir)
    d.env = {"ISCSICTL_DB_ROOT": str(cli.root), "ISCSICTL_CONFIG_ROOT": str(cli.root)}
    yield cli, d
    try:
        if d.proc is None or d.proc.poll() is not None:
            d.start()
        states = d.client.call("sessions")
        if states:
            d.client.call("logout", sids=[int(s) for s in states], force=True)
    finally:
        d.stop()
    assert sessions_in_sysfs() == [], "a kernel session was left behind"


def pattern(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (MIB // 32)


class Writer(threading.Thread):
    """Writes 1 MiB blocks with O_DIRECT in a loop; records when each finished."""

    def __init__(self, dev: str, blocks: int):
        super().__init__(daemon=True)
        self.dev, self.blocks = dev, blocks
        self.done: list[float] = []
        self.error: Exception | None = None

    def run(self):
        import mmap

        buf = mmap.mmap(-1, MIB)
        fd = os.open(self.dev, os.O_WRONLY | os.O_DIRECT)
        try:
            for i in range(self.blocks):
                buf.seek(0)
                buf.write(pattern(i))
                os.pwrite(fd, buf, i * MIB)
                self.done.append(time.monotonic())
        except OSError as exc:
            self.error = exc
        finally:
            os.close(fd)


def verify(dev: str, blocks: int) -> None:
    with open(dev, "rb", buffering=0) as f:
        for i in range(blocks):
            f.seek(i * MIB)
            assert f.read(MIB) == pattern(i), f"block {i} differs"


def test_connection_killed_during_writes(lio, env, scenario_dir):
    """1. kill the TCP connection in the middle of verified writes: I/O resumes, data intact."""
    cli, d = env
    t = lio.create("iqn.2003-01.org.example.vm:rec1", luns=[64 * MIB])
    d.start()
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
    sid = sessions_in_sysfs()[0]
    dev = wait_disks(sid, 1)[0]
    w = Writer(dev, 48)
    w.start()
    while len(w.done) < 8:
        time.sleep(0.01)
    killed_at = time.monotonic()
    subprocess.run(["ss", "-K", "dst", PORTAL, "dport", "=", "3260"], check=True,
                   capture_output=True)
    n_at_kill = len(w.done)
    w.join(120)
    assert not w.is_alive() and w.error is None, w.error
    after = [x for x in w.done[n_at_kill:] if x > killed_at]
    resumed = after[0] - killed_at if after else float("nan")
    (scenario_dir / "recovery.txt").write_text(f"I/O resumed {resumed:.3f} s after the kill\n")
    print(f"I/O resumed {resumed:.3f} s after the connection was killed")
    verify(dev, 48)
    states = d.client.call("sessions")
    assert states[str(sid)]["conn_state"] == "LOGGED IN"
    assert states[str(sid)]["recoveries"] >= 1
    assert read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
    assert "is operational after recovery" in (scenario_dir / "iscsictld.log").read_text()
