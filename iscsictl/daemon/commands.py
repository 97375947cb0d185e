"""The command server beside the daemon (:mod:`iscsictl.cli.server`).

iscsictld starts it with itself and stops it with itself; the ``iscsictl`` client runs
commands there instead of starting Python for each.  The server's stdin is a pipe from the
daemon: when the daemon ends, however it ends, the server sees end of file and stops.  If
the server is missing or dies, commands run as ``iscsictl-py`` (slower to start, same
result) until it is started again, so nothing here can stop the daemon from serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ..cli.server import STOP_GRACE, cli_socket_path

log = logging.getLogger("iscsictld")

#: s before a command server that ended (or could not be started) is started again: the
#: next at each end, up to the last; back to the first once one has run RESTART_STEADY s
RESTART_DELAYS = (1.0, 2.0, 5.0, 15.0, 60.0, 300.0)
RESTART_STEADY = 600.0


class CommandServerProcess:
    """``python -m iscsictl.cli.server`` on the socket derived from ``daemon_socket``,
    started again when it ends (the OOM killer, workers that keep dying) after a delay
    (:data:`RESTART_DELAYS`): else every command would start Python until the daemon's
    restart."""

    def __init__(self, daemon_socket: str) -> None:
        self.path = cli_socket_path(daemon_socket)
        self.proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None
        self._stopping = False
        # the daemon's own before protect_daemon raises it: a server started again after
        # that runs at this one, as the first does (users' commands at their priority)
        self._nice = os.getpriority(os.PRIO_PROCESS, 0)

    async def start(self) -> None:
        """Spawn the server (it imports the CLI, then listens: ready in the background), and
        watch it."""
        running = await self._spawn()
        self._watch = asyncio.ensure_future(self._watch_exit(running))

    async def _spawn(self) -> bool:
        try:
            # -P, in /: no module is imported from the daemon's working directory (with -m,
            # Python would search it first), should root have started the daemon in one
            # another user can write to; each worker moves to its client's
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-X", "utf8", "-m", "iscsictl.cli.server",
                "--socket", self.path, "--watch-stdin", "--nice", str(self._nice), cwd="/",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.warning("command server not started (%s): commands start Python each",
                        exc.strerror)
            return False
        log.debug("command server pid %d on %s", self.proc.pid, self.path)
        return True

    async def _watch_exit(self, running: bool) -> None:
        """Start the server again (``running``: it runs now) each time it ends or could not
        be started, after the next of RESTART_DELAYS; until stop()."""
        loop = asyncio.get_running_loop()
        ends = 0
        while True:
            why = "could not be started"
            if running:
                assert self.proc is not None
                since = loop.time()
                why = f"exited with {await self.proc.wait()}"
                if self._stopping:
                    return
                if loop.time() - since >= RESTART_STEADY:
                    ends = 0
            delay = RESTART_DELAYS[min(ends, len(RESTART_DELAYS) - 1)]
            ends += 1
            log.warning("command server %s: commands start Python each until it is started "
                        "again in %g s", why, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            running = await self._spawn()
            if running:
                log.info("command server started again (pid %d)", self.proc.pid)

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    async def stop(self) -> None:
        """End of file on its stdin; it waits for the commands under way (at most
        STOP_GRACE s), then it is killed.  One waiting to be started again is not."""
        self._stopping = True
        if self._watch is not None and (self.proc is None or self.proc.returncode is not None):
            self._watch.cancel()  # it ended: not started again (nor waited for below)
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.proc is None:
            return
        self._close_stdin()
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE + 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._watch is not None:
            await asyncio.gather(self._watch, return_exceptions=True)
