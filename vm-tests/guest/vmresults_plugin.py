"""pytest plugin used inside the guest: write every scenario's outcome to a JSON file.

Loaded by the host harness with ``-p vmresults_plugin``.  After each test (and each
collection error) it rewrites ``$ISCSICTL_VM_RESULTS/guest-results.json`` atomically,
so scenarios that finished before a VM timeout still report.  Shape::

    {"nodeid": {"outcome": "passed"|"failed"|"skipped", "phase": "setup"|"call"|"teardown",
                "longrepr": str, "sections": [[title, text], ...], "duration": seconds}}

Collection errors use the key ``"<collect> PATH"``.
"""

import json
import os
from pathlib import Path

_results: dict = {}


def _out_path() -> Path:
    return Path(os.environ.get("ISCSICTL_VM_RESULTS", "/results")) / "guest-results.json"


def _flush() -> None:
    path = _out_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_results, indent=1))
    os.replace(tmp, path)


def _record(key, report, phase) -> None:
    entry = _results.setdefault(key, {"outcome": "passed", "phase": phase, "longrepr": "",
                                      "sections": [], "duration": 0.0})
    entry["duration"] += getattr(report, "duration", 0.0) or 0.0
    if report.outcome == "passed":
        return
    if entry["outcome"] == "failed":  # keep the first failure, add later ones' text
        entry["longrepr"] += f"\n--- {phase} ---\n{report.longreprtext}"
        return
    entry["outcome"] = report.outcome
    entry["phase"] = phase
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        entry["longrepr"] = str(report.longrepr[2])
    else:
        entry["longrepr"] = report.longreprtext
    entry["sections"] = [list(s) for s in report.sections]


def pytest_runtest_logreport(report):
    _record(report.nodeid, report, report.when)
    if report.when == "teardown":
        _flush()


def pytest_collectreport(report):
    if report.failed:
        _record(f"<collect> {report.nodeid}", report, "collect")
        _flush()


def pytest_sessionfinish(session, exitstatus):
    _flush()
