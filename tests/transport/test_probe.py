"""transport.probe against a scripted logged-in connection: which LUNs it asks and how it
numbers them, and a REPORT LUNS it cannot use (typed error, after a logout)."""

from types import SimpleNamespace

import pytest

from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.lun import encode_lun
from iscsictl.protocol.scsi import ScsiResult, parse_sense
from iscsictl.transport import probe as probe_mod
from iscsictl.transport.errors import LoginFailed, ProtocolFailure

TARGET = "iqn.2003-01.org.example:t1"
# CHECK CONDITION, ILLEGAL REQUEST / invalid command operation code
ILLEGAL = ScsiResult(0x02, sense=parse_sense(bytes.fromhex("70 00 05 00 00 00 00 0a"
                                                           "00 00 00 00 20 00 00 00 00 00")))


class FakeConnection:
    """What probe() uses of a logged-in transport.tcp.Connection; answers REPORT LUNS with
    ``report`` and every other command with ILLEGAL REQUEST, and records the calls."""

    def __init__(self, report: ScsiResult):
        self.report = report
        self.success = SimpleNamespace(tsih=7, negotiated={"HeaderDigest": "None"})
        self.endpoint = "192.0.2.1:3260"
        self.commands: list[tuple[int, int]] = []  # (LUN number, CDB opcode)
        self.calls: list[str] = []

    def scsi(self, lun, cdb, read_length, timeout):
        self.commands.append((lun, cdb[0]))
        return self.report if cdb[0] == 0xA0 else ILLEGAL

    def logout(self, timeout):
        self.calls.append("logout")

    def close(self):
        self.calls.append("close")


def run_probe(monkeypatch, report: ScsiResult):
    conn = FakeConnection(report)
    monkeypatch.setattr(probe_mod, "login", lambda host, port, config, warn=None, iface=None: conn)
    config = LoginConfig(initiator_name="iqn.2005-03.org.open-iscsi:host1", target_name=TARGET)
    return conn, lambda: probe_mod.probe("192.0.2.1", 3260, config, timeout=1.0)


def report_luns(*entries: str) -> ScsiResult:
    body = b"".join(bytes.fromhex(e) for e in entries)
    return ScsiResult(0, len(body).to_bytes(4, "big") + bytes(4) + body)


def test_luns_are_numbered_as_linux_and_addressed_as_reported(monkeypatch):
    """LIO's LUN 256 (01 00) is probed, not skipped; tgt's LUN 256 (flat space, 41 00) is
    16640, as Linux shows it; each command carries the bytes REPORT LUNS gave."""
    entries = ("0000000000000000", "0100000000000000", "4100000000000000")
    conn, run = run_probe(monkeypatch, report_luns(*entries))
    res = run()
    assert [info.lun for info in res.luns] == [0, 256, 16640]
    asked = sorted({lun for lun, op in conn.commands if op != 0xA0})
    assert [encode_lun(n).hex() for n in asked] == list(entries)
    assert "ILLEGAL REQUEST" in res.luns[1].errors["inquiry"]
    assert conn.calls == ["logout", "close"]


@pytest.mark.parametrize("data", [b"", bytes(4), bytes(7)])
def test_report_luns_shorter_than_its_header(monkeypatch, data):
    """GOOD with fewer than 8 bytes: a typed ProtocolFailure (exit code 5), after a
    logout, not a ValueError escaping as an unexpected error."""
    conn, run = run_probe(monkeypatch, ScsiResult(0, data))
    with pytest.raises(ProtocolFailure, match="REPORT LUNS") as ei:
        run()
    assert ei.value.exit_code == 5
    assert conn.calls == ["logout", "close"]


def test_report_luns_failure_logs_out(monkeypatch):
    conn, run = run_probe(monkeypatch, ILLEGAL)
    with pytest.raises(LoginFailed, match="REPORT LUNS failed: CHECK CONDITION"):
        run()
    assert conn.calls == ["logout", "close"]


def test_a_lun_the_report_repeats_is_probed_once(monkeypatch):
    conn, run = run_probe(monkeypatch, report_luns(*(["0000000000000000"] * 500
                                                     + ["0001000000000000"])))
    assert [info.lun for info in run().luns] == [0, 1]
    assert [lun for lun, _ in conn.commands if lun == 0].count(0) == \
        [lun for lun, _ in conn.commands if lun == 1].count(1) + 1  # + REPORT LUNS


def test_a_lun_list_longer_than_asked_is_asked_for_whole(monkeypatch):
    """600 LUNs do not fit 4096 bytes: REPORT LUNS is sent again with the length the
    target gave (the kernel's scsi_report_lun_scan), so that every LUN is probed (before:
    511, the rest dropped without a word)."""
    full = report_luns(*(encode_lun(n).hex() for n in range(600)))

    class Truncating(FakeConnection):
        def scsi(self, lun, cdb, read_length, timeout):
            self.commands.append((lun, cdb[0]))
            if cdb[0] != 0xA0:
                return ILLEGAL
            self.calls.append(f"REPORT LUNS {int.from_bytes(cdb[6:10], 'big')}")
            return ScsiResult(0, full.data[:read_length])
    conn = Truncating(full)
    monkeypatch.setattr(probe_mod, "login", lambda host, port, config, warn=None, iface=None: conn)
    config = LoginConfig(initiator_name="iqn.2005-03.org.open-iscsi:host1", target_name=TARGET)
    res = probe_mod.probe("192.0.2.1", 3260, config, timeout=1.0)
    assert [info.lun for info in res.luns] == list(range(600))
    assert conn.calls[:2] == ["REPORT LUNS 4096", f"REPORT LUNS {600 * 8 + 8}"]


def test_a_userspace_login_never_takes_an_isid_a_kernel_session_may_hold():
    """--probe and discovery log in with a Random-format ISID (RFC 7143 §11.12.5), fresh
    each time: the daemon's and iscsid's sessions are OUI-format 00:02:3d + a counter, and
    the same ISID, initiator and portal group would reinstate (§6.3.5) the host's first
    session, which the target then drops (before: 00023d000001 every time)."""
    from iscsictl.protocol.names import ISID, ISIDFormat
    from iscsictl.transport.tcp import new_isid

    isids = {new_isid() for _ in range(50)}
    assert len(isids) == 50
    assert {ISID(i).format for i in isids} == {ISIDFormat.RANDOM}


class Disk(FakeConnection):
    """One LUN answering INQUIRY from ``pages`` ({(evpd, page): data}, cut at the
    allocation length as SPC-4 §4.2.5.6 says) and READ CAPACITY(16)/(10) from ``rc16`` and
    ``rc10`` (None: ILLEGAL REQUEST); the allocation lengths asked are in ``calls``."""

    def __init__(self, pages, rc16=None, rc10=None, luns=1):
        super().__init__(report_luns(*(encode_lun(n).hex() for n in range(luns))))
        self.pages, self.rc16, self.rc10 = pages, rc16, rc10

    def scsi(self, lun, cdb, read_length, timeout):
        self.commands.append((lun, cdb[0]))
        if cdb[0] == 0xA0:
            self.calls.append(f"REPORT LUNS {int.from_bytes(cdb[6:10], 'big')}")
            return ScsiResult(0, self.report.data[:read_length])
        if cdb[0] == 0x12:
            alloc = int.from_bytes(cdb[3:5], "big")
            self.calls.append(f"INQUIRY {cdb[2]:#x} {alloc}")
            data = self.pages.get((cdb[1] & 1, cdb[2]))
            return ILLEGAL if data is None else ScsiResult(0, data[:alloc])
        data = {0x9E: self.rc16, 0x25: self.rc10}.get(cdb[0])
        return ILLEGAL if data is None else ScsiResult(0, data[:read_length])


def _probe(monkeypatch, conn, warnings=None):
    monkeypatch.setattr(probe_mod, "login", lambda host, port, config, warn=None, iface=None: conn)
    config = LoginConfig(initiator_name="iqn.2005-03.org.open-iscsi:host1", target_name=TARGET)
    return probe_mod.probe("192.0.2.1", 3260, config, timeout=1.0,
                           warn=None if warnings is None else warnings.append)


INQ = bytes((0, 0, 6, 2, 91, 0, 0, 0)) + b"LIO-ORG " + b"disk0".ljust(16) + b"4.0 "


def test_a_vpd_page_longer_than_255_bytes_is_asked_for_again_whole(monkeypatch):
    """LIO's device identification page passes 255 bytes with a long IQN: the probe asks
    again with the page's length (Linux's scsi_get_vpd_buf), so the SCSI name designator is
    whole (before: printed cut off, as if whole); a page that fits is asked once."""
    iqn = b"iqn.2003-01.org.linux-iscsi.storage-array-01.x8664:sn.0123456789abcdef0123456789"

    def desig(code_set, dtype, value, assoc=0):
        return bytes((code_set, (assoc << 4) | dtype, 0, len(value))) + value
    body = (desig(1, 3, bytes.fromhex("6001405abcdef0123456789abcdef012"))
            + desig(2, 1, b"LIO-ORG " + b"0123456789abcdef0123456789abcdef0123")
            + desig(1, 4, bytes(4), 1) + desig(1, 5, bytes(4), 1) + desig(1, 6, bytes(4))
            + desig(3, 8, (iqn + b",t,0x0001").ljust(96, b"\0"), 1)
            + desig(3, 8, iqn.ljust(84, b"\0"), 2))
    page83 = bytes((0, 0x83)) + len(body).to_bytes(2, "big") + body
    conn = Disk({(0, 0): INQ, (1, 0x80): bytes((0, 0x80, 0, 4)) + b"ab12", (1, 0x83): page83},
                rc16=(2047).to_bytes(8, "big") + (512).to_bytes(4, "big") + bytes(20))
    info, = _probe(monkeypatch, conn).luns
    assert len(page83) > 255 and info.errors == {}
    assert info.designators[-1] == f"name:{iqn.decode()}"
    assert [c for c in conn.calls if c.startswith("INQUIRY")] == [
        "INQUIRY 0x0 255", "INQUIRY 0x80 255", "INQUIRY 0x83 255",
        f"INQUIRY 0x83 {len(page83)}"]
    from iscsictl.protocol.scsi import parse_designators
    cut = parse_designators(page83[:255])  # what a cut page holds: whole designators only
    assert len(cut) == 6 and all(str(d) != f"name:{iqn.decode()}" for d in cut)


def test_an_sbc2_disk_without_read_capacity16_is_sized_by_read_capacity10(monkeypatch):
    """A disk that refuses READ CAPACITY(16) with ILLEGAL REQUEST (SBC-2: only (10) is
    mandatory) is sized by READ CAPACITY(10), as Linux's sd_read_capacity falls back
    (before: no size, and an error line)."""
    conn = Disk({(0, 0): INQ}, rc10=(2097151).to_bytes(4, "big") + (512).to_bytes(4, "big"))
    info, = _probe(monkeypatch, conn).luns
    assert (info.blocks, info.block_size, info.size_bytes) == (2097152, 512, 1 << 30)
    assert "read_capacity16" not in info.errors and "read_capacity10" not in info.errors
    assert [op for _, op in conn.commands if op in (0x9E, 0x25)] == [0x9E, 0x25]
    info, = _probe(monkeypatch, Disk({(0, 0): INQ})).luns  # neither: (10)'s failure said
    assert info.size_bytes is None and "invalid command operation code" in \
        info.errors["read_capacity16"]


def test_more_than_16383_luns_are_all_probed(monkeypatch):
    """A target that reports 20000 LUNs: all are probed (Linux asks for the length the
    target reports; before: the first 16383, the rest dropped without a word)."""
    warnings = []
    conn = Disk({}, luns=20000)
    res = _probe(monkeypatch, conn, warnings)
    assert len(res.luns) == 20000 and res.luns[-1].lun == 19999 and warnings == []
    assert conn.calls[:2] == ["REPORT LUNS 4096", f"REPORT LUNS {20000 * 8 + 8}"]
    monkeypatch.setattr(probe_mod, "REPORT_LUNS_MAX", 8 * 5000 + 8)  # a longer list: said
    res = _probe(monkeypatch, Disk({}, luns=20000), warnings)
    assert len(res.luns) == 5000 and warnings == [
        "REPORT LUNS: 20000 LUNs reported; the first 5000 are probed"]
