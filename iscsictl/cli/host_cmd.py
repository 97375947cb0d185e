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

Not yet: the sub-modes (``-C chap|flashnode|stats``): they need offload hardware.
"""

from __future__ import annotations

import re
from typing import Any

from . import errors as E
from .session_cmd import EMPTY, collect, tree_lines, version_lines

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

#: the sub-modes iscsiadm's host mode serves (str_to_submode); any other -C lists the hosts
HOST_SUBMODES = ("chap", "flashnode", "stats")


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


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m host`` entry point."""
    from .session_cmd import _sysfs

    if args.submode in HOST_SUBMODES:  # -o without one is ignored, as by iscsiadm
        raise E.CliError(f"host mode: sub-mode {args.submode} (offload HBAs) is not supported "
                         "yet", E.OP_NOT_SUPP)
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
