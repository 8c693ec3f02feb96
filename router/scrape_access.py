"""``ScrapeAccess``: may this request read ``GET /metrics`` without the
admin key? Pure: built once from ``metrics.scrape`` (``ScrapeConfig``, whose
docstring says which address is checked and what that relies on).

A request is let in by the scrape key (``Authorization: Bearer <key>``,
compared by hash in constant time, like every key here) or by its address
being in one of the networks. Anything else is for the admin-key check that
follows (401, or 403 for a client key). Never raises, never logs a key.
"""

from __future__ import annotations

import hmac
import ipaddress

from router.config_observability import ScrapeConfig
from router.keys.hashing import HASH_PREFIX, digest_of

__all__ = ["ScrapeAccess", "client_address", "networks_need_forwarding"]


class ScrapeAccess:
    def __init__(self, config: ScrapeConfig):
        self._digest = bytes.fromhex(config.key_hash[len(HASH_PREFIX):]) if config.key_hash else None
        self._networks = tuple(ipaddress.ip_network(n) for n in config.networks)
        self._hops = config.forwarded_hops

    def __repr__(self) -> str:
        return f"ScrapeAccess(key={self._digest is not None}, networks={[str(n) for n in self._networks]}, hops={self._hops})"

    def admits(self, authorization: str | None, peer: str | None, forwarded_for: str | None) -> bool:
        """``peer``: the address the server reports (``request.client``);
        ``forwarded_for``: every ``X-Forwarded-For`` line, joined with
        ``", "`` in order, or None when there was none."""
        return self._by_key(authorization) or self._by_network(peer, forwarded_for)

    def _by_key(self, authorization: str | None) -> bool:
        if self._digest is None:
            return False
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return hmac.compare_digest(digest_of(token), self._digest)

    def _by_network(self, peer: str | None, forwarded_for: str | None) -> bool:
        if not self._networks:
            return False
        address = client_address(peer, forwarded_for, self._hops)
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)


def client_address(peer: str | None, forwarded_for: str | None, hops: int) -> str | None:
    """The address to check: the peer when ``hops`` is 0 and no
    ``X-Forwarded-For`` came (with one, the server may already have replaced
    the peer with the header's claim); else the ``hops``-th entry from the
    right of ``X-Forwarded-For``; None when there is no such address."""
    if hops == 0:
        return None if forwarded_for is not None else peer
    if not forwarded_for:
        return None
    entries = [entry.strip() for entry in forwarded_for.split(",")]
    if len(entries) < hops:
        return None
    return entries[-hops] or None


def networks_need_forwarding(config: ScrapeConfig, behind_haproxy: bool) -> str | None:
    """Why this configuration cannot work, or None: behind Serve's HAProxy,
    which adds no ``X-Forwarded-For``, every request's peer is HAProxy, so
    networks checked against the peer would let everyone in."""
    if config.networks and config.forwarded_hops == 0 and behind_haproxy:
        return (
            "metrics.scrape.networks with forwarded_hops: 0 cannot tell scrapers apart behind Serve's HAProxy "
            "(RAY_SERVE_ENABLE_HA_PROXY=1): every request comes from HAProxy. Put a proxy that appends "
            "X-Forwarded-For in front and set forwarded_hops, use metrics.scrape.key_hash, or --serve-mode classic"
        )
    return None
