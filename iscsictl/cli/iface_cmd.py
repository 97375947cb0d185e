"""``-m iface``: list, show, create, update and delete iface records (``default`` and ``iser``
are built in).  Every iface command first writes the default records of the offload HBAs'
ports that are not in the DB yet, as iscsiadm does (:mod:`iscsictl.kernel.default_ifaces`).

Flat listing ``name transport,hwaddress,ipaddress,netdev,initiatorname`` (``<empty>`` for unset);
``-P 1`` (with or without ``-I``): ``Iface: name`` with the node records bound to it, and, as
iscsiadm's print_iface_tree, nothing at all while there is no node record; other levels are
refused (7).  ``-o new`` prints ``NAME updated.`` and ``New interface NAME added`` (as iscsiadm), ``-o update`` ``NAME updated.``,
``-o delete`` ``NAME unbound and deleted.`` (the node records bound to it are deleted too, as
iscsiadm does).

``-o apply -I NAME`` and ``-o applyall -H HOST`` (a host number or the MAC of an HBA port):
the network settings of that iface, or of every iface whose ``iface.hwaddress`` is the
host's, sent to the HBA's driver in one ISCSI_UEVENT_SET_IFACE_PARAMS over NETLINK_ISCSI
(what and how: :mod:`iscsictl.kernel.net_config`), as iscsiadm 2.1.8's OP_APPLY and
OP_APPLY_ALL: ``NAME applied.`` / ``Applied settings to ifaces attached to hostN.``, and
``Nothing to configure.`` (on stderr, exit 0) when no iface has an address setting (the
built-in ``default``, a tcp iface).  ``-o apply`` finds the host as
iscsi_sysfs_get_host_no_from_hwinfo (the iface's hwaddress, else netdev, else address).
Errors: no ``-I`` "Apply requires iface." (7), an iface that cannot be read (6), a value
that cannot be sent (7, nothing sent), and 1 for any failure past that, as iscsiadm
(no host bound to the iface, the transport not loaded, no netlink, the driver's refusal:
its errno by name, where iscsiadm prints "Set net_config failed. errno=" with a stale
errno).  Deliberate differences: ``-o applyall`` without ``-H`` is refused (7) where
iscsiadm 2.1.8 applies to host 0 (its "no -H" marker wraps), a host that is not there is
"Could not match hostN to ifaces." (7, what iscsiadm means to say; it goes on with a host
of no transport and exits 1), and a host without a hardware address (iscsi_tcp) has no
ifaces attached (iscsiadm takes every iface record without one); iscsiadm sends an iface
bound to no host to host 0xffffffff, iscsictl says that no host has its address; the
rest is in :mod:`iscsictl.kernel.net_config`.
"""

from __future__ import annotations

from . import errors as E
from ._common import open_db, setup_default_ifaces
from .output import record_json


def _e(v) -> str:
    return str(v) if v not in (None, "") else "<empty>"


def run(args, o, mode: str) -> int:
    ops = list(dict.fromkeys(args.op or []))
    op = ops[0] if len(ops) == 1 else None
    if args.submode is not None or args.host is not None and op not in APPLY_OPS:
        raise E.CliError("iface mode: -H (an offload HBA's host, but with -o apply|applyall) "
                         "and -C (ping) are not supported yet", E.OP_NOT_SUPP)
    if len(ops) > 1:  # iscsiadm's exec_iface_op switches on the ops' mask: none matches
        raise E.CliError(f"iface mode: one operation at a time (-o {' -o '.join(ops)})",
                         E.INVAL)
    db = open_db(args, o)
    setup_default_ifaces(db, o)  # as iscsiadm, on every iface command
    if op in APPLY_OPS:  # ISCSI_UEVENT_SET_IFACE_PARAMS to an offload HBA
        return apply(db, args, o, op)
    if op not in (None, "new", "delete", "update", "show"):
        raise E.CliError(f"Invalid operation '{op}'", E.INVAL)
    names = args.interface or []
    if op in (None, "show") and not o.json:
        if args.print not in (None, -1, 0, 1):
            raise E.CliError(f"Invalid info level {args.print}. Try 0 - 1.", E.INVAL)
        if args.print == 1:
            return _tree(db, names, o)
    if not names:
        if op == "new":  # iscsiadm's words and code
            raise E.CliError("Could not add interface. No interface passed in.",
                             E.BY_NAME["ISCSI_ERR_SYSFS_LOOKUP"])
        if op not in (None, "show"):
            raise E.CliError(f"iface mode: -o {op} needs -I ifacename", E.INVAL)
        return listing(db, args, o)
    from ..db.errors import CorruptRecord, DBError, RecordNotFound
    if op == "new" and len(names) > 1:  # every name checked before any iface is made
        for name in names:
            try:
                db.check_new_iface_name(name)
            except DBError as e:
                raise E.CliError(str(e), e.exit_code) from None
    rc = E.SUCCESS
    shown = []
    for name in names:
        try:
            if op == "new":
                db.create_iface(name)
                # iscsiadm's OP_NEW runs its (empty) parameter update first, which prints
                o.json or o.lines([f"{name} updated.", f"New interface {name} added"])
            elif op == "delete":
                try:
                    db.read_iface(name)
                except CorruptRecord as e:  # damaged (by hand): still deleted, not stuck
                    o.warn(f"{e}: deleted all the same")
                for nid in db.list_nodes(iface=name):
                    db.delete_node(nid)
                db.delete_iface(name)
                o.json or o.lines([f"{name} unbound and deleted."])
            elif op == "update":
                updates = dict(args.params or ())  # every -n/-v pair, as iscsiadm
                if not updates:
                    raise E.CliError("-o update needs -n name and -v value", E.INVAL)
                db.update_iface_many(name, updates)
                # the node records bound to it hold a copy of its iface.* values, which a
                # login reads (iscsiadm's iface_param_update: __for_each_matched_rec)
                for nid in db.list_nodes(iface=name):
                    try:
                        db.update_node_many(nid, updates, iface_copy=True)
                    except DBError as e:
                        o.error(f"Could not update {nid.flat()}: {e}")
                        rc = rc or e.exit_code
                o.json or o.lines([f"{name} updated."])
            else:
                rec = db.read_iface(name)
                if o.json:
                    shown.append(record_json(rec, bool(args.show)))
                else:
                    from ..db.record import format_record
                    o.text(format_record(rec, show_secrets=bool(args.show),
                                         version=db.version))
        except RecordNotFound as e:  # iscsiadm: 6 to show an unknown iface, 7 to change it
            if op in ("update", "delete"):
                o.error(f"Could not read iface info for {name}.")
                rc = E.INVAL
            else:
                o.error(f"Could not read iface {name}: {e}" if "iface" not in str(e)
                        else str(e))
                rc = E.IDBM
        except DBError as e:
            o.error(str(e))
            rc = e.exit_code
    if o.json:
        o.emit_json(shown if op in (None, "show") else {"op": op, "ifaces": names, "rc": rc})
    return rc


def listing(db, args, o) -> int:
    from ..db.errors import DBError
    recs = []
    for name in db.list_ifaces():
        try:
            recs.append(db.read_iface(name))
        except DBError as e:
            o.error(str(e))
    if not recs:
        raise E.CliError("No interfaces found.", E.NO_OBJS_FOUND)
    if o.json:
        o.emit_json([record_json(r, False) for r in recs])
        return E.SUCCESS
    lines = []
    for r in recs:
        v = r.values
        lines.append(f"{v['iface.iscsi_ifacename']} {_e(v.get('iface.transport_name'))},"
                     f"{_e(v.get('iface.hwaddress'))},{_e(v.get('iface.ipaddress'))},"
                     f"{_e(v.get('iface.net_ifacename'))},{_e(v.get('iface.initiatorname'))}")
    o.lines(lines)
    return E.SUCCESS


def _tree(db, names: list[str], o) -> int:
    """``-P 1``: each iface (those of ``-I``, which must exist, or every one) with the node
    records bound to it; nothing while there is no node record (iscsiadm 2.1.8)."""
    from ..db.errors import DBError

    nodes = db.list_nodes()
    if not nodes:
        return E.SUCCESS
    if names:
        try:
            db.read_iface(names[0])
        except DBError as e:
            raise E.CliError(str(e), E.IDBM) from None
        names = names[:1]  # iscsiadm takes the first -I here
    else:
        names = db.list_ifaces()
    lines = []
    for name in names:
        lines.append(f"Iface: {name}")
        last = None
        for n in nodes:
            if n.iface != name:
                continue
            if n.target != last:
                lines.append(f"\tTarget: {n.target}")
                last = n.target
            lines.append(f"\t\tPortal: {n.portal},{n.listed_tpgt}")
    o.lines(lines)
    return E.SUCCESS


APPLY_OPS = ("apply", "applyall")


def apply(db, args, o, op: str) -> int:
    """``-o apply`` (``-I``: that iface) and ``-o applyall`` (``-H``: every iface of that
    host): their network settings to the HBA's driver in one SET_IFACE_PARAMS
    (:mod:`iscsictl.kernel.net_config`; usr/iscsiadm.c exec_iface_op, iface_apply_net_config)."""
    from ..db.errors import DBError
    from ..kernel.net_config import NetConfigError, attached, net_config
    from ..kernel.sysfs import Sysfs
    from ._common import sysfs_root
    from .host_cmd import host_option

    sysfs = Sysfs(sysfs_root())
    host_no = host_option(args, sysfs)
    if op == "apply":
        names = args.interface or []
        if not names:
            raise E.CliError("Apply requires iface.", E.INVAL)
        if len(names) > 1:
            o.error(f"iface mode only accepts one interface. Using the first one {names[0]}.")
        name = names[0]
        try:
            records = [db.read_iface(name).values]
        except DBError as e:  # iscsiadm: "Could not read iface NAME (6)."
            msg = str(e) if str(e).startswith(f"Could not read iface {name}") else (
                f"Could not read iface {name}: {e}")
            raise E.CliError(msg, E.IDBM) from None
        done = f"{name} applied."
    else:
        if host_no is None:
            raise E.CliError("Applyall requires a valid host number or MAC passed in with "
                             "the --host argument.", E.INVAL)
        host = sysfs.host(host_no)
        if host is None:
            raise E.CliError(f"Could not match host{host_no} to ifaces.", E.INVAL)
        records = []
        for name in db.list_ifaces():
            try:
                records.append(db.read_iface(name).values)
            except DBError as e:  # iscsiadm leaves it out too
                o.error(f"Could not read iface {name}: {e}")
        records = attached(records, host.hwaddress)
        done = f"Applied settings to ifaces attached to host{host_no}."
    try:
        entries = net_config(records)
    except NetConfigError as e:
        raise E.CliError(f"Could not apply net configuration: {e}", e.exit_code) from None
    if entries:
        host_no = _send(sysfs, records[0], host_no if op == "applyall" else None, entries)
    else:
        o.error("Nothing to configure.")
    if o.json:
        o.emit_json({"op": op, "ifaces": [r["iface.iscsi_ifacename"] for r in records],
                     "host_no": host_no, "params": len(entries), "rc": E.SUCCESS})
    else:
        o.lines([done])
    return E.SUCCESS


def _send(sysfs, values, host_no: int | None, entries: list) -> int:  # type: ignore[no-untyped-def]
    """SET_IFACE_PARAMS of ``entries`` to the host (``-H``, else the one the iface is bound
    to: iscsi_sysfs_get_host_no_from_hwinfo) through its transport; returns the host.
    Every failure is CliError 1, as iscsiadm's iface_apply_net_config returns ISCSI_ERR for
    any (its "Can't find host_no.", "Can't find transport.", "Netlink open failed.", "Set
    net_config failed."), said with its cause: the errno of a refusal by name."""
    import errno

    from ..netlink import IscsiNetlinkError
    from .hba import describe, hba_netlink, kernel_errno, transport_handle

    fail = "Could not apply net configuration: "
    try:
        if host_no is None:
            bound = {k: v for k in ("hwaddress", "net_ifacename", "ipaddress")
                     if (v := values.get(f"iface.{k}")) and v.lower() != "default"}
            host_no = _bound_host(sysfs, bound.get("hwaddress"), bound.get("net_ifacename"),
                                  bound.get("ipaddress"))
            transport = values.get("iface.transport_name") or "tcp"
            if host_no is None:
                said = next((f"{k} {v}" for k, v in bound.items()), "hwaddress")
                raise E.CliError(
                    f"no iSCSI host has the {said} of iface {values['iface.iscsi_ifacename']}"
                    + (" (a tcp iface is software iSCSI: the system's network settings are "
                       "its own)." if transport == "tcp" else "."))
        else:
            transport = sysfs.host_transport(host_no) or ""
        handle = transport_handle(sysfs, transport)
        with hba_netlink() as nl:
            nl.set_iface_params(handle, host_no, entries)
    except E.CliError as e:
        raise E.CliError(fail + str(e), E.ERR) from None
    except IscsiNetlinkError as e:
        why = describe(e)
        if kernel_errno(e) == errno.ENOSYS:
            why += f": the {transport} driver cannot set network settings"
        raise E.CliError(f"{fail}set net_config of host{host_no} failed ({why}).",
                         E.ERR) from None
    return host_no


def _bound_host(sysfs, hwaddress: str | None, netdev: str | None,  # type: ignore[no-untyped-def]
                ipaddress: str | None) -> int | None:
    """The host an iface record is bound to (usr/iscsi_sysfs.c
    iscsi_sysfs_get_host_no_from_hwinfo): the first host, in ``alphasort`` order of
    ``host<N>``, whose ``hwaddress`` is the record's (any case); without one, whose
    ``netdev`` is; without either, whose ``ipaddress`` is (empty or ``default``: unset).
    None when no host matches or nothing is set."""
    for attr, want in (("hwaddress", hwaddress), ("netdev", netdev), ("ipaddress", ipaddress)):
        if want and want.lower() != "default":
            fold = str.lower if attr == "hwaddress" else str
            for n in sorted(sysfs.host_numbers(), key=lambda n: f"host{n}"):
                have = getattr(sysfs.host(n, only=(attr,)), attr, None)
                if have is not None and fold(have) == fold(want):
                    return n
            return None
    return None
