# iscsictl: the project's commands.  `make test` is what CI runs (.ci/run).
#   make test    set up everything (Debian packages, virtualenv), run the whole suite: unit, peers, VM
#   make bench   run the benchmarks and print their figures side by side with a peer
#   make demo    the main job, visibly: discovery, login through the kernel, a disk, I/O, logout (in a VM)
SHELL := /bin/bash
# The interpreter of the virtualenv: the distribution's own (/usr/bin/python3, what a packaged
# iscsictl runs on; Debian builds it with PGO and LTO, linked statically: 21-27% faster on
# this project's benchmarks than a plain source build such as pyenv's), when it can make a
# virtualenv (python3-venv, installed by `make deps`); else the python3 on PATH.
PY ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
# Debian packages the tests and benchmarks use: peers (tgt, open-iscsi, iscsiuio, libiscsi-bin),
# the VM (qemu, busybox, cpio, kmod), the C compiler for the Cython fast path, musl-gcc for
# the static command client (setup.py), the distribution's Python with venv support (PY
# below) and a non-UTF-8 locale's sources (locales: localedef, for the CLI's tests).
DEB_PACKAGES := tgt open-iscsi iscsiuio open-isns-server open-isns-utils libiscsi-bin qemu-system-x86 busybox-static cpio kmod gcc musl-tools python3-dev python3-venv iproute2 util-linux time systemd locales

.PHONY: test unit vm bench demo deps venv clean

# (deps first: python3-venv; a virtualenv left half-made, without pip, is made again)
venv: deps $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml setup.cfg setup.py $(wildcard _fastpath/*.pyx _fastpath/*.pxd) _fastpath/client.c
	$(VPY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PY) -m venv $(VENV) || { echo "iscsictl: $(PY) cannot make a virtualenv; using python3 from PATH"; rm -rf $(VENV); python3 -m venv $(VENV); }; }
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -c 'import iscsictl.protocol.bhs as p; print("iscsictl: fast path:", p.IMPLEMENTATION)' || true
	touch $@

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

unit: venv
	$(VPY) -m pytest -q tests

vm: deps venv
	$(VPY) -m pytest -q vm-tests

test: deps venv
	$(VPY) -m pytest -q tests vm-tests

bench: deps venv
	$(VPY) bench/run.py

demo: deps venv
	$(VPY) vm-tests/demo.py

clean:
	# Cython's generated C only: _fastpath/client.c is a source
	rm -rf build *.egg-info $(VENV) $(patsubst %.pyx,%.c,$(wildcard _fastpath/*.pyx)) _fastpath/*.so
