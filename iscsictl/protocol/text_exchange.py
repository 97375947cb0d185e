"""Text exchanges in full feature phase: SendTargets (RFC 7143 §11.10, §11.11,
§13.3, appendix C) and the long-response continuation.

:class:`TextExchange` sends one Text Request and follows the target's answer
through continuation: while the response has F=0 it sends an empty Text
Request carrying the same ITT and the response's Target Transfer Tag, until a
response with F=1 (and TTT 0xffffffff) ends it.  Data continued with the C bit
is joined before parsing; the total is bounded by ``max_response_bytes``.

:func:`parse_send_targets` turns ``TargetName=``/``TargetAddress=`` pairs into
:class:`DiscoveredTarget` objects, de-duplicated, in the target's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .constants import RESERVED_TAG
from .errors import ISCSIProtocolError
from .names import usable_name
from .pdu import PDU, Reject, TextRequest, TextResponse
from .portal import Portal, PortalError, parse_target_address
from .text import TextAssembler, TextFormatError, TextPairs, decode_text, encode_text
from .trace import trace

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SEND_TARGETS_KEYS",
    "UnexpectedPDU",
    "DiscoveredTarget",
    "TextExchange",
    "TextExchangeError",
    "parse_send_targets",
]


#: Text Responses accepted in one exchange beyond which each must bring, on average,
#: MIN_RESPONSE_BYTES of answer: empty F=0 responses add no bytes, so max_response_bytes
#: alone would not end an exchange with a hostile target, while a target that sends one
#: target a response (§11.11.2 allows it) may send many thousands.
MAX_TEXT_RESPONSES = 4096
MIN_RESPONSE_BYTES = 16
#: bytes of answer text accepted in one exchange by default: a SendTargets answer of
#: thousands of targets with many portals each (open-iscsi's discovery.c grows its buffer
#: without a bound; 1 MiB here refused ~1,500 targets of 16 IPv6 portals)
MAX_RESPONSE_BYTES = 16 << 20
#: what a SendTargets answer holds for discovery (TextExchange's ``keep``: TargetAlias and
#: vendor keys carry nothing for it).  Kept, their bad bytes as U+FFFD, when not UTF-8
#: (decode_text's ``lenient``): dropped, a TargetName's addresses went to the target
#: before it, a TargetAddress's target was given the portal asked;
#: :func:`parse_send_targets` leaves them out
SEND_TARGETS_KEYS = frozenset({"TargetName", "TargetAddress"})
_NOT_UTF8 = "\ufffd"


class TextExchangeError(ISCSIProtocolError):
    """The target broke the text exchange rules (wrong ITT, a Reject, ...)."""

    reject_reason = None


class UnexpectedPDU(TextExchangeError):
    """A PDU that is not the Text Response (a Reject, an Asynchronous Message ...):
    open-iscsi's discovery connects again for it (DISCOVERY_NEED_RECONNECT)."""


@dataclass
class DiscoveredTarget:
    """One target from a SendTargets response.

    ``portals`` is empty when the target gave no TargetAddress: it is then
    reachable at the portal the question was asked on (§13.3).
    """

    name: str
    portals: list[Portal] = field(default_factory=list)


class TextExchange:
    """One Text Request/Response exchange from the initiator's side.

    Args:
        pairs: the keys to send (e.g. ``[("SendTargets", "All")]``).
        itt: the task tag of the exchange.
        cmdsn: the CmdSN of the first request; each request (non-immediate)
            consumes one, and :attr:`cmdsn` is the next one afterwards.
        exp_statsn: ExpStatSN of the first request.
        max_send_segment: the target's MaxRecvDataSegmentLength (bytes).
        max_response_bytes: the most response text accepted.
        skip: for an answer whose good pairs are worth keeping (SendTargets): a pair
            of the response that is not one is left out and ``skip(why)`` called
            (:func:`.text.decode_text`), not a TextFormatError.
        match_itt: check each response's ITT against ``itt``; False for an exchange
            relayed by the kernel (SEND_PDU), which gives the requests its own task tags
            and matches the responses itself.
        keep: the response's keys kept (:data:`SEND_TARGETS_KEYS` for SendTargets), the
            others dropped as they are read; None: all.
    """

    def __init__(
        self,
        pairs: TextPairs,
        *,
        itt: int,
        cmdsn: int,
        exp_statsn: int,
        max_send_segment: int = 8192,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        skip: Callable[[str], None] | None = None,
        match_itt: bool = True,
        keep: frozenset[str] | None = None,
    ) -> None:
        self.itt = itt
        self._match_itt = match_itt
        self._skip = skip
        self._keep = keep
        self.cmdsn = cmdsn
        self.exp_statsn = exp_statsn
        text = encode_text(pairs)
        self._segments = [text[i:i + max_send_segment]
                          for i in range(0, len(text), max_send_segment)] or [b""]
        self._assembler = TextAssembler(max_response_bytes)
        self._max_response_bytes = max_response_bytes
        self._received = 0  # response bytes so far, over every PDU of the exchange
        self._responses = 0
        self._complete: list[bytes] = []  # C=0 pieces: each a whole set of pairs
        self._outbox: list[TextRequest] = []
        self.result: TextPairs | None = None
        self.done = False

    def start(self) -> None:
        """Queue the first Text Request."""
        self._send_next(RESERVED_TAG)

    def pdus_to_send(self) -> list[TextRequest]:
        out, self._outbox = self._outbox, []
        return out

    def data_to_send(self, header_digest: bool = False, data_digest: bool = False) -> bytes:
        return b"".join(p.encode(header_digest, data_digest) for p in self.pdus_to_send())

    def _send_next(self, ttt: int) -> None:
        data = self._segments.pop(0) if self._segments else b""
        more = bool(self._segments)
        req = TextRequest(final=not more, continue_=more, itt=self.itt, ttt=ttt,
                          cmdsn=self.cmdsn, exp_statsn=self.exp_statsn, data=data)
        self._outbox.append(req)
        trace(req, "->")
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF

    def receive_pdu(self, pdu: PDU) -> TextPairs | None:
        """Take one PDU of the exchange; the whole response once it ends.

        Raises:
            TextExchangeError: a Reject, a wrong ITT, a final response that
                still says C=1; TextFormatError for bad text or a response
                over the size limit.
        """
        trace(pdu, "<-")
        if self.done:
            raise TextExchangeError("Text Response after the exchange ended")
        if isinstance(pdu, Reject):
            raise UnexpectedPDU(f"target rejected the Text Request (reason 0x{pdu.reason:02x})")
        if not isinstance(pdu, TextResponse):
            raise UnexpectedPDU(f"expected a Text Response, got {type(pdu).__name__}")
        if self._match_itt and pdu.itt != self.itt:
            raise TextExchangeError(f"Text Response ITT 0x{pdu.itt:08x}, ours is 0x{self.itt:08x}")
        self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
        if self._segments:  # our own request continues (C=1): the target acked a part
            if pdu.final:
                raise TextExchangeError("final Text Response before our continued request "
                                        "was complete")
            # its TTT, not the reserved one, which would start a new request (§11.10.4)
            self._send_next(pdu.ttt)
            return None
        self._received += len(pdu.data)
        self._responses += 1
        if self._responses > MAX_TEXT_RESPONSES and \
                self._received < self._responses * MIN_RESPONSE_BYTES:
            raise TextExchangeError(f"{self._responses} Text Responses in one exchange, "
                                    f"{self._received} bytes of answer")
        if self._received > self._max_response_bytes:
            raise TextFormatError(f"text response is longer than {self._max_response_bytes} bytes")
        # tgtd (1.0.85) cuts a long non-final response mid-pair without the C bit; a piece
        # that does not end on a NUL is read as continued, as open-iscsi does
        continued = pdu.continue_ or (not pdu.final and bool(pdu.data)
                                      and not pdu.data.endswith(b"\0"))
        text = self._assembler.add(pdu.data, continued)
        if text is not None:  # a complete set of pairs (C=0), final or not (§11.11.2)
            self._complete.append(text)
        # F=0 with no Target Transfer Tag leaves nothing to ask for (§11.11.4 forbids it):
        # the answer ends there, as open-iscsi's process_recvd_pdu reads it
        if pdu.final or (pdu.ttt == RESERVED_TAG and text is not None):
            if text is None:
                raise TextExchangeError("final Text Response with C=1")
            self.done = True
            # each value's length is the reader's to judge (parse_send_targets leaves out
            # what it cannot take); the whole answer is bounded (max_response_bytes)
            self.result = [p for part in self._complete
                           for p in decode_text(part, value_limits=False, skip=self._skip,
                                                lenient=SEND_TARGETS_KEYS, keep=self._keep)]
            return self.result
        if pdu.ttt == RESERVED_TAG:
            raise TextExchangeError("Text Response with F=0 and C=1 but no Target Transfer Tag")
        self._send_next(pdu.ttt)
        return None


def parse_send_targets(pairs: TextPairs, default_portal: Portal | None = None,
                       skip: Callable[[str], None] | None = None,
                       left_out: list[str] | None = None) -> list[DiscoveredTarget]:
    """Targets and their portals from SendTargets response pairs.

    A TargetAddress belongs to the TargetName before it; a target without
    one gets ``default_portal`` (the portal asked, §13.3) when given.
    Duplicates (same name, same portal) are merged.  With ``skip``, a target whose name
    is not an iSCSI name (and its addresses), or an address that is not a portal, is left
    out and ``skip(why)`` called: one bad entry does not cost the others.  A target whose
    every address was left out is left out too (not given the portal asked: open-iscsi's
    ``add_target_record`` uses that only when there is no address).  ``left_out``, when
    given, gets the name of each target left out or that lost a portal (the answer named
    it: a rediscovery keeps its records).

    Raises:
        TextExchangeError: without ``skip``: a TargetAddress before any TargetName, a bad
            TargetAddress or an invalid iSCSI name.
    """
    targets: dict[str, DiscoveredTarget] = {}
    current: DiscoveredTarget | None = None
    skipping = False  # the addresses of a target left out
    portals: dict[str, Portal] = {}  # a target's portals are usually every target's
    # each target's portals as a set too: a membership test in its list would make a
    # target with n addresses cost O(n²) (tens of thousands fit in a 16 MiB answer)
    seen: dict[str, set[Portal]] = {}
    addressed: set[str] = set()  # the targets that had a TargetAddress, usable or not
    for key, value in pairs:
        if key == "TargetName":
            try:  # as open-iscsi's add_target_record: not only RFC 3722's characters
                if _NOT_UTF8 in value:
                    raise ValueError(f"TargetName {value[:80]!r} is not valid UTF-8")
                usable_name(value)
            except ValueError as exc:
                if skip is None:
                    raise TextExchangeError(f"SendTargets: {exc}") from None
                skip(f"SendTargets: {exc}: target left out")
                if left_out is not None:
                    left_out.append(value)
                current, skipping = None, True
                continue
            # kept as the target spells it: targets compare the TargetName of a login
            # byte for byte (tgtd, Synology's 'iqn.2000-01.com.synology:DiskStation...')
            current, skipping = targets.setdefault(value, DiscoveredTarget(value)), False
        elif key == "TargetAddress":
            if skipping:
                continue
            if current is None:
                if skip is None:
                    raise TextExchangeError("SendTargets: TargetAddress before any TargetName")
                skip(f"SendTargets: TargetAddress={value[:80]} before any TargetName: left out")
                continue
            addressed.add(current.name)
            portal = portals.get(value)
            if portal is None:
                try:
                    if _NOT_UTF8 in value:
                        raise PortalError(f"TargetAddress {value[:80]!r} is not valid UTF-8")
                    portal = portals[value] = parse_target_address(value)
                except PortalError as exc:
                    if skip is None:
                        raise TextExchangeError(f"SendTargets: {exc}") from None
                    skip(f"SendTargets: {current.name}: {exc}: portal left out")
                    if left_out is not None:
                        left_out.append(current.name)
                    continue
            have = seen.setdefault(current.name, set())
            if portal not in have:
                have.add(portal)
                current.portals.append(portal)
        # other keys (TargetAlias, vendor keys) carry nothing for discovery
    for t in list(targets.values()):
        if t.portals:
            continue
        if t.name in addressed:  # only with skip: without, a bad address raised
            assert skip is not None
            skip(f"SendTargets: {t.name}: no usable TargetAddress: target left out")
            del targets[t.name]
        elif default_portal is not None:
            t.portals.append(default_portal)
    return list(targets.values())
