"""``-m session``: list sessions at print levels 0-3, and ``-r SID`` with
``-u`` (logout), ``-R`` (rescan), ``-s`` (statistics).

``-r SID`` with print level 0 (the default), or with ``-o show|update|delete|new``, works
on that session's node record, as iscsiadm does (usr/iscsiadm.c: it drops down to node mode
with the session's target name, persistent portal and iface): the record is shown, updated
or deleted, ``new`` logs in one more session with it (whatever node.session.nr_sessions
says), and a session whose record is gone gives ``No records found`` (21).  ``--json``
without ``-o`` keeps the session object.

The listing reads sysfs (``ISCSICTL_SYSFS_ROOT`` for tests) in open-iscsi
2.1.8's exact format (usr/session_info.c): sessions in ``alphasort`` order of
their sysfs names, ``Target:`` printed on change, the connection and internal
states from iscsictld when it runs (``Unknown`` otherwise, as iscsiadm prints
without iscsid).  ``--json`` gives the same data as objects.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Callable

from . import errors as E

EMPTY = "<empty>"


@dataclass
class SessionView:
    """Everything the listing prints for one session."""

    sid: int
    transport: str
    targetname: str
    tpgt: int
    address: str  # persistent
    port: int
    current_address: str
    current_port: int
    flash: bool
    iface: dict[str, str]
    state: str
    conn_state: str
    internal_state: str
    timeouts: dict[str, int | None]
    chap: dict[str, str | None]
    negotiated: dict[str, Any]
    host_no: int | None
    host_state: str | None
    devices: list[dict[str, Any]]


def _sysfs():
    from ..kernel.sysfs import Sysfs

    from ._common import sysfs_root

    return Sysfs(sysfs_root())


def existing_sessions() -> dict[tuple[str, str, int, str], int]:
    """How many kernel sessions each (target name, persistent address, port, iface name)
    has, from sysfs."""
    out: dict[tuple[str, str, int, str], int] = {}
    for v in collect(_sysfs(), {}, level=0, only=_SELECT_ATTRS):
        key = (v.targetname, v.address, v.port, v.iface["name"])
        out[key] = out.get(key, 0) + 1
    return out


def _daemon_states() -> dict[str, dict[str, Any]]:
    from ..ipc import DaemonClient, DaemonError

    try:
        return DaemonClient(timeout=5).call("sessions") or {}
    except DaemonError:
        return {}


def _port(v: int | None) -> int:
    return v if v is not None else -1


def _yn(v: str | None) -> str | None:
    if v is None:
        return None
    return "Yes" if v.strip() in ("1", "Yes") else "No"


#: The sysfs attributes each print level shows (level 3 adds the SCSI devices; --json is
#: level 3); level 0 is also what -u/-R/-s need, level 1 what node logout needs.  Reading
#: every attribute took ~90 files a session: seconds for -m session with 256 sessions.
_L0_SESSION = ("targetname", "tpgt", "creator")
_L0_CONN = ("persistent_address", "persistent_port", "address", "port")
_L1_SESSION = (*_L0_SESSION, "ifacename", "initiatorname", "state")
_L1_HOST = ("netdev", "hwaddress", "ipaddress", "initiatorname")
_L2 = {"session": (*_L1_SESSION, "recovery_tmo", "tgt_reset_tmo", "lu_reset_tmo", "abort_tmo",
                   "username", "password", "username_in", "password_in", "first_burst_len",
                   "max_burst_len", "immediate_data", "initial_r2t", "max_outstanding_r2t"),
       "host": _L1_HOST,
       "connection": (*_L0_CONN, "header_digest", "data_digest", "max_recv_dlength",
                      "max_xmit_dlength")}
#: What selecting sessions by -T/-p/-I needs (node -u/-U/-R/-s): level 0 and the iface name.
_SELECT_ATTRS = {"session": (*_L0_SESSION, "ifacename"), "host": (), "connection": _L0_CONN}
_LEVEL_ATTRS: dict[int, dict[str, tuple[str, ...]]] = {
    0: {"session": _L0_SESSION, "host": (), "connection": _L0_CONN},
    1: {"session": _L1_SESSION, "host": _L1_HOST, "connection": _L0_CONN},
    2: _L2,
    3: _L2,
}


def collect(sysfs, states: dict[str, dict[str, Any]], level: int = 3,  # type: ignore[no-untyped-def]
            sid: int | None = None, only: dict[str, tuple[str, ...]] | None = None,
            connless: bool = False) -> list[SessionView]:
    """The views of every session (or of ``sid`` only), in alphasort order of ``sessionN``,
    with what print ``level`` shows read from sysfs (the rest left unknown); ``only``: the
    attributes to read instead (as in :data:`_LEVEL_ATTRS`).  A session without its
    connection ``connection<sid>:0`` (being set up by a login, or torn down) is left out,
    as libopeniscsiusr's iscsi_sessions_get leaves it; with ``connless`` it is in, its
    portal ``,-1`` (a logout or rescan selects it as iscsiadm's
    iscsi_sysfs_for_each_session does, which needs no connection: one whose teardown a
    crash cut short can be logged out)."""
    only = only or _LEVEL_ATTRS[min(max(level, 0), 3)]
    views: list[SessionView] = []
    sids = sysfs.session_ids()
    if not sids:  # no session: no connection listing either (each login command asks)
        return views
    cids: dict[int, list[int]] = {}
    for s, c in sysfs.connection_ids():  # one listing, not one per session
        cids.setdefault(s, []).append(c)
    for sid in sorted(sids if sid is None else [s for s in sids if s == sid],
                      key=lambda n: f"session{n}"):
        if 0 not in cids.get(sid, ()) and not connless:
            continue
        info = sysfs.session(sid, only["session"])
        if info is None or not info.targetname:  # torn down meanwhile, or not named yet:
            continue  # left out, as libopeniscsiusr (its targetname is required)
        conns = [c for c in (sysfs.connection(sid, cid, only["connection"])
                             for cid in cids.get(sid, ())) if c is not None]
        conn = conns[0] if conns else None
        if conn is None and not connless:  # its connection gone meanwhile: the session
            continue  # goes with it
        host = sysfs.host(info.host_no, only["host"]) if info.host_no is not None else None
        transport = (sysfs.host_transport(info.host_no) if host else None) or EMPTY
        st = states.get(str(sid), {})
        devices = []  # iscsiadm walks the device directories in alphasort order: LUN 10 before 2
        for d in sorted(sysfs.session_devices(sid), key=lambda d: d.hctl) if level >= 3 else ():
            devices.append({"host": d.host, "channel": d.channel, "id": d.target, "lun": d.lun,
                            "disk": d.block[0] if d.block else None, "state": d.state})
        # a connection without its socket (recovery, not bound yet) cannot tell its current
        # address: the persistent one stands in, and the other way round (libopeniscsiusr's
        # _iscsi_session_get)
        address = (conn.persistent_address if conn else None) or ""
        current = (conn.address if conn else None) or address
        port, current_port = (_port(conn.persistent_port if conn else None),
                              _port(conn.port if conn else None))
        if not sysfs.session_exists(sid):  # torn down while it was read: what was read is
            continue  # not a session's (libopeniscsiusr's last read, the host's, fails too)
        views.append(SessionView(
            sid=sid, transport=transport, targetname=info.targetname or "",
            tpgt=info.tpgt if info.tpgt is not None else -1,
            address=address or current, port=port if port != -1 else current_port,
            current_address=current, current_port=current_port if current_port != -1 else port,
            flash=info.creator == -1,
            iface={
                "name": info.ifacename or "default",
                "transport": transport,
                "initiatorname": info.initiatorname or (host.initiatorname if host else None) or "",
                "ipaddress": (host.ipaddress if host else None) or "default",
                "hwaddress": (host.hwaddress if host else None) or "default",
                "netdev": (host.netdev if host else None) or "default",
            },
            state=info.state or "Unknown",
            conn_state=st.get("conn_state", "Unknown"),
            internal_state=st.get("internal_state", "Unknown"),
            timeouts={"recovery": info.recovery_tmo, "target_reset": info.tgt_reset_tmo,
                      "lun_reset": info.lu_reset_tmo, "abort": info.abort_tmo},
            chap={"username": info.username, "password": info.password,
                  "username_in": info.username_in, "password_in": info.password_in},
            negotiated={
                "HeaderDigest": _digest(conn.header_digest if conn else None),
                "DataDigest": _digest(conn.data_digest if conn else None),
                "MaxRecvDataSegmentLength": conn.max_recv_dlength if conn else None,
                "MaxXmitDataSegmentLength": conn.max_xmit_dlength if conn else None,
                "FirstBurstLength": _int(info.params.get("first_burst_len")),
                "MaxBurstLength": _int(info.params.get("max_burst_len")),
                "ImmediateData": _yn(info.params.get("immediate_data")),
                "InitialR2T": _yn(info.params.get("initial_r2t")),
                "MaxOutstandingR2T": _int(info.params.get("max_outstanding_r2t")),
            },
            host_no=info.host_no,
            host_state=sysfs.read(f"class/scsi_host/host{info.host_no}/state")
            if host and level >= 3 else None,
            devices=devices,
        ))
    return views


def _digest(v: str | None) -> str | None:
    """sysfs holds the kernel's int (0 none, else CRC32C); iscsiadm prints the name."""
    if v is None:
        return None
    if v in ("None", "CRC32C"):
        return v
    return "None" if _int(v) == 0 else "CRC32C"


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _hp(addr: str, port: int, tpgt: int) -> str:
    host = addr if "." in addr else f"[{addr}]"
    return f"{host}:{port},{tpgt}"


def _s(v: str | None) -> str:
    return v if v else EMPTY


def flat_lines(views: list[SessionView]) -> list[str]:
    """Print level 0: ``tcp: [1] 10.0.0.1:3260,1 iqn... (non-flash)``."""
    return [f"{v.transport}: [{v.sid}] {_hp(v.address, v.port, v.tpgt)} {v.targetname} "
            f"({'flash' if v.flash else 'non-flash'})" for v in views]


#: What session_info_print_tree shows (open-iscsi 2.1.8 usr/session_info.c's
#: SESSION_INFO_* flags) at each ``-m session`` print level; ``-m host`` has its own mix.
SESSION_LEVEL_FLAGS: dict[int, frozenset[str]] = {
    1: frozenset({"iface", "state"}),
    2: frozenset({"iface", "state", "timeouts", "auth", "params"}),
    3: frozenset({"iface", "state", "timeouts", "auth", "params", "host_devs", "scsi_devs"}),
}


def version_lines(versions: tuple[str | None, str]) -> list[str]:
    """The header of ``-m session -P 3`` and ``-m host -P 4`` (when the module is loaded)."""
    kernel, ours = versions
    return [f"iSCSI Transport Class version {kernel}", f"version {ours}"] if kernel else []


def _listed_iface_name(i: dict) -> str:
    """The iface name iscsiadm prints: a host that has a hardware address set (an iface
    bound by MAC) and no kernel iface is listed as ``<transport>.<MAC>.ipv4.0`` instead of
    the session's ifacename (libopeniscsiusr's _iscsi_iface_get_from_sysfs, written for
    bnx2i and applied to every such host; ``--json`` keeps the session's name)."""
    hw = i["hwaddress"]
    if hw in (None, "", "default"):
        return i["name"]
    return f"{i['transport']}.{hw}.{'ipv6' if ':' in (i['ipaddress'] or '') else 'ipv4'}.0"


def tree_lines(views: list[SessionView], flags: frozenset[str], show_secrets: bool,
               prefix: str = "") -> list[str]:
    """session_info_print_tree: ``Target:`` on change, the portals (an empty line for a
    session on the same portal as the one before), then the sections in ``flags``
    (:data:`SESSION_LEVEL_FLAGS`); every line but that empty one starts with ``prefix``."""
    out: list[str] = []
    prev: SessionView | None = None
    for v in views:
        lines: list[str] = []
        if prev is None or prev.targetname != v.targetname:
            lines.append(f"Target: {v.targetname} ({'flash' if v.flash else 'non-flash'})")
            prev = None
        if prev is not None and prev.current_address == v.current_address and \
                prev.current_port == v.current_port and v.current_port:
            out.append("")  # (the same target, so no Target line before it)
        else:
            lines.append(f"\tCurrent Portal: {_hp(v.current_address, v.current_port, v.tpgt)}")
            lines.append(f"\tPersistent Portal: {_hp(v.address, v.port, v.tpgt)}")
        if "iface" in flags:
            i = v.iface
            ip = i["ipaddress"]
            lines += ["\t\t**********", "\t\tInterface:", "\t\t**********",
                      f"\t\tIface Name: {_s(_listed_iface_name(i))}",
                      f"\t\tIface Transport: {_s(i['transport'])}",
                      f"\t\tIface Initiatorname: {_s(i['initiatorname'])}",
                      f"\t\tIface IPaddress: {ip if (not ip or '.' in ip) else f'[{ip}]'}",
                      f"\t\tIface HWaddress: {_s(i['hwaddress'])}",
                      f"\t\tIface Netdev: {_s(i['netdev'])}"]
        if "state" in flags:
            lines += [f"\t\tSID: {v.sid}",
                      f"\t\tiSCSI Connection State: {v.conn_state}",
                      f"\t\tiSCSI Session State: {v.state}",
                      f"\t\tInternal iscsid Session State: {v.internal_state}"]
        if "timeouts" in flags:
            t = v.timeouts

            def tmo(x: int | None) -> str:
                return str(x) if x is not None and x >= 0 else EMPTY
            lines += ["\t\t*********", "\t\tTimeouts:", "\t\t*********",
                      f"\t\tRecovery Timeout: {t['recovery'] if t['recovery'] is not None else -1}",
                      f"\t\tTarget Reset Timeout: {tmo(t['target_reset'])}",
                      f"\t\tLUN Reset Timeout: {tmo(t['lun_reset'])}",
                      f"\t\tAbort Timeout: {tmo(t['abort'])}"]
        if "auth" in flags:
            c = v.chap
            lines += ["\t\t*****", "\t\tCHAP:", "\t\t*****",
                      f"\t\tusername: {_s(c['username'])}",
                      f"\t\tpassword: {_s(c['password']) if show_secrets else '********'}",
                      f"\t\tusername_in: {_s(c['username_in'])}",
                      # iscsiadm 2.1.8 labels the shown password_in "password:" (a bug, kept)
                      f"\t\tpassword: {_s(c['password_in'])}" if show_secrets
                      else "\t\tpassword_in: ********"]
        if "params" in flags:
            lines += ["\t\t************************", "\t\tNegotiated iSCSI params:",
                      "\t\t************************"]
            lines += [f"\t\t{key}: {value}" for key, value in v.negotiated.items()
                      if value is not None]
        if flags & {"host_devs", "scsi_devs"}:
            lines += ["\t\t************************", "\t\tAttached SCSI devices:",
                      "\t\t************************"]
            if v.host_no is None:
                lines.append("\t\tUnavailable")
            else:
                if "host_devs" in flags:
                    lines.append(f"\t\tHost Number: {v.host_no}\t"
                                 f"State: {v.host_state or 'Unknown'}")
                for d in v.devices if "scsi_devs" in flags else ():
                    lines.append(f"\t\tscsi{d['host']} Channel 00 Id {d['id']} Lun: {d['lun']}")
                    if d["disk"]:
                        lines.append(f"\t\t\tAttached scsi disk {d['disk']}\t\t"
                                     f"State: {d['state'] or 'Unknown'}")
        out += [prefix + line for line in lines]
        prev = v
    return out


def _view_json(v: SessionView, show_secrets: bool) -> dict[str, Any]:
    """A session as JSON: :class:`SessionView`'s fields, the target name as ``target`` and
    the persistent portal as ``portal`` (``ip:port``, ``[ip6]:port``), as ``-m node
    --json`` names them; CHAP passwords masked unless ``show_secrets``."""
    from ..db.record import format_portal

    d: dict[str, Any] = {}
    for key, value in vars(v).items():
        d["target" if key == "targetname" else key] = value
        if key == "port":
            d["portal"] = format_portal(v.address, v.port)
    if not show_secrets:
        d["chap"] = {k: ("********" if k.startswith("password") and val else val)
                     for k, val in v.chap.items()}
    return d


def _parse_sid(text: str) -> int:
    """``-r``: a session id above 0 (as C's strtol reads it), else a path to the session
    in sysfs or below it (iscsi_sysfs_get_sid_from_path: the nearest ``session<N>`` up the
    resolved path).  A value that is neither exits 1, as iscsiadm's ``exit(1)``; so does an
    id beyond the kernel's 32 bits, which iscsiadm wraps (4294967297 is its session 1)."""
    if re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]{1,10}", text) and 0 < int(text) < 1 << 32:
        return int(text)
    try:
        st = os.lstat(text)
    except (OSError, ValueError):
        raise E.CliError(f"{text} is an invalid session ID or path", E.ERR) from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise E.CliError(f"{text} is not a directory", E.ERR)
    found = re.findall(r"/session(\d+)(?=/|$)", os.path.realpath(text))
    if not found:  # iscsiadm's two lines (get_sid_from_path's, then main's)
        raise E.CliError(f"invalid sid '{text}'", E.INVAL,
                         lines=(f"Unable to find sid in path {text}",))
    return int(found[-1])


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m session`` entry point."""
    sysfs = _sysfs()
    level = args.print if args.print is not None else 0
    # every -r is read as iscsiadm reads each as it comes (a bad one exits 1), the last used
    sid = [_parse_sid(text) for text in args.sid][-1] if args.sid else None
    if not -1 <= level <= 3:  # iscsiadm looks for the sessions first (21, 22)
        if sid is None and not sysfs.session_ids():
            raise E.CliError("No active sessions.", E.NO_OBJS_FOUND)
        if sid is not None:
            _named(sysfs, {}, 0, sid)
        raise E.CliError(f"Invalid info level {level}. Try 0 - 3.", E.INVAL)
    ops = set(args.op or [])
    want_action = args.logout or args.rescan or args.stats
    if "new" in ops and sid is None:
        raise E.CliError("session mode: Operation 'new' only allowed with specific session "
                         "IDs", E.INVAL)
    # iscsiadm's exec_node_op: a rescan, then statistics, whatever the operation; a logout
    # with an operation is refused before anything is done (-o new with -r is a login)
    if args.logout and not (args.rescan or args.stats) and ops:
        raise E.CliError("Invalid parameters. Both login and logout passed in"
                         if "new" in ops else
                         "Invalid parameters. Login/logout and op passed in", E.INVAL)
    if sid is not None and not want_action and (ops or (level <= 0 and not o.json)):
        return _node_op(sysfs, sid, args, o)
    if ops - {"show"} and not want_action:  # iscsiadm lists the sessions, ignores the op
        raise E.CliError(f"session mode: operation {','.join(sorted(ops))} needs -r SID "
                         "(it works on that session's node record)", E.INVAL)
    states = _daemon_states() if (level >= 1 or o.json) and not want_action else {}
    level_read = 0 if want_action else 3 if o.json else max(level, 0)
    if sid is not None and args.logout and not (args.rescan or args.stats) and \
            sysfs.session_exists(sid) and not _readable(sysfs, sid):
        # half-made (a login cut short left CREATE_SESSION's session, no name, no
        # connection): iscsictld can still remove it, and says so in its log
        from .kernel_ops import logout_sessions
        return logout_sessions([_HalfMade(sid)], o, *_logout_mode(args))
    connless = bool(args.logout or args.rescan)  # sessions without a connection too
    views = collect(sysfs, states, level_read, connless=connless) if sid is None else \
        _named(sysfs, states, level_read, sid, connless)
    if args.rescan:  # exec_node_op's order: a rescan, statistics, then a logout
        return _rescan(sysfs, views, o)
    if args.stats:
        return _stats(views, o)
    if args.logout:
        from .kernel_ops import logout_sessions

        if not views:
            raise E.CliError("No matching sessions found", E.NO_OBJS_FOUND)
        return logout_sessions([_Sess(v) for v in views], o, *_logout_mode(args))
    if not views:
        raise E.CliError("No active sessions.", E.NO_OBJS_FOUND)
    if o.json:
        o.emit_json([_view_json(v, bool(args.show)) for v in views])
        return E.SUCCESS
    if level <= 0:
        o.lines(flat_lines(views))
    else:
        from ..db.schema import FORMAT_VERSION

        header = version_lines((sysfs.module_version(), FORMAT_VERSION)) if level >= 3 else []
        o.lines(header + tree_lines(views, SESSION_LEVEL_FLAGS[level], bool(args.show)))
    return E.SUCCESS


def _no_session(sid: int, lines: tuple[str, ...] = ()) -> E.CliError:
    """iscsiadm's answer to ``-r`` naming no session: its sysfs lookup failed (22)."""
    return E.CliError(f"Could not get session info for sid {sid}",
                      E.BY_NAME["ISCSI_ERR_SYSFS_LOOKUP"], lines=lines)


def _named(sysfs, states: dict, level: int, sid: int,  # type: ignore[no-untyped-def]
           connless: bool = False) -> list[SessionView]:
    """``collect`` of the session ``-r`` names; 22 when there is none or it is half-made
    (no target name yet), as iscsiadm's iscsi_sysfs_get_sessioninfo_by_id fails."""
    views = collect(sysfs, states, level, sid, connless=connless)
    if not (views and views[0].targetname):  # none there: iscsi_sysfs_get_sessioninfo_by_id's
        gone = not os.path.isdir(os.path.join(sysfs.root, "class/iscsi_session",  # line
                                              f"session{sid}"))  # first (errno 5, EIO)
        raise _no_session(sid, ("could not read session targetname: 5",) if gone else ())
    return views


def _readable(sysfs, sid: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether session ``sid`` has a target name (a logout's lines name it)."""
    views = collect(sysfs, {}, 0, sid, connless=True)
    return bool(views and views[0].targetname)


class _HalfMade:
    """A session sysfs shows without a target name or connection, for a logout's lines."""

    def __init__(self, sid: int) -> None:
        self.sid = sid

    def __str__(self) -> str:
        return f"[sid: {self.sid}, target: (none yet), portal: (none)]"


def _node_op(sysfs, sid: int, args, o) -> int:  # type: ignore[no-untyped-def]
    """``-r SID`` as node mode on the session's record: ``-T`` its target name, ``-p`` its
    persistent portal (any tpgt), ``-I`` its iface (iscsiadm's idbm_create_rec from the
    session's sysfs info, then exec_node_op)."""
    import copy

    from . import node_cmd

    views = _named(sysfs, {}, 1, sid)
    ops = set(args.op or [])
    if ops - {"show", "update", "delete", "new"} or len(ops) > 1:
        raise E.CliError(f"session mode: operation {','.join(sorted(ops))} is not "
                         "supported (one of new, show, update, delete)", E.INVAL)
    v = views[0]
    node_args = copy.copy(args)
    node_args.targetname = v.targetname
    # the address as it is (a host name without a dot too): bracketed only when it is an
    # IPv6 one, for -p's parser (iscsiadm hands persistent_address over as it is)
    node_args.portal = (f"[{v.address}]" if ":" in v.address else v.address) + f":{v.port}"
    node_args.interface = [v.iface["name"]]
    node_args.sid = node_args.print = None
    # shown: the record whose address is the session's to the letter when there is one
    # (iscsiadm's print_nodes_config compares with strcmp); changed: every record of that
    # host, as both tools match an update's or a delete's
    node_args.same_text = ops <= {"show"}
    if ops == {"new"}:  # one more session to the same record
        from ._common import open_db
        from .kernel_ops import login_records

        db = open_db(args, o)
        nids = node_cmd._matching(db, node_args)
        if not nids:
            raise E.CliError("No records found", E.NO_OBJS_FOUND)
        return login_records(_records(db, nids), lambda: _initiator_name(db), o, multiple=True,
                             wait=not args.no_wait)
    return node_cmd.run(node_args, o, "node")


def _logout_mode(args) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    """(force, safe) of ``--force``/``--safe``: together, 7."""
    if args.force and args.safe:
        raise E.CliError("--force and --safe: one or the other", E.INVAL)
    return bool(args.force), bool(args.safe)


def _call(op: str, **kw: Any) -> Any:
    from ..ipc import DaemonClient, DaemonError

    try:
        return DaemonClient().call(op, **kw)
    except DaemonError as exc:
        raise E.CliError(str(exc), exc.code) from None


def _rescan(sysfs, views: list[SessionView], o) -> int:  # type: ignore[no-untyped-def]
    """``-R``: as iscsiadm's rescan_portal, with no daemon: each device of the session is
    rescanned (a LUN resized on the target), then its host is scanned for new LUNs; each
    returns when the kernel is done.  The sessions are rescanned side by side, as
    iscsiadm's for_each_session forks a child for each: a session whose rescan waits in
    the kernel (a blocked device, before Linux 6.6: until its relogin or replacement
    timeout) holds up no other.  Root only (13 otherwise)."""
    import errno
    from concurrent.futures import ThreadPoolExecutor

    if not views:
        raise E.CliError("No session found.", E.NO_OBJS_FOUND)

    def rescan(v: SessionView) -> OSError | None:
        host_no = sysfs.session_host_no(v.sid)
        try:
            if host_no is None:
                raise FileNotFoundError(errno.ENOENT, "the session has no SCSI host")
            for device in sysfs.session_devices(v.sid):
                try:  # one that cannot be (gone, or not running: EWOULDBLOCK since Linux
                    sysfs.rescan_device(device)  # 6.6) keeps no other from it, nor the
                except OSError as exc:  # scan for new LUNs, as iscsiadm's rescan_portal
                    if exc.errno in (errno.EACCES, errno.EPERM):
                        raise
            sysfs.scan_host(host_no)
        except OSError as exc:
            return exc
        return None

    if not o.json:
        o.lines(f"Rescanning session {_Sess(v)}" for v in views)
    with ThreadPoolExecutor(min(len(views), 64)) as pool:
        failures = list(pool.map(rescan, views))
    rc = E.SUCCESS
    done = []
    for v, exc in zip(views, failures):
        if exc is None:
            done.append(v.sid)
            continue
        denied = exc.errno in (errno.EACCES, errno.EPERM)
        o.error(f"Could not rescan session sid {v.sid}: {exc.strerror or exc}"
                + (" (rescanning needs root)" if denied else ""))
        rc = rc or E.BY_NAME["ISCSI_ERR_ACCESS" if denied else "ISCSI_ERR_SYSFS_LOOKUP"]
    if o.json:
        o.emit_json([{"sid": v.sid, "rescanned": v.sid in done} for v in views])
    return rc


#: struct iscsi_stats counters in order, as iscsiadm prints them
STATS_ORDER = ("txdata_octets", "rxdata_octets", "noptx_pdus", "scsicmd_pdus", "tmfcmd_pdus",
               "login_pdus", "text_pdus", "dataout_pdus", "logout_pdus", "snack_pdus",
               "noprx_pdus", "scsirsp_pdus", "tmfrsp_pdus", "textrsp_pdus", "datain_pdus",
               "logoutrsp_pdus", "r2t_pdus", "async_pdus", "rjt_pdus", "digest_err",
               "timeout_err")


def _stats(views: list[SessionView], o) -> int:  # type: ignore[no-untyped-def]
    if not views:
        raise E.CliError("No session found.", E.NO_OBJS_FOUND)
    results = []
    try:
        for v in views:
            st = _call("stats", sid=v.sid)["stats"]
            results.append({"sid": v.sid, **st})
            if o.json:
                continue
            lines = [f"Stats for session {_Sess(v)}", "iSCSI SNMP:"]
            lines += [f"\t{k}: {st.get(k, 0)}" for k in STATS_ORDER]
            if st.get("custom"):  # iscsiadm's session_stats: only with custom counters
                lines.append("iSCSI Extended:")  # (iSER; bnx2i, be2iscsi, cxgbi have none)
                lines += [f"\t{name}: {value}" for name, value in st["custom"]]
            o.lines(lines)
    finally:  # a failure's exit code after the sessions read before it, as the text has
        if o.json:  # them (it printed nothing)
            o.emit_json(results)
    return E.SUCCESS


# --- node-mode operations that need the daemon (called through _common.daemon_hook) -------

STARTUP_CHOICES = ("all", "manual", "automatic", "onboot")
LOGOUT_CHOICES = ("all", "manual", "automatic")  # iscsiadm never logs out onboot sessions


def _initiator_name(db) -> str:  # type: ignore[no-untyped-def]
    from ..db.config import ensure_initiator_name

    return ensure_initiator_name(db.config_root, warn=db.warn).name


def _records(db, nids) -> list[Any]:  # type: ignore[no-untyped-def]
    return [db.read_node(n) for n in nids]


def node_login(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-m node [-T -p -I] -l``: log in to the matching records."""
    from ._common import open_db
    from .kernel_ops import login_records
    from .node_cmd import _matching

    db = open_db(args, o)
    nids = _matching(db, args)
    if not nids:
        raise E.CliError("No records found", E.NO_OBJS_FOUND)
    recs = db.read_nodes(nids)  # one that cannot be read: said and skipped, as iscsiadm
    if not recs:
        raise E.CliError("No records found", E.NO_OBJS_FOUND)
    return login_records(recs, lambda: _initiator_name(db), o, wait=not args.no_wait)


def node_loginall(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-L all|manual|automatic|onboot``: log in to the records whose node.startup or
    node.conn[0].startup is that (:func:`~iscsictl.db.schema.startup_matches`)."""
    from ..db.schema import startup_matches
    from ._common import open_db
    from .kernel_ops import login_records

    which = args.loginall
    if which not in STARTUP_CHOICES:
        raise E.CliError(f"Invalid loginall option {which}.", E.INVAL)
    db = open_db(args, o)
    # a record that cannot be read is warned about and skipped (NodeDB.read_nodes), as
    # iscsiadm's idbm_for_each_rec skips it: the others are still logged in
    recs = [r for r in db.read_nodes() if startup_matches(r, which)]
    if not recs:
        raise E.CliError("No records found", E.NO_OBJS_FOUND)
    leading = [r for r in recs if r.get("node.leading_login") == "Yes"]
    if not leading:
        return login_records(recs, lambda: _initiator_name(db), o, wait=not args.no_wait)
    name = _initiator_name(db)
    others = [r for r in recs if r.get("node.leading_login") != "Yes"]
    results: list | None = [] if o.json else None  # one JSON document for every login
    rc = login_records(others, name, o, wait=not args.no_wait,
                       json_results=results) if others else E.SUCCESS
    lead = _leading_logins(leading, name, o, results)  # whatever the others did
    rc = rc or lead
    if results is not None:
        o.emit_json(results)
    return rc


def _leading_logins(recs: list[Any], name: str, o,  # type: ignore[no-untyped-def]
                    json_results: list | None = None) -> int:
    """node.leading_login = Yes, as iscsiadm's login_by_startup: iface by iface, the records
    through it whose target and portal have no session yet (through any iface) are logged
    in, waited for; so a portal reached through several ifaces gets one session, through
    the first iface that logs in.  19 when one still has none ("Could not login all
    leading-login portals"), else 0: a failure through one iface is said, and the next
    tried."""
    from ..db.schema import leading_login_rounds, portal_key
    from ..lexical import host_key
    from .kernel_ops import login_records

    def present() -> set[tuple[str, str, int]]:
        return {(v.targetname, host_key(v.address), v.port)
                for v in collect(_sysfs(), {}, level=0, only=_SELECT_ATTRS)}

    for todo in leading_login_rounds(recs, present):
        if login_records(todo, name, o, json_results=json_results):
            o.error(f"Could not log into all portals on {todo[0].iface_name}, trying next "
                    "interface")
    have = present()
    if any(portal_key(r) not in have for r in recs):
        o.error("Could not login all leading-login portals")
        return E.BY_NAME["ISCSI_ERR_FATAL_LOGIN"]
    return E.SUCCESS


def _sessions_for(args, connless: bool = False) -> list[Any]:  # type: ignore[no-untyped-def]
    """sysfs sessions matching -T/-p/-I (or every one); ``connless``: as :func:`collect`."""
    from ._common import parse_portal_arg

    views = collect(_sysfs(), {}, level=0, only=_SELECT_ATTRS,  # target, portal, iface
                    connless=connless)
    if args.targetname is not None:
        views = [v for v in views if v.targetname == args.targetname]
    if args.portal is not None:
        from ..lexical import same_host
        p = parse_portal_arg(args.portal)  # the address compared as iscsiadm's iscsi_addr_match
        views = [v for v in views if v.port == p.port and same_host(p.address, v.address)]
    if args.interface:
        views = [v for v in views if v.iface["name"] in args.interface]
    return views


def records_in_use() -> Callable[[Any], bool]:
    """A question for the node records a command is to delete: whether a running session
    uses one (a NodeID): the same target name, persistent address (compared as
    :func:`iscsictl.lexical.same_host` compares them) and port, and iface, as iscsiadm's
    iscsi_check_for_running_session (__iscsi_match_session; the tag is not compared).  The
    sessions are read from sysfs once, at the first question."""
    sessions: list[tuple[str, str, int, str]] | None = None

    def in_use(nid: Any) -> bool:
        nonlocal sessions
        from ..lexical import same_host
        if sessions is None:
            sessions = [(v.targetname, v.address, v.port, v.iface["name"])
                        for v in collect(_sysfs(), {}, level=0, only=_SELECT_ATTRS)]
        return any(t == nid.target and p == nid.port and i == nid.iface
                   and same_host(nid.address, a) for t, a, p, i in sessions)
    return in_use


def iface_in_use(name: str) -> bool:
    """Whether a running session goes through iface ``name`` (iscsiadm's
    iscsi_check_for_running_session with a record of that iface only)."""
    return any(v.iface["name"] == name
               for v in collect(_sysfs(), {}, level=0, only=_SELECT_ATTRS))


def in_use_error(nid: Any) -> Any:
    """iscsiadm's refusal to delete a record a session uses (RecordInUse, exit 15)."""
    from ..db.errors import RecordInUse

    return RecordInUse(nid.iface, nid.target, nid.address, nid.port)


class _Sess:
    """What iscsiadm's session messages name (``[sid: N, target: T, portal: A,P]``): the
    persistent address with the connection's current port (its session_info's
    persistent_address and port; they differ after a redirect)."""

    def __init__(self, v: SessionView, flash_lines: bool = True) -> None:
        self.sid, self.targetname, self.address, self.port = (v.sid, v.targetname, v.address,
                                                              v.current_port)
        #: said as iscsiadm's iscsi_logout_flashnode_sid says it ("Logout sid N."): a session
        #: an HBA's firmware runs (creator -1), logged out by -u (its matched-portal path;
        #: -U's logout_by_startup says every session the usual way)
        self.flash = v.flash and flash_lines

    def __str__(self) -> str:
        return f"[sid: {self.sid}, target: {self.targetname}, portal: {self.address},{self.port}]"


def node_logout(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-m node [-T -p -I] -u``: log out of the matching sessions."""
    from .kernel_ops import logout_sessions

    views = _sessions_for(args, connless=True)
    if not views:
        raise E.CliError("No matching sessions found", E.NO_OBJS_FOUND)
    return logout_sessions([_Sess(v) for v in views], o, *_logout_mode(args))


def node_logoutall(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-U all|manual|automatic``: log out of the sessions whose node record (same target,
    persistent portal and iface) matches (:func:`~iscsictl.db.schema.startup_matches`), as
    iscsiadm's logout_by_startup: a session without a record, or whose record is ``onboot`` (the
    root disk's, perhaps) or came from the firmware, or names another transport than the
    session's (another driver to the same portal), is left alone, ``all`` included.
    -T/-p/-I narrow it (iscsiadm ignores them)."""
    from ._common import open_db
    from .kernel_ops import logout_sessions

    which = args.logoutall
    if which not in LOGOUT_CHOICES:
        raise E.CliError(f"Invalid logoutall option {which}.", E.INVAL)
    from ..db.errors import DBError
    from ..db.schema import startup_matches

    db = open_db(args, o)
    keep = []
    for v in _sessions_for(args):
        rec = None  # the session's record: its tpgt's, else a legacy one (idbm_rec_read)
        for nid in sorted(db.list_nodes(target=v.targetname, address=v.address, port=v.port,
                                        iface=v.iface["name"]), key=lambda n: n.tpgt != v.tpgt):
            if nid.tpgt in (v.tpgt, -1):
                try:
                    rec = db.read_node(nid)
                    break
                except DBError as e:
                    o.warn(str(e))
        if rec is None or rec.get("node.startup") == "onboot" or \
                rec.get("node.discovery_type") == "fw":
            continue
        if (rec.get("iface.transport_name") or "tcp") != v.transport:
            continue  # another driver's session to the same portal (iscsiadm's check)
        if startup_matches(rec, which):
            keep.append(v)
    views = keep
    if not views:
        raise E.CliError("No matching sessions found", E.NO_OBJS_FOUND)
    return logout_sessions([_Sess(v, flash_lines=False) for v in views], o,
                           *_logout_mode(args))


def node_rescan(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-m node -T -p -R``: rescan the matching sessions."""
    return _rescan(_sysfs(), _sessions_for(args, connless=True), o)


def node_stats(args, o) -> int:  # type: ignore[no-untyped-def]
    """``-m node -T -p -s``: statistics of the matching sessions."""
    return _stats(_sessions_for(args), o)
