"""iscsiuio, the real one (Debian's, built from open-iscsi 2.1.8), reads what iscsictl sends it.

No machine here has a bnx2i or qedi NIC for iscsiuio to set up, so the port is a sysfs
tree's (tests/cli/offload_tree.py: a bnx2i host whose net device is eth7, which does not
exist): iscsiuio takes each request, parses it, looks for eth7 and fails.  What it logs of
the request (the header's command and length, the record's netdev, address and VLAN) shows
that it read iscsictl's bytes as open-iscsi's ``struct iface_rec`` (the netdev at byte 88,
the address at 104, the VLAN at 8386), and its answer to the ping (ERR, ping_sc -EIO) is
said by iscsictl.  iscsiuio needs the kernel's NETLINK_ISCSI,
so it runs here and not on the host.
"""

import os
import subprocess
import sys
from pathlib import Path

from cli import VENV_BIN, end_process, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "cli"))

from offload_tree import offload_sysfs  # noqa: E402

#: the tree's bnx2i port: fd00::50, VLAN 12, netdev eth7 (its host's)
BNX = "bnx2i.00:10:18:AA:BB:01.ipv6.0"


def listening(name: str) -> bool:
    with open("/proc/net/unix") as f:
        return any(line.split()[-1] == "@" + name for line in f if line.count(" ") >= 7)


def test_the_real_iscsiuio_reads_iscsictls_requests(scenario_dir, tmp_path):
    # iscsiuio's NETLINK_ISCSI socket; and /sys/class/uio, where it looks for the port's
    # uio device (without it, it waits 10 s for the directory on each request)
    subprocess.run(["modprobe", "-a", "scsi_transport_iscsi", "uio"], check=True)
    log_path = scenario_dir / "iscsiuio.log"
    with open(log_path, "w") as log:
        uip = subprocess.Popen(["iscsiuio", "-f", "-d", "4", "-p", str(tmp_path / "uip.pid")],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("iscsiuio's socket", lambda: listening("ISCSID_UIP_ABSTRACT_NAMESPACE"), 30)
        root = tmp_path / "etc"
        env = dict(os.environ, ISCSICTL_SYSFS_ROOT=offload_sysfs(tmp_path / "sys"))
        r = subprocess.run([str(VENV_BIN / "iscsictl"), "--db-root", str(root),
                            "--config-root", str(root), "-m", "iface", "-C", "ping", "-I", BNX,
                            "-a", "fd00::10", "-b", "56"],
                           capture_output=True, text=True, env=env, timeout=60)
    finally:
        end_process(uip, 10)
    said = log_path.read_text()
    assert (r.returncode, r.stdout) == (1, "Ping 1 failed: iscsiuio: Input/output error\n"), (
        r, said)
    # GET_IFACE, then PING: each read whole, its record's fields where open-iscsi has them
    assert said.count("recv iscsid request: cmd: 1, payload_len: 11720") == 1, said
    assert said.count("recv iscsid request: cmd: 2, payload_len: 11852") == 1, said
    assert said.count("Received request for 'eth7' to set IP address: 'fd00::50' VLAN: '12'") \
        == 2, said
    assert said.count("Couldn't find eth7 to determine uio minor") == 2, said
