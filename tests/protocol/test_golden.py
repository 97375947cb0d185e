"""Golden bytes: one or more PDUs per opcode, written out by hand from the
RFC 7143 §11 figures, field by field (never produced by the code under test).

Each row is four bytes of the BHS (or of an AHS / data segment) with the
figure's field names.  The typed PDU must encode to exactly these bytes, and
the bytes must decode (through both implementations) to the typed PDU.
"""

from __future__ import annotations

import pytest

from iscsictl.protocol import pdu as P
from iscsictl.protocol.constants import Opcode


def H(*rows: str) -> bytes:
    """Hex rows with '#' comments -> bytes."""
    return bytes.fromhex("".join(r.split("#", 1)[0] for r in rows))


ZERO16 = "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"

# --- §11.18 NOP-Out ---------------------------------------------------------
NOP_OUT = H(
    "40 80 00 00",  # .=0 I=1 opcode 0x00 | F=1 | reserved | reserved
    "00 00 00 05",  # TotalAHSLength 0 | DataSegmentLength 5
    "00 01 00 00 00 00 00 00",  # LUN 1 (peripheral addressing)
    "11 22 33 44",  # Initiator Task Tag
    "ff ff ff ff",  # Target Transfer Tag (none)
    "00 00 00 10",  # CmdSN
    "00 00 00 20",  # ExpStatSN
    ZERO16,  # bytes 32-47 reserved
    "70 69 6e 67 21 00 00 00",  # ping data "ping!" + 3 pad bytes
)
NOP_OUT_PDU = P.NOPOut(immediate=True, final=True, lun=bytes.fromhex("0001000000000000"),
                       itt=0x11223344, ttt=0xFFFFFFFF, cmdsn=0x10, exp_statsn=0x20,
                       data=b"ping!")

# --- §11.3 SCSI Command --------------------------------------------------------
SCSI_CMD = H(
    "01 c1 00 00",  # I=0 opcode 0x01 | F=1 R=1 W=0 ATTR=1 (simple) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # LUN 0
    "00 00 00 14",  # Initiator Task Tag
    "00 00 04 00",  # Expected Data Transfer Length 1024
    "00 00 00 14",  # CmdSN
    "00 00 00 18",  # ExpStatSN
    "28 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00",  # CDB: READ(10), 2 blocks
)
SCSI_CMD_PDU = P.SCSICommand(final=True, read=True, attr=1, itt=0x14,
                             expected_data_transfer_length=1024, cmdsn=0x14,
                             exp_statsn=0x18, cdb=bytes.fromhex("28000000000000000200"))
# (a 10-byte CDB is sent zero-padded to 16; it decodes as 16 bytes)
SCSI_CMD_DECODED = P.SCSICommand(final=True, read=True, attr=1, itt=0x14,
                                 expected_data_transfer_length=1024, cmdsn=0x14,
                                 exp_statsn=0x18, cdb=bytes.fromhex("28000000000000000200") + bytes(6))

# 32-byte CDB (Extended CDB AHS, §11.2.2.3) and a bidirectional command
# (Expected Bidirectional Read-Data Length AHS, §11.2.2.4), with write data.
SCSI_CMD_AHS = H(
    "41 e1 00 00",  # I=1 opcode 0x01 | F=1 R=1 W=1 ATTR=1 | reserved
    "07 00 00 02",  # TotalAHSLength 7 words (28 bytes) | DataSegmentLength 2
    "00 07 00 00 00 00 00 00",  # LUN 7
    "de ad be ef",  # Initiator Task Tag
    "00 00 02 00",  # Expected Data Transfer Length 512
    "00 00 00 01",  # CmdSN
    "00 00 00 02",  # ExpStatSN
    "7f 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",  # CDB bytes 0-15
    "00 11 01 00",  # AHSLength 17 (CDB length - 15) | AHSType 1 (Extended CDB) | reserved
    "10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f",  # CDB bytes 16-31
    "00 05 02 00",  # AHSLength 5 | AHSType 2 (Expected Bidi Read-Data Length) | reserved
    "00 00 10 00",  # Expected Bidirectional Read-Data Length 4096
    "ab cd 00 00",  # data segment: 2 bytes + 2 pad bytes
)
SCSI_CMD_AHS_PDU = P.SCSICommand(immediate=True, final=True, read=True, write=True, attr=1,
                                 lun=bytes.fromhex("0007000000000000"), itt=0xDEADBEEF,
                                 expected_data_transfer_length=512, cmdsn=1, exp_statsn=2,
                                 cdb=bytes([0x7F]) + bytes(range(1, 32)),
                                 expected_bidi_read_length=4096, data=b"\xab\xcd")

# --- §11.5 Task Management Function Request ----------------------------------------
TMF_REQ = H(
    "42 81 00 00",  # I=1 opcode 0x02 | F=1 Function 1 (ABORT TASK) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 02 00 00 00 00 00 00",  # LUN 2
    "00 00 00 30",  # Initiator Task Tag
    "00 00 00 2a",  # Referenced Task Tag
    "00 00 01 00",  # CmdSN
    "00 00 02 00",  # ExpStatSN
    "00 00 00 ff",  # RefCmdSN
    "00 00 00 03",  # ExpDataSN
    "00 00 00 00 00 00 00 00",  # bytes 40-47 reserved
)
TMF_REQ_PDU = P.TaskManagementRequest(immediate=True, final=True, function=1,
                                      lun=bytes.fromhex("0002000000000000"), itt=0x30,
                                      referenced_task_tag=0x2A, cmdsn=0x100, exp_statsn=0x200,
                                      ref_cmdsn=0xFF, exp_datasn=3)

# --- §11.12 Login Request -------------------------------------------------------
LOGIN_TEXT = b"SessionType=Discovery\x00"  # 22 bytes
LOGIN_REQ = H(
    "43 87 00 00",  # I=1 opcode 0x03 | T=1 C=0 CSG=1 NSG=3 | Version-max 0 | Version-min 0
    "00 00 00 16",  # TotalAHSLength 0 | DataSegmentLength 22
    "00 02 3d 00 00 01",  # ISID: T=00 (OUI) OUI 00:02:3d, qualifier 1
    "00 00",  # TSIH 0 (new session)
    "00 00 00 00",  # Initiator Task Tag
    "00 01 00 00",  # CID 1 | reserved
    "00 00 00 01",  # CmdSN
    "00 00 00 00",  # ExpStatSN
    ZERO16,  # bytes 32-47 reserved
) + LOGIN_TEXT + H("00 00")  # data segment, 2 pad bytes
LOGIN_REQ_PDU = P.LoginRequest(transit=True, csg=1, nsg=3, isid=bytes.fromhex("00023d000001"),
                               cid=1, cmdsn=1, data=LOGIN_TEXT)

# --- §11.10 Text Request -------------------------------------------------------
TEXT_REQ_TEXT = b"SendTargets=All\x00"  # 16 bytes
TEXT_REQ = H(
    "44 80 00 00",  # I=1 opcode 0x04 | F=1 C=0 | reserved
    "00 00 00 10",  # TotalAHSLength 0 | DataSegmentLength 16
    "00 00 00 00 00 00 00 00",  # LUN
    "00 00 00 01",  # Initiator Task Tag
    "ff ff ff ff",  # Target Transfer Tag
    "00 00 00 01",  # CmdSN
    "00 00 00 01",  # ExpStatSN
    ZERO16,  # reserved
) + TEXT_REQ_TEXT
TEXT_REQ_PDU = P.TextRequest(immediate=True, final=True, itt=1, ttt=0xFFFFFFFF, cmdsn=1,
                             exp_statsn=1, data=TEXT_REQ_TEXT)

# --- §11.7 SCSI Data-Out --------------------------------------------------------
DATA_OUT = H(
    "05 80 00 00",  # opcode 0x05 | F=1 | reserved
    "00 00 00 03",  # TotalAHSLength 0 | DataSegmentLength 3
    "00 05 00 00 00 00 00 00",  # LUN 5
    "00 00 00 0a",  # Initiator Task Tag
    "00 00 00 0b",  # Target Transfer Tag
    "00 00 00 00",  # reserved
    "00 00 00 0c",  # ExpStatSN
    "00 00 00 00",  # reserved
    "00 00 00 02",  # DataSN
    "00 00 20 00",  # Buffer Offset 8192
    "00 00 00 00",  # reserved
    "61 62 63 00",  # data "abc" + 1 pad byte
)
DATA_OUT_PDU = P.SCSIDataOut(final=True, lun=bytes.fromhex("0005000000000000"), itt=0xA,
                             ttt=0xB, exp_statsn=0xC, datasn=2, buffer_offset=0x2000,
                             data=b"abc")

# --- §11.14 Logout Request -------------------------------------------------------
LOGOUT_REQ = H(
    "46 81 00 00",  # I=1 opcode 0x06 | F=1 Reason 1 (close the connection) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # reserved
    "00 00 00 77",  # Initiator Task Tag
    "00 01 00 00",  # CID 1 | reserved
    "00 00 00 42",  # CmdSN
    "00 00 00 43",  # ExpStatSN
    ZERO16,  # reserved
)
LOGOUT_REQ_PDU = P.LogoutRequest(immediate=True, reason_code=1, itt=0x77, cid=1, cmdsn=0x42,
                                 exp_statsn=0x43)

# --- §11.16 SNACK Request --------------------------------------------------------
SNACK = H(
    "10 81 00 00",  # opcode 0x10 | F=1 Type 1 (Status SNACK) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # LUN (reserved for Status SNACK)
    "ff ff ff ff",  # Initiator Task Tag (reserved)
    "ff ff ff ff",  # Target Transfer Tag or SNACK Tag
    "00 00 00 00",  # reserved
    "00 00 00 99",  # ExpStatSN
    "00 00 00 00 00 00 00 00",  # reserved
    "00 00 00 05",  # BegRun
    "00 00 00 02",  # RunLength
)
SNACK_PDU = P.SNACKRequest(type=1, exp_statsn=0x99, begrun=5, runlength=2)

# --- §11.19 NOP-In ------------------------------------------------------------
NOP_IN = H(
    "20 80 00 00",  # opcode 0x20 | F=1 | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # LUN
    "ff ff ff ff",  # Initiator Task Tag (unsolicited)
    "00 00 01 00",  # Target Transfer Tag (answer wanted)
    "00 00 00 07",  # StatSN
    "00 00 00 08",  # ExpCmdSN
    "00 00 00 28",  # MaxCmdSN
    "00 00 00 00 00 00 00 00 00 00 00 00",  # bytes 36-47 reserved
)
NOP_IN_PDU = P.NOPIn(itt=0xFFFFFFFF, ttt=0x100, statsn=7, exp_cmdsn=8, max_cmdsn=0x28)

# --- §11.4 SCSI Response ---------------------------------------------------------
SENSE = H("70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00")  # fixed sense, ILLEGAL REQUEST
SCSI_RSP = H(
    "21 82 00 02",  # opcode 0x21 | 1 o=0 u=0 O=0 U=1 | Response 0 | Status 0x02 CHECK CONDITION
    "00 00 00 14",  # TotalAHSLength 0 | DataSegmentLength 20
    "00 00 00 00 00 00 00 00",  # reserved
    "00 00 00 20",  # Initiator Task Tag
    "00 00 00 00",  # SNACK Tag
    "00 00 00 30",  # StatSN
    "00 00 00 31",  # ExpCmdSN
    "00 00 00 50",  # MaxCmdSN
    "00 00 00 00",  # ExpDataSN
    "00 00 00 00",  # Bidirectional Read Residual Count
    "00 00 02 00",  # Residual Count 512
    "00 12",  # data: SenseLength 18
) + SENSE  # sense data (2 + 18 = 20 bytes, no padding)
SCSI_RSP_PDU = P.SCSIResponse(residual_underflow=True, status=2, itt=0x20, statsn=0x30,
                              exp_cmdsn=0x31, max_cmdsn=0x50, residual_count=0x200,
                              data=b"\x00\x12" + SENSE)

# --- §11.6 Task Management Function Response --------------------------------------
TMF_RSP = H(
    "22 80 01 00",  # opcode 0x22 | F=1 | Response 1 (task does not exist) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # reserved
    "00 00 00 30",  # Initiator Task Tag
    "00 00 00 00",  # reserved
    "00 00 00 44",  # StatSN
    "00 00 01 01",  # ExpCmdSN
    "00 00 01 40",  # MaxCmdSN
    "00 00 00 00 00 00 00 00 00 00 00 00",  # reserved
)
TMF_RSP_PDU = P.TaskManagementResponse(response=1, itt=0x30, statsn=0x44, exp_cmdsn=0x101,
                                       max_cmdsn=0x140)

# --- §11.13 Login Response -------------------------------------------------------
LOGIN_RSP_TEXT = b"TargetPortalGroupTag=1\x00"  # 23 bytes
LOGIN_RSP = H(
    "23 87 00 00",  # opcode 0x23 | T=1 C=0 CSG=1 NSG=3 | Version-max 0 | Version-active 0
    "00 00 00 17",  # TotalAHSLength 0 | DataSegmentLength 23
    "00 02 3d 00 00 01",  # ISID
    "00 12",  # TSIH 0x12
    "00 00 00 00",  # Initiator Task Tag
    "00 00 00 00",  # reserved
    "00 00 00 7c",  # StatSN
    "00 00 00 01",  # ExpCmdSN
    "00 00 00 01",  # MaxCmdSN
    "00 00",  # Status-Class 0 | Status-Detail 0 (success)
    "00 00 00 00 00 00 00 00 00 00",  # bytes 38-47 reserved
) + LOGIN_RSP_TEXT + H("00")  # 1 pad byte
LOGIN_RSP_PDU = P.LoginResponse(transit=True, csg=1, nsg=3, isid=bytes.fromhex("00023d000001"),
                                tsih=0x12, statsn=0x7C, exp_cmdsn=1, max_cmdsn=1,
                                data=LOGIN_RSP_TEXT)
LOGIN_RSP_FAIL = H(
    "23 00 00 00",  # opcode 0x23 | T=0 C=0 CSG=0 NSG=0 | versions 0
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 02 3d 00 00 01 00 00",  # ISID | TSIH 0
    "00 00 00 05",  # Initiator Task Tag
    "00 00 00 00",  # reserved
    "00 00 00 01",  # StatSN
    "00 00 00 02",  # ExpCmdSN
    "00 00 00 03",  # MaxCmdSN
    "02 01",  # Status-Class 2 (initiator error) | Status-Detail 1 (authentication failure)
    "00 00 00 00 00 00 00 00 00 00",  # reserved
)
LOGIN_RSP_FAIL_PDU = P.LoginResponse(isid=bytes.fromhex("00023d000001"), itt=5, statsn=1,
                                     exp_cmdsn=2, max_cmdsn=3, status_class=2, status_detail=1)

# --- §11.11 Text Response ------------------------------------------------------
TEXT_RSP_TEXT = b"TargetName=iqn.2003-01.org.x:t1\x00"  # 32 bytes
TEXT_RSP = H(
    "24 80 00 00",  # opcode 0x24 | F=1 C=0 | reserved
    "00 00 00 20",  # TotalAHSLength 0 | DataSegmentLength 32
    "00 00 00 00 00 00 00 00",  # LUN
    "00 00 00 01",  # Initiator Task Tag
    "ff ff ff ff",  # Target Transfer Tag
    "00 00 00 02",  # StatSN
    "00 00 00 02",  # ExpCmdSN
    "00 00 00 02",  # MaxCmdSN
    "00 00 00 00 00 00 00 00 00 00 00 00",  # reserved
) + TEXT_RSP_TEXT
TEXT_RSP_PDU = P.TextResponse(itt=1, ttt=0xFFFFFFFF, statsn=2, exp_cmdsn=2, max_cmdsn=2,
                              data=TEXT_RSP_TEXT)

# --- §11.7 SCSI Data-In --------------------------------------------------------
DATA_IN = H(
    "25 83 00 00",  # opcode 0x25 | F=1 A=0 O=0 U=1 S=1 | reserved | Status 0 GOOD
    "00 00 00 06",  # TotalAHSLength 0 | DataSegmentLength 6
    "00 00 00 00 00 00 00 00",  # LUN
    "00 00 00 14",  # Initiator Task Tag
    "ff ff ff ff",  # Target Transfer Tag
    "00 00 00 19",  # StatSN
    "00 00 00 15",  # ExpCmdSN
    "00 00 00 35",  # MaxCmdSN
    "00 00 00 00",  # DataSN
    "00 00 00 00",  # Buffer Offset
    "00 00 03 fa",  # Residual Count 1018
    "01 02 03 04 05 06 00 00",  # data + 2 pad bytes
)
DATA_IN_PDU = P.SCSIDataIn(residual_underflow=True, status_present=True, itt=0x14,
                           ttt=0xFFFFFFFF, statsn=0x19, exp_cmdsn=0x15, max_cmdsn=0x35,
                           residual_count=0x3FA, data=bytes([1, 2, 3, 4, 5, 6]))

# --- §11.15 Logout Response ------------------------------------------------------
LOGOUT_RSP = H(
    "26 80 00 00",  # opcode 0x26 | F=1 | Response 0 (closed successfully) | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # reserved
    "00 00 00 77",  # Initiator Task Tag
    "00 00 00 00",  # reserved
    "00 00 00 50",  # StatSN
    "00 00 00 43",  # ExpCmdSN
    "00 00 00 63",  # MaxCmdSN
    "00 00 00 00",  # reserved
    "00 02 00 14",  # Time2Wait 2 s | Time2Retain 20 s
    "00 00 00 00",  # reserved
)
LOGOUT_RSP_PDU = P.LogoutResponse(itt=0x77, statsn=0x50, exp_cmdsn=0x43, max_cmdsn=0x63,
                                  time2wait=2, time2retain=20)

# --- §11.8 R2T ---------------------------------------------------------------
R2T = H(
    "31 80 00 00",  # opcode 0x31 | F=1 | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 03 00 00 00 00 00 00",  # LUN 3
    "00 00 00 55",  # Initiator Task Tag
    "00 00 10 00",  # Target Transfer Tag
    "00 00 00 60",  # StatSN
    "00 00 00 61",  # ExpCmdSN
    "00 00 00 81",  # MaxCmdSN
    "00 00 00 01",  # R2TSN
    "00 01 00 00",  # Buffer Offset 65536
    "00 01 00 00",  # Desired Data Transfer Length 65536
)
R2T_PDU = P.R2T(lun=bytes.fromhex("0003000000000000"), itt=0x55, ttt=0x1000, statsn=0x60,
                exp_cmdsn=0x61, max_cmdsn=0x81, r2tsn=1, buffer_offset=0x10000,
                desired_data_transfer_length=0x10000)

# --- §11.9 Asynchronous Message ----------------------------------------------------
ASYNC = H(
    "32 80 00 00",  # opcode 0x32 | F=1 | reserved
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # LUN
    "ff ff ff ff",  # 0xffffffff
    "00 00 00 00",  # reserved
    "00 00 00 70",  # StatSN
    "00 00 00 71",  # ExpCmdSN
    "00 00 00 91",  # MaxCmdSN
    "01 00 00 00",  # AsyncEvent 1 (logout requested) | AsyncVCode 0 | Parameter1
    "00 00 00 0a",  # Parameter2 | Parameter3 10 s (time to logout)
    "00 00 00 00",  # reserved
)
ASYNC_PDU = P.AsyncMessage(statsn=0x70, exp_cmdsn=0x71, max_cmdsn=0x91, async_event=1,
                           parameter3=10)

# --- §11.17 Reject --------------------------------------------------------------
REJECT = H(
    "3f 80 09 00",  # opcode 0x3f | F=1 | Reason 9 (invalid PDU field) | reserved
    "00 00 00 30",  # TotalAHSLength 0 | DataSegmentLength 48
    "00 00 00 00 00 00 00 00",  # reserved
    "ff ff ff ff",  # 0xffffffff
    "00 00 00 00",  # reserved
    "00 00 00 09",  # StatSN
    "00 00 00 0a",  # ExpCmdSN
    "00 00 00 2a",  # MaxCmdSN
    "00 00 00 00",  # DataSN/R2TSN
    "00 00 00 00 00 00 00 00",  # reserved
) + NOP_OUT[:48]  # data: the rejected PDU's header
REJECT_PDU = P.Reject(reason=9, statsn=9, exp_cmdsn=0xA, max_cmdsn=0x2A, data=NOP_OUT[:48])

# RFC 3720 appendix B.4: "iSCSI - Read (10) Command PDU" and its CRC32C.
RFC_READ10 = H(
    "01 c0 00 00",  # I=0 opcode 0x01 | F=1 R=1 W=0 ATTR=0 (untagged)
    "00 00 00 00",  # TotalAHSLength 0 | DataSegmentLength 0
    "00 00 00 00 00 00 00 00",  # LUN 0
    "14 00 00 00",  # Initiator Task Tag
    "00 00 04 00",  # Expected Data Transfer Length
    "00 00 00 14",  # CmdSN
    "00 00 00 18",  # ExpStatSN
    "28 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00",  # CDB: READ(10)
)
RFC_READ10_CRC = H("56 3a 96 d9")  # on the wire
RFC_READ10_PDU = P.SCSICommand(final=True, read=True, attr=0, itt=0x14000000,
                               expected_data_transfer_length=0x400, cmdsn=0x14,
                               exp_statsn=0x18, cdb=H("28000000 00000000 02000000 00000000"))

# (wire bytes, the PDU that encodes to them, the PDU they decode to)
GOLDEN = {
    "nop_out": (NOP_OUT, NOP_OUT_PDU, NOP_OUT_PDU),
    "scsi_command": (SCSI_CMD, SCSI_CMD_PDU, SCSI_CMD_DECODED),
    "scsi_command_ahs": (SCSI_CMD_AHS, SCSI_CMD_AHS_PDU, SCSI_CMD_AHS_PDU),
    "tmf_request": (TMF_REQ, TMF_REQ_PDU, TMF_REQ_PDU),
    "login_request": (LOGIN_REQ, LOGIN_REQ_PDU, LOGIN_REQ_PDU),
    "text_request": (TEXT_REQ, TEXT_REQ_PDU, TEXT_REQ_PDU),
    "data_out": (DATA_OUT, DATA_OUT_PDU, DATA_OUT_PDU),
    "logout_request": (LOGOUT_REQ, LOGOUT_REQ_PDU, LOGOUT_REQ_PDU),
    "snack": (SNACK, SNACK_PDU, SNACK_PDU),
    "nop_in": (NOP_IN, NOP_IN_PDU, NOP_IN_PDU),
    "scsi_response": (SCSI_RSP, SCSI_RSP_PDU, SCSI_RSP_PDU),
    "tmf_response": (TMF_RSP, TMF_RSP_PDU, TMF_RSP_PDU),
    "login_response": (LOGIN_RSP, LOGIN_RSP_PDU, LOGIN_RSP_PDU),
    "login_response_fail": (LOGIN_RSP_FAIL, LOGIN_RSP_FAIL_PDU, LOGIN_RSP_FAIL_PDU),
    "text_response": (TEXT_RSP, TEXT_RSP_PDU, TEXT_RSP_PDU),
    "data_in": (DATA_IN, DATA_IN_PDU, DATA_IN_PDU),
    "logout_response": (LOGOUT_RSP, LOGOUT_RSP_PDU, LOGOUT_RSP_PDU),
    "r2t": (R2T, R2T_PDU, R2T_PDU),
    "async": (ASYNC, ASYNC_PDU, ASYNC_PDU),
    "reject": (REJECT, REJECT_PDU, REJECT_PDU),
    "rfc3720_read10": (RFC_READ10, RFC_READ10_PDU, RFC_READ10_PDU),
}


def test_every_opcode_has_a_golden_pdu():
    covered = {wire[0] & 0x3F for wire, _, _ in GOLDEN.values()}
    assert covered == {int(op) for op in Opcode}
    assert len(Opcode) == 18


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_encode(name):
    wire, to_encode, _ = GOLDEN[name]
    assert len(wire) % 4 == 0
    assert to_encode.encode() == wire


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_decode(impl, name):
    wire, _, decoded = GOLDEN[name]
    got = impl.parse(wire, strict=True)  # the golden PDUs set no reserved bit
    assert got == decoded
    assert type(got).OPCODE == wire[0] & 0x3F
    # and through this implementation's framing
    assert impl.frame(wire, max_data_segment_length=1 << 16) == [decoded]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bhs_fields(impl, name):
    wire = GOLDEN[name][0]
    bhs = impl.bhs.decode_bhs(wire)
    assert bhs.opcode == wire[0] & 0x3F
    assert bhs.immediate == bool(wire[0] & 0x40)
    assert bhs.flags == wire[1]
    assert bhs.total_ahs_length == wire[4]
    assert bhs.data_segment_length == int.from_bytes(wire[5:8], "big")
    assert bhs.itt == int.from_bytes(wire[16:20], "big")
    assert impl.bhs.encode_bhs(bhs) == wire[:48]


def test_rfc3720_read10_header_digest(impl):
    """B.4: the Read(10) BHS with HeaderDigest=CRC32C."""
    wire = RFC_READ10 + RFC_READ10_CRC
    assert RFC_READ10_PDU.encode(header_digest=True) == wire
    assert impl.parse(wire, header_digest=True) == RFC_READ10_PDU
    assert impl.frame(wire, header_digest=True) == [RFC_READ10_PDU]


def test_login_response_status():
    from iscsictl.protocol.constants import LoginStatus

    assert LOGIN_RSP_FAIL_PDU.status is LoginStatus.AUTHENTICATION_FAILURE
    assert SCSI_RSP_PDU.sense_data == SENSE
    assert REJECT_PDU.rejected_header == NOP_OUT[:48]
