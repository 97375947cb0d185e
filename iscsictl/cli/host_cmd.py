"""``-m host``: the iSCSI hosts (``class/iscsi_host``: one a session for iscsi_tcp, one an
HBA port for offload drivers), in open-iscsi 2.1.8's format (usr/host.c), from sysfs alone.

* ``-P 0`` (default): ``tcp: [0] 10.0.0.1,[<empty>],<empty> <empty>`` (transport, host
  number, IP address, [hardware address], netdev, initiator name), ``alphasort`` order.
* ``-P 1``: ``Host Number:`` with its state and the same values as a tree; ``-P 2`` adds
  its sessions (interface and states, prefixed by a tab), ``-P 3`` their negotiated
  parameters, ``-P 4`` their SCSI devices (with the version header first).
* ``-H N`` (a host number, or the hardware address of an offload HBA's port) with ``-P 1``
  or more: that host only (23 if it does not exist).  iscsiadm 2.1.8 prints every host
  there: its "no -H" marker (MAX_HOST_NO + 1 in a uint32_t) wraps to 0, so the branch
  for one host is never taken; the filter is what ``-H`` is for.
* ``--json``: the hosts as objects, each with its sessions' ids.

From ``-P 1`` on, an offload HBA's host lists its network interfaces (``class/iscsi_iface``)
as iscsiadm's print_host_iface does: the ipv4 or ipv6 addresses, the host's port state and
speed, the port, MTU and VLAN; a value the driver does not show is ``<empty>``.

``-C flashnode -H N``: the targets in an offload HBA's flash (qla4xxx), from
``bus/iscsi_flashnode/devices`` as iscsiadm 2.1.8 reads them (usr/iscsi_sysfs.c, usr/sysfs.c:
a missing number is all ones, ``atoi``/``strtoul`` truncated to the field, a string cut to
its buffer):

* without ``-x`` (or ``-o show``): one line each, ``qla4xxx: [0] 192.168.1.10:3260,1 iqn...``
  (usr/flashnode.c flashnode_info_print_flat), in ``alphasort`` order of the entries' names
  (``[10]`` before ``[2]``); the walk stops at a name that is not ``flashnode_sess-H:I``
  ("Invalid iscsi target dir", what came before stays), and at one whose conn entry is
  missing (exit 2, ENOENT, as iscsiadm; iscsictl says which).  None: "No flashnodes attached
  to host N." (21).
* ``-x IDX``: the record, ``flashnode.session.*`` then ``flashnode.conn[0].*`` (usr/idbm.c
  idbm_recinfo_flashnode), its passwords ``********`` unless ``-S``; none there: "Could
  not read info for flashnode IDX of host N, No such file or directory" (exit 2).  ``-x``
  is read as strtoull reads it: past ULLONG_MAX is exit 7, past UINT_MAX (``-1`` too)
  lists them all.
* ``--json``: the records as objects (``host_no``, ``index``, ``transport``, then the keys;
  numbers as numbers), a list without ``-x``.
* Errors as iscsiadm's: a host whose driver is not a registered transport (or no host):
  "Could not match hostno N to transport." (12); ``-o`` other than show: "Invalid flashnode
  index" without ``-x``, else "Invalid operation" (7).

Deliberate differences: the passwords are masked unless ``-S`` (iscsiadm prints them and
refuses ``-S`` in host mode); ``-C flashnode`` without ``-H`` is "FLASHNODE mode requires
host no" (7), which iscsiadm 2.1.8's check means to say (its "no -H" marker wraps to host
0, so it reads host 0's flash, or exits 12).

``-C chap`` and ``-C stats`` (an HBA's CHAP table and statistics, through its driver): see
:mod:`iscsictl.cli.hba_cmd`.

Not yet: ``-C flashnode -o new|delete|update|login|logout`` (exit 27): they go through the
HBA's driver over netlink.
"""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING, Any

from . import errors as E
from .hba import host_transport
from .session_cmd import EMPTY, collect, tree_lines, version_lines

if TYPE_CHECKING:
    from ..kernel.sysfs import Flashnode

#: What each print level shows of a host's sessions (usr/host.c's host_info_print).
HOST_LEVEL_FLAGS: dict[int, frozenset[str]] = {
    1: frozenset(),
    2: frozenset({"iface", "state"}),
    3: frozenset({"iface", "state", "params"}),
    4: frozenset({"iface", "state", "params", "scsi_devs"}),
}


def _e(v: str | None) -> str:
    return v if v else EMPTY


def _ip(v: str | None) -> str:
    return EMPTY if not v else v if "." in v else f"[{v}]"


def _iface_lines(iface, host: dict[str, Any]) -> list[str]:  # type: ignore[no-untyped-def]
    """One ``Interface:`` block (usr/host.c's print_host_iface, a tab before each line).
    The numbers are read as iscsiadm reads them (``atoi`` into a u16 or u8); a port or MTU
    of 0, and a VLAN ID or priority the driver does not show, are ``<empty>``."""
    from ..lexical import c_atoi

    a = iface.attrs.get
    lines = ["**********", "Interface:", "**********", f"Kernel Name: {iface.name}"]
    ip = a("ipaddress")
    if not ip:
        lines.append(f"IPaddress: {EMPTY}")
    elif "." in ip:
        lines += [f"IPaddress: {ip}", f"Gateway: {_e(a('gateway'))}",
                  f"Subnet: {_e(a('subnet'))}", f"BootProto: {_e(a('bootproto'))}"]
    else:
        lines += [f"IPaddress: [{ip}]", f"IPaddress Autocfg: {_e(a('ipaddr_autocfg'))}",
                  f"Link Local Address: {_ip6(a('link_local_addr'))}",
                  f"Link Local Autocfg: {_e(a('link_local_autocfg'))}",
                  f"Router Address: {_ip6(a('router_addr'))}"]
    port, mtu = (c_atoi(a(k) or "0") & 0xFFFF for k in ("port", "mtu"))
    vlan_id = c_atoi(a("vlan_id")) & 0xFFFF if a("vlan_id") is not None else 0xFFFF
    vlan_pri = c_atoi(a("vlan_priority")) & 0xFF if a("vlan_priority") is not None else 0xFF
    lines += [f"Port State: {_e(host['port_state'])}", f"Port Speed: {_e(host['port_speed'])}",
              f"Port: {port or EMPTY}", f"MTU: {mtu or EMPTY}",
              f"VLAN ID: {EMPTY if vlan_id == 0xFFFF else vlan_id}",
              f"VLAN priority: {EMPTY if vlan_pri == 0xFF else vlan_pri}"]
    return ["\t" + line for line in lines]


def _ip6(v: str | None) -> str:
    return f"[{v}]" if v else EMPTY


#: MAX_HOST_NO (usr/host.h): a host number is a uint32_t
MAX_HOST_NO = 0xFFFFFFFF

#: iscsiadm's operations as bits (usr/iscsiadm.c enum iscsiadm_op): each -o is or'ed in
OPS = {"new": 0x1, "delete": 0x2, "update": 0x4, "show": 0x8, "nonpersistent": 0x10,
       "apply": 0x20, "applyall": 0x40, "login": 0x80, "logout": 0x100}
#: the flashnode operations iscsictl does not do yet (netlink NEW/DEL/SET_PARAM/LOGIN/LOGOUT
#: _FLASHNODE to the HBA's driver)
FLASHNODE_WRITES = frozenset({OPS[op] for op in ("new", "delete", "update", "login", "logout")})
#: MAX_FLASHNODE_IDX (usr/flashnode.h, UINT_MAX): a -x above it, or none, lists them all
MAX_FLASHNODE_IDX = 0xFFFFFFFF
#: the flash target values that are secrets: ``********`` unless -S (iscsiadm prints them)
FLASHNODE_SECRETS = frozenset({"flashnode.session.password", "flashnode.session.password_in"})
#: VALUE_MAXVAL (usr/idbm.h): a record's printed value is cut to one byte less
VALUE_MAXVAL = 256


def _parse_host(text: str, hosts: list[dict[str, Any]]) -> int:
    """``-H``: ``N``, ``hostN``, or a hardware address (usr/iscsiadm.c parse_host_info, run
    while the options are parsed: a bad one is exit 7 whatever the print level)."""
    if ":" in text:
        for h in hosts:
            if h["hwaddress"] and h["hwaddress"].lower() == text.strip().lower():
                return int(h["host_no"])
        raise E.CliError("Could not match MAC to host.", E.INVAL)
    m = re.fullmatch(r"\s*(?:host)?(\d+)\s*", text)
    if not m:
        raise E.CliError(f"Invalid host no {text}.", E.INVAL)
    if len(m.group(1)) > 10 or int(m.group(1)) > MAX_HOST_NO:
        raise E.CliError(f"Invalid host no {text}. Numerical result out of range.", E.INVAL)
    return int(m.group(1))


def _hosts(sysfs) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    out = []
    for n in sorted(sysfs.host_numbers(), key=lambda n: f"host{n}"):
        h = sysfs.host(n)
        if h is None:
            continue
        out.append({"host_no": n, "transport": sysfs.host_transport(n) or "",
                    "initiatorname": h.initiatorname or "", "ipaddress": h.ipaddress or "",
                    "hwaddress": h.hwaddress or "", "netdev": h.netdev or "",
                    "port_state": h.port_state or "", "port_speed": h.port_speed or "",
                    "state": sysfs.read(f"class/scsi_host/host{n}/state")})
    return out


def _parse_index(text: str) -> int:
    """``-x`` as iscsiadm reads it while it parses the options (strtoull, base 10): what C
    reads of it ("abc" is 0, "-1" ULLONG_MAX: no index); above ULLONG_MAX, exit 7."""
    from ..lexical import c_strtoul

    value, out_of_range = c_strtoul(text, 10)
    if out_of_range:
        raise E.CliError(f"Invalid index {text}. Numerical result out of range.", E.INVAL)
    return value


def _op_mask(ops: list[str]) -> int:
    """The ``-o`` given, or'ed as iscsiadm's option parser does: an unknown one is exit 7
    while nothing known came before it (then it is ignored)."""
    mask = 0
    for op in ops:
        mask |= OPS.get(op, 0)
        if not mask:
            raise E.CliError(f"can not recognize operation: '{op}'", E.INVAL)
    return mask


def _flashnode_values(node: Flashnode, show_secrets: bool) -> dict[str, int | str]:
    """A flash target's values (sysfs's FLASHNODE_ATTRS order), its secrets masked unless
    ``show_secrets``."""
    values = node.values()
    for key in FLASHNODE_SECRETS:
        if values[key] and not show_secrets:
            values[key] = "********"
    return values


def flashnode_flat(node: Flashnode, transport: str) -> str:
    """One line of the listing (usr/flashnode.c flashnode_info_print_flat): ``qla4xxx: [0]
    192.168.1.10:3260,1 iqn...``; an IPv6 address in brackets, a port of 0 and an empty
    address or name ``<empty>``; the index as ``%d`` prints it."""
    v = node.values()
    port = v["flashnode.conn[0].port"]
    return (f"{transport}: [{node.printed_index}] {_ip(str(v['flashnode.conn[0].ipaddress']))}:"
            f"{port or EMPTY},{v['flashnode.session.tpgt']} "
            f"{v['flashnode.session.targetname'] or EMPTY}")


def flashnode_record(node: Flashnode, show_secrets: bool) -> list[str]:
    """``-x IDX``: the record as usr/idbm.c idbm_print_flashnode_info prints it (``key =
    value`` in idbm_recinfo_flashnode's order, an empty string ``<empty>``), between
    ``# BEGIN RECORD 2.1.8`` and ``# END RECORD``; the passwords ``********`` unless
    ``show_secrets`` (iscsiadm prints them, and has no -S in host mode)."""
    from ..db.schema import BEGIN_RECORD, END_RECORD, FORMAT_VERSION
    from ..kernel.sysfs import c_string

    lines = [f"{BEGIN_RECORD} {FORMAT_VERSION}"]
    for key, value in _flashnode_values(node, show_secrets).items():
        text = c_string(value, VALUE_MAXVAL) if isinstance(value, str) else str(value)
        lines.append(f"{key} = {text or EMPTY}")
    return lines + [END_RECORD]


def _flashnode(args, o, sysfs, index: int | None) -> int:  # type: ignore[no-untyped-def]
    """``-C flashnode``: an HBA's flash targets (usr/iscsiadm.c exec_flashnode_op, OP_SHOW
    and OP_NOOP), listed, or one shown with ``-x``."""
    mask = _op_mask(args.op or [])
    host_no = None if args.host is None else _parse_host(args.host, _hosts(sysfs))
    if mask in FLASHNODE_WRITES:
        op = next(name for name, bit in OPS.items() if bit == mask)
        raise E.CliError(f"host mode: -C flashnode -o {op} (an offload HBA's flash) is not "
                         "supported yet", E.OP_NOT_SUPP)
    if host_no is None:  # what iscsiadm 2.1.8 means to say: its "no -H" wraps to host 0
        raise E.CliError("FLASHNODE mode requires host no", E.INVAL)
    if index is None or index > MAX_FLASHNODE_IDX:
        index = None
        if mask not in (0, OPS["show"]):
            raise E.CliError("Invalid flashnode index", E.INVAL)
    transport = host_transport(sysfs, o, host_no)
    if mask not in (0, OPS["show"]):
        raise E.CliError("Invalid operation", E.INVAL)
    show = bool(args.show)
    if index is not None:
        node = sysfs.flashnode(host_no, index)
        if node is None:  # iscsiadm exits with access()'s errno
            raise E.CliError(f"Could not read info for flashnode {index} of host {host_no}, "
                             f"{os.strerror(errno.ENOENT)}", errno.ENOENT)
        if o.json:
            o.emit_json({"host_no": host_no, "index": index, "transport": transport,
                         **_flashnode_values(node, show)})
        else:
            o.lines(flashnode_record(node, show))
        return E.SUCCESS
    scan = sysfs.flashnodes(host_no)
    if o.json and scan.nodes:
        o.emit_json([{"host_no": host_no, "index": n.index, "transport": transport,
                      **_flashnode_values(n, show)} for n in scan.nodes])
    else:
        o.lines(flashnode_flat(n, transport) for n in scan.nodes)
    if scan.bad_name is not None:
        o.error(f"Invalid iscsi target dir: {scan.bad_name}")
    if not scan.nodes:
        raise E.CliError(f"No flashnodes attached to host {host_no}.", E.NO_OBJS_FOUND)
    if scan.unreadable is not None:  # iscsiadm stops there, exits with the errno, says nothing
        raise E.CliError(f"Could not read info for {scan.unreadable}, "
                         f"{os.strerror(errno.ENOENT)}", errno.ENOENT)
    return E.SUCCESS


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m host`` entry point."""
    from .session_cmd import _sysfs

    index = None if args.index is None else _parse_index(args.index)
    if args.submode == "flashnode":
        return _flashnode(args, o, _sysfs(), index)
    if args.submode in ("chap", "stats"):  # -o without one is ignored, as by iscsiadm
        from . import hba_cmd

        host_no = None if args.host is None else _parse_host(args.host, _hosts(_sysfs()))
        return hba_cmd.run(args, o, _sysfs(), args.submode, host_no, index)
    level = args.print if args.print is not None else 0
    if level not in (-1, 0, 1, 2, 3, 4):
        raise E.CliError(f"Invalid info level {level}. Try 0 - 4.", E.INVAL)
    sysfs = _sysfs()
    hosts = _hosts(sysfs)
    wanted = None if args.host is None else _parse_host(args.host, hosts)
    if wanted is not None and (level >= 1 or o.json):
        hosts = [h for h in hosts if h["host_no"] == wanted]
        if not hosts:
            raise E.CliError(f"Could not get host info for host {wanted}",
                             E.BY_NAME["ISCSI_ERR_HOST_NOT_FOUND"])
    if not hosts:
        raise E.CliError("No iSCSI hosts.", E.NO_OBJS_FOUND)
    flags = HOST_LEVEL_FLAGS.get(level, frozenset())
    views = []  # the sessions, read as deep as the level shows them
    if flags or o.json:
        from .session_cmd import _daemon_states

        states = _daemon_states() if "state" in flags else {}
        views = collect(sysfs, states, max(level - 1, 0))
    if o.json:
        o.emit_json([{**h, "ifaces": [{"name": i.name, **i.attrs}
                                       for i in sysfs.host_ifaces(h["host_no"])],
                      "sessions": [v.sid for v in views if v.host_no == h["host_no"]]}
                     for h in hosts])
        return E.SUCCESS
    if level <= 0:
        o.lines(f"{_e(h['transport'])}: [{h['host_no']}] {_ip(h['ipaddress'])},"
                f"[{_e(h['hwaddress'])}],{_e(h['netdev'])} {_e(h['initiatorname'])}"
                for h in hosts)
        return E.SUCCESS
    from ..db.schema import FORMAT_VERSION

    lines = version_lines((sysfs.module_version(), FORMAT_VERSION)) if level >= 4 else []
    for h in hosts:
        lines += [f"Host Number: {h['host_no']}", f"\tState: {h['state'] or 'Unknown'}",
                  f"\tTransport: {_e(h['transport'])}",
                  f"\tInitiatorname: {_e(h['initiatorname'])}",
                  f"\tIPaddress: {_ip(h['ipaddress'])}",
                  f"\tHWaddress: {_e(h['hwaddress'])}", f"\tNetdev: {_e(h['netdev'])}"]
        for iface in sysfs.host_ifaces(h["host_no"]):
            lines += _iface_lines(iface, h)
        mine = [v for v in views if v.host_no == h["host_no"]]
        if mine:
            lines += ["\t*********", "\tSessions:", "\t*********"]
            lines += tree_lines(mine, flags, False, prefix="\t")
    o.lines(lines)
    return E.SUCCESS
