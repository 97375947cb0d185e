"""Portals: ``TargetAddress`` values (RFC 7143 §13.8).

``TargetAddress=domainname[:port][,portal-group-tag]`` where domainname is a
host name, a dotted IPv4 address or a bracketed IPv6 address: the grammar is
:func:`iscsictl.lexical.split_portal`, which the CLI's ``-p`` is read by too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lexical import split_portal
from .constants import ISCSI_PORT
from .errors import ISCSIProtocolError

__all__ = ["Portal", "PortalError", "parse_target_address"]


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


def parse_target_address(text: str) -> Portal:
    """Parse a TargetAddress value (port and tag optional; 3260 and None when absent).

    Raises:
        PortalError: with a message naming the bad part.
    """
    try:
        address, port, tag = split_portal(text)
    except ValueError as exc:
        raise PortalError(f"TargetAddress {text!r}: {exc}") from None
    return Portal(address, ISCSI_PORT if port is None else port, tag)
