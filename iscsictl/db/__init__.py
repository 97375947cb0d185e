"""The persistent node database in open-iscsi's on-disk format (see store.NodeDB)."""
