"""The struct encoder derived from each message's pyroute2 declaration gives the same
bytes as pyroute2's own encoder, for every message type and random field values."""

import random
import struct

import pytest

from iscsictl.netlink import messages as M
from iscsictl.netlink.enums import IscsiUeventE as E

_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "Q": 2**64 - 1, "i": 2**31 - 1}


def _slow(ev_type, **kw):
    saved = M._CODECS.get(ev_type, "unset")
    M._CODECS[ev_type] = None  # pyroute2's encoder
    try:
        return M.encode_message(ev_type, **kw)
    finally:
        if saved == "unset":
            M._CODECS.pop(ev_type, None)
        else:
            M._CODECS[ev_type] = saved


@pytest.mark.parametrize("ev_type", sorted(M.MESSAGE_CLASSES))
def test_fast_equals_pyroute2(ev_type):
    rng = random.Random(ev_type)
    cls = M.MESSAGE_CLASSES[ev_type]
    assert M._codec(ev_type) is not None, f"{cls.__name__} has no fast layout"
    for _ in range(5):
        kw = {}
        for name, fmt in cls.fields:
            if fmt.endswith("x") or name in ("type", "iferror", "transport_handle"):
                continue
            if fmt.endswith("s"):
                kw[name] = bytes(rng.randrange(256) for _ in range(struct.calcsize(fmt)))
            else:
                kw[name] = rng.randrange(_MAX[fmt[-1]] + 1) if fmt[-1] != "i" else rng.randrange(-2**31, 2**31)
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9)))
        common = dict(transport_handle=rng.randrange(2**64), payload=payload,
                      nlmsg_seq=rng.randrange(2**32), nlmsg_pid=rng.randrange(2**32))
        assert M.encode_message(ev_type, **common, **kw) == _slow(ev_type, **common, **kw)


@pytest.mark.parametrize("fast", [True, False])
def test_an_unknown_field_is_named_by_either_encoder(fast):
    encode = M.encode_message if fast else _slow
    with pytest.raises(KeyError, match=r"has no field\(s\) \['parm'\]"):
        encode(E.SET_PARAM, sid=1, cid=0, parm=5)


@pytest.mark.parametrize("ev_type", sorted(M.MESSAGE_CLASSES))
def test_a_message_encoder_gives_the_same_bytes(ev_type):
    """message_encoder (positional values for chosen fields) equals encode_message and
    pyroute2's encoder, for every type, any subset of its fields, with and without the
    struct layout (its fallback)."""
    rng = random.Random(-ev_type)
    cls = M.MESSAGE_CLASSES[ev_type]
    settable = [(n, f) for n, f in cls.fields
                if not f.endswith("x") and n not in ("type", "iferror", "transport_handle")]
    for _ in range(5):
        chosen = [(n, f) for n, f in settable  # a byte-string field has no default
                  if f.endswith("s") or rng.random() < 0.5]
        values = [bytes(rng.randrange(256) for _ in range(struct.calcsize(f))) if f.endswith("s")
                  else rng.randrange(-2**31, 2**31) if f[-1] == "i" else rng.randrange(_MAX[f[-1]] + 1)
                  for _, f in chosen]
        names = [n for n, _ in chosen]
        if rng.random() < 0.5:  # the values in another order than the layout's
            pairs = list(zip(names, values))
            rng.shuffle(pairs)
            names, values = [n for n, _ in pairs], [v for _, v in pairs]
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9)))
        seq, pid, handle = rng.randrange(2**32), rng.randrange(2**32), rng.randrange(2**64)
        kw = dict(zip(names, values))
        expected = _slow(ev_type, transport_handle=handle, payload=payload, nlmsg_seq=seq,
                         nlmsg_pid=pid, **kw)
        assert M.message_encoder(ev_type, *names)(seq, pid, handle, *values,
                                                  payload=payload) == expected
        saved = M._CODECS[ev_type]
        M._CODECS[ev_type] = None  # no struct layout: the encoder falls back
        try:
            assert M.message_encoder(ev_type, *names)(seq, pid, handle, *values,
                                                      payload=payload) == expected
        finally:
            M._CODECS[ev_type] = saved


def test_a_message_encoder_names_an_unknown_field():
    with pytest.raises(KeyError, match=r"has no field\(s\) \['parm'\]"):
        M.message_encoder(E.SET_PARAM, "sid", "parm")


@pytest.mark.parametrize("names", [("sid", "sid"), ("type", "sid"), ("iferror",), ("transport_handle",)])
def test_a_message_encoder_refuses_a_field_twice_or_a_header_field(names):
    with pytest.raises(ValueError, match="each once"):
        M.message_encoder(E.SET_PARAM, *names)
