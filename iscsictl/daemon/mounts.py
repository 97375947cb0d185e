"""iscsid.safe_logout: is a disk in use by a mounted filesystem or as swap?

A disk is in use when it, one of its partitions, or a device stacked on it
(``/sys/block/X/holders``: device-mapper, md, multipath) backs an entry of
``/proc/self/mountinfo`` (by major:minor) or ``/proc/swaps`` (by name).
Roots are injectable for tests.
"""

from __future__ import annotations

import os

__all__ = ["busy_devices"]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _stack(name: str, sys_root: str, seen: set[str]) -> set[str]:
    """``name``, its partitions and every holder above them (block device names)."""
    if name in seen:
        return seen
    seen.add(name)
    base = f"{sys_root}/class/block/{name}"
    try:
        entries = os.listdir(base)
    except OSError:
        return seen
    for e in entries:
        if e.startswith(name) and os.path.exists(f"{base}/{e}/partition"):
            _stack(e, sys_root, seen)
    try:
        holders = os.listdir(f"{base}/holders")
    except OSError:
        holders = []
    for h in holders:
        _stack(h, sys_root, seen)
    return seen


def busy_devices(disks: list[str], sys_root: str = "/sys", proc_root: str = "/proc") -> list[str]:
    """The disks (``sda``...) in ``disks`` that are in use, each as
    ``sda (mounted at /mnt via sda1)`` or ``sdb (swap on dm-3)``."""
    mounts: dict[str, str] = {}
    for line in _read(f"{proc_root}/self/mountinfo").splitlines():
        parts = line.split()
        if len(parts) > 4:
            mounts.setdefault(parts[2], parts[4])  # major:minor -> mount point
    swaps = {ln.split()[0].rsplit("/", 1)[-1] for ln in _read(f"{proc_root}/swaps").splitlines()[1:]
             if ln.strip()}
    busy = []
    for disk in disks:
        for dev in sorted(_stack(disk, sys_root, set())):
            majmin = _read(f"{sys_root}/class/block/{dev}/dev").strip()
            if majmin and majmin in mounts:
                busy.append(f"{disk} (mounted at {mounts[majmin]} via {dev})")
                break
            if dev in swaps:
                busy.append(f"{disk} (swap on {dev})")
                break
    return busy
