"""iscsictl.kernel.net_config: an iface record's SET_IFACE_PARAMS entries (the table, the
order and encodings of usr/iface.c __iface_build_net_config, the checks)."""

from __future__ import annotations

import struct

import pytest

from iscsictl.db import schema
from iscsictl.db.record import Record
from iscsictl.kernel.net_config import (
    COMMON_ROWS, IPV4_ROWS, IPV6_ROWS, NetConfigError, attached, iface_entries, net_config)
from iscsictl.netlink.enums import IscsiIfaceParam as I  # noqa: E741
from iscsictl.netlink.enums import IscsiNetParam as N
from iscsictl.netlink.enums import IscsiParamType as T

#: the iface keys that are not a row: identity and binding, and the address block's
NOT_ROWS = {
    "iface.iscsi_ifacename", "iface.net_ifacename", "iface.ipaddress", "iface.prefix_len",
    "iface.hwaddress", "iface.transport_name", "iface.initiatorname", "iface.iface_num",
    "iface.vlan_priority", "iface.bootproto", "iface.subnet_mask", "iface.gateway",
    "iface.ipv6_autocfg", "iface.linklocal_autocfg", "iface.router_autocfg",
    "iface.ipv6_linklocal", "iface.ipv6_router"}


def rec(**values) -> dict:
    """An iface record's values (defaults, then ``iface.<key>`` = value)."""
    return Record(schema.IFACE, {"iface.iscsi_ifacename": "q0",
                                 **{f"iface.{k}": v for k, v in values.items()}}).values


def params(entries) -> list:
    return [e["param"] for e in entries]


def test_every_setting_of_the_iface_record_is_one_row():
    rows = [r.key for r in IPV4_ROWS + IPV6_ROWS + COMMON_ROWS]
    assert len(rows) == len(set(rows))
    keys = {k.name for k in schema.IFACE.keys}
    assert set(rows) == keys - NOT_ROWS
    assert {r.key for r in IPV4_ROWS} == {k.name for k in schema.IFACE.keys if k.block == "ipv4"
                                         } - NOT_ROWS
    assert {r.key for r in IPV6_ROWS} == {k.name for k in schema.IFACE.keys if k.block == "ipv6"
                                         } - NOT_ROWS


def test_ipv4_static_in_iscsiadm_order_and_encodings():
    entries = iface_entries(rec(ipaddress="192.168.1.60", subnet_mask="255.255.255.0",
                                gateway="0.0.0.0", iface_num=0, state="enable", mtu=1500,
                                tos=8, max_burst_len=262144, header_digest="disable",
                                dhcp_vendor_id="acme"))
    assert params(entries) == [N.IPV4_BOOTPROTO, N.IPV4_ADDR, N.IPV4_SUBNET,
                               N.IPV4_TOS, N.IPV4_DHCP_VENDOR_ID, N.IFACE_ENABLE, N.MTU,
                               N.PORT, I.HDRDGST_EN, I.MAX_BURST]
    # the two enums overlap (IPV4_ADDR and HDRDGST_EN are both 1): keyed by the type too
    by = {(e["param_type"], e["param"]): e for e in entries}
    assert by[T.ISCSI_NET_PARAM, N.IPV4_BOOTPROTO]["value"] == b"\x01"  # static
    assert by[T.ISCSI_NET_PARAM, N.IPV4_ADDR]["value"] == bytes([192, 168, 1, 60])
    assert by[T.ISCSI_NET_PARAM, N.IPV4_TOS]["value"] == b"\x08"
    assert by[T.ISCSI_NET_PARAM, N.IPV4_DHCP_VENDOR_ID]["value"] == b"acme"
    assert by[T.ISCSI_NET_PARAM, N.IFACE_ENABLE]["value"] == b"\x02"
    assert by[T.ISCSI_NET_PARAM, N.MTU]["value"] == struct.pack("<H", 1500)
    assert by[T.ISCSI_NET_PARAM, N.PORT]["value"] == struct.pack("<H", 3260)  # 0 is iSCSI's port
    assert by[T.ISCSI_IFACE_PARAM, I.HDRDGST_EN]["value"] == b"\x01"
    assert by[T.ISCSI_IFACE_PARAM, I.MAX_BURST]["value"] == struct.pack("<I", 262144)
    assert by[T.ISCSI_IFACE_PARAM, I.MAX_BURST]["param_type"] == T.ISCSI_IFACE_PARAM
    assert by[T.ISCSI_NET_PARAM, N.MTU]["param_type"] == T.ISCSI_NET_PARAM
    assert {(e["iface_num"], e["iface_type"]) for e in entries} == {(0, 1)}


def test_dhcp_sends_no_address_and_disable_sends_only_the_state():
    dhcp = iface_entries(rec(bootproto="dhcp", ipaddress="10.0.0.9", subnet_mask="255.0.0.0"))
    assert params(dhcp) == [N.IPV4_BOOTPROTO, N.PORT]
    assert dhcp[0]["value"] == b"\x02"
    off = iface_entries(rec(state="disable", ipaddress="10.0.0.9", mtu=1500))
    assert [(e["param"], e["value"]) for e in off] == [(N.IFACE_ENABLE, b"\x01")]


def test_nothing_without_an_address():
    assert iface_entries(rec(mtu=9000, state="enable", header_digest="enable")) == []
    assert iface_entries(rec(ipaddress="<empty>")) == []
    assert net_config([rec(), rec(transport_name="qla4xxx")]) == []


def test_ipv6_blocks_and_the_ifaces_number_everywhere():
    entries = iface_entries(rec(iscsi_ifacename="q.ipv6", ipaddress="fd00::61", iface_num=1,
                                linklocal_autocfg="auto", ipv6_router="fe80::1",
                                hop_limit=64, flow_label=0x12345))
    assert params(entries) == [N.IPV6_ADDR_AUTOCFG, N.IPV6_ADDR, N.IPV6_LINKLOCAL_AUTOCFG,
                               N.IPV6_ROUTER_AUTOCFG, N.IPV6_ROUTER, N.IPV6_FLOW_LABEL,
                               N.IPV6_HOP_LIMIT, N.PORT]
    assert [e["value"] for e in entries[:4]] == [b"\x01", bytes.fromhex(
        "fd000000000000000000000000000061"), b"\x01", b"\x02"]
    assert entries[5]["value"] == struct.pack("<I", 0x12345)
    # iscsiadm leaves iface_num 0 in the autoconfiguration nlattrs (the port's setting:
    # qla4xxx_set_ipv6 skips those of an odd iface), the iface's number in the others
    assert [e["iface_num"] for e in entries] == [0, 1, 0, 0, 1, 1, 1, 1]
    assert {e["iface_type"] for e in entries} == {2}
    nd = iface_entries(rec(iscsi_ifacename="q.ipv6", ipv6_autocfg="nd", ipaddress="fd00::1"))
    assert [(e["param"], e["value"]) for e in nd] == [(N.IPV6_ADDR_AUTOCFG, b"\x02"),
                                                      (N.PORT, struct.pack("<H", 3260))]


@pytest.mark.parametrize("vlan, tag", [
    (dict(vlan_id=12, vlan_priority=3), 3 << 13 | 12),
    (dict(vlan_id=4095, vlan_priority=7), 7 << 13 | 4095),
    (dict(vlan_id=65535, vlan_priority=255), 0),  # libopeniscsiusr's "not shown"
    (dict(vlan_id=12, vlan_priority=255), 12),
    (dict(vlan_id=12, vlan_state="disable"), None),
    (dict(vlan_id=0, vlan_state="enable"), None),
])
def test_vlan_tag(vlan, tag):
    entries = iface_entries(rec(ipaddress="10.0.0.9", **vlan))
    sent = [e["value"] for e in entries if e["param"] == N.VLAN_TAG]
    assert sent == ([] if tag is None else [struct.pack("<H", tag)])


@pytest.mark.parametrize("values, key", [
    (dict(ipaddress="10.0.0"), "iface.ipaddress"),
    (dict(ipaddress="10.0.0.9", subnet_mask="255.255.0"), "iface.subnet_mask"),
    (dict(ipaddress="fd00::zz"), "iface.ipaddress"),
    (dict(iscsi_ifacename="x.ipv6", ipv6_router="fe80:::1"), "iface.ipv6_router"),
    (dict(ipaddress="10.0.0.9", state="on"), "iface.state"),
    (dict(ipaddress="10.0.0.9", tcp_nagle="Enable"), "iface.tcp_nagle"),
    (dict(bootproto="DHCP"), "iface.bootproto"),
    (dict(iscsi_ifacename="x.ipv6", router_autocfg="nd"), "iface.router_autocfg"),
    (dict(ipaddress="10.0.0.9", vlan_id=4096), "iface.vlan_id"),
    (dict(ipaddress="10.0.0.9", vlan_id=1, vlan_priority=8), "iface.vlan_priority"),
    (dict(ipaddress="10.0.0.9", dhcp_alt_client_id="x" * 80), "iface.dhcp_alt_client_id"),
    (dict(ipaddress="10.0.0.9", mtu=70000), "iface.mtu"),
    (dict(ipaddress="10.0.0.9", mtu="1²"), "iface.mtu"),  # isdigit's, not int's: no traceback
    (dict(ipaddress="10.0.0.9", iface_num=-1), "iface.iface_num"),
])
def test_bad_values_refused_with_7(values, key):
    with pytest.raises(NetConfigError) as e:
        iface_entries(rec(**values))
    assert e.value.exit_code == 7
    assert str(e.value).startswith(f"{key} = ")


def test_one_bad_iface_refuses_them_all():
    with pytest.raises(NetConfigError):
        net_config([rec(ipaddress="10.0.0.9"), rec(ipaddress="10.0.0.10", state="up")])


def test_attached_by_mac_in_any_case():
    recs = [rec(iscsi_ifacename=n, hwaddress=h) for n, h in
            (("a", "00:0E:1E:AA:BB:CC"), ("b", "00:0e:1e:aa:bb:cc"), ("c", ""), ("d", "x"))]
    assert [r["iface.iscsi_ifacename"] for r in attached(recs, "00:0e:1e:aa:bb:cc")] == [
        "a", "b"]
    assert attached(recs, None) == attached(recs, "") == []
