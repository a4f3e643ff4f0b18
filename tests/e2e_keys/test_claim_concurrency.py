"""Concurrent one-time key claims on the real reactor and real database threads: each key is
handed out exactly once, on both engines (several connection pools on one database)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from matrixd.storage.database import Database
from matrixd.storage.e2e_keys import E2EKeyStore, NewKey
from matrixd.testing.database import make_test_database
from matrixd.util.clock import Clock

USER, DEVICE, ALG = "@alice:test", "ADEV", "signed_curve25519"
POOLS = 4


class ConcurrentClaimTests(TestCase):
    async def setUp(self) -> None:
        self.db = await make_test_database(self, reactor)
        self.clock = Clock(reactor)
        # Independent pools on the same database, so claims really run in parallel transactions.
        self.stores = [E2EKeyStore(self.db, self.clock)]
        for _ in range(POOLS - 1):
            db = Database(self.db.config, reactor)
            self.addCleanup(db.close)
            self.stores.append(E2EKeyStore(db, self.clock))
        self.store = self.stores[0]

    async def _claim_all(self, n: int) -> list[dict[tuple[str, str, str], tuple[str, Any]]]:
        claims = [defer.ensureDeferred(self.stores[i % POOLS].claim_keys([(USER, DEVICE, ALG)])) for i in range(n)]
        results: list[dict[tuple[str, str, str], tuple[str, Any]]] = await defer.gatherResults(
            claims, consumeErrors=True)
        return results

    async def test_single_key_one_winner(self) -> None:
        """Twelve simultaneous claims of a device's only one-time key: exactly one gets it."""
        await self.store.add_one_time_keys(USER, DEVICE, [NewKey(ALG, "K1", '{"key":"k1"}')])
        results = await self._claim_all(12)
        winners = [r for r in results if r]
        self.assertEqual(len(winners), 1)
        self.assertEqual(winners[0][(USER, DEVICE, ALG)], (f"{ALG}:K1", {"key": "k1"}))
        self.assertEqual(await self.store.count_one_time_keys(USER, DEVICE), {})

    async def test_many_keys_each_once(self) -> None:
        """Twenty-four claims of ten keys: ten distinct keys handed out, then the fallback key."""
        await self.store.add_one_time_keys(USER, DEVICE, [NewKey(ALG, f"K{i}", f'{{"key":"k{i}"}}')
                                                          for i in range(10)])
        await self.store.set_fallback_keys(USER, DEVICE, [NewKey(ALG, "FB", '{"key":"fb","fallback":true}')])
        results = await self._claim_all(24)
        ids = [r[(USER, DEVICE, ALG)][0] for r in results]
        otks = [i for i in ids if i != f"{ALG}:FB"]
        self.assertEqual(sorted(otks), sorted(f"{ALG}:K{i}" for i in range(10)))
        self.assertEqual(ids.count(f"{ALG}:FB"), 14)
        self.assertEqual(await self.store.get_unused_fallback_key_types(USER, DEVICE), [])
