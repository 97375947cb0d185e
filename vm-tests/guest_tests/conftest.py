"""Fixtures for guest scenarios (these tests run INSIDE the VM, as root).

* ``scenario_dir``: ``/results/<scenario>/``, kept on the host after the run; put
  daemon logs there as ``*.log`` and the host prints them when the scenario fails.
* ``lio``: a factory for LIO targets (``lio.create(iqn, luns=[bytes], ...)``,
  ``lio.create_many(n, ...)``, see guest/lio.py); everything is torn down afterwards.
* ``daemon``: a started iscsictld (guest/iscsictld.py); sessions logged out and the
  daemon stopped afterwards, and no kernel session may remain.
* ``openiscsi``: a started open-iscsi (guest/openiscsi.py) logging into ``scenario_dir``;
  stopped (sessions logged out, iscsid ended) afterwards.
* ``isnsd``: a started iSNS server (Debian's isnsd, guest/isnsd.py) on 127.0.0.1:13205
  logging into ``scenario_dir``; ``isnsd.adm(...)`` is isnsadm; always stopped afterwards.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "guest"), str(HERE.parent)]

from vmharness import GUEST_RESULTS, scenario_name  # noqa: E402

IN_GUEST = "ISCSICTL_VM_RESULTS" in os.environ


def pytest_configure(config):
    # rtslib-fb 2.2 calls a deprecated pyudev API when it checks a fileio backing file
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:rtslib_fb.utils")


@pytest.fixture(autouse=True)
def _only_in_guest():
    if not IN_GUEST:
        pytest.skip("guest scenario: runs only inside the VM (pytest vm-tests on the host)")


@pytest.fixture
def scenario_dir(request) -> Path:
    d = Path(os.environ.get("ISCSICTL_VM_RESULTS", GUEST_RESULTS)) / scenario_name(request.node.nodeid)
    d.mkdir(parents=True, exist_ok=True)
    return d


class _LioFactory:
    def __init__(self):
        self.targets = []

    def create(self, iqn, **kw):
        import lio

        t = lio.LioTarget.create(iqn, **kw)
        self.targets.append(t)
        return t

    def create_many(self, count, **kw):
        import lio

        ts = lio.LioTarget.create_many(count, **kw)
        self.targets.extend(ts)
        return ts


@pytest.fixture
def lio():
    factory = _LioFactory()
    yield factory
    for t in reversed(factory.targets):
        t.teardown()


@pytest.fixture
def rdma():
    """Soft-RoCE on a dummy device (vm-tests/guest/iser.py); its address is the iSER
    portal's.  Set up before the targets (request it before ``lio``), removed after."""
    import iser

    try:
        iser.rdma_up()
        yield iser
    finally:
        iser.rdma_down()


@pytest.fixture
def daemon(scenario_dir, lio):  # lio first: targets outlive the initiator
    """A running iscsictld logging into the scenario's directory; afterwards every
    session it still has is logged out, it is stopped, and no kernel session may
    be left behind."""
    from cli import sessions_in_sysfs
    from iscsictld import Iscsictld

    d = Iscsictld(scenario_dir)
    d.start()
    yield d
    d.logout_all_and_stop()
    assert sessions_in_sysfs() == [], "a kernel session was left behind"


@pytest.fixture
def openiscsi(scenario_dir, lio):  # lio: targets outlive the initiator
    from openiscsi import OpenIscsi

    oi = OpenIscsi(scenario_dir)
    oi.start()
    yield oi
    oi.stop()


@pytest.fixture
def isnsd(scenario_dir):
    from isnsd import Isnsd

    server = Isnsd(scenario_dir)
    server.start()  # stops it again when it fails
    yield server
    server.stop()


#: seconds one phase (setup, call, teardown) of a scenario may take: one that hangs fails
#: alone, with its logs and dmesg, and the next scenarios run (the longest take ~1 min)
PHASE_TIMEOUT = 600


class PhaseTimeout(Exception):
    pass


def _bounded():
    """A hookwrapper body: SIGALRM after PHASE_TIMEOUT s raises PhaseTimeout where the
    phase is (a sleep, a read, a wait on a subprocess)."""
    import signal

    def expired(signum, frame):
        raise PhaseTimeout(f"this phase was still running after {PHASE_TIMEOUT} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(PHASE_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _bounded()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _bounded()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield from _bounded()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, save the kernel log as /results/<scenario>/dmesg.log (the host prints it)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and IN_GUEST:
        import subprocess

        d = Path(os.environ["ISCSICTL_VM_RESULTS"]) / scenario_name(item.nodeid)
        d.mkdir(parents=True, exist_ok=True)
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        with open(d / "dmesg.log", "a") as f:
            f.write(f"--- dmesg after {report.when} failed ---\n{dmesg}")
