"""Daemon-side failures, each carrying open-iscsi's ISCSI_ERR_* number.

The CLI exits with ``code``; the messages follow iscsiadm's where it has one.
"""

from __future__ import annotations

__all__ = ["ISCSI_ERR", "SessionError", "err_text"]

#: include/iscsi_err.h: number -> iscsi_err_to_str() text
ISCSI_ERR = {
    0: "", 1: "unknown error", 2: "session not found", 3: "no available memory",
    4: "encountered connection failure", 5: "encountered iSCSI login failure",
    6: "encountered iSCSI database failure", 7: "invalid parameter", 8: "connection timed out",
    9: "internal error", 10: "encountered iSCSI logout failure", 11: "iSCSI PDU timed out",
    12: "iSCSI driver not found. Please make sure it is loaded, and retry the operation",
    13: "daemon access denied", 14: "iSCSI driver does not support requested capability.",
    15: "session exists", 16: "Unknown request", 17: "iSNS service not supported",
    18: "could not communicate to iscsid", 19: "encountered non-retryable iSCSI login failure",
    20: "could not connect to iscsid", 21: "no objects found", 22: "sysfs lookup failure",
    23: "host not found", 24: "iSCSI login failed due to authorization failure",
    25: "iSNS query failed", 26: "iSNS registration failed", 27: "operation not supported",
    28: "device or resource in use", 29: "operation failed but retry may succeed",
    30: "unknown discovery type", 31: "child process terminated",
    32: "target likely not connected", 33: "iscsid request timed out",
}


def err_text(code: int) -> str:
    return ISCSI_ERR.get(code, "unknown error")


class SessionError(Exception):
    """A login, logout or session operation that failed.

    Attributes:
        code: the ISCSI_ERR_* number (exit code).
        retryable: a later attempt may succeed (connection failures, target
            errors); False for authentication failures and non-retryable
            login statuses.
    """

    def __init__(self, code: int, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
