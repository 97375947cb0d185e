"""``-m iface -C ping`` side by side with the real iscsiadm 2.1.8: both run against the same
fake qla4xxx kernel (tests/fake_hba.py: ISCSI_UEVENT_PING answered as qla4xxx_send_ping,
then the firmware's ISCSI_KEVENT_PING_COMP by multicast) and sysfs tree, each on its own
/etc/iscsi (with the default iface records both make from sysfs); they must print the same,
exit the same and send the same PING requests byte for byte but the random ``pid``."""

from __future__ import annotations

import io
import json
import socket
import struct
from contextlib import contextmanager

import pytest

from fake_hba import Host
from iscsictl.kernel.iscsiuio import UipCommand, UipStatus
from iscsictl.netlink.enums import IscsiUeventE as E
from iscsictl.netlink.messages import ISCSI_UEVENT_SIZE
from offload_tree import HbaRig, stderr_lines

QLA0 = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.0"
QLA1 = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.1"
BNX = "bnx2i.00:10:18:AA:BB:01.ipv6.0"
#: offset of ``u.iscsi_ping.pid`` in the request (nlmsghdr 16 + iscsi_uevent's 32)
PID_AT = 48
#: where the destination's sockaddr begins: after nlmsghdr and struct iscsi_uevent
PAYLOAD_AT = 16 + ISCSI_UEVENT_SIZE


@pytest.fixture
def rig(tmp_path, shim):
    with HbaRig(tmp_path, shim, {3: Host("tcp"), 5: Host("qla4xxx"), 6: Host("bnx2i")}) as r:
        yield r


def _sent(rig) -> list[bytes]:
    """The PING requests since the last call, their nlmsg seq/pid and ping pid zeroed."""
    out = []
    for raw, _ in rig.kernel.sent(E.PING):
        b = bytearray(raw)
        b[8:16] = bytes(8)
        b[PID_AT:PID_AT + 4] = bytes(4)
        out.append(bytes(b))
    rig.kernel.requests.clear()
    return out


def _both(rig, *args: str):
    """iscsiadm then iscsictl with ``-m iface -C ping args``: same exit code and stdout;
    returns (iscsiadm's, iscsictl's) CompletedProcess and the requests each sent."""
    args = ("-m", "iface", "-C", "ping", *args)
    rig.kernel.requests.clear()
    adm = rig.adm(*args)
    adm_sent = _sent(rig)
    ictl = rig.ictl(*args)
    ictl_sent = _sent(rig)
    assert (ictl.returncode, ictl.stdout) == (adm.returncode, adm.stdout), (adm, ictl)
    assert ictl_sent == adm_sent
    return adm, ictl, adm_sent


def _new_iface(rig, name: str, **settings: str) -> None:
    for tool in (rig.adm, rig.ictl):
        assert tool("-m", "iface", "-I", name, "-o", "new").returncode == 0
        for key, value in settings.items():
            cp = tool("-m", "iface", "-I", name, "-o", "update", "-n", f"iface.{key}",
                      "-v", value)
            assert cp.returncode == 0, cp.stderr


def test_ipv4_pings_completed_as_iscsiadm(rig):
    adm, _, sent = _both(rig, "-I", QLA1, "-a", "192.168.1.10", "-c", "3", "-b", "1400")
    assert adm.returncode == 0
    assert adm.stdout == "Ping 1 completed\nPing 2 completed\nPing 3 completed\n"
    assert len(sent) == 3
    host_no, iface_num, iface_type, size = struct.unpack_from("=IIII", sent[0], 32)
    assert (host_no, iface_num, iface_type, size) == (5, 1, 1, 1400)
    assert sent[0][PAYLOAD_AT:] == struct.pack("=HH4s8x", socket.AF_INET, 0,
                                       socket.inet_aton("192.168.1.10"))


def test_every_ping_carries_a_pid_of_its_own(rig):
    rig.ictl("-m", "iface", "-C", "ping", "-I", QLA0, "-a", "192.168.1.10", "-c", "4")
    pids = {raw[PID_AT:PID_AT + 4] for raw, _ in rig.kernel.sent(E.PING)}
    assert len(pids) == 4


def test_the_firmwares_status_is_said_and_the_exit_code_is_the_requests(rig):
    rig.kernel.hosts[5].ping.update({"192.168.1.98": 4, "192.168.1.99": 9, "192.168.1.97": 1})
    for address, said in (("192.168.1.98", "timed out"), ("192.168.1.99",
                          "No ARP response received"), ("192.168.1.97", "firmware disabled")):
        adm, _, _ = _both(rig, "-I", QLA0, "-a", address)
        assert (adm.returncode, adm.stdout) == (0, f"Ping 1 failed: {said}\n")


def test_ipv6_iface_and_the_drivers_refusals(rig):
    _new_iface(rig, "qla6", transport_name="qla4xxx", hwaddress="00:0e:1e:aa:bb:cc",
               ipaddress="fd00::5", iface_num="1")
    adm, _, sent = _both(rig, "-I", "qla6", "-a", "fd00::10")
    assert adm.stdout == "Ping 1 completed\n"
    assert struct.unpack_from("=II", sent[0], 36) == (1, 2)  # iface_num 1, IPv6
    assert len(sent[0]) == PAYLOAD_AT + 28  # the sockaddr_in6
    adm, _, sent = _both(rig, "-I", "qla6", "-a", "fe80::10%lo")  # its scope id sent too
    assert struct.unpack_from("=I", sent[0], PAYLOAD_AT + 24) == (socket.if_nametoindex("lo"),)
    # qla4xxx pings IPv6 from iface 0 or 1 only, and each family to its own: ENOSYS
    for key, value, address in (("iface_num", "2", "fd00::10"), ("iface_num", "1",
                                                                  "192.168.1.10")):
        for tool in (rig.adm, rig.ictl):
            tool("-m", "iface", "-I", "qla6", "-o", "update", "-n", f"iface.{key}", "-v", value)
        adm, _, _ = _both(rig, "-I", "qla6", "-a", address)
        assert (adm.returncode, adm.stdout) == (27, "Ping 1 failed: operation not supported\n")


@pytest.mark.parametrize("args,said", [
    (("-a", "192.168.1.10"), "Ping requires iface."),
    (("-I", QLA0), "Ping requires destination ipaddress."),
    (("-I", QLA0, "-a", "192.168.1.10", "-b", "0"), "Invalid packet size: 0."),
    (("-I", QLA0, "-a", "192.168.1.10", "-b", "x"), "Invalid packet size: 0."),
    (("-I", QLA0, "-a", "192.168.1.10", "-c", "-3"),
     "Invalid number of packets to transmit: -3."),
    (("-I", QLA0, "-a", "192.168.1.10", "-i", "-1"), "Invalid timing interval: -1."),
    (("-I", "nosuch", "-a", "192.168.1.10"), "Could not read iface nosuch (6)"),
    (("-I", QLA0, "-a", "no-such-host.invalid"), "Invalid IP address"),
])
def test_refused_before_any_ping_as_iscsiadm(rig, args, said):
    adm, ictl, sent = _both(rig, *args)
    assert adm.returncode in (6, 7) and not sent
    assert stderr_lines(ictl.stderr, "iscsictl")[-1].startswith(said), ictl.stderr
    assert any(line.startswith(said.split(":")[0].rstrip(".")) for line in
               stderr_lines(adm.stderr, "iscsiadm")), adm.stderr


def test_an_iface_bound_to_no_host_is_refused_where_iscsiadm_sends_to_host_all_ones(rig):
    """iscsiadm takes "no host" (-1) for a host number and sends the PING to host
    4294967295 through the iface's transport (tcp here: ENOSYS, 27)."""
    args = ("-m", "iface", "-C", "ping", "-I", "default", "-a", "192.168.1.10")
    adm = rig.adm(*args)
    assert [msg["host_no"] for _, msg in rig.kernel.sent(E.PING)] == [0xFFFFFFFF]
    assert (adm.returncode, adm.stdout) == (27, "Ping 1 failed: operation not supported\n")
    rig.kernel.requests.clear()
    ictl = rig.ictl(*args)
    assert ictl.returncode == 7 and not rig.kernel.sent(E.PING)
    assert ictl.stderr.startswith("iscsictl: Can't find host_no: no iSCSI host has"), ictl


@pytest.fixture
def uip():
    """A stand-in iscsiuio (tests/fake_uip.py) at the real one's name, so that iscsiadm
    asks it too (no iscsiuio runs on a machine without bnx2i/qedi NICs)."""
    from fake_uip import FakeUip
    from iscsictl.kernel.iscsiuio import NAMESPACE

    try:
        server = FakeUip(name=NAMESPACE)
    except OSError as e:
        pytest.fail(f"an iscsiuio seems to run on this machine ({e}): stop it for this test")
    with server:
        yield server


def _uip_sent(uip):
    """The requests since the last call: command and payload after the struct's list_head
    (iscsiadm's pointers)."""
    out = [(r.command, r.payload[16:]) for r in uip.requests]
    uip.requests.clear()
    return out


@pytest.mark.parametrize("answers, count, address", [
    ([UipStatus.DEVICE_UP, (UipStatus.DEVICE_UP, 0)], "1", "fd00::10"),
    # not ready (pinged anyway), then a status of the kernel's table, then the NIC starting
    ([UipStatus.ERR, (UipStatus.DEVICE_UP, 4), UipStatus.DEVICE_UP,
      (UipStatus.DEVICE_INITIALIZING, 0)], "2", "10.6.0.1"),
], ids=["completed", "failed"])
def test_bnx2i_pings_through_iscsiuio_as_iscsiadm(rig, uip, answers, count, address):
    """usr/transport.c bnx2i ``exec_ping = uip_broadcast_ping_req``: for each ping,
    GET_IFACE (the iface record with the host's netdev, eth7) and PING (the address as a
    sockaddr_storage, the payload size) to iscsiuio; its ``ping_sc`` is the status.  Both
    tools send the same bytes (iscsiadm's list_head pointers aside), print the same and
    exit the same; no netlink PING goes to the kernel."""
    uip.answers = answers * 2 + [answers[-1]]
    adm = rig.adm("-m", "iface", "-C", "ping", "-I", BNX, "-a", address, "-c", count)
    adm_sent = _uip_sent(uip)
    ictl = rig.ictl("-m", "iface", "-C", "ping", "-I", BNX, "-a", address, "-c", count)
    assert (ictl.returncode, ictl.stdout) == (adm.returncode, adm.stdout), (adm, ictl)
    assert _uip_sent(uip) == adm_sent
    assert [c for c, _ in adm_sent] == [UipCommand.GET_IFACE, UipCommand.PING] * int(count)
    assert not rig.kernel.sent(E.PING)


def test_iscsiuios_own_failure_is_said_by_its_errno(rig, uip):
    """iscsiuio answers a ping it could not send with its negative errno (iscsid_ipc.c:
    ``rsp.ping_sc = rc`` of parse_iface), which iscsiadm prints as ``(null)``."""
    uip.answers = [UipStatus.DEVICE_UP, (UipStatus.ERR, -5)]
    cp = rig.ictl("-m", "iface", "-C", "ping", "-I", BNX, "-a", "fd00::10")
    assert (cp.returncode, cp.stdout) == (1, "Ping 1 failed: iscsiuio: Input/output error\n")


def test_bnx2i_pings_without_iscsiuio(rig, monkeypatch):
    monkeypatch.setenv("ISCSICTL_UIP_SOCKET", "iscsictl-test-uip-nobody-listens")
    cp = rig.ictl("-m", "iface", "-C", "ping", "-I", BNX, "-a", "fd00::10")
    assert (cp.returncode, cp.stdout) == (20, "Ping 1 failed: could not connect to iscsid\n")
    assert cp.stderr.startswith("iscsictl: iscsiuio is not running"), cp.stderr


def test_json(rig):
    rig.kernel.hosts[5].ping["192.168.1.98"] = 4
    cp = rig.ictl("--json", "-m", "iface", "-C", "ping", "-I", QLA0, "-a", "192.168.1.98",
                  "-c", "2")
    out = json.loads(cp.stdout)
    assert cp.returncode == 0 and out["host_no"] == 5 and out["rc"] == 0
    assert [(p["ping"], p["status"], p["result"]) for p in out["pings"]] == [
        (1, 4, "failed: timed out"), (2, 4, "failed: timed out")]


def test_no_completion_is_a_timeout(rig, monkeypatch, tmp_path):
    """The firmware never answers: each ping waits out its 30 s (here 0.2 s, in-process,
    through the fake kernel's socket) and is ISCSI_ERR_TRANS_TIMEOUT (8)."""
    from iscsictl.cli import hba, iface_cmd
    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output
    from iscsictl.netlink import IscsiNetlink

    @contextmanager
    def netlink():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind("")  # autobind
        s.connect(rig.kernel.path)
        s.setblocking(False)  # as open_netlink_socket makes it
        with IscsiNetlink(transport=s) as nl:
            yield nl

    monkeypatch.setattr(hba, "hba_netlink", netlink)
    monkeypatch.setattr(iface_cmd, "PING_TIMEOUT", 0.2)
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", rig.sys_dir)
    rig.kernel.hosts[5].ping["192.168.1.77"] = None
    root = str(tmp_path / "etc")
    out, err = io.StringIO(), io.StringIO()
    rc = run(["--db-root", root, "--config-root", root, "-m", "iface", "-C", "ping", "-I",
              QLA0, "-a", "192.168.1.77", "-c", "2"], Output(out, err))
    assert (rc, out.getvalue()) == (8, "Ping 1 failed: connection timed out\n"
                                       "Ping 2 failed: connection timed out\n"), err.getvalue()
    assert len(rig.kernel.sent(E.PING)) == 2


def test_no_netlink_socket_fails_each_ping_as_iscsiadm(rig, tmp_path, monkeypatch):
    """NETLINK_ISCSI cannot be opened (no scsi_transport_iscsi; a container): each ping
    "failed: unknown error" and exit 1, as iscsiadm's kexec_ping fails each (before: only
    the error, exit 9, no ping said), with why once on stderr."""
    monkeypatch.setattr(rig.kernel, "path", str(tmp_path / "no-kernel"))
    adm, ictl, sent = _both(rig, "-I", QLA1, "-a", "192.168.1.10", "-c", "2")
    assert adm.returncode == 1 and not sent
    assert adm.stdout == "Ping 1 failed: unknown error\nPing 2 failed: unknown error\n"
    assert ictl.stderr.count("iscsictl: ") == 1
