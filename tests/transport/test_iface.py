"""What an iface record changes about a software-iSCSI connection (iscsictl.transport.iface):
the device chosen from fixture sysfs trees as open-iscsi chooses it, and SO_BINDTODEVICE
applied on real sockets."""

import socket

import pytest

from iscsictl.kernel.sysfs import Sysfs
from iscsictl.transport.iface import BindError, bind_socket, iface_netdev


def _net(tmp_path, devices):
    """class/net/<name>/{type,address,ifindex} for (name, type, mac, ifindex)."""
    for name, typ, mac, index in devices:
        d = tmp_path / "class/net" / name
        d.mkdir(parents=True)
        (d / "type").write_text(f"{typ}\n")
        (d / "address").write_text(f"{mac}\n")
        (d / "ifindex").write_text(f"{index}\n")
    return Sysfs(tmp_path)


@pytest.fixture
def sysfs(tmp_path):
    return _net(tmp_path, [("lo", 772, "00:00:00:00:00:00", 1),
                           ("eth1", 1, "52:54:00:aa:bb:02", 3),
                           ("eth0", 1, "52:54:00:aa:bb:01", 2),
                           ("bond0", 1, "52:54:00:aa:bb:01", 5),
                           ("ib0", 32, "80:00:02:08:fe:80:00:00:00:00", 4)])


def test_a_mac_names_the_ethernet_device_that_has_it(sysfs):
    assert iface_netdev({"iface.hwaddress": "52:54:00:AA:BB:02"}, sysfs) == "eth1"
    # two devices with one MAC (a bond's slave): the lower ifindex, as if_nameindex() walks
    assert iface_netdev({"iface.hwaddress": "52:54:00:aa:bb:01"}, sysfs) == "eth0"
    # the MAC wins over the name (open-iscsi checks it first)
    assert iface_netdev({"iface.hwaddress": "52:54:00:aa:bb:02",
                         "iface.net_ifacename": "eth0"}, sysfs) == "eth1"


def test_loopback_and_other_link_types_never_match_a_mac(sysfs):
    for mac in ("00:00:00:00:00:00", "80:00:02:08:fe:80:00:00:00:00", "02:00:00:00:00:99"):
        with pytest.raises(LookupError, match=f"Cannot match {mac} to net/scsi interface."):
            iface_netdev({"iface.hwaddress": mac}, sysfs)


def test_unset_values_and_other_transports_bind_nothing(sysfs):
    assert iface_netdev({}, sysfs) is None
    assert iface_netdev({"iface.transport_name": "tcp", "iface.hwaddress": "default",
                         "iface.net_ifacename": "<empty>", "iface.ipaddress": ""}, sysfs) is None
    assert iface_netdev({"iface.transport_name": "iser", "iface.net_ifacename": "eth0"},
                        sysfs) is None
    assert iface_netdev({"iface.net_ifacename": "eth9"}, sysfs) == "eth9"  # checked at bind


def test_an_ip_address_alone_cannot_bind_software_iscsi(sysfs):
    with pytest.raises(LookupError, match="Cannot bind 192.0.2.7 to net/scsi interface. This is "
                       r"not supported with software iSCSI \(iscsi_tcp\)."):
        iface_netdev({"iface.ipaddress": "192.0.2.7"}, sysfs)
    assert iface_netdev({"iface.ipaddress": "192.0.2.7", "iface.net_ifacename": "eth0"},
                        sysfs) == "eth0"


def test_bind_socket_applies_the_device_or_says_why_not(sysfs):
    with socket.socket() as s:
        assert bind_socket(s, {"iface.net_ifacename": "lo"}, "127.0.0.1") == "lo"
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == b"lo"
    with socket.socket() as s:
        assert bind_socket(s, {"iface.iscsi_ifacename": "default"}, "127.0.0.1") is None
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == b""
    with socket.socket() as s, pytest.raises(BindError) as e:
        bind_socket(s, {"iface.net_ifacename": "nosuch0"}, "127.0.0.1")
    assert e.value.lines == ("Could not bind connection 0 to nosuch0",
                             "cannot make connection to 127.0.0.1: No such device")
    assert e.value.exit_code == 4
    with socket.socket() as s, pytest.raises(BindError) as e:
        bind_socket(s, {"iface.hwaddress": "02:00:00:00:00:99"}, "10.0.0.1", sysfs)
    assert e.value.lines[0] == "Cannot match 02:00:00:00:00:99 to net/scsi interface."


def test_a_socket_bound_to_lo_reaches_a_loopback_listener():
    """(That a socket bound to another device cannot reach it, which makes two ifaces two
    paths, is shown in the VM: a login through the wrong NIC fails with 8.)"""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        with socket.socket() as s:
            bind_socket(s, {"iface.net_ifacename": "lo"}, "127.0.0.1")
            s.settimeout(5)
            s.connect(srv.getsockname())
            assert s.getpeername() == srv.getsockname()
    finally:
        srv.close()
