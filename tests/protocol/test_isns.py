"""The iSNS codec and discovery machine (iscsictl.protocol.isns) against bytes written by
hand from RFC 4171 §5 and §6: the header, the TLVs, a whole DevAttrQry, the responses an
iSNS server sends, and what a hostile or broken one can send."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st

from iscsictl.protocol import isns as I


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">II", tag, len(value)) + value


def string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return raw + b"\0" * (-len(raw) % 4)


def v4(a: str) -> bytes:  # IPv4-mapped IPv6, RFC 4171 §6.3.1
    return b"\0" * 10 + b"\xff\xff" + bytes(int(x) for x in a.split("."))


def header(function: int, length: int, flags: int, xid: int, seq: int = 0) -> bytes:
    return struct.pack(">HHHHHH", 1, function, length, flags, xid, seq)


INITIATOR = "iqn.1993-08.org.debian:01:0123456789ab"


def test_query_is_the_rfc_layout_byte_for_byte():
    """Source, the key (Node Type = Target), the Delimiter, the nil operating attributes
    iscsiadm asks for, in its order; FIRST|LAST|CLIENT; 132 bytes of payload, as isnsd
    logged iscsiadm's query."""
    req = I.TargetQuery(INITIATOR, first_xid=7).start()
    payload = (tlv(32, string(INITIATOR)) + tlv(33, b"\0\0\0\1") + tlv(0, b"")
               + b"".join(tlv(t, b"") for t in (32, 33, 16, 17, 48, 49, 50, 51)))
    assert len(payload) == 132
    assert I.encode_request(req) == header(0x0002, 132, 0x8C00, 7) + payload


def test_query_for_one_target_keys_on_its_name():
    req = I.TargetQuery(INITIATOR, target="iqn.2003-01.org.x:t1").start()
    assert req.keys == (I.Attribute(I.Tag.ISCSI_NAME, "iqn.2003-01.org.x:t1"),)


@pytest.mark.parametrize("attr,raw", [
    (I.Attribute(32, "iqn.x"), tlv(32, b"iqn.x\0\0\0")),
    (I.Attribute(32, "abc"), tlv(32, b"abc\0")),  # NUL included, exactly 4
    (I.Attribute(16, "10.1.2.3"), tlv(16, v4("10.1.2.3"))),
    (I.Attribute(16, "fe80::1"), tlv(16, bytes.fromhex("fe80" + "00" * 13 + "01"))),
    (I.Attribute(17, 3260), tlv(17, b"\0\0\x0c\xbc")),
    (I.Attribute(17, (3260, True)), tlv(17, b"\0\1\x0c\xbc")),  # bit 16: UDP
    (I.Attribute(51, 1), tlv(51, b"\0\0\0\1")),
    (I.Attribute(4, 2**40), tlv(4, (2**40).to_bytes(8, "big"))),
    (I.Attribute(51), tlv(51, b"")),  # nil
    (I.Attribute(9999, b"\1\2"), tlv(9999, b"\1\2\0\0")),  # unknown tag: raw, padded
])
def test_attribute_encoding(attr, raw):
    assert attr.encode() == raw


@pytest.mark.parametrize("attr", [
    I.Attribute(17, 70000), I.Attribute(16, "not an address"), I.Attribute(32, "a\0b"),
    I.Attribute(51, -1), I.Attribute(51, 2**32),
])
def test_values_a_tag_cannot_hold_are_refused(attr):
    with pytest.raises(I.IsnsFormatError, match="cannot encode"):
        attr.encode()


def test_a_request_over_one_pdu_is_refused():
    big = I.Request(I.Function.DEV_ATTR_REG, 1, INITIATOR,
                    operating=tuple(I.Attribute(34, "x" * 1000) for _ in range(70)))
    with pytest.raises(I.IsnsFormatError, match="payload of"):
        I.encode_request(big)


def isnsd_answer(xid: int, *groups: tuple[str, str, int, int]) -> bytes:
    """A DevAttrQryRsp as isnsd sent it for iscsiadm's query (captured in its log)."""
    body = b"\0\0\0\0" + tlv(33, b"\0\0\0\1") + tlv(0, b"")
    for name, addr, port, tag in groups:
        body += (tlv(32, string(name)) + tlv(33, b"\0\0\0\1") + tlv(16, v4(addr))
                 + tlv(17, port.to_bytes(4, "big")) + tlv(48, string(name))
                 + tlv(49, v4(addr)) + tlv(50, port.to_bytes(4, "big"))
                 + tlv(51, tag.to_bytes(4, "big")))
    return header(0x8002, len(body), 0x4C00, xid) + body


def read(reader: I.MessageReader, stream: bytes):
    """Feed ``stream`` as the shell does (exactly needed() bytes a step); the responses."""
    out, pos = [], 0
    while pos < len(stream):
        n = reader.needed()
        r = reader.feed(stream[pos:pos + n])
        pos += n
        if r is not None:
            out.append(r)
    return out


def test_a_whole_discovery():
    q = I.TargetQuery(INITIATOR, first_xid=5)
    req = q.start()
    (resp,) = read(I.MessageReader(req.xid), isnsd_answer(
        5, ("iqn.t:disk1", "127.0.0.1", 3260, 1), ("iqn.t:disk2", "10.0.0.2", 3261, 2)))
    assert resp.status == 0 and resp.keys == (I.Attribute(33, 1),)
    assert q.receive(resp) is None
    assert q.groups == [I.PortalGroup("iqn.t:disk1", "127.0.0.1", 3260, 1),
                        I.PortalGroup("iqn.t:disk2", "10.0.0.2", 3261, 2)]
    assert q.error is None and not q.registered


def test_a_server_that_wants_the_source_registered():
    """Source unknown: DevAttrReg of the initiator node, the query again, DevDereg; the
    deregistration's failure does not change the result (iscsiadm's discovery_isns)."""
    q = I.TargetQuery(INITIATOR, first_xid=1)
    q.start()
    reg = q.receive(I.Response(I.Function.DEV_ATTR_QRY, 1, I.Status.SOURCE_UNKNOWN))
    assert reg.function == I.Function.DEV_ATTR_REG and reg.xid == 2
    assert reg.keys == () and reg.operating == (I.Attribute(32, INITIATOR),
                                                I.Attribute(33, 2))
    again = q.receive(I.Response(I.Function.DEV_ATTR_REG, 2, 0))
    assert again.function == I.Function.DEV_ATTR_QRY and q.registered
    ans = I.Response(I.Function.DEV_ATTR_QRY, 3, 0, (), (
        I.Attribute(48, "iqn.t:a"), I.Attribute(49, "10.0.0.1"), I.Attribute(50, (3260, False)),
        I.Attribute(51, 1)))
    dereg = q.receive(ans)
    assert dereg.function == I.Function.DEV_DEREG
    assert dereg.operating == (I.Attribute(32, INITIATOR),)
    assert q.receive(I.Response(I.Function.DEV_DEREG, 4, I.Status.INVALID_DEREGISTRATION)) \
        is None
    assert q.groups == [I.PortalGroup("iqn.t:a", "10.0.0.1", 3260, 1)]
    assert q.error is None and q.dereg_error.status == I.Status.INVALID_DEREGISTRATION


def test_a_refused_registration_is_the_registration_error():
    q = I.TargetQuery(INITIATOR)
    q.start()
    q.receive(I.Response(I.Function.DEV_ATTR_QRY, 1, I.Status.SOURCE_UNKNOWN))
    assert q.receive(I.Response(I.Function.DEV_ATTR_REG, 2,
                                I.Status.SOURCE_UNAUTHORIZED)) is None
    assert q.error.function == I.Function.DEV_ATTR_REG
    assert str(q.error) == (f"Could not register {INITIATOR} with iSNS server: "
                            "Source unauthorized.")


def test_a_source_still_unknown_once_registered_ends_after_the_deregistration():
    q = I.TargetQuery(INITIATOR)
    q.start()
    q.receive(I.Response(I.Function.DEV_ATTR_QRY, 1, I.Status.SOURCE_UNKNOWN))
    q.receive(I.Response(I.Function.DEV_ATTR_REG, 2, 0))
    dereg = q.receive(I.Response(I.Function.DEV_ATTR_QRY, 3, I.Status.SOURCE_UNKNOWN))
    assert dereg.function == I.Function.DEV_DEREG
    assert q.receive(I.Response(I.Function.DEV_DEREG, 4, 0)) is None
    assert q.error.function == I.Function.DEV_ATTR_REG and q.groups == []


@pytest.mark.parametrize("status,text", [
    (I.Status.INTERNAL_ERROR, "iSNS discovery failed: Internal error"),
    (I.Status.INVALID_QUERY, "iSNS discovery failed: Invalid query"),
    (99, "iSNS discovery failed: Unknown iSNS status code"),
])
def test_a_refused_query(status, text):
    q = I.TargetQuery(INITIATOR)
    q.start()
    assert q.receive(I.Response(I.Function.DEV_ATTR_QRY, 1, status)) is None
    assert str(q.error) == text and q.error.function == I.Function.DEV_ATTR_QRY


def test_an_answer_to_another_function_is_a_format_error():
    q = I.TargetQuery(INITIATOR)
    q.start()
    with pytest.raises(I.IsnsFormatError, match="DEV_ATTR_REG response"):
        q.receive(I.Response(I.Function.DEV_ATTR_REG, 1, 0))


def PG(name, addr="10.0.0.1", port=(3260, False), tag=1):
    return [I.Attribute(48, name), I.Attribute(49, addr), I.Attribute(50, port),
            I.Attribute(51, tag)]


def test_portal_groups_left_out_as_iscsiadm_leaves_them():
    attrs = (PG("iqn.t:ok") + PG("iqn.t:nil-tag", tag=None)  # no access through it (§3.4)
             + PG("iqn.t:udp", port=(3260, True))
             + [I.Attribute(48, "iqn.t:no-addr"), I.Attribute(50, (3260, False)),
                I.Attribute(51, 1)]
             + PG("iqn.t:ok")  # the same again: once
             + PG("iqn.t:v6", addr="fe80::2", tag=7))
    assert I.portal_groups(attrs) == [I.PortalGroup("iqn.t:ok", "10.0.0.1", 3260, 1),
                                      I.PortalGroup("iqn.t:v6", "fe80::2", 3260, 7)]


def test_a_pg_ends_at_another_objects_key():
    """A PG's attributes after a Storage Node's key belong to no PG (§6.5 object order)."""
    attrs = ([I.Attribute(48, "iqn.t:a"), I.Attribute(49, "10.0.0.1")]
             + [I.Attribute(32, "iqn.t:node"), I.Attribute(50, (3260, False)),
                I.Attribute(51, 1)])
    assert I.portal_groups(attrs) == []


@pytest.mark.parametrize("raw,value", [
    (v4("192.168.1.9"), "192.168.1.9"),
    (b"\0" * 12 + bytes([10, 0, 0, 5]), "10.0.0.5"),  # IPv4-compatible, read as iscsiadm
    (b"\0" * 15 + b"\1", "::1"),
    (bytes.fromhex("20010db8" + "00" * 11 + "01"), "2001:db8::1"),
])
def test_ip_addresses(raw, value):
    assert I.decode_attributes(tlv(49, raw)) == [I.Attribute(49, value)]


def test_a_response_split_over_pdus_is_joined():
    """§5.3: one message, several PDUs: sequence 0.., FIRST on the first, LAST on the
    last; the split may fall inside an attribute."""
    whole = isnsd_answer(9, ("iqn.t:a", "10.0.0.1", 3260, 1))
    body = whole[12:]
    parts = [body[:10], body[10:50], body[50:]]
    flags = [0x4400, 0x4000, 0x4800]
    stream = b"".join(header(0x8002, len(p), f, 9, i) + p
                      for i, (p, f) in enumerate(zip(parts, flags)))
    (resp,) = read(I.MessageReader(9), stream)
    assert I.portal_groups(resp.operating) == [I.PortalGroup("iqn.t:a", "10.0.0.1", 3260, 1)]


def test_the_servers_own_messages_and_late_answers_are_passed_over():
    scn = header(0x0008, 8, 0x4C00, 1) + tlv(0, b"")  # an SCN (a request, not a response)
    late = isnsd_answer(3)  # an answer to an earlier transaction
    ours = isnsd_answer(4, ("iqn.t:a", "10.0.0.1", 3260, 1))
    (resp,) = read(I.MessageReader(4), scn + late + ours)
    assert resp.xid == 4


@pytest.mark.parametrize("stream,match", [
    (struct.pack(">HHHHHH", 2, 0x8002, 0, 0x4C00, 1, 0), "version"),
    (header(0x8002, 8, 0x4000, 1, 1) + b"\0" * 8, "out of sequence"),  # no FIRST, seq 1
    (header(0x8002, 8, 0x4800, 1, 0) + b"\0" * 8, "out of sequence"),  # seq 0 without FIRST
    (header(0x8002, 2, 0x4C00, 1) + b"\0\0", "without a status"),
    (header(0x8002, 8, 0x4C00, 1) + b"\0" * 4 + b"\0\0\0\x20", "left where"),
    (header(0x8002, 12, 0x4C00, 1) + b"\0" * 4 + struct.pack(">II", 32, 6), "length 6"),
    (header(0x8002, 16, 0x4C00, 1) + b"\0" * 4 + struct.pack(">II", 32, 8) + b"\0" * 4,
     "length 8"),
    (header(0x8002, 20, 0x4C00, 1) + b"\0" * 4 + tlv(51, b"\0" * 8), "not 4"),
])
def test_broken_responses_are_format_errors(stream, match):
    with pytest.raises(I.IsnsFormatError, match=match):
        read(I.MessageReader(1), stream)


def test_a_name_that_is_not_utf8_is_read_and_left_out_of_the_portal_groups():
    """One target's name in Latin-1 refused the whole answer (every target lost, and every
    SCN naming it): its bytes are kept (as surrogates, encoded back the same), and only
    its portal group is left out, with why."""
    pg = tlv(48, b"iqn.x:caf\xe9\0\0")
    payload = b"\0" * 4 + pg + tlv(0, b"") + tlv(49, v4("127.0.0.1")) \
        + tlv(50, struct.pack(">I", 3260)) + tlv(51, struct.pack(">I", 1))
    (resp,) = read(I.MessageReader(1), header(0x8002, len(payload), 0x4C00, 1) + payload)
    name = resp.keys[0].value
    assert name == "iqn.x:caf\udce9"
    assert resp.keys[0].encode() == pg
    left_out: dict[str, str] = {}
    assert I.portal_groups(resp.keys + resp.operating, left_out) == []
    assert left_out == {name: "iSCSI name 'iqn.x:caf\\udce9': character '\\udce9' is not "
                              "allowed: target left out"}


@pytest.mark.parametrize("address, port, tag, why", [
    ("10.0.0.9", 3260, 0x10000, "portal 10.0.0.9:3260 has PG Tag 65536, not 0..65535"),
    ("10.0.0.9", 3260, 0xFFFFFFFF, "portal 10.0.0.9:3260 has PG Tag 4294967295, not 0..65535"),
    ("10.0.0.9", 0, 1, "portal 10.0.0.9:0 has TCP port 0"),
    ("0.0.0.0", 3260, 1, "portal 0.0.0.0:3260 has an unspecified address"),
    ("::", 3260, 1, "portal [::]:3260 has an unspecified address"),
])
def test_a_portal_no_record_can_hold_is_left_out_not_its_target(address, port, tag, why):
    """RFC 4171 §6.5.4: a PG Tag is 16 bits in a 32-bit field (node.tpgt holds no more:
    a record at 4294967295 was written that every read warned of); port 0 and an
    unspecified address are no portal a login can use.  The target's other portal stays."""
    ip = v4(address) if "." in address else ipaddress.ip_address(address).packed
    bad = tlv(48, b"iqn.x:t\0") + tlv(49, ip) + tlv(50, struct.pack(">I", port)) \
        + tlv(51, struct.pack(">I", tag))
    good = tlv(48, b"iqn.x:t\0") + tlv(49, v4("10.0.0.1")) + tlv(50, struct.pack(">I", 3260)) \
        + tlv(51, struct.pack(">I", 1))
    payload = b"\0" * 4 + tlv(0, b"") + bad + good
    (resp,) = read(I.MessageReader(1), header(0x8002, len(payload), 0x4C00, 1) + payload)
    left_out: dict[str, str] = {}
    assert I.portal_groups(resp.keys + resp.operating, left_out) == \
        [I.PortalGroup("iqn.x:t", "10.0.0.1", 3260, 1)]
    assert left_out == {"iqn.x:t": f"iqn.x:t: {why}: portal left out"}


def test_a_string_without_its_nul_is_read_whole_as_open_isns_reads_it():
    """RFC 4171 §6.1 asks for the NUL; a server that leaves it out was a failed query."""
    stream = header(0x8002, 16, 0x4C00, 1) + b"\0" * 4 + tlv(32, b"abcd")
    (resp,) = read(I.MessageReader(1), stream)
    assert [a.value for a in resp.keys + resp.operating] == ["abcd"]


def test_a_response_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(I, "MAX_MESSAGE", 100)
    part = b"\0" * 60
    stream = header(0x8002, 60, 0x4400, 1, 0) + part + header(0x8002, 60, 0x4000, 1, 1) + part
    with pytest.raises(I.IsnsFormatError, match="more than 100 bytes"):
        read(I.MessageReader(1), stream)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_no_payload_escapes_as_anything_but_a_format_error(payload):
    try:
        I.decode_attributes(payload)
    except I.IsnsFormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(I.ATTRIBUTES)), max_size=8), st.data())
def test_encode_decode_round_trip(tags, data):
    values = {"str": st.text(st.characters(blacklist_characters="\0",
                                           blacklist_categories=("Cs",)), max_size=20),
              "u32": st.integers(0, 2**32 - 1), "u64": st.integers(0, 2**64 - 1),
              "port": st.tuples(st.integers(0, 65535), st.booleans()),
              "ip": st.sampled_from(["10.0.0.1", "2001:db8::5", "::1"]),
              "raw": st.binary(min_size=4, max_size=12).filter(lambda b: len(b) % 4 == 0)}
    attrs = [I.Attribute(t, None if t == 0 else data.draw(values[I.ATTRIBUTES[t]]))
             for t in tags]
    assert I.decode_attributes(b"".join(a.encode() for a in attrs)) == attrs


def test_status_texts_are_iscsiadms():
    assert I.status_text(6) == "Source unknown"
    assert I.status_text(16) == "SCN event rejected"
    assert I.status_text(4) == "Unknown iSNS status code"  # 4 is unassigned in RFC 4171


# ---- registration and State Change Notifications -----------------------------------------
def test_the_registration_is_discoveryds_objects_byte_for_byte():
    """DevAttrReg with Replace: Source, the key (EID), the Delimiter, the entity (EID,
    protocol iSCSI), one portal (address, port and SCN port, TCP) and each initiator node."""
    req = I.registration([INITIATOR, "iqn.2026-11.x:if", INITIATOR], "host1", "10.0.0.5",
                         40000, 9)
    port = (40000).to_bytes(4, "big")
    payload = (tlv(32, string(INITIATOR)) + tlv(1, string("host1")) + tlv(0, b"")
               + tlv(1, string("host1")) + tlv(2, b"\0\0\0\2") + tlv(16, v4("10.0.0.5"))
               + tlv(17, port) + tlv(23, port)
               + tlv(32, string(INITIATOR)) + tlv(33, b"\0\0\0\2")
               + tlv(32, string("iqn.2026-11.x:if")) + tlv(33, b"\0\0\0\2"))
    assert I.encode_request(req) == header(0x0001, len(payload), 0x9C00, 9) + payload
    with pytest.raises(ValueError):
        I.registration([], "host1", "10.0.0.5", 1, 1)


def test_the_scn_registration_asks_for_targets_added_updated_removed():
    req = I.scn_registration(INITIATOR, 3)
    payload = (tlv(32, string(INITIATOR)) + tlv(32, string(INITIATOR)) + tlv(0, b"")
               + tlv(35, (0x04 | 0x08 | 0x10 | 0x40).to_bytes(4, "big")))
    assert I.encode_request(req) == header(0x0005, len(payload), 0x8C00, 3) + payload


def test_the_deregistration_names_the_network_entity():
    """DevDereg (§5.6.5.4): Source, no key, the Delimiter, the entity's EID (the server
    removes its portal and nodes with it)."""
    req = I.deregistration(INITIATOR, "host1", 12)
    payload = tlv(32, string(INITIATOR)) + tlv(0, b"") + tlv(1, string("host1"))
    assert I.encode_request(req) == header(0x0004, len(payload), 0x8C00, 12) + payload


def test_the_registration_period_of_an_answer():
    period = I.Response(1, 1, 0, (), (I.Attribute(I.Tag.ENTITY_IDENTIFIER, "h"),
                                      I.Attribute(I.Tag.REGISTRATION_PERIOD, 900)))
    assert I.registration_period(period) == 900
    assert I.registration_period(I.Response(1, 1, 0)) is None
    assert I.registration_period(I.Response(1, 1, 0, (), (
        I.Attribute(I.Tag.REGISTRATION_PERIOD, 0),))) is None


SERVER = "iqn.2026-11.test:isnsd"
T = "iqn.2003-01.org.x:t1"


def scn(*attrs: bytes, function=0x0008, flags=0x4C00, seq=0):
    payload = b"".join(attrs)
    return header(function, len(payload), flags, 5, seq), payload


def test_an_scn_as_isnsd_sends_it_and_its_answer():
    """open-isns: its own Source, the Destination, the Timestamp, then each change as its
    bitmap and the node's name (the order isnsd was seen sending on loopback)."""
    hdr, payload = scn(tlv(32, string(SERVER)), tlv(32, string(INITIATOR)),
                       tlv(4, (1795480280).to_bytes(8, "big")), tlv(35, b"\0\0\0\x08"),
                       tlv(32, string(T)), tlv(35, b"\0\0\0\x10"), tlv(32, string("iqn.x:t2")))
    note = I.decode_notification(hdr, payload)
    assert note == I.Notification(5, INITIATOR, ((T, 0x08), ("iqn.x:t2", 0x10)))
    answer = tlv(32, string(INITIATOR))
    assert I.encode_notification_response(note) == \
        header(0x8008, 4 + len(answer), 0x8C00, 5) + b"\0\0\0\0" + answer


def test_an_scn_with_each_name_before_its_bitmap():
    hdr, payload = scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), tlv(32, string(T)),
                       tlv(35, b"\0\0\0\x04"))
    assert I.decode_notification(hdr, payload).changes == ((T, 0x04),)


def test_a_management_scns_discovery_domain_attributes_are_passed_over():
    """§5.6.5.8: a management SCN puts the DD_ID (2065) or DDS_ID after the node's name;
    they were an 'SCN's last change has no bitmap' and the SCN went unanswered."""
    hdr, payload = scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), tlv(32, string(T)),
                       tlv(2065, b"\0\0\0\1"), tlv(35, b"\0\0\0\x20"))
    assert I.decode_notification(hdr, payload).changes == ((T, 0x20),)


@pytest.mark.parametrize("parts,match", [
    (scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), function=0x0002), "DEV_ATTR_QRY"),
    (scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), flags=0x4400), "one PDU"),
    (scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), seq=1), "one PDU"),
    (scn(tlv(32, string(INITIATOR))), "Destination and a Timestamp"),
    (scn(tlv(4, bytes(8)), tlv(32, string(INITIATOR))), "Destination and a Timestamp"),
    (scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), tlv(35, b"\0\0\0\4")), "no bitmap"),
    (scn(tlv(32, string(INITIATOR)), tlv(4, bytes(8)), tlv(35, b"\0\0\0\4"),
         tlv(35, b"\0\0\0\4")), "pairs"),
    ((header(0x0008, 4, 0x4C00, 5)[:10], b""), "header of 10 bytes"),
    ((b"\0\2" + header(0x0008, 0, 0x4C00, 5)[2:], b""), "version"),
])
def test_what_is_not_an_scn_is_a_format_error(parts, match):
    with pytest.raises(I.IsnsFormatError, match=match):
        I.decode_notification(*parts)


def test_the_entity_is_named_once_per_process(monkeypatch):
    """iscsid's isns_entity_id is computed once: the refresh and the deregistration at stop
    name the entity the first registration did, whatever a later lookup answers (before:
    looked up each time, so DNS down meant a second entity, refused, and a deregistration
    that left the first one registered)."""
    import socket

    from iscsictl.discovery import isns as client

    answers = iter([("host-a.example", "0"), ("10.0.0.5", "0")])
    monkeypatch.setattr(socket, "getnameinfo", lambda *a: next(answers))
    monkeypatch.setattr(client, "_ENTITY_ID", [])
    assert [client.entity_id("10.0.0.5") for _ in range(3)] == ["host-a.example"] * 3
