"""The initiator's login state machine (RFC 7143 §6.3, §11.12, §11.13).

Sans-I/O: the caller feeds Login Response PDUs (or bytes) and the time, and
sends the Login Request PDUs the machine queues.  The same machine serves a
raw TCP socket (:meth:`LoginMachine.receive_data` / :meth:`data_to_send`) and
the kernel's SEND_PDU/RECV_PDU relay (:meth:`receive_pdu` /
:meth:`pdus_to_send`).

Stages: SecurityNegotiation (CHAP, when credentials are configured) ->
LoginOperationalNegotiation -> FullFeaturePhase.  Without credentials the
first request starts at the operational stage with T=1, NSG=FFP, so a clean
login is one round trip.

The login ends in one outcome: :class:`LoginSuccess` (with the negotiated
parameters), :class:`LoginRedirect` (status class 1, TargetAddress parsed) or
:class:`LoginRejected` (class 2: not retryable; class 3: retryable).  A target
that breaks the rules raises :class:`LoginProtocolError` with the reason;
CHAP failures raise :class:`~.chap.AuthenticationError`; an expired deadline
raises :class:`LoginTimeout` from :meth:`LoginMachine.check_timeout`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSet
from dataclasses import dataclass
from enum import Enum

from .chap import AuthenticationError, ChapInitiator
from .config import LoginConfig
from .constants import LOGIN_MAX_DATA_SEGMENT_LENGTH, LoginStage, LoginStatus, Opcode
from .errors import ISCSIProtocolError
from .framing import PDUReader
from .keys import KEYS, Stage
from .negotiation import (IRRELEVANT, NOT_UNDERSTOOD, NegotiatedParameters, NegotiationError,
                          Negotiator, fixed_by_offer)
from .pdu import PDU, LoginRequest, LoginResponse, Reject, decode_pdu
from .portal import Portal, PortalError, parse_target_address
from .text import TextAssembler, decode_text, encode_text
from .trace import trace

__all__ = [
    "LoginMachine",
    "LoginOutcome",
    "LoginProtocolError",
    "LoginRedirect",
    "LoginRedirectFailed",
    "LoginRejected",
    "LoginState",
    "LoginSuccess",
    "LoginTimeout",
    "UnknownStatusClass",
]

SEC = LoginStage.SECURITY_NEGOTIATION
OP = LoginStage.LOGIN_OPERATIONAL_NEGOTIATION
FFP = LoginStage.FULL_FEATURE_PHASE
_STAGE_ORDER = {SEC: 0, OP: 1, FFP: 2}
#: Login Responses accepted in one login.  Every response restarts the
#: deadline, so without a bound a target answering T=0 (or empty C=1 pieces)
#: forever would keep the login alive forever.  A login takes 1-5 round trips;
#: 65536 bytes of text in 64-byte pieces stays below this.
MAX_LOGIN_RESPONSES = 1024
#: keys whose value only informs (RFC 7143 §13.6 TargetAlias): one that is not UTF-8 or is
#: too long is taken as it can be read, not a broken login (open-iscsi copies it as it is)
_INFORMATIONAL = frozenset(("TargetAlias",))


class LoginProtocolError(ISCSIProtocolError):
    """The target broke the login rules; the connection must be dropped."""

    reject_reason = None
    fatal = True


class UnknownStatusClass(LoginProtocolError):
    """A Login Response of a status class RFC 7143 §11.13.5 does not define (not 0-3): a
    node's login gives up, as iscsid's __check_iscsi_status_class (CONN_LOGIN_FAILED); a
    discovery connects again, as usr/discovery.c does (its default case: reconnect)."""


class LoginRedirectFailed(LoginProtocolError):
    """A redirect (status class 1) whose TargetAddress is missing or cannot be read: the
    login is tried again, not given up (iscsid's LOGIN_REDIRECTION_FAILED, which its
    __login_response_status takes as CONN_LOGIN_RETRY)."""


class LoginTimeout(Exception):
    """No Login Response arrived before the deadline (login_timeout or
    auth_timeout seconds)."""


class LoginState(Enum):
    IDLE = "idle"
    SECURITY = "security"
    OPERATIONAL = "operational"
    DONE = "done"
    FAILED = "failed"


class LoginOutcome:
    """Base of the three ways a login ends."""


@dataclass(frozen=True)
class LoginSuccess(LoginOutcome):
    """Full feature phase reached.

    Attributes:
        params: the negotiated operational parameters.
        isid, tsih, cid: the session's identity (TSIH assigned by the target).
        cmdsn: the CmdSN of the next non-immediate command (= the login's).
        statsn: the last Login Response's StatSN; exp_statsn = statsn + 1.
        exp_cmdsn, max_cmdsn: the target's command window.
        negotiated: every key's value in force (text), for display: MaxRecvDataSegmentLength
            ours, MaxXmitDataSegmentLength the target's.
    """

    params: NegotiatedParameters
    isid: bytes
    tsih: int
    cid: int
    cmdsn: int
    statsn: int
    exp_statsn: int
    exp_cmdsn: int
    max_cmdsn: int
    negotiated: dict[str, str]


@dataclass(frozen=True)
class LoginRedirect(LoginOutcome):
    """Status class 1: log in again at ``portal`` (§11.13.5)."""

    portal: Portal
    permanent: bool
    status: LoginStatus | int


@dataclass(frozen=True)
class LoginRejected(LoginOutcome):
    """Status class 2 (initiator error, not retryable) or 3 (target error,
    retryable) (§11.13.5)."""

    status: LoginStatus | int
    retryable: bool

    @property
    def message(self) -> str:
        cls = "initiator error" if not self.retryable else "target error"
        desc = self.status.description if isinstance(self.status, LoginStatus) else "unknown"
        code = int(self.status)
        return f"login rejected: {cls} - {desc} ({code >> 8:02x}/{code & 0xff:02x})"


def _response_pairs(text: bytes) -> list[tuple[str, str]]:
    """A Login Response's (whole) text as pairs, read as open-iscsi's
    iscsi_process_login_response reads it, for a redirect too: a last pair without its NUL
    ends there, an informational value (TargetAlias) not in UTF-8 is taken as it can be
    read.  Raises TextFormatError (an ISCSIProtocolError) for the rest."""
    if text[-1:] not in (b"", b"\0"):
        text += b"\0"
    return decode_text(text, lenient=_INFORMATIONAL)


class LoginMachine:
    """Drives one connection's login from the initiator side.

    Args:
        config: what to offer (see :class:`LoginConfig`).
        isid: the 6-byte ISID (kept across relogins: session reinstatement).
        tsih: 0 for a new session, or the session's TSIH to add a connection.
        cid: the connection ID.
        cmdsn: the CmdSN all Login Requests carry (the kernel's initial_cmdsn
            or, on relogin, the session's current CmdSN).
        exp_statsn: ExpStatSN of the first request (0 for a new connection).
        itt: the Initiator Task Tag of the login task.
        kernel_relay: the requests go through the kernel's SEND_PDU, which
            replaces ITT and CmdSN with its own (libiscsi's login task); the
            responses' ITT is then the kernel's and is not checked.
        rng: ``rng(n) -> n random bytes`` (CHAP identifier and challenge).
        issued_challenges: challenges issued by earlier logins (reflection check).
        warn: called with warnings (short CHAP secrets).
    """

    def __init__(
        self,
        config: LoginConfig,
        *,
        isid: bytes,
        tsih: int = 0,
        cid: int = 0,
        cmdsn: int = 1,
        exp_statsn: int = 0,
        itt: int = 0,
        rng: Callable[[int], bytes] | None = None,
        issued_challenges: MutableSet[bytes] | None = None,
        warn: Callable[[str], None] | None = None,
        kernel_relay: bool = False,
    ) -> None:
        if len(isid) != 6:
            raise ValueError("an ISID has 6 bytes")
        self.config = config
        self.isid = bytes(isid)
        self.tsih = tsih
        self.cid = cid
        self.cmdsn = cmdsn
        self.exp_statsn = exp_statsn
        self.itt = itt
        self.kernel_relay = kernel_relay
        self.state = LoginState.IDLE
        self.outcome: LoginOutcome | None = None
        self.deadline: float | None = None
        self._end: float | None = None  # config.total_timeout after start()
        self._answer_by = 0.0  # the last request's answer's deadline, before _end's
        self.exp_cmdsn = cmdsn
        self.max_cmdsn = cmdsn
        self._statsn: int | None = None
        self._negotiator = Negotiator(
            config.operational_offers(), discovery=config.discovery
        )
        self._chap: ChapInitiator | None = None
        if config.chap is not None:
            self._chap = ChapInitiator(
                config.chap, config.chap_algorithms, rng=rng,
                issued_challenges=issued_challenges,
                short_secret_policy=config.short_secret_policy, warn=warn,
            )
        self._reader = PDUReader(max_data_segment_length=LOGIN_MAX_DATA_SEGMENT_LENGTH)
        self._assembler = TextAssembler()
        self._outbox: list[LoginRequest] = []
        self._pending_segments: list[bytes] = []  # our text still to send (C bit)
        self._last: LoginRequest | None = None
        self._sec_step = "auth-method"  # auth-method -> chap-a -> chap-r -> done
        self._sec_keys: dict[str, str] = {}
        self._auth_method = "None"  # what the target chose of our AuthMethod offer
        self._owed: list[tuple[str, str]] = []  # answers to keys of the security stage
        self._login_keys_sent = False
        self._auth_done = False
        self._responses = 0

    # ------------------------------------------------------------------ output
    def start(self, now: float, since: float | None = None) -> None:
        """Queue the first Login Request; the login deadline starts now, and the whole
        login's (``config.total_timeout``) at ``since`` (default now), when the login
        timer started in ``now``'s clock: before the connect, as iscsid arms one timer
        at iscsi_conn_connect for the connect and the login together."""
        if self.state is not LoginState.IDLE:
            raise RuntimeError("login already started")
        if self.config.total_timeout is not None:
            self._end = (now if since is None else since) + self.config.total_timeout
        auth = self.config.auth_method_offer()
        if auth is not None:
            self.state = LoginState.SECURITY
            pairs = self._negotiator.declaring(self.config.login_keys()) + [("AuthMethod", auth)]
            self._login_keys_sent = True
            self._send(pairs, transit=False, nsg=OP, now=now)
        else:
            self.state = LoginState.OPERATIONAL
            self._auth_done = True
            self._send_operational(now, first=True)

    def pdus_to_send(self) -> list[LoginRequest]:
        """The Login Requests queued since the last call (kernel relay path)."""
        out, self._outbox = self._outbox, []
        return out

    def data_to_send(self) -> bytes:
        """The queued Login Requests as bytes (socket path; no digests in login)."""
        return b"".join(p.encode() for p in self.pdus_to_send())

    def needed(self) -> int:
        """Bytes that complete the next response: read exactly this many, so
        no byte after the final Login Response is taken from the socket."""
        return self._reader.needed()

    # ------------------------------------------------------------------- input
    def receive_data(self, data: bytes, now: float) -> LoginOutcome | None:
        """Feed bytes from the socket; the outcome once the login ends.

        Raises:
            LoginProtocolError, AuthenticationError, NegotiationError and the
            PDU errors of :mod:`.errors`, all :class:`ISCSIProtocolError`.
        """
        self._reader.feed(data)
        outcome = None
        while outcome is None and (raw := self._reader.next_pdu()) is not None:
            outcome = self.receive_pdu(decode_pdu(raw), now)
        return outcome

    def receive_pdu(self, pdu: PDU, now: float) -> LoginOutcome | None:
        """Take one PDU from the target; the outcome once the login ends."""
        if self.state in (LoginState.DONE, LoginState.FAILED):
            raise LoginProtocolError(f"{type(pdu).__name__} after the login ended")
        if self.state is LoginState.IDLE:
            raise RuntimeError("receive before start()")
        try:
            return self._receive(pdu, now)
        except ISCSIProtocolError:
            self.state = LoginState.FAILED
            raise

    def check_timeout(self, now: float) -> None:
        """Raise :class:`LoginTimeout` when the current deadline has passed."""
        if self.deadline is not None and now >= self.deadline and self.outcome is None:
            stage = "authentication" if self.state is LoginState.SECURITY else "login"
            self.state = LoginState.FAILED
            if self._end is not None and now >= self._end and now < self._answer_by:
                raise LoginTimeout(f"{stage} timed out: not done within "
                                   f"{self.config.total_timeout:g} s")
            raise LoginTimeout(f"{stage} timed out: no Login Response")

    # --------------------------------------------------------------- internals
    def _receive(self, pdu: PDU, now: float) -> LoginOutcome | None:
        trace(pdu, "<-")
        if isinstance(pdu, Reject):
            raise LoginProtocolError(f"target rejected our Login Request (reason 0x{pdu.reason:02x})")
        if not isinstance(pdu, LoginResponse):
            raise LoginProtocolError(
                f"expected a Login Response, got {Opcode(pdu.OPCODE).name} during login"
            )
        last = self._last
        assert last is not None
        if pdu.itt != self.itt and not self.kernel_relay:
            raise LoginProtocolError(f"Login Response ITT 0x{pdu.itt:08x}, ours is 0x{self.itt:08x}")
        # a failure response may carry a zeroed ISID (tgtd does): its status still counts
        if pdu.isid != self.isid and pdu.status_class == 0:
            raise LoginProtocolError(
                f"Login Response echoes ISID {pdu.isid.hex()}, ours is {self.isid.hex()}"
            )
        self._responses += 1
        if self._responses > MAX_LOGIN_RESPONSES:
            raise LoginProtocolError(
                f"target sent more than {MAX_LOGIN_RESPONSES} Login Responses without ending the login")
        self._statsn = pdu.statsn
        self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
        self.exp_cmdsn, self.max_cmdsn = pdu.exp_cmdsn, pdu.max_cmdsn
        if pdu.status_class != 0:
            return self._finish_status(pdu)
        if pdu.version_active != 0:
            raise LoginProtocolError(f"target chose version {pdu.version_active}; we offered 0")
        if pdu.csg != last.csg:
            raise LoginProtocolError(
                f"Login Response for stage {pdu.csg}; our request was in stage {last.csg}"
            )
        if pdu.transit:
            if not last.transit:
                raise LoginProtocolError("target set T=1 although we did not")
            if pdu.continue_:
                raise LoginProtocolError("target set T and C together")
            if _STAGE_ORDER[pdu.nsg] <= _STAGE_ORDER[pdu.csg] or (
                _STAGE_ORDER[pdu.nsg] > _STAGE_ORDER[last.nsg]
            ):
                raise LoginProtocolError(
                    f"target moves to stage {pdu.nsg}, which we did not offer (we asked {last.nsg})"
                )
        text = self._assembler.add(pdu.data, pdu.continue_)
        if text is None:  # the target continues its text: ask for the rest
            # Keep our T bit and NSG: the target may set T=1 only when our
            # request did (§11.13.1), and its last piece is the one that transits.
            self._send([], transit=last.transit, nsg=last.nsg, now=now, csg=last.csg,
                       keep_text=True)
            return None
        if self._pending_segments:  # our own text continues: the target sent an empty ack
            if text:
                raise LoginProtocolError("target sent text while our C-bit sequence was incomplete")
            self._send_segment(now)
            return None
        pairs = _response_pairs(text)
        if self.state is LoginState.SECURITY:
            return self._security(pdu, pairs, now)
        return self._operational(pdu, pairs, now)

    def _finish_status(self, pdu: LoginResponse) -> LoginOutcome:
        status = pdu.status
        self.state = LoginState.FAILED
        if pdu.status_class == 1:
            try:
                pairs = _response_pairs(pdu.data)
            except ISCSIProtocolError as exc:
                raise LoginRedirectFailed(f"redirect with unreadable text: {exc}") from None
            addrs = [v for k, v in pairs if k == "TargetAddress"]
            if not addrs:
                raise LoginRedirectFailed("redirect (status class 1) without TargetAddress")
            try:
                portal = parse_target_address(addrs[0])
            except PortalError as exc:
                raise LoginRedirectFailed(f"redirect to a bad TargetAddress: {exc}") from None
            self.outcome = LoginRedirect(portal, pdu.status_detail == 2, status)
        elif pdu.status_class in (2, 3):
            self.outcome = LoginRejected(status, retryable=pdu.status_class == 3)
        else:
            raise UnknownStatusClass(f"unknown login status class {pdu.status_class} "
                                     f"(status {status:04x})")
        return self.outcome

    def _security(self, pdu: LoginResponse, pairs: list[tuple[str, str]], now: float) -> LoginOutcome | None:
        keys = dict(pairs)
        if len(keys) != len(pairs):
            raise NegotiationError(next(k for k, _ in pairs if sum(1 for kk, _ in pairs if kk == k) > 1),
                                   "sent twice in one negotiation")
        for k, v in keys.items():
            if k in self._sec_keys and k.startswith("CHAP_") is False:
                raise NegotiationError(k, "sent twice in one negotiation")
        self._sec_keys.update({k: v for k, v in keys.items() if not k.startswith("CHAP_")})
        # the rest (declarations such as TargetAlias or MaxRecvDataSegmentLength, a key we
        # do not know, an offer) is negotiated as in the operational stage; what we owe
        # goes out with our next Login Request (before: dropped unanswered)
        others = [(k, v) for k, v in pairs if k != "AuthMethod" and not k.startswith("CHAP_")]
        if others:
            self._owed += self._negotiator.receive(others)
        assert self._chap is not None
        step = self._sec_step
        if step == "auth-method":
            method = keys.get("AuthMethod")
            offered = (self.config.auth_method_offer() or "").split(",")
            if method is None:
                raise AuthenticationError("target did not answer AuthMethod")
            if method in ("Reject", "NotUnderstood", "Irrelevant") and "None" in offered:
                method = "None"  # the key's default, offered (RFC 7143 §6.2; open-iscsi's
                # acl_chk_key: AUTH_OPTION_REJECT, passed when the target is not checked)
            if method not in offered:
                if method == "None":
                    raise AuthenticationError(
                        "target offered no authentication (AuthMethod=None) but CHAP is required")
                if method in ("Reject", "NotUnderstood", "Irrelevant") or "," in method:
                    raise AuthenticationError(f"target refused AuthMethod={','.join(offered)} ({method})")
                raise NegotiationError("AuthMethod", f"answer {method!r} is not one of our offer")
            self._auth_method = method
            if method == "None":  # allowed only when we offered it (auth_optional)
                self._auth_done = True
                if pdu.transit:
                    return self._enter_operational(pdu, now)
                self._sec_step = "done"
                self._send([], transit=True, nsg=OP, now=now)
                return None
            if pdu.transit:
                raise AuthenticationError("target skipped CHAP although we require it")
            self._sec_step = "chap-a"
            self._send(self._chap.offer(), transit=False, nsg=OP, now=now)
            return None
        if step == "chap-a":
            if pdu.transit:
                raise AuthenticationError("target skipped CHAP although we require it")
            answer = self._chap.respond(keys)
            self._sec_step = "chap-r"
            self._send(answer, transit=True, nsg=OP, now=now)
            return None
        if step == "chap-r":
            if self._chap.expects_target_proof:
                self._chap.verify_target(keys)
            elif "CHAP_R" in keys:
                raise AuthenticationError("target sent CHAP_R although we did not challenge it")
            self._auth_done = True
            self._sec_step = "done"
            if pdu.transit:
                return self._enter_operational(pdu, now)
            # the target stays in security (T=0): ask again to transit
            self._send([], transit=True, nsg=OP, now=now)
            return None
        # step == "done": we asked to transit and wait for T=1
        if pdu.transit:
            return self._enter_operational(pdu, now)
        self._send([], transit=True, nsg=OP, now=now)
        return None

    def _enter_operational(self, pdu: LoginResponse, now: float) -> LoginOutcome | None:
        if not self._auth_done:
            raise AuthenticationError("target left the security stage before CHAP completed")
        if pdu.nsg == FFP:  # allowed only if we asked for it; we never do from security
            raise LoginProtocolError("target went to full feature phase from security")
        self.state = LoginState.OPERATIONAL
        self._send_operational(now, first=False)
        return None

    def _send_operational(self, now: float, first: bool) -> None:
        pairs = [] if self._login_keys_sent else \
            self._negotiator.declaring(self.config.login_keys())
        self._login_keys_sent = True
        pairs += self._negotiator.offers_for(Stage.OPERATIONAL)
        self._send(pairs, transit=True, nsg=FFP, now=now, csg=OP)

    def _operational(self, pdu: LoginResponse, pairs: list[tuple[str, str]], now: float) -> LoginOutcome | None:
        answers = self._negotiator.receive([(k, v) for k, v in pairs if not k.startswith("CHAP_")])
        if any(k.startswith("CHAP_") or k == "AuthMethod" for k, _ in pairs):
            raise LoginProtocolError("security keys in the operational stage")
        if pdu.transit and pdu.nsg == FFP:
            offered = dict(pairs)
            owed = [k for k, answer in answers if answer not in (NOT_UNDERSTOOD, IRRELEVANT)
                    and not fixed_by_offer(KEYS[k], offered[k])]  # (IFMarker=No, as RFC
            # 3720 targets offer it: open-iscsi takes it)
            if owed:  # RFC 7143 §6.3: "Targets MUST NOT submit parameters that require an
                # additional initiator Login Request in a Login Response with the T bit
                # set to 1": what it would agree to is not agreed (the key open-iscsi does
                # not know fails its login too)
                raise NegotiationError(owed[0], "offered in the target's final Login Response, "
                                                "which leaves no room for the answer "
                                                "(RFC 7143 §6.3)")
            return self._succeed(pdu)
        # the target needs another round: answer what it offered, ask to transit
        self._send(answers, transit=True, nsg=FFP, now=now, csg=OP)
        return None

    def _succeed(self, pdu: LoginResponse) -> LoginSuccess:
        if pdu.tsih == 0:
            raise LoginProtocolError("final Login Response carries TSIH 0")
        if self.tsih and pdu.tsih != self.tsih:
            raise LoginProtocolError(f"target answered TSIH {pdu.tsih}, the session's is {self.tsih}")
        self._negotiator.check_settled()
        params = NegotiatedParameters.from_negotiator(
            self._negotiator,
            our_mrdsl=self.config.max_recv_data_segment_length,
            max_xmit_limit=self.config.max_xmit_data_segment_length,
        )
        if not self.config.discovery and params.first_burst_length > params.max_burst_length and (
            params.immediate_data or not params.initial_r2t
        ):
            raise NegotiationError(
                "FirstBurstLength",
                f"{params.first_burst_length} exceeds MaxBurstLength {params.max_burst_length}",
            )
        if self.config.iser and not params.rdma_extensions:
            raise NegotiationError("RDMAExtensions", "an iSER login needs RDMAExtensions=Yes")
        self.tsih = pdu.tsih
        self.state = LoginState.DONE
        self.outcome = LoginSuccess(
            params=params, isid=self.isid, tsih=pdu.tsih, cid=self.cid, cmdsn=self.cmdsn,
            statsn=pdu.statsn, exp_statsn=self.exp_statsn, exp_cmdsn=pdu.exp_cmdsn,
            max_cmdsn=pdu.max_cmdsn, negotiated=self._shown(params),
        )
        return self.outcome

    def _shown(self, params: NegotiatedParameters) -> dict[str, str]:
        """:meth:`Negotiator.results` as iscsiadm shows a session's: the AuthMethod chosen,
        MaxRecvDataSegmentLength ours and MaxXmitDataSegmentLength the target's, iSER's
        keys (RFC 7145) on an iSER login only."""
        shown = {k: v for k, v in self._negotiator.results().items()
                 if self.config.iser or k not in KEYS or not KEYS[k].rfc.startswith("RFC 7145")}
        shown.update(AuthMethod=self._auth_method,
                     MaxRecvDataSegmentLength=str(params.max_recv_data_segment_length),
                     MaxXmitDataSegmentLength=str(params.max_xmit_data_segment_length))
        return dict(sorted(shown.items()))

    def _send(
        self,
        pairs: list[tuple[str, str]],
        *,
        transit: bool,
        nsg: int,
        now: float,
        csg: int | None = None,
        keep_text: bool = False,
    ) -> None:
        if csg is None:
            csg = SEC if self.state is LoginState.SECURITY else OP
        if self._owed and not keep_text:
            pairs, self._owed = self._owed + list(pairs), []
        text = b"" if keep_text else encode_text(pairs)
        segments = [text[i:i + LOGIN_MAX_DATA_SEGMENT_LENGTH]
                    for i in range(0, len(text), LOGIN_MAX_DATA_SEGMENT_LENGTH)] or [b""]
        self._pending_segments = segments
        self._pending_flags = (transit, csg, nsg)
        self._send_segment(now)

    def _send_segment(self, now: float) -> None:
        transit, csg, nsg = self._pending_flags
        data = self._pending_segments.pop(0)
        more = bool(self._pending_segments)
        req = LoginRequest(
            transit=transit and not more, continue_=more, csg=csg,
            nsg=nsg if (transit and not more) else 0,
            isid=self.isid, tsih=self.tsih, itt=self.itt, cid=self.cid,
            cmdsn=self.cmdsn, exp_statsn=self.exp_statsn, data=data,
        )
        self._last = req
        self._outbox.append(req)
        trace(req, "->")
        in_auth = self.state is LoginState.SECURITY and self._responses > 0
        self._answer_by = now + (self.config.auth_timeout if in_auth
                                 else self.config.login_timeout)
        self.deadline = self._answer_by if self._end is None else min(self._answer_by,
                                                                      self._end)
