"""Logins through offload HBAs (bnx2i, qla4xxx, cxgb4i) and through iSER by the real iscsid
(with iscsiadm) beside iscsictld's, each against a fake kernel of the same kind
(tests/fake_kernel.py ServedKernel, reached by iscsid through the LD_PRELOAD shim,
tests/nlshim.c) and a stand-in iscsiuio at the real one's socket (tests/fake_uip.py), on a
sysfs tree laid out as Linux 6.1's (tests/cli/offload_tree.py: the bnx2i port 6, eth7,
fd00::50; the qla4xxx port 5; a cxgb4i port 8), from the node record iscsiadm writes.  No
peer has the hardware; this is where iscsictld's logins through the kernel's connections
are held against iscsid's own, request by request."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from fake_hba import build_shim  # noqa: E402
from fake_kernel import ServedKernel, SyncKernel  # noqa: E402
from fake_uip import FakeUip  # noqa: E402
from offload_tree import offload_sysfs  # noqa: E402
from peers import iscsiadm  # noqa: E402
from test_iser_login import iser_target  # noqa: E402
from test_offload_login import HbaKernel, QlaKernel  # noqa: E402
from test_relogin import FakeTarget, TargetConfig  # noqa: E402

from iscsictl.daemon.service import Daemon  # noqa: E402
from iscsictl.db.store import NodeDB  # noqa: E402
from iscsictl.kernel.iscsiuio import NAMESPACE, UipCommand  # noqa: E402
from iscsictl.netlink import AsyncIscsiNetlink, IscsiHostParam, IscsiParam  # noqa: E402
from iscsictl.netlink.enums import IscsiUeventE as E  # noqa: E402

BNX = "bnx2i.00:10:18:AA:BB:01.ipv6.0"
QLA = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.0"
CXGB_MAC = "00:07:43:28:0f:a0"
TARGET = TargetConfig().name
PORTAL = "10.6.0.9:3260"


#: The bnx2i port's IPv6 settings, which iscsid leaves out of GET_IFACE: it reads a node
#: record through a key table built for a blank record, whose type is IPv4 (usr/idbm.c
#: idbm_recinfo_node: iface_get_iptype before the file is read), so an IPv6 iface's own
#: keys are not read.  iscsictld sends the record's (a deliberate difference).
IPV6_SETTINGS = {"ipv6_linklocal": b"fe80::210:18ff:feaa:bb01", "ipv6_router": b"fe80::1",
                 "ipv6_autocfg": b"nd", "linklocal_autocfg": b"auto"}


def fields(payload: bytes) -> dict:
    """A GET_IFACE payload after the struct's list_head (iscsid's pointers), by field."""
    import ctypes

    from iscsictl.kernel.iscsiuio import IfaceRec

    rec = IfaceRec.from_buffer_copy(bytes(16) + payload[:ctypes.sizeof(IfaceRec) - 16])
    return {name: getattr(rec, name) for name, _ in IfaceRec._fields_ if name != "list"}


def steps(kernel) -> list[tuple]:
    """Each request as (type, and for a parameter its name, value and host)."""
    out = []
    for r in kernel.requests:
        if r["type"] == E.SET_PARAM:
            out.append(("SET_PARAM", IscsiParam(r["param"]).name,
                        r["payload"].rstrip(b"\0").decode()))
        elif r["type"] == E.SET_HOST_PARAM:
            out.append(("SET_HOST_PARAM", IscsiHostParam(r["param"]).name,
                        r["payload"].rstrip(b"\0").decode(), r["host_no"]))
        elif r["type"] != E.TRANSPORT_EP_POLL:
            out.append((E(r["type"]).name,))
    return out


@pytest.fixture
def rig(tmp_path, monkeypatch):
    """(directory, sysfs tree, /etc/iscsi for both, the stand-in iscsiuio)."""
    sysdir = offload_sysfs(tmp_path / "sys", more=(
        ("cxgb4i", 8, {"hwaddress": CXGB_MAC, "netdev": "eth8", "ipaddress": "10.8.0.2",
                       "initiatorname": "(null)"}),
        ("iser", None, {})))
    try:
        uip = FakeUip(name=NAMESPACE)
    except OSError as e:
        pytest.fail(f"an iscsiuio seems to run on this machine ({e}): stop it for this test")
    monkeypatch.setenv("ISCSICTL_UIP_SOCKET", uip.name)
    with uip:
        yield tmp_path, sysdir, str(tmp_path / "etc"), uip


def both(rig, iface: str, kernel):
    """The login to TARGET at PORTAL through ``iface``: by iscsiadm and iscsid against one
    ``kernel()``, then by iscsictld (its login request, in process) against another, from
    the node record iscsiadm wrote.  Returns (theirs, ours): each kernel and the iscsiuio
    requests its login made."""
    tmp_path, sysdir, etc, uip = rig
    theirs = kernel()
    with ServedKernel(theirs, str(tmp_path / "nl")) as served:
        env = served.env(build_shim(str(tmp_path)))
        for args in (("-m", "iface"), ("-m", "node", "-T", TARGET, "-p", f"{PORTAL},1", "-I",
                                       iface, "-o", "new")):
            iscsiadm(etc, *args, sys_dir=sysdir, env=env, check=True)
        cp = iscsiadm(etc, "-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface, "-l",
                      sys_dir=sysdir, env=env, iscsid=env)
    assert cp.returncode == 0 and "successful" in cp.stdout, cp
    their_uip, uip.requests = uip.requests, []

    (record,) = NodeDB(etc, etc).read_nodes(target=TARGET)
    initiator_name = Path(etc, "initiatorname.iscsi").read_text().split("=", 1)[1].strip()
    ours = kernel()
    daemon = Daemon(str(tmp_path / "s"), sysfs_root=sysdir, state_dir=str(tmp_path / "st"),
                    db_root=etc, config_root=etc, autostart=False)

    async def login():
        daemon.nl = AsyncIscsiNetlink(ours.transport, timeout=0.5,
                                      event_callback=daemon._on_event,
                                      lane_transport=lambda: SyncKernel(ours))
        try:
            return await daemon.login([record.as_strings()], initiator_name)
        finally:
            daemon.nl.close()
    (result,) = asyncio.run(login())
    assert result["ok"], result
    return (theirs, their_uip), (ours, uip.requests)


def test_a_bnx2i_login_asks_what_iscsids_asks(rig):
    """iscsiuio's GET_IFACE (the record, netdev eth7 from the host: the same bytes but the
    IPv6 settings iscsid does not read), the host's address, netdev and MAC, the endpoint
    through host 6, the session, the node record's parameters and the host's, the login
    relayed, the negotiated values for bnx2i's caps (no MaxOutstandingR2T, DataDigest or
    markers: the tree's 0x3a55), START_CONN: request by request, value by value."""
    (theirs, their_uip), (ours, our_uip) = both(rig, BNX, lambda: HbaKernel(FakeTarget()))
    assert [r.command for r in their_uip] == [r.command for r in our_uip] == [
        UipCommand.GET_IFACE]
    assert fields(our_uip[0].payload[16:]) == {**fields(their_uip[0].payload[16:]),
                                               **IPV6_SETTINGS}
    assert steps(ours) == steps(theirs)
    assert ("SEND_PDU",) in steps(ours)


#: The values iscsid gives a login offload HBA for DataPDUInOrder and DataSequenceInOrder:
#: its session's, which only a login it makes itself would set (iscsid offers Yes on the
#: wire, hard-coded), so 0; qla4xxx turns them into the options of the card's login.
#: iscsictld gives the card what iscsid offers everywhere else, and RFC 7143's default:
#: Yes (a deliberate difference).
IN_ORDER = {"PDU_INORDER_EN": ("0", "1"), "DATASEQ_INORDER_EN": ("0", "1")}


def test_a_qla4xxx_login_asks_what_iscsids_asks(rig):
    """The card logs in itself (CAP_LOGIN_OFFLOAD): iscsid's setup_offload_login_phase,
    the endpoint through host 5, the session, every value set (the record's, then the
    operational ones as offered), the host's netdev and MAC, START_CONN, then the card's
    KEVENT_CONN_LOGIN_STATE; no iscsiuio, no Login PDU."""
    (theirs, their_uip), (ours, our_uip) = both(rig, QLA, QlaKernel)
    assert their_uip == our_uip == []
    expected = [(*s[:2], IN_ORDER[s[1]][1]) if s[0] == "SET_PARAM" and s[1] in IN_ORDER
                and s[2] == IN_ORDER[s[1]][0] else s for s in steps(theirs)]
    assert expected != steps(theirs)  # the difference is there to be made
    assert steps(ours) == expected
    assert ("SEND_PDU",) not in steps(ours)


@pytest.mark.parametrize("iface, target", [
    (f"cxgb4i.{CXGB_MAC}", FakeTarget), ("iser", iser_target)], ids=["cxgb4i", "iser"])
def test_a_relayed_login_asks_what_iscsids_asks(rig, iface, target):
    """cxgb4i (the endpoint through host 8, MaxRecvDataSegmentLength 8192 at most as
    iscsid's cxgbi_create_conn, digests allowed: caps 0x30b9) and iSER (any host, RFC
    7145's keys, no digests or markers: caps 0x89): request by request, value by value."""
    (theirs, their_uip), (ours, our_uip) = both(rig, iface, lambda: HbaKernel(target()))
    assert their_uip == our_uip == []
    assert steps(ours) == steps(theirs)
    connect = ("TRANSPORT_EP_CONNECT_THROUGH_HOST",) if iface != "iser" else (
        "TRANSPORT_EP_CONNECT",)
    assert steps(ours)[0] == connect and ("SEND_PDU",) in steps(ours)
    assert (("SET_PARAM", "MAX_RECV_DLENGTH", "8192") in steps(ours)) == (iface != "iser")
    assert (("SET_PARAM", "HDRDGST_EN", "0") in steps(ours)) == (iface != "iser")
