"""Enumerations and constants of the iSCSI netlink ABI.

Source: Linux 6.1 (Debian 12 "bookworm" kernel 6.1.x), ``include/scsi/iscsi_if.h``.
Every value here is the kernel's; names keep the header's spelling with the
common prefix removed (``ISCSI_UEVENT_CREATE_SESSION`` -> ``IscsiUeventE.CREATE_SESSION``).
"""

from __future__ import annotations

import enum

__all__ = [
    "NETLINK_ISCSI", "ISCSI_NL_GRP_ISCSID", "ISCSI_NL_GRP_UIP", "UEVENT_BASE", "KEVENT_BASE",
    "ISCSI_ERR_BASE", "IscsiUeventE", "IscsiTgtDscvr", "IscsiHostEventCode", "IscsiParamType",
    "IscsiNetParam", "IscsiIpaddressState", "IscsiRouterState", "IscsiIfaceParam",
    "IscsiConnState", "IscsiErr", "ISCSI_ERR_STRINGS", "IscsiParam", "IscsiHostParam",
    "IscsiFlashnodeParam", "IscsiDiscoveryParentType", "IscsiPortSpeed", "IscsiPortState",
    "IscsiPingStatusCode", "TransportCaps", "StopConnFlag", "ChapTypeE", "IscsiChapParam",
    "ISCSI_IFACE_TYPE_IPV4", "ISCSI_IFACE_TYPE_IPV6", "ISCSI_NET_PARAM_DISABLE",
    "ISCSI_NET_PARAM_ENABLE", "ISCSI_BOOTPROTO_STATIC", "ISCSI_BOOTPROTO_DHCP",
    "ISCSI_IPV6_AUTOCFG_DISABLE", "ISCSI_IPV6_AUTOCFG_ND_ENABLE",
    "ISCSI_IPV6_AUTOCFG_DHCPV6_ENABLE",
    "ISCSI_IPV6_LINKLOCAL_AUTOCFG_ENABLE", "ISCSI_IPV6_LINKLOCAL_AUTOCFG_DISABLE",
    "ISCSI_IPV6_ROUTER_AUTOCFG_ENABLE", "ISCSI_IPV6_ROUTER_AUTOCFG_DISABLE",
    "ISCSI_MAX_VLAN_ID", "ISCSI_MAX_VLAN_PRIORITY", "ISCSI_STATS_CUSTOM_MAX",
    "ISCSI_STATS_CUSTOM_DESC_MAX",
    "ISCSI_CHAP_AUTH_NAME_MAX_LEN", "ISCSI_CHAP_AUTH_SECRET_MAX_LEN",
    "ISCSI_HOST_STATS_CUSTOM_MAX", "ISCSI_HOST_STATS_CUSTOM_DESC_MAX",
    "PORTAL_TYPE_IPV4", "PORTAL_TYPE_IPV6",
]

#: Netlink protocol number (``include/uapi/linux/netlink.h``).
NETLINK_ISCSI = 8
#: Multicast group of iscsid (bitmask value for ``sockaddr_nl.nl_groups``).
ISCSI_NL_GRP_ISCSID = 1
#: Multicast group of iscsiuio (PATH_REQ, IF_DOWN).
ISCSI_NL_GRP_UIP = 2

UEVENT_BASE = 10
KEVENT_BASE = 100
ISCSI_ERR_BASE = 1000


class IscsiUeventE(enum.IntEnum):
    """``enum iscsi_uevent_e``: request (u->k) and event (k->u) types; the value of ``iscsi_uevent.type``."""

    UNKNOWN = 0
    # down events (requests)
    CREATE_SESSION = UEVENT_BASE + 1
    DESTROY_SESSION = UEVENT_BASE + 2
    CREATE_CONN = UEVENT_BASE + 3
    DESTROY_CONN = UEVENT_BASE + 4
    BIND_CONN = UEVENT_BASE + 5
    SET_PARAM = UEVENT_BASE + 6
    START_CONN = UEVENT_BASE + 7
    STOP_CONN = UEVENT_BASE + 8
    SEND_PDU = UEVENT_BASE + 9
    GET_STATS = UEVENT_BASE + 10
    GET_PARAM = UEVENT_BASE + 11
    TRANSPORT_EP_CONNECT = UEVENT_BASE + 12
    TRANSPORT_EP_POLL = UEVENT_BASE + 13
    TRANSPORT_EP_DISCONNECT = UEVENT_BASE + 14
    TGT_DSCVR = UEVENT_BASE + 15
    SET_HOST_PARAM = UEVENT_BASE + 16
    UNBIND_SESSION = UEVENT_BASE + 17
    CREATE_BOUND_SESSION = UEVENT_BASE + 18
    TRANSPORT_EP_CONNECT_THROUGH_HOST = UEVENT_BASE + 19
    PATH_UPDATE = UEVENT_BASE + 20
    SET_IFACE_PARAMS = UEVENT_BASE + 21
    PING = UEVENT_BASE + 22
    GET_CHAP = UEVENT_BASE + 23
    DELETE_CHAP = UEVENT_BASE + 24
    SET_FLASHNODE_PARAMS = UEVENT_BASE + 25
    NEW_FLASHNODE = UEVENT_BASE + 26
    DEL_FLASHNODE = UEVENT_BASE + 27
    LOGIN_FLASHNODE = UEVENT_BASE + 28
    LOGOUT_FLASHNODE = UEVENT_BASE + 29
    LOGOUT_FLASHNODE_SID = UEVENT_BASE + 30
    SET_CHAP = UEVENT_BASE + 31
    GET_HOST_STATS = UEVENT_BASE + 32
    DESTROY_SESSION_ASYNC = UEVENT_BASE + 33
    # up events (kernel events)
    KEVENT_RECV_PDU = KEVENT_BASE + 1
    KEVENT_CONN_ERROR = KEVENT_BASE + 2
    KEVENT_IF_ERROR = KEVENT_BASE + 3
    KEVENT_DESTROY_SESSION = KEVENT_BASE + 4
    KEVENT_UNBIND_SESSION = KEVENT_BASE + 5
    KEVENT_CREATE_SESSION = KEVENT_BASE + 6
    KEVENT_PATH_REQ = KEVENT_BASE + 7
    KEVENT_IF_DOWN = KEVENT_BASE + 8
    KEVENT_CONN_LOGIN_STATE = KEVENT_BASE + 9
    KEVENT_HOST_EVENT = KEVENT_BASE + 10
    KEVENT_PING_COMP = KEVENT_BASE + 11


class IscsiTgtDscvr(enum.IntEnum):
    """``enum iscsi_tgt_dscvr`` (``u.tgt_dscvr.type``)."""

    SEND_TARGETS = 1
    ISNS = 2
    SLP = 3


class IscsiHostEventCode(enum.IntEnum):
    """``enum iscsi_host_event_code`` (``r.host_event.code``)."""

    LINKUP = 1
    LINKDOWN = 2


class IscsiParamType(enum.IntEnum):
    """``enum iscsi_param_type`` (``iscsi_iface_param_info.param_type``)."""

    ISCSI_PARAM = 0
    ISCSI_HOST_PARAM = 1
    ISCSI_NET_PARAM = 2
    ISCSI_FLASHNODE_PARAM = 3
    ISCSI_CHAP_PARAM = 4
    ISCSI_IFACE_PARAM = 5


ISCSI_IFACE_TYPE_IPV4 = 0x01
ISCSI_IFACE_TYPE_IPV6 = 0x02
#: single-byte values of the enable/disable net params
ISCSI_NET_PARAM_DISABLE = 0x01
ISCSI_NET_PARAM_ENABLE = 0x02
#: single-byte values of IPV4_BOOTPROTO, IPV6_ADDR_AUTOCFG, IPV6_LINKLOCAL_AUTOCFG and
#: IPV6_ROUTER_AUTOCFG
ISCSI_BOOTPROTO_STATIC = 0x01
ISCSI_BOOTPROTO_DHCP = 0x02
ISCSI_IPV6_AUTOCFG_DISABLE = 0x01
ISCSI_IPV6_AUTOCFG_ND_ENABLE = 0x02
ISCSI_IPV6_AUTOCFG_DHCPV6_ENABLE = 0x03
ISCSI_IPV6_LINKLOCAL_AUTOCFG_ENABLE = 0x01
ISCSI_IPV6_LINKLOCAL_AUTOCFG_DISABLE = 0x02
ISCSI_IPV6_ROUTER_AUTOCFG_ENABLE = 0x01
ISCSI_IPV6_ROUTER_AUTOCFG_DISABLE = 0x02
#: VLAN_TAG (u16): bits 15-13 the priority, bits 11-0 the VLAN id
ISCSI_MAX_VLAN_ID = 4095
ISCSI_MAX_VLAN_PRIORITY = 7

IscsiNetParam = enum.IntEnum("IscsiNetParam", [(n, i) for i, n in enumerate("""
IPV4_ADDR IPV4_SUBNET IPV4_GW IPV4_BOOTPROTO MAC IPV6_LINKLOCAL IPV6_ADDR IPV6_ROUTER
IPV6_ADDR_AUTOCFG IPV6_LINKLOCAL_AUTOCFG IPV6_ROUTER_AUTOCFG IFACE_ENABLE VLAN_ID
VLAN_PRIORITY VLAN_ENABLED VLAN_TAG IFACE_TYPE IFACE_NAME MTU PORT IPADDR_STATE
IPV6_LINKLOCAL_STATE IPV6_ROUTER_STATE DELAYED_ACK_EN TCP_NAGLE_DISABLE TCP_WSF_DISABLE
TCP_WSF TCP_TIMER_SCALE TCP_TIMESTAMP_EN CACHE_ID IPV4_DHCP_DNS_ADDR_EN IPV4_DHCP_SLP_DA_EN
IPV4_TOS_EN IPV4_TOS IPV4_GRAT_ARP_EN IPV4_DHCP_ALT_CLIENT_ID_EN IPV4_DHCP_ALT_CLIENT_ID
IPV4_DHCP_REQ_VENDOR_ID_EN IPV4_DHCP_USE_VENDOR_ID_EN IPV4_DHCP_VENDOR_ID
IPV4_DHCP_LEARN_IQN_EN IPV4_FRAGMENT_DISABLE IPV4_IN_FORWARD_EN IPV4_TTL
IPV6_GRAT_NEIGHBOR_ADV_EN IPV6_MLD_EN IPV6_FLOW_LABEL IPV6_TRAFFIC_CLASS IPV6_HOP_LIMIT
IPV6_ND_REACHABLE_TMO IPV6_ND_REXMIT_TIME IPV6_ND_STALE_TMO IPV6_DUP_ADDR_DETECT_CNT
IPV6_RTR_ADV_LINK_MTU REDIRECT_EN""".split(), start=1)])
IscsiNetParam.__doc__ = "``enum iscsi_net_param`` (starts at 1; nla_type/param of iface net params)."

IscsiIpaddressState = enum.IntEnum("IscsiIpaddressState", [(n, i) for i, n in enumerate(
    "UNCONFIGURED ACQUIRING TENTATIVE VALID DISABLING INVALID DEPRECATED".split())])
IscsiIpaddressState.__doc__ = "``enum iscsi_ipaddress_state`` (header spells it ISCSI_IPDDRESS_STATE_*)."

IscsiRouterState = enum.IntEnum("IscsiRouterState", [(n, i) for i, n in enumerate(
    "UNKNOWN ADVERTISED MANUAL STALE".split())])
IscsiRouterState.__doc__ = "``enum iscsi_router_state``."

IscsiIfaceParam = enum.IntEnum("IscsiIfaceParam", [(n, i) for i, n in enumerate("""
DEF_TASKMGMT_TMO HDRDGST_EN DATADGST_EN IMM_DATA_EN INITIAL_R2T_EN DATASEQ_INORDER_EN
PDU_INORDER_EN ERL MAX_RECV_DLENGTH FIRST_BURST MAX_R2T MAX_BURST CHAP_AUTH_EN BIDI_CHAP_EN
DISCOVERY_AUTH_OPTIONAL DISCOVERY_LOGOUT_EN STRICT_LOGIN_COMP_EN INITIATOR_NAME""".split())])
IscsiIfaceParam.__doc__ = "``enum iscsi_iface_param`` (iSCSI settings of an iface, param_type ISCSI_IFACE_PARAM)."


class IscsiConnState(enum.IntEnum):
    """``enum iscsi_conn_state`` (``r.conn_login.state`` of KEVENT_CONN_LOGIN_STATE)."""

    FREE = 0
    XPT_WAIT = 1
    IN_LOGIN = 2
    LOGGED_IN = 3
    IN_LOGOUT = 4
    LOGOUT_REQUESTED = 5
    CLEANUP_WAIT = 6


class IscsiErr(enum.IntEnum):
    """``enum iscsi_err`` (``r.connerror.error`` of KEVENT_CONN_ERROR). ``str()`` texts: ISCSI_ERR_STRINGS."""

    OK = 0
    DATASN = ISCSI_ERR_BASE + 1
    DATA_OFFSET = ISCSI_ERR_BASE + 2
    MAX_CMDSN = ISCSI_ERR_BASE + 3
    EXP_CMDSN = ISCSI_ERR_BASE + 4
    BAD_OPCODE = ISCSI_ERR_BASE + 5
    DATALEN = ISCSI_ERR_BASE + 6
    AHSLEN = ISCSI_ERR_BASE + 7
    PROTO = ISCSI_ERR_BASE + 8
    LUN = ISCSI_ERR_BASE + 9
    BAD_ITT = ISCSI_ERR_BASE + 10
    CONN_FAILED = ISCSI_ERR_BASE + 11
    R2TSN = ISCSI_ERR_BASE + 12
    SESSION_FAILED = ISCSI_ERR_BASE + 13
    HDR_DGST = ISCSI_ERR_BASE + 14
    DATA_DGST = ISCSI_ERR_BASE + 15
    PARAM_NOT_FOUND = ISCSI_ERR_BASE + 16
    NO_SCSI_CMD = ISCSI_ERR_BASE + 17
    INVALID_HOST = ISCSI_ERR_BASE + 18
    XMIT_FAILED = ISCSI_ERR_BASE + 19
    TCP_CONN_CLOSE = ISCSI_ERR_BASE + 20
    SCSI_EH_SESSION_RST = ISCSI_ERR_BASE + 21
    NOP_TIMEDOUT = ISCSI_ERR_BASE + 22

    @property
    def description(self) -> str:
        """open-iscsi's log text for this error, e.g. ``ISCSI_ERR_TCP_CONN_CLOSE: TCP connection closed``."""
        return ISCSI_ERR_STRINGS[self]


#: Human text per error, as open-iscsi logs it (usr/kern_err_table.c kern_err_code_to_string,
#: word for word: log rules written for iscsid's lines match ours).
ISCSI_ERR_STRINGS: dict[IscsiErr, str] = {
    IscsiErr.OK: "ISCSI_OK: operation successful",
    IscsiErr.DATASN: "ISCSI_ERR_DATASN: Received invalid data sequence number from target",
    IscsiErr.DATA_OFFSET: "ISCSI_ERR_DATA_OFFSET: Seeking offset beyond the size of the "
                          "iSCSI segment",
    IscsiErr.MAX_CMDSN: "ISCSI_ERR_MAX_CMDSN: Received invalid command sequence number from "
                        "target",
    IscsiErr.EXP_CMDSN: "ISCSI_ERR_EXP_CMDSN: Received invalid expected command sequence "
                        "number from target",
    IscsiErr.BAD_OPCODE: "ISCSI_ERR_BAD_OPCODE: Received an invalid iSCSI opcode",
    IscsiErr.DATALEN: "ISCSI_ERR_DATALEN: Invalid data length value",
    IscsiErr.AHSLEN: "ISCSI_ERR_AHSLEN: Received an invalid AHS length",
    IscsiErr.PROTO: "ISCSI_ERR_PROTO: iSCSI protocol violation",
    IscsiErr.LUN: "ISCSI_ERR_LUN: LUN mismatch",
    IscsiErr.BAD_ITT: "ISCSI_ERR_BAD_ITT: Received invalid initiator task tag from target",
    IscsiErr.CONN_FAILED: "ISCSI_ERR_CONN_FAILED: iSCSI connection failed",
    IscsiErr.R2TSN: "ISCSI_ERR_R2TSN: Received invalid R2T (Ready to Transfer) data sequence "
                    "number from target",
    IscsiErr.SESSION_FAILED: "ISCSI_ERR_SESSION_FAILED: iSCSI session failed",
    IscsiErr.HDR_DGST: "ISCSI_ERR_HDR_DGST: Header digest mismatch",
    IscsiErr.DATA_DGST: "ISCSI_ERR_DATA_DGST: Data digest mismatch",
    IscsiErr.PARAM_NOT_FOUND: "ISCSI_ERR_PARAM_NOT_FOUND: Parameter not found",
    IscsiErr.NO_SCSI_CMD: "ISCSI_ERR_NO_SCSI_CMD: Could not look up SCSI command",
    IscsiErr.INVALID_HOST: "ISCSI_ERR_INVALID_HOST: iSCSI host is in an invalid state",
    IscsiErr.XMIT_FAILED: "ISCSI_ERR_XMIT_FAILED: Transmission of iSCSI packet failed",
    IscsiErr.TCP_CONN_CLOSE: "ISCSI_ERR_TCP_CONN_CLOSE: TCP connection closed",
    IscsiErr.SCSI_EH_SESSION_RST: "ISCSI_ERR_SCSI_EH_SESSION_RST: Session was dropped as a result of SCSI error recovery",
    IscsiErr.NOP_TIMEDOUT: "ISCSI_ERR_NOP_TIMEDOUT: A NOP has timed out",
}

IscsiParam = enum.IntEnum("IscsiParam", [(n, i) for i, n in enumerate("""
MAX_RECV_DLENGTH MAX_XMIT_DLENGTH HDRDGST_EN DATADGST_EN INITIAL_R2T_EN MAX_R2T IMM_DATA_EN
FIRST_BURST MAX_BURST PDU_INORDER_EN DATASEQ_INORDER_EN ERL IFMARKER_EN OFMARKER_EN EXP_STATSN
TARGET_NAME TPGT PERSISTENT_ADDRESS PERSISTENT_PORT SESS_RECOVERY_TMO CONN_PORT CONN_ADDRESS
USERNAME USERNAME_IN PASSWORD PASSWORD_IN FAST_ABORT ABORT_TMO LU_RESET_TMO HOST_RESET_TMO
PING_TMO RECV_TMO IFACE_NAME ISID INITIATOR_NAME TGT_RESET_TMO TARGET_ALIAS CHAP_IN_IDX
CHAP_OUT_IDX BOOT_ROOT BOOT_NIC BOOT_TARGET AUTO_SND_TGT_DISABLE DISCOVERY_SESS PORTAL_TYPE
CHAP_AUTH_EN DISCOVERY_LOGOUT_EN BIDI_CHAP_EN DISCOVERY_AUTH_OPTIONAL DEF_TIME2WAIT
DEF_TIME2RETAIN MAX_SEGMENT_SIZE STATSN KEEPALIVE_TMO LOCAL_PORT TSID DEF_TASKMGMT_TMO
TCP_TIMESTAMP_STAT TCP_WSF_DISABLE TCP_NAGLE_DISABLE TCP_TIMER_SCALE TCP_TIMESTAMP_EN
TCP_XMIT_WSF TCP_RECV_WSF IP_FRAGMENT_DISABLE IPV4_TOS IPV6_TC IPV6_FLOW_LABEL
IS_FW_ASSIGNED_IPV6 DISCOVERY_PARENT_IDX DISCOVERY_PARENT_TYPE LOCAL_IPADDR MAX""".split())])
IscsiParam.__doc__ = "``enum iscsi_param``: SET_PARAM ids (``u.set_param.param``); MAX = ISCSI_PARAM_MAX (72)."

IscsiHostParam = enum.IntEnum("IscsiHostParam", [(n, i) for i, n in enumerate(
    "HWADDRESS INITIATOR_NAME NETDEV_NAME IPADDRESS PORT_STATE PORT_SPEED MAX".split())])
IscsiHostParam.__doc__ = "``enum iscsi_host_param``: SET_HOST_PARAM ids (``u.set_host_param.param``)."

PORTAL_TYPE_IPV4 = "ipv4"
PORTAL_TYPE_IPV6 = "ipv6"

IscsiFlashnodeParam = enum.IntEnum("IscsiFlashnodeParam", [(n, i) for i, n in enumerate("""
IS_FW_ASSIGNED_IPV6 PORTAL_TYPE AUTO_SND_TGT_DISABLE DISCOVERY_SESS ENTRY_EN HDR_DGST_EN
DATA_DGST_EN IMM_DATA_EN INITIAL_R2T_EN DATASEQ_INORDER PDU_INORDER CHAP_AUTH_EN SNACK_REQ_EN
DISCOVERY_LOGOUT_EN BIDI_CHAP_EN DISCOVERY_AUTH_OPTIONAL ERL TCP_TIMESTAMP_STAT
TCP_NAGLE_DISABLE TCP_WSF_DISABLE TCP_TIMER_SCALE TCP_TIMESTAMP_EN IP_FRAG_DISABLE
MAX_RECV_DLENGTH MAX_XMIT_DLENGTH FIRST_BURST DEF_TIME2WAIT DEF_TIME2RETAIN MAX_R2T
KEEPALIVE_TMO ISID TSID PORT MAX_BURST DEF_TASKMGMT_TMO IPADDR ALIAS REDIRECT_IPADDR
MAX_SEGMENT_SIZE LOCAL_PORT IPV4_TOS IPV6_TC IPV6_FLOW_LABEL NAME TPGT LINK_LOCAL_IPV6
DISCOVERY_PARENT_IDX DISCOVERY_PARENT_TYPE TCP_XMIT_WSF TCP_RECV_WSF CHAP_IN_IDX CHAP_OUT_IDX
USERNAME USERNAME_IN PASSWORD PASSWORD_IN STATSN EXP_STATSN IS_BOOT_TGT MAX""".split())])
IscsiFlashnodeParam.__doc__ = "``enum iscsi_flashnode_param`` (ISCSI_FLASHNODE_*); MAX = 59."


class IscsiDiscoveryParentType(enum.IntEnum):
    """``enum iscsi_discovery_parent_type``."""

    UNKNOWN = 0x1
    SENDTGT = 0x2
    ISNS = 0x3


class IscsiPortSpeed(enum.IntFlag):
    """``enum iscsi_port_speed`` (host attribute port_speed)."""

    UNKNOWN = 0x1
    SPEED_10MBPS = 0x2
    SPEED_100MBPS = 0x4
    SPEED_1GBPS = 0x8
    SPEED_10GBPS = 0x10
    SPEED_25GBPS = 0x20
    SPEED_40GBPS = 0x40


class IscsiPortState(enum.IntEnum):
    """``enum iscsi_port_state``."""

    DOWN = 0x1
    UP = 0x2


class IscsiPingStatusCode(enum.IntEnum):
    """``enum iscsi_ping_status_code`` (``r.ping_comp.status``)."""

    SUCCESS = 0
    FW_DISABLED = 0x1
    IPADDR_INVALID = 0x2
    LINKLOCAL_IPV6_ADDR_INVALID = 0x3
    TIMEOUT = 0x4
    INVALID_DEST_ADDR = 0x5
    OVERSIZE_PACKET = 0x6
    ICMP_ERROR = 0x7
    MAX_REQ_EXCEEDED = 0x8
    NO_ARP_RECEIVED = 0x9


class TransportCaps(enum.IntFlag):
    """``CAP_*`` data-path capabilities (``/sys/class/iscsi_transport/<name>/caps``, hex). iscsi_tcp = 0x39."""

    RECOVERY_L0 = 0x1
    RECOVERY_L1 = 0x2
    RECOVERY_L2 = 0x4
    MULTI_R2T = 0x8
    HDRDGST = 0x10
    DATADGST = 0x20
    MULTI_CONN = 0x40
    TEXT_NEGO = 0x80
    MARKERS = 0x100
    FW_DB = 0x200
    SENDTARGETS_OFFLOAD = 0x400
    DATA_PATH_OFFLOAD = 0x800
    DIGEST_OFFLOAD = 0x1000
    PADDING_OFFLOAD = 0x2000
    LOGIN_OFFLOAD = 0x4000


class StopConnFlag(enum.IntEnum):
    """``STOP_CONN_*``: reason of a stop_conn (``u.stop_conn.flag``)."""

    TERM = 0x1
    SUSPEND = 0x2
    RECOVER = 0x3


class ChapTypeE(enum.IntEnum):
    """``enum chap_type_e`` (``iscsi_chap_rec.chap_type``)."""

    OUT = 0
    IN = 1


class IscsiChapParam(enum.IntEnum):
    """``enum iscsi_chap_param`` (param of the iscsi_param_info entries of SET_CHAP)."""

    INDEX = 0
    CHAP_TYPE = 1
    USERNAME = 2
    PASSWORD = 3
    PASSWORD_LEN = 4


ISCSI_STATS_CUSTOM_MAX = 32
ISCSI_STATS_CUSTOM_DESC_MAX = 64
ISCSI_CHAP_AUTH_NAME_MAX_LEN = 256
ISCSI_CHAP_AUTH_SECRET_MAX_LEN = 256
ISCSI_HOST_STATS_CUSTOM_MAX = 32
ISCSI_HOST_STATS_CUSTOM_DESC_MAX = 64
