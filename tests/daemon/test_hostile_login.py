"""The daemon's userspace login (userspace_login, what runs before the socket is handed to
the kernel) against misbehaving portals (tests/hostile_peer.py)."""

from __future__ import annotations

import asyncio

from hostile_peer import Server, redirecting


def test_a_redirect_to_a_name_that_does_not_resolve_is_retried_as_iscsid():
    """A portal that redirects (0101) to TargetAddress=no-such-host.invalid: a retryable
    SessionError that names the redirect, as iscsid's LOGIN_REDIRECTION_FAILED is a
    CONN_LOGIN_RETRY (it was 4, not retryable: a DNS hiccup at a permanent move ended an
    automatic node's login for good, and nothing said a redirect named that host)."""
    from iscsictl.daemon.kernel_session import NodeTarget, SessionError, userspace_login
    from iscsictl.db.record import with_defaults
    from iscsictl.db.schema import NODE
    from iscsictl.protocol.names import ISID

    with Server(redirecting("no-such-host.invalid:3260,1")) as srv:
        node = NodeTarget.from_record(with_defaults(NODE, {
            "node.name": "iqn.2001-04.com.example:t", "node.conn[0].address": "127.0.0.1",
            "node.conn[0].port": str(srv.port), "node.tpgt": "1",
            "node.conn[0].timeo.login_timeout": "3"}))
        try:
            asyncio.run(userspace_login(node, "iqn.2001-04.com.example:i",
                                        ISID.random(0x123456, 1)))
        except SessionError as e:
            error = e
        else:
            raise AssertionError("logged in")
    assert error.retryable, (error.code, str(error))
    assert "redirect" in str(error), str(error)
