"""``iscsictl-start`` (iscsistart's counterpart) on the host: its arguments, the firmware
print, and logins handed to a running iscsictld (a stand-in on a real socket).  Its own
in-process logins through the kernel are tested in the VM
(vm-tests/guest_tests/test_iscsiadm_flows.py::test_boot_without_a_daemon)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from iscsictl import __version__
from iscsictl.daemon.start import main
from iscsictl.db.record import with_defaults
from iscsictl.db.schema import NODE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests" / "guest"))
import ibft  # noqa: E402
from ibft_tree import write_tree  # noqa: E402
from test_session_cmd import FakeDaemon  # noqa: E402

BOOT = ibft.BOOT_TARGET["name"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    sys_root = tmp_path / "sys"
    write_tree(sys_root, ibft.INITIATOR, [ibft.NIC], [ibft.BOOT_TARGET])  # no PCI device
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "iscsid.conf").write_text("node.session.initial_login_retry_max = 12\n"
                                      "node.session.timeo.replacement_timeout = 17\n"
                                      "node.session.scan = manual\n")
    for k, v in (("ISCSICTL_SYSFS_ROOT", sys_root), ("ISCSICTL_SOCKET", tmp_path / "none"),
                 ("ISCSICTL_DB_ROOT", tmp_path / "db"), ("ISCSICTLD_LOCK", tmp_path / "lock")):
        monkeypatch.setenv(k, str(v))
    return tmp_path, conf

def _daemon(tmp, monkeypatch):
    """A stand-in iscsictld answering on ``tmp/d.sock`` (FakeDaemon) and holding the lock
    as a running one does (a process of that name: the lock says who owns the sessions);
    ``close()`` ends both."""
    d = FakeDaemon(str(tmp / "d.sock"))
    monkeypatch.setenv("ISCSICTL_SOCKET", d.path)
    holding = _holding(tmp / "lock", "iscsictld")
    holding.__enter__()
    stop = d.close

    def close():
        stop()
        holding.__exit__(None, None, None)
    d.close = close
    return d


#: iscsistart's -v line, with the project's version as iscsictl -V's (it was the DB format's)
VERSION = f"iscsictl-start version {__version__}\n"


def start(capsys, *args):
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def unsaid(err: str) -> str:
    """stderr less the "is operational now" lines (iscsistart's too are on stderr)."""
    return "".join(line for line in err.splitlines(True) if "is operational now" not in line)


def test_arguments_as_iscsistart(env, capsys):
    _, conf = env
    assert start(capsys, "-v") == (0, VERSION, "")
    assert start(capsys, "-t", BOOT, "-a", "127.0.0.1", "-g", "1") == \
        (7, "", "iscsictl-start: InitiatorName not set. Exiting iscsictl-start\n")
    assert start(capsys, "-i", "iqn.2026-11.x:i", "-t", BOOT, "-a", "127.0.0.1", "-g", "-1") == \
        (7, "", "iscsictl-start: Portal Group not set. Exiting iscsictl-start\n")
    rc, _, err = start(capsys, "-c", str(conf), "-i", "iqn.2026-11.x:i", "-t", BOOT, "-g", "1",
                       "-a", "127.0.0.1", "-P", "node.session.scan")
    assert rc == 7 and "Invalid --param node.session.scan. Missing value." in err
    rc, _, err = start(capsys, "-c", str(conf), "-i", "iqn.2026-11.x:i", "-t", BOOT, "-g", "1",
                       "-a", "127.0.0.1", "-P", "node.session.bogus=1")
    assert rc == 1 and "node.session.bogus" in err  # iscsistart: its setup_session failed
    assert start(capsys, "--bogus")[0] == 7


def test_a_param_without_a_value_is_refused_before_a_later_option_acts(env, capsys):
    """iscsistart's getopt loop refuses a -P without a value, or an over-long value, when it
    reaches it: before a later -f, -v or -b acts (the firmware was printed, exit 0), not
    before an earlier one, and in the order given."""
    bad = "iscsictl-start: Invalid --param node.session.scan. Missing value.\n"
    for later in ("-f", "-v", "-b"):
        assert start(capsys, "-P", "node.session.scan", later) == (7, "", bad), later
    assert start(capsys, "-v", "-P", "node.session.scan") == (0, VERSION, "")
    rc, out, err = start(capsys, "-f", "-P", "node.session.scan")
    assert (rc, err) == (0, "") and BOOT in out
    # an over-long value likewise, each in its turn
    long_name = "iqn.2003-01.org.example:" + "t" * 300
    assert start(capsys, "-v", "-t", long_name) == (0, VERSION, "")
    rc, _, err = start(capsys, "-t", long_name, "-P", "node.session.scan")
    assert rc == 7 and err.startswith("iscsictl-start: invalid targetname iqn.")
    assert start(capsys, "-P", "node.session.scan", "-t", long_name) == (7, "", bad)


@pytest.mark.parametrize("module", ["iscsictl.daemon.start", "iscsictl.daemon.__main__"])
def test_help_explains_every_option_in_whole_sentences(module):
    """``iscsictl-start --help`` and ``iscsictld --help``: a description that ends as a
    sentence (it was once a docstring's first line, cut mid-sentence) and a help text for
    every option."""
    import importlib

    parser = importlib.import_module(module)._parser()
    assert parser.description.endswith(".")
    assert [a.option_strings for a in parser._actions if not a.help] == []


def test_the_executable_flushes_its_output_and_exits_with_the_code(env):
    """The installed command (``console``) ends by os._exit: its output, block-buffered in
    a pipe, must have been flushed first, and the exit code must be main()'s."""
    import os
    import subprocess

    _, conf = env
    cmd = [sys.executable, "-m", "iscsictl.daemon.start"]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

    def run(*args):
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60,
                              env=buffered)
    r = run("-v")
    assert (r.returncode, r.stdout, r.stderr) == (0, VERSION, "")
    r = run("-f")
    assert r.returncode == 0 and "node.name = " + BOOT in r.stdout, r
    assert r.stdout.endswith("\n") and "node.session.auth.password = ********\n" in r.stdout
    r = run("-c", str(conf), "-t", BOOT, "-a", "127.0.0.1", "-g", "1")
    assert (r.returncode, r.stderr) == (7, "iscsictl-start: InitiatorName not set. "
                                           "Exiting iscsictl-start\n")


def test_firmware_print_masks_secrets_unless_shown(env, capsys):
    rc, out, _ = start(capsys, "-f")
    assert rc == 0 and "node.session.auth.password = ********\n" in out
    assert "node.name = " + BOOT in out and "iface.net_ifacename" not in out
    rc, out, _ = start(capsys, "-f", "--show")
    assert "node.session.auth.password = ibft-secret-12\n" in out


@pytest.mark.parametrize("nic_flags,target_flags", [(1, 3), (3, 1), (1, 1)])
def test_boot_needs_a_boot_selected_nic_and_target(env, capsys, nic_flags, target_flags):
    """-b logs in only when the firmware booted from a target: a NIC and a target flagged
    boot selected (bit 1), as iscsistart's fw_get_entry; valid entries alone are not."""
    import shutil
    shutil.rmtree(env[0] / "sys" / "firmware")
    write_tree(env[0] / "sys", ibft.INITIATOR, [dict(ibft.NIC, flags=nic_flags)],
               [dict(ibft.BOOT_TARGET, flags=target_flags)])
    assert start(capsys, "-b") == (21, "Could not get boot entry.\n", "")


def test_the_boot_selected_nic_need_not_be_the_targets_as_iscsistart(env, capsys, monkeypatch):
    """iscsistart's fw_get_entry looks for a boot-selected NIC among all the table's NICs
    (find_boot_flag), not only those a target names: a table whose boot NIC (ethernet1)
    serves no target still boots (before: 'Could not get boot entry.', 21)."""
    import shutil
    shutil.rmtree(env[0] / "sys" / "firmware")
    write_tree(env[0] / "sys", ibft.INITIATOR,
               [dict(ibft.NIC, flags=1), dict(ibft.NIC, index=1, flags=3,
                                                mac="52:54:00:98:00:03")],
               [ibft.BOOT_TARGET])
    d = _daemon(env[0], monkeypatch)
    try:
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
        rc, out, err = start(capsys, "-b", "-c", str(env[1]))
        assert (rc, unsaid(err)) == (0, "") and f"Logging into {BOOT} 127.0.0.1:3260,1" in out
        (_, args), = [c for c in d.calls if c[0] == "login"]
        assert args["initiator_name"] == ibft.INITIATOR
    finally:
        d.close()


def test_a_command_line_login_takes_chap_from_its_options_only(env, capsys, monkeypatch):
    """iscsistart -i ... builds its record from compiled defaults: iscsid.conf's CHAP (for
    the DB's targets; mutual credentials there would demand the boot target authenticate
    itself) is not this login's, its other settings are (before: all of them were)."""
    tmp, conf = env
    with open(conf / "iscsid.conf", "a") as f:
        f.write("node.session.auth.authmethod = CHAP\n"
                "node.session.auth.username = dbuser\n"
                "node.session.auth.password = db-secret-123\n"
                "node.session.auth.username_in = dbtarget\n"
                "node.session.auth.password_in = db-target-456\n")
    d = _daemon(tmp, monkeypatch)
    keys = ("node.session.auth.username", "node.session.auth.password",
            "node.session.auth.username_in")
    try:
        for extra, creds in (([], ("<empty>",) * 3),
                             (["-u", "u1", "-w", "w1-secret-12"], ("u1", "w1-secret-12",
                                                                   "<empty>"))):
            d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
            rc, _, err = start(capsys, "-c", str(conf), "-i", "iqn.2026-11.x:i", "-t", BOOT,
                               "-g", "1", "-a", "127.0.0.1", *extra)
            assert (rc, unsaid(err)) == (0, "")
            rec = with_defaults(NODE, [c for c in d.calls if c[0] == "login"][-1][1]
                                ["records"][0])
            assert tuple(rec[k] or "<empty>" for k in keys) == creds
            assert rec["node.session.timeo.replacement_timeout"] == "17"  # iscsid.conf's
    finally:
        d.close()


def test_one_session_per_target_whatever_nr_sessions_says(env, capsys, monkeypatch):
    """iscsistart sends one login request per target (login_session), so one session:
    iscsid.conf's or -P's node.session.nr_sessions (iscsiadm's -l loop) does not make a
    boot disk appear several times (before: nr_sessions sessions each)."""
    tmp, conf = env
    with open(conf / "iscsid.conf", "a") as f:
        f.write("node.session.nr_sessions = 3\n")
    d = _daemon(tmp, monkeypatch)
    try:
        for args in (("-b",), ("-b", "-P", "node.session.nr_sessions=2"),
                     ("-i", "iqn.2026-11.x:i", "-t", BOOT, "-g", "1", "-a", "127.0.0.1")):
            d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
            rc, _, err = start(capsys, "-c", str(conf), *args)
            assert (rc, unsaid(err)) == (0, ""), args
            rec, = [c for c in d.calls if c[0] == "login"][-1][1]["records"]
            assert with_defaults(NODE, rec)["node.session.nr_sessions"] == "1", args
    finally:
        d.close()


def test_the_command_line_is_read_as_iscsistarts_getopt_long(env, capsys, monkeypatch):
    """iscsistart's getopt_long: a CHAP secret starting with '-' (dracut passes
    -w "$iscsi_password"), unique long prefixes (--targ), grouped letters, and a word that
    is no option's ignored (before: 7, "expected one argument")."""
    tmp, conf = env
    d = _daemon(tmp, monkeypatch)
    try:
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
        rc, _, err = start(capsys, "-c", str(conf), "-i", "iqn.2026-11.x:i", "--targ", BOOT,
                           "-g1", "-a", "127.0.0.1", "-u", "-user", "-w", "-Secr3t-2024",
                           "stray")
        assert rc == 0 and "'stray' is not an option's: ignored" in err
        rec, = [c for c in d.calls if c[0] == "login"][-1][1]["records"]
        assert (rec["node.name"], rec["node.session.auth.username"],
                rec["node.session.auth.password"]) == (BOOT, "-user", "-Secr3t-2024")
    finally:
        d.close()
    assert start(capsys, "--pa", "x")[0] == 7  # ambiguous: --password, --password_in, --param

@pytest.mark.parametrize("option,name,most", [("-t", "targetname", 255),
                                               ("-a", "address", 1025),
                                               ("-u", "username", 256),
                                               ("-W", "password_in", 256)])
def test_over_long_values_are_refused_as_iscsistart(env, capsys, option, name, most):
    """iscsistart's check_str_param_len: one byte over is 7, and a secret is not shown."""
    args = ["-i", "iqn.2026-11.x:i", "-t", BOOT, "-g", "1", "-a", "127.0.0.1"]
    value = "é" * (most // 2) + "x" * (most % 2 + 1)  # most + 1 bytes, fewer characters
    rc, out, err = start(capsys, *args, option, value)
    shown = "" if name.startswith("password") else f" {value}"
    assert (rc, out, err) == (7, "", f"iscsictl-start: invalid {name}{shown}. "
                                     f"Max {name} length is {most}.\n")


def test_without_firmware_it_says_so(env, capsys):
    """In iscsistart's words, on stdout as its printf (before: on stderr, -b's naming the
    targets' absence where iscsistart first finds no boot entry)."""
    import shutil
    shutil.rmtree(env[0] / "sys" / "firmware")
    assert start(capsys, "-b") == (21, "Could not get boot entry.\n", "")
    assert start(capsys, "-f") == (21, "Could not get list of targets from firmware.\n", "")


def test_a_firmware_it_may_not_read_is_said_without_a_traceback(env, capsys, monkeypatch):
    """-b as a user without CAP_SYS_ADMIN: the boot entry's unreadable firmware is said,
    1, as boot_contexts says it (a traceback once -b looked for the boot entry first)."""
    import errno

    from iscsictl.kernel import firmware

    def refused(root):
        raise firmware.FirmwareAccessError(errno.EACCES, "cannot read the iSCSI boot "
                                                         "firmware tables: run as root")
    monkeypatch.setattr(firmware, "boot_entry", refused)
    assert start(capsys, "-b") == (1, "", "iscsictl-start: cannot read the iSCSI boot "
                                          "firmware tables: run as root\n")


def test_the_first_of_v_f_n_and_h_is_the_one_acted_on(env, capsys):
    """iscsistart's getopt loop acts on -v, -f, -N or -h as it reaches it and exits: the
    first given wins (before: -v, then -N, then -f, whatever their order)."""
    rc, out, _ = start(capsys, "-f", "-v")
    assert rc == 0 and "node.name = " + BOOT in out and "version" not in out
    assert start(capsys, "-v", "-f", "-N") == (0, VERSION, "")
    rc, out, _ = start(capsys, "-f", "--show", "-h")
    assert rc == 0 and "node.session.auth.password = ibft-secret-12\n" in out


@pytest.mark.parametrize("stdout", ["full", "closed", "broken pipe"])
def test_a_stdout_that_cannot_be_written_stops_no_boot_login(env, monkeypatch, stdout):
    """iscsistart's printf ignores a full, closed or broken stdout and its login goes on
    (an initramfs may start it so); iscsictl-start's login is made all the same and its
    exit code is the login's (before: a traceback before the login, exit 1)."""
    import os
    import subprocess
    tmp, conf = env
    d = _daemon(tmp, monkeypatch)
    try:
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
        cmd = [sys.executable, "-c", "from iscsictl.daemon.start import console; console()",
               "-b", "-c", str(conf)]
        if stdout == "broken pipe":
            r, w = os.pipe()
            os.close(r)
            cp = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, timeout=60)
            os.close(w)
        elif stdout == "closed":
            cp = subprocess.run(["sh", "-c", '"$0" "$@" >&-', *cmd], stderr=subprocess.PIPE,
                                timeout=60)
        else:
            with open("/dev/full", "w") as full:
                cp = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, timeout=60)
        assert (cp.returncode, unsaid(cp.stderr.decode())) == (0, "")
        assert [c[0] for c in d.calls].count("login") == 1
    finally:
        d.close()


def test_logins_go_to_a_running_daemon(env, capsys, monkeypatch):
    tmp, conf = env
    d = _daemon(tmp, monkeypatch)
    try:
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
        rc, out, err = start(capsys, "-b", "-c", str(conf))
        assert rc == 0
        assert out == f"iscsictl-start: Logging into {BOOT} 127.0.0.1:3260,1\n"  # printf
        assert err == (f"iscsictl-start: Connection4:0 to [target: {BOOT}, portal: "  # as
                       f"127.0.0.1,3260] through [iface: default] is operational now\n")
        (op, args), = [c for c in d.calls if c[0] == "login"]
        rec, = args["records"]
        assert args["initiator_name"] == ibft.INITIATOR
        assert (rec["node.session.auth.username"], rec["node.session.auth.password"]) == \
            ("ibftuser", "ibft-secret-12")
        assert rec["node.session.timeo.replacement_timeout"] == "17"  # iscsid.conf's
        # iscsistart's boot settings, whatever iscsid.conf says (apply_params): retry long,
        # no NOP-Outs before a daemon can answer them, and the LUNs scanned (the root disk)
        full = with_defaults(NODE, rec)  # what the daemon logs in with (defaults left out)
        assert (full["node.session.initial_login_retry_max"], full["node.session.scan"],
                full["node.conn[0].timeo.noop_out_interval"],
                full["node.conn[0].timeo.noop_out_timeout"]) == ("30", "auto", "0", "0")
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [5]}]}
        assert start(capsys, "-b", "-c", str(conf / "iscsid.conf"))[0] == 0  # iscsistart's -c
        rec, = [c for c in d.calls if c[0] == "login"][-1][1]["records"]
        assert rec["node.session.timeo.replacement_timeout"] == "17"
        # a file of another name is that file, as iscsistart reads it (before: the
        # iscsid.conf beside it, with a warning)
        (conf / "boot.conf").write_text("node.session.timeo.replacement_timeout = 23\n")
        d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [6]}]}
        rc, _, err = start(capsys, "-b", "-c", str(conf / "boot.conf"))
        assert (rc, unsaid(err)) == (0, "")
        rec, = [c for c in d.calls if c[0] == "login"][-1][1]["records"]
        assert rec["node.session.timeo.replacement_timeout"] == "23"

        d.answers = {"ping": [{}], "login": [{"ok": False, "code": 24, "message": "no"}]}
        rc, _, err = start(capsys, "-c", str(conf), "-i", "iqn.2026-11.x:i", "-t", BOOT,
                           "-g", "1", "-a", "127.0.0.1", "-u", "u", "-w", "wrong-secret",
                           "-P", "node.conn[0].timeo.login_timeout=3",
                           "-P", "node.session.initial_login_retry_max=2",
                           "-P", "node.conn[0].timeo.login_timeout=4")  # the first stays
        assert rc == 1
        assert "initiator reported error (24 - iSCSI login failed due to authorization " \
               "failure)" in err
        rec, = [c for c in d.calls if c[0] == "login"][-1][1]["records"]
        assert (rec["node.session.auth.password"], rec["node.conn[0].timeo.login_timeout"],
                rec["iface.initiatorname"]) == ("wrong-secret", "3", "iqn.2026-11.x:i")
        assert rec["node.startup"] == "onboot"  # a boot disk's: retried as iscsistart's
        full = with_defaults(NODE, rec)
        assert (full["node.session.initial_login_retry_max"], full["node.session.scan"]) == \
            ("2", "auto")  # -P over the boot settings; the others still applied

        d.answers = {"ping": [{}], "login": [{"ok": False, "code": 15,
                                              "message": "default: 1 session requested, "
                                                         "but 1 already present."}]}
        rc, _, err = start(capsys, "-b", "-c", str(conf))
        # iscsistart: login_session's ISCSI_ERR_SESS_EXISTS is a failed login, exit 1
        assert rc == 1 and "already present" in err
        assert "initiator reported error (15 - session exists)" in err
    finally:
        d.close()


def test_p_sets_iface_keys_and_rebinds_as_iscsistart(env, capsys, monkeypatch):
    """iscsistart's apply_params: -P applies any node key, iface keys too (verify=0; they
    were refused as by -o update, 7, so a dracut boot passing iface.net_ifacename lost its
    root disk), a new net device forgets the MAC, a new MAC the net device, and a new
    transport the firmware's whole binding."""
    tmp, conf = env
    d = _daemon(tmp, monkeypatch)
    static = ["-c", str(conf), "-i", "iqn.2026-11.x:i", "-t", BOOT, "-g", "1",
              "-a", "127.0.0.1"]
    try:
        for params, want in (
                (["iface.net_ifacename=eth1"], {"iface.net_ifacename": "eth1"}),
                (["iface.hwaddress=52:54:00:00:00:01", "iface.iscsi_ifacename=nic1"],
                 {"iface.hwaddress": "52:54:00:00:00:01", "iface.iscsi_ifacename": "nic1"})):
            d.answers = {"ping": [{}], "login": [{"ok": True, "sids": [4]}]}
            rc, _, err = start(capsys, *static, *(x for p in params for x in ("-P", p)))
            assert (rc, unsaid(err)) == (0, "")
            rec = with_defaults(NODE, [c for c in d.calls if c[0] == "login"][-1][1]
                                ["records"][0])
            assert {k: rec[k] for k in want} == want
        rc, _, err = start(capsys, *static, "-P", "node.bogus=1")
        assert rc == 1 and "node.bogus" in err
        rc, _, err = start(capsys, *static, "-P", "node.session.scan=sometimes")
        assert rc == 1 and "sometimes" in err
        assert not [c for c in d.calls if c[0] == "login" and c[1]["records"][0].get(
            "node.session.scan") == "sometimes"]
    finally:
        d.close()
    from iscsictl.cli.fw_cmd import apply_user_params
    from iscsictl.db.record import Record
    rec = Record(NODE)
    for k, v in (("iface.transport_name", "bnx2i"), ("iface.hwaddress", "00:10:18:aa:bb:cd"),
                 ("iface.iscsi_ifacename", "bnx2i.00:10:18:aa:bb:cd.ipv4.0"),
                 ("iface.ipaddress", "10.0.0.7"), ("iface.net_ifacename", "eth3")):
        rec.set(k, v)
    apply_user_params(rec, {"iface.transport_name": "tcp"}, rebind=True)
    assert (rec["iface.transport_name"], rec["iface.hwaddress"], rec["iface.iscsi_ifacename"],
            rec["iface.ipaddress"], rec["iface.net_ifacename"]) == ("tcp", "", "default", "", "")
    rec.set("iface.hwaddress", "00:10:18:aa:bb:cd")
    apply_user_params(rec, {"iface.net_ifacename": "eth1"}, rebind=True)
    assert (rec["iface.hwaddress"], rec["iface.net_ifacename"]) == ("", "eth1")
    apply_user_params(rec, {"iface.hwaddress": "00:10:18:aa:bb:ce"}, rebind=True)
    assert (rec["iface.hwaddress"], rec["iface.net_ifacename"]) == ("00:10:18:aa:bb:ce", "")


def test_a_daemon_that_runs_but_cannot_be_asked_is_named(env, capsys, monkeypatch):
    """An iscsictld of an older IPC version (or one that does not answer) holds the lock:
    iscsictl-start says what is wrong with it, not only that another one runs."""
    from test_ipc import _one_shot_server, old_daemon_answer

    tmp, conf = env
    path = str(tmp / "old.sock")
    _one_shot_server(path, lambda conn: conn.sendall(old_daemon_answer(2)))
    monkeypatch.setenv("ISCSICTL_SOCKET", path)
    with _holding(tmp / "lock", "iscsictld"):
        rc, _, err = start(capsys, "-b", "-c", str(conf))
    assert rc == 1 and "speaks IPC v2" in err and "restart iscsictld" in err


def test_without_the_kernel_interface_it_says_what_to_load(env, capsys, monkeypatch):
    """Said at once, and exit 1, as iscsistart's failed setup_session (it was iscsictld's
    12, which no initramfs script expects of iscsistart)."""
    from iscsictl.daemon import service
    from iscsictl.netlink import KernelInterfaceUnavailable

    def unavailable(*a, **kw):
        raise KernelInterfaceUnavailable("the kernel has no iSCSI netlink interface: load "
                                         "scsi_transport_iscsi (modprobe iscsi_tcp)")
    monkeypatch.setattr(service, "AsyncIscsiNetlink", unavailable)

    async def no_modprobe(*a, **kw):
        class P:
            async def wait(self):
                return 1
        return P()
    monkeypatch.setattr(service.asyncio, "create_subprocess_exec", no_modprobe)
    rc, out, err = start(capsys, "-b", "-c", str(env[1]))
    assert rc == 1 and "modprobe iscsi_tcp" in err and "Traceback" not in err
    assert out.startswith("iscsictl-start: Logging into")


@pytest.mark.parametrize("served", [False, True], ids=["no-socket", "socket"])
def test_the_in_process_daemon_binds_no_socket(tmp_path, monkeypatch, served):
    """iscsictl-start's in-process daemon (``Daemon(None)``) serves nobody: it starts and
    closes without an IPC socket; a served daemon binds its socket and removes it."""
    import asyncio
    import stat

    from iscsictl.daemon import service

    class Netlink:  # what start() and close() use of the kernel's interface
        def __init__(self, *a, **kw):
            pass

        def start(self):
            pass

        def close(self):
            pass
    monkeypatch.setattr(service, "AsyncIscsiNetlink", Netlink)
    path = tmp_path / "run" / "d.sock"

    async def run():
        d = service.Daemon(str(path) if served else None, sysfs_root=str(tmp_path / "sys"),
                           state_dir=str(tmp_path / "state"), autostart=False)
        await d.start()
        bound = path.exists() and stat.S_ISSOCK(path.stat().st_mode)
        await d.close()
        return bound
    assert asyncio.run(run()) is served
    assert not path.exists()
    assert not (tmp_path / "run").exists() or served


def _holder(lock, name, shared=False):
    """A process named ``name`` holding the lock file ``lock`` until its stdin closes:
    exclusively, its PID written (as iscsictld, and iscsictl-start before session 55), or
    ``shared``, nothing written (as an iscsictl-start)."""
    import subprocess
    return subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"open('/proc/self/comm', 'w').write({name!r})\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        f"fcntl.lockf(fd, fcntl.{'LOCK_SH' if shared else 'LOCK_EX'})\n"
        f"{'' if shared else 'os.write(fd, str(os.getpid()).encode())'}\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _holding(lock, name, shared=False):
    """:func:`_holder`, its lock taken when this enters, released when it leaves."""
    holder = _holder(lock, name, shared)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(10)


def _logins_made_here(monkeypatch) -> list:
    """The in-process logins replaced by one that succeeds (session 7): the list of the
    targets it is asked for, filled as they are."""
    from iscsictl.daemon import start as start_mod
    made = []

    async def login_here(records, initiator_name):
        made.append(records[0]["node.name"])
        return [{"ok": True, "sids": [7]}]
    monkeypatch.setattr(start_mod, "_login_here", login_here)
    return made


def _behind_another_start(env, capsys, monkeypatch, held: float):
    """``iscsictl-start -b`` while another iscsictl-start holds the lock for ``held`` s
    (its in-process logins replaced by one that succeeds): (exit code, stdout, stderr,
    the targets it logged in to, the holder's pid, the seconds it took)."""
    import threading
    import time

    tmp, conf = env
    made = _logins_made_here(monkeypatch)
    holder = _holder(tmp / "lock", "iscsictl-start")
    try:
        assert holder.stdout.readline() == "held\n"
        threading.Timer(held, holder.stdin.close).start()
        began = time.monotonic()
        rc, out, err = start(capsys, "-b", "-c", str(conf))
    finally:
        holder.wait(10)
    return rc, out, err, made, holder.pid, time.monotonic() - began


def test_iscsictl_starts_log_in_side_by_side(env, capsys, monkeypatch):
    """Several iscsictl-starts started side by side (one per path or target, as iscsistarts
    run) share the lock: one logs in while others hold it, at once (before session 55 it
    waited for each one's logins: a dead path's 30 attempts of login_timeout), and the
    lock file still names the last iscsictld (written by none of them)."""
    import threading

    tmp, conf = env
    made = _logins_made_here(monkeypatch)
    (tmp / "lock").write_text("4194304999\n")
    with _holding(tmp / "lock", "iscsictl-start", shared=True), \
            _holding(tmp / "lock", "iscsictl-start", shared=True):
        ended = []  # (a thread: one that waits for the others would wait for ever)
        threading.Thread(target=lambda: ended.append(start(capsys, "-b", "-c", str(conf))),
                         daemon=True).start()
        for _ in range(100):
            if ended:
                break
            time.sleep(0.1)
        assert ended, "it waited for the others"
        rc, _, err = ended[0]
        assert (rc, made) == (0, [BOOT]) and "waiting" not in err, err
    assert (tmp / "lock").read_text() == "4194304999\n"


def test_an_iscsictl_start_that_holds_the_lock_alone_is_waited_for(env, capsys, monkeypatch):
    """An iscsictl-start holding the lock exclusively (one from before session 55, which
    took it so): one meeting its lock waits for its logins, then makes its own (before
    session 52: it exited 1 at once, its target never logged in)."""
    rc, _, err, made, pid, took = _behind_another_start(env, capsys, monkeypatch, 0.5)
    assert rc == 0 and made == [BOOT] and took >= 0.4
    assert err.startswith(f"iscsictl-start: waiting for process {pid} (iscsictl-start) "
                          "to end its logins\n")
    assert "Connection7:0" in err


def test_iscsictld_waits_for_an_iscsictl_starts_logins(tmp_path, capsys):
    """iscsictld started while iscsictl-starts hold the lock (boot logins made by units of
    their own, side by side) waits for their logins, all of them, then takes the lock
    (before: exit 1 at once, and systemd's restarts ran out within seconds, leaving the
    boot without a daemon); an iscsictld holding it is no reason to wait.  The holder
    named is one the kernel's lock table gives, not the file's last PID."""
    import threading
    import time

    from iscsictl.daemon import __main__ as daemon_main
    from iscsictl.daemon.instance import LockHeld, take_lock

    lock = tmp_path / "lock"
    for name, waits in (("iscsictl-start", True), ("iscsictld", False)):
        lock.write_text("4194304999\n")
        holders = [_holder(lock, name, shared=waits) for _ in range(2 if waits else 1)]
        try:
            assert [h.stdout.readline() for h in holders] == ["held\n"] * len(holders)
            with pytest.raises(LockHeld) as held:
                take_lock(str(lock))
            if waits:
                threading.Timer(0.3, holders[0].stdin.close).start()
                threading.Timer(0.6, holders[1].stdin.close).start()
            began = time.monotonic()
            fd = daemon_main._after_boot_login(str(lock), held.value)
            took = time.monotonic() - began
        finally:
            for holder in holders:
                holder.stdin.close()
                holder.wait(10)
        if waits:
            assert fd is not None and took >= 0.5
            os.close(fd)
            assert lock.read_text() == f"{os.getpid()}\n"  # iscsictld's PID written
            assert held.value.holder in {str(h.pid) for h in holders}
            assert capsys.readouterr().err == (f"iscsictld: waiting for process "
                                               f"{held.value.holder} (iscsictl-start) to end "
                                               "its logins\n")
        else:
            assert fd is None and capsys.readouterr().err == ""


def test_a_held_lock_is_said_not_a_silent_exit_1(env, capsys):
    """An iscsictld (starting, its socket not answering yet) holds the lock: the login is
    not made here, and the reason is printed at once (before: exit 1 after "Logging into",
    nothing said; the message, had it been printed, named iscsictld)."""
    tmp, conf = env
    with _holding(tmp / "lock", "iscsictld") as holder:
        rc, out, err = start(capsys, "-b", "-c", str(conf))
    assert rc == 1 and out.startswith("iscsictl-start: Logging into")
    assert err == (f"iscsictl-start: process {holder.pid} (iscsictld or iscsictl-start) owns "
                   f"the kernel's iSCSI sessions ({tmp / 'lock'})\n")


def test_the_wait_for_another_iscsictl_start_has_no_time_limit(env, capsys, monkeypatch):
    """A dead boot path's iscsictl-start retries for minutes (30 x login_timeout); one for
    a working path started beside it waits however long that takes, then logs in (before:
    it gave up after 600 s, exit 1, its target never tried).  Here the old limit is made
    0.2 s and the first holds the lock for 0.8 s."""
    from iscsictl.daemon import instance

    monkeypatch.setattr(instance, "BOOT_LOGIN_WAIT", 0.2)
    rc, _, err, made, _, _ = _behind_another_start(env, capsys, monkeypatch, 0.8)
    assert (rc, made) == (0, [BOOT]), err


def test_sigterm_undoes_the_login_under_way_and_says_so(env, monkeypatch):
    """SIGTERM while the in-process daemon logs in: that login is cancelled while netlink
    is still open (its half-made session torn down), the daemon closed, and the result
    says why, as iscsictld's stop undoes its requests' logins (before: the process died
    and left the session half made in the kernel)."""
    import asyncio
    import signal
    import threading

    from iscsictl.daemon import service
    from iscsictl.daemon import start as start_mod
    seen = []

    async def started(self):
        seen.append("started")

    async def closed(self, logout_all=False):
        seen.append("closed")

    async def login(self, records, initiator_name):
        seen.append("logging in")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("undone")
            raise
        return [{"ok": True, "sids": [7]}]
    monkeypatch.setattr(service.Daemon, "start", started)
    monkeypatch.setattr(service.Daemon, "close", closed)
    monkeypatch.setattr(service.Daemon, "login", login)
    before = signal.signal(signal.SIGTERM, lambda *a: seen.append("not handled"))
    try:
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        results = asyncio.run(start_mod._login_here([{"node.name": BOOT}], "iqn.x:i"))
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == ["started", "logging in", "undone", "closed"]
    assert [(r["ok"], r["code"]) for r in results] == [(False, 1)]
    assert "stopped (SIGTERM)" in results[0]["message"]


def test_ctrl_c_does_not_stop_the_boot_login(env):
    """SIGINT (a key pressed at a slow boot) is said and ignored, as iscsistart's
    catch_signal ("do not allow ctrl-c for now"): here while it waits for another
    iscsictl-start's logins, which it goes on waiting for (before: a KeyboardInterrupt
    traceback, the root disk's login abandoned)."""
    import signal
    import subprocess
    import time

    tmp, conf = env
    holder = _holder(tmp / "lock", "iscsictl-start")
    try:
        assert holder.stdout.readline() == "held\n"
        p = subprocess.Popen([sys.executable, "-m", "iscsictl.daemon.start", "-b", "-c",
                              str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        waiting = p.stderr.readline()  # it met the lock
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        still_running = p.poll() is None
        holder.stdin.close()  # its logins end: this one goes on (no kernel here: 12)
        _, err = p.communicate(timeout=60)
    finally:
        holder.wait(10)
    assert waiting.startswith("iscsictl-start: waiting for process ")
    assert still_running, (p.returncode, err)
    assert f"iscsictl-start: pid {p.pid} caught signal -2\n" in err
    assert "Traceback" not in err and p.returncode not in (0, -signal.SIGINT), err



def test_a_socket_unit_without_its_daemon_is_not_asked(env, capsys, monkeypatch):
    """iscsictld.socket listens and no iscsictld runs (nothing holds the lock): the
    logins are made here, the socket left alone (before: the ping made systemd start
    iscsictld, which waits for the lock an iscsictl-start beside this one held, and this
    one failed every login after 5 s with 33).  A listener that never accepts stands in
    for the unit's socket."""
    import select
    import socket

    tmp, conf = env
    made = _logins_made_here(monkeypatch)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unit:
        unit.bind(str(tmp / "unit.sock"))
        unit.listen(8)
        monkeypatch.setenv("ISCSICTL_SOCKET", str(tmp / "unit.sock"))
        rc, _, err = start(capsys, "-b", "-c", str(conf))
        asked = select.select([unit], [], [], 0)[0]
    assert (rc, made, asked) == (0, [BOOT], []), err


def test_a_holder_not_named_is_waited_for(env, monkeypatch, capsys):
    """Waiting behind an iscsictl-start, the lock taken by another process not named (gone
    by the time it was looked up, or the file's PID, the last holder's): still waited
    for, not taken for an iscsictld; a live holder of another name, an iscsictld,
    is asked once it answers (it may still be starting: before, it was asked once, and
    this iscsictl-start exited 1, its target never tried); the first holder met too."""
    from iscsictl.daemon import instance
    from iscsictl.daemon import start as start_mod
    from iscsictl.daemon.instance import LockHeld

    answers = []
    d = FakeDaemon(str(env[0] / "d.sock"))

    def take_lock_within(path, seconds, give_up, shared):
        assert shared
        for holder in ("4194304999", "?", str(os.getpid())):
            answers.append(give_up(LockHeld("held", holder)))
        monkeypatch.setenv("ISCSICTL_SOCKET", d.path)  # now it serves
        d.answers = {"ping": [{}]}
        answers.append(give_up(LockHeld("held", str(os.getpid()))))
        return None
    monkeypatch.setattr(instance, "take_lock_within", take_lock_within)
    monkeypatch.setattr(instance, "held_by_boot_login", lambda exc: exc.holder == "first")
    try:
        for first in ("first", "?"):
            answers.clear()
            got = start_mod._after_other_start(LockHeld("held", first))
            assert answers == [None, None, None, -1]
            assert isinstance(got, LockHeld) and got.holder == str(os.getpid())
            monkeypatch.setenv("ISCSICTL_SOCKET", str(env[0] / "none.sock"))
    finally:
        d.close()
