"""Sessions taken over from the kernel without a login of ours (a daemon restart, or a boot
session made by iscsistart or ``-m fw -l``): the record they are managed and logged in
again with (iscsid's sync_session: the session's own credentials from sysfs; without a
record, its identity and negotiated values on iscsid.conf's defaults)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from iscsictl.daemon.params import adopted_record
from iscsictl.daemon.service import Daemon
from iscsictl.protocol.config import LoginConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from test_session_cmd import _w, add_session  # noqa: E402  (the fixture sysfs tree)

T = "iqn.2003-01.org.example.vm:ibft-boot"
SESSION = "devices/platform/host{h}/session{s}/iscsi_session/session{s}"


def test_a_record_takes_the_sessions_credentials():
    rec = {"node.name": T, "node.session.auth.username": "old", "node.session.auth.password": "x",
           "node.session.timeo.replacement_timeout": "7"}
    out = adopted_record(rec, {"session/username": "ibftuser", "session/password": "s3cret-12",
                               "session/username_in": None, "session/targetname": "other"}, {})
    assert out["node.session.auth.username"] == "ibftuser"
    assert out["node.session.auth.password"] == "s3cret-12"
    assert out["node.session.timeo.replacement_timeout"] == "7" and out["node.name"] == T
    assert out["node.session.auth.username_in"] == ""  # unset in the kernel: none
    hidden = adopted_record(rec, {}, {})  # a transport that shows no credentials
    assert hidden["node.session.auth.username"] == "old"


def test_no_record_is_built_from_the_session_on_the_defaults():
    sysfs = {"session/targetname": T, "session/tpgt": "1", "session/ifacename": "default",
             "session/initiatorname": "iqn.2026-11.x:fw", "connection/persistent_address":
             "127.0.0.1", "connection/persistent_port": "3261", "connection/header_digest": "1",
             "connection/data_digest": "0", "session/immediate_data": "0",
             "session/initial_r2t": "1", "session/first_burst_len": "65536",
             "session/max_burst_len": "garbage", "session/username": "u", "session/password": "p"}
    out = adopted_record(None, sysfs, {"node.session.timeo.replacement_timeout": "120",
                                       "node.session.iscsi.MaxBurstLength": "16776192"})
    assert (out["node.name"], out["node.conn[0].port"], out["node.tpgt"]) == (T, "3261", "1")
    assert out["iface.initiatorname"] == "iqn.2026-11.x:fw"
    assert (out["node.conn[0].iscsi.HeaderDigest"], out["node.conn[0].iscsi.DataDigest"]) == \
        ("CRC32C,None", "None,CRC32C")
    assert (out["node.session.iscsi.ImmediateData"], out["node.session.iscsi.InitialR2T"]) == \
        ("No", "Yes")
    assert out["node.session.iscsi.FirstBurstLength"] == "65536"
    assert out["node.session.iscsi.MaxBurstLength"] == "16776192"  # unreadable: the default's
    cfg = LoginConfig.from_node(out, "iqn.2026-11.x:host")
    assert cfg.target_name == T and cfg.chap.username == "u" and cfg.chap.password == b"p"


@pytest.fixture
def daemon(tmp_path):
    sys_root = tmp_path / "sys"
    (sys_root / "class/iscsi_session").mkdir(parents=True)
    db = tmp_path / "db"
    db.mkdir()
    (db / "iscsid.conf").write_text("node.session.timeo.replacement_timeout = 33\n")
    d = Daemon(str(tmp_path / "s"), sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
               db_root=str(db), config_root=str(db), autostart=False)
    return d, sys_root, db


def test_a_firmware_session_without_a_record_can_log_in_again(daemon):
    """A boot session (no record in the DB) keeps its CHAP and initiator name: before, it
    was managed with empty defaults and its relogin could not even be built."""
    d, sys_root, _ = daemon
    add_session(sys_root, 1, 0, T, "127.0.0.1", {0: "sda"})
    s = SESSION.format(h=0, s=1)
    _w(sys_root, f"{s}/username", "ibftuser")
    _w(sys_root, f"{s}/password", "ibft-secret-12")
    _w(sys_root, f"{s}/initiatorname", "iqn.2026-11.org.example.vm:ibft-host")
    d._adopt()
    rec = d.sessions[1].node.record
    assert rec["node.session.timeo.replacement_timeout"] == "33"  # iscsid.conf's
    cfg = LoginConfig.from_node(rec, "iqn.2026-11.x:other")
    assert cfg.target_name == T and cfg.chap.username == "ibftuser"
    assert cfg.chap.password == b"ibft-secret-12"
    assert rec["iface.initiatorname"] == "iqn.2026-11.org.example.vm:ibft-host"


@pytest.mark.parametrize("boot_chap", ["one-way", "none"])
def test_a_boot_session_is_not_given_iscsid_confs_credentials(daemon, boot_chap):
    """A boot session (no record) logged in with the firmware's one-way CHAP or none, while
    iscsid.conf holds mutual CHAP for the SAN's other targets: its relogin (at once: a
    boot session has no NOP-Outs) offers what the session used, the credentials libiscsi
    shows unset ("(null)") being none (before: iscsid.conf's filled them in, so the
    relogin offered mutual CHAP the boot target did not have, and was refused for good)."""
    d, sys_root, db = daemon
    (db / "iscsid.conf").write_text(
        "node.session.auth.authmethod = CHAP\n"
        "node.session.auth.username = sanuser\nnode.session.auth.password = san-secret-123\n"
        "node.session.auth.username_in = santarget\n"
        "node.session.auth.password_in = san-target-456\n")
    add_session(sys_root, 1, 0, T, "10.0.0.10", {0: "sda"})
    s = SESSION.format(h=0, s=1)
    used = {"username": "ibftuser", "password": "ibft-secret-12"} if boot_chap == "one-way" \
        else {}
    for attr in ("username", "password", "username_in", "password_in"):
        _w(sys_root, f"{s}/{attr}", used.get(attr, "(null)"))
    d._adopt()
    rec = d.sessions[1].node.record
    assert {k: rec[f"node.session.auth.{k}"] for k in ("username", "password", "username_in",
            "password_in")} == {"username_in": "", "password_in": "", "username": "",
                                "password": "", **used}
    cfg = LoginConfig.from_node(rec, "iqn.2026-11.x:host")
    if boot_chap == "none":
        assert cfg.chap is None
    else:
        assert cfg.chap.username == "ibftuser" and not cfg.chap.mutual


def test_a_boot_sessions_secret_that_is_not_utf8_is_kept_to_the_byte(daemon):
    """A firmware's CHAP secret need not be UTF-8: adopted, it is read back as its bytes
    (the relogin's CHAP), and SET_PARAM sends them as they are (before: read with U+FFFD in
    their place, so the relogin failed authentication; and a boot login's SET_PARAM
    PASSWORD raised UnicodeEncodeError, its session torn down)."""
    from iscsictl.netlink.socket import _str_payload

    d, sys_root, _ = daemon
    add_session(sys_root, 1, 0, T, "127.0.0.1", {0: "sda"})
    s = SESSION.format(h=0, s=1)
    _w(sys_root, f"{s}/username", "ibftuser")
    (sys_root / s / "password").write_bytes(b"s\xe9cret-ibft-12\n")
    d._adopt()
    secret = d.sessions[1].node.record["node.session.auth.password"]
    cfg = LoginConfig.from_node(d.sessions[1].node.record, "iqn.2026-11.x:other")
    assert cfg.chap.password == b"s\xe9cret-ibft-12"
    assert _str_payload(secret) == b"s\xe9cret-ibft-12\0"


def test_a_recorded_session_relogs_in_with_the_credentials_it_used(daemon):
    from iscsictl.db.store import NodeDB
    d, sys_root, db = daemon
    NodeDB(str(db), str(db)).create_node(T, "127.0.0.1", 3260, 1, values={
        "node.session.auth.username": "changed-since", "node.session.auth.password": "nope",
        "node.session.timeo.replacement_timeout": "9"})
    add_session(sys_root, 2, 0, T, "127.0.0.1", {0: "sda"})
    s = SESSION.format(h=0, s=2)
    _w(sys_root, f"{s}/username", "ibftuser")
    _w(sys_root, f"{s}/password", "ibft-secret-12")
    d._adopt()
    rec = d.sessions[2].node.record
    assert (rec["node.session.auth.username"], rec["node.session.auth.password"]) == \
        ("ibftuser", "ibft-secret-12")
    assert rec["node.session.timeo.replacement_timeout"] == "9"


# ---- sessions the HBA's firmware runs (qla4xxx flash targets) -----------------------------
QLA_CAPS = "0x7a00"  # a qla4xxx with CAP_FW_DB (older kernels'; Linux 6.1's has 0x48b8)


def _firmware_host(sys_root, sid, host, *, creator="-1", transport="qla4xxx", caps=QLA_CAPS):
    """``add_session`` made by the HBA's firmware: ``creator`` -1, the host's driver
    ``transport``, its ``class/iscsi_transport`` entry with ``caps``."""
    add_session(sys_root, sid, host, T, "192.0.2.100", {0: f"sd{chr(ord('a') + sid)}"})
    _w(sys_root, f"{SESSION.format(h=host, s=sid)}/creator", creator)
    _w(sys_root, f"devices/platform/host{host}/scsi_host/host{host}/proc_name", transport)
    _w(sys_root, f"class/iscsi_transport/{transport}/caps", caps)
    _w(sys_root, f"class/iscsi_transport/{transport}/handle", "18446744072107250000")


def _scanned(sys_root, host):
    """Whether ``host<N>/scan`` was written (the kernel's file exists before: made here)."""
    return (sys_root / f"class/scsi_host/host{host}/scan").read_text().startswith("- - -")


def _scan_files(sys_root, *hosts):
    for h in hosts:
        (sys_root / f"class/scsi_host/host{h}/scan").write_text("")


@pytest.mark.parametrize("creator,caps", [("-1", QLA_CAPS), ("4242", QLA_CAPS), ("-1", "0x39"),
                                          ("off", "0x39")])  # -1 as the kernel shows it
def test_a_session_the_hba_firmware_runs_is_left_to_it(daemon, creator, caps):
    """Not adopted: a software relogin from the host (a TCP socket bound to the card's
    connection) or a software teardown would fight the card, as iscsid's sync_session
    knows (it skips CAP_FW_DB transports and sessions no process created); its host is
    scanned at the daemon's start, as iscsid's does.  A tcp session beside it is adopted."""
    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5, creator=creator, caps=caps)
    add_session(sys_root, 2, 0, T, "127.0.0.1", {0: "sda"})
    _scan_files(sys_root, 0, 5)
    d._adopt()
    d._scan_pool.shutdown(wait=True)
    assert list(d.sessions) == [2]
    assert _scanned(sys_root, 5) == (caps == QLA_CAPS) and not _scanned(sys_root, 0)


def test_a_session_the_firmware_logs_in_gets_its_devices_running_and_its_host_scanned(daemon):
    """KEVENT_CREATE_SESSION on a CAP_FW_DB transport: iscsid's iscsi_async_session_creation
    (devices running, the host scanned); before, the event was ignored and the LUNs behind
    the card's own logins never appeared.  The same event for a tcp session does nothing."""
    from iscsictl.netlink import CreateSession

    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5)
    lun = sys_root / "devices/platform/host5/session7/target5:0:0/5:0:0:0"
    _w(sys_root, f"{lun.relative_to(sys_root)}/state", "offline")
    _w(sys_root, "bus/scsi/devices/.keep", "")
    (sys_root / "bus/scsi/devices/5:0:0:0").symlink_to(lun)
    add_session(sys_root, 2, 0, T, "127.0.0.1", {0: "sda"})
    _scan_files(sys_root, 0, 5)
    d._on_event(CreateSession(0, {}, 7, 5))
    d._on_event(CreateSession(0, {}, 2, 0))
    d._scan_pool.shutdown(wait=True)
    assert (lun / "state").read_text() == "running\n"  # with the newline sysfs may require
    assert _scanned(sys_root, 5) and not _scanned(sys_root, 0)


def test_the_logout_of_a_firmware_session_goes_through_the_hba(daemon):
    """iscsiadm's iscsi_logout_flashnode_sid: LOGOUT_FLASHNODE_SID (host, sid); before, the
    software teardown (UNBIND_SESSION, a Logout PDU, STOP_CONN, DESTROY_*) was sent for it.
    The node DB is not read for it (an adoption attempt read all of it, once a session:
    512 of them beside 1,000 records held the loop over a minute)."""
    import asyncio

    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5)
    sent = []

    def no_db_read():
        raise AssertionError("the node DB read for a firmware session's logout")

    d._record_index = no_db_read

    class Netlink:
        async def logout_flashnode_sid(self, handle, host_no, sid):
            sent.append((handle, host_no, sid))

        def __getattr__(self, name):
            raise AssertionError(f"{name} sent for a firmware session")

    d.nl = Netlink()
    (result,) = asyncio.run(d.logout([7]))
    assert result["ok"] and sent == [(18446744072107250000, 5, 7)] and not d.sessions


def test_safe_logout_holds_for_a_firmware_session(daemon, monkeypatch):
    """iscsid.safe_logout = Yes and the card's session has a mounted disk: refused, 28,
    nothing sent, as iscsiadm's iscsi_logout_flashnode_sid checks the session's use first
    (before, the card logged it out from under the filesystem); --force still does it."""
    import asyncio

    from iscsictl.daemon import service

    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5)
    sent = []

    class Netlink:
        async def logout_flashnode_sid(self, handle, host_no, sid):
            sent.append(sid)
    d.nl = Netlink()
    monkeypatch.setattr(d, "_safe_logout", lambda: True)
    monkeypatch.setattr(service, "busy_devices", lambda devices: ["/dev/sdz1 on /srv"])
    (refused,) = asyncio.run(d.logout([7]))
    assert (refused["ok"], refused["code"], sent) == (False, 28, [])
    assert "in use" in refused["message"]
    monkeypatch.setattr(d, "_safe_logout", lambda: False)  # --safe: checked all the same
    (refused,) = asyncio.run(d.logout([7], safe=True))
    assert (refused["ok"], refused["code"], sent) == (False, 28, [])
    (forced,) = asyncio.run(d.logout([7], force=True))
    assert forced["ok"] and sent == [7]


def test_an_hba_session_is_adopted_bound_to_its_host(daemon):
    """A cxgb4i session (made through netlink: a creator, no CAP_FW_DB) is adopted, and its
    relogins make their endpoints through its own host (EP_CONNECT_THROUGH_HOST), where the
    session lives; a tcp session beside it is bound to none."""
    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5, creator="4242", transport="cxgb4i", caps="0x839")
    add_session(sys_root, 2, 0, T, "127.0.0.1", {0: "sda"})
    d._adopt()
    assert sorted(d.sessions) == [2, 7]
    assert d.sessions[7].node.transport == "cxgb4i" and d.sessions[7].bind_host == 5
    assert d.sessions[2].bind_host is None


def test_an_adopted_bnx2i_session_knows_its_ports_netdev_for_iscsiuio(daemon):
    """Its relogins ask iscsiuio to set up the port first (iscsid's __session_conn_reopen:
    iscsi_set_net_config), which needs the port's net device: the host's, as iscsid fills
    it in; an iface that names one keeps it."""
    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5, creator="4242", transport="bnx2i", caps="0x1839")
    _w(sys_root, "class/iscsi_host/host5/netdev", "eth5")
    d._adopt()
    node = d.sessions[7].node
    assert (node.transport, d.sessions[7].bind_host) == ("bnx2i", 5)
    assert node.record["iface.net_ifacename"] == "eth5"


def test_an_adopted_boot_session_gives_iscsiuio_its_ports_address_and_boot_nic(daemon):
    """A bnx2i boot session without a record (iscsictl-start -b's): its relogins ask
    iscsiuio to set up the port with the host's ipaddress (iscsid's sync_session keeps it
    for a set_host_ip transport) and the VLAN, subnet mask and gateway of the boot NIC
    the session names (iscsi_sysfs_read_boot).  Before: an empty address, which iscsiuio
    cannot decode, so no relogin ever connected: the root disk lost at the first
    connection error.  A tcp session's host address is its local one: not a binding."""
    from iscsictl.kernel import iscsiuio
    d, sys_root, _ = daemon
    _firmware_host(sys_root, 7, 5, creator="4242", transport="bnx2i", caps="0x1839")
    add_session(sys_root, 2, 0, T, "127.0.0.1", {0: "sda"})
    _w(sys_root, "class/iscsi_host/host5/netdev", "eth5")
    _w(sys_root, "class/iscsi_host/host5/ipaddress", "10.1.2.3")
    for attr, value in (("boot_target", "target0"), ("boot_nic", "ethernet0"),
                        ("boot_root", "iscsi_boot5")):
        _w(sys_root, f"{SESSION.format(h=5, s=7)}/{attr}", value)
    for attr, value in (("vlan", "12"), ("subnet-mask", "255.255.255.0"),
                        ("gateway", "10.1.2.1")):
        _w(sys_root, f"firmware/iscsi_boot5/ethernet0/{attr}", value)
    d._adopt()
    rec = d.sessions[7].node.record
    assert [rec.get(k) for k in ("iface.ipaddress", "iface.vlan_id", "iface.subnet_mask",
                                 "iface.gateway")] == ["10.1.2.3", "12", "255.255.255.0",
                                                       "10.1.2.1"]
    f = iscsiuio.IfaceRec.from_buffer_copy(iscsiuio.get_iface_request(rec)[8:])
    assert (f.netdev, f.ipaddress, f.vlan_id) == (b"eth5", b"10.1.2.3", 12)
    assert not d.sessions[2].node.record.get("iface.ipaddress")


@pytest.mark.parametrize("netdev, hwaddress, bound", [
    ("eth9", "02:00:5e:00:53:09", ("eth9", "02:00:5e:00:53:09")),
    ("default", "default", (None, None)),  # iscsid's for an unbound iface
    ("(null)", "(null)", (None, None)),  # libiscsi's when never set
])
def test_a_session_without_a_record_keeps_its_ifaces_network_device(daemon, netdev, hwaddress,
                                                                      bound):
    """A tcp session bound to a NIC (iscsistart -P iface.net_ifacename=..., a record
    deleted since) is adopted bound to it, from its host's sysfs as iscsid's sync_session
    does: its relogins leave through that NIC, not the one the routing table picks."""
    from iscsictl.transport.iface import iface_netdev
    d, sys_root, _ = daemon
    add_session(sys_root, 1, 0, T, "192.0.2.10", {0: "sda"})
    _w(sys_root, SESSION.format(h=0, s=1) + "/ifacename", "if0")
    _w(sys_root, "devices/platform/host0/iscsi_host/host0/netdev", netdev)
    _w(sys_root, "devices/platform/host0/iscsi_host/host0/hwaddress", hwaddress)
    d._adopt()
    rec = d.sessions[1].node.record
    assert (rec.get("iface.net_ifacename") or None, rec.get("iface.hwaddress") or None) == bound
    assert d.sessions[1].node.iface == "if0" and d.sessions[1].bind_host is None
    _w(sys_root, "class/net/eth9/address", "02:00:5e:00:53:09")
    _w(sys_root, "class/net/eth9/type", "1")
    assert iface_netdev(rec, d.sysfs) == bound[0]  # what its relogins' socket binds to


def test_a_boot_session_without_nop_outs_is_found_for_a_relogin(daemon):
    """iscsistart's and iscsictl-start's sessions run with NOP-Outs off (ping_tmo and
    recv_tmo 0), and the kernel arms its NOP timer only at START_CONN: such a session whose
    record asks for NOP-Outs is logged in again at the daemon's start (as iscsid's
    sync_session), one whose record turns them off (interval and timeout 0: one of them 0
    is iscsid's default 5), or that has them, is not.  The VM's
    test_boot_without_a_daemon shows the relogin on the real kernel."""
    d, sys_root, db = daemon
    conn = "devices/platform/host0/session1/connection1:0/iscsi_connection/connection1:0"
    add_session(sys_root, 1, 0, T, "127.0.0.1", {0: "sda"})
    no_interval = "node.conn[0].timeo.noop_out_interval = 0\n"
    for ping, recv, conf, off in (("0", "0", "", True), ("5", "5", "", False),
                                  ("0", "0", no_interval, True),
                                  ("0", "0", no_interval + "node.conn[0].timeo.noop_out_timeout"
                                   " = 0\n", False)):
        _w(sys_root, f"{conn}/ping_tmo", ping)
        _w(sys_root, f"{conn}/recv_tmo", recv)
        (db / "iscsid.conf").write_text(conf)
        d.sessions.clear()
        d._adopt()
        assert d._nops_off(d.sessions[1]) is off, (ping, recv, conf)


def test_iscsictl_starts_daemon_leaves_the_sessions_it_finds_as_they_are(daemon):
    """iscsictl-start's in-process daemon (takeover=False) knows the sessions already there
    (no duplicate login) but never recovers or logs them in again: it ends with its logins,
    and a recovery it began (STOP_CONN) was cut off there, the root disk's connection left
    stopped.  iscsictld's own (takeover) does both."""
    import asyncio

    d, sys_root, _ = daemon
    conn = "devices/platform/host0/session1/connection1:0/iscsi_connection/connection1:0"
    add_session(sys_root, 1, 0, T, "127.0.0.1", {0: "sda"})
    _w(sys_root, f"{conn}/ping_tmo", "0")
    _w(sys_root, f"{conn}/recv_tmo", "0")

    async def recovery_started(takeover: bool) -> bool:
        d.sessions.clear()
        d.takeover = takeover
        d._adopt()
        s = d.sessions[1]
        assert d._nops_off(s)
        d._start_recovery(s, "its NOP-Outs were off")
        started = s.recovery is not None
        if started:
            s.recovery.cancel()
            await asyncio.gather(s.recovery, return_exceptions=True)
        return started
    assert asyncio.run(recovery_started(False)) is False
    assert asyncio.run(recovery_started(True)) is True


def test_sessions_of_iscsictl_starts_side_by_side_are_adopted_without_warnings(daemon, caplog):
    """An iscsictl-start started beside another finds the other's sessions: a half-made one
    (its login under way: no target name yet) is said as that, not as "no node record for
    ,3260" on the boot console; one without a record (an iscsictl-start writes none) is
    no warning to it, as it is to iscsictld, which manages the session from then on."""
    import logging

    d, sys_root, _ = daemon
    add_session(sys_root, 1, 0, T, "127.0.0.1", {0: "sda"})
    add_session(sys_root, 2, 1, "", "", {})
    for attr in ("targetname", "persistent_address", "address"):
        sub = "connection2:0/iscsi_connection/connection2:0" if "address" in attr \
            else "iscsi_session/session2"
        (sys_root / f"devices/platform/host1/session2/{sub}/{attr}").unlink()
    for takeover, warned in ((False, []), (True, [f"session 1: no node record for {T} "
                                                  "127.0.0.1,3260; managing it with defaults "
                                                  "and what the kernel shows"])):
        d.sessions.clear()
        d.takeover = takeover
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="iscsictld"):
            d._adopt()
        assert sorted(d.sessions) == [1, 2]
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == warned
        assert "session 2: half-made (a login cut short, or under way in another process)" \
            in caplog.text


def test_a_node_is_the_same_host_however_its_address_is_spelt(daemon):
    """iscsid's session_is_running compares hosts (iscsi_addr_match): a login to
    [FD00:0::1] finds fd00::1's session (before: a second session to the same portal);
    the discovery daemon keys nodes the same way."""
    from iscsictl.daemon import discoveryd as dd
    from iscsictl.daemon import kernel_session as ks

    d, sys_root, _ = daemon
    add_session(sys_root, 1, 0, T, "fd00::1", {0: "sda"})
    d._adopt()
    rec = {"node.name": T, "node.conn[0].address": "FD00:0::1", "node.conn[0].port": "3260",
           "node.tpgt": "1"}
    node = ks.NodeTarget.from_record(rec)
    assert [s.sid for s in d._node_sessions(node)] == [1]
    assert dd.node_key(rec) == node.key == d.sessions[1].node.key


@pytest.mark.parametrize("half_set", [("", ""), (T, "")], ids=["no-name", "no-address"])
def test_iscsictl_starts_for_one_node_take_turns(tmp_path, half_set):
    """Two iscsictl-starts started side by side for one node (two units, or a unit and a
    hand-run one) take turns, as one iscsictld's logins do: the second waits for the
    first's login, then finds its session (15; iscsistart's 15 when one is there) with the
    ISID the first saved, though it had adopted it half-made at its start, its target name
    or its address not set yet (before: both logged in, two sessions, each LUN twice, as
    two iscsistarts; the first fix missed the second case, and a CI run both logged in).
    Adopted again, the session's ISID is held once, not twice."""
    import asyncio

    from iscsictl.daemon import kernel_session as ks
    from iscsictl.daemon.instance import NodeLocks, node_locks_path
    from iscsictl.protocol.portal import Portal

    sys_root = tmp_path / "sys"
    (sys_root / "class/iscsi_session").mkdir(parents=True)

    def start():
        d = Daemon(None, sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False,
                   takeover=False, side_by_side=True)
        d.node_locks = NodeLocks(node_locks_path(str(tmp_path / "iscsictld.pid")))
        return d

    a, b = start(), start()
    made = []
    conn = "devices/platform/host{s}/session{s}/connection{s}:0/iscsi_connection/connection{s}:0"

    def identity(sid, target, address):  # what SET_PARAM gives a kernel session
        _w(sys_root, SESSION.format(h=sid, s=sid) + "/targetname", target)
        for attr in ("address", "persistent_address"):
            _w(sys_root, conn.format(s=sid) + "/" + attr, address)

    async def establish(d, sid, node, initiator_name, at_boot=False):  # a login: 0.3 s, then the kernel's
        made.append(sid)
        await asyncio.sleep(0.3)
        isid = d.isids.allocate()
        identity(sid, T, "127.0.0.1")  # (no isid: iscsi_tcp does not show it)
        d._manage(ks.KernelSession(sid=sid, host_no=sid, cid=0, node=node, isid=isid, tsih=5,
                                   params=None, current=Portal("127.0.0.1", 3260, 1)))
        return sid
    a._establish = lambda *args: establish(a, 1, *args)
    b._establish = lambda *args: establish(b, 2, *args)
    rec = {"node.name": T, "node.conn[0].address": "127.0.0.1", "node.tpgt": "1"}

    async def main():
        async def later():
            await asyncio.sleep(0.05)
            return await b._login_one(rec, "iqn.2026-11.x:init")
        return await asyncio.gather(a._login_one(rec, "iqn.2026-11.x:init"), later())

    # b started while a's login was under way: a's kernel session half-made, adopted so
    add_session(sys_root, 1, 1, T, "127.0.0.1", {0: "sda"})
    identity(1, *half_set)
    b._adopt()
    assert b.sessions[1].node.key != (T, "127.0.0.1", 3260, "default")
    first, second = asyncio.run(main())
    assert first["ok"] and first["sids"] == [1] and made == [1], (first, second)
    assert (second["ok"], second["code"]) == (False, 15), second
    assert "1 session requested, but 1 already present" in second["message"]
    assert b.sessions[1].adopted and b.sessions[1].isid == a.sessions[1].isid
    b.isids.release(b.sessions[1].isid)  # adopted again: its ISID reserved once, not twice
    assert len(b.isids) == 0
    for d in (a, b):
        d.node_locks.close()
        if d._journal_fd is not None:
            os.close(d._journal_fd)


def test_iscsictl_starts_side_by_side_never_offer_one_isid(tmp_path):
    """iscsictl-starts side by side whose PID-spaced qualifiers meet (equal PIDs in two
    PID namespaces; here one process) offer different ISIDs: one a login of another
    offers is held in the node locks' file until its session is gone or its process
    ends, and one the state journal holds for a session the kernel shows is skipped once
    its process has ended (the kernel does not show a software session's ISID).  Before,
    the second start's login offered the first's ISID, and to one portal group through
    another path it reinstated the first's session (closed it)."""
    from iscsictl.daemon import kernel_session as ks
    from iscsictl.daemon.instance import NodeLocks, node_locks_path
    from iscsictl.protocol.portal import Portal

    sys_root = tmp_path / "sys"
    (sys_root / "class/iscsi_session").mkdir(parents=True)
    started = []

    def start():
        d = Daemon(None, sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False,
                   takeover=False, side_by_side=True)
        d.node_locks = NodeLocks(node_locks_path(str(tmp_path / "iscsictld.pid")))
        started.append(d)
        return d

    try:
        a, b = start(), start()
        first = a.isids.allocate()  # a's login under way, nothing of it saved yet
        second = b.isids.allocate()
        assert second != first
        # a's login done (its session in the kernel, its ISID journaled), then its process
        # ended (its locks with it)
        add_session(sys_root, 1, 1, T, "127.0.0.1", {})
        a._manage(ks.KernelSession(
            sid=1, host_no=1, cid=0, node=ks.NodeTarget(T, "127.0.0.1", 3260, 1, "default",
                                                        "tcp", {}),
            isid=first, tsih=3, params=None, current=Portal("127.0.0.1", 3260, 1)))
        a.node_locks.close()
        c = start()
        third = c.isids.allocate()
        assert third not in (first, second)
        b.isids.release(second)  # b's login failed: its ISID is free again
        assert start().isids.allocate() == second
    finally:
        for d in started:
            d.node_locks.close()
            if d._journal_fd is not None:
                os.close(d._journal_fd)


def _offered_isid(d, monkeypatch, target, address):
    """The ISID ``d``'s next login to ``target`` at ``address`` (portal group 1) offers:
    ks.establish replaced by one that records it and makes a session."""
    import asyncio

    from iscsictl.daemon import kernel_session as ks
    from iscsictl.protocol.portal import Portal

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_kernel import transport_in_sysfs

    offered = []

    async def establish(nl, handle, node, initiator_name, isid, *args, **kw):
        offered.append(isid)
        return ks.KernelSession(sid=100 + len(offered), host_no=100, cid=0, node=node,
                                isid=isid, tsih=9, params=None,
                                current=Portal(address, 3260, 1))
    monkeypatch.setattr(ks, "establish", establish)
    transport_in_sysfs(d.sysfs.root, "tcp", 3)
    d.nl = object()  # not used: establish is replaced
    rec = {"node.name": target, "node.conn[0].address": address, "node.tpgt": "1",
           "node.session.scan": "manual"}

    async def main():
        assert (await d._login_one(rec, "iqn.2026-11.x:init"))["ok"]
        if d._state_write is not None:
            d._state_write.cancel()
    asyncio.run(main())
    return offered[-1]


def _sharing_an_isid(tmp_path):
    """A daemon (not started) beside two sessions that share an ISID once adopted: 4 (to
    T, no saved ISID: open-iscsi's guess, 00023d000004) and 9 (to another target, saved
    with 00023d000004)."""
    import json

    sys_root = tmp_path / "sys"
    (sys_root / "class/iscsi_session").mkdir(parents=True)
    add_session(sys_root, 4, 4, T, "10.0.0.1", {})
    add_session(sys_root, 9, 9, "iqn.2003-01.org.example:two", "10.0.0.2", {})
    (tmp_path / "st").mkdir()
    (tmp_path / "st/sessions.json").write_text(json.dumps({"9": {"isid": "00023d000004",
                                                                "tsih": 7}}))
    return Daemon(None, sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
                  db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)


def test_an_isid_two_adopted_sessions_share_stays_taken_while_one_lives(tmp_path,
                                                                         monkeypatch):
    """Two adopted sessions to two targets with one ISID (legal: one made by iscsistart,
    open-iscsi's 00023d + its sid, the other saved with that ISID): when one goes, the
    ISID stays taken for the other.  Before, its release freed the qualifier, and a later
    login to the other's portal group offered it: the target reinstated (closed) that
    live session (session 58's identity review)."""
    from iscsictl.netlink import DestroySession
    from iscsictl.protocol.names import ISID

    d = _sharing_an_isid(tmp_path)
    try:
        d._adopt()
        shared = ISID(bytes.fromhex("00023d000004"))
        assert d.sessions[4].isid == d.sessions[9].isid == shared
        d._on_event(DestroySession(104, None, host_no=4, sid=4))
        assert 4 not in d.sessions and 9 in d.sessions
        offered = [_offered_isid(d, monkeypatch, "iqn.2003-01.org.example:two",
                                 f"10.0.1.{n}") for n in range(1, 5)]
        assert shared not in offered
    finally:
        if d._journal_fd is not None:
            os.close(d._journal_fd)


def test_an_adopted_session_without_a_saved_isid_takes_the_one_sysfs_shows(tmp_path):
    """A session with no saved entry whose sysfs shows its ISID (a driver that shows it:
    iscsi_tcp and iSER do not, the fixture's host writes it as one would) is adopted with
    that ISID, not open-iscsi's 00023d + sid guess (its relogin would have been another I_T
    nexus); one all zero is none."""
    from iscsictl.protocol.names import ISID

    sys_root = tmp_path / "sys"
    add_session(sys_root, 5, 5, T, "10.0.0.1", {})
    _w(sys_root, SESSION.format(h=5, s=5) + "/isid", "00023d000001")
    d = Daemon(None, sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    add_session(sys_root, 6, 6, T, "10.0.0.2", {})
    _w(sys_root, SESSION.format(h=6, s=6) + "/isid", "000000000000")
    d._adopt()
    assert d.sessions[5].isid == ISID(bytes.fromhex("00023d000001"))
    assert d.sessions[6].isid == ISID(bytes.fromhex("00023d000006"))  # the guess


def _logins_that_fail(tmp_path, monkeypatch, side_by_side, tried=None):
    """A daemon (not started; tcp in its sysfs) each of whose logins fails: ks.establish
    replaced by a connect that times out (8, retryable; ``tried``, an asyncio.Event, set
    at each attempt)."""
    from iscsictl.daemon import kernel_session as ks
    from iscsictl.daemon.errors import SessionError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_kernel import transport_in_sysfs

    async def establish(*args, **kw):
        if tried is not None:
            tried.set()
        raise SessionError(8, "connect to 10.0.0.1:3260 timed out", retryable=True)
    monkeypatch.setattr(ks, "establish", establish)
    sys_root = tmp_path / "sys"
    (sys_root / "class/iscsi_session").mkdir(parents=True)
    transport_in_sysfs(str(sys_root), "tcp", 3)
    d = Daemon(None, sysfs_root=str(sys_root), state_dir=str(tmp_path / "st"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False,
               takeover=False, side_by_side=side_by_side)
    d.nl = object()  # not used: establish is replaced
    return d


@pytest.mark.parametrize("side_by_side", [False, True], ids=["iscsictld", "iscsictl-start"])
def test_a_failed_login_is_in_the_daemons_log(tmp_path, monkeypatch, caplog, side_by_side):
    """iscsictld's log says why a login failed, as iscsid's does: one not waited for (-W,
    the automatic logins) failed nowhere else (README review).  iscsictl-start prints it
    itself, once."""
    import asyncio
    import logging

    d = _logins_that_fail(tmp_path, monkeypatch, side_by_side)
    rec = {"node.name": T, "node.conn[0].address": "10.0.0.1", "node.tpgt": "1",
           "node.session.initial_login_retry_max": "1"}
    with caplog.at_level(logging.INFO, logger="iscsictl"):
        r = asyncio.run(d._login_one(rec, "iqn.2026-11.x:init"))
    assert (r["ok"], r["code"]) == (False, 8)
    said = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert said == ([] if side_by_side else [
        f"Could not login to [iface: default, target: {T}, portal: 10.0.0.1,3260]: connect "
        "to 10.0.0.1:3260 timed out (8 - connection timed out)"])


def test_a_login_cancelled_between_its_attempts_gives_its_isid_back(tmp_path, monkeypatch):
    """A login cancelled while it waits to try again (SIGTERM to an iscsictl-start, the
    daemon's stop) gives its ISID back, and side by side its lock byte (diff review: the
    wait is in the failed attempt's handler, whose sibling handler that released it never
    ran: the other starts skipped that ISID while this process lived)."""
    import asyncio

    from iscsictl.daemon.instance import ISID_BYTES, NodeLocks, node_locks_path

    tried = asyncio.Event()
    d = _logins_that_fail(tmp_path, monkeypatch, True, tried)
    d.node_locks = NodeLocks(node_locks_path(str(tmp_path / "iscsictld.pid")))
    rec = {"node.name": T, "node.conn[0].address": "10.0.0.1", "node.tpgt": "1",
           "node.session.initial_login_retry_max": "4"}

    async def main():
        task = asyncio.ensure_future(d._login_one(rec, "iqn.2026-11.x:init"))
        await tried.wait()
        await asyncio.sleep(0.05)  # in the wait before the next attempt
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    try:
        asyncio.run(main())
        assert len(d.isids) == 0
        assert [b for b in d.node_locks._held if b >= ISID_BYTES] == []
    finally:
        d.node_locks.close()
        if d._journal_fd is not None:
            os.close(d._journal_fd)


def test_a_logout_of_a_session_forgotten_meanwhile_releases_its_isid_once(tmp_path,
                                                                         monkeypatch):
    """Two adopted sessions share an ISID (two targets); the first is forgotten while its
    logout runs (the kernel's destroy event handled meanwhile, which releases it): the
    logout does not release it again, which freed it while the second still ran with it
    (diff review: nothing held the guard)."""
    import asyncio

    from iscsictl.daemon import kernel_session as ks
    from iscsictl.protocol.names import ISID

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_kernel import transport_in_sysfs

    d = _sharing_an_isid(tmp_path)
    transport_in_sysfs(d.sysfs.root, "tcp", 3)
    d.nl = object()

    async def logout(nl, handle, session, timeout, sysfs_root):
        d._forget(session, "destroyed by the kernel")  # (its event, handled meanwhile)
    monkeypatch.setattr(ks, "logout", logout)
    try:
        d._adopt()
        shared = ISID(bytes.fromhex("00023d000004"))

        async def main():
            r = await d._logout_session(d.sessions[4], {"sid": 4})
            if d._state_write is not None:
                d._state_write.cancel()
            return r
        assert asyncio.run(main())["ok"]
        assert 4 not in d.sessions and d.sessions[9].isid == shared
        assert len(d.isids) == 1  # still session 9's
        d.isids.release(shared)  # session 9's, the last
        assert len(d.isids) == 0
    finally:
        if d._journal_fd is not None:
            os.close(d._journal_fd)
