"""Which IP addresses a webhook may go to: public unicast ones only (the SSRF rule).

Python's `is_global` lags the IANA special-purpose registries (it calls the deprecated
site-local fec0::/10 global, for one), so the ranges are listed here explicitly, from
https://www.iana.org/assignments/iana-ipv4-special-registry and iana-ipv6-special-registry,
and IPv6 must also lie in the global unicast block 2000::/3.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",  # this network
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(block)
    for block in (
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, …)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (its IPv4 address is checked on its own)
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
    )
)


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address, looking inside mapped and 6to4 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address not in _GLOBAL_UNICAST_V6 or any(address in n for n in _BLOCKED_V6):
            return False
    elif any(address in n for n in _BLOCKED_V4):
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def public_addresses(addresses: Iterable[str]) -> list[str]:
    """`addresses` if every one is public; [] if any is not (one bad answer spoils the name)."""
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not parsed or not all(is_public(a) for a in parsed):
        return []
    return [str(a) for a in parsed]
