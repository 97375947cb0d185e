"""Negotiating text keys (RFC 7143 §6.2), driven by the table in :mod:`.keys`.

Two roles meet in every exchange:

* as **originator** we offered a value and check the peer's answer
  (:func:`check_answer`): the result, or :class:`NegotiationError` when the
  answer is illegal (outside the offer, out of range, of the wrong kind);
* as **responder** we answer a value the peer offered (:func:`respond`).

:class:`Negotiator` keeps the state of one negotiation (a login, or a text
exchange): what we offered, what was settled, and it refuses a key answered
twice.  :class:`NegotiatedParameters` is the outcome the kernel needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from ..lexical import ascii_digits
from .errors import ISCSIProtocolError
from .keys import KEYS, Kind, KeyDef, Stage
from .text import TextPairs

__all__ = [
    "IRRELEVANT",
    "NOT_UNDERSTOOD",
    "REJECT",
    "NegotiatedParameters",
    "NegotiationError",
    "Negotiator",
    "check_answer",
    "fixed_by_offer",
    "parse_number",
    "respond",
]

NOT_UNDERSTOOD = "NotUnderstood"
IRRELEVANT = "Irrelevant"
REJECT = "Reject"
SPECIAL_ANSWERS = (NOT_UNDERSTOOD, IRRELEVANT, REJECT)
#: every standard key's default (the keys without one have no value in force until set)
_DEFAULTS = {name: kd.default for name, kd in KEYS.items() if kd.default is not None}
_MAX_DECIMAL_DIGITS = 64  # decimal-constant (§6.1): 1 to 64 ASCII digits
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,64}")  # hex-constant (§6.1)


def fixed_by_offer(kd: KeyDef, offered: str) -> bool:
    """Whether the offer alone decides a Boolean key's outcome (OR with Yes, AND with No),
    so that its answer is optional (RFC 7143 §6.2.4)."""
    return (kd.kind is Kind.OR and offered == "Yes") or (kd.kind is Kind.AND and offered == "No")


class NegotiationError(ISCSIProtocolError):
    """A peer's key or answer that the rules forbid (§6.2)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def parse_number(kd: KeyDef, text: str) -> int:
    """A numerical value: decimal or 0x hex (§6.1), within the key's range.

    Raises:
        NegotiationError: not a number, or out of range.
    """
    if ascii_digits(text) and len(text) <= _MAX_DECIMAL_DIGITS:
        n = int(text, 10)
    elif _HEX.fullmatch(text):
        n = int(text[2:], 16)
    else:  # Python's int() would also take '1_000', ' 7', '+7' and non-ASCII digits
        raise NegotiationError(kd.name, f"{text!r} is not a number")
    if (kd.low is not None and n < kd.low) or (kd.high is not None and n > kd.high):
        raise NegotiationError(kd.name, f"{n} is outside {kd.low}..{kd.high}")
    return n


def _parse_bool(kd: KeyDef, text: str) -> bool:
    if text == "Yes":
        return True
    if text == "No":
        return False
    raise NegotiationError(kd.name, f"{text!r} is not Yes or No")


def _yn(b: bool) -> str:
    return "Yes" if b else "No"


def _validate(kd: KeyDef, value: str) -> str:
    """Check a single value of ``kd`` (declaration or result); return it normalised."""
    if kd.boolean:
        return _yn(_parse_bool(kd, value))
    if kd.numeric:
        return str(parse_number(kd, value))
    if kd.values is not None and kd.kind is not Kind.LIST and value not in kd.values:
        raise NegotiationError(kd.name, f"{value!r} is not one of {', '.join(kd.values)}")
    return value


def check_answer(kd: KeyDef, offered: str, answer: str) -> str:
    """The result of a key we offered, given the peer's answer.

    Args:
        kd: the key.
        offered: what we sent (a comma list for LIST keys).
        answer: what the peer answered.
    Returns:
        the negotiated value.  After Reject, NotUnderstood or Irrelevant the key
        is not negotiated and keeps its default (§6.2), except an AND key
        (ImmediateData), which becomes No: a target that refuses ImmediateData=Yes
        is not sent immediate data, as open-iscsi reads it (``usr/login.c``: Yes
        only when answered Yes), and No is the value both sides can use.
    Raises:
        NegotiationError: the answer is outside the offer, out of range or of
            the wrong kind; or a special answer to a list offer that leaves out the
            default (``HeaderDigest=CRC32C`` answered Reject would be None: §6.2.1, a
            value is selected only from the offer).
    """
    if answer in SPECIAL_ANSWERS:
        if kd.kind is Kind.LIST and kd.default is not None and \
                kd.default not in offered.split(","):
            raise NegotiationError(kd.name, f"answered {answer}, which leaves {kd.default} "
                                            f"in force; our offer was {offered!r}")
        if kd.kind is Kind.AND:
            return "No"
        return kd.default if kd.default is not None else answer
    if kd.kind is Kind.LIST:
        if "," in answer or answer not in offered.split(","):
            raise NegotiationError(kd.name, f"answer {answer!r} is not one of our offer {offered!r}")
        return answer
    if kd.kind is Kind.MIN:
        ours, theirs = parse_number(kd, offered), parse_number(kd, answer)
        if theirs > ours:
            raise NegotiationError(kd.name, f"answer {theirs} is above our offer {ours} (min)")
        return str(theirs)
    if kd.kind is Kind.MAX:
        ours, theirs = parse_number(kd, offered), parse_number(kd, answer)
        if theirs < ours:
            raise NegotiationError(kd.name, f"answer {theirs} is below our offer {ours} (max)")
        return str(theirs)
    if kd.kind is Kind.AND:
        ours_b, theirs_b = _parse_bool(kd, offered), _parse_bool(kd, answer)
        if theirs_b and not ours_b:
            raise NegotiationError(kd.name, "answered Yes to our No (AND)")
        return _yn(theirs_b)
    if kd.kind is Kind.OR:
        ours_b, theirs_b = _parse_bool(kd, offered), _parse_bool(kd, answer)
        if ours_b and not theirs_b:
            raise NegotiationError(kd.name, "answered No to our Yes (OR)")
        return _yn(theirs_b)
    return _validate(kd, answer)  # declarative


def respond(kd: KeyDef, offer: str, local: str | None) -> tuple[str, str]:
    """Our answer to a value the peer offered, and the resulting value.

    Args:
        kd: the key (not DECLARATIVE).
        offer: the peer's offer.
        local: our own preference (a comma list for LIST keys) or None for
            the key's default.
    Returns:
        (answer to send, negotiated value); the answer is ``Reject`` and the
        value the default when the offer is illegal.
    """
    local = kd.default if local is None else local
    try:
        if kd.kind is Kind.LIST:
            accept = (local or "").split(",")
            for v in offer.split(","):
                if v in accept and (kd.values is None or v in kd.values):
                    return v, v
            return REJECT, kd.default or REJECT
        if kd.kind in (Kind.MIN, Kind.MAX):
            theirs, ours = parse_number(kd, offer), parse_number(kd, local or "0")
            v = str(min(theirs, ours) if kd.kind is Kind.MIN else max(theirs, ours))
            return v, v
        if kd.kind in (Kind.AND, Kind.OR):
            theirs_b, ours_b = _parse_bool(kd, offer), _parse_bool(kd, local or "No")
            v = _yn(theirs_b and ours_b if kd.kind is Kind.AND else theirs_b or ours_b)
            return v, v
    except NegotiationError:
        return REJECT, kd.default or REJECT
    raise ValueError(f"{kd.name} is declarative: there is nothing to answer")


class Negotiator:
    """The state of one negotiation from the initiator's side.

    Args:
        offers: key -> value we offer (validated against the table).
        discovery: a Discovery session (session keys become Irrelevant).
        preferences: key -> our acceptable value(s) when the peer offers a key
            we did not (defaults to ``offers``, then the table default).
    """

    def __init__(
        self,
        offers: Mapping[str, str],
        discovery: bool = False,
        preferences: Mapping[str, str] | None = None,
    ) -> None:
        self.discovery = discovery
        self._offers = dict(offers)
        self._prefs = dict(preferences or {})
        self._sent: dict[str, str] = {}  # offers already sent
        self._results: dict[str, str] = {}  # settled keys (ours and theirs)
        self.declared: dict[str, str] = {}  # the peer's declarations
        self._seen: set[str] = set()  # keys the peer has sent

    def offers_for(self, stage: Stage) -> TextPairs:
        """Offers not yet sent that belong to ``stage``; marks them sent."""
        out = []
        for key, value in self._offers.items():
            kd = KEYS.get(key)
            if key in self._sent or key in self._results:
                continue
            if kd is not None and kd.stage not in (stage, Stage.ANY):
                continue
            self._sent[key] = value
            out.append((key, value))
        return out

    def declaring(self, pairs: TextPairs) -> TextPairs:
        """Our declarations (the first request's InitiatorName, InitiatorAlias, TargetName,
        SessionType), marked sent: a target's NotUnderstood or Irrelevant for one of them
        is then taken (RFC 7143 §6.2: an unknown key is answered NotUnderstood), not a
        failed login.  Returns ``pairs``."""
        for key, value in pairs:
            self._sent.setdefault(key, value)
        return pairs

    @property
    def unanswered(self) -> list[str]:
        """Keys we offered whose answer has not arrived."""
        return [
            k for k, kd in ((k, KEYS.get(k)) for k in self._sent)
            if k not in self._results and (kd is None or kd.kind is not Kind.DECLARATIVE)
        ]

    def check_settled(self) -> None:
        """At the move to full feature phase: a list offer left unanswered leaves the key's
        default in force, which must be one of the values offered (a required CRC32C
        digest does not become None by silence).

        Raises:
            NegotiationError: naming the first such key.
        """
        for key in self.unanswered:
            kd = KEYS.get(key)
            if kd is not None and kd.kind is Kind.LIST and kd.default is not None and \
                    kd.default not in self._sent[key].split(","):
                raise NegotiationError(key, f"not answered, which leaves {kd.default} in "
                                            f"force; our offer was {self._sent[key]!r}")

    def receive(self, pairs: TextPairs) -> TextPairs:
        """Take the peer's keys; return the answers we owe.

        Raises:
            NegotiationError: an illegal answer or declaration, or a key sent twice.
        """
        answers: TextPairs = []
        for key, value in pairs:
            if key in self._seen:
                raise NegotiationError(key, "sent twice in one negotiation")
            self._seen.add(key)
            kd = KEYS.get(key)
            if kd is None:  # unknown, including X- and X# vendor keys
                if key in self._sent:
                    self._results[key] = value
                else:
                    answers.append((key, NOT_UNDERSTOOD))
                continue
            if kd.kind is Kind.DECLARATIVE:
                if value in SPECIAL_ANSWERS:
                    if key in self._sent:  # e.g. our InitiatorAlias not understood
                        continue
                    raise NegotiationError(key, f"{value} is not a declaration")
                if kd.sender == "initiator":  # InitiatorName, SessionType, ... echoed or
                    # forged back: open-iscsi's get_op_params_text_keys fails such a login
                    raise NegotiationError(key, f"is the initiator's to declare ({kd.rfc}); "
                                                "the target sent it")
                self.declared[key] = _validate(kd, value)
                continue
            if key in self._sent:
                self._results[key] = check_answer(kd, self._sent[key], value)
                continue
            if self.discovery and not kd.discovery:
                answers.append((key, IRRELEVANT))
                continue
            if value in SPECIAL_ANSWERS:
                raise NegotiationError(key, f"{value} answers an offer we never made")
            local = self._prefs.get(key, self._offers.get(key))
            answer, result = respond(kd, value, local)
            if answer == REJECT and kd.kind is Kind.LIST and local is not None and \
                    result not in local.split(","):  # as check_settled: a required CRC32C
                raise NegotiationError(key, f"the target offered {value!r}, which we refuse, "
                                            f"and that leaves {result} in force; ours: "
                                            f"{local!r}")
            self._results[key] = result
            answers.append((key, answer))
        return answers

    def value(self, key: str) -> str | None:
        """The settled value of ``key``, or what is in force (the default)."""
        if key in self._results:
            return self._results[key]
        if key in self.declared:
            return self.declared[key]
        kd = KEYS.get(key)
        if key in self._sent and kd is not None and fixed_by_offer(kd, self._sent[key]):
            return self._sent[key]  # an answer is optional then (§6.2.4)
        return kd.default if kd else None

    def results(self) -> dict[str, str]:
        """Every key's value in force (:meth:`value` of each key that has one), by name:
        settled, declared, fixed by our offer, or default."""
        merged = dict(_DEFAULTS)
        for key, sent in self._sent.items():  # value()'s rule for AND/OR offers
            kd = KEYS.get(key)
            if kd is not None and fixed_by_offer(kd, sent):
                merged[key] = sent
        merged.update(self.declared)
        merged.update(self._results)
        return {k: merged[k] for k in sorted(merged)}


@dataclass(frozen=True)
class NegotiatedParameters:
    """The operational parameters in force after login (what SET_PARAM needs).

    Lengths in bytes, times in seconds.  ``max_xmit_data_segment_length`` is
    the target's declared MaxRecvDataSegmentLength (bounded by our own limit
    when one is configured); ``max_recv_data_segment_length`` is ours.
    """

    header_digest: bool = False
    data_digest: bool = False
    max_recv_data_segment_length: int = 8192
    max_xmit_data_segment_length: int = 8192
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    max_connections: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    default_time2wait: int = 2
    default_time2retain: int = 20
    if_marker: bool = False
    of_marker: bool = False
    rdma_extensions: bool = False
    target_alias: str | None = None
    target_portal_group_tag: int | None = None

    @classmethod
    def from_negotiator(
        cls, neg: Negotiator, our_mrdsl: int, max_xmit_limit: int = 0
    ) -> NegotiatedParameters:
        """Build from a finished :class:`Negotiator`.

        Args:
            our_mrdsl: the MaxRecvDataSegmentLength we declared.
            max_xmit_limit: node.conn[0].iscsi.MaxXmitDataSegmentLength (0 = none).
        """
        def num(key: str) -> int:
            return int(neg.value(key) or KEYS[key].default or 0)

        def yes(key: str) -> bool:
            return neg.value(key) == "Yes"

        recv = our_mrdsl
        if yes("RDMAExtensions"):  # iSER (RFC 7145 §6.4-6.5): each side's own lengths,
            # the smaller of the two declared (iscsid's iscsi_process_login_response)
            xmit = min(max_xmit_limit or 8192,
                       int(neg.declared.get("TargetRecvDataSegmentLength", "8192")))
            recv = min(our_mrdsl, int(neg.declared.get("InitiatorRecvDataSegmentLength",
                                                       str(our_mrdsl))))
        else:
            xmit = int(neg.declared.get("MaxRecvDataSegmentLength", "8192"))
            if max_xmit_limit:
                xmit = min(xmit, max_xmit_limit)
        tpgt = neg.declared.get("TargetPortalGroupTag")
        return cls(
            header_digest=neg.value("HeaderDigest") == "CRC32C",
            data_digest=neg.value("DataDigest") == "CRC32C",
            max_recv_data_segment_length=recv,
            max_xmit_data_segment_length=xmit,
            max_burst_length=num("MaxBurstLength"),
            first_burst_length=num("FirstBurstLength"),
            initial_r2t=yes("InitialR2T"),
            immediate_data=yes("ImmediateData"),
            max_outstanding_r2t=num("MaxOutstandingR2T"),
            max_connections=num("MaxConnections"),
            data_pdu_in_order=yes("DataPDUInOrder"),
            data_sequence_in_order=yes("DataSequenceInOrder"),
            error_recovery_level=num("ErrorRecoveryLevel"),
            default_time2wait=num("DefaultTime2Wait"),
            default_time2retain=num("DefaultTime2Retain"),
            if_marker=yes("IFMarker"),
            of_marker=yes("OFMarker"),
            rdma_extensions=yes("RDMAExtensions"),
            target_alias=neg.declared.get("TargetAlias"),
            target_portal_group_tag=int(tpgt) if tpgt is not None else None,
        )
