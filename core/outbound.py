"""Vetting a URL before the app fetches it (against server-side request forgery).

URLs from settings are the operator's choice and may name internal servers (`trusted=True` checks
only the scheme). Any other URL — from a user's message, a model's output, a search result, a
user-supplied server list — is fetched only over http(s) and only if every address its host
resolves to is public: never loopback, private, link-local (169.254/16, fe80::/10, the cloud
metadata services), shared, multicast, reserved or unspecified addresses.

Connect to one of the returned `addresses` (not the name again) where the client allows it: a name
resolved twice can answer differently the second time (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import EnsembleError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are an IPv4 address
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
             ipaddress.ip_address("100.100.100.200")}


class OutboundRefused(EnsembleError):
    """A URL the app will not fetch, with the reason (safe to show in the chat)."""


@dataclass(frozen=True)
class VettedUrl:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]  # empty for a trusted URL (not resolved)


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address (IPv4 inside IPv6 judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in _METADATA or address.is_multicast:
        return False
    return address.is_global


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def vet_url(url: str, *, trusted: bool = False, resolver: Resolver | None = None) -> VettedUrl:
    """The URL with the addresses it may be fetched from; raises `OutboundRefused` otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"Ensemble does not fetch {url[:100]!r}: it is not a valid URL.") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise OutboundRefused(f"Ensemble fetches only http(s) URLs, not {parts.scheme or 'scheme-less'} ones.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundRefused(f"Ensemble does not fetch {url[:100]!r}: it names no host.")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if trusted:
        return VettedUrl(url, host, port, ())
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found: Sequence[str] = [str(literal)]
    else:
        try:
            found = await (resolver or _system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused(f"Ensemble could not resolve {host!r}.") from exc
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    if not addresses:
        raise OutboundRefused(f"Ensemble could not resolve {host!r}.")
    private = [a for a in addresses if not is_public(a)]
    if private:
        raise OutboundRefused(
            f"Ensemble does not fetch {host!r}: it is an internal address ({private[0]}), not a public one."
        )
    return VettedUrl(url, host, port, tuple(dict.fromkeys(str(a) for a in addresses)))
