"""The Makefile's targets, read by make itself (dry runs: nothing is built or removed)."""

from __future__ import annotations

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE = shutil.which("make") or "make"  # what runs the suite (`make test`)


def _make(*args: str) -> str:
    cp = subprocess.run([MAKE, "-C", ROOT, "--no-print-directory", *args],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_clean_removes_cythons_c_files_not_the_command_clients_source():
    """`make clean` removed _fastpath/*.c, the tracked client.c among them: the next
    `make venv` built a Python `iscsictl` quietly, and CI's required build failed."""
    (rm,) = [line for line in _make("-n", "clean").splitlines() if line.startswith("rm ")]
    words = rm.split()
    assert "_fastpath/client.c" not in words and "_fastpath/*.c" not in words
    assert {"_fastpath/bhs.c", "_fastpath/framing.c"} <= set(words)


def test_the_virtualenv_is_remade_when_the_command_client_changes():
    """The stamp did not depend on client.c: after a pull that changed the client, tests
    and benchmarks ran the old executable."""
    rule = [line for line in _make("-p", "-n", "-r", ".venv/.stamp").splitlines()
            if line.startswith(".venv/.stamp:")]
    assert rule and "_fastpath/client.c" in rule[0].split()
