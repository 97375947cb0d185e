"""Debug lines for the PDUs of a login or a text exchange (``iscsictl -d``, ``iscsictld -d``).

What a storage engineer reads to see why a login fails: each Login or Text PDU as it goes
out or comes in, one line of the header fields that steer the exchange (RFC 7143 §11.10 -
§11.13) followed by its text keys, one per line.  ``CHAP_R`` is hidden: a challenge and its
response together let anyone who reads them try secrets offline (RFC 7143 §12.1.3).

The lines go to the ``iscsictl.pdu`` logger at DEBUG, as one record whose lines are each
safe to print (a control character the peer sent is escaped: :func:`~iscsictl.lexical.one_line`);
building them costs nothing unless that level is enabled.
"""

from __future__ import annotations

import logging

from ..lexical import one_line
from .pdu import PDU, LoginRequest, LoginResponse, TextRequest, TextResponse

__all__ = ["ESCAPED", "HIDDEN_KEYS", "describe", "log", "trace"]

log = logging.getLogger("iscsictl.pdu")
#: a log record's ``extra`` that says its lines were each made one line already: a handler
#: that escapes a message's control characters leaves its newlines (iscsictld's log)
ESCAPED = {"escaped": True}

#: keys whose values a trace never shows
HIDDEN_KEYS = frozenset({b"CHAP_R"})
HIDDEN = "********"  # iscsiadm's mask for a secret

_LOGIN = (("T", "transit"), ("C", "continue_"), ("CSG", "csg"), ("NSG", "nsg"),
          ("ISID", "isid"), ("TSIH", "tsih"), ("ITT", "itt"))
_TEXT = (("F", "final"), ("C", "continue_"), ("ITT", "itt"), ("TTT", "ttt"))
_TARGET_SN = (("StatSN", "statsn"), ("ExpCmdSN", "exp_cmdsn"), ("MaxCmdSN", "max_cmdsn"))
_INITIATOR_SN = (("CmdSN", "cmdsn"), ("ExpStatSN", "exp_statsn"))
#: PDU class -> (its name in RFC 7143, (label, attribute) of each header field shown)
_SHOWN: dict[type[PDU], tuple[str, tuple[tuple[str, str], ...]]] = {
    LoginRequest: ("Login Request", _LOGIN + (("CID", "cid"),) + _INITIATOR_SN),
    LoginResponse: ("Login Response", (("status", "status_code"),) + _LOGIN + _TARGET_SN),
    TextRequest: ("Text Request", _TEXT + _INITIATOR_SN),
    TextResponse: ("Text Response", _TEXT + _TARGET_SN),
}
_HEX = frozenset(("itt", "ttt", "status_code"))


def _field(pdu: PDU, attr: str) -> str:
    if attr == "status_code":
        return f"0x{pdu.status_class << 8 | pdu.status_detail:04x}"  # type: ignore[attr-defined]
    value = getattr(pdu, attr)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, bytes):
        return value.hex()
    return f"0x{value:x}" if attr in _HEX else str(value)


def _pair(item: bytes) -> str:
    key, sep, _ = item.partition(b"=")
    if sep and key in HIDDEN_KEYS:
        item = key + b"=" + HIDDEN.encode()
    return one_line(item.decode("utf-8", "backslashreplace"))


def describe(pdu: PDU, direction: str) -> str:
    """``direction`` ("->" sent, "<-" received), the PDU's name and header fields, then
    each ``key=value`` of its data segment on a line of its own, indented (a piece that
    ends mid-pair, C=1, shows as it is).  E.g.::

        -> Login Request T=1 C=0 CSG=1 NSG=3 ISID=400001370000 TSIH=0 ... CmdSN=1
            InitiatorName=iqn.2005-03.org.open-iscsi:host
            HeaderDigest=None
    """
    label, fields = _SHOWN.get(type(pdu), (type(pdu).__name__, ()))
    head = " ".join(f"{k}={_field(pdu, a)}" for k, a in fields)
    lines = [f"{direction} {label} {head}".rstrip()]
    lines += ["    " + _pair(item) for item in bytes(pdu.data).split(b"\0") if item]
    return "\n".join(lines)


def trace(pdu: PDU, direction: str) -> None:
    """:func:`describe` ``pdu`` to :data:`log` at DEBUG, when that level is enabled."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", describe(pdu, direction), extra=ESCAPED)
