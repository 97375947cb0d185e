"""Only the kernel (netlink port 0) is trusted on a real NETLINK_ISCSI socket.

This machine has no iSCSI module, so a NETLINK_USERSOCK (2) pair stands in: the
check is on the source port of whatever netlink family the socket belongs to.
"""

import socket

import pytest

from iscsictl.netlink import IscsiNetlink


def _netlink(proto: int = 2) -> socket.socket:
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    except OSError as exc:  # pragma: no cover - the test machine has netlink
        pytest.fail(f"no AF_NETLINK sockets here: {exc}")
    s.bind((0, 0))
    s.setblocking(False)
    return s


def test_messages_from_another_process_port_are_dropped(caplog):
    ours, forger = _netlink(), _netlink()
    nl = IscsiNetlink(transport=ours, timeout=0.2)
    try:
        # a well-formed ISCSI_KEVENT_CONN_ERROR (102) for sid 1, from a user port
        import struct
        ev = struct.pack("<IIQ", 102, 0, 0) + bytes(24) + struct.pack("<III", 1, 0, 1020) + bytes(4)
        msg = struct.pack("<IHHII", 16 + len(ev), 0, 0, 0, forger.getsockname()[0]) + ev
        forger.sendto(msg, (ours.getsockname()[0], 0))
        with caplog.at_level("WARNING"):
            assert nl.process_events(timeout=0.2) == 0
        assert nl.pending_events() == []
        assert "only the kernel, port 0, is trusted" in caplog.text
    finally:
        nl.close()
        forger.close()
