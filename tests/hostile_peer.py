"""Misbehaving iSCSI targets on loopback for the hostile-target review (session 59).

:class:`Server` listens on 127.0.0.1 and runs ``handler(conn, n)`` for each accepted
connection (``n``: 0, 1, ... in accept order) in a thread of its own; everything is closed
when the ``with`` block ends.  The helpers read whole PDUs and write Login/Text Responses
built from raw fields, so a handler can say anything, including what the PDU codec
would refuse to encode.
"""

from __future__ import annotations

import socket
import threading
import time

from iscsictl.protocol.pdu import decode_pdu
from iscsictl.protocol.framing import PDUReader

OK_OPS = ("HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0"
          "ErrorRecoveryLevel=0\0MaxRecvDataSegmentLength=262144\0")


class Server:
    def __init__(self, handler, port: int = 0):
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.portal = f"127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._stop = False

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        n = 0
        while not self._stop:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._run, args=(c, n), daemon=True).start()
            n += 1

    def _run(self, c, n):
        try:
            self.handler(c, n)
        except OSError:
            pass
        except BaseException as e:  # noqa: BLE001
            self.errors.append(e)

    def __exit__(self, *exc):
        """Closes everything; a handler that failed but for the connection's end (a test's
        own peer broken, which the test would not see) fails the block."""
        self._stop = True
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        if exc[0] is None and self.errors:
            raise AssertionError(f"the hostile peer's handler failed: {self.errors[0]!r}") \
                from self.errors[0]


def recv_exact(c: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise OSError("closed")
        out += d
    return out


def read_pdu(c: socket.socket):
    """One PDU from the initiator, decoded (no digests: login/discovery)."""
    r = PDUReader(max_data_segment_length=1 << 24)
    while True:
        raw = r.next_pdu()
        if raw is not None:
            return decode_pdu(raw)
        r.feed(recv_exact(c, max(1, r.needed())))


def bhs(opcode: int, flags: int = 0, dsl: int = 0, *, b2=0, b3=0, isid=bytes(6), tsih=0,
        itt=0, w20=0, statsn=0, expcmdsn=1, maxcmdsn=1, status=0, ahs=0) -> bytes:
    h = bytearray(48)
    h[0] = opcode
    h[1] = flags
    h[2] = b2
    h[3] = b3
    h[4] = ahs
    h[5:8] = dsl.to_bytes(3, "big")
    h[8:14] = isid
    h[14:16] = tsih.to_bytes(2, "big")
    h[16:20] = itt.to_bytes(4, "big")
    h[20:24] = w20.to_bytes(4, "big")
    h[24:28] = statsn.to_bytes(4, "big")
    h[28:32] = expcmdsn.to_bytes(4, "big")
    h[32:36] = maxcmdsn.to_bytes(4, "big")
    h[36:38] = status.to_bytes(2, "big")
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def login_rsp(req, text: bytes | str = b"", *, transit=True, cont=False, csg=None, nsg=None,
              status=0, tsih=1, itt=None, isid=None, vmax=0, vact=0, statsn=0,
              opcode=0x23) -> bytes:
    if isinstance(text, str):
        text = text.encode()
    csg = req.csg if csg is None else csg
    nsg = (req.nsg if transit else 0) if nsg is None else nsg
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | nsg
    return bhs(opcode, flags, len(text), b2=vmax, b3=vact,
               isid=req.isid if isid is None else isid, tsih=tsih,
               itt=req.itt if itt is None else itt, statsn=statsn,
               expcmdsn=req.cmdsn, maxcmdsn=req.cmdsn, status=status) + pad(text)


def text_rsp(req, text: bytes | str = b"", *, final=True, cont=False, ttt=0xFFFFFFFF,
             itt=None, statsn=1) -> bytes:
    if isinstance(text, str):
        text = text.encode()
    flags = (0x80 if final else 0) | (0x40 if cont else 0)
    return bhs(0x24, flags, len(text), itt=req.itt if itt is None else itt, w20=ttt,
               statsn=statsn, expcmdsn=req.cmdsn + 1, maxcmdsn=req.cmdsn + 1) + pad(text)


def logout_rsp(req, statsn=2) -> bytes:
    return bhs(0x26, 0x80, 0, itt=req.itt, statsn=statsn, expcmdsn=req.cmdsn + 1,
               maxcmdsn=req.cmdsn + 1)


def plain_login(c, ops: str = OK_OPS):
    """Answer a no-CHAP login in one step (operational, straight to FFP)."""
    req = read_pdu(c)
    c.sendall(login_rsp(req, ops, transit=True, csg=1, nsg=3))
    return req


def serve_text(c, answer):
    """After a login: answer the Text Request with ``answer(req) -> bytes``, then logouts."""
    req = read_pdu(c)
    c.sendall(answer(req))
    while True:
        p = read_pdu(c)
        if type(p).__name__ == "LogoutRequest":
            c.sendall(logout_rsp(p))
            return


def sendtargets(pairs: str):
    def handler(c, n):
        plain_login(c)
        serve_text(c, lambda req: text_rsp(req, pairs))
    return handler


def redirecting(address: str):
    """A portal that answers each first Login Request with a temporary redirect (0101) to
    ``address`` (a TargetAddress value), then waits for the initiator to close."""
    def handler(c, n):
        req = read_pdu(c)
        c.sendall(login_rsp(req, f"TargetAddress={address}\0", transit=False, csg=0, nsg=0,
                            status=0x0101))
        time.sleep(0.5)
    return handler
