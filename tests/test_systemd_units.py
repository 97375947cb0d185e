"""contrib/systemd's units, as systemd reads them: iscsictld never stops open-iscsi.service
(whose ExecStop logs every session out), and the sessions are logged out at shutdown by
iscsictl-sessions.service, after the remote filesystems and before the network."""

import shutil
import subprocess
from pathlib import Path

UNITS = Path(__file__).resolve().parents[1] / "contrib" / "systemd"


def _unit(name: str) -> dict[str, dict[str, str]]:
    """{section: {key: value}}, a key given more than once (Before=, Conflicts=) as its
    values joined by blanks, as systemd adds them up."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section[key] = f"{section[key]} {value}" if key in section else value
    return out


def test_iscsictld_conflicts_with_iscsid_but_never_stops_open_iscsi_service():
    d = _unit("iscsictld.service")
    conflicts = d["Unit"]["Conflicts"].split()
    assert {"iscsid.service", "iscsid.socket"} <= set(conflicts)
    assert "open-iscsi.service" not in conflicts  # stopping it logs every session out
    assert "remote-fs-pre.target" in d["Unit"]["Wants"].split()  # not pulled in otherwise
    assert d["Service"]["Type"] == "notify" and d["Service"]["KillMode"] == "process"


def test_the_command_socket_is_held_by_systemd_where_the_cli_looks():
    """iscsictld.socket (socket activation) at the path iscsictl connects to, 0600 as the
    daemon's own; the daemon wants it and starts after it, so that every start gets it,
    and the daemon stays when the socket is stopped (Wants, not Requires)."""
    from iscsictl.ipc import DEFAULT_SOCKET

    sock, d = _unit("iscsictld.socket"), _unit("iscsictld.service")
    assert sock["Socket"]["ListenStream"] == DEFAULT_SOCKET
    assert sock["Socket"]["SocketMode"] == "0600"
    assert "iscsid.socket" in sock["Unit"]["Conflicts"].split()
    assert "iscsictld.socket" in d["Unit"]["Wants"].split()
    assert "iscsictld.socket" in d["Unit"]["After"].split()
    assert "iscsictld.socket" not in d["Unit"].get("Requires", "")


def test_the_sessions_are_logged_out_at_shutdown_in_order():
    s = _unit("iscsictl-sessions.service")
    assert s["Service"]["ExecStop"].split()[-4:] == ["-m", "node", "--logoutall=all", "--safe"]
    assert s["Unit"]["IgnoreOnIsolate"] == _unit("iscsictld.service")["Unit"][
        "IgnoreOnIsolate"] == "yes"  # emergency/rescue keep the mounts, so the sessions
    assert s["Service"]["RemainAfterExit"] == "true"
    assert "iscsictld.service" in s["Unit"]["Wants"].split()  # not Requires: see below
    assert "Requires" not in s["Unit"]
    assert "iscsictld.service" in s["Unit"]["After"].split()  # stopped before the daemon
    assert {"remote-fs-pre.target", "shutdown.target"} <= set(s["Unit"]["Before"].split())


def test_systemd_reads_the_units_without_a_complaint(tmp_path):
    """``systemd-analyze verify`` (systemd 252 on Debian 12) on the units, their commands
    pointed at this checkout's."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: `make deps` installs systemd"
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin"
    for name in ("iscsictld.service", "iscsictld.socket", "iscsictl-sessions.service"):
        text = (UNITS / name).read_text().replace("/usr/local/bin/", f"{venv}/")
        (tmp_path / name).write_text(text)
    cp = subprocess.run([analyze, "verify", *(str(p) for p in sorted(tmp_path.iterdir()))],
                        capture_output=True, text=True, timeout=60,
                        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0 and not cp.stderr.strip(), cp.stderr


#: a private ``systemd --user`` manager (in its own mount and PID namespaces: all of it ends
#: with the script) running both units as they are, with drop-ins that make the daemon a
#: sleep and iscsictl-sessions' ExecStop a line in a log naming the daemon's state
#: the start of each script: a private user manager, ready (HOME and units: ``$1``)
_PREAMBLE = r"""
set -u
mount -t tmpfs none /run/systemd && mkdir -p /run/systemd/system || exit 90
export HOME="$1" XDG_RUNTIME_DIR="$1/xdg"
/lib/systemd/systemd --user > "$HOME/manager.log" 2>&1 &
for i in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break; sleep 0.1; done
"""
_MANAGER = _PREAMBLE + r"""
say() { echo "$1: $(cat "$HOME/log" 2>/dev/null || echo none)"; rm -f "$HOME/log"; }
systemctl --user start iscsictl-sessions.service || exit 91
systemctl --user restart iscsictld; say restart
systemctl --user stop iscsictld; say stop
systemctl --user start iscsictl-sessions.service iscsictld.service
systemctl --user isolate emergency-like.target
for i in $(seq 50); do [ -z "$(systemctl --user list-jobs --no-legend)" ] && break; sleep 0.1; done
say "isolate, $(systemctl --user is-active iscsictl-sessions.service iscsictld.service | tr '\n' ' ')"
systemctl --user start --no-block exit.target
for i in $(seq 50); do [ -e "$HOME/log" ] && break; sleep 0.1; done
say shutdown
"""


def _user_units(home: Path, *copied: str) -> Path:
    """``home``'s user unit directory with ``copied`` units of contrib/systemd, the daemon
    among them a sleep (a drop-in), and the manager's runtime directory."""
    units = home / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    (home / "xdg").mkdir(mode=0o700)
    for name in ("iscsictld.service", *copied):
        shutil.copy(UNITS / name, units / name)
    (units / "iscsictld.service.d").mkdir()
    (units / "iscsictld.service.d" / "stand-in.conf").write_text(
        "[Service]\nType=simple\nExecStart=\nExecStart=/bin/sleep infinity\n"
        "OOMScoreAdjust=0\n")
    return units


def _run_manager(home: Path, script: str) -> str:
    """``script``'s output, run in its own mount and PID namespaces (all of it ends with
    the script, or with unshare when the timeout kills it); a failure of the script fails
    the test."""
    cp = subprocess.run(["unshare", "-m", "-p", "--fork", "--kill-child", "--mount-proc",
                         "--propagation", "private", "sh", "-c", script, "sh",
                         str(home)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp.stdout


def test_only_a_shutdown_logs_the_sessions_out(tmp_path):
    """Restarting or stopping iscsictld leaves the sessions in the kernel (its next start
    adopts them), and so does ``systemctl isolate`` (emergency, rescue: the mounts stay, so
    do the sessions and their daemon; before session 51 an isolate logged every session
    out); the shutdown logs them out, the daemon still running.  Before: the
    sessions unit Required the daemon, so systemd stopped it, running its ExecStop (the
    logout of every session, disks gone from under mounted filesystems), on every restart
    or stop of the daemon.  Real systemd 252, its user manager."""
    systemd = Path("/lib/systemd/systemd")
    assert systemd.exists(), "systemd missing: `make deps` installs systemd"
    units = _user_units(tmp_path, "iscsictl-sessions.service")
    (units / "emergency-like.target").write_text("[Unit]\nAllowIsolate=yes\n")
    (units / "iscsictl-sessions.service.d").mkdir()
    (units / "iscsictl-sessions.service.d" / "stand-in.conf").write_text(
        "[Service]\nExecStop=\nExecStop=-/bin/sh -c 'echo \"logout, iscsictld "
        "$(systemctl --user show -p SubState --value iscsictld.service)\" >> %h/log'\n")
    out = _run_manager(tmp_path, _MANAGER)
    assert out.splitlines() == [
        "restart: none", "stop: none", "isolate, active active : none",
        "shutdown: logout, iscsictld running"], out


#: open-iscsi's upstream units as far as they matter here (etc/systemd/*.template of
#: open-iscsi 2.1.8, shipped by SUSE and Fedora): iscsi.service Requires iscsid.socket, and
#: its ExecStop logs every session out (here: a line in the log); the daemons are sleeps
_UPSTREAM = {
    "iscsid.socket": "[Socket]\nListenStream=@iscsictl-test-{tag}\n",
    "iscsid.service": "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep infinity\n",
    "iscsi.service": ("[Unit]\nAfter=iscsid.service\nRequires=iscsid.socket\n[Service]\n"
                      "Type=oneshot\nRemainAfterExit=true\nExecStart=/bin/true\n"
                      "ExecStop=/bin/sh -c 'echo logoutall=automatic >> %h/log'\n"
                      "ExecStop=/bin/sh -c 'echo logoutall=manual >> %h/log'\n"),
}
_SWITCH = _PREAMBLE + r"""
systemctl --user start iscsi.service || exit 91
systemctl --user stop iscsid.socket iscsid.service
systemctl --user mask iscsid.socket iscsid.service iscsi.service >/dev/null 2>&1
systemctl --user start iscsictld.service || exit 92
echo "$(systemctl --user is-active iscsictld.service): $(cat "$HOME/log" 2>/dev/null | tr '\n' ' ')"
systemctl --user start --no-block exit.target
"""


def _switch(tmp_path: Path, with_drop_in: bool) -> str:
    units = _user_units(tmp_path)
    for name, text in _UPSTREAM.items():
        (units / name).write_text(text.format(tag=tmp_path.name))
    if with_drop_in:
        (units / "iscsi.service.d").mkdir()
        shutil.copy(UNITS / "open-iscsi-no-logout.conf", units / "iscsi.service.d")
    return _run_manager(tmp_path, _SWITCH).strip()


def test_the_switch_from_upstreams_units_logs_nothing_out(tmp_path):
    """The install steps on a host with open-iscsi's upstream units (SUSE, Fedora): with
    the drop-in that empties iscsi.service's ExecStop, stopping iscsid.socket (which stops
    iscsi.service) and starting iscsictld leave every session in the kernel.  Without it
    (before: the steps named only Debian's units) the same steps logged every session out."""
    assert _switch(tmp_path / "with", True) == "active:"
    assert _switch(tmp_path / "without", False) == \
        "active: logoutall=automatic logoutall=manual"


#: both units as they are but for paths: the real iscsictld (its kernel a fake one through
#: the LD_PRELOAD shim), then commands sent all through a restart of the daemon
_RESTART = _PREAMBLE + r"""
systemctl --user start iscsictld.socket iscsictld.service || exit 91
"$PY" -c '
import sys, time
from iscsictl.ipc import DaemonClient, DaemonError
failed = []
for i in range(60):
    try:
        DaemonClient(sys.argv[1], timeout=20).call("ping")
    except DaemonError as e:
        failed.append(str(e))
    time.sleep(0.05)
print("failed:", len(failed), *failed[:1])
' "$HOME/d.sock" > "$HOME/pings" &
pinger=$!
sleep 0.5
systemctl --user restart iscsictld.service
wait $pinger
cat "$HOME/pings"
echo "$(systemctl --user is-active iscsictld.socket iscsictld.service | tr '\n' ' ')"
systemctl --user stop iscsictld.service iscsictld.socket
"""


def test_commands_sent_through_a_restart_of_the_daemon_are_all_answered(tmp_path):
    """iscsictld.socket holds the command socket across ``systemctl restart iscsictld``:
    a command made meanwhile waits in it and the next daemon answers (before: the daemon
    unlinked and rebound its own, and commands made in the restart's second failed with
    20, "could not connect").  Real systemd 252 (its user manager), the real daemon."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fake_hba import FakeHbaKernel, build_shim

    shim = build_shim(str(tmp_path))
    units = tmp_path / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    (tmp_path / "xdg").mkdir(mode=0o700)
    (tmp_path / "sys").mkdir()
    for name in ("iscsictld.service", "iscsictld.socket"):
        shutil.copy(UNITS / name, units / name)
    (units / "iscsictld.socket.d").mkdir()
    (units / "iscsictld.socket.d" / "here.conf").write_text(
        f"[Socket]\nListenStream=\nListenStream={tmp_path}/d.sock\n")
    bin_dir = Path(sys.executable).parent
    with FakeHbaKernel(str(tmp_path / "nl.sock"), {}, {}) as kernel:
        env = " ".join(f"{k}={v}" for k, v in {
            **kernel.env(shim), "ISCSICTL_SYSFS_ROOT": f"{tmp_path}/sys",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}.items())
        (units / "iscsictld.service.d").mkdir()
        (units / "iscsictld.service.d" / "here.conf").write_text(
            f"[Service]\nExecStart=\nExecStart={bin_dir}/iscsictld --socket {tmp_path}/d.sock "
            f"--lock-file {tmp_path}/lock --state-dir {tmp_path}/state --db-root {tmp_path} "
            f"--config-root {tmp_path} --no-command-server --no-autostart\n"
            f"Environment={env}\nOOMScoreAdjust=0\n")
        out = _run_manager(tmp_path, f"PY={sys.executable}\n" + _RESTART)
    assert out.splitlines() == ["failed: 0", "active active "], \
        out + (tmp_path / "manager.log").read_text()[-3000:]
