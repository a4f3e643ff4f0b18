"""Invalidating caches by name across processes: a registry of names, and the master's writer.

Workers cache what the master writes (access tokens, users, events...).  When
the master changes such data outside a stream that already says so, it calls
:meth:`CacheInvalidator.invalidate` with a cache *name* and keys; the
invalidation is stored as a row of the ``caches`` stream, so a worker that was
disconnected replays it on catch-up.

Names are checked, not free-form: every process registers its invalidatable
caches in a :class:`CacheRegistry` at start-up.  The writer refuses an unknown
name (a bug to fix at once); a reader that receives one logs an error and
ignores the row (it may run a different version), never silently accepting it.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import attrs

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from matrixd.storage.cache_invalidation import CacheInvalidationStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: ``invalidate(keys)``: drop these keys from the cache.
KeysInvalidator = Callable[[Sequence[str]], None]


class UnknownCacheError(ValueError):
    """A cache name nobody registered."""


@attrs.frozen(slots=True)
class _CacheEntry:
    invalidate: KeysInvalidator
    clear: Optional[Callable[[], None]]


class CacheRegistry:
    """The named caches of this process that replication may invalidate."""

    def __init__(self) -> None:
        self._caches: dict[str, _CacheEntry] = {}

    def register(self, name: str, invalidate: KeysInvalidator, clear: Optional[Callable[[], None]] = None) -> None:
        """Make ``name`` invalidatable; ``clear`` (if the cache has one) empties it whole."""
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid cache name {name!r}")
        if name in self._caches:
            raise ValueError(f"cache {name!r} is already registered")
        self._caches[name] = _CacheEntry(invalidate, clear)

    def __contains__(self, name: object) -> bool:
        return name in self._caches

    def names(self) -> list[str]:
        return sorted(self._caches)

    def check(self, name: str, *, whole: bool = False) -> None:
        """Raises UnknownCacheError if ``name`` is not registered (or, with ``whole``, cannot be cleared)."""
        entry = self._caches.get(name)
        if entry is None:
            raise UnknownCacheError(f"unknown cache {name!r}; known: {', '.join(self.names()) or '(none)'}")
        if whole and entry.clear is None:
            raise UnknownCacheError(f"cache {name!r} can only be invalidated by key")

    def invalidate(self, name: str, keys: Optional[Sequence[str]]) -> bool:
        """Drop ``keys`` (all, if None) from cache ``name``; False (and an error logged) if unknown."""
        entry = self._caches.get(name)
        if entry is None:
            logger.error("replication: invalidation of unknown cache %r ignored (keys %r)", name, keys)
            return False
        if keys is None:
            if entry.clear is None:
                logger.error("replication: cache %r cannot be cleared whole; invalidation ignored", name)
                return False
            entry.clear()
        else:
            entry.invalidate(keys)
        return True

    def clear_all(self) -> None:
        """Empty every registered cache (nothing can be trusted any more)."""
        for entry in self._caches.values():
            if entry.clear is not None:
                entry.clear()


def per_key(invalidate_one: Callable[[str], None]) -> KeysInvalidator:
    """A KeysInvalidator from a store method that invalidates one key."""

    def invalidate(keys: Sequence[str]) -> None:
        for key in keys:
            invalidate_one(key)

    return invalidate


class CacheInvalidator:
    """The master's way to invalidate a named cache here and in every worker.

    Args:
        store: where the caches stream's rows go.
        id_gen: the caches stream's id generator (:meth:`CacheInvalidationStore.create_id_generator`).
        caches: this process's registry (names are checked against it).
        notify: called with ``"caches"`` after each row commits (the publisher's ``notify``).
    """

    def __init__(
        self,
        store: CacheInvalidationStore,
        id_gen: StreamIdGenerator,
        caches: CacheRegistry,
        notify: Callable[[str], None],
    ) -> None:
        self._store = store
        self._id_gen = id_gen
        self._caches = caches
        self._notify = notify

    async def invalidate(self, cache_name: str, keys: Optional[Sequence[str]]) -> int:
        """Record the invalidation, apply it locally, then announce it; returns its stream id.

        Call it after the transaction that changed the cached data committed.

        Raises:
            UnknownCacheError: ``cache_name`` is not registered (nothing is written).
        """
        self._caches.check(cache_name, whole=keys is None)
        key_list = None if keys is None else [str(k) for k in keys]
        with self._id_gen.get_next() as stream_id:
            await self._store.add_invalidation(stream_id, cache_name, key_list)
            # Local caches first, then (leaving the with-block) the position.
            self._caches.invalidate(cache_name, key_list)
        self._notify("caches")
        return stream_id


class CachesPruner:
    """The master's background job that keeps ``cache_invalidation_stream`` small.

    Every ``interval_s`` it deletes the rows older than ``retention_ms`` that
    were already published (every connected worker has been sent them; a
    worker that reconnects later from below the pruned bound clears its
    caches instead of replaying, see ``caches_stream``).
    """

    def __init__(self, clock: Clock, store: CacheInvalidationStore, published: Callable[[], int], *,
                 retention_ms: int = 3_600_000, interval_s: float = 600.0) -> None:
        self._clock = clock
        self._store = store
        self._published = published
        self._retention_ms = retention_ms
        self._interval_s = interval_s
        self._loop: Optional[LoopingCall] = None

    def start(self) -> None:
        if self._loop is None:
            self._loop = self._clock.looping_call(self._run, self._interval_s)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _run(self) -> "defer.Deferred[None]":
        d = defer.ensureDeferred(self.prune_once())
        d.addErrback(lambda f: logger.error("pruning the caches stream failed: %s", f.value))
        return d.addCallback(lambda _: None)

    async def prune_once(self) -> int:
        """One pass; returns how many rows were deleted."""
        deleted, up_to = await self._store.prune(self._clock.time_msec() - self._retention_ms, self._published())
        if deleted:
            logger.info("replication: pruned %d caches stream rows (up to %d)", deleted, up_to)
        return deleted
