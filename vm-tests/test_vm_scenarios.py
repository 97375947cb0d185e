"""Run the guest scenarios (vm-tests/guest_tests) in ONE VM and report each one here.

Collection: the guest test ids are collected on the host with ``pytest --collect-only``
(the guest modules import nothing kernel-specific at import time) and each becomes one
parametrized host test, ``test_guest[<guest node id>]``.  ``-k`` on the host therefore
selects guest scenarios: the VM runs only the selected ones.

Execution: the session fixture ``guest_run`` boots one VM that runs
``<venv python> -m pytest <selected ids>`` in the checkout with the results plugin
(guest/vmresults_plugin.py).  Each host test then reads its scenario's outcome from
``/results/guest-results.json``; a failure shows the guest's traceback, captured output,
the scenario's ``/results/<scenario>/*.log`` files and the tail of the serial log.

If QEMU or the kernel cannot be obtained every test FAILS (this is CI's kernel test).
Environment: ``ISCSICTL_VM_TIMEOUT`` (seconds, whole VM) overrides the computed limit.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vmharness

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
GUEST_TESTS = HERE / "guest_tests"
GUEST_PYTEST_ARGS = ["-p", "no:cacheprovider", "--rootdir", str(CHECKOUT),
                     "--confcutdir", str(GUEST_TESTS)]
SERIAL_TAIL_LINES = 80
LOG_TAIL_LINES = 120
_COLLECT_ERROR = [""]  # set when collecting the guest scenarios on the host failed


def _collect_guest_ids() -> tuple[list[str], str | None]:
    """Guest node ids (relative to the checkout) and a collection error text, if any."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", *GUEST_PYTEST_ARGS,
           str(GUEST_TESTS.relative_to(CHECKOUT))]
    proc = subprocess.run(cmd, cwd=CHECKOUT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode not in (0, 5) or not ids:
        return ids, f"collecting the guest scenarios failed ({shlex.join(cmd)}):\n" \
                    f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    return ids, None


def pytest_generate_tests(metafunc):
    if "guest_nodeid" in metafunc.fixturenames:
        ids, error = _collect_guest_ids()
        params = [pytest.param(i, id=i.split("guest_tests/", 1)[-1]) for i in ids]
        if error:
            _COLLECT_ERROR[0] = error
            params.append(pytest.param("<collect-error>", id="collect-error"))
        metafunc.parametrize("guest_nodeid", params)


class GuestRun:
    """Outcome of the session's VM: ``vm`` (VMResult or None), ``error`` (str or None,
    why the VM did not run), ``results`` (the guest results JSON, by node id)."""

    def __init__(self, vm, error, results):
        self.vm, self.error, self.results = vm, error, results

    def serial_tail(self) -> str:
        if self.vm is None:
            return ""
        return f"----- serial log (tail) -----\n{self.vm.tail(SERIAL_TAIL_LINES)}"


@pytest.fixture(scope="session")
def guest_run(request, tmp_path_factory) -> GuestRun:
    """Boot ONE VM running every selected guest scenario; return a :class:`GuestRun`."""
    selected = sorted({item.callspec.params["guest_nodeid"] for item in request.session.items
                       if hasattr(item, "callspec") and "guest_nodeid" in item.callspec.params}
                      - {"<collect-error>"})
    if not selected:
        return GuestRun(None, "no guest scenario selected", {})
    venv_python = sys.executable  # the checkout's .venv python: same path in the guest
    guest_cmd = " ".join([
        "PYTHONPATH=" + shlex.quote(f"{HERE / 'guest'}:{HERE}"),
        "exec", shlex.quote(venv_python), "-m", "pytest", "-q", "-p", "vmresults_plugin",
        *map(shlex.quote, GUEST_PYTEST_ARGS), "--junitxml=/results/junit.xml",
        *map(shlex.quote, selected)])
    # ~20 s a scenario here; a hang is PHASE_TIMEOUT's in the guest (guest_tests/conftest):
    # the whole stays well inside CI's 90 minutes with its report (44 scenarios: 31 min)
    timeout = float(os.environ.get("ISCSICTL_VM_TIMEOUT", 120 + 40 * len(selected)))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(msg):
        if reporter:
            reporter.write_line(msg)

    table = tmp_path_factory.mktemp("ibft") / "ibft.bin"
    table.write_bytes(_guest_module("ibft").vm_table())  # the firmware scenario's table
    start = time.monotonic()
    try:
        vm = vmharness.run_vm(guest_cmd, timeout=timeout, cwd=str(CHECKOUT), log=log,
                              acpi_tables=(table,))
    except vmharness.VMError as e:
        return GuestRun(None, f"the VM could not run: {e}", {})
    log(f"vm-tests: VM ran {len(selected)} scenario(s) in {time.monotonic() - start:.1f} s "
        f"(guest pytest rc={vm.rc}{', TIMED OUT' if vm.timed_out else ''}); "
        f"results in {vm.results_dir}")
    results_file = vm.results_dir / "guest-results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    error = None
    if vm.timed_out:
        error = f"the VM timed out after {timeout:.0f} s"
    elif vm.rc is None:
        error = "the guest never reported an exit status (kernel panic or crash?)"
    elif vm.rc not in (0, 1):
        error = f"the guest pytest exited with {vm.rc} (usage or internal error)"
    return GuestRun(vm, error, results)


def _guest_module(name: str):
    """A module of vm-tests/guest, imported on the host by its path."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, HERE / "guest" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _scenario_logs(run: GuestRun, nodeid: str) -> str:
    if run.vm is None:
        return ""
    d = run.vm.results_dir / vmharness.scenario_name(nodeid)
    parts = []
    for f in sorted(d.glob("*.log")) if d.is_dir() else []:
        lines = f.read_text(errors="replace").splitlines()
        parts.append(f"----- {f} (last {LOG_TAIL_LINES} lines) -----\n"
                     + "\n".join(lines[-LOG_TAIL_LINES:]))
    return "\n".join(parts)


def test_guest(guest_nodeid, guest_run):
    """One guest scenario, as run in the session's VM."""
    if guest_nodeid == "<collect-error>":
        pytest.fail(_COLLECT_ERROR[0], pytrace=False)
    collect_errors = {k: v for k, v in guest_run.results.items() if k.startswith("<collect>")}
    rep = guest_run.results.get(guest_nodeid)
    if rep is None:
        why = guest_run.error or "the scenario left no result"
        extra = "".join(f"\n{k}:\n{v['longrepr']}" for k, v in collect_errors.items())
        pytest.fail(f"{guest_nodeid}: did not report: {why}{extra}\n"
                    f"{_scenario_logs(guest_run, guest_nodeid)}\n{guest_run.serial_tail()}",
                    pytrace=False)
    if rep["outcome"] == "skipped":  # nothing in the guest may be missing: a skip hides it
        pytest.fail(f"{guest_nodeid} skipped in the guest: {rep['longrepr']}\n"
                    f"{guest_run.serial_tail()}", pytrace=False)
    if rep["outcome"] == "failed":
        sections = "\n".join(f"----- {title} -----\n{text}" for title, text in rep["sections"])
        pytest.fail(f"{guest_nodeid} failed in the guest ({rep['phase']}):\n{rep['longrepr']}\n"
                    f"{sections}\n{_scenario_logs(guest_run, guest_nodeid)}\n"
                    f"{guest_run.serial_tail()}", pytrace=False)
