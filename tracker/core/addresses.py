"""Which IP addresses a webhook may go to: public unicast ones only (the SSRF rule)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a global unicast address, looking inside mapped and 6to4 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def public_addresses(addresses: Iterable[str]) -> list[str]:
    """`addresses` if every one is public; [] if any is not (one bad answer spoils the name)."""
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not parsed or not all(is_public(a) for a in parsed):
        return []
    return [str(a) for a in parsed]
