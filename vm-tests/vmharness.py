"""Host side of the VM test harness: boot Debian's own kernel in a QEMU TCG guest.

The host has no iSCSI kernel modules, so every kernel test runs in a QEMU guest
(see /work/shared/VM.md for the facts this module relies on):

* :func:`ensure_kernel` downloads the ``linux-image-6.1.0-NN-amd64`` package that
  ``linux-image-amd64`` depends on, unpacks it into ``~/.cache/iscsictl-vm/<version>/``
  and runs ``depmod -b`` there.  Cached: a second call downloads nothing.
* :func:`ensure_initramfs` builds a tiny initramfs (busybox-static + the modules
  that reach virtio/9p/overlay) cached by kernel version and a hash of its /init.
* :func:`run_vm` boots the guest.  The guest's root is the host's own ``/``,
  read-only over 9p, under a tmpfs overlay, so the guest sees the same Python,
  virtualenv and checkout at the same absolute paths (``/tmp`` is *not* hidden
  by a fresh tmpfs, so a CI clone under ``/tmp`` stays visible).  The kernel's
  modules are mounted at ``/lib/modules``; a writable per-run results directory
  is mounted at ``/results``.  The guest runs one shell command, writes its exit
  status to ``/results/.vm/rc`` and powers off.

Only one VM runs at a time (an fcntl lock on ``~/.cache/iscsictl-vm/vm.lock``);
QEMU always runs with ``-accel tcg`` (KVM guests hang on these machines) and is
killed by its PID on timeout or on any exception.

Errors are reported as :class:`VMError` with a message meant for a human; no
traceback is needed to understand them.  Only the standard library is used, so
the guest side may import this module too (for :func:`scenario_name`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gzip
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "CACHE_DIR",
    "GUEST_RESULTS",
    "Kernel",
    "VMError",
    "VMResult",
    "ensure_initramfs",
    "ensure_kernel",
    "run_vm",
    "scenario_name",
]

#: Cache root: kernels, initramfs images, the VM lock and recent run directories.
CACHE_DIR = Path(os.environ.get("ISCSICTL_VM_CACHE", Path.home() / ".cache" / "iscsictl-vm"))
#: Where the per-run results share is mounted inside the guest.
GUEST_RESULTS = "/results"
#: Modules loaded by the initramfs, in this order (their dependencies first).
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
#: Meta package whose dependency names the kernel to boot.
KERNEL_META_PACKAGE = "linux-image-amd64"
#: How many run directories to keep under CACHE_DIR/runs.
KEEP_RUNS = 20

# Stage 1 runs from the initramfs as PID 1 with busybox only.  It mounts the host's /
# as the lower layer of an overlay, the modules share, the results share and any extra
# shares listed in /results/.vm/mounts ("tag guest_path ro|rw" lines), then hands over
# to stage 2 (written per run into the results share) with switch_root.
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "vm-init: $*" >/dev/console; poweroff -f; }
for m in /modules/*.ko; do insmod "$m" || fail "insmod $m failed"; done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,ro,cache=loose hostroot /lower || fail "cannot mount the host root (9p hostroot)"
mount -t tmpfs -o mode=0755,size=1G tmpfs /rw || fail "cannot mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "cannot mount the overlay root"
mkdir -p /newroot/lib/modules /newroot/results
mount -t 9p -o $opts,ro,cache=loose modules /newroot/lib/modules || fail "cannot mount the modules share"
mount -t 9p -o $opts results /newroot/results || fail "cannot mount the results share"
if [ -f /newroot/results/.vm/mounts ]; then
    while read tag path mode; do
        [ -n "$tag" ] || continue
        mkdir -p "/newroot$path"
        mount -t 9p -o $opts,$mode "$tag" "/newroot$path" || fail "cannot mount share $tag at $path"
    done < /newroot/results/.vm/mounts
fi
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /results/.vm/stage2.sh
"""

# Stage 2 runs as PID 1 on the overlay root with the host's tools.  The guest command's
# output goes to the serial console, so it ends up in the serial log.
STAGE2_SCRIPT = r"""
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
mkdir -p /dev/pts /dev/shm
modprobe configfs 2>/dev/null
# no udev in the guest: load what udev would load for SCSI disks
modprobe sd_mod 2>/dev/null
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /var/tmp
mount -t tmpfs tmpfs /var/tmp
hostname iscsictl-vm
echo iscsictl-vm > /etc/hostname
ip link set lo up
echo "vm-stage2: running the guest command" >/dev/console
(cd %(cwd)s && /bin/sh /results/.vm/command.sh) </dev/null >/dev/console 2>&1
rc=$?
echo $rc > /results/.vm/rc
echo "vm-stage2: guest command exited with $rc" >/dev/console
sync
/bin/busybox poweroff -f
poweroff -f
"""


class VMError(RuntimeError):
    """The VM could not be prepared or run; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel in the cache.

    ``version`` is the ``uname -r`` string (e.g. ``6.1.0-56-amd64``), ``root`` the
    unpacked package (``root/lib/modules/<version>`` holds the modules).
    """

    version: str
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules_dir(self) -> Path:
        """The directory shared as the guest's ``/lib/modules``."""
        return self.root / "lib" / "modules"


@dataclasses.dataclass
class VMResult:
    """What one VM run left behind.

    ``rc`` is the guest command's exit status, or None when the guest never wrote it
    (kernel panic, timeout, QEMU failure).  ``serial_log`` is the whole serial console
    output; ``results_dir`` the host path of the guest's ``/results``; ``duration``
    the wall time of the QEMU process in seconds.
    """

    rc: int | None
    serial_log: str
    results_dir: Path
    duration: float
    timed_out: bool = False

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the serial log."""
        return "\n".join(self.serial_log.splitlines()[-lines:])


def scenario_name(nodeid_or_name: str) -> str:
    """The directory name under /results for a guest test (pytest node id or name).

    ``vm-tests/guest_tests/test_smoke.py::test_login[x]`` -> ``test_login-x``.
    """
    name = nodeid_or_name.rsplit("::", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "scenario"


# --------------------------------------------------------------------------- helpers


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a host command (an sbin tool found in /usr/sbin or /sbin when PATH, a non-root
    user's, has none); raise VMError naming ``what`` when it fails."""
    if not shutil.which(cmd[0]):
        for d in ("/usr/sbin", "/sbin"):
            if os.access(os.path.join(d, cmd[0]), os.X_OK):
                cmd = [os.path.join(d, cmd[0]), *cmd[1:]]
                break
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise VMError(f"{what}: {cmd[0]} is not installed") from None
    if proc.returncode != 0:
        raise VMError(f"{what}: `{shlex.join(cmd)}` exited with {proc.returncode}: "
                      f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def _kernel_package() -> str | None:
    """Name of the package ``linux-image-amd64`` depends on, or None if apt does not know."""
    try:
        proc = subprocess.run(["apt-cache", "depends", KERNEL_META_PACKAGE],
                              capture_output=True, text=True)
    except FileNotFoundError:
        return None
    m = re.search(r"Depends:\s*(linux-image-\S+)", proc.stdout)
    return m.group(1) if proc.returncode == 0 and m else None


def _cached_kernels() -> list[Kernel]:
    """The cache's complete kernels, oldest first (versions compared by their numbers:
    6.1.0-10 after 6.1.0-9)."""
    found = [Kernel(d.parent.name, d.parent) for d in CACHE_DIR.glob("*/.complete")]
    return sorted(found, key=lambda k: [int(n) for n in re.findall(r"\d+", k.version)])


# --------------------------------------------------------------------------- kernel


def ensure_kernel(log=print) -> Kernel:
    """Return the cached Debian kernel, downloading and unpacking it if needed.

    Asks apt which package ``linux-image-amd64`` depends on (running ``apt-get update``
    once if apt has no lists), downloads it with ``apt-get download``, unpacks it with
    ``dpkg-deb -x`` into ``CACHE_DIR/<version>/`` and runs ``depmod -b``.  When apt is
    unusable (offline), the newest kernel already in the cache is used.

    Raises VMError when no kernel can be obtained.
    """
    package = _kernel_package()
    if package is None and shutil.which("apt-get"):
        log("vmharness: apt knows no kernel package; running apt-get update")
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        package = _kernel_package()
    if package is None:
        cached = _cached_kernels()
        if cached:
            return cached[-1]
        raise VMError(f"cannot find the kernel package: `apt-cache depends {KERNEL_META_PACKAGE}` "
                      "names none (is this Debian with apt lists?) and the cache "
                      f"{CACHE_DIR} holds no kernel")
    version = package.removeprefix("linux-image-")
    kernel = Kernel(version, CACHE_DIR / version)
    if (kernel.root / ".complete").exists():
        return kernel
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _file_lock(CACHE_DIR / "build.lock", "kernel download", 900, log):
        if (kernel.root / ".complete").exists():
            return kernel
        log(f"vmharness: downloading {package} into {kernel.root}")
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            try:
                _download(package, tmp, log)
            except VMError:
                cached = _cached_kernels()
                if not cached:
                    raise
                log(f"vmharness: {package} cannot be downloaded; the cached "
                    f"{cached[-1].version} is used")
                return cached[-1]
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise VMError(f"apt-get download {package} left {len(debs)} .deb files")
            staging = Path(tmp) / "root"
            _run(["dpkg-deb", "-x", str(debs[0]), str(staging)], f"unpacking {debs[0].name}")
            if not (staging / "boot" / f"vmlinuz-{version}").exists():
                raise VMError(f"{debs[0].name} has no boot/vmlinuz-{version}")
            _run(["depmod", "-b", str(staging), version], "depmod")
            if kernel.root.exists():
                shutil.rmtree(kernel.root)
            staging.rename(kernel.root)
        (kernel.root / ".complete").write_text(package + "\n")
    return kernel


def _download(package: str, into: str, log=print) -> None:
    """``apt-get download package`` in ``into``, tried again after ``apt-get update`` (lists
    older than the mirror: 404) and once more after a pause (a network hiccup).  Raises
    VMError with the last failure."""
    for attempt in range(3):
        try:
            _run(["apt-get", "download", package], f"downloading {package}", cwd=into)
            return
        except VMError as exc:
            if attempt == 2:
                raise
            log(f"vmharness: {exc}; trying again")
            if attempt == 0:
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            else:
                time.sleep(10)


# --------------------------------------------------------------------------- initramfs


def _module_files(kernel: Kernel, names) -> list[Path]:
    """The .ko files for ``names`` and their dependencies, dependencies first."""
    seen: list[Path] = []
    for name in names:
        proc = _run(["modprobe", "-d", str(kernel.root), "-S", kernel.version,
                     "--show-depends", name], f"resolving module {name}")
        for line in proc.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"]:
                path = Path(parts[1])
                if path not in seen:
                    seen.append(path)
    return seen


def ensure_initramfs(kernel: Kernel, log=print) -> Path:
    """Return the path of a gzipped newc initramfs for ``kernel``, building it if needed.

    Contents: ``/bin/busybox`` (from the host's busybox-static), the modules that reach
    virtio-pci, 9p and overlay (found with ``modprobe --show-depends``) and ``/init``
    (:data:`INIT_SCRIPT`).  Cached as ``CACHE_DIR/<version>/initrd-<hash>.gz`` where the
    hash covers the init script, the module list and busybox.

    Raises VMError when busybox-static, cpio or a module is missing.
    """
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise VMError("/bin/busybox is missing: apt-get install busybox-static")
    modules = _module_files(kernel, INITRAMFS_MODULES)
    digest = hashlib.sha256()
    digest.update(INIT_SCRIPT.encode())
    for m in modules:
        digest.update(str(m.relative_to(kernel.root)).encode())
    digest.update(str(busybox.stat().st_size).encode())
    out = kernel.root / f"initrd-{digest.hexdigest()[:16]}.gz"
    if out.exists():
        return out
    log(f"vmharness: building {out}")
    with tempfile.TemporaryDirectory(dir=kernel.root) as tmp:
        tree = Path(tmp) / "tree"
        (tree / "bin").mkdir(parents=True)
        (tree / "modules").mkdir()
        shutil.copy2(busybox, tree / "bin" / "busybox")
        for i, m in enumerate(modules):
            shutil.copy2(m, tree / "modules" / f"{i:02d}-{m.name}")
        (tree / "init").write_text(INIT_SCRIPT)
        (tree / "init").chmod(0o755)
        files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
        if shutil.which("cpio") is None:
            raise VMError("cpio is not installed: apt-get install cpio")
        proc = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree,
                              input=("\n".join(["."] + files) + "\n").encode(),
                              capture_output=True)
        if proc.returncode != 0:
            raise VMError(f"cpio failed: {proc.stderr.decode(errors='replace').strip()}")
        tmp_out = Path(tmp) / "initrd.gz"
        tmp_out.write_bytes(gzip.compress(proc.stdout, 6))
        tmp_out.rename(out)
    return out


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _file_lock(path: Path, what: str, timeout: float, log=print):
    """Hold an exclusive fcntl lock on ``path`` (waits at most ``timeout`` seconds).

    The holder's PID is written into the file so a waiter can name it.
    Raises VMError when the lock cannot be taken in time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            if time.monotonic() > deadline:
                raise VMError(f"{what}: {path} is still locked by PID {holder} after {timeout:.0f} s")
            if not announced:
                log(f"vmharness: waiting for {what} lock {path} held by PID {holder}")
                announced = True
            time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- running


def _qemu_binary() -> str:
    """The QEMU binary: ``$ISCSICTL_VM_QEMU`` or qemu-system-x86_64 on PATH."""
    name = os.environ.get("ISCSICTL_VM_QEMU", "qemu-system-x86_64")
    qemu = shutil.which(name)
    if qemu is None:
        raise VMError(f"{name} is not installed: apt-get install qemu-system-x86")
    return qemu


def _new_results_dir() -> Path:
    runs = CACHE_DIR / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    for p in old[:-KEEP_RUNS] if len(old) > KEEP_RUNS else []:
        shutil.rmtree(p, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def run_vm(guest_command: str, timeout: float = 300.0, shares: dict | None = None, *,
           results_dir: Path | None = None, cwd: str | None = None, memory_mib: int = 2048,
           cpus: int = 2, network: bool = False, extra_append: str = "",
           acpi_tables: tuple = (), log=print) -> VMResult:
    """Boot the guest, run ``guest_command`` with ``/bin/sh`` as root, power off.

    ``timeout`` is the wall-clock limit in seconds for the whole VM (boot included);
    past it QEMU is killed and ``VMResult.timed_out`` is True.  ``shares`` maps a guest
    absolute path to a host directory (read-only) or to ``(host_dir, "rw")``; each is
    a separate 9p export mounted at that path in the guest.  ``results_dir`` is the
    host directory mounted read-write at ``/results`` (a fresh one under
    ``CACHE_DIR/runs`` by default).  ``cwd`` is the guest command's working directory
    (default: the host's current directory, visible at the same path in the guest).
    ``network`` adds a user-mode NIC; otherwise the guest has loopback only.
    ``acpi_tables``: files each holding a whole ACPI table (header included), added to
    the guest's tables as firmware would (QEMU ``-acpitable file=``; e.g. an iBFT).

    The guest command's output goes to the serial log.  The environment inside has
    ``ISCSICTL_VM_RESULTS=/results``.  Raises VMError when QEMU or the kernel cannot
    be obtained; a failing or hanging guest command is reported in the VMResult.
    """
    qemu = _qemu_binary()
    kernel = ensure_kernel(log)
    initrd = ensure_initramfs(kernel, log)
    results = Path(results_dir) if results_dir else _new_results_dir()
    meta = results / ".vm"
    meta.mkdir(parents=True, exist_ok=True)
    for stale in ("rc",):
        (meta / stale).unlink(missing_ok=True)
    cwd = cwd or os.getcwd()
    (meta / "command.sh").write_text(
        f"export ISCSICTL_VM_RESULTS={GUEST_RESULTS}\n{guest_command}\n")
    (meta / "stage2.sh").write_text(STAGE2_SCRIPT % {"cwd": shlex.quote(cwd)})

    virtfs = [
        ("hostroot", "/", True),
        ("modules", str(kernel.modules_dir), True),
        ("results", str(results), False),
    ]
    mounts = []
    for i, (guest_path, spec) in enumerate((shares or {}).items()):
        host_path, mode = (spec, "ro") if isinstance(spec, (str, Path)) else spec
        if not os.path.isabs(guest_path) or not Path(host_path).is_dir():
            raise VMError(f"share {guest_path!r} -> {host_path!r}: need an absolute guest "
                          "path and an existing host directory")
        if mode not in ("ro", "rw"):
            raise VMError(f"share {guest_path!r}: mode must be 'ro' or 'rw', not {mode!r}")
        tag = f"share{i}"
        virtfs.append((tag, str(host_path), mode == "ro"))
        mounts.append(f"{tag} {guest_path} {mode}")
    (meta / "mounts").write_text("".join(m + "\n" for m in mounts))

    serial = results / "serial.log"
    cmd = [qemu, "-accel", "tcg", "-cpu", "max", "-m", str(memory_mib), "-smp", str(cpus),
           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-serial", f"file:{serial}", "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
           "-append", f"console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on {extra_append}".strip()]
    cmd += ["-nic", "user,model=virtio-net-pci"] if network else ["-nic", "none"]
    for table in acpi_tables:
        cmd += ["-acpitable", f"file={table}"]
    for tag, path, ro in virtfs:
        cmd += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none,"
                           f"multidevs=remap{',readonly=on' if ro else ''}"]

    with _file_lock(CACHE_DIR / "vm.lock", "VM", max(600.0, timeout), log):
        start = time.monotonic()
        timed_out = False
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        try:
            try:
                qemu_out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                qemu_out = b""
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        duration = time.monotonic() - start
    log_text = serial.read_text(errors="replace") if serial.exists() else ""
    if log_text and not log_text.endswith("\n"):
        log_text += "\n"
    if qemu_out and qemu_out.strip():
        log_text += "\n--- qemu output ---\n" + qemu_out.decode(errors="replace")
    if proc.returncode not in (0, -signal.SIGKILL) and not timed_out and "vm-stage2" not in log_text:
        raise VMError(f"qemu exited with {proc.returncode}: "
                      f"{qemu_out.decode(errors='replace').strip()[-2000:]}")
    rc_file = meta / "rc"
    rc = None
    if rc_file.exists():
        with contextlib.suppress(ValueError):
            rc = int(rc_file.read_text().strip())
    return VMResult(rc=rc, serial_log=log_text, results_dir=results, duration=duration,
                    timed_out=timed_out)


def _die_with_parent() -> None:
    """In QEMU's child before its exec: SIGKILL when the thread that started it ends
    (prctl PR_SET_PDEATHSIG), so that a harness killed by SIGTERM (CI's time limit) or a
    second Ctrl-C leaves no guest behind on the machine's two cores; its own session keeps
    it out of the terminal's signals otherwise."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def host_cpu_times() -> list[int] | None:
    """The host's aggregate CPU times (the ``cpu`` line of /proc/stat, in ticks: user, nice,
    system, idle, iowait, irq, softirq, steal); None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return [int(v) for v in fields[1:9]] if fields[:1] == ["cpu"] else None
    except (OSError, ValueError):
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the host's CPU time between two :func:`host_cpu_times` readings that
    the hypervisor gave to other guests (steal); None without both readings or eight
    fields in each.  On this machine (session 18): ~9% averaged over the host's uptime,
    17.6% in a benchmark run whose open-iscsi and iscsictl rounds varied up to 3x; the 2%
    that run_guest_benchmark calls noisy is a rule of thumb, not a measured threshold."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta)
    return delta[7] / total if total > 0 else None


def run_guest_benchmark(script: Path, result_name: str, timeout: float,
                        env: dict[str, str] | None = None,
                        acpi_tables: tuple = ()) -> dict | None:
    """Boot a VM, run a guest benchmark ``script`` with this Python (and ``env`` added to
    its environment; ``acpi_tables`` as for :func:`run_vm`), and return the JSON object it wrote to ``/results/<result_name>``;
    None (after printing the guest's output) when the VM or the script failed."""
    import json
    import sys

    print(f"booting the VM for {script.stem} (QEMU TCG: absolute times are inflated; "
          "compare the ratio)", flush=True)
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    before = host_cpu_times()
    try:
        res = run_vm(f"{assigns} {sys.executable} {script}".strip(), timeout=timeout,
                     acpi_tables=acpi_tables, log=lambda *a: None)
    except VMError as exc:  # no kernel, the VM lock held by another run ...
        print(f"benchmark VM could not run: {exc}", file=sys.stderr)
        return None
    stolen = steal_fraction(before, host_cpu_times())
    if stolen is not None:
        print(f"host CPU time stolen by the hypervisor during the run: {stolen:.1%}"
              + (" (above ~2% the figures vary from round to round: a noisy run)"
                 if stolen > 0.02 else ""), flush=True)
    path = res.results_dir / result_name
    if res.rc != 0 or not path.exists():
        print(res.serial_log[-4000:], file=sys.stderr)
        why = f"timed out after {timeout:g} s" if res.timed_out else f"rc={res.rc}"
        print(f"benchmark VM failed ({why}); what it wrote: {res.results_dir}", file=sys.stderr)
        partial = path.with_name(f"{path.stem}-partial{path.suffix}")
        if partial.exists():  # a late failure: the figures measured before it
            print(f"the figures measured before the failure follow ({partial.name})",
                  file=sys.stderr)
            try:
                return {**json.loads(partial.read_text()), "partial": True}
            except ValueError:
                pass
        return None
    return json.loads(path.read_text())


def print_ratio_table(rows: list[tuple[str, float, float]]) -> None:
    """``figure  peer  ours  peer/ours`` lines (seconds) for side-by-side benchmarks; the
    ratio with two decimals, so that one just under a goal's threshold (3.96x) does not
    print as the threshold."""
    print(f"{'figure':<52} {'open-iscsi':>11} {'iscsictl':>10} {'ratio':>7}")
    for label, peer, ours in rows:
        ratio = f"{peer / ours:>6.2f}x" if ours else "     -"
        print(f"{label:<52} {peer:>10.3f}s {ours:>9.3f}s {ratio}")


def _main(argv: list[str]) -> int:
    """``python vm-tests/vmharness.py [--timeout S] COMMAND``: run one command in a VM."""
    import argparse

    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit, seconds")
    ap.add_argument("--acpitable", action="append", default=[],
                    help="a file holding a whole ACPI table to add (repeatable)")
    ap.add_argument("command", help="shell command to run in the guest")
    args = ap.parse_args(argv)
    try:
        res = run_vm(args.command, args.timeout, acpi_tables=tuple(args.acpitable),
                     log=lambda m: print(m, file=sys.stderr))
    except VMError as e:
        print(f"vmharness: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(res.serial_log)
    print(f"\nvmharness: rc={res.rc} timed_out={res.timed_out} {res.duration:.1f} s, "
          f"results in {res.results_dir}", file=sys.stderr)
    return 124 if res.timed_out else (res.rc if res.rc is not None else 1)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
