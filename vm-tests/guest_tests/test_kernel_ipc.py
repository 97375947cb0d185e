"""The kernel data path driven through iscsictld's IPC directly (no CLI):
login on our socket, handover to iscsi_tcp, a disk, I/O, logout."""

import os
import subprocess
import time
from pathlib import Path

from openiscsi import iscsi_sessions, session_disks

MIB = 1 << 20
INITIATOR = "iqn.2026-11.org.example.vm:iscsictl"


def record(target, **extra):
    rec = {"node.name": target, "node.conn[0].address": "127.0.0.1", "node.conn[0].port": "3260",
           "node.tpgt": "1", "iface.iscsi_ifacename": "default", "iface.transport_name": "tcp"}
    rec.update(extra)
    return rec


def wait_disk(target, lun=0, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        disks = session_disks(target)
        if lun in disks and os.path.exists(disks[lun]):
            return disks[lun]
        time.sleep(0.05)
    raise AssertionError(f"no disk for {target} lun {lun}: {session_disks(target)}")


def test_daemon_login_io_logout(lio, daemon, scenario_dir):
    t = lio.create("iqn.2003-01.org.example.vm:ipc", luns=[32 * MIB])
    res = daemon.client.call("login", records=[record(t.iqn)], initiator_name=INITIATOR)
    assert res[0]["ok"], res
    sid = res[0]["sids"][0]
    dev = wait_disk(t.iqn)
    data = os.urandom(4 * MIB)
    (scenario_dir / "p.bin").write_bytes(data)
    subprocess.run(["dd", f"if={scenario_dir / 'p.bin'}", f"of={dev}", "bs=1M", "oflag=direct",
                    "status=none"], check=True)
    back = subprocess.run(["dd", f"if={dev}", "bs=1M", "count=4", "iflag=direct", "status=none"],
                          check=True, capture_output=True).stdout
    assert back == data
    assert Path(f"/sys/class/iscsi_session/session{sid}/state").read_text().strip() == "LOGGED_IN"
    # the lane that handed the session to the kernel runs at LANE_NICE, the loop at 0
    nice = {int(tid): int(stat.read_text().rpartition(")")[2].split()[16])
            for tid, stat in ((t.name, t / "stat")
                              for t in Path(f"/proc/{daemon.proc.pid}/task").iterdir())}
    assert nice[daemon.proc.pid] == 0 and -10 in nice.values(), nice
    # a second login to the same node is refused: session exists
    again = daemon.client.call("login", records=[record(t.iqn)], initiator_name=INITIATOR)
    assert not again[0]["ok"] and again[0]["code"] == 15
    out = daemon.client.call("logout", sids=[sid])
    assert out[0]["ok"], out
    assert iscsi_sessions() == []
