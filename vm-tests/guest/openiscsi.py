"""open-iscsi (Debian's iscsid + iscsiadm) as the reference initiator inside the guest.

Runs INSIDE the VM as root.  :class:`OpenIscsi` writes the guest's
``/etc/iscsi/initiatorname.iscsi`` (the guest's /etc is an overlay: the host is
untouched), empties the node database, starts ``iscsid -f`` in its own session
(iscsid signals its whole process group when it exits, see VM.md) with its output
in ``<log_dir>/iscsid.log``, and stops it again, logging out every session first.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from cli import end_process

__all__ = ["OpenIscsi", "OpenIscsiError", "etc_on_tmpfs", "iscsi_sessions", "session_disks"]

SESSIONS = Path("/sys/class/iscsi_session")
ETC = Path("/etc/iscsi")


class OpenIscsiError(RuntimeError):
    """iscsid or iscsiadm failed; the message holds the command and its output."""


def iscsi_sessions() -> list[str]:
    """Names of the kernel's iSCSI sessions (``session1`` ...), from sysfs."""
    return sorted(p.name for p in SESSIONS.iterdir()) if SESSIONS.exists() else []


def session_disks(targetname: str) -> dict[int, str]:
    """``{lun: "/dev/sdX"}`` for the block devices of sessions logged in to ``targetname``."""
    disks = {}
    for sess in iscsi_sessions():
        base = SESSIONS / sess
        try:
            if (base / "targetname").read_text().strip() != targetname:
                continue
        except OSError:
            continue
        for blk in glob.glob(f"{base}/device/target*/*:*:*:*/block/*"):
            lun = int(Path(blk).parent.parent.name.rsplit(":", 1)[1])
            disks[lun] = f"/dev/{Path(blk).name}"
    return disks


def etc_on_tmpfs() -> None:
    """Mount a tmpfs on /etc/iscsi holding the files it held (Debian's iscsid.conf,
    initiatorname.iscsi), so that open-iscsi's node database is on the file system the
    benchmarks give iscsictl's (a tmpfs under /run).  The guest's /etc is an overlay on the
    host's / over 9p, where a path-based system call costs 2-3x a tmpfs's: a discovery's
    32 records (two mkdirs, an open/write/close, a rename and a symlink each) took 33-38 ms
    of system calls in /etc/iscsi against 14-16 ms in /run (session 23).  Does nothing when
    /etc/iscsi is a mount point already."""
    if os.path.ismount(ETC):
        return
    ETC.mkdir(parents=True, exist_ok=True)
    saved = [(p.name, p.read_bytes(), p.stat().st_mode & 0o7777) for p in ETC.iterdir()
             if p.is_file()]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(ETC)], check=True)
    for name, data, mode in saved:
        (ETC / name).write_bytes(data)
        (ETC / name).chmod(mode)


class OpenIscsi:
    """A running open-iscsi initiator.  ``start()``/``stop()``, or use as a context manager.

    ``initiator_name`` is written to /etc/iscsi/initiatorname.iscsi; ``log_dir`` receives
    ``iscsid.log`` and ``iscsiadm.log`` (every command with its output).
    """

    def __init__(self, log_dir: Path, initiator_name: str = "iqn.2005-03.org.open-iscsi:vm-guest"):
        self.log_dir = Path(log_dir)
        self.initiator_name = initiator_name.lower()
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout: float = 10.0, keep_db: bool = False) -> None:
        """Start iscsid and wait (at most ``timeout`` s) until iscsiadm can reach it.  The
        node database is emptied first unless ``keep_db`` (iscsid reads its discovery
        records when it starts)."""
        if shutil.which("iscsid") is None:
            raise OpenIscsiError("iscsid not found: install Debian's open-iscsi on the host")
        subprocess.run(["modprobe", "iscsi_tcp"], check=True)
        Path("/run/lock/iscsi").mkdir(parents=True, exist_ok=True)
        etc = Path("/etc/iscsi")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "initiatorname.iscsi").write_text(f"InitiatorName={self.initiator_name}\n")
        for db in () if keep_db else ("nodes", "send_targets", "ifaces", "isns", "static",
                                      "fw"):
            shutil.rmtree(etc / db, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / "iscsid.log", "ab")
        self.proc = subprocess.Popen(["iscsid", "-f", "-d", "1"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while "@ISCSIADM_ABSTRACT_NAMESPACE" not in Path("/proc/net/unix").read_text():
            if self.proc.poll() is not None:
                raise OpenIscsiError(f"iscsid exited with {self.proc.returncode}; "
                                     f"see {self.log_dir / 'iscsid.log'}")
            if time.monotonic() > deadline:
                raise OpenIscsiError(f"iscsid did not open its socket within {timeout} s")
            time.sleep(0.05)

    def iscsiadm(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        """Run ``iscsiadm ARGS``; return stdout.  Raises OpenIscsiError on a non-zero exit
        when ``check`` (the message has the exit code and output)."""
        proc = subprocess.run(["iscsiadm", *args], capture_output=True, text=True, timeout=timeout)
        with open(self.log_dir / "iscsiadm.log", "a") as f:
            f.write(f"$ iscsiadm {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise OpenIscsiError(f"iscsiadm {' '.join(args)} exited with {proc.returncode}: "
                                 f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def wait_disk(self, targetname: str, lun: int = 0, timeout: float = 30.0) -> str:
        """Wait until LUN ``lun`` of ``targetname`` has a block device; return ``/dev/sdX``."""
        deadline = time.monotonic() + timeout
        while True:
            dev = session_disks(targetname).get(lun)
            if dev and os.path.exists(dev):
                return dev
            if time.monotonic() > deadline:
                raise OpenIscsiError(f"no block device for {targetname} LUN {lun} after {timeout} s "
                                     f"(sessions: {iscsi_sessions()})")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Log out every session, then stop iscsid (SIGTERM, SIGKILL after ``timeout`` s)."""
        if self.proc is None:
            return
        if iscsi_sessions():
            self.iscsiadm("-m", "node", "--logoutall=all", check=False)
        end_process(self.proc, timeout)
        self.proc = None
