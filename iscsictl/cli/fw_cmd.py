"""``-m fw``: the boot firmware's targets (iBFT, or an offload driver's ``iscsi_boot<N>``).

* ``-m fw``: each target as iscsiadm prints it (usr/fwparam_ibft/fw_entry.c
  fw_print_entry): ``# BEGIN RECORD``, the initiator and NIC as ``iface.*`` keys, the
  target as ``node.*`` keys, ``# END RECORD``.  CHAP secrets print as ``********`` unless
  ``-S`` (iscsiadm prints them).
* ``-m fw -l [-n KEY -v VALUE]``: log in to every target through iscsictld with a record
  built in memory, nothing written to the DB (iscsiadm's exec_fw_op): iscsid.conf's
  defaults, the firmware's target, portal (tpgt 1), CHAP and initiator name, and for a
  boot disk ``node.session.initial_login_retry_max`` 30 and no NOP-Outs unless ``-n``
  sets them; ``-n`` may set any node key but the NIC, MAC and transport
  (:func:`apply_user_params`).  The exit code is the first failed
  login's (iscsiadm 2.1.8 exits 0 whatever the logins did); a target with its session
  there already is said but is no failure (dracut's iscsiroot runs ``-m fw -l`` again).
* No firmware description: ``Could not get list of targets from firmware. (err 21)``.

``-m discovery -t fw`` (records in the DB) is discovery_cmd's, built on
:func:`firmware_records`.  ``ISCSICTL_SYSFS_ROOT`` replaces ``/sys`` for tests.
"""

from __future__ import annotations

from ..db.schema import NODE_MEMORY_ONLY
from ..lexical import C_SPACE
from . import errors as E
from ._common import sysfs_root

#: -n keys a firmware login may not override (iscsiadm's fill_in_default_fw_values)
FIXED_KEYS = ("iface.net_ifacename", "iface.hwaddress", "iface.transport_name")
#: the settings of a boot login the user did not set, whatever iscsid.conf says (booting:
#: retry long, no NOP-Outs before a daemon answers them, the LUNs scanned: the root disk);
#: iscsiadm's fill_in_default_fw_values and iscsistart's apply_params
FW_LOGIN_DEFAULTS = {"node.session.initial_login_retry_max": "30",
                     "node.conn[0].timeo.noop_out_interval": "0",
                     "node.conn[0].timeo.noop_out_timeout": "0",
                     "node.session.scan": "auto"}
FW_TPGT = 1  # open-iscsi hard-codes it: the iBFT has no portal group tag


def boot_contexts(o) -> list:  # type: ignore[no-untyped-def]
    """The firmware's targets, or CliError: iscsiadm's 21 (none), 1 (not root: EACCES)."""
    from ..kernel.firmware import FirmwareAccessError, boot_targets
    try:
        contexts = boot_targets(sysfs_root(), warn=o.warn)
    except FirmwareAccessError as e:
        raise E.CliError(e.strerror, E.ERR) from None
    if not contexts:
        raise E.CliError("Could not get list of targets from firmware. (err 21)",
                         E.NO_OBJS_FOUND)
    return contexts


def firmware_records(db, contexts, iface_values: dict | None = None,  # type: ignore[no-untyped-def]
                     warn=None, to_write: bool = False,
                     left_out: list[str] | None = None) -> list:
    """A node record per boot context (open-iscsi's idbm_create_rec_from_boot_context):
    iscsid.conf's defaults with the firmware's target, portal, tpgt 1 and CHAP, discovery
    type ``fw``.  The iface: ``iface_values`` (an iface record's ``{key: text}``) when
    given, else an offload driver's iface from the firmware, else ``default``; the
    firmware's initiator name applies unless that iface has its own (iface_copy copies only
    what is set).  A target whose values no record can hold (a name with ``/``, a value
    out of range; ``to_write``: a value a record file would not give back, a secret with a
    blank at an end) is left out with ``warn(text)``, its name added to ``left_out``;
    without ``warn`` the DBError is raised."""
    from ..kernel.firmware import offload_iface
    from ..kernel.sysfs import Sysfs

    sysfs = Sysfs(sysfs_root())
    from ..db.errors import DBError
    from ..db.record import check_kept

    out = []
    for ctx in contexts:
        try:
            rec = _record(db, ctx, iface_values if iface_values is not None
                          else offload_iface(ctx, sysfs) or {})
            if to_write:
                check_kept(rec)
            out.append(rec)
        except DBError as e:
            if warn is None:
                raise
            warn(f"firmware {ctx.boot_root}/{ctx.boot_target}: {e}: left out")
            if left_out is not None and ctx.target_name:
                left_out.append(ctx.target_name)
    return out


def _record(db, ctx, iface: dict):  # type: ignore[no-untyped-def]
    rec = db.new_node_record(ctx.target_name, ctx.target_address, ctx.target_port,
                             FW_TPGT, "default")
    for key, value in iface.items():
        if key.startswith("iface.") and value not in ("", "<empty>") and key in rec.values:
            rec.set(key, value)
    if ctx.initiator_name and rec.values.get("iface.initiatorname") in (None, ""):
        # stripped as the record file gives it back (an iSCSI name has no blanks); only
        # the credentials, which would change, are refused for one (to_write)
        rec.set("iface.initiatorname", ctx.initiator_name.strip(C_SPACE))
    # the firmware's CHAP and nothing else, empty ones too: iscsid.conf's credentials are
    # not the boot target's (idbm_create_rec_from_boot_context)
    for key, value in (("username", ctx.chap_name), ("password", ctx.chap_password),
                       ("username_in", ctx.chap_name_in), ("password_in", ctx.chap_password_in)):
        rec.set(f"node.session.auth.{key}", value or "")
    rec.values["node.discovery_type"] = "fw"
    for name, value in zip(NODE_MEMORY_ONLY, (ctx.boot_root, ctx.boot_nic, ctx.boot_target)):
        rec.values[name] = value
    return rec


def entry_lines(ctx, transport: str, show_secrets: bool, version: str) -> list[str]:
    """One target as iscsiadm's fw_print_entry prints it (a key only when the firmware has
    a value; the port always)."""
    from ..db.schema import BEGIN_RECORD, END_RECORD

    def secret(v: str) -> str:
        return v if show_secrets else "********"

    keys = [
        ("iface.initiatorname", ctx.initiator_name), ("iface.isid", ctx.isid),
        ("iface.transport_name", transport), ("iface.hwaddress", ctx.mac),
        ("iface.bootproto", ctx.bootproto), ("iface.ipaddress", ctx.ipaddr),
        ("iface.prefix_len", str(ctx.prefix) if ctx.prefix else ""),  # -1 too: none in the table
        ("iface.subnet_mask", ctx.mask), ("iface.gateway", ctx.gateway),
        ("iface.primary_dns", ctx.primary_dns), ("iface.secondary_dns", ctx.secondary_dns),
        ("iface.vlan_id", ctx.vlan), ("iface.net_ifacename", ctx.netdev),
        ("node.name", ctx.target_name), ("node.conn[0].address", ctx.target_address),
        ("node.conn[0].port", str(ctx.target_port)),
        ("node.session.auth.username", ctx.chap_name),
        ("node.session.auth.password", ctx.chap_password and secret(ctx.chap_password)),
        ("node.session.auth.username_in", ctx.chap_name_in),
        ("node.session.auth.password_in",
         ctx.chap_password_in and secret(ctx.chap_password_in)),
        ("node.boot_lun", ctx.lun),
    ]
    return [f"{BEGIN_RECORD} {version}", *(f"{k} = {v}" for k, v in keys if v), END_RECORD]


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m fw`` entry point."""
    from ..kernel.firmware import offload_iface
    from ..kernel.sysfs import Sysfs
    from ._common import open_db

    if (args.name is None) != (args.value is None):  # one without the other: no setting,
        args.name = args.value = None  # as iscsiadm's main makes one only of both
    contexts = boot_contexts(o)
    db = open_db(args, o)
    if args.login:
        return login(args, o, db, contexts)
    sysfs = Sysfs(sysfs_root())
    transports = [(offload_iface(c, sysfs) or {}).get("iface.transport_name", "tcp")
                  for c in contexts]
    if o.json:
        o.emit_json([{
            "boot_root": c.boot_root, "boot_nic": c.boot_nic, "boot_target": c.boot_target,
            "boot_selected": c.boot_selected,
            "values": dict(line.split(" = ", 1) for line in
                           entry_lines(c, t, bool(args.show), db.version)[1:-1]),
        } for c, t in zip(contexts, transports)])
        return E.SUCCESS
    for c, t in zip(contexts, transports):
        o.lines(entry_lines(c, t, bool(args.show), db.version))
    return E.SUCCESS


def apply_user_params(rec, updates: dict[str, str], rebind: bool = False) -> None:  # type: ignore[no-untyped-def]
    """A firmware login's settings over its record (open-iscsi's fill_in_default_fw_values
    and iscsistart's apply_params): :data:`FW_LOGIN_DEFAULTS` where ``updates`` does not set
    them, then ``updates`` as ``idbm_node_set_rec_from_param(..., verify=0)`` applies them:
    any key of a node record, iface keys included (not ``-o update``'s rules, which keep
    those to iface mode).  ``rebind`` (iscsistart's ``-P``): a new ``iface.net_ifacename``
    forgets the firmware's MAC, a new ``iface.hwaddress`` its net device, and a new
    ``iface.transport_name`` every iface value (the firmware's binding was for another
    driver).  Raises InvalidKey (no such key), InvalidValue."""
    if rebind:
        if "iface.transport_name" in updates:
            rec.reset("iface.")
        if "iface.net_ifacename" in updates:
            rec.set("iface.hwaddress", "")
        if "iface.hwaddress" in updates:
            rec.set("iface.net_ifacename", "")
    for key, value in FW_LOGIN_DEFAULTS.items():
        if key not in updates:
            rec.set(key, value)
    for key, value in updates.items():
        rec.set(key, value)


def login(args, o, db, contexts) -> int:  # type: ignore[no-untyped-def]
    """``-m fw -l``: every firmware target, with records made in memory (see the module)."""
    from ..db.errors import DBError
    from ._common import initiator_name
    from .kernel_ops import login_records

    updates = dict(args.params or ())  # every -n/-v pair, as iscsiadm
    if updates.keys() & FIXED_KEYS:
        o.error("Cannot override interface parameters for firmware logins")
        raise E.CliError("Could not merge user params", E.INVAL)
    records = firmware_records(db, contexts, warn=o.warn)
    if not records:
        raise E.CliError("Could not get list of targets from firmware. (err 21)",
                         E.NO_OBJS_FOUND)
    try:
        for rec in records:
            apply_user_params(rec, updates)
    except DBError as e:
        o.error(str(e))
        raise E.CliError("Could not merge user params", E.INVAL) from None
    return login_records(records, lambda: initiator_name(args, o.warn), o,
                         wait=not args.no_wait, present_ok=True)
