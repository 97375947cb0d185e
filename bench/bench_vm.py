#!/usr/bin/env python3
"""Kernel data path, in one VM boot: iscsictl vs open-iscsi (Debian's iscsid/iscsiadm),
same LIO target, whole commands, daemons already running.

Prints: discovery + login until the disk is present (median), and -L all of 32
targets until all disks are present, with the ratio open-iscsi / iscsictl.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))
import vmharness  # noqa: E402


def main() -> int:
    data = vmharness.run_guest_benchmark(ROOT / "vm-tests/guest/bench_guest.py", "bench.json", 900)
    if data is None:
        return 1
    oi, us = data["open-iscsi"], data["iscsictl"]
    n = data["targets"]
    vmharness.print_ratio_table([
        (f"discovery + login until the disk (median of {data['rounds']})",
         oi["login_to_disk"], us["login_to_disk"]),
        (f"-L all of {n} targets until all disks", oi["loginall"], us["loginall"]),
        (f"-U all of {n} sessions until no disk", oi["logoutall"], us["logoutall"]),
    ])
    ctx = data.get("context")
    if ctx:
        print("where iscsictl's time goes in this VM (no peer figure):")
        print(f"{'  python -c pass (process start, TCG)':<52} {'':>11} {ctx['python_start']:>9.3f}s")
        if "python_start_nosite" in ctx:
            print(f"{'  python -S -c pass (no site, no .pth files)':<52} {'':>11} "
                  f"{ctx['python_start_nosite']:>9.3f}s")
        print(f"{'  iscsictl --version (CLI start)':<52} {'':>11} {ctx['cli_start']:>9.3f}s")
        print(f"{'  daemon login until the disk, no CLI process':<52} {'':>11} "
              f"{ctx['ipc_login_to_disk']:>9.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
