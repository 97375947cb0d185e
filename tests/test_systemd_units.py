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


def test_the_sessions_are_logged_out_at_shutdown_in_order():
    s = _unit("iscsictl-sessions.service")
    assert s["Service"]["ExecStop"].split()[-3:] == ["-m", "node", "--logoutall=all"]
    assert s["Service"]["RemainAfterExit"] == "true"
    assert "iscsictld.service" in s["Unit"]["Requires"].split()
    assert "iscsictld.service" in s["Unit"]["After"].split()  # stopped before the daemon
    assert {"remote-fs-pre.target", "shutdown.target"} <= set(s["Unit"]["Before"].split())


def test_systemd_reads_both_units_without_a_complaint(tmp_path):
    """``systemd-analyze verify`` (systemd 252 on Debian 12) on the units, their commands
    pointed at this checkout's."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: `make deps` installs systemd"
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin"
    for name in ("iscsictld.service", "iscsictl-sessions.service"):
        text = (UNITS / name).read_text().replace("/usr/local/bin/", f"{venv}/")
        (tmp_path / name).write_text(text)
    cp = subprocess.run([analyze, "verify", *(str(p) for p in sorted(tmp_path.iterdir()))],
                        capture_output=True, text=True, timeout=60,
                        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0 and not cp.stderr.strip(), cp.stderr
