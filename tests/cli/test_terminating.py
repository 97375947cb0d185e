"""SIGTERM and SIGHUP end a command as SIGINT does, by unwinding it (its finally clauses
run: a bulk update's staged temp files removed), then by the signal itself."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])  # the checkout: the children import from it

PROGRAM = textwrap.dedent("""
    import os, signal, sys, time
    from iscsictl.cli.main import terminating
    if sys.argv[3] == "ignored":
        signal.signal(int(sys.argv[2]), signal.SIG_IGN)  # nohup's SIGHUP
    with terminating():
        try:
            os.kill(os.getpid(), int(sys.argv[2]))
            time.sleep(0.5)
            print("ran on")
        finally:
            with open(sys.argv[1], "w") as f:
                f.write("unwound")
    print(signal.getsignal(int(sys.argv[2])) == signal.SIG_IGN)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("disposition", ["default", "ignored"])
def test_an_ending_signal_unwinds_the_command_then_ends_it(tmp_path, sig, disposition):
    """Default: the block's finally clause runs, then the process dies by the signal (before
    it died at once: a bulk `-o update` SIGTERMed by `timeout` or `systemctl stop` left
    ~135 staged record copies in <db>/.tmp for an hour).  Ignored (nohup): it runs on, the
    disposition left as it was."""
    marker = tmp_path / "marker"
    p = subprocess.run([sys.executable, "-c", PROGRAM, str(marker), str(int(sig)), disposition],
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert marker.read_text() == "unwound"
    if disposition == "default":
        assert (p.returncode, p.stdout, p.stderr) == (-sig, "", "")
    else:
        assert (p.returncode, p.stdout) == (0, "ran on\nTrue\n"), p.stderr


BULK_UPDATE = textwrap.dedent("""
    import os, signal
    from iscsictl.db import store
    real = store.syncfs

    def syncfs(path):  # the staged records written, not yet renamed into place
        os.kill(os.getpid(), signal.SIGTERM)
        return real(path)
    store.syncfs = syncfs
    from iscsictl.cli.main import main
    main(["-m", "node", "-o", "update", "-n", "node.startup", "-v", "automatic"])
""")


def test_a_bulk_update_ended_by_sigterm_leaves_no_temp_file(tmp_path):
    """`-o update` of every record SIGTERMed between staging its records and renaming them:
    no staged copy left in <db>/.tmp (before: each one stayed there an hour, a 0600 copy of
    the record), the records as they were, the process ended by SIGTERM."""
    from iscsictl.db import store
    from iscsictl.db.store import NodeDB

    root = tmp_path / "db"
    db = NodeDB(str(root), str(root))
    for i in range(store.UPDATE_BATCH_MIN):  # written in a batch: staged, then renamed
        db.create_node(f"iqn.2001-04.com.example:t{i}", "10.0.0.1", 3260, 1)
    (root / "initiatorname.iscsi").write_text("InitiatorName=iqn.1993-08.org.debian:01:a\n")
    p = subprocess.run([sys.executable, "-c", BULK_UPDATE], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": ROOT,
                                        "ISCSICTL_DB_ROOT": str(root),
                                        "ISCSICTL_CONFIG_ROOT": str(root)})
    assert (p.returncode, p.stderr) == (-signal.SIGTERM, "")
    assert os.listdir(root / ".tmp") == []
    assert {r["node.startup"] for r in map(db.read_node, db.list_nodes())} == {"manual"}
