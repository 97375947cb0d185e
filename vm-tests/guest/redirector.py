"""A portal that redirects every login (RFC 7143 §11.13.5: Status-Class 1, Target moved
temporarily), for the guest's tests: LIO does not redirect by itself.

Each connection's first Login Request is answered with a Login Response carrying
``TargetAddress=<to>``; the connection is then held until the initiator closes it (a
redirect's initiator closes it, RFC 7143 §6.2).  Written from the RFC's PDU layout with
the standard library only, independent of iscsictl's codec.  A context manager; stops
its threads on exit.
"""

from __future__ import annotations

import socket
import threading

BHS_LEN = 48
OP_LOGIN_REQUEST, OP_LOGIN_RESPONSE = 0x03, 0x23
CLASS_REDIRECTION, TARGET_MOVED_TEMPORARILY = 0x01, 0x01


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def redirect_response(request: bytes, to: str) -> bytes:
    """The Login Response (BHS and data) that answers Login Request ``request`` (its
    48-byte BHS) with a temporary redirect to ``to`` (``address:port,tag``)."""
    data = f"TargetAddress={to}\0".encode()
    bhs = bytearray(BHS_LEN)
    bhs[0] = OP_LOGIN_RESPONSE
    bhs[1] = request[1] & 0x0C          # CSG echoed; T and NSG 0 with a non-zero class
    bhs[5:8] = len(data).to_bytes(3, "big")
    bhs[8:14] = request[8:14]           # ISID
    bhs[16:20] = request[16:20]         # Initiator Task Tag
    bhs[24:28] = request[28:32]         # StatSN: the request's ExpStatSN
    bhs[28:32] = request[24:28]         # ExpCmdSN: its CmdSN
    bhs[32:36] = request[24:28]         # MaxCmdSN
    bhs[36], bhs[37] = CLASS_REDIRECTION, TARGET_MOVED_TEMPORARILY
    return bytes(bhs) + data + bytes(-len(data) % 4)


class Redirector:
    """Listens on ``address:port``; every login there is sent to ``to``.  ``logins``:
    how many Login Requests it redirected.  With ``barrier`` (a ``threading.Barrier``,
    shared by several redirectors), each Login Request is answered only once every party
    of the barrier has one under way (at most 30 s): logins that overlap for certain."""

    def __init__(self, address: str, port: int, to: str,
                 barrier: threading.Barrier | None = None) -> None:
        self.to = to
        self._barrier = barrier
        self.logins = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server((address, port), reuse_port=False)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "Redirector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                bhs = _read(conn, BHS_LEN)
                if bhs[0] & 0x3F != OP_LOGIN_REQUEST:
                    return
                length = int.from_bytes(bhs[5:8], "big")
                _read(conn, bhs[4] * 4 + length + (-length % 4))  # AHS, data, padding
                if self._barrier is not None:
                    self._barrier.wait(30)
                conn.sendall(redirect_response(bhs, self.to))
                with self._lock:
                    self.logins += 1
                while conn.recv(4096):  # held until the initiator closes it
                    pass
            except (OSError, ConnectionError, threading.BrokenBarrierError):
                return
