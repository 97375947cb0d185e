"""A hostile local (root) client against the command server (a review of session 59)."""

from __future__ import annotations

import time

import pytest

from iscsictl.cli.server import MAX_ENV
from test_command_server import Server, env_for, run_client


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0, s.log.read_text()


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
