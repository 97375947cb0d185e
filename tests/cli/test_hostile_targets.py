"""Discovery against misbehaving SendTargets portals and iSNS servers
(tests/hostile_peer.py), through the CLI with a private DB root (a review of session 59:
each test failed before its fix; its docstring says what happened then)."""

from __future__ import annotations

import os
import struct
import time

from hostile_peer import (Server, plain_login, read_pdu, recv_exact, redirecting, serve_text,
                          text_rsp)
from iscsictl.protocol.isns import _HEADER

A = "iqn.2003-01.org.example:a"
B = "iqn.2003-01.org.example:b"


def _records(root: str) -> list[str]:
    out = []
    for d, _, files in os.walk(os.path.join(root, "nodes")):
        out += [os.path.relpath(os.path.join(d, f), os.path.join(root, "nodes"))
                for f in files]
    return sorted(out)


# ---- a fake iSNS server -------------------------------------------------------------------
def _tlv(tag: int, raw: bytes) -> bytes:
    return struct.pack(">II", tag, len(raw)) + raw


def _pg(name: str, addr: str, port: int, tag: int) -> bytes:
    s = name.encode() + b"\0"
    s += b"\0" * (-len(s) % 4)
    ip = b"\0" * 10 + b"\xff\xff" + bytes(map(int, addr.split(".")))
    return (_tlv(48, s) + _tlv(49, ip) + _tlv(50, struct.pack(">I", port))
            + _tlv(51, struct.pack(">I", tag)))


class _Isns:
    """Answers each DevAttrQry with Success and ``self.groups`` (PG attributes)."""

    def __init__(self):
        self.groups = b""

    def __call__(self, c, n):
        hdr = recv_exact(c, 12)
        _, _, length, _, xid, _ = _HEADER.unpack(hdr)
        recv_exact(c, length)
        payload = struct.pack(">I", 0) + _tlv(0, b"") + self.groups
        c.sendall(_HEADER.pack(1, 0x8002, len(payload), 0x4C00, xid, 0) + payload)
        time.sleep(0.5)


def test_an_isns_pg_tag_above_16_bits_never_reaches_the_db(cli):
    """RFC 4171 §6.5.4: a PG Tag is a 16-bit value in a 32-bit field.  A server that
    answers 0xFFFFFFFF for a portal recorded under tag 1: the portal group is left out
    (said), as a SendTargets tag outside 0..65535 is, and the record of tag 1 kept (it was
    moved to ``10.0.0.1,3260,4294967295``, which every later read warned about)."""
    isns = _Isns()
    with Server(isns) as srv:
        isns.groups = _pg(A, "10.0.0.1", 3260, 1)
        assert cli("-m", "discovery", "-t", "isns", "-p", srv.portal).rc == 0
        isns.groups = _pg(A, "10.0.0.1", 3260, 0xFFFFFFFF)
        cli("-m", "discovery", "-t", "isns", "-p", srv.portal)
    assert not any("4294967295" in r for r in _records(cli.root)), _records(cli.root)
    shown = cli("-m", "node", "-T", A, "-o", "show")
    assert "unknown value format" not in shown.err, shown.err


def test_an_isns_pg_tag_the_record_cannot_hold_does_not_cost_the_targets_record(cli):
    """The target's portal changes to one with PG Tag 0x80000000: left out, said, and the
    target's records kept, as a SendTargets answer's target that lost its portal keeps
    them (the old record was deleted as stale, the new one could not be written, exit 6:
    the target had no record left)."""
    isns = _Isns()
    with Server(isns) as srv:
        isns.groups = _pg(A, "10.0.0.1", 3260, 1) + _pg(B, "10.0.0.2", 3260, 1)
        assert cli("-m", "discovery", "-t", "isns", "-p", srv.portal).rc == 0
        isns.groups = _pg(A, "10.0.0.9", 3260, 0x80000000) + _pg(B, "10.0.0.2", 3260, 1)
        r = cli("-m", "discovery", "-t", "isns", "-p", srv.portal)
    assert r.rc != 6, r.err
    assert any(rec.startswith(A + "/") for rec in _records(cli.root)), _records(cli.root)


def test_an_isns_portal_of_port_0_is_left_out(cli):
    """A portal group with TCP port 0 is left out, as SendTargets' ``:0`` ("port '0' is
    not 1..65535") and iscsiadm's -p refuse it (it was written as ``10.0.0.1,0,1``, a
    record no login can use)."""
    isns = _Isns()
    with Server(isns) as srv:
        isns.groups = _pg(A, "10.0.0.1", 0, 1) + _pg(B, "10.0.0.2", 3260, 1)
        cli("-m", "discovery", "-t", "isns", "-p", srv.portal)
    assert not any(",0," in rec for rec in _records(cli.root)), _records(cli.root)


# ---- SendTargets ---------------------------------------------------------------------------
def _answers(*texts: str):
    """A portal answering SendTargets with texts[0], then texts[1] ... (the last again)."""
    calls = []

    def handler(c, n):
        plain_login(c)
        text = texts[min(len(calls), len(texts) - 1)]
        calls.append(n)
        serve_text(c, lambda req: text_rsp(req, text))
    return handler


def test_a_long_host_name_in_targetaddress_does_not_lose_the_targets_record(cli):
    """A TargetAddress whose host is a valid 253-byte DNS name with port and tag 65535: the
    record's directory name (``NAME,65535,65535``, 265 bytes) is over NAME_MAX: that
    record cannot be made (said, exit 6), and the target's old record is kept, as for
    any found record not written (it was deleted as stale: the target had no record
    left)."""
    host = ".".join(["a" * 63] * 3) + "." + "b" * 61
    assert len(host) == 253
    first = f"TargetName={A}\0TargetAddress=10.0.0.1:3260,1\0TargetName={B}\0" \
            "TargetAddress=10.0.0.2:3260,1\0"
    second = f"TargetName={A}\0TargetAddress={host}:65535,65535\0TargetName={B}\0" \
             "TargetAddress=10.0.0.2:3260,1\0"
    with Server(_answers(first, second)) as srv:
        assert cli("-m", "discovery", "-t", "st", "-p", srv.portal).rc == 0
        r = cli("-m", "discovery", "-t", "st", "-p", srv.portal)
    assert any(rec.startswith(A + "/") for rec in _records(cli.root)), (r.err,
                                                                      _records(cli.root))
    assert r.rc == 6 and r.err.endswith(f",65535,65535 {A}]: Could not make dir: File name "
                                         "too long\n"), r.err


def test_garbage_in_a_sendtargets_answer_is_not_said_once_a_pair(cli):
    """An answer of 200,000 pairs without '=': the first 20 said, then their count (a 16
    MiB answer of ``x\\0`` gave 8.4 million stderr lines, ~510 MB, and as many in the
    daemon's log at each poll of a use_discoveryd record)."""
    garbage = "x\0" * 200_000
    seg = 32768

    def handler(c, n):
        plain_login(c)
        req = read_pdu(c)
        data = garbage.encode()
        off = 0
        while True:
            piece = data[off:off + seg]
            off += seg
            last = off >= len(data)
            c.sendall(text_rsp(req, piece, final=last, cont=not last,
                               ttt=0xFFFFFFFF if last else 1))
            if last:
                break
            req = read_pdu(c)
        while type(p := read_pdu(c)).__name__ != "LogoutRequest":
            pass
        from hostile_peer import logout_rsp
        c.sendall(logout_rsp(p))
    with Server(handler) as srv:
        r = cli("-m", "discovery", "-t", "st", "-p", srv.portal, "-o", "nonpersistent")
    assert r.rc == 21
    lines = r.err.splitlines()
    assert lines.count("iscsictl: SendTargets: text pair without '=': b'x': left out") == 20
    assert "iscsictl: SendTargets: 199980 more pieces of text left out of the answer (not " \
        "said one by one)" in lines and len(lines) < 30, lines[20:]


def test_a_redirect_to_a_name_that_does_not_resolve_is_retried_as_iscsiadm(cli):
    """The discovery portal answers 0101 with TargetAddress=no-such-host.invalid: retried
    as iscsiadm retries it (iscsi_update_address fails, LOGIN_REDIRECTION_FAILED,
    "retrying discovery login", usr/discovery.c) until reopen_max (1 here: 2
    connections), then 11, the message naming the redirect (it was exit 4 at once, "cannot
    make connection to no-such-host.invalid: cannot resolve host name": the user gave
    127.0.0.1, and nothing said a redirect sent it there)."""
    with Server(redirecting("no-such-host.invalid:3260,1")) as srv:
        r = cli("-m", "discovery", "-t", "st", "-p", srv.portal)
        conns = len(srv.conns)
    assert "redirect" in r.err, r.err
    assert (r.rc, conns) == (11, 2), r.err


def test_garbage_does_not_hide_a_target_left_out(cli):
    """The pieces of text left out and the targets or portals left out are counted apart:
    21 pieces without '=' first do not hide that a target lost its only portal."""
    answer = "x\0" * 21 + f"TargetName={B}\0TargetAddress=10.0.0.1:0,1\0" \
        f"TargetName={A}\0TargetAddress=127.0.0.1:3260,1\0"
    with Server(_answers(answer)) as srv:
        r = cli("-m", "discovery", "-t", "st", "-p", srv.portal, "-o", "nonpersistent")
    lines = r.err.splitlines()
    assert r.rc == 0 and r.out == f"127.0.0.1:3260,1 {A}\n", r.err
    assert "iscsictl: SendTargets: 1 more pieces of text left out of the answer (not said " \
        "one by one)" in lines
    assert any(B in line and "portal left out" in line for line in lines), lines
