"""From catalog to configuration: model groups for the models this
environment can serve, the model list, and endpoint prices.

The environment is an argument: nothing here reads ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from router.catalog.schema import Catalog, CatalogModel, Price

__all__ = [
    "ENDPOINT_PREFIX",
    "catalog_groups",
    "with_catalog_groups",
    "model_card",
    "endpoint_prices",
]

ENDPOINT_PREFIX = "catalog:"
"""Endpoints made from the catalog are named ``catalog:<model name>``."""

VENDOR_KEY = "nemo"


class _Endpoint(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def base_url(self) -> str: ...


def catalog_groups(catalog: Catalog, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Raw model-group configs, one per catalog model whose variables are set.

    Each group has one endpoint (``catalog:<name>``) with the entry's
    provider, base URL, upstream model, key variable and tags, and
    otherwise the group defaults. The dicts are ready to merge into the raw
    config before ``parse_config`` (see ``with_catalog_groups``).
    """
    groups: dict[str, dict[str, Any]] = {}
    for name, entry in catalog.models.items():
        if all(environ.get(var) for var in entry.required_env()):
            groups[name] = {"endpoints": [_endpoint(name, entry, environ)]}
    return groups


def _endpoint(name: str, entry: CatalogModel, environ: Mapping[str, str]) -> dict[str, Any]:
    base_url = entry.base_url if entry.base_url is not None else environ[entry.base_url_env or ""]
    endpoint: dict[str, Any] = {
        "name": ENDPOINT_PREFIX + name,
        "provider": entry.provider,
        "base_url": base_url,
        "model": entry.model,
        "tags": list(entry.tags),
    }
    if entry.api_key_env:
        endpoint["api_key_env"] = entry.api_key_env
    return endpoint


def with_catalog_groups(raw_config: Mapping[str, Any], catalog: Catalog, environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``raw_config`` with the catalog's groups added.

    A group the config defines wins over the catalog's of the same name, and
    a catalog group is left out if its endpoint name is taken by the config.
    Groups the config defines keep their order and come first.
    """
    raw = dict(raw_config)
    configured: dict[str, Any] = dict(raw.get("model_groups") or {})
    taken = {e.get("name") for g in configured.values() if isinstance(g, Mapping) for e in g.get("endpoints") or () if isinstance(e, Mapping)}
    for name, group in catalog_groups(catalog, environ).items():
        if name not in configured and group["endpoints"][0]["name"] not in taken:
            configured[name] = group
    raw["model_groups"] = configured
    return raw


def model_card(name: str, entry: CatalogModel | None, *, created: int = 0, owned_by: str = "nemo-router") -> dict[str, Any]:
    """One item of ``GET /v1/models``: OpenAI's model object, plus the
    catalog fields under ``nemo`` (never a key, a key variable or a URL)."""
    card: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": entry.host if entry else owned_by}
    if entry is not None:
        card[VENDOR_KEY] = {
            "provider": entry.provider,
            "host": entry.host,
            "upstream_model": entry.model,
            "context_window": entry.context_window,
            "max_output_tokens": entry.max_output_tokens,
            "price_usd_per_mtok": {"input": entry.price.input_per_mtok, "output": entry.price.output_per_mtok},
            "tags": list(entry.tags),
        }
    return card


def endpoint_prices(catalog: Catalog, endpoints: Iterable[_Endpoint]) -> dict[str, Price]:
    """Endpoint name -> price, for the endpoints the catalog can price.

    ``catalog:<name>`` endpoints take their entry's price; other endpoints
    are matched by provider, upstream model id and base URL
    (``Catalog.find_upstream``). Unpriced endpoints are left out: their
    turns have no cost.
    """
    prices: dict[str, Price] = {}
    for endpoint in endpoints:
        entry = None
        if endpoint.name.startswith(ENDPOINT_PREFIX):
            entry = catalog.get(endpoint.name[len(ENDPOINT_PREFIX):])
        if entry is None:
            entry = catalog.find_upstream(endpoint.provider, endpoint.model, endpoint.base_url)
        if entry is not None:
            prices[endpoint.name] = entry.price
    return prices
