"""RFC 7143 code points as IntEnums: opcodes, login stages and status, reject
reasons, asynchronous events, logout reasons, task management, SCSI status.

Every table here is the single source for encoding, decoding and printing the
corresponding field.  Section numbers refer to RFC 7143.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AHSType",
    "AsyncEvent",
    "LoginStage",
    "LoginStatus",
    "LogoutReason",
    "LogoutResponse",
    "Opcode",
    "RejectReason",
    "RESERVED_TAG",
    "SCSIStatus",
    "SCSIResponse",
    "SNACKType",
    "TaskAttribute",
    "TMFunction",
    "TMResponse",
    "BHS_LENGTH",
    "DIGEST_LENGTH",
    "ISCSI_PORT",
    "LOGIN_MAX_DATA_SEGMENT_LENGTH",
]

BHS_LENGTH = 48  #: Basic Header Segment, bytes (§11.2.1)
DIGEST_LENGTH = 4  #: CRC32C header or data digest, bytes (§13.1)
ISCSI_PORT = 3260  #: IANA well-known port (§14)
#: Data segment limit for Login and Text PDUs before MaxRecvDataSegmentLength is
#: negotiated (§13.12: the default 8192).
LOGIN_MAX_DATA_SEGMENT_LENGTH = 8192
#: The reserved tag value 0xffffffff (§11.2.1.8: ITT, TTT "no tag").
RESERVED_TAG = 0xFFFFFFFF


class Opcode(IntEnum):
    """BHS opcode, byte 0 bits 0-5 (§11.2.1.2)."""

    # initiator opcodes
    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MGMT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    SCSI_DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    # target opcodes
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MGMT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    SCSI_DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F

    @property
    def from_initiator(self) -> bool:
        """True for initiator opcodes (0x00-0x1f), which may carry the I bit."""
        return self.value < 0x20


class LoginStage(IntEnum):
    """CSG/NSG values (§11.12.3); 2 is reserved."""

    SECURITY_NEGOTIATION = 0
    LOGIN_OPERATIONAL_NEGOTIATION = 1
    FULL_FEATURE_PHASE = 3


class LoginStatus(IntEnum):
    """Login Response Status-Class << 8 | Status-Detail (§11.13.5)."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302

    @property
    def status_class(self) -> int:
        return self.value >> 8

    @property
    def status_detail(self) -> int:
        return self.value & 0xFF

    @property
    def description(self) -> str:
        return _LOGIN_STATUS_TEXT[self]


_LOGIN_STATUS_TEXT = {
    LoginStatus.SUCCESS: "success",
    LoginStatus.TARGET_MOVED_TEMPORARILY: "target moved temporarily",
    LoginStatus.TARGET_MOVED_PERMANENTLY: "target moved permanently",
    LoginStatus.INITIATOR_ERROR: "initiator error",
    LoginStatus.AUTHENTICATION_FAILURE: "authentication failure",
    LoginStatus.AUTHORIZATION_FAILURE: "authorization failure",
    LoginStatus.NOT_FOUND: "target not found",
    LoginStatus.TARGET_REMOVED: "target removed",
    LoginStatus.UNSUPPORTED_VERSION: "unsupported version",
    LoginStatus.TOO_MANY_CONNECTIONS: "too many connections",
    LoginStatus.MISSING_PARAMETER: "missing parameter",
    LoginStatus.CANT_INCLUDE_IN_SESSION: "can't include in session",
    LoginStatus.SESSION_TYPE_NOT_SUPPORTED: "session type not supported",
    LoginStatus.SESSION_DOES_NOT_EXIST: "session does not exist",
    LoginStatus.INVALID_DURING_LOGIN: "invalid request during login",
    LoginStatus.TARGET_ERROR: "target error",
    LoginStatus.SERVICE_UNAVAILABLE: "service unavailable",
    LoginStatus.OUT_OF_RESOURCES: "out of resources",
}


class RejectReason(IntEnum):
    """Reject PDU reason codes (§11.17.1)."""

    RESERVED = 0x01
    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OPERATION_REJECT = 0x0A
    NEGOTIATION_RESET = 0x0B  # deprecated in RFC 7143
    WAITING_FOR_LOGOUT = 0x0C


class AsyncEvent(IntEnum):
    """Asynchronous Message AsyncEvent codes (§11.9.1)."""

    SCSI_ASYNC_EVENT = 0
    LOGOUT_REQUEST = 1
    CONNECTION_DROP = 2
    SESSION_DROP = 3
    NEGOTIATION_REQUEST = 4
    TASK_TERMINATION = 5
    VENDOR_SPECIFIC = 255


class LogoutReason(IntEnum):
    """Logout Request reason codes (§11.14.1)."""

    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_CONNECTION_FOR_RECOVERY = 2


class LogoutResponse(IntEnum):
    """Logout Response codes (§11.15.1)."""

    SUCCESS = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class TMFunction(IntEnum):
    """Task Management Function codes (§11.5.1)."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TMResponse(IntEnum):
    """Task Management Function Response codes (§11.6.1)."""

    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    REASSIGNMENT_NOT_SUPPORTED = 4
    FUNCTION_NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    FUNCTION_REJECTED = 255


class SNACKType(IntEnum):
    """SNACK Request Type field (§11.16.1)."""

    DATA_R2T = 0
    STATUS = 1
    DATA_ACK = 2
    R_DATA = 3


class TaskAttribute(IntEnum):
    """SCSI Command ATTR field (§11.3.1, SAM task attributes)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class SCSIResponse(IntEnum):
    """SCSI Response PDU Response field (§11.4.3)."""

    COMMAND_COMPLETED = 0x00
    TARGET_FAILURE = 0x01


class SCSIStatus(IntEnum):
    """SAM-5 status codes carried in SCSI Response / Data-In Status."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class AHSType(IntEnum):
    """Additional Header Segment types (§11.2.2.2)."""

    EXTENDED_CDB = 1
    EXPECTED_BIDIRECTIONAL_READ_DATA_LENGTH = 2
