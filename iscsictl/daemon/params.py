"""The SET_PARAM lists sent to the kernel, as tables (``enum iscsi_param``).

open-iscsi sends two groups (usr/initiator_common.c): the session's settings
from the node record and the values negotiated at login.  With the login done
on our own socket, both go after BIND_CONN (the kernel wants the connection
BOUND) and before START_CONN; on a connection the kernel makes (iSER, offload HBAs)
the first group goes before the login relayed through it, as iscsid's.  Each group
leaves out what the transport lacks the capability for (:data:`NEEDS_CAP`: the markers
on iscsi_tcp, the digests and markers on ib_iser) and the NOP timeouts where the kernel
sends no NOP-Outs (:data:`NOP_PARAMS`).  Values are ASCII: integers in decimal,
booleans as 1/0.  :data:`OPTIONAL` lists the parameters whose ENOSYS is tolerated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsictl.kernel.transports import TRANSPORTS, SetHostIp
from iscsictl.lexical import ascii_digits
from iscsictl.netlink import IscsiParam as P
from iscsictl.netlink.enums import TransportCaps
from iscsictl.protocol.negotiation import NegotiatedParameters

__all__ = ["ParamContext", "OPTIONAL", "SECRET_PARAMS", "SESSION_OBJECT_PARAMS", "RELOGIN_ALWAYS",
           "session_params", "negotiated_params", "relogin_changes", "adopted_record",
           "AUTH_ATTRS", "ADOPTION_ATTRS"]


@dataclass(frozen=True)
class ParamContext:
    """What the tables read: the node record, the login result and names."""

    record: Mapping[str, str]
    params: NegotiatedParameters
    initiator_name: str
    target_name: str
    persistent_address: str
    persistent_port: int
    tpgt: int
    iface: str
    exp_statsn: int
    #: the transport's CAP_* (``class/iscsi_transport/<name>/caps``; -1: every one)
    caps: int = -1
    #: the connection has ``ping_tmo`` in sysfs: the kernel sends the NOP-Outs
    nop: bool = True
    #: a Discovery session (SessionType=Discovery)
    discovery: bool = False
    #: the transport's name (:data:`~iscsictl.kernel.transports.TRANSPORTS`)
    transport: str = "tcp"


def _r2t_pool(c: ParamContext) -> int:
    """MaxOutstandingR2T as the kernel takes it: the negotiated value, rounded up to a power
    of two for a transport whose driver sizes its R2T pool with it and refuses any other
    (libiscsi_tcp's iscsi_tcp_set_max_r2t: iscsi_tcp, cxgb3i, cxgb4i).  A larger pool than
    the target will fill is harmless; the refusal failed every login where the record
    offered, and the target granted, 3 (iscsid too retries such a login and gives up).
    At most 32768: the driver reads the value as an unsigned short."""
    n = max(1, c.params.max_outstanding_r2t)
    t = TRANSPORTS.get(c.transport)
    if t is None or not t.r2t_power_of_two:
        return n
    return min(1 << (n - 1).bit_length(), 1 << 15)


def _rec(key: str, default: str = "") -> Callable[[ParamContext], str | None]:
    def get(c: ParamContext) -> str | None:
        v = c.record.get(key, default)
        return None if v in ("", "<empty>", None) else str(v)
    return get


def _yes(key: str, default: str) -> Callable[[ParamContext], str | None]:
    return lambda c: "1" if c.record.get(key, default) == "Yes" else "0"


def _b(v: bool) -> str:
    return "1" if v else "0"


#: node record -> kernel (iscsi_session_set_params, in its order); empty strings are skipped
#: (boot_root, boot_nic and boot_target are set only by a login from the firmware's table)
SESSION_PARAMS: tuple[tuple[P, Callable[[ParamContext], str | None]], ...] = (
    (P.TARGET_NAME, lambda c: c.target_name),
    (P.PERSISTENT_ADDRESS, lambda c: c.persistent_address),
    (P.PERSISTENT_PORT, lambda c: str(c.persistent_port)),
    (P.SESS_RECOVERY_TMO, _rec("node.session.timeo.replacement_timeout", "120")),
    (P.USERNAME, _rec("node.session.auth.username")),
    (P.USERNAME_IN, _rec("node.session.auth.username_in")),
    (P.PASSWORD, _rec("node.session.auth.password")),
    (P.PASSWORD_IN, _rec("node.session.auth.password_in")),
    (P.FAST_ABORT, _yes("node.session.iscsi.FastAbort", "Yes")),
    (P.ABORT_TMO, _rec("node.session.err_timeo.abort_timeout", "15")),
    (P.LU_RESET_TMO, _rec("node.session.err_timeo.lu_reset_timeout", "30")),
    (P.TGT_RESET_TMO, _rec("node.session.err_timeo.tgt_reset_timeout", "30")),
    (P.PING_TMO, _rec("node.conn[0].timeo.noop_out_timeout", "5")),
    (P.RECV_TMO, _rec("node.conn[0].timeo.noop_out_interval", "5")),
    (P.IFACE_NAME, lambda c: c.iface),
    (P.INITIATOR_NAME, lambda c: c.initiator_name),
    (P.BOOT_ROOT, _rec("node.session.boot_root")),
    (P.BOOT_NIC, _rec("node.session.boot_nic")),
    (P.BOOT_TARGET, _rec("node.session.boot_target")),
    (P.DISCOVERY_SESS, lambda c: _b(c.discovery)),
)

#: login result -> kernel (iscsi_session_set_neg_params, in its order; like iscsid, no ISID:
#: libiscsi's drivers have no ISID to set, ENOSYS)
NEGOTIATED_PARAMS: tuple[tuple[P, Callable[[ParamContext], str | None]], ...] = (
    (P.MAX_RECV_DLENGTH, lambda c: str(c.params.max_recv_data_segment_length)),
    (P.MAX_XMIT_DLENGTH, lambda c: str(c.params.max_xmit_data_segment_length)),
    (P.HDRDGST_EN, lambda c: _b(c.params.header_digest)),
    (P.DATADGST_EN, lambda c: _b(c.params.data_digest)),
    (P.INITIAL_R2T_EN, lambda c: _b(c.params.initial_r2t)),
    (P.MAX_R2T, lambda c: str(_r2t_pool(c))),
    (P.IMM_DATA_EN, lambda c: _b(c.params.immediate_data)),
    (P.FIRST_BURST, lambda c: str(c.params.first_burst_length)),
    (P.MAX_BURST, lambda c: str(c.params.max_burst_length)),
    (P.PDU_INORDER_EN, lambda c: _b(c.params.data_pdu_in_order)),
    (P.DATASEQ_INORDER_EN, lambda c: _b(c.params.data_sequence_in_order)),
    (P.ERL, lambda c: str(c.params.error_recovery_level)),
    (P.IFMARKER_EN, lambda c: "0"),
    (P.OFMARKER_EN, lambda c: "0"),
    (P.EXP_STATSN, lambda c: str(c.exp_statsn)),
    (P.TPGT, lambda c: str(c.tpgt)),
)

#: parameters held by the kernel's iscsi_session (not the connection): STOP_CONN(RECOVER)
#: leaves them in place, and a relogin of the same node does not change them
SESSION_OBJECT_PARAMS = frozenset({
    P.TARGET_NAME, P.INITIATOR_NAME, P.SESS_RECOVERY_TMO, P.USERNAME, P.PASSWORD,
    P.USERNAME_IN, P.PASSWORD_IN, P.FAST_ABORT, P.ABORT_TMO, P.LU_RESET_TMO,
    P.TGT_RESET_TMO, P.IFACE_NAME, P.DISCOVERY_SESS, P.BOOT_ROOT, P.BOOT_NIC, P.BOOT_TARGET,
})

#: parameters a relogin sends whatever the kernel holds: the digests, which
#: STOP_CONN(RECOVER) switches off (libiscsi iscsi_conn_stop), and the values that
#: belong to the new login on this connection (ExpStatSN, data segment lengths)
RELOGIN_ALWAYS = frozenset({
    P.HDRDGST_EN, P.DATADGST_EN, P.EXP_STATSN, P.MAX_RECV_DLENGTH, P.MAX_XMIT_DLENGTH,
})

#: parameters carrying a CHAP secret (node.session.auth.password, password_in): a refusal's
#: message names them without their value
SECRET_PARAMS = frozenset({P.PASSWORD, P.PASSWORD_IN})

#: parameters a transport may not implement (ENOSYS is then ignored)
OPTIONAL = frozenset({P.ISID, P.IFMARKER_EN, P.OFMARKER_EN, P.FAST_ABORT, P.IFACE_NAME,
                      P.INITIATOR_NAME, P.TGT_RESET_TMO, P.LU_RESET_TMO, P.ABORT_TMO,
                      P.BOOT_ROOT, P.BOOT_NIC, P.BOOT_TARGET})


#: the transport capability a parameter is sent for (usr/initiator_common.c
#: iscsi_session_init_params: iscsid leaves it out of both groups without it)
NEEDS_CAP = {P.MAX_R2T: TransportCaps.MULTI_R2T, P.HDRDGST_EN: TransportCaps.HDRDGST,
             P.DATADGST_EN: TransportCaps.DATADGST, P.IFMARKER_EN: TransportCaps.MARKERS,
             P.OFMARKER_EN: TransportCaps.MARKERS}
#: sent only where the kernel sends the NOP-Outs: the connection shows ``ping_tmo``
#: (iscsi_session_set_params: iscsi_sysfs_session_supports_nop; offload firmware may
#: send its own)
NOP_PARAMS = frozenset({P.PING_TMO, P.RECV_TMO})


def _render(table: tuple[tuple[P, Callable[[ParamContext], str | None]], ...],
            ctx: ParamContext) -> list[tuple[P, str]]:
    out = []
    for param, get in table:
        need = NEEDS_CAP.get(param)
        if (need is not None and not ctx.caps & need) or (param in NOP_PARAMS and not ctx.nop):
            continue
        v = get(ctx)
        if v:
            out.append((param, v))
    return out


def session_params(ctx: ParamContext, relogin: bool = False) -> list[tuple[P, str]]:
    """(param, value) from the node record, empty values left out; for a relogin
    on the same kernel session, only the connection's (see SESSION_OBJECT_PARAMS)."""
    params = _render(SESSION_PARAMS, ctx)
    if relogin:
        params = [(p, v) for p, v in params if p not in SESSION_OBJECT_PARAMS]
    return params


def negotiated_params(ctx: ParamContext) -> list[tuple[P, str]]:
    """(param, value) from the login's negotiated parameters."""
    return _render(NEGOTIATED_PARAMS, ctx)


def relogin_changes(wanted: list[tuple[P, str]],
                    held: Mapping[int, str | None]) -> list[tuple[P, str]]:
    """The SET_PARAMs a relogin on the same kernel session needs: from ``wanted``
    (this login's full list), those in :data:`RELOGIN_ALWAYS` and those whose value
    differs from what the kernel ``held`` (``{param: value}``, None for a parameter
    the transport answered ENOSYS to, which is not sent again).  The session and
    connection objects keep every other value across STOP_CONN(RECOVER); with
    ``held`` empty (an adopted session) everything in ``wanted`` goes."""
    out = []
    for param, value in wanted:
        if param in held and held[param] is None:
            continue
        if param in RELOGIN_ALWAYS or held.get(param) != value:
            out.append((param, value))
    return out


# ---- the other way: a kernel session in sysfs -> the record to manage it with -------------
def _digest(v: str) -> str | None:
    """The connection's digest (libiscsi shows 1/0) as a record's preference."""
    return {"1": "CRC32C,None", "0": "None,CRC32C"}.get(v)


def _yes_no(v: str) -> str | None:
    return {"1": "Yes", "0": "No"}.get(v)


def _number(v: str) -> str | None:
    return v if ascii_digits(v) and int(v) > 0 else None


def _bound(v: str) -> str | None:
    """A host's netdev or hwaddress as an iface binding: None for iscsid's "default" (what
    its iscsi_host_set_params sets for an unbound iface) and libiscsi's "(null)" (never
    set)."""
    return None if v in ("default", "(null)", "<empty>") else v


#: (record key, sysfs attribute: ``session/<name>`` or ``connection/<name>``, conversion)
#: The credentials the session logged in with (iscsid's sync_session takes them from sysfs
#: even when a record exists: the record may have changed since, the session's worked),
#: all four as the kernel shows them: one it shows unset (libiscsi's "(null)") is empty,
#: not the record's or iscsid.conf's (iscsid merges iscsid.conf's in: a boot session
#: without mutual CHAP was logged in again offering iscsid.conf's, and refused).
AUTH_FROM_SYSFS = (
    ("node.session.auth.username", "session/username", str),
    ("node.session.auth.password", "session/password", str),
    ("node.session.auth.username_in", "session/username_in", str),
    ("node.session.auth.password_in", "session/password_in", str),
)
#: A session without a record (iscsistart's boot session, ``-m fw -l``, a record deleted
#: since): who it is and what it negotiated (iscsid's setup_rec_from_negotiated_values),
#: and the network device its iface is bound to, from its SCSI host (``host/<name>``:
#: iscsid's sync_session copies the iface iscsi_sysfs_read_iface reads), so that its
#: relogins leave through the same one.
IDENTITY_FROM_SYSFS = (
    ("node.name", "session/targetname", str),
    ("node.tpgt", "session/tpgt", str),
    ("node.conn[0].address", "connection/persistent_address", str),
    ("node.conn[0].port", "connection/persistent_port", str),
    ("iface.iscsi_ifacename", "session/ifacename", str),
    ("iface.initiatorname", "session/initiatorname", str),
    ("iface.net_ifacename", "host/netdev", _bound),
    ("iface.hwaddress", "host/hwaddress", _bound),
    ("iface.ipaddress", "host/ipaddress", _bound),  # kept where the HBA takes it: below
    # a boot session's NIC (bnx2i, qedi: iscsi_sysfs_read_boot), from the firmware entry
    # session/boot_root and boot_nic name
    ("iface.vlan_id", "boot/vlan", _number),
    ("iface.subnet_mask", "boot/subnet-mask", str),
    ("iface.gateway", "boot/gateway", str),
    ("node.conn[0].iscsi.HeaderDigest", "connection/header_digest", _digest),
    ("node.conn[0].iscsi.DataDigest", "connection/data_digest", _digest),
    ("node.conn[0].iscsi.MaxRecvDataSegmentLength", "connection/max_recv_dlength", _number),
    ("node.conn[0].iscsi.MaxXmitDataSegmentLength", "connection/max_xmit_dlength", _number),
    ("node.session.iscsi.FirstBurstLength", "session/first_burst_len", _number),
    ("node.session.iscsi.MaxBurstLength", "session/max_burst_len", _number),
    ("node.session.iscsi.ImmediateData", "session/immediate_data", _yes_no),
    ("node.session.iscsi.InitialR2T", "session/initial_r2t", _yes_no),
)
#: the sysfs attributes adopted_record reads: with a record, without one
AUTH_ATTRS = tuple(a for _, a, _ in AUTH_FROM_SYSFS)
ADOPTION_ATTRS = tuple(dict.fromkeys(a for _, a, _ in AUTH_FROM_SYSFS + IDENTITY_FROM_SYSFS))


def adopted_record(record: Mapping[str, str] | None, sysfs: Mapping[str, str | None],
                   defaults: Mapping[str, str], transport: str = "tcp") -> dict[str, str]:
    """The record a session taken over from the kernel is managed (and logged in again)
    with.  ``sysfs`` maps ``session/<attr>``/``connection/<attr>``/``host/<attr>``/
    ``boot/<attr>`` (the boot NIC entry's) (AUTH_ATTRS with a record, ADOPTION_ATTRS
    without) to the values read (None: unset or unreadable; a credential the transport
    does not show is left out);
    ``defaults``: iscsid.conf's node defaults, the base when there is no ``record``.  The
    session's credentials replace the record's or the defaults', an unset one by an empty
    one (:data:`AUTH_FROM_SYSFS`).  Without a record,
    the host's ``ipaddress`` is the iface's only for a ``transport`` that sets it on the
    HBA (bnx2i, qedi, cxgb3i: iscsid's sync_session keeps it for set_host_ip; software
    iSCSI's is the local address, not a binding), and it is the one iscsiuio is given at
    a relogin."""
    out = dict(record) if record is not None else dict(defaults)
    table = AUTH_FROM_SYSFS if record is not None else AUTH_FROM_SYSFS + IDENTITY_FROM_SYSFS
    t = TRANSPORTS.get(transport)
    for key, attr, conv in table:
        if key == "iface.ipaddress" and (t is None or t.set_host_ip is SetHostIp.NOT_REQ):
            continue
        raw = sysfs.get(attr)
        value = conv(raw) if raw not in (None, "") else None
        if value is not None:
            out[key] = value
        elif key in _AUTH_KEYS and attr in sysfs:  # shown unset (not hidden): none
            out[key] = ""
    return out


_AUTH_KEYS = frozenset(k for k, _, _ in AUTH_FROM_SYSFS)
