"""Build script: package mapping, the optional Cython fast path, the command client.

The Cython extensions in _fastpath/ are built when Cython and a C compiler are
present.  When either is missing, or the compiler fails, the build carries on
with the pure-Python modules only and says which it built.

The `iscsictl` command is _fastpath/client.c compiled statically: no dynamic loader at
each command's start.  With musl-gcc (Debian's musl-tools) when there is one: a 46 KB
executable that starts ~1.5 ms sooner a command than glibc's 690 KB (in the VM, where
every page comes over 9p); else with the C compiler against libc.a, else dynamically.  It
hands commands to iscsictld's command server and runs `iscsictl-py` (the Python front
end) when none answers.  Without a compiler, `iscsictl` is a Python script instead.

Environment:
  ISCSICTL_NO_EXTENSIONS=1       build pure Python only (`iscsictl` is Python too)
  ISCSICTL_REQUIRE_EXTENSIONS=1  fail the build if an extension or the client cannot be built
"""

import os
import shutil
import subprocess
import sys

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_ext import build_ext
from distutils.command.build_scripts import build_scripts  # setuptools provides distutils

NO_EXT = os.environ.get("ISCSICTL_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE_EXT = os.environ.get("ISCSICTL_REQUIRE_EXTENSIONS", "") not in ("", "0")
EXT_MODULES = ["bhs", "framing"]  # _fastpath/<name>.pyx -> iscsictl._fastpath.<name>
CLIENT_SOURCE = "_fastpath/client.c"  # -> the `iscsictl` command
PYTHON_CLIENT = """#!python
# iscsictl built without its C client: the Python front end itself.
from iscsictl.cli.main import main
main()
"""


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
    try:
        return cythonize(exts, language_level=3, quiet=True)
    except Exception as exc:  # a Cython that cannot compile them (Debian 12's 0.29)
        if REQUIRE_EXT:
            raise
        print(f"iscsictl: Cython failed ({exc}): building pure Python", file=sys.stderr)
        return []


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


class BinaryDistribution(Distribution):
    """A wheel for this platform also when no extension is built: the command client in
    it is a compiled executable (a wheel tagged ``any`` would install it on any CPU)."""

    def has_ext_modules(self):
        return not NO_EXT or super().has_ext_modules()


class BuildClient(build_scripts):
    """Scripts: compile CLIENT_SOURCE into `iscsictl` (a Python script without a compiler)."""

    def copy_scripts(self):
        scripts = self.scripts
        self.scripts = [s for s in scripts if s != CLIENT_SOURCE]
        try:
            outfiles, updated = super().copy_scripts() if self.scripts else ([], [])
        finally:
            self.scripts = scripts
        self.mkpath(self.build_dir)
        target = os.path.join(self.build_dir, "iscsictl")
        if not self._compile(target):
            with open(target, "w") as f:
                f.write(PYTHON_CLIENT)
            os.chmod(target, 0o755)
        return outfiles + [target], updated + [target]

    def _compile(self, target: str) -> bool:
        if NO_EXT:
            return False
        from distutils.ccompiler import new_compiler
        from distutils.sysconfig import customize_compiler

        musl = shutil.which("musl-gcc")
        if musl:
            try:
                subprocess.run([musl, "-O2", "-Wall", "-static", "-s", "-o", target,
                                CLIENT_SOURCE], check=True)
                print("iscsictl: built the command client (musl)", file=sys.stderr)
                return True
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"iscsictl: musl-gcc failed ({exc}); the C compiler's libc instead",
                      file=sys.stderr)
        cc = new_compiler()
        customize_compiler(cc)
        temp = os.path.join(self.get_finalized_command("build").build_temp, "client")
        try:
            objects = cc.compile([CLIENT_SOURCE], output_dir=temp,
                                 extra_postargs=["-O2", "-Wall"])
            try:
                cc.link_executable(objects, target, extra_postargs=["-static", "-s"])
            except Exception:  # no libc.a: dynamic, one loader run per command
                cc.link_executable(objects, target, extra_postargs=["-s"])
        except Exception as exc:
            if REQUIRE_EXT:
                raise
            print(f"iscsictl: command client not built ({exc}): `iscsictl` is Python",
                  file=sys.stderr)
            return False
        print("iscsictl: built the command client", file=sys.stderr)
        return True


exts = _extensions()
if not exts:
    print("iscsictl: pure Python build", file=sys.stderr)
setup(packages=_packages(), ext_modules=exts, scripts=[CLIENT_SOURCE],
      distclass=BinaryDistribution,
      cmdclass={"build_ext": OptionalBuildExt, "build_scripts": BuildClient})
