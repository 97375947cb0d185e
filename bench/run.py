#!/usr/bin/env python3
"""`make bench`: run every benchmark and print its figures side by side.

Each bench/bench_*.py is a standalone script that prints its own table (ours
next to a peer or the other implementation, with the ratio).  They run one at
a time, in name order, so they never compete for the machine's two cores.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if len(sys.argv) > 1:
        scripts = [s for s in scripts if any(a in s.name for a in sys.argv[1:])]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            failed.append(script.name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
