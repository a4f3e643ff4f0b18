"""Stream id generators: ordered allocation, and a current token that never passes an unfinished id."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from matrixd.storage.streams import StreamIdGenerator
from matrixd.testing.database import make_test_database


class StreamIdGeneratorTestCase(TestCase):
    async def setUp(self) -> None:
        self.db = await make_test_database(self, reactor, prepare=False)
        await self.db.execute("c", "CREATE TABLE s (id BIGINT NOT NULL)")
        await self.db.execute("c2", "CREATE TABLE s2 (pos BIGINT NOT NULL)")

    async def test_starts_after_existing_max(self) -> None:
        """Allocation resumes after the largest id in the table (and extra tables)."""
        await self.db.execute("i", "INSERT INTO s (id) VALUES (3), (7), (5)")
        await self.db.execute("i", "INSERT INTO s2 (pos) VALUES (9)")
        gen = await StreamIdGenerator.create(self.db, "s", "id")
        self.assertEqual(gen.get_current_token(), 7)
        with gen.get_next() as i:
            self.assertEqual(i, 8)
        both = await StreamIdGenerator.create(self.db, "s", "id", extra_tables=[("s2", "pos")])
        self.assertEqual(both.get_current_token(), 9)

    async def test_empty_table_starts_at_zero(self) -> None:
        """An empty stream's token is 0 and the first id is 1."""
        gen = await StreamIdGenerator.create(self.db, "s", "id")
        self.assertEqual(gen.get_current_token(), 0)
        with gen.get_next_mult(3) as ids:
            self.assertEqual(ids, [1, 2, 3])
            self.assertEqual(gen.get_current_token(), 0)
        self.assertEqual(gen.get_current_token(), 3)

    async def test_token_waits_for_earlier_unfinished_ids(self) -> None:
        """Finishing id 2 before id 1 does not advance the token past 0 until 1 finishes."""
        gen = await StreamIdGenerator.create(self.db, "s", "id")
        first = gen.get_next()
        second = gen.get_next()
        third = gen.get_next_mult(2)
        id1 = first.__enter__()
        id2 = second.__enter__()
        ids34 = third.__enter__()
        self.assertEqual((id1, id2, ids34), (1, 2, [3, 4]))
        self.assertEqual(gen.get_max_allocated(), 4)

        second.__exit__(None, None, None)
        self.assertEqual(gen.get_current_token(), 0)
        first.__exit__(None, None, None)
        self.assertEqual(gen.get_current_token(), 2)
        third.__exit__(None, None, None)
        self.assertEqual(gen.get_current_token(), 4)

    async def test_failed_write_counts_as_finished(self) -> None:
        """An id whose with-block raised (rolled back) no longer holds the token back."""
        gen = await StreamIdGenerator.create(self.db, "s", "id")
        with self.assertRaises(RuntimeError):
            with gen.get_next():
                raise RuntimeError("transaction failed")
        self.assertEqual(gen.get_current_token(), 1)

    async def test_backfill_generator_counts_down(self) -> None:
        """A step=-1 generator hands out -1, -2, ... and its token is the most negative finished prefix."""
        await self.db.execute("i", "INSERT INTO s (id) VALUES (5), (-2)")
        gen = await StreamIdGenerator.create(self.db, "s", "id", step=-1)
        self.assertEqual(gen.get_current_token(), -2)
        a = gen.get_next()
        b = gen.get_next()
        self.assertEqual((a.__enter__(), b.__enter__()), (-3, -4))
        b.__exit__(None, None, None)
        self.assertEqual(gen.get_current_token(), -2)
        a.__exit__(None, None, None)
        self.assertEqual(gen.get_current_token(), -4)

    async def test_unloaded_generator_refuses(self) -> None:
        """Using a generator before load() is a clear error, not id 1."""
        gen = StreamIdGenerator(self.db, "s", "id")
        with self.assertRaises(RuntimeError):
            gen.get_current_token()
        with self.assertRaises(ValueError):
            StreamIdGenerator(self.db, "s", "id", step=2)
