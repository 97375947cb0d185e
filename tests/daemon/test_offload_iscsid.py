"""Logins through offload HBAs (bnx2i, qla4xxx, cxgb4i) and through iSER by the real iscsid
(with iscsiadm) beside iscsictld's, each against a fake kernel of the same kind
(tests/fake_kernel.py ServedKernel, reached by iscsid through the LD_PRELOAD shim,
tests/nlshim.c) and a stand-in iscsiuio at the real one's socket (tests/fake_uip.py), on a
sysfs tree laid out as Linux 6.1's (tests/cli/offload_tree.py: the bnx2i port 6, eth7,
fd00::50; the qla4xxx port 5; cxgb4i, cxgb3i, be2iscsi and qedi ports 8, 10, 11 and 12),
from the node record iscsiadm writes; then
the relogin after a connection error and the logout (iscsid kept running between
iscsiadm's commands: tests/peers.py IscsidShell), and SendTargets through the kernel's
connection (iscsiadm's own).  No peer has the hardware; this is where iscsictld's work
through the kernel's connections is held against open-iscsi's own, request by request."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from fake_hba import build_shim  # noqa: E402
from fake_kernel import ServedKernel, SyncKernel  # noqa: E402
from fake_uip import FakeUip  # noqa: E402
from offload_tree import offload_sysfs  # noqa: E402
from peers import IscsidShell, iscsiadm  # noqa: E402
from test_iser_login import iser_target  # noqa: E402
from test_offload_login import HbaKernel, QlaKernel  # noqa: E402
from test_relogin import SID, FakeTarget, TargetConfig  # noqa: E402

from iscsictl.daemon.params import RELOGIN_ALWAYS  # noqa: E402
from iscsictl.daemon.service import Daemon  # noqa: E402
from iscsictl.db.store import NodeDB  # noqa: E402
from iscsictl.kernel.iscsiuio import NAMESPACE, UipCommand  # noqa: E402
from iscsictl.kernel.transports import TRANSPORTS  # noqa: E402
from iscsictl.netlink import AsyncIscsiNetlink, IscsiHostParam, IscsiParam  # noqa: E402
from iscsictl.netlink import messages as m  # noqa: E402
from iscsictl.netlink.enums import IscsiUeventE as E  # noqa: E402
from iscsictl.protocol.pdu import AsyncMessage  # noqa: E402

BNX = "bnx2i.00:10:18:AA:BB:01.ipv6.0"
QLA = "qla4xxx.00:0e:1e:aa:bb:cc.ipv4.0"
CXGB_MAC = "00:07:43:28:0f:a0"
CXGB3_MAC = "00:07:43:11:22:30"
BE2_MAC = "00:00:c9:aa:bb:11"
QEDI = "qedi.00:0e:1e:c0:ff:ee"
#: qedi requires an address (set_host_ip SET_HOST_IP_REQ, as bnx2i): its iface's, set by
#: iscsiadm before each side's login
QEDI_VALUES = {"iface.ipaddress": "10.12.0.2"}
TARGET = TargetConfig().name
PORTAL = "10.6.0.9:3260"
#: the host the fake kernels put their sessions on (CREATE_BOUND_SESSION's answer)
SESSION_HOST = 9


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
    """Each request of ``kernel`` as (type, and for a parameter its name, value and host)."""
    return steps_of(kernel.requests)


def steps_of(requests) -> list[tuple]:
    """:func:`steps` of these requests."""
    out = []
    for r in requests:
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
        ("iser", None, {}),
        ("cxgb3i", 10, {"hwaddress": CXGB3_MAC, "netdev": "eth10", "ipaddress": "10.10.0.2",
                        "initiatorname": "(null)"}),
        ("be2iscsi", 11, {"hwaddress": BE2_MAC, "netdev": "(null)", "ipaddress": "10.11.0.2",
                          "initiatorname": "(null)"}),
        ("qedi", 12, {"hwaddress": QEDI.split(".", 1)[1], "netdev": "eth12",
                      "ipaddress": "10.12.0.2", "initiatorname": "(null)"})))
    try:
        uip = FakeUip(name=NAMESPACE)
    except OSError as e:
        pytest.fail(f"an iscsiuio seems to run on this machine ({e}): stop it for this test")
    monkeypatch.setenv("ISCSICTL_UIP_SOCKET", uip.name)
    with uip:
        yield tmp_path, sysdir, str(tmp_path / "etc"), uip


def in_iscsictld(rig, kernel, work):
    """``await work(daemon)`` in an iscsictld (in process, on the rig's sysfs tree and
    /etc/iscsi) whose netlink is ``kernel``'s transport; its result."""
    tmp_path, sysdir, etc, _ = rig
    daemon = Daemon(str(tmp_path / "s"), sysfs_root=sysdir, state_dir=str(tmp_path / "st"),
                    db_root=etc, config_root=etc, autostart=False)

    async def run():
        daemon.nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5,
                                      event_callback=daemon._on_event,
                                      lane_transport=lambda: SyncKernel(kernel))
        try:
            return await work(daemon)
        finally:
            daemon.nl.close()
    return asyncio.run(run())


def initiator_name(etc: str) -> str:
    return Path(etc, "initiatorname.iscsi").read_text().split("=", 1)[1].strip()


def both(rig, iface: str, kernel, iface_values: dict | None = None):
    """The login to TARGET at PORTAL through ``iface`` (its record updated with
    ``iface_values`` first): by iscsiadm and iscsid against one ``kernel()``, then by
    iscsictld (its login request, in process) against another, from the node record
    iscsiadm wrote.  Returns (theirs, ours): each kernel and the iscsiuio
    requests its login made."""
    tmp_path, sysdir, etc, uip = rig
    theirs = kernel()
    with ServedKernel(theirs, str(tmp_path / "nl")) as served:
        env = served.env(build_shim(str(tmp_path)))
        for args in (("-m", "iface"),
                     *(("-m", "iface", "-I", iface, "-o", "update", "-n", k, "-v", v)
                       for k, v in (iface_values or {}).items()),
                     ("-m", "node", "-T", TARGET, "-p", f"{PORTAL},1", "-I", iface, "-o",
                      "new")):
            iscsiadm(etc, *args, sys_dir=sysdir, env=env, check=True)
        cp = iscsiadm(etc, "-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface, "-l",
                      sys_dir=sysdir, env=env, iscsid=env)
    assert cp.returncode == 0 and "successful" in cp.stdout, cp
    their_uip, uip.requests = uip.requests, []

    (record,) = NodeDB(etc, etc).read_nodes(target=TARGET)
    ours = kernel()
    (result,) = in_iscsictld(rig, ours, lambda daemon: daemon.login([record.as_strings()],
                                                                   initiator_name(etc)))
    assert result["ok"], result
    return (theirs, their_uip), (ours, uip.requests)


def test_a_bnx2i_login_asks_what_iscsids_asks(rig):
    """iscsiuio's GET_IFACE (the record, netdev eth7 from the host: the same bytes but the
    IPv6 settings iscsid does not read), the host's address, netdev and MAC, the endpoint
    through host 6, the session, the node record's parameters and the host's, the login
    relayed, the negotiated values for bnx2i's caps (0x8b9: no markers), START_CONN:
    request by request, value by value."""
    (theirs, their_uip), (ours, our_uip) = both(rig, BNX, lambda: HbaKernel(FakeTarget()))
    assert [r.command for r in their_uip] == [r.command for r in our_uip] == [
        UipCommand.GET_IFACE]
    assert fields(our_uip[0].payload[16:]) == {**fields(their_uip[0].payload[16:]),
                                               **IPV6_SETTINGS}
    assert steps(ours) == steps(theirs)
    assert ("SEND_PDU",) in steps(ours)


def test_a_qedi_login_asks_what_iscsids_asks(rig):
    """qedi (bnx2i's path: iscsiuio's GET_IFACE, the host's address, netdev and MAC, but
    no net device brought up: no_netdev), the endpoint through host 12, caps 0x8b9:
    request by request, value by value (the iface's address set for both first: qedi
    requires one, as bnx2i).  One deliberate difference: the iface names no netdev, and
    iscsictld sets the one iscsiuio was given (the host's) on the session's host in
    iscsi_host_set_params's place, where iscsid's first login sets none: it reads its
    session record's, still empty (usr/initiator.c session_login_task fills the caller's
    copy for iscsiuio).  iscsid's own relogins set it (__session_conn_reopen fills the
    session's record: test_a_relogin_and_a_logout_ask_what_iscsids_ask), so iscsictld
    sets at the login what iscsid sets from its first relogin on: the same value, on the
    host that has it."""
    (theirs, their_uip), (ours, our_uip) = both(rig, QEDI, lambda: HbaKernel(FakeTarget()),
                                                iface_values=QEDI_VALUES)
    assert [r.command for r in their_uip] == [r.command for r in our_uip] == [
        UipCommand.GET_IFACE]
    assert fields(our_uip[0].payload[16:]) == fields(their_uip[0].payload[16:])
    again = ("SET_HOST_PARAM", "NETDEV_NAME", "eth12", SESSION_HOST)
    assert again not in steps(theirs)
    assert [s for s in steps(ours) if s != again] == steps(theirs)
    assert steps(theirs)[:4] == [("SET_HOST_PARAM", "IPADDRESS", "10.12.0.2", 12),
                                 ("SET_HOST_PARAM", "NETDEV_NAME", "eth12", 12),
                                 ("SET_HOST_PARAM", "HWADDRESS", QEDI.split(".", 1)[1], 12),
                                 ("TRANSPORT_EP_CONNECT_THROUGH_HOST",)]


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


@pytest.mark.parametrize("iface, target, mrdsl", [
    (f"cxgb4i.{CXGB_MAC}", FakeTarget, "8192"), ("iser", iser_target, "65536"),
    (f"cxgb3i.{CXGB3_MAC}", FakeTarget, "8192"), (f"be2iscsi.{BE2_MAC}", FakeTarget, "65536")],
    ids=["cxgb4i", "iser", "cxgb3i", "be2iscsi"])
def test_a_relayed_login_asks_what_iscsids_asks(rig, iface, target, mrdsl):
    """cxgb4i and cxgb3i (the endpoint through the port's host, MaxRecvDataSegmentLength
    8192 at most as iscsid's cxgbi_create_conn, digests allowed: caps 0x30b9), be2iscsi
    (its host, be2iscsi_create_conn's limits: 65536 at most, FirstBurstLength 8192,
    InitialR2T Yes; caps 0x8b9) and iSER (any host, RFC 7145's keys, no digests or
    markers: caps 0x89): request by request, value by value."""
    (theirs, their_uip), (ours, our_uip) = both(rig, iface, lambda: HbaKernel(target()))
    assert their_uip == our_uip == []
    assert steps(ours) == steps(theirs)
    connect = ("TRANSPORT_EP_CONNECT_THROUGH_HOST",) if iface != "iser" else (
        "TRANSPORT_EP_CONNECT",)
    assert steps(ours)[0] == connect and ("SEND_PDU",) in steps(ours)
    assert ("SET_PARAM", "MAX_RECV_DLENGTH", mrdsl) in steps(ours)
    assert (("SET_PARAM", "HDRDGST_EN", "0") in steps(ours)) == (iface != "iser")
    if iface.startswith("be2iscsi"):
        assert {("SET_PARAM", "FIRST_BURST", "8192"), ("SET_PARAM", "INITIAL_R2T_EN", "1")} \
            <= set(steps(ours))


# ---- after the login: a relogin, then a logout -----------------------------------------------

#: The kernel's words for a failed connection (ISCSI_ERR_CONN_FAILED) on the session
CONN_ERROR = m.encode_message(E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=SID, r_cid=0,
                              r_error=1011)
#: KEVENT_RECV_PDU of the target's Asynchronous Message "logout requested" (AsyncEvent 1,
#: within Parameter3 = 5 s), which the kernel hands to userspace (libiscsi's
#: __iscsi_complete_pdu: an Async Message goes up through iscsi_recv_pdu)
LOGOUT_REQUESTED = m.encode_message(
    E.KEVENT_RECV_PDU, nlmsg_type=0, r_sid=SID, r_cid=0,
    payload=AsyncMessage(async_event=1, parameter3=5, statsn=4097).encode_header()[0])


class AroundTheLogin:
    """``kernel`` (HbaKernel or QlaKernel, recording) as the kernel is after a login: each
    endpoint but the first reaches a fresh ``target()`` (a relogin's connection is a new
    one), UNBIND_SESSION is followed by KEVENT_UNBIND_SESSION (the kernel's unbind work) and
    DESTROY_SESSION(_ASYNC) by KEVENT_DESTROY_SESSION.  The events go after the reply on
    the socket that asked (iscsid has one), or with ``events`` to that callable (iscsictld:
    its event socket, not the lane that asked)."""

    CONNECTS = (E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_CONNECT_THROUGH_HOST)

    def __init__(self, kernel, target, events=None):
        self.kernel, self.target, self.events = kernel, target, events
        self.requests = kernel.requests
        self.transport = SyncKernel(self)

    def __call__(self, raw):
        t = struct.unpack_from("=I", raw, 16)[0]
        if t in self.CONNECTS and any(r["type"] in self.CONNECTS for r in self.requests):
            self.kernel.relay.target = self.target()
        out = self.kernel(raw)
        event = {E.UNBIND_SESSION: E.KEVENT_UNBIND_SESSION,
                 E.DESTROY_SESSION: E.KEVENT_DESTROY_SESSION,
                 E.DESTROY_SESSION_ASYNC: E.KEVENT_DESTROY_SESSION}.get(t)
        if event is not None:
            dgram = m.encode_message(event, nlmsg_type=0, r_sid=SID, r_host_no=SESSION_HOST)
            if self.events is None:
                out.append(dgram)
            else:
                self.events(dgram)
        return out


def starts(kernel, since: int) -> int:
    return [r["type"] for r in kernel.requests[since:]].count(E.START_CONN)


def wait_until(what: str, cond, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


def fresh_target(make):
    """A target from ``make()`` that asks for no Time2Wait (iscsid waits none after a
    connection error, iscsictld the negotiated DefaultTime2Wait: RFC 7143 §13.15)."""
    def target():
        t = make()
        t.c.values["DefaultTime2Wait"] = "0"
        return t
    return target


def session_in_sysfs(sysdir: str, iface: str, add: bool = True) -> None:
    """Session SID to TARGET at PORTAL through ``iface`` on host :data:`SESSION_HOST` (its
    proc_name the transport's module) in the sysfs tree, as the kernel shows a session
    once it has made it (what iscsiadm reads to find the session of a logout, and iscsid
    its leading connection); ``add=False``: gone again."""
    import shutil

    root = Path(sysdir)
    host = f"devices/platform/host{SESSION_HOST}"
    sess = f"{host}/session{SID}"
    links = {f"class/iscsi_session/session{SID}": f"{sess}/iscsi_session/session{SID}",
             f"class/iscsi_connection/connection{SID}:0":
             f"{sess}/connection{SID}:0/iscsi_connection/connection{SID}:0",
             f"class/scsi_host/host{SESSION_HOST}": f"{host}/scsi_host/host{SESSION_HOST}",
             f"class/iscsi_host/host{SESSION_HOST}": f"{host}/iscsi_host/host{SESSION_HOST}"}
    if not add:
        for link in links:
            (root / link).unlink()
        shutil.rmtree(root / host)
        return
    address, port = PORTAL.split(":")
    module = TRANSPORTS[iface.split(".")[0]].proc_name
    values = {f"{host}/scsi_host/host{SESSION_HOST}/proc_name": module,
              f"{host}/scsi_host/host{SESSION_HOST}/state": "running",
              f"{host}/iscsi_host/host{SESSION_HOST}/ipaddress": "(null)",
              **{f"{links[f'class/iscsi_session/session{SID}']}/{k}": v for k, v in {
                  "targetname": TARGET, "tpgt": "1", "ifacename": iface, "state": "LOGGED_IN",
                  "recovery_tmo": "120"}.items()},
              **{f"{links[f'class/iscsi_connection/connection{SID}:0']}/{k}": v for k, v in {
                  "persistent_address": address, "persistent_port": port, "address": address,
                  "port": port, "state": "up"}.items()}}
    for rel, value in values.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value + "\n")
    for link, target in links.items():
        (root / link).symlink_to(os.path.relpath(root / target, (root / link).parent))


def recovered(rig, iface: str, kernel, target, iface_values: dict | None = None,
              event: bytes = CONN_ERROR):
    """A login to TARGET through ``iface`` (its record updated with ``iface_values``
    first), the kernel's ``event`` for its connection (KEVENT_CONN_ERROR, or a PDU from
    the target), the relogin that follows, and a logout: by iscsiadm and iscsid (kept
    running: tests/peers.py IscsidShell), then by iscsictld in process, from the node
    record iscsiadm wrote (DefaultTime2Wait 0).  Returns, for each side, the requests
    (:func:`steps`) of the login, of the relogin and of the logout, by those names."""
    tmp_path, sysdir, etc, uip = rig
    theirs = AroundTheLogin(kernel(target()), target)
    node = ("-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface)
    with ServedKernel(theirs, str(tmp_path / "nl")) as served:
        env = served.env(build_shim(str(tmp_path)))
        with IscsidShell(etc, env, sys_dir=sysdir, log=str(tmp_path / "iscsid.log")) as sh:
            for args in (("-m", "iface"),
                         *(("-m", "iface", "-I", iface, "-o", "update", "-n", k, "-v", v)
                           for k, v in (iface_values or {}).items()),
                         ("-m", "node", "-T", TARGET, "-p", f"{PORTAL},1", "-I", iface,
                          "-o", "new"),
                         (*node, "-o", "update", "-n",
                          "node.session.iscsi.DefaultTime2Wait", "-v", "0"), (*node, "-l")):
                cp = sh.run(*args)
                assert cp.returncode == 0, cp
            session_in_sysfs(sysdir, iface)
            logged_in = len(theirs.requests)
            served.event(event, E.START_CONN)
            wait_until("iscsid's relogin", lambda: starts(theirs, logged_in) == 1)
            relogged = len(theirs.requests)
            cp = sh.run(*node, "-u")
            assert cp.returncode == 0 and "successful" in cp.stdout, cp
    session_in_sysfs(sysdir, iface, add=False)

    (record,) = NodeDB(etc, etc).read_nodes(target=TARGET)
    ours = AroundTheLogin(kernel(target()), target, events=lambda d: ours.transport.b.send(d))
    marks = []

    async def work(daemon):
        (result,) = await daemon.login([record.as_strings()], initiator_name(etc))
        assert result["ok"], result
        session_in_sysfs(sysdir, iface)
        marks.append(len(ours.requests))
        ours.transport.b.send(event)
        deadline = time.monotonic() + 10
        while starts(ours, marks[0]) == 0:
            assert time.monotonic() < deadline, "iscsictld's relogin: not within 10 s"
            await asyncio.sleep(0.02)
        marks.append(len(ours.requests))
        (result,) = await daemon.logout([SID])
        assert result["ok"], result
    in_iscsictld(rig, ours, work)
    return ({"login": steps_of(theirs.requests[:logged_in]),
             "relogin": steps_of(theirs.requests[logged_in:relogged]),
             "logout": steps_of(theirs.requests[relogged:])},
            {"login": steps_of(ours.requests[:marks[0]]),
             "relogin": steps_of(ours.requests[marks[0]:marks[1]]),
             "logout": steps_of(ours.requests[marks[1]:])})


@pytest.mark.parametrize("iface, kernel, target", [
    (BNX, HbaKernel, FakeTarget), (f"cxgb4i.{CXGB_MAC}", HbaKernel, FakeTarget),
    ("iser", HbaKernel, iser_target), (QLA, QlaKernel, FakeTarget),
    (f"cxgb3i.{CXGB3_MAC}", HbaKernel, FakeTarget),
    (f"be2iscsi.{BE2_MAC}", HbaKernel, FakeTarget), (QEDI, HbaKernel, FakeTarget)],
    ids=["bnx2i", "cxgb4i", "iser", "qla4xxx", "cxgb3i", "be2iscsi", "qedi"])
def test_a_relogin_and_a_logout_ask_what_iscsids_ask(rig, iface, kernel, target):
    """After the kernel's KEVENT_CONN_ERROR, iscsid's reopen (__session_conn_reopen,
    session_conn_poll): the old endpoint disconnected (the kernel holds it until then),
    STOP_CONN(RECOVER), a new endpoint through the same host, BIND_CONN, the parameters,
    the host's, the login (relayed, or the card's own), START_CONN; its logout
    (session_logout_task, session_conn_shutdown): UNBIND_SESSION, the Logout PDU unless
    the card logs out itself, the endpoint, STOP_CONN, DESTROY_CONN, the session.
    iscsictld's are the same, request by request, but for two deliberate differences: a
    relogin does not set again a value the kernel holds from the login (iscsid sets every
    one again: none of them changes; RELOGIN_ALWAYS are set whatever they hold), and the
    session goes by DESTROY_SESSION_ASYNC (the daemon's loop is not held while the
    kernel removes it; the logout returns on its KEVENT_DESTROY_SESSION)."""
    their, ours = recovered(rig, iface, kernel, fresh_target(target),
                            QEDI_VALUES if iface == QEDI else None)
    held = {s[1]: s[2] for s in their["login"] if s[0] == "SET_PARAM"}
    kept = [s for s in their["relogin"] if s[0] == "SET_PARAM"
            and s[1] not in {p.name for p in RELOGIN_ALWAYS} and held.get(s[1]) == s[2]]
    assert ours["relogin"] == [s for s in their["relogin"] if s not in kept]
    assert len(kept) >= 10 and ("START_CONN",) in ours["relogin"]
    assert ours["relogin"][:3] == [("TRANSPORT_EP_DISCONNECT",), ("STOP_CONN",), (
        "TRANSPORT_EP_CONNECT_THROUGH_HOST",) if iface != "iser" else ("TRANSPORT_EP_CONNECT",)]
    assert ours["logout"] == [("DESTROY_SESSION_ASYNC",) if s == ("DESTROY_SESSION",) else s
                              for s in their["logout"]]
    assert (("SEND_PDU",) in ours["logout"]) == (kernel is not QlaKernel)
    if iface == QEDI:  # iscsid's relogin sets the host's netdev its first login left out
        netdev = ("SET_HOST_PARAM", "NETDEV_NAME", "eth12", SESSION_HOST)
        assert netdev in their["relogin"] and netdev not in their["login"]


def test_a_logout_the_target_asks_for_is_followed_by_a_relogin_as_iscsids(rig):
    """The target's Asynchronous Message "logout requested" (RFC 7143 §11.9.1, AsyncEvent
    1): iscsid sends the Logout through the kernel (iscsi_send_logout: immediate, reason
    "close the session"), and once the Logout Response is in, logs in again
    (__conn_error_handle: the session reopened, STOP_CONN(RECOVER), a new endpoint, the
    login, START_CONN); the session and its disks stay.  iscsictld's are the same, request
    by request (a relogin sets again only what the kernel does not hold: the deliberate
    difference of test_a_relogin_and_a_logout_ask_what_iscsids_ask).  (Before: iscsictld
    logged the session out for good, its disks removed.)"""
    their, ours = recovered(rig, "iser", HbaKernel, fresh_target(iser_target),
                            event=LOGOUT_REQUESTED)
    relogin = [("SEND_PDU",), ("TRANSPORT_EP_DISCONNECT",), ("STOP_CONN",),
               ("TRANSPORT_EP_CONNECT",), ("BIND_CONN",)]
    assert their["relogin"][:5] == relogin
    held = {s[1]: s[2] for s in their["login"] if s[0] == "SET_PARAM"}
    assert ours["relogin"] == [s for s in their["relogin"] if s[0] != "SET_PARAM" or (
        s[1] in {p.name for p in RELOGIN_ALWAYS} or held.get(s[1]) != s[2])]
    assert ours["relogin"][-1] == ("START_CONN",)
    assert ours["logout"][0] == ("UNBIND_SESSION",)  # the session was still there


# ---- SendTargets through the kernel's connection ---------------------------------------------

def send_targets(rig, iface: str, kernel, target):
    """SendTargets to PORTAL through ``iface``: by iscsiadm (it makes the discovery session
    itself, iscsid running: usr/discovery.c iscsi_create_leading_conn), then by iscsictld
    (its ``send_targets``, as the CLI asks it) from the discovery and iface records
    iscsiadm wrote.  Returns, for each side, (its requests, the targets found)."""
    from iscsictl.db.store import DiscoveryID

    tmp_path, sysdir, etc, uip = rig
    theirs = AroundTheLogin(kernel(target()), target)
    with ServedKernel(theirs, str(tmp_path / "nl")) as served:
        env = served.env(build_shim(str(tmp_path)))
        with IscsidShell(etc, env, sys_dir=sysdir, log=str(tmp_path / "iscsid.log")) as sh:
            assert sh.run("-m", "iface").returncode == 0
            cp = sh.run("-m", "discovery", "-t", "st", "-p", PORTAL, "-I", iface)
            assert cp.returncode == 0, cp
    their_targets = sorted(line.split()[1] for line in cp.stdout.splitlines())

    db = NodeDB(etc, etc)
    address, port = PORTAL.split(":")
    values = db.read_discovery(DiscoveryID("sendtargets", address, int(port))).as_strings()
    ours = AroundTheLogin(kernel(target()), target, events=lambda d: ours.transport.b.send(d))
    found = in_iscsictld(rig, ours, lambda daemon: daemon.send_targets(
        address, int(port), values, db.read_iface(iface).as_strings(), initiator_name(etc)))
    return (steps(theirs), their_targets), (steps(ours), sorted(t["name"] for t in found))


#: RFC 7143's defaults of the session keys a discovery session does not negotiate
#: (InitialR2T, FirstBurstLength, MaxBurstLength, DataPDUInOrder, DataSequenceInOrder):
#: iscsictld's values for them; iscsiadm's are its discovery session's unset fields
NOT_NEGOTIATED = {"INITIAL_R2T_EN": "1", "FIRST_BURST": "65536", "MAX_BURST": "262144",
                  "PDU_INORDER_EN": "1", "DATASEQ_INORDER_EN": "1"}


@pytest.mark.parametrize("iface", [f"cxgb4i.{CXGB_MAC}", "iser", BNX], ids=["cxgb4i", "iser", "bnx2i"])
def test_a_sendtargets_asks_what_iscsiadms_asks(rig, iface):
    """SendTargets through the kernel's connection (iscsiadm: usr/discovery.c
    iscsi_create_leading_conn): the endpoint, the discovery session and its connection,
    the parameters, the relayed login, the negotiated values with MaxRecvDataSegmentLength
    8192 at most (the kernel's Text buffer: KERNEL_TEXT_MAX_RECV_DLENGTH), START_CONN, the
    Text exchange, the teardown; the same targets.  Deliberate differences: iscsictld
    gives the session the record's timeouts and the portal (iscsiadm's discovery session
    leaves them 0), the host's parameters as a login does, RFC 7143's defaults of the keys
    a discovery session does not negotiate (:data:`NOT_NEGOTIATED`), and a Logout before
    the teardown (iscsiadm tears the connection down without one).  (bnx2i's iscsiadm
    discovery had failed here, "additional header segment length 47 not supported", only
    while the HBA tree gave bnx2i invented caps, 0x3a55, not Linux 6.1's 0x8b9.)"""
    def with_targets():
        return FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", []),
                                                ("iqn.2003-01.org.example:b", [])]))
    (theirs, their_targets), (ours, our_targets) = send_targets(rig, iface, HbaKernel,
                                                                with_targets)
    assert our_targets == their_targets == ["iqn.2003-01.org.example:a",
                                            "iqn.2003-01.org.example:b"]

    def requests(side):
        return [x for x in side if x[0] not in ("SET_PARAM", "SET_HOST_PARAM")]

    def params(side, after: bool):
        """(name, value) of the SET_PARAMs before the first SEND_PDU, or after it."""
        first = side.index(("SEND_PDU",))
        return [x[1:] for x in (side[first:] if after else side[:first]) if x[0] == "SET_PARAM"]
    text = len(requests(theirs)) - 5  # the Text Request's SEND_PDU: before the teardown
    assert requests(theirs)[text:text + 2] == [("SEND_PDU",), ("TRANSPORT_EP_DISCONNECT",)]
    assert requests(ours) == requests(theirs)[:text + 1] + [("SEND_PDU",)] + \
        requests(theirs)[text + 1:]
    assert params(ours, True) == [(k, NOT_NEGOTIATED.get(k, v)) for k, v in params(theirs, True)]
    assert dict(params(ours, True))["MAX_RECV_DLENGTH"] == "8192"
    before = dict(params(ours, False))
    assert set(dict(params(theirs, False))) <= set(before)
    assert [before[k] for k in ("IFACE_NAME", "DISCOVERY_SESS", "PERSISTENT_ADDRESS")] == [
        iface, "1", PORTAL.split(":")[0]]
