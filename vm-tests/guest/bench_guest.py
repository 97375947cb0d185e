"""In-VM benchmark, run by bench/bench_vm.py: iscsictl vs open-iscsi in one boot,
same LIO target, same kernel, whole commands timed (daemons already running), each side's
node database on a tmpfs (open-iscsi's /etc/iscsi, iscsictl's under /run).

1. discovery + login until the disk is present, and each of its two commands alone (the
   discovery finds the 32 targets of phase 2);
2. 32 targets logged in with -L all until every disk is present, and logged out with -U all
   until no disk is left;
3. a boot login from the firmware without a daemon (the VM's iBFT, vm-tests/guest/ibft.py:
   two targets, three LUNs): iscsistart -b against iscsictl-start -b, until the disks are
   present (median of OTHER_ROUNDS).
First each side logs in to every target once, unmeasured (the boot's first mass login is
its slowest, whichever side runs it).  Phases 1 and 2 then run in BLOCKS blocks per side,
the sides alternating A B B A ... (each block starts its daemon, warms up with one round of
phase 1, runs ROUNDS rounds of phase 1 and MANY_ROUNDS of phase 2, stops its daemon), so
that a drift of the VM's speed over the run (the host lending its CPU to other guests for
minutes) falls on both sides alike; each figure is the median of every round of its side.
Writes /results/bench.json (and, block by block, bench-partial.json: a late failure keeps
the figures measured before it).
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import lio  # noqa: E402
from cli import VENV_BIN, Cli, disk_count, sessions_in_sysfs  # noqa: E402
from devwatch import DiskNodeWatch  # noqa: E402
from openiscsi import etc_on_tmpfs  # noqa: E402
from iscsictld import START_TIMEOUT, Iscsictld  # noqa: E402

#: phase 1's rounds per block: its figure is the median of ROUNDS * BLOCKS rounds a side (10;
#: one side's rounds spread by 30-50% under TCG: iscsictl 0.078-0.126 s, open-iscsi
#: 0.35-0.44 s in one run, so a median of 6 still moved with a round or two)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MANY = int(os.environ.get("BENCH_TARGETS", "32"))
MANY_ROUNDS = int(os.environ.get("BENCH_MANY_ROUNDS", "3"))  # per block
BLOCKS = int(os.environ.get("BENCH_BLOCKS", "2"))  # per side, A B B A ...
ALL_ROUNDS = ROUNDS * BLOCKS  # phase 1's, per side
#: phase 3's rounds and the context figures' (each ~2-5 s a round, one block each)
OTHER_ROUNDS = int(os.environ.get("BENCH_OTHER_ROUNDS", "6"))
MIB = 1 << 20
RESULTS = Path(os.environ.get("ISCSICTL_VM_RESULTS", "/results"))
PORTAL = "127.0.0.1"


_watch: DiskNodeWatch | None = None


def disks_present(n: int, timeout: float = 60) -> None:
    """Return as soon as ``n`` SCSI disks' device nodes exist (:mod:`devwatch`: the moment
    the kernel adds each disk, seen through inotify, not a poll's next look); RuntimeError
    after ``timeout`` s."""
    global _watch
    if _watch is None:
        _watch = DiskNodeWatch()
    _watch.wait(n, timeout)


def no_disks(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while disk_count() or sessions_in_sysfs():
        if time.monotonic() > deadline:
            raise RuntimeError("disks or sessions left after logout")
        time.sleep(0.02)


#: seconds after which a timed command counts as hung (bench_scale_guest raises it)
COMMAND_TIMEOUT = 300


def run(cmd: list[str], env=None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")


class OpenIscsiSide:
    name = "open-iscsi"

    def start(self) -> None:
        Path("/run/lock/iscsi").mkdir(parents=True, exist_ok=True)
        etc = Path("/etc/iscsi")
        (etc / "initiatorname.iscsi").write_text("InitiatorName=iqn.2005-03.org.open-iscsi:bench\n")
        self.log = open(RESULTS / "bench-iscsid.log", "ab")
        self.proc = subprocess.Popen(["iscsid", "-f"], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while "@ISCSIADM_ABSTRACT_NAMESPACE" not in Path("/proc/net/unix").read_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"iscsid exited with {self.proc.returncode} (see "
                                   "bench-iscsid.log)")
            if time.monotonic() > deadline:
                raise RuntimeError("iscsid did not listen within 30 s (see bench-iscsid.log)")
            time.sleep(0.02)

    def clean_db(self) -> None:
        for db in ("nodes", "send_targets"):
            shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)

    def login(self, target: str) -> None:
        run(["iscsiadm", "-m", "node", "-T", target, "-p", PORTAL, "--login"])

    def discover(self) -> None:
        run(["iscsiadm", "-m", "discovery", "-t", "st", "-p", PORTAL])

    def login_all(self) -> None:
        run(["iscsiadm", "-m", "node", "--loginall=all"])

    def logout_all(self) -> None:
        run(["iscsiadm", "-m", "node", "--logoutall=all"])

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:  # seen once: iscsid ignoring SIGTERM after -U all
            print("iscsid did not stop within 20 s of SIGTERM; killed", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(20)


class IscsictlSide:
    name = "iscsictl"

    def start(self) -> None:
        self.daemon = Iscsictld(RESULTS, debug=False)
        self.daemon.start()
        self.daemon.wait_command_server()  # commands then run there, as on a running host
        self.cli = Cli(Path("/run/iscsictl-bench/etc"))
        # the iscsid.conf open-iscsi reads (Debian's), read by every command as on a host
        # that has one (before session 55 iscsictl ran on its compiled defaults, no file
        # parsed: ~0.4 ms of a discovery's 3.7 ms on the host)
        conf = Path("/etc/iscsi/iscsid.conf")
        if conf.exists():
            shutil.copyfile(conf, self.cli.root / "iscsid.conf")
        self.bin = self.cli.env

    def clean_db(self) -> None:
        for db in ("nodes", "send_targets"):
            shutil.rmtree(self.cli.root / db, ignore_errors=True)

    def login(self, target: str) -> None:
        self.cli.ok("-m", "node", "-T", target, "-p", PORTAL, "--login")

    def discover(self) -> None:
        self.cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)

    def login_all(self) -> None:
        self.cli.ok("-m", "node", "-L", "all")

    def logout_all(self) -> None:
        self.cli.ok("-m", "node", "-U", "all")

    def stop(self) -> None:
        self.daemon.stop()


def _median_time(cmd: list[str], rounds: int = OTHER_ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        t = time.monotonic()
        run(cmd)
        times.append(time.monotonic() - t)
    return statistics.median(times)


def context(one) -> dict:
    """Where the time goes under TCG: a command's start (iscsiadm's, and iscsictl's through
    the daemon's command server and as a Python process of its own), a Python process,
    and the daemon's own login-to-disk (the kernel path without a CLI process)."""
    ctx = {"python_start": _median_time([sys.executable, "-c", "pass"]),
           "python_start_nosite": _median_time([sys.executable, "-S", "-c", "pass"]),
           "cli_start_python": _median_time([str(VENV_BIN / "iscsictl-py"), "--version"]),
           "iscsiadm_start": _median_time(["iscsiadm", "--version"])}
    side = IscsictlSide()
    side.start()
    ipc = []
    try:
        ctx["cli_start"] = _median_time([str(VENV_BIN / "iscsictl"), "--version"])
        rec = {"node.name": one.iqn, "node.conn[0].address": PORTAL, "node.conn[0].port": "3260",
               "node.tpgt": "1"}
        for _ in range(OTHER_ROUNDS + 1):
            t = time.monotonic()
            res = side.daemon.client.call("login", records=[rec], initiator_name=side.cli.initiator)
            disks_present(1)
            ipc.append(time.monotonic() - t)
            side.daemon.client.call("logout", sids=res[0]["sids"])
            no_disks()
    finally:
        side.stop()
    ctx["ipc_login_to_disk"] = statistics.median(ipc[1:])
    return ctx


def measure_block(side, one, many_targets) -> dict[str, list[float]]:
    """One block of phases 1 and 2 on ``side``: its daemon started, a warm-up round, ROUNDS
    rounds of discovery + login, MANY_ROUNDS of -L all / -U all, its daemon stopped; every
    round's time (s) per figure."""
    side.start()
    try:
        out: dict[str, list[float]] = {k: [] for k in
                                       ("login_to_disk", "discovery", "login_only",
                                        "loginall", "logoutall")}
        for i in range(ROUNDS + 1):  # round 0 warms caches and byte code
            side.clean_db()
            t = time.monotonic()
            side.discover()
            t1 = time.monotonic()
            side.login(one.iqn)
            disks_present(1)
            t2 = time.monotonic()
            if i:
                out["login_to_disk"].append(t2 - t)
                out["discovery"].append(t1 - t)
                out["login_only"].append(t2 - t1)
            side.logout_all()
            no_disks()
        side.clean_db()
        side.discover()
        for _ in range(MANY_ROUNDS):  # one run varies by 10-40% under TCG: medians
            t = time.monotonic()
            side.login_all()
            disks_present(len(many_targets))
            out["loginall"].append(time.monotonic() - t)
            t = time.monotonic()
            side.logout_all()
            no_disks()
            out["logoutall"].append(time.monotonic() - t)
        return out
    finally:
        side.stop()


def warm_boot(side, many_targets) -> None:
    """Before any block: one unmeasured -L all / -U all of ``side`` (its daemon started and
    stopped), so that the boot's first mass login (the kernel's and LIO's code and caches
    still cold, the slowest of a boot) falls on no side's measured rounds."""
    side.start()
    try:
        side.clean_db()
        side.discover()
        side.login_all()
        disks_present(len(many_targets))
        side.logout_all()
        no_disks()
    finally:
        side.stop()


def block_order(sides: list, blocks: int) -> list:
    """The sides in A B B A A B ... order, ``blocks`` times each: a linear drift of the
    VM's speed adds the same to both sides' mean position in time."""
    order = []
    for b in range(blocks):
        order += sides if b % 2 == 0 else sides[::-1]
    return order


def summarise(rounds: dict[str, list[float]]) -> dict:
    """Per figure, the median of the rounds and (``<figure>_all``) the rounds in order."""
    out = {}
    for key, times in rounds.items():
        out[key] = statistics.median(times)
        out[key + "_all"] = times
    return out


def boot(rounds: int = OTHER_ROUNDS) -> dict:
    """Phase 3: each tool's boot login timed from its start until the three disks exist,
    the tools alternating round by round (A B, B A, ...: a slow stretch of the host falls
    on both; before session 55 all of one's rounds ran, then all of the other's); between
    rounds iscsictld (no command server) adopts the sessions and logs them out."""
    import ibft

    cmds = {"open-iscsi": ["iscsistart", "-b"],
            "iscsictl": [str(VENV_BIN / "iscsictl-start"), "-b"]}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    ibft.serve_in_guest(lio.LioTarget.create)
    try:
        for i in range(rounds + 1):  # the first round warms caches and byte code
            for name in (list(cmds) if i % 2 == 0 else list(reversed(cmds))):
                t = time.monotonic()
                run(cmds[name])
                disks_present(3)
                times[name].append(time.monotonic() - t)
                daemon = Iscsictld(RESULTS, debug=False)
                daemon.start(START_TIMEOUT, "--no-command-server", "--no-autostart")
                try:
                    states = daemon.client.call("sessions")
                    daemon.client.call("logout", sids=[int(s) for s in states], force=True)
                finally:
                    daemon.stop()
                no_disks()
    finally:
        ibft.unserve_in_guest()
    return {name: statistics.median(ts[1:]) for name, ts in times.items()}


def main() -> int:
    subprocess.run(["modprobe", "iscsi_tcp"], check=True)
    etc_on_tmpfs()  # both databases on a tmpfs
    one = lio.LioTarget.create("iqn.2003-01.org.example.bench:one", luns=[16 * MIB])
    # the many-target phase: one LUN each; `one` is logged in too by -L all
    many = lio.LioTarget.create_many(MANY - 1, prefix="iqn.2003-01.org.example.bench:m")
    out = {"rounds": ALL_ROUNDS, "targets": MANY, "many_rounds": MANY_ROUNDS * BLOCKS,
           "blocks": BLOCKS}
    partial = RESULTS / "bench-partial.json"  # the figures so far, block by block
    rounds: dict[str, dict[str, list[float]]] = {}
    try:
        sides = [OpenIscsiSide(), IscsictlSide()]
        for side in sides:
            warm_boot(side, [one, *many])
        for side in block_order(sides, BLOCKS):
            got = measure_block(side, one, [one, *many])
            mine = rounds.setdefault(side.name, {k: [] for k in got})
            for k, v in got.items():
                mine[k] += v
            out[side.name] = summarise(mine)
            partial.write_text(json.dumps(out, indent=2))
        out["context"] = context(one)
        partial.write_text(json.dumps(out, indent=2))
        out["boot"] = boot()
    finally:
        lio.teardown_all()
    (RESULTS / "bench.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
