"""iscsid.safe_logout's in-use check against fixture /sys and /proc trees."""

from pathlib import Path

from iscsictl.daemon.mounts import busy_devices


def _dev(sys_root: Path, name: str, majmin: str, parent: str | None = None) -> Path:
    d = sys_root / "class/block" / (f"{parent}/{name}" if parent else name)
    d.mkdir(parents=True)
    (d / "dev").write_text(majmin + "\n")
    if parent:
        (d / "partition").write_text("1\n")
    else:
        (d / "holders").mkdir()
    return d


def _trees(tmp_path):
    sys_root, proc = tmp_path / "sys", tmp_path / "proc"
    _dev(sys_root, "sda", "8:0")
    _dev(sys_root, "sda1", "8:1", parent="sda")
    (sys_root / "class/block/sda1").symlink_to(sys_root / "class/block/sda/sda1")
    _dev(sys_root, "sdb", "8:16")
    _dev(sys_root, "dm-0", "254:0")
    (sys_root / "class/block/sdb/holders/dm-0").symlink_to(sys_root / "class/block/dm-0")
    _dev(sys_root, "sdc", "8:32")
    (proc / "self").mkdir(parents=True)
    (proc / "self/mountinfo").write_text(
        "22 1 0:21 / /proc rw - proc proc rw\n"
        "40 1 8:1 / /mnt/data rw,relatime - ext4 /dev/sda1 rw\n"
        "41 1 0:39 / /mnt/b rw,relatime shared:1 - btrfs /dev/sdc rw,space_cache=v2\n")
    (proc / "swaps").write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/dm-0                               partition\t1048572\t\t0\t\t-2\n")
    return str(sys_root), str(proc)


def test_mounted_partition_and_swap_on_a_holder_are_busy(tmp_path):
    sys_root, proc = _trees(tmp_path)
    busy = busy_devices(["sda", "sdb", "sdc"], sys_root, proc)
    assert busy == ["sda (mounted at /mnt/data via sda1)", "sdb (swap on dm-0)",
                    "sdc (mounted at /mnt/b via sdc)"]


def test_a_mounted_btrfs_is_found_by_its_source(tmp_path):
    """btrfs shows an anonymous major:minor (0:39) in mountinfo, never its disk's: the
    mount's source (/dev/sdc) finds it, as iscsid's libmount lookup does (it was not
    busy, and a safe_logout let its disk go while it was mounted)."""
    sys_root, proc = _trees(tmp_path)
    assert busy_devices(["sdc"], sys_root, proc) == ["sdc (mounted at /mnt/b via sdc)"]


def test_free_disk_and_missing_sysfs_entries_are_not_busy(tmp_path):
    sys_root, proc = _trees(tmp_path)
    assert busy_devices(["sdz"], sys_root, proc) == []
    assert busy_devices(["sda"], sys_root, str(tmp_path / "no-proc")) == []


def test_a_swap_file_named_like_a_disk_is_not_that_disk(tmp_path):
    """/proc/swaps lists a swap *file* /srv/swap/sdc: no block device, so not sdc's
    (before: its basename matched, and a safe_logout refused sdc's logout with 28);
    iscsid compares the whole /dev path (mntcheck.c)."""
    sys_root, proc = _trees(tmp_path)
    (Path(proc) / "swaps").write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/srv/swap/sdc                           file\t\t1048572\t\t0\t\t-2\n")
    (Path(proc) / "self/mountinfo").write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    assert busy_devices(["sdc"], sys_root, proc) == []


def test_a_mount_point_not_in_utf8_is_checked_and_shown(tmp_path):
    """mountinfo escapes only blanks and backslashes: a mount point of Latin-1 bytes
    (/media/café, a user's FUSE mount) is written as it is.  The check still finds what
    is mounted, and says the point with the odd byte escaped (before: UnicodeDecodeError,
    and every safe logout failed, the shutdown unit's included)."""
    sys_root, proc = _trees(tmp_path)
    _dev(tmp_path / "sys", "sdd", "8:48")
    with open(f"{proc}/self/mountinfo", "ab") as f:
        f.write(b"42 1 0:50 / /media/caf\xe9 rw - fuse.sshfs host:/ rw\n"
                b"43 1 8:48 / /srv/d\xe9p\xf4t rw - ext4 /dev/sdd rw\n")
    assert busy_devices(["sdd", "sdz"], sys_root, proc) == [
        "sdd (mounted at /srv/d\\xe9p\\xf4t via sdd)"]


def test_a_mount_point_with_a_no_break_space_is_one_field(tmp_path):
    """mountinfo separates its fields by single spaces and escapes only blanks, tabs,
    newlines and backslashes: a no-break space in a mount point's name is part of it (it
    was a field's end, and a name "a - b" made a false separator: a btrfs disk mounted
    there was not found busy, and a safe logout let it go)."""
    sys_root, proc = _trees(tmp_path)
    _dev(tmp_path / "sys", "sdd", "8:48")
    with open(f"{proc}/self/mountinfo", "ab") as f:
        f.write("44 1 0:51 / /srv/a\u00a0-\u00a0b rw - btrfs /dev/sdd rw\n".encode())
    assert busy_devices(["sdd"], sys_root, proc) == [
        "sdd (mounted at /srv/a\u00a0-\u00a0b via sdd)"]
