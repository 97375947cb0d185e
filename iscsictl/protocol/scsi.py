"""SCSI over a userspace iSCSI session: CDBs, their data, sense (SPC-4, SBC-3),
and a sans-I/O task machine (RFC 7143 §11.3, §11.4, §11.7).

Only what a userspace probe needs: REPORT LUNS, INQUIRY (standard, VPD 0x80
unit serial number, 0x83 device identification), READ CAPACITY(16) and (10), TEST
UNIT READY.  :class:`CommandSession` tracks CmdSN/ExpStatSN and tasks by ITT,
gathers Data-In, and completes each task with a :class:`ScsiResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import SCSIResponse as SCSIResponseCode
from .constants import SCSIStatus
from .errors import ISCSIProtocolError
from .lun import encode_lun
from .pdu import PDU, R2T, Reject, SCSICommand, SCSIDataIn, SCSIResponse

__all__ = [
    "CommandSession",
    "Inquiry",
    "ReadCapacity16",
    "ScsiError",
    "ScsiResult",
    "Sense",
    "cdb_inquiry",
    "cdb_read_capacity10",
    "cdb_read_capacity16",
    "cdb_report_luns",
    "cdb_test_unit_ready",
    "parse_designators",
    "parse_inquiry",
    "parse_read_capacity10",
    "parse_read_capacity16",
    "parse_report_luns",
    "parse_sense",
    "parse_unit_serial",
]

# --- CDBs -------------------------------------------------------------------------


def cdb_test_unit_ready() -> bytes:
    return bytes(6)


def cdb_inquiry(allocation_length: int = 255, vpd_page: int | None = None) -> bytes:
    """INQUIRY (SPC-4 §6.6): standard data, or the VPD page when given."""
    evpd = 1 if vpd_page is not None else 0
    return bytes((0x12, evpd, vpd_page or 0)) + allocation_length.to_bytes(2, "big") + b"\0"


def cdb_report_luns(allocation_length: int = 4096, select_report: int = 0) -> bytes:
    """REPORT LUNS (SPC-4 §6.33)."""
    return bytes((0xA0, 0, select_report, 0, 0, 0)) + allocation_length.to_bytes(4, "big") + b"\0\0"


def cdb_read_capacity10() -> bytes:
    """READ CAPACITY(10) (SBC-3 §5.15): an SBC-2 disk's, which may refuse (16)."""
    return bytes((0x25,)) + bytes(9)


def cdb_read_capacity16(allocation_length: int = 32) -> bytes:
    """READ CAPACITY(16) (SBC-3 §5.16): SERVICE ACTION IN(16), action 0x10."""
    return bytes((0x9E, 0x10)) + bytes(8) + allocation_length.to_bytes(4, "big") + b"\0\0"


# --- sense ------------------------------------------------------------------------

SENSE_KEYS = (
    "NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR",
    "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC",
    "COPY ABORTED", "ABORTED COMMAND", "RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
)
#: the ASC/ASCQ codes a probe meets (SPC-4 Annex D); others print as numbers
ASC_TEXT = {
    (0x04, 0x00): "logical unit not ready, cause not reportable",
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x02): "logical unit not ready, initializing command required",
    (0x20, 0x00): "invalid command operation code",
    (0x24, 0x00): "invalid field in CDB",
    (0x25, 0x00): "logical unit not supported",
    (0x26, 0x00): "invalid field in parameter list",
    (0x27, 0x00): "write protected",
    (0x28, 0x00): "not ready to ready change, medium may have changed",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x2A, 0x01): "mode parameters changed",
    (0x2A, 0x09): "capacity data has changed",
    (0x3A, 0x00): "medium not present",
    (0x3F, 0x0E): "reported luns data has changed",
    (0x44, 0x00): "internal target failure",
    (0x47, 0x00): "scsi parity error",
    (0x4B, 0x00): "data phase error",
}


@dataclass(frozen=True)
class Sense:
    """Decoded sense data (fixed 0x70/0x71 or descriptor 0x72/0x73 format)."""

    response_code: int
    sense_key: int
    asc: int
    ascq: int

    @property
    def message(self) -> str:
        key = SENSE_KEYS[self.sense_key & 0xF]
        text = ASC_TEXT.get((self.asc, self.ascq), f"ASC 0x{self.asc:02x} ASCQ 0x{self.ascq:02x}")
        return f"{key}: {text}"


def parse_sense(data: bytes) -> Sense | None:
    """Decode sense data; None when it is empty or of an unknown format."""
    if len(data) < 2:
        return None
    code = data[0] & 0x7F
    if code in (0x70, 0x71) and len(data) >= 14:
        return Sense(code, data[2] & 0xF, data[12], data[13])
    if code in (0x72, 0x73) and len(data) >= 4:
        return Sense(code, data[1] & 0xF, data[2], data[3])
    return None


# --- data parsers -----------------------------------------------------------------

_DEVICE_TYPES = {0: "Direct-Access", 1: "Sequential-Access", 5: "CD-ROM", 8: "Medium Changer",
                 0xC: "Storage Array Controller", 0xD: "Enclosure", 0x1F: "No Device"}


@dataclass(frozen=True)
class Inquiry:
    """Standard INQUIRY data (SPC-4 §6.6.2)."""

    peripheral_qualifier: int
    device_type: int
    removable: bool
    version: int
    vendor: str
    product: str
    revision: str

    @property
    def device_type_name(self) -> str:
        return _DEVICE_TYPES.get(self.device_type, f"type 0x{self.device_type:02x}")


#: bytes outside SPC's printable ASCII (0x20-0x7E, SPC-4 §4.3.1) shown as '?': a target's
#: strings reach a terminal, where an escape sequence or a NUL must not
_PRINTABLE = bytes(c if 0x20 <= c <= 0x7E else 0x3F for c in range(256))


def _ascii_field(raw: bytes) -> str:
    """An SPC ASCII field as text: the blank and NUL padding around it stripped, any byte
    that is not printable ASCII shown as '?'."""
    return raw.strip(b" \0").translate(_PRINTABLE).decode("ascii")


def parse_inquiry(data: bytes) -> Inquiry:
    """Raises ValueError when shorter than the 36 bytes of standard data."""
    if len(data) < 36:
        raise ValueError(f"standard INQUIRY data has {len(data)} bytes, need 36")
    return Inquiry(data[0] >> 5, data[0] & 0x1F, bool(data[1] & 0x80), data[2],
                   _ascii_field(data[8:16]), _ascii_field(data[16:32]),
                   _ascii_field(data[32:36]))


def parse_unit_serial(data: bytes) -> str:
    """VPD 0x80: the unit serial number."""
    if len(data) < 4 or data[1] != 0x80:
        raise ValueError("not a Unit Serial Number VPD page")
    n = int.from_bytes(data[2:4], "big")
    return _ascii_field(data[4:4 + n])


@dataclass(frozen=True)
class Designator:
    """One VPD 0x83 designator: type (1 T10, 2 EUI-64, 3 NAA, 8 SCSI name...)."""

    code_set: int
    association: int
    designator_type: int
    value: bytes

    def __str__(self) -> str:
        kinds = {1: "t10", 2: "eui", 3: "naa", 8: "name"}
        kind = kinds.get(self.designator_type, f"type{self.designator_type}")
        if self.code_set in (2, 3):  # ASCII / UTF-8: what a terminal cannot show as a
            text = self.value.rstrip(b"\0").decode("utf-8", "replace")  # character, '?'
            return f"{kind}:" + "".join(c if c.isprintable() else "?" for c in text)
        return f"{kind}:{self.value.hex()}"


def parse_designators(data: bytes) -> list[Designator]:
    """VPD 0x83 device identification designators."""
    if len(data) < 4 or data[1] != 0x83:
        raise ValueError("not a Device Identification VPD page")
    end = min(len(data), 4 + int.from_bytes(data[2:4], "big"))
    pos, out = 4, []
    while pos + 4 <= end:
        n = data[pos + 3]
        if pos + 4 + n > end:  # cut off by the allocation length: not a whole one
            break
        out.append(Designator(data[pos] & 0xF, (data[pos + 1] >> 4) & 3, data[pos + 1] & 0xF,
                              bytes(data[pos + 4:pos + 4 + n])))
        pos += 4 + n
    return out


@dataclass(frozen=True)
class ReadCapacity16:
    """READ CAPACITY(16) data: the last LBA and the logical block length."""

    last_lba: int
    block_length: int
    thin_provisioned: bool

    @property
    def size_bytes(self) -> int:
        return (self.last_lba + 1) * self.block_length


def parse_read_capacity16(data: bytes) -> ReadCapacity16:
    if len(data) < 12:
        raise ValueError(f"READ CAPACITY(16) data has {len(data)} bytes, need 12")
    lbpme = len(data) > 14 and bool(data[14] & 0x80)
    return ReadCapacity16(int.from_bytes(data[0:8], "big"), int.from_bytes(data[8:12], "big"), lbpme)


def parse_read_capacity10(data: bytes) -> ReadCapacity16:
    """READ CAPACITY(10) data (SBC-3 §5.15.2), in READ CAPACITY(16)'s shape; a last LBA
    of 0xFFFFFFFF means the disk is larger (READ CAPACITY(16) tells)."""
    if len(data) < 8:
        raise ValueError(f"READ CAPACITY(10) data has {len(data)} bytes, need 8")
    return ReadCapacity16(int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big"),
                          False)


def parse_report_luns(data: bytes) -> list[bytes]:
    """REPORT LUNS (SPC-4 §6.33): the 8-byte LUN fields, in order; whole entries only.
    :func:`.lun.decode_lun` gives each its number (Linux's), which
    :meth:`CommandSession.command` turns back into the same 8 bytes.

    Raises:
        ValueError: ``data`` is shorter than the 8-byte header.
    """
    if len(data) < 8:
        raise ValueError("REPORT LUNS data shorter than its header")
    n = int.from_bytes(data[0:4], "big")
    body = data[8:8 + n]
    return [bytes(body[i:i + 8]) for i in range(0, len(body) - 7, 8)]


# --- the task machine -------------------------------------------------------------


class ScsiError(ISCSIProtocolError):
    """A task that cannot be completed from what the target sent."""

    reject_reason = None


@dataclass
class ScsiResult:
    """A completed command: SCSI status, sense, the data read, the residual."""

    status: int
    data: bytes = b""
    sense: Sense | None = None
    residual: int = 0
    response: int = 0

    @property
    def ok(self) -> bool:
        return self.response == SCSIResponseCode.COMMAND_COMPLETED and self.status == SCSIStatus.GOOD

    @property
    def message(self) -> str:
        if self.response != SCSIResponseCode.COMMAND_COMPLETED:
            return f"target failure (iSCSI response 0x{self.response:02x})"
        try:
            name = SCSIStatus(self.status).name.replace("_", " ")
        except ValueError:
            name = f"status 0x{self.status:02x}"
        return f"{name}: {self.sense.message}" if self.sense else name


@dataclass
class _Task:
    expected: int
    chunks: dict[int, bytes] = field(default_factory=dict)  # BufferOffset -> data, non-empty
    received: int = 0
    datasn: int = 0  # the next Data-In's DataSN (§11.7.4: 0, 1, 2, ... a command)


def _serial_lt(a: int, b: int) -> bool:
    """a < b in 32-bit serial number arithmetic (RFC 1982)."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


class CommandSession:
    """Read-type SCSI commands on a logged-in userspace session.

    Args:
        cmdsn, exp_statsn: from :class:`~.login.LoginSuccess`.
        max_cmdsn: the target's window edge (commands wait while closed).
    """

    def __init__(self, cmdsn: int, exp_statsn: int, max_cmdsn: int | None = None) -> None:
        self.cmdsn = cmdsn
        self.exp_statsn = exp_statsn
        self.max_cmdsn = cmdsn if max_cmdsn is None else max_cmdsn
        self._next_itt = 1
        self._tasks: dict[int, _Task] = {}

    def command(self, lun: int, cdb: bytes, read_length: int) -> tuple[int, SCSICommand]:
        """A SCSI Command PDU for a read of up to ``read_length`` bytes; its ITT.

        ``lun`` is the LUN number as Linux numbers it (:func:`.lun.decode_lun` of the
        REPORT LUNS entry), sent as that entry's 8 bytes (:func:`.lun.encode_lun`).

        Raises:
            ValueError: ``lun`` is out of range (0..2**64 - 1).
        """
        itt = self._next_itt
        self._next_itt = (self._next_itt % 0xFFFFFFFE) + 1
        pdu = SCSICommand(read=read_length > 0, lun=encode_lun(lun), itt=itt,
                          expected_data_transfer_length=read_length, cmdsn=self.cmdsn,
                          exp_statsn=self.exp_statsn, cdb=cdb)
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        self._tasks[itt] = _Task(read_length)
        return itt, pdu

    @property
    def window_closed(self) -> bool:
        """Whether the target's window takes no command now (RFC 7143 §4.2.2.1: CmdSN past
        MaxCmdSN, as MaxCmdSN = ExpCmdSN - 1 says): the next one waits for it to open."""
        return _serial_lt(self.max_cmdsn, self.cmdsn)

    def note_window(self, pdu: PDU) -> None:
        """The window a target PDU carries (ExpCmdSN, MaxCmdSN: a NOP-In's, an Async
        Message's too), taken as :meth:`receive_pdu` takes a response's."""
        if hasattr(pdu, "max_cmdsn") and hasattr(pdu, "exp_cmdsn"):
            self._window(pdu)  # type: ignore[arg-type]

    def _window(self, pdu: SCSIDataIn | SCSIResponse) -> None:
        # RFC 7143 §4.2.2.1 (serial arithmetic, RFC 1982): a response whose
        # MaxCmdSN < ExpCmdSN - 1 carries an invalid window and is ignored, and
        # a MaxCmdSN older than the one we hold (a reordered PDU) never shrinks it.
        exp, mx = pdu.exp_cmdsn, pdu.max_cmdsn
        if _serial_lt(mx, (exp - 1) & 0xFFFFFFFF):
            return
        if _serial_lt(self.max_cmdsn, mx):
            self.max_cmdsn = mx

    def receive_pdu(self, pdu: PDU) -> tuple[int, ScsiResult] | None:
        """Take a target PDU; (itt, result) when a task completes.

        Data-In may cover the buffer in any order, but the data must tile it from
        offset 0 (RFC 7143 §11.7.5): a BufferOffset that repeats, overlaps or leaves a
        hole is an error, never data at the wrong offset.  Its DataSN counts 0, 1, 2, ...
        for the command (§11.7.4); a Data-In missing from that count is an error, as
        nothing here asks for it again (SNACK needs ErrorRecoveryLevel 1).

        Raises:
            ScsiError: data for an unknown task, a DataSN out of sequence, data beyond
                the buffer, a Data-In offset taken twice, overlapping data or a hole at
                completion (the task is dropped), a Reject, an R2T (nothing here writes).
        """
        if isinstance(pdu, Reject):
            raise ScsiError(f"target rejected a PDU (reason 0x{pdu.reason:02x})")
        if isinstance(pdu, R2T):  # only reads are sent: there is nothing to transfer
            raise ScsiError(f"R2T for ITT 0x{pdu.itt:08x}, a command that writes nothing")
        if isinstance(pdu, SCSIDataIn):
            task = self._tasks.get(pdu.itt)
            if task is None:
                raise ScsiError(f"Data-In for unknown ITT 0x{pdu.itt:08x}")
            if pdu.datasn != task.datasn:
                raise ScsiError(f"Data-In for ITT 0x{pdu.itt:08x} has DataSN {pdu.datasn}, "
                                f"expected {task.datasn}: a Data-In was lost or repeated")
            task.datasn = (task.datasn + 1) & 0xFFFFFFFF
            end = pdu.buffer_offset + len(pdu.data)
            if end > task.expected:
                raise ScsiError(f"Data-In past the expected {task.expected} bytes")
            if pdu.data:
                if pdu.buffer_offset in task.chunks:
                    raise ScsiError(f"Data-In for ITT 0x{pdu.itt:08x} repeats buffer offset "
                                    f"{pdu.buffer_offset}")
                task.chunks[pdu.buffer_offset] = pdu.data
                task.received += len(pdu.data)
            self._window(pdu)
            if pdu.status_present:
                self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
                return pdu.itt, self._complete(pdu.itt, pdu.status, b"", 0, pdu.residual_count)
            return None
        if isinstance(pdu, SCSIResponse):
            if pdu.itt not in self._tasks:
                raise ScsiError(f"SCSI Response for unknown ITT 0x{pdu.itt:08x}")
            self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            self._window(pdu)
            return pdu.itt, self._complete(pdu.itt, pdu.status, pdu.sense_data, pdu.response,
                                           pdu.residual_count)
        return None

    def _complete(self, itt: int, status: int, sense: bytes, response: int, residual: int) -> ScsiResult:
        task = self._tasks.pop(itt)
        pos = 0
        for offset in sorted(task.chunks):
            if offset != pos:
                what = "a hole" if offset > pos else "overlapping data"
                raise ScsiError(f"Data-In for ITT 0x{itt:08x} has {what} at buffer offset "
                                f"{min(offset, pos)}")
            pos += len(task.chunks[offset])
        data = b"".join(task.chunks[k] for k in sorted(task.chunks))
        return ScsiResult(status, data, parse_sense(sense), residual, response)
