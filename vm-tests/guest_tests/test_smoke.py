"""Smoke scenarios proving the VM harness: kernel modules, LIO, open-iscsi, block I/O."""

import os
import socket
import subprocess
from pathlib import Path

from openiscsi import iscsi_sessions

MIB = 1 << 20


def test_iscsi_netlink_socket_opens():
    """NETLINK_ISCSI (protocol 8) exists once scsi_transport_iscsi is loaded; tcp registers."""
    subprocess.run(["modprobe", "scsi_transport_iscsi"], check=True)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 8) as s:
        s.bind((0, 0))
    subprocess.run(["modprobe", "iscsi_tcp"], check=True)
    handle = Path("/sys/class/iscsi_transport/tcp/handle").read_text().strip()
    assert int(handle) != 0


def test_open_iscsi_login_io_logout(lio, openiscsi, scenario_dir):
    """open-iscsi discovers and logs in to LIO, direct I/O round-trips, logout leaves nothing."""
    target = lio.create("iqn.2003-01.org.example.vm:smoke", luns=[64 * MIB])
    out = openiscsi.iscsiadm("-m", "discovery", "-t", "st", "-p", "127.0.0.1")
    assert f"127.0.0.1:3260,1 {target.iqn}" in out

    openiscsi.iscsiadm("-m", "node", "-T", target.iqn, "-p", "127.0.0.1", "--login")
    dev = openiscsi.wait_disk(target.iqn, lun=0)
    name = os.path.basename(dev)
    assert int(Path(f"/sys/block/{name}/size").read_text()) * 512 == 64 * MIB
    assert openiscsi.initiator_name in target.dynamic_sessions()
    assert target.login_counter("accepts") >= 1

    data = os.urandom(4 * MIB)
    src = scenario_dir / "pattern.bin"
    src.write_bytes(data)
    subprocess.run(["dd", f"if={src}", f"of={dev}", "bs=1M", "oflag=direct", "status=none"],
                   check=True)
    back = subprocess.run(["dd", f"if={dev}", "bs=1M", "count=4", "iflag=direct", "status=none"],
                          check=True, capture_output=True).stdout
    assert back == data
    src.unlink()
    # the data reached LIO's backing file
    with open(target.lun_files[0], "rb") as f:
        assert f.read(4 * MIB) == data

    openiscsi.iscsiadm("-m", "node", "-T", target.iqn, "-p", "127.0.0.1", "--logout")
    assert iscsi_sessions() == []
