"""The command server beside the daemon (:mod:`iscsictl.cli.server`).

iscsictld starts it with itself and stops it with itself; the ``iscsictl`` client runs
commands there instead of starting Python for each.  The server's stdin is a pipe from the
daemon: when the daemon ends, however it ends, the server sees end of file and stops.  If
the server is missing or dies, commands run as ``iscsictl-py`` (slower to start, same
result), so nothing here can stop the daemon from serving.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from ..cli.server import STOP_GRACE, cli_socket_path

log = logging.getLogger("iscsictld")


class CommandServerProcess:
    """``python -m iscsictl.cli.server`` on the socket derived from ``daemon_socket``."""

    def __init__(self, daemon_socket: str) -> None:
        self.path = cli_socket_path(daemon_socket)
        self.proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> None:
        """Spawn the server (it imports the CLI, then listens: ready in the background)."""
        try:
            # -P, in /: no module is imported from the daemon's working directory (with -m,
            # Python would search it first), should root have started the daemon in one
            # another user can write to; each worker moves to its client's
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-X", "utf8", "-m", "iscsictl.cli.server",
                "--socket", self.path, "--watch-stdin", cwd="/",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.warning("command server not started (%s): commands start Python each",
                        exc.strerror)
            return
        self._watch = asyncio.ensure_future(self._watch_exit())
        log.debug("command server pid %d on %s", self.proc.pid, self.path)

    async def _watch_exit(self) -> None:
        code = await self.proc.wait()
        if not self._stopping:
            log.warning("command server exited with %s: commands start Python each", code)

    async def stop(self) -> None:
        """End of file on its stdin; it waits for the commands under way (at most
        STOP_GRACE s), then it is killed."""
        if self.proc is None:
            return
        self._stopping = True
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._watch), STOP_GRACE + 5)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
