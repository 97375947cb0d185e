"""The table of iSCSI text keys (RFC 7143 §12, §13; RFC 7145 §6 for iSER).

One row per key: how its value is negotiated (:class:`Kind`), its default,
its range or allowed values, its scope (session-wide or connection-only),
when it may be sent (:class:`Use`), in which login stage, whether it is
relevant in a Discovery session, and whether the initiator offers it.  This
table is the single source for offering, answering, validating and
documenting keys (see :mod:`.negotiation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["KEYS", "Kind", "KeyDef", "Scope", "Stage", "Use", "lookup", "MAX_KEY_NAME", "MAX_SIMPLE_VALUE"]

MAX_KEY_NAME = 63  #: bytes (§6.1)
MAX_SIMPLE_VALUE = 255  #: bytes for simple values (§6.1)
MAX_BINARY_VALUE = 8192  #: bytes of a binary value's encoding, e.g. CHAP_C (§6.1)
MAX_NUMBER_24 = 2**24 - 1


class Kind(Enum):
    """How a key's result is reached (§6.2)."""

    LIST = "list"  #: responder picks the first value it supports from the offer
    MIN = "numerical-min"  #: result = min(offer, answer)
    MAX = "numerical-max"  #: result = max(offer, answer)
    AND = "boolean-and"  #: result = offer AND answer
    OR = "boolean-or"  #: result = offer OR answer
    DECLARATIVE = "declarative"  #: the sender's value holds; no answer


class Scope(Enum):
    SESSION = "SW"  #: session-wide
    CONNECTION = "CO"  #: connection-only


class Use(Enum):
    """When a key may be sent (§13 "Use")."""

    LEADING_ONLY = "LO"  #: leading connection's login only
    INITIALIZE_ONLY = "IO"  #: login only
    FULL_FEATURE_ONLY = "FFPO"  #: full feature phase only (Text requests)
    ALL = "ALL"  #: login and full feature phase


class Stage(Enum):
    SECURITY = "security"
    OPERATIONAL = "operational"
    ANY = "any"


@dataclass(frozen=True)
class KeyDef:
    """One text key.

    Attributes:
        name: the key, case-sensitive.
        kind: negotiation kind.
        default: the value in force when the key is not negotiated (as text).
        values: allowed values for LIST keys (None: any).
        low, high: numeric range (inclusive) for numerical keys.
        scope, use, stage: where the key applies.
        discovery: relevant in a Discovery session (else answered Irrelevant).
        offered: the initiator offers it during login.
        sender: who may send it as a declaration ("initiator", "target", "both").
        max_length: longest value accepted, bytes.
        rfc: the defining section.
    """

    name: str
    kind: Kind
    default: str | None
    values: tuple[str, ...] | None = None
    low: int | None = None
    high: int | None = None
    scope: Scope = Scope.SESSION
    use: Use = Use.LEADING_ONLY
    stage: Stage = Stage.OPERATIONAL
    discovery: bool = True
    offered: bool = True
    sender: str = "both"
    max_length: int = MAX_SIMPLE_VALUE
    rfc: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in (Kind.MIN, Kind.MAX) or self.low is not None

    @property
    def boolean(self) -> bool:
        return self.kind in (Kind.AND, Kind.OR)


_K = KeyDef
_24 = MAX_NUMBER_24

KEYS: dict[str, KeyDef] = {k.name: k for k in (
    # --- security negotiation (§12) --------------------------------------------
    _K("AuthMethod", Kind.LIST, "None", ("KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None"),
       stage=Stage.SECURITY, use=Use.INITIALIZE_ONLY, scope=Scope.CONNECTION, rfc="RFC 7143 §12.1"),
    _K("CHAP_A", Kind.LIST, None, stage=Stage.SECURITY, use=Use.INITIALIZE_ONLY,
       scope=Scope.CONNECTION, offered=False, rfc="RFC 7143 §12.1.3"),
    _K("CHAP_I", Kind.DECLARATIVE, None, low=0, high=255, stage=Stage.SECURITY,
       use=Use.INITIALIZE_ONLY, scope=Scope.CONNECTION, offered=False, rfc="RFC 7143 §12.1.3"),
    _K("CHAP_C", Kind.DECLARATIVE, None, stage=Stage.SECURITY, use=Use.INITIALIZE_ONLY,
       scope=Scope.CONNECTION, offered=False, max_length=MAX_BINARY_VALUE, rfc="RFC 7143 §12.1.3"),
    _K("CHAP_N", Kind.DECLARATIVE, None, stage=Stage.SECURITY, use=Use.INITIALIZE_ONLY,
       scope=Scope.CONNECTION, offered=False, rfc="RFC 7143 §12.1.3"),
    _K("CHAP_R", Kind.DECLARATIVE, None, stage=Stage.SECURITY, use=Use.INITIALIZE_ONLY,
       scope=Scope.CONNECTION, offered=False, max_length=MAX_BINARY_VALUE, rfc="RFC 7143 §12.1.3"),
    # --- login and operational keys (§13) ---------------------------------------
    _K("HeaderDigest", Kind.LIST, "None", ("CRC32C", "None"), scope=Scope.CONNECTION,
       use=Use.INITIALIZE_ONLY, rfc="RFC 7143 §13.1"),
    _K("DataDigest", Kind.LIST, "None", ("CRC32C", "None"), scope=Scope.CONNECTION,
       use=Use.INITIALIZE_ONLY, rfc="RFC 7143 §13.1"),
    _K("MaxConnections", Kind.MIN, "1", low=1, high=65535, discovery=False, rfc="RFC 7143 §13.2"),
    _K("SendTargets", Kind.DECLARATIVE, None, use=Use.FULL_FEATURE_ONLY, offered=False,
       sender="initiator", rfc="RFC 7143 §13.3"),
    _K("TargetName", Kind.DECLARATIVE, None, use=Use.ALL, stage=Stage.ANY, offered=False,
       max_length=223, rfc="RFC 7143 §13.4"),
    _K("InitiatorName", Kind.DECLARATIVE, None, use=Use.INITIALIZE_ONLY, stage=Stage.ANY,
       offered=False, sender="initiator", max_length=223, rfc="RFC 7143 §13.5"),
    _K("TargetAlias", Kind.DECLARATIVE, None, use=Use.ALL, stage=Stage.ANY, offered=False,
       sender="target", rfc="RFC 7143 §13.6"),
    _K("InitiatorAlias", Kind.DECLARATIVE, None, use=Use.ALL, stage=Stage.ANY, offered=False,
       sender="initiator", rfc="RFC 7143 §13.7"),
    _K("TargetAddress", Kind.DECLARATIVE, None, use=Use.ALL, stage=Stage.ANY, offered=False,
       sender="target", rfc="RFC 7143 §13.8"),
    _K("TargetPortalGroupTag", Kind.DECLARATIVE, None, low=0, high=65535,
       use=Use.INITIALIZE_ONLY, stage=Stage.ANY, offered=False, sender="target",
       rfc="RFC 7143 §13.9"),
    _K("InitialR2T", Kind.OR, "Yes", ("Yes", "No"), discovery=False, rfc="RFC 7143 §13.10"),
    _K("ImmediateData", Kind.AND, "Yes", ("Yes", "No"), discovery=False, rfc="RFC 7143 §13.11"),
    _K("MaxRecvDataSegmentLength", Kind.DECLARATIVE, "8192", low=512, high=_24,
       scope=Scope.CONNECTION, use=Use.ALL, rfc="RFC 7143 §13.12"),
    _K("MaxBurstLength", Kind.MIN, "262144", low=512, high=_24, discovery=False,
       rfc="RFC 7143 §13.13"),
    _K("FirstBurstLength", Kind.MIN, "65536", low=512, high=_24, discovery=False,
       rfc="RFC 7143 §13.14"),
    _K("DefaultTime2Wait", Kind.MAX, "2", low=0, high=3600, rfc="RFC 7143 §13.15"),
    _K("DefaultTime2Retain", Kind.MIN, "20", low=0, high=3600, rfc="RFC 7143 §13.16"),
    _K("MaxOutstandingR2T", Kind.MIN, "1", low=1, high=65535, discovery=False,
       rfc="RFC 7143 §13.17"),
    _K("DataPDUInOrder", Kind.OR, "Yes", ("Yes", "No"), discovery=False, rfc="RFC 7143 §13.18"),
    _K("DataSequenceInOrder", Kind.OR, "Yes", ("Yes", "No"), discovery=False,
       rfc="RFC 7143 §13.19"),
    _K("ErrorRecoveryLevel", Kind.MIN, "0", low=0, high=2, rfc="RFC 7143 §13.20"),
    _K("SessionType", Kind.DECLARATIVE, "Normal", ("Discovery", "Normal"),
       use=Use.LEADING_ONLY, stage=Stage.ANY, offered=False, sender="initiator",
       rfc="RFC 7143 §13.21"),
    _K("TaskReporting", Kind.LIST, "RFC3720", ("RFC3720", "ResponseFence", "FastAbort"),
       discovery=False, offered=False, rfc="RFC 7143 §13.23"),
    _K("iSCSIProtocolLevel", Kind.MIN, "1", low=0, high=31, offered=False,
       rfc="RFC 7143 §13.24, RFC 7144"),
    _K("X#NodeArchitecture", Kind.DECLARATIVE, None, use=Use.LEADING_ONLY, offered=False,
       rfc="RFC 7143 §13.26"),
    # obsolete markers (RFC 3720 §A.3.1): open-iscsi still offers IFMarker=No/OFMarker=No
    _K("IFMarker", Kind.AND, "No", ("Yes", "No"), scope=Scope.CONNECTION,
       use=Use.INITIALIZE_ONLY, offered=False, rfc="RFC 3720 §A.3.1.1"),
    _K("OFMarker", Kind.AND, "No", ("Yes", "No"), scope=Scope.CONNECTION,
       use=Use.INITIALIZE_ONLY, offered=False, rfc="RFC 3720 §A.3.1.1"),
    # --- iSER (RFC 7145 §6) --------------------------------------------------------
    _K("RDMAExtensions", Kind.AND, "No", ("Yes", "No"), offered=False, rfc="RFC 7145 §6.3"),
    _K("TargetRecvDataSegmentLength", Kind.DECLARATIVE, "8192", low=512, high=_24,
       scope=Scope.CONNECTION, use=Use.INITIALIZE_ONLY, offered=False, rfc="RFC 7145 §6.4"),
    _K("InitiatorRecvDataSegmentLength", Kind.DECLARATIVE, "8192", low=512, high=_24,
       scope=Scope.CONNECTION, use=Use.INITIALIZE_ONLY, offered=False, rfc="RFC 7145 §6.5"),
    _K("MaxOutstandingUnexpectedPDUs", Kind.MIN, "0", low=0, high=2**32 - 1,
       scope=Scope.CONNECTION, use=Use.INITIALIZE_ONLY, offered=False, rfc="RFC 7145 §6.6"),
)}


def lookup(name: str) -> KeyDef | None:
    """The definition of ``name``, or None for an unknown (or vendor X-) key."""
    return KEYS.get(name)
