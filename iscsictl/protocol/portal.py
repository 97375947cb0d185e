"""Portals: ``TargetAddress`` values (RFC 7143 §13.8) and command-line portals.

``TargetAddress=domainname[:port][,portal-group-tag]`` where domainname is a
host name, a dotted IPv4 address or a bracketed IPv6 address.  The same shape
(without the tag) is what iscsiadm's ``-p`` takes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .constants import ISCSI_PORT
from .errors import ISCSIProtocolError

__all__ = ["Portal", "PortalError", "parse_portal", "parse_target_address"]

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\Z")


class PortalError(ISCSIProtocolError, ValueError):
    """A portal or TargetAddress that cannot be parsed."""

    reject_reason = None


@dataclass(frozen=True, order=True)
class Portal:
    """A network portal: address (host name, IPv4 or IPv6 without brackets),
    TCP port and portal group tag (None when unknown; open-iscsi uses -1)."""

    address: str
    port: int = ISCSI_PORT
    tpgt: int | None = None

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.address

    def host_port(self) -> str:
        """``ip:port`` or ``[v6]:port`` (iscsiadm's printed form)."""
        host = f"[{self.address}]" if self.is_ipv6 else self.address
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        tag = "" if self.tpgt is None else f",{self.tpgt}"
        return self.host_port() + tag


def _digits(s: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²' (which ``int`` refuses) and other
    scripts' digits (which it reads)."""
    return s.isascii() and s.isdigit()


def _parse(text: str, what: str, allow_tag: bool) -> Portal:
    s = text.strip()
    if not s:
        raise PortalError(f"empty {what}")
    tpgt = None
    if allow_tag and "," in s:
        s, _, tag = s.rpartition(",")
        if not _digits(tag) or int(tag) > 65535:
            raise PortalError(f"{what} {text!r}: portal group tag {tag!r} is not 0..65535")
        tpgt = int(tag)
    port = ISCSI_PORT
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep:
            raise PortalError(f"{what} {text!r}: unterminated '['")
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise PortalError(f"{what} {text!r}: {host!r} is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise PortalError(f"{what} {text!r}: junk after ']'")
            port_s = rest[1:]
        else:
            port_s = ""
    elif s.count(":") > 1:  # a bare IPv6 address (iscsiadm accepts it)
        host, port_s = s, ""
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise PortalError(f"{what} {text!r}: not an address") from None
    else:
        host, _, port_s = s.partition(":")
        if not _HOST.match(host):
            raise PortalError(f"{what} {text!r}: {host!r} is not a host name or address")
    if port_s:
        if not _digits(port_s) or not 0 < int(port_s) <= 65535:
            raise PortalError(f"{what} {text!r}: port {port_s!r} is not 1..65535")
        port = int(port_s)
    return Portal(host, port, tpgt)


def parse_target_address(text: str) -> Portal:
    """Parse a TargetAddress value (port and tag optional).

    Raises:
        PortalError: with a message naming the bad part.
    """
    return _parse(text, "TargetAddress", allow_tag=True)


def parse_portal(text: str, allow_tag: bool = False) -> Portal:
    """Parse a command-line portal ``ip[:port]``, ``[v6][:port]``, ``host[:port]``."""
    return _parse(text, "portal", allow_tag)
