"""In-VM recovery benchmark, run by bench/bench_recovery.py: iscsictl vs open-iscsi
(Debian's iscsid/iscsiadm) in one boot, same LIO targets, same iscsid.conf (Debian's:
replacement_timeout 120, NOP-Out 5/5; LIO's DefaultTime2Wait 2), each side's node database
on a tmpfs (open-iscsi's /etc/iscsi, iscsictl's under /run).

a. connection killed (ss -K) during O_DIRECT writes: time until a write completes
   again (median of ROUNDS, 15 by default: one kill varies by tens of ms under TCG);
b. daemon restart with MANY live sessions: until the daemon is ready and manages all
   of them (ours: adoption; iscsid: relogs in every session) + target-side logins;
c. MANY node.startup=automatic nodes: daemon start (+ iscsiadm -L automatic for
   open-iscsi) until every disk is present;
d. all MANY connections killed at once (a target-side outage): until every session is
   LOGGED_IN with its connection up again (median of MASS_ROUNDS after one uncounted).
With the scale phases, one unmeasured login to the MANY targets comes first (warm).
Writes /results/bench_recovery.json.
"""

import json
import mmap
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import lio
from cli import Cli, direct_read, disk_count, read, scsi_disks, sessions_in_sysfs, wait_for
from iscsictld import Iscsictld
from openiscsi import etc_on_tmpfs

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))  # connection kills per side
PHASES = set(os.environ.get("BENCH_PHASES", "kill,scale").split(","))  # scale: c, d and b
MANY = int(os.environ.get("BENCH_TARGETS", "64"))
MASS_ROUNDS = int(os.environ.get("BENCH_MASS_ROUNDS", "3"))  # d: all connections killed
MIB = 1 << 20
RESULTS = Path(os.environ.get("ISCSICTL_VM_RESULTS", "/results"))
PORTAL = "127.0.0.1"
ISCSID_CONF = Path("/etc/iscsi/iscsid.conf")  # Debian's, from the host's open-iscsi


def wait(what: str, cond, timeout: float, step: float = 0.01):
    return wait_for(what, cond, timeout, step)  # a fine step by default: the figures are waits


def run(cmd: list[str], env=None, ok=(0,)) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if r.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def all_logged_in(n: int) -> bool:
    sids = sessions_in_sysfs()
    return len(sids) == n and all(
        read(f"/sys/class/iscsi_session/session{s}/state") == "LOGGED_IN" for s in sids)


def conns_up() -> int:
    """Kernel connections in state ``up`` (/sys/class/iscsi_connection/*/state)."""
    base, up = Path("/sys/class/iscsi_connection"), 0
    for conn in os.listdir(base):
        try:
            up += read(base / conn / "state") == "up"
        except OSError:  # removed meanwhile: not up
            pass
    return up


class DiskReads:
    """One 4 KiB O_DIRECT read of each disk, issued together on :meth:`go` by a thread per
    disk, each blocking in the kernel (no CPU) while its session recovers: the moment the
    last read completes is when I/O has resumed on every disk.  Polling sysfs for the
    sessions' states instead cost ~155 ms of CPU a pass over 64 sessions under TCG, and
    took one of the VM's two vCPUs from the recovery being timed."""

    def __init__(self, devs: list[str]) -> None:
        self.start, self.done, self.errors = threading.Event(), [], []
        self.threads = [threading.Thread(target=self._read, args=(d,), daemon=True)
                        for d in devs]
        for t in self.threads:
            t.start()

    def _read(self, dev: str) -> None:
        self.start.wait()
        try:
            direct_read(dev)
            self.done.append(time.monotonic())
        except OSError as exc:
            self.errors.append(f"{dev}: {exc}")

    def go(self) -> None:
        self.start.set()

    def wait(self, timeout: float) -> float:
        """The time the last read completed.  RuntimeError if one failed or after
        ``timeout`` s."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.errors or len(self.done) < len(self.threads):
            raise RuntimeError(f"reads after the kill: {len(self.done)} of {len(self.threads)} "
                               f"completed within {timeout} s; {self.errors}")
        return max(self.done)


def mass_kill_rounds(n: int, targets) -> list[float]:
    """Phase d: kill every initiator connection to the portal at once (ss -K), then time
    until a read completes on each of the ``n`` sessions' disks (:class:`DiskReads`); each
    target must have seen its session log in again, and every session must be LOGGED_IN
    with its connection up.  The first kill is not counted (it warms what a first recovery
    runs)."""
    devs = [f"/dev/{d}" for d in scsi_disks()]
    assert len(devs) == n and len(sessions_in_sysfs()) == n, f"{devs}: want {n} sessions"
    times = []
    for _ in range(MASS_ROUNDS + 1):
        time.sleep(1)
        reads, before = DiskReads(devs), accepts(targets)
        t = time.monotonic()
        subprocess.run(["ss", "-K", "dst", PORTAL, "dport", "=", "3260"], check=True,
                       capture_output=True)
        reads.go()
        times.append(reads.wait(120) - t)
        relogins = accepts(targets) - before
        assert relogins >= n, f"{relogins} logins at the targets after the kill, want {n}"
        assert all_logged_in(n) and conns_up() == n, "a session not back after its read"
    return times[1:]


def one_disk() -> str:
    sid = wait("a session", sessions_in_sysfs, 30)[0]
    blk = wait("its disk", lambda: list(Path(f"/sys/class/iscsi_session/session{sid}/device")
                                       .glob("target*/*:*:*:*/block/*")), 30)
    return f"/dev/{blk[0].name}"


class Writer(threading.Thread):
    """1 MiB O_DIRECT writes over the first 32 MiB, round and round, until stopped."""

    def __init__(self, dev: str):
        super().__init__(daemon=True)
        self.dev, self.done, self.error, self.stop = dev, [], None, threading.Event()

    def run(self):
        buf = mmap.mmap(-1, MIB)
        buf.write(os.urandom(MIB))
        fd = os.open(self.dev, os.O_WRONLY | os.O_DIRECT)
        try:
            i = 0
            while not self.stop.is_set():
                os.pwrite(fd, buf, (i % 32) * MIB)
                self.done.append(time.monotonic())
                i += 1
        except OSError as exc:
            self.error = exc
        finally:
            os.close(fd)


def kill_rounds(dev: str) -> list[float]:
    w = Writer(dev)
    w.start()
    out = []
    try:
        for _ in range(ROUNDS):
            n = len(w.done)
            wait("writes", lambda n=n: len(w.done) >= n + 5, 60)
            killed = time.monotonic()
            subprocess.run(["ss", "-K", "dst", PORTAL, "dport", "=", "3260"], check=True,
                           capture_output=True)
            # writes already on the wire may still complete just after the kill: I/O has
            # resumed at the first completion after the stall (a gap > 0.3 s) once three
            # more writes followed it
            def resumed(k=killed):
                done = list(w.done)
                for j in range(1, len(done) - 3):
                    if done[j] > k and done[j] - done[j - 1] > 0.3:
                        return done[j]
                return None
            out.append(wait("I/O resuming", resumed, 120) - killed)
            wait("LOGGED_IN", lambda: all_logged_in(1), 60)
            time.sleep(1)
    finally:
        w.stop.set()
        w.join(60)
    if w.error:
        raise RuntimeError(f"write failed: {w.error}")
    return out


def accepts(targets) -> int:
    return sum(t.login_counter("accepts") for t in targets)


class OpenIscsiSide:
    name = "open-iscsi"

    def __init__(self):
        self.proc = None

    def start_daemon(self):
        Path("/run/lock/iscsi").mkdir(parents=True, exist_ok=True)
        log = open(RESULTS / "bench-recovery-iscsid.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(["iscsid", "-f"], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        wait("iscsid", lambda: "@ISCSIADM_ABSTRACT_NAMESPACE" in Path("/proc/net/unix").read_text(), 20)

    def stop_daemon(self):
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        wait("iscsid gone", lambda: "@ISCSIADM_ABSTRACT_NAMESPACE" not in
             Path("/proc/net/unix").read_text(), 10)

    def adm(self, *args, ok=(0,)):
        return run(["iscsiadm", *args], ok=ok)

    def setup(self):
        etc = Path("/etc/iscsi")
        (etc / "initiatorname.iscsi").write_text("InitiatorName=iqn.2005-03.org.open-iscsi:bench\n")
        self.clean_db()

    def clean_db(self):
        for db in ("nodes", "send_targets"):
            shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)

    def listed(self) -> int:
        return len(self.adm("-m", "session", ok=(0, 21)).splitlines())

    def ready_after_restart(self, targets, before_accepts: int) -> dict:
        t0 = time.monotonic()
        self.start_daemon()
        # iscsid relogs in every session it finds (open-iscsi #292): done when the target
        # has seen every relogin and every session is LOGGED_IN and listed again
        try:
            wait("relogins", lambda: accepts(targets) - before_accepts >= len(targets)
                 and all_logged_in(len(targets)) and self.listed() == len(targets), 180, 0.05)
        except (AssertionError, RuntimeError):  # cli.wait_for's timeout
            pass  # recorded below: fewer relogins than sessions
        took = time.monotonic() - t0
        return {"restart": took, "restart_logins": accepts(targets) - before_accepts}

    def start_automatic(self):
        self.start_daemon()
        self.adm("-m", "node", "--loginall=automatic")

    def discover(self):
        self.adm("-m", "discovery", "-t", "st", "-p", PORTAL)

    def set_automatic(self):
        self.adm("-m", "node", "-o", "update", "-n", "node.startup", "-v", "automatic")

    def login(self, iqn):
        self.adm("-m", "node", "-T", iqn, "-p", PORTAL, "--login")

    def logout_all(self):
        self.adm("-m", "node", "--logoutall=all", ok=(0, 21))
        wait("no sessions", lambda: not sessions_in_sysfs() and disk_count() == 0, 120, 0.05)


class IscsictlSide(OpenIscsiSide):
    name = "iscsictl"

    def setup(self):
        self.cli = Cli(Path("/run/iscsictl-bench-rec/etc"))
        if ISCSID_CONF.exists():
            shutil.copy(ISCSID_CONF, self.cli.root / "iscsid.conf")
        self.d = Iscsictld(RESULTS, debug=False)
        self.d.env = {"ISCSICTL_DB_ROOT": str(self.cli.root),
                      "ISCSICTL_CONFIG_ROOT": str(self.cli.root)}
        self.clean_db()

    def clean_db(self):
        for db in ("nodes", "send_targets"):
            shutil.rmtree(self.cli.root / db, ignore_errors=True)

    def start_daemon(self):
        self.d.start()

    def stop_daemon(self):
        self.d.stop()

    def adm(self, *args, ok=(0,)):
        return run([str(Path(sys.executable).parent / "iscsictl"), *args], env=self.cli.env, ok=ok)

    def ready_after_restart(self, targets, before_accepts: int) -> dict:
        t0 = time.monotonic()
        self.start_daemon()
        wait("adoption", lambda: len(self.d.client.call("sessions")) == len(targets)
             and all_logged_in(len(targets)) and self.listed() == len(targets), 60, 0.05)
        took = time.monotonic() - t0
        states = self.d.client.call("sessions")
        assert all(s["adopted"] for s in states.values())
        time.sleep(2)  # the automatic logins after the restart find every node present
        return {"restart": took, "restart_logins": accepts(targets) - before_accepts}

    def start_automatic(self):
        self.start_daemon()


def measure(side, rk, many) -> dict:
    out = {}
    side.setup()
    side.start_daemon()
    if "kill" in PHASES:  # a. connection kill -> I/O resumes
        side.discover()
        side.login(rk.iqn)
        dev = one_disk()
        times = kill_rounds(dev)
        out["kill_to_io"] = statistics.median(times)
        out["kill_to_io_all"] = times
        side.logout_all()
        side.clean_db()
    if "scale" not in PHASES:
        side.stop_daemon()
        return out
    # c. automatic nodes at daemon start
    rk.tpg.enable = False  # only the MANY targets answer discovery
    side.discover()
    side.set_automatic()
    side.stop_daemon()
    t0 = time.monotonic()
    side.start_automatic()
    wait("all disks", lambda: disk_count() >= len(many), 300, 0.01)
    out["autostart"] = time.monotonic() - t0
    wait("all logged in", lambda: all_logged_in(len(many)), 60)
    # d. every connection killed at once
    times = mass_kill_rounds(len(many), many)
    out["mass_kill"] = statistics.median(times)
    out["mass_kill_all"] = times
    # b. restart with MANY live sessions
    time.sleep(2)
    before = accepts(many)
    side.stop_daemon()
    assert len(sessions_in_sysfs()) == len(many), "stopping the daemon removed sessions"
    out.update(side.ready_after_restart(many, before))
    side.logout_all()
    side.clean_db()
    side.stop_daemon()
    rk.tpg.enable = True
    return out


def warm(rk, many) -> None:
    """Before either side's figures: one unmeasured login to and logout from the MANY
    targets (by iscsictl, the quicker), so that the boot's first mass login (kernel and
    LIO cold, its slowest, whichever side runs it) is not open-iscsi's measured automatic
    start."""
    side = IscsictlSide()
    side.setup()
    side.start_daemon()
    try:
        rk.tpg.enable = False  # the MANY targets alone
        side.discover()
        side.adm("-m", "node", "--loginall=all")
        wait("all disks", lambda: disk_count() >= len(many), 300, 0.01)
        side.logout_all()
        side.clean_db()
    finally:
        rk.tpg.enable = True
        side.stop_daemon()


def main() -> int:
    subprocess.run(["modprobe", "iscsi_tcp"], check=True)
    etc_on_tmpfs()  # both databases on a tmpfs
    rk = lio.LioTarget.create("iqn.2003-01.org.example.bench:kill", luns=[64 * MIB])
    many = lio.LioTarget.create_many(MANY, prefix="iqn.2003-01.org.example.bench:auto",
                                     luns=[16 * MIB])
    out = {"rounds": ROUNDS, "targets": MANY}
    try:
        if "scale" in PHASES:
            warm(rk, many)
        for side in (OpenIscsiSide(), IscsictlSide()):
            out[side.name] = measure(side, rk, many)
            print(side.name, out[side.name], flush=True)
    finally:
        lio.teardown_all()
    (RESULTS / "bench_recovery.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
