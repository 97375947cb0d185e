"""The CLI under a locale whose encoding is not UTF-8 (ISO-8859-1, made with localedef):
arguments' bytes reach the records as they are, as iscsiadm keeps them and as iscsictld's
command server (Python's UTF-8 mode) reads them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def latin1(tmp_path_factory):
    """The environment of a process under en_US.ISO-8859-1 (built here: the `locales`
    package's sources, which `make deps` installs)."""
    where = tmp_path_factory.mktemp("locale")
    cp = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1",
                         str(where / "en_US.ISO-8859-1")], capture_output=True, text=True)
    assert cp.returncode in (0, 1), cp.stderr  # 1: warnings only
    env = {**os.environ, "LOCPATH": str(where), "LC_ALL": "en_US.ISO-8859-1"}
    env.pop("PYTHONUTF8", None)
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                           env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "iso8859-1", probe
    return env


def _cli(env, root, *args: bytes | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", str(root),
                           "--config-root", str(root), *args], env=env, capture_output=True,
                          timeout=60)


def test_a_value_in_latin1_is_written_as_its_bytes(latin1, tmp_path):
    """`-o update -v` of Latin-1 bytes: written as those bytes (before: decoded as
    Latin-1 and written as UTF-8, other bytes than the served command wrote, so another
    CHAP name on the wire)."""
    (tmp_path / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.test:i\n")
    target = "iqn.2026-11.test:t"
    assert _cli(latin1, tmp_path, "-m", "node", "-o", "new", "-T", target, "-p",
                "192.0.2.1").returncode == 0
    r = _cli(latin1, tmp_path, "-m", "node", "-T", target, "-o", "update", "-n",
             "node.session.auth.username", "-v", b"us\xfcr")
    assert r.returncode == 0, r.stderr
    (record,) = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "nodes")
                 for f in files]
    assert b"node.session.auth.username = us\xfcr\n" in open(record, "rb").read()
