"""iscsictld's command server in the guest: the CLI's commands run there against the real
kernel, and the server lives and ends with the daemon (however the daemon ends)."""

from pathlib import Path

from cli import Cli, sessions_in_sysfs, wait_disks, wait_for
from iscsictld import Iscsictld, children, cmdline

CLI_SOCKET = Path("/run/iscsictld-cli.sock")  # beside the daemon's /run/iscsictld.sock
PORTAL = "127.0.0.1"


def wait_gone(pids: list[int], timeout: float = 30) -> None:
    wait_for(f"processes {pids} gone", lambda: not any(
        Path(f"/proc/{p}").exists() and "iscsictl" in cmdline(p) for p in pids), timeout)


def test_commands_run_in_the_command_server(lio, daemon, scenario_dir):
    """Discovery, login, -P 3, logout with no Python front end to fall back to."""
    daemon.wait_command_server()
    cli = Cli(scenario_dir / "etc")
    cli.env["ISCSICTL_PY"] = "/nonexistent/iscsictl-py"  # a fallback would fail loudly
    t = lio.create("iqn.2003-01.org.example.vm:served", luns=[16 << 20])
    assert f"{PORTAL}:3260,1 {t.iqn}" in cli.ok("-m", "discovery", "-t", "st", "-p", PORTAL)
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-l")
    (sid,) = sessions_in_sysfs()
    dev = wait_disks(sid, 1)[0]
    assert f"Attached scsi disk {dev[5:]}" in cli.ok("-m", "session", "-P", "3")
    cli.ok("-m", "node", "-T", t.iqn, "-p", PORTAL, "-u")
    assert sessions_in_sysfs() == []


def test_command_server_ends_with_the_daemon(scenario_dir):
    """Stopped with the daemon; and when the daemon is killed, it ends by itself (end of
    file on its stdin), its workers with it, its socket removed."""
    d = Iscsictld(scenario_dir)
    try:
        for ending in ("SIGKILL", "SIGTERM"):
            d.start()
            server = d.wait_command_server()
            procs = [server, *children(server)]
            assert len(procs) == 3, [cmdline(p) for p in procs]  # 2 idle workers
            if ending == "SIGKILL":
                d.kill9()
            else:
                d.stop()
            wait_gone(procs)
            assert not CLI_SOCKET.exists()
    finally:
        d.stop()
