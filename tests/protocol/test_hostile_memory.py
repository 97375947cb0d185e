"""The memory a hostile SendTargets answer costs."""

import tracemalloc

from iscsictl.protocol.pdu import TextResponse
from iscsictl.protocol.text_exchange import SEND_TARGETS_KEYS, TextExchange, parse_send_targets


def test_a_sendtargets_answer_of_tiny_pairs_costs_a_small_multiple_of_its_size():
    """MAX_RESPONSE_BYTES bounds the answer's bytes (16 MiB), not what they become: an
    answer of ``a=\\0`` pairs (3 bytes each) cost ~75 bytes of heap per byte received (the
    pairs' list, and the whole-text regex's state: 150 MB for 2 MiB; the CLI's RSS for 16
    MiB was ~1.06 GB, an initramfs OOM-killed).  The keys SendTargets does not use are
    dropped as they are read, and the text checked in constant memory: within 16x."""
    data = b"a=\0" * ((2 << 20) // 3)
    tracemalloc.start()
    try:
        ex = TextExchange([("SendTargets", "All")], itt=1, cmdsn=1, exp_statsn=1,
                          keep=SEND_TARGETS_KEYS)
        ex.start()
        ex.data_to_send()
        res = None
        seg = 32768
        for i in range(0, len(data), seg):
            last = i + seg >= len(data)
            res = ex.receive_pdu(TextResponse(final=last, continue_=not last, itt=1,
                                              ttt=0xFFFFFFFF if last else 5,
                                              data=data[i:i + seg]))
            ex.data_to_send()
        assert res is not None
        assert parse_send_targets(res, None, lambda why: None) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 16 * len(data), f"peak {peak / 2**20:.0f} MiB for {len(data) / 2**20:.0f} MiB"


def test_an_isns_answer_of_nil_attributes_costs_a_small_multiple_of_its_size():
    """An iSNS response's attributes are objects of their own: 8 bytes of nil attribute on
    the wire were ~100 bytes of heap (a dataclass with a __dict__: 297 MB for the 16 MiB
    a response may hold); with __slots__ ~60 (the list and the tuples of the split)."""
    import struct

    from iscsictl.protocol import isns as I

    payload = b"\0" * 4 + struct.pack(">II", 48, 0) * ((2 << 20) // 8)
    pieces = [payload[i:i + 65532] for i in range(0, len(payload), 65532)]
    tracemalloc.start()
    try:
        reader = I.MessageReader(1)
        for seq, piece in enumerate(pieces):  # PDUs of at most 64 KiB (§5.1.3)
            flags = 0x4000 | (0x0400 if seq == 0 else 0) | (0x0800 if seq == len(pieces) - 1
                                                              else 0)
            assert reader.feed(struct.pack(">HHHHHH", 1, 0x8002, len(piece), flags, 1,
                                           seq)) is None
            response = reader.feed(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response is not None and len(response.keys) == (2 << 20) // 8
    assert peak <= 12 * len(payload), f"peak {peak / 2**20:.0f} MiB for 2 MiB"


def test_the_pieces_of_a_text_not_ascii_are_read_one_at_a_time():
    """One byte not ASCII sends the whole answer to the pair-by-pair reading: its pieces
    are found one at a time (a list of them all was ~50 bytes a piece), the same bound."""
    from iscsictl.protocol.text import decode_text

    data = b"a=\0" * ((2 << 20) // 3) + b"TargetAlias=\xe9\0"
    tracemalloc.start()
    try:
        out = decode_text(data, value_limits=False, skip=lambda why: None,
                          lenient=SEND_TARGETS_KEYS, keep=SEND_TARGETS_KEYS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == []
    assert peak <= 16 * len(data), f"peak {peak / 2**20:.0f} MiB"
