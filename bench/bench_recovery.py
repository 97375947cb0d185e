#!/usr/bin/env python3
"""Session recovery and daemon life cycle, in one VM boot: iscsictl vs open-iscsi
(Debian's iscsid/iscsiadm) under the same timers, same LIO targets.

Prints: connection kill (ss -K) to I/O resuming (median), daemon restart with 64 live
sessions until it manages all of them (ours adopts; iscsid logs in to each again) with
the target-side logins, login of 64 node.startup=automatic nodes at daemon start
until every disk is present, and all 64 connections killed at once until every session
is back; with the ratio open-iscsi / iscsictl.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))
import vmharness


def main() -> int:
    env = {k: v for k, v in os.environ.items()  # a smaller run: BENCH_TARGETS=8 ...
           if k in ("BENCH_ROUNDS", "BENCH_PHASES", "BENCH_TARGETS", "BENCH_MASS_ROUNDS")}
    data = vmharness.run_guest_benchmark(ROOT / "vm-tests/guest/bench_recovery_guest.py",
                                         "bench_recovery.json", 1200, env)
    if data is None:
        return 1
    oi, us = data["open-iscsi"], data["iscsictl"]
    n = data["targets"]
    vmharness.print_ratio_table([
        (f"connection kill -> I/O resumes (median of {data['rounds']})",
         oi["kill_to_io"], us["kill_to_io"]),
        (f"daemon restart, {n} live sessions -> all managed", oi["restart"], us["restart"]),
        (f"daemon start, {n} automatic nodes -> all disks", oi["autostart"], us["autostart"]),
        (f"all {n} connections killed -> all back (median of {len(us['mass_kill_all'])})",
         oi["mass_kill"], us["mass_kill"]),
    ])
    print(f"{'target-side logins during the restart':<52} {oi['restart_logins']:>11} "
          f"{us['restart_logins']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
