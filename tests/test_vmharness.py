"""vm-tests/vmharness.py on the host, without a VM: what keeps CI clean when a run goes
wrong (a guest process dies with the harness) and what gets a kernel when apt cannot."""

import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm-tests"))
import vmharness  # noqa: E402


def test_the_guest_process_dies_with_the_thread_that_started_it():
    """QEMU is started with PR_SET_PDEATHSIG: when the harness ends without its cleanup
    (SIGTERM at CI's limit, a second Ctrl-C in the demo), the guest is killed, not left on
    the machine's two cores with the VM lock free for the next run beside it."""
    started = []

    def start():
        started.append(subprocess.Popen(["sleep", "60"], start_new_session=True,
                                        preexec_fn=vmharness._die_with_parent))
    t = threading.Thread(target=start)
    t.start()
    t.join()  # the starting thread ended: the child is killed
    proc = started[0]
    try:
        assert proc.wait(10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cached_kernels_are_ordered_by_version_numbers(tmp_path, monkeypatch):
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-56-amd64"):
        (tmp_path / v).mkdir()
        (tmp_path / v / ".complete").write_text("x\n")
    (tmp_path / "6.1.0-99-amd64").mkdir()  # not complete: not a kernel
    monkeypatch.setattr(vmharness, "CACHE_DIR", tmp_path)
    assert [k.version for k in vmharness._cached_kernels()] == [
        "6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-56-amd64"]  # text order put -9 last


def test_a_kernel_that_cannot_be_downloaded_falls_back_to_the_cached_one(tmp_path,
                                                                          monkeypatch):
    """apt names a newer kernel than the cache holds and the mirror cannot be reached: the
    download is tried again (after apt-get update, then a pause), then the newest cached
    kernel is used, as the README says of offline runs (before: every VM test failed)."""
    (tmp_path / "6.1.0-56-amd64").mkdir()
    (tmp_path / "6.1.0-56-amd64" / ".complete").write_text("x\n")
    monkeypatch.setattr(vmharness, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(vmharness, "_kernel_package", lambda: "linux-image-6.1.0-57-amd64")
    calls = []

    def run(cmd, what, **kw):
        calls.append(cmd[:2])
        raise vmharness.VMError(f"{what}: Temporary failure resolving 'deb.debian.org'")
    monkeypatch.setattr(vmharness, "_run", run)
    monkeypatch.setattr(vmharness.subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd[:2]) or subprocess.CompletedProcess(
                            cmd, 0, "", ""))
    monkeypatch.setattr(vmharness.time, "sleep", lambda s: None)
    kernel = vmharness.ensure_kernel(log=lambda *a: None)
    assert kernel.version == "6.1.0-56-amd64"
    assert calls == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"],
                     ["apt-get", "download"]]
