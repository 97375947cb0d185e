"""open-iscsi's exit codes (``include/iscsi_err.h``) as one declarative table.

Each row: number, ``ISCSI_ERR_*`` name, ``iscsi_err_to_str`` text.  The numbers are API:
scripts and tools (os-brick, LXD, targetd, systemd's ``SuccessExitStatus=15 21``) test them.
The CLI exits with them and the daemon answers with them; both read this table.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BY_CODE", "BY_NAME", "EXIT_CODES", "ExitCode", "err_to_str"]


class ExitCode(NamedTuple):
    code: int
    name: str
    text: str


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(0, "ISCSI_SUCCESS", ""),
    ExitCode(1, "ISCSI_ERR", "unknown error"),
    ExitCode(2, "ISCSI_ERR_SESS_NOT_FOUND", "session not found"),
    ExitCode(3, "ISCSI_ERR_NOMEM", "no available memory"),
    ExitCode(4, "ISCSI_ERR_TRANS", "encountered connection failure"),
    ExitCode(5, "ISCSI_ERR_LOGIN", "encountered iSCSI login failure"),
    ExitCode(6, "ISCSI_ERR_IDBM", "encountered iSCSI database failure"),
    ExitCode(7, "ISCSI_ERR_INVAL", "invalid parameter"),
    ExitCode(8, "ISCSI_ERR_TRANS_TIMEOUT", "connection timed out"),
    ExitCode(9, "ISCSI_ERR_INTERNAL", "internal error"),
    ExitCode(10, "ISCSI_ERR_LOGOUT", "encountered iSCSI logout failure"),
    ExitCode(11, "ISCSI_ERR_PDU_TIMEOUT", "iSCSI PDU timed out"),
    ExitCode(12, "ISCSI_ERR_TRANS_NOT_FOUND",
             "iSCSI driver not found. Please make sure it is loaded, and retry the operation"),
    ExitCode(13, "ISCSI_ERR_ACCESS", "daemon access denied"),
    ExitCode(14, "ISCSI_ERR_TRANS_CAPS",
             "iSCSI driver does not support requested capability."),
    ExitCode(15, "ISCSI_ERR_SESS_EXISTS", "session exists"),
    ExitCode(16, "ISCSI_ERR_INVALID_MGMT_REQ", "Unknown request"),
    ExitCode(17, "ISCSI_ERR_ISNS_UNAVAILABLE", "iSNS service not supported"),
    ExitCode(18, "ISCSI_ERR_ISCSID_COMM_ERR", "could not communicate to iscsid"),
    ExitCode(19, "ISCSI_ERR_FATAL_LOGIN", "encountered non-retryable iSCSI login failure"),
    ExitCode(20, "ISCSI_ERR_ISCSID_NOTCONN", "could not connect to iscsid"),
    ExitCode(21, "ISCSI_ERR_NO_OBJS_FOUND", "no objects found"),
    ExitCode(22, "ISCSI_ERR_SYSFS_LOOKUP", "sysfs lookup failure"),
    ExitCode(23, "ISCSI_ERR_HOST_NOT_FOUND", "host not found"),
    ExitCode(24, "ISCSI_ERR_LOGIN_AUTH_FAILED",
             "iSCSI login failed due to authorization failure"),
    ExitCode(25, "ISCSI_ERR_ISNS_QUERY", "iSNS query failed"),
    ExitCode(26, "ISCSI_ERR_ISNS_REG_FAILED", "iSNS registration failed"),
    ExitCode(27, "ISCSI_ERR_OP_NOT_SUPP", "operation not supported"),
    ExitCode(28, "ISCSI_ERR_BUSY", "device or resource in use"),
    ExitCode(29, "ISCSI_ERR_AGAIN", "operation failed but retry may succeed"),
    ExitCode(30, "ISCSI_ERR_UNKNOWN_DISCOVERY_TYPE", "unknown discovery type"),
    ExitCode(31, "ISCSI_ERR_CHILD_TERMINATED", "child process terminated"),
    ExitCode(32, "ISCSI_ERR_SESSION_NOT_CONNECTED", "target likely not connected"),
    ExitCode(33, "ISCSI_ERR_REQ_TIMEDOUT", "iscsid request timed out"),
)

BY_NAME = {e.name: e.code for e in EXIT_CODES}
BY_CODE = {e.code: e for e in EXIT_CODES}


def err_to_str(code: int) -> str:
    """iscsiadm's ``iscsi_err_to_str``: the table text, or ``unknown error``."""
    e = BY_CODE.get(code)
    return e.text if e else "unknown error"
