"""SendTargets discovery writes its records while its Logout is on the wire, and still
waits for the Logout Response before it closes the connection (open-iscsi's order on the
wire): against the fake target on a loopback socket, holding its Logout Response."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

from protocol.fake_target import FakeTarget, TargetConfig

TARGETS = [f"iqn.2003-01.org.example:held{i}" for i in range(3)]


class HeldLogoutTarget:
    """The fake target serving one connection on 127.0.0.1; once the Logout Request has
    come it holds the response until ``until()`` is true (at most 5 s), noting whether
    that happened and whether the initiator closed the connection meanwhile."""

    def __init__(self, until):
        self.target = FakeTarget(TargetConfig(
            targets=[(t, ["127.0.0.1:3260,1"]) for t in TARGETS]))
        self.until = until
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held_until: bool | None = None
        self.closed_while_held = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            while data := conn.recv(65536):
                self.target.receive_data(data)
                if self.target.logout is not None and self.held_until is None:
                    self._hold(conn)
                out = self.target.data_to_send()
                if out:
                    conn.sendall(out)

    def _hold(self, conn: socket.socket) -> None:
        deadline = time.monotonic() + 5
        while not self.until() and time.monotonic() < deadline:
            if select.select([conn], [], [], 0.005)[0] and not conn.recv(1, socket.MSG_PEEK):
                self.closed_while_held = True
                break
        self.held_until = self.until()

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def test_records_are_written_while_the_logout_is_on_the_wire(cli):
    def written():
        return all(os.path.isfile(os.path.join(cli.root, "nodes", t, "127.0.0.1,3260,1",
                                               "default")) for t in TARGETS)

    target = HeldLogoutTarget(written)
    try:
        r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{target.port}")
    finally:
        target.close()
    assert r.rc == 0, r.err
    assert sorted(r.out.splitlines()) == [f"127.0.0.1:3260,1 {t}" for t in TARGETS]
    assert target.target.logout is not None  # the session was logged out
    assert target.held_until is True  # the records were there before the Logout Response
    assert not target.closed_while_held  # and the response was awaited
    assert target.target.violations == []
