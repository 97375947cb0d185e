"""Build script: package mapping and the optional Cython fast path.

The Cython extensions in _fastpath/ are built when Cython and a C compiler are
present.  When either is missing, or the compiler fails, the build carries on
with the pure-Python modules only and says which it built.  Environment:

  ISCSICTL_NO_EXTENSIONS=1       build pure Python only
  ISCSICTL_REQUIRE_EXTENSIONS=1  fail the build if an extension cannot be built
"""

import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

NO_EXT = os.environ.get("ISCSICTL_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE_EXT = os.environ.get("ISCSICTL_REQUIRE_EXTENSIONS", "") not in ("", "0")
EXT_MODULES = ["bhs", "framing"]  # _fastpath/<name>.pyx -> iscsictl._fastpath.<name>


def _packages():
    pkgs = find_packages(include=["iscsictl", "iscsictl.*"])
    pkgs += ["iscsictl.netlink"] + [
        "iscsictl.netlink." + p for p in find_packages(where="netlink")
    ]
    pkgs += ["iscsictl._fastpath"]
    return pkgs


def _extensions():
    if NO_EXT or sys.implementation.name != "cpython":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXT:
            raise
        print("iscsictl: Cython not found: building pure Python", file=sys.stderr)
        return []
    from setuptools import Extension

    exts = [
        Extension(f"iscsictl._fastpath.{name}", [f"_fastpath/{name}.pyx"])
        for name in EXT_MODULES
        if os.path.exists(f"_fastpath/{name}.pyx")
    ]
    return cythonize(exts, language_level=3, quiet=True)


class OptionalBuildExt(build_ext):
    """Build what can be built; report pure or accelerated."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # this extension failed to compile
            self._fallback(exc)
        else:
            print(f"iscsictl: built accelerated {ext.name}", file=sys.stderr)

    def _fallback(self, exc):
        if REQUIRE_EXT:
            raise exc
        print(f"iscsictl: extension build failed ({exc}): pure Python build",
              file=sys.stderr)


exts = _extensions()
if not exts:
    print("iscsictl: pure Python build", file=sys.stderr)
setup(packages=_packages(), ext_modules=exts, cmdclass={"build_ext": OptionalBuildExt})
