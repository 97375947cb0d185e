"""iscsictl: the userspace half of a Linux iSCSI initiator.

Sub-packages: ``protocol`` (the sans-I/O iSCSI core), ``db`` (open-iscsi's node
database), ``netlink`` (the kernel's NETLINK_ISCSI interface), ``cli`` (the
iscsiadm-compatible command), ``daemon`` (iscsictld).
"""

from ._version import __version__

__all__ = ["__version__"]
