"""The store LRU cache: bounded by size, and immune to invalidations racing a read."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from matrixd.storage.cache import LruCache, set_cache_factors


class LruCacheTestCase(TestCase):
    def test_cache_factors_scale_and_resize(self) -> None:
        """The configured factors scale new caches' bounds and shrink existing caches."""
        self.addCleanup(set_cache_factors, 1.0, {})
        existing: LruCache[int, int] = LruCache("t_factor_existing", 10)
        for i in range(10):
            existing.set(i, i)
        set_cache_factors(0.5, {"t_factor_named": 3.0})
        self.assertEqual((existing.max_size, len(existing)), (5, 5))
        self.assertEqual([existing.get(i) for i in (4, 5, 9)], [None, 5, 9])  # the oldest went
        self.assertEqual(LruCache("t_factor_new", 10).max_size, 5)
        self.assertEqual(LruCache("t_factor_named", 10).max_size, 30)
        self.assertEqual(LruCache("t_factor_tiny", 1).max_size, 1)  # never below one entry
        set_cache_factors(1.0, {})
        self.assertEqual(existing.max_size, 10)

    def test_evicts_least_recently_used(self) -> None:
        """Past max_size the least recently used entry goes; get() refreshes recency."""
        cache: LruCache[str, int] = LruCache("t1", 2)
        cache.set("a", 1)
        cache.set("b", 2)
        self.assertEqual(cache.get("a"), 1)
        cache.set("c", 3)
        self.assertEqual((cache.get("a"), cache.get("b"), cache.get("c")), (1, None, 3))

    def test_size_function_bounds_total(self) -> None:
        """With size_of, the bound is the summed size; the newest entry is always kept."""
        cache: LruCache[str, list[int]] = LruCache("t2", 5, size_of=len)
        cache.set("a", [1, 2, 3])
        cache.set("b", [1, 2])
        self.assertEqual(cache.total_size, 5)
        cache.set("c", [1])
        self.assertNotIn("a", cache)
        self.assertEqual(cache.total_size, 3)
        cache.set("huge", list(range(10)))
        self.assertEqual((len(cache), cache.total_size), (1, 10))

    def test_invalidation_during_read_drops_stale_value(self) -> None:
        """A value read before an invalidation is not stored after it."""
        cache: LruCache[str, int] = LruCache("t3", 10)
        generation = cache.generation
        cache.invalidate("other")
        self.assertFalse(cache.set_if_unchanged("k", 1, generation))
        self.assertNotIn("k", cache)
        self.assertTrue(cache.set_if_unchanged("k", 2, cache.generation))
        cache.clear()
        self.assertEqual(len(cache), 0)
