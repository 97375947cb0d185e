"""Record tables, parser and printers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscsictl.db import schema
from iscsictl.db.errors import CorruptRecord, InvalidKey, InvalidValue, ReadOnlyKey
from iscsictl.db.record import (Record, format_file_variants, format_node_flat, format_record,
                                parse_record)


def node(**kw):
    r = Record(schema.NODE)
    r.set("node.name", "iqn.2001-04.com.example:t1")
    r.set("node.conn[0].address", "10.0.0.1")
    for k, v in kw.items():
        r.set(k, v)
    return r


def test_tables_have_unique_names_and_defaults():
    for kind in schema.KINDS.values():
        names = [k.name for k in kind.keys]
        assert len(names) == len(set(names)), kind.name
    assert len(schema.NODE_FILE_ORDER) == len(schema.NODE_KEYS)
    assert schema.NODE.by_name["node.session.initial_login_retry_max"].default == 4
    assert schema.NODE.by_name["node.conn[0].timeo.login_timeout"].default == 30
    assert schema.NODE.by_name["node.session.auth.chap_algs"].default == ("MD5",)
    assert schema.NODE.by_name["node.name"].read_only
    assert schema.NODE.by_name["node.session.auth.password_length"].hidden
    assert schema.DISCOVERY_ISNS.by_name["discovery.isns.discoveryd_poll_inval"].default == -1


@pytest.mark.parametrize("kind", list(schema.KINDS))
def test_round_trip_every_kind(kind):
    k = schema.KINDS[kind]
    r = Record(k)
    # give every str key a value and every int key a non-default value
    for key in k.keys:
        if key.hidden:
            continue
        if key.type == "str":
            r.set(key.name, ("v-" + key.name.rsplit(".", 1)[1])[:schema.VALUE_SIZES.get(key.name, 255)])
        elif key.type == "int":
            r.set(key.name, 7)
        elif key.type in ("enum", "bool"):
            r.set(key.name, key.values[-1])
        elif key.type == "list":
            r.set(key.name, "SHA256,MD5")
    if kind == "node":
        r.set("node.conn[0].address", "10.0.0.1")
    if kind in ("node", "iface"):
        r.set("iface.ipaddress", "10.9.9.9")  # IPv4 block for both file and show
    text = format_record(r, for_file=True)
    back = parse_record(k, text.encode(), "x")
    # keys of the other iface block are not written: compare printed keys only
    assert format_record(back, for_file=True) == text
    assert format_record(back, show_secrets=True) == format_record(r, show_secrets=True)


def test_file_and_show_forms():
    r = node(**{"node.session.auth.password": "secret"})
    f = format_record(r, for_file=True)
    s = format_record(r)
    assert f.startswith("# BEGIN RECORD 2.1.8\n") and f.endswith("# END RECORD\n")
    assert "node.session.auth.password = secret\n" in f
    assert "password_length" not in f and "password_length" not in s
    assert "node.session.auth.username" not in f
    assert "node.session.auth.username = <empty>\n" in s
    assert "node.session.auth.password = ********\n" in s
    assert "node.session.auth.password_in = <empty>\n" in s
    assert "node.session.auth.password = secret\n" in format_record(r, show_secrets=True)
    # node file order puts hwaddress first in the iface block, show puts iscsi_ifacename first
    r.set("iface.hwaddress", "00:11:22:33:44:55")
    f = format_record(r, for_file=True).splitlines()
    assert f.index("iface.hwaddress = 00:11:22:33:44:55") < f.index("iface.iscsi_ifacename = default")
    s = format_record(r).splitlines()
    assert s.index("iface.hwaddress = 00:11:22:33:44:55") > s.index("iface.iscsi_ifacename = default")


def test_ipv6_iface_blocks():
    r = node(**{"iface.iscsi_ifacename": "eth0-ipv6"})
    s = format_record(r)
    assert "iface.hop_limit = 0" in s and "iface.ttl" not in s
    r = node(**{"iface.ipaddress": "fe80::2"})
    assert "iface.hop_limit = 0" in format_record(r, for_file=True)
    assert "iface.ttl = 0" in format_record(r)  # show decides by name only (libopeniscsiusr)


def test_password_sets_length_and_update_rules():
    r = node()
    r.update_key("node.session.auth.password", "abcdef")
    assert r["node.session.auth.password_length"] == 6
    with pytest.raises(ReadOnlyKey) as e:
        r.update_key("node.name", "x")
    assert e.value.exit_code == 7 and "look up the record" in str(e.value)
    with pytest.raises(ReadOnlyKey) as e:
        r.update_key("iface.hwaddress", "x")
    assert "Use iface mode" in str(e.value)
    r.update_key("iface.transport_name", "iser")
    with pytest.raises(InvalidKey) as e:
        r.update_key("node.foo", "x")
    assert e.value.exit_code == 7 and "Invalid param name" in str(e.value)
    with pytest.raises(InvalidValue):
        r.update_key("node.startup", "bogus")
    with pytest.raises(InvalidValue):
        r.update_key("node.session.cmds_max", "abc")
    with pytest.raises(InvalidValue):
        r.update_key("node.session.cmds_max", "70000")  # u16
    with pytest.raises(InvalidValue):
        r.update_key("node.session.auth.chap_algs", "MD5,FOO")
    r.update_key("node.session.auth.chap_algs", "SHA256 MD5")
    assert r["node.session.auth.chap_algs"] == ("SHA256", "MD5")
    assert "node.session.auth.chap_algs = SHA256,MD5" in format_record(r, for_file=True)


def test_parser_leniency():
    warnings = []
    text = ("# BEGIN RECORD 2.1.11\n"
            "node.name =iqn.x\n"
            "   node.conn[0].address   =   10.0.0.2  \n"
            "node.session.queue_depth=99\n"  # no blank before '=': iscsid ignores it
            "node.session.initial_login_retry_max==7\n"  # but takes this one
            "node.startup = sometimes\n"
            "node.unknown.key = 5\n"
            "no separator here\n"
            "node.session.cmds_max = 64\n"
            "node.session.auth.chap_algs = MD5,FOO,MD5,SHA1\n"
            + "x" * 3000 + "\n"
            + "# END RECORD\n")
    r = parse_record(schema.NODE, text.encode(), "p", warnings.append)
    assert r["node.name"] == "iqn.x"
    assert r["node.conn[0].address"] == "10.0.0.2"
    assert r["node.startup"] == "manual"
    assert r["node.session.cmds_max"] == 64
    assert r["node.session.queue_depth"] == 32 and any(
        "line 4 does not have '=' separator" in w for w in warnings)
    assert r["node.session.initial_login_retry_max"] == 7
    assert r["node.session.auth.chap_algs"] == ("MD5", "SHA1")
    assert any("unknown value format 'sometimes'" in w for w in warnings)
    assert any("too long" in w for w in warnings)
    assert any("Ignoring unknown value 'FOO'" in w for w in warnings)


def test_a_newer_open_iscsis_keys_survive_a_rewrite():
    """Keys open-iscsi added after the format version (2.1.11's conn_reopen_log_freq, 2.1.12's
    tcp.congestion_control) are written back when a record holds them; before, rewriting a
    2.1.11 record dropped them.  At their defaults they are left out, as 2.1.8 writes."""
    text = (b"# BEGIN RECORD 2.1.11\nnode.name = iqn.x\nnode.conn[0].address = 10.0.0.2\n"
            b"node.session.conn_reopen_log_freq = 5\n"
            b"node.conn[0].tcp.congestion_control = bbr\n# END RECORD\n")
    r = parse_record(schema.NODE, text, "p")
    for form in (format_record(r, for_file=True), format_record(r),
                 next(format_file_variants(r, [r], ["node.name"]))):
        assert "node.session.conn_reopen_log_freq = 5\n" in form
        assert "node.conn[0].tcp.congestion_control = bbr\n" in form
        assert form.startswith("# BEGIN RECORD 2.1.8\n")
    for form in (format_record(node(), for_file=True), format_record(node())):
        assert "conn_reopen_log_freq" not in form and "congestion_control" not in form


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"), (b"\n\n  \n", "empty"), (b"\x00\x01\x02binary", "binary"),
    (b"node.conn[0].address = 1.2.3.4\n", "node.name"),
    (b"# BEGIN RECORD 2.1.8\nnode.name = iqn.x\nnode.tp", "node.conn[0].address"),
])
def test_corrupt(data, reason):
    with pytest.raises(CorruptRecord) as e:
        parse_record(schema.NODE, data, "/some/path")
    assert e.value.path == "/some/path" and reason in e.value.reason
    assert e.value.exit_code == 6


def test_flat_format():
    assert format_node_flat("10.0.0.1", 3260, 1, "iqn.x") == "10.0.0.1:3260,1 iqn.x"
    assert format_node_flat("fe80::1", 3260, -1, "iqn.x") == "[fe80::1]:3260,4294967295 iqn.x"


@pytest.mark.parametrize("text", ["\u0663", "1_0", "\u00b2", "0x10", "1e3", "", "+", "--1"])
def test_an_integer_is_ascii_digits(text):
    """int() takes '1_0' and other scripts' digits; the C field (strtol) does not."""
    with pytest.raises(InvalidValue):
        Record(schema.NODE).set("node.session.nr_sessions", text)


def test_nr_sessions_is_a_c_int():
    """node.session.nr_sessions is session_rec's int: 4294967295 is refused (iscsiadm
    stores it as -1), not taken as four billion sessions for a login to make."""
    r = Record(schema.NODE)
    r.set("node.session.nr_sessions", "2147483647")
    with pytest.raises(InvalidValue, match="out of range"):
        r.set("node.session.nr_sessions", "4294967295")


def test_integers_with_a_sign_or_blanks_as_strtol_reads_them():
    r = Record(schema.NODE)
    r.set("node.session.nr_sessions", " +7 ")
    assert r["node.session.nr_sessions"] == 7


@pytest.mark.parametrize("kind, key, room", [
    (schema.NODE, "node.session.auth.username", 255),
    (schema.NODE, "node.session.auth.password", 255),
    (schema.IFACE, "iface.hwaddress", 17), (schema.IFACE, "iface.net_ifacename", 15),
    (schema.IFACE, "iface.dhcp_vendor_id", 79), (schema.IFACE, "iface.bootproto", 79)])
def test_a_value_longer_than_open_iscsi_holds_is_refused(kind, key, room):
    """A text value over what iscsiadm holds (VALUE_MAXVAL, less its NUL; a smaller C
    field's size) is refused when set: iscsiadm would read another value (a CHAP secret
    cut to 255 bytes, "aa:bb:cc:dd:ee:ff:00:11" as the MAC aa:bb:cc:dd:ee:ff, an iface's
    ISCSI_MAX_STR_LEN fields cut to 79).  Before,
    anything up to a 2 KiB line was written.  A secret is not said."""
    r = Record(kind, {"node.name": "iqn.2003-01.org.example:t1",
                      "node.conn[0].address": "10.0.0.1"} if kind is schema.NODE else {})
    r.set(key, "u" * room)
    assert parse_record(kind, format_record(r, for_file=True))[key] == "u" * room
    with pytest.raises(InvalidValue, match=f"{room + 1} bytes: open-iscsi holds {room}") as e:
        r.set(key, "u" * (room + 1))
    assert ("u" * 10 in str(e.value)) != ("password" in key)
    with pytest.raises(InvalidValue):
        r.set(key, "\u00e9" * (room // 2 + 1))  # two bytes each


def test_clamps():
    assert schema.clamp_max_recv_dsl(100) == 262144
    assert schema.clamp_max_recv_dsl(8195) == 8192
    assert schema.clamp_max_xmit_dsl(0) == 8192
    assert schema.clamp_max_xmit_dsl(0, 65536) == 65536
    assert schema.clamp_max_xmit_dsl(262144, 65536) == 65536
    assert schema.clamp_bursts(1 << 25, 100) == (262144, 16776192)
    assert schema.clamp_bursts(65536, 8192) == (8192, 8192)


@pytest.mark.parametrize("kind", list(schema.KINDS.values()), ids=lambda k: k.name)
def test_a_default_written_as_text_reads_back_as_the_default(kind):
    """parse_lines takes a key whose text is its default's text for the default without
    converting it: that shortcut holds only if converting that text gives the default."""
    from iscsictl.db.record import _lenient_list, convert, default_strings

    def no_warning(msg):
        raise AssertionError(msg)

    texts = default_strings(kind)
    for key in kind.keys:
        if key.type == "list":
            value = _lenient_list(key, texts[key.name], "p", no_warning)
        else:
            value = convert(key, texts[key.name])
        assert value == key.default, key.name


def test_well_formed_and_irregular_record_text_parse_alike():
    """The one-pass reading of well-formed text and the line-by-line reading agree; text
    with one irregular line (leading space, CR, over-long, bad value) takes the slow path
    and still gives the same values."""
    from iscsictl.db.record import _parse_lines_slowly, parse_lines

    rec = Record(schema.NODE, {"node.name": "iqn.x", "node.conn[0].address": "10.0.0.2",
                               "node.session.cmds_max": 64, "node.startup": "automatic",
                               "node.session.auth.chap_algs": ("SHA256", "MD5")})
    good = format_record(rec, for_file=True)
    variants = [good, good.replace("\n", "\r\n"), "  " + good, good + "x" * 3000 + "\n",
                good.replace("node.startup = automatic", "node.startup = sometimes"),
                good.replace("= SHA256,MD5", "= SHA256,FOO"), good.replace(" = ", "="),
                good.replace("node.session.cmds_max = 64", "node.session.cmds_max = 6x4")]
    for text in variants:
        fast, slow = [], []
        assert parse_lines(schema.NODE, text, "p", fast.append) == \
            _parse_lines_slowly(schema.NODE, text, "p", slow.append)
        assert fast == slow
    values, begin = parse_lines(schema.NODE, good)
    assert begin and values["node.session.cmds_max"] == 64 and values["node.startup"] == "automatic"
    assert values["node.session.auth.chap_algs"] == ("SHA256", "MD5")
    _, warned = parse_lines(schema.NODE, variants[4], "p", fast.append), fast
    assert any("unknown value format 'sometimes'" in w for w in warned)


def _valid_texts(key) -> list[str]:
    if key.type == "str":
        return ["", "x", "iqn.2001-04.com.example:t2", "fe80::2", "10.0.0.9"]
    if key.type == "int":
        return ["0", "7", "3260"]
    if key.type == "list":
        return ["MD5", "SHA256,MD5"]
    return list(key.values)


#: the keys that choose a node or iface file's address block (a variant may not change them)
_BLOCK_KEYS = ("iface.ipaddress", "iface.iscsi_ifacename", "iface.bootproto")

_changes = st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 10)), max_size=6)


@given(st.sampled_from(["node", "node", "iface", "discovery_st"]), _changes,
       st.lists(st.integers(0, 10 ** 6), max_size=5), st.lists(_changes, max_size=8))
@settings(max_examples=150, deadline=None)
def test_variants_of_a_template_format_as_each_alone(kind_name, template_changes, varying_at,
                                                     variant_changes):
    """format_file_variants (the template's lines made once, only the varying keys' lines per
    record) writes what format_record writes for each record: copies of any template (an
    IPv6 iface address too) that differ from it in any of the varying keys (as a
    discovery's new records differ in their identity)."""
    kind = schema.KINDS[kind_name]
    settable = [k for k in kind.keys if not k.hidden and not k.length_of]

    def change(r, changes, keys):
        for which, choice in changes:
            key = keys[which % len(keys)]
            texts = _valid_texts(key)
            try:
                r.set(key.name, texts[choice % len(texts)])
            except InvalidValue:  # out of this key's range
                pass

    template = Record(kind)
    change(template, template_changes, settable)
    may_vary = [k for k in settable if k.name not in _BLOCK_KEYS]
    varying = [may_vary[i % len(may_vary)] for i in varying_at]
    recs = []
    for changes in variant_changes:
        r = template.copy()
        if varying:
            change(r, changes, varying)
        recs.append(r)
    assert list(format_file_variants(template, recs, [k.name for k in varying])) == \
        [format_record(r, for_file=True) for r in recs]


def test_list_values_split_where_idbm_splits_them():
    """idbm's strsep(&value, ", \\n"): commas and spaces separate, a tab does not
    ('SHA256\\tMD5' is one unknown name, as iscsiadm reads it; before: two)."""
    warnings = []
    text = ("node.name = iqn.x\nnode.conn[0].address = 10.0.0.2\n"
            "node.session.auth.chap_algs = SHA1 SHA256\tMD5\n")
    r = parse_record(schema.NODE, text.encode(), "p", warnings.append)
    assert r["node.session.auth.chap_algs"] == ("SHA1",)
    assert any("Ignoring unknown value 'SHA256\tMD5'" in w for w in warnings)


def test_a_last_line_without_its_newline_is_no_setting_on_the_one_pass_reader_too():
    """A text of only well-formed lines whose last has no newline (the one-pass reader's
    case: nothing else sends it line by line) leaves that last setting out, as fgets in
    idbm_recinfo_config drops it."""
    from iscsictl.db.record import parse_lines

    values, _ = parse_lines(schema.NODE, "node.session.cmds_max = 64\n"
                                         "node.session.queue_depth = 16")
    assert values == {"node.session.cmds_max": 64}
    values, _ = parse_lines(schema.NODE, "node.session.queue_depth = 16\n")
    assert values == {"node.session.queue_depth": 16}


@pytest.mark.parametrize("value", [" pw-secret-1", "pw-secret-1 ", "\tbob"])
def test_a_text_value_with_a_blank_at_either_end_is_refused(value):
    """-o update and a record to be written (a firmware's) refuse a text value with a blank
    at either end, leading as well as trailing: the file's reader strips both, and a CHAP
    secret read back without its blank would not be the one set."""
    from iscsictl.db.record import check_kept

    r = node()
    with pytest.raises(InvalidValue):
        r.update_key("node.session.auth.password", value)
    kept = node()
    kept.values["node.session.auth.username"] = value  # as made from elsewhere
    with pytest.raises(InvalidValue):
        check_kept(kept)


def test_a_list_value_named_twice_or_a_hidden_key_is_refused():
    """chap_algs "MD5,MD5" is refused (idbm would list MD5 twice), and so is -o update of a
    hidden key (a secret's *_length, which setting the secret sets)."""
    r = node()
    before = dict(r.values)
    with pytest.raises(InvalidValue, match="repeated value"):
        r.update_key("node.session.auth.chap_algs", "MD5,MD5")
    with pytest.raises(InvalidKey):
        r.update_key("node.session.auth.password_length", "3")
    assert r.values == before


def test_a_discovery_tree_prints_each_targets_portal_once():
    """-P 1 of a discovery (portal_once): a Portal line at each change of target or portal;
    a second target at the first one's portal gets its own (idbm_print_node_tree)."""
    from iscsictl.db.record import format_node_tree
    from iscsictl.db.store import NodeID

    nids = [NodeID("iqn.2003-01.org.example:a", "10.0.0.1", 3260, 1, "default"),
            NodeID("iqn.2003-01.org.example:a", "10.0.0.1", 3260, 1, "eth1"),
            NodeID("iqn.2003-01.org.example:b", "10.0.0.1", 3260, 1, "default")]
    assert format_node_tree(nids, portal_once=True) == [
        "Target: iqn.2003-01.org.example:a", "\tPortal: 10.0.0.1:3260,1",
        "\t\tIface Name: default", "\t\tIface Name: eth1",
        "Target: iqn.2003-01.org.example:b", "\tPortal: 10.0.0.1:3260,1",
        "\t\tIface Name: default"]
