"""An offload HBA's network settings from its iface records, as the entries of
``ISCSI_UEVENT_SET_IFACE_PARAMS`` (``iscsictl -m iface -o apply|applyall``).  Sans-I/O:
records in, entries out.

Source: open-iscsi 2.1.8 usr/iface.c ``__iface_build_net_config`` (what is sent, in which
order) and ``iface_fill_*`` (how each value is encoded); the values are the kernel's
(include/scsi/iscsi_if.h ``enum iscsi_net_param``, ``enum iscsi_iface_param``).

Each entry is ``{iface_num, param, iface_type, param_type, value}`` as
:meth:`iscsictl.netlink.IscsiNetlink.set_iface_params` takes it (one nlattr of
``struct iscsi_iface_param_info`` each): ``iface_num`` is the record's ``iface.iface_num``,
``iface_type`` 1 (IPv4) or 2 (IPv6) as usr/iface.c ``iface_get_iptype`` decides
(:func:`iscsictl.db.schema.iface_is_ipv6_by_address`), ``value`` little-endian bytes.

What one iface sends:

* ``iface.state = disable``: only ``IFACE_ENABLE`` = disable.
* Otherwise its addresses first.  IPv4: ``iface.bootproto = dhcp`` sends ``IPV4_BOOTPROTO``
  dhcp; else an ``iface.ipaddress`` sends ``IPV4_BOOTPROTO`` static, ``IPV4_ADDR``,
  ``IPV4_SUBNET`` and ``IPV4_GW`` (those set; ``0.0.0.0`` is unset).  IPv6, for each of the
  address, the link-local address and the router: its autoconfiguration
  (``iface.ipv6_autocfg`` nd|dhcpv6, ``iface.linklocal_autocfg`` auto,
  ``iface.router_autocfg`` auto), else the address with autoconfiguration disabled.  The
  three autoconfiguration nlattrs carry ``iface_num`` 0 whatever the iface's, as
  iscsiadm's (the port's setting: qla4xxx takes it from an even iface only).
* Without any address setting nothing is sent for the iface (``Nothing to configure.``
  when no iface has one); with one, the family's rows of :data:`IPV4_ROWS` or
  :data:`IPV6_ROWS`, then :data:`COMMON_ROWS`.  A row is sent when its value is set: an
  enable/disable word, a non-zero number, a non-empty string (``iface.port`` 0 is 3260).

Values are checked before anything is encoded, and one bad value refuses the whole
configuration (:class:`NetConfigError`, exit 7): an address that is not one of its family,
a word other than those listed in :data:`WORDS`, a number wider than its field, a VLAN id
over 4095 or priority over 7, a DHCP string over 79 bytes (the C record's buffer).

Deliberate differences from iscsiadm 2.1.8 (its bytes are the same otherwise):

* iscsiadm sends as many nlattrs as it *estimated* (``iface_get_param_count``), and sets
  ``u.set_iface_params.count`` to that estimate.  The estimate counts an ``iface.state``
  or ``iface.vlan_state`` that is not set and leaves out the port it then adds: with both
  states set and the port 0 (the default), the last nlattr (the port, or the last iSCSI
  setting) is never sent, and its iovec array overflows.  iscsictl sends every entry, and
  ``count`` is their number (the kernel reads the nlattrs by length, not by ``count``).
* iscsiadm silently drops what it cannot encode (``192.168.1``, ``fd00::zz``, ``enabled``,
  a VLAN id over 4095 or a priority over 7 sent as tag 0) and sends the rest; iscsictl
  refuses (7), nothing sent.  Only all ones (the "not shown by the driver" value of the
  records libopeniscsiusr makes from sysfs) is taken: a VLAN id of all ones is tag 0 (as
  iscsiadm), a priority of all ones is priority 0 (iscsiadm drops the VLAN id then).
* ``applyall`` (:func:`attached`): iscsiadm matches the ifaces' ``iface.hwaddress`` to the
  host's case-sensitively (its host lookup is case-insensitive), so an HBA whose sysfs MAC
  is upper case is "applied" without its lower-case iface records; and a host without a
  hardware address (iscsi_tcp) matches every iface record without one.  iscsiadm walks
  the records in directory order, so which record's port-wide settings win is chance;
  iscsictl sends them in :func:`apply_order`, iface 0's last, so that its settings win, as
  open-iscsi's README says they do.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..db import schema
from ..lexical import ascii_digits
from ..netlink.enums import (
    ISCSI_BOOTPROTO_DHCP,
    ISCSI_BOOTPROTO_STATIC,
    ISCSI_IFACE_TYPE_IPV4,
    ISCSI_IFACE_TYPE_IPV6,
    ISCSI_IPV6_AUTOCFG_DHCPV6_ENABLE,
    ISCSI_IPV6_AUTOCFG_DISABLE,
    ISCSI_IPV6_AUTOCFG_ND_ENABLE,
    ISCSI_IPV6_LINKLOCAL_AUTOCFG_DISABLE,
    ISCSI_IPV6_LINKLOCAL_AUTOCFG_ENABLE,
    ISCSI_IPV6_ROUTER_AUTOCFG_DISABLE,
    ISCSI_IPV6_ROUTER_AUTOCFG_ENABLE,
    ISCSI_MAX_VLAN_ID,
    ISCSI_MAX_VLAN_PRIORITY,
    ISCSI_NET_PARAM_DISABLE,
    ISCSI_NET_PARAM_ENABLE,
    IscsiIfaceParam,
    IscsiNetParam,
    IscsiParamType,
)
from ..protocol.constants import ISCSI_PORT

__all__ = ["NetConfigError", "Row", "IPV4_ROWS", "IPV6_ROWS", "COMMON_ROWS", "WORDS",
           "DEFAULT_PORT", "iface_entries", "net_config", "attached"]

N = IscsiNetParam
I = IscsiIfaceParam  # noqa: E741

#: iSCSI's well-known port, sent for ``iface.port`` 0 (usr/iface.c)
DEFAULT_PORT = ISCSI_PORT
#: the longest DHCP string the C record holds (``char[ISCSI_MAX_STR_LEN]``, 80, with its NUL)
MAX_STR = 79

#: the values libopeniscsiusr writes in the iface records it makes from sysfs
#: (iscsi_default_iface_setup) when the driver does not show the VLAN: all ones
NOT_REPORTED_VLAN_ID = 0xFFFF
NOT_REPORTED_VLAN_PRIORITY = 0xFF
#: the words each mode-like key takes ("" is unset); an enable/disable key is :data:`STATE`.
#: Besides iscsiadm's own, the words a default iface record copies from the driver's sysfs
#: (qla4xxx: ``ipaddr_autocfg`` static, ``link_local_autocfg`` static, and its
#: ``router_state`` names for ``router_autocfg``), each of which means "not automatic"
#: as usr/iface.c reads them (strstr for nd, dhcpv6, auto)
STATE = ("enable", "disable")
WORDS: dict[str, tuple[str, ...]] = {
    "iface.bootproto": ("static", "dhcp"),
    "iface.ipv6_autocfg": ("nd", "dhcpv6", "disable", "static"),
    "iface.linklocal_autocfg": ("auto", "disable", "static"),
    "iface.router_autocfg": ("auto", "disable", "Unknown", "Advertised", "Manual", "Stale"),
}
#: what an address key holds for "none" besides nothing: the default iface records'
#: ``iface.ipaddress = default`` (usr/iface.c sends an address only with a '.' or ':')
NO_ADDRESS = ("", "default")


class NetConfigError(ValueError):
    """A value of an iface record that cannot be sent; ``exit_code`` 7 (ISCSI_ERR_INVAL)."""

    exit_code = 7


class Row(NamedTuple):
    """One setting: the record key, the kernel's parameter (an :class:`IscsiNetParam` is an
    ``ISCSI_NET_PARAM``, an :class:`IscsiIfaceParam` an ``ISCSI_IFACE_PARAM``) and its
    encoding: ``"state"`` (one byte, enable 2 / disable 1), ``1``/``2``/``4`` (an unsigned
    little-endian number of that many bytes, as usr/iface.c's ``param_len``), ``"str"``
    (the bytes, no NUL) or ``"vlan"`` (the u16 tag from ``iface.vlan_id`` and
    ``iface.vlan_priority``, sent while ``iface.vlan_state`` is not ``disable``)."""

    key: str
    param: IscsiNetParam | IscsiIfaceParam
    encoding: str | int


#: IPv4 settings after the addresses (__iface_build_net_config's order)
IPV4_ROWS: tuple[Row, ...] = (
    Row("iface.dhcp_dns", N.IPV4_DHCP_DNS_ADDR_EN, "state"),
    Row("iface.dhcp_slp_da", N.IPV4_DHCP_SLP_DA_EN, "state"),
    Row("iface.tos_state", N.IPV4_TOS_EN, "state"),
    Row("iface.tos", N.IPV4_TOS, 1),
    Row("iface.gratuitous_arp", N.IPV4_GRAT_ARP_EN, "state"),
    Row("iface.dhcp_alt_client_id_state", N.IPV4_DHCP_ALT_CLIENT_ID_EN, "state"),
    Row("iface.dhcp_alt_client_id", N.IPV4_DHCP_ALT_CLIENT_ID, "str"),
    Row("iface.dhcp_req_vendor_id_state", N.IPV4_DHCP_REQ_VENDOR_ID_EN, "state"),
    Row("iface.dhcp_vendor_id_state", N.IPV4_DHCP_USE_VENDOR_ID_EN, "state"),
    Row("iface.dhcp_vendor_id", N.IPV4_DHCP_VENDOR_ID, "str"),
    Row("iface.dhcp_learn_iqn", N.IPV4_DHCP_LEARN_IQN_EN, "state"),
    Row("iface.fragmentation", N.IPV4_FRAGMENT_DISABLE, "state"),
    Row("iface.incoming_forwarding", N.IPV4_IN_FORWARD_EN, "state"),
    Row("iface.ttl", N.IPV4_TTL, 1),
)

#: IPv6 settings after the addresses
IPV6_ROWS: tuple[Row, ...] = (
    Row("iface.gratuitous_neighbor_adv", N.IPV6_GRAT_NEIGHBOR_ADV_EN, "state"),
    Row("iface.mld", N.IPV6_MLD_EN, "state"),
    Row("iface.flow_label", N.IPV6_FLOW_LABEL, 4),
    Row("iface.traffic_class", N.IPV6_TRAFFIC_CLASS, 1),
    Row("iface.hop_limit", N.IPV6_HOP_LIMIT, 1),
    Row("iface.nd_reachable_tmo", N.IPV6_ND_REACHABLE_TMO, 4),
    Row("iface.nd_rexmit_time", N.IPV6_ND_REXMIT_TIME, 4),
    Row("iface.nd_stale_tmo", N.IPV6_ND_STALE_TMO, 4),
    Row("iface.dup_addr_detect_cnt", N.IPV6_DUP_ADDR_DETECT_CNT, 1),
    Row("iface.router_adv_link_mtu", N.IPV6_RTR_ADV_LINK_MTU, 4),
)

#: settings of both families, last
COMMON_ROWS: tuple[Row, ...] = (
    Row("iface.state", N.IFACE_ENABLE, "state"),
    Row("iface.vlan_state", N.VLAN_ENABLED, "state"),
    Row("iface.vlan_id", N.VLAN_TAG, "vlan"),
    Row("iface.mtu", N.MTU, 2),
    Row("iface.port", N.PORT, 2),
    Row("iface.delayed_ack", N.DELAYED_ACK_EN, "state"),
    Row("iface.tcp_nagle", N.TCP_NAGLE_DISABLE, "state"),
    Row("iface.tcp_wsf_state", N.TCP_WSF_DISABLE, "state"),
    Row("iface.tcp_wsf", N.TCP_WSF, 1),
    Row("iface.tcp_timer_scale", N.TCP_TIMER_SCALE, 1),
    Row("iface.tcp_timestamp", N.TCP_TIMESTAMP_EN, "state"),
    Row("iface.redirect", N.REDIRECT_EN, "state"),
    Row("iface.def_task_mgmt_timeout", I.DEF_TASKMGMT_TMO, 2),
    Row("iface.header_digest", I.HDRDGST_EN, "state"),
    Row("iface.data_digest", I.DATADGST_EN, "state"),
    Row("iface.immediate_data", I.IMM_DATA_EN, "state"),
    Row("iface.initial_r2t", I.INITIAL_R2T_EN, "state"),
    Row("iface.data_seq_inorder", I.DATASEQ_INORDER_EN, "state"),
    Row("iface.data_pdu_inorder", I.PDU_INORDER_EN, "state"),
    Row("iface.erl", I.ERL, 1),
    Row("iface.max_receive_data_len", I.MAX_RECV_DLENGTH, 4),
    Row("iface.first_burst_len", I.FIRST_BURST, 4),
    Row("iface.max_outstanding_r2t", I.MAX_R2T, 2),
    Row("iface.max_burst_len", I.MAX_BURST, 4),
    Row("iface.chap_auth", I.CHAP_AUTH_EN, "state"),
    Row("iface.bidi_chap", I.BIDI_CHAP_EN, "state"),
    Row("iface.strict_login_compliance", I.STRICT_LOGIN_COMP_EN, "state"),
    Row("iface.discovery_auth", I.DISCOVERY_AUTH_OPTIONAL, "state"),
    Row("iface.discovery_logout", I.DISCOVERY_LOGOUT_EN, "state"),
)


class _Iface:
    """One record's values being turned into entries (its name in every error)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.name = values.get("iface.iscsi_ifacename", "")
        self.ipv6 = schema.iface_is_ipv6_by_address(dict(values))
        self.type = ISCSI_IFACE_TYPE_IPV6 if self.ipv6 else ISCSI_IFACE_TYPE_IPV4
        self.num = self.number("iface.iface_num", 4)
        self.entries: list[dict[str, Any]] = []

    def bad(self, key: str, why: str) -> NetConfigError:
        return NetConfigError(f"{key} = {self.values.get(key)} in iface {self.name}: {why}")

    def text(self, key: str) -> str:
        v = self.values.get(key)
        return "" if v in (None, "<empty>") else str(v)

    def word(self, key: str, words: tuple[str, ...]) -> str:
        v = self.text(key)
        if v and v not in words:
            raise self.bad(key, f"not {' or '.join(words)}")
        return v

    def number(self, key: str, size: int) -> int:
        v = self.values.get(key) or 0
        if isinstance(v, str):
            v = int(v) if ascii_digits(v) else -1
        if not 0 <= v < 1 << (8 * size):
            raise self.bad(key, f"not a number of {8 * size} bits")
        return int(v)

    def address(self, key: str) -> bytes | None:
        """The address of ``key`` in the iface's family (inet_pton), None if unset (or
        ``0.0.0.0``, which usr/iface.c leaves out)."""
        v = self.text(key)
        if v in NO_ADDRESS:
            return None
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        try:
            packed = socket.inet_pton(family, v)
        except (OSError, ValueError):
            raise self.bad(key, f"not an {'IPv6' if self.ipv6 else 'IPv4'} address") from None
        return None if packed == bytes(4) else packed

    def add(self, param: IscsiNetParam | IscsiIfaceParam, value: bytes,
            num: int | None = None) -> None:
        ptype = (IscsiParamType.ISCSI_IFACE_PARAM if isinstance(param, IscsiIfaceParam)
                 else IscsiParamType.ISCSI_NET_PARAM)
        self.entries.append({"iface_num": self.num if num is None else num,
                             "param": int(param),
                             "iface_type": self.type, "param_type": int(ptype),
                             "value": value})

    def row(self, row: Row) -> None:
        key, enc = row.key, row.encoding
        if enc == "state":
            v = self.word(key, STATE)
            if v:
                self.add(row.param, bytes([ISCSI_NET_PARAM_ENABLE if v == "enable"
                                           else ISCSI_NET_PARAM_DISABLE]))
        elif enc == "str":
            raw = self.text(key).encode("utf-8", "surrogateescape")
            if len(raw) > MAX_STR:
                raise self.bad(key, f"longer than {MAX_STR} bytes")
            if raw:
                self.add(row.param, raw)
        elif enc == "vlan":
            vid = self.number(key, 2)
            prio = self.number("iface.vlan_priority", 1)
            if self.word("iface.vlan_state", STATE) != "disable" and vid:
                self.add(row.param, struct.pack("<H", self.vlan_tag(vid, prio)))
        else:
            n = self.number(key, int(enc)) or (DEFAULT_PORT if key == "iface.port" else 0)
            if n:
                self.add(row.param, n.to_bytes(int(enc), "little"))

    def vlan_tag(self, vid: int, prio: int) -> int:
        """``iface.vlan_id`` and ``iface.vlan_priority`` as the u16 tag; all ones in
        either (what libopeniscsiusr writes when the driver does not show it) is not
        reported: no VLAN (tag 0, as iscsiadm sends), priority 0."""
        if vid == NOT_REPORTED_VLAN_ID:
            return 0
        if vid > ISCSI_MAX_VLAN_ID:
            raise self.bad("iface.vlan_id", f"a VLAN id is at most {ISCSI_MAX_VLAN_ID}")
        if prio == NOT_REPORTED_VLAN_PRIORITY:
            prio = 0
        if prio > ISCSI_MAX_VLAN_PRIORITY:
            raise self.bad("iface.vlan_priority",
                           f"a VLAN priority is at most {ISCSI_MAX_VLAN_PRIORITY}")
        return prio << 13 | vid

    def addresses(self) -> None:
        """The address block (IPv4: bootproto, address, subnet, gateway; IPv6: address,
        link-local, router, each by autoconfiguration or given)."""
        if not self.ipv6:
            proto = self.word("iface.bootproto", WORDS["iface.bootproto"])
            if proto == "dhcp":
                self.add(N.IPV4_BOOTPROTO, bytes([ISCSI_BOOTPROTO_DHCP]))
            elif self.text("iface.ipaddress") not in NO_ADDRESS:
                addrs = [(p, self.address(k)) for p, k in (
                    (N.IPV4_ADDR, "iface.ipaddress"), (N.IPV4_SUBNET, "iface.subnet_mask"),
                    (N.IPV4_GW, "iface.gateway"))]
                self.add(N.IPV4_BOOTPROTO, bytes([ISCSI_BOOTPROTO_STATIC]))
                for p, a in addrs:
                    if a is not None:
                        self.add(p, a)
            return
        # the autoconfiguration is the port's: iface_num 0, as iscsiadm's iface_fill_*_autocfg
        # leave it (qla4xxx's qla4xxx_set_ipv6 takes it from an even iface only)
        autocfg = self.word("iface.ipv6_autocfg", WORDS["iface.ipv6_autocfg"])
        if autocfg in ("nd", "dhcpv6"):
            self.add(N.IPV6_ADDR_AUTOCFG, bytes([ISCSI_IPV6_AUTOCFG_ND_ENABLE if autocfg == "nd"
                                                 else ISCSI_IPV6_AUTOCFG_DHCPV6_ENABLE]), 0)
        elif (a := self.address("iface.ipaddress")) is not None:
            self.add(N.IPV6_ADDR_AUTOCFG, bytes([ISCSI_IPV6_AUTOCFG_DISABLE]), 0)
            self.add(N.IPV6_ADDR, a)
        for mode_key, addr_key, param, auto, enable, disable in (
                ("iface.linklocal_autocfg", "iface.ipv6_linklocal", N.IPV6_LINKLOCAL,
                 N.IPV6_LINKLOCAL_AUTOCFG, ISCSI_IPV6_LINKLOCAL_AUTOCFG_ENABLE,
                 ISCSI_IPV6_LINKLOCAL_AUTOCFG_DISABLE),
                ("iface.router_autocfg", "iface.ipv6_router", N.IPV6_ROUTER,
                 N.IPV6_ROUTER_AUTOCFG, ISCSI_IPV6_ROUTER_AUTOCFG_ENABLE,
                 ISCSI_IPV6_ROUTER_AUTOCFG_DISABLE)):
            if self.word(mode_key, WORDS[mode_key]) == "auto":
                self.add(auto, bytes([enable]), 0)
            elif (a := self.address(addr_key)) is not None:
                self.add(auto, bytes([disable]), 0)
                self.add(param, a)


def iface_entries(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SET_IFACE_PARAMS entries of one iface record (``values``: key -> value, as
    :class:`iscsictl.db.record.Record` ``values``), in usr/iface.c's order; [] when it
    has no address setting.  Raises :class:`NetConfigError` for a value that cannot be
    sent."""
    f = _Iface(values)
    if f.word("iface.state", STATE) == "disable":
        f.add(N.IFACE_ENABLE, bytes([ISCSI_NET_PARAM_DISABLE]))
        return f.entries
    f.addresses()
    if f.entries:
        for row in (IPV6_ROWS if f.ipv6 else IPV4_ROWS) + COMMON_ROWS:
            f.row(row)
    return f.entries


def net_config(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The entries of several ifaces (``applyall``), one iface after the other; every
    record is checked before any entry is returned (NetConfigError)."""
    return [e for values in records for e in iface_entries(values)]


def apply_order(records: Iterable[Mapping[str, Any]]) -> list[Any]:
    """``records`` in the order ``applyall`` sends them: higher ``iface.iface_num`` first,
    an IPv6 iface before the IPv4 one of its number, else in the given order.  A port's
    MTU, IPv6 enable and IPv6 VLAN are the port's, not an iface's: qla4xxx
    (qla4xxx_iface_set_param) takes each from the last nlattr that carries it, and
    open-iscsi's README says "the settings from 0th iface would be considered valid" (in
    name order, the IPv6 records' sysfs MTU overrode one set on ipv4.0).  Raises
    :class:`NetConfigError` for an iface number that is not one."""
    def key(values: Mapping[str, Any]) -> tuple[int, int]:
        f = _Iface(values)
        return -f.num, 0 if f.ipv6 else 1
    return sorted(records, key=key)  # stable: the given order within a number and family


def attached(records: Iterable[Mapping[str, Any]], hwaddress: str | None) -> list[Any]:
    """The records whose ``iface.hwaddress`` is ``hwaddress`` (an HBA port's MAC, in any
    case); none when the host has no hardware address."""
    want = (hwaddress or "").strip().lower()
    return [r for r in records if want and str(r.get("iface.hwaddress") or "").lower() == want]
