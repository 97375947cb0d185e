"""The persistent node database in open-iscsi's on-disk format.

Modules: ``schema`` (key tables), ``record`` (Record, parser, printers), ``store`` (NodeDB),
``config`` (iscsid.conf, initiatorname.iscsi, roots), ``errors`` (typed errors with exit codes).
"""

from .config import (IscsidConfig, InitiatorName, Roots, ensure_initiator_name, generate_iqn,
                     read_initiator_name, resolve_roots)
from .errors import (CorruptRecord, DBError, InvalidKey, InvalidRecordName, InvalidValue,
                     LockTimeout, ReadOnlyKey, RecordExists, RecordNotFound)
from .record import Record, format_node_flat, format_portal, format_record, parse_record
from .store import DiscoveryID, FileLock, NodeDB, NodeID, ReconcileResult, atomic_write

__all__ = [
    "IscsidConfig", "InitiatorName", "Roots", "ensure_initiator_name", "generate_iqn",
    "read_initiator_name", "resolve_roots", "CorruptRecord", "DBError", "InvalidKey",
    "InvalidRecordName", "InvalidValue", "LockTimeout", "ReadOnlyKey", "RecordExists",
    "RecordNotFound", "Record", "format_node_flat", "format_portal", "format_record",
    "parse_record", "DiscoveryID", "FileLock", "NodeDB", "NodeID", "ReconcileResult",
    "atomic_write",
]
