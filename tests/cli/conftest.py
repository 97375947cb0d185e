"""Fixtures for the CLI tests: tgtd peers on loopback and an in-process ``iscsictl`` runner.

tgtd fixtures FAIL (not skip) when tgt is missing: the Makefile installs it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from iscsictl.cli.main import run
from iscsictl.cli.output import Output
from peers import Tgtd

from cli_targets import INIT, T_OPEN, T_CHAP, T_MUTUAL, T_MULTI, CHAP_USER, MUTUAL_USER, MUTUAL_OUT, DISC_USER, DISC_OUT  # noqa: F401



@dataclass
class Result:
    rc: int
    out: str
    err: str


class Cli:
    """Runs iscsictl in-process against one private DB/config root."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "initiatorname.iscsi"), "w") as f:
            f.write(f"InitiatorName={INIT}\n")
        with open(os.path.join(root, "iscsid.conf"), "w") as f:
            f.write("iscsid.startup = /bin/true\n"
                    "discovery.sendtargets.reopen_max = 1\n"
                    "discovery.sendtargets.timeo.login_timeout = 3\n"
                    "discovery.sendtargets.timeo.active_timeout = 3\n"
                    "node.conn[0].timeo.login_timeout = 5\n")

    def __call__(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        rc = run(["--db-root", self.root, "--config-root", self.root, *args],
                 Output(out, err))
        return Result(rc, out.getvalue(), err.getvalue())

    def proc(self, *args: str) -> Result:
        """Through ``python -m iscsictl.cli`` (the real process, exit code and all)."""
        cp = subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", self.root,
                             "--config-root", self.root, *args],
                            capture_output=True, text=True, timeout=60)
        return Result(cp.returncode, cp.stdout, cp.stderr)


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(str(tmp_path / "etc-iscsi"))


@pytest.fixture(scope="session")
def tgt(tmp_path_factory):
    """tgtd with an open target (1 LUN), a CHAP target, a mutual-CHAP target and a target
    with 4 LUNs."""
    with Tgtd(str(tmp_path_factory.mktemp("tgtd"))) as t:
        t.add_target(T_OPEN, luns=1)
        t.add_target(T_CHAP, luns=1, user=CHAP_USER)
        t.add_target(T_MUTUAL, luns=1, user=MUTUAL_USER, outgoing=MUTUAL_OUT)
        t.add_target(T_MULTI, luns=4)
        yield t


@pytest.fixture(scope="session")
def tgt_disc_chap(tmp_path_factory):
    """tgtd whose discovery sessions need CHAP (global account, plus an outgoing one)."""
    with Tgtd(str(tmp_path_factory.mktemp("tgtd-disc"))) as t:
        t.add_target(T_OPEN)
        t.discovery_auth(DISC_USER, DISC_OUT)
        yield t


@pytest.fixture(scope="session")
def tgt_many(tmp_path_factory):
    """tgtd with 1,000 targets: the SendTargets answer spans many Text Response PDUs."""
    with Tgtd(str(tmp_path_factory.mktemp("tgtd-many"))) as t:
        for i in range(1000):
            t.add_target(f"iqn.2026-11.test.many:target-{i:04d}")
        yield t


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """tests/nlshim.c built once: the LD_PRELOAD library that points a process's
    NETLINK_ISCSI socket at a fake HBA kernel (tests/fake_hba.py, offload_tree.HbaRig)."""
    from fake_hba import build_shim

    return build_shim(str(tmp_path_factory.mktemp("shim")))
