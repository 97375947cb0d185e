"""The ``iscsictl`` client (_fastpath/client.c) and the command server (iscsictl.cli.server):
real processes, a real tgtd for discovery.

A command run through the server must be indistinguishable from the Python front end
(``iscsictl-py``): exit code, stdout, stderr, the files it writes and their modes, its
environment and working directory, signals.  Where a test needs proof that the server ran
the command, ``ISCSICTL_PY`` names a program that does not exist, so a fallback fails loudly.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Cli
from iscsictl.cli.server import (MAGIC, MAX_ENV, PROTOCOL_VERSION, REPLY, REPLY_EXITED,
                                 REPLY_KILLED, REPLY_STARTED, REQUEST, RequestError,
                                 cli_socket_path, parse_request)

BIN = Path(sys.executable).parent
CLIENT = BIN / "iscsictl"
NO_PY = "/nonexistent/iscsictl-py"
TARGET = "iqn.2001-04.com.example:cmdserver"


def test_client_is_the_compiled_front_end():
    head = CLIENT.read_bytes()[:4]
    assert head == b"\x7fELF", f"{CLIENT} is not the compiled client (setup.py BuildClient)"
    assert (BIN / "iscsictl-py").exists()


class Server:
    """``python -m iscsictl.cli.server`` on ``<tmp>/d-cli.sock``, the path the client derives
    from ISCSICTL_SOCKET=<tmp>/d.sock; stopped by end of file on its stdin."""

    def __init__(self, tmp: Path, nofile: int | None = None, args: tuple = (),
                 oom_score_adj: int | None = None) -> None:
        self.daemon_socket = str(tmp / "d.sock")
        self.path = tmp / "d-cli.sock"
        self.log = tmp / "server.log"

        def limit() -> None:  # RLIMIT_NOFILE, to run it out of descriptors; the OOM
            import resource  # score the daemon's unit gives the daemon
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if oom_score_adj is not None:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write(str(oom_score_adj))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-X", "utf8", "-m", "iscsictl.cli.server", "--socket",
                 str(self.path), "--watch-stdin", *args], stdin=subprocess.PIPE, stdout=log,
                stderr=log, preexec_fn=limit if nofile or oom_score_adj is not None else None)
        deadline = time.monotonic() + 60
        # ready: listening, with its idle workers forked (the socket comes first)
        while not self.path.exists() or len(self.workers()) < 2:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "command server did not listen"
            time.sleep(0.02)

    def workers(self) -> list[int]:
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(p) for p in text.split()]

    def stop(self, timeout: float = 40) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0, s.log.read_text()
    assert not s.path.exists(), "the server left its socket"


def run_client(args, env, cwd=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLIENT), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, **kw)


def env_for(server_or_sock, root: Path | None = None, served: bool = True, **extra) -> dict:
    sock = server_or_sock.daemon_socket if isinstance(server_or_sock, Server) \
        else str(server_or_sock)
    env = dict(os.environ, ISCSICTL_SOCKET=sock)
    env.pop("ISCSICTL_CLI_SOCKET", None)
    if root is not None:
        env.update(ISCSICTL_DB_ROOT=str(root), ISCSICTL_CONFIG_ROOT=str(root))
    if served:
        env["ISCSICTL_PY"] = NO_PY
    else:
        env["ISCSICTL_DIRECT"] = "1"
    env.update(extra)
    return env


def tree(root: Path) -> dict[str, tuple]:
    """Every file, directory and link under root: (mode, content or target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = os.readlink(p).replace(str(root), "<root>")
        elif stat.S_ISDIR(st.st_mode):
            what = None
        else:
            what = p.read_text()
        name = str(p.relative_to(root))
        if name.startswith(".locks/"):  # named by a hash of the locked path, root included
            name = f".locks/#{sum(n.startswith('.locks/') for n in out)}"
        out[name] = (stat.S_IMODE(st.st_mode), what)
    return out


def test_socket_path_derivation(monkeypatch):
    monkeypatch.delenv("ISCSICTL_CLI_SOCKET", raising=False)
    assert cli_socket_path("/run/iscsictld.sock") == "/run/iscsictld-cli.sock"
    assert cli_socket_path("/tmp/x") == "/tmp/x-cli"
    monkeypatch.setenv("ISCSICTL_CLI_SOCKET", "/tmp/explicit")
    assert cli_socket_path("/run/iscsictld.sock") == "/tmp/explicit"


def test_socket_is_root_only(server):
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600


@pytest.mark.peer
def test_commands_behave_as_the_python_front_end(server, tgt, tmp_path):
    """The same command sequence, served and direct, each on its own DB: equal exit codes,
    output (with the root's path normalised), and equal DB trees, modes included."""
    portal = tgt.portal
    seq = [
        ["--version"],
        ["-h"],
        ["-m", "bogus"],
        ["-m", "node", "-x"],
        ["-m", "node"],
        ["-m", "node", "-o", "new", "-T", TARGET, "-p", "192.0.2.1"],
        ["-m", "node", "-T", TARGET, "-p", "192.0.2.1", "-o", "update",
         "-n", "node.session.auth.password", "-v", "s3cret-s3cret"],
        ["-m", "node", "-T", TARGET, "-p", "192.0.2.1", "-o", "show"],
        ["-m", "node", "-T", TARGET, "-p", "192.0.2.1", "-o", "show", "-S"],
        ["-m", "discovery", "-t", "st", "-p", portal],
        ["-m", "discovery", "-t", "st", "-p", portal, "-P", "1"],
        ["--json", "-m", "node"],
        ["-m", "node", "-P", "1"],
        ["-m", "discovery"],
        ["-m", "iface"],
        ["-m", "iface", "-I", "default", "-o", "show"],
        ["-m", "node", "-T", "iqn.2001-04.com.example:none", "-o", "delete"],
        ["-m", "node", "-T", TARGET, "-o", "delete"],
        ["-m", "node"],
    ]
    roots = {}
    results = {}
    for served in (False, True):
        root = tmp_path / ("served" if served else "direct") / "etc-iscsi"
        Cli(str(root))
        roots[served] = root
        env = env_for(server, root, served)
        results[served] = []
        for args in seq:
            r = run_client(args, env)
            results[served].append((args, r.returncode, r.stdout.replace(str(root), "<root>"),
                                    r.stderr.replace(str(root), "<root>")))
    for direct, served in zip(results[False], results[True]):
        assert served == direct
    assert results[True][9][1] == 0, results[True][9]  # the discovery found tgtd's targets
    assert tree(roots[True]) == tree(roots[False])
    assert any(m == 0o600 for m, _ in tree(roots[True]).values())  # records with secrets


def test_working_directory_umask_and_environment(server, tmp_path):
    """A relative --db-root resolves in the client's directory; the umask and the
    environment are the client's."""
    trees = {}
    for served in (False, True):
        cwd = tmp_path / ("served" if served else "direct")
        cwd.mkdir()
        Cli(str(cwd / "etc"))
        env = env_for(server, served=served, ISCSICTL_CONFIG_ROOT=str(cwd / "etc"))
        r = run_client(["--db-root", "var/db", "-m", "node", "-o", "new", "-T", TARGET,
                        "-p", "192.0.2.7"], env, cwd=cwd, preexec_fn=lambda: os.umask(0o027))
        assert r.returncode == 0, r.stderr
        trees[served] = tree(cwd / "var" / "db")
        # the directory made on the way, as mkdir -p: the client's umask 027, not the server's
        assert stat.S_IMODE((cwd / "var").stat().st_mode) == 0o750
        r = run_client(["-m", "node"], dict(env, ISCSICTL_DB_ROOT=str(cwd / "var" / "db")),
                       cwd="/")
        assert r.returncode == 0 and r.stdout.startswith("192.0.2.7:3260,") and \
            r.stdout.endswith(f" {TARGET}\n"), r
    assert trees[True] == trees[False]
    assert trees[True]["nodes"][0] == 0o700  # the DB's own: iscsiadm's, whatever the umask


def test_a_umask_without_the_owners_bits_still_makes_a_writable_db(cli):
    """Under umask 0277 the DB's directories and records are 0700 and 0600, as iscsiadm's
    (umask 0077 whatever the caller's): they were 0500 and 0400, and every later command
    failed (a non-root DB root: "cannot open lock ... Permission denied", exit 6).  The
    caller's umask is back after the command."""
    old = os.umask(0o277)
    try:
        r = cli("-m", "node", "-o", "new", "-T", TARGET, "-p", "192.0.2.7")
        after = os.umask(0o277)
    finally:
        os.umask(old)
    assert r.rc == 0 and after == 0o277, r.err
    modes = {name: mode for name, (mode, what) in tree(Path(cli.root)).items()
             if name.startswith(("nodes", ".locks", ".tmp"))}
    assert modes and set(modes.values()) <= {0o700, 0o600}, modes


class SilentPortal:
    """A TCP listener that never answers: a login to it waits until its timeout."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.portal = f"127.0.0.1:{self.sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        self.sock.close()


def _start_blocked(env, root: Path, portal: str, sigint=signal.SIG_DFL) -> subprocess.Popen:
    """The client in a discovery that waits on ``portal``, started with SIGINT's
    disposition ``sigint`` (a terminal's foreground job: default; a shell's background job:
    ignored), whatever this test process inherited."""
    p = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p", portal], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    time.sleep(1.0)  # in the login wait (the fixture's login timeout is 3 s)
    return p


def _outcomes(server, tmp_path, sig, sigint=signal.SIG_DFL) -> dict:
    """{served: (exit code, stdout, stderr)} of a blocked discovery sent ``sig``, through
    the command server and through iscsictl-py."""
    outcomes = {}
    with SilentPortal() as silent:
        for served in (False, True):
            root = tmp_path / str(served)
            Cli(str(root))
            p = _start_blocked(env_for(server, root, served), root, silent.portal, sigint)
            p.send_signal(sig)
            out, err = p.communicate(timeout=30)
            outcomes[served] = (p.returncode, out, err)
    return outcomes


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_reach_the_command(server, tmp_path, sig):
    """Ctrl-C: 'interrupted', exit 130; SIGTERM, SIGHUP: the command unwound, then killed
    by that signal; as iscsictl-py."""
    outcomes = _outcomes(server, tmp_path, sig)
    assert outcomes[True] == outcomes[False]
    if sig == signal.SIGINT:
        assert outcomes[True][0] == 130 and "iscsictl: interrupted" in outcomes[True][2]
    else:
        assert outcomes[True][0] == -sig and outcomes[True][2] == ""


def test_an_ignored_sigint_stays_ignored(server, tmp_path):
    """A command started with SIGINT ignored (a shell script's background job) runs on when
    it is sent one, through the command server as in iscsictl-py: the discovery ends by
    its own timeout.  (The client forwarded it before, and the served command stopped.)"""
    outcomes = _outcomes(server, tmp_path, signal.SIGINT, sigint=signal.SIG_IGN)
    assert outcomes[True] == outcomes[False]
    assert outcomes[True][0] == 19 and "timed out" in outcomes[True][2]


def _raw_request(path: Path, args: list[str], version: int = PROTOCOL_VERSION,
                 magic: bytes = MAGIC, stdio: list[int] | None = None) -> socket.socket:
    env = [f"{k}={v}".encode() for k, v in os.environ.items()]
    body = b"".join(s + b"\0" for s in [b"/", *(a.encode() for a in args), *env])
    header = REQUEST.pack(magic, version, 0o22, len(args), len(env), len(body))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(path))
    null = os.open(os.devnull, os.O_RDWR)
    try:
        socket.send_fds(s, [header], stdio or [null, null, null])
    finally:
        os.close(null)
    s.sendall(body)
    return s


def _replies(s: socket.socket) -> list[tuple[int, int]]:
    data = b""
    while chunk := s.recv(64):
        data += chunk
    return [REPLY.unpack_from(data, i) for i in range(0, len(data) - len(data) % 8, 8)]


def test_worker_killed_by_a_signal_is_reported(server, tmp_path):
    Cli(str(tmp_path / "etc"))
    with SilentPortal() as silent:
        s = _raw_request(server.path, ["--db-root", str(tmp_path / "etc"), "--config-root",
                                       str(tmp_path / "etc"), "-m", "discovery", "-t", "st",
                                       "-p", silent.portal])
        kind, pid = REPLY.unpack(s.recv(REPLY.size, socket.MSG_WAITALL))
        assert kind == REPLY_STARTED
        os.kill(pid, signal.SIGKILL)
        assert _replies(s) == [(REPLY_KILLED, signal.SIGKILL)]
        s.close()


def test_client_dies_by_the_workers_signal(server, tmp_path):
    root = tmp_path / "etc"
    Cli(str(root))
    with SilentPortal() as silent:
        p = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p", silent.portal],
                             env=env_for(server, root), stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        # the busy worker's stdin is the client's pipe (idle ones hold /dev/null)
        busy = [w for w in server.workers() if os.readlink(f"/proc/{w}/fd/0").startswith("pipe:")]
        assert len(busy) == 1, busy
        os.kill(busy[0], signal.SIGKILL)
        p.wait(30)
    assert p.returncode == -signal.SIGKILL


@pytest.mark.parametrize("bad", ["version", "magic"])
def test_request_of_another_protocol_is_refused_before_running(server, bad):
    s = _raw_request(server.path, ["--version"],
                     **({"version": PROTOCOL_VERSION + 1} if bad == "version"
                        else {"magic": b"XXXX"}))
    replies = _replies(s)
    assert all(kind != REPLY_STARTED for kind, _ in replies), replies
    r = run_client(["--version"], env_for(server))  # and the server serves on
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version")


def test_a_used_workers_refusal_is_logged_where_the_servers_log_goes(server):
    """A worker that has served a command, then refuses a request, says why in the server's
    log: once a command let go of its client's stdio, the worker's stderr was /dev/null,
    and every refusal after a worker's first command went unsaid."""
    served: set[int] = set()
    for _ in range(100):  # until each idle worker has served one (either takes a client)
        s = _raw_request(server.path, ["--version"])
        (started, pid), (exited, code) = (REPLY.unpack(s.recv(REPLY.size, socket.MSG_WAITALL))
                                          for _ in range(2))
        s.close()
        assert (started, exited, code) == (REPLY_STARTED, REPLY_EXITED, 0)
        served.add(pid)
        time.sleep(0.05)  # back to waiting for a client
        if set(server.workers()) <= served:
            break
    assert set(server.workers()) <= served, (served, server.workers())
    replies = _replies(_raw_request(server.path, ["--version"], magic=b"XXXX"))
    assert all(kind != REPLY_STARTED for kind, _ in replies), replies
    deadline = time.monotonic() + 10
    while "request refused: " not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)


def test_parse_request_rejects_malformed_bodies():
    body = b"/\0-m\0node\0A=1\0"
    hdr = REQUEST.pack(MAGIC, PROTOCOL_VERSION, 0o22, 2, 1, len(body))
    assert parse_request(hdr, body) == (0o22, "/", ["-m", "node"], {"A": "1"})
    for h, b in ((REQUEST.pack(MAGIC, PROTOCOL_VERSION, 0, 3, 1, len(body)), body),
                 (hdr, body[:-1]),
                 (REQUEST.pack(MAGIC, PROTOCOL_VERSION, 0, 2, 1, len(body) - 1), body[:-1])):
        with pytest.raises(RequestError):
            parse_request(h, b)
    odd = b"/\0\xff\xfe\0B=\xff\0"  # undecodable bytes survive as Python's argv would
    h = REQUEST.pack(MAGIC, PROTOCOL_VERSION, 0, 1, 1, len(odd))
    assert parse_request(h, odd)[2:] == ([os.fsdecode(b"\xff\xfe")], {"B": os.fsdecode(b"\xff")})


def test_fallback_without_a_server(tmp_path):
    """No socket, a stale socket: the client becomes ISCSICTL_PY (here echo, which shows the
    arguments it was given), or iscsictl-py beside it."""
    stale = tmp_path / "stale-cli.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens
    for sock in (tmp_path / "none.sock", tmp_path / "stale.sock"):
        r = run_client(["-m", "node", "x y"],
                       dict(os.environ, ISCSICTL_SOCKET=str(sock), ISCSICTL_PY="/bin/echo"))
        assert (r.returncode, r.stdout) == (0, "-m node x y\n")
    r = run_client(["--version"], dict(os.environ, ISCSICTL_SOCKET=str(tmp_path / "none.sock")))
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version")  # iscsictl-py
    r = run_client(["x"], dict(os.environ, ISCSICTL_PY="/nonexistent/py",
                               ISCSICTL_SOCKET=str(tmp_path / "none.sock")))
    assert r.returncode == 1
    assert r.stderr == "iscsictl: cannot run the Python front end /nonexistent/py: " \
                       "No such file or directory\n"


def test_non_root_and_direct_run_the_python_front_end(server, tmp_path):
    """Only root is served: another user's command runs as that user, in its own process;
    ISCSICTL_DIRECT=1 never uses the server."""
    from iscsictl.db.store import NodeDB

    NodeDB(str(tmp_path), str(tmp_path)).create_node("iqn.2001-04.com.ex:t1", "10.0.0.1",
                                                      3260, 1)
    env = env_for(server, tmp_path, ISCSICTL_PY="/bin/echo")  # (a DB of its own: the
    # listing served below read the host's /etc/iscsi, and passed by what it held)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        str(CLIENT), "-m", "session"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout) == (0, "-m session\n"), r.stderr
    r = run_client(["-m", "node"], dict(env, ISCSICTL_DIRECT="1"))
    assert r.stdout == "-m node\n"
    # 0 is off, as ISCSICTL_NO_EXTENSIONS=0 (before: any value ran the front end)
    r = run_client(["-m", "node"], dict(env, ISCSICTL_DIRECT="0"))
    assert (r.returncode, r.stdout) == (0, "10.0.0.1:3260,1 iqn.2001-04.com.ex:t1\n"), r


def test_idle_worker_death_is_replaced_and_repeated_deaths_stop_the_server(server):
    idle = server.workers()
    assert len(idle) == 2
    os.kill(idle[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while sorted(server.workers()) == sorted(idle) or len(server.workers()) < 2:
        assert time.monotonic() < deadline, server.workers()
        time.sleep(0.05)
    assert run_client(["--version"], env_for(server)).returncode == 0
    # a broken installation: workers die as soon as they are forked
    for _ in range(20):
        for w in server.workers():
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    assert server.proc.wait(30) == 0
    assert "workers keep dying" in server.log.read_text()
    assert not server.path.exists()


def test_stop_lets_running_commands_finish(server, tmp_path):
    root = tmp_path / "etc"
    Cli(str(root))
    with SilentPortal() as silent:
        p = _start_blocked(env_for(server, root), root, silent.portal)
        server.proc.stdin.close()  # the daemon is gone
        deadline = time.monotonic() + 10
        while server.path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = run_client(["--version"], env_for(server))
        assert r.returncode == 1 and "cannot run the Python front end" in r.stderr  # fallback
        out, err = p.communicate(timeout=30)
        assert p.returncode == 19, (out, err)  # no Login Response: iscsiadm's 19
    assert server.proc.wait(30) == 0


def test_command_on_a_terminal(server):
    """The client's terminal is the command's (isatty, output)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        env = env_for(server)
        os.execve(str(CLIENT), [str(CLIENT), "--version"], env)
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 30)
        if not r:
            break
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.startswith(b"iscsictl version")
    assert b"\r\n" in out  # through the terminal's line discipline, not a pipe


def test_removed_working_directory_runs_the_python_front_end(server, tmp_path):
    """A command started in a directory that no longer exists meets it as iscsictl-py would
    (the client does not send a made-up directory to the server)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    p = subprocess.Popen(["sh", "-c", f"cd {gone} && rmdir {gone} && exec {CLIENT} -m node"],
                         env=env_for(server, ISCSICTL_PY="/bin/echo"), stdout=subprocess.PIPE,
                         text=True)
    out, _ = p.communicate(timeout=30)
    assert (p.returncode, out) == (0, "-m node\n")


@pytest.mark.parametrize("exit_first", [True, False])
def test_a_command_that_ends_before_its_message_is_read_is_reported_not_taken_for_dead(
        tmp_path, capsys, exit_first):
    """A worker passes its client's connection over ctl, runs the command and exits; the
    server can see the exit before (or with) the message.  Either order: the client gets
    the exit code, the pool is back to its idle workers, no idle death is counted, nothing
    raises."""
    import selectors

    from iscsictl.cli.server import CommandServer, _Worker

    srv = CommandServer(str(tmp_path / "s.sock"))
    forks = []

    def fork():  # no real workers in this test: an idle stand-in
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        forks.append(theirs)
        srv.workers[-len(forks)] = _Worker(0, ours)
    srv._fork_worker = fork
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client, client_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker: hand over the client, "run" a command, exit with 3
        socket.send_fds(theirs, [b"a"], [client_end.fileno()])
        os._exit(3)
    theirs.close()
    client_end.close()
    pidfd = os.pidfd_open(pid)
    srv.workers[pidfd] = _Worker(pid, ours)
    srv.sel.register(pidfd, selectors.EVENT_READ, ("exit", pidfd))
    srv.sel.register(ours, selectors.EVENT_READ, ("ctl", pidfd))
    select.select([pidfd], [], [], 10)  # the worker has exited
    for what in (("exit", "ctl") if exit_first else ("ctl", "exit")):
        (srv._reap if what == "exit" else srv._messages)(pidfd)
    client.settimeout(5)
    assert client.recv(64) == REPLY.pack(REPLY_EXITED, 3)
    assert len(forks) == srv.idle and pidfd not in srv.workers and srv._early_deaths == 0
    assert "idle worker" not in capsys.readouterr().err


def _served(path: Path, args: list[str], after=None, **kw) -> tuple[int, int]:
    """Run a command with a raw request: (worker pid, exit code).  ``after(pid)`` runs
    before the connection is closed."""
    s = _raw_request(path, args, **kw)
    with s:
        replies = [REPLY.unpack(s.recv(REPLY.size, socket.MSG_WAITALL)) for _ in range(2)]
        (started, pid), (exited, code) = replies
        assert (started, exited) == (REPLY_STARTED, REPLY_EXITED), replies
        if after:
            after(pid)
    return pid, code


def _wait_idle(server, timeout: float = 30) -> None:
    """Until every worker waits for a client (in epoll_wait: not running a command, nor
    waiting for its last client to close)."""
    deadline = time.monotonic() + timeout
    while not all(Path(f"/proc/{w}/wchan").read_text() == "do_epoll_wait"
                  for w in server.workers()):
        assert time.monotonic() < deadline, server.workers()
        time.sleep(0.01)


def test_workers_serve_command_after_command_each_in_its_own_context(server, tmp_path):
    """Commands in a row are served by the idle workers forked ahead, none forked for them
    (a fresh fork's copy-on-write faults cost more than the command under TCG); each
    command still gets its own environment, working directory and umask."""
    idle = sorted(server.workers())
    pids = set()
    for _ in range(6):
        _wait_idle(server)  # else a command may come while none is idle: one is forked
        pids.add(_served(server.path, ["--version"])[0])
    assert pids <= set(idle) and sorted(server.workers()) == idle
    for i in range(6):  # two workers, six commands: at least four in a used worker
        _wait_idle(server)
        cwd = tmp_path / f"c{i}"
        cwd.mkdir()
        Cli(str(cwd / "etc"))
        env = env_for(server, ISCSICTL_CONFIG_ROOT=str(cwd / "etc"))
        target = f"{TARGET}-{i}"
        r = run_client(["--db-root", "var/db", "-m", "node", "-o", "new", "-T", target,
                        "-p", "192.0.2.7"], env, cwd=cwd,
                       preexec_fn=lambda i=i: os.umask(0o077 if i % 2 else 0o027))
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE((cwd / "var").stat().st_mode) == (0o700 if i % 2 else 0o750)
        r = run_client(["-m", "node"], dict(env, ISCSICTL_DB_ROOT=str(cwd / "var" / "db")),
                       cwd="/")
        assert (r.returncode, r.stdout) == (0, f"192.0.2.7:3260,4294967295 {target}\n"), r
    assert sorted(server.workers()) == idle


def test_a_signal_after_the_exit_code_is_not_kept_for_the_next_command(server):
    """A client can forward a signal between the exit code and its own end: its worker
    takes no other command until the client has closed the connection, and a signal in
    that time ends it (the signal was meant for the command it ran)."""
    def meanwhile(pid):
        others = {_served(server.path, ["--version"])[0] for _ in range(8)}
        assert pid not in others
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid in server.workers():
            assert time.monotonic() < deadline, server.workers()
            time.sleep(0.02)

    pid, code = _served(server.path, ["--version"], after=meanwhile)
    assert code == 0
    assert all(_served(server.path, ["--version"])[1] == 0 for _ in range(4))


@pytest.mark.parametrize("fails", [False, True])
def test_output_left_unwritten_is_not_kept_for_the_next_command(monkeypatch, fails):
    """A worker whose command's output could not be flushed (it may still be buffered)
    does not serve again; the client gets the exit code either way."""
    from iscsictl.cli.server import REPLY_EXITED, _finish

    class Stream:
        def flush(self):
            if fails:
                raise BlockingIOError(11, "full")

    monkeypatch.setattr(sys, "stdout", Stream())
    saved = [os.dup(fd) for fd in (0, 1, 2)]  # _finish points 0-2 at /dev/null
    ours, theirs = socket.socketpair()
    try:
        assert _finish(3, ours) is not fails
    finally:
        for fd, copy in enumerate(saved):
            os.dup2(copy, fd)
            os.close(copy)
        ours.close()
    assert theirs.recv(64) == REPLY.pack(REPLY_EXITED, 3)
    theirs.close()


def test_a_worker_is_used_again_only_as_it_was_found(monkeypatch):
    """What a command may leave behind (a descriptor, a thread, a signal handler, another
    standard stream) keeps its worker from serving again."""
    import io
    import threading

    from iscsictl.cli.server import WORKER_SIGNALS, _as_found, _state

    import gc

    old = {s: signal.getsignal(s) for s in WORKER_SIGNALS}
    try:
        for sig, disposition in WORKER_SIGNALS.items():
            signal.signal(sig, disposition)
        gc.collect()  # an earlier test's server in a reference cycle: its sockets close now
        before = _state()
        assert _as_found(before)
        fd = os.open(os.devnull, os.O_RDONLY)
        assert not _as_found(before)
        os.close(fd)
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        assert not _as_found(before)
        stop.set()
        t.join()
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        assert not _as_found(before)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", io.StringIO())
            assert not _as_found(before)
        assert _as_found(before)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_a_command_environment_replaces_the_last_one_exactly():
    """_set_environ changes only what differs, and leaves os.environ and the C environment
    (what child processes and C libraries see) equal to the command's."""
    import ctypes

    from iscsictl.cli.server import _set_environ

    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    saved = dict(os.environ)
    try:
        os.environ.update(ICX_GONE="1", ICX_SAME="s", ICX_CHANGED="old")
        wanted = {k: v for k, v in saved.items() if k != "HOME"}
        wanted.update(ICX_SAME="s", ICX_CHANGED="new", ICX_NEW="n")
        _set_environ(wanted)
        assert dict(os.environ) == wanted
        assert [getenv(k.encode()) for k in ("ICX_GONE", "HOME", "ICX_CHANGED", "ICX_NEW")] == \
            [None, None, b"new", b"n"]
    finally:
        _set_environ(saved)
    assert dict(os.environ) == saved


def _pages_shared(address: int, length: int) -> tuple[int, int]:
    """(present pages not exclusively mapped, present pages) of this process's range, from
    /proc/self/pagemap (bit 63 present, bit 56 exclusively mapped)."""
    page = os.sysconf("SC_PAGE_SIZE")
    first, last = address // page, (address + length - 1) // page
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        data = f.read((last - first + 1) * 8)
    entries = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    present = [e for e in entries if e >> 63 & 1]
    return sum(1 for e in present if not e >> 56 & 1), len(present)


@pytest.mark.parametrize("stop_after", [None, 0, 1])
def test_copy_shared_pages_copies_what_a_fork_shares(stop_after, monkeypatch):
    """In a fork, the pages of a buffer the parent wrote are shared until
    copy_shared_pages() copies them (each is then exclusively the child's); a stop() that
    is true at once copies nothing, one true after a first look at most one chunk; it is
    asked before each chunk."""
    import ctypes

    from iscsictl.cli import server
    from iscsictl.cli.server import copy_shared_pages

    monkeypatch.setattr(server, "_CHUNK", 8)  # pages; a mapping holds more

    looks = []

    def stop() -> bool:
        looks.append(1)
        return stop_after is not None and len(looks) > stop_after

    size = 4 << 20
    buf = bytearray(b"\x5a" * size)
    address = ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            before = _pages_shared(address, size)
            copied = copy_shared_pages(stop)
            after = _pages_shared(address, size)
            os.write(w, repr((before, copied, after, buf[::size // 4] == b"\x5a" * 4,
                              len(looks))).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        (shared0, present0), copied, (shared1, present1), intact, nlooks = eval(f.read())
    os.waitpid(pid, 0)
    pages = size // os.sysconf("SC_PAGE_SIZE")
    assert shared0 >= pages and present0 >= pages and intact
    if stop_after == 0:
        assert (copied, shared1) == (0, shared0)
    elif stop_after == 1:
        assert 0 < copied <= 8
    else:  # stop() asked before each chunk, not only between mappings
        assert copied >= pages and shared1 == 0 and present1 == present0
        assert nlooks >= copied / 8


def test_idle_workers_hold_their_own_copies_before_a_command(server):
    """A fresh worker's warm-up copies the pages it shares with the server (the imported
    modules' objects, ~12 MiB after the fork), so its first command takes no copy-on-write
    faults: soon after the start little of an idle worker's memory is still shared."""
    def shared_dirty_kib(pid: int) -> int:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Shared_Dirty:"):
                return int(line.split()[1])
        raise AssertionError("no Shared_Dirty")

    deadline = time.monotonic() + 30
    while max(shared_dirty_kib(w) for w in server.workers()) > 2048:
        assert time.monotonic() < deadline, [shared_dirty_kib(w) for w in server.workers()]
        time.sleep(0.05)
    assert shared_dirty_kib(server.proc.pid) < 2048  # the server's pages are its own again


def test_out_of_descriptors_the_server_waits_for_a_free_worker(tmp_path):
    """Clients that connect and send nothing each hold a worker until the request deadline.
    With few descriptors the server cannot fork one for every client: it says so, lets the
    others wait in the backlog and serves them once workers are free (before, the fork's
    EMFILE ended the server, and every later command ran iscsictl-py)."""
    s = Server(tmp_path, nofile=48)
    silent = []
    try:
        for _ in range(40):
            c = socket.socket(socket.AF_UNIX)
            c.connect(str(s.path))
            silent.append(c)
        deadline = time.monotonic() + 20
        while "cannot start a worker" not in s.log.read_text():
            assert s.proc.poll() is None, s.log.read_text()
            assert time.monotonic() < deadline, s.log.read_text()
            time.sleep(0.05)
        for c in silent:
            c.close()
        r = run_client(["--version"], env_for(s))
        assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r.stderr
        assert s.proc.poll() is None
    finally:
        for c in silent:
            c.close()
        assert s.stop() == 0, s.log.read_text()


def test_a_request_sent_a_byte_at_a_time_ends_at_the_deadline(monkeypatch):
    """The request deadline is for the whole request: a client that sends a byte now and
    then, each within the old per-read timeout, held its worker for ever."""
    import threading

    from iscsictl.cli import server as srv

    monkeypatch.setattr(srv, "REQUEST_TIMEOUT", 0.5)
    ours, theirs = socket.socketpair()
    stop = threading.Event()

    def dribble() -> None:
        while not stop.wait(0.1):
            try:
                theirs.send(b"I")
            except OSError:
                return
    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(RequestError, match="no whole request within 0.5 s"):
            srv._read_request(ours)
        assert time.monotonic() - start < 2
    finally:
        stop.set()
        t.join(2)
        ours.close()
        theirs.close()


_FAILING_FORK = r'''
import errno, os, sys
real, failures = os.fork, [int(sys.argv[2])]
def fork():  # the first forks fail as when pids or memory run out for a moment
    if failures[0]:
        failures[0] -= 1
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    return real()
os.fork = fork
from iscsictl.cli.server import main
sys.exit(main(["--socket", sys.argv[1], "--watch-stdin"]))
'''


def _server_with_failing_forks(tmp_path: Path, failures: int) -> subprocess.Popen:
    path = tmp_path / "d-cli.sock"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", _FAILING_FORK, str(path), str(failures)],
                                stdin=subprocess.PIPE, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "command server did not listen"
        time.sleep(0.02)
    return proc


def test_a_failed_fork_with_no_worker_is_tried_again(tmp_path):
    """Its first forks fail (EAGAIN): no worker at all.  The server tries again a second
    later and serves the client waiting meanwhile (before, it waited for a worker to end,
    for ever: every client hung, the compiled client having no timeout)."""
    proc = _server_with_failing_forks(tmp_path, 3)
    try:
        r = run_client(["--version"], env_for(tmp_path / "d.sock"))
        assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r.stderr
        log = (tmp_path / "server.log").read_text()
        assert log.count("cannot start a worker (Resource temporarily unavailable)") >= 1, log
    finally:
        proc.stdin.close()
        assert proc.wait(40) == 0, (tmp_path / "server.log").read_text()


def test_forks_failing_for_good_stop_the_server(tmp_path):
    """No worker can ever be made: after MAX_FAILED_FORKS tries the server stops and takes
    its socket away, so that commands run as iscsictl-py instead of waiting on it."""
    from iscsictl.cli.server import FORK_RETRY, MAX_FAILED_FORKS
    proc = _server_with_failing_forks(tmp_path, 10 ** 6)
    try:
        proc.wait(FORK_RETRY * MAX_FAILED_FORKS + 20)
        log = (tmp_path / "server.log").read_text()
        assert f"{MAX_FAILED_FORKS} times with none running: stopping" in log, log
        assert not (tmp_path / "d-cli.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_client_whose_stdout_is_closed_runs_the_python_front_end(server, tmp_path):
    """``iscsictl ... >&-``: the client's connection would take descriptor 1 and be handed
    over as the command's stdout, so the command wrote into its own connection and hung
    past ~200 KB (the worker stuck for good).  Such a client runs iscsictl-py (here echo),
    which meets the closed stdout as it is."""
    out = tmp_path / "echoed"
    script = tmp_path / "py"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {out}\n")
    script.chmod(0o755)
    r = subprocess.run(f"exec {CLIENT} -m node >&-", shell=True, capture_output=True,
                       text=True, timeout=60, env=env_for(server, ISCSICTL_PY=str(script)))
    assert out.read_text() == "-m node\n", r
    r = run_client(["--version"], env_for(server))  # the others are still served
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r


def test_a_client_in_another_network_namespace_runs_the_python_front_end(server, tmp_path):
    """A command from another network namespace (``ip netns exec``) or root (a chroot)
    runs where the caller is, as iscsiadm's, through iscsictl-py (here echo): the worker
    ran it in the server's, so a discovery reached the host's network and its records
    went to the host's tree."""
    r = subprocess.run(["unshare", "-n", str(CLIENT), "-m", "node", "x"], capture_output=True,
                       text=True, timeout=60, env=env_for(server, ISCSICTL_PY="/bin/echo"))
    assert (r.returncode, r.stdout) == (0, "-m node x\n"), r
    r = run_client(["--version"], env_for(server))
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r


@pytest.mark.parametrize("restriction", [["--bounding-set=-all"], ["--no-new-privs"]])
def test_a_root_client_with_fewer_privileges_runs_the_python_front_end(server, restriction):
    """A root caller with its capabilities dropped (a hardened unit's, setpriv's), or
    under no_new_privs, runs iscsictl-py as itself (here echo), as iscsiadm would run:
    before, the worker ran its command with the server's privileges (a DB it could not
    write was written, CAP_SYS_ADMIN netlink requests made).  Root's other commands are
    still served."""
    r = subprocess.run(["setpriv", *restriction, str(CLIENT), "-m", "node", "x"],
                       capture_output=True, text=True, timeout=60,
                       env=env_for(server, ISCSICTL_PY="/bin/echo"))
    assert (r.returncode, r.stdout) == (0, "-m node x\n"), r
    r = run_client(["--version"], env_for(server))
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r


def test_which_root_callers_are_as_privileged_as_the_server():
    """The served path is for callers no more bound than the server: every capability it
    has, no no_new_privs it lacks, no seccomp filter (one's rules cannot be compared), its
    LSM label or an unconfined one: on an SELinux host a root shell (unconfined_t) is
    served by an iscsictld of unconfined_service_t (an exact match alone served none),
    a cron job's confined domain is not; AppArmor's unconfined is served, a profile not."""
    from iscsictl.cli.server import _as_privileged, _privileges

    caps, limits, _ = _privileges("self")
    server = (caps, limits, b"system_u:system_r:unconfined_service_t:s0")
    for label, served in ((b"unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", True),
                          (b"system_u:system_r:unconfined_service_t:s0", True),
                          (b"system_u:system_r:system_cronjob_t:s0-s0:c0.c1023", False),
                          (b"unconfined", True), (b"/usr/sbin/tool (enforce)", False),
                          (b"", True)):
        assert _as_privileged((caps, limits, label), server) is served, label
    assert not _as_privileged((caps, (0, 2), b""), (caps, (0, 2), b""))  # a filter
    assert not _as_privileged((caps, (1, 0), b""), (caps, (0, 0), b""))  # no_new_privs
    assert not _as_privileged((tuple(c & ~1 for c in caps), limits, b""), server)
    assert not _as_privileged(None, server)


def test_an_idle_worker_holds_no_command_directory(server, tmp_path):
    """After a command run from a directory, the worker waits in / : the filesystem the
    command ran in can be unmounted (it was busy until two more commands ran elsewhere)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        r = run_client(["--version"], env_for(server), cwd=mnt)
        assert r.returncode == 0, r
    finally:
        time.sleep(0.2)  # the worker's report after the exit code
        umount = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if umount.returncode:
            subprocess.run(["umount", "-l", str(mnt)])
    assert umount.returncode == 0, umount.stderr


def test_a_client_interrupted_before_its_command_starts_ends_and_nothing_runs(server,
                                                                             tmp_path):
    """No worker takes the command (here a socket nobody accepts on): Ctrl-C or SIGTERM
    ends the wait, the client dying of it (the signals it holds back for the command, it
    held for ever: only SIGKILL ended it).  A worker that takes a request whose client
    has gone runs nothing."""
    sock = tmp_path / "busy-cli.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.listen(8)  # never accepted: the request waits in the backlog
    errs = []
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            err = tmp_path / f"err-{sig}"
            errs.append(err)
            with open(err, "w") as f:
                proc = subprocess.Popen([str(CLIENT), "--version"], stderr=f,
                                        env=env_for(sock.with_name("busy.sock")))
            time.sleep(0.3)
            assert proc.poll() is None  # waiting for a worker
            proc.send_signal(sig)
            assert proc.wait(5) == -sig
        # started with SIGINT ignored (a script's background job, nohup): it stays so
        proc = subprocess.Popen([str(CLIENT), "--version"], stderr=subprocess.DEVNULL,
                                env=env_for(sock.with_name("busy.sock")),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.4)
        still = proc.poll() is None
        proc.kill()
        proc.wait()
        assert still, "an ignored SIGINT ended the client"
    finally:
        listener.close()  # its backlog held the requests' descriptors
    for err in errs:
        assert "interrupted before the command started" in err.read_text()
    root = tmp_path / "db"
    Cli(str(root))
    s = _raw_request(server.path, ["--db-root", str(root), "-m", "node", "-o", "new", "-T",
                                   TARGET, "-p", "192.0.2.7"])
    s.close()  # gone before a worker answers
    time.sleep(1)
    assert not (root / "nodes").exists()
    r = run_client(["--version"], env_for(server))  # and the server serves on
    assert r.returncode == 0, r


def test_a_command_server_not_roots_is_not_used(tmp_path):
    """A socket at the path served by another user (a socket variable pointing into a
    directory others can write to): the client hands it neither its stdio nor its
    arguments and runs iscsictl-py (here echo)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(dir="/tmp"))  # tmp_path's parents are root's alone
    d.chmod(0o777)
    sock = d / "other-cli.sock"
    code = ("import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
            "s.listen(8); print('up', flush=True); c=s.accept()[0]; "
            "print(len(c.recv(65536)), flush=True); time.sleep(5)")
    other = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", code, str(sock)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline() == "up\n"
        r = run_client(["-m", "node", "-v", "s3cret"],
                       dict(os.environ, ISCSICTL_CLI_SOCKET=str(sock), ISCSICTL_PY="/bin/echo"))
        assert (r.returncode, r.stdout) == (0, "-m node -v s3cret\n"), r
        assert other.stdout.readline() == "0\n"  # it was sent nothing
    finally:
        other.kill()
        other.wait()
        shutil.rmtree(d)


def test_a_killed_client_stops_its_command(server, tmp_path):
    """The client is killed (SIGKILL: `timeout -s KILL`, the OOM killer) while its
    discovery waits for the target: the served command stops there and writes no record,
    as iscsiadm's own process would (it ran on and wrote them seconds later)."""
    from protocol.fake_target import FakeTarget, TargetConfig, serve_socket

    listener = socket.create_server(("127.0.0.1", 0))
    target = FakeTarget(TargetConfig(targets=[("iqn.2003-01.org.example:late",
                                               ["127.0.0.1:3260,1"])]))

    def late():
        conn, _ = listener.accept()
        time.sleep(2)  # then answers the discovery in full
        serve_socket(target, conn)
    thread = threading.Thread(target=late, daemon=True)
    thread.start()
    root = tmp_path / "db"
    Cli(str(root))
    proc = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p",
                             f"127.0.0.1:{listener.getsockname()[1]}"],
                            env=env_for(server, root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.8)
        proc.kill()
        proc.wait()
        thread.join(10)
        time.sleep(1)
    finally:
        listener.close()
    assert not (root / "nodes").exists()
    r = run_client(["--version"], env_for(server))  # the server serves on
    assert r.returncode == 0, r


def test_a_stopping_server_leaves_its_successors_socket(server, tmp_path):
    """A new iscsictld's server may bind the path before the old one stops (the old
    daemon releases its lock before its server's commands under way end): the old server
    removes only its own socket, so the new one goes on serving (before: it removed the
    new socket and every command fell back to iscsictl-py)."""
    successor = Server(tmp_path)  # replaces the first server's socket, as bind() does
    try:
        assert server.stop() == 0, server.log.read_text()
        assert successor.path.exists()
        r = run_client(["--version"], env_for(successor))  # served: ISCSICTL_PY is missing
        assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r.stderr
    finally:
        assert successor.stop() == 0


def _busy_workers(server, root: Path, portal: str, n: int = 2) -> list[subprocess.Popen]:
    """``n`` clients whose discoveries wait on the silent ``portal``, each holding a
    worker, once in their login wait."""
    blocked = [subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p", portal],
                                env=env_for(server, root), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(n)]
    time.sleep(1.0)
    return blocked


def test_a_client_waiting_on_busy_workers_runs_the_python_front_end(tmp_path):
    """Every worker busy (hung discoveries) and no more allowed: a client waits
    SHED_AFTER s, then its connection is closed unread and it runs iscsictl-py (before:
    it waited until a worker was free, here the discoveries' login timeout, minutes with
    real ones).  Nothing of it ran in the server."""
    from iscsictl.cli.server import SHED_AFTER

    server = Server(tmp_path, args=("--max-workers", "2"))
    root = tmp_path / "etc"
    Cli(str(root))
    conf = root / "iscsid.conf"
    conf.write_text(conf.read_text().replace("sendtargets.timeo.login_timeout = 3",
                                             "sendtargets.timeo.login_timeout = 10"))
    try:
        with SilentPortal() as silent:
            blocked = _busy_workers(server, root, silent.portal)
            start = time.monotonic()
            r = run_client(["--version"], env_for(server, served=False) | {
                "ISCSICTL_DIRECT": ""})  # the client tries the server first
            waited = time.monotonic() - start
            assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r.stderr
            assert all(p.poll() is None for p in blocked)  # still in their login
            assert SHED_AFTER <= waited
            for p in blocked:
                p.kill()  # a killed client's command stops (test_a_killed_client_...)
                p.communicate(timeout=30)
    finally:
        assert server.stop() == 0
    assert "all 2 workers busy for 1 s: 1 client(s) sent to iscsictl-py" in \
        server.log.read_text()


def test_the_users_commands_do_not_inherit_the_daemons_oom_score(tmp_path):
    """The daemon's unit gives it OOMScoreAdjust=-1000 (systemd sets it before the daemon
    starts the server): the server and the workers that run users' commands go back to 0,
    so that a runaway command stays killable (before: they kept it).  Here 777 stands for
    -1000 (a negative score needs CAP_SYS_RESOURCE); the reset is the same."""
    s = Server(tmp_path, oom_score_adj=777)
    try:
        for pid in (s.proc.pid, *s.workers()):
            assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "0\n", pid
    finally:
        assert s.stop() == 0


_NAME_CHANGES = r"""
import os, subprocess, sys, time
from pathlib import Path
w, client, py = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
hosts = w / "hosts"
hosts.write_text("127.0.0.1 localhost\n10.0.0.1 storage1\n")
subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
env = dict(os.environ, ISCSICTL_DB_ROOT=str(w), ISCSICTL_CONFIG_ROOT=str(w),
           ISCSICTL_SOCKET=str(w / "d.sock"), ISCSICTL_PY=py)
env.pop("ISCSICTL_CLI_SOCKET", None)
srv = subprocess.Popen([sys.executable, "-m", "iscsictl.cli.server", "--socket",
                        str(w / "d-cli.sock"), "--watch-stdin", "--max-workers", "1"],
                       stdin=subprocess.PIPE, env=env)
try:
    while not (w / "d-cli.sock").exists():
        time.sleep(0.02)
    def update(address):
        return subprocess.run([client, "-m", "node", "-T", "iqn.2000-01.x:t", "-p", address,
                               "-o", "update", "-n", "node.startup", "-v", "automatic"],
                              env=env, capture_output=True, timeout=60).returncode
    assert update("10.0.0.1") == 21  # no record yet; the name not looked up either
    subprocess.run([client, "-m", "node", "-o", "new", "-T", "iqn.2000-01.x:t", "-p",
                    "storage1"], env=env, check=True, capture_output=True, timeout=60)
    print(update("10.0.0.1"))
    hosts.write_text("127.0.0.1 localhost\n10.0.0.9 storage1\n")  # the name moves
    print(update("10.0.0.9"), update("10.0.0.1"))
finally:
    srv.stdin.close()
    srv.wait(40)
"""


def test_each_served_command_looks_a_host_name_up_anew(tmp_path):
    """A record named by a host name, matched by ``-p`` address through the name's lookup:
    after the name moves (here in a private /etc/hosts), the next command served by the
    same worker matches the new address and not the old one, as a new iscsiadm process
    would (before: the worker kept the first lookup for its 200 commands)."""
    (tmp_path / "iscsid.conf").write_text("iscsid.startup = /bin/true\n")
    (tmp_path / "initiatorname.iscsi").write_text("InitiatorName=iqn.2000-01.x:i\n")
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                         _NAME_CHANGES, str(tmp_path), str(CLIENT), NO_PY],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["0", "0", "21"]


def test_a_huge_environment_is_run_as_a_process_of_its_own(server):
    """100,000 environment variables (~0.9 MB, under MAX_BODY): a worker set them one by
    one through setenv(3), which scans the environment each time (~19 s), and the next
    command it served, any client's, first unset them (~22 s).  Over MAX_ENV the request
    is refused: its client runs iscsictl-py (here echo), and the workers stay quick."""
    big = env_for(server, ISCSICTL_PY="/bin/echo",
                  **{f"V{i}": "x" for i in range(100_000)})
    t = time.monotonic()
    r = run_client(["-m", "fw"], big)
    assert (r.returncode, r.stdout) == (0, "-m fw\n"), r.stderr
    assert time.monotonic() - t < 5
    times = []
    for _ in range(4):  # two idle workers: each serves one of these at least
        t = time.monotonic()
        r = run_client(["--version"], env_for(server))
        times.append(round(time.monotonic() - t, 2))
        assert r.returncode == 0 and r.stdout.startswith("iscsictl"), r.stderr
    assert max(times) < 5, times
    assert f"{len(big)} environment variables (more than {MAX_ENV}): its client runs " \
        "iscsictl-py" in server.log.read_text()


def test_root_in_a_user_namespace_of_its_own_runs_the_python_front_end(server):
    """Root mapped to root in a user namespace of its own (``unshare -U``, a service's
    ``PrivateUsers=``) connects as uid 0 but holds no capability outside it: it runs
    iscsictl-py as itself (here echo).  Before, the worker ran its command as the host's
    root (a DB it could not write was written)."""
    r = subprocess.run(["unshare", "-U", "--map-user=0", "--map-group=0", str(CLIENT), "-m",
                        "node", "x"], capture_output=True, text=True, timeout=60,
                       env=env_for(server, ISCSICTL_PY="/bin/echo"))
    assert (r.returncode, r.stdout) == (0, "-m node x\n"), r
    r = run_client(["--version"], env_for(server))
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r


def test_a_served_command_runs_with_its_callers_nice_value_groups_and_login_uid(
        server, tmp_path):
    """The worker takes on the caller's nice value, group ids and groups (the records it
    writes are the caller's group's) and audit login uid (the audit log names the
    administrator), as the process the command would otherwise be.  Before: nice 0, the
    server's group, no login uid.  The next command is its own again."""
    root = tmp_path / "db"
    Cli(str(root))

    def caller():
        os.setpriority(os.PRIO_PROCESS, 0, 15)
        os.setgroups([4242])
        os.setresgid(4242, 4242, 4242)
        with open("/proc/self/loginuid", "w") as f:
            f.write("1000")
    with SilentPortal() as silent:
        p = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p",
                              silent.portal], env=env_for(server, root), preexec_fn=caller,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # in the login wait
        seen = []
        for w in server.workers():
            with open(f"/proc/{w}/loginuid") as f:
                loginuid = f.read()
            status = dict(line.split(":", 1) for line in
                          Path(f"/proc/{w}/status").read_text().splitlines())
            seen.append((os.getpriority(os.PRIO_PROCESS, w), status["Gid"].split()[:3],
                         status["Groups"].split(), loginuid))
        p.kill()
        p.communicate(timeout=30)
    assert (15, ["4242"] * 3, ["4242"], "1000") in seen, seen
    r = run_client(["-m", "node", "-o", "new", "-T", "iqn.2001-04.com.example:g", "-p",
                    "192.0.2.1"], env_for(server, root),
                   preexec_fn=lambda: (os.setgroups([4343]), os.setresgid(4343, 4343, 4343)))
    assert r.returncode == 0, r
    made = root / "nodes" / "iqn.2001-04.com.example:g" / "192.0.2.1,3260"
    assert made.stat().st_gid == 4343
    r = run_client(["--version"], env_for(server))  # served as the server's own again
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r


def test_a_server_killed_while_a_command_runs_refuses_new_clients_at_once(tmp_path):
    """The server killed while a worker runs a long command: that worker lets go of its
    copy of the listening socket (its ctl hung up: SIGIO), so a new client is refused and
    runs iscsictl-py (here echo) at once.  Before, its connection was queued where no one
    took it, until the busy command's end (its stdio held as long)."""
    server = Server(tmp_path)
    root = tmp_path / "etc"
    Cli(str(root))
    conf = root / "iscsid.conf"
    conf.write_text(conf.read_text().replace("timeout = 3\n", "timeout = 30\n"))
    with SilentPortal() as silent:
        busy = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p",
                                 silent.portal], env=env_for(server, root),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # in its login wait
            server.proc.kill()
            server.proc.wait(30)
            time.sleep(0.5)
            start = time.monotonic()
            r = run_client(["-m", "node", "x"], env_for(server, ISCSICTL_PY="/bin/echo"))
            waited = time.monotonic() - start
            assert (r.returncode, r.stdout) == (0, "-m node x\n"), r
            assert waited < 3, waited
            assert busy.poll() is None  # still in its login
        finally:
            busy.kill()
            busy.communicate(timeout=30)


def test_a_client_whose_command_no_worker_starts_runs_the_python_front_end(tmp_path):
    """No worker takes the connection (here the server and its workers stopped by
    SIGSTOP): the client waits for its start 5 s at most (client.c START_TIMEOUT), then
    runs iscsictl-py (here echo).  The worker that takes the connection later finds it
    given up and runs nothing."""
    server = Server(tmp_path)
    out = tmp_path / "out"
    stopped = [server.proc.pid, *server.workers()]
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with open(out, "w") as f:  # a file: the descriptors sent wait in the backlog
            r = subprocess.run([str(CLIENT), "-m", "node", "x"], stdout=f, timeout=60,
                               env=env_for(server, ISCSICTL_PY="/bin/echo"))
        waited = time.monotonic() - start
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert (r.returncode, out.read_text()) == (0, "-m node x\n")
    assert 4.5 < waited < 20, waited
    r = run_client(["--version"], env_for(server))
    assert r.returncode == 0 and r.stdout.startswith("iscsictl version"), r
    assert server.stop() == 0


def _state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("then", ["continued", "killed"])
def test_ctrl_z_stops_the_served_command_with_its_client(server, tmp_path, then):
    """SIGTSTP (Ctrl-Z) stops the client and its command, SIGCONT (fg, bg) continues both,
    as iscsictl-py stops and goes on.  Before, the command ran on, writing to the terminal
    the shell had taken back.  A client killed while stopped: the server continues its
    command, which then ends as its client is gone (else nothing would ever continue it)."""
    root = tmp_path / "db"
    Cli(str(root))
    with SilentPortal() as silent:
        # its own process group, in this session: one a shell's job control stops (in an
        # orphaned group, as this test's may be under CI, SIGTSTP is discarded)
        p = subprocess.Popen([str(CLIENT), "-m", "discovery", "-t", "st", "-p", silent.portal],
                             env=env_for(server, root), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, process_group=0)
        try:
            time.sleep(1.0)  # in the login wait (the fixture's login timeout is 3 s)
            (busy,) = [w for w in server.workers()
                       if os.readlink(f"/proc/{w}/fd/1").startswith("pipe:")]

            def stopped() -> set[int]:
                return {w for w in server.workers() if _state_of(w) == "T"}
            p.send_signal(signal.SIGTSTP)
            deadline = time.monotonic() + 10
            while _state_of(p.pid) != "T" or not stopped():
                assert time.monotonic() < deadline, _state_of(p.pid)
                time.sleep(0.02)
            time.sleep(0.2)
            assert stopped() == {busy} and _state_of(p.pid) == "T"  # not the idle worker
            if then == "continued":
                p.send_signal(signal.SIGCONT)
                while _state_of(p.pid) == "T" or stopped():
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                assert p.wait(30) == 19  # no Login Response (iscsiadm's 19), as unstopped
            else:
                p.kill()
                p.wait(30)
                while busy in server.workers():  # continued, its client gone: it ends
                    assert time.monotonic() < deadline, _state_of(busy)
                    time.sleep(0.02)
        finally:
            p.kill()
            p.communicate(timeout=30)


def test_ctrl_z_before_the_command_started_stops_it_once_it_starts(tmp_path):
    """Ctrl-Z while the client waits for a worker (every one busy) is held until its
    command starts, then stops both.  Before, it stopped the client alone, and the command
    a worker took meanwhile ran while the shell said "Stopped"."""
    server = Server(tmp_path, args=("--max-workers", "2"))
    root = tmp_path / "etc"
    Cli(str(root))
    try:
        with SilentPortal() as silent:
            blocked = _busy_workers(server, root, silent.portal)
            p = subprocess.Popen([str(CLIENT), "-m", "iface", "-I", "made", "-o", "new"],
                                 env=env_for(server, root), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, process_group=0)
            time.sleep(0.2)  # waiting for a worker
            p.send_signal(signal.SIGTSTP)
            time.sleep(0.2)
            assert _state_of(p.pid) != "T"  # held: nothing runs yet that it would stop
            blocked[0].kill()  # its worker ends: a new one takes the waiting client
            blocked[0].communicate(timeout=30)
            deadline = time.monotonic() + 10
            while _state_of(p.pid) != "T":  # started, then stopped with its command
                assert time.monotonic() < deadline and p.poll() is None, p.poll()
                time.sleep(0.02)
            p.send_signal(signal.SIGCONT)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0 and "New interface made added" in out, (out, err)
            blocked[1].kill()
            blocked[1].communicate(timeout=30)
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_the_server_continues_a_command_only_for_its_own_clients_end(tmp_path):
    """The server's watch of a client's process (a pidfd): the end of a client a worker is
    done with, still in the selector's round, is not its next client's (that one's watch
    kept, its stopped command left stopped); the end of the worker's own client continues
    its command; a client gone before it could be watched continues it at once."""
    from iscsictl.cli.server import CommandServer, _Worker

    server = CommandServer(str(tmp_path / "s.sock"))
    worker = subprocess.Popen(["sleep", "60"])  # stands for a worker, stopped with its client
    clients = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    ours, theirs = socket.socketpair()
    w = _Worker(worker.pid, ours)
    server.workers[-1] = w
    w.conn = theirs
    try:
        os.kill(worker.pid, signal.SIGSTOP)
        import selectors

        def watch(pid):  # as _watch_client does for a connection's peer
            w.client = os.pidfd_open(pid)
            server.sel.register(w.client, selectors.EVENT_READ, ("client", w, w.client))
        watch(clients[0].pid)
        first = w.client
        clients[0].kill()
        clients[0].wait()
        server._unwatch_client(w)  # its "i", then the next client's "a"
        watch(clients[1].pid)
        server._client_ended(w, first)  # the first's event, left in the round
        assert w.client is not None and _state_of(worker.pid) == "T"
        clients[1].kill()
        clients[1].wait()
        server._client_ended(w, w.client)
        assert w.client is None
        deadline = time.monotonic() + 5
        while _state_of(worker.pid) == "T":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGSTOP)  # a client gone before it could be watched
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / "l.sock"))
            listener.listen(1)
            subprocess.run([sys.executable, "-c", "import socket, sys; s = socket.socket("
                            "socket.AF_UNIX); s.connect(sys.argv[1])", str(tmp_path / "l.sock")],
                           check=True, timeout=30)
            w.conn, _ = listener.accept()
        server._watch_client(w)  # ProcessLookupError: continued at once
        assert w.client is None
        while _state_of(worker.pid) == "T":
            assert time.monotonic() < deadline + 5
            time.sleep(0.02)
    finally:
        for p in (worker, *clients):
            p.kill()
            p.wait()
        server.sel.close()
