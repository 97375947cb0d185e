"""In-VM benchmark at scale, run by bench/bench_scale.py: iscsictl vs open-iscsi with
BENCH_SCALE_SESSIONS (default 256) LIO targets of one LUN each, in one boot, whole commands,
daemons already running: -L all until every disk is present, -m session, -m session -P 3,
-U all until no disk is left; each side's node database on a tmpfs (open-iscsi's
/etc/iscsi, iscsictl's under /run).  One unmeasured mass login first (bench_guest.warm_boot),
then one measured run per side.  Writes /results/bench_scale.json.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import bench_guest  # noqa: E402
import lio  # noqa: E402
from bench_guest import RESULTS, IscsictlSide, OpenIscsiSide, disks_present, no_disks  # noqa: E402
from cli import VENV_BIN  # noqa: E402
from openiscsi import etc_on_tmpfs  # noqa: E402

SESSIONS = int(os.environ.get("BENCH_SCALE_SESSIONS", "256"))
# open-iscsi's -L all of 256 took 134 s in one boot and more than 300 s in two slower ones
# (its 64 took 43-66 s there): its commands get longer before they count as hung
bench_guest.COMMAND_TIMEOUT = 1200
MIB = 1 << 20


def listing(cmd: list[str], env: dict | None, sessions: int) -> float:
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    dt = time.monotonic() - t
    if r.returncode != 0 or sessions > len(r.stdout.splitlines()):
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stderr[-2000:]}")
    return dt


def measure(side) -> dict:
    side.start()
    try:
        side.clean_db()
        side.discover()
        t = time.monotonic()
        side.login_all()
        disks_present(SESSIONS, timeout=1800)
        out = {"loginall": time.monotonic() - t}
        if isinstance(side, IscsictlSide):
            cmd, env = [str(VENV_BIN / "iscsictl")], side.cli.env
        else:
            cmd, env = ["iscsiadm"], None
        out["session"] = listing([*cmd, "-m", "session"], env, SESSIONS)
        out["session_p3"] = listing([*cmd, "-m", "session", "-P", "3"], env, SESSIONS)
        t = time.monotonic()
        side.logout_all()
        no_disks(timeout=1800)
        out["logoutall"] = time.monotonic() - t
        return out
    finally:
        side.stop()


def main() -> int:
    subprocess.run(["modprobe", "iscsi_tcp"], check=True)
    etc_on_tmpfs()  # both databases on a tmpfs
    targets = lio.LioTarget.create_many(SESSIONS, prefix="iqn.2003-01.org.example.scale:t",
                                        luns=[MIB])
    out = {"sessions": SESSIONS}
    try:
        # the boot's first mass login (kernel and LIO cold) is its slowest, whichever side
        # runs it: made unmeasured first (by iscsictl, the quicker), not open-iscsi's figure
        bench_guest.warm_boot(IscsictlSide(), targets)
        for side in (OpenIscsiSide(), IscsictlSide()):
            out[side.name] = measure(side)
            print(side.name, out[side.name], flush=True)
    finally:
        lio.teardown_all()
    (RESULTS / "bench_scale.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
