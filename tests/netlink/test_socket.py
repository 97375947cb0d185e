"""The demultiplexer, driven by a fake kernel over socketpair(AF_UNIX, SOCK_DGRAM)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import threading
import time

import pytest

from iscsictl.netlink import (EVENTS_LOST, AsyncIscsiNetlink, ConnError, IscsiKernelError, IscsiNetlink, IscsiParam,
                              KernelInterfaceUnavailable, NetlinkClosedError, RecvPdu, ReplyTimeout,
                              StopConnFlag, UnbindSession)
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E
from fake_kernel import SyncKernel, echo, if_error, split_messages


def ev_conn_error(sid=1, cid=0, error=1020):
    return m.encode_message(E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=sid, r_cid=cid, r_error=error)


def ev_recv_pdu(sid=1, pdu=b"\x23" + b"\0" * 47):
    return m.encode_message(E.KEVENT_RECV_PDU, nlmsg_type=0, r_sid=sid, r_cid=0, payload=pdu)


class FakeKernel:
    """Receives requests on one end of a socketpair; ``handler(req) -> [datagrams]`` answers
    each message of a datagram in turn (several requests may share one, as in the kernel)."""

    def __init__(self, handler):
        self.user, self.kern = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.user.setblocking(False)
        self.handler = handler
        self.requests: list[bytes] = []
        self.datagrams = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                req = self.kern.recv(1 << 20)
            except OSError:
                return
            if not req:
                return
            self.datagrams += 1
            for one in split_messages(req):
                self.requests.append(one)
                for dgram in self.handler(one) or ():
                    if isinstance(dgram, float):
                        time.sleep(dgram)
                        continue
                    try:
                        self.kern.send(dgram)
                    except OSError:  # closed by the test meanwhile: dropped, as by the kernel
                        return

    def send(self, dgram: bytes):
        self.kern.send(dgram)

    def close(self):
        self.kern.close()


@pytest.fixture
def kernel_factory():
    made = []

    def make(handler):
        k = FakeKernel(handler)
        made.append(k)
        return k
    yield make
    for k in made:
        k.close()


def test_reply_after_interleaved_events(kernel_factory):
    k = kernel_factory(lambda req: [ev_conn_error(), ev_recv_pdu(), echo(req, r_sid=7, r_host_no=2)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.create_session(0x55, initial_cmdsn=1, cmds_max=128, queue_depth=32) == (7, 2)
        events = nl.pending_events()
    assert [type(e) for e in events] == [ConnError, RecvPdu]
    assert events[0].error == 1020 and events[0].error.name == "TCP_CONN_CLOSE"
    assert events[1].pdu[0] == 0x23
    (req,) = k.requests
    length, nl_type, flags = struct.unpack_from("=IHH", req)
    assert (length, nl_type, flags) == (72, E.CREATE_SESSION, 0)
    (msg,) = m.decode_messages(req)
    assert (msg["transport_handle"], msg["initial_cmdsn"], msg["cmds_max"], msg["queue_depth"]) == (0x55, 1, 128, 32)


def test_event_callback_gets_events_in_order(kernel_factory):
    seen = []
    k = kernel_factory(lambda req: [ev_conn_error(error=1011), ev_conn_error(error=1022), echo(req)])
    with IscsiNetlink(k.user, timeout=2, event_callback=seen.append) as nl:
        nl.start_conn(1, 7, 0)
    assert [e.error for e in seen] == [1011, 1022]


def test_messages_after_the_reply_in_the_same_read_are_queued(kernel_factory):
    k = kernel_factory(lambda req: [echo(req) + ev_conn_error(error=1008)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        nl.stop_conn(1, 7, 0, StopConnFlag.RECOVER)
        assert [e.error for e in nl.pending_events()] == [1008]
    (msg,) = m.decode_messages(k.requests[0])
    assert msg["flag"] == 3


def test_if_error_raises_errno(kernel_factory):
    k = kernel_factory(lambda req: [ev_conn_error(), if_error(req, errno.EINVAL)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        with pytest.raises(IscsiKernelError) as ei:
            nl.set_param(1, 7, 0, IscsiParam.TARGET_NAME, "iqn.2003-01.org.example:t")
        assert ei.value.errno == errno.EINVAL and ei.value.op == "SET_PARAM" and ei.value.source == "iferror"
        assert "EINVAL" in str(ei.value)
        assert len(nl.pending_events()) == 1
    (msg,) = m.decode_messages(k.requests[0])
    assert msg["payload"] == b"iqn.2003-01.org.example:t\0" and msg["len"] == len(msg["payload"])


def test_negative_retcode_raises(kernel_factory):
    k = kernel_factory(lambda req: [echo(req, r_retcode=-errno.ENOTCONN)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        with pytest.raises(IscsiKernelError) as ei:
            nl.bind_conn(1, 7, 0, transport_eph=12, is_leading=True)
    assert ei.value.errno == errno.ENOTCONN and ei.value.source == "retcode"


def test_ep_poll_returns_retcode(kernel_factory):
    k = kernel_factory(lambda req: [echo(req, r_retcode=1)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.ep_poll(1, ep_handle=0xABCDEF, timeout_ms=1) == 1


def test_timeout_raises(kernel_factory):
    k = kernel_factory(lambda req: [ev_conn_error()])
    with IscsiNetlink(k.user, timeout=0.2) as nl:
        t0 = time.monotonic()
        with pytest.raises(ReplyTimeout, match="DESTROY_SESSION"):
            nl.destroy_session(1, 7)
        assert 0.15 < time.monotonic() - t0 < 2
        assert len(nl.pending_events()) == 1


def test_reply_of_another_type_does_not_match(kernel_factory):
    other = m.encode_message(E.START_CONN, sid=7, cid=0)
    k = kernel_factory(lambda req: [other])
    with IscsiNetlink(k.user, timeout=0.2) as nl:
        with pytest.raises(ReplyTimeout):
            nl.destroy_conn(1, 7, 0)


def test_malformed_datagrams_are_skipped(kernel_factory, caplog):
    caplog.set_level(logging.WARNING)
    k = kernel_factory(lambda req: [b"\x01\x02", (999).to_bytes(4, "little") + bytes(80), ev_conn_error(),
                                    echo(req, r_sid=7, r_cid=3)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.create_conn(1, 7, 3) == 3
        assert len(nl.pending_events()) == 1
    assert any("malformed" in r.message or "shorter" in r.message for r in caplog.records)


class Overrun(SyncKernel):
    """A kernel that answers inside send(), as the real one does, over a socket whose next
    read fails with ENOBUFS once ``armed`` (the receive buffer overran: the kernel dropped
    messages and says so at the next ``recvmsg``, before what it queued)."""

    armed = False

    def recv_into(self, buf):
        if self.armed:
            self.armed = False
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return super().recv_into(buf)


def test_an_overrun_is_delivered_in_its_place_among_the_events(caplog):
    """ENOBUFS from the socket becomes EVENTS_LOST, after the events read before it and
    before those read after; a reply queued after it still answers its request."""
    t = Overrun(lambda req: [ev_conn_error(sid=2), echo(req, r_sid=7, r_cid=3)])
    with IscsiNetlink(t, timeout=2) as nl:
        t.b.send(ev_conn_error(sid=1))
        assert nl.next_event(1).sid == 1
        t.armed = True
        assert nl.create_conn(1, 7, 3) == 3
        events = nl.pending_events()
    assert events[0] is EVENTS_LOST and [e.sid for e in events[1:]] == [2]
    assert "receive buffer overrun (ENOBUFS)" in caplog.text


class Congesting:
    """The netlink core after an overrun (net/netlink/af_netlink.c): a socket that holds
    ``cap`` datagrams; one that overflows it reports ENOBUFS once (netlink_overrun sets
    NETLINK_S_CONGESTED), and every later message to it, replies included, is dropped
    without a word until a read finds it empty (netlink_rcv_wake).  The kernel answers
    inside send()."""

    def __init__(self, cap=400):
        import collections
        self.cap, self.queue = cap, collections.deque()
        self.congested = self.error = False
        self.dropped_replies = 0
        self._r, self._w = socket.socketpair()
        self._w.send(b"x")  # always readable: reads go by the queue

    def deliver(self, dgram, reply=False):
        if self.congested or len(self.queue) >= self.cap:
            self.error = self.error or not self.congested
            self.congested = True
            self.dropped_replies += reply
            return
        self.queue.append(dgram)

    def fileno(self):
        return self._r.fileno()

    def send(self, data):
        for one in split_messages(data):
            self.deliver(echo(one, r_sid=7, r_cid=3), reply=True)
        return len(data)

    def recv_into(self, buf):
        if self.error:
            self.error = False
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        d = self.queue.popleft()
        self.congested = self.congested and bool(self.queue)
        buf[:len(d)] = d
        return len(d)

    def close(self):
        self._r.close(), self._w.close()


def test_a_request_after_an_overrun_is_sent_on_an_emptied_socket():
    """An event storm overran the socket, and the reader has taken one batch of the
    backlog: a request sent now would have its reply dropped silently (the socket stays
    congested until read empty) and wait out its timeout though the kernel did it.  The
    backlog is read first, its events kept in order, then the request goes and is
    answered (both clients)."""
    t = Congesting()
    for i in range(1000):
        t.deliver(ev_conn_error(sid=1 + i))
    with IscsiNetlink(t, timeout=3) as nl:
        nl.process_events()  # one batch: the socket still holds a backlog, congested
        assert t.queue and t.congested
        assert nl.create_conn(1, 7, 3) == 3
        events = nl.pending_events()
    assert t.dropped_replies == 0 and events[0] is EVENTS_LOST
    assert [e.sid for e in events[1:]] == list(range(1, 401))

    async def through_the_async_client():
        t = Congesting()
        for i in range(1000):
            t.deliver(ev_conn_error(sid=1 + i))
        seen = []
        nl = AsyncIscsiNetlink(t, timeout=3, event_callback=seen.append)
        try:
            nl._on_readable()  # the reader's one batch
            assert await nl.create_conn(1, 7, 3) == 3
        finally:
            nl.close()
        return t, seen
    t, seen = asyncio.run(through_the_async_client())
    assert t.dropped_replies == 0
    assert seen[0] is EVENTS_LOST and [e.sid for e in seen[1:]] == list(range(1, 401))


def test_a_receive_error_before_a_request_does_not_end_it():
    """The read of what the socket holds before a request fails (an error other than an
    overrun): said, and the request is sent and answered all the same (both clients), not
    ended by an OSError its callers do not expect."""
    class FailsOnce(Congesting):
        failed = False

        def recv_into(self, buf):
            if not self.failed:
                self.failed = True
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return super().recv_into(buf)

    with IscsiNetlink(FailsOnce(), timeout=3) as nl:
        assert nl.create_conn(1, 7, 3) == 3

    async def through_the_async_client():
        nl = AsyncIscsiNetlink(FailsOnce(), timeout=3, event_callback=lambda ev: None)
        try:
            return await nl.create_conn(1, 7, 3)
        finally:
            nl.close()
    assert asyncio.run(through_the_async_client()) == 3


def test_a_reply_dropped_in_an_overrun_fails_its_request_at_once():
    """The kernel queues its reply inside sendmsg(): when the read after the send finds an
    overrun and no reply, the reply was dropped, and the request fails then (ReplyLost, a
    ReplyTimeout) instead of after its timeout; the events read meanwhile are kept."""
    t = Overrun(lambda req: [ev_conn_error(sid=2)])  # the reply: dropped
    with IscsiNetlink(t, timeout=30) as nl:
        t.armed = True
        with pytest.raises(ReplyTimeout, match="no reply to CREATE_CONN: the kernel dropped "
                           r"it \(netlink receive buffer overrun\)"):
            nl.create_conn(1, 7, 3)
        events = nl.pending_events()
    assert events[0] is EVENTS_LOST and [e.sid for e in events[1:]] == [2]


def test_a_reply_dropped_in_an_overrun_fails_an_async_request_at_once():
    """As above, for the asyncio client, a request sent on the loop and one sent from the
    executor (DESTROY_SESSION, which can block in the kernel)."""
    t = Overrun(lambda req: [])
    seen = []

    async def main():
        async with AsyncIscsiNetlink(t, timeout=30, event_callback=seen.append) as nl:
            for call in (lambda: nl.create_conn(1, 7, 3), lambda: nl.destroy_session(1, 7)):
                t.armed = True
                with pytest.raises(ReplyTimeout, match="the kernel dropped it"):
                    await asyncio.wait_for(call(), 10)
    asyncio.run(main())
    assert seen == [EVENTS_LOST, EVENTS_LOST]


def test_an_overrun_reaches_the_async_event_callback():
    seen = []
    t = Overrun(lambda req: [])

    async def main():
        async with AsyncIscsiNetlink(t, event_callback=seen.append):
            t.armed = True
            t.b.send(ev_conn_error(sid=4))
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
    asyncio.run(main())
    assert seen[0] is EVENTS_LOST and seen[1].sid == 4


def _stats_payload(scsicmd_pdus: int, customs=()) -> bytes:
    # struct iscsi_stats: 2 x u64, 19 x u32 (scsicmd_pdus is the 2nd), custom_length u32, then customs
    counters = [0] * 19
    counters[1] = scsicmd_pdus
    head = struct.pack("=QQ19II", 1000, 2000, *counters, len(customs))
    body = b"".join(struct.pack("=64sQ", d.encode(), v) for d, v in customs)
    return head + body


def test_get_stats_multicast_reply(kernel_factory):
    def handler(req):
        foreign = m.encode_message(E.GET_STATS, nlmsg_type=0, sid=99, cid=0, payload=_stats_payload(5))
        mine = m.encode_message(E.GET_STATS, nlmsg_type=0, sid=7, cid=0,
                                payload=_stats_payload(77, [("tx_sendpage_failures", 3)]))
        return [foreign, mine]
    k = kernel_factory(handler)
    with IscsiNetlink(k.user, timeout=2) as nl:
        st = nl.get_stats(1, 7, 0)
        assert st.scsicmd_pdus == 77 and st.txdata_octets == 1000 and st.rxdata_octets == 2000
        assert st.custom == (("tx_sendpage_failures", 3),)
        (foreign,) = nl.pending_events()
        assert foreign.type == E.GET_STATS


def test_multicast_answers_of_other_requests_that_come_first_are_not_taken(kernel_factory):
    """GET_STATS and GET_CHAP answers reach every socket: one for another connection of the
    same session (cid 1), or another first index of the same host's CHAP table, coming
    just before ours, stays an event; ours is the reply."""
    def rec(idx, name):
        return struct.pack("=HxxI256s256sB3x", idx, 0, name, b"secret", 6)

    def handler(req):
        (msg,) = m.decode_messages(req)
        if msg["type"] == E.GET_STATS:
            return [m.encode_message(E.GET_STATS, nlmsg_type=0, sid=7, cid=1,
                                     payload=_stats_payload(5)),
                    m.encode_message(E.GET_STATS, nlmsg_type=0, sid=7, cid=0,
                                     payload=_stats_payload(77))]
        return [m.encode_message(E.GET_CHAP, nlmsg_type=0, host_no=3, chap_tbl_idx=128,
                                 num_entries=1, payload=rec(128, b"entry128")),
                m.encode_message(E.GET_CHAP, nlmsg_type=0, host_no=3, chap_tbl_idx=0,
                                 num_entries=1, payload=rec(0, b"entry0"))]
    k = kernel_factory(handler)
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.get_stats(1, 7, 0).scsicmd_pdus == 77
        got = nl.get_chap(1, host_no=3, chap_tbl_idx=0, num_entries=7)
        assert [(c.chap_tbl_idx, c.username) for c in got] == [(0, "entry0")]
        assert [e.type for e in nl.pending_events()] == [E.GET_STATS, E.GET_CHAP]


def test_get_stats_truncated_payload_is_an_error(kernel_factory):
    from iscsictl.netlink import PayloadDecodeError
    k = kernel_factory(lambda req: [m.encode_message(E.GET_STATS, nlmsg_type=0, sid=7, cid=0,
                                                     payload=_stats_payload(1)[:50])])
    with IscsiNetlink(k.user, timeout=2) as nl:
        with pytest.raises(PayloadDecodeError):
            nl.get_stats(1, 7, 0)


def test_get_chap_and_host_stats(kernel_factory):
    rec = struct.pack("=HxxI256s256sB3x", 4, 1, b"user", b"secret", 6)

    def handler(req):
        (msg,) = m.decode_messages(req)
        if msg["type"] == E.GET_CHAP:
            return [m.encode_message(E.GET_CHAP, nlmsg_type=0, host_no=3, num_entries=1, payload=rec)]
        hs = struct.pack("=82QI4x", *range(82), 1) + struct.pack("=64sQ", b"fw_x", 9)
        return [m.encode_message(E.GET_HOST_STATS, nlmsg_type=0, host_no=3, payload=hs)]
    k = kernel_factory(handler)
    with IscsiNetlink(k.user, timeout=2) as nl:
        (c,) = nl.get_chap(1, host_no=3, chap_tbl_idx=0, num_entries=128)
        assert (c.chap_tbl_idx, c.chap_type, c.username, c.password) == (4, 1, "user", b"secret")
        hs = nl.get_host_stats(1, host_no=3)
        assert hs.counters["mactx_bytes"] == 1 and hs.counters["iscsi_sequence_error"] == 81
        assert hs.custom == (("fw_x", 9),)


def test_another_processs_get_chap_answer_is_not_taken_for_ours(kernel_factory):
    """GET_CHAP's answer is multicast to every socket: one for another first index (another
    listing of the same host, already queued) is left as an event, and ours is taken (before:
    the other was, and a listing from 0 went on from 129, entries 0-127 missing)."""
    def rec(idx, name):
        return struct.pack("=HxxI256s256sB3x", idx, 0, name, b"secret", 6)

    def handler(req):
        (msg,) = m.decode_messages(req)
        return [m.encode_message(E.GET_CHAP, nlmsg_type=0, host_no=3,
                                 chap_tbl_idx=msg["chap_tbl_idx"], num_entries=1,
                                 payload=rec(0, b"entry0"))]
    k = kernel_factory(handler)
    k.send(m.encode_message(E.GET_CHAP, nlmsg_type=0, host_no=3, chap_tbl_idx=128,
                            num_entries=1, payload=rec(128, b"entry128")))
    with IscsiNetlink(k.user, timeout=2) as nl:
        got = nl.get_chap(1, host_no=3, chap_tbl_idx=0, num_entries=7)
        assert [(c.chap_tbl_idx, c.username) for c in got] == [(0, "entry0")]
        assert [e.msg["chap_tbl_idx"] for e in nl.pending_events()] == [128]


@pytest.mark.parametrize("in_group", [True, False])
def test_host_stats_are_the_multicast_reply_not_the_echo_after_it(kernel_factory, in_group):
    """Linux's GET_HOST_STATS multicasts the stats (nlmsg_type 0), then unicasts the
    request's echo without them (iscsi_if_rx spares only GET_STATS and GET_CHAP that echo).
    The stats are the reply; a socket in no group, which gets only the echo, times out
    (before, it took the echo and failed to decode 664 bytes from nothing)."""
    hs = struct.pack("=82QI4x", *range(82), 0)

    def handler(req):
        stats = m.encode_message(E.GET_HOST_STATS, nlmsg_type=0, host_no=3, payload=hs)
        return ([stats] if in_group else []) + [echo(req)]
    k = kernel_factory(handler)
    with IscsiNetlink(k.user, timeout=0.3) as nl:
        if in_group:
            assert nl.get_host_stats(1, host_no=3).counters["mactx_bytes"] == 1
        else:
            with pytest.raises(ReplyTimeout, match="GET_HOST_STATS"):
                nl.get_host_stats(1, host_no=3)


def test_a_new_flashnode_names_its_portal_type_with_the_nul(kernel_factory):
    """iscsiadm's knew_flashnode: "ipv4\\0", u.new_flashnode.len 5 (it was sent without the
    NUL, len 4); a portal type that is neither is refused before anything is sent."""
    k = kernel_factory(lambda req: [echo(req, r_flashnode_idx=2)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.new_flashnode(1, 3, "ipv6") == 2
        with pytest.raises(ValueError, match="ipv4 or ipv6"):
            nl.new_flashnode(1, 3, "ïpv4")
    (msg,) = [m.decode_messages(r)[0] for r in k.requests]
    assert (msg["len"], msg["payload"][:msg["len"]]) == (5, b"ipv6\0")


def test_operations_encode_their_payloads(kernel_factory):
    k = kernel_factory(lambda req: [echo(req, r_handle=0x77) if m.decode_messages(req)[0]["type"] in (
        E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_CONNECT_THROUGH_HOST) else echo(req)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        nl.send_pdu(1, 7, 0, b"\x43" + bytes(47), b"InitiatorName=x\0")
        assert nl.ep_connect(1, "10.0.0.1", 3260) == 0x77
        assert nl.ep_connect(1, "fe80::1", 3260, host_no=2) == 0x77
        nl.set_host_param(1, 2, 2, "eth0")
        nl.set_iface_params(1, 2, [dict(iface_num=0, param=1, iface_type=1, param_type=2, value=b"\x0a\0\0\1")])
        nl.set_chap(1, 2, [dict(param=0, value=b"\x01\x00")])
        nl.ping(1, 2, 0, 1, 56, 9, "10.0.0.2")
        nl.tgt_dscvr(1, 2, 1, True, "10.0.0.3", 3260)
    msgs = [m.decode_messages(r)[0] for r in k.requests]
    assert msgs[0]["hdr_size"] == 48 and msgs[0]["data_size"] == 16 and len(msgs[0]["payload"]) == 64
    assert m.decode_sockaddr(msgs[1]["payload"]) == ("10.0.0.1", 3260)
    assert msgs[2]["host_no"] == 2 and m.decode_sockaddr(msgs[2]["payload"]) == ("fe80::1", 3260)
    assert msgs[3]["payload"] == b"eth0\0"
    assert msgs[4]["count"] == 1
    assert m.decode_nlas(m.iscsi_param_info_nla, msgs[5]["payload"])[0]["value"] == b"\x01\x00"
    assert msgs[6]["pid"] == 9 and msgs[7]["dscvr_type"] == 1


def test_next_event_without_request(kernel_factory):
    k = kernel_factory(lambda req: [])
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.next_event(timeout=0.05) is None
        k.send(m.encode_message(E.KEVENT_UNBIND_SESSION, nlmsg_type=0, r_sid=4, r_host_no=1))
        ev = nl.next_event(timeout=2)
        assert isinstance(ev, UnbindSession) and (ev.sid, ev.host_no) == (4, 1)


def test_a_destroy_events_host_and_session_are_read_each_from_its_own_field(kernel_factory):
    """KEVENT_DESTROY_SESSION's r.d_session: host_no, then sid (iscsi_if.h); a swap made
    the daemon wait for a destroy event that never came for its session."""
    from iscsictl.netlink import DestroySession

    k = kernel_factory(lambda req: [])
    with IscsiNetlink(k.user, timeout=2) as nl:
        k.send(m.encode_message(E.KEVENT_DESTROY_SESSION, nlmsg_type=0, r_host_no=1, r_sid=4))
        ev = nl.next_event(timeout=2)
        assert isinstance(ev, DestroySession) and (ev.host_no, ev.sid) == (1, 4)


def test_an_if_error_of_another_request_is_not_this_ones_reply(kernel_factory):
    """ISCSI_KEVENT_IF_ERROR carries the failed request's type in its header
    (iscsi_if_send_reply(portid, nlh->nlmsg_type, ...)): a late one of a SET_PARAM is not the
    answer of the START_CONN waiting now, whose own reply follows."""
    def answer(req):
        stale = bytearray(req)
        struct.pack_into("=H", stale, 4, E.SET_PARAM)
        return [if_error(bytes(stale), errno.EINVAL), echo(req, r_retcode=0)]
    k = kernel_factory(answer)
    with IscsiNetlink(k.user, timeout=2) as nl:
        assert nl.start_conn(1, 7, 0) is None


def test_process_events_calls_callback(kernel_factory):
    seen = []
    k = kernel_factory(lambda req: [])
    with IscsiNetlink(k.user, timeout=2, event_callback=seen.append) as nl:
        k.send(ev_conn_error(error=1001) + ev_conn_error(error=1002))
        assert nl.process_events(timeout=2) == 2
    assert [e.error for e in seen] == [1001, 1002]


def test_callback_exception_does_not_break(kernel_factory, caplog):
    """A consumer's exception is logged with the event, and the socket goes on: the
    request's reply is still returned, and the next event reaches the callback."""
    seen = []

    def boom(ev):
        seen.append(ev)
        raise RuntimeError("consumer bug")
    k = kernel_factory(lambda req: [ev_conn_error(), echo(req)])
    with IscsiNetlink(k.user, timeout=2, event_callback=boom) as nl:
        assert nl.start_conn(1, 7, 0) is None
        nl.start_conn(1, 7, 0)
    assert [type(ev) for ev in seen] == [ConnError, ConnError]
    failed = [r for r in caplog.records if "event callback failed" in r.getMessage()]
    assert len(failed) == 2 and "consumer bug" in str(failed[0].exc_info[1])


# ---------------------------------------------------------------- asyncio

def test_async_request_does_not_block_the_loop(kernel_factory):
    k = kernel_factory(lambda req: [ev_conn_error(), 0.3, ev_recv_pdu(), echo(req, r_sid=9, r_host_no=4)])

    async def main():
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)
        t = asyncio.create_task(ticker())
        async with AsyncIscsiNetlink(k.user, timeout=2) as nl:
            ids = await nl.create_session(1, 0, 128, 32)
            e1 = await nl.next_event(1)
            e2 = await nl.next_event(1)
        stop = True
        await t
        return ids, ticks, e1, e2
    ids, ticks, e1, e2 = asyncio.run(main())
    assert ids == (9, 4)
    assert ticks >= 10  # the loop kept running during the 0.3 s wait
    assert isinstance(e1, ConnError) and isinstance(e2, RecvPdu)


def test_async_errors_and_timeout(kernel_factory):
    def handler(req):
        t = m.decode_messages(req)[0]["type"]
        if t == E.SET_PARAM:
            return [if_error(req, errno.ENOSYS)]
        if t == E.START_CONN:
            return [echo(req, r_retcode=-errno.ENOTCONN)]
        return []

    k = kernel_factory(handler)

    async def main():
        async with AsyncIscsiNetlink(k.user, timeout=0.2, send_in_executor=False) as nl:
            with pytest.raises(IscsiKernelError) as e1:
                await nl.set_param(1, 7, 0, IscsiParam.ISID, "1")
            with pytest.raises(IscsiKernelError) as e2:
                await nl.start_conn(1, 7, 0)
            with pytest.raises(ReplyTimeout):
                await nl.destroy_session(1, 7)
            return e1.value.errno, e2.value.errno
    assert asyncio.run(main()) == (errno.ENOSYS, errno.ENOTCONN)


def test_async_requests_are_serialized(kernel_factory):
    def handler(req):
        msg = m.decode_messages(req)[0]
        return [0.05, echo(req, r_sid=msg["sid"], r_cid=msg["cid"])]
    k = kernel_factory(handler)

    async def main():
        async with AsyncIscsiNetlink(k.user, timeout=2) as nl:
            return await asyncio.gather(*(nl.create_conn(1, 7, cid) for cid in range(5)))
    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_async_event_callback(kernel_factory):
    seen = []
    k = kernel_factory(lambda req: [])

    async def main():
        async with AsyncIscsiNetlink(k.user, event_callback=seen.append):
            k.send(ev_conn_error(error=1013))
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
    asyncio.run(main())
    assert [e.error for e in seen] == [1013]


# ---------------------------------------------------------------- the real kernel

@pytest.mark.skipif(os.path.exists("/sys/module/scsi_transport_iscsi"), reason="iSCSI module is loaded here")
def test_real_open_without_module_says_what_to_do():
    with pytest.raises(KernelInterfaceUnavailable, match=r"modprobe iscsi_tcp"):
        IscsiNetlink()


class _RefusingTransport:
    """A transport whose sendmsg fails like a netlink socket outside init_net."""

    def __init__(self, exc):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.exc = exc

    def fileno(self):
        return self.a.fileno()

    def send(self, data):
        raise self.exc

    def recv_into(self, buf):
        return self.a.recv_into(buf)

    def close(self):
        self.a.close()
        self.b.close()


def test_econnrefused_means_wrong_netns():
    from iscsictl.netlink import NotInitialNetnsError
    with IscsiNetlink(_RefusingTransport(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), timeout=1) as nl:
        with pytest.raises(NotInitialNetnsError, match="initial network namespace"):
            nl.destroy_session(1, 1)


def test_eperm_on_send_says_run_as_root():
    from iscsictl.netlink import NetlinkPermissionError
    with IscsiNetlink(_RefusingTransport(PermissionError(errno.EPERM, "no")), timeout=1) as nl:
        with pytest.raises(NetlinkPermissionError, match="CAP_SYS_ADMIN"):
            nl.destroy_session(1, 1)


def test_eperm_if_error_says_run_as_root(kernel_factory):
    k = kernel_factory(lambda req: [if_error(req, errno.EPERM)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        with pytest.raises(IscsiKernelError, match=r"CAP_SYS_ADMIN \(run as root\)") as ei:
            nl.create_session(1, 0, 128, 32)
    assert ei.value.errno == errno.EPERM


def test_eperm_in_a_retcode_is_the_connections_not_a_missing_capability(kernel_factory):
    """libiscsi's iscsi_conn_send_pdu answers EPERM in the reply's retcode when the session
    queues no PDU (failed, ending): being root does not help there."""
    k = kernel_factory(lambda req: [echo(req, r_retcode=-errno.EPERM)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        with pytest.raises(IscsiKernelError, match="takes no PDU now") as ei:
            nl.send_pdu(1, 1, 0, b"\0" * 48)
    assert ei.value.errno == errno.EPERM and "CAP_SYS_ADMIN" not in str(ei.value)


def test_closed_socket_raises():
    from iscsictl.netlink import NetlinkClosedError
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    nl = IscsiNetlink(a, timeout=1)
    nl.close()
    b.close()
    with pytest.raises(NetlinkClosedError):
        nl.start_conn(1, 1, 0)


def test_netns_detection_unknown_or_bool():
    from iscsictl.netlink import in_initial_netns
    assert in_initial_netns() in (True, False, None)


def test_generic_call_returns_the_message(kernel_factory):
    k = kernel_factory(lambda req: [echo(req, r_retcode=0)])
    with IscsiNetlink(k.user, timeout=2) as nl:
        msg = nl.call(E.GET_PARAM, 1)
    assert msg["type"] == E.GET_PARAM and msg["r_retcode"] == 0


def test_async_reply_queued_inside_send_is_taken_without_the_reader():
    """The asyncio client takes a reply that is already queued when send() returns; it
    works even with the loop's reader removed (no loop iteration is needed per request)."""
    seen = []

    async def main():
        nl = AsyncIscsiNetlink(SyncKernel(lambda req: [ev_conn_error(), echo(req)]), timeout=0.5,
                               event_callback=seen.append)
        nl._loop.remove_reader(nl._fd)
        try:
            for i in range(40):
                await nl.set_param(1, 7, 0, 0, str(i))
        finally:
            nl.close()

    asyncio.run(main())
    assert len(seen) == 40 and all(isinstance(e, ConnError) for e in seen)


def _answer_enosys_for_isid(req: bytes) -> list[bytes]:
    (msg,) = m.decode_messages(req)
    if msg["param"] == IscsiParam.ISID:
        return [ev_conn_error(error=1011), if_error(req, errno.ENOSYS)]
    return [echo(req, r_retcode=0)]


_BATCH = [(IscsiParam.MAX_RECV_DLENGTH, "262144"), (IscsiParam.ISID, "00023d000001"),
          (IscsiParam.EXP_STATSN, "42")]


def _check_batch(results, requests: list[bytes]) -> None:
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IscsiKernelError) and results[1].errno == errno.ENOSYS
    sent = [m.decode_messages(r)[0] for r in requests]
    assert [(s["param"], s["payload"]) for s in sent] == [(p, v.encode() + b"\0") for p, v in _BATCH]


def test_set_params_sends_every_one_and_reports_each(kernel_factory):
    """set_params: one outcome per parameter in order; a refusal midway does not stop
    the rest; an event that arrives with a reply is still delivered."""
    k = kernel_factory(_answer_enosys_for_isid)
    with IscsiNetlink(k.user, timeout=2) as nl:
        results = nl.set_params(1, 7, 0, _BATCH)
        assert [e.error for e in nl.pending_events()] == [1011]
    _check_batch(results, k.requests)
    assert k.datagrams == 1  # the blocking client sends a batch as one datagram


def test_a_batch_with_a_blocking_request_goes_one_datagram_each(kernel_factory):
    """A batch holding a request that can block in the kernel (STOP_CONN) is sent a
    datagram per request, with the same per-request outcomes as one datagram."""
    def answer(req):
        if m.decode_messages(req)[0]["type"] == E.STOP_CONN:
            return [if_error(req, errno.EINVAL)]
        return _answer_enosys_for_isid(req)
    k = kernel_factory(answer)
    with IscsiNetlink(k.user, timeout=2) as nl:
        reqs = [nl._set_param_request(1, 7, 0, p, v, None) for p, v in _BATCH]
        reqs.append(nl._request(E.STOP_CONN, 1, sid=7, cid=0, conn_handle=0, flag=3))
        results = nl._call_many(reqs)
        assert [e.error for e in nl.pending_events()] == [1011]
    _check_batch(results[:3], k.requests[:3])
    assert isinstance(results[3], IscsiKernelError) and results[3].errno == errno.EINVAL
    assert k.datagrams == 4


def test_batch_with_a_missing_reply_times_out(kernel_factory):
    """A kernel that answered only part of a batch: ReplyTimeout, not a hang."""
    k = kernel_factory(lambda req: [] if m.decode_messages(req)[0]["param"] == IscsiParam.ISID
                       else [echo(req, r_retcode=0)])
    with IscsiNetlink(k.user, timeout=0.3) as nl:
        with pytest.raises(ReplyTimeout, match="of 3 replies"):
            nl.set_params(1, 7, 0, _BATCH)


def test_async_set_params_in_one_datagram():
    """The asyncio client sends a batch as the blocking one does: one datagram, one outcome
    per request, an event that came with the replies delivered."""
    seen, requests = [], []

    def answer(req):
        requests.append(req)
        return _answer_enosys_for_isid(req)

    kernel = SyncKernel(answer)

    async def main():
        nl = AsyncIscsiNetlink(kernel, timeout=0.5, event_callback=seen.append)
        try:
            return await nl.set_params(1, 7, 0, _BATCH)
        finally:
            nl.close()

    _check_batch(asyncio.run(main()), requests)
    assert [e.error for e in seen] == [1011]
    assert kernel.datagrams == 1


def test_async_set_params_and_start_conn_refused_midway():
    """set_params_and_start_conn: every request goes in one datagram whatever the kernel
    answers; a refused START_CONN is its own entry, after the SET_PARAMs' outcomes."""
    def answer(req):
        if m.decode_messages(req)[0]["type"] == E.START_CONN:
            return [if_error(req, errno.ENOTCONN)]
        return _answer_enosys_for_isid(req)

    kernel = SyncKernel(answer)

    async def main():
        nl = AsyncIscsiNetlink(kernel, timeout=0.5, event_callback=lambda ev: None)
        try:
            return await nl.set_params_and_start_conn(1, 7, 0, _BATCH)
        finally:
            nl.close()

    *params, started = asyncio.run(main())
    assert params[0] is None and params[2] is None and params[1].errno == errno.ENOSYS
    assert isinstance(started, IscsiKernelError) and started.errno == errno.ENOTCONN
    assert kernel.datagrams == 1


def test_async_batch_with_a_missing_reply_times_out():
    """A kernel that answered only part of a batch: ReplyTimeout naming how many came, and a
    request after it works (the late state does not stick)."""
    kernel = SyncKernel(lambda req: [] if m.decode_messages(req)[0].get("param") == IscsiParam.ISID
                        else [echo(req, r_retcode=0)])

    async def main():
        nl = AsyncIscsiNetlink(kernel, timeout=0.3, event_callback=lambda ev: None)
        try:
            with pytest.raises(ReplyTimeout, match=r"^[12] of 3 replies to a batch of SET_PARAM"):
                await nl.set_params(1, 7, 0, _BATCH)
            await nl.start_conn(1, 7, 0)
        finally:
            nl.close()

    asyncio.run(main())


def test_run_blocking_uses_the_lane_socket_and_events_still_arrive(kernel_factory):
    """run_blocking: the job's requests go out on the lane's own socket (one datagram for a
    SET_PARAM batch) from another thread; the main socket's events keep coming meanwhile."""
    main_k = kernel_factory(lambda req: [echo(req, r_retcode=0)])
    lane_k = kernel_factory(_answer_enosys_for_isid)
    seen, threads = [], []

    def job(knl, params):
        threads.append(threading.current_thread().name)
        main_k.send(ev_conn_error(sid=9))  # an event on the main socket while the lane works
        return knl.set_params(1, 7, 0, params)

    async def main():
        nl = AsyncIscsiNetlink(main_k.user, timeout=2, event_callback=seen.append,
                               lane_transport=lambda: lane_k.user)
        try:
            results = await nl.run_blocking(job, _BATCH)
            await nl.set_param(1, 7, 0, IscsiParam.EXP_STATSN, "1")  # the main socket still works
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            return results
        finally:
            nl.close()

    results = asyncio.run(main())
    _check_batch(results, lane_k.requests)
    assert lane_k.datagrams == 1 and len(main_k.requests) == 1
    assert threads[0].startswith("iscsi-nl") and threads[0] != threading.main_thread().name
    assert [e.sid for e in seen if isinstance(e, ConnError)] == [9]


def test_two_lanes_run_two_jobs_at_once_each_on_its_own_socket(kernel_factory):
    """While one lane's job waits (as in the kernel's sendmsg), another lane runs the next
    job, on a socket of its own: each job's replies reach only it."""
    kernels = []

    def lane_socket():
        k = kernel_factory(lambda req: [echo(req, r_retcode=0)])
        kernels.append(k)
        return k.user

    second_started = threading.Event()

    def first(knl):
        knl.start_conn(1, 7, 0)
        return second_started.wait(5), knl

    def second(knl):
        second_started.set()
        knl.start_conn(1, 8, 0)
        return True, knl

    async def main():
        nl = AsyncIscsiNetlink(kernel_factory(lambda req: []).user, timeout=2,
                               lane_transport=lane_socket)
        try:
            return await asyncio.gather(nl.run_blocking(first), nl.run_blocking(second))
        finally:
            nl.close()

    (overlapped, knl1), (_, knl2) = asyncio.run(main())
    assert overlapped, "the second job did not start while the first one ran"
    assert knl1 is not knl2 and len(kernels) == 2
    assert sorted(m.decode_messages(k.requests[0])[0]["sid"] for k in kernels) == [7, 8]


def test_run_blocking_after_close_raises(kernel_factory):
    k = kernel_factory(lambda req: [echo(req, r_retcode=0)])

    async def main():
        nl = AsyncIscsiNetlink(k.user, timeout=1, lane_transport=lambda: k.user)
        nl.close()
        with pytest.raises(NetlinkClosedError):
            nl.run_blocking(lambda knl: None)

    asyncio.run(main())


@pytest.mark.parametrize("refused", [False, True])
def test_lane_threads_run_at_lane_nice_and_a_refusal_is_harmless(kernel_factory, monkeypatch, refused):
    """lane_nice is each lane thread's own nice (the loop's thread keeps its own); where
    setpriority is refused (no CAP_SYS_NICE) the lanes run at the nice they inherited."""
    def lane_socket():
        return kernel_factory(lambda req: [echo(req, r_retcode=0)]).user

    before = os.getpriority(os.PRIO_PROCESS, 0)
    if refused:
        def refuse(*_args):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "setpriority", refuse)

    def job(knl):
        knl.start_conn(1, 7, 0)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def main():
        nl = AsyncIscsiNetlink(kernel_factory(lambda req: []).user, timeout=2,
                               lane_transport=lane_socket, lane_nice=before + 3)
        try:
            return await asyncio.gather(nl.run_blocking(job), nl.run_blocking(job))
        finally:
            nl.close()

    niceness = asyncio.run(main())
    assert niceness == [before if refused else before + 3] * 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_late_refusal_does_not_answer_the_next_request(kernel_factory):
    """The kernel answers a request with the request's own nlmsg_type, an IF_ERROR too
    (iscsi_if_send_reply(portid, nlh->nlmsg_type, ...)): a refusal that comes after its
    request timed out is an event, not the answer to the next request of another type
    (before, any IF_ERROR answered whatever was pending)."""
    def handler(req):
        if m.decode_messages(req)[0]["type"] == E.SET_PARAM:
            return [0.3, if_error(req, errno.ENOSYS)]  # after the request's timeout
        return [echo(req, r_retcode=0)]
    k = kernel_factory(handler)
    events = []

    async def main():
        async with AsyncIscsiNetlink(k.user, timeout=0.15, send_in_executor=False,
                                     event_callback=events.append) as nl:
            with pytest.raises(ReplyTimeout):
                await nl.set_param(1, 7, 0, IscsiParam.ISID, "1")
            await asyncio.sleep(0.25)  # the refusal arrives meanwhile, or during the next
            await nl.start_conn(1, 7, 0)  # answered by its own reply: no ENOSYS
    asyncio.run(main())
    assert len(events) == 1  # the refusal, delivered as an event
    with IscsiNetlink(kernel_factory(handler).user, timeout=0.15) as nl:  # matched alike
        with pytest.raises(ReplyTimeout):
            nl.set_param(1, 7, 0, IscsiParam.ISID, "1")
        time.sleep(0.25)
        nl.start_conn(1, 7, 0)


def test_a_cancelled_request_inside_the_kernel_holds_the_socket_until_it_returns():
    """A request that can block in the kernel (STOP_CONN flushing work) is sent from the
    executor; cancelling its task (a recovery cancelled by a logout) must not let the next
    request go out while the kernel still works on it, nor let its reply answer that
    request: the next one waits, and gets its own answer."""
    order = []

    def answer(req):
        msg = m.decode_messages(req)[0]
        order.append(("in", msg["type"]))
        if msg["type"] == E.STOP_CONN:
            time.sleep(0.3)  # inside sendmsg(), as the kernel flushes the connection's work
            order.append(("out", msg["type"]))
            return [if_error(req, errno.EINVAL)]
        order.append(("out", msg["type"]))
        return [echo(req, r_retcode=0)]
    kernel = SyncKernel(answer)

    async def main():
        async with AsyncIscsiNetlink(kernel, timeout=2) as nl:
            stop = asyncio.ensure_future(nl.stop_conn(1, 7, 0, StopConnFlag.RECOVER))
            await asyncio.sleep(0.05)
            stop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stop
            assert order == [("in", E.STOP_CONN), ("out", E.STOP_CONN)]  # waited for
            await nl.set_param(1, 9, 0, IscsiParam.ISID, "1")  # not STOP_CONN's EINVAL
    try:
        asyncio.run(main())
    finally:
        kernel.close()
    assert order[2:] == [("in", E.SET_PARAM), ("out", E.SET_PARAM)]


@pytest.mark.parametrize("field", ["iferror", "r_retcode"])
def test_an_errno_out_of_range_is_eio(field):
    """INT_MIN (or any value that is not -1..-4095) in ev.iferror or r.retcode: EIO, not
    an OverflowError from os.strerror."""
    from iscsictl.netlink.socket import _check_reply
    if field == "iferror":
        raw = struct.pack("=IHHII", 72, E.SET_PARAM, 0, 0, 0) + struct.pack(
            "=IIQ", E.KEVENT_IF_ERROR, 0x80000000, 0) + bytes(40)
    else:
        raw = m.encode_message(E.START_CONN, r_retcode=-2**31)
    (msg,) = m.decode_messages(raw)
    with pytest.raises(IscsiKernelError) as e:
        _check_reply(E.SET_PARAM, msg)
    assert e.value.errno == errno.EIO and "Input/output error" in str(e.value)


@pytest.mark.parametrize("through_host", [False, True])
def test_an_offload_connect_that_waits_in_the_kernel_leaves_the_loop_running(through_host):
    """TRANSPORT_EP_CONNECT(_THROUGH_HOST) goes out from the executor: the kernel runs the
    driver's ep_connect inside sendmsg(), where be2iscsi waits for its firmware's connect
    and bnx2i up to 2 s (before: on the loop's thread, every other session, timer and
    command stood still meanwhile)."""
    def answer(raw):
        (req,) = m.decode_messages(raw)
        if req["type"] in (E.TRANSPORT_EP_CONNECT, E.TRANSPORT_EP_CONNECT_THROUGH_HOST):
            time.sleep(0.5)  # the driver, inside sendmsg()
            return [echo(raw, r_handle=5)]
        return [echo(raw, r_retcode=0)]

    async def main():
        nl = AsyncIscsiNetlink(SyncKernel(answer), timeout=5)
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)
        t = asyncio.ensure_future(ticker())
        try:
            ep = await nl.ep_connect(1, "192.0.2.10", 3260, non_blocking=True,
                                     host_no=4 if through_host else None)
        finally:
            t.cancel()
            nl.close()
        return ep, ticks

    ep, ticks = asyncio.run(main())
    assert ep == 5 and max(b - a for a, b in zip(ticks, ticks[1:])) < 0.3


class _Transport:
    """A netlink transport stand-in: a socket pair the loop's reader watches, each read
    the datagram :meth:`next_datagram` gives (or the error it raises)."""

    def __init__(self):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fileno(self):
        return self.a.fileno()

    def recv_into(self, buf):
        dgram = self.next_datagram()
        buf[:len(dgram)] = dgram
        return len(dgram)

    def close(self):
        self.a.close()
        self.b.close()


class _Flood(_Transport):
    """A socket the kernel floods with events: every read returns one CONN_ERROR event,
    ``total`` of them, then none; a send (a request) arms an overrun that dropped its
    reply (ENOBUFS at the next read), or, with ``reply``, queues its reply behind
    ``ahead`` more events.  ``reads``: datagrams read so far."""

    def __init__(self, total, reply=False, ahead=0):
        super().__init__()
        self.total, self.reply, self.ahead = total, reply, ahead
        self.reads = 0
        self.armed = False
        self.queued: list[bytes] = []

    def send(self, data):
        if self.reply:
            self.queued = [ev_conn_error(sid=9)] * self.ahead + [echo(data, r_sid=7, r_cid=3)]
        else:
            self.armed = True
        return len(data)

    def next_datagram(self):
        if self.armed:
            self.armed = False
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        if self.queued:
            dgram = self.queued.pop(0)
        elif self.reads >= self.total:
            raise BlockingIOError(errno.EAGAIN, "empty")
        else:
            dgram = ev_conn_error(sid=2)
        self.reads += 1
        return dgram


def test_the_reader_takes_a_flood_of_events_a_batch_at_a_time():
    """A flood of kernel events (a target's Async Messages, one RECV_PDU event each) is
    read READ_BATCH datagrams a callback, handed on as read: the loop runs between
    batches.  Before, one callback read until the socket was empty, holding the loop
    (and every other session's recovery and the IPC) for as long as the flood lasted."""
    from iscsictl.netlink.socket import READ_BATCH
    t = _Flood(total=3 * READ_BATCH + 10)
    seen = []

    async def main():
        nl = AsyncIscsiNetlink(t, event_callback=seen.append)
        nl._on_readable()
        assert len(seen) == READ_BATCH and not nl._drained  # the rest: next time round
        for _ in range(3):
            nl._on_readable()
        assert len(seen) == t.total and nl._drained
        nl.close()
    asyncio.run(main())


def test_an_exchange_under_a_flood_takes_every_event_before_its_reply():
    """The reply queued behind more events than a batch holds is still taken at once,
    the events before it handed on in order."""
    t = _Flood(total=0, reply=True, ahead=700)
    seen = []

    async def main():
        async with AsyncIscsiNetlink(t, timeout=30, event_callback=seen.append) as nl:
            assert await asyncio.wait_for(nl.create_conn(1, 7, 3), 10) == 3
    asyncio.run(main())
    assert [e.sid for e in seen] == [9] * 700


@pytest.mark.parametrize("client", ["blocking", "async"])
def test_a_reply_dropped_in_a_flood_that_goes_on_fails_once_the_queue_is_read(client):
    """An overrun dropped the reply, and events keep coming: the request fails with
    ReplyLost once as many bytes as the socket holds are read (all it held when the
    request was sent), not when the flood stops (which, with a target flooding, it need
    not do: the loop was held until then)."""
    t = _Flood(total=100_000)
    rcvbuf = 16 * 1024  # 32 KiB queued at most: ~300 events
    most = 2 * rcvbuf // len(ev_conn_error()) + 1
    if client == "blocking":
        with IscsiNetlink(t, timeout=30, rcvbuf=rcvbuf) as nl:
            with pytest.raises(ReplyTimeout, match="the kernel dropped it"):
                nl.create_conn(1, 7, 3)
    else:
        async def main():
            async with AsyncIscsiNetlink(t, timeout=30, rcvbuf=rcvbuf,
                                         event_callback=lambda ev: None) as nl:
                with pytest.raises(ReplyTimeout, match="the kernel dropped it"):
                    await asyncio.wait_for(nl.create_conn(1, 7, 3), 10)
        asyncio.run(main())
    assert t.reads <= most + 256, t.reads


class _FloodDuringSend(_Transport):
    """A blocking request (sent from the executor) while the kernel floods events: during
    the send the loop's reader reads events and meets an overrun; when the send returns,
    the reply is queued behind ``behind`` more events (more than a batch, less than the
    socket holds)."""

    def __init__(self, behind):
        super().__init__()
        self.b.send(b"x")  # the fd stays readable: the loop's reader keeps being called
        self.behind = behind
        self.flooding = self.overrun = False
        self.queued: list[bytes] = []
        self.reads_in_send = 0
        self.read_enough = threading.Event()  # the loop has read through the overrun

    def send(self, data):
        self.flooding = self.overrun = True
        self.read_enough.wait(30)  # the kernel at work while the loop reads the flood
        self.queued = [ev_conn_error(sid=2)] * self.behind + [echo(data)]
        self.flooding = False
        return len(data)

    def next_datagram(self):
        if self.flooding:
            self.reads_in_send += 1
            if self.overrun and self.reads_in_send > 50:
                self.overrun = False
                raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
            if self.reads_in_send > 60:
                self.read_enough.set()
            dgram = ev_conn_error(sid=2)
        elif self.queued:
            dgram = self.queued.pop(0)
        else:
            raise BlockingIOError(errno.EAGAIN, "empty")
        return dgram


def test_a_blocking_request_under_a_flood_counts_the_reads_from_the_end_of_its_send():
    """What the loop read while the kernel worked inside sendmsg() is not what was
    queued when it returned: the reply, behind 3,000 more events, is still taken (it was
    said lost after one batch, the overrun during the send taken for its drop)."""
    t = _FloodDuringSend(3000)

    async def main():
        async with AsyncIscsiNetlink(t, timeout=5, rcvbuf=256 * 1024,
                                     event_callback=lambda ev: None) as nl:
            await asyncio.wait_for(nl.stop_conn(1, 7, 0, StopConnFlag.RECOVER), 40)
    asyncio.run(main())
    assert t.queued == [] and t.read_enough.is_set()


def test_a_receive_buffer_smaller_than_asked_is_said(caplog):
    # SO_RCVBUFFORCE refused (no CAP_NET_ADMIN) leaves SO_RCVBUF capped by rmem_max: said
    # once at open, not only in a debug line, since event bursts can then overrun it
    from iscsictl.netlink.socket import _say_small_rcvbuf
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        with caplog.at_level(logging.WARNING, logger="iscsictl.netlink"):
            _say_small_rcvbuf(s, 64 * 1024)
            assert not caplog.records
            _say_small_rcvbuf(s, 4 * 1024 * 1024)
        assert "receive buffer 65536 bytes, 4194304 asked" in caplog.text
        assert "net.core.rmem_max" in caplog.text


def test_a_32_bit_x86_kernel_is_refused_not_misread(monkeypatch):
    """An i386 kernel's struct iscsi_uevent has its reply union at offset 36, not 40:
    every reply and event would be misread without an error.  The socket is refused,
    said.  A 32-bit process on an x86_64 kernel (which has /proc/sys/abi/vsyscall32), or
    linux32's i686 uname of a 64-bit process, is not such a kernel."""
    import struct

    from iscsictl.netlink import UnsupportedKernelLayout, kernel_is_x86_32, open_netlink_socket

    real_exists, real_calcsize = os.path.exists, struct.calcsize
    uname = os.uname()

    def machine(name, bits, vsyscall32):
        monkeypatch.setattr(os, "uname", lambda: os.uname_result((*uname[:4], name)))
        monkeypatch.setattr(struct, "calcsize",
                            lambda f: bits // 8 if f == "P" else real_calcsize(f))
        monkeypatch.setattr(os.path, "exists", lambda p: vsyscall32
                            if p == "/proc/sys/abi/vsyscall32" else real_exists(p))
        return kernel_is_x86_32()

    assert machine("i686", 32, False) is True
    with pytest.raises(UnsupportedKernelLayout, match="32-bit x86"):
        open_netlink_socket()
    assert machine("i686", 32, True) is False  # a 32-bit process on x86_64
    assert machine("i686", 64, False) is False  # linux32 on a 64-bit process
    assert machine("armv7l", 32, False) is False  # 32-bit ARM aligns uint64_t to 8


def test_a_short_chap_or_stats_payload_is_a_decode_error_not_a_crash():
    """GET_CHAP announcing more entries than its payload holds, and stats announcing more
    custom counters than come: PayloadDecodeError (the caller's clear error), not the
    struct reader's ValueError (a traceback)."""
    from iscsictl.netlink.errors import PayloadDecodeError
    from iscsictl.netlink.socket import _customs, _parse_chap

    entry = m.iscsi_chap_rec_payload.size()
    with pytest.raises(PayloadDecodeError, match="2 entries announced"):
        _parse_chap({"payload": b"\0" * (entry + entry // 2), "num_entries": 2})
    assert len(_parse_chap({"payload": b"\0" * entry, "num_entries": 1})) == 1
    one = m.iscsi_stats_custom_payload.size()
    with pytest.raises(PayloadDecodeError, match="2 announced, only 1 present"):
        _customs(m.iscsi_stats_custom_payload, b"\0" * (8 + one + one // 2), 8, 2)
    assert len(_customs(m.iscsi_stats_custom_payload, b"\0" * (8 + 2 * one), 8, 2)) == 2
