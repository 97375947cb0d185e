"""iscsictld's command server process (iscsictl.daemon.commands): started with the daemon,
started again when it ends, at the daemon's priority from before it raised its own."""

import asyncio
import os
import signal
import time
from pathlib import Path

from iscsictl.daemon import commands


async def _until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_command_server_that_ends_is_started_again_at_the_daemons_first_priority(
        tmp_path, monkeypatch):
    """Killed (the OOM killer), the server is started again after RESTART_DELAYS (before:
    every command started Python until the daemon's restart), at the nice value the daemon
    had before it raised its own (protect_daemon: the new server would have inherited it);
    stop() ends it, and a server waiting to be started again is not."""
    monkeypatch.setattr(commands, "RESTART_DELAYS", (0.2,))
    daemon_socket = str(tmp_path / "d.sock")
    cli_socket = Path(commands.cli_socket_path(daemon_socket))
    was = os.getpriority(os.PRIO_PROCESS, 0)

    async def main():
        server = commands.CommandServerProcess(daemon_socket)
        await server.start()
        first = server.proc
        try:
            await _until(cli_socket.exists, "the server did not listen")
            os.setpriority(os.PRIO_PROCESS, 0, was - 3)  # as protect_daemon, after start()
            first.kill()
            await _until(lambda: server.proc is not first, "not started again")
            again = server.proc
            await _until(lambda: _nice(again.pid) == was, f"nice {_nice(again.pid)}")
            await _until(cli_socket.exists, "the server started again did not listen")
            assert first.returncode == -signal.SIGKILL
            again.kill()  # now it waits to be started again: stop() ends that
            await again.wait()
            await server.stop()
            await asyncio.sleep(0.4)  # past the delay: none started
            assert server.proc is again and server._watch.done()
        finally:
            os.setpriority(os.PRIO_PROCESS, 0, was)
            if server.proc.returncode is None:
                server.proc.kill()
                await server.proc.wait()
    asyncio.run(main())


def test_stop_ends_a_running_command_server(tmp_path):
    """stop(): end of file on the server's stdin; it exits 0, its socket removed, and is
    not started again."""
    daemon_socket = str(tmp_path / "d.sock")
    cli_socket = Path(commands.cli_socket_path(daemon_socket))

    async def main():
        server = commands.CommandServerProcess(daemon_socket)
        await server.start()
        await _until(cli_socket.exists, "the server did not listen")
        proc = server.proc
        await server.stop()
        assert proc.returncode == 0 and server.proc is proc and server._watch.done()
        assert not cli_socket.exists()
    asyncio.run(main())


def test_a_command_server_that_could_not_be_started_is_tried_again(tmp_path, monkeypatch):
    """The first start fails (no process could be made): tried again after RESTART_DELAYS,
    as a server that ended is; stop() while it waits ends that."""
    monkeypatch.setattr(commands, "RESTART_DELAYS", (0.2,))
    daemon_socket = str(tmp_path / "d.sock")
    cli_socket = Path(commands.cli_socket_path(daemon_socket))
    real = asyncio.create_subprocess_exec
    tries = []

    async def failing_once(*args, **kw):
        tries.append(args)
        if len(tries) == 1:
            raise OSError(11, "Resource temporarily unavailable")
        return await real(*args, **kw)
    monkeypatch.setattr(commands.asyncio, "create_subprocess_exec", failing_once)

    async def main():
        server = commands.CommandServerProcess(daemon_socket)
        await server.start()
        assert server.proc is None and len(tries) == 1
        await _until(lambda: server.proc is not None, "not tried again")
        await _until(cli_socket.exists, "the server did not listen")
        await server.stop()
        assert server.proc.returncode == 0 and server._watch.done()

        never = commands.CommandServerProcess(str(tmp_path / "e.sock"))
        tries.clear()
        await never.start()  # fails: stop() while it waits to try again
        await never.stop()
        await asyncio.sleep(0.4)
        assert never.proc is None and never._watch.done() and len(tries) == 1
    asyncio.run(main())
