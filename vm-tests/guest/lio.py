"""LIO (the kernel's iSCSI target) for guest scenarios, configured with rtslib-fb.

Runs INSIDE the VM guest as root (the host has no target modules).  Each
:class:`LioTarget` is one IQN with one TPG (tag 1), one network portal and fileio
LUNs backed by sparse files on a tmpfs (``/run/lio`` by default), so dozens of
targets are cheap.  Two access modes:

* no ``auth``: demo mode (``generate_node_acls=1``, ``cache_dynamic_acls=1``,
  ``demo_mode_write_protect=0``, ``authentication=0``): any initiator logs in and
  may write.
* ``auth={"userid", "password", "mutual_userid", "mutual_password"}``: an explicit
  ACL for ``initiator_iqn`` holding the CHAP credentials, ``authentication=1``,
  ``generate_node_acls=0`` (LIO then uses only the per-ACL credentials).  The
  mutual keys are optional.  Note: LIO accepts a one-way login even when mutual
  credentials are set (reference/peers-kernel-rfc-notes.md section 5).

Example::

    t = LioTarget.create("iqn.2003-01.org.example:t0", luns=[64 << 20])
    ...
    print(t.login_stats()["accepts"], t.dynamic_sessions())
    t.teardown()

IQNs are lower-cased (rtslib's WWN rules); names with ``_`` or spaces are refused by
rtslib.  Errors from configfs/rtslib surface as :class:`LioError`.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

try:
    import rtslib_fb as rtslib
except ImportError:  # pragma: no cover - depends on the virtualenv
    raise ImportError("rtslib-fb is not installed in this virtualenv: "
                      "pip install 'rtslib-fb>=2.1' (the test extra of setup.cfg)") from None

__all__ = ["CONFIGFS", "LioError", "LioTarget", "load_modules", "teardown_all"]

CONFIGFS = Path("/sys/kernel/config/target")
#: Default directory for backing files (a tmpfs in the guest).
BACKING_DIR = Path("/run/lio")
_counter = itertools.count()
_modules_loaded = False


class LioError(RuntimeError):
    """Configuring LIO failed; the message names the object and the reason."""


def load_modules() -> None:
    """Load the target modules (``iscsi_target_mod``, ``target_core_file``).

    Also creates /etc/target (rtslib's dbroot; the guest's /etc is a throwaway overlay).
    Raises LioError when modprobe fails (wrong kernel, no /lib/modules).
    """
    global _modules_loaded
    if _modules_loaded:
        return
    os.makedirs("/etc/target", exist_ok=True)
    for mod in ("target_core_mod", "iscsi_target_mod", "target_core_file"):
        proc = subprocess.run(["modprobe", mod], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LioError(f"modprobe {mod} failed: {proc.stderr.strip()}")
    _modules_loaded = True


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[-40:]


class LioTarget:
    """One LIO iSCSI target (IQN, TPG 1, one portal, fileio LUNs).

    Use :meth:`create`; attributes ``iqn``, ``portal`` (``(ip, port)``), ``lun_files``
    (backing file paths, LUN n is ``lun_files[n]``), ``tpg`` and ``target`` (the rtslib
    objects, for anything not wrapped here).
    """

    def __init__(self, iqn, portal, target, tpg, storage_objects, lun_files):
        self.iqn = iqn
        self.portal = portal
        self.target = target
        self.tpg = tpg
        self._storage_objects = storage_objects
        self.lun_files = lun_files

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, iqn: str, luns=(64 << 20,), portal=("127.0.0.1", 3260), auth=None,
               initiator_iqn: str | None = None, header_digest: str = "CRC32C,None",
               data_digest: str = "CRC32C,None", backing_dir: Path = BACKING_DIR,
               params: dict | None = None, attributes: dict | None = None,
               enable: bool = True, iser: bool = False,
               write_back: bool = False) -> "LioTarget":
        """Create and enable a target.

        ``luns`` lists LUN sizes in bytes (LUN 0 first); each is a sparse file in
        ``backing_dir``.  ``portal`` is ``(ip, port)``; several targets may share one
        portal.  ``auth`` (dict with ``userid``, ``password`` and optionally
        ``mutual_userid``, ``mutual_password``) needs ``initiator_iqn``: it creates an
        ACL for that initiator with the CHAP credentials.  Without ``auth`` and with an
        ``initiator_iqn``, an explicit ACL without CHAP is made (``authentication=0``).
        ``header_digest``/``data_digest`` are the target's offered values
        (``"CRC32C,None"``, ``"None"``, ``"CRC32C"``).  ``params`` and ``attributes``
        are extra TPG ``param/*`` and ``attrib/*`` values written last.  ``iser``: the
        portal also serves iSER (ib_isert; an RDMA device must have its address).
        ``write_back``: the LUNs have a volatile write cache (the initiator's disk says
        "write back", and its removal sends SYNCHRONIZE CACHE).

        Raises LioError on bad arguments or when configfs refuses something.
        """
        iqn = iqn.lower()
        if auth and not initiator_iqn:
            raise LioError(f"{iqn}: auth needs initiator_iqn (CHAP lives in an ACL)")
        load_modules()
        backing_dir = Path(backing_dir)
        backing_dir.mkdir(parents=True, exist_ok=True)
        storage_objects, files = [], []
        target = None
        try:
            for n, size in enumerate(luns):
                name = f"{_safe(iqn)}-{next(_counter)}-l{n}"
                path = backing_dir / f"{name}.img"
                with open(path, "wb") as f:
                    f.truncate(int(size))
                files.append(path)
                storage_objects.append(
                    rtslib.FileIOStorageObject(name, dev=str(path), size=int(size),
                                               write_back=write_back))
            fabric = rtslib.FabricModule("iscsi")
            target = rtslib.Target(fabric, iqn, mode="create")
            tpg = rtslib.TPG(target, 1, mode="create")
            np = rtslib.NetworkPortal(tpg, portal[0], int(portal[1]), mode="any")
            if iser:
                np.iser = True
            lun_objs = [rtslib.LUN(tpg, n, so) for n, so in enumerate(storage_objects)]
            tpg.set_parameter("HeaderDigest", header_digest)
            tpg.set_parameter("DataDigest", data_digest)
            if initiator_iqn:
                tpg.set_attribute("generate_node_acls", "0")
                tpg.set_attribute("authentication", "1" if auth else "0")
                tpg.set_parameter("AuthMethod", "CHAP" if auth else "None")
                acl = rtslib.NodeACL(tpg, initiator_iqn.lower(), mode="create")
                for n, lun in enumerate(lun_objs):
                    rtslib.MappedLUN(acl, n, lun)
                if auth:
                    acl.chap_userid = auth["userid"]
                    acl.chap_password = auth["password"]
                    if auth.get("mutual_userid"):
                        acl.chap_mutual_userid = auth["mutual_userid"]
                        acl.chap_mutual_password = auth["mutual_password"]
            else:
                tpg.set_attribute("authentication", "0")
                tpg.set_attribute("generate_node_acls", "1")
                tpg.set_attribute("cache_dynamic_acls", "1")
                tpg.set_attribute("demo_mode_write_protect", "0")
                tpg.set_parameter("AuthMethod", "None")
            for k, v in (params or {}).items():
                tpg.set_parameter(k, str(v))
            for k, v in (attributes or {}).items():
                tpg.set_attribute(k, str(v))
            if enable:
                tpg.enable = True
        except (rtslib.RTSLibError, OSError, KeyError) as e:
            cls(iqn, portal, target, None, storage_objects, files).teardown()
            raise LioError(f"creating target {iqn}: {e}") from None
        return cls(iqn, tuple(portal), target, tpg, storage_objects, files)

    @classmethod
    def create_many(cls, count: int, prefix: str = "iqn.2003-01.org.example.vm:t",
                    **kw) -> list["LioTarget"]:
        """Create ``count`` targets named ``<prefix>0`` ... (same keyword arguments as create)."""
        made = []
        try:
            for i in range(count):
                made.append(cls.create(f"{prefix}{i}", **kw))
        except LioError:
            for t in made:
                t.teardown()
            raise
        return made

    # ------------------------------------------------------------------ inspect
    @property
    def path(self) -> Path:
        """The target's configfs directory."""
        return CONFIGFS / "iscsi" / self.iqn

    def login_stats(self) -> dict[str, str]:
        """LIO's login statistics for this target, as strings by file name.

        From ``fabric_statistics/iscsi_login_stats/*``: ``accepts``, ``other_fails``,
        ``redirects``, ``authorize_fails``, ``authenticate_fails``, ``negotiate_fails``,
        ``last_fail_type``, ``last_fail_intr_name``, ``last_intr_fail_ip_addr``, ...
        Numeric ones are also available via :meth:`login_counter`.
        """
        d = self.path / "fabric_statistics" / "iscsi_login_stats"
        out = {}
        for f in sorted(d.iterdir()):
            try:
                out[f.name] = f.read_text().strip()
            except OSError as e:
                out[f.name] = f"<{e.strerror}>"
        return out

    def login_counter(self, name: str) -> int:
        """One numeric login statistic (e.g. ``"accepts"``, ``"authenticate_fails"``)."""
        return int(self.login_stats()[name])

    def dynamic_sessions(self) -> list[str]:
        """Initiator names of the TPG's dynamic (demo-mode) sessions, one per session (LIO
        writes each as "name\\n\\0": target_show_dynamic_sessions)."""
        text = (self.path / "tpgt_1" / "dynamic_sessions").read_text()
        return [name.strip() for name in text.replace("\0", "\n").splitlines() if name.strip()]

    def acl_session_info(self, initiator_iqn: str) -> str:
        """The ``info`` text of an explicit ACL (shows the session when one exists)."""
        return (self.path / "tpgt_1" / "acls" / initiator_iqn.lower() / "info").read_text()

    def add_lun(self, size: int, backing_dir: Path = BACKING_DIR) -> int:
        """Add a fileio LUN of ``size`` bytes while the target runs (mapped into every
        explicit ACL; demo-mode sessions see it through their dynamic ACL); its number."""
        lun_no = len(self.lun_files)
        name = f"{_safe(self.iqn)}-{next(_counter)}-l{lun_no}"
        path = Path(backing_dir) / f"{name}.img"
        try:
            with open(path, "wb") as f:
                f.truncate(int(size))
            self.lun_files.append(path)
            so = rtslib.FileIOStorageObject(name, dev=str(path), size=int(size))
            self._storage_objects.append(so)
            lun = rtslib.LUN(self.tpg, lun_no, so)
            for acl in self.tpg.node_acls:
                rtslib.MappedLUN(acl, lun_no, lun)
        except (rtslib.RTSLibError, OSError) as e:
            raise LioError(f"{self.iqn}: adding LUN {lun_no}: {e}") from None
        return lun_no

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Delete the target, its backstores and backing files (idempotent, never raises)."""
        if self.target is not None:
            try:
                self.target.delete()
            except (rtslib.RTSLibError, OSError):
                pass
            self.target = None
        for so in self._storage_objects:
            try:
                so.delete()
            except (rtslib.RTSLibError, OSError):
                pass
        self._storage_objects = []
        for f in self.lun_files:
            try:
                os.unlink(f)
            except OSError:
                pass


def teardown_all() -> None:
    """Remove every LIO object (all fabrics, all backstores): a clean slate."""
    if CONFIGFS.exists():
        rtslib.RTSRoot().clear_existing(confirm=True)
