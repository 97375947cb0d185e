"""iscsiuio's IPC messages (iscsictl.kernel.iscsiuio): the layout of open-iscsi 2.1.8's
``struct iface_rec``, written here by hand from usr/config.h for x86_64 (LP64), what an iface
record fills in, the ping's payload, and the exchange's errors against a stand-in server.
The real iscsiuio reads these requests in the VM (vm-tests/guest_tests/test_iscsiuio.py)."""

import ctypes
import errno
import os
import socket
import struct
import threading

import pytest

from fake_uip import FakeUip
from iscsictl.kernel import iscsiuio as u

pytestmark = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8,
                                reason="the offsets below are LP64's")

#: field -> (offset, size), by hand: list_head 16; name[65] to 81; iface_num aligned to
#: 84; netdev[16] 88; ipaddress ... router_autocfg, nine NI_MAXHOST strings with
#: bootproto[80] among them, from 104 to 8384; prefix_len 8384; vlan_id aligned to 8386;
#: vlan_priority 8388; vlan_state and state [80] to 8549; mtu aligned to 8550; port 8552;
#: ... flow_label after mld (ends 10077) aligned to 10080; hwaddress[18] after port_speed
#: (ends 11172); transport_name[16]; alias and iname [256]; the whole 11720, a multiple
#: of the list_head's 8.
LAYOUT = {
    "name": (16, 65), "iface_num": (84, 4), "netdev": (88, 16), "ipaddress": (104, 1025),
    "subnet_mask": (1129, 1025), "gateway": (2154, 1025), "bootproto": (3179, 80),
    "ipv6_linklocal": (3259, 1025), "router_autocfg": (7359, 1025), "prefix_len": (8384, 1),
    "vlan_id": (8386, 2), "vlan_priority": (8388, 1), "vlan_state": (8389, 80),
    "state": (8469, 80), "mtu": (8550, 2), "port": (8552, 2), "flow_label": (10080, 4),
    "hwaddress": (11172, 18), "transport_name": (11190, 16), "alias": (11206, 256),
    "iname": (11462, 256),
}


def test_struct_iface_rec_is_laid_out_as_open_iscsis():
    assert ctypes.sizeof(u.IfaceRec) == 11720
    for name, (offset, size) in LAYOUT.items():
        assert (getattr(u.IfaceRec, name).offset, getattr(u.IfaceRec, name).size) == (
            offset, size), name


def test_an_iface_record_fills_the_struct():
    values = {"iface.iscsi_ifacename": "bnx2i.00:10:18:aa:bb:01", "iface.net_ifacename": "eth7",
              "iface.ipaddress": "10.7.0.2", "iface.vlan_id": "12", "iface.vlan_priority": "3",
              "iface.mtu": "9000", "iface.iface_num": "1", "iface.tcp_nagle": "disable",
              "iface.def_task_mgmt_timeout": "70000", "iface.gateway": "<empty>",
              "iface.prefix_len": "x", "iface.transport_name": "bnx2i",
              "iface.hwaddress": "00:10:18:aa:bb:01", "iface.initiatorname": "n" * 300}
    request = u.get_iface_request(values)
    assert struct.unpack_from("=iI", request) == (u.UipCommand.GET_IFACE, 11720)
    assert len(request) == 8 + 11720
    rec = u.IfaceRec.from_buffer_copy(request, 8)
    assert (rec.name, rec.netdev, rec.ipaddress, rec.transport_name, rec.hwaddress) == (
        b"bnx2i.00:10:18:aa:bb:01", b"eth7", b"10.7.0.2", b"bnx2i", b"00:10:18:aa:bb:01")
    assert (rec.vlan_id, rec.vlan_priority, rec.mtu, rec.iface_num) == (12, 3, 9000, 1)
    assert rec.nagle == b"disable"              # the record's tcp_nagle
    assert rec.def_task_mgmt_tmo == 70000 & 0xFFFF  # cut to its uint16_t
    assert rec.gateway == b"" and rec.prefix_len == 0  # <empty>, not a number
    assert rec.iname == b"n" * 255 and request[8 + 11462 + 255] == 0  # NUL-terminated
    assert bytes(request[8:24]) == bytes(16)    # the list_head: no pointers of ours


def test_a_ping_carries_the_address_and_size_after_the_record():
    request = u.ping_request({"iface.net_ifacename": "eth7"}, "10.7.0.9", 56)
    command, length = struct.unpack_from("=iI", request)
    # the record, the sockaddr_storage and the int; not the status pointer after them
    assert (command, length, len(request)) == (u.UipCommand.PING, 11720 + 128 + 4, 8 + 11852)
    family, port, addr = struct.unpack_from("=HH4s", request, 8 + 11720)
    assert (family, port, socket.inet_ntoa(addr)) == (socket.AF_INET, 0, "10.7.0.9")
    assert struct.unpack_from("=i", request, 8 + 11720 + 128) == (56,)
    six = u.ping_request({}, "fd00::9", 32)
    family, = struct.unpack_from("=H", six, 8 + 11720)
    assert family == socket.AF_INET6
    assert six[8 + 11720 + 8:8 + 11720 + 24] == socket.inet_pton(socket.AF_INET6, "fd00::9")
    with pytest.raises(ValueError):
        u.ping_request({}, "target.example", 32)


def test_the_answer_is_read_whole():
    with FakeUip([u.UipStatus.DEVICE_INITIALIZING, (u.UipStatus.DEVICE_UP, 7)]) as uip:
        first = u.exchange(u.get_iface_request({}), 2, uip.name)
        second = u.exchange(u.ping_request({}, "10.0.0.1", 32), 2, uip.name)
    assert (first.initializing, first.device_up, first.said) == (True, False,
                                                                 "DEVICE_INITIALIZING")
    assert (second.command, second.device_up, second.ping_sc) == (u.UipCommand.PING, True, 7)
    assert [r.command for r in uip.requests] == [u.UipCommand.GET_IFACE, u.UipCommand.PING]
    assert uip.requests[1].payload[11720:11722] == struct.pack("=H", socket.AF_INET)


def test_no_iscsiuio_a_closed_connection_and_no_answer_are_errors():
    with pytest.raises(u.UipNotRunning) as caught:
        u.exchange(b"x", 1, "iscsictl-test-uip-nobody-listens")
    assert caught.value.errno == errno.ECONNREFUSED and "iscsiuio is not running" in str(
        caught.value)
    with FakeUip([None]) as uip:
        with pytest.raises(u.UipError) as caught:
            u.exchange(u.get_iface_request({}), 2, uip.name)
    assert caught.value.errno == errno.EPROTO
    # a server that takes the connection and never answers: the timeout
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind("\0iscsictl-test-uip-silent")
    silent.listen(1)
    held = []
    t = threading.Thread(target=lambda: held.append(silent.accept()), daemon=True)
    t.start()
    try:
        with pytest.raises(u.UipError) as caught:
            u.exchange(u.get_iface_request({}), 0.2, "iscsictl-test-uip-silent")
        assert caught.value.errno == errno.ETIMEDOUT
    finally:
        t.join(2)
        for conn, _ in held:
            conn.close()
        silent.close()


def test_the_socket_name_can_be_pointed_elsewhere(monkeypatch):
    monkeypatch.delenv("ISCSICTL_UIP_SOCKET", raising=False)
    assert u.socket_name() == "ISCSID_UIP_ABSTRACT_NAMESPACE"
    monkeypatch.setenv("ISCSICTL_UIP_SOCKET", "elsewhere")
    assert u.socket_name() == "elsewhere"


def test_a_listener_of_another_user_is_not_taken_for_iscsiuio():
    """Any user may listen on an abstract socket (no permissions): a process of nobody's at
    iscsiuio's name does not get the iface record (before: sent to it, and its answer
    believed)."""
    from peers import listener_of_another_user

    name = f"iscsictl-test-uip-squatter-{os.getpid()}"
    with listener_of_another_user(name) as pid:
        with pytest.raises(u.UipError) as caught:
            u.exchange(u.get_iface_request({}), 2, name)
    assert caught.value.errno == errno.EPERM
    assert f"pid {pid}, uid 65534" in str(caught.value) and "not iscsiuio" in str(caught.value)
