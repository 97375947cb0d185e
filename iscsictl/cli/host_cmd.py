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
* ``-o new -A ipv4|ipv6``: ISCSI_UEVENT_NEW_FLASHNODE with the portal type ("ipv4\\0"),
  "Create new flashnode for host N." then "New flashnode for host N added at index I."
  (the driver's index); no ``-A``, or another: "Invalid type mentioned for flashnode" (7).
* ``-o delete -x IDX``: DEL_FLASHNODE, "Delete flashnode IDX." then "Flashnode IDX of host
  N deleted."; ``-o login -x IDX``: LOGIN_FLASHNODE, "Login to flashnode IDX." then "Login
  to flashnode IDX of host N successful." (the driver logs the target in); ``-o logout -x
  IDX``: LOGOUT_FLASHNODE, "Logout flashnode IDX." then "Logout of flashnode IDX of host N
  successful.".
* ``-o update -x IDX -n KEY -v VALUE [-n KEY -v VALUE]...``: the pairs applied to the
  record in sysfs, then SET_FLASHNODE_PARAMS with one ISCSI_FLASHNODE_* parameter per pair,
  in the order given (:mod:`iscsictl.kernel.flashnode`; the keys' parameters are a column
  of :data:`iscsictl.kernel.sysfs.FLASHNODE_ATTRS`): "Update flashnode IDX." then "Update
  for flashnode IDX of host N successful.".  A key not in the record: "Cannot modify KEY.
  Invalid param name." (7); a target not in sysfs: "Could not read info for flashnode IDX,
  No such file or directory" (2); no pair: "Build flashnode config failed." (1); each
  followed by "Update for flashnode IDX of host N failed.".
* A write's lines go to stdout (iscsiadm's log_info), its errors to stderr; the kernel's
  refusal is said as iscsiadm says it ("Received iferror -19: No such device."), then
  "Deletion of flashnode IDX of host N failed." (1; the same words for each operation:
  "Creation of", "Update for", "Login to" 5, "Logout of" 10), but a login of a target
  logged in (EPERM): "Flashnode IDX of host N already logged in." (15), a logout of one
  not logged in (ESRCH): "Flashnode IDX of host N not logged in." (2).  ``--json``: ``{"host_no",
  "index", "op", "rc"}``, with ``"message"`` for those two.
* Errors as iscsiadm's: a host whose driver is not a registered transport (or no host):
  "Could not match hostno N to transport." (12); ``-o`` other than show or new without
  ``-x`` (or with one past UINT_MAX): "Invalid flashnode index" (7); any other ``-o`` (or
  two of them): "Invalid operation" (7).

Deliberate differences: the passwords are masked unless ``-S`` (iscsiadm prints them and
refuses ``-S`` in host mode); ``-C flashnode`` without ``-H`` is "FLASHNODE mode requires
host no" (7), which iscsiadm 2.1.8's check means to say (its "no -H" marker wraps to host
0, so it reads host 0's flash, or exits 12).  ``-o update`` checks every pair before it
sends anything: a number that is not base-10 digits within its C type, or a string longer
than its buffer, is "unknown value format ..." (7; iscsiadm sends what ``strtoul`` reads, cut
to the field, or the string cut); a pair that cannot be sent (a key with no flashnode
parameter: the CHAP names and passwords, ``chap_in_idx``, ``is_boot_target``; an address
``inet_pton`` refuses for the target's portal type; an ISID that is not 12 hex digits) is
said, then "Build flashnode config failed." (1), where iscsiadm leaves the pair out
silently and sends the others (exit 0); a string goes NUL-padded (iscsiadm sends the old
value's tail after a shorter new one); no pair is said ("Nothing to update").  A driver
without the operation (ENOSYS: bnx2i, a software host) is said ("Received iferror -38:
Function not implemented."), which iscsiadm logs only at debug level 1.  A ``-x`` that
starts with no number is "Invalid index" (7), where iscsiadm's strtoull reads 0 and acts
on the first CHAP entry or flash target; ``-C ping`` (iface mode's) is "Invalid Sub Mode"
with exit 7 (iscsiadm says it and exits 0).

``-C chap`` and ``-C stats`` (an HBA's CHAP table and statistics, through its driver): see
:mod:`iscsictl.cli.hba_cmd`.
"""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from . import errors as E
from ._common import OPS, op_mask
from .hba import hba_netlink, host_transport, kernel_errno, transport_handle
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

    a = iface.attrs.get  # unset values left out (Sysfs.host_ifaces)
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

#: MAX_FLASHNODE_IDX (usr/flashnode.h, UINT_MAX): a -x above it, or none, lists them all
MAX_FLASHNODE_IDX = 0xFFFFFFFF
#: iscsiadm's words for an update it cannot make (usr/iscsiadm.c iscsi_set_flashnode_params)
BUILD_FAILED = "Build flashnode config failed."
#: the portal types of a new flash target (-A; usr/iscsiadm.c str_to_portal_type)
PORTAL_TYPES = ("ipv4", "ipv6")


class FlashnodeOp(NamedTuple):
    """What iscsiadm says of one flash target operation (usr/iscsiadm.c exec_flashnode_op
    and iscsi_*_flashnode; ``{host}`` and ``{index}`` filled in): ``start`` on stdout once
    the netlink socket is open, then ``done`` (stdout) or ``failed`` (stderr, exit
    ``code``); ``refusals``: the kernel's errno that is an answer, not a failure -> (the
    stdout line, the exit code)."""

    start: str
    done: str
    failed: str
    code: int
    refusals: dict[int, tuple[str, int]] = {}


#: -o new|delete|update|login|logout of -C flashnode: ISCSI_UEVENT_NEW_FLASHNODE, DEL_,
#: SET_FLASHNODE_PARAMS, LOGIN_, LOGOUT_FLASHNODE to the host's driver
FLASHNODE_OPS = {
    "new": FlashnodeOp("Create new flashnode for host {host}.",
                       "New flashnode for host {host} added at index {index}.",
                       "Creation of flashnode for host {host} failed.", E.ERR),
    "delete": FlashnodeOp("Delete flashnode {index}.", "Flashnode {index} of host {host} deleted.",
                          "Deletion of flashnode {index} of host {host} failed.", E.ERR),
    "update": FlashnodeOp("Update flashnode {index}.",
                          "Update for flashnode {index} of host {host} successful.",
                          "Update for flashnode {index} of host {host} failed.", E.ERR),
    "login": FlashnodeOp("Login to flashnode {index}.",
                         "Login to flashnode {index} of host {host} successful.",
                         "Login to flashnode {index} of host {host} failed.",
                         E.BY_NAME["ISCSI_ERR_LOGIN"],
                         {errno.EPERM: ("Flashnode {index} of host {host} already logged in.",
                                        E.BY_NAME["ISCSI_ERR_SESS_EXISTS"])}),
    "logout": FlashnodeOp("Logout flashnode {index}.",
                          "Logout of flashnode {index} of host {host} successful.",
                          "Logout of flashnode {index} of host {host} failed.",
                          E.BY_NAME["ISCSI_ERR_LOGOUT"],
                          {errno.ESRCH: ("Flashnode {index} of host {host} not logged in.",
                                         E.BY_NAME["ISCSI_ERR_SESS_NOT_FOUND"])}),
}
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
    # ASCII digits and C's blanks, a sign as strtoull reads it (-1: ULLONG_MAX, out of range)
    m = re.fullmatch(r"[ \t\n\v\f\r]*(?:host)?([+-]?)([0-9]+)[ \t\n\v\f\r]*", text)
    if not m:
        raise E.CliError(f"Invalid host no {text}.", E.INVAL)
    sign, digits = m.groups()
    if len(digits) > 10 or int(digits) > MAX_HOST_NO or sign == "-" and int(digits):
        raise E.CliError(f"Invalid host no {text}. Numerical result out of range.", E.INVAL)
    return int(digits)


def host_option(args, sysfs, o) -> int | None:  # type: ignore[no-untyped-def]
    """``-H`` (of host mode, and of iface mode's ``-o applyall``) as a host number, None
    when not given; exit 7 for one iscsiadm's parse_host_info refuses.  A MAC first has
    the offload drivers its NICs need loaded (:func:`_probe_for_offload`)."""
    if args.host is None:
        return None
    if ":" in args.host:
        _probe_for_offload(sysfs, o)
    return _parse_host(args.host, _hosts(sysfs))


def _probe_for_offload(sysfs, o) -> None:  # type: ignore[no-untyped-def]
    """The offload drivers the NICs need (cxgb4i for a cxgb4 port, bnx2i ...) loaded, so
    that their hosts are there to be listed or matched, as iscsiadm's
    transport_probe_for_offload before a host listing above level 0 and a ``-H`` MAC."""
    from ..kernel.default_ifaces import load_offload_drivers

    load_offload_drivers(sysfs, o.error)


def op_name(mask: int) -> str | None:
    """The ``-o`` whose bit is ``mask`` alone (``_op_mask``'s result), None for none or
    several."""
    return next((name for name, bit in OPS.items() if bit == mask), None)


def _hosts(sysfs) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Each host's attributes as iscsiadm's host mode reads them (usr/sysfs.c
    sysfs_get_value, :func:`~iscsictl.kernel.sysfs.read_c_value`)."""
    from ..kernel.sysfs import read_c_value

    out = []
    for n in sorted(sysfs.host_numbers(), key=lambda n: f"host{n}"):
        h = sysfs.host(n, c_values=True)
        if h is None:
            continue
        out.append({"host_no": n, "transport": sysfs.host_transport(n) or "",
                    "initiatorname": h.initiatorname or "", "ipaddress": h.ipaddress or "",
                    "hwaddress": h.hwaddress or "", "netdev": h.netdev or "",
                    "port_state": h.port_state or "", "port_speed": h.port_speed or "",
                    "state": read_c_value(f"{sysfs.root}/class/scsi_host/host{n}/state")})
    return out


def _parse_index(text: str) -> int:
    """``-x`` as iscsiadm reads it while it parses the options (strtoull, base 10): a
    decimal number ("-1" is ULLONG_MAX: no index); above ULLONG_MAX, exit 7.  A text that
    is not a number alone is refused (7), where strtoull reads the number it starts with,
    or 0: a typo ("abc", "0x1", "0,10") must not delete or log out the first CHAP entry
    or flash target."""
    from ..lexical import c_strtoul

    if not re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]+", text):
        raise E.CliError(f"Invalid index {text}.", E.INVAL)
    value, out_of_range = c_strtoul(text, 10)
    if out_of_range:
        raise E.CliError(f"Invalid index {text}. Numerical result out of range.", E.INVAL)
    return value


def _flashnode_values(node: Flashnode, show_secrets: bool) -> dict[str, int | str]:
    """A flash target's values (sysfs's FLASHNODE_ATTRS order), its secrets masked unless
    ``show_secrets``."""
    from ..kernel.flashnode import SECRET_KEYS

    values = node.values()
    for key in SECRET_KEYS:
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
    """``-C flashnode``: an HBA's flash targets (usr/iscsiadm.c exec_flashnode_op): listed,
    one shown with ``-x``, or one made, deleted, changed, logged in or out."""
    mask = op_mask(args.op or [])
    host_no = host_option(args, sysfs, o)
    if host_no is None:  # what iscsiadm 2.1.8 means to say: its "no -H" wraps to host 0
        raise E.CliError("FLASHNODE mode requires host no", E.INVAL)
    if index is None or index > MAX_FLASHNODE_IDX:
        index = None
        if mask not in (0, OPS["show"], OPS["new"]):
            raise E.CliError("Invalid flashnode index", E.INVAL)
    transport = host_transport(sysfs, o, host_no)
    op = op_name(mask)
    if op in FLASHNODE_OPS:
        return _flashnode_write(args, o, sysfs, op, transport, host_no, index)
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


def _flashnode_write(args, o, sysfs, op: str, transport: str, host_no: int,  # type: ignore[no-untyped-def]
                     index: int | None) -> int:
    """``-o new|delete|update|login|logout``: one request to the host's driver, said as
    :data:`FLASHNODE_OPS` says it (``index`` is None for ``new`` only)."""
    from ..netlink import IscsiNetlinkError

    spec = FLASHNODE_OPS[op]
    arg: Any = None
    failed = spec.failed.format(host=host_no, index=index)
    if op == "new":
        if args.portal_type not in PORTAL_TYPES:
            raise E.CliError("Invalid type mentioned for flashnode", E.INVAL)
        arg = args.portal_type
    elif op == "update":
        arg = _flashnode_update_params(args, sysfs, host_no, index, failed)
    handle = transport_handle(sysfs, transport)
    call = {"new": lambda nl: nl.new_flashnode(handle, host_no, arg),
            "delete": lambda nl: nl.del_flashnode(handle, host_no, index),
            "update": lambda nl: nl.set_flashnode_params(handle, host_no, index, arg),
            "login": lambda nl: nl.login_flashnode(handle, host_no, index),
            "logout": lambda nl: nl.logout_flashnode(handle, host_no, index)}[op]
    refused: IscsiNetlinkError | None = None
    try:
        with hba_netlink() as nl:
            if not o.json:
                o.lines([spec.start.format(host=host_no, index=index)])
            try:
                result = call(nl)
            except IscsiNetlinkError as e:
                refused = e
    except E.CliError as e:  # the socket could not be opened (9)
        raise E.CliError(failed, e.exit_code, lines=(*e.lines, str(e))) from None
    if refused is not None:
        err = kernel_errno(refused)
        why = str(refused) if err is None else f"Received iferror -{err}: {os.strerror(err)}."
        if err not in spec.refusals:
            raise E.CliError(failed, spec.code, lines=(why,))
        o.error(why)
        line, code = spec.refusals[err]
        return _flashnode_outcome(o, op, host_no, index, code, line.format(host=host_no,
                                                                            index=index))
    if op == "new":
        index = result
    return _flashnode_outcome(o, op, host_no, index, E.SUCCESS,
                              spec.done.format(host=host_no, index=index))


def _flashnode_outcome(o, op: str, host_no: int, index: int | None, rc: int,  # type: ignore[no-untyped-def]
                       line: str) -> int:
    """A write's outcome: ``line`` on stdout, or with ``--json`` ``{"host_no", "index",
    "op", "rc"}`` (as ``-C chap``'s), and ``"message"`` when ``rc`` is not 0; returns
    ``rc``."""
    if o.json:
        o.emit_json({"host_no": host_no, "index": index, "op": op, "rc": rc,
                     **({"message": line} if rc else {})})
    else:
        o.lines([line])
    return rc


def _flashnode_update_params(args, sysfs, host_no: int, index: int,  # type: ignore[no-untyped-def]
                             failed: str) -> list[dict[str, Any]]:
    """``-o update``'s ``-n``/``-v`` pairs as SET_FLASHNODE_PARAMS entries, checked against
    the flash target's record as iscsiadm's iscsi_set_flashnode_params does, before any
    request: a target not in sysfs (2, ENOENT), a key not in the record or a value its
    type cannot hold (7), a pair that cannot be sent, or none given (1: "Build flashnode
    config failed.").  Each error is followed by ``failed``."""
    from ..db.errors import InvalidKey, InvalidValue
    from ..kernel.flashnode import UnsendableParam, apply_updates, flashnode_params

    node = sysfs.flashnode(host_no, index)
    if node is None:
        raise E.CliError(failed, errno.ENOENT, lines=(
            f"Could not read info for flashnode {index}, {os.strerror(errno.ENOENT)}",))
    pairs = args.params or []
    try:
        entries = flashnode_params(apply_updates(node.values(), pairs), [k for k, _ in pairs])
    except (InvalidKey, InvalidValue) as e:
        raise E.CliError(failed, e.exit_code, lines=(str(e),)) from None
    except UnsendableParam as e:
        raise E.CliError(failed, e.exit_code, lines=(str(e), BUILD_FAILED)) from None
    if not entries:
        raise E.CliError(failed, E.ERR, lines=("Nothing to update: give -n KEY -v VALUE.",
                                               BUILD_FAILED))
    return entries


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m host`` entry point."""
    from .session_cmd import _sysfs

    index = None if args.index is None else _parse_index(args.index)
    if args.submode == "ping":  # iface mode's (an unknown -C is ignored: the listing)
        raise E.CliError("Invalid Sub Mode", E.INVAL)  # (iscsiadm says it and exits 0)
    if args.submode == "flashnode":
        return _flashnode(args, o, _sysfs(), index)
    if args.submode in ("chap", "stats"):  # -o without one is ignored, as by iscsiadm
        from . import hba_cmd

        sysfs = _sysfs()
        return hba_cmd.run(args, o, sysfs, args.submode, host_option(args, sysfs, o), index)
    op_mask(args.op or [])  # an unknown -o: 7, as iscsiadm's option parser
    level = args.print if args.print is not None else 0
    if level not in (-1, 0, 1, 2, 3, 4):
        raise E.CliError(f"Invalid info level {level}. Try 0 - 4.", E.INVAL)
    sysfs = _sysfs()
    if level >= 1 or args.host is not None and ":" in args.host:
        _probe_for_offload(sysfs, o)  # (host_info_print, parse_host_info)
    hosts = _hosts(sysfs)
    wanted = None if args.host is None else _parse_host(args.host, hosts)
    if wanted is not None and (level >= 1 or o.json):
        hosts = [h for h in hosts if h["host_no"] == wanted]
        if not hosts:
            raise E.CliError(f"Could not get host info for host {wanted}",
                             E.BY_NAME["ISCSI_ERR_HOST_NOT_FOUND"])
    if not hosts:
        if level >= 4 and not o.json:  # iscsiadm prints its versions first (host_info_print)
            from ..db.schema import FORMAT_VERSION

            o.lines(version_lines((sysfs.module_version(), FORMAT_VERSION)))
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
