"""A fake iSCSI netlink kernel for the tests: replies built from the requests, the way the
kernel's iscsi_if_rx walks a datagram (each message in turn, a reply per message)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E


def transport_in_sysfs(sysfs_root, name: str, handle: int, caps: str = "0x0") -> None:
    """``class/iscsi_transport/<name>/{handle,caps}`` under a fixture sysfs tree, as the
    kernel registers a transport (the daemon reads the handle at each use); caps already
    there are kept."""
    d = Path(sysfs_root) / "class/iscsi_transport" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "handle").write_text(f"{handle}\n")
    if not (d / "caps").exists():
        (d / "caps").write_text(f"{caps}\n")


def session_in_sysfs(sysfs_root, sid: int, state: str = "LOGGED_IN", target: str = "") -> None:
    """``class/iscsi_session/session<sid>/{state,targetname}`` under a fixture sysfs tree:
    a session the kernel has (a recovery that finds its session gone from there ends)."""
    d = Path(sysfs_root) / f"class/iscsi_session/session{sid}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "state").write_text(f"{state}\n")
    (d / "targetname").write_text(f"{target}\n")


def echo(req: bytes, **r) -> bytes:
    """A unicast reply: the request's uevent echoed with r fields set (seq 0, pid 0)."""
    (msg,) = m.decode_messages(req)
    fields = {k: v for k, v in msg.items() if k not in ("header", "type", "payload", "iferror", "transport_handle")}
    fields.update(r)
    return m.encode_message(msg["type"], transport_handle=msg["transport_handle"], **fields)


def if_error(req: bytes, err: int) -> bytes:
    data = bytearray(req[:72])
    struct.pack_into("=IHHII", data, 0, 72, req[4] | req[5] << 8, 0, 0, 0)
    struct.pack_into("=Ii", data, 16, E.KEVENT_IF_ERROR, -err)
    return bytes(data)


def split_messages(dgram: bytes) -> list[bytes]:
    """The netlink messages of one datagram, as the kernel's iscsi_if_rx walks an skb
    (nlmsg_len, then NLMSG_ALIGN to the next)."""
    out, off = [], 0
    while len(dgram) - off >= 16:
        (length,) = struct.unpack_from("=I", dgram, off)
        out.append(dgram[off:off + length])
        off += (length + 3) & ~3
    return out


class SyncKernel:
    """A transport whose send() answers at once, as the kernel does inside sendmsg():
    ``answer(request) -> [datagrams]`` for each message of the datagram in turn."""

    def __init__(self, answer):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.a.setblocking(False)
        self.answer = answer
        self.datagrams = 0

    def fileno(self):
        return self.a.fileno()

    def send(self, data):
        self.datagrams += 1
        for one in split_messages(data):
            for dgram in self.answer(one):
                self.b.send(dgram)
        return len(data)

    def recv_into(self, buf):
        return self.a.recv_into(buf)

    def close(self):
        self.a.close()
        self.b.close()


class RecordingKernel:
    """A fake kernel for one test: every request decoded and recorded (``requests``); a
    request type in ``fail`` answered by an IF_ERROR with that errno, one in ``silent`` not
    answered at all; the rest by :meth:`answer` (default: the request echoed, retcode 0).
    ``transport`` is its :class:`SyncKernel`, ``datagrams`` how many datagrams came."""

    def __init__(self, fail=None, silent=()):
        self.fail, self.silent = fail or {}, set(silent)
        self.requests = []
        self.transport = SyncKernel(self)

    @property
    def datagrams(self):
        return self.transport.datagrams

    def types(self):
        return [r["type"] for r in self.requests]

    def __call__(self, raw):
        (msg,) = m.decode_messages(raw)
        self.requests.append(msg)
        t = msg["type"]
        if t in self.silent:
            return []
        if t in self.fail:
            return [if_error(raw, self.fail[t])]
        return self.answer(msg, raw)

    def answer(self, msg, raw):
        return [echo(raw, r_retcode=0)]


class ServedKernel:
    """``kernel`` (a RecordingKernel, or any ``kernel(request) -> [datagrams]``) served on
    the Unix datagram socket ``path``, from a thread, to processes whose NETLINK_ISCSI
    socket tests/nlshim.c points there (``env``): each message of a datagram answered in
    turn, the answers sent back to its sender, as the kernel does.  A context manager."""

    def __init__(self, kernel, path: str) -> None:
        import threading

        self.kernel, self.path = kernel, path
        self.senders: dict[int, object] = {}  # request type -> who sent the last one
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def env(self, shim: str) -> dict[str, str]:
        return {"LD_PRELOAD": shim, "ISCSI_FAKE_NETLINK": self.path}

    def _serve(self) -> None:
        while True:
            data, peer = self.sock.recvfrom(1 << 16)
            if not data:  # __exit__'s
                return
            for raw in split_messages(data):
                if len(raw) >= 20:
                    self.senders[struct.unpack_from("=I", raw, 16)[0]] = peer
                for reply in self.kernel(raw):
                    try:
                        self.sock.sendto(reply, peer)
                    except OSError:  # the process is gone: as the kernel
                        pass

    def event(self, dgram: bytes, sender_of: int) -> None:
        """A kernel event (``dgram``) sent to the process that sent the last request of type
        ``sender_of`` (the one whose session it concerns), as the kernel multicasts it."""
        self.sock.sendto(dgram, self.senders[sender_of])

    def __enter__(self) -> "ServedKernel":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"", self.path)
        self._thread.join(5)
        self.sock.close()
