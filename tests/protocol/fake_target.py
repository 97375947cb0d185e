"""A fake iSCSI target: the target side of login, text, logout and a few SCSI
commands, as its own sans-I/O machine (bytes in, bytes out).

It is written from RFC 7143 independently of the initiator's engine: its own
key rules (:data:`RULES`), its own CHAP hashing and binary decoding, its own
answer computation.  It also checks what the initiator sends and records every
violation in :attr:`FakeTarget.violations` (tests assert that list is empty).

Misbehaviour is switched on by :class:`TargetConfig` fields (``misbehave``
names, ``answer_overrides``, ``status`` ...), so every hostile case is one
config away.

:class:`Pair` connects an initiator-side machine and a target bytes-to-bytes
(h11's ConnectionPair pattern), delivering whole chunks, exactly ``needed()``
bytes, or one byte at a time.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass, field
from typing import Callable

from iscsictl.protocol.constants import RESERVED_TAG
from iscsictl.protocol.framing import PDUReader
from iscsictl.protocol.pdu import (
    AsyncMessage,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NOPIn,
    NOPOut,
    Reject,
    SCSICommand,
    SCSIDataIn,
    SCSIResponse,
    TextRequest,
    TextResponse,
    decode_pdu,
)

SEC, OP, FFP = 0, 1, 3

# Hand-written from RFC 7143 §13 (kind, low, high); not taken from iscsictl.
RULES: dict[str, tuple] = {
    "HeaderDigest": ("list",),
    "DataDigest": ("list",),
    "MaxConnections": ("min", 1, 65535),
    "InitialR2T": ("or",),
    "ImmediateData": ("and",),
    "MaxBurstLength": ("min", 512, 2**24 - 1),
    "FirstBurstLength": ("min", 512, 2**24 - 1),
    "DefaultTime2Wait": ("max", 0, 3600),
    "DefaultTime2Retain": ("min", 0, 3600),
    "MaxOutstandingR2T": ("min", 1, 65535),
    "DataPDUInOrder": ("or",),
    "DataSequenceInOrder": ("or",),
    "ErrorRecoveryLevel": ("min", 0, 2),
    "IFMarker": ("and",),
    "OFMarker": ("and",),
    "TaskReporting": ("list",),
    "iSCSIProtocolLevel": ("min", 0, 31),
    "RDMAExtensions": ("and",),  # RFC 7145 §6.3; a target without it answers NotUnderstood
}
#: session-wide keys that are Irrelevant in a Discovery session (§13, open-iscsi login.c)
SESSION_ONLY = {"MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder",
                "DataSequenceInOrder", "TaskReporting"}
DECLARATIONS = {"InitiatorName", "InitiatorAlias", "TargetName", "SessionType",
                "MaxRecvDataSegmentLength",
                "InitiatorRecvDataSegmentLength", "TargetRecvDataSegmentLength"}  # RFC 7145

HASHES = {5: "md5", 6: "sha1", 7: "sha256", 8: "sha3_256"}


def target_chap_hash(alg: int, ident: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1 response, computed here without iscsictl's chap module."""
    return hashlib.new(HASHES[alg], bytes([ident]) + secret + challenge).digest()


def dec_bin(text: str) -> bytes:
    if text[:2] in ("0x", "0X"):
        return bytes.fromhex(text[2:])
    if text[:2] in ("0b", "0B"):
        return base64.b64decode(text[2:])
    raise ValueError(text)


def enc_bin(data: bytes, b64: bool) -> str:
    return "0b" + base64.b64encode(data).decode() if b64 else "0x" + data.hex()


def enc_text(pairs) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def dec_text(data: bytes) -> list[tuple[str, str]]:
    out = []
    for item in data.split(b"\0"):
        if item:
            k, _, v = item.decode().partition("=")
            out.append((k, v))
    return out


def seeded_rng(seed: int = 1) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return lambda n: bytes(r.getrandbits(8) for _ in range(n))


def standard_inquiry(vendor=b"FAKE", product=b"VIRTUAL-DISK", rev=b"0001") -> bytes:
    return (bytes([0x00, 0x00, 0x06, 0x02, 31, 0, 0, 0x02]) + vendor.ljust(8)
            + product.ljust(16) + rev.ljust(4))


@dataclass
class TargetConfig:
    """What the fake target is and how it behaves.

    ``chap_users``: initiator CHAP name -> secret (empty: no CHAP required).
    ``mutual``: (target CHAP name, secret) used to answer a mutual challenge.
    ``chap_algorithms``: CHAP_A values the target supports.
    ``values``: the target's own operational preferences (text).
    ``status``: answer the first request with this status (redirect / reject).
    ``login_segment``: most bytes of text per Login Response (C-bit split).
    ``text_segment``: most bytes of text per Text Response (TTT continuation).
    ``misbehave``: names of switches (see the class docstring of FakeTarget).
    """

    name: str = "iqn.2003-01.org.example:disk1"
    alias: str = "fake-disk"
    tpgt: int = 1
    tsih: int = 0x0123
    statsn: int = 0x1000
    window: int = 32
    chap_users: dict[str, bytes] = field(default_factory=dict)
    mutual: tuple[str, bytes] | None = None
    chap_algorithms: tuple[int, ...] = (5, 6, 7, 8)
    base64: bool = False
    rng: Callable[[int], bytes] = field(default_factory=lambda: seeded_rng(7))
    reflect: bytes | None = None  # CHAP_C to send instead of a fresh one
    values: dict[str, str] = field(default_factory=lambda: {
        "HeaderDigest": "CRC32C,None", "DataDigest": "CRC32C,None",
        "MaxConnections": "1", "InitialR2T": "Yes", "ImmediateData": "Yes",
        "MaxBurstLength": "262144", "FirstBurstLength": "65536",
        "DefaultTime2Wait": "2", "DefaultTime2Retain": "20", "MaxOutstandingR2T": "1",
        "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes", "ErrorRecoveryLevel": "0",
        "IFMarker": "No", "OFMarker": "No", "TaskReporting": "RFC3720",
        "iSCSIProtocolLevel": "1",
    })
    mrdsl: int = 8192  # the target's MaxRecvDataSegmentLength declaration
    offers: list[tuple[str, str]] = field(default_factory=list)  # keys the target offers
    status: int = 0
    redirect_to: str | None = None
    login_segment: int = 8192
    text_segment: int = 8192
    text_split_pairs: bool = False  # F=0/C=0 pieces cut at pair boundaries
    text_no_c: bool = False  # F=0 pieces cut anywhere but C=0 (tgtd 1.0.85)
    targets: list[tuple[str, list[str]]] = field(default_factory=list)
    send_targets_raw: bytes | None = None  # the SendTargets answer's text, as given
    answer_overrides: dict[str, str] = field(default_factory=dict)
    extra_answers: list[tuple[str, str]] = field(default_factory=list)
    security_extra: list[tuple[str, str]] = field(default_factory=list)  # in AuthMethod's answer
    misbehave: set[str] = field(default_factory=set)
    time2wait: int = 2
    time2retain: int = 20
    logout_response: int = 0
    extra_after_login: bytes = b""  # bytes sent right behind the final Login Response


class FakeTarget:
    """Target-side machine.  ``misbehave`` switches:

    wrong_stage, skip_security, bad_nsg, wrong_isid, reject_login, tsih_zero,
    fail_mutual, chap_r_unasked, extra_round (stay in operational one round),
    reflect_initiator (answer mutual CHAP by echoing the initiator's challenge
    as our own next challenge — recorded only), text_wrong_itt.
    """

    def __init__(self, config: TargetConfig | None = None) -> None:
        self.c = config or TargetConfig()
        self.reader = PDUReader(max_data_segment_length=1 << 24)
        self.out: list[bytes] = []
        self.violations: list[str] = []
        self.statsn = self.c.statsn
        self.exp_cmdsn: int | None = None
        self.isid: bytes | None = None
        self.itt: int | None = None
        self.phase = "login"  # login -> ffp -> closed
        self.stage_step = "auth"  # auth -> chap_a -> chap_r -> done
        self.req_parts: list[bytes] = []
        self.pending_out: list[bytes] = []  # our continued login text
        self.pending_flags: tuple = ()
        self.first = True
        self.declared: dict[str, str] = {}
        self.negotiated: dict[str, str] = {}
        self.seen_keys: set[str] = set()
        self.session_type = "Normal"
        self.algorithm: int | None = None
        self.challenge: bytes | None = None
        self.ident: int | None = None
        self.received_challenges: list[bytes] = []
        self.authenticated = False
        self.offers_pending: dict[str, str] = {}
        self.answers: dict[str, str | None] = {}  # our answer to each initiator offer
        self.extra_round_done = False
        self.login_requests = 0
        self.received_pairs: list[tuple[str, str]] = []  # every Login Request's, in order
        self.last_statsn_sent: int | None = None
        self.text_chunks: list[bytes] = []
        self.text_ttt = 0x100
        self.text_itt: int | None = None
        self.text_requests = 0
        self.logout: LogoutRequest | None = None
        self.scsi_commands: list[SCSICommand] = []
        self.nop_outs: list[NOPOut] = []

    # ---------------------------------------------------------------- I/O
    def receive_data(self, data: bytes) -> None:
        self.reader.feed(data)
        while (raw := self.reader.next_pdu()) is not None:
            self.handle(decode_pdu(raw))

    def data_to_send(self) -> bytes:
        out, self.out = self.out, []
        return b"".join(out)

    def _emit(self, pdu) -> None:
        self.out.append(pdu.encode())

    def _violation(self, msg: str) -> None:
        self.violations.append(msg)

    def handle(self, pdu) -> None:
        if isinstance(pdu, LoginRequest):
            self._login(pdu)
        elif isinstance(pdu, TextRequest):
            self._text(pdu)
        elif isinstance(pdu, LogoutRequest):
            self._logout(pdu)
        elif isinstance(pdu, SCSICommand):
            self._scsi(pdu)
        elif isinstance(pdu, NOPOut):
            self.nop_outs.append(pdu)
        else:
            self._violation(f"unexpected {type(pdu).__name__}")

    # ---------------------------------------------------------------- login
    def _resp(self, req: LoginRequest, data: bytes = b"", *, transit=False, cont=False,
              nsg=0, status=0, tsih=0) -> None:
        c = self.c
        csg = req.csg
        if "wrong_stage" in c.misbehave:
            csg = OP if req.csg == SEC else SEC
        isid = req.isid
        if "wrong_isid" in c.misbehave:
            isid = bytes([isid[0] ^ 0xFF]) + isid[1:]
        if status and "zero_isid_on_failure" in c.misbehave:  # tgtd does this
            isid = bytes(6)
        resp = LoginResponse(
            transit=transit, continue_=cont, csg=csg, nsg=nsg if transit else 0,
            isid=isid, tsih=tsih, itt=req.itt, statsn=self.statsn,
            exp_cmdsn=req.cmdsn, max_cmdsn=(req.cmdsn + c.window - 1) & 0xFFFFFFFF,
            status_class=status >> 8, status_detail=status & 0xFF, data=data,
        )
        self.last_statsn_sent = self.statsn
        self.statsn = (self.statsn + 1) & 0xFFFFFFFF
        self._emit(resp)

    def _send_login_text(self, req, pairs, *, transit, nsg, tsih=0) -> None:
        text = enc_text(pairs)
        seg = self.c.login_segment
        chunks = [text[i:i + seg] for i in range(0, len(text), seg)] or [b""]
        self.pending_out = chunks
        self.pending_flags = (transit, nsg, tsih)
        self._send_next_login_chunk(req)

    def _send_next_login_chunk(self, req) -> None:
        transit, nsg, tsih = self.pending_flags
        data = self.pending_out.pop(0)
        more = bool(self.pending_out)
        final = transit and not more
        if final and nsg == FFP:
            if "tsih_zero" not in self.c.misbehave:
                tsih = self.c.tsih
            self.phase = "ffp"
            self.exp_cmdsn = req.cmdsn
            self._resp(req, data, transit=True, nsg=nsg, tsih=tsih)
            if self.c.extra_after_login:
                self.out.append(self.c.extra_after_login)
            return
        self._resp(req, data, transit=final, cont=more, nsg=nsg)

    def _check_request(self, req: LoginRequest) -> None:
        if not req.immediate:
            self._violation("Login Request without the I bit")
        if req.version_max != 0 or req.version_min != 0:
            self._violation("version not 0")
        if self.isid is None:
            self.isid, self.itt, self.login_cmdsn = req.isid, req.itt, req.cmdsn
        else:
            if req.isid != self.isid:
                self._violation("ISID changed during login")
            if req.itt != self.itt:
                self._violation("ITT changed during login")
            if req.cmdsn != self.login_cmdsn:
                self._violation("CmdSN changed during login")
            if self.last_statsn_sent is not None and req.exp_statsn != (self.last_statsn_sent + 1) & 0xFFFFFFFF:
                self._violation(f"ExpStatSN {req.exp_statsn} != {self.last_statsn_sent + 1}")
        if req.tsih != 0:
            self._violation("TSIH not 0 on a leading login")

    def _login(self, req: LoginRequest) -> None:
        c = self.c
        self.login_requests += 1
        if self.phase != "login":
            self._violation("Login Request in full feature phase")
            return
        self._check_request(req)
        if "reject_login" in c.misbehave:
            self._emit(Reject(reason=0x09, statsn=self.statsn, exp_cmdsn=req.cmdsn,
                              max_cmdsn=req.cmdsn, data=req.encode()[:48]))
            return
        if self.pending_out:  # the initiator acknowledges a continued response of ours
            if req.data:
                self._violation("text in the acknowledgement of a C=1 response")
            self._send_next_login_chunk(req)
            return
        self.req_parts.append(req.data)
        if req.continue_:
            self._resp(req)  # empty acknowledgement, same stage, T=0
            return
        pairs = dec_text(b"".join(self.req_parts))
        self.req_parts = []
        self.received_pairs += pairs
        names = [k for k, _ in pairs]
        for k in names:
            if names.count(k) > 1:
                self._violation(f"initiator sent {k} twice in one PDU sequence")
        if self.first:
            self.first = False
            keys = dict(pairs)
            if "InitiatorName" not in keys:
                self._violation("first Login Request without InitiatorName")
            self.session_type = keys.get("SessionType", "Normal")
            if self.session_type == "Normal" and keys.get("TargetName") != c.name:
                if "TargetName" not in keys:
                    self._violation("Normal session without TargetName")
                self._resp(req, status=0x0203)
                return
            if c.status:
                extra = [("TargetAddress", c.redirect_to)] if c.redirect_to else []
                self._resp(req, enc_text(extra), status=c.status)
                return
            self.first_pairs = [("TargetPortalGroupTag", str(c.tpgt)), ("TargetAlias", c.alias)]
        if req.csg == SEC:
            self._security(req, pairs)
        elif req.csg == OP:
            if c.chap_users and not self.authenticated:
                self._resp(req, status=0x0201)  # no AuthMethod=None for this target
                return
            self._operational(req, pairs)
        else:
            self._violation(f"Login Request with CSG {req.csg}")

    def _declared_first(self) -> list[tuple[str, str]]:
        fp = getattr(self, "first_pairs", [])
        self.first_pairs = []
        return fp

    def _security(self, req: LoginRequest, pairs) -> None:
        c = self.c
        keys = dict(pairs)
        for key, value in pairs:
            if key in self.offers_pending:  # the initiator answers a security_extra offer
                self._check_offer_answer(key, value)
        if self.stage_step == "auth":
            offer = keys.get("AuthMethod", "").split(",")
            if "skip_security" in c.misbehave:  # T=1 without CHAP
                self._resp(req, enc_text([("AuthMethod", "None")] + self._declared_first()),
                           transit=True, nsg=OP)
                return
            if "auth_none" in c.misbehave:  # picks None although only CHAP was offered
                self._resp(req, enc_text([("AuthMethod", "None")] + self._declared_first()))
                return
            if c.chap_users:
                if "CHAP" not in offer:
                    self._resp(req, status=0x0201)
                    return
                method = "CHAP"
            else:
                method = "None" if "None" in offer else ("CHAP" if "CHAP" in offer else "Reject")
            out = [("AuthMethod", method)] + self._declared_first() + c.security_extra
            for k, v in c.security_extra:  # a declaration, or an offer to be answered
                if k == "MaxRecvDataSegmentLength":
                    self.mrdsl_sent = True
                elif k not in DECLARATIONS:
                    self.offers_pending[k] = v
            answer = next((m for m in c.misbehave if m.startswith("auth_answer=")), None)
            if answer is not None:  # AuthMethod answered so (Reject, NotUnderstood): the
                out[0] = ("AuthMethod", answer[12:])  # key keeps its default, None
                method = "None"
            if method == "None":
                self.authenticated = True
                self.stage_step = "done"
                self._resp(req, enc_text(out), transit=req.transit, nsg=req.nsg)
                return
            self.stage_step = "chap_a"
            self._resp(req, enc_text(out))
            return
        if self.stage_step == "chap_a":
            self.chap_a_offer = keys.get("CHAP_A", "")
            offered = [int(a) for a in self.chap_a_offer.split(",") if a.isdigit()]
            alg = next((a for a in offered if a in c.chap_algorithms), None)
            if alg is None:
                self._resp(req, enc_text([("CHAP_A", "Reject")]))
                return
            self.algorithm = alg
            self.ident = c.rng(1)[0]
            self.challenge = c.reflect if c.reflect is not None else c.rng(hashlib.new(HASHES[alg]).digest_size)
            self.stage_step = "chap_r"
            out = [("CHAP_A", str(alg)), ("CHAP_I", str(self.ident)),
                   ("CHAP_C", enc_bin(self.challenge, c.base64))]
            if "skip_security" in c.misbehave:
                self._resp(req, enc_text(out), transit=True, nsg=OP)
                return
            self._resp(req, enc_text(out))
            return
        if self.stage_step == "chap_r":
            name, resp = keys.get("CHAP_N"), keys.get("CHAP_R")
            secret = c.chap_users.get(name or "")
            try:
                got = dec_bin(resp or "")
            except ValueError:
                got = b""
            if secret is None or got != target_chap_hash(self.algorithm, self.ident, secret, self.challenge):
                self._resp(req, status=0x0201)
                return
            out = []
            if "CHAP_C" in keys:
                ichal = dec_bin(keys["CHAP_C"])
                self.received_challenges.append(ichal)
                if ichal == self.challenge:
                    self._resp(req, status=0x0201)  # the initiator reflected ours
                    return
                if c.mutual is None:
                    self._resp(req, status=0x0201)
                    return
                tname, tsecret = c.mutual
                ident = int(keys.get("CHAP_I", "0"), 0)
                r = target_chap_hash(self.algorithm, ident, tsecret, ichal)
                if "fail_mutual" in c.misbehave:
                    r = bytes([r[0] ^ 1]) + r[1:]
                out = [("CHAP_N", tname), ("CHAP_R", enc_bin(r, c.base64))]
            elif "chap_r_unasked" in c.misbehave:
                out = [("CHAP_N", "x"), ("CHAP_R", "0x00")]
            self.authenticated = True
            self.stage_step = "done"
            nsg = FFP if "bad_nsg" in c.misbehave else req.nsg
            self._resp(req, enc_text(out), transit=req.transit, nsg=nsg)
            return
        # done: the initiator asks again to transit
        self._resp(req, transit=req.transit, nsg=req.nsg)

    # -- operational negotiation (target = responder) -------------------------------
    def answer(self, key: str, value: str) -> str | None:
        """Our answer to an initiator offer; None for declarations (no answer)."""
        c = self.c
        if key in DECLARATIONS:
            self.declared[key] = value
            return None
        rule = RULES.get(key)
        if rule is None:
            return "NotUnderstood"
        if self.session_type == "Discovery" and key in SESSION_ONLY:
            return "Irrelevant"
        kind = rule[0]
        mine = c.values.get(key)
        if mine is None:
            return "NotUnderstood"
        if kind == "list":
            accept = mine.split(",")
            for v in value.split(","):
                if v in accept:
                    self.negotiated[key] = v
                    return v
            return "Reject"
        if kind in ("min", "max"):
            try:
                if not value.isdigit():
                    raise ValueError
                n = int(value)
            except ValueError:
                return "Reject"
            if not rule[1] <= n <= rule[2]:
                return "Reject"
            r = min(n, int(mine)) if kind == "min" else max(n, int(mine))
            self.negotiated[key] = str(r)
            return str(r)
        if value not in ("Yes", "No"):
            return "Reject"
        a, b = value == "Yes", mine == "Yes"
        r = (a and b) if kind == "and" else (a or b)
        self.negotiated[key] = "Yes" if r else "No"
        return self.negotiated[key]

    def _operational(self, req: LoginRequest, pairs) -> None:
        c = self.c
        out: list[tuple[str, str]] = list(self._declared_first())
        for key, value in pairs:
            if key in self.offers_pending:  # the initiator answers our offer
                self._check_offer_answer(key, value)
                continue
            if key in self.seen_keys:
                self._violation(f"initiator offered {key} twice in one negotiation")
            self.seen_keys.add(key)
            if key.startswith("CHAP_") or key == "AuthMethod":
                self._violation(f"{key} in the operational stage")
                continue
            ans = self.answer(key, value)
            if key in c.answer_overrides:
                ans = c.answer_overrides[key]
            self.answers[key] = ans
            if ans is not None:
                out.append((key, ans))
        if self.declared.get("MaxRecvDataSegmentLength") and "mrdsl_sent" not in self.__dict__:
            self.mrdsl_sent = True
            out.append(("MaxRecvDataSegmentLength", str(c.mrdsl)))
        for k, v in c.extra_answers:
            out.append((k, v))
        c.extra_answers = []
        if "answer_twice" in c.misbehave and out:
            k = next(k for k, _ in out if k in RULES)
            out.append((k, dict(out)[k]))
        transit = req.transit
        if c.offers:
            for k, v in c.offers:
                self.offers_pending[k] = v
                out.append((k, v))
            c.offers = []
            transit = False  # the initiator must answer first
        if "extra_round" in c.misbehave and not self.extra_round_done:
            self.extra_round_done = True
            transit = False
        if "never_transit" in c.misbehave:
            transit = False
        if self.offers_pending and transit:
            self._violation(f"initiator did not answer {sorted(self.offers_pending)}")
        self._send_login_text(req, out, transit=transit, nsg=req.nsg)

    def _check_offer_answer(self, key, value) -> None:
        offer = self.offers_pending.pop(key)
        rule = RULES.get(key)
        if rule is None or value in ("NotUnderstood", "Irrelevant", "Reject"):
            self.negotiated[key] = value
            return
        kind = rule[0]
        if kind == "list":
            if value not in offer.split(","):
                self._violation(f"{key}={value} outside our offer {offer}")
        elif kind in ("min", "max"):
            if not value.isdigit():
                self._violation(f"{key}={value} not a number")
            elif kind == "min" and int(value) > int(offer) or kind == "max" and int(value) < int(offer):
                self._violation(f"{key}={value} breaks {kind} against {offer}")
        self.negotiated[key] = value

    # ---------------------------------------------------------------- text
    def _check_cmdsn(self, pdu) -> None:
        if self.exp_cmdsn is None:
            self._violation("command before login")
            return
        if pdu.cmdsn != self.exp_cmdsn:
            self._violation(f"CmdSN {pdu.cmdsn}, expected {self.exp_cmdsn}")
        if not pdu.immediate:
            self.exp_cmdsn = (self.exp_cmdsn + 1) & 0xFFFFFFFF

    def _win(self) -> dict:
        return dict(statsn=self.statsn, exp_cmdsn=self.exp_cmdsn,
                    max_cmdsn=(self.exp_cmdsn + self.c.window - 1) & 0xFFFFFFFF)

    def send_targets_text(self, value: str) -> bytes:
        c = self.c
        if c.send_targets_raw is not None:
            return c.send_targets_raw
        if value == "All":
            targets = c.targets or [(c.name, [])]
        else:
            wanted = value or c.name
            targets = [t for t in (c.targets or [(c.name, [])]) if t[0] == wanted]
        pairs = []
        for name, addrs in targets:
            pairs.append(("TargetName", name))
            pairs += [("TargetAddress", a) for a in addrs]
        return enc_text(pairs)

    def _text(self, req: TextRequest) -> None:
        c = self.c
        self.text_requests += 1
        self._check_cmdsn(req)
        if req.ttt != RESERVED_TAG:  # continuation of our long response
            if req.ttt != self.text_ttt or req.itt != self.text_itt:
                self._violation("continuation with a wrong TTT or ITT")
            if req.data:
                self._violation("continuation request with data")
            self._send_text_chunk(req)
            return
        pairs = dec_text(req.data)
        value = dict(pairs).get("SendTargets")
        if value is None:
            body = enc_text([(k, "NotUnderstood") for k, _ in pairs])
            self._emit(TextResponse(final=True, itt=req.itt, **self._win(), data=body))
            self.statsn += 1
            return
        text = self.send_targets_text(value)
        seg = c.text_segment
        if c.text_split_pairs:  # cut only at pair boundaries: F=0, C=0 pieces
            chunks, cur = [], b""
            for item in text.split(b"\0")[:-1]:
                item += b"\0"
                if cur and len(cur) + len(item) > seg:
                    chunks.append(cur)
                    cur = b""
                cur += item
            chunks.append(cur)
        else:
            chunks = [text[i:i + seg] for i in range(0, len(text), seg)] or [b""]
        self.text_chunks = chunks
        self.text_itt = req.itt
        self.text_ttt += 1
        self._send_text_chunk(req)

    def _send_text_chunk(self, req) -> None:
        c = self.c
        data = self.text_chunks.pop(0)
        more = bool(self.text_chunks)
        itt = req.itt ^ 1 if "text_wrong_itt" in c.misbehave else req.itt
        self._emit(TextResponse(
            final=not more, continue_=more and not c.text_split_pairs and not c.text_no_c, itt=itt,
            ttt=self.text_ttt if more else RESERVED_TAG, **self._win(), data=data))
        self.statsn += 1

    # ---------------------------------------------------------------- logout, events
    def _logout(self, req: LogoutRequest) -> None:
        self._check_cmdsn(req)
        self.logout = req
        self._emit(LogoutResponse(response=self.c.logout_response, itt=req.itt, **self._win(),
                                  time2wait=self.c.time2wait, time2retain=self.c.time2retain))
        self.statsn += 1
        if req.reason_code == 0:
            self.phase = "closed"

    def async_message(self, event: int, *, lun: bytes = bytes(8), sense: bytes = b"",
                      p1: int = 0, p2: int = 0, p3: int = 0, vcode: int = 0,
                      data: bytes | None = None) -> None:
        if data is None:
            data = (len(sense).to_bytes(2, "big") + sense) if sense else b""
        self._emit(AsyncMessage(lun=lun, statsn=self.statsn, exp_cmdsn=self.exp_cmdsn or 0,
                                max_cmdsn=self.exp_cmdsn or 0, async_event=event,
                                async_vcode=vcode, parameter1=p1, parameter2=p2,
                                parameter3=p3, data=data))
        self.statsn += 1

    def nop_in_ping(self, ttt: int = 0x55, data: bytes = b"ping", lun: bytes = bytes(8)) -> None:
        self._emit(NOPIn(lun=lun, itt=RESERVED_TAG, ttt=ttt, statsn=self.statsn,
                         exp_cmdsn=self.exp_cmdsn or 0, max_cmdsn=self.exp_cmdsn or 0, data=data))

    # ---------------------------------------------------------------- SCSI
    def _scsi(self, cmd: SCSICommand) -> None:
        self._check_cmdsn(cmd)
        self.scsi_commands.append(cmd)
        op = cmd.cdb[0]
        sense = b""
        status, data = 0, b""
        if op == 0x12 and not cmd.cdb[1] & 1:
            data = standard_inquiry()
        elif op == 0x12 and cmd.cdb[2] == 0x80:
            data = bytes([0, 0x80, 0, 8]) + b"SN000042"
        elif op == 0xA0:
            data = (16).to_bytes(4, "big") + bytes(4) + bytes(8) + bytes([0, 1, 0, 0, 0, 0, 0, 0])
        elif op == 0x9E:
            data = (2047).to_bytes(8, "big") + (512).to_bytes(4, "big") + bytes(20)
        else:  # CHECK CONDITION, fixed sense: ILLEGAL REQUEST, invalid command operation code
            status = 0x02
            sense = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0])
        data = data[:cmd.expected_data_transfer_length]
        if status == 0 and data:
            seg = 16
            chunks = [data[i:i + seg] for i in range(0, len(data), seg)]
            for n, chunk in enumerate(chunks):
                last = n == len(chunks) - 1
                win = self._win()
                if last:
                    self.statsn += 1
                self._emit(SCSIDataIn(
                    final=last, status_present=last, status=0, lun=cmd.lun, itt=cmd.itt,
                    datasn=n, buffer_offset=n * seg, residual_underflow=last and len(data) < cmd.expected_data_transfer_length,
                    residual_count=(cmd.expected_data_transfer_length - len(data)) if last else 0,
                    **win, data=chunk))
            return
        body = (len(sense).to_bytes(2, "big") + sense) if sense else b""
        self._emit(SCSIResponse(response=0, status=status, itt=cmd.itt, **self._win(), data=body))
        self.statsn += 1


# ------------------------------------------------------------------------ harness
class Pair:
    """Connects a LoginMachine (or any initiator-side machine with
    data_to_send/receive_data/needed) with a FakeTarget, in memory.

    ``mode``: "chunk" delivers what the other side produced in one piece;
    "needed" reads exactly machine.needed() bytes at a time; "byte" one byte
    at a time.  ``leftover`` holds target bytes the initiator never read.
    """

    def __init__(self, machine, target: FakeTarget, mode: str = "chunk", now: float = 0.0) -> None:
        self.m = machine
        self.t = target
        self.mode = mode
        self.now = now
        self.leftover = b""
        self.requests = 0

    def _to_target(self, data: bytes) -> None:
        if self.mode == "byte":
            for i in range(len(data)):
                self.t.receive_data(data[i:i + 1])
        else:
            self.t.receive_data(data)

    def login(self, max_rounds: int = 10000):
        """Run until the machine returns an outcome (exceptions propagate)."""
        m = self.m
        if m.state.value == "idle":
            m.start(self.now)
        buf = b""
        for _ in range(max_rounds):
            out = m.data_to_send()
            if out:
                self.requests += 1
                self._to_target(out)
            buf += self.t.data_to_send()
            if not buf:
                raise AssertionError("deadlock: neither side has anything to send")
            if self.mode == "chunk":
                chunk, buf = buf, b""
                outcome = m.receive_data(chunk, self.now)
            else:
                outcome = None
                while buf and outcome is None:
                    need = m.needed()
                    assert need >= 1, "needed() asked for nothing before the outcome"
                    step = 1 if self.mode == "byte" else need
                    chunk, buf = buf[:step], buf[step:]
                    outcome = m.receive_data(chunk, self.now)
            if outcome is not None:
                self.leftover = buf
                return outcome
        raise AssertionError("login did not finish")


def serve_socket(target: FakeTarget, sock, lock=None) -> None:
    """Answer what arrives on ``sock`` (a connected socket, closed at its end) with
    ``target``'s bytes until the peer closes it; ``lock``, when given, is held around the
    target's work (a test that makes it speak from another thread holds it too).  Run it
    in a thread of its own."""
    import contextlib

    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:  # reset by the initiator (it closed with our answer unread)
                return
            if not data:
                return
            with lock or contextlib.nullcontext():
                target.receive_data(data)
                out = target.data_to_send()
            if out:
                try:
                    sock.sendall(out)
                except OSError:
                    return


def make_machine(config=None, *, rng=None, isid=b"\x00\x02\x3d\x00\x00\x01", **kw):
    from iscsictl.protocol.config import LoginConfig
    from iscsictl.protocol.login import LoginMachine

    config = config or LoginConfig(initiator_name="iqn.2005-03.org.open-iscsi:host1",
                                   target_name="iqn.2003-01.org.example:disk1")
    return LoginMachine(config, isid=isid, rng=rng or seeded_rng(3), itt=0x10, **kw)


class FFPHarness:
    """Full feature phase: runs TextExchange / LogoutExchange / CommandSession
    against the target, framing the target's bytes with a PDUReader."""

    def __init__(self, target: FakeTarget, mode: str = "chunk") -> None:
        self.t = target
        self.mode = mode
        self.reader = PDUReader(max_data_segment_length=1 << 24)

    def pdus(self) -> list:
        data = self.t.data_to_send()
        out = []
        step = 1 if self.mode == "byte" else max(len(data), 1)
        for i in range(0, len(data), step):
            self.reader.feed(data[i:i + step])
            while (raw := self.reader.next_pdu()) is not None:
                out.append(decode_pdu(raw))
        return out

    def send(self, pdus) -> None:
        for p in pdus:
            self.t.receive_data(p.encode())

    def text(self, exchange):
        exchange.start()
        result = None
        while result is None:
            reqs = exchange.pdus_to_send()
            if not reqs:
                raise AssertionError("text exchange stalled")
            self.send(reqs)
            for pdu in self.pdus():
                result = exchange.receive_pdu(pdu)
        return result
