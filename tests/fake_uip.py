"""A stand-in for iscsiuio's IPC server (iscsiuio/src/unix/iscsid_ipc.c
``process_iscsid_broadcast``) for the daemon's and the CLI's tests: no peer here has a
bnx2i or qedi NIC for the real iscsiuio to set up (the VM runs the real one against the
requests; vm-tests/guest_tests/test_iscsiuio.py).  It listens on an abstract socket of
its own (``$ISCSICTL_UIP_SOCKET`` points iscsictl at it), reads each request as iscsiuio
does (the header, then ``payload_len`` bytes), keeps it, and answers with the next of
``answers`` (``err`` or ``(err, ping_sc)``; the last one repeated; None: close without an
answer).  ``name``: where it listens (the real iscsiuio's name, for iscsiadm)."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from dataclasses import dataclass

from iscsictl.kernel.iscsiuio import IfaceRec, UipStatus


@dataclass
class UipRequest:
    command: int
    payload: bytes
    #: what ``before`` returned when the request came (e.g. how many netlink requests a
    #: fake kernel had by then: where it falls in a login)
    mark: object = None

    def field(self, name: str) -> str | int:
        """A ``struct iface_rec`` field of the request (strings decoded)."""
        rec = IfaceRec.from_buffer_copy(self.payload[:ctypes.sizeof(IfaceRec)])
        value = getattr(rec, name)
        return value.decode() if isinstance(value, bytes) else value


class FakeUip:
    def __init__(self, answers=(UipStatus.DEVICE_UP,), before=lambda: None, name=None):
        self.name = name or f"iscsictl-test-uip-{os.getpid()}-{id(self)}"
        self.answers = list(answers)
        self.before = before
        self.requests: list[UipRequest] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + self.name)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as f:
                header = f.read(8)
                if len(header) < 8:
                    continue
                command, length = struct.unpack("=iI", header)
                self.requests.append(UipRequest(command, f.read(length), self.before()))
                answer = self._answer()
                if answer is None:
                    continue
                err, ping_sc = answer if isinstance(answer, tuple) else (answer, 0)
                conn.sendall(struct.pack("=iii", command, int(err), ping_sc))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)

    def __enter__(self) -> FakeUip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
