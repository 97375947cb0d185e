"""iscsictld, the daemon that owns kernel iSCSI sessions (the only asyncio code)."""
