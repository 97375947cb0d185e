#!/usr/bin/env python3
"""Kernel data path at scale, in one VM boot: iscsictl vs open-iscsi with 256 sessions
(BENCH_SCALE_SESSIONS), one LIO target and LUN each, whole commands, daemons running.

Prints: -L all until every disk is present, -m session, -m session -P 3, and -U all until
no disk is left, with the ratio open-iscsi / iscsictl.  open-iscsi's -L all of 256 takes
about two minutes under TCG; the whole run about four.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))
import vmharness  # noqa: E402


def main() -> int:
    env = {k: os.environ[k] for k in ("BENCH_SCALE_SESSIONS",) if k in os.environ}
    data = vmharness.run_guest_benchmark(ROOT / "vm-tests/guest/bench_scale_guest.py",
                                         "bench_scale.json", 2400, env)
    if data is None:
        return 1
    oi, us, n = data["open-iscsi"], data["iscsictl"], data["sessions"]
    vmharness.print_ratio_table([
        (f"-L all of {n} targets until all disks", oi["loginall"], us["loginall"]),
        (f"-m session with {n} sessions", oi["session"], us["session"]),
        (f"-m session -P 3 with {n} sessions", oi["session_p3"], us["session_p3"]),
        (f"-U all of {n} sessions until no disk", oi["logoutall"], us["logoutall"]),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
