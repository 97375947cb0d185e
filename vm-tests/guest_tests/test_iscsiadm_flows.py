"""Login and logout as a user of open-iscsi sees them: the same commands run against the
same LIO targets, first with Debian's iscsiadm + iscsid, then with iscsictl + iscsictld
(never both at once), and compared command by command.

Compared: the exit code; stdout (its lines as a multiset, sids made equal: logins
complete in any order); stderr: every line iscsiadm prints is printed by iscsictl too, in
order (iscsictl may add a line of detail, e.g. ``cannot make connection to ...``)."""

import os
import re
import select
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from cli import (VENV_BIN, check_direct_roundtrip, end_process, read, sessions_in_sysfs,
                 wait_disks, wait_for)

MIB = 1 << 20
PORTAL = "127.0.0.1"
INITIATOR = "iqn.2026-11.org.example.vm:flows"
DB_DIRS = ("nodes", "send_targets", "isns", "static", "fw", "ifaces")


def _flow(run, a, b, c):
    """The commands (each through ``run(*args)``); the same for both initiators."""
    def update(target, key, value, portal=PORTAL):
        run("-m", "node", "-T", target, "-p", portal, "-o", "update", "-n", key, "-v", value,
            compare=False)

    run("-m", "discovery", "-t", "st", "-p", PORTAL)
    for t in (a, b, c):
        update(t, "node.session.initial_login_retry_max", "1")
    update(c, "node.session.auth.authmethod", "CHAP")
    update(c, "node.session.auth.username", "flows")
    update(c, "node.session.auth.password", "not-the-secret")
    run("-m", "node", "-T", a, "-p", PORTAL, "-l")
    run("-m", "node", "-T", a, "-p", PORTAL, "-l")  # 15, nothing attempted
    run("-m", "node", "-T", "iqn.2003-01.org.example.vm:none", "-p", PORTAL, "-l")  # 21
    run("-m", "node", "-T", c, "-p", PORTAL, "-l")  # 24
    update(c, "node.session.auth.password", "flows-secret12")
    run("-m", "node", "-T", c, "-p", PORTAL, "-l")
    run("-m", "node", "-L", "all")  # b logs in; a and c: 15
    run("-m", "node", "-T", b, "-p", PORTAL, "-u")
    run("-m", "node", "-T", b, "-p", PORTAL, "-u")  # 21
    run("-m", "session", "-r", str(sessions_in_sysfs()[0]), "-u")
    run("-m", "session", "-r", "99", "-u")  # 22
    run("-m", "node", "-U", "all")
    run("-m", "node", "-U", "all")  # 21
    run("-m", "node", "-T", a, "-p", f"{PORTAL}:3999", "-o", "new")
    update(a, "node.session.initial_login_retry_max", "1", f"{PORTAL}:3999")
    run("-m", "node", "-T", a, "-p", f"{PORTAL}:3999", "-l")  # refused: 8
    run("-m", "discoverydb", "-t", "st", "-p", f"{PORTAL}:3999", "-o", "new")
    run("-m", "discoverydb", "-t", "st", "-p", f"{PORTAL}:3999", "-o", "update",
        "-n", "discovery.sendtargets.reopen_max", "-v", "1")
    # 11 once retries run out; -D uses the stored record (-m discovery -t st would rewrite
    # it from iscsid.conf in iscsiadm, and keep it in iscsictl: see the README)
    run("-m", "discoverydb", "-t", "st", "-p", f"{PORTAL}:3999", "-D")
    run("-m", "node", "-o", "delete")
    run("-m", "discovery", "-t", "st", "-p", PORTAL, "-l")  # c: fresh record, no CHAP: 24
    run("-m", "node", "-U", "all")
    # startup classes, two sessions for one record, the listings while logged in
    update(a, "node.startup", "automatic")
    update(b, "node.session.nr_sessions", "2")
    run("-m", "node", "-L", "automatic")
    run("-m", "node", "-L", "onboot")  # 21
    run("-m", "node", "-L", "manual")  # b: two "(multiple)"; c: 24; a: 15 (conn[0] is manual)
    run("-m", "session", "-P", "3", numbers=True)
    run("-m", "session", "-r", str(sessions_in_sysfs()[0]), "-s", numbers=True)
    run("-m", "node", "-T", a, "-p", PORTAL, "-s", numbers=True)
    run("-m", "node", "-I", "nosuch", "-T", a, "-p", PORTAL, "-l")  # 3, as iscsiadm
    run("-m", "node", "-U", "automatic")
    run("-m", "node", "-U", "manual")
    run("-m", "node", "-U", "manual")  # 21
    # -W: the login sent, not waited for (0, "Logging in to" only); the daemon makes it
    run("-m", "node", "-T", a, "-p", PORTAL, "-l", "-W")
    deadline = time.monotonic() + 60
    while len(sessions_in_sysfs()) != 1 or \
            read(f"/sys/class/iscsi_session/session{sessions_in_sysfs()[0]}/state") != \
            "LOGGED_IN":
        assert time.monotonic() < deadline, "the -W login made no session"
        time.sleep(0.1)
    run("-m", "node", "-T", a, "-p", PORTAL, "-l", "-W")  # 15: present
    run("-m", "node", "-U", "all")


def _normal(text: str, tool: str, numbers: bool = False) -> list[str]:
    """Lines without the guest's systemd noise, the tool's name made equal, sids (every
    number with ``numbers``: sids, hosts, disks and counters of listings) made equal."""
    lines = []
    for line in text.splitlines():
        if "systemd" in line or "Failed to connect to bus" in line:
            continue  # the guest has no systemd; iscsiadm says so on stderr
        if "could not read session " in line:
            continue  # iscsiadm's sysfs reader's own diagnostic before its message
        if line.endswith("failed to send SendTargets PDU"):
            # iscsiadm's iSER discovery starting over: its Text found the kernel's login
            # task still held by the Login Response just passed up (EPERM); iscsictl sends
            # it again on the same session (kernel_session._send_pdu)
            continue
        line = line.replace(f"{tool}:", "TOOL:")
        line = re.sub(r"sid: \d+", "sid: N", line)
        if numbers:
            line = re.sub(r"\bsd[a-z]+\b", "sdX", re.sub(r"\d+", "N", line))
        lines.append(line)
    return lines


def _record(tool: str, env=None):
    results = []
    ours = Path(tool).name == "iscsictl"

    def run(*args, compare=True, numbers=False, iscsictl_args=()):
        """``iscsictl_args`` go to iscsictl only (e.g. -S, where iscsiadm prints secrets)."""
        cmd = [tool, *args, *(iscsictl_args if ours else ())]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if compare:
            name = Path(tool).name
            results.append((" ".join(args), r.returncode, _normal(r.stdout, name, numbers),
                            _normal(r.stderr, name)))
        return r
    return run, results


def _both(flow, scenario_dir, initiator=INITIATOR):
    """``flow(run)`` through iscsiadm + iscsid, then (DB emptied) iscsictl + iscsictld;
    their results compared command by command; no session left."""
    from iscsictld import Iscsictld
    from openiscsi import OpenIscsi

    oi = OpenIscsi(scenario_dir, initiator)
    oi.start()
    try:
        run, theirs = _record("iscsiadm")
        flow(run)
    finally:
        oi.stop()
    for db in DB_DIRS:
        shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)
    d = Iscsictld(scenario_dir)
    d.start()
    try:
        run, ours = _record(str(VENV_BIN / "iscsictl"))  # the same /etc/iscsi database
        flow(run)
    finally:
        d.logout_all_and_stop()
    assert sessions_in_sysfs() == []
    assert len(ours) == len(theirs)
    for (args, rc1, out1, err1), (_, rc2, out2, err2) in zip(theirs, ours):
        assert rc2 == rc1, (args, err1, err2)
        assert Counter(out2) == Counter(out1), \
            "\n".join([args, "iscsiadm:", *out1, "iscsictl:", *out2])
        extra = iter(err2)
        assert all(line in extra for line in err1), (args, err1, err2)  # in order


def test_login_logout_flows_as_iscsiadm(lio, scenario_dir):
    a = lio.create("iqn.2003-01.org.example.vm:flow-a", luns=[8 * MIB]).iqn
    b = lio.create("iqn.2003-01.org.example.vm:flow-b", luns=[8 * MIB]).iqn
    c = lio.create("iqn.2003-01.org.example.vm:flow-c", luns=[8 * MIB], initiator_iqn=INITIATOR,
                   auth={"userid": "flows", "password": "flows-secret12"}).iqn
    _both(lambda run: _flow(run, a, b, c), scenario_dir)


def _db_tree(root=Path("/etc/iscsi")) -> dict[str, str]:
    """The record database under ``root`` (not iscsid.conf nor the initiator name): each
    file's content and the path each link names (relative to ``root``: iscsiadm's links
    are absolute, iscsictl's relative, so that a database works under any root), by path."""
    tree = {}
    for db in DB_DIRS:
        for d, dirs, names in os.walk(root / db):
            for name in dirs + names:
                p = Path(d) / name
                if p.is_symlink():
                    named = os.path.normpath(os.path.join(d, os.readlink(p)))
                    tree[str(p.relative_to(root))] = "-> " + os.path.relpath(named, root)
                elif p.is_file():
                    tree[str(p.relative_to(root))] = p.read_text()
    return tree


def test_isns_discovery_login_io_as_iscsiadm(lio, isnsd, scenario_dir):
    """iSNS discovery (RFC 4171) against Debian's isnsd, which holds LIO's target, its
    portal and their portal group (tag 1) as registered by isnsadm.  Both tools: a
    discovery (the node records, and the same database files), a login through the real
    kernel whose disk reads back a direct write, logout; a discoverydb record and -D on it
    (the database files again)."""
    t = lio.create("iqn.2003-01.org.example.vm:isns", luns=[8 * MIB])
    isnsd.register_target(t.iqn, t.portal, 1)
    pg = isnsd.adm("--query", f"pg-name={t.iqn}")
    for line in (f'Portal group name = "{t.iqn}"', f"Portal group address = {PORTAL}",
                 "Portal group port = 3260/tcp", "Portal group tag = 1"):
        assert line in pg, pg
    server = f"{PORTAL}:{isnsd.port}"
    trees = []

    def logged_in():
        sids = sessions_in_sysfs()
        assert len(sids) == 1, sids
        s = f"/sys/class/iscsi_session/session{sids[0]}"
        assert (read(f"{s}/targetname"), read(f"{s}/tpgt"), read(f"{s}/state")) == \
            (t.iqn, "1", "LOGGED_IN")
        c = f"/sys/class/iscsi_connection/connection{sids[0]}:0"
        assert (read(f"{c}/persistent_address"), read(f"{c}/persistent_port")) == (PORTAL, "3260")
        dev = wait_disks(sids[0], 1)[0]
        check_direct_roundtrip(dev, 4 * MIB, scenario_dir / "data.bin", t.lun_files[0])

    def flow(run):
        run("-m", "discovery", "-t", "isns", "-p", server)
        run("-m", "discovery", "-P", "1")
        run("-m", "node", "-T", t.iqn, "-p", PORTAL, "-o", "show")
        trees.append(_db_tree())
        run("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
        logged_in()
        run("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
        assert sessions_in_sysfs() == []
        run("-m", "discoverydb", "-t", "isns", "-p", server, "-o", "new")
        run("-m", "discoverydb", "-t", "isns", "-p", server, "-D")
        run("-m", "discovery", "-P", "1")
        trees.append(_db_tree())
    _both(flow, scenario_dir)
    for when, theirs, ours in zip(("discovery", "discoverydb -D"), trees[:2], trees[2:]):
        assert ours == theirs, _tree_diff(when, theirs, ours)


def _session_targets() -> list[str]:
    """The target of each kernel session, sorted (a session removed between the listing
    and the read, a logout under way, is left out: its attribute gone, ENOENT, or being
    removed, ENODEV)."""
    out = []
    for sid in sessions_in_sysfs():
        try:
            out.append(read(f"/sys/class/iscsi_session/session{sid}/targetname"))
        except OSError:
            continue
    return sorted(out)


def test_discovery_daemon_logs_in_and_out_as_iscsid(lio, scenario_dir):
    """A SendTargets discovery record with ``use_discoveryd = Yes`` (a round every 2 s):
    from its start the daemon logs in to every target the portal reports, to a target
    added later (whose disk appears), and out of one deleted (open-iscsi's discoveryd.c).
    iscsid, then iscsictld, each on the same record: the same sessions at each step, and
    the node DB as it was."""
    from iscsictld import Iscsictld
    from openiscsi import OpenIscsi

    iqn = {n: f"iqn.2003-01.org.example.vm:dd-{n}" for n in "abc"}
    lio.create(iqn["a"], luns=[8 * MIB])
    runs = []

    def step(what, want):
        return wait_for(what, lambda: _session_targets() == want and want, 60)

    def flow(tool, start, stop):
        b = lio.create(iqn["b"], luns=[8 * MIB])
        for db in DB_DIRS:
            shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)
        for args in (("-o", "new"),
                     ("-o", "update", "-n", "discovery.sendtargets.use_discoveryd", "-v", "Yes"),
                     ("-o", "update", "-n", "discovery.sendtargets.discoveryd_poll_inval",
                      "-v", "2")):
            r = subprocess.run([tool, "-m", "discoverydb", "-t", "st", "-p", PORTAL, *args],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (tool, args, r.stderr)
        tree = _db_tree()
        start()
        c = None
        try:
            seen = [step("both targets' sessions", [iqn["a"], iqn["b"]])]
            c = lio.create(iqn["c"], luns=[8 * MIB])
            seen.append(step("the added target's session", [iqn["a"], iqn["b"], iqn["c"]]))
            wait_disks(sessions_in_sysfs()[-1], 1)
            b.teardown()
            seen.append(step("the deleted target's logout", [iqn["a"], iqn["c"]]))
            time.sleep(5)  # two more rounds: nothing changes
            seen.append(_session_targets())
            assert _db_tree() == tree, "the discovery daemon wrote to the node DB"
        finally:
            stop()
            for t in (b, c):
                if t is not None:
                    t.teardown()
        runs.append(seen)

    oi = OpenIscsi(scenario_dir, INITIATOR)

    def stop_iscsid():
        # iscsid's discoveryd logs in again right after a logout: stop iscsid first (the
        # sessions stay), then log out with an iscsid that has no discovery record
        end_process(oi.proc, 10)
        oi.start()
        oi.stop()

    d = Iscsictld(scenario_dir)

    def stop_iscsictld():
        d.stop()
        for db in DB_DIRS:
            shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)
        d.logout_all_and_stop()
    flow("iscsiadm", lambda: oi.start(keep_db=True), stop_iscsid)
    assert sessions_in_sysfs() == []
    flow(str(VENV_BIN / "iscsictl"), d.start, stop_iscsictld)
    assert sessions_in_sysfs() == []
    assert runs[0] == runs[1]
    assert runs[1][-1] == [iqn["a"], iqn["c"]]


def _tree_diff(when, theirs, ours) -> str:
    """What differs between iscsiadm's and iscsictl's database trees, as unified diffs."""
    import difflib

    out = [f"after {when}:"]
    for path in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(path), ours.get(path)
        if a != b:
            out += difflib.unified_diff((a or "<none>\n").splitlines(True),
                                        (b or "<none>\n").splitlines(True),
                                        f"iscsiadm: {path}", f"iscsictl: {path}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


NETS = {"dum0": "10.99.0.1", "dum1": "10.99.1.1"}


@pytest.fixture
def two_nics():
    """Two Ethernet devices (dummy), each with its own address: ``{name: (ip, mac)}``."""
    subprocess.run(["modprobe", "dummy"], check=True)
    out = {}
    try:
        for dev, ip in NETS.items():
            for cmd in (["link", "add", dev, "type", "dummy"], ["addr", "add", f"{ip}/24", "dev", dev],
                        ["link", "set", dev, "up"]):
                subprocess.run(["ip", *cmd], check=True)
            out[dev] = (ip, Path(f"/sys/class/net/{dev}/address").read_text().strip())
        yield out
    finally:
        for dev in NETS:
            subprocess.run(["ip", "link", "del", dev], capture_output=True)


def test_two_paths_through_two_bound_ifaces_as_iscsiadm(lio, scenario_dir, two_nics):
    """open-iscsi's multipath setup for software iSCSI: an iface per NIC (one bound by MAC,
    one by name), a discovery through each, a session per path.  A login through the wrong
    NIC cannot reach its portal (8): the binding is real.  -m session -P 3 shows the
    ifaces as iscsiadm does.  A ping from each iface goes to the host of its session (by
    MAC, by net device), whose driver, iscsi_tcp, cannot ping: the real kernel's ENOSYS."""
    import rtslib_fb as rtslib

    (ip0, mac0), (ip1, _) = two_nics["dum0"], two_nics["dum1"]
    t = lio.create("iqn.2003-01.org.example.vm:paths", luns=[8 * MIB], portal=(ip0, 3260))
    rtslib.NetworkPortal(t.tpg, ip1, 3260, mode="any")

    def flow(run):
        run("-m", "iface", "-I", "path0", "-o", "new")
        run("-m", "iface", "-I", "path0", "-o", "update", "-n", "iface.hwaddress", "-v", mac0)
        run("-m", "iface", "-I", "path1", "-o", "new")
        run("-m", "iface", "-I", "path1", "-o", "update", "-n", "iface.net_ifacename", "-v", "dum1")
        run("-m", "iface")
        run("-m", "discovery", "-t", "st", "-p", ip0, "-I", "path0")
        run("-m", "discovery", "-t", "st", "-p", ip1, "-I", "path1")
        run("-m", "node")
        for key, value in (("node.session.initial_login_retry_max", "1"),
                           ("node.conn[0].timeo.login_timeout", "3")):
            run("-m", "node", "-o", "update", "-n", key, "-v", value, compare=False)
        run("-m", "node", "-T", t.iqn, "-p", ip0, "-I", "path0", "-l")
        run("-m", "node", "-T", t.iqn, "-p", ip1, "-I", "path1", "-l")
        run("-m", "node", "-T", t.iqn, "-p", ip1, "-I", "path0", "-l")  # 8: dum0 cannot reach
        # the iface's host found by MAC and by net device; a PING to iscsi_tcp: ENOSYS, 27
        # (iscsiadm takes host 0, the first session's in a fresh VM, for "no host": "Can't
        # find host_no.", 7)
        r = run("-m", "iface", "-C", "ping", "-I", "path0", "-a", ip0, compare=False)
        if r.args[0].endswith("iscsictl"):
            assert (r.returncode, r.stdout) == (27, "Ping 1 failed: operation not supported\n")
        run("-m", "iface", "-C", "ping", "-I", "path1", "-a", ip1, "-c", "2")
        run("-m", "session", numbers=True)
        run("-m", "session", "-P", "3", numbers=True)
        run("-m", "node", "-U", "all")
    _both(flow, scenario_dir)


@pytest.fixture
def boot_firmware(lio):
    """The VM's iBFT (vm-tests/guest/ibft.py, given to QEMU by the host) shown by the
    kernel's iscsi_ibft module, its NIC's Ethernet device (found by MAC: the table's NIC is
    the PCI host bridge), and LIO serving the two targets it describes, CHAP and mutual
    CHAP for the firmware's initiator name only."""
    import ibft

    try:
        ibft.serve_in_guest(lio.create)
        yield ibft
    finally:
        ibft.unserve_in_guest()


def test_boot_firmware_targets_as_iscsiadm(boot_firmware, scenario_dir):
    """The kernel's iBFT through both tools: -m fw (iscsictl with -S: it masks secrets by
    default), logins with the firmware's records (its initiator name and CHAP: the targets
    admit nothing else), the sessions, fw discovery into the DB and its records field by
    field, a rediscovery (boot records become onboot), logins from those records, and the
    logouts -U all leaves to -m session -u."""
    ibft = boot_firmware
    boot, data = ibft.BOOT_TARGET["name"], ibft.DATA_TARGET["name"]

    def flow(run):
        run("-m", "fw", iscsictl_args=("-S",))
        run("-m", "fw", "-l", "-n", "iface.hwaddress", "-v", "00:00:00:00:00:01")  # 7
        run("-m", "fw", "-l")
        run("-m", "session", numbers=True)
        run("-m", "session", "-P", "3", numbers=True)
        run("-m", "node", "-U", "all")  # no records: left alone (21)
        run("-m", "session", "-u")
        run("-m", "discoverydb", "-t", "fw")  # 7: -D missing
        run("-m", "discovery", "-t", "fw")
        run("-m", "node")
        run("-m", "discovery", "-P", "1")
        run("-m", "node", "-T", boot, "-o", "show")
        run("-m", "node", "-T", data, "-p", "127.0.0.1:3261", "-o", "show", "-S")
        run("-m", "discovery", "-t", "fw", "-l")
        run("-m", "node", "-T", boot, "-o", "show")  # onboot now
        run("-m", "session", "-P", "1", numbers=True)
        run("-m", "node", "-U", "all")  # onboot: left alone
        run("-m", "session", "-u")
        run("-m", "node", "-o", "delete")
        run("-m", "discovery", "-P", "1")
    _both(flow, scenario_dir, initiator=INITIATOR)


def _host_fixture_matches_the_kernels_tree(ibft, scenario_dir):
    """tests/ibft_tree.py (the host tests' firmware/ibft) writes what the kernel shows for
    the same table: every file, name and content (the PCI device link aside)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from ibft_tree import write_tree

    real = Path("/sys/firmware/ibft")
    write_tree(scenario_dir / "fixture", ibft.INITIATOR, [ibft.NIC],
               [ibft.BOOT_TARGET, ibft.DATA_TARGET])
    fake = scenario_dir / "fixture/firmware/ibft"

    def files(root):
        import os
        out = {}
        for d, dirs, names in os.walk(root):  # not into the device link
            dirs[:] = [x for x in dirs if x != "acpi_header"]
            for n in names:
                p = Path(d) / n
                if not p.is_symlink():
                    out[str(p.relative_to(root))] = p.read_text()
        return out
    assert files(fake) == files(real)


def test_firmware_sessions_have_their_disks(boot_firmware, daemon, scenario_dir):
    """-m fw -l through iscsictld: both targets' LUNs become disks with the firmware's
    initiator name; a second -m fw -l finds the sessions present (15, where iscsiadm says
    the same and exits 0); the secrets stay masked without -S."""
    from cli import Cli, read, session_disks, wait_disks, wait_for

    ibft = boot_firmware
    _host_fixture_matches_the_kernels_tree(ibft, scenario_dir)
    cli = Cli(scenario_dir / "db")
    r = cli.run("-m", "fw")
    assert r.returncode == 0 and "node.session.auth.password = ********" in r.stdout
    assert ibft.BOOT_TARGET["chap_secret"] not in r.stdout
    cli.ok("-m", "fw", "-l")
    sids = sessions_in_sysfs()
    assert len(sids) == 2
    by_target = {read(f"/sys/class/iscsi_session/session{s}/targetname"): s for s in sids}
    assert len(wait_disks(by_target[ibft.BOOT_TARGET["name"]], 1)) == 1
    assert len(wait_disks(by_target[ibft.DATA_TARGET["name"]], 2)) == 2
    for s in sids:
        assert read(f"/sys/class/iscsi_session/session{s}/initiatorname") == ibft.INITIATOR
    r = cli.run("-m", "fw", "-l")  # again (dracut's iscsiroot does): said, no failure
    assert r.returncode == 0 and r.stderr.count("already present") == 2
    assert "Could not log" not in r.stderr and sessions_in_sysfs() == sids
    assert session_disks(by_target[ibft.BOOT_TARGET["name"]])

    # a daemon that starts after the boot login (no record in any DB) adopts the boot
    # session and logs it in again after a connection loss with the session's own CHAP
    sid = by_target[ibft.BOOT_TARGET["name"]]
    conn = Path(f"/sys/class/iscsi_connection/connection{sid}:0")
    before = read(conn / "local_port")
    daemon.kill9()
    daemon.start()
    subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", "3260"], check=True,
                   capture_output=True)
    wait_for("the boot session's relogin",
             lambda: read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
             and read(conn / "local_port") not in (before, None), timeout=30)
    assert "no node record" in daemon.log_path.read_text()


def test_boot_without_a_daemon(boot_firmware, scenario_dir):
    """The boot path of an initramfs: Debian's iscsistart -b, then iscsictld adopting its
    sessions (and logging one in again after a connection loss, with the CHAP iscsistart
    used); then the same with iscsictl-start -b, which returns once the disks are there and
    leaves the sessions to the daemon started after it."""
    from cli import read, wait_disks, wait_for
    from iscsictld import Iscsictld

    ibft = boot_firmware
    boot_name, data_name = ibft.BOOT_TARGET["name"], ibft.DATA_TARGET["name"]

    def by_target():
        return {read(f"/sys/class/iscsi_session/session{s}/targetname"): s
                for s in sessions_in_sysfs()}

    def relogin_after_kill(sid):
        conn = Path(f"/sys/class/iscsi_connection/connection{sid}:0")
        before = read(conn / "local_port")
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", "3260"], check=True,
                       capture_output=True)
        wait_for("the boot session's relogin",
                 lambda: read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN"
                 and read(conn / "local_port") not in (before, None), timeout=30)

    def nops(sid):
        conn = Path(f"/sys/class/iscsi_connection/connection{sid}:0")
        return read(conn / "ping_tmo"), read(conn / "recv_tmo")

    def nops_turned_on(sessions):
        """A boot login sends no NOP-Outs (0/0); iscsictld logs such a session in again at
        its start with the record's (iscsid.conf's 5/5), as iscsid's sync_session, and the
        disks stay."""
        wait_for("the boot sessions' NOP-Outs", lambda: all(
            nops(s) == ("5", "5") and read(f"/sys/class/iscsi_session/session{s}/state")
            == "LOGGED_IN" for s in sessions.values()), timeout=60)
        assert len(wait_disks(sessions[data_name], 2, timeout=5)) == 2

    theirs = subprocess.run(["iscsistart", "-b"], capture_output=True, text=True, timeout=120)
    (scenario_dir / "iscsistart.log").write_text(theirs.stdout + theirs.stderr)
    assert theirs.returncode == 0, theirs.stderr
    assert {nops(s) for s in by_target().values()} == {("0", "0")}
    d = Iscsictld(scenario_dir)
    d.start()
    try:
        sessions = by_target()
        assert set(sessions) == {boot_name, data_name}
        nops_turned_on(sessions)
        relogin_after_kill(sessions[boot_name])
    finally:
        d.logout_all_and_stop()
    assert sessions_in_sysfs() == []

    ours = subprocess.run([str(VENV_BIN / "iscsictl-start"), "-b"], capture_output=True,
                          text=True, timeout=120)
    (scenario_dir / "iscsictl-start.log").write_text(ours.stdout + ours.stderr)
    assert ours.returncode == 0, ours.stderr
    logging_in = [line.replace("iscsistart:", "X:") for line in theirs.stdout.splitlines()
                  if "Logging into" in line]
    assert [line.replace("iscsictl-start:", "X:") for line in ours.stdout.splitlines()
            if "Logging into" in line] == logging_in
    # iscsistart's child says it with log_warning, on stderr (usr/log.c log_do_log_std)
    assert ours.stderr.count("is operational now") == theirs.stderr.count(
        "is operational now") == 2 and "operational" not in ours.stdout
    sessions = by_target()  # there when it returns, disks scanned, and no process left
    assert set(sessions) == {boot_name, data_name}
    assert len(wait_disks(sessions[data_name], 2, timeout=1)) == 2
    for s in sessions.values():
        assert read(f"/sys/class/iscsi_session/session{s}/initiatorname") == ibft.INITIATOR
        assert nops(s) == ("0", "0")
    d = Iscsictld(scenario_dir)
    d.start()
    try:
        nops_turned_on(sessions)
        again = subprocess.run([str(VENV_BIN / "iscsictl-start"), "-b"], capture_output=True,
                               text=True, timeout=120)
        # as iscsistart's (login_session's ISCSI_ERR_SESS_EXISTS): each login failed, 1
        assert again.returncode == 1 and again.stderr.count("already present") == 2
        assert again.stderr.count("initiator reported error (15 - session exists)") == 2
        relogin_after_kill(sessions[boot_name])
    finally:
        d.logout_all_and_stop()
    assert sessions_in_sysfs() == []


def test_boot_logins_side_by_side_as_iscsistarts(lio, scenario_dir):
    """iscsictl-starts started together (an initramfs's, one per path) log in at once, as
    iscsistarts do: a working path's login does not wait for a dead path's retries (before,
    they took turns: 30 attempts of login_timeout).  Two paths to one target through two
    portals of one portal group get an ISID each (one ISID would have the second login
    reinstate the first session, closing it), though each start runs in a PID namespace of
    its own as its PID 1, so that their PID-spaced ISID qualifiers are one, and their logins
    overlap (each path's portal redirects to LIO's once both are under way,
    vm-tests/guest/redirector.py): before session 58 both offered one ISID (neither saved
    until its login ended; the kernel does not show it).  A third started with the first, for its node,
    waits for its login and
    finds its session (1, "already present"; before session 57 both logged in, as
    iscsistarts do: two sessions, the LUN twice); iscsictld started after them finds both in
    its state file and adopts each with its own; the dead path's start, ended by SIGTERM,
    leaves no session."""
    import json
    import signal
    import socket
    import threading

    import rtslib_fb as rtslib
    from iscsictld import Iscsictld
    from redirector import Redirector

    t = lio.create("iqn.2003-01.org.example.vm:side-by-side", luns=[8 * MIB])
    rtslib.NetworkPortal(t.tpg, "127.0.0.2", 3260, mode="any")
    name = "iqn.2026-11.org.example.vm:starts"
    state = Path("/run/iscsictl/sessions.json")

    def start(address, port=3260, *params, own_pids=False):
        return subprocess.Popen(
            [*(["unshare", "--pid", "--fork", "--kill-child"] if own_pids else []),
             str(VENV_BIN / "iscsictl-start"), "-i", name, "-t", t.iqn, "-g", "1", "-a",
             address, "-p", str(port), *params], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    deaf = socket.create_server(("127.0.0.1", 3270))  # connects, never answers a Login
    dead = start("127.0.0.1", 3270, "-P", "node.conn[0].timeo.login_timeout=30")

    def up():  # the dead path's start has a kernel session too, half-made (FREE)
        return [s for s in sessions_in_sysfs()
                if read(f"/sys/class/iscsi_session/session{s}/state") == "LOGGED_IN"]
    paths = []
    try:
        wait_for("the dead path's connect", lambda: select.select([deaf], [], [], 0)[0],
                 timeout=60)
        both = threading.Barrier(2)
        with Redirector("127.0.0.1", 3271, "127.0.0.1:3260,1", both), \
                Redirector("127.0.0.2", 3271, "127.0.0.2:3260,1", both):
            paths += [start(a, 3271, own_pids=True)
                      for a in ("127.0.0.1", "127.0.0.2", "127.0.0.1")]
            outputs = [p.communicate(timeout=60)[0] for p in paths]
        still = dead.poll() is None  # its first attempt alone lasts 30 s
        (scenario_dir / "iscsictl-starts.log").write_text("\n".join(outputs))
        rcs = [p.returncode for p in paths]
        assert rcs[1] == 0 and sorted(rcs[::2]) == [0, 1], outputs
        twice = outputs[::2][rcs[::2].index(1)]
        assert "1 session requested, but 1 already present" in twice, outputs
        assert still and not any("waiting for process" in o for o in outputs), outputs
        sessions = up()
        assert len(sessions) == 2
        time.sleep(2)  # a reinstatement would have closed the first by now
        assert up() == sessions
        assert t.dynamic_sessions() == [name, name]
        dead.send_signal(signal.SIGTERM)
        said = dead.communicate(timeout=30)[0]
        (scenario_dir / "iscsictl-starts.log").write_text("\n".join([*outputs, said]))
        assert dead.returncode == 1 and "stopped (SIGTERM)" in said, said
    finally:  # (a start left running would hold iscsictld's lock for the next scenario)
        for p in [*paths, dead]:
            end_process(p, 10)
        deaf.close()
    assert sessions_in_sysfs() == sessions  # the dead path's half-made one undone
    saved = json.loads(state.read_text())
    assert sorted(saved, key=int) == [str(s) for s in sessions]
    assert len({saved[str(s)]["isid"] for s in sessions}) == 2, saved
    d = Iscsictld(scenario_dir)
    d.start()
    try:
        states = d.client.call("sessions")
        assert sorted(int(s) for s in states) == sessions
        for s in sessions:
            assert len(wait_disks(s, 1, timeout=30)) == 1
    finally:
        d.logout_all_and_stop()
    assert "no saved ISID" not in d.log_path.read_text()
    assert sessions_in_sysfs() == []


@pytest.fixture
def firmware_nic():
    """The VM's iBFT shown by the kernel and its NIC's Ethernet device ``ibft0`` (down, no
    address); no targets (-N sets up the network only)."""
    import ibft

    try:
        ibft.nic_in_guest()
        yield ibft
    finally:
        ibft.unserve_in_guest()


def _nic_state(dev="ibft0"):
    """A device's flags and addresses and the routes through it, as ``ip -j`` gives them."""
    import json

    def ip(*args):
        return json.loads(subprocess.run(["ip", "-j", *args], check=True, capture_output=True,
                                         text=True).stdout or "[]")
    link = ip("addr", "show", "dev", dev)[0]
    return {"flags": sorted(link["flags"]), "addr_info": [
        {k: a.get(k) for k in ("family", "local", "prefixlen", "scope")}
        for a in link["addr_info"] if a.get("scope") != "link"],
        "routes": ip("route", "show", "dev", dev)}


def test_firmware_network_as_iscsistart(firmware_nic, scenario_dir):
    """-N on the VM's iBFT (its NIC ibft0 at 10.98.0.2/24, gateway 10.98.0.1, both targets
    at 127.0.0.1 on it): Debian's iscsistart, then iscsictl-start, each from ibft0 down and
    bare; the same device state and routes after each, the same lines (iscsictl-start adds
    one of detail below each); a second run changes nothing.  Then what iscsistart cannot
    do, on a firmware tree with VLAN 5 (ISCSICTL_SYSFS_ROOT, the same NIC): the VLAN device
    made on ibft0, and on a second run found, as a VLAN device of another name is."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from ibft_tree import write_tree

    ibft = firmware_nic
    start = str(VENV_BIN / "iscsictl-start")

    def bare():
        for cmd in (["link", "set", "ibft0", "down"], ["addr", "flush", "dev", "ibft0"]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)
        assert _nic_state()["addr_info"] == [] and _nic_state()["routes"] == []

    def run(cmd, env=None):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        with open(scenario_dir / "fwparam_network.log", "a") as log:
            log.write(f"$ {' '.join(cmd)}\nrc={r.returncode}\n{r.stdout}{r.stderr}\n")
        return r

    bare()
    theirs = run(["iscsistart", "-N"])
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    want = _nic_state()
    assert want["addr_info"] == [{"family": "inet", "local": ibft.NIC["ip"],
                                  "prefixlen": 24, "scope": "global"}]
    assert [(r["dst"], r.get("gateway")) for r in want["routes"]
            if r.get("protocol") != "kernel"] == [("127.0.0.1", ibft.NIC["gateway"])]
    bare()
    ours = run([start, "-N"])
    assert (ours.returncode, ours.stderr) == (0, "")
    assert _nic_state() == want
    assert [line for line in ours.stdout.splitlines() if not line.startswith("  ")] == \
        theirs.stdout.splitlines()
    assert ours.stdout.count("  already set up\n") == 1  # the second target: the same NIC
    again = run([start, "-N"])
    assert again.returncode == 0 and again.stdout.count("  already set up\n") == 2
    assert _nic_state() == want

    pci = scenario_dir / "pci0000:00" / "0000:00:03.0"  # the NIC's function, ibft0 on it
    (pci / "net" / "ibft0").mkdir(parents=True)
    root = scenario_dir / "sys"
    write_tree(root, ibft.INITIATOR, [dict(ibft.NIC, vlan=5, device=str(pci))],
               [dict(ibft.BOOT_TARGET, ip="10.98.0.7")])
    env = dict(os.environ, ISCSICTL_SYSFS_ROOT=str(root))
    bare()
    r = run([start, "-N"], env)
    assert (r.returncode, r.stderr) == (0, "")
    # (a VLAN device goes up with its lower device: 8021q's NETDEV_UP)
    assert r.stdout == ("Setting up software interface ibft0\n  made ibft0.5 (VLAN 5 on ibft0),"
                        " ibft0 up, 10.98.0.2/24 on ibft0.5, route to 10.98.0.7 on ibft0.5\n")
    assert "UP" in _nic_state("ibft0.5")["flags"]
    vlan = _nic_state("ibft0.5")
    assert vlan["addr_info"] == [{"family": "inet", "local": "10.98.0.2", "prefixlen": 24,
                                  "scope": "global"}]
    assert {"dst": "10.98.0.7", "scope": "link"}.items() <= \
        next(x for x in vlan["routes"] if x["dst"] == "10.98.0.7").items()
    r = run([start, "-N"], env)
    assert (r.returncode, r.stdout) == (0, "Setting up software interface ibft0\n"
                                           "  already set up\n")
    subprocess.run(["ip", "link", "del", "ibft0.5"], check=True)
    subprocess.run(["ip", "link", "add", "link", "ibft0", "name", "bootvlan", "type", "vlan",
                    "id", "5"], check=True)
    r = run([start, "-N"], env)
    assert (r.returncode, r.stdout) == (0, "Setting up software interface ibft0\n  bootvlan up, "
                                           "10.98.0.2/24 on bootvlan, route to 10.98.0.7 on "
                                           "bootvlan\n")


def test_relogin_through_a_redirecting_portal_as_iscsid(lio, scenario_dir):
    """A node whose portal (127.0.0.1:3270, vm-tests/guest/redirector.py) redirects every
    login to LIO's (3260): the login follows the redirect (-P 1: the current portal 3260,
    the persistent 3270); after its connection is killed the relogin goes to the
    persistent portal again (failback), is redirected again, and logs in on LIO's portal
    (for iscsictld: a redirect relayed by the kernel's RECV_PDU on the bound connection,
    that connection stopped and the next one bound).  Both tools, compared."""
    from redirector import Redirector

    iqn = lio.create("iqn.2003-01.org.example.vm:redirected", luns=[8 * MIB]).iqn
    persistent = f"{PORTAL}:3270"
    seen = []

    def flow(run):
        with Redirector(PORTAL, 3270, f"{PORTAL}:3260,1") as r:
            run("-m", "node", "-T", iqn, "-p", persistent, "-o", "new")
            run("-m", "node", "-T", iqn, "-p", persistent, "-l")
            run("-m", "session", "-P", "1", numbers=True)
            sid = sessions_in_sysfs()[0]
            conn = Path(f"/sys/class/iscsi_connection/connection{sid}:0")
            before, first = read(conn / "local_port"), r.logins
            subprocess.run(["ss", "-K", "dst", PORTAL, "dport", "=", "3260"], check=True,
                           capture_output=True)
            wait_for("the relogin", lambda: read(f"/sys/class/iscsi_session/session{sid}/state")
                     == "LOGGED_IN" and read(conn / "local_port") not in (before, None),
                     timeout=30)
            seen.append((first, r.logins, {k: read(conn / k) for k in (
                "address", "port", "persistent_address", "persistent_port")}))
            assert len(wait_disks(sid, 1)) == 1
            run("-m", "session", "-P", "1", numbers=True)
            run("-m", "node", "-T", iqn, "-p", persistent, "-u")
    _both(flow, scenario_dir)
    assert seen == [(1, 2, {"address": PORTAL, "port": "3260", "persistent_address": PORTAL,
                            "persistent_port": "3270"})] * 2
    said = [re.findall(r"Connection\d+:0 (to \[.*\] is (?:operational now|shutdown\.))",
                       (scenario_dir / log).read_text()) for log in ("iscsid.log", "iscsictld.log")]
    assert said[0] == said[1] == [  # the daemons' lines name the record's portal
        f"to [target: {iqn}, portal: {PORTAL},3270] through [iface: default] is {what}"
        for what in ("operational now", "shutdown.")]


def _kernel_values(sid):
    """What the kernel holds of a session and its connection, by sysfs attribute (the ones
    both tools set: the negotiated values, the names, the timeouts)."""
    s, c = Path(f"/sys/class/iscsi_session/session{sid}"), \
        Path(f"/sys/class/iscsi_connection/connection{sid}:0")
    names = {s: ("targetname", "tpgt", "ifacename", "initiatorname", "first_burst_len",
                 "max_burst_len", "immediate_data", "initial_r2t", "max_outstanding_r2t",
                 "recovery_tmo", "data_pdu_in_order", "data_seq_in_order", "state"),
             c: ("address", "port", "persistent_address", "persistent_port", "max_recv_dlength",
                 "max_xmit_dlength", "header_digest", "data_digest", "state")}
    return {f"{d.name.rstrip('0123456789:')}/{n}": read(d / n) for d, ns in names.items()
            for n in ns}


def test_iser_login_io_recovery_logout_as_iscsid(rdma, lio, scenario_dir):
    """iSER (RFC 7145) through the kernel's ib_iser, over Soft-RoCE to LIO's ib_isert, both
    tools the same way: SendTargets through the built-in ``iser`` iface (a discovery
    session on the kernel's connection: iscsiadm makes it itself, iscsictl through
    iscsictld), its records, the login (the kernel makes the connection: EP_CONNECT,
    EP_POLL; the login relayed through it), ``-P 3``, 4 MiB written and read back with O_DIRECT, the target's
    portal group disabled for 3 s (the connection fails; the relogin makes a new endpoint
    once it is back), the data again, the logout; what the kernel holds of the session
    compared, and no endpoint left after either.  The relogin's endpoint has the failed
    one's handle: the kernel keeps a failed connection's endpoint, and its handle, until
    userspace disconnects it (iscsi_cleanup_conn_work_fn), which both do before the new
    connection (an endpoint leaked per failure would show as the next handle)."""
    portal = rdma.ADDRESS
    t = lio.create("iqn.2003-01.org.example.vm:iser", luns=[16 * MIB], portal=(portal, 3260),
                   iser=True)
    seen = []

    def flow(run):
        run("-m", "discovery", "-t", "st", "-p", portal, "-I", "iser")
        run("-m", "node")
        run("-m", "node", "-T", t.iqn, "-p", portal, "-I", "iser", "-l")
        run("-m", "session", "-P", "3", numbers=True)
        sid = sessions_in_sysfs()[0]
        host = Path(f"/sys/class/iscsi_session/session{sid}/device").resolve().parent.name
        assert read(f"/sys/class/scsi_host/{host}/proc_name") == "iscsi_iser"
        dev = wait_disks(sid, 1)[0]
        check_direct_roundtrip(dev, 4 * MIB, scenario_dir / "scratch", t.lun_files[0])
        values = _kernel_values(sid)
        endpoints = sorted(p.name for p in Path("/sys/class/iscsi_endpoint").iterdir())
        t.tpg.enable = False
        wait_for("the connection's failure",
                 lambda: read(f"/sys/class/iscsi_session/session{sid}/state") != "LOGGED_IN",
                 timeout=30)
        time.sleep(3)
        t.tpg.enable = True
        wait_for("the relogin",
                 lambda: read(f"/sys/class/iscsi_session/session{sid}/state") == "LOGGED_IN",
                 timeout=60)
        check_direct_roundtrip(wait_disks(sid, 1)[0], 4 * MIB, scenario_dir / "scratch",
                               t.lun_files[0])
        seen.append((values, endpoints,
                     sorted(p.name for p in Path("/sys/class/iscsi_endpoint").iterdir()),
                     _kernel_values(sid) == values))
        run("-m", "node", "-T", t.iqn, "-p", portal, "-I", "iser", "-u")
        seen.append(list(Path("/sys/class/iscsi_endpoint").iterdir()))
    _both(flow, scenario_dir)
    (scenario_dir / "kernel_values.log").write_text(repr(seen))
    theirs, ours = seen[0], seen[2]
    # DataPDUInOrder and DataSequenceInOrder, offered Yes, are OR keys (RFC 7143 §13.19,
    # §13.20): Yes whatever LIO's iSER login answers; iscsid takes the answer's word (0)
    in_order = ("session/data_pdu_in_order", "session/data_seq_in_order")
    assert [ours[0].pop(k) for k in in_order] == ["1", "1"]
    assert [theirs[0].pop(k) for k in in_order] == ["0", "0"]
    assert ours == theirs and len(theirs[1]) == 1 and theirs[2:] == (theirs[1], True)
    assert theirs[0]["connection/max_xmit_dlength"] == "8192"
    assert seen[1] == seen[3] == []


def test_iser_discovery_of_an_answer_longer_than_the_kernels_buffer_as_iscsiadm(
        rdma, lio, scenario_dir):
    """SendTargets through the ``iser`` iface whose answer (36 targets, long names: ~10 KB)
    is longer than the 8 KiB the kernel takes a Text Response's data into (ib_iser's login
    buffer): the discovery session declares MaxRecvDataSegmentLength 8192, as iscsiadm's,
    so LIO answers in pieces; both tools find every target."""
    portal = rdma.ADDRESS
    prefix = "iqn.2003-01.org.example.vm:" + "long-" * 36 + "t"  # 214 characters and more
    made = lio.create_many(36, prefix=prefix, luns=[], portal=(portal, 3260), iser=True)
    assert sum(len(f"TargetName={t.iqn}\0TargetAddress={portal}:3260,1\0") for t in made) > 9000

    found = []

    def flow(run):
        run("-m", "discovery", "-t", "st", "-p", portal, "-I", "iser")
        found.append(sorted(line.split()[1] for line in run("-m", "node").stdout.splitlines()))
    _both(flow, scenario_dir)
    assert found == [sorted(t.iqn for t in made)] * 2


def test_discovery_daemon_discovers_through_an_iser_iface(rdma, lio, scenario_dir):
    """iscsid's discoveryd sends SendTargets through every iface record, an iSER one's on
    a discovery session the kernel's ib_iser connects (iscsictld's own SendTargets, as the
    CLI's ``-I``); the target reported is logged in through that iface, over iSER; the
    node DB is left as it was."""
    from iscsictld import Iscsictld

    portal = rdma.ADDRESS
    t = lio.create("iqn.2003-01.org.example.vm:dd-iser", luns=[8 * MIB], portal=(portal, 3260),
                   iser=True)
    for db in DB_DIRS:
        shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)
    ictl = str(VENV_BIN / "iscsictl")
    for args in (("-m", "iface", "-I", "rdma0", "-o", "new"),
                 ("-m", "iface", "-I", "rdma0", "-o", "update", "-n", "iface.transport_name",
                  "-v", "iser"),
                 ("-m", "discoverydb", "-t", "st", "-p", portal, "-o", "new"),
                 ("-m", "discoverydb", "-t", "st", "-p", portal, "-o", "update",
                  "-n", "discovery.sendtargets.use_discoveryd", "-v", "Yes"),
                 ("-m", "discoverydb", "-t", "st", "-p", portal, "-o", "update",
                  "-n", "discovery.sendtargets.discoveryd_poll_inval", "-v", "0")):
        r = subprocess.run([ictl, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stderr)
    tree = _db_tree()
    d = Iscsictld(scenario_dir)
    d.start()
    try:
        wait_for("the discovered target's session", lambda: _session_targets() == [t.iqn], 60)
        sid = sessions_in_sysfs()[0]
        host = Path(f"/sys/class/iscsi_session/session{sid}/device").resolve().parent.name
        assert read(f"/sys/class/scsi_host/{host}/proc_name") == "iscsi_iser"
        assert read(f"/sys/class/iscsi_session/session{sid}/ifacename") == "rdma0"
        wait_disks(sid, 1)
        assert _db_tree() == tree, "the discovery daemon wrote to the node DB"
    finally:
        d.logout_all_and_stop()
        for db in DB_DIRS:
            shutil.rmtree(Path("/etc/iscsi") / db, ignore_errors=True)
    assert sessions_in_sysfs() == []


def test_iser_without_an_rdma_device_is_said(lio, daemon, scenario_dir):
    """An iSER login and discovery where no RDMA device reaches the portal (no Soft-RoCE
    here): the kernel refuses the endpoint (rdma_resolve_addr: ENODEV), and iscsictl says
    so and fails with exit 8 after the one attempt the record allows, leaving no session
    and no endpoint.  (iscsid retries
    such a login every 3 s well past two minutes whatever initial_login_retry_max says, so
    it is not compared here.)"""
    from cli import Cli

    portal = "127.0.0.1"
    t = lio.create("iqn.2003-01.org.example.vm:iser-none", luns=[8 * MIB])
    cli = Cli(scenario_dir / "db")
    cli.ok("-m", "node", "-T", t.iqn, "-p", portal, "-I", "iser", "-o", "new")
    cli.update(t.iqn, portal, "node.session.initial_login_retry_max", "1")
    for args in (("-m", "node", "-T", t.iqn, "-p", portal, "-I", "iser", "-l"),
                 ("-m", "discovery", "-t", "st", "-p", portal, "-I", "iser")):
        r = cli.run(*args)
        assert r.returncode == 8, r.stderr
        assert "cannot make connection to 127.0.0.1:3260" in r.stderr
        assert "ENODEV" in r.stderr, r.stderr
        assert sessions_in_sysfs() == []
        assert list(Path("/sys/class/iscsi_endpoint").iterdir()) == []
