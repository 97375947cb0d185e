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
that cannot be sent, or that is not one in the file (7, nothing sent: iscsiadm sends what
its reader made of it), and 1 for any failure past that, as iscsiadm
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
from ._common import ensure_ifaces, open_db, setup_default_ifaces
from .output import record_json


def _e(v) -> str:
    return str(v) if v not in (None, "") else "<empty>"


def run(args, o, mode: str) -> int:
    ops = list(dict.fromkeys(args.op or []))
    op = ops[0] if len(ops) == 1 else None
    # iscsiadm: -C ping is the one sub-mode here (another is ignored, as -H is but with -o
    # apply|applyall)
    if len(ops) > 1:  # iscsiadm's exec_iface_op switches on the ops' mask: none matches
        raise E.CliError(f"iface mode: one operation at a time (-o {' -o '.join(ops)})",
                         E.INVAL)
    if args.host is not None and op not in APPLY_OPS:  # ignored but for them, yet one
        from ..kernel.sysfs import Sysfs  # that names no host is 7 before anything is
        from ._common import sysfs_root  # done, as iscsiadm's option loop (parse_host_info)
        from .host_cmd import host_option

        host_option(args, Sysfs(sysfs_root()), o)
    db = open_db(args, o)
    setup_default_ifaces(db, o)  # as iscsiadm, on every iface command; and a name that
    ensure_ifaces(db, (args.interface or [])[:1], o)  # is none yet, as iface_conf_read
    if args.interface and len(args.interface) > 1:  # iscsiadm's main: the first, said
        o.error("iface mode only accepts one interface. Using the first one "
                f"{args.interface[0]}.")
        args.interface = args.interface[:1]
    if args.submode == "ping":
        return ping(db, args, o)
    if op in APPLY_OPS:  # ISCSI_UEVENT_SET_IFACE_PARAMS to an offload HBA
        return apply(db, args, o, op)
    if op not in (None, "new", "delete", "update", "show"):
        raise E.CliError(f"Invalid operation '{op}'", E.INVAL)
    names = args.interface or []
    if op in (None, "show"):
        if args.print not in (None, -1, 0, 1):  # with --json too: the same exit code
            raise E.CliError(f"Invalid info level {args.print}. Try 0 - 1.", E.INVAL)
        if args.print == 1 and not o.json:
            return _tree(db, names, o)
    if not names:
        if op == "new":  # iscsiadm's words and code
            raise E.CliError("Could not add interface. No interface passed in.",
                             E.BY_NAME["ISCSI_ERR_SYSFS_LOOKUP"])
        if op not in (None, "show"):
            raise E.CliError(f"iface mode: -o {op} needs -I ifacename", E.INVAL)
        return listing(db, args, o)
    from ..db.errors import CorruptRecord, DBError, RecordExists, RecordNotFound, SpecialIface
    from ..db.schema import BUILTIN_IFACES
    from .session_cmd import in_use_error, records_in_use
    rc = E.SUCCESS
    shown = []
    for name in names:
        updating = name  # the iface a failed update names (its VLAN siblings' too)
        try:
            if op == "new":
                existed = False
                try:
                    db.create_iface(name)
                except RecordExists:  # iscsiadm rewrites it from the defaults (its
                    existed = True  # settings lost), exit 0: kept, the -n/-v applied, 0,
                    o.error(f"interface {name} already exists: kept as it is, not reset "
                            "to the defaults")  # so a provisioning script may run again
                except DBError as e:  # iscsiadm's reason, then its new_fail line
                    raise E.CliError(f"Could not create new interface {name}.", e.exit_code,
                                     lines=[str(e)]) from None
                # iscsiadm's OP_NEW: -n/-v applied to the new iface (iface_param_update,
                # whose failure is said and leaves the iface made, exit 0), then the line
                try:
                    _update(db, name, dict(args.params or ()), o)
                except DBError as e:
                    o.error(f"Could not update iface {name}: {e}")
                o.json or existed or o.lines([f"New interface {name} added"])
            elif op == "delete":
                if name in BUILTIN_IFACES:  # before its records: iscsiadm deletes them all,
                    raise SpecialIface(name, "deleted")  # then refuses (iface_conf_delete)
                try:
                    db.read_iface(name)
                except CorruptRecord as e:  # damaged (by hand): still deleted, not stuck
                    o.warn(f"{e}: deleted all the same")
                in_use = records_in_use()
                busy = [nid for nid in db.list_nodes(iface=name) if in_use(nid)]
                for nid in db.list_nodes(iface=name):  # iscsiadm's delete_node each: the
                    if nid not in busy:  # records no session uses go, the iface stays
                        db.delete_node(nid)
                if busy:
                    for nid in busy:
                        o.error(str(in_use_error(nid)))
                    o.error(f"Could not delete iface {name}: a session uses it")
                    rc = rc or E.BY_NAME["ISCSI_ERR_SESS_EXISTS"]
                    continue
                db.delete_iface(name)
                o.json or o.lines([f"{name} unbound and deleted."])
            elif op == "update":
                updates = dict(args.params or ())  # every -n/-v pair, as iscsiadm
                if not updates:
                    raise E.CliError("-o update needs -n name and -v value", E.INVAL)
                vlan = {k: v for k, v in updates.items() if k.startswith("iface.vlan")}
                port = _same_port(db, name) if vlan else []  # the port as it was
                rc = _update(db, name, updates, o) or rc
                for updating in port:  # (named by a failure's message)
                    rc = _update(db, updating, vlan, o) or rc
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
            if op == "update":  # iscsiadm's iface_param_update says it too (and exits 0)
                o.error(f"Could not update iface {updating}: {E.err_to_str(e.exit_code)}")
            rc = e.exit_code
    if o.json:
        o.emit_json(shown if op in (None, "show") else {"op": op, "ifaces": names, "rc": rc})
    return rc


def _update(db, name: str, updates: dict[str, str], o) -> int:  # type: ignore[no-untyped-def]
    """``updates`` to iface ``name`` and the node records bound to it, which hold a copy
    of its iface.* values that a login reads (iscsiadm's iface_param_update:
    __for_each_matched_rec); the first failure's exit code, else 0.  Raises DBError for
    the iface itself."""
    from ..db.errors import DBError
    from .session_cmd import iface_in_use

    rc = E.SUCCESS
    if updates and iface_in_use(name):  # iscsiadm's warning, word for word
        o.warn("Updating iface while iscsi sessions are using it. You must logout the "
               "running sessions then log back in for the new settings to take affect.")
    db.update_iface_many(name, updates)
    for nid, res in db.update_nodes(db.list_nodes(iface=name), updates, iface_copy=True):
        if isinstance(res, DBError):
            o.error(f"Could not update {nid.flat()}: {res}")
            rc = rc or res.exit_code
    o.json or o.lines([f"{name} updated."])
    return rc


def _same_port(db, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The other ifaces of ``name``'s port when its transport's ifaces share the port's
    VLAN (be2iscsi: the template's sync_vlan_settings): the same transport, hwaddress and
    iface_num (iscsiadm's update_sync_params, against the iface as read before the
    update), which take its VLAN changes too."""
    from ..db.errors import DBError
    from ..kernel.transports import TRANSPORTS

    def port_of(rec) -> tuple:  # type: ignore[no-untyped-def]
        return tuple(rec.get(k) for k in ("iface.transport_name", "iface.hwaddress",
                                          "iface.iface_num"))

    rec = db.read_iface(name)
    transport = TRANSPORTS.get(rec.get("iface.transport_name") or "")
    if transport is None or not transport.sync_vlan_settings:
        return []
    out = []
    for other in db.list_ifaces():
        if other == name:
            continue
        try:
            if port_of(db.read_iface(other)) == port_of(rec):
                out.append(other)
        except DBError:
            continue
    return out


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
    else:  # those the flat listing shows: a file that is no iface said and left out
        names = []
        for name in db.list_ifaces():
            try:
                db.read_iface(name)
                names.append(name)
            except DBError as e:
                o.error(str(e))
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


def _read_for_driver(db, name: str):  # type: ignore[no-untyped-def]
    """iface ``name``'s record for a command that sends it to an HBA's driver (apply,
    ping), and the keys whose value in its file is not one (:class:`~iscsictl.db.record.
    BadValue`): the reader, which says so, takes the key's default instead (an
    ``iface.iface_num`` of ``-1`` became 0, another interface of the port, and the command
    said it had succeeded); the caller refuses such an iface if it would send it.  A
    number read as iscsiadm's strtoul reads it (``9000 bytes``) is no bad value.  DBError
    as :meth:`NodeDB.read_iface`'s."""
    from ..db.record import BadValue

    seen = len(db.warnings)
    rec = db.read_iface(name)
    return rec, [w.key for w in db.warnings[seen:] if isinstance(w, BadValue)]


def _refuse_bad(what: str, records: list, bad: dict[str, list[str]]) -> None:
    """CliError 7 (nothing sent) when one of ``records`` (those to be sent) has a value
    that is not one (``bad``: iface name -> its keys)."""
    for values in records:
        keys = bad.get(values["iface.iscsi_ifacename"])
        if keys:
            raise E.CliError(f"{what}: iface {values['iface.iscsi_ifacename']}: the value of "
                             f"{keys[0]} is not one (said above); nothing sent", E.INVAL)


def apply(db, args, o, op: str) -> int:
    """``-o apply`` (``-I``: that iface) and ``-o applyall`` (``-H``: every iface of that
    host): their network settings to the HBA's driver in one SET_IFACE_PARAMS
    (:mod:`iscsictl.kernel.net_config`; usr/iscsiadm.c exec_iface_op, iface_apply_net_config)."""
    from ..db.errors import DBError
    from ..kernel.net_config import NetConfigError, apply_order, attached, net_config
    from ..kernel.sysfs import Sysfs
    from ._common import sysfs_root
    from .host_cmd import host_option

    sysfs = Sysfs(sysfs_root())
    host_no = host_option(args, sysfs, o)
    bad: dict[str, list[str]] = {}  # iface name -> its keys whose values are not ones
    if op == "apply":
        names = args.interface or []
        if not names:
            raise E.CliError("Apply requires iface.", E.INVAL)
        if len(names) > 1:
            o.error(f"iface mode only accepts one interface. Using the first one {names[0]}.")
        name = names[0]
        try:
            rec, bad[name] = _read_for_driver(db, name)
            records = [rec.values]
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
                rec, bad[name] = _read_for_driver(db, name)
                records.append(rec.values)
            except DBError as e:  # iscsiadm leaves it out too
                o.error(f"Could not read iface {name}: {e}")
        done = f"Applied settings to ifaces attached to host{host_no}."
    try:
        if op == "applyall":
            records = apply_order(attached(records, host.hwaddress))
        _refuse_bad("Could not apply net configuration", records, bad)  # (another host's
        entries = net_config(records)  # bad iface is none of this one's concern)
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

    from ..db.schema import iface_bound_by
    from ..netlink import IscsiNetlinkError
    from .hba import describe, hba_netlink, kernel_errno, transport_handle

    fail = "Could not apply net configuration: "
    try:
        if host_no is None:
            bound = iface_bound_by(values)
            host_no = sysfs.bound_host(values)
            transport = values.get("iface.transport_name") or "tcp"
            if host_no is None:
                said = next((f"{k.partition('.')[2]} {v}" for k, v in bound.items()),
                            "hwaddress")
                raise E.CliError(
                    f"no {'iSCSI' if transport == 'tcp' else transport} host has the {said} "
                    f"of iface {values['iface.iscsi_ifacename']}"
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


#: iscsiadm's words for ``r.ping_comp.status`` 1-9 (usr/iscsiadm.c iscsi_ping_stat_strs),
#: in the order of the kernel's enum iscsi_ping_status_code (0 is success)
PING_STATUS_TEXT = (
    None, "firmware disabled", "invalid IP address", "invalid link local IPv6 address",
    "timed out", "invalid destination address", "oversized packet", "ICMP error",
    "Max request exceeded", "No ARP response received",
)
#: seconds iscsiadm waits for a ping's completion (usr/netlink.c kexec_ping)
PING_TIMEOUT = 30.0


def _c_int(text: str | None, default: int) -> int:
    """An option as iscsiadm's ``atoi`` reads it (into an int)."""
    from ..lexical import c_atoi

    if text is None:
        return default
    n = c_atoi(text) & 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def ping(db, args, o) -> int:  # type: ignore[no-untyped-def]
    """``-C ping -I NAME -a ADDRESS [-b BYTES] [-c COUNT] [-i SECONDS]``: the HBA the iface
    is bound to pings ADDRESS COUNT times (default 1), BYTES of payload (32), SECONDS apart
    (0), as iscsiadm 2.1.8's exec_ping_op: one ISCSI_UEVENT_PING each (``iface_num`` and the
    family of the iface, a random ``pid``, the address resolved as a sockaddr), then the
    ISCSI_KEVENT_PING_COMP with that ``pid``, waited for 30 s.  Prints ``Ping N completed``
    or ``Ping N failed: <why>`` (the firmware's status: :data:`PING_STATUS_TEXT`, or the
    request's error).  Exit code: the last ping's request (27 when the driver cannot ping,
    7 when it refuses the request, 8 when no completion came, 1 when the netlink socket
    cannot be opened: each ping failed), not its status, as iscsiadm.
    Refused before any ping (7): no ``-I``, no ``-a``, a size or count under 1, a negative
    interval, a transport not loaded, an iface bound to no host, an address that does not
    resolve; an iface that cannot be read is 6.  Deliberate differences: host 0 is a host
    (iscsiadm says "Can't find host_no."), an iface bound to no host is refused (iscsiadm
    sends the ping to host 4294967295: iscsi_sysfs_get_host_no_from_hwinfo's -1); a status the
    table does not know is said by number (iscsiadm prints ``(null)``); one netlink socket
    for all the pings (iscsiadm opens one per ping).

    bnx2i and qedi ping through iscsiuio instead (usr/transport.c ``exec_ping =
    uip_broadcast_ping_req``): :func:`_uip_pings`."""
    import contextlib
    import errno
    import random
    import socket
    import time

    from ..db.errors import DBError
    from ..db.schema import iface_is_ipv6_by_address
    from ..kernel.sysfs import Sysfs
    from ..kernel.transports import TRANSPORTS
    from ..netlink import IscsiNetlinkError
    from ..netlink.enums import ISCSI_IFACE_TYPE_IPV4, ISCSI_IFACE_TYPE_IPV6
    from ..netlink.events import PingComp
    from ._common import sysfs_root, text_values
    from .hba import describe, hba_netlink, kernel_errno, transport_handle

    names = args.interface or []
    if not names:
        raise E.CliError("Ping requires iface.", E.INVAL)
    if len(names) > 1:
        o.error(f"iface mode only accepts one interface. Using the first one {names[0]}.")
    name = names[0]
    if not args.ip:
        raise E.CliError("Ping requires destination ipaddress.", E.INVAL)
    size, count = _c_int(args.packetsize, 32), _c_int(args.count, 1)
    interval = _c_int(args.interval, 0)
    if size <= 0:
        raise E.CliError(f"Invalid packet size: {size}.", E.INVAL)
    if count <= 0:
        raise E.CliError(f"Invalid number of packets to transmit: {count}.", E.INVAL)
    if interval < 0:
        raise E.CliError(f"Invalid timing interval: {interval}.", E.INVAL)
    try:
        rec, bad = _read_for_driver(db, name)
    except DBError as e:
        raise E.CliError(f"Could not read iface {name} ({E.IDBM}): {e}", E.IDBM) from None
    _refuse_bad("Could not ping", [rec.values], {name: bad})
    values = text_values(rec)
    iface_type = ISCSI_IFACE_TYPE_IPV6 if iface_is_ipv6_by_address(values) else (
        ISCSI_IFACE_TYPE_IPV4)
    transport = values.get("iface.transport_name") or "tcp"
    sysfs = Sysfs(sysfs_root())
    if sysfs.transport(transport) is None:
        raise E.CliError(f"Can't find transport {transport}.", E.INVAL)
    host_no = sysfs.bound_host(values)
    if host_no is None:
        raise E.CliError(f"Can't find host_no: no {'iSCSI' if transport == 'tcp' else transport} "
                         f"host has the hardware address, net device or address of iface "
                         f"{name}.", E.INVAL)
    try:
        found = socket.getaddrinfo(args.ip, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        address = str(found[0][4][0]).partition("%")[0]
        scope = found[0][4][3] if len(found[0][4]) == 4 else 0  # a link-local's zone:
        sent = f"{address}%{scope}" if scope else address  # its sockaddr's, as iscsiadm's
    except (OSError, UnicodeError, ValueError) as e:
        raise E.CliError(f"Invalid IP address: cannot resolve host {args.ip} ({e}).",
                         E.INVAL) from None
    t = TRANSPORTS.get(transport)
    if t is not None and t.iscsiuio:
        return _uip_pings(o, sysfs, values, host_no, address, size, count, interval, name)
    handle = transport_handle(sysfs, transport)
    iface_num = int(values.get("iface.iface_num") or 0)
    rc, pings = E.SUCCESS, []
    with contextlib.ExitStack() as stack:
        try:
            nl = stack.enter_context(hba_netlink())
        except E.CliError as e:  # each ping failed, as iscsiadm's kexec_ping fails each
            o.error(str(e))
            pings = [_ping_said(o, seq, E.ERR, None) for seq in range(1, count + 1)]
            return _pings_done(o, name, host_no, address, size, pings, E.ERR)
        for seq in range(1, count + 1):
            pid, status = random.getrandbits(31), None
            try:
                nl.ping(handle, host_no, iface_num, iface_type, size, pid, sent)
            except IscsiNetlinkError as e:
                err = kernel_errno(e)
                rc = {errno.ENOSYS: E.OP_NOT_SUPP, errno.EINVAL: E.INVAL}.get(err, E.ERR)
                o.error(f"ping {seq} from host{host_no} failed: {describe(e)}")
            else:
                rc = E.TRANS_TIMEOUT
                deadline = time.monotonic() + PING_TIMEOUT
                while (left := deadline - time.monotonic()) > 0:
                    ev = nl.next_event(left)
                    if isinstance(ev, PingComp) and ev.pid == pid:
                        rc, status = E.SUCCESS, int(ev.status)
                        break
            pings.append(_ping_said(o, seq, rc, status))
            if seq < count:
                time.sleep(interval)
    return _pings_done(o, name, host_no, address, size, pings, rc)


def _ping_said(o, seq: int, rc: int, status: int | None) -> dict:  # type: ignore[no-untyped-def]
    """``Ping N completed`` / ``Ping N failed: <why>`` printed as iscsiadm's exec_ping_op
    (the status when there is one, else the request's error); its JSON row returned."""
    import os

    if rc == E.SUCCESS and not status:
        said = "completed"
    elif status:
        if status < 0:  # iscsiuio's own failure, a negative errno (iscsid_ipc.c parse_iface)
            why = f"iscsiuio: {os.strerror(-status)}"
        elif status < len(PING_STATUS_TEXT):
            why = str(PING_STATUS_TEXT[status])
        else:
            why = f"unknown ping status {status}"
        said = f"failed: {why}"
    else:
        said = f"failed: {E.err_to_str(rc)}"
    o.json or o.lines([f"Ping {seq} {said}"])
    return {"ping": seq, "rc": rc, "status": status, "result": said}


def _pings_done(o, name: str, host_no: int, address: str, size: int,  # type: ignore[no-untyped-def]
                pings: list[dict], rc: int) -> int:
    if o.json:
        o.emit_json({"op": "ping", "iface": name, "host_no": host_no, "address": address,
                     "size": size, "pings": pings, "rc": rc})
    return rc


def _uip_pings(o, sysfs, values: dict, host_no: int, address: str,  # type: ignore[no-untyped-def]
               size: int, count: int, interval: int, name: str) -> int:
    """The pings of an iface whose HBA's network is iscsiuio's (bnx2i, qedi), as iscsiadm
    2.1.8's exec_ping_op: each ping first asks iscsiuio to set up the port
    (ISCSID_UIP_IPC_GET_IFACE, the iface's netdev the host's when it names none; a NIC
    still starting is no error), then to ping (ISCSID_UIP_IPC_PING), waited for
    :data:`PING_TIMEOUT` s (iscsiadm waits as long as iscsiuio takes).  Its status is
    iscsiuio's ``ping_sc``.  Exit code: the last ping's, as iscsiadm's: 20 when iscsiuio
    is not running, 29 (ISCSI_ERR_AGAIN) while the NIC is initializing, 1 for a failed
    ping or a broken exchange, 8 when no answer comes.  Where iscsiadm prints ``(null)``
    for a ``ping_sc`` that is iscsiuio's own negative errno, iscsictl says the error."""
    import errno
    import time

    from ..kernel import iscsiuio

    values = iscsiuio.with_host_netdev(values, sysfs, host_no) or values
    setup = iscsiuio.get_iface_request(values)
    request = iscsiuio.ping_request(values, address, size)
    again = E.BY_NAME["ISCSI_ERR_AGAIN"]
    rc, pings = E.SUCCESS, []
    for seq in range(1, count + 1):
        status = None
        try:
            try:
                iscsiuio.exchange(setup, iscsiuio.GET_IFACE_TIMEOUT)
            except iscsiuio.UipError as e:  # no answer in time is "not ready": ping anyway
                if isinstance(e, iscsiuio.UipNotRunning) or e.errno != errno.ETIMEDOUT:
                    raise
            answer = iscsiuio.exchange(request, PING_TIMEOUT)
        except iscsiuio.UipNotRunning as e:
            o.error(f"{e.strerror}: {values.get('iface.transport_name')} pings are sent by it")
            rc = E.ISCSID_NOTCONN
        except iscsiuio.UipError as e:
            o.error(f"ping {seq} through iscsiuio: {e.strerror}")
            rc = E.TRANS_TIMEOUT if e.errno == errno.ETIMEDOUT else E.ERR
        else:
            status = answer.ping_sc
            rc = again if answer.initializing else E.ERR if status else E.SUCCESS
        pings.append(_ping_said(o, seq, rc, status))
        if seq < count:
            time.sleep(interval)
    return _pings_done(o, name, host_no, address, size, pings, rc)
