"""``-m host -H N -C chap`` and ``-m host -H N -C stats``: an offload HBA's CHAP table and
statistics, which its driver keeps (qla4xxx; qedi has statistics), read and written over
NETLINK_ISCSI as open-iscsi 2.1.8 does it (usr/iscsiadm.c exec_host_chap_op,
exec_host_stats_op; usr/host.c chap_build_config; usr/idbm.c idbm_recinfo_host_chap).

``-C chap`` needs ``-H`` and one ``-o`` ("CHAP mode requires host no and valid operation",
exit 7):

* ``-o show``: the table as records, read 7 entries a request (iscsiadm's 4096-byte buffer
  of 524-byte ``struct iscsi_chap_rec``) from index 0 on::

      # BEGIN RECORD 2.1.8
      host.auth.tbl_idx = 0
      host.auth.username = initiator-user        (an entry iSCSI login answers with)
      host.auth.password = ********
      # END RECORD
      # BEGIN RECORD 2.1.8
      host.auth.tbl_idx = 1
      host.auth.username_in = target-user        (one the target's answer is checked with:
      host.auth.password_in = ********            mutual CHAP)
      # END RECORD

  ``--json``: ``[{"host_no", "index", "type": "out"|"in", "username", "password"}]``.
* ``-o new`` or ``-o update`` with ``-x IDX`` and a username and secret, ``-n
  host.auth.username -v NAME -n host.auth.password -v SECRET`` (or ``username_in`` and
  ``password_in``): ISCSI_UEVENT_SET_CHAP with the index (u16), the type (u32: 0 out, 1
  in), the name and secret (their bytes, no NUL) and the secret's length (u8), as
  ``iscsi_param_info`` nlattrs in that order.  Nothing is printed.
* ``-o delete -x IDX``: "Deleting CHAP index: IDX", then ISCSI_UEVENT_DELETE_CHAP.

Errors as iscsiadm's: no transport for the host, 12; a name without its secret (or a name
and a secret of different directions), "Invalid username/password pair passed. Unable to
determine the type of chap entry", 7; more than one pair, "Only one pair of
username/password can be passed.", 1; an entry a flash target uses (EBUSY), "CHAP index
IDX is in use.", 28; any other refusal by the kernel or driver, 1, said with its errno (a software
host's driver keeps no table: GET_CHAP is EINVAL, SET_CHAP and DELETE_CHAP ENOSYS).

``-C stats`` needs ``-H`` ("STATS mode requires host no", 7): "Host Statistics:" and the
82 counters of ``struct iscsi_offload_host_stats`` (``\\tmactx_frames: 0`` ...), in the
kernel's order, from ISCSI_UEVENT_GET_HOST_STATS; the driver's own counters after them, if
it has any.  ``--json``: ``{"host_no", "transport", <each counter>, "custom": [[desc,
value], ...]}``, the shape of ``-m session -s``'s.

Deliberate differences from iscsiadm 2.1.8:

* success is exit 0 (iscsiadm exits with the byte count of the kernel's answer modulo 256:
  156 for a table read, 72 for a delete, 224 for statistics);
* the secrets are ``********`` unless ``-S`` (iscsiadm prints them);
* ``-o show -x IDX`` shows that entry (iscsiadm ignores ``-x`` there and lists them all);
  an empty table is "No CHAP entries on host N." (21; iscsiadm prints nothing);
* ``-o new|update`` without ``-x`` sends index 2049, as iscsiadm: qla4xxx puts the entry
  in the table's first free place (qla4xxx_set_chap_entry); ``-o delete`` without ``-x``
  is refused (7; iscsiadm says "Invalid chap table index." and exits 0), as is a delete
  past MAX_CHAP_ENTRIES, 2048 ("Invalid chap table index.", 7; iscsiadm says it and exits
  0), an index past 65535 (iscsiadm cuts it to 16 bits: 65541 would change entry 5), no name
  and secret (iscsiadm: "Chap username/password not provided." and exit 0), and a name or
  secret that is empty or longer than 255 bytes (iscsiadm cuts it to 255);
* a refusal is said with the kernel's errno ("get_chap_info failed: EINVAL, Invalid
  argument"; iscsiadm prints ``errno=0``);
* the counters are printed unsigned (iscsiadm's ``%lld`` prints one of 2^63 or more as a
  negative number), and the driver's own counters too (iscsiadm leaves them out).
"""

from __future__ import annotations

import struct
from typing import Any

from ..netlink.enums import ISCSI_CHAP_AUTH_NAME_MAX_LEN
from ..netlink.errors import IscsiNetlinkError
from . import errors as E
from .hba import describe, hba_netlink, host_transport, kernel_errno, transport_handle

#: MAX_CHAP_ENTRIES (usr/host.h): the highest index iscsiadm deletes
MAX_CHAP_ENTRIES = 2048
#: the index -o new|update sends without -x (iscsiadm's MAX_CHAP_ENTRIES + 1): past any
#: table, so the driver takes its first free entry
FIRST_FREE_CHAP_INDEX = MAX_CHAP_ENTRIES + 1
#: the entries a GET_CHAP asks for: iscsiadm's MAX_CHAP_BUF_SZ (4096) / sizeof(struct
#: iscsi_chap_rec) (524)
CHAP_ENTRIES_PER_READ = 4096 // 524
#: ``chap_tbl_idx`` is a uint16_t in every message and record
MAX_CHAP_INDEX = 0xFFFF
#: ISCSI_CHAP_AUTH_NAME_MAX_LEN (= ..._SECRET_MAX_LEN, iscsi_if.h), the NUL included
CHAP_FIELD_MAX = ISCSI_CHAP_AUTH_NAME_MAX_LEN
BUSY = E.BY_NAME["ISCSI_ERR_BUSY"]
ULLONG_MAX = (1 << 64) - 1

#: the keys of a CHAP entry by direction (usr/idbm_fields.h HOST_AUTH_*): (name, secret)
CHAP_KEYS = {
    "out": ("host.auth.username", "host.auth.password"),
    "in": ("host.auth.username_in", "host.auth.password_in"),
}
CHAP_TYPES = {"out": 0, "in": 1}  # enum chap_type_e


def run(args, o, sysfs, submode: str, host_no: int | None, index: int | None) -> int:  # type: ignore[no-untyped-def]
    """``-C chap`` or ``-C stats`` of ``-m host`` (``index``: ``-x`` as strtoull read it)."""
    from ._common import op_mask
    from .host_cmd import op_name

    mask = op_mask(args.op or [])
    if submode == "stats":
        if host_no is None:
            raise E.CliError("STATS mode requires host no", E.INVAL)
        return _stats(o, sysfs, host_no)
    if not mask or host_no is None:
        raise E.CliError("CHAP mode requires host no and valid operation", E.INVAL)
    if index == ULLONG_MAX:  # iscsiadm's "no -x" (and -x -1, as strtoull reads it)
        index = None
    op = op_name(mask)
    if op not in ("show", "new", "update", "delete"):
        raise E.CliError("Invalid operation.", E.INVAL)
    transport = host_transport(sysfs, o, host_no)
    if op == "show":
        return _show(args, o, sysfs, transport, host_no, index)
    if index is None and op == "delete":
        raise E.CliError(f"-o {op} needs the CHAP entry's index (-x IDX)", E.INVAL)
    if index is None:  # iscsiadm's MAX_CHAP_ENTRIES + 1: the driver's first free entry
        index = FIRST_FREE_CHAP_INDEX
    if index > MAX_CHAP_INDEX or (op == "delete" and index > MAX_CHAP_ENTRIES):
        raise E.CliError("Invalid chap table index.", E.INVAL)
    if op == "delete":
        return _delete(o, sysfs, transport, host_no, index)
    return _set(args, o, sysfs, transport, host_no, index, op)


def _show(args, o, sysfs, transport: str, host_no: int, index: int | None) -> int:  # type: ignore[no-untyped-def]
    """Read the whole table (or from ``index`` on, for that one entry) and print it."""
    handle = transport_handle(sysfs, transport)
    entries = []
    start = 0 if index is None else min(index, MAX_CHAP_INDEX)
    with hba_netlink() as nl:
        while True:
            try:
                got = nl.get_chap(handle, host_no, start, CHAP_ENTRIES_PER_READ)
            except IscsiNetlinkError as e:
                _netlink_failure(e, f"get_chap_info failed: {describe(e)}")
            entries += got
            if index is not None or len(got) < CHAP_ENTRIES_PER_READ:
                break
            after = got[-1].chap_tbl_idx + 1
            if after <= start:  # a driver that does not move on: iscsiadm asks forever
                raise E.CliError(f"get_chap_info failed: the driver answered entries from "
                                 f"{got[0].chap_tbl_idx} when asked from {start}", E.ERR)
            if after > MAX_CHAP_INDEX:  # a full table: iscsiadm's u16 wraps, reads it again
                break
            start = after
    if index is not None:
        entries = [c for c in entries if c.chap_tbl_idx == index]
    if not entries:
        raise E.CliError(f"No CHAP entries on host {host_no}." if index is None else
                         f"No CHAP entry {index} on host {host_no}.", E.NO_OBJS_FOUND)
    show = bool(args.show)
    records = [_chap_values(c, show) for c in entries]
    if o.json:
        o.emit_json([{"host_no": host_no, "index": c.chap_tbl_idx,
                      "type": "out" if c.chap_type == CHAP_TYPES["out"] else "in",
                      "username": r[1][1], "password": r[2][1]}
                     for c, r in zip(entries, records)])
        return E.SUCCESS
    from ..db.schema import BEGIN_RECORD, END_RECORD, FORMAT_VERSION

    lines = []
    for rec in records:
        lines.append(f"{BEGIN_RECORD} {FORMAT_VERSION}")
        lines += [f"{key} = {value or '<empty>'}" for key, value in rec]
        lines.append(END_RECORD)
    o.lines(lines)
    return E.SUCCESS


def _chap_values(c, show: bool) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """One entry's keys and values as idbm_recinfo_host_chap lists them (an entry whose type
    is not CHAP_TYPE_OUT an incoming one; the secret as the C string it is, ``********``
    unless ``show``)."""
    from ..kernel.sysfs import c_string

    name_key, secret_key = CHAP_KEYS["out" if c.chap_type == CHAP_TYPES["out"] else "in"]
    secret = c.password.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if secret and not show:
        secret = "********"
    return [("host.auth.tbl_idx", str(c.chap_tbl_idx)),
            (name_key, c_string(c.username, CHAP_FIELD_MAX)), (secret_key, secret)]


def _chap_pair(params: list[tuple[str, str]]) -> tuple[str, bytes, bytes]:
    """The entry's direction, name and secret from the ``-n``/``-v`` pairs
    (usr/iscsiadm.c verify_host_chap_params, then the checks iscsiadm leaves out)."""
    kinds = {key: (kind, i) for kind, keys in CHAP_KEYS.items() for i, key in enumerate(keys)}
    found: dict[int, str] = {}
    for name, _value in params:
        if name in kinds:
            kind, i = kinds[name]
            found[i] = kind
    if len(found) != 2 or found[0] != found[1]:
        raise E.CliError("Invalid username/password pair passed. Unable to determine the "
                         "type of chap entry", E.INVAL)
    if len(params) > 2:
        raise E.CliError("Only one pair of username/password can be passed.", E.ERR)
    kind = found[0]
    values = dict(params)
    name, secret = (values[k].encode("utf-8", "surrogateescape") for k in CHAP_KEYS[kind])
    for what, raw in (("username", name), ("password", secret)):
        if not raw or len(raw) >= CHAP_FIELD_MAX:
            raise E.CliError(f"The CHAP {what} must be 1 to {CHAP_FIELD_MAX - 1} bytes long "
                             f"(it is {len(raw)}).", E.INVAL)
    return kind, name, secret


def chap_entries(index: int, kind: str, name: bytes, secret: bytes) -> list[dict[str, Any]]:
    """SET_CHAP's ``iscsi_param_info`` entries (usr/host.c chap_build_config): the index as
    a u16, the type as a u32 (an enum), the name and secret without their NUL, the secret's
    length as a u8.  Little-endian, as the machine's."""
    from ..netlink.enums import IscsiChapParam as P

    return [{"param": P.INDEX, "value": struct.pack("=H", index)},
            {"param": P.CHAP_TYPE, "value": struct.pack("=I", CHAP_TYPES[kind])},
            {"param": P.USERNAME, "value": name},
            {"param": P.PASSWORD, "value": secret},
            {"param": P.PASSWORD_LEN, "value": struct.pack("=B", len(secret))}]


def _set(args, o, sysfs, transport: str, host_no: int, index: int, op: str) -> int:  # type: ignore[no-untyped-def]
    params = list(args.params or [])
    if not params:
        raise E.CliError("Chap username/password not provided.", E.INVAL)
    kind, name, secret = _chap_pair(params)
    handle = transport_handle(sysfs, transport)
    with hba_netlink() as nl:
        try:
            nl.set_chap(handle, host_no, chap_entries(index, kind, name, secret))
        except IscsiNetlinkError as e:
            _netlink_failure(e, f"CHAP setting failed: {describe(e)}", index)
    if o.json:  # the driver's first free entry (no -x): which one, the kernel does not say
        o.emit_json({"host_no": host_no,
                     "index": None if index == FIRST_FREE_CHAP_INDEX else index,
                     "op": op, "rc": 0})
    return E.SUCCESS


def _delete(o, sysfs, transport: str, host_no: int, index: int) -> int:  # type: ignore[no-untyped-def]
    handle = transport_handle(sysfs, transport)
    with hba_netlink() as nl:
        o.json or o.lines([f"Deleting CHAP index: {index}"])
        try:
            nl.delete_chap(handle, host_no, index)
        except IscsiNetlinkError as e:
            _netlink_failure(e, f"CHAP Delete failed: {describe(e)}", index)
    if o.json:
        o.emit_json({"host_no": host_no, "index": index, "op": "delete", "rc": 0})
    return E.SUCCESS


def _netlink_failure(exc: IscsiNetlinkError, message: str, index: int | None = None) -> None:
    """Raise the CliError of a failed request: 28 for an entry in use (EBUSY), else 1."""
    import errno

    if kernel_errno(exc) == errno.EBUSY and index is not None:
        raise E.CliError(f"CHAP index {index} is in use.", BUSY, lines=(message,)) from None
    raise E.CliError(message, E.ERR) from None


def _stats(o, sysfs, host_no: int) -> int:  # type: ignore[no-untyped-def]
    """``-C stats``: GET_HOST_STATS, printed as usr/iscsiadm.c print_host_stats."""
    transport = host_transport(sysfs, o, host_no)
    handle = transport_handle(sysfs, transport)
    with hba_netlink() as nl:
        try:
            stats = nl.get_host_stats(handle, host_no)
        except IscsiNetlinkError as e:
            _netlink_failure(e, f"get_host_stats failed: {describe(e)}")
    if o.json:
        # the shape of -m session -s's: the counters beside the identity, the custom ones
        # as [desc, value] pairs in the kernel's order
        o.emit_json({"host_no": host_no, "transport": transport, **stats.counters,
                     "custom": [list(c) for c in stats.custom]})
        return E.SUCCESS
    o.lines(["Host Statistics:", *(f"\t{k}: {v}" for k, v in stats.counters.items()),
             *(f"\t{desc}: {v}" for desc, v in stats.custom)])
    return E.SUCCESS
