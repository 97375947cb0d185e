"""Logins and SendTargets through an offload HBA's port (usr/transport.c's
``bind_ep_required`` transports: cxgb4i, be2iscsi, cxgb3i, whose logins iscsid relays, and
qla4xxx, whose card logs in itself), against a fake kernel and a sysfs tree with the HBA's
host: no peer has the hardware.  The endpoint goes through the host the iface is bound to
(TRANSPORT_EP_CONNECT_THROUGH_HOST), the driver's limits shape the login's offers, the host
gets the iface's values, and the rest is the iSER path (tests/daemon/test_iser_login.py),
which the VM runs for real; qla4xxx's login is the card's (KEVENT_CONN_LOGIN_STATE)."""

import asyncio
import errno

import pytest

from fake_kernel import echo, transport_in_sysfs
from iscsictl.daemon import kernel_session as ks
from iscsictl.daemon.errors import SessionError
from iscsictl.db import schema
from iscsictl.db.record import with_defaults
from iscsictl.kernel.iscsiuio import UipCommand, UipStatus
from iscsictl.kernel.sysfs import Sysfs
from iscsictl.kernel.transports import TRANSPORTS, unsupported
from iscsictl.netlink import IscsiConnState, IscsiHostParam, IscsiParam
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E
from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.names import ISID
from iscsictl.protocol.portal import Portal
from test_iser_login import EP, IserRelayKernel, through_the_daemon
from test_relogin import SID, FakeTarget, TargetConfig

MAC, HOST = "00:07:43:28:0f:a0", 7
INAME = "iqn.2026-11.org.example:i"


def hba(tmp_path, transport="cxgb4i", host=HOST, **attrs):
    """A sysfs tree with the iSCSI host ``host`` of ``transport``'s driver: its hwaddress
    MAC, netdev eth7 and ``attrs``."""
    values = {"hwaddress": MAC, "netdev": "eth7", "ipaddress": "10.7.0.2", **attrs}
    for name, value in values.items():
        path = tmp_path / "class" / "iscsi_host" / f"host{host}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    proc = tmp_path / "class" / "scsi_host" / f"host{host}" / "proc_name"
    proc.parent.mkdir(parents=True, exist_ok=True)
    proc.write_text(TRANSPORTS[transport].proc_name + "\n")
    return Sysfs(str(tmp_path))


def record(transport="cxgb4i", **iface):
    values = {"iface.hwaddress": MAC, **iface}
    return with_defaults(schema.NODE, {
        "node.name": TargetConfig().name, "node.conn[0].address": "10.7.0.9",
        "node.conn[0].port": "3260", "node.tpgt": "1", "iface.transport_name": transport,
        "iface.iscsi_ifacename": f"{transport}.{MAC}", "node.conn[0].timeo.login_timeout": "2",
        **{k: v for k, v in values.items() if v is not None}})


class HbaKernel(IserRelayKernel):
    """IserRelayKernel answering EP_CONNECT_THROUGH_HOST as EP_CONNECT, and each
    SET_HOST_PARAM with the errno ``host_refuses`` names for its parameter (0: accepted)."""

    def __init__(self, target, host_refuses=None):
        super().__init__(target)
        self.host_refuses = host_refuses or {}

    def answer(self, msg, raw):
        t = msg["type"]
        if t == E.TRANSPORT_EP_CONNECT_THROUGH_HOST:
            return [echo(raw, r_handle=EP)]
        if t == E.SET_HOST_PARAM:
            return [echo(raw, r_retcode=-self.host_refuses.get(msg["param"], 0))]
        return super().answer(msg, raw)


def host_sets(kernel):
    return [(r["host_no"], IscsiHostParam(r["param"]).name, r["payload"].rstrip(b"\0").decode())
            for r in kernel.requests if r["type"] == E.SET_HOST_PARAM]


def test_a_login_through_a_cxgb4i_port_goes_through_its_host(tmp_path):
    """The iface names the port by MAC: the endpoint is made through that host; the login
    offers MaxRecvDataSegmentLength 8192 (the card takes no more: usr/cxgbi.c); the
    session's host gets the iface's hwaddress (iscsi_host_set_params); a relogin goes
    through the same host."""
    rec = record()
    bound = ks.bind_host(hba(tmp_path), rec)
    assert bound == HOST
    target = FakeTarget()
    kernel = HbaKernel(target)
    session, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.establish_ep(
        nl, 3, ks.NodeTarget.from_record(rec), INAME, ISID.en(7, 1), logging_in=d._logging_in,
        bind_host=bound))
    assert target.phase == "ffp" and target.violations == []
    first = kernel.requests[0]
    assert (first["type"], first["host_no"]) == (E.TRANSPORT_EP_CONNECT_THROUGH_HOST, HOST)
    assert E.TRANSPORT_EP_CONNECT not in kernel.types()
    assert ("MaxRecvDataSegmentLength", "8192") in target.received_pairs
    assert host_sets(kernel) == [(9, "HWADDRESS", MAC)]  # sid 5's host, as the kernel said
    assert session.bind_host == HOST and kernel.types()[-1] == E.START_CONN

    relogin_kernel = HbaKernel(FakeTarget())
    session.sid = SID

    async def recover(nl, d):
        d.sessions[SID] = session
        await ks.relogin(nl, 3, session)
    through_the_daemon(tmp_path, relogin_kernel, recover)
    first = relogin_kernel.requests[0]
    assert (first["type"], first["host_no"]) == (E.TRANSPORT_EP_CONNECT_THROUGH_HOST, HOST)


@pytest.mark.parametrize("iface, expected", [
    ({"iface.hwaddress": MAC.upper()}, HOST),                     # any case
    ({"iface.hwaddress": None, "iface.net_ifacename": "eth7"}, HOST),
    ({"iface.hwaddress": None, "iface.ipaddress": "10.7.0.2"}, HOST),
    ({"iface.hwaddress": None}, None),                            # names none: any host
    ({"iface.hwaddress": "default"}, None),
], ids=["hwaddress", "netdev", "ipaddress", "unbound", "default"])
def test_the_host_an_iface_is_bound_to(tmp_path, iface, expected):
    assert ks.bind_host(hba(tmp_path), record(**iface)) == expected


def test_an_iface_naming_a_host_that_is_not_there_is_host_not_found(tmp_path):
    with pytest.raises(SessionError) as caught:
        ks.bind_host(hba(tmp_path), record(**{"iface.hwaddress": "00:07:43:00:00:01"}))
    assert caught.value.code == 23 and not caught.value.retryable
    assert str(caught.value) == (f"no cxgb4i host has the hwaddress 00:07:43:00:00:01 of iface "
                                 f"cxgb4i.{MAC}")


def test_a_host_of_another_driver_is_not_the_ifaces(tmp_path):
    """The host with the iface's MAC runs bnx2i, the iface says cxgb4i: not its host, 23
    (before: cxgb4i's EP_CONNECT_THROUGH_HOST went to the bnx2i host, which the kernel
    does not check, and cxgb4i's code ran on another driver's host)."""
    with pytest.raises(SessionError) as caught:
        ks.bind_host(hba(tmp_path, "bnx2i"), record("cxgb4i"))
    assert caught.value.code == 23
    assert str(caught.value) == f"no cxgb4i host has the hwaddress {MAC} of iface cxgb4i.{MAC}"
    assert ks.bind_host(hba(tmp_path, "bnx2i"), record("bnx2i")) == HOST


def test_the_driver_is_loaded_before_its_host_is_looked_for(tmp_path, monkeypatch):
    """A login through a cxgb4i port whose driver is not loaded yet (bnx2i and cxgb4i are
    not loaded by udev): the module first, then the host, looked for once a second while
    the driver probes its ports, as iscsid's __session_login_task and
    session_login_task_retry (before: 23 at once, modprobe never run: automatic logins at
    boot failed).  A host that never comes is 23 after login_timeout tries."""
    from iscsictl.daemon import service
    from iscsictl.daemon.service import Daemon

    order = []

    async def modprobe(module):
        order.append(f"modprobe {module}")
        t = tmp_path / "class" / "iscsi_transport" / "cxgb4i"
        t.mkdir(parents=True)
        (t / "handle").write_text("12345\n")
        (t / "caps").write_text("0x39\n")
        asyncio.get_running_loop().call_later(0.02, hba, tmp_path)  # the port probed
        return 0

    async def establish_ep(nl, handle, node, *args):
        order.append(f"login through host{args[5]}")
        raise SessionError(19, "stop here")
    monkeypatch.setattr(service, "_modprobe", modprobe)
    monkeypatch.setattr(service, "HOST_RETRY", 0.05)
    monkeypatch.setattr(ks, "establish_ep", establish_ep)
    d = Daemon(None, sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    d.nl = object()
    with pytest.raises(SessionError, match="stop here"):
        asyncio.run(d._establish(ks.NodeTarget.from_record(record()), INAME))
    assert order == ["modprobe cxgb4i", f"login through host{HOST}"]
    with pytest.raises(SessionError) as caught:  # login_timeout 2: two looks
        asyncio.run(d._establish(ks.NodeTarget.from_record(
            record(**{"iface.hwaddress": "00:07:43:00:00:01"})), INAME))
    assert caught.value.code == 23


def test_software_transports_bind_to_no_host(tmp_path):
    """tcp and iser make their endpoints wherever the routing table says (no
    bind_ep_required), whatever the iface names."""
    sysfs = hba(tmp_path)
    assert ks.bind_host(sysfs, record("tcp")) is None
    assert ks.bind_host(sysfs, record("iser", **{"iface.hwaddress": "00:00:00:00:00:01"})) is None


def test_cxgb3i_sets_the_hosts_address_before_it_connects(tmp_path):
    """cxgb3i's iface.ipaddress is optional (SET_HOST_IP_OPT): when set, the host gets it,
    and the hwaddress it is bound by, before TRANSPORT_EP_CONNECT_THROUGH_HOST (iscsid's
    iscsi_host_set_net_params); a driver that takes no such value (ENOSYS) is passed over."""
    rec = record("cxgb3i", **{"iface.ipaddress": "10.7.0.2"})
    kernel = HbaKernel(FakeTarget(), host_refuses={IscsiHostParam.HWADDRESS: errno.ENOSYS})
    through_the_daemon(tmp_path, kernel, lambda nl, d: ks.establish_ep(
        nl, 3, ks.NodeTarget.from_record(rec), INAME, ISID.en(7, 1), logging_in=d._logging_in,
        bind_host=ks.bind_host(hba(tmp_path, "cxgb3i"), rec)))
    connect = kernel.types().index(E.TRANSPORT_EP_CONNECT_THROUGH_HOST)
    assert kernel.types()[:connect] == [E.SET_HOST_PARAM, E.SET_HOST_PARAM]
    assert host_sets(kernel)[:2] == [(HOST, "IPADDRESS", "10.7.0.2"), (HOST, "HWADDRESS", MAC)]
    assert ks.host_net_params(record("cxgb3i")) == []  # no address: nothing set
    assert ks.host_net_params(record("cxgb4i", **{"iface.ipaddress": "10.7.0.2"})) == []


def test_a_host_that_refuses_its_address_fails_the_login_with_nothing_made(tmp_path):
    rec = record("cxgb3i", **{"iface.ipaddress": "10.7.0.2"})
    kernel = HbaKernel(FakeTarget(), host_refuses={IscsiHostParam.IPADDRESS: errno.EIO})

    async def attempt(nl, d):
        with pytest.raises(SessionError) as caught:
            await ks.establish_ep(nl, 3, ks.NodeTarget.from_record(rec), INAME, ISID.en(7, 1),
                                  logging_in=d._logging_in, bind_host=HOST)
        return caught.value
    error, _ = through_the_daemon(tmp_path, kernel, attempt)
    assert error.code == 9 and "EIO" in str(error)
    assert kernel.types() == [E.SET_HOST_PARAM]


def test_be2iscsi_limits_the_login(tmp_path):
    """usr/be2iscsi.c be2iscsi_create_conn: MaxRecv/MaxXmitDataSegmentLength at most 65536,
    FirstBurstLength 8192, MaxBurstLength 262144, InitialR2T=Yes; smaller values kept."""
    cfg = ks.login_config(ks.NodeTarget.from_record(record("be2iscsi")), INAME)
    assert (cfg.max_recv_data_segment_length, cfg.max_xmit_data_segment_length,
            cfg.first_burst_length, cfg.max_burst_length, cfg.initial_r2t) == (
        65536, 65536, 8192, 262144, True)
    small = record("be2iscsi", **{"node.conn[0].iscsi.MaxRecvDataSegmentLength": "16384"})
    assert ks.login_config(ks.NodeTarget.from_record(small), INAME).max_recv_data_segment_length \
        == 16384
    plain = ks.login_config(ks.NodeTarget.from_record(record("tcp")), INAME)
    assert plain == LoginConfig.from_node(record("tcp"), INAME)


def test_sendtargets_through_an_hba_port(tmp_path):
    """iscsiadm's discovery through a cxgb4i iface (iscsi_create_leading_conn with
    bind_ep): the discovery session on an endpoint made through the port's host."""
    rec = record()
    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", [])]))
    kernel = HbaKernel(target)
    cfg = LoginConfig(initiator_name=INAME, session_type="Discovery")
    targets, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.7.0.9", 3260), cfg, ISID.en(7, 1), rec["iface.iscsi_ifacename"], 2,
        d._logging_in, "cxgb4i", HOST, rec))
    assert [t.name for t in targets] == ["iqn.2003-01.org.example:a"]
    first = kernel.requests[0]
    assert (first["type"], first["host_no"]) == (E.TRANSPORT_EP_CONNECT_THROUGH_HOST, HOST)
    assert ("MaxRecvDataSegmentLength", "8192") in target.received_pairs
    assert target.violations == []


@pytest.mark.parametrize("transport, words", [
    ("tcp", None), ("iser", None), ("cxgb4i", None), ("be2iscsi", None), ("bnx2i", None),
    ("qedi", None), ("qla4xxx", None), ("cxgb3i", None), ("ocs", None),
    ("nosuch", "transport nosuch is not one open-iscsi knows"),
])
def test_which_transports_iscsictl_drives(transport, words):
    why = unsupported(transport)
    assert (why is None) if words is None else why.startswith(words)
    assert (transport in ks.KERNEL_CONNECTED) == (words is None and transport != "tcp")


# ---- qla4xxx: the HBA logs in itself (CAP_LOGIN_OFFLOAD) -----------------------------------

class QlaKernel(HbaKernel):
    """HbaKernel as qla4xxx: START_CONN answered, then the card's KEVENT_CONN_LOGIN_STATE
    with ``state`` (None: never), or refused with ``start_errno``; a SEND_PDU (the only
    PDUs after an offloaded login are a discovery's) goes to ``target`` as before."""

    def __init__(self, target=None, state=IscsiConnState.LOGGED_IN, start_errno=0):
        super().__init__(target or FakeTarget())
        self.state, self.start_errno = state, start_errno

    def answer(self, msg, raw):
        if msg["type"] == E.START_CONN:
            if self.start_errno:
                return [echo(raw, r_retcode=-self.start_errno)]
            out = [echo(raw, r_retcode=0)]
            if self.state is not None:
                out.append(m.encode_message(E.KEVENT_CONN_LOGIN_STATE, nlmsg_type=0,
                                            r_sid=msg["sid"], r_cid=msg["cid"],
                                            r_state=int(self.state)))
            return out
        return super().answer(msg, raw)


def qla_login(tmp_path, kernel, **iface):
    rec = record("qla4xxx", **{"node.session.auth.authmethod": "CHAP",
                               "node.session.auth.username": "qla",
                               "node.session.auth.password": "qla-secret-12", **iface})

    async def attempt(nl, d):
        try:
            return await ks.establish_ep(nl, 3, ks.NodeTarget.from_record(rec), INAME,
                                         ISID.en(7, 1), logging_in=d._logging_in,
                                         bind_host=HOST)
        except SessionError as exc:
            return exc
    return through_the_daemon(tmp_path, kernel, attempt)[0]


def sets(kernel):
    return {IscsiParam(r["param"]).name: r["payload"].rstrip(b"\0").decode()
            for r in kernel.requests if r["type"] == E.SET_PARAM}


def test_a_qla4xxx_login_is_the_cards_own(tmp_path):
    """iscsid's setup_offload_login_phase: after the bind, the record's values (the
    operational ones as offered, CHAP's credentials for the card to use) and START_CONN;
    the card logs in and says so (KEVENT_CONN_LOGIN_STATE, routed by the daemon to the
    login under way).  No Login PDU goes through the kernel, and nothing is set again."""
    kernel = QlaKernel()
    session = qla_login(tmp_path, kernel)
    assert isinstance(session, ks.KernelSession), session
    steps = [t for t in kernel.types() if t not in (E.TRANSPORT_EP_POLL, E.SET_PARAM)]
    assert steps == [E.TRANSPORT_EP_CONNECT_THROUGH_HOST, E.CREATE_BOUND_SESSION,
                     E.CREATE_CONN, E.BIND_CONN, E.SET_HOST_PARAM, E.START_CONN]
    values = sets(kernel)
    assert (values["TARGET_NAME"], values["USERNAME"], values["PASSWORD"]) == (
        TargetConfig().name, "qla", "qla-secret-12")
    assert (values["MAX_RECV_DLENGTH"], values["INITIAL_R2T_EN"]) == ("262144", "0")
    assert values["DISCOVERY_SESS"] == "0"  # as iscsid's iscsi_session_set_params
    assert session.conn_state == "LOGGED IN" and session.bind_host == HOST


@pytest.mark.parametrize("kernel, code, words", [
    (QlaKernel(state=IscsiConnState.FREE), 5, "the HBA's login failed (connection state FREE)"),
    (QlaKernel(start_errno=errno.EEXIST), 15, "the HBA has this session already"),
    (QlaKernel(state=None), 11, "login timed out: the HBA did not say it logged in"),
], ids=["refused", "exists", "silent"])
def test_a_qla4xxx_login_that_fails_leaves_nothing(tmp_path, kernel, code, words):
    error = qla_login(tmp_path, kernel, **{"node.conn[0].timeo.login_timeout": "1"})
    assert isinstance(error, SessionError) and error.code == code
    assert str(error).startswith(words)
    assert kernel.types()[-4:] == [E.TRANSPORT_EP_DISCONNECT, E.STOP_CONN, E.DESTROY_CONN,
                                   E.DESTROY_SESSION]


def test_a_qla4xxx_relogin_waits_for_the_card(tmp_path):
    """Connection recovery: a new endpoint through the session's host, bound, the values
    set, the host's MAC again and START_CONN (setup_offload_login_phase, as at the login);
    the card's word comes as an event of a managed session."""
    kernel = QlaKernel()
    session = ks.KernelSession(sid=SID, host_no=HOST, cid=0,
                               node=ks.NodeTarget.from_record(record("qla4xxx")),
                               isid=ISID.en(7, 1), tsih=0x0100, params=None,
                               current=Portal("10.7.0.9", 3260, 1), initiator_name=INAME,
                               bind_host=HOST)

    async def recover(nl, d):
        d.sessions[SID] = session
        await ks.relogin(nl, 3, session)
    through_the_daemon(tmp_path, kernel, recover)
    steps = [t for t in kernel.types() if t not in (E.TRANSPORT_EP_POLL, E.SET_PARAM)]
    assert steps == [E.TRANSPORT_EP_CONNECT_THROUGH_HOST, E.BIND_CONN, E.SET_HOST_PARAM,
                     E.START_CONN]
    assert session.ep == EP


def test_a_qla4xxx_logout_sends_no_logout_pdu(tmp_path):
    """LLDs that offload login also offload logout (iscsid's session_logout_task): the
    session is unbound and torn down, its endpoint first; no Logout PDU."""
    from test_handover import _sysfs_with_session, logged_out

    session = ks.KernelSession(sid=5, host_no=HOST, cid=0,
                               node=ks.NodeTarget.from_record(record("qla4xxx")),
                               isid=ISID.en(7, 1), tsih=1, params=None,
                               current=Portal("10.7.0.9", 3260, 1), ep=EP)

    _sysfs_with_session(tmp_path)
    kernel = logged_out(session, tmp_path)
    assert [r["type"] for r in kernel.requests] == [
        E.UNBIND_SESSION, E.TRANSPORT_EP_DISCONNECT, E.STOP_CONN, E.DESTROY_CONN,
        E.DESTROY_SESSION_ASYNC]


def test_sendtargets_through_a_qla4xxx_port(tmp_path):
    """iscsiadm's discovery through a login offload HBA (usr/discovery.c: the values with
    DiscoverySession=1 set and START_CONN before the card logs in, iscsi_wait_for_login),
    then the Text exchange and the Logout through the kernel.  The fake target starts in
    full feature phase: the card did the login."""
    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", [])]))
    target.phase, target.exp_cmdsn, target.session_type = "ffp", 1, "Discovery"
    kernel = QlaKernel(target)
    rec = record("qla4xxx")
    cfg = LoginConfig(initiator_name=INAME, session_type="Discovery")
    targets, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.7.0.9", 3260), cfg, ISID.en(7, 1), rec["iface.iscsi_ifacename"], 2,
        d._logging_in, "qla4xxx", HOST, rec))
    assert [t.name for t in targets] == ["iqn.2003-01.org.example:a"]
    assert target.violations == []
    assert sets(kernel)["DISCOVERY_SESS"] == "1"
    steps = [t for t in kernel.types() if t not in (E.TRANSPORT_EP_POLL, E.SET_PARAM)]
    assert steps[4:] == [E.SET_HOST_PARAM, E.START_CONN, E.SEND_PDU, E.SEND_PDU,
                         E.TRANSPORT_EP_DISCONNECT, E.STOP_CONN, E.DESTROY_CONN,
                         E.DESTROY_SESSION]


# ---- bnx2i, qedi: iscsiuio sets up the HBA's network (set_net_config) ---------------------

@pytest.fixture
def uip(monkeypatch):
    """A stand-in iscsiuio (tests/fake_uip.py) the daemon asks, answering DEVICE_UP; its
    retries a hundredth of a second apart."""
    from fake_uip import FakeUip

    with FakeUip() as server:
        monkeypatch.setenv("ISCSICTL_UIP_SOCKET", server.name)
        monkeypatch.setattr(ks, "UIP_RETRY_PAUSE", 0.01)
        yield server


def uip_login(tmp_path, kernel, transport="bnx2i", **iface):
    """A login through ``transport``'s host (the iface bound by its MAC, its address
    10.7.0.2 unless given), as the daemon makes it: the record given the host's netdev
    for iscsiuio (uip_record), then establish_ep; returns the session or the error."""
    rec = record(transport, **{"iface.ipaddress": "10.7.0.2", **iface})
    sysfs = hba(tmp_path, transport)

    async def attempt(nl, d):
        try:
            host = ks.bind_host(sysfs, rec)
            node = ks.NodeTarget.from_record(ks.uip_record(sysfs, rec, host))
            return await ks.establish_ep(nl, 3, node, INAME, ISID.en(7, 1),
                                         logging_in=d._logging_in, bind_host=host)
        except SessionError as exc:
            return exc
    return through_the_daemon(tmp_path, kernel, attempt)[0]


def test_a_bnx2i_login_has_iscsiuio_set_up_the_port_first(tmp_path, uip):
    """iscsid's iscsi_host_set_net_params: GET_IFACE to iscsiuio with the iface record (its
    netdev the host's, eth7, as iscsid fills it), asked again while iscsiuio says the NIC
    is initializing; then the host's address, netdev and MAC; then the endpoint through
    the host and the relayed login.  A relogin asks iscsiuio again before it connects."""
    uip.answers = [UipStatus.DEVICE_INITIALIZING, UipStatus.DEVICE_UP]
    kernel = HbaKernel(FakeTarget())
    uip.before = lambda: len(kernel.requests)
    session = uip_login(tmp_path, kernel)
    assert isinstance(session, ks.KernelSession), session
    assert [r.command for r in uip.requests] == [UipCommand.GET_IFACE] * 2
    assert [r.mark for r in uip.requests] == [0, 0]  # before anything of the kernel's
    asked = uip.requests[0]
    assert (asked.field("netdev"), asked.field("ipaddress"), asked.field("transport_name"),
            asked.field("hwaddress"), asked.field("name")) == (
        "eth7", "10.7.0.2", "bnx2i", MAC, f"bnx2i.{MAC}")
    connect = kernel.types().index(E.TRANSPORT_EP_CONNECT_THROUGH_HOST)
    assert host_sets(kernel)[:3] == [(HOST, "IPADDRESS", "10.7.0.2"),
                                     (HOST, "NETDEV_NAME", "eth7"), (HOST, "HWADDRESS", MAC)]
    assert kernel.types()[:connect] == [E.SET_HOST_PARAM] * 3
    assert kernel.types()[-1] == E.START_CONN

    relogin_kernel = HbaKernel(FakeTarget())
    session.sid = SID
    uip.before = lambda: len(relogin_kernel.requests)

    async def recover(nl, d):
        d.sessions[SID] = session
        await ks.relogin(nl, 3, session)
    through_the_daemon(tmp_path, relogin_kernel, recover)
    assert [r.mark for r in uip.requests[2:]] == [0]
    assert relogin_kernel.types()[0] == E.TRANSPORT_EP_CONNECT_THROUGH_HOST


def test_a_qedi_login_names_the_netdev_of_its_record(tmp_path, uip):
    """An iface that names its net device keeps it (the host, found by its MAC, shows
    eth7); qedi (no_netdev) as bnx2i otherwise."""
    session = uip_login(tmp_path, HbaKernel(FakeTarget()), "qedi",
                        **{"iface.net_ifacename": "eth9"})
    assert isinstance(session, ks.KernelSession), session
    assert uip.requests[0].field("netdev") == "eth9"
    assert uip.requests[0].field("transport_name") == "qedi"


@pytest.mark.parametrize("answers, iface, code, words", [
    ([UipStatus.DEVICE_INITIALIZING], {}, 23,
     "iscsiuio has not brought up eth7 for iface bnx2i.00:07:43:28:0f:a0: still initializing"),
    ([UipStatus.ERR], {}, 23, "iscsiuio has not brought up eth7 for iface "
                              "bnx2i.00:07:43:28:0f:a0: its answer: ERR"),
    ([None], {}, 23, "iscsiuio closed the connection after 0 of the answer's 12 bytes"),
    ([UipStatus.DEVICE_UP], {"iface.ipaddress": None}, 5,
     "Please set the iface.ipaddress for iface bnx2i.00:07:43:28:0f:a0, then retry the login "
     "command."),
], ids=["initializing", "refused", "closed", "no-address"])
def test_a_bnx2i_login_iscsiuio_does_not_set_up_fails_before_the_kernel(tmp_path, uip, answers,
                                                                        iface, code, words):
    """iscsid retries the login a second apart, node.conn[0].timeo.login_timeout times (2
    here), then fails it with ISCSI_ERR_HOST_NOT_FOUND; an iface without the address bnx2i
    requires (SET_HOST_IP_REQ) is refused at once.  Nothing of the kernel's is made."""
    uip.answers = answers
    kernel = HbaKernel(FakeTarget())
    error = uip_login(tmp_path, kernel, **iface)
    assert isinstance(error, SessionError) and error.code == code
    assert words in str(error)
    assert kernel.requests == []
    assert len(uip.requests) == (0 if code == 5 else 2)


def test_a_bnx2i_login_without_iscsiuio_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ISCSICTL_UIP_SOCKET", "iscsictl-test-uip-nobody-listens")
    kernel = HbaKernel(FakeTarget())
    error = uip_login(tmp_path, kernel)
    assert isinstance(error, SessionError) and error.code == 5
    assert str(error).startswith("iscsiuio is not running")
    assert "start it: systemctl start iscsiuio" in str(error) and kernel.requests == []


def test_a_bnx2i_iface_must_name_its_host(tmp_path):
    """iscsiuio sets up a port: an iface that names none (no hwaddress, netdev or
    address) cannot be logged in through (iscsid: no host from the iface's hwinfo)."""
    rec = record("bnx2i", **{"iface.hwaddress": None})
    with pytest.raises(SessionError) as caught:
        ks.uip_record(hba(tmp_path, "bnx2i"), rec, ks.bind_host(hba(tmp_path, "bnx2i"), rec))
    assert caught.value.code == 23 and "names no bnx2i host" in str(caught.value)
    assert ks.uip_record(hba(tmp_path), record(), HOST) is not None  # cxgb4i: as it is


def test_sendtargets_through_a_bnx2i_port(tmp_path, uip):
    """iscsiadm's discovery through a bnx2i iface sets up the host's network first
    (usr/discovery.c iscsi_create_leading_conn: iscsi_host_set_net_params)."""
    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:a", [])]))
    kernel = HbaKernel(target)
    uip.before = lambda: len(kernel.requests)
    rec = record("bnx2i", **{"iface.ipaddress": "10.7.0.2"})
    iface = ks.uip_record(hba(tmp_path, "bnx2i"), rec, HOST)
    cfg = LoginConfig(initiator_name=INAME, session_type="Discovery")
    targets, _ = through_the_daemon(tmp_path, kernel, lambda nl, d: ks.send_targets_ep(
        nl, 3, Portal("10.7.0.9", 3260), cfg, ISID.en(7, 1), rec["iface.iscsi_ifacename"], 2,
        d._logging_in, "bnx2i", HOST, iface))
    assert [t.name for t in targets] == ["iqn.2003-01.org.example:a"]
    assert [(r.command, r.mark, r.field("netdev")) for r in uip.requests] == [
        (UipCommand.GET_IFACE, 0, "eth7")]


@pytest.mark.parametrize("transport, written", [("cxgb4i", "24"), ("tcp", "")])
def test_an_offload_sessions_devices_get_the_records_queue_depth_after_its_scan(
        tmp_path, monkeypatch, transport, written):
    """An offload driver's host does not take CREATE_SESSION's queue_depth (bnx2i, qedi,
    cxgbi, be2iscsi: its template's): after the login's scan each of the session's devices
    gets node.session.queue_depth, as iscsid's session_scan_host writes it (before: the
    driver's 128 stayed).  iscsi_tcp's host took it at its creation: nothing written."""
    import os
    import sys

    from fake_kernel import SyncKernel
    from iscsictl.daemon.service import Daemon
    from iscsictl.netlink import AsyncIscsiNetlink

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
    from test_session_cmd import add_session

    hba(tmp_path)
    add_session(tmp_path, 5, 9, TargetConfig().name, "10.7.0.9", {0: "sda"})  # what it makes
    lun = tmp_path / "devices/platform/host9/session5/target9:0:0/9:0:0:0"
    (lun / "queue_depth").write_text("")  # sysfs has it; a write neither creates nor truncates
    (tmp_path / "devices/platform/host9/scsi_host/host9/scan").write_text("")
    kernel = HbaKernel(FakeTarget())
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    rec = record(**{"node.session.queue_depth": "24"})
    if transport == "tcp":
        rec = {**rec, "iface.transport_name": "tcp", "iface.iscsi_ifacename": "default",
               "iface.hwaddress": ""}

    async def main():
        d.nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5, event_callback=d._on_event,
                                 lane_transport=lambda: SyncKernel(kernel))
        transport_in_sysfs(d.sysfs.root, transport, 3)
        try:
            if transport == "tcp":  # the login itself is not this test's: the scan's end
                session = ks.KernelSession(sid=5, host_no=9, cid=0,
                                           node=ks.NodeTarget.from_record(rec), isid=None,
                                           tsih=1, params=None, current=None)

                async def establish(*a, **kw):
                    return session
                monkeypatch.setattr(ks, "establish", establish)
            return await d.login([rec], INAME)
        finally:
            d.nl.close()
            d._scan_pool.shutdown(wait=True)
    result, = asyncio.run(main())
    assert result["ok"], result
    assert (tmp_path / "devices/platform/host9/scsi_host/host9/scan").read_text() == "- - -"
    assert (lun / "queue_depth").read_text() == written


def test_a_first_login_iscsiuio_never_readies_asks_it_login_timeout_times_in_all(tmp_path,
                                                                                 uip):
    """iscsid's session_login_task_retry: iscsiuio is asked again a second apart,
    node.conn[0].timeo.login_timeout times, then the login fails with 23; the
    initial_login_retry_max attempts do not multiply that (before: 4 x 2 requests here,
    a minute with the defaults before the administrator heard of it)."""
    from fake_kernel import SyncKernel
    from iscsictl.daemon.service import Daemon
    from iscsictl.netlink import AsyncIscsiNetlink

    uip.answers = [UipStatus.DEVICE_INITIALIZING]
    hba(tmp_path, "bnx2i")
    transport_in_sysfs(tmp_path, "bnx2i", 3)
    kernel = HbaKernel(FakeTarget())
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(tmp_path), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    rec = record("bnx2i", **{"iface.ipaddress": "10.7.0.2",
                             "node.session.initial_login_retry_max": "4"})

    async def main():
        d.nl = AsyncIscsiNetlink(kernel.transport, timeout=0.5, event_callback=d._on_event,
                                 lane_transport=lambda: SyncKernel(kernel))
        try:
            return await d.login([rec], INAME)
        finally:
            d.nl.close()
    result, = asyncio.run(main())
    assert result["ok"] is False and result["code"] == 23, result
    assert "iscsiuio has not brought up eth7" in result["message"]
    assert len(uip.requests) == 2 and kernel.requests == []
