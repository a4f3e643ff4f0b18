"""How :func:`resolve_state` loads events: batches, memoisation, gaps, foreign events, yielding."""

from __future__ import annotations

from collections import Counter
from typing import Collection, Mapping, Sequence, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest

from matrixd.events.event import Event, StateKey
from matrixd.events.room_versions import RoomVersions
from matrixd.state.resolution import CREATE_KEY, default_auth_rules, resolve_state
from tests.state.resolution_fixtures import ALICE, BOB, CAROL, Room, resolve, run

TOPIC = ("m.room.topic", "")


class RecordingFetcher:
    """Fetches from a room and records every batch asked for."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.batches: list[set[str]] = []

    async def __call__(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        self.batches.append(set(event_ids))
        return await self.room.fetch(event_ids)

    @property
    def fetched(self) -> Counter[str]:
        return Counter(e for b in self.batches for e in b)


def resolve_with(room: Room, sets: Sequence[Mapping[StateKey, str]], fetcher: RecordingFetcher, **kw: object) -> dict[StateKey, str]:
    d = defer.ensureDeferred(
        resolve_state(room.room_id, room.room_version, sets, fetcher, auth_rules=default_auth_rules(), **kw)  # type: ignore[arg-type]
    )
    result: dict[StateKey, str] = run(d)
    return result


def long_room() -> tuple[Room, dict[StateKey, str], dict[StateKey, str]]:
    """Thirty sequential power levels changes and forty members, then two topic forks."""
    room = Room(RoomVersions.V11)
    main = room.create(ALICE, users={BOB: 50})
    main.join(BOB)
    for i in range(30):
        main.power(ALICE, {ALICE: 100, BOB: 50, f"@u{i}:example.com": i})
    for i in range(40):
        main.join(f"@m{i}:example.com")
    a, b = main.branch(), main.branch()
    a.topic(ALICE, "a")
    b.topic(BOB, "b")
    return room, a.state, b.state


class LoadingTests(unittest.TestCase):
    def test_batches_per_level_and_no_refetch(self) -> None:
        """Auth chains are walked one fetch per level, and no event is asked for twice."""
        room, a, b = long_room()
        fetcher = RecordingFetcher(room)
        resolved = resolve_with(room, [a, b], fetcher)
        self.assertEqual(resolved, resolve(room, [a, b]))
        self.assertEqual(max(fetcher.fetched.values()), 1)
        self.assertLessEqual(len(fetcher.batches), 40)  # ~35 levels of power levels chain
        self.assertGreater(max(len(x) for x in fetcher.batches), 40)  # the members came in one batch

    def test_auth_chain_difference_hook_avoids_loading_all_state(self) -> None:
        """With a storage-provided auth difference only the conflicted events and what they need are fetched."""
        room, a, b = long_room()
        fetcher = RecordingFetcher(room)
        calls: list[Sequence[Mapping[StateKey, str]]] = []

        async def difference(room_id: str, state_sets: Sequence[Mapping[StateKey, str]]) -> Collection[str]:
            calls.append(state_sets)
            return {a[TOPIC], b[TOPIC]}

        resolved = resolve_with(room, [a, b], fetcher, auth_chain_difference=difference)
        self.assertEqual(resolved, resolve(room, [a, b]))
        self.assertEqual(len(calls), 1)
        members = {e for e in fetcher.fetched if room.events[e].sender.startswith("@m")}
        self.assertEqual(members, set())

    def test_missing_events_are_ignored(self) -> None:
        """A conflicted event the fetcher lacks takes no part; an unconflicted one stays in the result."""
        room = Room(RoomVersions.V11)
        main = room.create(ALICE)
        ghost = main.join(CAROL)
        a, b = main.branch(), main.branch()
        kept = a.topic(ALICE, "kept", ts=1)
        lost = b.topic(ALICE, "lost", ts=2)
        del room.events[lost.event_id]
        del room.events[ghost.event_id]
        resolved = resolve(room, [a.state, b.state])
        self.assertEqual(resolved[TOPIC], kept.event_id)
        self.assertEqual(resolved[("m.room.member", CAROL)], ghost.event_id)

    def test_events_of_another_room_are_ignored(self) -> None:
        """A fetched event that belongs to another room is treated as missing."""
        room = Room(RoomVersions.V11)
        main = room.create(ALICE)
        a, b = main.branch(), main.branch()
        kept = a.topic(ALICE, "kept", ts=1)
        foreign = b.topic(ALICE, "foreign", ts=2)
        foreign.get_pdu_json()["room_id"] = "!elsewhere:example.com"
        self.assertEqual(resolve(room, [a.state, b.state])[TOPIC], kept.event_id)

    def test_v12_create_event_is_loaded_by_room_id(self) -> None:
        """v12: the create event is fetched from the room id even though no auth_events cite it."""
        room = Room(RoomVersions.V12)
        main = room.create(ALICE)
        a, b = main.branch(), main.branch()
        a.topic(ALICE, "a")
        b.topic(ALICE, "b")
        fetcher = RecordingFetcher(room)
        difference_calls: list[int] = []

        async def difference(room_id: str, state_sets: Sequence[Mapping[StateKey, str]]) -> Collection[str]:
            difference_calls.append(1)
            return {a.state[TOPIC], b.state[TOPIC]}

        resolve_with(room, [a.state, b.state], fetcher, auth_chain_difference=difference)
        self.assertIn(main.state[CREATE_KEY], fetcher.fetched)
        self.assertEqual(room.room_id, "!" + main.state[CREATE_KEY][1:])

    def test_clock_yield(self) -> None:
        """clock_yield is awaited between phases and slices of auth checks; the result does not change."""
        room = Room(RoomVersions.V11)
        main = room.create(ALICE)
        users = [f"@u{i}:example.com" for i in range(250)]
        a, b = main.branch(), main.branch()
        for u in users:
            a.join(u)
        b.topic(ALICE, "b")
        yields: list[int] = []

        async def clock_yield() -> None:
            yields.append(1)

        fetcher = RecordingFetcher(room)
        resolved = resolve_with(room, [a.state, b.state], fetcher, clock_yield=clock_yield)
        self.assertEqual(resolved, resolve(room, [a.state, b.state]))
        self.assertGreaterEqual(len(yields), 5)

    def test_really_asynchronous_fetcher(self) -> None:
        """A fetcher that answers later (on a clock) is awaited properly."""
        room = Room(RoomVersions.V10)
        main = room.create(ALICE, users={BOB: 50})
        main.join(BOB)
        a, b = main.branch(), main.branch()
        a.power(ALICE, {ALICE: 100})
        b.topic(BOB, "b")
        clock = task.Clock()

        def later(event_ids: Collection[str]) -> "defer.Deferred[Mapping[str, Event]]":
            return task.deferLater(cast(IReactorTime, clock), 1.0, lambda: {e: room.events[e] for e in event_ids if e in room.events})

        d = defer.ensureDeferred(resolve_state(room.room_id, room.room_version, [a.state, b.state], later))
        for _ in range(100):
            if d.called:
                break
            clock.advance(1.0)
        self.assertEqual(self.successResultOf(d), resolve(room, [a.state, b.state]))
