"""Helpers shared by the mode modules: the DB, argument checks, the initiator name, the
sysfs root."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import errors as E

DEFAULT_PORT = 3260
#: iscsiadm's operations as bits (usr/iscsiadm.c enum iscsiadm_op): each -o is or'ed in
OPS = {"new": 0x1, "delete": 0x2, "update": 0x4, "show": 0x8, "nonpersistent": 0x10,
       "apply": 0x20, "applyall": 0x40, "login": 0x80, "logout": 0x100}


def op_mask(ops: list[str]) -> int:
    """The ``-o`` given, or'ed as iscsiadm's option parser does (main, ``case 'o'``): an
    unknown one is exit 7 while nothing known came before it (then it is ignored)."""
    mask = 0
    for op in ops:
        mask |= OPS.get(op, 0)
        if not mask:
            raise E.CliError(f"can not recognize operation: '{op}'", E.INVAL)
    return mask


def open_db(args, o):
    """The NodeDB of ``--db-root``/``--config-root`` (or the environment, or /etc/iscsi);
    damaged records and bad values are reported on stderr as they are met."""
    from ..db.store import NodeDB
    return NodeDB(args.db_root, args.config_root, warn=o.warn)


@dataclass(frozen=True)
class PortalArg:
    """A parsed ``-p``: address (no brackets), port (3260 when absent), tpgt (None)."""

    address: str
    port: int
    tpgt: int | None


def _bad_portal(text: str, why: str) -> E.CliError:
    return E.CliError(f"invalid portal '{text}': {why}. Expected ip[:port][,tpgt], "
                      "[ipv6][:port][,tpgt] or hostname[:port]", E.INVAL)


def parse_portal_arg(text: str, allow_tag: bool = True,
                     default_port: int | None = None) -> PortalArg:
    """Parse ``-p`` (:func:`iscsictl.lexical.split_portal`: the grammar TargetAddress values
    are read by) without importing the protocol stack; without a port, ``default_port``
    (None: iSCSI's 3260).  Raises CliError (exit 7).  Stricter than iscsiadm, which stores
    '-x', 'a..b', '999.1.1.1' or '10.0.0.1:' (port 0) as given."""
    from ..lexical import split_portal
    for unknown in (",-1", ",4294967295"):  # the unknown tag, as -P 1 and the flat listing
        if allow_tag and text.rstrip().endswith(unknown):  # print it (iscsiadm's strtoul
            text = text.rstrip()[:-len(unknown)]  # into an int: str_to_ipport)
    try:
        address, port, tpgt = split_portal(text, allow_tag)
    except ValueError as exc:
        raise _bad_portal(text, str(exc)) from None
    if port is None:
        port = DEFAULT_PORT if default_port is None else default_port
    return PortalArg(address, port, tpgt)


def check_target_name(name: str) -> str:
    """Check an IQN/EUI/NAA name for commands that create or contact (exit 7 if bad;
    :func:`iscsictl.protocol.names.usable_name`: ``iqn...:disk_1`` is taken, as iscsiadm
    takes it); the name as given, not its RFC 3722 normal form: a login sends it, and
    targets compare it byte for byte (iscsiadm stores and sends it as given too)."""
    from ..protocol.names import usable_name
    try:
        usable_name(name)
    except ValueError as e:
        raise E.CliError(f"invalid target name '{name}': {e}", E.INVAL) from None
    return name


def sysfs_root() -> str:
    """The sysfs mount the CLI reads: ``$ISCSICTL_SYSFS_ROOT`` (fixture trees in tests) or
    ``/sys``."""
    return os.environ.get("ISCSICTL_SYSFS_ROOT", "/sys")


def setup_default_ifaces(db, o, bindings: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    """The offload HBAs' default iface records written where missing
    (:mod:`iscsictl.kernel.default_ifaces`), and with ``bindings`` the
    ``<transport>.<MAC>`` ones of hosts without kernel interfaces
    (:func:`~iscsictl.kernel.default_ifaces.host_binding_records`); returns the names
    written."""
    from ..kernel.default_ifaces import host_binding_records, load_offload_drivers
    from ..kernel.default_ifaces import setup_default_ifaces as setup
    from ..kernel.sysfs import Sysfs

    sysfs = Sysfs(sysfs_root())
    load_offload_drivers(sysfs, o.error)  # their hosts are what the records are made of
    made = setup(db, sysfs, o.error)
    return made + setup(db, sysfs, o.error, host_binding_records) if bindings else made


def ensure_ifaces(db, names, o) -> None:  # type: ignore[no-untyped-def]
    """Before the iface records ``names`` are read: when one is not in ``db``, the default
    records are made first (it may be an offload port's, not made yet), with the
    ``<transport>.<MAC>`` ones, as open-iscsi's iface_conf_read retries after
    iface_setup_host_bindings."""
    from ..db.schema import BUILTIN_IFACES

    if any(n not in BUILTIN_IFACES and "/" not in n and not os.path.lexists(db.iface_path(n))
           for n in names or ()):
        setup_default_ifaces(db, o, bindings=True)


def initiator_name(args, warn) -> str:
    """The initiator name from initiatorname.iscsi (created, as open-iscsi's packaging does,
    when missing or asked for with ``GenerateName=yes``, and the directory is writable); a
    file without a name is exit 6, never replaced."""
    return initiator(args, warn).name


def initiator(args, warn):  # type: ignore[no-untyped-def]
    """initiatorname.iscsi's InitiatorName (its ``name``, as :func:`initiator_name`) and
    InitiatorAlias (its ``login_alias``: the host's name without one).  ``warn``: told of
    a name generated for a missing file (the name a target's ACL must allow: never made
    silently)."""
    from ..db.config import ensure_initiator_name, read_initiator_name, resolve_roots
    from ..db.errors import DBError

    root = resolve_roots(args.db_root, args.config_root).config_root
    try:
        cur = read_initiator_name(root)
        if cur is not None:
            return cur
        return ensure_initiator_name(root, warn=warn)
    except DBError as e:
        raise E.CliError(f"{e}{_user_hint(root)}", E.IDBM) from None
    except OSError as e:
        raise E.CliError(f"no InitiatorName in {root}/initiatorname.iscsi and cannot create "
                         f"it: {e.strerror}{_user_hint(root)}", E.IDBM) from None


def _user_hint(root: str) -> str:
    """What a user who is not root can do when ``root``'s initiatorname.iscsi is root's
    only (as /etc/iscsi's is): a directory of theirs as the config root, where a name of
    their own is made."""
    import os

    if os.geteuid() == 0 or os.access(os.path.join(root, "initiatorname.iscsi"), os.R_OK):
        return ""
    return ("; not root: --config-root DIR (a directory of yours, where a name of your own "
            "is made) and --db-root DIR")


def text_values(rec) -> dict:
    """A record's values as open-iscsi text (what LoginConfig.from_node/from_discovery read)."""
    out = {}
    for k in rec.kind.keys:
        v = rec.values.get(k.name)
        if v is None:
            continue
        out[k.name] = ",".join(v) if k.type == "list" else str(v)
    return out


def daemon_hook(name: str):
    """The daemon side's implementation of ``name`` in ``cli/session_cmd.py`` (login, logout,
    loginall, logoutall), or raise 'requires the iscsictld daemon' (exit 27)."""
    import importlib
    try:
        mod = importlib.import_module(f"{__package__}.session_cmd")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.session_cmd":
            raise
        mod = None
    fn = getattr(mod, name, None) if mod is not None else None
    if fn is None:
        raise E.CliError(f"{name.replace('node_', '')} requires the iscsictld daemon, which is "
                         "not available in this build", E.OP_NOT_SUPP)
    return fn
