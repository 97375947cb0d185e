"""An iSCSI layer for scapy (RFC 7143 §11): craft and dissect PDUs in pcaps.

scapy has no iSCSI layer; this one is for tests and tools (pcap capture of
login exchanges, crafting malformed PDUs).  It is only imported by them:
scapy is an optional dependency (the ``test`` and ``pcap`` extras), and
importing this module without scapy raises ImportError with that hint.

:class:`ISCSI` is one whole PDU: byte 0 (I bit, opcode), the opcode-dependent
fields of bytes 1-3 and 8-47 (ConditionalFields chosen by opcode, named as in
:mod:`iscsictl.protocol.pdu`), TotalAHSLength and DataSegmentLength (filled
in on build when left None; ``ahs`` is then padded with zeros to the whole
words TotalAHSLength counts, and goes out as given when TotalAHSLength is
set), the AHS bytes, an optional header digest, the
data segment, its padding and an optional data digest.  Digests are not
visible on the wire, so whether to expect them is set with
:func:`set_digests` (off by default).  Several PDUs in one TCP segment
dissect as a chain of ISCSI layers.  Bound to TCP port 3260 both ways.

Field shapes: integers as on the wire (big-endian, unsigned); ``isid`` and
``lun`` are raw bytes (6 and 8); ``cdb`` is the 16 bytes of the BHS.
"""

from __future__ import annotations

try:
    from scapy.fields import (
        BitEnumField,
        BitField,
        ByteField,
        ConditionalField,
        FieldLenField,
        IntField,
        ShortField,
        StrFixedLenField,
        StrLenField,
        ThreeBytesField,
        XIntField,
    )
    from scapy.layers.inet import TCP
    from scapy.packet import Packet, Raw, bind_layers
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "iscsictl.scapy_iscsi needs scapy: pip install 'iscsictl[pcap]'"
    ) from exc

from .protocol.constants import ISCSI_PORT, Opcode
from .protocol.digest import crc32c_digest

__all__ = ["ISCSI", "OPCODE_NAMES", "set_digests"]

OPCODE_NAMES = {int(op): op.name for op in Opcode}

_DIGESTS = {"header": False, "data": False}


def set_digests(header: bool, data: bool) -> None:
    """Whether dissected and built PDUs carry CRC32C header/data digests."""
    _DIGESTS["header"] = bool(header)
    _DIGESTS["data"] = bool(data)


# opcode groups (RFC 7143 §11)
NOP_OUT, SCSI_CMD, TMF_REQ, LOGIN_REQ, TEXT_REQ, DATA_OUT, LOGOUT_REQ, SNACK = (
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10)
NOP_IN, SCSI_RSP, TMF_RSP, LOGIN_RSP, TEXT_RSP, DATA_IN, LOGOUT_RSP, R2T, ASYNC, REJECT = (
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3F)
ALL = frozenset(OPCODE_NAMES)
LOGIN = frozenset({LOGIN_REQ, LOGIN_RSP})
TEXT = frozenset({TEXT_REQ, TEXT_RSP})
TARGET_SN = frozenset({NOP_IN, SCSI_RSP, TMF_RSP, LOGIN_RSP, TEXT_RSP, DATA_IN, LOGOUT_RSP,
                       R2T, ASYNC, REJECT})  # StatSN, ExpCmdSN, MaxCmdSN at 24-35


def _when(field, opcodes):
    ops = frozenset(opcodes)
    return ConditionalField(field, lambda pkt, ops=ops: pkt.opcode in ops)


def _unknown(field):
    """A raw field for opcodes RFC 7143 does not define (hostile input)."""
    return ConditionalField(field, lambda pkt: pkt.opcode not in ALL)


def _others(*groups):
    used = set().union(*groups)
    return ALL - used


def _byte1():
    """Byte 1: the F bit and the opcode-specific flags, bit by bit."""
    plain = _others(LOGIN, TEXT, {SCSI_CMD, SCSI_RSP, DATA_IN, TMF_REQ, LOGOUT_REQ, SNACK})
    return [
        _when(BitField("transit", 0, 1), LOGIN),
        _when(BitField("final", 1, 1), ALL - LOGIN),
        _when(BitField("continue_", 0, 1), LOGIN | TEXT),
        # Login: .. CSG NSG
        _when(BitField("login_reserved", 0, 2), LOGIN),
        _when(BitEnumField("csg", 0, 2, {0: "SecurityNegotiation", 1: "LoginOperationalNegotiation",
                                         3: "FullFeaturePhase"}), LOGIN),
        _when(BitEnumField("nsg", 0, 2, {0: "SecurityNegotiation", 1: "LoginOperationalNegotiation",
                                         3: "FullFeaturePhase"}), LOGIN),
        _when(BitField("text_reserved", 0, 6), TEXT),
        # SCSI Command: R W . . ATTR
        _when(BitField("read", 0, 1), {SCSI_CMD}),
        _when(BitField("write", 0, 1), {SCSI_CMD}),
        _when(BitField("cmd_reserved", 0, 2), {SCSI_CMD}),
        _when(BitField("attr", 1, 3), {SCSI_CMD}),
        # SCSI Response: . . o u O U .
        _when(BitField("rsp_reserved", 0, 2), {SCSI_RSP}),
        _when(BitField("bidi_read_residual_overflow", 0, 1), {SCSI_RSP}),
        _when(BitField("bidi_read_residual_underflow", 0, 1), {SCSI_RSP}),
        # Data-In: A . . . O U S
        _when(BitField("acknowledge", 0, 1), {DATA_IN}),
        _when(BitField("datain_reserved", 0, 3), {DATA_IN}),
        _when(BitField("residual_overflow", 0, 1), {SCSI_RSP, DATA_IN}),
        _when(BitField("residual_underflow", 0, 1), {SCSI_RSP, DATA_IN}),
        _when(BitField("status_present", 0, 1), {DATA_IN}),
        _when(BitField("rsp_reserved2", 0, 1), {SCSI_RSP}),
        _when(BitField("function", 1, 7), {TMF_REQ}),
        _when(BitField("reason_code", 0, 7), {LOGOUT_REQ}),
        _when(BitField("snack_reserved", 0, 3), {SNACK}),
        _when(BitField("snack_type", 0, 4), {SNACK}),
        _when(BitField("flags_reserved", 0, 7), plain),
        _unknown(ByteField("flags", 0)),
    ]


def _bytes2_3():
    return [
        _when(ByteField("version_max", 0), LOGIN),
        _when(ByteField("response", 0), {SCSI_RSP, TMF_RSP, LOGOUT_RSP}),
        _when(ByteField("reason", 0), {REJECT}),
        _when(ByteField("reserved2", 0), _others(LOGIN, {SCSI_RSP, TMF_RSP, LOGOUT_RSP, REJECT})),
        _when(ByteField("version_min", 0), {LOGIN_REQ}),
        _when(ByteField("version_active", 0), {LOGIN_RSP}),
        _when(ByteField("status", 0), {SCSI_RSP, DATA_IN}),
        _when(ByteField("reserved3", 0), _others(LOGIN, {SCSI_RSP, DATA_IN})),
        _unknown(ShortField("bytes2_3", 0)),
    ]


_LUN_OPS = {NOP_OUT, SCSI_CMD, TMF_REQ, TEXT_REQ, DATA_OUT, SNACK, NOP_IN, TEXT_RSP, DATA_IN,
            R2T, ASYNC}


def _bytes8_47():
    return [
        # 8-15
        _when(StrFixedLenField("isid", bytes(6), 6), LOGIN),
        _when(ShortField("tsih", 0), LOGIN),
        _when(StrFixedLenField("lun", bytes(8), 8), _LUN_OPS),
        _when(StrFixedLenField("reserved8", bytes(8), 8), _others(LOGIN, _LUN_OPS)),
        _unknown(StrFixedLenField("bytes8_15", bytes(8), 8)),
        # 16-19
        XIntField("itt", 0),
        # 20-23
        _when(XIntField("ttt", 0xFFFFFFFF), {NOP_OUT, TEXT_REQ, DATA_OUT, NOP_IN, TEXT_RSP,
                                             DATA_IN, R2T}),
        _when(IntField("expected_data_transfer_length", 0), {SCSI_CMD}),
        _when(XIntField("referenced_task_tag", 0xFFFFFFFF), {TMF_REQ}),
        _when(ShortField("cid", 0), {LOGIN_REQ, LOGOUT_REQ}),
        _when(ShortField("reserved22", 0), {LOGIN_REQ, LOGOUT_REQ}),
        _when(XIntField("ttt_or_snack_tag", 0xFFFFFFFF), {SNACK}),
        _when(XIntField("snack_tag", 0), {SCSI_RSP}),
        _when(IntField("reserved20", 0), {TMF_RSP, LOGIN_RSP, LOGOUT_RSP, ASYNC, REJECT}),
        # 24-27
        _when(IntField("cmdsn", 0), {NOP_OUT, SCSI_CMD, TMF_REQ, LOGIN_REQ, TEXT_REQ, LOGOUT_REQ}),
        _when(IntField("statsn", 0), TARGET_SN),
        _when(IntField("reserved24", 0), {DATA_OUT, SNACK}),
        # 28-31
        _when(IntField("exp_statsn", 0), ALL - TARGET_SN),
        _when(IntField("exp_cmdsn", 0), TARGET_SN),
        # 32-35
        _when(IntField("max_cmdsn", 0), TARGET_SN),
        _when(IntField("ref_cmdsn", 0), {TMF_REQ}),
        _when(StrFixedLenField("cdb", bytes(16), 16), {SCSI_CMD}),
        _when(IntField("reserved32", 0), {NOP_OUT, LOGIN_REQ, TEXT_REQ, DATA_OUT, LOGOUT_REQ,
                                          SNACK}),
        # 36-39
        _when(IntField("exp_datasn", 0), {TMF_REQ, SCSI_RSP}),
        _when(IntField("datasn", 0), {DATA_OUT, DATA_IN}),
        _when(IntField("r2tsn", 0), {R2T}),
        _when(IntField("datasn_r2tsn", 0), {REJECT}),
        _when(ByteField("status_class", 0), {LOGIN_RSP}),
        _when(ByteField("status_detail", 0), {LOGIN_RSP}),
        _when(ShortField("reserved38", 0), {LOGIN_RSP}),
        _when(ByteField("async_event", 0), {ASYNC}),
        _when(ByteField("async_vcode", 0), {ASYNC}),
        _when(ShortField("parameter1", 0), {ASYNC}),
        _when(IntField("reserved36", 0), {NOP_OUT, LOGIN_REQ, TEXT_REQ, LOGOUT_REQ, SNACK, NOP_IN,
                                          TMF_RSP, TEXT_RSP, LOGOUT_RSP}),
        # 40-43
        _when(IntField("buffer_offset", 0), {DATA_OUT, DATA_IN, R2T}),
        _when(IntField("bidi_read_residual_count", 0), {SCSI_RSP}),
        _when(ShortField("parameter2", 0), {ASYNC}),
        _when(ShortField("parameter3", 0), {ASYNC}),
        _when(ShortField("time2wait", 0), {LOGOUT_RSP}),
        _when(ShortField("time2retain", 0), {LOGOUT_RSP}),
        _when(IntField("begrun", 0), {SNACK}),
        _when(IntField("reserved40", 0), {NOP_OUT, TMF_REQ, LOGIN_REQ, TEXT_REQ, LOGOUT_REQ,
                                          NOP_IN, TMF_RSP, LOGIN_RSP, TEXT_RSP, REJECT}),
        # 44-47
        _when(IntField("residual_count", 0), {SCSI_RSP, DATA_IN}),
        _when(IntField("desired_data_transfer_length", 0), {R2T}),
        _when(IntField("runlength", 0), {SNACK}),
        _when(IntField("reserved44", 0), ALL - {SCSI_CMD, SCSI_RSP, DATA_IN, R2T, SNACK}),
        _unknown(StrFixedLenField("bytes20_47", bytes(28), 28)),
    ]


def _pad(pkt) -> int:
    return -len(pkt.data or b"") & 3


class ISCSI(Packet):
    """One iSCSI PDU (RFC 7143 §11): BHS, AHS, digests, data and padding."""

    name = "iSCSI"
    fields_desc = [
        BitField("reserved0", 0, 1),
        BitField("immediate", 0, 1),
        BitEnumField("opcode", 0, 6, OPCODE_NAMES),
        *_byte1(),
        *_bytes2_3(),
        FieldLenField("total_ahs_length", None, length_of="ahs", fmt="B",
                      adjust=lambda pkt, n: (n + 3) // 4),
        ThreeBytesField("data_segment_length", None),
        *_bytes8_47(),
        StrLenField("ahs", b"", length_from=lambda pkt: (pkt.total_ahs_length or 0) * 4),
        ConditionalField(StrFixedLenField("header_digest", None, 4),
                         lambda pkt: _DIGESTS["header"]),
        StrLenField("data", b"", length_from=lambda pkt: pkt.data_segment_length or 0),
        StrLenField("pad", None, length_from=_pad),
        ConditionalField(StrFixedLenField("data_digest", None, 4),
                         lambda pkt: _DIGESTS["data"] and bool(pkt.data)),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        pkt = bytearray(pkt)
        hdr_end = 48 + len(self.ahs or b"")  # the AHS bytes as emitted
        if self.total_ahs_length is None:
            # TotalAHSLength counts whole words (n + 3) // 4: pad the AHS to them
            # (§11.2.1.5), as the data segment is padded below
            fill = -hdr_end & 3
            pkt[hdr_end:hdr_end] = bytes(fill)
            hdr_end += fill
        if self.data_segment_length is None:
            pkt[5:8] = len(self.data or b"").to_bytes(3, "big")
        pos = hdr_end
        if _DIGESTS["header"]:
            if self.header_digest is None:
                pkt[pos:pos + 4] = crc32c_digest(bytes(pkt[:hdr_end]))
            pos += 4
        n = len(self.data or b"")
        if self.pad is None:
            pkt[pos + n:pos + n] = bytes(-n & 3)
        end = pos + n + (-n & 3)
        if _DIGESTS["data"] and n and self.data_digest is None:
            pkt[end:end + 4] = crc32c_digest(bytes(pkt[pos:end]))
        return bytes(pkt) + pay

    def guess_payload_class(self, payload: bytes):
        return ISCSI if len(payload) >= 48 else Raw

    def mysummary(self) -> str:
        return self.sprintf("iSCSI %opcode% itt=%itt%")


bind_layers(TCP, ISCSI, dport=ISCSI_PORT)
bind_layers(TCP, ISCSI, sport=ISCSI_PORT)
