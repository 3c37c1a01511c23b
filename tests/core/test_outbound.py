"""core.outbound.vet_url: which URLs the app may fetch when they do not come from settings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.outbound import OutboundRefused, vet_url

REFUSED = [
    "http://127.0.0.1:8088/v1/models",
    "http://localhost/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[::1]:6379/",
    "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 for 169.254.169.254
    "http://[fe80::1]/",
    "http://0.0.0.0:8000/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT (shared)
    "http://224.0.0.1/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://127.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://example.com/x",
    "javascript:alert(1)",
    "http:///no-host",
    "http://example.com:99999/",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_internal_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        await vet_url(url)


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> Sequence[str]:
        return addresses

    return resolve


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    public = await vet_url("https://docs.example.org/a?b=1", resolver=resolving_to("93.184.216.34"))
    assert public.addresses == ("93.184.216.34",) and public.port == 443
    with pytest.raises(OutboundRefused, match="internal address"):
        await vet_url("http://rebind.example/", resolver=resolving_to("93.184.216.34", "10.1.2.3"))
    with pytest.raises(OutboundRefused, match="internal address"):
        await vet_url("http://metadata.google.internal/", resolver=resolving_to("169.254.169.254"))


async def test_public_literal_addresses_pass() -> None:
    assert (await vet_url("http://93.184.216.34:8080/x")).addresses == ("93.184.216.34",)
    assert (await vet_url("https://[2606:2800:220:1:248:1893:25c8:1946]/")).port == 443


async def test_urls_from_settings_may_be_internal() -> None:
    vetted = await vet_url("http://tabbyapi.ensemble-models.svc.cluster.local:8080/v1", trusted=True)
    assert vetted.host == "tabbyapi.ensemble-models.svc.cluster.local" and vetted.addresses == ()
    with pytest.raises(OutboundRefused):  # but still http(s) only
        await vet_url("file:///etc/passwd", trusted=True)
