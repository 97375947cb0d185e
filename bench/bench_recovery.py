#!/usr/bin/env python3
"""Session recovery and daemon life cycle, in one VM boot: iscsictl vs open-iscsi
(Debian's iscsid/iscsiadm) under the same timers, same LIO targets.

Prints: connection kill (ss -K) to I/O resuming (median), daemon restart with 64 live
sessions until it manages all of them (ours adopts; iscsid logs in to each again) with
the target-side logins, and login of 64 node.startup=automatic nodes at daemon start
until every disk is present; with the ratio open-iscsi / iscsictl.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))
import vmharness


def main() -> int:
    print("booting the VM for the recovery benchmark (QEMU TCG: absolute times are inflated; "
          "compare the ratio)", flush=True)
    res = vmharness.run_vm(f"{sys.executable} {ROOT / 'vm-tests/guest/bench_recovery_guest.py'}",
                           timeout=1200, log=lambda *a: None)
    path = res.results_dir / "bench_recovery.json"
    if res.rc != 0 or not path.exists():
        print(res.serial_log[-4000:], file=sys.stderr)
        print(f"benchmark VM failed (rc={res.rc})", file=sys.stderr)
        return 1
    data = json.loads(path.read_text())
    oi, us = data["open-iscsi"], data["iscsictl"]
    n = data["targets"]
    rows = [
        (f"connection kill -> I/O resumes (median of {data['rounds']})", "kill_to_io"),
        (f"daemon restart, {n} live sessions -> all managed", "restart"),
        (f"daemon start, {n} automatic nodes -> all disks", "autostart"),
    ]
    print(f"{'figure':<52} {'open-iscsi':>11} {'iscsictl':>10} {'ratio':>7}")
    for label, key in rows:
        print(f"{label:<52} {oi[key]:>10.3f}s {us[key]:>9.3f}s {oi[key] / us[key]:>6.1f}x")
    print(f"{'target-side logins during the restart':<52} {oi['restart_logins']:>11} "
          f"{us['restart_logins']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
