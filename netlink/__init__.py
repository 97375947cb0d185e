"""The Linux iSCSI netlink family (NETLINK_ISCSI), installed as iscsictl.netlink."""
