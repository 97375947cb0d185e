"""Marshal round trips for every message class and robustness of the decoder."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E

_MAX = {"I": 0xFFFFFFF0, "Q": 0xFFFFFFFFFFFFFF00, "H": 0xFFF0, "i": -5, "B": 0xF0}


def _values(cls):
    vals = {}
    for i, (name, fmt) in enumerate(cls.fields):
        if name.startswith("__") or name == "type":
            continue
        if fmt.endswith("s"):
            vals[name] = bytes(range(1, int(fmt[:-1]) + 1))
        else:
            vals[name] = _MAX[fmt] - i if fmt != "i" else -i - 1
    return vals


@pytest.mark.parametrize("ev", sorted(m.MESSAGE_CLASSES), ids=lambda e: E(e).name)
@pytest.mark.parametrize("payload", [b"", b"x", b"\x01\x02\x03\x04\x05\x06\x07\x08\x09"])
def test_roundtrip(ev, payload):
    cls = m.MESSAGE_CLASSES[ev]
    vals = _values(cls)
    data = m.encode_message(ev, payload=payload, nlmsg_seq=9, nlmsg_pid=4242, **vals)
    assert len(data) % 4 == 0
    (msg,) = m.decode_messages(data)
    assert type(msg) is dict
    assert msg["header"]["length"] == 72 + len(payload)
    assert msg["header"]["sequence_number"] == 9 and msg["header"]["pid"] == 4242
    assert msg["type"] == ev and msg["payload"] == payload
    for k, v in vals.items():
        assert msg[k] == v, k


def test_several_messages_in_one_datagram():
    a = m.encode_message(E.KEVENT_CONN_ERROR, nlmsg_type=0, r_sid=1, r_cid=0, r_error=1011)
    b = m.encode_message(E.SET_PARAM, sid=1, cid=0, param=0, len=5, payload=b"8192\0")  # padded to 4
    c = m.encode_message(E.KEVENT_UNBIND_SESSION, nlmsg_type=0, r_sid=1, r_host_no=3)
    msgs = m.decode_messages(a + b + c)
    assert [x["type"] for x in msgs] == [E.KEVENT_CONN_ERROR, E.SET_PARAM, E.KEVENT_UNBIND_SESSION]
    assert msgs[1]["payload"] == b"8192\0"


@pytest.mark.parametrize("bad", [
    b"", b"\x00" * 10, b"\x48\x00\x00\x00" + b"\x00" * 20,              # shorter than a uevent
    (200).to_bytes(4, "little") + b"\x00" * 68,                         # nlmsg_len beyond the datagram
    (20).to_bytes(4, "little") + b"\x00" * 68,                          # nlmsg_len smaller than a uevent
])
def test_malformed_is_skipped_not_raised(bad, caplog):
    caplog.set_level(logging.WARNING)
    assert m.decode_messages(bad) == []


def test_good_message_before_garbage_survives():
    good = m.encode_message(E.KEVENT_IF_DOWN, nlmsg_type=0, r_host_no=3)
    msgs = m.decode_messages(good + b"\x01\x02\x03")
    assert len(msgs) == 1 and msgs[0]["r_host_no"] == 3


def test_unknown_type_decodes_with_default_class():
    data = bytearray(m.encode_message(E.KEVENT_IF_DOWN, nlmsg_type=0, r_host_no=3))
    data[16:20] = (999).to_bytes(4, "little")
    (msg,) = m.decode_messages(bytes(data))
    assert msg["type"] == 999


def test_marshal_key():
    assert m.IscsiMarshal.key_offset == 16 and m.IscsiMarshal.key_format == "I"
    assert m.IscsiMarshal.msg_map is m.MESSAGE_CLASSES


def test_unknown_field_rejected():
    with pytest.raises(KeyError):
        m.encode_message(E.CREATE_SESSION, sid=1)


def test_docstrings_quote_the_c_struct():
    for cls in m.MESSAGE_CLASSES.values():
        assert "struct iscsi_uevent" in cls.__doc__ and "Linux 6.1" in cls.__doc__
    assert "struct msg_bind_conn" in m.MESSAGE_CLASSES[E.BIND_CONN].__doc__


@pytest.mark.parametrize("ev", sorted(m.MESSAGE_CLASSES), ids=lambda e: E(e).name)
def test_fast_decode_equals_pyroute2_decode(ev):
    """The struct fast path in IscsiMarshal.parse yields exactly what pyroute2's
    own decode() does, for arbitrary bytes in every field."""
    import random
    rnd = random.Random(ev)
    for payload_len in (0, 3, 17):
        body = bytearray(rnd.randbytes(56 + payload_len))
        body[0:4] = int(ev).to_bytes(4, "little")
        length = 16 + len(body)
        data = (length.to_bytes(4, "little") + rnd.randbytes(12) + bytes(body)
                + bytes(-length & 3))
        (fast,) = m.decode_messages(data)
        slow = m.MESSAGE_CLASSES[ev](data)
        slow.decode()
        assert dict(fast) == dict(slow) and slow.length == length


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=130),
       st.integers(min_value=0, max_value=600))
def test_any_datagram_decodes_without_raising(noise, ev, length):
    """Kernel input never raises: random bytes, and random bytes after a real header of
    any type whose nlmsg_len may lie (shorter than a uevent, past the datagram's end)."""
    assert isinstance(m.decode_messages(noise), list)
    head = bytearray(m.encode_message(E.KEVENT_IF_DOWN, nlmsg_type=0, r_host_no=3))
    head[0:4] = length.to_bytes(4, "little")
    head[16:20] = ev.to_bytes(4, "little")
    msgs = m.decode_messages(bytes(head) + noise)
    assert isinstance(msgs, list)
    if length < len(head) or length > len(head) + len(noise):
        assert msgs == []  # the first message's length cannot be trusted: nothing is kept


def test_a_buffer_view_decodes_as_its_bytes():
    """_read_datagrams hands decode_messages a view of its receive buffer: the messages
    keep copies (a later receive into the buffer must not change them)."""
    buf = bytearray(m.encode_message(E.SET_PARAM, sid=1, cid=0, param=0, len=5, payload=b"8192\0"))
    view = memoryview(buf)
    msgs = m.decode_messages(view[:len(buf)])
    assert msgs == m.decode_messages(bytes(buf))
    buf[:] = bytes(len(buf))
    assert msgs[0]["payload"] == b"8192\0" and msgs[0]["sid"] == 1
