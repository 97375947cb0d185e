"""Blocking I/O shells around the sans-I/O protocol machines.

``tcp`` is a small synchronous TCP shell (discovery, the userspace probe): connect with a
deadline, drive :class:`~iscsictl.protocol.login.LoginMachine`, text exchanges, SCSI reads and
logout over one socket.  ``errors`` holds its typed errors, each with open-iscsi's exit code.
The daemon has its own asyncio shell; both feed the same protocol core.
"""
