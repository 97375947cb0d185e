"""``-m session`` rendering from a fixture sysfs tree, and node/session login and
logout messages through a fake daemon (the real kernel path runs in vm-tests/)."""

import io
import json
import os
import threading
from pathlib import Path

import pytest

from iscsictl.cli.main import run
from iscsictl.cli.output import Output
from iscsictl.ipc import IPC_VERSION

T = "iqn.2003-01.org.example:t1"


def _w(root: Path, rel: str, value: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(value + "\n")


def _link(root: Path, cls: str, rel: str) -> None:
    p = root / "class" / cls
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(os.path.relpath(root / rel, p.parent))


def add_session(root: Path, sid: int, host: int, target: str, address: str, disks: dict) -> None:
    dev = f"devices/platform/host{host}/session{sid}"
    s = f"{dev}/iscsi_session/session{sid}"
    for k, v in dict(targetname=target, tpgt="1", initiatorname="iqn.2026-11.x:init",
                     ifacename="default", state="LOGGED_IN", creator="4242", recovery_tmo="120",
                     abort_tmo="15", lu_reset_tmo="30", tgt_reset_tmo="30", first_burst_len="65536",
                     max_burst_len="262144", immediate_data="1", initial_r2t="0",
                     max_outstanding_r2t="1", username="(null)").items():
        _w(root, f"{s}/{k}", v)
    c = f"{dev}/connection{sid}:0/iscsi_connection/connection{sid}:0"
    for k, v in dict(address=address, port="3260", persistent_address=address,
                     persistent_port="3260", header_digest="1", data_digest="0",
                     max_recv_dlength="262144", max_xmit_dlength="8192", state="up").items():
        _w(root, f"{c}/{k}", v)
    _w(root, f"devices/platform/host{host}/iscsi_host/host{host}/ipaddress", "127.0.0.1")
    _w(root, f"devices/platform/host{host}/scsi_host/host{host}/proc_name", "iscsi_tcp")
    _w(root, f"devices/platform/host{host}/scsi_host/host{host}/state", "running")
    for lun, disk in disks.items():
        lun_dir = f"{dev}/target{host}:0:0/{host}:0:0:{lun}"
        _w(root, f"{lun_dir}/state", "running")
        (root / lun_dir / "block" / disk).mkdir(parents=True)
    _link(root, f"iscsi_session/session{sid}", s)
    _link(root, f"iscsi_connection/connection{sid}:0", c)
    _link(root, f"iscsi_host/host{host}", f"devices/platform/host{host}/iscsi_host/host{host}")
    _link(root, f"scsi_host/host{host}", f"devices/platform/host{host}/scsi_host/host{host}")


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    root = tmp_path / "sys"
    _w(root, "module/scsi_transport_iscsi/version", "2.0-870")
    (root / "class/iscsi_session").mkdir(parents=True)
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", str(root))
    monkeypatch.setenv("ISCSICTL_SOCKET", str(tmp_path / "no-daemon.sock"))
    for name in ("ISCSICTL_DB_ROOT", "ISCSICTL_CONFIG_ROOT"):  # never the host's /etc/iscsi
        monkeypatch.setenv(name, str(tmp_path / "etc"))
    return root


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    rc = run(list(args), Output(out, err))
    return rc, out.getvalue(), err.getvalue()


def test_no_sessions_is_21(sysfs):
    assert cli("-m", "session") == (21, "", "iscsictl: No active sessions.\n")


def test_an_unknown_operation_is_refused_before_anything_is_done(sysfs, db):
    """An ``-o`` word iscsiadm does not know, first of the ``-o``s, is 7 and nothing is done,
    as iscsiadm's option loop refuses it (main, ``case 'o'``: str_to_op); after a known
    one it is ignored, as there (before: -L/-U/-R/-s and iface's -C ping acted first)."""
    assert cli("-m", "node", "-o", "new", "-T", T, "-p", "10.0.0.1")[0] == 0
    add_session(sysfs, 1, 0, T, "10.0.0.1", {0: "sda"})
    for args in (["-m", "node", "-L", "all", "-o", "logn"], ["-m", "node", "-o", "bogus",
                 "-U", "all"], ["-m", "node", "-o", "bogus", "-R"], ["-m", "session", "-o",
                 "bogus", "-s"], ["-m", "iface", "-I", "default", "-C", "ping", "-a",
                 "10.0.0.1", "-o", "bogus"], ["-o", "x", "-o", "show", "-m", "node"]):
        rc, out, err = cli(*args)
        assert (rc, out) == (7, ""), args
        assert err == f"iscsictl: can not recognize operation: '{args[args.index('-o') + 1]}'\n"
    rc, out, err = cli("-m", "node", "-o", "show", "-o", "bogus", "-T", T)
    assert rc == 0 and f"node.name = {T}" in out


def test_help_wins_over_k_and_no_mode_says_so_on_stderr_only(sysfs):
    """``-h`` with ``-k 0`` prints the help and stops no daemon (iscsiadm's option loop
    exits at ``-h``, before kill_iscsid; before: the daemon was asked to stop), and no
    ``-m`` is one line on stderr and 7, stdout left empty (iscsiadm's usage(ISCSI_ERR_INVAL);
    before: the whole usage on stdout)."""
    rc, out, err = cli("-k", "0", "-h")
    assert (rc, err) == (0, "") and out.startswith("usage: iscsictl")
    rc, out, err = cli("-d", "1")
    assert (rc, out) == (7, "") and err.startswith("iscsictl: no mode specified") \
        and err.count("\n") == 1


def test_a_rescan_that_waits_in_the_kernel_holds_up_no_other_session(sysfs):
    """``-R`` of two sessions, the first one's device rescan blocked in the kernel (a FIFO
    here: before Linux 6.6 a blocked device's rescan waits for the relogin or the
    replacement timeout): the second is rescanned and its host scanned meanwhile, as
    iscsiadm's for_each_session forks a child for each (before: only after the first)."""
    import time
    add_session(sysfs, 1, 3, T, "10.0.0.1", {0: "sda"})
    add_session(sysfs, 2, 4, T, "10.0.0.2", {0: "sdb"})
    for h in (3, 4):
        _w(sysfs, f"devices/platform/host{h}/scsi_host/host{h}/scan", "")
    blocked = sysfs / "devices/platform/host3/session1/target3:0:0/3:0:0:0/rescan"
    os.mkfifo(blocked)
    other = sysfs / "devices/platform/host4/session2/target4:0:0/4:0:0:0/rescan"
    _w(sysfs, "devices/platform/host4/session2/target4:0:0/4:0:0:0/rescan", "")
    host4 = sysfs / "devices/platform/host4/scsi_host/host4/scan"
    result = []
    t = threading.Thread(target=lambda: result.append(cli("-m", "session", "-R")))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not (other.read_text() == "1" and host4.read_text() == "- - -"):
            assert time.monotonic() < deadline, "session 2 waited for session 1's rescan"
            time.sleep(0.05)
        assert not result  # session 1's rescan still waits
    finally:
        fd = os.open(blocked, os.O_RDONLY)
        assert os.read(fd, 10) == b"1"
        os.close(fd)
        t.join(10)
    rc, out, _ = result[0]
    assert rc == 0 and out.count("Rescanning session") == 2


def test_nothing_found_with_json_is_an_empty_listing(sysfs, db):
    """``--json`` that finds nothing prints ``[]`` with the text's 21, in every mode (before:
    session, host, fw and node printed nothing, discovery ``[]``: ``| jq`` saw no input)."""
    for args in (["-m", "session"], ["-m", "session", "-P", "3"], ["-m", "host"],
                 ["-m", "node"], ["-m", "node", "-T", "iqn.x:none", "-o", "show"],
                 ["-m", "node", "-T", "iqn.x:none", "-u"], ["-m", "discovery"], ["-m", "fw"]):
        rc, out, err = cli("--json", *args)
        assert (rc, json.loads(out)) == (21, []), args
    assert cli("-m", "node") == (21, "", "iscsictl: No records found\n")  # text unchanged


def test_flat_listing_in_alphasort_order(sysfs):
    add_session(sysfs, 2, 3, T, "127.0.0.1", {0: "sdb"})
    add_session(sysfs, 10, 11, T, "10.0.0.5", {0: "sdc"})
    rc, out, _ = cli("-m", "session")
    assert rc == 0
    # "session10" sorts before "session2", as libopeniscsiusr's scandir(alphasort) does
    assert out == (f"tcp: [10] 10.0.0.5:3260,1 {T} (non-flash)\n"
                   f"tcp: [2] 127.0.0.1:3260,1 {T} (non-flash)\n")


def test_luns_are_listed_in_their_directories_alphasort_order(sysfs):
    """iscsiadm walks target<H>:0:0/ with scandir(alphasort): LUN 10 and 11 before LUN 2
    (seen in the VM with 12 LUNs); the listing was in numeric order."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {n: f"sd{chr(ord('a') + n)}" for n in range(12)})
    rc, out, _ = cli("-m", "session", "-P", "3")
    luns = [line.rsplit(" ", 1)[1] for line in out.splitlines() if " Lun: " in line]
    assert rc == 0 and luns == ["0", "1", "10", "11", "2", "3", "4", "5", "6", "7", "8", "9"]


def test_a_connection_in_recovery_shows_its_persistent_portal_and_bracketed_default(sysfs):
    """While a connection has no socket iscsi_tcp cannot tell its address, port, or its host's
    address (ENOTCONN: unreadable here): the persistent portal stands in for the current one
    and the iface address is "[default]", as iscsiadm (libopeniscsiusr) prints them; it was
    "Current Portal: []:-1,1" and a bare "default"."""
    add_session(sysfs, 2, 0, T, "127.0.0.1", {0: "sda"})
    conn = sysfs / "devices/platform/host0/session2/connection2:0/iscsi_connection/connection2:0"
    (conn / "address").unlink()
    (conn / "port").unlink()
    (sysfs / "devices/platform/host0/iscsi_host/host0/ipaddress").unlink()
    rc, out, _ = cli("-m", "session", "-r", "2", "-P", "1")
    assert rc == 0
    assert "\tCurrent Portal: 127.0.0.1:3260,1\n\tPersistent Portal: 127.0.0.1:3260,1\n" in out
    assert "\t\tIface IPaddress: [default]\n" in out
    assert cli("-m", "session")[1] == f"tcp: [2] 127.0.0.1:3260,1 {T} (non-flash)\n"


def test_session_messages_name_the_current_port_as_iscsiadm(sysfs, fake_daemon):
    """After a redirect (persistent 127.0.0.1:3270, current 127.0.0.2:3260) iscsiadm's
    "[sid: N, target: T, portal: A,P]" is the persistent address with the current port
    (session_info's persistent_address and port): -R, the logout lines (and -s's)."""
    add_session(sysfs, 2, 0, T, "127.0.0.1", {0: "sda"})
    conn = sysfs / "devices/platform/host0/session2/connection2:0/iscsi_connection/connection2:0"
    (conn / "persistent_port").write_text("3270\n")
    (conn / "address").write_text("127.0.0.2\n")
    desc = f"[sid: 2, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"logout": [{"sid": 2, "ok": True}]}
    assert cli("-m", "session", "-r", "2", "-R")[1].startswith(f"Rescanning session {desc}\n")
    rc, out, _ = cli("-m", "session", "-r", "2", "-u")
    assert rc == 0 and out == f"Logging out of session {desc}\nLogout of {desc} successful.\n"


def test_safe_asks_the_daemon_to_keep_sessions_in_use_whatever_safe_logout_says(
        sysfs, fake_daemon):
    """``--safe`` (the shutdown unit's logout): the daemon is asked to refuse a session
    whose disks are mounted or swap, iscsid.safe_logout or not; with ``--force``, 7."""
    add_session(sysfs, 2, 0, T, "127.0.0.1", {0: "sda"})
    fake_daemon.answers = {"logout": [{"sid": 2, "ok": False, "code": 28},
                                      {"sid": 2, "ok": True}]}
    rc, _, err = cli("-m", "node", "--logoutall=all", "--safe")
    assert rc == 28 and "Could not logout of [sid: 2" in err
    assert fake_daemon.calls[-1] == ("logout", {"sids": [2], "force": False, "safe": True})
    assert cli("-m", "session", "-r", "2", "-u")[0] == 0
    assert not fake_daemon.calls[-1][1]["safe"]  # not asked: iscsid.safe_logout decides
    rc, _, err = cli("-m", "session", "-u", "--safe", "--force")
    assert (rc, err) == (7, "iscsictl: --force and --safe: one or the other\n")


def test_sessions_and_their_records_are_matched_by_host_not_text(sysfs, fake_daemon):
    """iscsiadm's __iscsi_match_session compares addresses with iscsi_addr_match (the same
    host once resolved): ``-m node -u -p [FD00:0::1]`` logs out fd00::1's session, and a
    record written ``FD00::1`` is the session's (kept by ``-o delete``, 15).  Before: text
    compared, no session found (21), the record deleted under the session."""
    add_session(sysfs, 2, 0, T, "fd00::1", {0: "sda"})
    assert cli("-m", "node", "-T", T, "-p", "[FD00::1]", "-o", "new")[0] == 0
    rc, _, err = cli("-m", "node", "-T", T, "-p", "[FD00::1]", "-o", "delete")
    assert rc == 15 and "a session is using it" in err
    fake_daemon.answers = {"logout": [{"sid": 2, "ok": True}]}
    rc, out, _ = cli("-m", "node", "-T", T, "-p", "[FD00:0::1]", "-u")
    assert rc == 0 and "Logout of [sid: 2," in out
    assert fake_daemon.calls[-1][0] == "logout"


def test_a_target_name_that_is_not_utf8_is_its_records_and_printed_as_its_bytes(sysfs, db):
    """sysfs names were decoded with U+FFFD where the node DB keeps the bytes: a session's
    record was then not found (-m session -r 1: 21) and -m node -o delete deleted the record
    the session uses (iscsiadm: 15); the listing printed U+FFFD for iscsiadm's bytes."""
    from iscsictl.db.store import NodeDB

    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    (sysfs / "devices/platform/host0/session1/iscsi_session/session1/targetname").write_bytes(
        T.encode() + b"\xff\n")
    name = T + "\udcff"  # the byte as the DB holds it (surrogateescape)
    NodeDB(str(db), str(db)).create_node(name, "127.0.0.1", 3260, 1, "default")
    assert cli("-m", "session")[1] == f"tcp: [1] 127.0.0.1:3260,1 {name} (non-flash)\n"
    rc, out, _ = cli("-m", "session", "-r", "1")
    assert rc == 0 and f"node.name = {name}\n" in out
    rc, _, err = cli("-m", "node", "-o", "delete")
    assert rc == 15 and "a session is using it" in err


def test_a_logout_with_an_operation_is_refused_before_anything_and_rescan_wins(sysfs,
                                                                              fake_daemon):
    """iscsiadm's exec_node_op: -u with -o is 7 before any logout (before: every session
    logged out by -m session -u -o show), -r N -u -o new is "both login and logout", and a
    rescan (or -s) is made whatever -o says (before: 7)."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    for args, said in ((["-u", "-o", "show"], "Login/logout and op passed in"),
                       (["-r", "1", "-u", "-o", "show"], "Login/logout and op passed in"),
                       (["-r", "1", "-u", "-o", "new"], "Both login and logout passed in")):
        rc, _, err = cli("-m", "session", *args)
        assert (rc, err) == (7, f"iscsictl: Invalid parameters. {said}\n"), args
    assert fake_daemon.calls == []
    host = sysfs / "devices/platform/host0"
    for f in (host / "scsi_host/host0/scan", host / "session1/target0:0:0/0:0:0:0/rescan"):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("")
    for args in (["-r", "1", "-R", "-o", "new"], ["-u", "-R"], ["-u", "-R", "-o", "show"]):
        (host / "scsi_host/host0/scan").write_text("")
        rc, out, err = cli("-m", "session", *args)
        assert rc == 0 and out.startswith("Rescanning session [sid: 1,"), (args, err)
        assert (host / "scsi_host/host0/scan").read_text() == "- - -"
    assert fake_daemon.calls == []  # -u with -R: a rescan, no logout (as iscsiadm)


def test_stats_print_the_extended_header_only_with_custom_counters(sysfs, monkeypatch):
    """iscsiadm's session_stats prints "iSCSI Extended:" only when the driver has custom
    counters (iscsi_tcp's four; iSER, bnx2i, be2iscsi and cxgbi have none)."""
    from iscsictl.cli import session_cmd

    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    base = {"txdata_octets": 1}
    for custom, header in (([["tx_sendpage_failures", 0]], True), ([], False)):
        monkeypatch.setattr(session_cmd, "_call", lambda op, **kw: {
            "stats": {**base, "custom": custom}})
        rc, out, _ = cli("-m", "session", "-r", "1", "-s")
        assert rc == 0 and ("iSCSI Extended:\n" in out) is header
        assert out.endswith("\ttx_sendpage_failures: 0\n" if header else "\ttimeout_err: 0\n")


def test_stats_in_json_keep_the_sessions_read_before_a_failure(sysfs, monkeypatch):
    """Two sessions, the second's statistics unreadable: the text has the first's counters
    and the failure's exit code; so has --json (before: nothing at all)."""
    import json

    from iscsictl.cli import errors as E
    from iscsictl.cli import session_cmd

    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {0: "sdb"})

    def stats(op, sid):
        if sid == 2:
            raise E.CliError("session 2: the kernel has no statistics", 9)
        return {"stats": {"txdata_octets": 7}}
    monkeypatch.setattr(session_cmd, "_call", stats)
    rc, out, err = cli("-m", "session", "-s")
    assert rc == 9 and out.startswith("Stats for session [sid: 1,") and "session 2" in err
    rc, out, err = cli("--json", "-m", "session", "-s")
    assert rc == 9 and json.loads(out) == [{"sid": 1, "txdata_octets": 7}]


def test_r_values_exit_as_iscsiadms_get_sid_from_path(sysfs):
    """-r: an id above 0 as strtol reads it, else a path up which a session<N> is found;
    anything else exits 1 ("... is an invalid session ID or path"), as iscsiadm (it was 7,
    or 22 for 0, and a bare "session1" named session 1).  A half-made session (no target
    name yet) is not found (22), and -P 4 is looked at after the sessions (21, 22)."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    path = sysfs / "class/iscsi_session/session1"
    for text in ("abc", "1x", "-1", "", "0", "session1", "4294967297",  # not wrapped to 1
                 str(sysfs / "class/iscsi_session/s9")):
        assert cli("-m", "session", "-r", text, "-P", "1") == (
            1, "", f"iscsictl: {text} is an invalid session ID or path\n"), text
    assert cli("-m", "session", "-r", str(path / "targetname"))[0] == 1  # not a directory
    for text in (" 1", "+1", str(path), str(sysfs / "devices/platform/host0/session1/target0:0:0")):
        assert cli("-m", "session", "-r", text, "-P", "1")[0] == 0, text
    assert cli("-m", "session", "-r", str(sysfs / "class")) == (  # no session<N> in it
        7, "", f"iscsictl: Unable to find sid in path {sysfs / 'class'}\n"
        f"iscsictl: invalid sid '{sysfs / 'class'}'\n")  # iscsiadm's two lines
    assert cli("-m", "session", "-r", "9", "-P", "1") == (  # none: iscsiadm's two lines
        22, "", "iscsictl: could not read session targetname: 5\n"
        "iscsictl: Could not get session info for sid 9\n")
    (path / "targetname").write_text("(null)\n")  # a login between CREATE_CONN and SET_PARAM
    assert cli("-m", "session", "-r", "1", "-P", "1") == (
        22, "", "iscsictl: Could not get session info for sid 1\n")
    assert cli("-m", "session", "-r", "2", "-P", "4")[0] == 22
    (path / "targetname").write_text(T + "\n")
    assert cli("-m", "session", "-P", "4")[0] == 7


def test_print_level_4_without_sessions_is_21(sysfs):
    assert cli("-m", "session", "-P", "4") == (21, "", "iscsictl: No active sessions.\n")


def test_print_level_3_matches_iscsiadm_2_1_8(sysfs):
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda", 1: "sdb"})
    rc, out, _ = cli("-m", "session", "-P", "3")
    assert rc == 0
    assert out == (
        "iSCSI Transport Class version 2.0-870\n"
        "version 2.1.8\n"
        f"Target: {T} (non-flash)\n"
        "\tCurrent Portal: 127.0.0.1:3260,1\n"
        "\tPersistent Portal: 127.0.0.1:3260,1\n"
        "\t\t**********\n\t\tInterface:\n\t\t**********\n"
        "\t\tIface Name: default\n"
        "\t\tIface Transport: tcp\n"
        "\t\tIface Initiatorname: iqn.2026-11.x:init\n"
        "\t\tIface IPaddress: 127.0.0.1\n"
        "\t\tIface HWaddress: default\n"
        "\t\tIface Netdev: default\n"
        "\t\tSID: 1\n"
        "\t\tiSCSI Connection State: Unknown\n"
        "\t\tiSCSI Session State: LOGGED_IN\n"
        "\t\tInternal iscsid Session State: Unknown\n"
        "\t\t*********\n\t\tTimeouts:\n\t\t*********\n"
        "\t\tRecovery Timeout: 120\n"
        "\t\tTarget Reset Timeout: 30\n"
        "\t\tLUN Reset Timeout: 30\n"
        "\t\tAbort Timeout: 15\n"
        "\t\t*****\n\t\tCHAP:\n\t\t*****\n"
        "\t\tusername: <empty>\n"
        "\t\tpassword: ********\n"
        "\t\tusername_in: <empty>\n"
        "\t\tpassword_in: ********\n"
        "\t\t************************\n\t\tNegotiated iSCSI params:\n\t\t************************\n"
        "\t\tHeaderDigest: CRC32C\n"
        "\t\tDataDigest: None\n"
        "\t\tMaxRecvDataSegmentLength: 262144\n"
        "\t\tMaxXmitDataSegmentLength: 8192\n"
        "\t\tFirstBurstLength: 65536\n"
        "\t\tMaxBurstLength: 262144\n"
        "\t\tImmediateData: Yes\n"
        "\t\tInitialR2T: No\n"
        "\t\tMaxOutstandingR2T: 1\n"
        "\t\t************************\n\t\tAttached SCSI devices:\n\t\t************************\n"
        "\t\tHost Number: 0\tState: running\n"
        "\t\tscsi0 Channel 00 Id 0 Lun: 0\n"
        "\t\t\tAttached scsi disk sda\t\tState: running\n"
        "\t\tscsi0 Channel 00 Id 0 Lun: 1\n"
        "\t\t\tAttached scsi disk sdb\t\tState: running\n")


def test_second_session_same_target_prints_target_once(sysfs):
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {})
    rc, out, _ = cli("-m", "session", "-P", "1")
    assert rc == 0 and out.count(f"Target: {T}") == 1 and out.count("Current Portal") == 2


def test_a_host_with_a_hardware_address_is_listed_as_iscsiadm_does(sysfs):
    """A session through an iface bound by MAC (iscsid/iscsictld set the host's hwaddress
    and netdev): iscsiadm (libopeniscsiusr) names its iface <transport>.<MAC>.ipv4.0 in the
    listing; the one bound by name keeps its ifacename.  --json keeps the real names."""
    add_session(sysfs, 1, 0, T, "10.99.0.1", {})
    add_session(sysfs, 2, 1, T, "10.99.1.1", {})
    _w(sysfs, "class/iscsi_session/session1/ifacename", "path0")
    _w(sysfs, "class/iscsi_host/host0/hwaddress", "52:54:00:aa:bb:01")
    _w(sysfs, "class/iscsi_host/host0/netdev", "(null)")
    _w(sysfs, "class/iscsi_session/session2/ifacename", "path1")
    _w(sysfs, "class/iscsi_host/host1/netdev", "dum1")
    rc, out, _ = cli("-m", "session", "-P", "1")
    assert rc == 0
    assert "\t\tIface Name: tcp.52:54:00:aa:bb:01.ipv4.0\n" \
           "\t\tIface Transport: tcp\n" in out
    assert "\t\tIface HWaddress: 52:54:00:aa:bb:01\n\t\tIface Netdev: default\n" in out
    assert "\t\tIface Name: path1\n" in out
    assert "\t\tIface HWaddress: default\n\t\tIface Netdev: dum1\n" in out
    data = json.loads(cli("-m", "session", "--json")[1])
    assert [d["iface"]["name"] for d in data] == ["path0", "path1"]
    # the target and portal as -m node --json names them (it was "targetname", no portal)
    assert [(d["target"], d["portal"]) for d in data] == [
        (T, f"{d['address']}:{d['port']}") for d in data] and "targetname" not in data[0]


def test_sid_filter_and_unknown_sid(sysfs):
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {})
    rc, out, _ = cli("-m", "session", "-r", "1", "-P", "1")
    assert rc == 0 and "SID: 1\n" in out and "SID: 2" not in out
    assert json.loads(cli("-m", "session", "-r", "2", "--json")[1])[0]["sid"] == 2
    for args in (["-r", "5"], ["-r", "5", "-P", "1"], ["-r", "5", "-o", "show"],
                 ["-r", "5", "-o", "nonpersistent"], ["-r", "5", "-R"], ["-r", "5", "-u"]):
        rc, _, err = cli("-m", "session", *args)  # iscsiadm: its sysfs lookup failed (22)
        assert rc == 22 and "Could not get session info for sid 5" in err
    rc, _, err = cli("-m", "session", "-r", "x5")
    assert rc == 1  # iscsiadm's exit(1): neither an id nor a path


def test_a_session_being_set_up_is_not_listed(sysfs):
    """Right after CREATE_SESSION (iscsictld makes it while the Login is on the wire) a
    session has no connection and "(null)" names: iscsiadm (libopeniscsiusr) skips it,
    and so does every listing here (checked in the VM against iscsiadm 2.1.8)."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, "(null)", "127.0.0.2", {})
    (sysfs / "class/iscsi_connection/connection2:0").unlink()
    rc, out, _ = cli("-m", "session")
    assert (rc, out) == (0, f"tcp: [1] 127.0.0.1:3260,1 {T} (non-flash)\n")
    assert [v["sid"] for v in json.loads(cli("-m", "session", "--json")[1])] == [1]
    rc, _, err = cli("-m", "session", "-r", "2", "-P", "1")
    assert rc == 22 and "Could not get session info for sid 2" in err
    (sysfs / "class/iscsi_connection/connection1:0").unlink()
    assert cli("-m", "session") == (21, "", "iscsictl: No active sessions.\n")


@pytest.fixture
def db(tmp_path, monkeypatch):
    root = tmp_path / "db"
    root.mkdir()
    (root / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.x:init\n")
    monkeypatch.setenv("ISCSICTL_DB_ROOT", str(root))
    monkeypatch.setenv("ISCSICTL_CONFIG_ROOT", str(root))
    return root


def test_r_reaches_a_record_whose_address_is_a_host_name_without_a_dot(sysfs, db):
    """A session whose persistent address is a host name with no dot ('localhost', a
    short name): -r hands it to node mode as it is (iscsiadm's idbm_create_rec), not as
    the listing prints it ('[localhost]:3260', which -p refused: 7)."""
    add_session(sysfs, 3, 2, T, "localhost", {})
    assert cli("-m", "node", "-T", T, "-p", "localhost:3260", "-o", "new")[0] == 0
    rc, out, err = cli("-m", "session", "-r", "3")
    assert (rc, err) == (0, "") and "node.conn[0].address = localhost\n" in out
    rc, _, err = cli("-m", "session", "-r", "3", "-o", "update", "-n", "node.startup",
                     "-v", "automatic")
    assert (rc, err) == (0, "")
    assert "node.startup = automatic\n" in cli("-m", "node", "-T", T, "-p", "localhost",
                                                "-o", "show")[1]


def test_a_sessions_record_shown_is_the_one_with_its_address_to_the_letter(sysfs, db):
    """Two records of one IPv6 host written two ways: -m session -r SID shows the one whose
    address is the session's text, as iscsiadm's print_nodes_config (strcmp) shows one; it
    showed both.  An update still reaches every record of that host, as in both tools."""
    add_session(sysfs, 1, 0, T, "fd00::2", {})
    for portal in ("[fd00::2]:3260,1", "[FD00:0::2]:3260,1"):
        assert cli("-m", "node", "-T", T, "-p", portal, "-o", "new")[0] == 0
    rc, out, err = cli("-m", "session", "-r", "1")
    assert (rc, err) == (0, "") and out.count("# BEGIN RECORD") == 1
    assert "node.conn[0].address = fd00::2\n" in out
    rc, _, err = cli("-m", "session", "-r", "1", "-o", "update", "-n", "node.startup",
                     "-v", "automatic")
    assert (rc, err) == (0, "")
    assert cli("-m", "node", "-T", T, "-p", "[fd00::2]", "-o", "show")[1].count(
        "node.startup = automatic\n") == 2


def test_sid_without_print_level_is_the_sessions_node_record(sysfs, db):
    """iscsiadm -m session -r SID (level <= 0, or any -o) drops down to node mode with the
    session's target, persistent portal and iface: the record, not the session line."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {})
    rc, _, err = cli("-m", "session", "-r", "1")
    assert (rc, err) == (21, "iscsictl: No records found\n")  # the session's record is gone
    for portal in ("127.0.0.1", "127.0.0.2:3260,1"):
        assert cli("-m", "node", "-T", T, "-p", portal, "-o", "new")[0] == 0
    for args in (["-r", "1"], ["-r", "1", "-P", "0"],
                 ["-r", str(sysfs / "class/iscsi_session/session1"), "-o", "show"],
                 ["-r", "1", "-P", "2", "-o", "show"]):
        rc, out, _ = cli("-m", "session", *args)
        assert rc == 0 and out.startswith("# BEGIN RECORD"), args
        assert out == cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "show")[1]
    # update and delete reach that record only
    rc, out, err = cli("-m", "session", "-r", "2", "-o", "update",
                       "-n", "node.session.timeo.replacement_timeout", "-v", "17")
    assert (rc, err) == (0, "")
    shown = {p: cli("-m", "node", "-T", T, "-p", p, "-o", "show")[1]
             for p in ("127.0.0.1", "127.0.0.2")}
    assert "node.session.timeo.replacement_timeout = 17\n" in shown["127.0.0.2"]
    assert "node.session.timeo.replacement_timeout = 17\n" not in shown["127.0.0.1"]
    # the session uses its record: not deleted, as iscsiadm's delete_node (15)
    rc, _, err = cli("-m", "session", "-r", "2", "-o", "delete")
    assert rc == 15 and "but a session is using it. Logout session then rerun" in err
    assert "127.0.0.2:3260,1" in cli("-m", "node")[1]
    from iscsictl.db.store import NodeDB, NodeID
    NodeDB(str(db), str(db)).delete_node(NodeID(T, "127.0.0.2", 3260, 1))  # gone, by hand
    # another iface's record of the same target and portal is not the session's
    assert cli("-m", "iface", "-I", "if1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.2", "-I", "if1", "-o", "new")[0] == 0
    assert cli("-m", "session", "-r", "2", "-o", "show")[0] == 21


def test_a_records_transport_is_not_changed_under_its_session(sysfs, db):
    """iscsiadm's verify_node_params: iface.transport_name (or the old tools'
    node.transport_name, taken for it) of a record a running session uses is refused with
    its words and 15, nothing changed (before: changed, so -U, safe logout and a restarted
    daemon's recovery took the session for another transport's); unused, it is changed."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.1:3260,1", "-o", "new")[0] == 0
    for name in ("iface.transport_name", "node.transport_name"):
        rc, out, err = cli("-m", "node", "-T", T, "-o", "update", "-n", name, "-v", "iser")
        assert (rc, out, err) == (15, "", "iscsictl: Cannot modify node/iface transport name "
                                  "while a session is using it. Log out the session then "
                                  "update record.\n")
    assert "iface.transport_name = tcp" in cli("-m", "node", "-T", T)[1]
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.2:3260,1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.2", "-o", "update",
               "-n", "node.transport_name", "-v", "iser")[0] == 0
    assert "iface.transport_name = iser" in cli("-m", "node", "-T", T, "-p", "127.0.0.2")[1]


def test_records_a_session_uses_are_not_deleted(sysfs, db):
    """iscsiadm's delete_node (iscsi_check_for_running_session: same target, persistent
    portal and iface, any tag): a record a running session uses is kept, with iscsiadm's
    words and 15, by ``-m node -o delete``, by ``-m iface -o delete`` (the iface stays with
    it; its other records go) and by a rediscovery that no longer finds it (said, no exit
    code).  Before: deleted, the session left without its record."""
    from iscsictl.db.store import DiscoveryID, NodeDB, NodeID

    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.1:3260,1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.3:3260,1", "-o", "new")[0] == 0
    rc, out, err = cli("-m", "node", "-o", "delete", "-T", T)
    assert rc == 15 and err == ("iscsictl: This command will remove the record [iface: "
                                f"default, target: {T}, portal: 127.0.0.1,3260], but a "
                                "session is using it. Logout session then rerun command to "
                                "remove record.\niscsictl: Could not execute operation on "
                                "all records: session exists\n")
    assert cli("-m", "node")[1] == f"127.0.0.1:3260,1 {T}\n"  # the unused one went
    # an iface a session uses
    (sysfs / "devices/platform/host0/session1/iscsi_session/session1/ifacename").write_text(
        "ifz\n")
    assert cli("-m", "iface", "-I", "ifz", "-o", "new")[0] == 0
    for portal in ("127.0.0.1:3260,1", "127.0.0.4:3260,1"):
        assert cli("-m", "node", "-T", T, "-p", portal, "-I", "ifz", "-o", "new")[0] == 0
    rc, out, err = cli("-m", "iface", "-I", "ifz", "-o", "delete")
    assert rc == 15 and "Could not delete iface ifz" in err and "unbound" not in out
    # its update is made, with iscsiadm's warning (iface_param_update); another's is not
    warning = ("iscsictl: Updating iface while iscsi sessions are using it. You must logout "
               "the running sessions then log back in for the new settings to take affect.\n")
    for name, said in (("ifz", warning), ("ify", "")):
        if name == "ify":
            assert cli("-m", "iface", "-I", name, "-o", "new")[0] == 0
        assert cli("-m", "iface", "-I", name, "-o", "update", "-n", "iface.mtu",
                   "-v", "9000") == (0, f"{name} updated.\n", said)
    assert cli("-m", "iface", "-I", "ifz")[0] == 0
    nodes = NodeDB(str(db), str(db))
    assert nodes.list_nodes(iface="ifz") == [NodeID(T, "127.0.0.1", 3260, 1, "ifz")]
    # a rediscovery's stale record that a session uses
    did = DiscoveryID("sendtargets", "127.0.0.9", 3260)
    nodes.create_discovery(did)
    used = NodeID(T, "127.0.0.1", 3260, 1, "ifz")
    nodes.reconcile_discovery(did, [used, NodeID(T, "127.0.0.5", 3260, 1, "ifz")])
    from iscsictl.cli.session_cmd import records_in_use
    res = nodes.reconcile_discovery(did, [], in_use=records_in_use())
    assert [n for n, _ in res.failed] == [used] and res.deleted == [
        NodeID(T, "127.0.0.5", 3260, 1, "ifz")]
    assert "a session is using it" in str(res.failed[0][1]) and res.failed[0][1].exit_code == 15


def test_sid_record_ops_refused_and_secrets(sysfs, db):
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update",
               "-n", "node.session.auth.password", "-v", "s3cret-s3cret")[0] == 0
    out = cli("-m", "session", "-r", "1")[1]
    assert "node.session.auth.password = ********\n" in out and "s3cret" not in out
    assert "node.session.auth.password = s3cret-s3cret\n" in cli("-m", "session", "-r", "1",
                                                                   "-S")[1]
    for ops in (["nonpersistent"], ["show", "-o", "delete"]):
        rc, _, err = cli("-m", "session", "-r", "1", "-o", *ops)
        assert rc == 7 and "is not supported (one of new, show, update, delete)" in err
    rc, _, err = cli("-m", "session", "-o", "update")  # without -r: no record to update
    assert rc == 7 and "needs -r SID" in err
    rc, _, err = cli("-m", "session", "-o", "new")
    assert rc == 7 and "Operation 'new' only allowed with specific session IDs" in err


def test_json_listing_masks_secrets(sysfs):
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    (sysfs / "class/iscsi_session/session1/password").write_text("s3cret-s3cret\n")
    rc, out, _ = cli("-m", "session", "--json")
    data = json.loads(out)
    assert rc == 0 and data[0]["sid"] == 1 and data[0]["devices"][0]["disk"] == "sda"
    assert data[0]["chap"]["password"] == "********"
    assert "s3cret" not in out


class FakeDaemon:
    """Stands in for iscsictld on a real Unix socket (the CLI's own DaemonClient talks to
    it): each request is recorded in ``calls`` and answered from ``answers[op]``, a list of
    per-item results handed out in order (a login request takes one per record)."""

    def __init__(self, path: str) -> None:
        import socket

        self.path, self.answers, self.calls = path, {}, []
        #: ``on_request(op, args, results)`` before the answer (what a login makes in sysfs)
        self.on_request = None
        #: log lines sent before the answer to a request that asks for them (``-d``)
        self.log_lines: list[str] = []
        self.debug_asked: list[bool] = []
        #: before answering: keep-alive lines every ``alive_every`` s for ``stall`` s
        #: (``alive_every`` None: silence, as a daemon whose loop is stuck)
        self.stall, self.alive_every = 0.0, None
        self.released = threading.Event()  # ends a stall at once
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as f:
                req = json.loads(f.readline())
                op, args = req["op"], req["args"]
                self.calls.append((op, args))
                n = len(args.get("records") or args.get("sids") or [None])
                result, self.answers[op] = self.answers[op][:n], self.answers[op][n:]
                if self.on_request is not None:
                    self.on_request(op, args, result)
                self._stall(conn)
                self.debug_asked.append(req.get("debug") is True)
                lines = [{"version": IPC_VERSION, "log": text} for text in self.log_lines
                         if req.get("debug") is True]
                lines += [{"version": IPC_VERSION, "progress": {"done": i, "total": n, "result": r}}
                          for i, r in enumerate(result, 1) if args.get("progress")]
                lines.append({"version": IPC_VERSION, "ok": True, "result": result})
                try:
                    conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in lines))
                except OSError:
                    pass  # the client gave up

    def _stall(self, conn) -> None:
        import time

        end = time.monotonic() + self.stall
        while not self.released.wait(min(self.alive_every or 0.05, max(0, end - time.monotonic()))):
            if time.monotonic() >= end:
                return
            if self.alive_every:
                conn.sendall(b'{"version":%d,"alive":true}\n' % IPC_VERSION)

    def close(self) -> None:
        """Stop serving, then close the listener.  Its descriptor is closed only once the
        serving thread has ended: closed under a thread about to call accept(), the number
        would go to the next test's listener and this thread would answer that test's
        requests from its own (used up) answers."""
        import socket

        self.released.set()
        self.server.shutdown(socket.SHUT_RDWR)  # a blocked accept() fails with EINVAL
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def fake_daemon(monkeypatch, tmp_path):
    d = FakeDaemon(str(tmp_path / "d.sock"))
    monkeypatch.setenv("ISCSICTL_SOCKET", d.path)
    db = tmp_path / "db"
    db.mkdir()
    (db / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.x:init\n")
    monkeypatch.setenv("ISCSICTL_DB_ROOT", str(db))
    monkeypatch.setenv("ISCSICTL_CONFIG_ROOT", str(db))
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "new")[0] == 0
    yield d
    d.close()


def test_login_success_messages(fake_daemon):
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"login": [{"ok": True, "node": desc, "sids": [1]}]}
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert rc == 0 and err == ""
    assert out == f"Logging in to {desc}\nLogin to {desc} successful.\n"
    op, args = fake_daemon.calls[0]
    assert op == "login" and args["initiator_name"] == "iqn.2026-11.x:init"
    assert "multiple" not in args  # only -m session -r SID -o new (an older daemon lacks it)
    assert args["records"][0]["node.name"] == T


def test_a_login_without_a_daemon_says_iscsiadms_lines_and_how_to_start_it(fake_daemon,
                                                                            tmp_path,
                                                                            monkeypatch):
    """No iscsictld: each record's "Could not login to" and "initiator reported error (20 -
    ...)" lines, as iscsiadm's without iscsid (scripts look for them), then how to start
    the daemon and "Could not log into all portals"; exit 20 (README review: only the hint
    was said)."""
    monkeypatch.setenv("ISCSICTL_SOCKET", str(tmp_path / "nobody-here.sock"))
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    lines = err.splitlines()
    assert rc == 20 and out == f"Logging in to {desc}\n", (rc, out, err)
    assert lines[:2] == [f"iscsictl: Could not login to {desc}.",
                         "iscsictl: initiator reported error (20 - could not connect to "
                         "iscsid)"], err
    assert "start it with" in lines[2] and lines[3:] == [
        "iscsictl: Could not log into all portals"], err


def test_debug_prints_the_daemons_lines_for_the_request_and_only_with_d(fake_daemon):
    """``-d N`` (N > 0) asks iscsictld for its log lines of the request and prints each on
    stderr after ``iscsictld: `` before the command's own output; without it (or -d 0) none
    are asked for, and the next command in the same process is as before."""
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.log_lines = ["-> Login Request T=1 C=0 CSG=1 NSG=3\n    HeaderDigest=None",
                             "session 1 (host2): the connection handed to the kernel"]
    for debug in ("1", "0", None):
        fake_daemon.answers = {"login": [{"ok": True, "node": desc, "sids": [1]}]}
        rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l",
                           *(("-d", debug) if debug else ()))
        assert rc == 0 and out == f"Logging in to {desc}\nLogin to {desc} successful.\n"
        if debug == "1":
            assert err == ("iscsictld: -> Login Request T=1 C=0 CSG=1 NSG=3\n"
                           "iscsictld:     HeaderDigest=None\n"
                           "iscsictld: session 1 (host2): the connection handed to the kernel\n")
        else:
            assert err == ""
    assert fake_daemon.debug_asked == [True, False, False]


def test_no_wait_sends_the_login_and_does_not_wait_for_it(fake_daemon):
    """``-W`` (iscsiadm's --no_wait, used by open-iscsi's iscsi.service with -L
    automatic): the request goes to the daemon, which carries it out; the command prints
    only its "Logging in to" lines and ends with 0, whatever the login's outcome (before:
    -W was accepted and ignored, the command waited and took the failure's code)."""
    import time

    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"login": [{"ok": False, "code": 8, "node": desc}]}
    fake_daemon.stall = 30  # the login takes long, and fails
    got = _cli_within(10, "-m", "node", "-T", T, "-p", "127.0.0.1", "-l", "-W")
    fake_daemon.released.set()
    assert got == (0, f"Logging in to {desc}\n", "")
    deadline = time.monotonic() + 5
    while not fake_daemon.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    (op, args), = fake_daemon.calls
    assert op == "login" and args["records"][0]["node.name"] == T
    assert "progress" not in args


def _cli_within(seconds: float, *args):
    """``cli(*args)`` in a thread: its result, or None if it had not ended after ``seconds``
    (a hang is a failure, not a test run that never ends)."""
    box = []
    th = threading.Thread(target=lambda: box.append(cli(*args)), daemon=True)
    th.start()
    th.join(seconds)
    return box[0] if box else None


def test_a_daemon_that_stops_answering_ends_the_login_with_33(fake_daemon, monkeypatch):
    """A daemon that takes the request and then sends nothing, not even a keep-alive line
    (its loop stuck), is given up after SILENCE_LIMIT s: exit 33, not a hang."""
    from iscsictl import ipc

    monkeypatch.setattr(ipc, "SILENCE_LIMIT", 0.5)
    fake_daemon.answers = {"login": [{"ok": True, "node": "x", "sids": [1]}]}
    fake_daemon.stall = 60
    got = _cli_within(10, "-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert got is not None, "the login still waits on a silent daemon"
    rc, _, err = got
    assert rc == 33 and "iscsictld sent nothing for 0.5 s" in err and "may be stuck" in err


def test_a_login_longer_than_the_silence_limit_is_waited_for_on_keep_alives(fake_daemon,
                                                                            monkeypatch):
    from iscsictl import ipc

    monkeypatch.setattr(ipc, "SILENCE_LIMIT", 0.5)
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"login": [{"ok": True, "node": desc, "sids": [1]}]}
    fake_daemon.stall, fake_daemon.alive_every = 1.5, 0.1
    got = _cli_within(10, "-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert got == (0, f"Logging in to {desc}\nLogin to {desc} successful.\n", "")


def test_login_auth_failure_is_24_with_iscsiadm_lines(fake_daemon):
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"login": [{"ok": False, "node": desc, "code": 24,
                                      "message": "login rejected: initiator error - authentication failure (02/01)"}]}
    rc, _, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert rc == 24
    assert f"iscsictl: Could not login to {desc}.\n" in err
    assert "iscsictl: initiator reported error (24 - iSCSI login failed due to authorization failure)\n" in err
    assert err.endswith("iscsictl: Could not log into all portals\n")


def test_login_session_exists_is_15_warning_only(fake_daemon):
    fake_daemon.answers = {"login": [{"ok": False, "code": 15, "node": "x",
                                      "message": "default: 1 session requested, but 1 already present."}]}
    rc, _, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert rc == 15  # the daemon found it (another command won the race)
    assert err == ("iscsictl: default: 1 session requested, but 1 already present.\n"
                   "iscsictl: Could not log into all portals\n")


def test_login_to_a_node_with_its_sessions_asks_no_daemon(sysfs, fake_daemon):
    """As iscsiadm (iscsi_login_portal): sysfs already has node.session.nr_sessions sessions
    of the record: the warning, no 'Logging in to' line, nothing sent, 15."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert (rc, out) == (15, "") and fake_daemon.calls == []
    assert err == ("iscsictl: default: 1 session requested, but 1 already present.\n"
                   "iscsictl: Could not log into all portals\n")
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update",
        "-n", "node.session.nr_sessions", "-v", "2")
    fake_daemon.answers = {"login": [{"ok": True, "node": _desc(T), "sids": [2]}]}
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert (rc, err) == (0, "") and len(fake_daemon.calls) == 1
    # nr_sessions > 1: iscsiadm's "(multiple)", a line per session still to make
    assert out == f"Logging in to {_desc(T)} (multiple)\nLogin to {_desc(T)} successful.\n"
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update",
        "-n", "node.session.nr_sessions", "-v", "3")
    fake_daemon.answers = {"login": [{"ok": True, "node": _desc(T), "sids": [2, 3]}]}
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert (rc, err) == (0, "")
    assert out == 2 * f"Logging in to {_desc(T)} (multiple)\n" + \
        2 * f"Login to {_desc(T)} successful.\n"


def test_a_record_asking_for_no_session_logs_in_none(sysfs, fake_daemon):
    """node.session.nr_sessions = 0: "0 sessions requested, but 0 already present.", 15,
    nothing sent, as iscsiadm's iscsi_login_portal (it logged in one all the same)."""
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update",
        "-n", "node.session.nr_sessions", "-v", "0")
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-l")
    assert (rc, out) == (15, "") and fake_daemon.calls == []
    assert err.startswith("iscsictl: default: 0 sessions requested, but 0 already present.\n")


def test_a_half_made_session_can_be_logged_out_by_its_number(sysfs, fake_daemon):
    """A session CREATE_SESSION alone left (a login cut short: no target name, no
    connection), which iscsictld adopts and says ``-m session -r N -u`` removes: that
    command sends its logout (it was 22, "Could not get session info", and the session
    stayed until reboot); the listing still leaves it out."""
    dev = "devices/platform/host6/session7"
    for k, v in dict(targetname="(null)", tpgt="0", initiatorname="(null)",
                     ifacename="(null)", state="FREE", creator="4321").items():
        _w(sysfs, f"{dev}/iscsi_session/session7/{k}", v)
    _w(sysfs, "devices/platform/host6/scsi_host/host6/proc_name", "iscsi_tcp")
    _link(sysfs, "iscsi_session/session7", f"{dev}/iscsi_session/session7")
    _link(sysfs, "scsi_host/host6", "devices/platform/host6/scsi_host/host6")
    fake_daemon.answers = {"logout": [{"sid": 7, "ok": True}]}
    rc, out, err = cli("-m", "session", "-r", "7", "-u")
    assert rc == 0, err
    assert [(op, args["sids"]) for op, args in fake_daemon.calls] == [("logout", [7])]
    assert "sid: 7" in out
    assert cli("-m", "session", "-r", "7")[0] == 22  # no listing of it


def test_a_session_whose_connection_is_gone_is_logged_out_and_rescanned_with_the_rest(
        sysfs, fake_daemon):
    """A session whose connection is gone (its teardown cut short by a crash between
    DESTROY_CONN and DESTROY_SESSION) is left out of the listing, as libopeniscsiusr
    leaves it, but a logout or a rescan of every session, or of its target's, takes it, as
    iscsiadm's iscsi_sysfs_for_each_session does: its portal is ",-1".  Before, only
    ``-r N -u`` reached it, naming it "(none yet)"."""
    import shutil
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {})
    (sysfs / "class/iscsi_connection/connection2:0").unlink()
    shutil.rmtree(sysfs / "devices/platform/host1/session2/connection2:0")
    assert cli("-m", "session")[1] == f"tcp: [1] 127.0.0.1:3260,1 {T} (non-flash)\n"
    for args in (("-m", "session", "-u"), ("-m", "node", "-T", T, "-u")):
        fake_daemon.calls.clear()
        fake_daemon.answers = {"logout": [{"sid": 1, "ok": True}, {"sid": 2, "ok": True}]}
        rc, out, err = cli(*args)
        assert (rc, err) == (0, ""), (args, err)
        assert [a["sids"] for _, a in fake_daemon.calls] == [[1, 2]]
        assert f"Logging out of session [sid: 2, target: {T}, portal: ,-1]\n" in out
    fake_daemon.calls.clear()
    fake_daemon.answers = {"logout": [{"sid": 2, "ok": True}]}
    rc, out, err = cli("-m", "session", "-r", "2", "-u")
    assert rc == 0 and f"[sid: 2, target: {T}, portal: ,-1]" in out, (out, err)
    assert cli("-m", "session", "-r", "2")[0] == 22  # no listing of it
    (sysfs / "devices/platform/host1/scsi_host/host1/scan").write_text("")
    rc, out, _ = cli("-m", "session", "-R")
    assert f"Rescanning session [sid: 2, target: {T}, portal: ,-1]\n" in out
    assert (sysfs / "devices/platform/host1/scsi_host/host1/scan").read_text() == "- - -"


def test_sessions_are_logged_out_grouped_by_target_and_portal_as_iscsiadm(sysfs, fake_daemon):
    """iscsiadm's session_info_create_list: each session after the first of its target
    and portal, else after the last of its target (1, 3, 2 here; it was sysfs order)."""
    T2 = T + "-two"
    for sid, target in ((1, T), (2, T2), (3, T)):
        add_session(sysfs, sid, sid, target, "127.0.0.1", {})
    fake_daemon.answers = {"logout": [{"sid": n, "ok": True} for n in (1, 3, 2)]}
    rc, out, err = cli("-m", "session", "-u")
    assert (rc, err) == (0, "")
    assert [a["sids"] for _, a in fake_daemon.calls] == [[1, 3, 2]]
    said = [line.split("sid: ")[1].split(",")[0] for line in out.splitlines()]
    assert said == ["1", "3", "2", "1", "3", "2"]


def test_a_logout_with_several_failures_exits_with_the_last(sysfs, fake_daemon):
    """iscsiadm's iscsid_logout_reqs_wait keeps the last failure's code (a login keeps
    the first); it was the first's."""
    for sid in (1, 2, 3):
        add_session(sysfs, sid, sid, T, f"127.0.0.{sid}", {})
    fake_daemon.answers = {"logout": [{"sid": 1, "ok": True}, {"sid": 2, "ok": False,
                                                                "code": 28},
                                      {"sid": 3, "ok": False, "code": 2}]}
    rc, _, err = cli("-m", "session", "-u")
    assert rc == 2 and err.endswith("Could not logout of all requested sessions\n"), err


def test_a_firmware_sessions_logout_is_said_as_iscsiadm_says_it(sysfs, fake_daemon):
    """A session an HBA's firmware runs (creator -1, qla4xxx's), logged out by ``-u`` (node
    or session mode): iscsiadm's iscsi_logout_matched_portal takes its
    iscsi_logout_flashnode_sid, which says "Logout sid N." and "Logout of sid N
    successful." (or "... failed."); before, the usual session lines.  ``-U`` says it the
    usual way, as iscsiadm's logout_by_startup; the other sessions too."""
    add_session(sysfs, 5, 3, T, "127.0.0.1", {})
    _w(sysfs, "devices/platform/host3/session5/iscsi_session/session5/creator", "-1")
    add_session(sysfs, 6, 4, T, "127.0.0.2", {})
    fake_daemon.answers = {"logout": [{"sid": 5, "ok": True}, {"sid": 6, "ok": True},
                                      {"sid": 5, "ok": False, "code": 10},
                                      {"sid": 5, "ok": True}]}
    rc, out, err = cli("-m", "session", "-u")
    assert (rc, err) == (0, "") and out == (
        "Logout sid 5.\n"
        f"Logging out of session [sid: 6, target: {T}, portal: 127.0.0.2,3260]\n"
        "Logout of sid 5 successful.\n"
        f"Logout of [sid: 6, target: {T}, portal: 127.0.0.2,3260] successful.\n")
    rc, out, err = cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-u")
    assert rc == 10 and out == "Logout sid 5.\n"
    assert err.startswith("iscsictl: Logout of sid 5 failed.\n"), err
    rc, out, _ = cli("-m", "node", "-U", "all")
    assert rc == 0 and out.startswith("Logging out of session [sid: 5, "), out


def test_every_r_is_checked_and_the_last_is_used(sysfs):
    """``-r`` given twice: each is read as iscsiadm reads it when it comes, so a bad one
    exits 1 even before a good one (it was dropped: the command went on with the other,
    a logout included); two good ones: the last."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    add_session(sysfs, 2, 1, T, "10.0.0.5", {0: "sdb"})
    rc, out, err = cli("-m", "session", "-r", "/nonexistent", "-r", "1")
    assert (rc, out) == (1, "") and "/nonexistent is an invalid session ID or path" in err
    rc, out, _ = cli("-m", "session", "-r", "1", "-r", "2", "-P", "1")
    assert rc == 0 and "SID: 2\n" in out and "SID: 1\n" not in out


def test_a_damaged_record_is_skipped_and_the_others_logged_in(fake_daemon):
    """One of the matching records cannot be read (emptied by a crash): it is said and
    left out, and the others are logged in to, as iscsiadm skips it; it was exit 6 and
    no login at all.  Every one damaged: 21, as iscsiadm finds no record."""
    assert cli("-m", "node", "-T", T, "-p", "127.0.0.2", "-o", "new")[0] == 0
    root = os.environ["ISCSICTL_DB_ROOT"]
    damaged = os.path.join(root, "nodes", T, "127.0.0.2,3260")
    open(damaged, "w").close()
    fake_daemon.answers = {"login": [{"ok": True, "node": "n", "sids": [1]}]}
    rc, out, err = cli("-m", "node", "-T", T, "-l")
    assert rc == 0 and "corrupt record: empty file" in err, err
    (op, args), = fake_daemon.calls
    assert [r["node.conn[0].address"] for r in args["records"]] == ["127.0.0.1"]
    open(os.path.join(root, "nodes", T, "127.0.0.1,3260"), "w").close()
    rc, _, err = cli("-m", "node", "-T", T, "-l")
    assert rc == 21 and "No records found" in err


def test_a_session_to_an_address_is_the_records_that_name_it_by_host_name(sysfs, fake_daemon):
    """A session to 127.0.0.1 is the session of a record that names the portal
    "localhost" (iscsiadm's iscsi_match_session_count: iscsi_addr_match resolves names):
    present, 15, nothing asked of the daemon; it asked for a second session."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    assert cli("-m", "node", "-T", T, "-p", "localhost", "-o", "new")[0] == 0
    rc, out, err = cli("-m", "node", "-T", T, "-p", "localhost", "-l")
    assert rc == 15 and out == "" and fake_daemon.calls == [], (out, err)
    assert err.count("default: 1 session requested, but 1 already present.") == 2


def test_login_with_no_matching_record_is_21(fake_daemon):
    rc, _, err = cli("-m", "node", "-T", "iqn.2003-01.org.example:nope", "-p", "127.0.0.1", "-l")
    assert rc == 21 and "No records found" in err and fake_daemon.calls == []


def _desc(target: str) -> str:
    return f"[iface: default, target: {target}, portal: 127.0.0.1,3260]"


def test_loginall_sends_each_record_as_its_non_default_keys_and_reports_in_order(fake_daemon):
    targets = sorted([T] + [f"iqn.2003-01.org.example:t{i}" for i in range(2, 5)])
    for t in targets[1:]:
        assert cli("-m", "node", "-T", t, "-p", "127.0.0.1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", targets[2], "-p", "127.0.0.1", "-o", "update",
               "-n", "node.session.cmds_max", "-v", "64")[0] == 0
    fake_daemon.answers = {"login": [{"ok": True, "node": _desc(t), "sids": [i]}
                                     for i, t in enumerate(targets, 1)]}
    rc, out, err = cli("-m", "node", "-L", "all")
    assert rc == 0 and err == ""
    ((op, args),) = fake_daemon.calls
    assert [r["node.name"] for r in args["records"]] == targets
    assert [r.get("node.session.cmds_max") for r in args["records"]] == [None, None, "64", None]
    assert out == "".join(f"Logging in to {_desc(t)}\n" for t in targets) + \
        "".join(f"Login to {_desc(t)} successful.\n" for t in targets)


def test_each_print_level_reads_what_it_shows_and_no_more(sysfs, monkeypatch):
    """collect() reads per level only what that level prints: the output of every level is
    the same as from a full read, and level 0 opens a handful of files a session (hundreds
    of sessions made -m session take seconds when every level read everything)."""
    from iscsictl.cli import session_cmd
    from iscsictl.kernel import sysfs as sysfs_mod
    from iscsictl.kernel.sysfs import Sysfs

    for i in range(1, 5):
        add_session(sysfs, i, 10 + i, f"iqn.2003-01.org.example:t{i % 2}", f"10.0.0.{i}",
                    {0: f"sd{chr(96 + i)}"})
    s = Sysfs(sysfs)
    everything = {"session": None, "host": None, "connection": None}
    with monkeypatch.context() as m:
        m.setattr(session_cmd, "_LEVEL_ATTRS", {lvl: everything for lvl in range(4)})
        full = session_cmd.collect(s, {}, 3)
    assert session_cmd.flat_lines(session_cmd.collect(s, {}, 0)) == session_cmd.flat_lines(full)
    for level in (1, 2, 3):
        flags = session_cmd.SESSION_LEVEL_FLAGS[level]
        assert session_cmd.tree_lines(session_cmd.collect(s, {}, level), flags, True) == \
            session_cmd.tree_lines(full, flags, True)
    assert [session_cmd._view_json(v, True) for v in session_cmd.collect(s, {}, 3)] == \
        [session_cmd._view_json(v, True) for v in full]  # --json reads level 3
    opened = []
    real_open = os.open

    def counting_open(path, *a, **kw):
        opened.append(path)
        return real_open(path, *a, **kw)
    monkeypatch.setattr(sysfs_mod.os, "open", counting_open)
    assert [v.sid for v in session_cmd.collect(s, {}, 0, sid=3)] == [3]
    assert len(opened) <= 8, opened
    opened.clear()
    session_cmd.collect(s, {}, 0)
    assert len(opened) <= 8 * 4, opened


def test_garbage_in_sysfs_never_breaks_a_listing(sysfs):
    """40 trees (fixed seed) with attributes garbled, emptied, "(null)", removed or turned
    into directories: every listing level, --json, -r and -U all end with an exit code and
    no unexpected error."""
    import glob
    import random
    import shutil

    rnd = random.Random(11)
    values = ["", "(null)", "-1", "abc", "99999999999999999999", "\udcff", "x" * 5000, "\0"]
    for _ in range(40):
        shutil.rmtree(sysfs / "devices", ignore_errors=True)
        shutil.rmtree(sysfs / "class", ignore_errors=True)
        (sysfs / "class/iscsi_session").mkdir(parents=True)
        for sid in range(1, rnd.randint(2, 4)):
            add_session(sysfs, sid, sid, f"{T}{sid}", rnd.choice(["127.0.0.1", "::1"]),
                        {0: "sda"} if rnd.random() < 0.5 else {})
        files = [f for f in glob.glob(str(sysfs / "devices/**/*"), recursive=True)
                 if os.path.isfile(f)]
        for f in rnd.sample(files, rnd.randint(1, 8)):
            k = rnd.random()
            if k < 0.7:
                Path(f).write_bytes(rnd.choice(values).encode("utf-8", "surrogateescape"))
            else:
                os.unlink(f)
                if k > 0.85:
                    os.mkdir(f)
        for argv in (["-m", "session"], ["-m", "session", "-P", "1"], ["-m", "session", "-P", "3"],
                     ["--json", "-m", "session"], ["-m", "session", "-r", "1", "-P", "3"],
                     ["-m", "node", "-U", "all"]):
            rc, out, err = cli(*argv)
            assert isinstance(rc, int) and "unexpected" not in err.lower(), (argv, err)


def test_sid_op_new_logs_in_one_more_session(sysfs, fake_daemon):
    """-m session -r SID -o new: the session's record, sent with multiple (one session more
    whatever node.session.nr_sessions says), and iscsiadm's "(multiple)" line."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    desc = f"[iface: default, target: {T}, portal: 127.0.0.1,3260]"
    fake_daemon.answers = {"login": [{"ok": True, "node": desc, "sids": [2]}]}
    rc, out, err = cli("-m", "session", "-r", "1", "-o", "new")
    assert (rc, err) == (0, "")
    assert out == f"Logging in to {desc} (multiple)\nLogin to {desc} successful.\n"
    op, args = fake_daemon.calls[0]
    assert op == "login" and args["multiple"] is True and args["records"][0]["node.name"] == T


def test_rescan_rescans_each_device_then_scans_the_host_without_a_daemon(sysfs):
    """iscsiadm's rescan_portal: "1" to each device's rescan (a resized LUN), "- - -" to the
    host's scan (new LUNs), done by the command itself (no daemon runs here)."""
    add_session(sysfs, 1, 3, T, "127.0.0.1", {0: "sdb", 1: "sdc"})
    add_session(sysfs, 2, 4, T, "127.0.0.2", {0: "sdd"})
    host = sysfs / "devices/platform/host3"
    attributes = [host / "scsi_host/host3/scan", sysfs / "devices/platform/host4/scsi_host/host4/scan",
                  *(host / f"session1/target3:0:0/3:0:0:{lun}/rescan" for lun in (0, 1)),
                  sysfs / "devices/platform/host4/session2/target4:0:0/4:0:0:0/rescan"]
    for attribute in attributes:  # sysfs has them; writes neither create nor truncate
        attribute.touch()
    rc, out, err = cli("-m", "session", "-r", "1", "-R")
    assert (rc, err) == (0, "")
    assert out == f"Rescanning session [sid: 1, target: {T}, portal: 127.0.0.1,3260]\n"
    assert (host / "scsi_host/host3/scan").read_text() == "- - -"
    for lun in (0, 1):
        assert (host / f"session1/target3:0:0/3:0:0:{lun}/rescan").read_text() == "1"
    assert (sysfs / "devices/platform/host4/scsi_host/host4/scan").read_text() == ""
    rc, out, _ = cli("-m", "session", "-R")  # every session
    assert rc == 0 and out.count("Rescanning session") == 2
    assert (sysfs / "devices/platform/host4/scsi_host/host4/scan").read_text() == "- - -"
    rc, out, _ = cli("-m", "node", "-T", T, "-p", "127.0.0.2", "-R")
    assert rc == 0 and out.count("Rescanning session") == 1
    # a device that cannot be rescanned (gone; or not running, EWOULDBLOCK since Linux
    # 6.6): the others and the host's scan all the same, as iscsiadm (before: 22, none)
    (host / "scsi_host/host3/scan").write_text("")
    (host / "session1/target3:0:0/3:0:0:1/rescan").write_text("")
    (host / "session1/target3:0:0/3:0:0:0/rescan").unlink()
    assert cli("-m", "session", "-r", "1", "-R")[:2] == (
        0, f"Rescanning session [sid: 1, target: {T}, portal: 127.0.0.1,3260]\n")
    assert (host / "scsi_host/host3/scan").read_text() == "- - -"
    assert (host / "session1/target3:0:0/3:0:0:1/rescan").read_text() == "1"
    # a host that cannot be written (not root, or gone): a message and an exit code
    (host / "scsi_host/host3/scan").unlink()
    (host / "scsi_host/host3/scan").mkdir()
    rc, out, err = cli("-m", "session", "-r", "1", "-R")
    assert rc == 22 and "Could not rescan session sid 1: Is a directory" in err


def test_host_mode_levels(sysfs):
    """-m host as open-iscsi 2.1.8's usr/host.c prints it (the VM compares it with iscsiadm)."""
    assert cli("-m", "host") == (21, "", "iscsictl: No iSCSI hosts.\n")
    add_session(sysfs, 1, 3, T, "127.0.0.1", {0: "sdb"})
    add_session(sysfs, 2, 11, T, "127.0.0.1", {0: "sdc"})
    rc, out, _ = cli("-m", "host")
    assert rc == 0  # alphasort: host11 before host3
    assert out == ("tcp: [11] 127.0.0.1,[<empty>],<empty> <empty>\n"
                   "tcp: [3] 127.0.0.1,[<empty>],<empty> <empty>\n")
    host3 = ("Host Number: 3\n\tState: running\n\tTransport: tcp\n\tInitiatorname: <empty>\n"
             "\tIPaddress: 127.0.0.1\n\tHWaddress: <empty>\n\tNetdev: <empty>\n")
    assert cli("-m", "host", "-H", "3", "-P", "1") == (0, host3, "")
    for attr in ("netdev", "hwaddress", "ipaddress"):  # read as iscsiadm's sysfs_get_value
        _w(sysfs, f"class/iscsi_host/host11/{attr}", "<NULL>")  # reads it: none
    assert cli("-m", "host")[1].startswith("tcp: [11] <empty>,[<empty>],<empty> <empty>\n")
    assert "\tIPaddress: <empty>\n\tHWaddress: <empty>\n\tNetdev: <empty>\n" in cli(
        "-m", "host", "-H", "11", "-P", "1")[1]
    rc, out, _ = cli("-m", "host", "-H", "3", "-P", "2")
    assert out.startswith(host3 + "\t*********\n\tSessions:\n\t*********\n"
                          f"\tTarget: {T} (non-flash)\n\t\tCurrent Portal: 127.0.0.1:3260,1\n")
    assert "\t\t\tSID: 1\n" in out and "SID: 2" not in out and "Negotiated" not in out
    rc, out, _ = cli("-m", "host", "-H", "host3", "-P", "3")
    assert "\t\t\tMaxRecvDataSegmentLength: 262144\n" in out and "Timeouts" not in out
    assert "CHAP" not in out and "Attached SCSI devices" not in out
    rc, out, _ = cli("-m", "host", "-P", "4")
    assert out.startswith("iSCSI Transport Class version 2.0-870\nversion 2.1.8\n"
                          "Host Number: 11\n")
    # -P 4 adds the devices, without the session listing's Host Number line
    assert "\t\t\tscsi3 Channel 00 Id 0 Lun: 0\n\t\t\t\tAttached scsi disk sdb\t\tState: running\n" \
        in out and "\t\t\tHost Number" not in out
    assert cli("-m", "host", "-H", "9", "-P", "1")[0] == 23
    assert cli("-m", "host", "-H", "x9", "-P", "1")[0] == 7
    rc, out, _ = cli("-m", "host", "--json")
    assert [(h["host_no"], h["transport"], h["sessions"]) for h in json.loads(out)] == \
        [(11, "tcp", [2]), (3, "tcp", [1])]


def test_host_mode_checks_H_at_every_level_and_lists_hosts_past_what_it_ignores(sysfs):
    """iscsiadm parses -H with the options (exit 7 at any print level); -o without a
    sub-mode and an unknown -C are ignored (the hosts are listed); -C flashnode's options
    (-x, -A) are no unrecognized options (7): it needs the host's transport registered
    (this tree has none, 12)."""
    add_session(sysfs, 1, 3, T, "127.0.0.1", {0: "sdb"})
    assert cli("-m", "host", "-H", "11:22:33:44:55:66") == (
        7, "", "iscsictl: Could not match MAC to host.\n")
    for level in ((), ("-P", "1")):
        for bad in ("99999999999", "-1"):  # -1: strtoull's ULLONG_MAX
            assert cli("-m", "host", "-H", bad, *level) == (
                7, "", f"iscsictl: Invalid host no {bad}. Numerical result out of range.\n")
    assert cli("-m", "host", "-H", "+3", "-P", "1") == cli("-m", "host", "-H", "3", "-P", "1")
    for other in ("\u0663", "host\u0663", "3\xa0"):  # a digit, a blank of Unicode's: none
        assert cli("-m", "host", "-H", other)[0] == 7, other
    listing = (0, "tcp: [3] 127.0.0.1,[<empty>],<empty> <empty>\n", "")
    assert cli("-m", "host", "-H", "4294967295") == listing  # level 0 lists every host
    assert cli("-m", "host", "-o", "show") == listing
    assert cli("-m", "host", "-C", "bogus") == listing
    for args in (("-x", "0", "-o", "show"), (), ("-x", "0", "-o", "delete"),
                 ("-A", "ipv4", "-o", "new")):
        assert cli("-m", "host", "-C", "flashnode", "-H", "3", *args) == (
            12, "", "iscsictl: Could not match hostno 3 to transport.\n")
    assert cli("-m", "host", "-C", "chap", "-H", "3") == (
        7, "", "iscsictl: CHAP mode requires host no and valid operation\n")
    rc, _, err = cli("-m", "iface", "-C", "ping", "-I", "default", "-a", "192.0.2.1", "-b",
                     "56", "-c", "1", "-i", "1")
    assert (rc, err) == (7, "iscsictl: Can't find transport tcp.\n")  # none in this tree
    # -H is iface mode's with -o applyall (-o apply takes it and goes by -I); a software
    # host has no iface of its own (tests/cli/test_iface_apply.py)
    assert cli("-m", "iface", "-I", "default", "-o", "apply") == (
        0, "default applied.\n", "iscsictl: Nothing to configure.\n")
    assert cli("-m", "iface", "-H", "3", "-o", "applyall") == (
        0, "Applied settings to ifaces attached to host3.\n",
        "iscsictl: Nothing to configure.\n")
    # without -o apply|applyall, -H is ignored, as iscsiadm ignores it; but one that names
    # no host is 7 before the op is made (iscsiadm's parse_host_info, in its option loop)
    assert cli("-m", "iface", "-H", "3") == cli("-m", "iface")
    assert cli("-m", "iface", "-I", "if0", "-o", "new")[0] == 0
    for bad, err in (("00:11:22:33:44:55", "Could not match MAC to host."),
                     ("99999999999", "Invalid host no 99999999999. Numerical result out of "
                                     "range.")):
        assert cli("-m", "iface", "-I", "if0", "-H", bad, "-o", "delete") == (
            7, "", f"iscsictl: {err}\n")
        assert cli("-m", "iface", "-H", bad)[0] == 7
    assert "if0 " in cli("-m", "iface")[1]  # not deleted


def test_fw_mode_without_boot_firmware_is_iscsiadms_21(sysfs):
    assert cli("-m", "fw") == (21, "", "iscsictl: Could not get list of targets from firmware. "
                                       "(err 21)\n")
    # a -n without -v (or the reverse) is no setting, as iscsiadm's main: not a usage error,
    # said (iscsiadm says nothing: an update that did nothing looked done)
    rc, out, err = cli("-m", "fw")
    assert cli("-m", "fw", "-n", "node.startup") == (
        rc, out, "iscsictl: -n node.startup has no -v to pair with: ignored\n" + err)
    assert cli("-m", "fw", "-v", "x") == (
        rc, out, "iscsictl: -v x has no -n to pair with: ignored\n" + err)
    (sysfs / "firmware/ibft/target0").mkdir(parents=True)  # no initiator: not a description
    assert cli("-m", "fw")[0] == 21


def test_discovery_then_login_of_what_it_found(fake_daemon, tmp_path):
    """-m discovery -t st -p P -l: the listing, then each found record logged in (iscsiadm's
    do_target_discovery + login_portals); the first failure's code."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from peers import Tgtd

    with Tgtd(str(tmp_path / "tgt")) as t:
        names = [f"iqn.2003-01.org.example:disc-{i}" for i in range(2)]
        for n in names:
            t.add_target(n, luns=1)
        descs = [f"[iface: default, target: {n}, portal: 127.0.0.1,{t.port}]" for n in names]
        fake_daemon.answers = {"login": [{"ok": True, "node": descs[0], "sids": [1]},
                                         {"ok": False, "node": descs[1], "code": 24,
                                          "message": "authentication failure"}]}
        rc, out, err = cli("-m", "discovery", "-t", "st", "-p", t.portal, "-l")
        assert rc == 24
        assert out == "".join(f"127.0.0.1:{t.port},1 {n}\n" for n in names) + \
            f"Logging in to {descs[0]}\nLogging in to {descs[1]}\nLogin to {descs[0]} successful.\n"
        assert f"Could not login to {descs[1]}." in err and "Could not log into all portals" in err
        op, args = fake_daemon.calls[0]
        assert [r["node.name"] for r in args["records"]] == names
        # without -t: the stored discovery record is used; --json is one document
        fake_daemon.answers = {"login": [{"ok": True, "node": d, "sids": [1]} for d in descs]}
        rc, out, _ = cli("-m", "discovery", "-p", t.portal, "-l", "--json")
        doc = json.loads(out)
        assert rc == 0 and [x["ok"] for x in doc["logins"]] == [True, True]
        assert [n["target"] for n in doc["nodes"]] == names


def test_logoutall_leaves_onboot_firmware_and_unrecorded_sessions(sysfs, fake_daemon):
    """-U as iscsiadm's logout_by_startup: a session is logged out only when its record
    exists, is not onboot (the root disk's, perhaps) nor from the firmware, and matches
    node.startup or node.conn[0].startup; -U onboot is refused."""
    T2, T3 = T + "-boot", T + "-norecord"
    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T2, "127.0.0.1", {})
    add_session(sysfs, 3, 2, T3, "127.0.0.1", {})
    assert cli("-m", "node", "-T", T2, "-p", "127.0.0.1", "-o", "new")[0] == 0
    cli("-m", "node", "-T", T2, "-p", "127.0.0.1", "-o", "update", "-n", "node.startup",
        "-v", "onboot")
    fake_daemon.answers = {"logout": [{"sid": 1, "ok": True}]}
    rc, out, err = cli("-m", "node", "-U", "all")
    assert (rc, err) == (0, "")
    assert [args["sids"] for op, args in fake_daemon.calls] == [[1]]
    assert out.count("Logout of [sid: 1,") == 1
    assert cli("-m", "node", "-U", "onboot")[:1] == (7,)
    # automatic and manual: node.startup, or node.conn[0].startup (manual by default)
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update", "-n", "node.startup",
        "-v", "automatic")
    fake_daemon.answers = {"logout": [{"sid": 1, "ok": True}, {"sid": 1, "ok": True}]}
    assert cli("-m", "node", "-U", "automatic")[0] == 0
    assert cli("-m", "node", "-U", "manual")[0] == 0  # its conn[0].startup is manual
    assert [args["sids"] for op, args in fake_daemon.calls] == [[1], [1], [1]]
    # a record of another transport (iser) to the same portal is not this tcp session's
    # (iscsiadm's "multiple drivers could be connected to the same portal" check); made
    # through the DB: -o update refuses to change a used record's transport
    from iscsictl.db.store import NodeDB
    nodes = NodeDB(os.environ["ISCSICTL_DB_ROOT"], os.environ["ISCSICTL_DB_ROOT"])
    nid, = nodes.list_nodes(target=T, address="127.0.0.1")
    nodes.update_node_many(nid, {"iface.transport_name": "iser"})
    rc, _, err = cli("-m", "node", "-U", "all")
    assert rc == 21 and "No matching sessions found" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_loginall_progress_on_a_terminal(fake_daemon):
    """On a terminal, bulk logins show a one-line count as the daemon's progress lines
    come, the failures counted; not on a pipe (every other test)."""
    for i in range(2, 5):
        cli("-m", "node", "-T", f"iqn.2003-01.org.example:t{i}", "-p", "127.0.0.1", "-o", "new")
    fake_daemon.answers = {"login": [{"ok": i != 3, "node": f"n{i}", "sids": [i]}
                                     for i in range(4)]}
    out, err = io.StringIO(), _Tty()
    run(["-m", "node", "-L", "all"], Output(out, err))
    assert len(fake_daemon.calls) == 1
    shown = err.getvalue().split("\n")[0].split("\r")[1:]
    assert shown == ["logging in 1/4", "logging in 2/4", "logging in 3/4",
                     "logging in 4/4 (1 failed)"]


def test_loginall_skips_a_damaged_record_with_a_warning(fake_daemon):
    """As iscsiadm (idbm_for_each_rec skips a record it cannot read): the others are
    logged in; the exit code is theirs."""
    from iscsictl.db.store import NodeDB

    other = "iqn.2003-01.org.example:t2"
    cli("-m", "node", "-T", other, "-p", "127.0.0.1", "-o", "new")
    root = os.environ["ISCSICTL_DB_ROOT"]
    db = NodeDB(root, root)
    (nid,) = [n for n in db.list_nodes() if n.target == T]
    Path(db.node_path(nid)).write_bytes(b"")  # an empty file: no node.name
    fake_daemon.answers = {"login": [{"ok": True, "node": _desc(other), "sids": [1]}]}
    rc, out, err = cli("-m", "node", "-L", "all")
    assert rc == 0
    ((op, args),) = fake_daemon.calls
    assert [r["node.name"] for r in args["records"]] == [other]
    assert out == f"Logging in to {_desc(other)}\nLogin to {_desc(other)} successful.\n"
    assert "empty file" in err and err.count("\n") == 1


def test_loginall_matches_node_or_connection_startup(fake_daemon):
    """-L manual takes a record whose node.startup is automatic when its
    node.conn[0].startup is manual (iscsiadm's match_startup_mode)."""
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update", "-n", "node.startup",
        "-v", "automatic")
    for which in ("automatic", "manual", "all"):
        fake_daemon.answers = {"login": [{"ok": True, "node": _desc(T), "sids": [1]}]}
        assert cli("-m", "node", "-L", which)[0] == 0, which
    cli("-m", "node", "-T", T, "-p", "127.0.0.1", "-o", "update", "-n", "node.conn[0].startup",
        "-v", "automatic")
    assert cli("-m", "node", "-L", "manual")[0] == 21
    assert len(fake_daemon.calls) == 3


@pytest.mark.parametrize("fails, json_out", [(0, False), (1, False), (3, False), (1, True)])
def test_leading_logins_go_iface_by_iface_until_the_portal_has_a_session(sysfs, fake_daemon,
                                                                          fails, json_out):
    """node.leading_login = Yes, as iscsiadm's login_by_startup: iface by iface, a record is
    logged in only while its target and portal have no session (through any iface): one
    session for a portal reached through three ifaces, through the first whose login
    works; a failure through one iface is said and the next is tried; none at all is 19
    (before: every iface logged in, three sessions and three disks for one LUN)."""
    t2 = "iqn.2003-01.org.example:leading"
    for ifn in ("default", "eth-a", "eth-b"):
        if ifn != "default":
            assert cli("-m", "iface", "-I", ifn, "-o", "new")[0] == 0
        assert cli("-m", "node", "-T", t2, "-p", "127.0.0.1,1", "-I", ifn, "-o", "new")[0] == 0
    for key in ("node.leading_login", "node.startup"):
        assert cli("-m", "node", "-T", t2, "-o", "update", "-n", key,
                   "-v", "Yes" if key == "node.leading_login" else "automatic")[0] == 0
    answers = [{"ok": False, "code": 8, "node": "x", "message": "refused"}] * fails
    fake_daemon.answers = {"login": answers + [{"ok": True, "node": "x", "sids": [1]}]}

    def on_request(op, args, results):
        if results and results[0].get("ok"):
            add_session(sysfs, 1, 2, t2, "127.0.0.1", {0: "sdb"})
    fake_daemon.on_request = on_request
    rc, out, err = cli(*(["--json"] if json_out else []), "-m", "node", "-L", "automatic")
    if json_out:  # one document for every login made
        assert [r["ok"] for r in json.loads(out)] == [False] * fails + [True] * (fails < 3)
    tried = [args["records"][0]["iface.iscsi_ifacename"] if "iface.iscsi_ifacename" in
             args["records"][0] else "default" for op, args in fake_daemon.calls]
    assert tried == ["default", "eth-a", "eth-b"][:fails + 1]
    assert all(len(args["records"]) == 1 for op, args in fake_daemon.calls)
    assert err.count("trying next interface") == fails
    if fails < 3:
        assert rc == 0, err
    else:
        assert rc == 19 and err.endswith("Could not login all leading-login portals\n"), err


def test_leading_logins_are_made_whatever_the_other_logins_did(sysfs, fake_daemon):
    """The records without leading_login go first; whatever they did (here: a session
    there already, 15), the leading-login ones are logged in after them, as iscsiadm's
    login_by_startup, and the command ends with the first code."""
    t2 = "iqn.2003-01.org.example:leading"
    assert cli("-m", "node", "-T", t2, "-p", "127.0.0.1,1", "-o", "new")[0] == 0
    assert cli("-m", "node", "-T", t2, "-o", "update", "-n", "node.leading_login",
               "-v", "Yes")[0] == 0
    for t in (T, t2):
        assert cli("-m", "node", "-T", t, "-o", "update", "-n", "node.startup",
                   "-v", "automatic")[0] == 0
    fake_daemon.answers = {"login": [{"ok": False, "code": 15, "node": _desc(T)},
                                     {"ok": True, "node": "x", "sids": [1]}]}
    fake_daemon.on_request = lambda op, args, results: results[0].get("ok") and add_session(
        sysfs, 1, 2, t2, "127.0.0.1", {0: "sdb"})
    rc, out, err = cli("-m", "node", "-L", "automatic")
    assert [args["records"][0]["node.name"] for op, args in fake_daemon.calls] == [T, t2]
    assert rc == 15, err


def test_output_lines_are_written_as_they_come_not_all_held():
    """A command with very many lines (a login's per-session lines) writes them a few
    thousand at a time from an iterator, every one, in order."""
    class Counting(io.StringIO):
        writes = 0

        def write(self, s):
            Counting.writes += 1
            return super().write(s)

    out = Counting()
    Output(out, io.StringIO()).lines(f"line {i}" for i in range(10_000))
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(10_000))
    assert Counting.writes == 3
    Output(out, io.StringIO()).lines([])
    assert Counting.writes == 3


@pytest.mark.parametrize("when", ["targetname", "tpgt"])
def test_a_session_torn_down_while_listed_is_left_out(sysfs, monkeypatch, when):
    """A logout that ends while -m session reads the session: it is left out, as
    libopeniscsiusr leaves out a session it cannot read whole (before: a line with an
    empty target and portal '[]:-1,-1', which scripts parse)."""
    import shutil

    import iscsictl.kernel.sysfs as sysfs_module

    add_session(sysfs, 1, 0, T, "127.0.0.1", {})
    add_session(sysfs, 2, 1, T, "127.0.0.2", {})
    read, gone = sysfs_module.read_attribute, []

    def racing(path):
        if not gone and path.endswith(f"session2/{when}"):
            gone.append(True)
            shutil.rmtree(sysfs / "devices/platform/host1/session2")
        return read(path)
    monkeypatch.setattr(sysfs_module, "read_attribute", racing)
    rc, out, err = cli("-m", "session")
    assert gone and (rc, err) == (0, "")
    assert out == f"tcp: [1] 127.0.0.1:3260,1 {T} (non-flash)\n"


def test_a_private_number_the_kernel_shows_as_off_is_minus_1(sysfs):
    """The kernel writes a session's recovery_tmo and creator of -1 as ``off``
    (iscsi_priv_session_attr_show): a flash session's creator, a recovery timeout switched
    off.  They read as None: a flash session was listed "(non-flash)"; open-iscsi reads
    them as -1 since 7a8471b (2.1.8 prints 0)."""
    add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
    _w(sysfs, "class/iscsi_session/session1/creator", "off")
    _w(sysfs, "class/iscsi_session/session1/recovery_tmo", "off")
    assert cli("-m", "session")[1] == f"tcp: [1] 127.0.0.1:3260,1 {T} (flash)\n"
    assert "\t\tRecovery Timeout: -1\n" in cli("-m", "session", "-P", "2")[1]
    doc = json.loads(cli("--json", "-m", "session", "-P", "2")[1])
    assert doc[0]["timeouts"]["recovery"] == -1


def test_a_user_who_is_not_root_gets_the_sessions_listed(tmp_path):
    """The kernel shows a session's CHAP passwords to CAP_SYS_ADMIN only (0400): iscsiadm
    then lists no session at all ("No active sessions.", 21); iscsictl lists them, the
    passwords shown empty (README: a deliberate difference)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(dir="/tmp"))  # (pytest's tmp_path is root's 0700)
    try:
        sysfs = root / "sys"
        _w(sysfs, "module/scsi_transport_iscsi/version", "2.0-870")
        add_session(sysfs, 1, 0, T, "127.0.0.1", {0: "sda"})
        secret = sysfs / "devices/platform/host0/session1/iscsi_session/session1/password"
        _w(sysfs, str(secret.relative_to(sysfs)), "s3cret-s3cret")
        os.chmod(secret, 0o400)
        for d, _dirs, _files in os.walk(root):
            os.chmod(d, 0o755)
        r = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-m", "iscsictl.cli", "--db-root", str(root / "db"),
             "--config-root", str(root / "db"), "-m", "session", "-P", "2", "-S"],
            capture_output=True, text=True, timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "ISCSICTL_SYSFS_ROOT": str(sysfs),
                 "ISCSICTL_SOCKET": str(root / "none.sock")})
    finally:
        shutil.rmtree(root)
    assert r.returncode == 0, r.stderr
    assert f"Target: {T} (non-flash)\n" in r.stdout and "s3cret" not in r.stdout
    assert "\t\tpassword: <empty>\n" in r.stdout
