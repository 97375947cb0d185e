"""``-m fw``: the boot firmware's targets (iBFT, or an offload driver's ``iscsi_boot``).

Reading them is not implemented yet; what is: a machine whose firmware describes no iSCSI
boot (no ``firmware/ibft`` and no ``firmware/iscsi_boot*`` in sysfs, ``ISCSICTL_SYSFS_ROOT``
for tests) gets iscsiadm's answer, ``Could not get list of targets from firmware.`` (21), and
one whose firmware does is told plainly that this is not supported yet (27).
"""

from __future__ import annotations

import os

from . import errors as E


def firmware_present(sysfs_root: str) -> bool:
    """Whether sysfs shows an iSCSI boot description (usr/fwparam_ibft/fwparam_sysfs.c:
    ``firmware/ibft/`` or ``firmware/iscsi_boot<N>/``)."""
    fw = os.path.join(sysfs_root, "firmware")
    try:
        names = os.listdir(fw)
    except OSError:
        return False
    return any(n == "ibft" or n.startswith("iscsi_boot") for n in names)


def run(args, o, mode: str) -> int:  # type: ignore[no-untyped-def]
    """The ``-m fw`` entry point."""
    if not firmware_present(os.environ.get("ISCSICTL_SYSFS_ROOT", "/sys")):
        raise E.CliError("Could not get list of targets from firmware. (err 21)",
                         E.NO_OBJS_FOUND)
    raise E.CliError("-m fw: this machine's boot firmware describes iSCSI targets, and "
                     "reading them is not supported yet", E.OP_NOT_SUPP)
