"""The main job, visibly (runs in the guest; `make demo` streams its output):
an LIO target, iscsictld, discovery, login through the kernel, the disk,
16 MiB written and read back with O_DIRECT, checksums, logout."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from cli import Cli, sessions_in_sysfs, wait_disks  # noqa: E402
from iscsictld import Iscsictld  # noqa: E402

import lio  # noqa: E402

OUT = open(Path(os.environ.get("ISCSICTL_VM_RESULTS", "/results")) / "demo.out", "w")
T0 = time.monotonic()
MIB = 1 << 20


def say(text: str = "") -> None:
    for line in text.rstrip("\n").split("\n"):
        OUT.write(f"[{time.monotonic() - T0:6.2f}s] {line}\n" if line else "\n")
    OUT.flush()


def step(title: str) -> None:
    say("")
    say(f"== {title}")


def main() -> int:
    work = Path("/run/iscsictl-demo")
    step("LIO target in the guest kernel: one 64 MiB LUN on 127.0.0.1:3260")
    target = lio.LioTarget.create("iqn.2003-01.org.example.demo:disk0", luns=[64 * MIB])
    say(f"target {target.iqn}")
    step("start iscsictld (owns the kernel's iSCSI sessions)")
    daemon = Iscsictld(Path("/results"))  # its log kept for the host (printed on a failure)
    work.mkdir(parents=True, exist_ok=True)
    daemon.start()
    say("iscsictld answers on its socket")
    cli = Cli(work / "etc")
    try:
        # as on a running host: until its command server has imported the CLI (a few s
        # under TCG after the daemon answers), a command starts a Python process of its own
        daemon.wait_command_server()
        say("its command server is ready: commands start no Python process of their own")
        step("$ iscsictl -m discovery -t st -p 127.0.0.1")
        t = time.monotonic()
        found = cli.ok("-m", "discovery", "-t", "st", "-p", "127.0.0.1")
        took = time.monotonic() - t
        say(found)
        say(f"discovery took {took:.3f} s")
        step(f"$ iscsictl -m node -T {target.iqn} -p 127.0.0.1 --login")
        t = time.monotonic()
        say(cli.ok("-m", "node", "-T", target.iqn, "-p", "127.0.0.1", "--login"))
        sid = sessions_in_sysfs()[0]
        dev = wait_disks(sid, 1)[0]
        say(f"disk {dev} present {time.monotonic() - t:.3f} s after the login command started")
        step("$ iscsictl -m session -P 3")
        say(cli.ok("-m", "session", "-P", "3"))
        step(f"the disk: {dev}")
        size = int(Path(f"/sys/block/{os.path.basename(dev)}/size").read_text()) * 512
        model = Path(f"/sys/block/{os.path.basename(dev)}/device/model").read_text().strip()
        say(f"{dev}: {size // MIB} MiB, model {model}")
        step("write 16 MiB of random data with O_DIRECT, read it back")
        data = os.urandom(16 * MIB)
        src = work / "data.bin"
        src.write_bytes(data)
        subprocess.run(["dd", f"if={src}", f"of={dev}", "bs=1M", "oflag=direct", "status=none"],
                       check=True)
        back = subprocess.run(["dd", f"if={dev}", "bs=1M", "count=16", "iflag=direct", "status=none"],
                              check=True, capture_output=True).stdout
        a, b = hashlib.sha256(data).hexdigest(), hashlib.sha256(back).hexdigest()
        say(f"written  sha256 {a}")
        say(f"read     sha256 {b}")
        say("EQUAL" if a == b else "DIFFERENT")
        step(f"$ iscsictl -m node -T {target.iqn} -p 127.0.0.1 --logout")
        say(cli.ok("-m", "node", "-T", target.iqn, "-p", "127.0.0.1", "--logout"))
        step("$ iscsictl -m session")
        r = cli.run("-m", "session")
        say((r.stdout + r.stderr).strip() + f"   (exit {r.returncode})")
        say(f"kernel sessions left: {sessions_in_sysfs()}")
        return 0 if a == b and not sessions_in_sysfs() else 1
    finally:
        daemon.stop()
        target.teardown()


if __name__ == "__main__":
    try:
        rc = main()
    except Exception as exc:  # noqa: BLE001 - the demo reports, the host exits non-zero
        say(f"FAILED: {type(exc).__name__}: {exc}")
        rc = 1
    say(f"demo finished ({'ok' if rc == 0 else 'failed'})")
    sys.exit(rc)
