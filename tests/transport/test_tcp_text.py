"""transport.tcp's Text exchange over a real TCP connection to the protocol's fake target
(tests/protocol/fake_target.py) served by a thread: what no tgtd or LIO can be made to do,
a SendTargets answer sent slowly."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest

from iscsictl.protocol.config import LoginConfig
from iscsictl.protocol.text_exchange import parse_send_targets
from iscsictl.transport.errors import TransportTimeout
from iscsictl.transport.tcp import login

from protocol.fake_target import FakeTarget, TargetConfig, serve_socket

INAME = "iqn.2005-03.org.open-iscsi:host1"


def _serve(listener: socket.socket, target: FakeTarget, gap: float) -> None:
    """One connection: the fake target's answers, each Text Response ``gap`` s late."""
    conn, _ = listener.accept()
    with conn:
        while data := conn.recv(65536):
            target.receive_data(data)
            out = target.data_to_send()
            if out and target.text_requests:
                time.sleep(gap)
            try:
                conn.sendall(out)
            except OSError:
                return


@pytest.fixture
def slow_target():
    listeners = []

    def start(gap: float, n: int) -> int:
        targets = [(f"iqn.2003-01.org.example:disk{i:03d}", [f"192.0.2.1:3260,{i}"])
                   for i in range(n)]
        target = FakeTarget(TargetConfig(targets=targets, text_segment=200))
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(target=_serve, args=(listener, target, gap), daemon=True).start()
        return listener.getsockname()[1]
    yield start
    for listener in listeners:
        listener.close()


def _send_targets(port: int, active_timeout: float):
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None,
                         login_timeout=5)
    with login("127.0.0.1", port, config) as conn:
        return parse_send_targets(conn.text([("SendTargets", "All")], active_timeout))


def test_a_long_answer_sent_slowly_is_waited_for_as_open_iscsi(slow_target):
    """open-iscsi's discovery restarts active_timeout after each PDU received: a target
    that sends its many Text Responses 0.1 s apart answers within 0.5 s each time, though
    the whole answer takes ~2 s (before: TransportTimeout after 0.5 s)."""
    found = _send_targets(slow_target(0.1, 40), active_timeout=0.5)
    assert len(found) == 40


def test_a_target_silent_for_longer_than_active_timeout_times_out(slow_target):
    with pytest.raises(TransportTimeout):
        _send_targets(slow_target(0.6, 2), active_timeout=0.3)


def test_a_login_the_target_breaks_ends_the_discovery_with_19_at_once():
    """The target answers the discovery's Login Request with a Reject: the initiator's
    own finding (LOGIN_INVALID_PDU in open-iscsi), which its discovery takes as fatal:
    19, one connection, no retry (before: 5, as a login the target refused for a while)."""
    from iscsictl.protocol.pdu import Reject
    from iscsictl.transport.errors import FatalLoginError

    accepted = []

    def reject(conn):
        accepted.append(conn)
        request = conn.recv(65536)
        hdr, _ = Reject(reason=9, data=request[:48]).encode_header()
        conn.sendall(hdr + request[:48])
    try:
        error = _failed_discovery(_each_connection(reject), FatalLoginError, reopen_max=3)
    finally:
        for conn in accepted:
            conn.close()
    assert error.exit_code == 19 and len(accepted) == 1


def _failed_discovery(listener, error, reopen_max):
    """The ``error`` a SendTargets discovery of ``listener``'s portal ends in (tried
    again ``reopen_max`` times, 10 ms apart); the listener closed."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets

    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None,
                         login_timeout=5)
    try:
        with pytest.raises(error) as caught:
            send_targets("127.0.0.1", listener.getsockname()[1], config,
                         DiscoveryPolicy(reopen_max=reopen_max, retry_delay=0.01))
    finally:
        listener.close()
    return caught.value


def test_a_login_response_is_waited_for_active_timeout_then_given_up_with_19():
    """iscsiadm's discovery connects within login_timeout, then polls active_timeout for
    each Login Response (login.c iscsi_login) and gives up on a silence: LOGIN_FAILED,
    fatal in usr/discovery.c (19, one connection).  Before, the wait was login_timeout and
    a silence was retried reopen_max times (exit 11)."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.transport.errors import FatalLoginError

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                accepted.append(listener.accept()[0])  # and never a word
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None)
    t0 = time.monotonic()
    try:
        with pytest.raises(FatalLoginError) as caught:
            send_targets("127.0.0.1", listener.getsockname()[1], config,
                         DiscoveryPolicy(reopen_max=2, login_timeout=0.2, active_timeout=0.6,
                                         retry_delay=0.01))
    finally:
        took = time.monotonic() - t0
        listener.close()
        for conn in accepted:
            conn.close()
    assert caught.value.exit_code == 19 and len(accepted) == 1
    assert took >= 0.6
    assert "no Login Response within 0.6 s" in str(caught.value)


def _served(target):
    """A Connection to ``target`` (the fake, answering in a thread) over a socketpair."""
    from iscsictl.transport.tcp import Connection, Endpoint

    ours, theirs = socket.socketpair()
    threading.Thread(target=serve_socket, args=(target, theirs), daemon=True).start()
    return Connection(ours, Endpoint("t", "192.0.2.1", 3260))


def test_a_ping_read_with_a_response_is_still_answered():
    """A NOP-In ping that comes in the same read as the response that ends a command is
    answered (RFC 7143 §11.19: a NOP-In with a TTT wants its NOP-Out): the reader hands
    out one PDU at a time and keeps the rest for the next exchange (before: the rest of
    the read was dropped with it, and the target's ping timed out)."""
    from iscsictl.protocol.scsi import cdb_inquiry

    class Pinging(FakeTarget):
        ping = False

        def _scsi(self, cmd):
            super()._scsi(cmd)
            if self.ping:  # queued behind the response: one segment, one read
                self.ping = False
                self.nop_in_ping(ttt=0x77, data=b"")

    t = Pinging(TargetConfig(name="iqn.2003-01.org.example:disk1"))
    conn = _served(t)
    try:
        conn.login(LoginConfig(initiator_name=INAME, target_name="iqn.2003-01.org.example:disk1"))
        t.ping = True
        assert conn.scsi(0, cdb_inquiry(), 255, 5).ok
        assert conn.scsi(0, cdb_inquiry(), 255, 5).ok  # its exchange answers the ping
        for _ in range(100):
            if t.nop_outs:
                break
            time.sleep(0.01)
        assert [n.ttt for n in t.nop_outs] == [0x77]
    finally:
        conn.close()


def test_a_short_discovery_chap_secret_is_said_as_a_node_logins_is():
    """A discovery's CHAP secret under RFC 7143's 96 bits: said through ``log``, as a node
    login's is (it was used without a word)."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.protocol.config import ChapCredentials

    t = FakeTarget(TargetConfig(chap_users={"disc": b"short6"},
                                targets=[("iqn.2003-01.org.example:d", ["192.0.2.1:3260,1"])]))
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: serve_socket(t, listener.accept()[0]), daemon=True).start()
    said = []
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None,
                         chap=ChapCredentials("disc", b"short6"))
    try:
        found = send_targets("127.0.0.1", listener.getsockname()[1], config,
                             DiscoveryPolicy(reopen_max=0), log=said.append)
    finally:
        listener.close()
    assert [d.name for d in found] == ["iqn.2003-01.org.example:d"]
    assert said == ["CHAP password has 6 bytes; RFC 7143 asks for at least 12 (96 bits)"]


def test_a_command_waits_while_the_targets_window_is_closed():
    """MaxCmdSN = ExpCmdSN - 1 at login: the window is closed (RFC 7143 §4.2.2.1; a target
    ignores a command outside it), so the command waits until a NOP-In opens it (before:
    sent at once, ignored, and the probe timed out)."""
    from iscsictl.protocol.pdu import NOPIn
    from iscsictl.protocol.scsi import _serial_lt, cdb_inquiry
    from iscsictl.transport.tcp import Connection, Endpoint

    class Closed(FakeTarget):
        ignored = 0

        def _scsi(self, cmd):
            if _serial_lt((self.exp_cmdsn + self.c.window - 1) & 0xFFFFFFFF, cmd.cmdsn):
                self.ignored += 1  # outside the window: ignored, as the RFC says
                return
            super()._scsi(cmd)

    t = Closed(TargetConfig(name="iqn.2003-01.org.example:disk1", window=0))
    ours, theirs = socket.socketpair()
    lock = threading.Lock()
    threading.Thread(target=serve_socket, args=(t, theirs, lock), daemon=True).start()
    conn = Connection(ours, Endpoint("t", "192.0.2.1", 3260))

    def open_later():
        time.sleep(0.3)
        with lock:
            t.c.window = 32
            t._emit(NOPIn(itt=0xFFFFFFFF, ttt=0xFFFFFFFF, **t._win()))
            out = t.data_to_send()
        theirs.sendall(out)
    try:
        conn.login(LoginConfig(initiator_name=INAME, target_name="iqn.2003-01.org.example:disk1"))
        assert conn.success.max_cmdsn == (conn.success.exp_cmdsn - 1) & 0xFFFFFFFF
        threading.Thread(target=open_later, daemon=True).start()
        start = time.monotonic()
        assert conn.scsi(0, cdb_inquiry(), 255, 5).ok
        assert time.monotonic() - start >= 0.25 and t.ignored == 0
    finally:
        conn.close()
        theirs.close()


def test_nop_ins_do_not_hold_a_text_exchange_past_active_timeout():
    """A target that pings (NOP-In) and never answers the SendTargets: each ping is
    answered, but only a Text Response restarts active_timeout, so the exchange ends when
    it runs out, as open-iscsi's discovery does (before: every NOP-In restarted it, and the
    CLI's discovery and iscsictld's discovery daemon waited forever)."""
    from iscsictl.transport.tcp import Connection, Endpoint

    class Mute(FakeTarget):
        def _text(self, req):
            self.text_requests += 1  # never answered

    t = Mute(TargetConfig(targets=[("iqn.2003-01.org.example:d", ["192.0.2.1:3260,1"])]))
    ours, theirs = socket.socketpair()
    lock, stop = threading.Lock(), threading.Event()
    threading.Thread(target=serve_socket, args=(t, theirs, lock), daemon=True).start()

    def ping():
        ttt = 0x100
        while not stop.wait(0.05):
            with lock:
                if not t.text_requests:
                    continue
                ttt += 1
                t.nop_in_ping(ttt=ttt, data=b"")
                out = t.data_to_send()
            try:
                theirs.sendall(out)
            except OSError:
                return
    conn = Connection(ours, Endpoint("t", "192.0.2.1", 3260))
    threading.Thread(target=ping, daemon=True).start()
    try:
        conn.login(LoginConfig(initiator_name=INAME, session_type="Discovery",
                               target_name=None))
        start = time.monotonic()
        with pytest.raises(TransportTimeout):
            conn.text([("SendTargets", "All")], 0.5)
        assert time.monotonic() - start < 2
        assert len(t.nop_outs) >= 3  # the pings were answered meanwhile
    finally:
        stop.set()
        conn.close()
        theirs.close()


def _each_connection(handle):
    """A listener on 127.0.0.1 whose every connection ``handle(conn)`` takes, each in a
    thread of its own.  Close the listener."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return listener


def _fake_targets(make):
    """:func:`_each_connection` with a new fake target serving each connection
    (``make(the targets made so far)``); (listener, those targets)."""
    served: list = []

    def handle(conn):
        served.append(make(served))
        serve_socket(served[-1], conn)
    return _each_connection(handle), served


@pytest.mark.parametrize("answer", ["async", "reject"])
def test_an_async_message_or_a_reject_for_sendtargets_connects_again(answer):
    """An Asynchronous Message (RFC 7143 §11.9: at any time) or a Reject where the
    SendTargets answer should be: open-iscsi's discovery connects again
    (DISCOVERY_NEED_RECONNECT), reopen_max times, and the next connection's answer is
    taken (before: exit 5 at once)."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.protocol.pdu import AsyncMessage, Reject

    class Odd(FakeTarget):
        def _text(self, req):
            self.text_requests += 1
            if answer == "async":  # the target asks for a logout
                self._emit(AsyncMessage(async_event=1, parameter3=2, **self._win()))
            else:
                self._emit(Reject(reason=4, statsn=self.statsn, exp_cmdsn=self.exp_cmdsn,
                                  max_cmdsn=self.exp_cmdsn, data=req.encode()[:48]))

    targets = [("iqn.2003-01.org.example:d", ["192.0.2.1:3260,1"])]
    listener, served = _fake_targets(lambda served: (Odd if not served else FakeTarget)(
        TargetConfig(targets=targets)))
    said = []
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None)
    try:
        found = send_targets("127.0.0.1", listener.getsockname()[1], config,
                             DiscoveryPolicy(reopen_max=2, retry_delay=0.01), log=said.append)
    finally:
        listener.close()
    assert [d.name for d in found] == ["iqn.2003-01.org.example:d"] and len(served) == 2
    assert "connecting again" in said[0], said


def test_a_login_response_without_its_last_nul_is_read_as_open_iscsi_reads_it():
    """A Login Response whose last key=value lacks its NUL (RFC 7143 §6.1 asks for it):
    open-iscsi's iscsi_process_login_response ends the text itself and logs in; so does
    the initiator now (before: 19, "text data does not end with a NUL delimiter")."""
    from iscsictl.protocol.pdu import LoginResponse

    class Clipped(FakeTarget):
        def _emit(self, pdu):
            if isinstance(pdu, LoginResponse) and pdu.data.endswith(b"\0"):
                pdu = dataclasses.replace(pdu, data=pdu.data[:-1])
            super()._emit(pdu)

    t = Clipped(TargetConfig(targets=[("iqn.2003-01.org.example:d", ["192.0.2.1:3260,1"])]))
    conn = _served(t)
    try:
        conn.login(LoginConfig(initiator_name=INAME, session_type="Discovery",
                               target_name=None))
        assert parse_send_targets(conn.text([("SendTargets", "All")], 5))[0].name == \
            "iqn.2003-01.org.example:d"
    finally:
        conn.close()


def _twenty_targets_in_pieces():
    """A fake target answering SendTargets with 20 targets in 64-byte Text Responses (11
    of them): (its targets, its listener, the targets it served, a discovery config)."""
    targets = [(f"iqn.2003-01.org.example:d{i:02d}", ["192.0.2.1:3260,1"]) for i in range(20)]
    listener, served = _fake_targets(
        lambda served: FakeTarget(TargetConfig(targets=targets, text_segment=64)))
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None)
    return targets, listener, served, config


def test_an_answer_over_the_limits_is_not_asked_for_again(monkeypatch):
    """An answer past the exchange's limits (here 10 Text Responses) would be as long on
    the next connection: the discovery fails at once, 5, one connection (an unexpected
    PDU is what connects again)."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.protocol import text_exchange
    from iscsictl.transport.errors import ProtocolFailure

    monkeypatch.setattr(text_exchange, "MAX_TEXT_RESPONSES", 10)
    monkeypatch.setattr(text_exchange, "MIN_RESPONSE_BYTES", 1000)
    _, listener, served, config = _twenty_targets_in_pieces()
    try:
        with pytest.raises(ProtocolFailure) as caught:
            send_targets("127.0.0.1", listener.getsockname()[1], config,
                         DiscoveryPolicy(reopen_max=2, retry_delay=0.01))
    finally:
        listener.close()
    assert caught.value.exit_code == 5 and len(served) == 1
    assert "11 Text Responses in one exchange, 704 bytes of answer" in str(caught.value)


def test_many_text_responses_that_each_bring_an_answer_are_taken(monkeypatch):
    """Past MAX_TEXT_RESPONSES, responses that bring MIN_RESPONSE_BYTES each on average
    are taken: a target may send one target a Text Response (§11.11.2), and one of 5,000
    targets failed the whole discovery (open-iscsi's loop has no count limit)."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy, send_targets
    from iscsictl.protocol import text_exchange

    monkeypatch.setattr(text_exchange, "MAX_TEXT_RESPONSES", 10)
    targets, listener, _, config = _twenty_targets_in_pieces()
    try:
        found = send_targets("127.0.0.1", listener.getsockname()[1], config,
                             DiscoveryPolicy(reopen_max=0, retry_delay=0.01))
    finally:
        listener.close()
    assert sorted(t.name for t in found) == [t for t, _ in targets]


@pytest.mark.parametrize("status", [0x0300, 0x0400, 0x0F07])
def test_a_target_error_or_an_unknown_status_class_is_retried_by_the_discovery(status):
    """A discovery's Login answered with a target error (class 3) or a status class RFC
    7143 does not define: usr/discovery.c connects again for both (its TARGET_ERR case and
    its default), reopen_max times, then 11 (an unknown class was 19 at once, as a Login
    Response that breaks the rules; a node's login still gives it up, as iscsid)."""
    from iscsictl.transport.errors import RetriesExceeded

    listener, served = _fake_targets(lambda _: FakeTarget(TargetConfig(status=status)))
    error = _failed_discovery(listener, RetriesExceeded, reopen_max=2)
    assert error.exit_code == 11 and len(served) == 3


def test_a_redirect_without_a_usable_address_is_retried_by_the_discovery():
    """A discovery's Login answered with a redirect whose TargetAddress is missing: open-
    iscsi's LOGIN_REDIRECTION_FAILED, which its discovery connects again for (reopen_max),
    then 11; it was 19 at once, as a Login Response that breaks the rules."""
    from iscsictl.transport.errors import RetriesExceeded

    listener, served = _fake_targets(lambda _: FakeTarget(TargetConfig(status=0x0101)))
    error = _failed_discovery(listener, RetriesExceeded, reopen_max=2)
    assert error.exit_code == 11 and len(served) == 3
    assert "without TargetAddress" in str(error.last)


def test_a_challenge_another_discovery_issued_is_not_answered():
    """Two mutual-CHAP discovery logins in one process (iscsictld's discovery daemon, a
    command of two portals): the second target sends as its challenge the one our first
    login issued, to have us compute its proof.  Refused (RFC 7143 §12.1.3), as the
    daemon's node logins refuse it.  Before, each discovery had a set of its own."""
    from hostile_peer import Server, login_rsp, read_pdu

    from iscsictl.protocol.config import ChapCredentials
    from iscsictl.protocol.text import decode_text
    from iscsictl.transport.errors import ConnectionClosed, InitiatorAuthFailed

    ours: dict[str, str] = {}

    def target(c, n):
        req = read_pdu(c)  # AuthMethod=CHAP
        c.sendall(login_rsp(req, "AuthMethod=CHAP\0", transit=False, csg=0, nsg=0))
        req = read_pdu(c)  # CHAP_A
        challenge = ours.get("CHAP_C", "0x" + "11" * 16)  # the first: a target's own
        c.sendall(login_rsp(req, f"CHAP_A=5\0CHAP_I=7\0CHAP_C={challenge}\0",
                            transit=False, csg=0, nsg=0))
        keys = dict(decode_text(read_pdu(c).data))  # CHAP_N, CHAP_R, CHAP_I, CHAP_C
        ours.setdefault("CHAP_C", keys["CHAP_C"])
        answered.append("CHAP_R" in keys)
        c.close()  # (no proof of its own: the first login ends there)

    answered: list[bool] = []
    config = LoginConfig(initiator_name=INAME, session_type="Discovery", target_name=None,
                         chap=ChapCredentials("me", b"outgoing-secret-1", "tgt",
                                              b"incoming-secret-2"))
    with Server(target) as s:
        with pytest.raises(ConnectionClosed):
            login("127.0.0.1", s.port, config, connect_timeout=5)
        with pytest.raises(InitiatorAuthFailed, match="target reflected a challenge we issued"):
            login("127.0.0.1", s.port, config, connect_timeout=5)
    assert answered == [True]


@pytest.mark.parametrize("value, reopen_max", [("-1", 0), ("-7", 0), ("3", 3), ("abc", 5),
                                               (None, 5)])
def test_a_negative_reopen_max_is_no_retry(value, reopen_max):
    """discovery.sendtargets.reopen_max below 0 is one attempt and no retry (iscsiadm's
    discovery makes none at all: "connection login retries (reopen_max) -1 exceeded"); it
    was the default's 5.  An unreadable or missing value is the default."""
    from iscsictl.discovery.sendtargets import DiscoveryPolicy

    values = {} if value is None else {"discovery.sendtargets.reopen_max": value}
    assert DiscoveryPolicy.from_record(values).reopen_max == reopen_max
