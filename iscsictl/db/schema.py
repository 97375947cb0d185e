"""Declarative tables of open-iscsi's persistent records: one table per record kind.

Each table is the single source for parsing, printing, validating and documenting a record.
Entries are in open-iscsi's order.  Sources (open-iscsi 2.1.8, the version Debian 12 ships):

* node records: ``usr/idbm.c`` ``idbm_recinfo_node`` (the order used when *writing* the file)
  and ``libopeniscsiusr/idbm.c`` ``_idbm_node_rec_link`` (the order ``iscsiadm -m node -o show``
  prints, which takes the iface block in iface-record order);
* discovery records: ``usr/idbm.c`` ``idbm_recinfo_discovery`` (sendtargets and isns cases);
* iface records: ``usr/idbm.c`` ``idbm_recinfo_iface`` / ``libopeniscsiusr`` ``_idbm_iface_rec_link``;
* defaults: ``idbm_node_setup_defaults``, ``idbm_discovery_setup_defaults``,
  ``usr/iscsi_settings.h``; key names: ``usr/idbm_fields.h``.

Value model: ``str`` keys hold ``str`` (``""`` = unset), ``int`` keys hold ``int``, ``enum`` and
``bool`` keys hold one of ``Key.values`` (text, e.g. ``"manual"``, ``"Yes"``), ``list`` keys
(``chap_algs``) hold a ``tuple`` of option names in preference order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ..lexical import ascii_digits, host_key

#: Version written after ``# BEGIN RECORD``.  Debian 12's iscsiadm writes ``2.1.8``.
FORMAT_VERSION = "2.1.8"
BEGIN_RECORD = "# BEGIN RECORD"
END_RECORD = "# END RECORD"
#: fgets buffer of ``idbm_recinfo_config``: longer lines are not records' lines.
MAX_LINE = 2048
#: ``VALUE_MAXVAL`` (256) of idbm's key table, less its NUL: bytes of a text value
#: iscsiadm holds (it cuts a longer one there, with "value too long")
MAX_VALUE = 255
#: iface_rec's text fields of ``ISCSI_MAX_STR_LEN`` (80) bytes (usr/config.h), by key
_ISCSI_MAX_STR_KEYS = (
    "state", "vlan_state", "bootproto", "dhcp_alt_client_id_state", "dhcp_alt_client_id",
    "dhcp_dns", "dhcp_learn_iqn", "dhcp_req_vendor_id_state", "dhcp_vendor_id_state",
    "dhcp_vendor_id", "dhcp_slp_da", "fragmentation", "gratuitous_arp",
    "incoming_forwarding", "tos_state", "gratuitous_neighbor_adv", "mld", "delayed_ack",
    "tcp_nagle", "tcp_wsf_state", "tcp_timestamp", "redirect", "header_digest",
    "data_digest", "immediate_data", "initial_r2t", "data_seq_inorder", "data_pdu_inorder",
    "chap_auth", "bidi_chap", "strict_login_compliance", "discovery_auth",
    "discovery_logout")
#: text keys whose open-iscsi field is smaller, less its NUL: iface_rec's
#: ``hwaddress[ISCSI_HWADDRESS_BUF_SIZE]``, ``netdev[IFNAMSIZ]``,
#: ``transport_name[ISCSI_TRANSPORT_NAME_MAXLEN]`` and the ``ISCSI_MAX_STR_LEN`` ones
VALUE_SIZES = {"iface.hwaddress": 17, "iface.net_ifacename": 15, "iface.transport_name": 15,
               **{f"iface.{key}": 79 for key in _ISCSI_MAX_STR_KEYS}}
#: ``ISCSI_MAX_IFACE_LEN`` (65) minus the NUL.
MAX_IFACE_NAME = 64
#: ``PORTAL_GROUP_TAG_UNKNOWN``
TPGT_UNKNOWN = -1
ISCSI_LISTEN_PORT = 3260
ISNS_DEFAULT_PORT = 3205
BUILTIN_IFACES = {"default": "tcp", "iser": "iser"}
#: the example iface file open-iscsi once installed in ifaces/ (comments only; RPM packages
#: still ship it): open-iscsi skips it by name (iface_for_each_iface, libopeniscsiusr)
IFACE_EXAMPLE = "iface.example"

#: ``chap_algs`` option names (``usr/idbm.c`` ``chap_algs[]``).
CHAP_ALGS = ("MD5", "SHA1", "SHA256", "SHA3-256")
NODE_DISC_TYPES = ("send_targets", "isns", "offload_send_targets", "slp", "static", "fw")
#: a node's values open-iscsi holds in memory only (struct session_rec's boot_root, boot_nic,
#: boot_target: idbm_create_rec_from_boot_context sets them, no record file has them): the
#: firmware's names of a boot target (``ibft``, ``ethernet0``, ``target0``), which the kernel
#: shows as the session's boot_* attributes (ISCSI_PARAM_BOOT_ROOT ...)
NODE_MEMORY_ONLY = ("node.session.boot_root", "node.session.boot_nic", "node.session.boot_target")
DISC_TYPES = ("sendtargets", "isns", "offload_send_targets", "slp", "static", "fw")
STARTUP3 = ("manual", "automatic", "onboot")
DIGESTS = ("None", "CRC32C", "CRC32C,None", "None,CRC32C")
YESNO = ("No", "Yes")

# integer widths: (min, max) of the C field
_RANGES = {
    "int": (-(2 ** 31), 2 ** 31 - 1),
    "u8": (0, 255),
    "u16": (0, 65535),
    "u32": (0, 2 ** 32 - 1),
    "i64": (-(2 ** 63), 2 ** 63 - 1),
}


@dataclass(frozen=True)
class Key:
    """One record key.

    name     the key as written in the file (``node.session.cmds_max``)
    type     ``str`` | ``int`` | ``enum`` | ``bool`` (Yes/No) | ``list`` (comma list of ``values``)
    default  the compiled default (open-iscsi ``*_setup_defaults``)
    values   options of enum/bool/list keys, in open-iscsi's option-index order
    width    C integer field: ``int``, ``u8``, ``u16``, ``u32``, ``i64``
    update   ``"ok"``; ``"lookup"`` (identifies the record, ``-o update`` refuses); ``"iface"``
             (a node record's iface.* key: iscsiadm says to use iface mode)
    secret   printed ``********`` by ``-o show`` unless show-secrets (IDBM_MASKED)
    hidden   never printed (IDBM_HIDE): the ``*_length`` companions of passwords
    block    ``None`` | ``"ipv4"`` | ``"ipv6"``: the iface sub-block the key belongs to
    length_of for hidden length keys, the password key whose strlen they hold
    since    first open-iscsi version that has the key; it is printed only when the format
             version is at least this or the value is not the default (parsing always
             accepts it)
    doc      one line for docs
    """

    name: str
    type: str
    default: object
    values: tuple = ()
    width: str = "int"
    update: str = "ok"
    secret: bool = False
    hidden: bool = False
    block: str | None = None
    length_of: str | None = None
    since: tuple | None = None
    doc: str = ""

    @property
    def read_only(self) -> bool:
        """True when ``-o update`` refuses the key."""
        return self.update != "ok"

    @property
    def range(self) -> tuple[int, int]:
        """(min, max) accepted for an int key."""
        return _RANGES[self.width]


def _s(name, default="", **kw):
    return Key(name, "str", default, **kw)


def _i(name, default=0, width="int", **kw):
    return Key(name, "int", default, width=width, **kw)


def _e(name, values, default, **kw):
    return Key(name, "enum", default, values=tuple(values), **kw)


def _b(name, default="No", **kw):
    return Key(name, "bool", default, values=YESNO, **kw)


def _l(name, values, default, **kw):
    return Key(name, "list", tuple(default), values=tuple(values), **kw)


# --------------------------------------------------------------------------------------------
# iface keys (idbm_recinfo_iface order).  In iface records iface.iscsi_ifacename is the lookup
# key; in node records every iface.* key but iface.transport_name is refused by -o update.
# --------------------------------------------------------------------------------------------
def _iface_keys(in_node: bool) -> list[Key]:
    u = "iface" if in_node else "ok"
    v4 = dict(block="ipv4", update=u)
    v6 = dict(block="ipv6", update=u)
    return [
        _s("iface.iscsi_ifacename", "default", update="iface" if in_node else "lookup",
           doc="iface name (ifaces/<name>)"),
        _s("iface.net_ifacename", update=u, doc="network device to bind to"),
        _s("iface.ipaddress", update=u, doc="source address; no '.' means IPv6"),
        _i("iface.prefix_len", 0, "u8", update=u),
        _s("iface.hwaddress", update=u, doc="MAC to bind to"),
        _s("iface.transport_name", "tcp", doc="tcp, iser, bnx2i, qla4xxx, ..."),
        _s("iface.initiatorname", update=u, doc="overrides initiatorname.iscsi"),
        _s("iface.state", update=u),
        _i("iface.vlan_id", 0, "u16", update=u),
        _i("iface.vlan_priority", 0, "u8", update=u),
        _s("iface.vlan_state", update=u),
        _i("iface.iface_num", 0, "u32", update=u),  # the kernel's iscsi_iface_param_info field
        _i("iface.mtu", 0, "u16", update=u),
        _i("iface.port", 0, "u16", update=u),
        # IPv4 block
        _s("iface.bootproto", **v4),
        _s("iface.subnet_mask", **v4),
        _s("iface.gateway", **v4),
        _s("iface.dhcp_alt_client_id_state", **v4),
        _s("iface.dhcp_alt_client_id", **v4),
        _s("iface.dhcp_dns", **v4),
        _s("iface.dhcp_learn_iqn", **v4),
        _s("iface.dhcp_req_vendor_id_state", **v4),
        _s("iface.dhcp_vendor_id_state", **v4),
        _s("iface.dhcp_vendor_id", **v4),
        _s("iface.dhcp_slp_da", **v4),
        _s("iface.fragmentation", **v4),
        _s("iface.gratuitous_arp", **v4),
        _s("iface.incoming_forwarding", **v4),
        _s("iface.tos_state", **v4),
        _i("iface.tos", 0, "u8", **v4),
        _i("iface.ttl", 0, "u8", **v4),
        # IPv6 block
        _s("iface.ipv6_autocfg", **v6),
        _s("iface.linklocal_autocfg", **v6),
        _s("iface.router_autocfg", **v6),
        _s("iface.ipv6_linklocal", **v6),
        _s("iface.ipv6_router", **v6),
        _i("iface.dup_addr_detect_cnt", 0, "u8", **v6),
        _i("iface.flow_label", 0, "u32", **v6),
        _s("iface.gratuitous_neighbor_adv", **v6),
        _i("iface.hop_limit", 0, "u8", **v6),
        _s("iface.mld", **v6),
        _i("iface.nd_reachable_tmo", 0, "u32", **v6),
        _i("iface.nd_rexmit_time", 0, "u32", **v6),
        _i("iface.nd_stale_tmo", 0, "u32", **v6),
        _i("iface.router_adv_link_mtu", 0, "u32", **v6),
        _i("iface.traffic_class", 0, "u8", **v6),
        # common tail
        _s("iface.delayed_ack", update=u),
        _s("iface.tcp_nagle", update=u),
        _s("iface.tcp_wsf_state", update=u),
        _i("iface.tcp_wsf", 0, "u8", update=u),
        _i("iface.tcp_timer_scale", 0, "u8", update=u),
        _s("iface.tcp_timestamp", update=u),
        _s("iface.redirect", update=u),
        _i("iface.def_task_mgmt_timeout", 0, "u16", update=u),
        _s("iface.header_digest", update=u),
        _s("iface.data_digest", update=u),
        _s("iface.immediate_data", update=u),
        _s("iface.initial_r2t", update=u),
        _s("iface.data_seq_inorder", update=u),
        _s("iface.data_pdu_inorder", update=u),
        _i("iface.erl", 0, "u8", update=u),
        _i("iface.max_receive_data_len", 0, "u32", update=u),
        _i("iface.first_burst_len", 0, "u32", update=u),
        _i("iface.max_outstanding_r2t", 0, "u16", update=u),
        _i("iface.max_burst_len", 0, "u32", update=u),
        _s("iface.chap_auth", update=u),
        _s("iface.bidi_chap", update=u),
        _s("iface.strict_login_compliance", update=u),
        _s("iface.discovery_auth", update=u),
        _s("iface.discovery_logout", update=u),
    ]


_NODE_HEAD = [
    _s("node.name", update="lookup", doc="target IQN / EUI"),
    _i("node.tpgt", TPGT_UNKNOWN, update="lookup", doc="target portal group tag; -1 unknown"),
    _e("node.startup", STARTUP3, "manual", doc="login at boot/service start"),
    _b("node.leading_login", "No"),
]

_NODE_TAIL = [
    _s("node.discovery_address", update="lookup"),
    _i("node.discovery_port", 0, update="lookup"),
    _e("node.discovery_type", NODE_DISC_TYPES, "static", update="lookup"),
    _i("node.session.initial_cmdsn", 0, "u32"),
    _i("node.session.initial_login_retry_max", 4, "i64",
       doc="login attempts at startup (iscsid.conf ships 8)"),
    _i("node.session.xmit_thread_priority", -20, "i64"),
    _i("node.session.cmds_max", 128, "u16"),
    _i("node.session.queue_depth", 32, "u16"),
    _i("node.session.nr_sessions", 1),  # int, as session_rec.nr_sessions
    _e("node.session.auth.authmethod", ("None", "CHAP"), "None"),
    _s("node.session.auth.username"),
    _s("node.session.auth.password", secret=True),
    _i("node.session.auth.password_length", 0, "u32", hidden=True,
       length_of="node.session.auth.password"),
    _s("node.session.auth.username_in"),
    _s("node.session.auth.password_in", secret=True),
    _i("node.session.auth.password_in_length", 0, "u32", hidden=True,
       length_of="node.session.auth.password_in"),
    _l("node.session.auth.chap_algs", CHAP_ALGS, ("MD5",), doc="CHAP digests in preference order"),
    _i("node.session.timeo.replacement_timeout", 120),
    _i("node.session.err_timeo.abort_timeout", 15),
    _i("node.session.err_timeo.lu_reset_timeout", 30),
    _i("node.session.err_timeo.tgt_reset_timeout", 30),
    _i("node.session.err_timeo.host_reset_timeout", 60),
    _b("node.session.iscsi.FastAbort", "Yes"),
    _b("node.session.iscsi.InitialR2T", "No"),
    _b("node.session.iscsi.ImmediateData", "Yes"),
    _i("node.session.iscsi.FirstBurstLength", 262144, "u32"),
    _i("node.session.iscsi.MaxBurstLength", 16776192, "u32"),
    _i("node.session.iscsi.DefaultTime2Retain", 0, "u32"),
    _i("node.session.iscsi.DefaultTime2Wait", 2, "u32"),
    _i("node.session.iscsi.MaxConnections", 1, "u32"),
    _i("node.session.iscsi.MaxOutstandingR2T", 1, "u32"),
    _i("node.session.iscsi.ERL", 0, "u32"),
    _e("node.session.scan", ("manual", "auto"), "auto"),
    _i("node.session.reopen_max", 0, "u32", doc="0 = retry forever"),
    _i("node.session.conn_reopen_log_freq", 1, "u32", since=(2, 1, 11)),
    _s("node.conn[0].address", update="lookup"),
    _i("node.conn[0].port", ISCSI_LISTEN_PORT, update="lookup"),
    _e("node.conn[0].startup", STARTUP3, "manual"),
    _i("node.conn[0].tcp.window_size", 524288),
    _i("node.conn[0].tcp.type_of_service", 0),
    _s("node.conn[0].tcp.congestion_control", since=(2, 1, 12)),
    _i("node.conn[0].timeo.logout_timeout", 15),
    _i("node.conn[0].timeo.login_timeout", 30, doc="iscsid.conf ships 15"),
    _i("node.conn[0].timeo.auth_timeout", 45),
    _i("node.conn[0].timeo.noop_out_interval", 5),
    _i("node.conn[0].timeo.noop_out_timeout", 5),
    _i("node.conn[0].iscsi.MaxXmitDataSegmentLength", 0, doc="0 = the target's MRDSL"),
    _i("node.conn[0].iscsi.MaxRecvDataSegmentLength", 262144),
    _e("node.conn[0].iscsi.HeaderDigest", DIGESTS, "None"),
    _e("node.conn[0].iscsi.DataDigest", DIGESTS, "None"),
    _b("node.conn[0].iscsi.IFMarker", "No"),
    _b("node.conn[0].iscsi.OFMarker", "No"),
]

#: Node record keys, in ``iscsiadm -m node -o show`` order (libopeniscsiusr).
NODE_KEYS: tuple[Key, ...] = tuple(_NODE_HEAD + _iface_keys(True) + _NODE_TAIL)

#: Order of the iface keys when usr/idbm.c writes a node *file* (``idbm_recinfo_node``); the
#: IPv4 block there has no subnet_mask/gateway (they sit in the head).
_NODE_FILE_IFACE_HEAD = (
    "iface.hwaddress", "iface.ipaddress", "iface.iscsi_ifacename", "iface.net_ifacename",
    "iface.gateway", "iface.subnet_mask", "iface.prefix_len", "iface.transport_name",
    "iface.initiatorname", "iface.state", "iface.vlan_id", "iface.vlan_priority",
    "iface.vlan_state", "iface.iface_num", "iface.mtu", "iface.port",
)

#: Iface record keys (``ifaces/<name>``), in file and show order.
IFACE_KEYS: tuple[Key, ...] = tuple(_iface_keys(False))


def _disc_auth(prefix: str) -> list[Key]:
    return [
        _e(prefix + "auth.authmethod", ("None", "CHAP"), "None"),
        _s(prefix + "auth.username"),
        _s(prefix + "auth.password", secret=True),
        _i(prefix + "auth.password_length", 0, "u32", hidden=True,
           length_of=prefix + "auth.password"),
        _s(prefix + "auth.username_in"),
        _s(prefix + "auth.password_in", secret=True),
        _i(prefix + "auth.password_in_length", 0, "u32", hidden=True,
           length_of=prefix + "auth.password_in"),
    ]


#: SendTargets discovery record keys (``send_targets/<ip>,<port>/st_config``).
DISCOVERY_ST_KEYS: tuple[Key, ...] = tuple([
    _e("discovery.startup", ("manual", "automatic"), "manual"),
    _e("discovery.type", DISC_TYPES, "sendtargets", update="lookup"),
    _s("discovery.sendtargets.address", update="lookup"),
    _i("discovery.sendtargets.port", ISCSI_LISTEN_PORT, update="lookup"),
    *_disc_auth("discovery.sendtargets."),
    # open-iscsi reuses the node key name here (SESSION_CHAP_ALGS)
    _l("node.session.auth.chap_algs", CHAP_ALGS, ("MD5",)),
    _i("discovery.sendtargets.timeo.login_timeout", 15),
    _b("discovery.sendtargets.use_discoveryd", "No"),
    _i("discovery.sendtargets.discoveryd_poll_inval", 30),
    _i("discovery.sendtargets.reopen_max", 5),
    _i("discovery.sendtargets.timeo.auth_timeout", 45),
    _i("discovery.sendtargets.timeo.active_timeout", 30),
    _i("discovery.sendtargets.iscsi.MaxRecvDataSegmentLength", 32768),
])

#: iSNS discovery record keys (``isns/<ip>,<port>/isns_config``); the address keys reuse the
#: sendtargets names, as open-iscsi does (DISC_ISNS_ADDR == DISC_ST_ADDR).
DISCOVERY_ISNS_KEYS: tuple[Key, ...] = tuple([
    _e("discovery.startup", ("manual", "automatic"), "manual"),
    _e("discovery.type", DISC_TYPES, "isns", update="lookup"),
    _s("discovery.sendtargets.address", update="lookup"),
    _i("discovery.sendtargets.port", ISNS_DEFAULT_PORT, update="lookup"),
    _b("discovery.isns.use_discoveryd", "No"),
    _i("discovery.isns.discoveryd_poll_inval", -1),
])


@dataclass(frozen=True, eq=False)
class RecordKind:
    """A record kind: its name, key table (show order) and lookup helpers.  Compared and
    hashed by identity (one object per kind), so per-kind tables can be cached on it."""

    name: str
    keys: tuple[Key, ...]
    by_name: dict = field(default_factory=dict)

    def __post_init__(self):
        self.by_name.update({k.name: k for k in self.keys})


NODE = RecordKind("node", NODE_KEYS)
IFACE = RecordKind("iface", IFACE_KEYS)
DISCOVERY_ST = RecordKind("discovery_st", DISCOVERY_ST_KEYS)
DISCOVERY_ISNS = RecordKind("discovery_isns", DISCOVERY_ISNS_KEYS)
KINDS = {k.name: k for k in (NODE, IFACE, DISCOVERY_ST, DISCOVERY_ISNS)}
#: the names of the keys holding secrets (CHAP passwords), in any kind
SECRET_KEYS = frozenset(key.name for kind in KINDS.values() for key in kind.keys if key.secret)

#: node file order: head, iface keys in usr/idbm.c order, tail
NODE_FILE_ORDER: tuple[Key, ...] = tuple(
    _NODE_HEAD
    + [NODE.by_name[n] for n in _NODE_FILE_IFACE_HEAD]
    + [k for k in NODE_KEYS if k.name.startswith("iface.") and k.name not in _NODE_FILE_IFACE_HEAD]
    + _NODE_TAIL
)

#: Discovery-kind names by the ``-t`` / ``discovery.type`` text.
DISCOVERY_KINDS = {"sendtargets": DISCOVERY_ST, "st": DISCOVERY_ST, "isns": DISCOVERY_ISNS}


def startup_matches(values: Mapping[str, str], which: str) -> bool:
    """iscsiadm's match_startup_mode: ``which`` is ``all``, or a node record's (text
    ``values``) node.startup or node.conn[0].startup is ``which`` (the latter defaults to
    manual, so ``manual`` takes most records)."""
    return which == "all" or which in (values.get("node.startup"),
                                       values.get("node.conn[0].startup"))


#: a node's target and portal (target, host_key(address), port): what a leading login
#: counts a session by, through any iface (iscsiadm's iscsi_match_target)
PortalKey = tuple[str, str, int]


def portal_key(values: Mapping[str, str]) -> PortalKey:
    """A node record's (text ``values``) :data:`PortalKey`."""
    port = str(values.get("node.conn[0].port") or "")  # text, or a Record's int
    return (values.get("node.name") or "", host_key(values.get("node.conn[0].address") or ""),
            int(port) if ascii_digits(port) else ISCSI_LISTEN_PORT)


def leading_login_rounds(recs: list, present: Callable[[], set[PortalKey]]) -> Iterator[list]:
    """node.leading_login = Yes records, as iscsiadm's login_by_startup logs them in: iface
    by iface (by name), the records through it whose portal has no session yet through
    any iface (``present()``, asked before each round: the last round's logins count); the
    caller logs each list in before asking for the next.  A portal still without a session
    after the last round is the caller's to say (19 in iscsiadm)."""
    def iface(r) -> str:  # type: ignore[no-untyped-def]
        return r.get("iface.iscsi_ifacename") or "default"
    for name in sorted({iface(r) for r in recs}):
        have = present()
        todo = [r for r in recs if iface(r) == name and portal_key(r) not in have]
        if todo:
            yield todo


def version_tuple(version: str) -> tuple:
    """``"2.1.8"`` -> ``(2, 1, 8)``; non-numeric parts stop the tuple (``"6.2.1.2-0"`` -> (6,2,1,2))."""
    out = []
    for part in version.replace("-", ".").split("."):
        if not ascii_digits(part):
            break
        out.append(int(part))
    return tuple(out)


def key_in_version(key: Key, version: str = FORMAT_VERSION) -> bool:
    """True if ``key`` exists in open-iscsi ``version`` (``Key.since``)."""
    return key.since is None or version_tuple(version) >= key.since


def iface_is_ipv6_by_address(values: dict) -> bool:
    """usr/iface.c ``iface_get_iptype``: with an address set, IPv6 iff it has no '.' and
    bootproto is not ``dhcp``; without one (or ``<empty>``), IPv6 iff the iface name contains
    ``ipv6``.  The kind of address an iface configures (net_config, ping); a file's block
    is :func:`iface_file_is_ipv6`'s."""
    ip = values.get("iface.ipaddress", "")
    if not ip or ip == "<empty>":
        return "ipv6" in values.get("iface.iscsi_ifacename", "")
    return values.get("iface.bootproto", "") != "dhcp" and "." not in ip


def iface_file_is_ipv6(values: dict) -> bool:
    """The address block a node or iface file is written with: as
    :func:`iface_is_ipv6_by_address`, but an address of ``default`` (an idle offload port's
    default record: bnx2i, cxgb4i and qedi show no address until a connection is up)
    counts as none, so the name decides, as libopeniscsiusr writes those records
    (libopeniscsiusr/idbm.c: the IPv6 block iff the name has ``ipv6``).  usr/iface.c takes
    ``default`` for an IPv6 address, and its reader, which picks the block by the name,
    refuses the record it writes: iscsiadm's ``-m iface`` then lists nothing (7)."""
    if values.get("iface.ipaddress", "").lower() == "default":
        return "ipv6" in values.get("iface.iscsi_ifacename", "")
    return iface_is_ipv6_by_address(values)


def iface_bound_by(values: Mapping[str, str]) -> dict[str, str]:
    """What an iface record binds its sessions to (usr/iface.c iface_is_bound_by_hwaddr,
    _netdev, _ipaddr): its ``iface.hwaddress``, ``iface.net_ifacename`` and
    ``iface.ipaddress`` that are set (not empty, ``<empty>`` or ``default``, in any case),
    in that order (iscsi_sysfs_get_host_no_from_hwinfo's)."""
    return {k: v for k in ("iface.hwaddress", "iface.net_ifacename", "iface.ipaddress")
            if (v := values.get(k)) and v.lower() not in ("default", "<empty>")}


def iface_is_ipv6_by_name(values: dict) -> bool:
    """libopeniscsiusr: IPv6 iff the iface name contains ``ipv6``.  Used by ``-o show``."""
    return "ipv6" in values.get("iface.iscsi_ifacename", "")


# --------------------------------------------------------------------------------------------
# Clamping of operational values at login (usr/initiator_common.c iscsi_copy_operational_params)
# --------------------------------------------------------------------------------------------
_MIN_DSL = 512
_MAX_DSL = 16777215


def clamp_max_recv_dsl(value: int) -> int:
    """node.conn[0].iscsi.MaxRecvDataSegmentLength as used at login: rounded down to a multiple
    of 4, and 262144 when outside [512, 16777215]."""
    v = value & ~3
    return v if _MIN_DSL <= v <= _MAX_DSL else 262144


def clamp_max_xmit_dsl(configured: int, target_mrdsl: int | None = None) -> int:
    """node.conn[0].iscsi.MaxXmitDataSegmentLength: 0 means 8192 until the target declares its
    MaxRecvDataSegmentLength; then the target's value is used if the configured one is 0 or
    larger."""
    if target_mrdsl is None:
        return configured if configured else 8192
    if configured == 0 or target_mrdsl < configured:
        return target_mrdsl
    return configured


def clamp_bursts(first_burst: int, max_burst: int) -> tuple[int, int]:
    """(FirstBurstLength, MaxBurstLength) as used at login: each outside [512, 16777215] is
    replaced by its default (262144, 16776192); then FirstBurst is capped at MaxBurst."""
    if not _MIN_DSL <= max_burst <= _MAX_DSL:
        max_burst = 16776192
    if not _MIN_DSL <= first_burst <= _MAX_DSL:
        first_burst = 262144
    return min(first_burst, max_burst), max_burst


#: Discovery sessions on CAP_TEXT_NEGO transports cap MaxRecvDataSegmentLength at this.
DISCOVERY_TEXT_NEGO_MAX_DSL = 8192
