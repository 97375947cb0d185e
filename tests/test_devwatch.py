"""The VM benchmark's disk wait (vm-tests/guest/devwatch.py): inotify on a directory stands in
for the guest's devtmpfs /dev, where the kernel creates each disk's node."""

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm-tests" / "guest"))
from devwatch import DiskNodeWatch, disk_nodes  # noqa: E402


def test_only_whole_scsi_disks_count(tmp_path):
    for name in ("sda", "sdab", "sda1", "sg0", "sr0", "sdb"):
        (tmp_path / name).touch()
    (tmp_path / "bsg").mkdir()
    assert disk_nodes(str(tmp_path)) == ["sda", "sdab", "sdb"]


def test_wait_returns_when_the_nth_disk_node_is_created_not_at_a_poll(tmp_path):
    created = {}

    def make():
        for name in ("sg0", "sda", "sda1", "sdb"):
            time.sleep(0.1)
            (tmp_path / name).touch()
            created[name] = time.monotonic()

    with DiskNodeWatch(str(tmp_path)) as watch:
        maker = threading.Thread(target=make)
        maker.start()
        try:
            assert watch.wait(1, timeout=5) == ["sda"]
            seen_one = time.monotonic()
            assert watch.wait(2, timeout=5) == ["sda", "sdb"]
            seen_two = time.monotonic()
        finally:
            maker.join()
    # woken by each creation itself, not at the end of the 5 s wait (a missed event)
    assert seen_one - created["sda"] < 1 and seen_two - created["sdb"] < 1


def test_nodes_already_there_count_and_a_timeout_says_how_many(tmp_path):
    (tmp_path / "sda").touch()
    with DiskNodeWatch(str(tmp_path)) as watch:
        assert watch.wait(1, timeout=0) == ["sda"]
        t = time.monotonic()
        with pytest.raises(RuntimeError, match=r"2 disks not present after 0.2 s \(1 are\)"):
            watch.wait(2, timeout=0.2)
        assert time.monotonic() - t >= 0.2


def test_a_missing_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="inotify_add_watch"):
        DiskNodeWatch(str(tmp_path / "absent"))
