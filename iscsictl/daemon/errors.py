"""Daemon-side failures, each carrying open-iscsi's ISCSI_ERR_* number.

The CLI exits with ``code``; the messages follow iscsiadm's where it has one.
"""

from __future__ import annotations

from ..exitcodes import err_to_str

__all__ = ["SessionError", "err_text"]


def err_text(code: int) -> str:
    """iscsiadm's text for an ISCSI_ERR_* number."""
    return err_to_str(code)


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
