"""A small LRU cache for stores, safe against invalidation racing a database read.

Reads run on the DB thread while invalidations arrive on the reactor thread.
A read that started before an invalidation may return old data; storing that
would resurrect what was just invalidated.  So a reader takes the cache's
``generation`` before reading and stores with :meth:`LruCache.set_if_unchanged`,
which drops the value if any invalidation happened in between.
"""

from __future__ import annotations

import collections
import weakref
from typing import Callable, Generic, Hashable, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

_ALL_CACHES: "weakref.WeakSet[LruCache[object, object]]" = weakref.WeakSet()

# The operator's scaling of cache bounds (config ``caches``): a global factor and
# per-cache overrides.  Process-wide like the caches' metrics; set at start-up.
_global_factor = 1.0
_per_cache_factors: Mapping[str, float] = {}


def set_cache_factors(global_factor: float, per_cache_factors: Mapping[str, float]) -> None:
    """Scale every cache's default bound, and resize the caches that already exist."""
    global _global_factor, _per_cache_factors
    _global_factor = global_factor
    _per_cache_factors = dict(per_cache_factors)
    for cache in list(_ALL_CACHES):
        cache.resize(cache.default_max_size)


def _scaled(name: str, max_size: int) -> int:
    return max(1, int(max_size * _per_cache_factors.get(name, _global_factor)))


class _CacheCollector(Collector):
    """Reports every live cache's hits, misses and size at scrape time.

    Lookups only bump plain integers: a Prometheus counter increment per lookup
    cost more than the lookup itself on hot paths (sync reads thousands).
    """

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        lookups = CounterMetricFamily("matrixd_storage_cache_lookups", "Store cache lookups",
                                      labels=["cache", "result"])
        size = GaugeMetricFamily("matrixd_storage_cache_size", "Entries (weighted) in each store cache",
                                 labels=["cache"])
        # Synapse's names (gauges there too): hits, total lookups, size; ``name`` is the cache.
        syn_hits = GaugeMetricFamily("synapse_util_caches_cache_hits", "Cache hits", labels=["name"])
        syn_total = GaugeMetricFamily("synapse_util_caches_cache", "Cache lookups (hits and misses)", labels=["name"])
        syn_size = GaugeMetricFamily("synapse_util_caches_cache_size", "Cache size", labels=["name"])
        totals: dict[str, list[int]] = {}
        for cache in list(_ALL_CACHES):
            t = totals.setdefault(cache.name, [0, 0, 0])
            t[0] += cache.hits
            t[1] += cache.misses
            t[2] += cache.weighted_size
        for name, (hits, misses, weighted) in sorted(totals.items()):
            lookups.add_metric([name, "hit"], hits)
            lookups.add_metric([name, "miss"], misses)
            size.add_metric([name], weighted)
            syn_hits.add_metric([name], hits)
            syn_total.add_metric([name], hits + misses)
            syn_size.add_metric([name], weighted)
        yield lookups
        yield size
        yield syn_hits
        yield syn_total
        yield syn_size


REGISTRY.register(_CacheCollector())


class LruCache(Generic[K, V]):
    """Least-recently-used mapping bounded by total size. Reactor-thread only.

    Each value counts as ``size_of(value)`` (1 by default), so a cache of state
    maps can be bounded by entries rather than by maps of wildly varying size.
    """

    def __init__(self, name: str, max_size: int, size_of: Optional[Callable[[V], int]] = None) -> None:
        if max_size < 1:
            raise ValueError(f"cache {name}: max_size must be positive, not {max_size}")
        self.name = name
        self.default_max_size = max_size
        self.max_size = _scaled(name, max_size)
        self._size_of = size_of
        self._total = 0
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._generation = 0
        self.hits = 0
        self.misses = 0
        _ALL_CACHES.add(self)  # type: ignore[arg-type]

    @property
    def weighted_size(self) -> int:
        return self._total

    @property
    def generation(self) -> int:
        """Changes whenever anything is invalidated."""
        return self._generation

    def get(self, key: K) -> Optional[V]:
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def peek(self, key: K) -> Optional[V]:
        """The cached value, without counting a lookup or refreshing its recency."""
        return self._data.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def total_size(self) -> int:
        return self._total

    def _size(self, value: V) -> int:
        return 1 if self._size_of is None else max(1, self._size_of(value))

    def _pop(self, key: K) -> None:
        if key in self._data:
            self._total -= self._size(self._data.pop(key))

    def items_snapshot(self) -> dict[K, V]:
        """A copy of the current contents, safe to hand to another thread."""
        return dict(self._data)

    def set(self, key: K, value: V) -> None:
        self._pop(key)
        self._data[key] = value
        self._total += self._size(value)
        # Always keep the newest entry, even if it alone exceeds the bound.
        self._evict_to_bound()

    def resize(self, default_max_size: int) -> None:
        """A new default bound (scaled by the configured factors); evicts down to it."""
        self.default_max_size = default_max_size
        self.max_size = _scaled(self.name, default_max_size)
        self._evict_to_bound()

    def _evict_to_bound(self) -> None:
        while self._total > self.max_size and len(self._data) > 1:
            _, old = self._data.popitem(last=False)
            self._total -= self._size(old)

    def set_if_unchanged(self, key: K, value: V, generation: int) -> bool:
        """Store unless an invalidation happened since ``generation`` was read."""
        if generation != self._generation:
            return False
        self.set(key, value)
        return True

    def invalidate(self, key: K) -> None:
        self._generation += 1
        self._pop(key)

    def invalidate_many(self, keys: Iterable[K]) -> None:
        self._generation += 1
        for key in keys:
            self._pop(key)

    def clear(self) -> None:
        self._generation += 1
        self._data.clear()
        self._total = 0


class RecentStreamRows(Generic[R]):
    """The rows at a stream's latest ids, as the one writer of the stream committed them.

    The writer records every id it allocated, with the rows it wrote there
    (none for an id that carries no row), after its commit.  A range is served
    only if every id in it was recorded, so ids another allocator took, ids
    from before this process started and evicted ids all send the reader to
    the database.  Reactor-thread only.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._by_id: dict[int, tuple[R, ...]] = {}

    def record(self, allocated: Iterable[int], rows_by_id: Mapping[int, Sequence[R]]) -> None:
        for i in allocated:
            self._by_id[i] = tuple(rows_by_id.get(i, ()))
        for i, rows in rows_by_id.items():
            self._by_id[i] = tuple(rows)
        while len(self._by_id) > self._capacity:
            del self._by_id[next(iter(self._by_id))]  # the earliest recorded

    def clear_ids(self, ids: Iterable[int]) -> None:
        """These ids no longer hold what was recorded: they carry no row now."""
        for i in ids:
            if i in self._by_id:
                self._by_id[i] = ()

    def clear(self) -> None:
        self._by_id.clear()

    def get(self, from_token: int, to_token: int) -> Optional[list[tuple[int, tuple[R, ...]]]]:
        """``[(id, rows)]`` for the ids in ``(from_token, to_token]`` that carry rows, in
        order; None unless every id in the range was recorded."""
        if to_token <= from_token:
            return []
        if to_token - from_token > len(self._by_id):
            return None
        out: list[tuple[int, tuple[R, ...]]] = []
        for i in range(from_token + 1, to_token + 1):
            rows = self._by_id.get(i)
            if rows is None:
                return None
            if rows:
                out.append((i, rows))
        return out
