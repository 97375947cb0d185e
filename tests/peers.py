"""Helpers to run Debian's real open-iscsi tools against a private DB.

Debian's iscsiadm has its DB root (``/etc/iscsi``) and lock dir (``/run/lock/iscsi``) compiled
in, so :func:`iscsiadm` runs it in a private mount namespace (``unshare -m``) where a temporary
directory is bind-mounted on ``/etc/iscsi`` and another on ``/run/lock/iscsi``: the machine's
own DB is never touched.  Needs root (or CAP_SYS_ADMIN).

Without a running iscsid, iscsiadm cannot learn the config file path (it asks iscsid over
MGMT_IPC_CONFIG_FILE), so records it creates get compiled defaults only; it also runs the
``iscsid.startup`` command from iscsid.conf, so :func:`prepare_etc` writes an iscsid.conf whose
``iscsid.startup`` is ``/bin/true``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

ISCSIADM = shutil.which("iscsiadm") or "/sbin/iscsiadm"


def iscsiadm_path() -> str:
    """Path of iscsiadm; raises AssertionError (so peer tests fail, not skip) when absent."""
    path = shutil.which("iscsiadm") or ("/sbin/iscsiadm" if os.path.exists("/sbin/iscsiadm")
                                        else None)
    assert path, "iscsiadm not installed (Debian package open-iscsi; the Makefile installs it)"
    return path


def prepare_etc(etc_dir: str, initiator_name: str = "iqn.1993-08.org.debian:01:0123456789ab"
                ) -> None:
    """Make ``etc_dir`` usable as a private /etc/iscsi: an iscsid.conf that does not try to
    start iscsid, and an initiatorname.iscsi."""
    os.makedirs(etc_dir, exist_ok=True)
    conf = os.path.join(etc_dir, "iscsid.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("iscsid.startup = /bin/true\n")
    iname = os.path.join(etc_dir, "initiatorname.iscsi")
    if not os.path.exists(iname):
        with open(iname, "w") as f:
            f.write(f"InitiatorName={initiator_name}\n")


def iscsiadm(etc_dir: str, *args: str, lock_dir: str | None = None, check: bool = False,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``iscsiadm args...`` with ``etc_dir`` bind-mounted on /etc/iscsi and ``lock_dir``
    (default: ``<etc_dir>/../iscsi-lock``) on /run/lock/iscsi, in a private mount namespace.
    Returns the CompletedProcess (text stdout/stderr)."""
    exe = iscsiadm_path()
    prepare_etc(etc_dir)
    if lock_dir is None:
        lock_dir = os.path.join(os.path.dirname(os.path.abspath(etc_dir)), "iscsi-lock")
    os.makedirs(lock_dir, exist_ok=True)
    cmd = " ".join(shlex.quote(a) for a in (exe, *args))
    script = (
        "set -e; mkdir -p /etc/iscsi /run/lock/iscsi; "
        f"mount --bind {shlex.quote(os.path.abspath(etc_dir))} /etc/iscsi; "
        f"mount --bind {shlex.quote(os.path.abspath(lock_dir))} /run/lock/iscsi; "
        f"set +e; {cmd}"
    )
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"iscsiadm {' '.join(args)} -> {cp.returncode}\n{cp.stderr}")
    return cp
