"""The kernel data path driven through iscsictld's IPC directly (no CLI):
login on our socket, handover to iscsi_tcp, a disk, I/O, logout."""

import os
import subprocess
import time
from pathlib import Path

from openiscsi import iscsi_sessions, session_disks

MIB = 1 << 20
INITIATOR = "iqn.2026-11.org.example.vm:iscsictl"
PF_MEMALLOC_NOIO = 0x00080000  # <linux/sched.h>: a task flag, /proc/PID/stat's 9th field


def locked_kib(pid):
    """VmLck of /proc/PID/status (mlockall counts every locked mapping's size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmLck for {pid}")


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
    # as iscsid: the daemon's threads at nice -10 (the loop raised by 10 from the 0 it was
    # started at, the lanes at LANE_NICE), its memory locked, the loop an I/O flusher
    # (PF_MEMALLOC_NOIO in its task flags); its command server keeps what it was started with
    stats = {int(t.name): (t / "stat").read_text().rpartition(")")[2].split()
             for t in Path(f"/proc/{daemon.proc.pid}/task").iterdir()}
    nice = {tid: int(f[16]) for tid, f in stats.items()}
    assert nice[daemon.proc.pid] == -10 and set(nice.values()) <= {-10, 0}, nice
    assert int(stats[daemon.proc.pid][6]) & PF_MEMALLOC_NOIO
    assert locked_kib(daemon.proc.pid) > 0
    server = daemon.wait_command_server()
    server_stat = Path(f"/proc/{server}/stat").read_text().rpartition(")")[2].split()
    assert int(server_stat[16]) == 0 and not int(server_stat[6]) & PF_MEMALLOC_NOIO
    assert locked_kib(server) == 0
    # a second login to the same node is refused: session exists
    again = daemon.client.call("login", records=[record(t.iqn)], initiator_name=INITIATOR)
    assert not again[0]["ok"] and again[0]["code"] == 15
    out = daemon.client.call("logout", sids=[sid])
    assert out[0]["ok"], out
    assert iscsi_sessions() == []


def test_logout_returns_when_the_kernel_session_is_gone(lio, daemon):
    """The daemon destroys a session with DESTROY_SESSION_ASYNC (its loop never waits on the
    kernel's device removal), and its logout answers once the kernel reports the session
    destroyed: right after each answer the session, its SCSI host and its disk are gone
    from sysfs, as after iscsiadm's logout.  (It once answered at DESTROY_SESSION_ASYNC's
    reply, and a listing right after could show the session: seen here.)"""
    t = lio.create("iqn.2003-01.org.example.vm:gone", luns=[8 * MIB])
    for _ in range(5):
        res = daemon.client.call("login", records=[record(t.iqn)], initiator_name=INITIATOR)
        assert res[0]["ok"], res
        sid = res[0]["sids"][0]
        dev = wait_disk(t.iqn)
        host = Path(f"/sys/class/iscsi_session/session{sid}/device").resolve().parent.name
        out = daemon.client.call("logout", sids=[sid])
        assert out[0]["ok"], out
        assert iscsi_sessions() == []
        assert not Path(f"/sys/class/scsi_host/{host}").exists()
        assert not Path(f"/sys/block/{os.path.basename(dev)}").exists()


def test_a_max_r2t_that_is_no_power_of_two_is_taken_by_iscsi_tcp(lio, daemon):
    """iscsi_tcp takes only a power of two for MaxOutstandingR2T (iscsi_tcp_set_max_r2t:
    SET_PARAM(MAX_R2T) "3" -> EINVAL; iscsid retries such a login and gives up): a login
    that negotiated 3 with LIO gives the kernel 4 (its R2T pool: larger than the target
    fills), and the disk works; ``-m session -P 2`` shows the kernel's 4, as iscsiadm shows
    the kernel's value.  Before, every such login was refused at the handover (9)."""
    t = lio.create("iqn.2003-01.org.example.vm:r2t", luns=[8 * MIB],
                   params={"MaxOutstandingR2T": 3})
    res = daemon.client.call("login", initiator_name=INITIATOR, records=[
        record(t.iqn, **{"node.session.iscsi.MaxOutstandingR2T": "3"})])
    assert res[0]["ok"], res
    sid = res[0]["sids"][0]
    base = Path(f"/sys/class/iscsi_session/session{sid}")
    assert (base / "max_outstanding_r2t").read_text().strip() == "4"
    dev = wait_disk(t.iqn)
    data = os.urandom(4 * MIB)
    subprocess.run(["dd", f"of={dev}", "bs=1M", "oflag=direct", "status=none"], input=data,
                   check=True)
    back = subprocess.run(["dd", f"if={dev}", "bs=1M", "count=4", "iflag=direct",
                           "status=none"], check=True, capture_output=True).stdout
    assert back == data
    out = daemon.client.call("logout", sids=[sid])
    assert out[0]["ok"], out
    assert iscsi_sessions() == []
