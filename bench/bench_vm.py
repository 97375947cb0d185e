#!/usr/bin/env python3
"""Kernel data path, in one VM boot: iscsictl vs open-iscsi (Debian's iscsid/iscsiadm),
same LIO target, whole commands, daemons already running.

Prints: discovery + login until the disk is present (median), and -L all of 32
targets until all disks are present, with the ratio open-iscsi / iscsictl.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vm-tests"))
import vmharness  # noqa: E402


def main() -> int:
    print("booting the VM for the kernel benchmark (QEMU TCG: absolute times are inflated; "
          "compare the ratio)", flush=True)
    res = vmharness.run_vm(f"{sys.executable} {ROOT / 'vm-tests/guest/bench_guest.py'}",
                           timeout=900, log=lambda *a: None)
    path = res.results_dir / "bench.json"
    if res.rc != 0 or not path.exists():
        print(res.serial_log[-4000:], file=sys.stderr)
        print(f"benchmark VM failed (rc={res.rc})", file=sys.stderr)
        return 1
    data = json.loads(path.read_text())
    oi, us = data["open-iscsi"], data["iscsictl"]
    rows = [
        ("discovery + login until the disk (median of %d)" % data["rounds"], "login_to_disk"),
        (f"-L all of {data['targets']} targets until all disks", "loginall"),
        (f"-U all of {data['targets']} sessions until no disk", "logoutall"),
    ]
    print(f"{'figure':<52} {'open-iscsi':>11} {'iscsictl':>10} {'ratio':>7}")
    for label, key in rows:
        print(f"{label:<52} {oi[key]:>10.3f}s {us[key]:>9.3f}s {oi[key] / us[key]:>6.1f}x")
    ctx = data.get("context")
    if ctx:
        print("where iscsictl's time goes in this VM (no peer figure):")
        print(f"{'  python -c pass (process start, TCG)':<52} {'':>11} {ctx['python_start']:>9.3f}s")
        print(f"{'  iscsictl --version (CLI start)':<52} {'':>11} {ctx['cli_start']:>9.3f}s")
        print(f"{'  daemon login until the disk, no CLI process':<52} {'':>11} "
              f"{ctx['ipc_login_to_disk']:>9.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
