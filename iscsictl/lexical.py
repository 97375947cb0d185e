"""Lexical checks every layer shares: ASCII digits, host names, and the text form of a
portal.  The one place for each; no imports at module level, so that the CLI's start
stays light (``ipaddress`` is imported only for an IPv6 address).

The portal form is RFC 7143 §13.8's ``TargetAddress=domainname[:port][,portal-group-tag]``
(domainname: a host name, a dotted IPv4 address, or an IPv6 address in brackets), which is
also what iscsiadm's ``-p`` takes; a bare IPv6 address (more than one ':') is accepted, as
iscsiadm accepts it.
"""

from __future__ import annotations

__all__ = ["C_SPACE", "ascii_digits", "c_atoi", "c_strtoul", "host_name_problem",
           "host_key", "one_line", "same_host", "split_portal"]

#: RFC 1035 §2.3.4: a name of at most 255 octets on the wire, 253 characters as text
_NAME_MAX = 253
_LABEL_MAX = 63
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")

#: the blanks C's isspace() takes in the C locale, as open-iscsi's parsers strip them
#: (Python's str.strip() and a str pattern's \s also take U+00A0, U+3000, \x1c-\x1f ...)
C_SPACE = " \t\n\r\x0b\x0c"


#: C0 controls but the tab, and DEL, as a string's repr writes them (``\\n``, ``\\x1b``)
_CONTROLS = {c: repr(chr(c))[1:-1] for c in (*range(9), *range(10, 32), 127)}


def one_line(text: str) -> str:
    """``text`` with its control characters (C0, DEL: a newline, an ESC) written as escapes,
    so that a value from a client or a peer makes one log line and forges none (a tab is
    kept).  ``text`` itself when it has none, the usual case (one ``isprintable`` scan)."""
    if text.isprintable():
        return text
    return text.translate(_CONTROLS)


def ascii_digits(text: str) -> bool:
    """True when ``text`` is one or more ASCII digits.  ``str.isdigit`` alone also takes
    '²' (which ``int`` refuses) and other scripts' digits (which ``int`` reads), and
    ``int`` itself takes '1_0', spaces and a sign."""
    return text.isascii() and text.isdigit()


def c_atoi(text: str) -> int:
    """C's ``atoi`` in the C locale, as open-iscsi reads a number from sysfs: the blanks
    first skipped, an optional sign, then the ASCII digits that follow (none: 0; what
    comes after them is ignored).  Its overflow (undefined in C) is not modelled: the
    caller truncates to its field's width, as the C assignment does."""
    t = text.lstrip(C_SPACE)
    sign = -1 if t[:1] == "-" else 1
    if t[:1] in "+-":
        t = t[1:]
    n = 0
    while n < len(t) and "0" <= t[n] <= "9":
        n += 1
    return sign * int(t[:n]) if n else 0


#: ULONG_MAX of an LP64 C library (glibc on x86-64, aarch64...)
ULONG_MAX = (1 << 64) - 1
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def c_strtoul(text: str, base: int = 10) -> tuple[int, bool]:
    """C's ``strtoul`` (LP64, C locale): ``(value, out_of_range)``.  The blanks skipped,
    an optional sign, then the digits of ``base`` (2-36, or 0: a "0x" prefix before a hex
    digit is hexadecimal, a leading "0" octal, else decimal; base 16 also skips a "0x");
    no digits: 0.  A minus sign negates modulo 2**64 (``"-1"`` is ULONG_MAX); more than
    ULONG_MAX is ULONG_MAX with ``out_of_range`` (C's ``errno`` ERANGE).  The caller
    truncates to its field's width, as the C assignment does."""
    t = text.lstrip(C_SPACE)
    neg = t[:1] == "-"
    if t[:1] in "+-":
        t = t[1:]
    hex_prefix = t[:2] in ("0x", "0X") and t[2:3].lower() in tuple("0123456789abcdef")
    if base in (0, 16) and hex_prefix:
        base, t = 16, t[2:]
    elif base == 0:
        base = 8 if t[:1] == "0" else 10
    valid = _DIGITS[:base]
    n = 0
    while n < len(t) and t[n].isascii() and t[n].lower() in valid:
        n += 1
    value = int(t[:n], base) if n else 0
    if value > ULONG_MAX:
        return ULONG_MAX, True
    return (-value) & ULONG_MAX if neg else value, False


def host_name_problem(host: str) -> str | None:
    """Why ``host`` is not a host name or a dotted IPv4 address, or None when it is one.

    A host name (RFC 1123 §2.1): labels of 1-63 letters, digits, '-' and '_' (which
    deployments use, and resolvers pass) separated by '.', at most 253 characters, neither
    beginning nor ending with '-' or '.'; one final '.' (a fully qualified name) is allowed.
    A name of digits and dots only must be a dotted IPv4 address (four parts of 0-255, none
    with a leading zero: the C library's inet_aton reads ``010`` as octal, 8, so that
    ``010.0.0.1`` would be 8.0.0.1)."""
    name = host[:-1] if host.endswith(".") and len(host) > 1 else host
    if not name or not set(name) <= _HOST_CHARS or name[0] in "-." or name[-1] in "-." \
            or len(name) > _NAME_MAX \
            or not all(0 < len(label) <= _LABEL_MAX for label in name.split(".")):
        return f"'{host}' is not a host name or address"
    if all(c.isdigit() or c == "." for c in name):
        parts = name.split(".")
        if host != name or len(parts) != 4 or not all(
                len(p) <= 3 and int(p) <= 255 for p in parts):
            return f"'{host}' is not an IPv4 address"
        if any(len(p) > 1 and p[0] == "0" for p in parts):
            return (f"'{host}' is not an IPv4 address: a part with a leading zero (the C "
                    "library reads it as octal)")
    return None


#: an interface name's most bytes (IFNAMSIZ less its NUL): the longest zone that can name one
_ZONE_NAME_MAX = 15


def _is_ipv6(text: str) -> bool:
    """An IPv6 address, with a zone ("%eth0", "%2") that could name an interface: one,
    not empty, an index or a name of at most 15 bytes without '/' or blanks (getaddrinfo,
    which iscsiadm's resolve_address asks, refuses the others; a 300-byte zone made a
    record path too long to write)."""
    import ipaddress
    address, pct, zone = text.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    if not pct:
        return True
    return bool(zone) and len(zone.encode("utf-8", "surrogateescape")) <= _ZONE_NAME_MAX \
        and not any(c in zone for c in "%/\0 \t\n\r\x0b\x0c")


def split_portal(text: str, allow_tag: bool = True) -> tuple[str, int | None, int | None]:
    """Split a portal's text into ``(address, port, tag)``: the address without brackets,
    the port (None when absent) and the portal group tag (None when absent).  Whitespace
    around ``text`` is ignored.

    Raises:
        ValueError: why the text is not a portal, naming the bad part ("port '0' is not
            1..65535"); a tag when ``allow_tag`` is false is one such reason.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty")
    tag = None
    if "," in s:
        if not allow_tag:
            raise ValueError("a portal group tag is not allowed here")
        s, _, tag_s = s.rpartition(",")
        if not ascii_digits(tag_s) or int(tag_s) > 65535:
            raise ValueError(f"portal group tag '{tag_s}' is not 0..65535")
        tag = int(tag_s)
    port_s = None
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep:
            raise ValueError("unterminated '['")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("junk after ']'")
            port_s = rest[1:]
        if not _is_ipv6(host):
            raise ValueError(f"'{host}' is not an IPv6 address")
    elif s.count(":") > 1:
        host = s
        if not _is_ipv6(host):
            raise ValueError(f"'{host}' is not an address")
    else:
        host, colon, port_s = s.partition(":")
        if not colon:
            port_s = None
        problem = host_name_problem(host)
        if problem:
            raise ValueError(problem)
    port = None
    if port_s is not None:
        if not ascii_digits(port_s) or not 0 < int(port_s) <= 65535:
            raise ValueError(f"port '{port_s}' is not 1..65535")
        port = int(port_s)
    return host, port, tag


def same_host(pattern: str, address: str) -> bool:
    """Whether a portal address a user gave (``-p``) names the same host as a record's or a
    session's, as iscsiadm's ``iscsi_addr_match`` (usr/iscsi_util.c) judges it: the same
    text, or the same address once both are resolved, so that ``-p [FE80::1]`` finds a
    record of ``fe80::1`` and ``-p 10.0.0.1`` one made with the host name of 10.0.0.1.  An
    empty pattern matches any address, as there.

    Numeric addresses are compared without a lookup; a host name is resolved
    (``getaddrinfo``, once per name and process) only when the texts differ.  Where
    iscsiadm compares the first address of each, a name that resolves to several addresses
    matches any of them.  A name that does not resolve matches nothing but itself.
    """
    if not pattern or pattern == address:
        return True
    mine = _host_addresses(pattern)
    return bool(mine) and not mine.isdisjoint(_host_addresses(address))


def host_key(address: str) -> str:
    """``address`` in one form for each numeric address (``FD00:0::1`` and ``fd00::1``
    are ``fd00::1``; ipaddress's text), a host name as given: what names a node in the
    daemon (its duplicate-login check, as iscsid's session_is_running compares hosts),
    without the name lookup :func:`same_host` may make (the daemon's loop never waits on
    DNS)."""
    if not address or not (address[0].isdigit() or ":" in address):
        return address
    key = _HOST_KEYS.get(address)
    if key is None:
        import ipaddress
        try:
            key = str(ipaddress.ip_address(_numeric_zone(address)))
        except ValueError:
            key = address
        if len(_HOST_KEYS) < 4096:  # a daemon's nodes; beyond, each is parsed again
            _HOST_KEYS[address] = key
    return key


def _numeric_zone(address: str) -> str:
    """``address`` with a zone that names an interface as that interface's index
    (``fe80::1%lo`` is ``fe80::1%1``), as getaddrinfo gives sin6_scope_id: the one host in
    either form (iscsiadm's iscsi_addr_match compares the resolved addresses).  A zone no
    interface has is kept as given."""
    head, sep, zone = address.partition("%")
    if not sep or not zone or zone.isdigit():
        return address
    import socket
    try:
        return f"{head}%{socket.if_nametoindex(zone)}"
    except (OSError, ValueError):
        return address


def is_numeric_host(address: str) -> bool:
    """Whether ``address`` is an IPv4 or IPv6 address (a zone allowed), not a host name."""
    import ipaddress
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


_HOST_KEYS: dict[str, str] = {}
_RESOLVED: dict[str, frozenset] = {}


def forget_lookups() -> None:
    """Forget the name lookups :func:`same_host` made: a command server's worker does so
    before each command, so that each command looks a name up anew, as each iscsiadm
    process does (before: a worker kept a name's addresses, or its failed lookup, for its
    200 commands)."""
    _RESOLVED.clear()


def _host_addresses(host: str) -> frozenset:
    """The addresses ``host`` stands for, as ``ipaddress`` objects (empty when it does not
    resolve).  An IPv4-mapped IPv6 address stays IPv6, as getaddrinfo keeps it."""
    import ipaddress
    if host in _RESOLVED:
        return _RESOLVED[host]
    try:
        found = frozenset((ipaddress.ip_address(_numeric_zone(host)),))
    except ValueError:
        import socket
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):
            infos = []
        found = frozenset(ipaddress.ip_address(i[4][0]) for i in infos
                          if i[0] in (socket.AF_INET, socket.AF_INET6))
    _RESOLVED[host] = found
    return found
