"""iSNS discovery against real peers: open-isns's isnsd on loopback, tgtd registering its
targets with it, and Debian's iscsiadm 2.1.8 (with the real iscsid beside it, its kernel
faked: iscsiadm asks iscsid for the initiator name) doing the same discoveries.  iscsictl
must print, exit and write the database as iscsiadm does.  FAILS when a peer is missing."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from cli_targets import INIT
from fake_hba import FakeHbaKernel
from peers import Isnsd, Tgtd, iscsiadm

pytestmark = pytest.mark.peer

T1 = "iqn.2026-11.test.isns:disk1"
T2 = "iqn.2026-11.test.isns:disk2"


@pytest.fixture(scope="module")
def isns(tmp_path_factory):
    """isnsd, and tgtd with two targets (one LUN each) that isnsadm registers with it
    (``isns.tgt``)."""
    with Isnsd(str(tmp_path_factory.mktemp("isnsd"))) as server, \
            Tgtd(str(tmp_path_factory.mktemp("tgtd-isns"))) as tgt:
        tgt.add_target(T1, luns=1)
        tgt.add_target(T2, luns=1)
        server.register_targets("tgtd", tgt.portal, [T1, T2])
        server.tgt = tgt
        yield server


@pytest.fixture
def adm(tmp_path, shim):
    """Runs iscsiadm on its own DB with iscsid beside it (its kernel a fake one with no
    host: nothing in these tests goes to the kernel)."""
    etc = str(tmp_path / "adm-etc")
    os.makedirs(etc)
    with open(os.path.join(etc, "initiatorname.iscsi"), "w") as f:
        f.write(f"InitiatorName={INIT}\n")
    with open(os.path.join(etc, "iscsid.conf"), "w") as f:
        f.write("iscsid.startup = /bin/true\n")
    with FakeHbaKernel(str(tmp_path / "nl.sock"), {}, {}) as kernel:
        def run(*args):
            return iscsiadm(etc, *args, iscsid=kernel.env(shim))
        run.root = etc
        yield run


@pytest.fixture
def ours(cli):
    """iscsictl on its own DB, with the same initiator name and an iscsid.conf that sets
    nothing iscsiadm's lacks."""
    with open(os.path.join(cli.root, "iscsid.conf"), "w") as f:
        f.write("iscsid.startup = /bin/true\n")
    return cli


def _points_to(root: str, link: str) -> str:
    """Where a link goes, relative to the DB root: iscsiadm writes absolute links into
    /etc/iscsi, iscsictl relative ones (the DB can move)."""
    target = os.readlink(link)
    if target.startswith("/etc/iscsi/"):
        return "-> " + target[len("/etc/iscsi/"):]
    return "-> " + os.path.relpath(os.path.join(os.path.dirname(link), target), root)


def tree(root: str) -> dict[str, str]:
    """The DB under ``root`` as {path: record text or "-> where a link goes"}: what both
    tools wrote (their lock and temp directories and the config files left out)."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".") and not os.path.islink(
            os.path.join(d, x))]
        rel = os.path.relpath(d, root)
        for name in dirs + files:
            p = os.path.join(d, name)
            key = os.path.normpath(os.path.join(rel, name))
            if key in ("iscsid.conf", "initiatorname.iscsi") or name.startswith("."):
                continue
            if os.path.islink(p):
                out[key] = _points_to(root, p)
            elif os.path.isfile(p):
                out[key] = open(p).read()
            else:
                out[key] = "dir"
        for x in os.listdir(d):  # links to directories are not walked into
            p = os.path.join(d, x)
            if os.path.islink(p) and os.path.isdir(p):
                out[os.path.normpath(os.path.join(rel, x))] = _points_to(root, p)
    return out


def same(adm, ours, *args, rc=0):
    """iscsiadm and iscsictl run the command on their own DBs: same exit code and stdout;
    then their DBs are the same."""
    a, b = adm(*args), ours(*args)
    assert (b.rc, b.out) == (a.returncode, a.stdout), \
        f"{args}\nours:\n{b.out}{b.err}\niscsiadm:\n{a.stdout}{a.stderr}"
    assert b.rc == rc
    assert tree(ours.root) == tree(adm.root)
    return a, b


def test_discovery_prints_and_writes_what_iscsiadm_does(isns, adm, ours):
    """``-m discovery -t isns``: no discovery record, the node records linked from isns/
    itself (iscsiadm's old-style links); then ``-m discoverydb -o new`` and ``-D`` move the
    links under the server's record; ``-o delete`` removes the records again."""
    tp = isns.tgt.portal
    _, r = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", isns.portal)
    assert r.out == f"{tp},1 {T1}\n{tp},1 {T2}\n"
    assert f"isns/{T1},127.0.0.1,{isns.tgt.port},1,default" in tree(ours.root)
    same(adm, ours, "-m", "discovery", "-P", "1")
    same(adm, ours, "-m", "node")
    same(adm, ours, "-m", "node", "-T", T1, "-p", tp, "-o", "show")
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-o", "new")
    # deleted again: the records linked from isns/ itself stay, as iscsiadm's
    # idbm_rm_disc_node_links walks the server's directory only (before: deleted)
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-o", "delete")
    assert same(adm, ours, "-m", "node")[1].out == f"{tp},1 {T1}\n{tp},1 {T2}\n"
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-o", "new")
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-D", "-P", "1")
    t = tree(ours.root)
    assert f"isns/127.0.0.1,{isns.port}/{T2},127.0.0.1,{isns.tgt.port},1,default" in t
    assert not any(k.startswith("isns/iqn") for k in t)
    same(adm, ours, "-m", "discovery")
    same(adm, ours, "-m", "discovery", "-P", "1")
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-o", "show")
    same(adm, ours, "-m", "discoverydb", "-t", "isns", "-p", isns.portal, "-o", "delete")
    assert not os.path.exists(os.path.join(ours.root, "nodes", T1))


def test_the_default_port_is_isns(isns, adm, ours):
    """``-p 127.0.0.1`` alone is port 3205, where nothing listens here: both fail (25)."""
    a, b = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", "127.0.0.1", rc=25)
    assert b.err.splitlines() == [
        "iscsictl: cannot make connection to 127.0.0.1: Connection refused",
        "iscsictl: Could not perform iSNS discovery: iSNS query failed"]
    assert "iSNS query failed" in a.stderr


def test_nonpersistent_writes_nothing(isns, adm, ours):
    same(adm, ours, "-m", "discovery", "-t", "isns", "-p", isns.portal, "-o", "nonpersistent")
    assert tree(ours.root) == {}


def test_a_server_with_nothing_registered(tmp_path, adm, ours):
    with Isnsd(str(tmp_path / "empty")) as empty:
        _, b = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", empty.portal, rc=21)
    assert b.err == "iscsictl: No portals found\n"


def test_each_reads_the_others_records(isns, adm, ours):
    """The same DB: what iscsiadm's iSNS discovery wrote, iscsictl lists as iscsiadm does,
    and it finds the same records again (changing nothing)."""
    assert adm("-m", "discovery", "-t", "isns", "-p", isns.portal).returncode == 0
    ours.root = adm.root
    before = tree(adm.root)
    for args in (["-m", "discovery", "-P", "1"], ["-m", "node", "-P", "1"],
                 ["-m", "node", "-T", T2, "-p", isns.tgt.portal, "-o", "show"]):
        a, b = adm(*args), ours(*args)
        assert (b.rc, b.out) == (a.returncode, a.stdout)
    assert ours("-m", "discovery", "-t", "isns", "-p", isns.portal).rc == 0
    assert tree(adm.root) == before


def test_a_discovered_target_answers(isns, ours):
    """What the iSNS server named is a real target: a userspace login and its LUN."""
    assert ours("-m", "discovery", "-t", "isns", "-p", isns.portal).rc == 0
    r = ours("-m", "node", "-T", T1, "-p", isns.tgt.portal, "--probe")
    assert r.rc == 0, r.err
    assert f"Target: {T1}" in r.out and "LUN 1" in r.out


def test_json(isns, ours):
    import json
    r = ours("--json", "-m", "discovery", "-t", "isns", "-p", isns.portal)
    doc = json.loads(r.out)
    assert doc["discovery"] == {"type": "isns", "address": "127.0.0.1", "port": isns.port}
    assert [n["target"] for n in doc["added"]] == [T1, T2]


def _register_raw(server: Isnsd, names: list[str]) -> None:
    """Register targets behind 127.0.0.1:3260 by a DevAttrReg of iscsictl's codec, as any
    node may (isnsd with Security = 0): names isnsadm would not send (a newline, bytes
    that are not UTF-8, given as surrogates)."""
    from iscsictl.protocol.isns import (Attribute as A, Function, MessageReader, Request,
                                        Tag, encode_request)
    ops = [A(Tag.ENTITY_IDENTIFIER, "odd"), A(Tag.ENTITY_PROTOCOL, 2),
           A(Tag.PORTAL_IP_ADDRESS, "127.0.0.1"), A(Tag.PORTAL_TCP_UDP_PORT, 3260)]
    ops += [a for n in names for a in (A(Tag.ISCSI_NAME, n), A(Tag.ISCSI_NODE_TYPE, 1))]
    ops += [a for n in names for a in (
        A(Tag.PG_ISCSI_NAME, n), A(Tag.PG_PORTAL_IP_ADDR, "127.0.0.1"),
        A(Tag.PG_PORTAL_TCP_UDP_PORT, 3260), A(Tag.PG_TAG, 1))]
    reader = MessageReader(77)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
        c.sendall(encode_request(Request(Function.DEV_ATTR_REG, 77, names[0],
                                         (A(Tag.ENTITY_IDENTIFIER, "odd"),), tuple(ops))))
        resp = None
        while resp is None:
            resp = reader.feed(c.recv(reader.needed(), socket.MSG_WAITALL))
    assert resp.status == 0


def test_targets_whose_names_no_record_can_hold_are_left_out(tmp_path, adm, ours):
    """Any node may register any name: one with a newline forged a line of the listing,
    blanks and commas were written into records, and one name that is not UTF-8 failed
    the whole discovery (25).  Each is left out and said, as a SendTargets answer's are
    and Debian's iscsiadm leaves them out ("Target Name invalid: ignoring it"); the rest
    discovered and written as iscsiadm does."""
    good = ["iqn.2026-11.test.isns:good", "iqn.2026-11.test.isns:Upper", "naa.1234"]
    bad = ["iqn.2026-11.test.isns:x\n10.66.66.66:3260,1 iqn.2026-11.evil:forged",
           "iqn.2026-11.test.isns:sp ace", "iqn.2026-11.test.isns:tab\tx",
           "iqn.2026-11.test.isns:comma,x", "iqn.2026-11.test.isns:caf\udce9"]
    with Isnsd(str(tmp_path / "isnsd")) as server:
        _register_raw(server, [good[0], *bad, *good[1:]])
        server.wait_for_targets(good)
        _, r = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", server.portal)
    assert sorted(r.out.splitlines()) == sorted(f"127.0.0.1:3260,1 {n}" for n in good)
    assert r.err.count(": target left out") == len(bad)
    assert "'iqn.2026-11.test.isns:caf\\udce9': character '\\udce9' is not allowed" in r.err


# ---- a server that wants the initiator registered (a fault-injecting proxy) ---------------
class RegisterFirst:
    """A TCP proxy in front of isnsd that answers a DevAttrQry from a source not registered
    through it with "Source unknown" (status 6), as iSNS servers that require registration
    do (isnsd never does), and optionally refuses the registration (``reg_status``).
    Records the function IDs the clients sent, over all their connections (iscsiadm's
    libisns opens one a request, iscsictl one a discovery)."""

    def __init__(self, server_port: int, reg_status: int = 0, hang_up: bool = False,
                 break_dereg: str = ""):
        self.server_port = server_port
        self.reg_status = reg_status
        self.hang_up = hang_up  # the query after the registration: the connection closed
        # the deregistration: "close" the connection on it, or answer it as a "DevAttrReg"
        self.break_dereg = break_dereg
        self.functions: list[int] = []
        self.registered: set[bytes] = set()
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.portal = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close does not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    @staticmethod
    def _pdu(sock) -> bytes | None:
        head = b""
        while len(head) < 12:
            chunk = sock.recv(12 - len(head))
            if not chunk:
                return None
            head += chunk
        body = b""
        length = struct.unpack(">H", head[4:6])[0]
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        return head + body

    def _relay(self, client) -> None:
        with client, socket.create_connection(("127.0.0.1", self.server_port)) as server:
            while True:
                req = self._pdu(client)
                if req is None:
                    return
                function = struct.unpack(">H", req[2:4])[0]
                length = struct.unpack(">I", req[16:20])[0]
                source = req[20:20 + length]  # the Source attribute's value
                self.functions.append(function)
                if function == 0x0002 and source not in self.registered:
                    client.sendall(self._answer(req, 6))
                    continue
                if function == 0x0002 and self.hang_up:
                    self.hang_up = False
                    return
                if function == 0x0001 and self.reg_status:
                    client.sendall(self._answer(req, self.reg_status))
                    continue
                if function == 0x0004 and self.break_dereg == "close":
                    return
                if function == 0x0004 and self.break_dereg == "DevAttrReg":
                    client.sendall(self._answer(req[:2] + b"\0\1" + req[4:], 0))
                    continue
                server.sendall(req)
                resp = self._pdu(server)
                if resp is None:
                    return
                ok = resp[12:16] == b"\0\0\0\0"
                if function == 0x0001 and ok:
                    self.registered.add(source)
                elif function == 0x0004 and ok:
                    self.registered.discard(source)
                client.sendall(resp)

    @staticmethod
    def _answer(req: bytes, status: int) -> bytes:
        function, xid = struct.unpack(">H", req[2:4])[0], req[8:10]
        return struct.pack(">HHHH", 1, function | 0x8000, 4, 0x4C00) + xid + b"\0\0" \
            + struct.pack(">I", status)


@pytest.fixture
def register_first(isns):
    proxies = []

    def make(reg_status: int = 0, hang_up: bool = False, break_dereg: str = ""
             ) -> RegisterFirst:
        proxies.append(RegisterFirst(isns.port, reg_status, hang_up, break_dereg))
        return proxies[-1]
    yield make
    for p in proxies:
        p.close()


def test_a_server_that_wants_the_initiator_registered(isns, adm, ours, register_first):
    """Query, "Source unknown", DevAttrReg, the query again, DevDereg: iscsiadm's flow,
    with the real isnsd behind the proxy taking the registration and the deregistration;
    the same records as iscsiadm's, and no initiator left registered."""
    theirs, mine = register_first(), register_first()
    a = adm("-m", "discovery", "-t", "isns", "-p", theirs.portal)
    b = ours("-m", "discovery", "-t", "isns", "-p", mine.portal)
    assert (b.rc, b.out) == (a.returncode, a.stdout) == (0, b.out)
    assert b.out.count("\n") == 2
    assert mine.functions == theirs.functions == [0x0002, 0x0001, 0x0002, 0x0004]
    assert (mine.connections, theirs.connections) == (1, 4)
    assert mine.registered == theirs.registered == set()  # deregistered
    assert INIT not in isns.query("iscsi-node-type=Initiator")
    # the records name the server they were asked of (the proxy's port)
    assert tree(ours.root).keys() == tree(adm.root).keys()


def test_a_query_cut_off_after_the_registration_still_deregisters(isns, adm, ours,
                                                                  register_first):
    """The connection closes on the query that follows the registration: 25 on both, and
    the initiator deregistered on a new connection, as iscsiadm's discovery_isns (before:
    left registered on the server)."""
    theirs, mine = register_first(hang_up=True), register_first(hang_up=True)
    a = adm("-m", "discovery", "-t", "isns", "-p", theirs.portal)
    b = ours("-m", "discovery", "-t", "isns", "-p", mine.portal)
    assert b.rc == a.returncode == 25, (a, b.err)
    assert mine.functions == theirs.functions == [0x0002, 0x0001, 0x0002, 0x0004]
    assert mine.registered == theirs.registered == set()
    assert INIT not in isns.query("iscsi-node-type=Initiator")


@pytest.mark.parametrize("fault", ["close", "DevAttrReg"])
def test_a_deregistration_that_breaks_leaves_the_answer(isns, adm, ours, register_first,
                                                         fault):
    """The deregistration after an answered query cut off, or answered as another
    function: the answer stands (iscsiadm's discovery_isns ignores what the
    deregistration returns), said, and the records written (before: 25, nothing
    written)."""
    theirs, mine = register_first(break_dereg=fault), register_first(break_dereg=fault)
    a = adm("-m", "discovery", "-t", "isns", "-p", theirs.portal)
    b = ours("-m", "discovery", "-t", "isns", "-p", mine.portal)
    assert (b.rc, b.out) == (a.returncode, a.stdout) == (0, b.out)
    assert sorted(b.out.splitlines()) == [f"{isns.tgt.portal},1 {T1}", f"{isns.tgt.portal},1 {T2}"]
    assert f"Could not deregister {INIT} with iSNS server" in b.err
    assert tree(ours.root).keys() == tree(adm.root).keys()
    assert mine.functions == [0x0002, 0x0001, 0x0002, 0x0004]


def test_a_refused_registration(isns, adm, ours, register_first):
    """The registration refused: exit 26 (ISCSI_ERR_ISNS_REG_FAILED) on both, nothing
    written, and no second query."""
    theirs, mine = register_first(reg_status=8), register_first(reg_status=8)
    a = adm("-m", "discovery", "-t", "isns", "-p", theirs.portal)
    b = ours("-m", "discovery", "-t", "isns", "-p", mine.portal)
    assert b.rc == a.returncode == 26
    assert b.err.splitlines() == [
        f"iscsictl: Could not register {INIT} with iSNS server: Source unauthorized.",
        "iscsictl: Could not perform iSNS discovery: iSNS registration failed"]
    assert mine.functions == theirs.functions == [0x0002, 0x0001]
    assert tree(ours.root) == tree(adm.root) == {}


def test_a_server_that_hangs_up(ours):
    """A server that takes the connection and closes it before answering: 25, said so,
    nothing written."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        def hang_up():
            conn, _ = lsock.accept()
            conn.recv(4096)
            conn.close()
        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        r = ours("-m", "discovery", "-t", "isns", "-p", f"127.0.0.1:{lsock.getsockname()[1]}")
        t.join(5)
    assert r.rc == 25
    assert "connection closed by the iSNS server" in r.err and "iSNS query failed" in r.err
    assert "target" not in r.err
    assert tree(ours.root) == {}


def test_a_portal_the_server_no_longer_lists_is_deleted_as_iscsiadm(tmp_path, adm, ours):
    """A rediscovery deletes the records of a portal the server dropped, as iscsiadm's
    delete_stale_rec (by the records' discovery fields): ``-m discovery -t isns`` keeps no
    server directory and links its records from isns/ itself (before: none was stale, and
    ``-m node -l`` kept trying the dead portal)."""
    t3 = "iqn.2026-11.test.isns:moved"
    with Isnsd(str(tmp_path / "isnsd")) as server:
        server.isnsadm("--register", "entity=moving", f"target={t3}",
                       "portal=127.0.0.1:3260/tcp", "portal=127.0.0.2:3260/tcp")
        server.wait_for_targets([t3])
        _, r = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", server.portal)
        assert sorted(r.out.splitlines()) == [f"127.0.0.1:3260,1 {t3}",
                                              f"127.0.0.2:3260,1 {t3}"]
        server.isnsadm("--deregister", "portal=127.0.0.2:3260/tcp")
        _, r = same(adm, ours, "-m", "discovery", "-t", "isns", "-p", server.portal)
        assert r.out == f"127.0.0.1:3260,1 {t3}\n"
        assert same(adm, ours, "-m", "node")[1].out == f"127.0.0.1:3260,1 {t3}\n"
