"""Current state and membership: deltas applied on persist, lookups, caches kept fresh."""

from __future__ import annotations

from typing import Optional

from matrixd.events.event import Event
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events_writer import create_event_stream_generators
from matrixd.storage.models import EventContext, MemberProfile, StateDelta
from tests.storage.utils import StorageTestCase, make_event, member_event

ROOM = "!room:test.local"
ALICE = "@alice:test.local"
BOB = "@bob:remote.example"
CAROL = "@carol:test.local"


class CurrentStateTestCase(StorageTestCase):
    async def apply(self, room_id: str, *events: Event, delta: Optional[StateDelta] = None) -> None:
        """Persist events and move current state by their state keys (or by ``delta``)."""
        if delta is None:
            delta = StateDelta(to_insert={ev.state_key_tuple(): ev.event_id for ev in events if ev.is_state()})
        await self.writer.persist_events(
            [(ev, EventContext()) for ev in events], state_delta_by_room={room_id: delta}
        )

    async def setUp(self) -> None:
        await super().setUp()
        await self.apply(
            ROOM,
            make_event("$create", type="m.room.create", state_key="", sender=ALICE),
            member_event("$alice", ALICE),
            member_event("$bob", BOB),
        )

    async def test_current_state_lookups(self) -> None:
        """Current state ids, single events and joined members reflect the applied delta."""
        state = await self.current_state.get_current_state_ids(ROOM)
        self.assertEqual(
            dict(state),
            {("m.room.create", ""): "$create", ("m.room.member", ALICE): "$alice", ("m.room.member", BOB): "$bob"},
        )
        ev = await self.current_state.get_current_state_event(ROOM, "m.room.member", ALICE)
        assert ev is not None
        self.assertEqual(ev.event_id, "$alice")
        self.assertIsNone(await self.current_state.get_current_state_event(ROOM, "m.room.name", ""))
        self.assertEqual(await self.current_state.get_users_in_room(ROOM), [ALICE, BOB])
        self.assertEqual(await self.current_state.get_rooms_for_user(BOB), frozenset({ROOM}))
        profiles = await self.current_state.get_joined_member_profiles(ROOM)
        self.assertEqual(profiles[ALICE], MemberProfile("alice", None))
        self.assertEqual(await self.current_state.get_current_state_ids("!unknown:test.local"), {})

    async def test_membership_change_invalidates_caches(self) -> None:
        """After a leave is persisted, cached member lists and room lists are fresh."""
        self.assertEqual(await self.current_state.get_users_in_room(ROOM), [ALICE, BOB])
        self.assertEqual(await self.current_state.get_rooms_for_user(BOB), frozenset({ROOM}))
        await self.apply(ROOM, member_event("$bob_leave", BOB, "leave", prev=["$bob"], depth=2))
        self.assertEqual(await self.current_state.get_users_in_room(ROOM), [ALICE])
        self.assertEqual(await self.current_state.get_rooms_for_user(BOB), frozenset())
        membership = await self.current_state.get_membership(ROOM, BOB)
        assert membership is not None
        self.assertEqual((membership.membership, membership.event_id), ("leave", "$bob_leave"))
        state = await self.current_state.get_current_state_ids(ROOM)
        self.assertEqual(state[("m.room.member", BOB)], "$bob_leave")

    async def _fresh_read(self) -> tuple[dict[tuple[str, str], str], list[str]]:
        """The room's state and members as a new store reads them from the database."""
        store = CurrentStateStore(self.db, self.clock, self.events)
        return dict(await store.get_current_state_ids(ROOM)), await store.get_users_in_room(ROOM)

    async def test_writer_updates_cached_state_in_place(self) -> None:
        """A committed change updates the cached state map and member tuple without reading the room
        again, and they equal what the database holds."""
        await self.current_state.get_current_state_ids(ROOM)
        await self.current_state.get_users_in_room_tuple(ROOM)
        queries: list[str] = []
        real_execute = self.db.execute

        async def counting_execute(desc: str, *args: object, **kw: object) -> object:
            queries.append(desc)
            return await real_execute(desc, *args, **kw)  # type: ignore[arg-type]

        self.db.execute = counting_execute  # type: ignore[method-assign]
        await self.apply(ROOM, member_event("$carol", CAROL, depth=2))
        await self.apply(ROOM, member_event("$bob_leave", BOB, "leave", prev=["$bob"], depth=3))
        await self.apply(ROOM, make_event("$name", type="m.room.name", state_key="", content={"name": "x"}))
        state = await self.current_state.get_current_state_ids(ROOM)
        members = await self.current_state.get_users_in_room(ROOM)
        self.assertNotIn("get_current_state_ids", queries)
        self.assertNotIn("get_users_in_room", queries)
        self.assertEqual(members, [ALICE, CAROL])
        self.assertEqual(state[("m.room.member", BOB)], "$bob_leave")
        self.assertEqual((dict(state), members), await self._fresh_read())

    async def test_change_not_matching_cache_drops_it(self) -> None:
        """A cached map that does not show a change's previous event (it missed one) is dropped,
        not patched, so the next read goes to the database."""
        await self.current_state.get_users_in_room_tuple(ROOM)
        cached = dict(await self.current_state.get_current_state_ids(ROOM))
        cached[("m.room.member", BOB)] = "$not-what-the-database-has"
        self.current_state._state_cache.set(ROOM, cached)
        await self.apply(ROOM, member_event("$bob_leave", BOB, "leave", prev=["$bob"], depth=2))
        self.assertIsNone(self.current_state._state_cache.peek(ROOM))
        self.assertIsNone(self.current_state._members_cache.peek(ROOM))
        self.assertEqual(
            (dict(await self.current_state.get_current_state_ids(ROOM)),
             await self.current_state.get_users_in_room(ROOM)),
            await self._fresh_read(),
        )

    async def test_large_change_updates_cached_members(self) -> None:
        """Many members changing at once (a resync's state) take the bulk path, with the same result."""
        await self.current_state.get_current_state_ids(ROOM)
        await self.current_state.get_users_in_room_tuple(ROOM)
        joins = [member_event(f"$m{i:03}", f"@m{i:03}:remote.example", depth=2) for i in range(100)]
        await self.apply(ROOM, *joins, member_event("$bob_leave", BOB, "leave", prev=["$bob"], depth=2))
        members = await self.current_state.get_users_in_room(ROOM)
        self.assertEqual(len(members), 101)
        self.assertNotIn(BOB, members)
        self.assertEqual(members, sorted(members))
        self.assertEqual((dict(await self.current_state.get_current_state_ids(ROOM)), members),
                         await self._fresh_read())

    async def test_large_delta_not_kept_in_memory(self) -> None:
        """A stream id carrying a whole room's state (a resync's) is not kept among the recent delta
        rows; reading it goes to the database and returns every row. A join's one row is kept."""
        joins = [member_event(f"$m{i:03}", f"@m{i:03}:remote.example", depth=2) for i in range(150)]
        await self.apply(ROOM, *joins)
        large = self.stream_ids.get_current_token()
        await self.apply(ROOM, member_event("$carol", CAROL, depth=3))
        small = self.stream_ids.get_current_token()
        recent = self.current_state._recent_deltas
        assert recent is not None
        self.assertIsNone(recent.get(large - 1, large))
        self.assertEqual([r.event_id for _, rows in recent.get(small - 1, small) or [] for r in rows], ["$carol"])
        rows = await self.current_state.get_current_state_deltas(large - 1, small)
        self.assertEqual(len(rows), 151)
        self.assertEqual(rows[-1].event_id, "$carol")

    async def test_state_delta_stream(self) -> None:
        """Every change to current state is recorded with its stream id and previous event."""
        await self.apply(
            ROOM,
            make_event("$name", type="m.room.name", state_key="", content={"name": "x"}),
            delta=StateDelta(
                to_delete=frozenset({("m.room.member", BOB)}),
                to_insert={("m.room.name", ""): "$name", ("m.room.member", ALICE): "$alice"},
            ),
        )
        rows = await self.current_state.get_current_state_deltas(0, self.stream_ids.get_current_token())
        first = [(r.stream_id, r.type, r.state_key, r.event_id, r.prev_event_id) for r in rows if r.stream_id == 3]
        self.assertEqual(
            first,
            [(3, "m.room.create", "", "$create", None), (3, "m.room.member", ALICE, "$alice", None),
             (3, "m.room.member", BOB, "$bob", None)],
        )
        last = [(r.type, r.state_key, r.event_id, r.prev_event_id) for r in rows if r.stream_id == 4]
        # The unchanged alice entry is not a change; bob's removal and the name are.
        self.assertEqual(last, [("m.room.member", BOB, None, "$bob"), ("m.room.name", "", "$name", None)])
        self.assertEqual(await self.current_state.get_users_in_room(ROOM), [ALICE])
        paged = await self.current_state.get_current_state_deltas(0, 10, limit=1)
        self.assertEqual({r.stream_id for r in paged}, {3})

    async def test_local_memberships_and_out_of_band_invites(self) -> None:
        """Local users' memberships include out-of-band invites to rooms the server is not in."""
        joined = await self.current_state.get_local_memberships(ALICE)
        self.assertEqual([(m.room_id, m.membership) for m in joined], [(ROOM, "join")])
        self.assertEqual(await self.current_state.get_local_memberships(BOB), [])

        remote_room = "!far:remote.example"
        invite = member_event("$invite", CAROL, "invite", room_id=remote_room, sender=BOB, outlier=True)
        await self.writer.persist_events([(invite, EventContext(out_of_band_membership=True))])
        invites = await self.current_state.get_local_memberships(CAROL, ["invite"])
        self.assertEqual([(m.room_id, m.event_id, m.sender) for m in invites], [(remote_room, "$invite", BOB)])
        self.assertEqual(await self.current_state.get_local_memberships(CAROL, ["join"]), [])
        membership = await self.current_state.get_membership(remote_room, CAROL)
        assert membership is not None
        self.assertEqual(membership.membership, "invite")
        self.assertIsNone(await self.current_state.get_membership(ROOM, CAROL))

    async def test_bad_delta_writes_nothing(self) -> None:
        """A delta naming an unstored event fails the whole batch, and the stream moves on."""
        with self.assertRaises(ValueError):
            await self.apply(
                ROOM,
                make_event("$msg", prev=["$bob"], depth=2),
                delta=StateDelta(to_insert={("m.room.topic", ""): "$nowhere"}),
            )
        self.assertIsNone(await self.events.get_event("$msg"))
        self.assertEqual(self.stream_ids.get_current_token(), self.stream_ids.get_max_allocated())
        with self.assertRaises(ValueError):
            await self.writer.persist_events(
                [], backfilled=True, state_delta_by_room={ROOM: StateDelta(to_insert={("a", ""): "$alice"})}
            )

    async def test_stream_resumes_after_state_deltas(self) -> None:
        """A state change in a batch of already-stored events still moves the stream, across restarts."""
        result = await self.writer.persist_events(
            [(member_event("$alice", ALICE), EventContext())],
            state_delta_by_room={ROOM: StateDelta(to_delete=frozenset({("m.room.member", BOB)}))},
        )
        self.assertEqual(dict(result.stream_orderings), {})
        rows = await self.current_state.get_current_state_deltas(3, result.max_stream_ordering)
        self.assertEqual([(r.stream_id, r.state_key) for r in rows], [(4, BOB)])
        restarted, _ = await create_event_stream_generators(self.db)
        self.assertEqual(restarted.get_current_token(), 4)
