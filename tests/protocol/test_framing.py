"""PDUReader: every split of a stream gives the same PDUs; needed() never
over-asks; digests; the Cython and pure readers agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iscsictl.protocol import pdu as P
from iscsictl.protocol.errors import DataDigestError, HeaderDigestError

from .strategies import PROPERTY, pdus


def _raw_tuple(raw):
    return (bytes(raw.header), bytes(raw.ahs), bytes(raw.data))


@st.composite
def streams(draw):
    hd, dd = draw(st.booleans()), draw(st.booleans())
    items = draw(st.lists(pdus(), min_size=1, max_size=6))
    wire = b"".join(p.encode(hd, dd) for p in items)
    return hd, dd, items, wire


def _split(wire, cuts):
    cuts = sorted(set(c % (len(wire) + 1) for c in cuts))
    bounds = [0, *cuts, len(wire)]
    return [wire[a:b] for a, b in zip(bounds, bounds[1:])]


@PROPERTY
@given(s=streams(), cuts=st.lists(st.integers(0, 1 << 16), max_size=12),
       trailing=st.integers(0, 47))
def test_any_split_gives_the_same_pdus(impl, s, cuts, trailing):
    hd, dd, items, wire = s
    kw = dict(header_digest=hd, data_digest=dd, max_data_segment_length=1 << 24)
    tail = items[0].encode(hd, dd)[:trailing]  # a trailing partial PDU
    for chunks in (_split(wire + tail, cuts), [wire + tail]):
        r = impl.reader(**kw)
        got = []
        for chunk in chunks:
            r.feed(chunk)
            got += r.pdus()
        assert [P.decode_pdu(g, strict=True) for g in got] == items
        assert r.buffered == len(tail)
        assert r.next_pdu() is None


@pytest.mark.parametrize("hd,dd", [(False, False), (True, True)])
def test_byte_at_a_time(impl, hd, dd):
    items = [P.NOPOut(itt=1, data=b"abcde"), P.SCSICommand(cdb=bytes(32), itt=2),
             P.SCSIDataIn(itt=3, data=b"z" * 13)]
    wire = b"".join(p.encode(hd, dd) for p in items)
    r = impl.reader(header_digest=hd, data_digest=dd)
    got = []
    for i in range(len(wire)):
        r.feed(wire[i:i + 1])
        got += r.pdus()
    assert [P.decode_pdu(g) for g in got] == items
    assert r.buffered == 0


@PROPERTY
@given(s=streams(), extra=st.binary(min_size=1, max_size=20))
def test_needed_never_over_asks(impl, s, extra):
    """Reading exactly needed() bytes each time yields each PDU in turn and
    leaves every later byte unread (the login socket hand-over)."""
    hd, dd, items, wire = s
    stream = memoryview(wire + extra)
    r = impl.reader(header_digest=hd, data_digest=dd, max_data_segment_length=1 << 24)
    pos = 0
    for expected in items:
        while (n := r.needed()) > 0:
            r.feed(stream[pos:pos + n])
            pos += n
            assert pos <= len(wire)
        raw = r.next_pdu()
        assert P.decode_pdu(raw) == expected
        assert r.buffered == 0
    assert pos == len(wire)
    assert r.needed() == 48


def test_needed_counts_down(impl):
    wire = P.NOPOut(data=b"12345").encode(True, True)  # 48 + 4 + 8 + 4
    r = impl.reader(header_digest=True, data_digest=True)
    assert r.needed() == 48
    r.feed(wire[:10])
    assert r.needed() == 38
    r.feed(wire[10:48])
    assert r.needed() == 16
    r.feed(wire[48:])
    assert r.needed() == 0
    assert r.next_pdu() is not None


def test_memoryview_and_bytearray_input(impl):
    wire = P.NOPIn(data=b"q").encode()
    r = impl.reader()
    r.feed(memoryview(wire)[:20])
    r.feed(bytearray(wire[20:]))
    (raw,) = r.pdus()
    assert type(raw.data) is bytes and raw.data == b"q"
    assert type(raw.header) is bytes and raw.header == wire[:48]


def test_long_stream_of_data_in(impl):
    """Many 8 KiB Data-In PDUs in mixed chunk sizes: all come out, in order."""
    items = [P.SCSIDataIn(itt=7, datasn=i, buffer_offset=i * 8192, data=bytes([i & 0xFF]) * 8192)
             for i in range(200)]
    wire = b"".join(p.encode(True, True) for p in items)
    r = impl.reader(header_digest=True, data_digest=True, max_data_segment_length=8192)
    got = []
    step = 3001
    for i in range(0, len(wire), step):
        r.feed(wire[i:i + step])
        got += r.pdus()
    assert [g.bhs.words[4] for g in got] == list(range(200))  # DataSN, bytes 36-39
    assert all(g.data == bytes([i & 0xFF]) * 8192 for i, g in enumerate(got))


def test_data_digest_error_keeps_earlier_pdus(impl):
    good1, bad, good2 = (P.NOPIn(itt=i, data=b"abc") for i in (1, 2, 3))
    wire2 = bytearray(bad.encode(data_digest=True))
    wire2[-1] ^= 0xFF
    stream = good1.encode(data_digest=True) + bytes(wire2) + good2.encode(data_digest=True)
    r = impl.reader(data_digest=True)
    r.feed(stream)
    first = r.pdus()
    assert [g.bhs.itt for g in first] == [1]
    with pytest.raises(DataDigestError) as ei:
        r.pdus()
    assert ei.value.pdu.bhs.itt == 2 and ei.value.pdu.data == b"abc"
    assert [g.bhs.itt for g in r.pdus()] == [3]


def test_header_digest_error_is_sticky(impl):
    wire = bytearray(P.NOPIn(itt=1).encode(header_digest=True))
    wire[20] ^= 1
    r = impl.reader(header_digest=True)
    r.feed(bytes(wire))
    with pytest.raises(HeaderDigestError) as ei:
        r.next_pdu()
    assert ei.value.fatal
    for call in (r.next_pdu, r.pdus, r.needed, lambda: r.feed(b"x")):
        with pytest.raises(HeaderDigestError):
            call()


def test_set_digests_and_limits(impl):
    r = impl.reader()
    r.set_digests(True, False)
    r.set_max_data_segment_length(1 << 20)
    r.feed(P.NOPIn(data=b"x" * 10000).encode(header_digest=True))
    (raw,) = r.pdus()
    assert len(raw.data) == 10000


@pytest.mark.parametrize("hd,dd", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("frame", ["needed", "next_pdu"])
def test_set_digests_after_a_bhs_is_framed(impl, hd, dd, frame):
    """Digests switched on once a PDU's BHS is framed (by needed(), or by a
    next_pdu() still waiting for its data) apply from the next PDU: the framed one
    keeps the length it was framed with.  Its data is exactly the bytes fed, never
    4 bytes short nor bytes past the end of the buffer."""
    first = P.NOPIn(itt=1, data=b"\xe0_\xc9aDATA")
    second = P.NOPIn(itt=2, data=b"after")
    wire = first.encode()
    r = impl.reader()
    if frame == "needed":
        r.feed(wire)
        assert r.needed() == 0
    else:
        r.feed(wire[:50])
        assert r.next_pdu() is None
    r.set_digests(hd, dd)
    if frame == "next_pdu":
        r.feed(wire[50:])
    raw = r.next_pdu()
    assert raw.data == first.data and raw.bhs.itt == 1
    assert r.buffered == 0 and r.next_pdu() is None
    r.feed(second.encode(hd, dd))
    (raw,) = r.pdus()
    assert raw.data == b"after" and raw.bhs.itt == 2


def test_set_digests_off_after_a_bhs_is_framed(impl):
    """And the other way: a PDU framed with digests keeps them (checked and skipped)."""
    wire = P.NOPIn(itt=1, data=b"abc").encode(True, True)
    r = impl.reader(header_digest=True, data_digest=True)
    r.feed(wire)
    assert r.needed() == 0
    r.set_digests(False, False)
    raw = r.next_pdu()
    assert raw.data == b"abc" and r.buffered == 0
    r.feed(P.NOPIn(itt=2, data=b"de").encode())
    assert [x.data for x in r.pdus()] == [b"de"]


@PROPERTY
@given(s=streams())
def test_implementations_agree(both_impls, s):
    hd, dd, items, wire = s
    outs = []
    for im in both_impls:
        r = im.reader(header_digest=hd, data_digest=dd, max_data_segment_length=1 << 24)
        r.feed(wire)
        outs.append([_raw_tuple(x) for x in r.pdus()])
    assert all(o == outs[0] for o in outs)


@pytest.mark.parametrize("value,error", [(None, TypeError), (8192.0, TypeError), ("8192", TypeError),
                                          (1 << 63, OverflowError), (-(1 << 63) - 1, OverflowError)])
def test_limits_are_typed_as_in_the_cython_twin(impl, value, error):
    """The limits are C ``Py_ssize_t`` in the Cython twin: both twins refuse a value that
    is not an integer, or does not fit, when it is given, not at the next PDU."""
    with pytest.raises(error):
        impl.reader(max_data_segment_length=value)
    r = impl.reader()
    with pytest.raises(error):
        r.max_ahs_length = value
    with pytest.raises(error):
        r.set_max_data_segment_length(value)
    r.header_digest = "yes"
    assert r.header_digest is True and r.max_ahs_length == 255 * 4
