#!/usr/bin/env python3
"""`make demo`: boot the VM and run the main job visibly (vm-tests/guest/demo_guest.py).

The guest writes its steps to the results share; this script prints them as they
arrive, then exits with the guest's status.
"""

import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vmharness  # noqa: E402


def main() -> int:
    results = vmharness._new_results_dir()
    py = Path(sys.executable)
    cmd = f"{py} {HERE / 'guest' / 'demo_guest.py'} > /results/demo.serial 2>&1"
    print("booting the VM (Debian kernel, QEMU TCG); the demo's steps follow", flush=True)
    box: list = []
    # a daemon thread: Ctrl-C ends the demo at once, and QEMU dies with this process
    th = threading.Thread(target=lambda: box.append(
        vmharness.run_vm(cmd, timeout=300, results_dir=results, log=lambda *a: None)),
        daemon=True)
    th.start()
    out, pos = results / "demo.out", 0
    try:
        while th.is_alive() or (out.exists() and out.stat().st_size > pos):
            if out.exists():
                with open(out) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
                if chunk:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            time.sleep(0.2)
        th.join()
    except KeyboardInterrupt:
        print("\ndemo interrupted: the VM is stopped", file=sys.stderr)
        return 130
    res = box[0] if box else None
    if res is None or res.rc != 0:
        print(f"\ndemo failed (VM rc={getattr(res, 'rc', None)}); guest output:", file=sys.stderr)
        for name in ("demo.serial", "iscsictld.log"):  # the guest's output, the daemon's log
            path = results / name
            if path.exists():
                print(f"----- {name} (its end) -----\n{path.read_text()[-4000:]}",
                      file=sys.stderr)
        if res is not None:
            print(res.serial_log[-3000:], file=sys.stderr)
        return 1
    print(f"\nVM run {res.duration:.1f} s; results in {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
