"""
The station's address as the upstreams are told it: C{X-Forwarded-For} and
C{X-Real-IP}. Pure.

A station's own C{X-Forwarded-For} is believed only when its connection comes from a
trusted proxy (C{trusted_proxies}); from anyone else the header is ignored, or any
station could claim any address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The IP address in C{text}, as found in C{X-Forwarded-For} entries (C{192.0.2.1},
    C{192.0.2.1:4711}, C{2001:db8::1}, C{[2001:db8::1]:4711}), IPv4-mapped IPv6
    addresses as IPv4; None when it holds no address.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    """Whether the socket address C{peer} is in one of the C{trusted} networks."""
    address = parse_address(peer) if trusted else None
    return address is not None and any(address in network for network in trusted)


def forwarded_headers(peer: str, incoming: str | None, trusted: Sequence[Network]) -> dict[str, str]:
    """
    C{X-Forwarded-For} and C{X-Real-IP} for a station connected from C{peer} (its socket
    address) with the C{incoming} C{X-Forwarded-For} header (None if absent).

    From a trusted proxy with a non-empty header: C{<incoming chain>, <peer>}, and the
    chain's left-most valid address as C{X-Real-IP} (the peer if none is valid).
    Otherwise both carry C{peer} alone.
    """
    chain = [entry.strip() for entry in (incoming or "").split(",") if entry.strip()]
    if not chain or not is_trusted(peer, trusted):
        return {"X-Forwarded-For": peer, "X-Real-IP": peer}
    real = next((str(address) for entry in chain if (address := parse_address(entry)) is not None), peer)
    return {"X-Forwarded-For": ", ".join([*chain, peer]), "X-Real-IP": real}
