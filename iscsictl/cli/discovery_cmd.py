"""``-m discovery`` and ``-m discoverydb``: SendTargets discovery and discovery records.

* ``-m discovery`` (or discoverydb) alone: ``ip:port via sendtargets`` per record (``-P 1``:
  the SENDTARGETS / iSNS / STATIC / FIRMWARE tree).
* ``-m discovery -t st -p PORTAL [-I iface...] [-o op...]``: discover now.  The discovery
  record is created from iscsid.conf defaults if missing (kept if present: its CHAP and
  timeouts apply).  Default op NEW|DELETE|UPDATE: found records are added/updated and records
  of the same source no longer reported are deleted; ``-o nonpersistent`` alone writes
  nothing (beside ``-o new``/``delete``/``update``, only the discovery record).
  Prints ``ip:port,tpgt iqn`` per record (``-P 1``: tree).  Nothing found: ``No portals
  found`` (21).  One exchange per iface (each ``-I``; without ``-I`` the DB's software-iSCSI
  ifaces, else ``default``), through the iface's network device (iface.hwaddress or
  iface.net_ifacename) with its iface.initiatorname; records are made per iface.
* ``-m discoverydb -t st -p PORTAL -o new|delete|update|show``, and ``-D`` to discover with
  the stored record (created from the defaults if absent, as iscsiadm).
* ``-m discovery -t fw`` (``-m discoverydb -t fw -D``): node records for the boot
  firmware's targets (see :func:`discover_firmware`).
* ``-l`` with a discovery: then log in to every record it found (through iscsictld, as
  ``-m node -l``); ``-m discovery -p PORTAL -l`` without ``-t`` discovers with the stored
  record.  The exit code is the first failure's, discovery or login.
"""

from __future__ import annotations

import contextlib

from . import errors as E
from ._common import ensure_ifaces, open_db, parse_portal_arg
from .output import node_json, record_json, tree_lines

_TYPES = {"sendtargets": "sendtargets", "st": "sendtargets", "isns": "isns", "fw": "fw",
          "slp": "slp"}


def _did(args):  # type: ignore[no-untyped-def]
    from ..db.schema import ISNS_DEFAULT_PORT
    from ..db.store import DiscoveryID
    # discovery's -p alone: a SendTargets record; an empty -t (a variable not set) is none
    # (before, it was a SendTargets one, which -o delete took with its nodes)
    t = _TYPES.get("sendtargets" if args.type is None else args.type)
    if t is None:
        raise E.CliError(f"discovery type '{args.type}' is not supported "
                         "(sendtargets | st | isns | fw)", E.INVAL)  # iscsiadm's code for it
    if t == "slp":  # iscsiadm's words and code
        raise E.CliError("SLP discovery is not fully implemented yet.", E.INVAL)
    if not args.portal:
        raise E.CliError("Please specify portal as <ipaddr>[:<ipport>]", E.INVAL)  # iscsiadm's
    p = parse_portal_arg(args.portal,  # a tag (copied from a listing) is ignored, as iscsiadm
                         default_port=ISNS_DEFAULT_PORT if t == "isns" else None)
    # keyed by the address as given, a host name too (iscsiadm's drec.address): it is
    # resolved at each connect, so a rediscovery follows the name to a new address
    return DiscoveryID(t, p.address, p.port), p


def run(args, o, mode: str) -> int:
    ops = args.op or []
    for x in ops:
        if x not in ("new", "delete", "update", "show", "nonpersistent"):
            raise E.CliError(f"Invalid operation '{x}'", E.INVAL)
    if _TYPES.get(args.type or "") == "fw":
        if mode == "discoverydb" and not args.discover:
            raise E.CliError("Invalid command. Possibly missing --discover argument.", E.INVAL)
        return discover_firmware(args, o, ops)
    if args.type is None and args.portal is None:
        if any(x != "show" for x in ops):  # as iscsiadm: no record named, nothing to change
            raise E.CliError("Invalid operation. Operation not supported."
                             if mode == "discoverydb" else "Invalid operation.", E.INVAL)
        return listing(args, o)
    if args.type is None:
        if mode == "discovery":  # -p alone: the stored record
            return stored_record_op(args, o, ops)
        # discoverydb names its record by type and portal (exec_disc2_op's default case):
        # never a SendTargets one by default, which -o delete would take with its nodes
        raise E.CliError("Invalid command. Possibly missing discovery --type." if ops else
                         "Invalid command. Portal not needed or Possibly missing discovery "
                         "--type.", E.INVAL)
    if mode == "discoverydb" and not args.discover:  # -l alone discovers nothing either
        return discoverydb_op(args, o, ops)
    return discover(args, o, ops, from_db=(mode == "discoverydb"))


def stored_record_op(args, o, ops) -> int:  # type: ignore[no-untyped-def]
    """``-m discovery -p P`` without ``-t`` (iscsiadm's exec_disc_op): ``-D``/``-l``
    discover with the stored SendTargets record, no op or ``show`` shows it, ``delete``
    deletes it; a missing record is ``Discovery record [ip,port] not found!`` (7)."""
    if args.discover or args.login:
        return discover(args, o, ops, from_db=True, missing_code=E.INVAL)
    op = _exact_op(ops)  # the -o given together, as one: several are none of these
    if op in ("new", "update"):
        raise E.CliError("Operations new and update for discovery mode is not supported. "
                         "Use discoverydb mode.", E.INVAL)
    if op not in ("show", "delete"):
        raise E.CliError("Invalid operation.", E.INVAL)
    return discoverydb_op(args, o, [op], missing_code=E.INVAL)


def _exact_op(ops: list[str]) -> str | None:
    """The one operation the ``-o`` given make together (iscsiadm or's them into a mask and
    compares it: ``op == OP_DELETE``), ``show`` for none, None for several (``-o delete
    -o new`` is no delete: before, the first was acted on, and deleted the record and its
    nodes)."""
    from ._common import OPS, op_mask
    mask = op_mask(ops)
    return "show" if not mask else next((n for n, bit in OPS.items() if bit == mask), None)


def _not_found(did, code: int) -> E.CliError:
    """iscsiadm says it in two ways: discoverydb ``... not found.`` (6), discovery
    without ``-t`` ``... not found!`` (7)."""
    return E.CliError(f"Discovery record [{did.address},{did.port}] not found"
                      f"{'!' if code == E.INVAL else '.'}", code)


# ---- listing ---------------------------------------------------------------------------
def listing(args, o) -> int:
    db = open_db(args, o)
    dids = db.list_discovery()
    if args.print is not None and args.print >= 1:
        sections, found = _sections(db, dids)
        if o.json:  # the tree's content: static and firmware records too
            o.emit_json([{"type": kind, "address": d.address if d else None,
                          "port": d.port if d else None,
                          "nodes": [node_json(n) for n in nids]} for kind, d, nids in sections])
        else:
            o.lines(_tree(sections))
        return E.SUCCESS if found else E.NO_OBJS_FOUND  # the tree is printed either way
    if o.json:
        o.emit_json([{"type": d.type, "address": d.address, "port": d.port,
                      "nodes": [node_json(n) for n in _linked_nodes(db, d)]} for d in dids])
        return E.SUCCESS if dids else E.NO_OBJS_FOUND
    if not dids:
        raise E.CliError("", E.NO_OBJS_FOUND)  # iscsiadm says nothing here
    o.lines(d.listing() for d in dids)
    return E.SUCCESS


def _grouped(nids) -> list[str]:
    """iscsiadm's discovery tree: Target on change, Portal on change, an Iface Name line for
    every record."""
    out, last_t, last_p = [], None, None
    for n in nids:
        if n.target != last_t:
            out.append(f"Target: {n.target}")
            last_t, last_p = n.target, None
        if (n.address, n.port, n.tpgt) != last_p:
            out.append(f"\tPortal: {n.portal},{n.tpgt}")
            last_p = (n.address, n.port, n.tpgt)
        out.append(f"\t\tIface Name: {n.iface}")
    return out


def _sections(db, dids) -> tuple[list[tuple[str, object, list]], int]:
    """``-m discovery -P 1``'s content: (sections, how many things it found: discovery
    records of the first two kinds, node records of the last two; iscsiadm's
    idbm_print_all_discovery, whose 0 is exit 21).  A section is (type, the discovery
    record or None, its node records): each SendTargets then iSNS record, the records a
    ``-m discovery -t isns`` linked from isns/ itself when there is no iSNS record (None),
    then the static and the firmware records (None).  iscsiadm walks directories in
    readdir order; we sort."""
    from ..db.errors import DBError

    sections: list[tuple[str, object, list]] = []
    found = 0
    # old-style records (tag -1) have no links: listed by their discovery fields, as
    # iscsiadm lists every record (under its discovery record, or STATIC)
    unlinked: dict = {}
    for n in db.list_nodes():
        if n.legacy:
            try:
                v = db.read_node(n).values
                source = (v["node.discovery_type"], v["node.discovery_address"],
                          v["node.discovery_port"])
            except DBError:  # unreadable: listed as static, as before
                source = ("static", "", 0)
            unlinked.setdefault(source, []).append(n)
    for dtype in ("sendtargets", "isns"):
        section = [d for d in dids if d.type == dtype]
        kind = "send_targets" if dtype == "sendtargets" else "isns"
        for d in section:
            sections.append((dtype, d, sorted(_linked_nodes(db, d) +
                                              unlinked.pop((kind, d.address, d.port), []))))
        found += len(section)
        if not section and dtype == "isns":
            # no iSNS server record: the records a -m discovery -t isns linked from isns/
            # itself, as iscsiadm falls back to (its pre-2.0-872 layout)
            nids = _linked(db, "isns")
            if nids:
                sections.append((dtype, None, nids))
            found += len(nids)
    for dtype in ("static", "fw"):
        nids = _linked(db, dtype)
        if dtype == "static":  # old-style records of no discovery (iscsiadm: by type)
            nids = sorted(nids + [n for (kind, _, _), group in unlinked.items()
                                  if kind == "static" for n in group])
        sections.append((dtype, None, nids))
        found += len(nids)
    return sections, found


_TITLES = {"sendtargets": "SENDTARGETS:", "isns": "iSNS:", "static": "STATIC:",
           "fw": "FIRMWARE:"}


def _tree(sections) -> list[str]:
    """:func:`_sections` as iscsiadm prints them: each kind's title, then its discovery
    records' addresses and their node records, or "No targets found."."""
    out = []
    for dtype, title in _TITLES.items():
        out.append(title)
        mine = [(d, nids) for kind, d, nids in sections if kind == dtype]
        for d, nids in mine:
            if d is not None:
                out.append(f"DiscoveryAddress: {d.address},{d.port}")
            out.extend(_grouped(nids))
        if not any(d is not None or nids for d, nids in mine):
            out.append("No targets found.")
    return out


def _linked_nodes(db, did) -> list:
    """The node records a discovery record links to, without links whose record is gone
    (removed by hand): iscsiadm's listing leaves those out too."""
    return [n for n in db.discovery_nodes(did) if db.node_exists(n)]


def _linked(db, subdir: str) -> list:
    import os
    from ..db.store import _parse_link_name
    d = os.path.join(db.db_root, subdir)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return []
    return sorted(n for n in (_parse_link_name(x) for x in names)
                  if n is not None and db.node_exists(n))


# ---- discoverydb -o ... -----------------------------------------------------------------
def discoverydb_op(args, o, ops, missing_code: int = E.IDBM) -> int:
    from ..db.errors import CorruptRecord, RecordNotFound
    from ._common import OPS, op_mask
    did, p = _did(args)
    db = open_db(args, o)
    # exec_discover: any -o new makes the record; else each op alone (do_db_op)
    op = "new" if op_mask(ops) & OPS["new"] else _exact_op(ops)
    try:
        if op not in ("new", "show"):
            try:
                db.read_discovery(did)  # a missing record first: "not found" (6)
            except CorruptRecord:  # a damaged one can still be deleted, as a node record
                if op != "delete":
                    raise
        if op == "new":
            existed = db.discovery_exists(did)
            db.create_discovery(did)
            if existed:  # as iscsiadm's, without a word: its CHAP gone unseen
                o.error(f"discovery record [{did.address},{did.port}] existed: made anew from "
                        "iscsid.conf and the defaults, its settings (CHAP included) not kept")
            if o.json:
                o.emit_json({"added": {"address": did.address, "port": did.port}})
            else:
                o.lines([f"New discovery record for [{did.address},{did.port}] added."])
        elif op == "delete":
            deleted = db.delete_discovery(did)
            if o.json:
                o.emit_json({"deleted": [node_json(n) for n in deleted]})
        elif op == "update":
            updates = dict(args.params or ())  # every -n/-v pair, as iscsiadm
            if not updates:
                raise E.CliError("-o update needs -n name and -v value", E.INVAL)
            db.update_discovery_many(did, updates)
            if o.json:  # as the other writes: what was written
                o.emit_json({"updated": {"type": did.type, "address": did.address,
                                         "port": did.port, "keys": list(updates)}})
        elif op == "show":
            from ..db.record import format_record
            rec = db.read_discovery(did)
            if o.json:
                o.emit_json(record_json(rec, bool(args.show)))
            else:
                o.text(format_record(rec, show_secrets=bool(args.show), version=db.version))
        else:  # several together, nonpersistent (-D's), apply ...: iscsiadm's do_db_op
            raise E.CliError("Operation is not supported.", E.INVAL)
    except RecordNotFound as e:
        raise _not_found(did, missing_code) from e
    return E.SUCCESS


# ---- discover ----------------------------------------------------------------------------
def discover(args, o, ops, from_db: bool, missing_code: int = E.IDBM) -> int:
    """Discover and write the records (iscsiadm's exec_discover, do_software_sendtargets
    and do_isns).

    ``from_db``: with the stored discovery record; a missing one is created from the
    defaults for ``-m discoverydb -D`` (as iscsiadm does), "not found!" (``missing_code``
    7) for ``-m discovery -p`` without ``-t``; a damaged one (empty, cut short) is made
    again from the defaults, with a warning; one over 1 MiB, which iscsiadm reads, fails
    the discovery (6).  ``-m discovery -t isns`` stores no record (as
    iscsiadm: its node records are then linked from ``isns/`` itself).  One exchange per
    iface: SendTargets through that iface's network device and with its initiator name;
    iSNS once per initiator name.  Any failure stops the discovery before a record is
    written (iscsiadm's all-or-nothing)."""
    from ..db.errors import CorruptRecord, RecordNotFound, RecordTooLarge
    did, p = _did(args)
    db = open_db(args, o)
    persistent = "nonpersistent" not in ops

    def discovery_record(defer: bool = False):  # -> (record, _Deferred write or None)
        try:  # (one iscsiadm was rewriting in place is read again, whole: read_discovery)
            return db.read_discovery(did), None
        except RecordTooLarge:  # iscsiadm reads it: kept, its settings (CHAP) not lost
            raise
        except CorruptRecord as e:
            # empty or cut short (iscsiadm writes it in place, unsynced): made again from
            # the defaults, as a damaged node record is, not a failure of each discovery
            db.warn(f"{e}: {'recreated from' if persistent else 'using'} defaults")
        except RecordNotFound:
            if from_db and missing_code != E.IDBM:
                raise _not_found(did, missing_code) from None
        rec = db.new_discovery_record(did)
        if not persistent:
            return rec, None
        if not defer:
            return db.store_discovery(did, rec), None
        return rec, _Deferred(lambda: db.store_discovery(did, rec))

    # -D: made before the ifaces are read; else written while the target answers the login
    rec, stored = discovery_record() if from_db else (None, None)
    ifaces = _discovery_ifaces(db, args.interface, o)
    usable = _usable_ifaces(ifaces, o)
    if not usable:
        return E.OP_NOT_SUPP if ifaces else E.NO_OBJS_FOUND
    ifaces = usable
    left_out: list[str] = []  # targets the answer named but that could not be taken
    if did.type == "isns":
        found = _isns(args, o, p, ifaces, left_out)
        result = _apply(db, did, found, ops, left_out) if _writes_nodes(ops) else None
        return _report(args, o, db, did, found, result, persistent)
    if rec is None:
        rec, stored = discovery_record(defer=True)

    from ..discovery.sendtargets import DiscoveryPolicy
    from ._common import text_values
    values = text_values(rec)
    policy = DiscoveryPolicy.from_record(values)
    # each exchange's Logout is on the wire while the records are written; awaited after
    with contextlib.ExitStack() as logouts:
        try:
            found = _send_targets(args, o, did, p, ifaces, values, policy, logouts, stored,
                                  left_out)
        finally:  # the record is stored whatever the exchange did; its failure comes first
            if stored is not None:
                stored.result()
        result = _apply(db, did, found, ops, left_out) if _writes_nodes(ops) else None
    return _report(args, o, db, did, found, result, persistent)


def _report(args, o, db, did, found, result,  # type: ignore[no-untyped-def]
            persistent: bool) -> int:
    """A discovery's output (``ip:port,tpgt target`` lines, the ``-P 1`` tree or JSON) and
    its logins with ``-l``; the exit code."""
    from ..db.errors import RecordInUse

    failed = [] if result is None else result.failed
    for nid, err in failed:
        if isinstance(err, RecordInUse):  # a stale record kept: said, as iscsiadm's
            o.error(str(err))  # delete_stale_rec, whose failure is no exit code
            continue
        o.error(f"Could not add/update [tcp:[hw=,ip=,net_if=,iscsi_if={nid.iface}] "
                f"{nid.address},{nid.port},{nid.tpgt} {nid.target}]: {err}")
    if not o.json and args.print == 1:
        o.lines(tree_lines(found, portal_once=True))
    elif not o.json and args.print in (None, 0, -1):  # -P 2 and up: nothing, as
        o.lines(n.flat(signed=True) for n in found)  # iscsiadm's exec_disc_op_on_recs
    rc = E.IDBM if any(not isinstance(e, RecordInUse) for _, e in failed) else E.SUCCESS
    logins: list = []
    if args.login:
        rc = rc or _login_found(db, found, persistent, args, o, logins)
    if o.json:
        o.emit_json({
            "discovery": {"type": did.type, "address": did.address, "port": did.port},
            "persistent": persistent,
            "nodes": [node_json(n) for n in found],
            "added": [node_json(n) for n in result.added] if result else [],
            "updated": [node_json(n) for n in result.updated] if result else [],
            "deleted": [node_json(n) for n in result.deleted] if result else [],
            **({"logins": logins} if args.login else {}),
        })
    return rc


def _isns(args, o, p, ifaces,  # type: ignore[no-untyped-def]
          left_out: list[str] | None = None) -> list:
    """iscsiadm's discovery_isns for each iface: the targets the iSNS server lets the
    iface's initiator name (else the host's) see, as NodeIDs of that iface; one query per
    distinct name (``left_out`` gets the targets named with a portal group left out: a
    rediscovery keeps their records).  Not through the iface's network device: iscsiadm's
    libisns does not bind either, and an iSNS server is often on another network than the
    storage.  A failure is a CliError: 25 (the query), 26 (a registration the server
    wanted and refused)."""
    from ..db.store import NodeID
    from ..discovery.isns import IsnsQueryFailed, query_through_ifaces
    from ._common import initiator_name
    try:
        found = [NodeID(g.target, g.address, g.port, g.tag, ifn) for ifn, g in
                 query_through_ifaces(p.address, p.port, ifaces,
                                      lambda: initiator_name(args, o.warn), log=o.error,
                                      left_out=left_out)]
    except IsnsQueryFailed as e:
        raise E.CliError(f"Could not perform iSNS discovery: {E.err_to_str(e.exit_code)}",
                         e.exit_code, lines=(str(e),)) from None
    if not found:
        raise E.CliError("No portals found", E.NO_OBJS_FOUND)
    return found


class _Deferred:
    """``fn()`` run once: when called (a login's ``meanwhile``), or at the latest by
    :meth:`result`, which returns its value or raises what it raised."""

    __slots__ = ("fn", "outcome")

    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        self.fn, self.outcome = fn, None

    def __call__(self) -> None:
        if self.outcome is None:
            try:
                self.outcome = (True, self.fn())
            except Exception as exc:  # noqa: BLE001 - kept for result()
                self.outcome = (False, exc)

    def result(self):  # type: ignore[no-untyped-def]
        self()
        ok, value = self.outcome
        if not ok:
            raise value
        return value


def _send_targets(args, o, did, p, ifaces, values, policy,  # type: ignore[no-untyped-def]
                  logouts: contextlib.ExitStack, meanwhile: _Deferred | None = None,
                  left_out: list[str] | None = None) -> list:
    """One SendTargets exchange per iface (any failure is a CliError, before a node record
    is written); the NodeIDs found.  Each exchange's Logout waits in ``logouts``;
    ``meanwhile`` runs while the first target answers a Login PDU (see
    :func:`~iscsictl.discovery.sendtargets.discovering`); ``left_out`` gets the targets
    named but left out (or that lost a portal)."""
    from ..db.store import NodeID
    from ..discovery.sendtargets import discovering
    from ..protocol.config import LoginConfig
    from ..transport.errors import RetriesExceeded
    from ..transport.iface import iface_initiator_name
    from ._common import initiator
    found = []
    for ifn, iface in ifaces:
        # the host's name and alias (iscsiadm's from iscsid), or the iface's name alone
        # (discovery.c: "MNC TODO add iface alias")
        name, alias = iface_initiator_name(iface), None
        if not name:
            ini = initiator(args, o.warn)
            name, alias = ini.name, ini.login_alias
        try:
            cfg = LoginConfig.from_discovery(
                values, name, initiator_alias=alias, login_timeout=policy.login_timeout,
                auth_timeout=policy.auth_timeout)
        except ValueError as e:
            raise E.CliError(f"discovery record {did.address},{did.port}: {e}",
                             E.INVAL) from None
        if (iface.get("iface.transport_name") or "tcp") != "tcp":
            found.extend(_send_targets_by_kernel(p, ifn, iface, values, name, left_out))
            continue
        try:
            targets = logouts.enter_context(
                discovering(p.address, p.port, cfg, policy, log=o.error, iface=iface,
                            meanwhile=meanwhile, left_out=left_out))
        except RetriesExceeded as e:
            raise E.CliError(
                f"Could not perform SendTargets discovery: {E.err_to_str(e.exit_code)}",
                e.exit_code, lines=(str(e),)) from None
        except Exception as e:
            code = E.exit_code_of(e)
            raise E.CliError(f"Could not perform SendTargets discovery: {E.err_to_str(code)}",
                             code, lines=(str(e),)) from None
        for t in targets:
            for portal in t.portals:
                tpgt = -1 if portal.tpgt is None else portal.tpgt
                found.append(NodeID(t.name, portal.address, portal.port, tpgt, ifn))
    if not found:
        raise E.CliError("No portals found", E.NO_OBJS_FOUND)
    return found


def _send_targets_by_kernel(p, ifn: str, iface: dict, values: dict,  # type: ignore[no-untyped-def]
                            name: str, left_out: list[str] | None = None) -> list:
    """SendTargets through iface ``ifn``'s kernel connection (iSER), which iscsictld makes
    (it owns the kernel's sessions; iscsiadm makes this discovery session itself); the
    NodeIDs found (``left_out`` gets the targets named but left out).  A failure, or no
    daemon, is a CliError with iscsiadm's code."""
    from ..db.store import NodeID
    from ..ipc import DaemonError
    from .kernel_ops import daemon_client
    try:
        targets = daemon_client().call("sendtargets", None, address=p.address, port=p.port,
                                       values=values, iface=iface, initiator_name=name)
    except DaemonError as e:
        raise E.CliError(f"Could not perform SendTargets discovery: {E.err_to_str(e.code)}",
                         e.code, lines=(str(e),)) from None
    if left_out is not None:
        left_out.extend(t["name"] for t in targets if t.get("left_out"))
    return [NodeID(t["name"], address, port, tpgt, ifn)
            for t in targets for address, port, tpgt in t["portals"]]


def discover_firmware(args, o, ops) -> int:  # type: ignore[no-untyped-def]
    """``-m discovery -t fw``: a node record per firmware target and iface (iscsiadm's
    exec_fw_disc_op): built as for ``-m fw -l`` (fw_cmd.firmware_records), tpgt 1, linked
    under ``fw/``, discovery type ``fw``.  The ifaces: each readable ``-I``; else the
    offload ifaces the firmware describes (written to the DB, as iscsiadm does); else the
    DB's software ifaces, else ``default``.  Ops as for SendTargets (default
    new+delete+update): a record found again takes the firmware's CHAP and initiator name
    and ``node.startup`` onboot (a boot disk's), keeping its other settings; a ``fw/``
    record the firmware no longer describes is deleted.  ``-l`` then logs in to them."""
    from ..db.errors import DBError
    from ..db.store import DiscoveryID, NodeID
    from ..kernel.firmware import offload_iface
    from ..kernel.sysfs import Sysfs
    from ._common import open_db, sysfs_root
    from .fw_cmd import boot_contexts, firmware_records

    db = open_db(args, o)
    persistent = "nonpersistent" not in ops
    ifaces = _discovery_ifaces(db, args.interface, o) if args.interface else []
    contexts = boot_contexts(o)
    if not ifaces:
        sysfs = Sysfs(sysfs_root())
        offload = {v["iface.iscsi_ifacename"]: v for v in
                   (offload_iface(c, sysfs) for c in contexts) if v is not None}
        for name, values in offload.items():
            try:
                if persistent:
                    _write_iface(db, name, values)
            except DBError as e:
                raise E.CliError(f"Could not setup default iface conf for {name}: {e}",
                                 e.exit_code) from None
        ifaces = list(offload.items()) or _discovery_ifaces(db, None, o)
    did = DiscoveryID("fw", "", 0)
    found: dict = {}
    left_out: list[str] = []  # targets the firmware has but no record can hold: not gone
    for _, values in ifaces:
        for rec in firmware_records(db, contexts, values, warn=o.warn,
                                    to_write=_writes_nodes(ops), left_out=left_out):
            rec.values["node.discovery_address"], rec.values["node.discovery_port"] = "", 0
            found.setdefault(NodeID.of(rec), rec)
    if not found:
        raise E.CliError("Could not perform fw discovery: no target the DB can hold",
                         E.NO_OBJS_FOUND)
    rc = E.SUCCESS
    if _writes_nodes(ops):
        rc = _apply_firmware(db, did, found, ops, o, left_out)
    if o.json:
        o.emit_json({"discovery": {"type": "fw"}, "persistent": persistent,
                     "nodes": [node_json(n) for n in found]})
    elif args.print is not None and args.print >= 1:
        o.lines(tree_lines(list(found), portal_once=True))
    else:
        o.lines(n.flat(signed=True) for n in found)
    if args.login:  # each record as the DB now holds it (a rediscovery keeps the user's
        from ..db.errors import DBError, RecordNotFound  # settings: replacement_timeout
        from ._common import initiator_name  # ...), as _login_found; the firmware's where
        from .kernel_ops import login_records  # none is written (-o nonpersistent ...)

        records = []
        for nid, rec in found.items():
            try:
                records.append(db.read_node(nid) if persistent else rec)
            except RecordNotFound:
                records.append(rec)
            except DBError as e:
                o.error(str(e))
                rc = rc or e.exit_code
        rc = login_records(records, lambda: initiator_name(args, o.warn), o,
                           wait=not args.no_wait) or rc if records else rc
    return rc


#: what an offload boot's iface takes from the firmware, set or not: an address or VLAN the
#: firmware no longer has goes (iscsiadm writes the iface again from the boot context:
#: iface_create_ifaces_from_boot_contexts)
_FIRMWARE_IFACE_KEYS = ("iface.hwaddress", "iface.ipaddress", "iface.subnet_mask",
                        "iface.gateway", "iface.vlan_id", "iface.initiatorname")
#: what a firmware record found again takes from the firmware, set or not (the rest stays
#: the user's): credentials, and the iface's address and VLAN, the firmware no longer has
#: go (iscsiadm rewrites the record); the record's copy of its iface's values stays its
#: iface's
_FROM_FIRMWARE = (*_FIRMWARE_IFACE_KEYS, "node.session.auth.username",
                  "node.session.auth.password", "node.session.auth.username_in",
                  "node.session.auth.password_in")


def _writes_nodes(ops) -> bool:
    """Whether a discovery's ops change node records: ``-o nonpersistent`` alone stores
    nothing, but beside ``-o new``/``delete``/``update`` those still apply (iscsiadm keeps
    only the discovery record out: do_software_sendtargets, exec_disc_op_on_recs)."""
    return "nonpersistent" not in ops or bool(set(ops) & {"new", "delete", "update"})


def _wanted(ops) -> set[str]:
    """The record ops of a discovery: new+delete+update when no ``-o`` is given, else those
    given (``-o show`` alone changes no node record: iscsiadm's compat default applies only
    to no op at all)."""
    return set(ops) - {"show"} if ops else {"new", "delete", "update"}


def _apply_firmware(db, did, found: dict, ops, o,  # type: ignore[no-untyped-def]
                    keep_targets=()) -> int:
    """A firmware discovery's records, as iscsiadm's exec_disc_op_on_recs: stale ones
    deleted (``delete``; one a session uses is kept and said, not an error: iscsiadm
    exits 0; not those of ``keep_targets``, which the firmware has but no record could
    hold: left as they are), ones found again updated from the firmware (``update``),
    missing ones written (``new`` or ``update``: idbm_add_node).  The exit code."""
    from ..db.errors import DBError, RecordInUse

    want = _wanted(ops)
    rc = E.SUCCESS
    if "delete" in want:
        from .session_cmd import in_use_error, records_in_use

        in_use = records_in_use()
        for nid in sorted(set(_linked(db, "fw")) - set(found)):
            if nid.target in keep_targets:
                continue
            try:
                if in_use(nid):  # a boot disk's, perhaps: as iscsiadm's delete_node
                    raise in_use_error(nid)
                db.delete_node(nid)
            except DBError as e:
                o.error(str(e))
                if not isinstance(e, RecordInUse):  # (iscsiadm ignores delete_stale_rec's
                    rc = rc or e.exit_code  # result: 0 for a record kept so)
    for nid, rec in found.items():
        try:
            if db.node_exists(nid):
                if "update" in want:
                    updates = {k: rec.values[k] for k in _FROM_FIRMWARE}
                    updates.update({"node.startup": "onboot", "node.conn[0].startup": "onboot"})
                    db.update_node_many(nid, updates, discovery=did)
            elif want & {"new", "update"}:
                db.write_node(rec, create=True)
        except DBError as e:
            o.error(f"Could not add/update [{rec.values.get('iface.transport_name') or 'tcp'}:"
                    f"[hw=,ip=,net_if=,iscsi_if={nid.iface}] {nid.address},{nid.port},"
                    f"{nid.tpgt} {nid.target}]: {e}")
            rc = rc or E.IDBM
    return rc


def _write_iface(db, name: str, values: dict) -> None:  # type: ignore[no-untyped-def]
    """Create or update the iface record an offload boot needs (iface_conf_write); one
    found again takes the firmware's :data:`_FIRMWARE_IFACE_KEYS`, those it no longer sets
    back to their defaults."""
    from ..db import schema
    from ..db.errors import RecordNotFound
    values = {k: v for k, v in values.items() if k != "iface.iscsi_ifacename"}
    try:
        have = db.read_iface(name).values
    except RecordNotFound:
        db.create_iface(name, values)
        return
    block = "ipv6" if ":" in values.get("iface.ipaddress", "") else "ipv4"
    for key in _FIRMWARE_IFACE_KEYS:
        k = schema.IFACE.by_name[key]
        if key not in values and k.block in (None, block):
            values[key] = "" if k.default is None else str(k.default)
    # what changed only: the same hwaddress again on an iface that an iBFT NIC's port
    # also names by net_ifacename is no change of its binding (which an update refuses);
    # its net_ifacename is the one it was made with (one added to an iface bound by its
    # hwaddress, or another device name, is such a change)
    changed = {k: v for k, v in values.items()
               if have.get(k) != v and k != "iface.net_ifacename"}
    if changed:
        db.update_iface_many(name, changed)


def _login_found(db, found, persistent: bool, args, o,  # type: ignore[no-untyped-def]
                 logins: list) -> int:
    """``-l``: log in to what this discovery found, each record as the DB now holds it
    (as built from the defaults with ``-o nonpersistent``, or where the ops wrote none:
    iscsiadm logs in with its records in memory); iscsiadm's do_target_discovery then
    login_portals.  The exit code is the first failure's."""
    from ..db.errors import DBError, RecordNotFound
    from ._common import initiator_name
    from .kernel_ops import login_records

    records, rc = [], E.SUCCESS
    for nid in found:
        try:
            try:
                if not persistent:
                    raise RecordNotFound(nid.flat())
                records.append(db.read_node(nid))
            except RecordNotFound:  # -o nonpersistent, or an op that writes none (-o
                records.append(db.new_node_record(  # delete, -o show): in memory, as
                    nid.target, nid.address, nid.port, nid.tpgt, nid.iface))  # iscsiadm
        except DBError as e:
            o.error(str(e))
            rc = rc or e.exit_code
    if not records:
        return rc or E.NO_OBJS_FOUND
    return login_records(records, lambda: initiator_name(args, o.warn), o, json_results=logins,
                         wait=not args.no_wait) or rc


def _discovery_ifaces(db, names, o) -> list[tuple[str, dict]]:
    """The ifaces a discovery goes through, as (name, iface values): each ``-I`` that can be
    read (one that cannot is reported and left out, as iscsiadm does; none left: exit 21);
    without ``-I``, every software-iSCSI (tcp) iface in the DB other than ``default``, or
    ``default`` when there is none (iscsiadm's idbm_bind_ifaces_to_nodes; iscsiadm binds to
    them only when it can load iscsi_tcp, iscsictl needs no module)."""
    from ..db.errors import DBError
    from ._common import text_values

    out = []
    ensure_ifaces(db, names, o)
    for name in dict.fromkeys(names or ()):
        try:
            out.append((name, text_values(db.read_iface(name))))
        except DBError:
            o.error(f"Could not read iface info for {name}. Make sure an iface config with "
                    f"the file name and iface.iscsi_ifacename {name} is in {db.ifaces_dir}.")
    if names:
        return out
    return [(name, text_values(rec)) for name, rec in db.discovery_ifaces()]


def _usable_ifaces(ifaces, o) -> list[tuple[str, dict]]:
    """The ones of ``ifaces`` whose transport iscsictl makes sessions through (every one
    open-iscsi knows: :func:`iscsictl.kernel.transports.unsupported`); each other one is
    reported and left out.  A SendTargets through any but tcp runs on the
    kernel's connection, through iscsictld (:func:`_send_targets_by_kernel`; open-iscsi's
    iscsi_create_leading_conn); from the host's own stack it would leave by the wrong
    route, with the card's initiator name, and make records its logins refuse."""
    from ..kernel.transports import unsupported

    out = []
    for name, values in ifaces:
        why = unsupported(values.get("iface.transport_name") or "tcp")
        if why is None:
            out.append((name, values))
        else:
            o.error(f"iface {name}: SendTargets discovery: {why} "
                    f"({E.err_to_str(E.OP_NOT_SUPP)})")
    return out


def _apply(db, did, found, ops, keep_targets=()):  # type: ignore[no-untyped-def]
    """Write a discovery result as iscsiadm's ops say (exec_disc_op_on_recs; default
    new+delete+update): ``delete`` removes this source's records no longer found (not
    those of ``keep_targets``: named by the answer but left out of it), ``new``
    creates the records not there yet, ``update`` creates them too and refreshes the ones
    there (their discovery fields: their settings are kept, see the README)."""
    from .session_cmd import records_in_use

    want = _wanted(ops)
    return db.reconcile_discovery(did, found, delete_stale="delete" in want,
                                  in_use=records_in_use(),
                                  create=bool(want & {"new", "update"}),
                                  refresh="update" in want, keep_targets=keep_targets)
