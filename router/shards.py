"""Which tracker shard holds which model groups' routing state.

    shards = ShardMap(config, count)        # every replica computes the same map
    shards.of_group("voice-fast")           # -> 0 .. count-1
    shards.of_endpoint("oa-1")              # the shard of the endpoint's group
    shards.groups(1)                        # the groups shard 1 plans for

A turn's plan walks its group and the groups down its fallback chain, and
all of it must be decided by one actor (leases, breakers and estimates of
the endpoints it may try), so groups linked by ``fallbacks`` (either way)
form one unit that is never split; endpoint names are unique across groups,
so an endpoint's state lives in exactly one shard. Units go to shards
largest first, each to the shard with the fewest endpoints so far (ties to
the lowest index), which keeps the map the same on every replica and the
shards' endpoint counts within one unit of each other.

A conversation's turn count lives with its group's shard: a call that
moves between groups on different shards is counted on each apart.

Pure: no Ray.
"""

from __future__ import annotations

from router.config import RouterConfig

__all__ = ["ShardMap", "routing_units", "shard_config"]


def routing_units(config: RouterConfig) -> list[tuple[str, ...]]:
    """The groups that must share a shard (linked by fallbacks), each unit in
    config order, units in the order of their first group."""
    groups = list(config.model_groups)
    parent = {name: name for name in groups}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for name, group in config.model_groups.items():
        for fallback in group.fallbacks:
            if fallback in parent:
                a, b = root(name), root(fallback)
                if a != b:
                    parent[max(a, b, key=groups.index)] = min(a, b, key=groups.index)
    units: dict[str, list[str]] = {}
    for name in groups:
        units.setdefault(root(name), []).append(name)
    return [tuple(unit) for unit in units.values()]


class ShardMap:
    __slots__ = ("count", "_group_shard", "_endpoint_shard", "_groups")

    def __init__(self, config: RouterConfig, count: int):
        if count < 1:
            raise ValueError("a router has at least one tracker shard")
        self.count = count
        sizes = {name: len(group.endpoints) for name, group in config.model_groups.items()}
        units = sorted(routing_units(config), key=lambda unit: -sum(sizes[g] for g in unit))  # stable: config order on ties
        load = [0] * count
        self._group_shard: dict[str, int] = {}
        for unit in units:
            shard = min(range(count), key=lambda i: (load[i], i))
            load[shard] += sum(sizes[g] for g in unit)
            self._group_shard.update(dict.fromkeys(unit, shard))
        self._endpoint_shard = {
            endpoint.name: self._group_shard[name]
            for name, group in config.model_groups.items()
            for endpoint in group.endpoints
        }
        self._groups: list[tuple[str, ...]] = [
            tuple(g for g in config.model_groups if self._group_shard[g] == shard) for shard in range(count)
        ]

    def of_group(self, group: str) -> int:
        """The group's shard; an unknown group's is shard 0 (which answers
        ModelNotFound like any shard would)."""
        return self._group_shard.get(group, 0)

    def of_endpoint(self, endpoint: str) -> int:
        return self._endpoint_shard.get(endpoint, 0)

    def groups(self, shard: int) -> tuple[str, ...]:
        return self._groups[shard]


def shard_config(config: RouterConfig, shards: ShardMap, shard: int) -> RouterConfig:
    """The config one shard's tracker is built from: only its groups (the
    rest of the config as it is)."""
    if shards.count == 1:
        return config
    groups = {name: config.model_groups[name] for name in shards.groups(shard)}
    return config.model_copy(update={"model_groups": groups})
