"""The ``caches`` section: how large the in-memory caches may grow.

Synapse's keys with Synapse's meaning, so an operator's tuning carries over:
``caches.global_factor`` scales every cache's default bound and
``caches.per_cache_factors`` overrides the factor of named caches (the names
are the ``name`` label of ``synapse_util_caches_cache_size`` on ``/metrics``).
A factor below 1 trades hits (more database reads) for memory.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader

_EMPTY: Mapping[str, float] = MappingProxyType({})


@attrs.frozen(slots=True)
class CachesConfig:
    """Keys: ``caches.global_factor`` (default 1.0), ``caches.per_cache_factors`` (name → factor)."""

    global_factor: float = 1.0
    per_cache_factors: Mapping[str, float] = _EMPTY

    @classmethod
    def parse(cls, r: ConfigReader) -> "CachesConfig":
        section = r.section("caches")
        global_factor = section.number("global_factor", 1.0, min_value=0.0)
        if global_factor <= 0:
            raise ConfigError(section.key("global_factor"), "must be greater than 0")
        per_cache = section.section("per_cache_factors")
        factors: dict[str, float] = {}
        for name in list(per_cache.unused_keys()):
            factor = per_cache.number(name, min_value=0.0, required=True)
            if factor <= 0:
                raise ConfigError(per_cache.key(name), "must be greater than 0")
            factors[name] = factor
        return cls(global_factor=global_factor, per_cache_factors=MappingProxyType(factors))

    def factor_for(self, cache_name: str) -> float:
        return self.per_cache_factors.get(cache_name, self.global_factor)
