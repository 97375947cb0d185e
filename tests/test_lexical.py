"""The lexical checks every layer shares (iscsictl.lexical): ASCII digits, host names and
the portal grammar that both TargetAddress values (RFC 7143 §13.8) and the CLI's -p are
read by."""

import subprocess
import sys

import pytest

from iscsictl.lexical import (ascii_digits, c_atoi, c_strtoul, host_name_problem, same_host,
                              split_portal)
from iscsictl.protocol.portal import Portal, PortalError, parse_target_address


@pytest.mark.parametrize("text,ok", [
    ("0", True), ("0123", True), ("65535", True),
    ("", False), (" 1", False), ("+1", False), ("-1", False), ("1_0", False),
    ("\u00b2", False),  # str.isdigit() takes it, int() refuses it
    ("\u0663", False),  # Arabic-Indic three: int() reads it as 3
])
def test_ascii_digits(text, ok):
    assert ascii_digits(text) is ok


@pytest.mark.parametrize("host", [
    "storage", "storage.example.com", "storage.example.com.",  # fully qualified: one final '.'
    "_iscsi", "san_01", "a-b", "a" * 63, ".".join(["a" * 63] * 3) + "." + "a" * 61,
    "10.0.0.1", "255.255.255.255", "0.0.0.0", "1a.2.3.4",
])
def test_host_names_accepted(host):
    assert host_name_problem(host) is None


@pytest.mark.parametrize("host,why", [
    ("", "not a host name"), (".", "not a host name"), ("a..b", "not a host name"),
    (".a", "not a host name"), ("a..", "not a host name"), ("-a", "not a host name"),
    ("a-", "not a host name"), ("a" * 64, "not a host name"), ("a b", "not a host name"),
    ("h\u00f3st", "not a host name"), ("a/b", "not a host name"),
    (".".join(["a" * 63] * 4), "not a host name"),  # 255 characters
    ("999.1.1.1", "not an IPv4 address"), ("1.2.3", "not an IPv4 address"),
    ("1.2.3.4.5", "not an IPv4 address"), ("1.2.3.4.", "not an IPv4 address"),
    ("0001.2.3.4", "not an IPv4 address"),
    ("010.0.0.1", "leading zero"), ("10.0.0.01", "leading zero"),  # inet_aton: octal
])
def test_host_names_refused(host, why):
    assert why in host_name_problem(host)


@pytest.mark.parametrize("text,parts", [
    ("10.0.0.1", ("10.0.0.1", None, None)),
    (" 10.0.0.1:3261,7 ", ("10.0.0.1", 3261, 7)),
    ("storage.example.com.:3260", ("storage.example.com.", 3260, None)),
    ("[2001:db8::1]", ("2001:db8::1", None, None)),
    ("[fe80::1%eth0]:3260,1", ("fe80::1%eth0", 3260, 1)),
    ("[fe80::1%2]", ("fe80::1%2", None, None)), ("[fe80::1%abcdefghijklmno]:1",
                                                 ("fe80::1%abcdefghijklmno", 1, None)),
    ("2001:db8::1", ("2001:db8::1", None, None)),  # bare, as iscsiadm takes it
    ("h,0", ("h", None, 0)), ("h:65535,65535", ("h", 65535, 65535)),
])
def test_portals_split(text, parts):
    assert split_portal(text) == parts


@pytest.mark.parametrize("text,why", [
    ("", "empty"), ("  ", "empty"), (":3260", "not a host name"), (",1", "not a host name"),
    ("h:", "port '' is not 1..65535"), ("h:0", "port '0'"), ("h:65536", "port '65536'"),
    ("h:+1", "port '+1'"), ("h,65536", "portal group tag '65536'"), ("h,", "tag ''"),
    ("[::1", "unterminated"), ("[::1]x", "junk after ']'"), ("[zz::1]", "not an IPv6"),
    ("[]", "not an IPv6"), ("a:b:c", "not an address"), ("a..b:3260", "'a..b'"),
    # zones no interface can have (getaddrinfo refuses them; a 300-byte one made a record
    # path too long to write, after the target's old records were deleted as stale)
    ("[::1%]", "not an IPv6"), ("[fe80::1%lo%lo]", "not an IPv6"), ("fe80::1%a/b", "not an"),
    ("[fe80::1%abcdefghijklmnop]", "not an IPv6"), ("[fe80::1% ]", "not an IPv6"),
])
def test_portals_refused(text, why):
    with pytest.raises(ValueError, match=None) as e:
        split_portal(text)
    assert why in str(e.value)


def test_a_tag_where_none_is_allowed():
    with pytest.raises(ValueError, match="not allowed"):
        split_portal("10.0.0.1,1", allow_tag=False)
    assert split_portal("10.0.0.1:3260", allow_tag=False) == ("10.0.0.1", 3260, None)


def test_target_address_uses_the_same_grammar():
    """A TargetAddress the CLI would refuse as -p is refused from a target too (before,
    'a..b' and '999.1.1.1' were taken, and failed only at the connect)."""
    assert parse_target_address("storage.example.com.:3261,2") == Portal(
        "storage.example.com.", 3261, 2)
    assert parse_target_address("10.0.0.1") == Portal("10.0.0.1", 3260, None)
    for bad in ("a..b:3260,1", "999.1.1.1,1", "10.0.0.1:,1"):
        with pytest.raises(PortalError, match="TargetAddress") as e:
            parse_target_address(bad)
        assert repr(bad) in str(e.value)


def test_the_module_imports_nothing_at_module_level():
    """The CLI imports it on every -p: it must not pull ipaddress or the protocol stack."""
    code = ("import sys; before = set(sys.modules); import iscsictl.lexical as l; "
            "l.split_portal('10.0.0.1:3260,1'); "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert eval(out) == ["iscsictl", "iscsictl._version", "iscsictl.lexical"]


@pytest.mark.parametrize("text,value", [("3260", 3260), (" \t+12x", 12), ("-5", -5), ("", 0),
                                        ("x1", 0), ("- 1", 0), ("٣", 0), ("1_0", 1),
                                        ("\xa012", 0)])
def test_c_atoi_reads_as_c_does(text, value):
    """C's atoi in the C locale: C blanks, a sign, ASCII digits; the rest ignored."""
    assert c_atoi(text) == value


@pytest.mark.parametrize("text,base,value,erange", [
    ("3260", 10, 3260, False), (" \t+12x", 10, 12, False), ("-1", 10, (1 << 64) - 1, False),
    ("-2", 0, (1 << 64) - 2, False), ("0x2000", 0, 8192, False), ("0X1f", 16, 31, False),
    ("1f", 16, 31, False), ("010", 0, 8, False), ("08", 0, 0, False), ("0x", 0, 0, False),
    ("0xg", 0, 0, False), ("abc", 10, 0, False), ("", 0, 0, False), ("٣", 10, 0, False),
    ("18446744073709551615", 10, (1 << 64) - 1, False),
    ("18446744073709551616", 10, (1 << 64) - 1, True),
    ("-99999999999999999999", 10, (1 << 64) - 1, True)])
def test_c_strtoul_reads_as_c_does(text, base, value, erange):
    """C's strtoul on LP64: blanks, a sign (negating modulo 2**64), base 0's prefixes, the
    digits of the base; past ULONG_MAX, ULONG_MAX and ERANGE."""
    assert c_strtoul(text, base) == (value, erange)


@pytest.mark.parametrize("pattern,address,same", [
    ("fe80::1", "fe80::1", True), ("FE80:0::1", "fe80::1", True), ("", "10.0.0.1", True),
    ("10.0.0.1", "10.0.0.2", False), ("::ffff:10.0.0.1", "10.0.0.1", False),
    ("fe80::1%eth0", "fe80::1", False), ("localhost", "127.0.0.1", True),
    ("127.0.0.1", "localhost", True), ("10.0.0.1", "localhost", False),
    ("fe80::1%lo", "fe80::1%1", True), ("fe80::1%1", "FE80::1%lo", True),
    ("fe80::1%lo", "fe80::1%2", False), ("fe80::1%nosuchif9", "fe80::1%nosuchif9", True)])
def test_same_host_compares_addresses_as_iscsiadm_does(pattern, address, same):
    """iscsi_addr_match: the same text, or the same address once resolved (/etc/hosts
    names localhost 127.0.0.1 here); a zone by name or by index (lo is 1) is one host, as
    getaddrinfo's sin6_scope_id."""
    assert same_host(pattern, address) is same


def test_a_name_that_does_not_resolve_matches_only_itself(monkeypatch):
    import socket

    from iscsictl import lexical

    def fail(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(lexical, "_RESOLVED", {})
    assert same_host("target.example", "target.example")
    assert not same_host("target.example", "10.0.0.1")
    assert not same_host("10.0.0.1", "target.example")


@pytest.mark.parametrize("address,key", [("FD00:0::1", "fd00::1"), ("fd00::1", "fd00::1"),
                                         ("10.0.0.1", "10.0.0.1"), ("host.example", "host.example"),
                                         ("010.0.0.1", "010.0.0.1"), ("", ""),
                                         ("fe80::1%lo", "fe80::1%1"), ("fe80::1%1", "fe80::1%1"),
                                         ("fe80::1%nosuchif9", "fe80::1%nosuchif9")])
def test_host_key_is_one_form_a_numeric_address_without_a_lookup(address, key):
    from iscsictl.lexical import host_key
    assert host_key(address) == key
