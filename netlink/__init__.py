"""The Linux iSCSI netlink family (NETLINK_ISCSI), installed as ``iscsictl.netlink``.

Knows nothing of iscsictl.  ABI pinned to Linux 6.1 ``include/scsi/iscsi_if.h`` (Debian 12 kernel).

* :mod:`.enums` - the header's enums and constants (IntEnum / IntFlag).
* :mod:`.messages` - pyroute2 message classes, one per ``iscsi_uevent.type`` (``MESSAGE_CLASSES``),
  the ``IscsiMarshal`` keyed on that type, and the trailing payload structs.
* :mod:`.events` - typed kernel events.
* :mod:`.socket` - ``IscsiNetlink`` (blocking) and ``AsyncIscsiNetlink`` (asyncio) clients.
* :mod:`.errors` - typed exceptions.

Typical use (root, host network namespace, ``modprobe iscsi_tcp``)::

    from iscsictl.netlink import IscsiNetlink, IscsiParam
    with IscsiNetlink() as nl:
        sid, host_no = nl.create_session(handle, initial_cmdsn=1, cmds_max=128, queue_depth=32)
        cid = nl.create_conn(handle, sid, 0)
        nl.bind_conn(handle, sid, cid, tcp_sock.fileno(), is_leading=True)
        nl.set_param(handle, sid, cid, IscsiParam.TARGET_NAME, "iqn.2003-01.org.example:t1")
        nl.start_conn(handle, sid, cid)
"""

from .enums import *  # noqa: F401,F403
from .enums import __all__ as _enums_all
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .events import *  # noqa: F401,F403
from .events import __all__ as _events_all
from .messages import IscsiMarshal, MESSAGE_CLASSES, decode_messages, encode_message  # noqa: F401
from .socket import *  # noqa: F401,F403
from .socket import __all__ as _socket_all

__all__ = [*_enums_all, *_errors_all, *_events_all, *_socket_all,
           "IscsiMarshal", "MESSAGE_CLASSES", "decode_messages", "encode_message"]
