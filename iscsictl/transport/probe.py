"""Userspace probe of a target's LUNs: log in over a plain TCP socket (Normal session, CHAP from
the node record), REPORT LUNS, then per LUN standard INQUIRY, VPD 0x80 (unit serial), VPD 0x83
(designators) and READ CAPACITY(16) (READ CAPACITY(10) where an SBC-2 disk refuses it, as
Linux's sd_read_capacity), then Logout.  No kernel module, no root.  A REPORT LUNS list or a
VPD page longer than first asked for is asked for again whole (scsi_report_lun_scan,
scsi_get_vpd_buf).

A command answered with CHECK CONDITION / UNIT ATTENTION (e.g. tgtd's 29/00 after login) is
retried up to ``UA_RETRIES`` times; any other failure is recorded per LUN as the sense message.
LUNs are numbered as Linux numbers them (:mod:`iscsictl.protocol.lun`), and each command goes
to the 8 bytes REPORT LUNS gave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

from ..protocol.config import LoginConfig
from ..protocol.lun import decode_lun
from ..protocol.scsi import (ScsiResult, cdb_inquiry, cdb_read_capacity10, cdb_read_capacity16,
                             cdb_report_luns, parse_designators, parse_inquiry,
                             parse_read_capacity10, parse_read_capacity16, parse_report_luns,
                             parse_unit_serial)
from .errors import LoginFailed, ProtocolFailure, TransportError
from .tcp import login

__all__ = ["LunInfo", "ProbeResult", "probe", "UA_RETRIES"]

UA_RETRIES = 5
#: the longest REPORT LUNS answer asked for: 2**20 LUNs, their 8 bytes each and the 8-byte
#: header (Linux asks for whatever the target reports; a longer list is said to be cut)
REPORT_LUNS_MAX = 8 * (1 << 20) + 8
#: a VPD page's first allocation length (Linux's SCSI_VPD_PG_LEN), and its largest
VPD_FIRST, VPD_MAX = 255, 0xFFFF
_ILLEGAL_REQUEST = 0x5
_UNIT_ATTENTION = 0x6
_CHECK_CONDITION = 0x02


@dataclass
class LunInfo:
    """What one LUN said.  ``lun``: its number as Linux shows it (``H:C:T:LUN``).  Sizes in
    bytes; ``errors`` maps a command name to its failure."""

    lun: int
    device_type: str = ""
    vendor: str = ""
    product: str = ""
    revision: str = ""
    serial: str = ""
    designators: list = field(default_factory=list)
    block_size: int | None = None
    blocks: int | None = None
    size_bytes: int | None = None
    errors: dict = field(default_factory=dict)


@dataclass
class ProbeResult:
    """The probe of one target portal: negotiated keys and the LUNs."""

    target: str
    portal: str
    tsih: int
    negotiated: dict
    luns: list

    def to_json(self) -> dict:
        return asdict(self)


def _retry_ua(run, lun: int, cdb: bytes, n: int, timeout: float) -> ScsiResult:
    res = run(lun, cdb, n, timeout)
    for _ in range(UA_RETRIES):
        if not (res.status == _CHECK_CONDITION and res.sense is not None
                and res.sense.sense_key == _UNIT_ATTENTION):
            break
        res = run(lun, cdb, n, timeout)
    return res


def _vpd(run, lun: int, page: int, timeout: float) -> ScsiResult:
    """VPD ``page`` of ``lun``, whole: asked again with its length when the first answer
    filled the allocation and the page says it is longer (scsi_get_vpd_buf)."""
    r = _retry_ua(run, lun, cdb_inquiry(VPD_FIRST, page), VPD_FIRST, timeout)
    if r.ok and len(r.data) >= 4:
        need = min(4 + int.from_bytes(r.data[2:4], "big"), VPD_MAX)
        if need > len(r.data) >= VPD_FIRST:
            r = _retry_ua(run, lun, cdb_inquiry(need, page), need, timeout)
    return r


#: the peripheral device types with a capacity to read (SPC-4 Table 49): those Linux's sd
#: (disk, optical memory, RBC, ZBC) and sr (CD/DVD, write-once) drive
BLOCK_DEVICE_TYPES = frozenset({0x00, 0x04, 0x05, 0x07, 0x0E, 0x14})


def _capacity(run, lun: int, info: LunInfo, timeout: float) -> None:
    """``info``'s size: READ CAPACITY(16), or (10) where the disk refuses (16) as an SBC-2
    disk may (ILLEGAL REQUEST: Linux's sd_read_capacity falls back the same way)."""
    r = _retry_ua(run, lun, cdb_read_capacity16(), 32, timeout)
    parse, name = parse_read_capacity16, "read_capacity16"
    if not r.ok and r.sense is not None and r.sense.sense_key == _ILLEGAL_REQUEST:
        r10 = _retry_ua(run, lun, cdb_read_capacity10(), 8, timeout)
        if r10.ok:
            r, parse, name = r10, parse_read_capacity10, "read_capacity10"
    if not r.ok:
        info.errors[name] = r.message
        return
    try:
        cap = parse(r.data)
    except ValueError as e:
        info.errors[name] = str(e)
        return
    info.block_size, info.blocks = cap.block_length, cap.last_lba + 1
    info.size_bytes = cap.size_bytes


def _logout(conn, timeout: float) -> None:
    """Log out at most ``timeout`` seconds, ignoring a failure: the probe's result does not
    depend on it, and the caller closes the connection anyway."""
    try:
        conn.logout(timeout)
    except (TransportError, LoginFailed):
        pass


def probe(host: str, port: int, config: LoginConfig, *, timeout: float = 15.0,
          warn=None, iface: Mapping[str, str] | None = None) -> ProbeResult:
    """Probe target ``config.target_name`` at ``host``:``port``, through ``iface``'s
    network device when it binds one (open-iscsi keys, as a login's).  ``timeout``:
    seconds per SCSI command and for the logout.  Raises the transport errors (login
    failures with their exit codes); after a logout, LoginFailed when REPORT LUNS fails and
    ProtocolFailure when its answer is malformed (exit code 5 both)."""
    conn = login(host, port, config, warn=warn, iface=iface)
    try:
        assert conn.success is not None
        run = conn.scsi
        rl = _retry_ua(run, 0, cdb_report_luns(), 4096, timeout)
        if rl.ok and len(rl.data) >= 4:  # the list is longer than asked: ask for all of
            need = int.from_bytes(rl.data[:4], "big") + 8  # it (scsi_report_lun_scan)
            if 4096 < need:
                if need > REPORT_LUNS_MAX and warn is not None:
                    warn(f"REPORT LUNS: {(need - 8) // 8} LUNs reported; the first "
                         f"{(REPORT_LUNS_MAX - 8) // 8} are probed")
                need = min(need, REPORT_LUNS_MAX)
                rl = _retry_ua(run, 0, cdb_report_luns(need), need, timeout)
        if not rl.ok:
            _logout(conn, timeout)
            raise LoginFailed(f"REPORT LUNS failed: {rl.message}")
        try:
            # each LUN once, in the target's order (a list that repeats one is probed once)
            luns = list(dict.fromkeys(decode_lun(raw) for raw in parse_report_luns(rl.data)))
        except ValueError as e:  # GOOD with fewer than 8 bytes
            _logout(conn, timeout)
            raise ProtocolFailure(f"REPORT LUNS answer: {e}") from None
        infos = []
        for lun in luns:
            info = LunInfo(lun)
            block = True  # unless INQUIRY says otherwise
            r = _retry_ua(run, lun, cdb_inquiry(), 255, timeout)
            if r.ok:
                try:
                    inq = parse_inquiry(r.data)
                    block = inq.device_type in BLOCK_DEVICE_TYPES
                    info.device_type, info.vendor = inq.device_type_name, inq.vendor
                    info.product, info.revision = inq.product, inq.revision
                except ValueError as e:
                    info.errors["inquiry"] = str(e)
            else:
                info.errors["inquiry"] = r.message
            r = _vpd(run, lun, 0x80, timeout)
            if r.ok:
                try:
                    info.serial = parse_unit_serial(r.data)
                except ValueError as e:
                    info.errors["vpd80"] = str(e)
            else:
                info.errors["vpd80"] = r.message
            r = _vpd(run, lun, 0x83, timeout)
            if r.ok:
                try:
                    info.designators = [str(d) for d in parse_designators(r.data)]
                except ValueError as e:
                    info.errors["vpd83"] = str(e)
            else:
                info.errors["vpd83"] = r.message
            if block:  # a controller (tgt's LUN 0) has no capacity: its refusal was shown
                _capacity(run, lun, info, timeout)  # as the LUN's error
            infos.append(info)
        _logout(conn, timeout)
        s = conn.success
        return ProbeResult(config.target_name or "", str(conn.endpoint), s.tsih,
                           dict(s.negotiated), infos)
    finally:
        conn.close()
