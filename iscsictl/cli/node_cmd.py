"""``-m node``: list, show, create, update and delete node records; ``--probe`` a target from
userspace.  Login/logout (``-l``, ``-u``, ``-L``, ``-U``) are the daemon's
(``session_cmd.node_login`` ... hooks).

iscsiadm's behaviour kept: no filter and no op lists records (``ip:port,tpgt iqn``, ``-P 1``
tree); a filter (``-T``/``-p``/``-I``) without an op shows the full records; ``-p`` without a
port means 3260; ``-o new`` prints ``New iSCSI node [...] added``; ``-o update`` refuses lookup
keys and iface keys (exit 7); nothing matched gives ``No records found`` (exit 21).
"""

from __future__ import annotations

from . import errors as E
from ._common import check_target_name, daemon_hook, ensure_ifaces, open_db, parse_portal_arg
from .output import node_json, record_json, tree_lines


def _filters(args) -> dict:
    """The record filters of -T and -p: a tag in -p selects nothing, as in iscsiadm
    (__iscsi_match_session compares the name, address, port and iface only).  The address
    is not among them: :func:`_matching` compares it as iscsiadm does (resolved)."""
    f: dict = {}
    if args.targetname is not None:
        f["target"] = args.targetname
    if args.portal is not None:
        f["port"] = parse_portal_arg(args.portal).port
    return f


def _matching(db, args) -> list:
    """The NodeIDs -T/-p/-I select; -p's address matches a record's as iscsiadm's
    ``iscsi_addr_match`` does (:func:`iscsictl.lexical.same_host`: ``-p [FE80::1]`` finds
    ``fe80::1``'s records)."""
    f = _filters(args)
    ifaces = args.interface or [None]
    out = []
    for ifn in ifaces:
        out.extend(db.list_nodes(iface=ifn, **f))
    if args.portal is not None:
        from ..lexical import same_host
        address = parse_portal_arg(args.portal).address
        out = [n for n in out if same_host(address, n.address)]
        if getattr(args, "same_text", False):  # a session's record shown: the one whose
            out = [n for n in out if n.address == address] or out  # address is its text
    return sorted(set(out), key=lambda n: (n.target, n.portal_dir, n.iface))


def _no_records() -> E.CliError:
    return E.CliError("No records found", E.NO_OBJS_FOUND)


def _check_ifaces(args, o) -> None:  # type: ignore[no-untyped-def]
    """The first ``-I`` must name an iface record: iscsiadm builds its node record from it
    (idbm_create_rec) and, when that fails, says so and exits 3 (ISCSI_ERR_NOMEM).  An
    offload port's default record not made yet is made first (:func:`ensure_ifaces`).
    Node mode acts through the first only, and iscsiadm never reads the others (main,
    MODE_NODE): a later ``-I`` that names no record is no error (before: 3), and the
    warning's fields are empty as iscsiadm's (its iface_alloc fills in only the name)."""
    if not args.interface:
        return
    db = open_db(args, o)
    first = args.interface[0]
    ensure_ifaces(db, [first], o)
    if first not in db.list_ifaces():
        raise E.CliError(f"Could not read iface info for {first}.", E.BY_NAME["ISCSI_ERR_NOMEM"])
    if len(args.interface) > 1:
        o.error("NODE mode only accepts one interface. Using the first one driver  "
                "hwaddress  ipaddress .")
        args.interface = args.interface[:1]


def run(args, o, mode: str) -> int:
    ops = args.op or []
    loginall, logoutall = args.loginall is not None, args.logoutall is not None  # -L '' too
    if args.probe:  # its own operation: another beside it was dropped without a word
        others = [flag for flag, given in (
            ("-l", args.login), ("-u", args.logout), ("-L", loginall), ("-U", logoutall),
            ("-R", args.rescan), ("-s", args.stats),
            *((f"-o {op}", True) for op in dict.fromkeys(ops) if op != "nonpersistent"))
            if given]
        if others:
            raise E.CliError(f"--probe is an operation of its own: not with {others[0]} "
                             "(-o nonpersistent is the one it takes)", E.INVAL)
    if not (loginall or logoutall):  # -L/-U check no -I (iscsiadm ignores it; -U here
        _check_ifaces(args, o)  # is narrowed by -T/-p/-I: session_cmd.node_logoutall)
    # iscsiadm's order: -L/-U first (main), then exec_node_op's: -o new alone (a -l/-u
    # beside it is not acted on), -R, -s, then the refusals of -l/-u with each other or -o
    if loginall or logoutall:
        return daemon_hook("node_loginall" if loginall else "node_logoutall")(args, o)
    if set(ops) == {"new"} and not args.probe:
        return op_new(open_db(args, o), args, o)
    if args.rescan or args.stats:
        return daemon_hook("node_rescan" if args.rescan else "node_stats")(args, o)
    if args.login and args.logout:
        raise E.CliError("Invalid parameters. Both login and logout passed in", E.INVAL)
    if (args.login or args.logout) and ops:
        raise E.CliError("Invalid parameters. Login/logout and op passed in", E.INVAL)
    if args.login or args.logout:
        return daemon_hook("node_login" if args.login else "node_logout")(args, o)
    if args.probe:
        return probe(args, o)
    unknown = [x for x in ops if x not in ("new", "delete", "update", "show", "nonpersistent")]
    if unknown:
        raise E.CliError(f"Invalid operation '{unknown[0]}'", E.INVAL)
    if len(set(ops)) > 1:
        raise E.CliError("only one operation (-o) at a time in node mode", E.INVAL)
    op = ops[0] if ops else None
    if op == "nonpersistent":  # --probe's only
        raise E.CliError("operation is not supported.", E.INVAL)
    db = open_db(args, o)
    if op == "new":
        return op_new(db, args, o)
    if op == "delete":
        return op_delete(db, args, o)
    if op == "update":
        return op_update(db, args, o)
    has_filter = any(x is not None for x in (args.targetname, args.portal, args.interface))
    if op == "show" or has_filter:
        return op_show(db, args, o)
    return listing(db, args, o)


def listing(db, args, o) -> int:
    if args.print not in (None, -1, 0, 1):  # iscsiadm's print_nodes, before reading
        raise E.CliError(f"Invalid info level {args.print}. Try 0 or 1.", E.INVAL)
    nids = db.list_nodes(dangling=False)  # a dangling symlink named, not listed
    if not nids:
        raise _no_records()
    if o.json:
        o.emit_json([node_json(n) for n in nids])
    elif args.print is not None and args.print >= 1:
        o.lines(tree_lines(nids))
    else:
        o.lines(n.flat() for n in nids)
    return E.SUCCESS


def op_show(db, args, o) -> int:
    """``-o show``.  A damaged record (a crash in iscsiadm's in-place rewrite) is named and
    left out; when no record was readable, "No records found" and 21, as iscsiadm's
    for_each_matched_rec: os-brick then makes it again with ``-o new`` (it gave up on 6)."""
    from ..db.errors import CorruptRecord, DBError, RecordNotFound
    from ..db.record import format_record
    nids = _matching(db, args)
    if not nids:
        raise _no_records()
    rc, damaged, shown = E.SUCCESS, 0, 0

    def readable():  # each record read as it is written out: never all of them at once
        nonlocal rc, damaged, shown
        for nid in nids:
            try:
                rec = db.read_node(nid)
            except (CorruptRecord, RecordNotFound) as e:  # (gone meanwhile, or a dangling
                # symlink in its place: listed, but no record; before, the others shown
                # and 21)
                o.error(str(e))
                damaged += 1
                continue
            except DBError as e:
                o.error(str(e))
                rc = e.exit_code
                continue
            shown += 1
            yield rec
    if o.json:
        o.emit_json_array(record_json(r, bool(args.show)) for r in readable())
    else:
        for r in readable():
            o.text(format_record(r, show_secrets=bool(args.show), version=db.version))
    if damaged and not shown and rc == E.SUCCESS:
        raise _no_records()
    return rc


def op_new(db, args, o) -> int:
    """``-o new``: the record of -T's target at -p's portal, through each -I (default:
    ``default``).  Without -T or -p, as iscsiadm's add_static_recs: a record for each
    portal the DB holds (of -T's target, at -p's address and port, its tag kept) through
    each -I: ``-o new -T T -I if1`` binds all of T's portals to if1."""
    if args.targetname and args.portal:
        target = check_target_name(args.targetname)
        p = parse_portal_arg(args.portal)
        portals = [(target, p.address, p.port, -1 if p.tpgt is None else p.tpgt)]
    else:
        import copy
        every_iface = copy.copy(args)
        every_iface.interface = None
        portals = sorted({(n.target, n.address, n.port, n.tpgt)
                          for n in _matching(db, every_iface)})
        if not portals:  # iscsiadm says it with an empty reason, and exits 0: an error that
            raise E.CliError("Error while adding record: no records found",  # a script
                             E.NO_OBJS_FOUND)  # would take for success
    from ..db.store import NodeID

    created = []
    for target, address, port, tpgt in portals:
        for ifn in args.interface or ["default"]:
            existed = db.node_exists(NodeID(target, address, port, tpgt, ifn)) or (
                tpgt != -1 and db.node_exists(NodeID(target, address, port, -1, ifn)))
            # (an old-style record of the portal, tag unknown, is converted: replaced)
            rec = db.create_node(target, address, port, tpgt, ifn, overwrite=True)
            if existed:  # as iscsiadm's, without a word: its CHAP gone unseen
                o.error(f"node record [{ifn}] {address},{port},{tpgt} {target} existed: made "
                        "anew from iscsid.conf and the defaults, its settings (CHAP "
                        "included) not kept")
            v = rec.values
            msg = (f"New iSCSI node [{v['iface.transport_name']}:[hw={v['iface.hwaddress']},"
                   f"ip={v['iface.ipaddress']},net_if={v['iface.net_ifacename']},"
                   f"iscsi_if={ifn}] {address},{port},{tpgt} {target}] added")
            created.append({"target": target, "address": address, "port": port,
                            "tpgt": tpgt, "iface": ifn})
            if not o.json:
                o.lines([msg])
    if o.json:
        o.emit_json({"added": created})
    return E.SUCCESS


def op_delete(db, args, o) -> int:
    from ..db.errors import DBError, RecordNotFound
    from .session_cmd import in_use_error, records_in_use
    nids = _matching(db, args)
    if not nids:
        raise _no_records()
    rc = E.SUCCESS
    done = []
    in_use = records_in_use()
    for nid in nids:
        try:
            if in_use(nid):  # as iscsiadm's delete_node: log the session out first
                raise in_use_error(nid)
            db.delete_node(nid)
            done.append(node_json(nid))
        except RecordNotFound:  # deleted meanwhile (another command): as asked, no error
            continue  # (before: said, and the others deleted, then 21)
        except DBError as e:
            o.error(str(e))
            rc = e.exit_code
    if o.json:
        o.emit_json({"deleted": done})
    if rc:  # as iscsiadm's for_each_matched_rec ends
        o.error("Could not execute operation on all records: " + E.err_to_str(rc))
    return rc


def op_update(db, args, o) -> int:
    from ..db.errors import CorruptRecord, DBError, RecordNotFound
    # every -n/-v pair, as iscsiadm (the last of a key); node.transport_name is old tools'
    # name of iface.transport_name (verify_node_params' compat)
    updates = {"iface.transport_name" if k == "node.transport_name" else k: v
               for k, v in args.params or ()}
    if not updates:
        raise E.CliError("-o update needs -n name and -v value", E.INVAL)
    from ..db.errors import ReadOnlyKey
    for name in updates:  # verify_node_params, before the records are looked up
        if name.startswith("iface.") and name != "iface.transport_name":
            raise E.CliError(str(ReadOnlyKey(name, "iface")), E.INVAL)
    nids = _matching(db, args)
    if not nids:
        raise _no_records()
    if "iface.transport_name" in updates:  # the session would go on with the other one
        from .session_cmd import records_in_use
        in_use = records_in_use()
        if any(in_use(nid) for nid in nids):
            raise E.CliError("Cannot modify node/iface transport name while a session is "
                             "using it. Log out the session then update record.",
                             E.SESS_EXISTS)
    rc = E.SUCCESS
    done, failed = [], []
    damaged = 0
    for nid, res in db.update_nodes(nids, updates):
        if isinstance(res, (CorruptRecord, RecordNotFound)):  # left out, as op_show does
            o.error(str(res))
            damaged += 1
        elif isinstance(res, DBError):
            o.error(str(res))
            rc = rc or res.exit_code
            failed.append({**node_json(nid), "error": str(res), "rc": res.exit_code})
        else:
            done.append(node_json(nid))
    if damaged and not done and rc == E.SUCCESS:
        raise _no_records()
    if o.json:  # what was written, also when not all was: each record's result
        o.emit_json({"updated": done, "failed": failed} if failed else {"updated": done})
    if rc:
        raise E.CliError("Could not execute operation on all records: " + E.err_to_str(rc), rc)
    return rc


def probe(args, o) -> int:
    """``--probe``: log in from userspace to each matching record (or to -T at -p when no
    record exists), list LUNs, log out."""
    from ..db.errors import DBError, RecordNotFound
    from ._common import initiator, text_values
    if not args.targetname or not args.portal:
        raise E.CliError("--probe needs -T targetname and -p ip[:port]", E.INVAL)
    target = check_target_name(args.targetname)
    p = parse_portal_arg(args.portal)
    db = open_db(args, o)
    values = None
    try:
        nids = _matching(db, args)
    except DBError:
        nids = []
    for nid in nids:
        try:
            values = text_values(db.read_node(nid))
            break
        except (RecordNotFound, DBError) as e:
            o.error(str(e))
    if values is None:
        if "nonpersistent" not in (args.op or []):
            raise E.CliError(f"No records found for target {target} portal "
                             f"{args.portal}; create one with -o new, or add -o nonpersistent "
                             "to probe with the defaults", E.NO_OBJS_FOUND)
        try:  # what -o new would make: iscsid.conf's settings (timeouts, CHAP) included
            values = text_values(db.new_node_record(target, p.address, p.port))
        except DBError as e:
            raise E.CliError(str(e), e.exit_code) from None
    from ..protocol.config import LoginConfig
    from ..transport.iface import iface_initiator_name
    from ..transport.probe import probe as do_probe
    ini = initiator(args, o.warn)  # a node login's name and alias, as iscsid's (kernel_session)
    try:
        cfg = LoginConfig.from_node(values, iface_initiator_name(values) or ini.name,
                                    initiator_alias=ini.login_alias)
    except ValueError as e:  # CHAP half set, as a login refuses it
        raise E.CliError(str(e), E.INVAL) from None
    res = do_probe(p.address, p.port, cfg, timeout=cfg.login_timeout, warn=o.warn,
                   iface=values)  # through the record's iface, as its session would go
    if o.json:
        o.emit_json(res.to_json())
    else:
        from .output import probe_lines
        o.lines(probe_lines(res))
    return E.SUCCESS
