"""Who may read /metrics without the admin key (router.scrape_access), and
the configuration that allows it (metrics.scrape)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from router.config_observability import ScrapeConfig
from router.keys.hashing import hash_key
from router.scrape_access import ScrapeAccess, client_address, networks_need_forwarding

SCRAPE_KEY = "sk-scrape-secret"


def test_the_scrape_key_is_let_in_and_anything_else_is_left_to_the_admin_check():
    access = ScrapeAccess(ScrapeConfig(key_hash=hash_key(SCRAPE_KEY)))
    assert access.admits(f"Bearer {SCRAPE_KEY}", "127.0.0.1", None)
    assert access.admits(f"bearer   {SCRAPE_KEY} ", None, None)
    for authorization in (None, "", "Bearer", f"Basic {SCRAPE_KEY}", "Bearer sk-client", f"Bearer {SCRAPE_KEY}x"):
        assert not access.admits(authorization, "127.0.0.1", None)
    assert SCRAPE_KEY not in repr(access) and hash_key(SCRAPE_KEY) not in repr(access)


def test_networks_check_the_peer_only_when_no_forwarded_header_came():
    access = ScrapeAccess(ScrapeConfig(networks=("10.0.0.0/8", "2001:db8::/32")))
    assert access.admits(None, "10.1.2.3", None)
    assert access.admits(None, "::ffff:10.1.2.3", None)  # IPv4-mapped, as a dual-stack socket reports it
    assert access.admits(None, "2001:db8::7", None)
    assert not access.admits(None, "192.168.1.1", None)
    # With X-Forwarded-For, uvicorn may have put the header's claim in the peer's place.
    assert not access.admits(None, "10.1.2.3", "10.1.2.3")
    assert not access.admits(None, None, None) and not access.admits(None, "not-an-ip", None)


def test_forwarded_hops_take_the_address_the_trusted_proxy_saw():
    access = ScrapeAccess(ScrapeConfig(networks=("192.0.2.0/24",), forwarded_hops=1))
    assert access.admits(None, "127.0.0.1", "192.0.2.7")
    assert access.admits(None, "127.0.0.1", "198.51.100.1, 192.0.2.7")  # a forged left part does not matter
    assert not access.admits(None, "127.0.0.1", "192.0.2.7, 198.51.100.1")
    assert not access.admits(None, "192.0.2.7", None)  # no header: no address to trust
    two = ScrapeAccess(ScrapeConfig(networks=("192.0.2.0/24",), forwarded_hops=2))
    assert two.admits(None, "127.0.0.1", "192.0.2.7, 10.0.0.5")
    assert not two.admits(None, "127.0.0.1", "10.0.0.5")


@given(st.lists(st.ip_addresses().map(str), min_size=0, max_size=5), st.integers(min_value=1, max_value=6))
def test_client_address_is_the_hops_th_from_the_right_or_none(entries, hops):
    header = ", ".join(entries) if entries else None
    expected = entries[-hops] if len(entries) >= hops else None
    assert client_address("203.0.113.9", header, hops) == expected


def test_config_checks_networks_and_hashes_and_forbids_unknown_keys():
    assert ScrapeConfig(networks=("10.0.0.0/8",)).networks == ("10.0.0.0/8",)
    with pytest.raises(ValidationError, match="host bits"):
        ScrapeConfig(networks=("10.0.0.1/8",))
    with pytest.raises(ValidationError):
        ScrapeConfig(networks=("ten/8",))
    with pytest.raises(ValidationError):
        ScrapeConfig(key_hash=SCRAPE_KEY)  # a key pasted where its hash belongs
    with pytest.raises(ValidationError):
        ScrapeConfig(key="x")


def test_the_scrape_key_must_not_be_the_admin_or_a_client_key():
    from router.config import parse_config
    from router.errors import ConfigError

    def config(scrape_key: str) -> dict:
        return {
            "model_groups": {"g": {"endpoints": [{"name": "e", "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}]}},
            "auth": {"keys": [{"name": "c", "hash": hash_key("sk-client")}], "admin_key_hash": hash_key("sk-admin")},
            "metrics": {"scrape": {"key_hash": hash_key(scrape_key)}},
        }

    assert parse_config(config(SCRAPE_KEY), source="<test>").metrics.scrape.key_hash == hash_key(SCRAPE_KEY)
    for reused in ("sk-client", "sk-admin"):
        with pytest.raises(ConfigError, match="key of its own"):
            parse_config(config(reused), source="<test>")


def test_networks_with_no_forwarding_are_refused_behind_haproxy():
    peer_only = ScrapeConfig(networks=("10.0.0.0/8",))
    assert "HAProxy" in networks_need_forwarding(peer_only, behind_haproxy=True)
    assert networks_need_forwarding(peer_only, behind_haproxy=False) is None
    assert networks_need_forwarding(ScrapeConfig(networks=("10.0.0.0/8",), forwarded_hops=1), behind_haproxy=True) is None
    assert networks_need_forwarding(ScrapeConfig(key_hash=hash_key(SCRAPE_KEY)), behind_haproxy=True) is None
