"""The default iface records of the offload HBAs: one record per network interface an
offload driver shows in sysfs, made when it is not in the DB yet, as iscsiadm 2.1.8 makes
them on every ``-m iface`` command (libopeniscsiusr/iface.c ``iscsi_default_iface_setup``).
An HBA admin finds the ports there by name, binds node records to them (``-I``) and
changes their network settings (``-o update``, then ``-o apply``).  Before, as there, the
offload iSCSI driver of each NIC that has one (cxgb3i, cxgb4i, bnx2i with iscsiuio) is
loaded when its transport is missing (:func:`load_offload_drivers`): its hosts are what
the records are made of.

Which records, named as open-iscsi names them:

* every iSCSI host (``class/iscsi_host/host<N>``, in number order) whose transport (the
  SCSI host's ``proc_name`` without ``iscsi_``) is an offload one, i.e. not ``tcp`` or
  ``iser``;
* each interface its driver registered under the host (``iscsi_iface/<id>``, in byte order,
  ``<id>`` as ``ipv4-iface-5-0``): ``<transport>.<hwaddress>.ipv4|ipv6.<iface_num>``, the
  family from the id's ``ipv4`` prefix, ``iface_num`` its last number, the values from
  the interface's attributes (:data:`IPV4_ROWS`, :data:`IPV6_ROWS`, :data:`COMMON_ROWS`);
* a host whose driver registers no interface (bnx2i, qedi) but shows a hardware address:
  one record ``<transport>.<hwaddress>.ipv4|ipv6.0`` (IPv6 when the host's address has two
  colons) with the host's address.

Every record also takes the host's ``hwaddress``, ``netdev`` (as ``iface.net_ifacename``)
and ``initiatorname``.  Values are read as libopeniscsiusr reads them
(libopeniscsiusr/sysfs.c): a string missing, empty or ``(null)`` is unset, but the
addresses and the net device, which are then ``default``; a number is C's ``strtoll`` of
at most 11 bytes cut to its field's width (``vlan_priority`` 300 is 44), and a missing one
is 0, but the VLAN id and priority, which are then all ones (the "not shown" value
:mod:`iscsictl.kernel.net_config` knows).

Deliberate differences from iscsiadm 2.1.8:

* ``iface.dhcp_alt_client_id_state`` is read from ``dhcp_alt_client_id_en`` (libopeniscsiusr
  reads that file into ``iface.dhcp_alt_client_id`` and then overwrites it; usr/iscsi_sysfs.c
  ``iscsi_sysfs_read_iface`` reads it as here).
* software hosts are skipped by their transport: libopeniscsiusr skips them only while their
  ``hwaddress`` is unset, and would write a ``tcp.<mac>.ipv4.0`` record for an iscsi_tcp
  host whose sessions are bound to an iface by MAC.
* an attribute that cannot be read (EACCES, a driver's error) is unset, and a host whose
  SCSI host is gone is skipped; libopeniscsiusr stops making records at the first one.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ..db import schema
from ..lexical import c_atoi

__all__ = ["SysfsRow", "IPV4_ROWS", "IPV6_ROWS", "COMMON_ROWS", "SOFTWARE_TRANSPORTS",
           "OFFLOAD_NET_DRIVERS", "default_iface_records", "setup_default_ifaces",
           "offload_drivers_to_load", "load_offload_drivers"]

#: a network driver whose NICs an offload iSCSI driver serves -> that driver (its module
#: and transport name): usr/iscsi_net_util.c net_drivers, libopeniscsiusr _ISCSI_NET_DRVS
OFFLOAD_NET_DRIVERS = {"cxgb3": "cxgb3i", "cxgb4": "cxgb4i", "bnx2": "bnx2i", "bnx2x": "bnx2i"}
#: bnx2i offloads only with iscsiuio, its network stack in userspace (ISCSIUIO_PATH)
_NEEDS_ISCSIUIO = frozenset(("bnx2", "bnx2x"))
ISCSIUIO_PATHS = ("/sbin/iscsiuio", "/usr/sbin/iscsiuio")

#: transports whose hosts get no default record: those of the built-in ifaces
SOFTWARE_TRANSPORTS = frozenset(schema.BUILTIN_IFACES.values())
#: libopeniscsiusr/default.h DEFAULT_HWADDRESS, DEFAULT_NETDEV, DEFAULT_IPADDRESS
UNSET = "default"
#: libopeniscsiusr/sysfs.c: numbers are read into a 12-byte buffer, NUL-terminated
_NUMBER_BYTES = 11
_WIDTH = {"u8": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF}
_KERN_ID = re.compile(r"ipv[+-]?\d+-iface-\d+-(\d+)")


class SysfsRow(NamedTuple):
    """One value of an iface record read from ``class/iscsi_iface/<id>/<attr>`` (the
    kernel's attribute names: scsi_transport_iscsi.c ``iscsi_iface_net_attr`` and
    ``iscsi_iface_attr``): the record ``key``, and ``ctype`` None for a string or the C
    field ("u8", "u16", "u32") of a number, whose value when the attribute is missing is
    ``missing``."""

    attr: str
    key: str
    ctype: str | None = None
    missing: int = 0


#: an IPv4 interface's own values (the order of libopeniscsiusr's _fill_hw_iface_from_sys)
IPV4_ROWS: tuple[SysfsRow, ...] = (
    SysfsRow("bootproto", "iface.bootproto"),
    SysfsRow("gateway", "iface.gateway"),
    SysfsRow("subnet", "iface.subnet_mask"),
    SysfsRow("dhcp_alt_client_id_en", "iface.dhcp_alt_client_id_state"),
    SysfsRow("dhcp_alt_client_id", "iface.dhcp_alt_client_id"),
    SysfsRow("dhcp_dns_address_en", "iface.dhcp_dns"),
    SysfsRow("dhcp_learn_iqn_en", "iface.dhcp_learn_iqn"),
    SysfsRow("dhcp_req_vendor_id_en", "iface.dhcp_req_vendor_id_state"),
    SysfsRow("dhcp_use_vendor_id_en", "iface.dhcp_vendor_id_state"),
    SysfsRow("dhcp_vendor_id", "iface.dhcp_vendor_id"),
    SysfsRow("dhcp_slp_da_info_en", "iface.dhcp_slp_da"),
    SysfsRow("fragment_disable", "iface.fragmentation"),
    SysfsRow("grat_arp_en", "iface.gratuitous_arp"),
    SysfsRow("incoming_forwarding_en", "iface.incoming_forwarding"),
    SysfsRow("tos_en", "iface.tos_state"),
    SysfsRow("tos", "iface.tos", "u8"),
    SysfsRow("ttl", "iface.ttl", "u8"),
)
#: an IPv6 interface's own values
IPV6_ROWS: tuple[SysfsRow, ...] = (
    SysfsRow("ipaddr_autocfg", "iface.ipv6_autocfg"),
    SysfsRow("link_local_addr", "iface.ipv6_linklocal"),
    SysfsRow("link_local_autocfg", "iface.linklocal_autocfg"),
    SysfsRow("router_addr", "iface.ipv6_router"),
    SysfsRow("router_state", "iface.router_autocfg"),
    SysfsRow("grat_neighbor_adv_en", "iface.gratuitous_neighbor_adv"),
    SysfsRow("mld_en", "iface.mld"),
    SysfsRow("dup_addr_detect_cnt", "iface.dup_addr_detect_cnt", "u8"),
    SysfsRow("hop_limit", "iface.hop_limit", "u8"),
    SysfsRow("flow_label", "iface.flow_label", "u32"),
    SysfsRow("nd_reachable_tmo", "iface.nd_reachable_tmo", "u32"),
    SysfsRow("nd_rexmit_time", "iface.nd_rexmit_time", "u32"),
    SysfsRow("nd_stale_tmo", "iface.nd_stale_tmo", "u32"),
    SysfsRow("router_adv_link_mtu", "iface.router_adv_link_mtu", "u32"),
    SysfsRow("traffic_class", "iface.traffic_class", "u8"),
)
#: both families' values
COMMON_ROWS: tuple[SysfsRow, ...] = (
    SysfsRow("port", "iface.port", "u16"),
    SysfsRow("mtu", "iface.mtu", "u16"),
    SysfsRow("vlan_id", "iface.vlan_id", "u16", 0xFFFF),
    SysfsRow("vlan_priority", "iface.vlan_priority", "u8", 0xFF),
    SysfsRow("vlan_enabled", "iface.vlan_state"),
    SysfsRow("enabled", "iface.state"),
    SysfsRow("delayed_ack_en", "iface.delayed_ack"),
    SysfsRow("tcp_nagle_disable", "iface.tcp_nagle"),
    SysfsRow("tcp_wsf_disable", "iface.tcp_wsf_state"),
    SysfsRow("tcp_wsf", "iface.tcp_wsf", "u8"),
    SysfsRow("tcp_timer_scale", "iface.tcp_timer_scale", "u8"),
    SysfsRow("tcp_timestamp_en", "iface.tcp_timestamp"),
    SysfsRow("redirect_en", "iface.redirect"),
    SysfsRow("def_taskmgmt_tmo", "iface.def_task_mgmt_timeout", "u16"),
    SysfsRow("header_digest", "iface.header_digest"),
    SysfsRow("data_digest", "iface.data_digest"),
    SysfsRow("immediate_data", "iface.immediate_data"),
    SysfsRow("initial_r2t", "iface.initial_r2t"),
    SysfsRow("data_seq_in_order", "iface.data_seq_inorder"),
    SysfsRow("data_pdu_in_order", "iface.data_pdu_inorder"),
    SysfsRow("erl", "iface.erl", "u8"),
    SysfsRow("max_recv_dlength", "iface.max_receive_data_len", "u32"),
    SysfsRow("first_burst_len", "iface.first_burst_len", "u32"),
    SysfsRow("max_outstanding_r2t", "iface.max_outstanding_r2t", "u16"),
    SysfsRow("max_burst_len", "iface.max_burst_len", "u32"),
    SysfsRow("chap_auth", "iface.chap_auth"),
    SysfsRow("bidi_chap", "iface.bidi_chap"),
    SysfsRow("strict_login_comp_en", "iface.strict_login_compliance"),
    SysfsRow("discovery_auth_optional", "iface.discovery_auth"),
    SysfsRow("discovery_logout", "iface.discovery_logout"),
)


def _value(row: SysfsRow, text: str | None) -> str | int:
    """``text`` (None: missing or unreadable) as the record's value of ``row``."""
    if row.ctype is None:
        return text or ""
    if text is None:
        return row.missing
    return c_atoi(text[:_NUMBER_BYTES]) & _WIDTH[row.ctype]  # strtoll: 11 digits fit


def _ipv6_by_colons(address: str) -> bool:
    """libopeniscsiusr's lib_ipaddr_is_ipv6: two colons or more."""
    return address.count(":") >= 2


def default_iface_records(sysfs) -> Iterator[dict[str, str | int]]:  # type: ignore[no-untyped-def]
    """The default iface record of each offload interface ``sysfs`` (an
    :class:`iscsictl.kernel.sysfs.Sysfs`) shows, as ``{iface key: value}`` with
    ``iface.iscsi_ifacename`` its name; nothing for software hosts."""
    for host_no in sysfs.host_numbers():
        transport = sysfs.host_transport(host_no)
        if not transport or transport in SOFTWARE_TRANSPORTS:
            continue
        host = sysfs.host(host_no, only=("hwaddress", "netdev", "initiatorname", "ipaddress"))
        if host is None:
            continue
        base: dict[str, str | int] = {
            "iface.transport_name": transport,
            "iface.hwaddress": host.hwaddress or UNSET,
            "iface.net_ifacename": host.netdev or UNSET,
            "iface.initiatorname": host.initiatorname or "",
        }
        kern_ids = sysfs.host_iface_names(host_no)
        if not kern_ids:
            if base["iface.hwaddress"] == UNSET:
                continue  # libopeniscsiusr names it "default", which is not written
            address = host.ipaddress or UNSET
            family = "ipv6" if _ipv6_by_colons(address) else "ipv4"
            yield {"iface.iscsi_ifacename": f"{transport}.{base['iface.hwaddress']}.{family}.0",
                   **base, "iface.ipaddress": address}
            continue
        for kern_id in kern_ids:
            read = sysfs.iface_reader(kern_id)
            v6 = not kern_id.startswith("ipv4")
            mt = _KERN_ID.match(kern_id)
            num = int(mt.group(1)) & 0xFFFFFFFF if mt else 0
            rec: dict[str, str | int] = {
                "iface.iscsi_ifacename":
                    f"{transport}.{base['iface.hwaddress']}.{'ipv6' if v6 else 'ipv4'}.{num}",
                **base, "iface.ipaddress": read("ipaddress") or UNSET, "iface.iface_num": num}
            for row in (IPV6_ROWS if v6 else IPV4_ROWS) + COMMON_ROWS:
                rec[row.key] = _value(row, read(row.attr))
            yield rec


def offload_drivers_to_load(sysfs, iscsiuio: bool | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """The offload iSCSI drivers this host's NICs call for (:data:`OFFLOAD_NET_DRIVERS`)
    whose transport is not registered yet, once each, in the NICs' name order; bnx2i
    only with ``iscsiuio`` (default: its executable is installed), as
    libopeniscsiusr's ``iscsi_default_iface_setup``."""
    if iscsiuio is None:
        iscsiuio = any(os.path.exists(p) for p in ISCSIUIO_PATHS)
    out: list[str] = []
    for _dev, driver in sysfs.ethernet_drivers():
        offload = OFFLOAD_NET_DRIVERS.get(driver)
        if offload is None or offload in out or (driver in _NEEDS_ISCSIUIO and not iscsiuio):
            continue
        if sysfs.transport(offload) is None:
            out.append(offload)
    return out


def _modprobe(module: str) -> str | None:
    """``modprobe -q module``; None when it went well, else why not."""
    try:
        cp = subprocess.run(["modprobe", "-q", module], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if cp.returncode == 0 else (cp.stderr.decode(errors="replace").strip()
                                            or f"modprobe exited {cp.returncode}")


def load_offload_drivers(sysfs, warn: Callable[[str], None],  # type: ignore[no-untyped-def]
                         modprobe: Callable[[str], str | None] | None = None) -> list[str]:
    """Load each of :func:`offload_drivers_to_load` (so that its hosts, and the default
    records made of them, appear), as iscsiadm does before its iface and host commands
    (``iscsi_default_iface_setup``, ``transport_probe_for_offload``); a failure is said
    through ``warn`` in iscsiadm's words.  ``modprobe(module)``: None when loaded, else why
    not (default: ``modprobe -q``).  Returns the drivers loaded."""
    modprobe = modprobe or _modprobe
    loaded = []
    for driver in offload_drivers_to_load(sysfs):
        why = modprobe(driver)
        if why is None:
            loaded.append(driver)
        else:
            warn(f"Could not insert module {driver}: {why}")
    return loaded


def host_binding_records(sysfs) -> Iterator[dict[str, str | int]]:  # type: ignore[no-untyped-def]
    """The records open-iscsi's iface_setup_host_bindings writes for an offload host with
    no interface in the kernel (bnx2i, cxgb3i, cxgb4i, qedi): ``<transport>.<MAC>``, the
    name open-iscsi's README gives them, holding the transport and the MAC alone
    (usr/iface.c iface_setup_binding_from_kern_iface with no kernel iface), shaped as
    :func:`default_iface_records`' are.  For a host with kernel interfaces the bindings'
    names are :func:`default_iface_records`' own: nothing more to make."""
    for host_no in sysfs.host_numbers():
        transport = sysfs.host_transport(host_no)
        if not transport or transport in SOFTWARE_TRANSPORTS or sysfs.host_iface_names(host_no):
            continue
        host = sysfs.host(host_no, only=("hwaddress",))
        if host is not None and host.hwaddress:
            yield {"iface.iscsi_ifacename": f"{transport}.{host.hwaddress}",
                   "iface.transport_name": transport, "iface.hwaddress": host.hwaddress}


def setup_default_ifaces(db, sysfs, warn: Callable[[str], None],  # type: ignore[no-untyped-def]
                         records: Callable[..., Iterator[dict[str, str | int]]] | None = None
                         ) -> list[str]:
    """Write each :func:`default_iface_records` record (or ``records(sysfs)``'s) whose name
    is not in ``db`` (an :class:`iscsictl.db.store.NodeDB`) yet; one already there is left
    as it is (it may hold the admin's settings).  Returns the names written.  A record
    that cannot be written is said through ``warn`` and left out; nothing raises."""
    from ..db.errors import DBError, RecordExists

    made = []
    for values in (records or default_iface_records)(sysfs):
        name = str(values.pop("iface.iscsi_ifacename"))
        try:
            db.create_iface(name, values)
        except RecordExists:
            continue
        except (DBError, OSError) as e:
            warn(f"Could not create default iface conf {name}: {e}")
            continue
        made.append(name)
    return made
