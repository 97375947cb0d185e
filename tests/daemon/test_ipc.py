"""The CLI <-> iscsictld protocol against the daemon's real IPC server (no kernel)."""

import asyncio
import concurrent.futures
import time
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading

import pytest

from iscsictl.daemon.service import Daemon
from iscsictl.db import schema
from iscsictl.db.record import Record
from iscsictl.ipc import IPC_VERSION, DaemonClient, DaemonError, DaemonNotRunning


@pytest.fixture
def served(tmp_path):
    """A Daemon whose IPC server runs in a thread's loop (netlink never opened)."""
    path = str(tmp_path / "d.sock")
    loop = asyncio.new_event_loop()
    box = {}

    async def serve():
        d = Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        box["daemon"] = d
        d.listen()

    loop.run_until_complete(serve())
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    yield box["daemon"], DaemonClient(path, timeout=10), loop
    loop.call_soon_threadsafe(box["daemon"]._server.close)
    loop.call_soon_threadsafe(loop.stop)
    th.join(5)


def test_ping_and_empty_sessions(served):
    d, client, _ = served
    assert client.call("ping")["sessions"] == 0
    assert client.call("sessions") == {}


def test_unknown_op_is_code_16(served):
    _, client, _ = served
    with pytest.raises(DaemonError) as e:
        client.call("frobnicate")
    assert e.value.code == 16 and "unknown request" in str(e.value)


def test_missing_argument_is_a_bad_request(served):
    _, client, _ = served
    with pytest.raises(DaemonError) as e:
        client.call("login")  # no records
    assert e.value.code == 16


@pytest.mark.parametrize("args, code, says", [
    (dict(port=0), 16, "a TCP port must be an integer 1..65535, not 0"),
    (dict(port=True), 16, "not True"),
    (dict(values={"k": 1}), 16, "a record must be an object of strings"),
    (dict(iface={"iface.transport_name": "tcp"}), 27,
     "SendTargets through transport tcp is not made by iscsictld"),
    (dict(), 12, "iSCSI driver iser is not loaded"),  # the host has no iSCSI modules
])
def test_sendtargets_through_the_kernel_checks_its_request(served, args, code, says):
    """``sendtargets`` (iSER discovery, made by the daemon): what it is asked is checked
    before anything is made; a tcp iface's discovery is the CLI's own."""
    _, client, _ = served
    base = dict(address="10.77.0.1", port=3260, values={}, iface={"iface.transport_name": "iser"},
                initiator_name="iqn.2026-11.org.example:i")
    with pytest.raises(DaemonError) as e:
        client.call("sendtargets", **{**base, **args})
    assert e.value.code == code and says in str(e.value)


def test_progress_lines_stream_before_the_answer(served):
    d, client, _ = served

    async def fake_login(records, initiator_name, progress=None, multiple=False):
        for i, _ in enumerate(records, 1):
            if progress is not None:
                progress({"done": i, "total": len(records), "result": {"ok": True}})
        return [{"ok": True, "n": i} for i in range(len(records))]

    d.login = fake_login
    seen = []
    result = client.call("login", seen.append, records=[{}, {}, {}], initiator_name="iqn.x")
    assert [e["done"] for e in seen] == [1, 2, 3]
    assert result == [{"ok": True, "n": 0}, {"ok": True, "n": 1}, {"ok": True, "n": 2}]
    # without a callback the daemon sends no progress lines at all
    assert client.call("login", records=[{}], initiator_name="iqn.x") == [{"ok": True, "n": 0}]


def _logging_login(seen_levels=None):
    """A Daemon.login that logs as a real one does: the daemon's own lines and the
    library's PDU lines, at DEBUG and INFO."""
    from iscsictl.protocol.trace import ESCAPED

    async def login(records, initiator_name, progress=None, multiple=False):
        logging.getLogger("iscsictld").debug("node %s: connected", records[0].get("n"))
        logging.getLogger("iscsictl.pdu").debug("-> Login Request T=1\n    HeaderDigest=None",
                                                extra=ESCAPED)  # as trace.trace's lines
        logging.getLogger("iscsictld").info("Connection1:0 is operational now")
        if seen_levels is not None:
            seen_levels.append(logging.getLogger("iscsictl").getEffectiveLevel())
        return [{"ok": True}]
    return login


def test_a_debug_request_gets_its_log_lines_before_the_answer(served):
    """The CLI's -d (ipc.DAEMON_LINES): what the daemon logs while serving the request, at
    DEBUG too, reaches the client in order before the answer; the loggers are back at
    their level after; a request without the flag gets no log line."""
    from iscsictl.ipc import DAEMON_LINES

    d, client, _ = served
    levels = []
    d.login = _logging_login(levels)
    got = []
    token = DAEMON_LINES.set(got.append)
    try:
        assert client.call("login", records=[{"n": "a\nb"}], initiator_name="iqn.x") == [{"ok": True}]
    finally:
        DAEMON_LINES.reset(token)
    assert got == ["node a\\nb: connected", "-> Login Request T=1\n    HeaderDigest=None",
                   "Connection1:0 is operational now"]
    assert levels == [logging.DEBUG]
    assert logging.getLogger("iscsictl").level == logging.getLogger("iscsictld").level \
        == logging.NOTSET
    lines = _raw_call(d.socket_path, {"version": IPC_VERSION, "op": "login", "args": {
        "records": [{"n": "b"}], "initiator_name": "iqn.x"}})
    assert lines == [{"version": IPC_VERSION, "ok": True, "result": [{"ok": True}]}]


def test_a_traced_requests_lines_are_its_own():
    """Another request's records, or a record of a task the traced request left running
    once it has ended, are not sent to its client."""
    from iscsictl.daemon.ipc_server import request_lines

    log = logging.getLogger("iscsictld")

    async def scenario():
        got = []
        go = asyncio.Event()

        async def later(what):
            await go.wait()
            log.debug(what)

        other = asyncio.create_task(later("another request's"))
        with request_lines(got.append):
            log.debug("mine %d", 1)
            left = asyncio.create_task(later("after the request ended"))
            await asyncio.sleep(0)
        go.set()
        await asyncio.gather(other, left)
        with request_lines(got.append):
            logging.getLogger("iscsictl.pdu").debug("mine %d", 2)
        return got

    assert asyncio.run(scenario()) == ["mine 1", "mine 2"]
    assert logging.getLogger("iscsictl").level == log.level == logging.NOTSET


def test_login_multiple_reaches_the_login(served):
    """``multiple`` (-m session -r SID -o new) is optional and reaches Daemon.login."""
    d, client, _ = served
    seen = []

    async def fake_login(records, initiator_name, progress=None, multiple=False):
        seen.append(multiple)
        return []

    d.login = fake_login
    client.call("login", records=[{}], initiator_name="iqn.x", multiple=True)
    client.call("login", records=[{}], initiator_name="iqn.x")
    assert seen == [True, False]


def test_logout_of_an_unknown_session_is_code_2(served):
    _, client, _ = served
    out = client.call("logout", sids=[7])
    assert out == [{"sid": 7, "ok": False, "code": 2, "message": "session not found"}]
    assert client.call("logout", sids=[7, "7", 7]) == out  # each session once


def test_no_daemon_says_how_to_start_it(tmp_path):
    with pytest.raises(DaemonNotRunning) as e:
        DaemonClient(str(tmp_path / "none.sock")).call("ping")
    assert e.value.code == 20 and "iscsictld" in str(e.value)


@pytest.mark.parametrize("path", ["/" + "x" * 200, "/dev/null"], ids=["too-long", "not-a-socket"])
def test_a_socket_path_that_cannot_be_connected_is_no_daemon(path):
    with pytest.raises(DaemonNotRunning) as e:
        DaemonClient(path).call("ping")
    assert e.value.code == 20 and "iscsictld" in str(e.value)


def test_a_daemon_whose_accept_queue_is_full_is_waited_for(tmp_path, monkeypatch):
    """A busy daemon's full accept queue makes a Unix socket's non-blocking connect fail
    with EAGAIN: the client tries again until the daemon accepts (before: exit 20, "start
    it with 'iscsictld'", at once, for a daemon that was running); a daemon that never
    accepts is said to be stuck, 20, after CONNECT_TIMEOUT."""
    import socket
    import threading
    import time

    from iscsictl import ipc

    path = str(tmp_path / "busy.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    queued = []
    while True:  # fill the accept queue
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    monkeypatch.setattr(ipc, "CONNECT_TIMEOUT", 0.3)
    t0 = time.monotonic()
    with pytest.raises(DaemonError) as e:
        DaemonClient(path)._connect()
    assert time.monotonic() - t0 >= 0.3
    assert not isinstance(e.value, DaemonNotRunning)
    assert e.value.code == 20 and "did not accept the connection within 0.3 s" in str(e.value)

    monkeypatch.setattr(ipc, "CONNECT_TIMEOUT", 10)
    accepted = []

    def accept_later():
        time.sleep(0.2)
        for _ in range(len(queued) + 1):
            accepted.append(srv.accept()[0])
    t = threading.Thread(target=accept_later)
    t.start()
    try:
        DaemonClient(path)._connect().close()
    finally:
        t.join(5)
        for c in queued + accepted:
            c.close()
        srv.close()
    assert len(accepted) == len(queued) + 1


def _one_shot_server(path, answer):
    """A socket at ``path`` that takes one connection, reads its request line and calls
    ``answer(conn)`` (in a thread)."""
    import socket
    import threading

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        conn.recv(1 << 16)
        answer(conn)
        conn.close()
        srv.close()
    threading.Thread(target=run, daemon=True).start()


def test_a_daemon_gone_midway_is_a_daemon_error(tmp_path):
    import socket
    import struct

    def reset(conn):  # close with a zero linger: the client's read gets ECONNRESET
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    path = str(tmp_path / "d.sock")
    _one_shot_server(path, reset)
    with pytest.raises(DaemonError) as e:
        DaemonClient(path, timeout=5).call("ping")
    assert e.value.code == 18


def test_a_progress_callback_failing_is_not_a_lost_daemon(tmp_path):
    """A BrokenPipeError of the CLI's own output (``| head``) reaches the CLI as it is,
    which ends quietly, not as a connection to the daemon lost."""
    path = str(tmp_path / "d.sock")
    _one_shot_server(path, lambda conn: conn.sendall(
        b'{"version":3,"progress":{"done":1,"total":2,"result":{}}}\n'))

    def progress(_event):
        raise BrokenPipeError(32, "Broken pipe")
    with pytest.raises(BrokenPipeError):
        DaemonClient(path, timeout=5).call("logout", progress=progress, sids=[1])


def test_an_empty_socket_variable_is_the_default(monkeypatch):
    from iscsictl.ipc import DEFAULT_SOCKET, socket_path

    monkeypatch.setenv("ISCSICTL_SOCKET", "")
    assert socket_path() == DEFAULT_SOCKET


def test_a_garbage_request_line_gets_an_answer(served, tmp_path):
    import socket

    _, client, _ = served
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.sendall(b"this is not json\n")
    s.settimeout(5)
    reply = s.recv(4096)
    s.close()
    assert b'"ok":false' in reply and b'"code":16' in reply


def _raw(path, request):
    import json
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(5)
    s.sendall(json.dumps(request).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(4096)
        assert chunk, "the daemon closed the connection without an answer"
        data += chunk
    s.close()
    return json.loads(data)


@pytest.mark.parametrize("op, args, what", [
    ("ping", [1], "args must be an object"),
    ("sessions", "x", "args must be an object"),
    ("login", {"records": "node.name", "initiator_name": "iqn.x:y"}, "records must be a list"),
    ("login", {"records": [["node.name"]], "initiator_name": "iqn.x:y"}, "records must be"),
    ("login", {"records": [{"node.name": 5}], "initiator_name": "iqn.x:y"}, "records must be"),
    ("login", {"records": [], "initiator_name": 7}, "expected a string"),
    ("login", {"initiator_name": "iqn.x:y"}, "records"),
    ("logout", {"sids": 3}, "sids must be a list"),
    ("logout", {"sids": [True]}, "must be an integer"),
    ("logout", {"sids": ["three"]}, "must be an integer, not 'three'"),
    ("logout", {"sids": ["1_0"]}, "must be an integer, not '1_0'"),  # int() reads 10
    # a million sids held the loop for 17 s and took 1.5 GB: bounded
    ("logout", {"sids": list(range(16385))}, "more than 16384 sessions in one request"),
    ("login", {"records": [{}] * 16385, "initiator_name": "iqn.x:y"}, "more than 16384"),
    ("logout", {"sids": [1], "force": "false"}, "expected true or false, not 'false'"),
    ("stop", {"logout_all": "false"}, "expected true or false"),
    ("login", {"records": [], "initiator_name": "iqn.x:y", "multiple": "no"}, "true or false"),
    ("stats", {"sid": {"a": 1}}, "must be an integer"),
    ("rescan", {"sid": 1}, "unknown request 'rescan'"),  # the CLI rescans through sysfs
    ("stats", {}, "sid"),
    (5, {}, "unknown request 5"),
])
def test_a_request_of_the_wrong_shape_is_a_bad_request(served, op, args, what):
    _, client, _ = served
    reply = _raw(client.path, {"version": 2, "op": op, "args": args})
    assert reply["ok"] is False and reply["error"]["code"] == 16
    assert what in reply["error"]["message"]
    assert client.call("ping")["sessions"] == 0  # still serving


def test_random_requests_are_all_answered(served, caplog):
    """300 requests of random shapes (fixed seed): each gets one JSON answer, nothing is
    logged as a failure, and the daemon still serves."""
    import json
    import random
    import socket

    _, client, _ = served
    rnd = random.Random(5)

    def value(depth=0):
        c = rnd.random()
        if depth > 2 or c < 0.3:
            return rnd.choice([None, True, 0, -1, 2**70, 1.5, "", "x", "127.0.0.1", "node.name"])
        if c < 0.6:
            return [value(depth + 1) for _ in range(rnd.randint(0, 3))]
        return {rnd.choice(["records", "sids", "sid", "initiator_name", "node.name", "force"]):
                value(depth + 1) for _ in range(rnd.randint(0, 4))}

    ops = ["ping", "sessions", "login", "logout", "rescan", "stats", "bogus", None, 5]
    for _ in range(300):
        req = {"version": rnd.choice([1, 2, 2, 3, None]), "op": rnd.choice(ops)}
        if rnd.random() < 0.9:
            req["args"] = value() if rnd.random() < 0.3 else {
                k: value(1) for k in rnd.sample(["records", "sids", "sid", "initiator_name",
                                                 "force"], rnd.randint(0, 3))}
        line = json.dumps(req).encode() + b"\n"
        if rnd.random() < 0.05:
            line = line[:rnd.randint(0, len(line) - 1)]
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(client.path)
        s.sendall(line)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        answers = [json.loads(x) for x in data.splitlines()]
        assert answers and "ok" in answers[-1], (req, data)
    assert "IPC request failed" not in caplog.text
    assert client.call("ping")["sessions"] == 0


def test_an_unreadable_initiator_name_leaves_the_daemon_without_one(served, tmp_path, caplog):
    d, _, _ = served
    (tmp_path / "initiatorname.iscsi").mkdir()
    assert d._initiator_name() is None  # adoption and automatic logins go on without it
    assert "cannot read" in caplog.text


def test_logout_reports_progress_per_session_in_order(served):
    _, client, _ = served
    seen = []
    out = client.call("logout", seen.append, sids=[7, 8])
    assert [r["sid"] for r in out] == [7, 8] and all(r["code"] == 2 for r in out)
    assert sorted(e["done"] for e in seen) == [1, 2] and {e["total"] for e in seen} == {2}


def _raw_call(path: str, request: dict) -> list[dict]:
    """Send one request line as an older/newer CLI would; every answer line, decoded."""
    import json
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(5)
    s.sendall(json.dumps(request).encode() + b"\n")
    data = b""
    while chunk := s.recv(65536):  # the daemon closes the connection after its answer
        data += chunk
    s.close()
    return [json.loads(line) for line in data.splitlines()]


def test_a_long_request_gets_keep_alive_lines_in_v3_only(served, monkeypatch):
    """While a v3 request is under way the daemon sends a keep-alive line every
    KEEPALIVE_INTERVAL s (the client waits on them; a stuck loop sends none), and none
    after the answer; v1 and v2 clients, which would not read them, get none."""
    from iscsictl.daemon import service

    d, client, loop = served
    monkeypatch.setattr(service, "KEEPALIVE_INTERVAL", 0.1)

    async def slow_logout(sids, force=False, progress=None, safe=False):
        await asyncio.sleep(0.55)
        return ["answer"]

    d.logout = slow_logout
    for version, alive in ((3, range(2, 7)), (2, [0]), (1, [0])):  # 5 on time, fewer if late
        lines = _raw_call(client.path, {"version": version, "op": "logout",
                                        "args": {"sids": [1]}})
        assert {m["version"] for m in lines} == {version}
        assert lines[-1] == {"version": version, "ok": True, "result": ["answer"]}
        assert all(m == {"version": version, "alive": True} for m in lines[:-1])
        assert len(lines) - 1 in alive, lines
    assert _raw_call(client.path, {"version": 3, "op": "ping"})[0]["ok"] is True

    async def beating():  # every request's keep-alive timer ended with its answer
        return [h for h in asyncio.get_running_loop()._scheduled
                if not h.cancelled() and "_beat" in repr(h)]
    assert asyncio.run_coroutine_threadsafe(beating(), loop).result(5) == []


def _records_reaching_login(d) -> list[dict]:
    """Make ``d``'s logins succeed without a target or kernel (sid 1, 2, ...); the list of
    the node records its sessions would be built from."""
    seen = []

    async def fake_establish(node, initiator_name, at_boot=False):
        seen.append(node.record)
        return len(seen)

    d._establish = fake_establish
    return seen


def test_a_login_record_gets_its_left_out_keys_at_their_defaults(served):
    """IPC v2: the CLI sends only the keys that differ from the compiled defaults."""
    d, client, _ = served
    seen = _records_reaching_login(d)
    rec = Record(schema.NODE)
    for name, value in (("node.name", "iqn.2003-01.org.example:t"),
                        ("node.conn[0].address", "192.0.2.7"), ("node.startup", "automatic"),
                        ("iface.transport_name", ""), ("node.session.cmds_max", "64")):
        rec.set(name, value)
    sent = rec.as_strings(omit_defaults=True)
    assert set(sent) == {"node.name", "node.conn[0].address", "node.startup",
                         "iface.transport_name", "node.session.cmds_max"}
    result = client.call("login", records=[sent], initiator_name="iqn.x")
    assert [(r["ok"], r["sids"]) for r in result] == [(True, [1])]
    assert seen == [rec.as_strings()]


def test_a_v1_cli_is_answered_in_v1_and_its_whole_records_are_read_as_they_are(served):
    d, client, _ = served
    seen = _records_reaching_login(d)
    whole = Record(schema.NODE, {"node.name": "iqn.2003-01.org.example:t"}).as_strings()
    lines = _raw_call(client.path, {"version": 1, "op": "login", "args": {
        "records": [whole], "initiator_name": "iqn.x", "progress": True}})
    assert [m["version"] for m in lines] == [1, 1]
    assert lines[0]["progress"]["done"] == 1 and lines[-1]["ok"]
    assert [r["sids"] for r in lines[-1]["result"]] == [[1]]
    assert seen == [whole]


def test_a_client_tells_a_stuck_daemon_loop_from_a_long_request(served, monkeypatch):
    """The real daemon: a request that takes 1.5 s while the loop turns is waited for on
    keep-alives by a client that gives up after 0.5 s of silence; the same request while
    the loop is stuck (a blocking call in it) sends nothing, and the client gives up (33)."""
    import time

    from iscsictl.daemon import service

    d, client, _ = served
    monkeypatch.setattr(service, "KEEPALIVE_INTERVAL", 0.1)

    async def long_logout(sids, force=False, progress=None, safe=False):
        await asyncio.sleep(1.5)
        return ANSWER

    async def stuck_logout(sids, force=False, progress=None, safe=False):
        time.sleep(1.5)  # the loop blocked, as by a bug
        return ANSWER

    impatient = DaemonClient(client.path, timeout=0.5)
    d.logout = long_logout
    assert impatient.call("logout", sids=[1]) == ANSWER
    d.logout = stuck_logout
    with pytest.raises(DaemonError) as e:
        impatient.call("logout", sids=[1])
    assert e.value.code == 33 and "sent nothing for 0.5 s" in str(e.value)
    time.sleep(1.2)  # the loop is back: the daemon serves on
    assert client.call("ping")["sessions"] == 0


ANSWER = [{"sid": 1, "ok": True}]  # a logout's outcome


def old_daemon_answer(version: int) -> bytes:
    """What a daemon of IPC ``version`` answers a request of a later version."""
    return (b'{"version":%d,"ok":false,"error":{"code":16,"message":"bad request: not an '
            b'iscsictl IPC v%d message"}}\n' % (version, version))


@pytest.mark.parametrize("old", [1, 2])
def test_an_older_daemon_is_named_as_such(tmp_path, old):
    """A daemon started before an upgrade answers 'bad request' in its own version: the CLI
    says restart it."""
    path = str(tmp_path / "old.sock")
    _one_shot_server(path, lambda conn: conn.sendall(old_daemon_answer(old)))
    with pytest.raises(DaemonError) as e:
        DaemonClient(path, timeout=5).call("ping")
    assert e.value.code == 18 and "restart iscsictld" in str(e.value)
    assert f"speaks IPC v{old}," in str(e.value)


def test_progress_beyond_the_socket_buffer_arrives_in_order(served):
    """Progress lines that outrun a slow client (more than the socket holds) are queued and
    sent in order, the answer after the last one."""
    import time

    d, client, _ = served

    async def fake_login(records, initiator_name, progress=None, multiple=False):
        for i in range(1, 2001):
            progress({"done": i, "total": 2000, "result": {"pad": "x" * 1000}})
        return [{"ok": True, "sids": [1]}]

    d.login = fake_login
    seen = []

    def slow(event):
        if not seen:
            time.sleep(0.3)  # the daemon has written everything it could by now
        seen.append(event["done"])
    assert client.call("login", slow, records=[{}], initiator_name="iqn.x") == [{"ok": True, "sids": [1]}]
    assert seen == list(range(1, 2001))


def test_a_request_line_in_pieces_and_one_too_long(served, monkeypatch):
    """A request that comes in pieces is read to its newline; one longer than the limit
    without a newline is answered as a bad request, and the daemon goes on serving."""
    import json
    import socket
    import time

    from iscsictl.daemon import service

    _, client, _ = served
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.settimeout(5)
    line = json.dumps({"version": 2, "op": "ping"}).encode() + b"\n"
    for piece in (line[:5], line[5:17], line[17:]):
        s.sendall(piece)
        time.sleep(0.05)
    assert json.loads(s.recv(4096))["ok"] is True
    s.close()
    monkeypatch.setattr(service, "MAX_MESSAGE", 1000)
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.settimeout(5)
    s.sendall(b"x" * 3000)
    reply = json.loads(s.recv(4096))
    s.close()
    assert reply["error"]["code"] == 16 and "more than 1000 bytes" in reply["error"]["message"]
    assert client.call("ping")["sessions"] == 0


def test_a_request_of_millions_of_values_is_refused_before_it_is_decoded(served, monkeypatch):
    """16 MiB of ``{},`` decoded into 5 million objects (~450 MB, 0.4 s of the loop) before
    the item count refused it; the values are now counted first.  The CLI splits a bulk
    request by the same count: MAX_REQUEST_ITEMS records of an IPv6 portal, CHAP and an
    iface's MAC (~80 values each, colons in their values counted) all reach a login."""
    from iscsictl.cli import kernel_ops
    from iscsictl.ipc import MAX_REQUEST_ITEMS, MAX_REQUEST_VALUES

    d, client, _ = served
    monkeypatch.setenv("ISCSICTL_SOCKET", client.path)
    seen = []

    async def fake_login(records, initiator_name, progress=None, multiple=False):
        seen.append(len(records))
        return [{"ok": True}] * len(records)
    d.login = fake_login
    record = {"node.name": "iqn.2003-01.org.example:storage.disk-array.lun0",
              "node.conn[0].address": "fd00:1234:5678::abcd", "node.tpgt": "1",
              "node.discovery_address": "fd00:1234:5678::abcd",
              "iface.hwaddress": "00:0e:1e:aa:bb:cc",
              "node.session.auth.authmethod": "CHAP",
              "node.session.auth.username": "user:name",
              **{f"node.conn[0].iscsi.Key{i}": f"a:b:{i}" for i in range(18)}}
    records = [record] * MAX_REQUEST_ITEMS
    assert len(kernel_ops._call_in_requests("login", None, "records", records,
                                            initiator_name="iqn.x")) == len(records)
    assert sum(seen) == len(records) and len(seen) > 1  # one request would be refused
    line = (b'{"version":3,"op":"login","initiator_name":"iqn.x","records":['
            + b"{}," * (2 << 20) + b"{}]}\n")
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.settimeout(10)
    s.sendall(line)
    reply = json.loads(s.makefile("rb").readline())
    s.close()
    assert reply["error"] == {"code": 16, "message": "bad request: more than "
                              f"{MAX_REQUEST_VALUES} JSON values in one request"}
    assert sum(seen) == len(records) and client.call("ping")["sessions"] == 0


def test_a_defect_answered_as_a_bad_request_leaves_its_traceback_at_debug(served, monkeypatch,
                                                                          caplog):
    """A KeyError, TypeError or ValueError from deep in a request (a defect, not the
    request's arguments) is answered 16 "bad request" as the arguments' are, and its
    traceback is logged at debug (-d 8 shows it; it was lost)."""
    import logging

    from iscsictl.ipc import DaemonError

    d, client, _ = served

    async def broken(req, progress):
        return {}["deep"]
    monkeypatch.setattr(d, "_dispatch", broken)
    with caplog.at_level(logging.DEBUG, logger="iscsictld"):
        with pytest.raises(DaemonError) as e:
            client.call("ping")
    assert e.value.code == 16 and "bad request: 'deep'" in str(e.value)
    logged = [r for r in caplog.records if "answered as bad (KeyError" in r.getMessage()]
    assert logged and logged[0].exc_info and logged[0].levelno == logging.DEBUG


def test_out_of_descriptors_the_daemon_answers_once_it_has_some(served, monkeypatch, caplog):
    """accept(2) failing with EMFILE (the process is out of descriptors: a real one, from
    RLIMIT_NOFILE) is logged and retried after a pause, not at every turn of the loop; the
    client waiting meanwhile is answered once descriptors are free again."""
    import json
    import resource
    import socket
    import time

    from iscsictl.daemon import ipc_server

    monkeypatch.setattr(ipc_server, "ACCEPT_RETRY_DELAY", 0.3)
    _, client, _ = served
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.dup(0)
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # no descriptor left
    try:
        s.connect(client.path)
        s.sendall(json.dumps({"version": 2, "op": "ping"}).encode() + b"\n")
        time.sleep(0.1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    start = time.monotonic()
    reply = json.loads(s.recv(4096))
    s.close()
    assert reply["ok"] is True
    assert 0.1 < time.monotonic() - start < 3  # after the pause, not at once
    assert "cannot accept a connection (Too many open files)" in caplog.text


def test_a_stop_request_stops_the_daemon(tmp_path):
    """'stop' over IPC: the daemon stops serving, removes its socket and its main returns
    (before, close() ran as one of the tasks it cancels, cancelled itself at its first
    await, and the daemon went on without a socket, deaf even to SIGTERM)."""
    path = str(tmp_path / "d.sock")

    async def main():
        d = Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.listen()
        answer = await asyncio.get_running_loop().run_in_executor(
            None, lambda: DaemonClient(path, timeout=5).call("stop"))
        await asyncio.wait_for(d.wait_stopped(), 5)
        return answer
    assert asyncio.run(main()) is None
    assert not os.path.exists(path)


def test_a_second_stop_waits_for_the_first(tmp_path):
    """A second SIGTERM (Ctrl-C twice, -k 0 then SIGTERM) runs no second close: it waits
    for the first's end (before: it closed netlink under the first's undoing of a
    cut-short login, whose half-made session stayed in the kernel)."""
    d = Daemon(None, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
               db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
    steps = []

    async def closing(logout_all):
        steps.append("close begins")
        await asyncio.sleep(0.2)
        steps.append("close ends")
    d._close = closing

    async def main():
        first = asyncio.ensure_future(d.close())
        await asyncio.sleep(0.05)
        await d.close()
        steps.append("second returns")
        await first
    asyncio.run(main())
    assert steps == ["close begins", "close ends", "second returns"]


def test_iscsiadms_k_0_stops_the_daemon(tmp_path, monkeypatch):
    """``iscsictl -k 0`` (iscsiadm's --killiscsid: iscsid stops, its sessions stay): the
    daemon is asked to stop and does; another priority is refused as iscsiadm refuses it,
    and without a daemon it says so (it was "unrecognized arguments")."""
    import io

    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output

    path = str(tmp_path / "d.sock")
    monkeypatch.setenv("ISCSICTL_SOCKET", path)

    def cli(*args):
        err = io.StringIO()
        return run(list(args), Output(io.StringIO(), err)), err.getvalue()

    async def main():
        d = Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.listen()
        refused = await asyncio.get_running_loop().run_in_executor(None, cli, "-k", "1")
        # with a mode, -k is an option the mode does not take, as iscsiadm's
        # verify_mode_params checks it (before: the daemon was stopped)
        with_mode = [await asyncio.get_running_loop().run_in_executor(None, cli, *args)
                     for args in (("-m", "node", "-k", "0"), ("-k", "0", "-m", "session"))]
        answer = await asyncio.get_running_loop().run_in_executor(None, cli, "-k", "0")
        await asyncio.wait_for(d.wait_stopped(), 5)
        return refused, with_mode, answer
    refused, with_mode, answer = asyncio.run(main())
    assert refused == (7, "iscsictl: Invalid iscsid priority 1. Priority must be 0.\n")
    assert with_mode == [
        (7, "iscsictl: node mode: option '-k' is not allowed/supported\n"),
        (7, "iscsictl: session mode: option '-k' is not allowed/supported\n")]
    assert answer == (0, "")
    rc, err = cli("--killiscsid", "0")
    assert rc == 20 and err.endswith("iscsictl: Could not stop iscsictld.\n"), err


def test_a_client_that_stalls_is_closed_and_others_are_served(served, monkeypatch, caplog):
    """Half a request line and then nothing: the connection is closed after the request
    deadline, with a line saying why (before, it was held for ever: a thousand such clients
    took every descriptor of the daemon's, and nobody was answered), and the daemon serves
    on meanwhile."""
    import socket
    import time

    from iscsictl.daemon import ipc_server

    monkeypatch.setattr(ipc_server, "REQUEST_TIMEOUT", 0.3)
    caplog.set_level(logging.INFO, logger="iscsictld")
    _, client, _ = served
    stalled = []
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX)
        s.connect(client.path)
        s.sendall(b'{"version": 3, "op": "pi')
        stalled.append(s)
    assert client.call("ping")["sessions"] == 0  # not held up by them
    t = time.monotonic()
    for s in stalled:
        s.settimeout(5)
        said = b""
        while chunk := s.recv(4096):  # then closed by the daemon
            said += chunk
        assert said == (b'{"version":3,"ok":false,"error":{"code":16,"message":"bad '
                        b'request: no whole request within 0.3 s"}}\n'), said
        s.close()
    assert time.monotonic() - t < 3
    assert "no whole request within 0.3 s; connection closed" in caplog.text


@pytest.mark.parametrize("answer,what", [
    (b'{"version":3,"ok":false,"error":"boom"}\n', "error 'boom'"),
    (b'{"version":3,"ok":false,"error":{"code":"x"}}\n', "error {'code': 'x'}"),
    (b"[" * 100000 + b"\n", "nested too deep"),
    (b'{"version":true,"ok":true}\n', "not an iscsictl IPC"),  # true == 1 in Python
    (b'{"version":3.0,"ok":true}\n', "not an iscsictl IPC"),
])
def test_an_answer_of_the_wrong_shape_is_code_18(tmp_path, answer, what):
    """Something that is not iscsictld on its socket (or a broken one): code 18 naming what
    could not be read (before: AttributeError, ValueError or RecursionError escaped)."""
    path = str(tmp_path / "odd.sock")
    _one_shot_server(path, lambda conn: conn.sendall(answer))
    with pytest.raises(DaemonError) as e:
        DaemonClient(path, timeout=5).call("ping")
    assert e.value.code == 18 and what in str(e.value)


def test_a_request_nested_too_deep_is_a_bad_request(served):
    import socket

    _, client, _ = served
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.settimeout(5)
    s.sendall(b"[" * 100000 + b"\n")
    reply = s.recv(4096)
    s.close()
    assert b'"code":16' in reply and b"nested too deep" in reply
    assert client.call("ping")["sessions"] == 0


def test_requests_under_way_when_the_daemon_stops_are_cut_short_and_answered(tmp_path):
    """close() (SIGTERM, IPC stop) cancels the requests under way while netlink is still
    open, so that what they undo reaches the kernel, and answers each client (29).  Before,
    a login went on after netlink was closed (its half-made kernel session could no longer
    be destroyed) and its client was left without an answer."""
    path = str(tmp_path / "d.sock")
    seen = []

    class Netlink:
        closed = False

        def close(self):
            self.closed = True

    async def main():
        d = Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.nl = nl = Netlink()
        entered = asyncio.Event()

        async def stuck_establish(node, initiator_name, at_boot=False):
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled with netlink " + ("closed" if nl.closed else "open"))
                raise

        d._establish = stuck_establish
        d.listen()
        threading.Thread(target=login, daemon=True).start()  # not the loop's executor: a
        await asyncio.wait_for(entered.wait(), 5)            # client never answered would
        await d.close()                                      # hold asyncio.run's end
        await asyncio.get_running_loop().run_in_executor(None, answered.wait, 10)

    def login():
        try:
            DaemonClient(path, timeout=5).call("login", records=[{
                "node.name": "iqn.2003-01.org.example:t", "node.conn[0].address": "192.0.2.7"}],
                initiator_name="iqn.x")
        except DaemonError as exc:
            answers.append(exc)
        answered.set()

    answers, answered = [], threading.Event()
    asyncio.run(main())
    assert seen == ["cancelled with netlink open"]
    (err,) = answers
    assert err.code == 29 and "stopped while the request was under way" in str(err)


def test_a_request_cut_short_behind_unread_progress_lines_still_answers_29(tmp_path):
    """The stop's 29 goes behind the progress lines the client has not read yet (waited
    for up to CUT_SHORT_DRAIN), and nothing of the connection is left on the loop once it
    is closed: before, the connection was closed under the queued lines (the client saw
    an end without an answer, 18), their sender task stayed, and the closed descriptor
    stayed registered (the next connection given its number failed its first read)."""
    import socket

    seen = {}

    async def main():
        loop = asyncio.get_running_loop()
        d = Daemon(str(tmp_path / "d.sock"), sysfs_root=str(tmp_path / "sys"),
                   state_dir=str(tmp_path / "state"), db_root=str(tmp_path),
                   config_root=str(tmp_path), autostart=False)

        async def login(records, initiator_name, progress=None, multiple=False):
            for i in range(3000):  # more than the socket's buffer takes
                progress({"done": i, "total": 3000, "result": {"ok": True, "node": "x" * 300}})
            await asyncio.Event().wait()
        d.login = login
        ours, client = socket.socketpair()
        ours.setblocking(False)
        fd = ours.fileno()
        task = loop.create_task(d._serve(ours))
        client.sendall(json.dumps({"version": 3, "op": "login", "args": {
            "records": [{}], "initiator_name": "x", "progress": True}}).encode() + b"\n")
        await asyncio.sleep(0.2)
        reader = loop.run_in_executor(None, _read_all, client)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        seen["registered"] = fd in loop._selector.get_map()
        seen["tasks"] = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        seen["lines"] = (await reader).splitlines()
        client.close()
    asyncio.run(main())
    assert not seen["registered"] and seen["tasks"] == []
    assert len(seen["lines"]) == 3001
    last = json.loads(seen["lines"][-1])
    assert last["error"]["code"] == 29


def _read_all(sock) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    return data


@pytest.mark.parametrize("op,reply", [
    ("ping", {"ok": False, "error": {"code": 999, "message": "boom"}}),
    ("ping", {"ok": False, "error": {"code": -1, "message": "boom"}}),
    ("ping", {"ok": False, "error": {"code": 0, "message": "boom"}}),
    ("ping", {"ok": False, "error": {"code": True, "message": "boom"}}),
    ("login", {"ok": True, "result": None}),
    ("login", {"ok": True, "result": [1]}),
    ("login", {"ok": True, "result": [{"ok": False, "code": "x"}]}),
    ("login", {"ok": True, "result": [{"ok": False, "code": 999}]}),
    ("login", {"ok": True, "result": [{"ok": True, "sids": ["1"]}]}),
    ("logout", {"ok": True, "result": [{"ok": True}]}),
    ("sessions", {"ok": True, "result": {"1": "x"}}),
    ("stats", {"ok": True, "result": {"sid": 1}}),
    ("stats", {"ok": True, "result": {"stats": {"txdata_octets": "1"}}}),
])
def test_an_answer_the_cli_cannot_read_is_18(tmp_path, op, reply):
    """An answer of the wrong shape, or an error code that is not open-iscsi's (or is 0 on
    a failure), is 'could not read iscsictld's answer' (18): never a traceback in the CLI,
    or an exit code that means something else (999 would exit 231, 0 success)."""
    path = str(tmp_path / "d.sock")
    line = (json.dumps({"version": IPC_VERSION, **reply}) + "\n").encode()
    _one_shot_server(path, lambda conn: conn.sendall(line))
    with pytest.raises(DaemonError) as e:
        DaemonClient(path, timeout=5).call(op)
    assert e.value.code == 18 and "could not read iscsictld's answer" in str(e.value)


def _iscsictld_without_kernel(monkeypatch):
    """iscsictld's main made runnable in this process: a netlink that opens and closes
    (each close recorded in the list returned), no iscsid, no self-protection, no log
    writer thread.  Returns (the __main__ module, the closes)."""
    import iscsictl.daemon.__main__ as main_module
    from iscsictl.daemon import service

    closed = []

    class Netlink:
        def __init__(self, **kw):
            pass

        def start(self):
            pass

        def close(self):
            closed.append(True)

    class Writer:
        def stop(self):
            pass
    monkeypatch.setattr(service, "AsyncIscsiNetlink", Netlink)
    monkeypatch.setattr(main_module, "iscsid_running", lambda: False)
    monkeypatch.setattr(main_module, "protect_daemon", lambda: [])
    monkeypatch.setattr(main_module, "lock_code", lambda: 0)
    monkeypatch.setattr(main_module, "_start_logging", lambda level: Writer())
    return main_module, closed


@pytest.mark.parametrize("where", ["too-long", "a-file"])
def test_an_ipc_socket_that_cannot_be_made_is_one_line_and_exit_1(tmp_path, monkeypatch,
                                                                   capsys, where):
    """iscsictld with a --socket it cannot bind (a path too long for AF_UNIX, a file in
    its place): one line saying so, exit 1, netlink closed (before: a traceback)."""
    main_module, closed = _iscsictld_without_kernel(monkeypatch)
    path = tmp_path / ("x" * 120 if where == "too-long" else "f")
    if where == "a-file":
        path.write_text("")
    rc = main_module.main([
        "--socket", str(path), "--lock-file", str(tmp_path / "lock"), "--state-dir",
        str(tmp_path / "state"), "--db-root", str(tmp_path), "--config-root", str(tmp_path),
        "--no-autostart", "--no-command-server"])
    err = capsys.readouterr().err
    assert rc == 1 and closed == [True]
    assert err.startswith(f"iscsictld: cannot serve on {path}: ") and "Traceback" not in err
    assert err.count("\n") == 1


def test_an_item_that_raises_is_its_own_result_and_the_others_are_answered(tmp_path, caplog):
    """One record's login raising (a bug: an unchecked value reaching a system call) is
    that record's result, 9, logged with its traceback; the other records' results are
    answered (before: the whole request answered 16 'bad request' while the other logins
    went on, their sessions never reported)."""
    d = Daemon(str(tmp_path / "d.sock"), sysfs_root=str(tmp_path / "sys"),
               state_dir=str(tmp_path / "state"), db_root=str(tmp_path),
               config_root=str(tmp_path), autostart=False)

    async def login_one(rec, initiator_name, multiple=False, at_boot=False):
        if rec["node.name"].endswith("bad"):
            raise TypeError("a bytes-like object is required, not 'int'")
        await asyncio.sleep(0.01)
        return {"ok": True, "sids": [3], "node": rec["node.name"]}
    d._login_one = login_one
    seen = []
    out = asyncio.run(d.login([{"node.name": "t-bad"}, {"node.name": "t-good"}], "iqn.x",
                              progress=seen.append))
    assert out[0]["ok"] is False and out[0]["code"] == 9
    assert "internal error: TypeError" in out[0]["message"]
    assert out[1] == {"ok": True, "sids": [3], "node": "t-good"}
    assert [p["done"] for p in seen] == [1, 2]
    assert "internal error in one item of a request" in caplog.text


def test_without_modprobe_the_start_names_the_missing_interface(tmp_path, monkeypatch):
    """No netlink interface and no modprobe (a container without kmod): the start fails
    with the netlink error that says what to load, not "cannot serve on <socket>: No such
    file or directory"; a modprobe that hangs is killed after MODPROBE_TIMEOUT s."""
    from iscsictl.daemon import service
    from iscsictl.netlink import KernelInterfaceUnavailable

    class NoInterface:
        def __init__(self, **kw):
            raise KernelInterfaceUnavailable("the kernel has no iSCSI netlink interface")
    monkeypatch.setattr(service, "AsyncIscsiNetlink", NoInterface)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    d = Daemon(str(tmp_path / "d.sock"), sysfs_root=str(tmp_path / "sys"),
               state_dir=str(tmp_path / "state"), db_root=str(tmp_path),
               config_root=str(tmp_path), autostart=False)
    with pytest.raises(KernelInterfaceUnavailable):
        asyncio.run(d.start())
    hung = tmp_path / "bin"
    hung.mkdir()
    (hung / "modprobe").write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    (hung / "modprobe").chmod(0o755)
    monkeypatch.setenv("PATH", str(hung))
    monkeypatch.setattr(service, "MODPROBE_TIMEOUT", 0.3)
    start = time.monotonic()
    assert asyncio.run(service._modprobe("iscsi_tcp")) is None
    assert time.monotonic() - start < 5


def test_iscsictld_takes_iscsids_debug_level():
    """``iscsictld -d 8``, as an administrator types iscsid's ``-d debug_level`` (it was
    "unrecognized arguments: 8", exit 2); ``-d`` alone still turns debugging on."""
    from iscsictl.daemon.__main__ import _parser

    assert [_parser().parse_args(a).debug for a in
            (["-d", "8"], ["-d"], ["-d", "0"], ["--debug=3"], [])] == [8, 1, 0, 3, 0]
    assert _parser().parse_args(["-d", "--no-autostart"]).no_autostart


def test_k_0_is_answered_when_the_daemon_has_stopped_and_its_lock_is_free(tmp_path,
                                                                           monkeypatch):
    """``iscsictl -k 0`` returns once the daemon has closed (its socket gone) and released
    its single-instance lock, before the command server's commands under way end: an
    upgrade's ``iscsictl -k 0; iscsictld`` starts the new daemon (before: the answer came
    as the close began, and the lock was held until the command server had stopped, up to
    35 s, so the new iscsictld exited 1), and a ``-k 0`` the command server runs is
    answered before the daemon waits for that server (iscsid answers
    MGMT_IPC_IMMEDIATE_STOP at its event loop's end)."""
    import io

    from iscsictl.cli.main import run
    from iscsictl.cli.output import Output
    from iscsictl.daemon import commands

    main_module, _ = _iscsictld_without_kernel(monkeypatch)
    path = tmp_path / "d.sock"
    lock = tmp_path / "lock"
    answered = threading.Event()
    seen = {}

    class CommandServer:  # a command under way: its stop waits for the -k 0 it runs
        def __init__(self, daemon_socket):
            pass

        async def start(self):
            pass

        async def stop(self):
            for _ in range(40):
                if answered.is_set():
                    break
                await asyncio.sleep(0.05)
            seen["answered before the command server's stop ended"] = answered.is_set()
    monkeypatch.setattr(commands, "CommandServerProcess", CommandServer)
    monkeypatch.setenv("ISCSICTL_SOCKET", str(path))

    def kill():
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["rc"] = run(["-k", "0"], Output(io.StringIO(), io.StringIO()))
        seen["socket left"] = path.exists()
        # from another process: a process's own fcntl locks never conflict with each other
        probe = subprocess.run([sys.executable, "-c", (
            "import sys\nfrom iscsictl.daemon.instance import LockHeld, take_lock\n"
            f"try:\n    take_lock({str(lock)!r})\nexcept LockHeld as e:\n    sys.exit(str(e))")],
            capture_output=True, text=True, timeout=30)
        seen["lock"] = probe.stderr.strip() or "free"
        answered.set()
    t = threading.Thread(target=kill)
    t.start()
    rc = main_module.main([
        "--socket", str(path), "--lock-file", str(lock), "--state-dir",
        str(tmp_path / "state"), "--db-root", str(tmp_path), "--config-root", str(tmp_path),
        "--no-autostart"])
    t.join(10)
    assert rc == 0
    assert seen == {"rc": 0, "socket left": False, "lock": "free",
                    "answered before the command server's stop ended": True}


def test_a_socket_another_user_serves_gets_no_request():
    """A listener of another user at the daemon's socket (a path in a directory others can
    write to, an abstract name any user can bind) gets no request, whose records carry
    CHAP secrets: 13, as the C client refuses a command server not root's (before: the
    request was sent and the answer read as iscsictld's)."""
    from peers import listener_of_another_user

    name = f"iscsictl-test-{os.getpid()}-not-the-daemon"
    with listener_of_another_user(name):
        with pytest.raises(DaemonError) as e:
            DaemonClient("\0" + name, timeout=5).call("ping")
    assert e.value.code == 13
    assert "is served by uid 65534, not root: not iscsictld; nothing was sent" in str(e.value)


def test_iscsictld_takes_iscsids_f_and_v(capsys):
    """iscsid's ``-f`` (foreground: iscsictld always is) changes nothing; ``-v`` prints the
    version and exits 0, as iscsid's (both were "unrecognized arguments", exit 2: a unit
    file written for iscsid, ``ExecStart=iscsid -f``, failed)."""
    from iscsictl import __version__
    from iscsictl.daemon.__main__ import _parser

    assert _parser().parse_args(["-f", "-d", "8"]).foreground
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["-v"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"iscsictld version {__version__}\n"


def test_a_bulk_login_over_one_requests_limit_is_sent_in_several(served, tmp_path,
                                                                monkeypatch):
    """`-m node -L all` over more records than one request may name (MAX_REQUEST_ITEMS):
    the daemon refused the whole request and nothing was logged in (exit 16).  The CLI
    sends them in requests of the limit, one after another: every record reaches a login,
    each said, the progress counted across the requests."""
    import io

    from iscsictl.cli import kernel_ops
    from iscsictl.cli.output import Output
    from iscsictl.db.store import NodeDB
    from iscsictl.ipc import MAX_REQUEST_ITEMS

    d, _, _ = served
    monkeypatch.setenv("ISCSICTL_SOCKET", d.socket_path)
    monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", str(tmp_path / "no-sys"))
    reached = []

    async def login_one(rec, initiator_name, multiple=False, at_boot=False):
        reached.append(rec["node.name"])
        return {"ok": True, "sids": [len(reached)], "node": rec["node.name"]}
    d._login_one = login_one
    n = MAX_REQUEST_ITEMS + 3
    records = [NodeDB(str(tmp_path / "db")).new_node_record("iqn.x:0", "192.0.2.1")] * n
    out, err = io.StringIO(), io.StringIO()
    rc = kernel_ops.login_records(records, "iqn.i", Output(out, err))
    assert (rc, err.getvalue()) == (0, "")
    assert len(reached) == n
    assert out.getvalue().count("successful.") == n

    done = []
    kernel_ops._call_in_requests("logout", lambda ev: done.append(ev["done"]), "sids",
                                 list(range(1, n + 1)), force=True)
    assert done == sorted(done) and done[-1] == n


def test_commands_made_while_the_daemon_restarts_wait_for_the_next_one(tmp_path):
    """The socket systemd holds (iscsictld.socket) is served, and left at its path when
    the daemon stops: a command that connects while no daemon runs waits in it and is
    answered by the next daemon (before: each restart's second refused commands, 20, as
    the daemon unlinked and rebound its own socket).  Each daemon gets its own copy of the
    descriptor, as a process systemd starts."""
    path = str(tmp_path / "d.sock")
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    held.bind(path)
    held.listen(16)

    def daemon_on_the_held_socket():
        d = Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "state"),
                   db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)
        d.inherited_socket = socket.socket(fileno=os.dup(held.fileno()))
        return d

    async def first():
        d = daemon_on_the_held_socket()
        d.listen()
        answer = await asyncio.to_thread(DaemonClient(path, timeout=10).call, "ping")
        await d.close()
        return answer

    assert asyncio.run(first())["sessions"] == 0
    assert os.path.exists(path)  # not unlinked: systemd's
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(DaemonClient(path, timeout=10).call, "ping")
        time.sleep(0.3)  # connected, in the backlog, no daemon to answer
        assert not waiting.done()

        async def second():
            d = daemon_on_the_held_socket()
            d.listen()
            answer = await asyncio.to_thread(waiting.result, 10)
            await d.close()
            return answer
        assert asyncio.run(second())["sessions"] == 0
    held.close()


def test_the_socket_systemd_passes_is_taken_by_its_protocol(tmp_path):
    """sd_listen_fds(3): LISTEN_PID this process and LISTEN_FDS >= 1, descriptor 3; the
    variables taken out of the environment (the command server must not take them); a
    LISTEN_PID of another process is not ours; descriptor 3 not a listening Unix stream
    socket is said."""
    probe = (
        "import os, sys\n"
        "from iscsictl.daemon.__main__ import sd_listen_socket\n"
        "if sys.argv[1] == 'ours': os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "try:\n"
        "    s = sd_listen_socket()\n"
        "except OSError as e:\n"
        "    print('error', e); raise SystemExit\n"
        "print(s and s.getsockname(), s and s.get_inheritable(),\n"
        "      [k for k in os.environ if k.startswith('LISTEN_')])\n")
    path = str(tmp_path / "d.sock")

    def run(whose: str, listening: bool = True) -> str:
        kind = socket.SOCK_STREAM if listening else socket.SOCK_DGRAM
        with socket.socket(socket.AF_UNIX, kind) as s:
            if os.path.exists(path):
                os.unlink(path)
            s.bind(path)
            if listening:
                s.listen()
            cp = subprocess.run(
                [sys.executable, "-c", probe, whose], capture_output=True, text=True,
                timeout=60, pass_fds=(3,), preexec_fn=lambda: os.dup2(s.fileno(), 3),
                env={**os.environ, "LISTEN_PID": "1", "LISTEN_FDS": "1",
                     "LISTEN_FDNAMES": "iscsictld.socket"})
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.strip()
    assert run("ours") == f"{path} False []"
    assert run("pid 1") == "None None []"
    assert run("ours", listening=False).startswith("error descriptor 3 systemd passed is "
                                                   "not a listening Unix stream socket")


def test_a_socket_listening_at_its_path_is_left_to_its_owner(tmp_path, monkeypatch):
    """iscsictld.socket holds the path while its service is stopped, and iscsictld is
    started by hand: it refuses that path (EADDRINUSE, found without a connection, which
    would have systemd start the service) instead of deleting the socket and binding its
    own; and a daemon that stops deletes the path only while it is its own socket (before:
    the unit's socket was deleted and every command failed with 20 until the unit was
    restarted).  A listener not systemd's is taken over, as a stale socket is (any user
    may list one at that path from a mount namespace of its own).  The test process
    stands in for systemd."""
    import errno

    from iscsictl.daemon import instance

    monkeypatch.setattr(instance, "INIT_PID", os.getpid())
    path = str(tmp_path / "d.sock")

    def daemon():
        return Daemon(path, sysfs_root=str(tmp_path / "sys"), state_dir=str(tmp_path / "st"),
                      db_root=str(tmp_path), config_root=str(tmp_path), autostart=False)

    async def main():
        unit = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unit.bind(path)
        unit.listen(8)
        with pytest.raises(OSError) as e:
            daemon().listen()
        assert e.value.errno == errno.EADDRINUSE and "iscsictld.socket" in str(e.value)
        pending = select.select([unit], [], [], 0)[0]  # no connection was made to it
        unit.close()  # the unit stopped: its file stays, stale, and is replaced
        monkeypatch.setattr(instance, "INIT_PID", 0)
        squat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # and another's
        os.unlink(path)
        squat.bind(path)
        squat.listen(1)
        d = daemon()
        d.listen()
        squat.close()
        assert await asyncio.get_running_loop().run_in_executor(
            None, lambda: DaemonClient(path, timeout=5).call("ping")) is not None
        os.unlink(path)  # a socket unit's, bound after it, in its place
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(path)
        await d.close()
        kept = os.path.exists(path)
        other.close()
        return pending, kept
    assert asyncio.run(main()) == ([], True)


# ---- a hostile local client (a review of session 59; each failed before its fix) -------
def _answer(path: str, request: bytes, timeout: float = 30) -> bytes:
    """The whole of what the daemon answers ``request`` on a connection of its own."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(request)
    out = b""
    while chunk := s.recv(1 << 20):
        out += chunk
    s.close()
    return out


def test_a_huge_bad_argument_is_not_echoed_back_in_full(served):
    path = served[1].path
    """A 10 MB string where a flag belongs: its error answer is cut (it was the 10 MB value
    again, the checker's f"... not {value!r}": 20 clients that sent one each and read
    nothing held ~640 MB of the daemon's memory, OOMScoreAdjust=-1000, for SILENCE_LIMIT)."""
    request = (b'{"version":3,"op":"logout","args":{"sids":[],"force":"' + b"a" * (10 << 20)
               + b'"}}\n')
    answer = _answer(path, request)
    assert b'"code":16' in answer and b"(10485790 characters)" in answer  # its message
    assert len(answer) < 4096, f"an error answer of {len(answer)} bytes"


def test_a_client_that_stalls_is_told_why_before_it_is_closed(served, monkeypatch):
    """A request line not finished within REQUEST_TIMEOUT: one line says why, then the
    connection is closed (it was closed with no answer: the CLI could only say it lost
    the connection)."""
    from iscsictl.daemon import ipc_server

    monkeypatch.setattr(ipc_server, "REQUEST_TIMEOUT", 0.5)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(served[1].path)
    s.sendall(b'{"version":3,')
    t = time.monotonic()
    out = s.recv(4096)
    s.close()
    assert time.monotonic() - t < 5
    assert b'"ok":false' in out and b"no whole request within 0.5 s" in out, out


@pytest.mark.parametrize("sid", [-1, 2 ** 32, 2 ** 70])
def test_a_session_id_the_kernel_cannot_have_is_a_bad_request(served, sid):
    """The kernel's session ids are uint32_t: -1 or 2**70 was answered 'session not
    found' (2), as if it could have been one; it is a bad request (16)."""
    answer = _answer(served[1].path, b'{"version":3,"op":"stats","args":{"sid":%d}}\n' % sid)
    assert b'"code":16' in answer and b"a session id is 0..4294967295" in answer, answer
