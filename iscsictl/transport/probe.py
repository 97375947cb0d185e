"""Userspace probe of a target's LUNs: log in over a plain TCP socket (Normal session, CHAP from
the node record), REPORT LUNS, then per LUN standard INQUIRY, VPD 0x80 (unit serial), VPD 0x83
(designators) and READ CAPACITY(16), then Logout.  No kernel module, no root.

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
from ..protocol.scsi import (ScsiResult, cdb_inquiry, cdb_read_capacity16, cdb_report_luns,
                             parse_designators, parse_inquiry, parse_read_capacity16,
                             parse_report_luns, parse_unit_serial)
from .errors import LoginFailed, ProtocolFailure, TransportError
from .tcp import login

__all__ = ["LunInfo", "ProbeResult", "probe", "UA_RETRIES"]

UA_RETRIES = 5
#: the longest REPORT LUNS answer asked for: 16383 LUNs (the kernel's
#: max_scsi_report_luns), their 8 bytes each and the 8-byte header
REPORT_LUNS_MAX = 8 * 16383 + 8
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
            r = _retry_ua(run, lun, cdb_inquiry(), 255, timeout)
            if r.ok:
                try:
                    inq = parse_inquiry(r.data)
                    info.device_type, info.vendor = inq.device_type_name, inq.vendor
                    info.product, info.revision = inq.product, inq.revision
                except ValueError as e:
                    info.errors["inquiry"] = str(e)
            else:
                info.errors["inquiry"] = r.message
            r = _retry_ua(run, lun, cdb_inquiry(255, 0x80), 255, timeout)
            if r.ok:
                try:
                    info.serial = parse_unit_serial(r.data)
                except ValueError as e:
                    info.errors["vpd80"] = str(e)
            else:
                info.errors["vpd80"] = r.message
            r = _retry_ua(run, lun, cdb_inquiry(255, 0x83), 255, timeout)
            if r.ok:
                try:
                    info.designators = [str(d) for d in parse_designators(r.data)]
                except ValueError as e:
                    info.errors["vpd83"] = str(e)
            else:
                info.errors["vpd83"] = r.message
            r = _retry_ua(run, lun, cdb_read_capacity16(), 32, timeout)
            if r.ok:
                try:
                    cap = parse_read_capacity16(r.data)
                    info.block_size, info.blocks = cap.block_length, cap.last_lba + 1
                    info.size_bytes = cap.size_bytes
                except ValueError as e:
                    info.errors["read_capacity16"] = str(e)
            else:
                info.errors["read_capacity16"] = r.message
            infos.append(info)
        _logout(conn, timeout)
        s = conn.success
        return ProbeResult(config.target_name or "", str(conn.endpoint), s.tsih,
                           dict(s.negotiated), infos)
    finally:
        conn.close()
