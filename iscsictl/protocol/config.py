"""Login configuration: what the initiator offers and how long it waits.

:class:`LoginConfig` is a plain value object (no behaviour beyond checking
itself and rendering offers).  :meth:`LoginConfig.from_node` and
:meth:`LoginConfig.from_discovery` read open-iscsi's record keys
(``node.session.iscsi.*``, ``node.conn[0].iscsi.*``, ``*.auth.*``,
``discovery.sendtargets.*``) with open-iscsi's defaults and clamping, so the
same record file drives both implementations the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .chap import CHAP_ALGORITHM_NAMES, ChapAlgorithm, ChapCredentials, ShortSecretPolicy
from .keys import KEYS
from .text import check_value

__all__ = ["LoginConfig", "DIGEST_CHOICES"]

#: open-iscsi's digest settings -> the list we offer, in preference order
DIGEST_CHOICES = {
    "None": "None",
    "CRC32C": "CRC32C",
    "CRC32C,None": "CRC32C,None",
    "None,CRC32C": "None,CRC32C",
}
_MIN_LEN, _MAX_LEN = 512, 2**24 - 1


def _yes(v: bool) -> str:
    return "Yes" if v else "No"


#: what an iSER initiator declares it will send when node.conn[0].iscsi.MaxXmitDataSegmentLength
#: is 0 (open-iscsi's ISCSI_DEF_MAX_RECV_SEG_LEN, usr/initiator_common.c
#: iscsi_copy_operational_params)
ISER_DEFAULT_XMIT = 8192


@dataclass(frozen=True)
class LoginConfig:
    """Everything a login needs besides the connection.

    Lengths in bytes, times in seconds.  Defaults are open-iscsi's compiled
    defaults (usr/iscsi_settings.h).
    """

    initiator_name: str
    target_name: str | None = None
    session_type: str = "Normal"  # or "Discovery"
    initiator_alias: str | None = None
    chap: ChapCredentials | None = None
    chap_algorithms: tuple[ChapAlgorithm, ...] = (ChapAlgorithm.MD5,)
    #: offer AuthMethod=CHAP,None (the target may waive CHAP) unless the target is to be
    #: authenticated too (mutual CHAP): open-iscsi's acl_set_auth_method_valid
    auth_optional: bool = True
    short_secret_policy: ShortSecretPolicy = ShortSecretPolicy.WARN
    header_digest: str = "None"
    data_digest: str = "None"
    max_recv_data_segment_length: int = 262144
    max_xmit_data_segment_length: int = 0  # 0: the target's declared value
    first_burst_length: int = 262144
    max_burst_length: int = 16776192
    initial_r2t: bool = False
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    max_connections: int = 1
    default_time2wait: int = 2
    default_time2retain: int = 0
    error_recovery_level: int = 0
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    iser: bool = False
    login_timeout: float = 15.0
    auth_timeout: float = 45.0
    #: seconds the whole login may take from its first Login Request (None: no bound but
    #: each answer's): a node login's is login_timeout, as iscsid's one login timer
    #: (initiator.c iscsi_conn_connect arms it; only the full feature phase stops it)
    total_timeout: float | None = None
    extra_keys: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.session_type not in ("Normal", "Discovery"):
            raise ValueError(f"SessionType {self.session_type!r} is not Normal or Discovery")
        if self.session_type == "Normal" and not self.target_name:
            raise ValueError("a Normal session needs a TargetName")
        for name in ("header_digest", "data_digest"):
            if getattr(self, name) not in DIGEST_CHOICES:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of "
                                 f"{', '.join(DIGEST_CHOICES)}")
        # what the login will send, checked now: a value over its key's limit is a record
        # no login can be made from (open-iscsi's buffers cut it), not an error mid-login
        for key, value in self.login_keys():
            check_value(key, value)
        if self.chap is not None:
            check_value("CHAP_N", self.chap.username)
            if not self.chap_algorithms:
                raise ValueError("node.session.auth.chap_algs names no CHAP algorithm "
                                 f"iscsictl knows ({', '.join(CHAP_ALGORITHM_NAMES)})")

    @property
    def discovery(self) -> bool:
        return self.session_type == "Discovery"

    def login_keys(self) -> list[tuple[str, str]]:
        """The keys of the first Login Request (§13.4, §13.5, §13.21)."""
        keys = [("InitiatorName", self.initiator_name)]
        if self.initiator_alias:
            keys.append(("InitiatorAlias", self.initiator_alias))
        if not self.discovery:
            keys.append(("TargetName", self.target_name or ""))
        keys.append(("SessionType", self.session_type))
        return keys

    def auth_method_offer(self) -> str | None:
        """AuthMethod to offer, or None to skip the security stage."""
        if self.chap is None:
            return None
        return "CHAP,None" if self.auth_optional and not self.chap.mutual else "CHAP"

    def operational_offers(self) -> dict[str, str]:
        """Operational keys offered in LoginOperationalNegotiation, by name."""
        hd = "None" if self.iser else DIGEST_CHOICES[self.header_digest]
        dd = "None" if self.iser else DIGEST_CHOICES[self.data_digest]
        offers = {
            "HeaderDigest": hd,
            "DataDigest": dd,
            "DefaultTime2Wait": str(self.default_time2wait),
            "DefaultTime2Retain": str(self.default_time2retain),
            "ErrorRecoveryLevel": str(self.error_recovery_level),
        }
        if not self.discovery:
            offers.update({
                "InitialR2T": _yes(self.initial_r2t),
                "ImmediateData": _yes(self.immediate_data),
                "MaxBurstLength": str(self.max_burst_length),
                "FirstBurstLength": str(self.first_burst_length),
                "MaxOutstandingR2T": str(self.max_outstanding_r2t),
                "MaxConnections": str(self.max_connections),
                "DataPDUInOrder": _yes(self.data_pdu_in_order),
                "DataSequenceInOrder": _yes(self.data_sequence_in_order),
            })
        if self.iser:  # RFC 7145 §6.4-6.5, as iscsid's add_params_transport_specific
            offers.update({
                "RDMAExtensions": "Yes",
                "InitiatorRecvDataSegmentLength": str(self.max_recv_data_segment_length),
                "TargetRecvDataSegmentLength": str(self.max_xmit_data_segment_length
                                                   or ISER_DEFAULT_XMIT),
            })
        else:
            offers["MaxRecvDataSegmentLength"] = str(self.max_recv_data_segment_length)
        offers.update(dict(self.extra_keys))
        return offers

    # -- open-iscsi records ------------------------------------------------------------
    @classmethod
    def from_node(cls, rec: Mapping[str, str], initiator_name: str, **overrides: object) -> LoginConfig:
        """Build from an open-iscsi node record (key -> value strings).

        Applies open-iscsi's clamping (usr/initiator_common.c
        iscsi_copy_operational_params): each length rounded down to 4 bytes, then,
        outside 512..2**24-1, the default (MaxXmitDataSegmentLength: 0 stays "the
        target's", anything else out of range 262144); FirstBurstLength never exceeds
        MaxBurstLength.  MaxOutstandingR2T, DefaultTime2Wait and DefaultTime2Retain are
        brought into their RFC 7143 ranges (1..65535, 0..3600), which open-iscsi offers
        unchecked.  A login timeout of 0 or less is 30 s (iscsid's for 0; -1 ended
        every login at once).
        """
        def get(key: str, default: str) -> str:
            v = rec.get(key)
            return default if v in (None, "", "<empty>") else str(v)

        def num(key: str, default: int) -> int:
            try:
                return int(get(key, str(default)))
            except ValueError:
                return default

        def bounded(key: str, default: int) -> int:  # into the key's RFC 7143 §13 range:
            kd = KEYS[key.rpartition(".")[2]]  # out of it, the offer would be illegal and
            assert kd.low is not None and kd.high is not None  # the login fail (19)
            return min(max(num(key, default), kd.low), kd.high)

        def length(key: str, default: int) -> int:
            n = num(key, default) & ~3  # open-iscsi's align_32_down
            return n if _MIN_LEN <= n <= _MAX_LEN else default

        # 0 is iscsid's "not set" (its 30 s: __session_conn_create); below 0 too here, where
        # iscsid's unsigned timer makes -1 about 136 years: a dead portal held forever
        login_timeout = float(num("node.conn[0].timeo.login_timeout", 30))
        if login_timeout <= 0:
            login_timeout = 30.0
        mrdsl = length("node.conn[0].iscsi.MaxRecvDataSegmentLength", 262144)
        # 0: the target's; else rounded down (1..3 become 0, which open-iscsi then makes
        # its 8192), and out of range 262144
        xmit = num("node.conn[0].iscsi.MaxXmitDataSegmentLength", 0)
        if xmit:
            xmit = (xmit & ~3) or 8192
            xmit = xmit if _MIN_LEN <= xmit <= _MAX_LEN else 262144
        max_burst = length("node.session.iscsi.MaxBurstLength", 16776192)
        first_burst = min(length("node.session.iscsi.FirstBurstLength", 262144), max_burst)
        kw: dict[str, object] = dict(
            initiator_name=initiator_name,
            target_name=get("node.name", ""),
            session_type="Normal",
            chap=_chap(rec, "node.session.auth."),
            chap_algorithms=_chap_algs(rec.get("node.session.auth.chap_algs")),
            header_digest=get("node.conn[0].iscsi.HeaderDigest", "None"),
            data_digest=get("node.conn[0].iscsi.DataDigest", "None"),
            max_recv_data_segment_length=mrdsl,
            max_xmit_data_segment_length=xmit,
            first_burst_length=first_burst,
            max_burst_length=max_burst,
            initial_r2t=get("node.session.iscsi.InitialR2T", "No") == "Yes",
            immediate_data=get("node.session.iscsi.ImmediateData", "Yes") == "Yes",
            max_outstanding_r2t=bounded("node.session.iscsi.MaxOutstandingR2T", 1),
            # one connection a session, as the kernel data path runs: open-iscsi offers
            # MaxConnections=1 whatever node.session.iscsi.MaxConnections says (login.c)
            max_connections=1,
            default_time2wait=bounded("node.session.iscsi.DefaultTime2Wait", 2),
            default_time2retain=bounded("node.session.iscsi.DefaultTime2Retain", 0),
            error_recovery_level=0,  # ERL 0 is what the kernel data path supports
            iser=get("iface.transport_name", "tcp") == "iser",
            login_timeout=login_timeout,
            # iscsid bounds a node's login by its login timer alone (initiator.c
            # iscsi_conn_connect): node.conn[0].timeo.auth_timeout is read, never used
            auth_timeout=login_timeout,
            total_timeout=login_timeout,
        )
        kw.update(overrides)
        return cls(**kw)  # type: ignore[arg-type]

    @classmethod
    def from_discovery(
        cls, rec: Mapping[str, str], initiator_name: str, **overrides: object
    ) -> LoginConfig:
        """Build from an open-iscsi SendTargets discovery record (st_config)."""
        def get(key: str, default: str) -> str:
            v = rec.get(key)
            return default if v in (None, "", "<empty>") else str(v)

        try:
            mrdsl = int(get("discovery.sendtargets.iscsi.MaxRecvDataSegmentLength", "32768")) & ~3
        except ValueError:
            mrdsl = 32768
        if not _MIN_LEN <= mrdsl <= _MAX_LEN:  # iscsi_copy_operational_params, for a
            mrdsl = 262144  # discovery's too: DEF_INI_MAX_RECV_SEG_LEN
        kw: dict[str, object] = dict(
            initiator_name=initiator_name,
            session_type="Discovery",
            chap=_chap(rec, "discovery.sendtargets.auth."),
            chap_algorithms=_chap_algs(rec.get("node.session.auth.chap_algs")),
            max_recv_data_segment_length=mrdsl,
            login_timeout=float(get("discovery.sendtargets.timeo.login_timeout", "15")),
            auth_timeout=float(get("discovery.sendtargets.timeo.auth_timeout", "45")),
        )
        kw.update(overrides)
        return cls(**kw)  # type: ignore[arg-type]

    def with_target(self, target_name: str) -> LoginConfig:
        return replace(self, target_name=target_name)


def _chap(rec: Mapping[str, str], prefix: str) -> ChapCredentials | None:
    def get(key: str) -> str:
        v = rec.get(prefix + key)
        return "" if v in (None, "<empty>") else str(v)

    method = get("authmethod") or "None"
    incoming = bool(get("username_in") or get("password_in"))
    if incoming:
        # open-iscsi's iscsi_setup_authentication: with incoming credentials the target is
        # authenticated or there is no login (without this, CHAP was silently dropped);
        # its acl_chap_auth_request then fails without both the target's name and secret
        if not get("password"):
            raise ValueError("CHAP configuration has incoming authentication credentials "
                             "but has no outgoing credentials configured.")
        missing = [k for k in ("username", "username_in", "password_in") if not get(k)]
        if missing:
            raise ValueError("CHAP configuration has incoming authentication credentials "
                             f"but no {' or '.join(prefix + k for k in missing)}: the "
                             "target could not be authenticated.")
    elif method != "CHAP" and not get("password"):
        return None
    if not get("username") or not get("password"):
        return None
    return ChapCredentials(  # secrets as their bytes (a firmware's need not be UTF-8)
        username=get("username"),
        password=get("password").encode("utf-8", "surrogateescape"),
        username_in=get("username_in") or None,
        password_in=get("password_in").encode("utf-8", "surrogateescape") or None,
    )


def _chap_algs(text: str | None) -> tuple[ChapAlgorithm, ...]:
    """``node.session.auth.chap_algs``'s algorithms in its order: MD5 when the key is not
    there (idbm's default); none when it names none iscsictl knows (the record reader
    drops an unknown name), and a CHAP login is then refused, as iscsid's
    acl_set_chap_alg_list refuses it: MD5 in their place is what a list of stronger ones
    was set to keep off."""
    if text is None:
        return (ChapAlgorithm.MD5,)
    algs = []
    for name in str(text).replace(" ", ",").split(","):
        alg = CHAP_ALGORITHM_NAMES.get(name.strip().upper())
        if alg is not None and alg not in algs:
            algs.append(alg)
    return tuple(algs)
