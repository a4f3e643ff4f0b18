"""State groups: deltas against previous groups, bounded chains, reads from cache and database."""

from __future__ import annotations

from matrixd.events.event import StateKey
from matrixd.storage.models import EventContext
from matrixd.storage.state import StateGroupStore
from tests.storage.utils import StorageTestCase, make_event

ROOM = "!room:test.local"
CREATE: StateKey = ("m.room.create", "")


def member(i: int) -> StateKey:
    return ("m.room.member", f"@u{i}:test.local")


class StateGroupTestCase(StorageTestCase):
    def fresh_store(self, **kw: int) -> StateGroupStore:
        """A store with an empty cache, so reads go to the database."""
        return StateGroupStore(self.db, self.clock, **kw)

    async def count_rows(self) -> int:
        rows = await self.db.execute("count", "SELECT COUNT(*) FROM state_groups_state")
        return int(rows[0][0])

    async def test_snapshot_then_deltas(self) -> None:
        """A group with a prev group stores only the changed entries, and reads back in full."""
        s1 = {CREATE: "$c", member(1): "$j1"}
        g1 = await self.state.store_state_group("$j1", ROOM, None, None, s1)
        s2 = {**s1, member(2): "$j2"}
        g2 = await self.state.store_state_group("$j2", ROOM, g1, {member(2): "$j2"}, s2)
        s3 = {**s2, member(1): "$leave1"}
        g3 = await self.state.store_state_group("$l1", ROOM, g2, None, s3)
        self.assertEqual(await self.count_rows(), 2 + 1 + 1)

        fresh = self.fresh_store()
        self.assertEqual(dict(await fresh.get_state_ids_for_group(g3)), s3)
        self.assertEqual(await fresh.get_state_ids_for_groups([g1, g2]), {g1: s1, g2: s2})
        self.assertEqual(dict(await self.state.get_state_ids_for_group(g2)), s2)

    async def test_delta_only_input(self) -> None:
        """Given only prev_group and delta_ids, the new state is prev plus delta."""
        g1 = await self.state.store_state_group("$c", ROOM, None, None, {CREATE: "$c"})
        g2 = await self.state.store_state_group("$j", ROOM, g1, {member(1): "$j"}, None)
        self.assertEqual(dict(await self.fresh_store().get_state_ids_for_group(g2)), {CREATE: "$c", member(1): "$j"})
        with self.assertRaises(ValueError):
            await self.state.store_state_group("$x", ROOM, None, {member(1): "$j"}, None)

    async def test_removed_keys_are_tombstoned(self) -> None:
        """A key absent from the new state (relative to prev) is removed when read back."""
        g1 = await self.state.store_state_group("$a", ROOM, None, None, {CREATE: "$c", member(1): "$j", member(2): "$k"})
        g2 = await self.state.store_state_group("$b", ROOM, g1, None, {CREATE: "$c", member(2): "$k"})
        self.assertEqual(dict(await self.fresh_store().get_state_ids_for_group(g2)), {CREATE: "$c", member(2): "$k"})

    async def test_chain_is_bounded_by_snapshots(self) -> None:
        """Every snapshot_interval hops a snapshot is written, so reads walk a bounded chain."""
        store = self.fresh_store(snapshot_interval=3)
        state = {CREATE: "$c"}
        groups = [await store.store_state_group("$c", ROOM, None, None, state)]
        states = [dict(state)]
        for i in range(1, 10):
            state = {**state, member(i): f"$j{i}"}
            groups.append(await store.store_state_group(f"$j{i}", ROOM, groups[-1], None, state))
            states.append(dict(state))
        rows = await self.db.execute("chain", "SELECT id, chain_length FROM state_groups ORDER BY id")
        self.assertEqual([r[1] for r in rows], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
        fresh = self.fresh_store(snapshot_interval=3)
        for g, s in zip(groups, states):
            self.assertEqual(dict(await fresh.get_state_ids_for_group(g)), s)

    async def test_read_builds_on_cached_ancestor(self) -> None:
        """A group read after its ancestor is cached equals the state built from scratch."""
        state = {CREATE: "$c"}
        groups = [await self.state.store_state_group("$c", ROOM, None, None, state)]
        expected = []
        for i in range(1, 6):
            state = {**state, member(i): f"$j{i}"}
            if i == 3:
                state.pop(member(1))
            groups.append(await self.state.store_state_group(f"$j{i}", ROOM, groups[-1], None, state))
            expected.append(dict(state))
        fresh = self.fresh_store()
        self.assertEqual(dict(await fresh.get_state_ids_for_group(groups[2])), expected[1])
        self.assertEqual(dict(await fresh.get_state_ids_for_group(groups[5])), expected[4])

    async def test_group_ids_unique_across_store_instances(self) -> None:
        """Two stores on one database never hand out the same state group id."""
        a = await self.state.store_state_group("$a", ROOM, None, None, {CREATE: "$a"})
        b = await self.fresh_store().store_state_group("$b", ROOM, None, None, {CREATE: "$b"})
        c = await self.state.store_state_group("$c", ROOM, None, None, {CREATE: "$c"})
        self.assertEqual(len({a, b, c}), 3)

    async def test_unknown_or_foreign_groups(self) -> None:
        """Unknown groups raise KeyError; a prev group of another room is refused."""
        with self.assertRaises(KeyError):
            await self.fresh_store().get_state_ids_for_group(12345)
        g = await self.state.store_state_group("$c", "!other:test.local", None, None, {CREATE: "$c"})
        with self.assertRaises(ValueError):
            await self.state.store_state_group("$x", ROOM, g, None, {CREATE: "$x"})

    async def test_event_to_state_group_mapping(self) -> None:
        """persist_events records the state after and before each event; outliers have none."""
        before = await self.state.store_state_group("$c", ROOM, None, None, {CREATE: "$c"})
        after = await self.state.store_state_group("$j", ROOM, before, None, {CREATE: "$c", member(1): "$j"})
        await self.writer.persist_events(
            [
                (make_event("$j", type="m.room.member", state_key="@u1:test.local", content={"membership": "join"}),
                 EventContext(state_group=after, state_group_before=before)),
                (make_event("$o", outlier=True), EventContext()),
            ]
        )
        self.assertEqual(await self.state.get_state_group_for_event("$j"), after)
        self.assertEqual(await self.state.get_state_groups_for_events(["$j", "$o"], before=True), {"$j": before})
        self.assertIsNone(await self.state.get_state_group_for_event("$o"))
        self.assertEqual(dict(await self.state.get_state_ids_for_event("$j", before=True) or {}), {CREATE: "$c"})
        self.assertIsNone(await self.state.get_state_ids_for_event("$o"))

    async def test_membership_churn_does_not_copy_state(self) -> None:
        """1,000 membership changes in a 1,000-member room store far fewer than a million state rows."""
        state: dict[StateKey, str] = {CREATE: "$create"}
        group = await self.state.store_state_group("$create", ROOM, None, None, state)
        for i in range(1000):
            state[member(i)] = f"$join{i}"
            group = await self.state.store_state_group(f"$join{i}", ROOM, group, {member(i): f"$join{i}"}, state)
        for i in range(1000):
            state[member(i)] = f"$change{i}"
            group = await self.state.store_state_group(f"$change{i}", ROOM, group, {member(i): f"$change{i}"}, state)

        rows = await self.count_rows()
        self.assertLess(rows, 150_000)
        # Deltas (one row per change) plus a snapshot every 100 hops.
        self.assertLess(rows, 2001 + 20 * 1001)
        final = await self.fresh_store().get_state_ids_for_group(group)
        self.assertEqual(len(final), 1001)
        self.assertEqual(dict(final), state)
