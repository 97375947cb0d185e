"""What userspace does for each iSCSI transport: open-iscsi's table of transport templates
(usr/transport.c ``iscsi_transport_templates``), one row per kernel transport.

A row says who makes the connection (iscsi_tcp: userspace's own socket; every other: the
kernel, ``TRANSPORT_EP_CONNECT``), whether the endpoint must go through the HBA the iface
is bound to (``bind_ep_required``: ``TRANSPORT_EP_CONNECT_THROUGH_HOST``), what the
iface's IP address is to the HBA (``set_host_ip``), whether the network settings go
through iscsiuio (bnx2i, qedi), and the limits the driver puts on the login's values
(the templates' ``create_conn``: usr/cxgbi.c, usr/be2iscsi.c, usr/iser.c).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iscsictl.protocol.config import LoginConfig

__all__ = ["BIND_EP_TRANSPORTS", "PROC_NAME_TRANSPORT", "SetHostIp", "Transport", "TRANSPORTS",
           "unsupported"]


class SetHostIp(Enum):
    """usr/transport.h ``enum set_host_ip_opts``: the iface's ``ipaddress`` to the HBA."""

    NOT_REQ = 0  # not supported: nothing is set
    REQ = 1      # required: a login without it is refused
    OPT = 2      # optional: set when the iface has one


@dataclass(frozen=True)
class Transport:
    """One transport template.  Lengths in bytes; None: no limit of the driver's."""

    name: str
    #: the SCSI hosts' ``proc_name`` (sysfs ``scsi_host/host<N>/proc_name``)
    proc_name: str
    #: the kernel makes the connection (``ep_connect = ktransport_ep_connect``) and the
    #: login goes through it (relayed by SEND_PDU / RECV_PDU, or the HBA's own)
    kernel_connected: bool = True
    #: the endpoint goes through the host the iface is bound to (by hwaddress, else
    #: net_ifacename, else ipaddress), when it names one
    bind_ep_required: bool = False
    set_host_ip: SetHostIp = SetHostIp.NOT_REQ
    #: the network settings go to iscsiuio (``set_net_config = uip_broadcast_params``)
    iscsiuio: bool = False
    #: no net device of the host's to bring up before a login (qedi: ``no_netdev``)
    no_netdev: bool = False
    #: the HBA's firmware logs in itself (the driver's CAP_LOGIN_OFFLOAD)
    login_offload: bool = False
    #: create_conn's limits on MaxRecvDataSegmentLength, MaxXmitDataSegmentLength,
    #: FirstBurstLength, MaxBurstLength
    max_recv_dlength: int | None = None
    max_xmit_dlength: int | None = None
    first_burst: int | None = None
    max_burst: int | None = None
    #: create_conn's InitialR2T=Yes (be2iscsi: ``session->initial_r2t_en = 1``)
    initial_r2t: bool = False
    #: the driver's SET_PARAM MAX_R2T takes a power of two only (libiscsi_tcp's
    #: iscsi_tcp_set_max_r2t: the R2T pool is a kfifo)
    r2t_power_of_two: bool = False
    #: the kernel module that registers the transport, when not its name (modprobe'd)
    module: str | None = None
    #: a port's ifaces share its VLAN: an iface's VLAN settings go to every iface of the
    #: same port (transport, hwaddress, iface_num) too (the template's sync_vlan_settings)
    sync_vlan_settings: bool = False
    #: a boot session's network settings (VLAN, subnet mask, gateway) are read from the
    #: boot firmware's NIC entry its session names (the template's use_boot_info)
    use_boot_info: bool = False

    def create_conn(self, cfg: LoginConfig) -> LoginConfig:
        """``cfg`` within the driver's limits (the template's ``create_conn``: each length
        the smaller of the two; be2iscsi's InitialR2T=Yes)."""
        changes: dict[str, object] = {}
        for attr, limit in (("max_recv_data_segment_length", self.max_recv_dlength),
                            ("max_xmit_data_segment_length", self.max_xmit_dlength),
                            ("first_burst_length", self.first_burst),
                            ("max_burst_length", self.max_burst)):
            value = getattr(cfg, attr)
            if limit is not None and (value > limit or value == 0):  # 0: the target's
                changes[attr] = limit
        if self.initial_r2t and not cfg.initial_r2t:
            changes["initial_r2t"] = True
        return replace(cfg, **changes) if changes else cfg  # type: ignore[arg-type]



TRANSPORTS: dict[str, Transport] = {t.name: t for t in (
    Transport("tcp", "iscsi_tcp", kernel_connected=False, module="iscsi_tcp",
              r2t_power_of_two=True),
    Transport("iser", "iscsi_iser", module="ib_iser"),  # hosts: iscsi_iser.c iscsi_iser_sht
    # cxgb3i: "card can handle up to 15360 bytes"
    Transport("cxgb3i", "cxgb3i", bind_ep_required=True, set_host_ip=SetHostIp.OPT,
              max_recv_dlength=8192, r2t_power_of_two=True),
    Transport("cxgb4i", "cxgb4i", bind_ep_required=True, max_recv_dlength=8192,
              r2t_power_of_two=True),
    Transport("bnx2i", "bnx2i", bind_ep_required=True, set_host_ip=SetHostIp.REQ,
              iscsiuio=True, use_boot_info=True),
    Transport("qla4xxx", "qla4xxx", bind_ep_required=True, login_offload=True),
    Transport("be2iscsi", "be2iscsi", bind_ep_required=True, max_recv_dlength=65536,
              max_xmit_dlength=65536, first_burst=8192, max_burst=262144, initial_r2t=True,
              sync_vlan_settings=True),
    Transport("ocs", "ocs", bind_ep_required=True),
    Transport("qedi", "qedi", bind_ep_required=True, set_host_ip=SetHostIp.REQ,
              iscsiuio=True, no_netdev=True, use_boot_info=True),
)}

#: scsi_host proc_name -> transport name
PROC_NAME_TRANSPORT: dict[str, str] = {t.proc_name: t.name for t in TRANSPORTS.values()}
#: the transports whose endpoints go through an HBA's host
BIND_EP_TRANSPORTS = frozenset(t.name for t in TRANSPORTS.values() if t.bind_ep_required)


def unsupported(name: str) -> str | None:
    """Why iscsictl makes no session (login, SendTargets) through transport ``name`` (an
    iface's ``iface.transport_name``); None when it does: every transport of the table."""
    if name not in TRANSPORTS:
        return f"transport {name} is not one open-iscsi knows"
    return None
