"""The inline database mode used by in-process test homeservers."""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from matrixd.testing.database import make_test_database_sync


class InlineDatabaseTests(unittest.TestCase):
    def test_transactions_complete_synchronously(self) -> None:
        """On a memory reactor, a transaction's Deferred has fired when run_interaction returns."""
        db = make_test_database_sync(self, MemoryReactorClock())

        async def go() -> int:
            rows = await db.execute("count_rooms", "SELECT COUNT(*) FROM rooms")
            return int(rows[0][0])

        from twisted.internet import defer

        self.assertEqual(self.successResultOf(defer.ensureDeferred(go())), 0)
