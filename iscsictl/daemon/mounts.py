"""iscsid.safe_logout: is a disk in use by a mounted filesystem or as swap?

A disk is in use when it, one of its partitions, or a device stacked on it
(``/sys/block/X/holders``: device-mapper, md, multipath) backs an entry of
``/proc/self/mountinfo`` (by major:minor, or by its mount source ``/dev/...``, as
iscsid's blockdev_check_mnts finds it through libmount: btrfs shows an anonymous
major:minor there) or ``/proc/swaps`` (by name).  Roots are injectable for tests.
"""

from __future__ import annotations

import os

__all__ = ["busy_devices"]


def _read(path: str) -> str:
    """The file's text, its bytes kept whatever they are (a mount point's name need not be
    UTF-8: mountinfo escapes only blanks and backslashes; the check raised, and every
    safe logout failed, the shutdown's included); "" when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return ""


def _device_name(source: str) -> str:
    """The block device a mount source names (``/dev/sdb1`` is ``sdb1``; a link such as
    ``/dev/mapper/vg-lv`` or ``/dev/disk/by-uuid/...`` is followed: ``dm-3``)."""
    return os.path.basename(os.path.realpath(source.replace("\\040", " ")))


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
    mounts: dict[str, str] = {}  # major:minor -> mount point
    sources: dict[str, str] = {}  # the block device a mount names as its source -> its point
    for line in _read(f"{proc_root}/self/mountinfo").split("\n"):
        parts = line.split(" ")  # its fields' one separator (a name's NBSP is no field's
        # end: it made a false "-", and a btrfs disk under such a name was not busy)
        if len(parts) > 4:
            mounts.setdefault(parts[2], parts[4])
            # an anonymous device (major 0: btrfs) names its disk only as the source:
            # "... - fstype source options" (the others' sources are not looked at: a
            # link's lookup each, for every mount of a node with thousands)
            if parts[2].startswith("0:") and "-" in parts[5:]:
                tail = parts[parts.index("-", 5) + 1:]
                if len(tail) > 1 and tail[1].startswith("/dev/"):
                    sources.setdefault(_device_name(tail[1]), parts[4])
    # block devices swapped on ("partition"; a swap *file* named sdb is no disk's: iscsid
    # compares the whole /dev path, mntcheck.c)
    swaps = {_device_name(f[0]) for ln in _read(f"{proc_root}/swaps").splitlines()[1:]
             if len(f := ln.split()) > 1 and f[1] == "partition"}
    busy = []
    for disk in disks:
        for dev in sorted(_stack(disk, sys_root, set())):
            majmin = _read(f"{sys_root}/class/block/{dev}/dev").strip()
            point = mounts.get(majmin) if majmin else None
            if point is None:
                point = sources.get(dev)
            if point is not None:  # (a byte not UTF-8 shown as \xNN)
                shown = point.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                       "backslashreplace")
                busy.append(f"{disk} (mounted at {shown} via {dev})")
                break
            if dev in swaps:
                busy.append(f"{disk} (swap on {dev})")
                break
    return busy
