"""netlink/ must import nothing from iscsictl (it is installed as iscsictl.netlink but stands alone)."""

import ast
from pathlib import Path

NETLINK = Path(__file__).resolve().parents[2] / "netlink"


def test_no_iscsictl_imports():
    for py in NETLINK.glob("*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "iscsictl" for a in node.names), py
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] != "iscsictl", py
