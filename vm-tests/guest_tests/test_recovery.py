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

    def __init__(self, dev: str, blocks: int, pause: float = 0.0):
        super().__init__(daemon=True)
        self.dev, self.blocks, self.pause = dev, blocks, pause
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
                if self.pause:
                    time.sleep(self.pause)
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


def wait_for(what: str, cond, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


def timed_pread(dev: str, timeout: float) -> tuple[float, Exception | None]:
    """One 4 KiB O_DIRECT read in a thread (the test never hangs on a blocked disk):
    (seconds it took, the OSError or None).  AssertionError if it has not returned
    after ``timeout`` s."""
    import mmap

    out: dict = {}

    def run():
        buf = mmap.mmap(-1, 4096)
        t = time.monotonic()
        try:
            fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
            try:
                os.preadv(fd, [buf], 0)
            finally:
                os.close(fd)
        except OSError as exc:
            out["error"] = exc
        out["took"] = time.monotonic() - t

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"a read of {dev} still hangs after {timeout} s"
    return out["took"], out.get("error")


def login_one(cli, d, lio, iqn: str, **updates: str):
    t = lio.create(iqn, luns=[64 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    for k, v in updates.items():
        cli.update(t.iqn, PORTAL, k, v)
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
    sid = sessions_in_sysfs()[0]
    return t, sid, wait_disks(sid, 1)[0]


def test_target_away_longer_than_replacement_timeout(lio, env, scenario_dir):
    """2. target away longer than replacement_timeout: I/O fails fast; target back:
    the session recovers by itself and I/O works again."""
    cli, d = env
    d.start()
    t, sid, dev = login_one(cli, d, lio, "iqn.2003-01.org.example.vm:rec2",
                            **{"node.session.timeo.replacement_timeout": "5"})
    assert read(f"/sys/class/iscsi_session/session{sid}/recovery_tmo") == "5"
    verify_w = Writer(dev, 2)
    verify_w.run()
    assert verify_w.error is None
    away = time.monotonic()
    t.tpg.enable = False  # LIO drops the session's connection
    took, err = timed_pread(dev, 30)
    failed_after = time.monotonic() - away
    assert isinstance(err, OSError), "a read succeeded with the target away"
    # the kernel's recovery timer (5 s) + detecting the drop: never the SCSI timeouts (30 s+)
    assert failed_after < 5 + 6, f"I/O failed only {failed_after:.1f} s after the target went away"
    took2, err2 = timed_pread(dev, 10)
    assert isinstance(err2, OSError) and took2 < 1.0, (took2, err2)
    # 6.1's session_recovery_timedout() moves FAILED to FREE when the timer fires
    assert read(f"/sys/class/iscsi_session/session{sid}/state") in ("FAILED", "FREE")
    time.sleep(2)
    states = d.client.call("sessions")
    assert states[str(sid)]["conn_state"] != "LOGGED IN"
    back = time.monotonic()
    t.tpg.enable = True
    wait_for("sysfs LOGGED_IN", lambda: read(f"/sys/class/iscsi_session/session{sid}/state")
             == "LOGGED_IN", 60)
    wait_for("the daemon's LOGGED IN", lambda: d.client.call("sessions")[str(sid)]["conn_state"]
             == "LOGGED IN", 30)
    recovered = time.monotonic() - back
    disk = Path(f"/sys/block/{Path(dev).name}/device/state")
    wait_for(f"{disk} running", lambda: read(disk) == "running", 15)
    w = Writer(dev, 4)
    w.run()
    assert w.error is None, w.error
    verify(dev, 4)
    assert sessions_in_sysfs() == [sid]
    msg = (f"I/O failed {failed_after:.3f} s after the target went away (then in {took2:.3f} s); "
           f"session back {recovered:.3f} s after the target returned\n")
    (scenario_dir / "timings.txt").write_text(msg)
    print(msg)
    assert "is operational after recovery" in (scenario_dir / "iscsictld.log").read_text()


def test_daemon_killed_during_io(lio, env, scenario_dir):
    """3. kill -9 the daemon during writes, start it again: I/O never stops, no new
    login on the target, the session is adopted and logout works."""
    cli, d = env
    d.start()
    t, sid, dev = login_one(cli, d, lio, "iqn.2003-01.org.example.vm:rec3")
    accepts = t.login_counter("accepts")
    assert accepts >= 1
    w = Writer(dev, 60, pause=0.1)
    w.start()
    wait_for("8 writes", lambda: len(w.done) >= 8, 30, 0.01)
    d.kill9()
    killed = time.monotonic()
    n_killed = len(w.done)
    time.sleep(1.5)
    d.start()
    restarted = time.monotonic()
    written_while_dead = [x for x in w.done if killed < x < restarted]
    assert written_while_dead, "no write completed while the daemon was dead"
    states = d.client.call("sessions")
    assert list(states) == [str(sid)]
    assert states[str(sid)]["adopted"] is True
    assert states[str(sid)]["conn_state"] == "LOGGED IN"
    assert states[str(sid)]["isid"], "the ISID was not restored from the state file"
    w.join(120)
    assert not w.is_alive() and w.error is None, w.error
    gaps = [b - a for a, b in zip(w.done[n_killed - 1:], w.done[n_killed:])]
    verify(dev, 60)
    assert t.login_counter("accepts") == accepts, "the restarted daemon logged in again"
    assert read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
    assert sessions_in_sysfs() == []
    msg = (f"{len(written_while_dead)} writes completed while the daemon was dead; "
           f"longest gap between writes {max(gaps):.3f} s\n")
    (scenario_dir / "timings.txt").write_text(msg)
    print(msg)
    assert "adopted session %d" % sid in (scenario_dir / "iscsictld.log").read_text()
