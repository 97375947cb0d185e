"""Run the iscsictl CLI in the guest against a private DB, and read sysfs."""

from __future__ import annotations

import hashlib
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
INITIATOR = "iqn.2026-11.org.example.vm:iscsictl"


class Cli:
    """``iscsictl`` with ``--db-root``/``--config-root`` under ``root``."""

    def __init__(self, root: Path, initiator: str = INITIATOR) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "initiatorname.iscsi").write_text(f"InitiatorName={initiator}\n")
        self.initiator = initiator
        self.env = dict(os.environ, ISCSICTL_DB_ROOT=str(self.root),
                        ISCSICTL_CONFIG_ROOT=str(self.root))

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "iscsictl"), *args], capture_output=True,
                              text=True, env=self.env, timeout=timeout)

    def ok(self, *args: str, timeout: float = 120) -> str:
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, f"iscsictl {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout

    def update(self, target: str, portal: str, key: str, value: str) -> None:
        self.ok("-m", "node", "-T", target, "-p", portal, "-o", "update", "-n", key, "-v", value)


def end_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``proc`` (when it runs) and reap it; SIGKILL when it has not exited within
    ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(what: str, cond, timeout: float, step: float = 0.05):
    """Poll ``cond()`` every ``step`` s until it is truthy; its value.  AssertionError
    naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


def sessions_in_sysfs() -> list[int]:
    d = Path("/sys/class/iscsi_session")
    return sorted(int(p.name[7:]) for p in d.glob("session*")) if d.exists() else []


def scsi_disks() -> list[str]:
    """The SCSI disks' names in /sys/block (``sda`` ...), sorted: one listdir (a Path.glob
    costs 4x the CPU, ~2.5 ms a call under TCG, taken from the kernel's probing of the
    disks being waited for)."""
    return sorted(name for name in os.listdir("/sys/block") if name.startswith("sd"))


def disk_count() -> int:
    """How many SCSI disks /sys/block has (:func:`scsi_disks`)."""
    return len(scsi_disks())


def direct_read(dev: str) -> None:
    """One 4 KiB O_DIRECT read at offset 0 of ``dev`` (a page-aligned buffer, as O_DIRECT
    needs); it blocks in the kernel while the disk's session recovers.  Raises OSError."""
    buf = mmap.mmap(-1, 4096)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        os.preadv(fd, [buf], 0)
    finally:
        os.close(fd)


def check_direct_roundtrip(dev: str, size: int, scratch: Path,
                           backing: Path | None = None) -> None:
    """Write ``size`` random bytes (whole MiB) to the start of ``dev`` and read them back,
    both with O_DIRECT (dd), through the file ``scratch`` (removed afterwards).
    AssertionError unless the bytes read are those written and, given ``backing`` (the
    LUN's backing file on the target), that file starts with them too."""
    data = os.urandom(size)
    scratch.write_bytes(data)
    subprocess.run(["dd", f"if={scratch}", f"of={dev}", "bs=1M", "oflag=direct", "status=none"],
                   check=True)
    back = subprocess.run(["dd", f"if={dev}", "bs=1M", f"count={size >> 20}", "iflag=direct",
                           "status=none"], check=True, capture_output=True).stdout
    scratch.unlink()
    wrote = hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(back).hexdigest() == wrote, f"{dev}: not the bytes written"
    if backing is not None:
        with open(backing, "rb") as f:
            assert hashlib.sha256(f.read(size)).hexdigest() == wrote, \
                f"{backing}: not the bytes written to {dev}"


def read(path: Path | str) -> str:
    return Path(path).read_text().strip()


def session_disks(sid: int) -> dict[int, str]:
    """LUN -> /dev/sdX of a session, from sysfs."""
    dev = Path(f"/sys/class/iscsi_session/session{sid}/device").resolve()
    out = {}
    for lun_dir in dev.glob("target*/*:*:*:*"):
        blocks = list((lun_dir / "block").glob("*")) if (lun_dir / "block").exists() else []
        if blocks:
            out[int(lun_dir.name.split(":")[3])] = f"/dev/{blocks[0].name}"
    return out


def _opens(dev: str) -> bool:
    """Whether the block device can be opened: its /dev node appears (device_add) before
    add_disk has made the disk live, and an open in between fails with ENXIO."""
    try:
        os.close(os.open(dev, os.O_RDONLY | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def wait_disks(sid: int, count: int, timeout: float = 30) -> dict[int, str]:
    """LUN -> /dev/sdX of the session once ``count`` disks are there and can be opened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        disks = session_disks(sid)
        if len(disks) >= count and all(_opens(p) for p in disks.values()):
            return disks
        time.sleep(0.05)
    raise AssertionError(f"session {sid}: {session_disks(sid)} after {timeout} s, want {count} disks")
