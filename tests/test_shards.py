"""The tracker's shard map: groups linked by fallbacks share a shard, every
endpoint lives in exactly one, shards are balanced by endpoints, and every
replica computes the same map. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.shards import ShardMap, routing_units


def config_of(groups: dict[str, tuple[int, list[str]]]):
    """``{group: (endpoints, fallbacks)}``."""
    return parse_config({"model_groups": {
        name: {"endpoints": [{"name": f"{name}-e{i}", "base_url": "http://127.0.0.1:9/v1", "model": "m"} for i in range(size)],
               **({"fallbacks": fallbacks} if fallbacks else {})}
        for name, (size, fallbacks) in groups.items()
    }})  # fmt: skip


def test_a_fallback_chain_is_one_unit_and_the_largest_units_are_spread_first():
    config = config_of({"a": (3, ["b"]), "b": (1, []), "c": (2, []), "d": (2, ["b"]), "e": (1, [])})
    assert routing_units(config) == [("a", "b", "d"), ("c",), ("e",)]
    shards = ShardMap(config, 2)
    assert [shards.of_group(g) for g in "abcde"] == [0, 0, 1, 0, 1]
    assert shards.groups(0) == ("a", "b", "d") and shards.groups(1) == ("c", "e")
    assert shards.of_endpoint("c-e1") == 1 and shards.of_endpoint("d-e0") == 0
    assert shards.of_group("unknown") == 0
    assert ShardMap(config, 1).groups(0) == ("a", "b", "c", "d", "e")
    with pytest.raises(ValueError):
        ShardMap(config, 0)


@st.composite
def group_graphs(draw):
    names = [f"g{i}" for i in range(draw(st.integers(1, 12)))]
    return {
        name: (draw(st.integers(1, 5)), draw(st.lists(st.sampled_from(names), max_size=2, unique=True).filter(lambda f, n=name: n not in f)))
        for name in names
    }


@settings(max_examples=150, deadline=None)
@given(group_graphs(), st.integers(1, 6))
def test_fallbacks_never_cross_shards_and_shards_stay_balanced(groups, count):
    try:
        config = config_of(groups)
    except ValueError:
        return  # a fallback cycle the config refuses
    shards = ShardMap(config, count)
    for name, group in config.model_groups.items():
        assert 0 <= shards.of_group(name) < count
        for fallback in group.fallbacks:
            assert shards.of_group(fallback) == shards.of_group(name)
        for endpoint in group.endpoints:
            assert shards.of_endpoint(endpoint.name) == shards.of_group(name)
    assert sorted(g for shard in range(count) for g in shards.groups(shard)) == sorted(config.model_groups)
    load = [sum(len(config.model_groups[g].endpoints) for g in shards.groups(s)) for s in range(count)]
    largest_unit = max(sum(len(config.model_groups[g].endpoints) for g in unit) for unit in routing_units(config))
    assert max(load) - min(load) <= largest_unit
    again = ShardMap(config_of(groups), count)  # another replica, the same config
    assert all(again.of_group(g) == shards.of_group(g) for g in config.model_groups)
