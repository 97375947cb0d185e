"""``-m iface``: list, show, create, update and delete iface records (``default`` and ``iser``
are built in).

Flat listing ``name transport,hwaddress,ipaddress,netdev,initiatorname`` (``<empty>`` for unset);
``-P 1`` (with or without ``-I``): ``Iface: name`` with the node records bound to it, and, as
iscsiadm's print_iface_tree, nothing at all while there is no node record; other levels are
refused (7).  ``-o new`` prints ``NAME updated.`` and ``New interface NAME added`` (as iscsiadm), ``-o update`` ``NAME updated.``,
``-o delete`` ``NAME unbound and deleted.`` (the node records bound to it are deleted too, as
iscsiadm does).
"""

from __future__ import annotations

from . import errors as E
from ._common import open_db
from .output import record_json


def _e(v) -> str:
    return str(v) if v not in (None, "") else "<empty>"


def run(args, o, mode: str) -> int:
    if args.host is not None or args.submode is not None:
        raise E.CliError("iface mode: -H (an offload HBA's host) and -C (ping) are not "
                         "supported yet", E.OP_NOT_SUPP)
    ops = list(dict.fromkeys(args.op or []))
    if len(ops) > 1:  # iscsiadm's exec_iface_op switches on the ops' mask: none matches
        raise E.CliError(f"iface mode: one operation at a time (-o {' -o '.join(ops)})",
                         E.INVAL)
    db = open_db(args, o)
    op = ops[0] if ops else None
    if op in ("apply", "applyall"):  # ISCSI_UEVENT_SET_IFACE_PARAMS to an offload HBA
        raise E.CliError(f"iface mode: -o {op} (an offload HBA's network settings) is not "
                         "supported yet", E.OP_NOT_SUPP)
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
                if args.name is None or args.value is None:
                    raise E.CliError("-o update needs -n name and -v value", E.INVAL)
                db.update_iface(name, args.name, args.value)
                # the node records bound to it hold a copy of its iface.* values, which a
                # login reads (iscsiadm's iface_param_update: __for_each_matched_rec)
                for nid in db.list_nodes(iface=name):
                    try:
                        db.update_node_many(nid, {args.name: args.value}, iface_copy=True)
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
