"""CliError and the CLI's view of open-iscsi's exit codes (the table is
:mod:`iscsictl.exitcodes`, shared with the daemon).

Typed errors anywhere in iscsictl carry an ``exit_code`` attribute with one of these numbers;
:func:`exit_code_of` reads it.
"""

from __future__ import annotations

from ..exitcodes import BY_CODE, BY_NAME, EXIT_CODES, ExitCode, err_to_str  # noqa: F401


# short aliases used by the command modules
SUCCESS = BY_NAME["ISCSI_SUCCESS"]
ERR = BY_NAME["ISCSI_ERR"]
TRANS = BY_NAME["ISCSI_ERR_TRANS"]
IDBM = BY_NAME["ISCSI_ERR_IDBM"]
INVAL = BY_NAME["ISCSI_ERR_INVAL"]
NO_OBJS_FOUND = BY_NAME["ISCSI_ERR_NO_OBJS_FOUND"]
OP_NOT_SUPP = BY_NAME["ISCSI_ERR_OP_NOT_SUPP"]
ISCSID_NOTCONN = BY_NAME["ISCSI_ERR_ISCSID_NOTCONN"]
TRANS_TIMEOUT = BY_NAME["ISCSI_ERR_TRANS_TIMEOUT"]
SESS_EXISTS = BY_NAME["ISCSI_ERR_SESS_EXISTS"]


class CliError(Exception):
    """An error the CLI reports as ``iscsictl: <message>`` and exits with ``exit_code``.
    ``message`` may be empty (nothing printed, like iscsiadm's silent 21 for an empty
    discovery listing); ``lines`` are printed before it (one ``iscsictl:`` line each)."""

    def __init__(self, message: str, exit_code: int = ERR, lines: tuple[str, ...] = ()):
        super().__init__(message)
        self.exit_code = exit_code
        self.lines = tuple(lines)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a typed error carries (``exit_code`` attribute), else 1 (ISCSI_ERR)."""
    code = getattr(exc, "exit_code", None)
    return code if isinstance(code, int) and code in BY_CODE and code else ERR
