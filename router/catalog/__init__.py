"""The model catalog: models clients can ask for by name, what they cost,
and the model groups this environment can serve from them.

The data is ``models.yaml`` next to this file (its header gives the source
and date of the prices). Nothing here reads the environment: the caller
passes it in, once, at start-up::

    catalog = load_catalog()
    raw = with_catalog_groups(raw_config, catalog, os.environ)
    config = parse_config(raw)
    prices = endpoint_prices(catalog, all_endpoints(config))
"""

from router.catalog.cost import TurnCost, estimate_prompt_tokens, estimate_tokens, turn_cost, turn_cost_usd
from router.catalog.groups import ENDPOINT_PREFIX, catalog_groups, endpoint_prices, model_card, with_catalog_groups
from router.catalog.schema import Catalog, CatalogModel, Price, load_catalog

__all__ = [
    "Catalog",
    "CatalogModel",
    "Price",
    "load_catalog",
    "ENDPOINT_PREFIX",
    "catalog_groups",
    "with_catalog_groups",
    "model_card",
    "endpoint_prices",
    "TurnCost",
    "turn_cost",
    "turn_cost_usd",
    "estimate_tokens",
    "estimate_prompt_tokens",
]
