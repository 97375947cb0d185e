"""The benchmarks' noise gauge (vm-tests/vmharness.py): the share of the host's CPU time the
hypervisor gave to other guests during a VM run, read from the host's real /proc/stat."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm-tests"))
import vmharness  # noqa: E402


def test_host_cpu_times_reads_the_eight_counters_and_they_only_grow():
    first = vmharness.host_cpu_times()
    assert first is not None and len(first) == 8 and all(v >= 0 for v in first)
    time.sleep(0.05)  # every CPU's clock ticks on, idle or not
    second = vmharness.host_cpu_times()
    assert all(b >= a for a, b in zip(first, second)) and sum(second) > sum(first)
    share = vmharness.steal_fraction(first, second)
    assert share is not None and 0.0 <= share <= 1.0


def test_steal_fraction_is_steal_over_all_ticks_between_the_readings():
    before = [100, 0, 50, 800, 0, 0, 0, 10]
    after = [160, 0, 70, 900, 0, 0, 0, 30]  # 200 ticks, 20 of them stolen
    assert vmharness.steal_fraction(before, after) == 0.1
    assert vmharness.steal_fraction(before, before) is None  # no time passed
    assert vmharness.steal_fraction(None, after) is None
    assert vmharness.steal_fraction(before[:7], after) is None
