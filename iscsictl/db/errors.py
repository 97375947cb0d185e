"""Typed errors of the node database.

Every class carries ``exit_code``: the open-iscsi ``ISCSI_ERR_*`` number
(open-iscsi ``include/iscsi_err.h``) that iscsiadm would exit with for the
same failure, so the CLI can map errors without a table of its own.
"""

from __future__ import annotations

# open-iscsi include/iscsi_err.h
ISCSI_ERR = 1
ISCSI_ERR_IDBM = 6
ISCSI_ERR_INVAL = 7
ISCSI_ERR_SESS_EXISTS = 15
ISCSI_ERR_NO_OBJS_FOUND = 21
ISCSI_ERR_BUSY = 28
ISCSI_ERR_AGAIN = 29
ISCSI_ERR_UNKNOWN_DISCOVERY_TYPE = 30


class DBError(Exception):
    """Base class of every node-database error.  ``exit_code`` = ISCSI_ERR_IDBM (6)."""

    exit_code = ISCSI_ERR_IDBM


class RecordNotFound(DBError):
    """No record matches (node, discovery or iface).  Exit code 21 (ISCSI_ERR_NO_OBJS_FOUND)."""

    exit_code = ISCSI_ERR_NO_OBJS_FOUND


class RecordExists(DBError):
    """The record to create exists already.  Exit code 6 (ISCSI_ERR_IDBM).  Refused where
    iscsiadm's ``-m iface -o new`` rewrites an existing iface from the defaults, losing
    its settings."""

    exit_code = ISCSI_ERR_IDBM


class RecordInUse(DBError):
    """The node record to delete is used by a running session (same target name, persistent
    portal and iface).  Exit code 15 (ISCSI_ERR_SESS_EXISTS), with iscsiadm's words
    (delete_node)."""

    exit_code = ISCSI_ERR_SESS_EXISTS

    def __init__(self, iface: str, target: str, address: str, port: int):
        super().__init__(f"This command will remove the record [iface: {iface}, target: "
                         f"{target}, portal: {address},{port}], but a session is using it. "
                         "Logout session then rerun command to remove record.")


class SpecialIface(DBError):
    """A change to a built-in iface (``default``, ``iser``), which no file holds: iscsiadm's
    ``iface NAME is a special interface and cannot be modified.`` (or ``deleted.``; for
    ``created``, ``is not stored in /etc/iscsi/ifaces.``).  Exit code 7 (ISCSI_ERR_INVAL)."""

    exit_code = ISCSI_ERR_INVAL

    def __init__(self, name: str, what: str):
        tail = (f"cannot be {what}" if what != "created"  # iface_conf_write's words
                else "is not stored in /etc/iscsi/ifaces")
        super().__init__(f"iface {name} is a special interface and {tail}.")


class InvalidKey(DBError):
    """``-o update -n <name>`` with a name that is not in the record table.
    iscsiadm: ``Cannot modify %s. Invalid param name.``  Exit code 7 (ISCSI_ERR_INVAL)."""

    exit_code = ISCSI_ERR_INVAL

    def __init__(self, name: str):
        super().__init__(f"Cannot modify {name}. Invalid param name.")
        self.name = name


class ReadOnlyKey(DBError):
    """The key identifies the record (or, in a node record, belongs to the iface) and cannot be
    changed with ``-o update``.  Exit code 7 (ISCSI_ERR_INVAL).

    ``reason`` is ``"lookup"`` (iscsiadm: ``It is used to look up the record and cannot be
    changed.``), ``"iface"`` (``Use iface mode to update this value.``) or ``"rename"``
    (an iface's own name: iscsiadm's verify_iface_params, ``Can not update ...``)."""

    exit_code = ISCSI_ERR_INVAL

    def __init__(self, name: str, reason: str = "lookup"):
        if reason == "iface":
            msg = f"Cannot modify {name}. Use iface mode to update this value."
        elif reason == "rename":
            msg = f"Can not update {name}. Delete it, and then create a new one."
        else:
            msg = f"Cannot modify {name}. It is used to look up the record and cannot be changed."
        super().__init__(msg)
        self.name = name
        self.reason = reason


class BindingChange(DBError):
    """``-m iface -o update`` of the key that binds an iface another way than it is bound
    (by ``iface.hwaddress`` or by ``iface.net_ifacename``): iscsiadm's verify_iface_params
    refuses it, since records bound to it would change device.  Exit code 7."""

    exit_code = ISCSI_ERR_INVAL

    def __init__(self, bound_by: str, asked: str):
        def word(key: str) -> str:
            return key.split(".", 1)[1]
        super().__init__(f"Can not update interface binding from {word(bound_by)} to "
                         f"{word(asked)}. You must delete the interface and create a new one")


class InvalidValue(DBError):
    """A value that does not fit the key's type (enum text not among the options, a non-integer
    for an integer key, an integer out of the C field's range).  Exit code 7 (ISCSI_ERR_INVAL).
    iscsiadm: ``unknown value format '%s' for parameter name '%s'``."""

    exit_code = ISCSI_ERR_INVAL

    def __init__(self, name: str, value: str, detail: str = ""):
        from .schema import SECRET_KEYS  # lazily: schema is the heavier module

        shown = "********" if name in SECRET_KEYS else value  # never a secret in a message
        msg = f"unknown value format '{shown}' for parameter name '{name}'"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.name = name
        self.value = value


class InvalidRecordName(DBError):
    """A target, portal or iface name that cannot be a DB path component (empty, ``/``,
    NUL, ``.``/``..``, iface name longer than 64).  Exit code 7 (ISCSI_ERR_INVAL)."""

    exit_code = ISCSI_ERR_INVAL


class LockTimeout(DBError):
    """A DB lock was not obtained within the bounded wait.  ``holder_pid`` is the PID written in
    the lock file by the holder (None if unknown).  iscsiadm: ``Timeout on acquiring lock on DB``.
    Exit code 6 (ISCSI_ERR_IDBM)."""

    exit_code = ISCSI_ERR_IDBM

    def __init__(self, path: str, holder_pid: int | None, waited: float):
        who = f"held by PID {holder_pid}" if holder_pid else "holder unknown"
        super().__init__(f"Timeout on acquiring lock on DB: {path} ({who}, waited {waited:.1f} s)")
        self.path = path
        self.holder_pid = holder_pid
        self.waited = waited


class CorruptRecord(DBError):
    """A record file that cannot be used: empty, binary, truncated, missing its identifying keys
    (node.name / node.conn[0].address), or a DB path of the wrong shape.  Exit code 6
    (ISCSI_ERR_IDBM).  Listing and discovery report these through their warning callback and
    carry on with the other records."""

    exit_code = ISCSI_ERR_IDBM

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: corrupt record: {reason}")
        self.path = path
        self.reason = reason


class RecordTooLarge(CorruptRecord):
    """A record file over the size iscsictl reads (``store.MAX_RECORD_BYTES``): a record is
    a few KiB, but iscsiadm reads any.  Listed as a damaged record; a rediscovery keeps it
    as it is (that record's failure, exit 6) where it makes a damaged one anew."""
