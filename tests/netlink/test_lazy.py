"""pyroute2's netlink core is loaded without the rest of pyroute2 (netlink/_lazy.py), and
the rest still loads on first use.  Each case runs in a fresh interpreter: the test
process has pyroute2 loaded already."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_the_netlink_layer_leaves_the_rest_of_pyroute2_unloaded():
    out = _run("import sys, iscsictl.netlink as n\n"
               "n.decode_messages\n"
               "print(sorted(m for m in ('pyroute2.ipdb', 'pyroute2.ndb.main', "
               "'pyroute2.iproute', 'pyroute2.netlink') if m in sys.modules))")
    assert out.strip() == "['pyroute2.netlink']"


def test_the_rest_of_pyroute2_loads_on_first_use():
    out = _run("import iscsictl.netlink, pyroute2\n"
               "from pyroute2 import IPRoute\n"
               "print(IPRoute.__name__, bool(pyroute2.__version__))\n"
               "try:\n    pyroute2.no_such_name\nexcept AttributeError as e:\n    print(e)")
    assert out.splitlines() == ["IPRoute True",
                                "module 'pyroute2' has no attribute 'no_such_name'"]


def test_an_imported_pyroute2_is_left_as_it_is():
    out = _run("import sys, pyroute2\nreal = sys.modules['pyroute2']\n"
               "import iscsictl.netlink\nprint(sys.modules['pyroute2'] is real, "
               "'pyroute2.ipdb' in sys.modules)")
    assert out.strip() == "True True"
