"""In-VM benchmark, run by bench/bench_vm.py: iscsictl vs open-iscsi in one boot,
same LIO target, same kernel, whole commands timed (daemons already running).

1. discovery + login until the disk is present (median of ROUNDS, after a warm-up), and
   each of its two commands alone (the discovery finds the 32 targets of phase 2);
2. 32 targets logged in with -L all until every disk is present (median of MANY_ROUNDS),
   and logged out with -U all until no disk is left;
3. a boot login from the firmware without a daemon (the VM's iBFT, vm-tests/guest/ibft.py:
   two targets, three LUNs): iscsistart -b against iscsictl-start -b, until the disks are
   present (median of ROUNDS).
Writes /results/bench.json (and, phase by phase, bench-partial.json: a late failure keeps
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
from cli import VENV_BIN, Cli, sessions_in_sysfs  # noqa: E402
from iscsictld import START_TIMEOUT, Iscsictld  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MANY = int(os.environ.get("BENCH_TARGETS", "32"))
MANY_ROUNDS = int(os.environ.get("BENCH_MANY_ROUNDS", "5"))
MIB = 1 << 20
RESULTS = Path(os.environ.get("ISCSICTL_VM_RESULTS", "/results"))
PORTAL = "127.0.0.1"


def disks_present(n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(Path("/sys/block").glob("sd*"))) >= n:
            return
        time.sleep(0.005)
    raise RuntimeError(f"{n} disks not present after {timeout} s")


def no_disks(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while list(Path("/sys/block").glob("sd*")) or sessions_in_sysfs():
        if time.monotonic() > deadline:
            raise RuntimeError("disks or sessions left after logout")
        time.sleep(0.02)


def run(cmd: list[str], env=None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
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
        while "@ISCSIADM_ABSTRACT_NAMESPACE" not in Path("/proc/net/unix").read_text():
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


def _median_time(cmd: list[str], rounds: int = ROUNDS) -> float:
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
        for _ in range(ROUNDS + 1):
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


def measure(side, one, many_targets) -> dict:
    side.start()
    try:
        times, discovery, login = [], [], []
        for i in range(ROUNDS + 1):  # round 0 warms caches and byte code
            side.clean_db()
            t = time.monotonic()
            side.discover()
            t1 = time.monotonic()
            side.login(one.iqn)
            disks_present(1)
            t2 = time.monotonic()
            if i:
                times.append(t2 - t)
                discovery.append(t1 - t)
                login.append(t2 - t1)
            side.logout_all()
            no_disks()
        many_iqns = [t.iqn for t in many_targets]
        side.clean_db()
        side.discover()
        many, many_logout = [], []
        for _ in range(MANY_ROUNDS):  # one run varies by 10-40% under TCG: the median of 5
            t = time.monotonic()
            side.login_all()
            disks_present(len(many_iqns))
            many.append(time.monotonic() - t)
            t = time.monotonic()
            side.logout_all()
            no_disks()
            many_logout.append(time.monotonic() - t)
        return {"login_to_disk": statistics.median(times), "login_to_disk_all": times,
                "discovery": statistics.median(discovery), "login_only": statistics.median(login),
                "loginall": statistics.median(many), "loginall_all": many,
                "logoutall": statistics.median(many_logout), "logoutall_all": many_logout}
    finally:
        side.stop()


def boot(rounds: int = ROUNDS) -> dict:
    """Phase 3: each tool's boot login timed from its start until the three disks exist;
    between rounds iscsictld (no command server) adopts the sessions and logs them out."""
    import ibft

    ibft.serve_in_guest(lio.LioTarget.create)
    out = {}
    try:
        for name, cmd in (("open-iscsi", ["iscsistart", "-b"]),
                          ("iscsictl", [str(VENV_BIN / "iscsictl-start"), "-b"])):
            times = []
            for _ in range(rounds + 1):  # the first warms caches and byte code
                t = time.monotonic()
                run(cmd)
                disks_present(3)
                times.append(time.monotonic() - t)
                daemon = Iscsictld(RESULTS, debug=False)
                daemon.start(START_TIMEOUT, "--no-command-server", "--no-autostart")
                try:
                    states = daemon.client.call("sessions")
                    daemon.client.call("logout", sids=[int(s) for s in states], force=True)
                finally:
                    daemon.stop()
                no_disks()
            out[name] = statistics.median(times[1:])
    finally:
        ibft.unserve_in_guest()
    return out


def main() -> int:
    subprocess.run(["modprobe", "iscsi_tcp"], check=True)
    one = lio.LioTarget.create("iqn.2003-01.org.example.bench:one", luns=[16 * MIB])
    # the many-target phase: one LUN each; `one` is logged in too by -L all
    many = lio.LioTarget.create_many(MANY - 1, prefix="iqn.2003-01.org.example.bench:m")
    out = {"rounds": ROUNDS, "targets": MANY, "many_rounds": MANY_ROUNDS}
    partial = RESULTS / "bench-partial.json"  # each phase's figures as soon as it ends
    try:
        for side in (OpenIscsiSide(), IscsictlSide()):
            out[side.name] = measure(side, one, [one, *many])
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
