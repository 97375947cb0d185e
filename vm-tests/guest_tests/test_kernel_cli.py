"""Issue 5 scenarios: the CLI + iscsictld + the real kernel (iscsi_tcp) + LIO.

Each asserts on the kernel's state (sysfs, the block device's contents)."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest
from cli import VENV_BIN, Cli, check_direct_roundtrip, read, sessions_in_sysfs, wait_disks

MIB = 1 << 20
PORTAL = "127.0.0.1"


@pytest.fixture
def cli(scenario_dir, daemon):
    return Cli(scenario_dir / "etc")


def login_sid(cli, target):
    out = cli.ok("-m", "node", "-T", target, "-p", PORTAL, "-l")
    assert f"Login to [iface: default, target: {target}, portal: {PORTAL},3260] successful." in out
    sids = [s for s in sessions_in_sysfs()
            if read(f"/sys/class/iscsi_session/session{s}/targetname") == target]
    assert len(sids) == 1, sids
    return sids[0]


def host_of(sid):
    """The SCSI host number of a session, from its sysfs path (``.../hostN/sessionS``)."""
    return re.search(r"/host(\d+)/session", os.path.realpath(
        f"/sys/class/iscsi_session/session{sid}")).group(1)


def test_discovery_login_io_logout(lio, cli, scenario_dir):
    """1. discovery, login, a disk, 16 MiB of random data with O_DIRECT reads back equal, logout."""
    t = lio.create("iqn.2003-01.org.example.vm:s1", luns=[64 * MIB])
    out = cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    assert f"{PORTAL}:3260,1 {t.iqn}" in out
    sid = login_sid(cli, t.iqn)
    assert read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
    dev = wait_disks(sid, 1)[0]
    assert int(read(f"/sys/block/{os.path.basename(dev)}/size")) * 512 == 64 * MIB
    check_direct_roundtrip(dev, 16 * MIB, scenario_dir / "data.bin", t.lun_files[0])
    flat = cli.ok("-m", "session")
    assert flat == f"tcp: [{sid}] {PORTAL}:3260,1 {t.iqn} (non-flash)\n"
    out = cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
    assert f"Logout of [sid: {sid}, target: {t.iqn}, portal: {PORTAL},3260] successful." in out
    assert sessions_in_sysfs() == []
    r = cli.run("-m", "session")
    assert r.returncode == 21 and "No active sessions." in r.stderr


def test_chap_mutual_and_wrong_secret(lio, cli):
    """2. one-way and mutual CHAP against LIO ACLs; a wrong secret exits 24, no session."""
    one = lio.create("iqn.2003-01.org.example.vm:chap1", luns=[16 * MIB], initiator_iqn=cli.initiator,
                     auth={"userid": "init1", "password": "secret-one-12"})
    two = lio.create("iqn.2003-01.org.example.vm:chap2", luns=[16 * MIB], initiator_iqn=cli.initiator,
                     auth={"userid": "init2", "password": "secret-two-12",
                           "mutual_userid": "tgt2", "mutual_password": "secret-tgt-12"})
    for t in (one, two):
        cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-o", "new")
        cli.update(t.iqn, PORTAL, "node.session.auth.authmethod", "CHAP")
        cli.update(t.iqn, PORTAL, "node.session.auth.chap_algs", "SHA256,MD5")
    cli.update(one.iqn, PORTAL, "node.session.auth.username", "init1")
    cli.update(one.iqn, PORTAL, "node.session.auth.password", "wrong-secret-12")
    r = cli.run("-m", "node", "-T", one.iqn, "-p", PORTAL, "-l", "-d", "1")
    assert r.returncode == 24, r.stdout + r.stderr
    assert "initiator reported error (24 - iSCSI login failed due to authorization failure)" in r.stderr
    assert sessions_in_sysfs() == []
    assert one.login_counter("authenticate_fails") >= 1
    # -d: iscsictld's lines for the request, LIO's refusal among them; no CHAP response
    debug = r.stderr.splitlines()
    assert "iscsictld:     AuthMethod=CHAP" in debug and "iscsictld:     CHAP_N=init1" in debug
    assert "iscsictld:     CHAP_R=********" in debug and "CHAP_R=0x" not in r.stderr
    assert any(line.startswith("iscsictld: <- Login Response status=0x0201 ") for line in debug)
    assert "wrong-secret-12" not in r.stderr
    cli.update(one.iqn, PORTAL, "node.session.auth.password", "secret-one-12")
    r = cli.run("-m", "node", "-T", one.iqn, "-p", PORTAL, "-l", "-d", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    sid1 = sessions_in_sysfs()[0]
    assert re.search(rf"^iscsictld: session {sid1} \(host\d+\): the connection handed to the "
                     r"kernel \(BIND_CONN, \d+ SET_PARAMs, START_CONN\)$", r.stderr, re.M), r.stderr
    assert f"iscsictld: [iface: default, target: {one.iqn}, portal: {PORTAL},3260]: connected " \
        f"to {PORTAL}:3260 from {PORTAL}:" in r.stderr
    wait_disks(sid1, 1)
    for k, v in (("username", "init2"), ("password", "secret-two-12"), ("username_in", "tgt2"),
                 ("password_in", "wrong-target-12")):
        cli.update(two.iqn, PORTAL, f"node.session.auth.{k}", v)
    r = cli.run("-m", "node", "-T", two.iqn, "-p", PORTAL, "-l")
    # the target fails mutual authentication: the initiator ends the login, as iscsid's
    # iscsi_recv_login_rsp (LOGIN_AUTHENTICATION_FAILED -> ISCSI_ERR_FATAL_LOGIN)
    assert r.returncode == 19, r.stdout + r.stderr
    assert "initiator reported error (19 - encountered non-retryable iSCSI login failure)" \
        in r.stderr
    assert sessions_in_sysfs() == [sid1]
    cli.update(two.iqn, PORTAL, "node.session.auth.password_in", "secret-tgt-12")
    sid2 = login_sid(cli, two.iqn)
    wait_disks(sid2, 1)
    assert read(f"/sys/class/iscsi_session/session{sid2}/username_in") == "tgt2"
    cli.ok("-m", "node", "-U", "all")
    assert sessions_in_sysfs() == []


def test_crc32c_digests(lio, cli, scenario_dir):
    """3. CRC32C header and data digests negotiated and in use."""
    t = lio.create("iqn.2003-01.org.example.vm:digest", luns=[32 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    cli.update(t.iqn, PORTAL, "node.conn[0].iscsi.HeaderDigest", "CRC32C")
    cli.update(t.iqn, PORTAL, "node.conn[0].iscsi.DataDigest", "CRC32C")
    sid = login_sid(cli, t.iqn)
    conn = f"/sys/class/iscsi_connection/connection{sid}:0"
    assert read(f"{conn}/header_digest") == "1"  # the kernel's HDRDGST_EN
    assert read(f"{conn}/data_digest") == "1"
    dev = wait_disks(sid, 1)[0]
    check_direct_roundtrip(dev, 8 * MIB, scenario_dir / "d.bin")
    p3 = cli.ok("-m", "session", "-r", str(sid), "-P", "2")
    assert "\t\tHeaderDigest: CRC32C\n\t\tDataDigest: CRC32C\n" in p3
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")


def test_xmit_thread_priority_reaches_the_transmit_thread(lio, cli):
    """node.session.xmit_thread_priority is the nice of the session's iscsi_q_<host> thread,
    as iscsid 2.1.8 sets it (the kernel's own, and Debian's default, is -20)."""
    t = lio.create("iqn.2003-01.org.example.vm:prio", luns=[8 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    cli.update(t.iqn, PORTAL, "node.session.xmit_thread_priority", "5")
    sid = login_sid(cli, t.iqn)
    host = host_of(sid)

    def comm(pid):
        try:
            return read(f"/proc/{pid}/comm")
        except OSError:  # gone meanwhile
            return None
    pids = [p for p in os.listdir("/proc") if p.isdigit() and comm(p) == f"iscsi_q_{host}"]
    assert len(pids) == 1 and os.getpriority(os.PRIO_PROCESS, int(pids[0])) == 5, pids
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")


def test_hba_commands_on_a_software_host(lio, cli):
    """An HBA's CHAP table, statistics and flash targets are its driver's, asked for over
    netlink; iscsi_tcp has none of them, and the real kernel says so (GET_CHAP EINVAL, the
    others ENOSYS): iscsictl prints what iscsiadm prints on stdout, says the errno, and
    exits as iscsiadm does; the session is untouched."""
    t = lio.create("iqn.2003-01.org.example.vm:hba", luns=[8 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    sid = login_sid(cli, t.iqn)
    host = host_of(sid)
    iscsiadm = shutil.which("iscsiadm") or "/usr/sbin/iscsiadm"
    enosys = "Received iferror -38: Function not implemented."
    for args, out, err, their_err in (
            (("-C", "chap", "-o", "show"), "",
             ["get_chap_info failed: EINVAL, Invalid argument"], "get_chap_info failed"),
            (("-C", "chap", "-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "u",
              "-n", "host.auth.password", "-v", "p"), "",
             ["CHAP setting failed: ENOSYS, Function not implemented"], "CHAP setting failed"),
            (("-C", "stats"), "", ["get_host_stats failed: ENOSYS, Function not implemented"],
             "get_host_stats failed"),
            (("-C", "flashnode", "-o", "new", "-A", "ipv4"),
             f"Create new flashnode for host {host}.\n",
             [enosys, f"Creation of flashnode for host {host} failed."],
             f"iscsiadm: Creation of flashnode for host {host} failed.\n"),
            (("-C", "flashnode", "-o", "login", "-x", "0"), "Login to flashnode 0.\n",
             [enosys, f"Login to flashnode 0 of host {host} failed."],
             f"iscsiadm: Login to flashnode 0 of host {host} failed.\n")):
        r = cli.run("-m", "host", "-H", host, *args)
        theirs = subprocess.run([iscsiadm, "-m", "host", "-H", host, *args],
                                capture_output=True, text=True, timeout=60)
        assert (r.stdout, r.stderr.splitlines()) == (out, [f"iscsictl: {e}" for e in err])
        assert r.returncode == theirs.returncode, (args, theirs.stderr)
        assert theirs.stdout == out, theirs.stdout
        assert their_err in theirs.stderr, theirs.stderr
    assert read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")


def test_two_targets_many_luns_listing_matches_sysfs(lio, cli):
    """4. two targets, several LUNs: -m session -P 3 lists every disk; fields agree with sysfs."""
    a = lio.create("iqn.2003-01.org.example.vm:multi-a", luns=[8 * MIB, 16 * MIB, 24 * MIB])
    lio.create("iqn.2003-01.org.example.vm:multi-b", luns=[8 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    out = cli.ok("-m", "node", "-L", "all")
    assert out.count("successful.") == 2
    sids = sessions_in_sysfs()
    assert len(sids) == 2
    disks = {sid: wait_disks(sid, 3 if read(f"/sys/class/iscsi_session/session{sid}/targetname")
                             == a.iqn else 1) for sid in sids}
    p3 = cli.ok("-m", "session", "-P", "3")
    assert p3.startswith("iSCSI Transport Class version "
                         f"{read('/sys/module/scsi_transport_iscsi/version')}\n")
    for sid, luns in disks.items():
        s = f"/sys/class/iscsi_session/session{sid}"
        c = f"/sys/class/iscsi_connection/connection{sid}:0"
        host = os.path.basename(os.path.realpath(f"{s}/device/..")).removeprefix("host")
        block = p3.split(f"\t\tSID: {sid}\n")[1].split("\tCurrent Portal")[0]
        assert f"\t\tiSCSI Session State: {read(f'{s}/state')}\n" in block
        assert f"\t\tRecovery Timeout: {read(f'{s}/recovery_tmo')}\n" in block
        assert f"\t\tMaxRecvDataSegmentLength: {read(f'{c}/max_recv_dlength')}\n" in block
        assert f"\t\tMaxXmitDataSegmentLength: {read(f'{c}/max_xmit_dlength')}\n" in block
        assert f"\t\tFirstBurstLength: {read(f'{s}/first_burst_len')}\n" in block
        assert f"\t\tHost Number: {host}\tState: running\n" in block
        assert "\t\tiSCSI Connection State: LOGGED IN\n" in block
        for lun, dev in luns.items():
            assert re.search(rf"\t\tscsi{host} Channel 00 Id \d+ Lun: {lun}\n"
                             rf"\t\t\tAttached scsi disk {os.path.basename(dev)}\t\tState: running\n",
                             block), (lun, dev, block)
    # the flat listing is byte for byte what Debian's iscsiadm prints for the same kernel state
    ours = cli.ok("-m", "session")
    theirs = subprocess.run(["iscsiadm", "-m", "session"], capture_output=True, text=True,
                            timeout=30)
    assert theirs.returncode == 0, theirs.stderr
    assert ours == theirs.stdout
    assert_listings_match_iscsiadm(cli, sids)
    cli.ok("-m", "node", "-U", "all")


@contextlib.contextmanager
def iscsid_hanging_up():
    """A listener on iscsid's abstract socket that reads each request and hangs up
    unanswered: iscsiadm's question for a session's states then fails at once and it
    prints them Unknown, as without iscsid, instead of first running iscsid.startup and
    sleeping a second for each session (usr/iscsid_req.c ipc_connect, on ECONNREFUSED).
    Only while iscsictld runs already (it refuses to start beside an iscsid)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0ISCSIADM_ABSTRACT_NAMESPACE")
    listener.listen(8)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # shut down: the listing is over
                return
            with conn:
                conn.settimeout(10)
                try:
                    conn.recv(1 << 16)  # the request written (no EPIPE for its writer)
                except OSError:
                    pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)


def assert_listings_match_iscsiadm(cli, sids):
    """Every print level of -m session (all sessions and each one) and of -m host (all
    hosts and each one), and -m fw, byte for byte and exit code as Debian's iscsiadm.
    Without iscsid's answer (:func:`iscsid_hanging_up`), iscsiadm prints the two states
    iscsid keeps as Unknown, as iscsictl does without iscsictld (unit tests): iscsictld's
    two values are put back to Unknown."""
    hosts = [os.path.basename(os.path.realpath(f"/sys/class/iscsi_session/session{sid}/device/.."))
             .removeprefix("host") for sid in sids]
    commands = [["-m", "fw"]]
    for level in ("0", "1", "2", "3"):
        commands.append(["-m", "session", "-P", level])
        if level != "0":  # -r SID at level 0 is the node record (another DB for iscsiadm)
            commands += [["-m", "session", "-P", level, "-r", str(sid)] for sid in sids]
    commands += [["-m", "host", "-P", level] for level in ("0", "1", "2", "3", "4")]

    def ours(args):
        r = cli.run(*args)
        r.stdout = r.stdout.replace("iSCSI Connection State: LOGGED IN", "iSCSI Connection "
                                    "State: Unknown").replace("Internal iscsid Session State: "
                                                              "NO CHANGE", "Internal iscsid "
                                                              "Session State: Unknown")
        return r
    for args in commands:
        with iscsid_hanging_up():
            theirs = subprocess.run(["iscsiadm", *args], capture_output=True, text=True,
                                    timeout=60)
        mine = ours(args)
        assert mine.returncode == theirs.returncode, (args, mine.stderr, theirs.stderr)
        assert mine.stdout == theirs.stdout, args
    # -H: iscsiadm 2.1.8 ignores it (prints every host); ours is that host's block of it
    for level in ("1", "2", "3", "4"):
        every = ours(["-m", "host", "-P", level]).stdout
        for host in hosts:
            one = ours(["-m", "host", "-P", level, "-H", host]).stdout
            block = one.split(f"Host Number: {host}\n")[1]
            assert f"Host Number: {host}\n{block}" in every and "Host Number" not in block


def test_bad_targets_leave_nothing(lio, cli):
    """5. a target that does not exist, and a closed port: message, exit code, no session."""
    lio.create("iqn.2003-01.org.example.vm:exists", luns=[8 * MIB])
    ghost = "iqn.2003-01.org.example.vm:no-such-target"
    cli.ok("-m", "node", "-T", ghost, "-p", PORTAL, "-o", "new")
    cli.update(ghost, PORTAL, "node.session.initial_login_retry_max", "2")
    r = cli.run("-m", "node", "-T", ghost, "-p", PORTAL, "-l")
    # LIO answers an unknown TargetName with 03/01 (iscsi_target_locate_portal), a
    # retryable target error: retried, then exit 5 with the target's status
    assert r.returncode == 5, r.stdout + r.stderr
    assert "login rejected: target error - service unavailable (03/01)" in r.stderr
    assert sessions_in_sysfs() == []
    cli.ok("-m", "node", "-T", ghost, "-p", f"{PORTAL}:3999", "-o", "new")
    cli.update(ghost, f"{PORTAL}:3999", "node.session.initial_login_retry_max", "2")
    r = cli.run("-m", "node", "-T", ghost, "-p", f"{PORTAL}:3999", "-l")
    assert r.returncode == 8, r.stdout + r.stderr  # iscsid's ISCSI_ERR_TRANS_TIMEOUT
    assert "initiator reported error (8 - connection timed out)" in r.stderr
    assert "cannot make connection to 127.0.0.1: Connection refused" in r.stderr
    assert sessions_in_sysfs() == []
    r = cli.run("-m", "node", "-T", "iqn.2003-01.org.example.vm:unknown-record", "-p", PORTAL, "-l")
    assert r.returncode == 21 and "No records found" in r.stderr


def test_several_sessions_to_one_target(lio, cli):
    """node.session.nr_sessions = 2 gives two sessions (each its own ISID and disk), a second
    login finds them present (15), -m session -r SID -o new adds a third, -r SID works on
    the session's record as iscsiadm does, and logout ends all three."""
    t = lio.create("iqn.2003-01.org.example.vm:sessions", luns=[8 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    cli.update(t.iqn, PORTAL, "node.session.nr_sessions", "2")
    desc = f"[iface: default, target: {t.iqn}, portal: {PORTAL},3260]"
    out = cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
    assert out == 2 * f"Logging in to {desc} (multiple)\n" + 2 * f"Login to {desc} successful.\n"
    sids = sessions_in_sysfs()
    assert len(sids) == 2
    r = cli.run("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
    assert r.returncode == 15 and "default: 2 sessions requested, but 2 already present." in r.stderr
    out = cli.ok("-m", "session", "-r", str(sids[0]), "-o", "new")
    assert out == f"Logging in to {desc} (multiple)\nLogin to {desc} successful.\n"
    sids = sessions_in_sysfs()
    assert len(sids) == 3
    assert len(t.dynamic_sessions()) == 3  # three sessions in LIO, not one reinstated
    disks = {wait_disks(sid, 1)[0] for sid in sids}
    assert len(disks) == 3  # the LUN once through each session
    cli.ok("-m", "session", "-r", str(sids[2]), "-o", "update",
           "-n", "node.session.timeo.replacement_timeout", "-v", "33")
    record = cli.ok("-m", "session", "-r", str(sids[1]))
    assert record.startswith("# BEGIN RECORD")
    assert "node.session.nr_sessions = 2\n" in record
    assert "node.session.timeo.replacement_timeout = 33\n" in record
    assert_listings_match_iscsiadm(cli, sids)
    out = cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
    assert out.count("successful.") == 3
    assert sessions_in_sysfs() == []


def test_rescan_finds_a_new_lun_without_the_daemon(lio, cli):
    """-R (session and node mode) is the command's own work, as iscsiadm's: a LUN added to
    the target appears, and so does one added later while iscsictld is unreachable."""
    t = lio.create("iqn.2003-01.org.example.vm:rescan", luns=[8 * MIB])
    cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    sid = login_sid(cli, t.iqn)
    assert list(wait_disks(sid, 1)) == [0]
    t.add_lun(16 * MIB)
    out = cli.ok("-m", "session", "-r", str(sid), "-R")
    assert out == (f"Rescanning session [sid: {sid}, target: {t.iqn}, "
                   f"portal: {PORTAL},3260]\n")
    disks = wait_disks(sid, 2)
    assert int(read(f"/sys/block/{os.path.basename(disks[1])}/size")) * 512 == 16 * MIB
    t.add_lun(24 * MIB)
    no_daemon = dict(cli.env, ISCSICTL_SOCKET="/run/no-daemon-here.sock")
    r = subprocess.run([str(VENV_BIN / "iscsictl-py"), "-m", "node", "-T", t.iqn, "-p", PORTAL,
                        "-R"], capture_output=True, text=True, env=no_daemon, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    assert sorted(wait_disks(sid, 3)) == [0, 1, 2]
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
