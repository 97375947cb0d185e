"""SCSI parsers against hand-written byte vectors (SPC-4, SBC-3) and the
CommandSession task machine against the fake target."""

from __future__ import annotations

import pytest

from iscsictl.protocol.login import LoginSuccess
from iscsictl.protocol.lun import decode_lun
from iscsictl.protocol.pdu import R2T, Reject, SCSIDataIn, SCSIResponse
from iscsictl.protocol.scsi import (
    CommandSession,
    ScsiError,
    cdb_inquiry,
    cdb_read_capacity16,
    cdb_report_luns,
    cdb_test_unit_ready,
    parse_designators,
    parse_inquiry,
    parse_read_capacity16,
    parse_report_luns,
    parse_sense,
    parse_unit_serial,
)

from .fake_target import FakeTarget, FFPHarness, Pair, make_machine

STD_INQUIRY = bytes.fromhex(
    "00 80 06 02 1f 00 00 02"  # direct access, RMB, SPC-4
    "4c 49 4f 2d 4f 52 47 20"  # "LIO-ORG "
    "64 69 73 6b 30 31 20 20 20 20 20 20 20 20 20 20"  # "disk01"
    "34 2e 30 20"  # "4.0 "
)


def test_cdbs():
    assert cdb_test_unit_ready() == bytes(6)
    assert cdb_inquiry() == bytes.fromhex("12 00 00 00 ff 00")
    assert cdb_inquiry(0x200, vpd_page=0x83) == bytes.fromhex("12 01 83 02 00 00")
    assert cdb_report_luns() == bytes.fromhex("a0 00 00 00 00 00 00 00 10 00 00 00")
    assert cdb_read_capacity16() == bytes.fromhex("9e 10 00000000 00000000 00000020 00 00")


def test_standard_inquiry():
    inq = parse_inquiry(STD_INQUIRY)
    assert (inq.peripheral_qualifier, inq.device_type, inq.removable, inq.version) == (0, 0, True, 6)
    assert (inq.vendor, inq.product, inq.revision) == ("LIO-ORG", "disk01", "4.0")
    assert inq.device_type_name == "Direct-Access"
    assert parse_inquiry(bytes([0x7F]) + STD_INQUIRY[1:]).device_type_name == "No Device"
    assert parse_inquiry(bytes([0x7F]) + STD_INQUIRY[1:]).peripheral_qualifier == 3
    with pytest.raises(ValueError):
        parse_inquiry(STD_INQUIRY[:35])


def test_vpd_unit_serial():
    assert parse_unit_serial(bytes.fromhex("00 80 00 08") + b"a1b2c3d4") == "a1b2c3d4"
    assert parse_unit_serial(bytes.fromhex("00 80 00 0a") + b"  SN42    ") == "SN42"
    with pytest.raises(ValueError):
        parse_unit_serial(bytes.fromhex("00 83 00 00"))


def test_a_targets_strings_never_carry_control_bytes():
    """INQUIRY's vendor, product, revision and the unit serial are SPC's printable ASCII:
    anything else (an escape sequence, a NUL, a byte over 0x7E) is shown as '?', and NUL
    padding is stripped like blanks."""
    inq = parse_inquiry(STD_INQUIRY[:8] + b"\xff\x1b[2J\0\0\0" + b"ab\x07cd".ljust(16, b"\0")
                        + b"1.0\0")
    assert (inq.vendor, inq.product, inq.revision) == ("??[2J", "ab?cd", "1.0")
    assert parse_unit_serial(bytes.fromhex("00 80 00 07") + b"\xff\0\x1b[2J") == "???[2J"
    assert parse_unit_serial(bytes.fromhex("00 80 00 06") + b"SN42\0\0") == "SN42"
    # a VPD 0x83 text designator too (it went to the terminal as the target sent it)
    (d,) = parse_designators(bytes.fromhex("00 83 00 14 02 01 00 10")
                             + b"LIO \x1b]0;x\x07\x1b[2J\xc3\xa9")
    assert str(d) == "t10:LIO ?]0;x??[2J\u00e9"


def test_vpd_device_identification():
    page = bytes.fromhex(
        "00 83 00 34"
        "01 03 00 10 60 01 40 5a bc de f0 12 34 56 78 9a bc de f0 12"  # binary NAA, LU
        "03 08 00 14") + b"iqn.2003-01.org.x:t\0" + bytes.fromhex(
        "01 14 00 04 00 00 00 01")  # relative target port, port association
    ds = parse_designators(page)
    assert [(d.code_set, d.association, d.designator_type) for d in ds] == [
        (1, 0, 3), (3, 0, 8), (1, 1, 4)]
    assert str(ds[0]) == "naa:6001405abcdef0123456789abcdef012"
    assert str(ds[1]) == "name:iqn.2003-01.org.x:t"
    with pytest.raises(ValueError):
        parse_designators(bytes.fromhex("00 80 00 00"))


def test_read_capacity16():
    data = bytes.fromhex("00 00 00 00 00 1f ff ff  00 00 10 00  00 00 80 00") + bytes(16)
    rc = parse_read_capacity16(data)
    assert rc.last_lba == 0x1FFFFF and rc.block_length == 4096 and rc.thin_provisioned
    assert rc.size_bytes == 0x200000 * 4096
    assert not parse_read_capacity16(data[:14] + b"\x00" + data[15:]).thin_provisioned
    with pytest.raises(ValueError):
        parse_read_capacity16(bytes(11))


def test_report_luns():
    data = bytes.fromhex("00 00 00 18 00 00 00 00"
                         "00 00 00 00 00 00 00 00"
                         "00 01 00 00 00 00 00 00"
                         "40 ff 00 00 00 00 00 00")
    luns = parse_report_luns(data)
    # 40 ff: flat space addressing, numbered as Linux numbers it (0x4000 + 255)
    assert [decode_lun(x) for x in luns] == [0, 1, 0x40FF]
    # LUN list length larger than what arrived: only whole entries
    assert len(parse_report_luns(data[:20])) == 1
    with pytest.raises(ValueError):
        parse_report_luns(bytes(7))


@pytest.mark.parametrize("data,key,asc,ascq,message", [
    (bytes.fromhex("70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00"), 5, 0x24, 0,
     "ILLEGAL REQUEST: invalid field in CDB"),
    (bytes.fromhex("f0 00 06 00 00 00 00 0a 00 00 00 00 3f 0e 00 00 00 00"), 6, 0x3F, 0x0E,
     "UNIT ATTENTION: reported luns data has changed"),
    (bytes.fromhex("72 02 04 01 00 00 00 00"), 2, 4, 1,
     "NOT READY: logical unit is in process of becoming ready"),
    (bytes.fromhex("73 03 11 00 00 00 00 00"), 3, 0x11, 0, "MEDIUM ERROR: ASC 0x11 ASCQ 0x00"),
])
def test_sense(data, key, asc, ascq, message):
    s = parse_sense(data)
    assert (s.sense_key, s.asc, s.ascq) == (key, asc, ascq)
    assert s.message == message


@pytest.mark.parametrize("data", [b"", b"\x70", bytes.fromhex("70 00 05 00"), bytes(18)])
def test_sense_unknown_or_short(data):
    assert parse_sense(data) is None


# ------------------------------------------------------------------------ CommandSession
def session(mode="chunk"):
    t = FakeTarget()
    o = Pair(make_machine(), t, mode).login()
    assert isinstance(o, LoginSuccess)
    return t, CommandSession(o.cmdsn, o.exp_statsn, o.max_cmdsn), FFPHarness(t, mode)


def run_cmd(t, cs, h, lun, cdb, length):
    itt, pdu = cs.command(lun, cdb, length)
    h.send([pdu])
    done = None
    for p in h.pdus():
        r = cs.receive_pdu(p)
        if r is not None:
            done = r
    assert done is not None and done[0] == itt
    return done[1]


@pytest.mark.parametrize("mode", ["chunk", "byte"])
def test_read_via_data_in_with_status(mode):
    t, cs, h = session(mode)
    r = run_cmd(t, cs, h, 0, cdb_inquiry(96), 96)
    assert r.ok and r.message == "GOOD"
    assert parse_inquiry(r.data).vendor == "FAKE"
    assert r.residual == 96 - 36
    r = run_cmd(t, cs, h, 0, cdb_read_capacity16(), 32)
    assert parse_read_capacity16(r.data).size_bytes == 2048 * 512
    r = run_cmd(t, cs, h, 0, cdb_report_luns(), 4096)
    assert [decode_lun(x) for x in parse_report_luns(r.data)] == [0, 1]
    r = run_cmd(t, cs, h, 0, cdb_inquiry(255, vpd_page=0x80), 255)
    assert parse_unit_serial(r.data) == "SN000042"
    assert t.violations == [] and cs.cmdsn == 1 + 4
    assert cs.exp_statsn == t.statsn


def test_scsi_response_with_sense():
    t, cs, h = session()
    r = run_cmd(t, cs, h, 1, cdb_test_unit_ready(), 0)
    assert not r.ok and r.status == 0x02
    assert r.sense.message == "ILLEGAL REQUEST: invalid command operation code"
    assert r.message == "CHECK CONDITION: ILLEGAL REQUEST: invalid command operation code"
    assert t.scsi_commands[0].lun == bytes([0, 1, 0, 0, 0, 0, 0, 0])


def test_target_failure_message():
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_test_unit_ready(), 0)
    itt_r, r = cs.receive_pdu(SCSIResponse(itt=itt, response=1, statsn=1))
    assert r.message == "target failure (iSCSI response 0x01)"


def test_task_machine_errors():
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(8), 8)
    with pytest.raises(ScsiError, match="unknown ITT"):
        cs.receive_pdu(SCSIDataIn(itt=itt + 1, data=b"x"))
    with pytest.raises(ScsiError, match="past"):
        cs.receive_pdu(SCSIDataIn(itt=itt, buffer_offset=4, data=b"12345"))
    with pytest.raises(ScsiError, match="unknown ITT"):
        cs.receive_pdu(SCSIResponse(itt=99))
    with pytest.raises(ScsiError, match="rejected"):
        cs.receive_pdu(Reject(reason=4))


def test_command_sends_the_lun_bytes_report_luns_gave():
    """A LUN number from REPORT LUNS goes back as the very 8 bytes reported: LIO's
    LUN 256 (01 00, the kernel's int_to_scsilun) and tgt's (41 00, flat space)."""
    cs = CommandSession(1, 1)
    for entry in ("0100000000000000", "4100000000000000", "00ff000000000000",
                  "c101000000000000"):
        field = bytes.fromhex(entry)
        _, pdu = cs.command(decode_lun(field), cdb_test_unit_ready(), 0)
        assert pdu.lun == field
    _, pdu = cs.command(256, cdb_test_unit_ready(), 0)
    assert pdu.lun == bytes.fromhex("0100000000000000")


@pytest.mark.parametrize("pieces,match", [
    ([(0, b"AAAA"), (8, b"BBBBBBBB")], "hole at buffer offset 4"),
    ([(8, b"BBBBBBBB")], "hole at buffer offset 0"),
    ([(0, b"AAAAAAAA"), (4, b"BBBBBBBB")], "overlapping data at buffer offset 4"),
    ([(0, b"AAAA"), (0, b"BBBB")], "repeats buffer offset 0"),
])
def test_data_in_must_tile_the_buffer(pieces, match):
    """Data-In that leaves a hole, overlaps or repeats an offset is an error, never a
    GOOD result with bytes at the wrong offsets (§11.7.5); the task is dropped."""
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(16), 16)
    with pytest.raises(ScsiError, match=match):
        for i, (offset, data) in enumerate(pieces):
            last = i == len(pieces) - 1
            cs.receive_pdu(SCSIDataIn(final=last, status_present=last, itt=itt, datasn=i,
                                      buffer_offset=offset, statsn=1, data=data))
    if match.startswith("repeats"):
        return  # refused on arrival: the task is still open
    with pytest.raises(ScsiError, match="unknown ITT"):
        cs.receive_pdu(SCSIResponse(itt=itt))


@pytest.mark.parametrize("sns,match", [
    ((0, 2), "has DataSN 2, expected 1"),
    ((1,), "has DataSN 1, expected 0"),
    ((0, 0), "has DataSN 0, expected 1"),
])
def test_data_in_datasn_must_count_up(sns, match):
    """DataSN counts each command's Data-In from 0 (§11.7.4): a gap means one was lost
    (its bytes may have landed nowhere, or a later one repeats them), an error at once."""
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(12), 12)
    with pytest.raises(ScsiError, match=match):
        for i, sn in enumerate(sns):
            cs.receive_pdu(SCSIDataIn(final=False, itt=itt, datasn=sn, buffer_offset=4 * i,
                                      data=b"ABCD"))


def test_data_in_short_of_the_buffer_and_empty_pieces():
    """Less data than asked (an underflow) is whole; an empty Data-In adds nothing,
    even at an offset already taken."""
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(96), 96)
    cs.receive_pdu(SCSIDataIn(final=False, itt=itt, buffer_offset=0, data=b"1234"))
    cs.receive_pdu(SCSIDataIn(final=False, itt=itt, datasn=1, buffer_offset=0, data=b""))
    _, r = cs.receive_pdu(SCSIDataIn(itt=itt, datasn=2, buffer_offset=4, status_present=True,
                                     residual_underflow=True, residual_count=88, data=b"5678"))
    assert r.ok and r.data == b"12345678" and r.residual == 88


def test_data_in_out_of_order_is_reassembled():
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(8), 8)
    assert cs.receive_pdu(SCSIDataIn(final=False, itt=itt, buffer_offset=4, data=b"5678")) is None
    _, r = cs.receive_pdu(SCSIDataIn(itt=itt, datasn=1, buffer_offset=0, status_present=True,
                                     statsn=7, max_cmdsn=40, data=b"1234"))
    assert r.data == b"12345678" and cs.exp_statsn == 8 and cs.max_cmdsn == 40


def test_command_window_follows_serial_arithmetic():
    cs = CommandSession(10, 1, max_cmdsn=40)
    itt, _ = cs.command(0, cdb_inquiry(8), 8)
    # an invalid window (MaxCmdSN < ExpCmdSN - 1) is ignored
    cs.receive_pdu(SCSIDataIn(final=False, itt=itt, exp_cmdsn=50, max_cmdsn=20, data=b"1234"))
    assert cs.max_cmdsn == 40
    # a stale (smaller) MaxCmdSN does not shrink the window
    cs.receive_pdu(SCSIDataIn(final=False, itt=itt, datasn=1, buffer_offset=4, exp_cmdsn=11,
                              max_cmdsn=30, data=b"5"))
    assert cs.max_cmdsn == 40
    # MaxCmdSN = ExpCmdSN - 1 (window closed) is valid; a larger edge moves it, across the wrap
    cs.max_cmdsn = 0xFFFFFFF0
    cs.receive_pdu(SCSIResponse(itt=itt, exp_cmdsn=0xFFFFFFF8, max_cmdsn=0x00000005, statsn=3))
    assert cs.max_cmdsn == 5


def test_an_r2t_is_an_error_at_once():
    """The probe sends reads only: an R2T is a broken target, said at once, not waited on
    until the command's timeout."""
    cs = CommandSession(1, 1)
    itt, _ = cs.command(0, cdb_inquiry(8), 8)
    with pytest.raises(ScsiError, match="R2T for ITT 0x00000001"):
        cs.receive_pdu(R2T(itt=itt, desired_data_transfer_length=8))
