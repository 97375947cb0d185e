"""pyroute2's netlink core without the rest of pyroute2.

pyroute2's package ``__init__`` imports every API it has (IPRoute, NDB, IPDB, conntrack,
nftables, wireguard, nl80211 ...) before any submodule can be imported; this package needs
only ``pyroute2.netlink``.  That eager import was 35-40% of iscsictld's start and of
``iscsictl-start`` (host: ``import iscsictl.daemon.service`` 0.25 -> 0.16 s; about ten
times that under QEMU TCG).  :func:`lazy_package` registers the package unexecuted, with
its real ``__path__``, so submodules import as usual; its ``__init__`` runs on the first
access to a name only it defines (PEP 562 module ``__getattr__``), so ``from pyroute2
import IPRoute`` elsewhere in the same process works as before.  Nothing happens when the
package is imported already.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def lazy_package(name: str = "pyroute2") -> None:
    """Register ``name`` in ``sys.modules`` without running its ``__init__`` yet."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not a package here: the plain import says what is wrong
    module = importlib.util.module_from_spec(spec)
    loaded = []

    def __getattr__(attr: str):  # noqa: N807 - the PEP 562 hook
        try:
            return importlib.import_module(f"{name}.{attr}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.{attr}":
                raise
        if not loaded:
            loaded.append(True)
            spec.loader.exec_module(module)  # the package's own __init__, once
            if attr in module.__dict__:
                return module.__dict__[attr]
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[name] = module
