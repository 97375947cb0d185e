import os
import sys

import pytest

# make tests/peers.py importable as `peers`
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def db(tmp_path):
    """A NodeDB under ``tmp_path/db``, iscsid.conf's directory ``tmp_path/etc`` (empty)."""
    from iscsictl.db.store import NodeDB

    (tmp_path / "etc").mkdir()
    return NodeDB(str(tmp_path / "db"), str(tmp_path / "etc"), lock_timeout=0.5)
