"""The pure pieces of state resolution v2/v2.1, each on a small hand-made DAG."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.trial import unittest

from matrixd.events.event import Event, InternalMetadata
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state.resolution import (
    AuthGraph,
    auth_difference,
    conflicted_subgraph,
    default_auth_rules,
    full_conflicted_set,
    is_power_event,
    iterative_auth_checks,
    mainline,
    mainline_order,
    power_events_with_auth_chains,
    reverse_topological_power_order,
    split_state,
    split_state_v1,
)
from tests.state.resolution_fixtures import ALICE, BOB, CAROL, DAVE, Room

RV = RoomVersions.V10


def ev(
    eid: str,
    auth: Sequence[str] = (),
    *,
    etype: str = "m.room.topic",
    sender: str = ALICE,
    state_key: Optional[str] = "",
    content: Optional[dict[str, Any]] = None,
    ts: int = 0,
    rejected: bool = False,
    room_version: RoomVersion = RV,
) -> Event:
    """A bare event for graph tests: only the fields the algorithm reads."""
    pdu: dict[str, Any] = {
        "type": etype,
        "sender": sender,
        "room_id": "!r:example.com",
        "content": content or {},
        "auth_events": list(auth),
        "prev_events": [],
        "origin_server_ts": ts,
        "depth": 1,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    meta = InternalMetadata()
    meta.rejected_reason = "auth_error" if rejected else None
    return Event(pdu, room_version, event_id=eid, internal_metadata=meta)


def graph(*events: Event) -> AuthGraph:
    return AuthGraph({e.event_id: e for e in events})


class SplitTests(unittest.TestCase):
    def test_v2_split(self) -> None:
        """v2: a key is unconflicted only when present in every set with one id; else all its ids conflict."""
        a = {("t", ""): "$1", ("m", "@a"): "$2", ("x", ""): "$5"}
        b = {("t", ""): "$1", ("m", "@a"): "$3"}
        c = {("t", ""): "$1", ("m", "@a"): "$4"}
        unconflicted, conflicted = split_state([a, b, c])
        self.assertEqual(unconflicted, {("t", ""): "$1"})
        self.assertEqual(conflicted, {("m", "@a"): {"$2", "$3", "$4"}, ("x", ""): {"$5"}})

    def test_v1_split_keeps_keys_missing_from_some_sets(self) -> None:
        """Room v1: a key missing from a set is not a conflict; only two different ids are."""
        a = {("t", ""): "$1", ("m", "@a"): "$2", ("x", ""): "$5"}
        b = {("t", ""): "$1", ("m", "@a"): "$3"}
        unconflicted, conflicted = split_state_v1([a, b])
        self.assertEqual(unconflicted, {("t", ""): "$1", ("x", ""): "$5"})
        self.assertEqual(conflicted, {("m", "@a"): {"$2", "$3"}})

    def test_split_of_identical_sets(self) -> None:
        """Identical state sets have no conflicts at all."""
        a = {("t", ""): "$1", ("m", "@a"): "$2"}
        self.assertEqual(split_state([a, dict(a)]), (a, {}))


class PowerEventTests(unittest.TestCase):
    def test_power_events(self) -> None:
        """Power levels and join rules are power events; memberships only as kicks and bans of others."""
        self.assertTrue(is_power_event(ev("$1", etype="m.room.power_levels")))
        self.assertTrue(is_power_event(ev("$2", etype="m.room.join_rules")))
        kick = ev("$3", etype="m.room.member", state_key=BOB, content={"membership": "leave"})
        self.assertTrue(is_power_event(kick))
        ban = ev("$4", etype="m.room.member", state_key=BOB, content={"membership": "ban"})
        self.assertTrue(is_power_event(ban))
        leave = ev("$5", etype="m.room.member", sender=BOB, state_key=BOB, content={"membership": "leave"})
        self.assertFalse(is_power_event(leave))
        invite = ev("$6", etype="m.room.member", state_key=BOB, content={"membership": "invite"})
        self.assertFalse(is_power_event(invite))
        self.assertFalse(is_power_event(ev("$7")))
        self.assertFalse(is_power_event(ev("$8", etype="m.room.power_levels", state_key=None)))


class AuthDifferenceTests(unittest.TestCase):
    def setUp(self) -> None:
        # c <- a1 <- a2 ; c <- b1 ; s (shared by both sets) <- c
        self.g = graph(
            ev("$c"), ev("$a1", ["$c"]), ev("$a2", ["$a1"]), ev("$b1", ["$c"]), ev("$s", ["$c"]), ev("$x", ["$s"])
        )

    def test_difference(self) -> None:
        """Events reachable from some state sets but not all are in the difference; the rest are not."""
        diff = auth_difference(self.g, [{("a", ""): "$a2", ("s", ""): "$s"}, {("a", ""): "$b1", ("s", ""): "$s"}])
        self.assertEqual(diff, {"$a2", "$a1", "$b1"})

    def test_state_events_count_as_their_own_chain(self) -> None:
        """An event present in every state set is in every full auth chain, even if nothing cites it."""
        diff = auth_difference(self.g, [{("x", ""): "$x", ("a", ""): "$a1"}, {("x", ""): "$x"}])
        self.assertEqual(diff, {"$a1"})

    def test_ancestor_of_shared_event_is_not_different(self) -> None:
        """An event reachable from a shared event is in every chain even if one set reaches it otherwise."""
        diff = auth_difference(self.g, [{("s", ""): "$s", ("a", ""): "$a1"}, {("s", ""): "$s"}])
        self.assertEqual(diff, {"$a1"})


class SubgraphTests(unittest.TestCase):
    def test_paths_between_conflicted_events(self) -> None:
        """The conflicted subgraph is every event on an auth path between two conflicted events."""
        g = graph(
            ev("$c2"), ev("$b", ["$c2"]), ev("$d"), ev("$a", ["$b", "$d"]), ev("$c1", ["$a"]), ev("$lone")
        )
        self.assertEqual(conflicted_subgraph(g, {"$c1", "$c2", "$lone"}), {"$c1", "$a", "$b", "$c2", "$lone"})

    def test_full_conflicted_set_by_version(self) -> None:
        """v2.1 adds the conflicted subgraph to the full conflicted set; v2 does not."""
        g = graph(ev("$c2"), ev("$b", ["$c2"]), ev("$c1", ["$b"]))
        self.assertEqual(full_conflicted_set(RoomVersions.V11, g, {"$c1", "$c2"}, set()), {"$c1", "$c2"})
        self.assertEqual(full_conflicted_set(RoomVersions.V12, g, {"$c1", "$c2"}, set()), {"$c1", "$b", "$c2"})

    def test_full_conflicted_set_drops_unknown_events(self) -> None:
        """Conflicted or auth-difference ids the fetcher did not return are left out."""
        g = graph(ev("$c1"))
        self.assertEqual(full_conflicted_set(RV, g, {"$c1", "$gone"}, {"$gone2"}), {"$c1"})


class PowerOrderTests(unittest.TestCase):
    def test_power_events_take_their_chain_within_the_full_set(self) -> None:
        """X is the power events plus their auth chain members that are in the full conflicted set."""
        g = graph(
            ev("$m1"),
            ev("$out", ["$m1"]),
            ev("$pl", ["$out"], etype="m.room.power_levels"),
            ev("$other"),
        )
        self.assertEqual(power_events_with_auth_chains(g, ["$pl"], {"$pl", "$m1", "$other"}), {"$pl", "$m1"})

    def test_auth_events_come_first(self) -> None:
        """An event sorts after the events it cites, whatever their power or timestamps."""
        g = graph(ev("$late", ts=50), ev("$early", ["$late"], ts=1))
        order = reverse_topological_power_order(g, ["$early", "$late"], lambda e: 0)
        self.assertEqual(order, ["$late", "$early"])

    def test_ties_by_power_then_ts_then_id(self) -> None:
        """Among ready events: higher sender power first, then lower origin_server_ts, then lower id."""
        power = {ALICE: 100, BOB: 50, CAROL: 50, DAVE: 50}
        g = graph(
            ev("$b", sender=BOB, ts=5),
            ev("$a", sender=ALICE, ts=9),
            ev("$d2", sender=DAVE, ts=3),
            ev("$d1", sender=CAROL, ts=3),
        )
        order = reverse_topological_power_order(g, ["$b", "$a", "$d2", "$d1"], lambda e: power[e.sender])
        self.assertEqual(order, ["$a", "$d1", "$d2", "$b"])

    def test_edges_only_within_the_set(self) -> None:
        """Auth events outside the sorted set do not constrain the order."""
        g = graph(ev("$x", ts=1), ev("$mid", ["$x"]), ev("$y", ["$mid"], ts=0))
        self.assertEqual(reverse_topological_power_order(g, ["$x", "$y"], lambda e: 0), ["$y", "$x"])

    def test_creators_sort_first_in_v12(self) -> None:
        """With the real rules, a v12 creator (infinite power) sorts before a PL-100 user with an earlier ts."""
        room = Room(RoomVersions.V12)
        main = room.create(ALICE, users={BOB: 100})
        main.join(BOB)
        a, b = main.branch(), main.branch()
        by_alice = a.topic(ALICE, "x", ts=20)
        by_bob = b.topic(BOB, "y", ts=10)
        from matrixd.state.resolution.v2 import make_sender_power

        g = AuthGraph(room.events)
        create = room.events[main.state[("m.room.create", "")]]
        sender_power = make_sender_power(room.room_version, g, default_auth_rules(), create)
        self.assertEqual(sender_power(by_alice), float("inf"))
        order = reverse_topological_power_order(g, [by_bob.event_id, by_alice.event_id], sender_power)
        self.assertEqual(order, [by_alice.event_id, by_bob.event_id])


class MainlineTests(unittest.TestCase):
    def setUp(self) -> None:
        pl = "m.room.power_levels"
        self.g = graph(
            ev("$pl1", etype=pl),
            ev("$pl2", ["$pl1"], etype=pl),
            ev("$pl3", ["$pl2"], etype=pl),
            ev("$side", ["$pl1"], etype=pl),  # a power levels event off the mainline
            ev("$t_on3", ["$pl3"], ts=1),
            ev("$t_on1", ["$pl1"], ts=9),
            ev("$t_side", ["$side"], ts=5),
            ev("$t_none", [], ts=100),
            ev("$t_on1_b", ["$pl1"], ts=9),
            ev("$t_on1_c", ["$pl1"], ts=2),
        )

    def test_mainline(self) -> None:
        """The mainline follows power levels auth events back from the resolved one."""
        self.assertEqual(mainline(self.g, "$pl3"), ["$pl3", "$pl2", "$pl1"])
        self.assertEqual(mainline(self.g, None), [])

    def test_order(self) -> None:
        """Earlier mainline position first (no mainline at all first), then ts, then event id."""
        order = mainline_order(
            self.g, ["$t_on3", "$t_on1", "$t_side", "$t_none", "$t_on1_b", "$t_on1_c"], "$pl3"
        )
        # $t_side's chain meets the mainline at $pl1, like $t_on1*.
        self.assertEqual(order, ["$t_none", "$t_on1_c", "$t_side", "$t_on1", "$t_on1_b", "$t_on3"])

    def test_order_without_power_levels(self) -> None:
        """With no resolved power levels every event ties on position and sorts by ts then id."""
        order = mainline_order(self.g, ["$t_on3", "$t_on1", "$t_on1_b", "$t_none"], None)
        self.assertEqual(order, ["$t_on3", "$t_on1", "$t_on1_b", "$t_none"])

    def test_event_itself_is_not_its_own_mainline_entry(self) -> None:
        """A power levels event's position comes from its power levels auth event, not itself."""
        order = mainline_order(self.g, ["$pl3", "$t_on3"], "$pl3")
        # $pl3's position is 1 ($pl2), $t_on3's is 0 ($pl3): the larger position sorts first.
        self.assertEqual(order, ["$pl3", "$t_on3"])


class IterativeAuthCheckTests(unittest.TestCase):
    def setUp(self) -> None:
        self.room = Room(RoomVersions.V11)
        self.main = self.room.create(ALICE, users={BOB: 50})
        self.join = self.main.join(BOB)
        self.topic = self.main.topic(BOB, "from bob")
        self.rules = default_auth_rules()

    def check(self, state: dict[tuple[str, str], str], ids: list[str]) -> dict[tuple[str, str], str]:
        return iterative_auth_checks(self.room.room_version, AuthGraph(self.room.events), state, ids, self.rules)

    def test_falls_back_to_own_auth_events(self) -> None:
        """A key missing from the state is taken from the event's own auth events."""
        state = self.check({}, [self.topic.event_id])
        self.assertEqual(state, {("m.room.topic", ""): self.topic.event_id})

    def test_state_wins_over_own_auth_events(self) -> None:
        """Where the state has the key, the event's own auth event for it is ignored."""
        demote = self.main.power(ALICE, {ALICE: 100})
        state = self.check({("m.room.power_levels", ""): demote.event_id}, [self.topic.event_id])
        self.assertEqual(state, {("m.room.power_levels", ""): demote.event_id})

    def test_rejected_auth_event_is_not_used(self) -> None:
        """A rejected auth event is never used as the fallback."""
        self.join.internal_metadata.rejected_reason = "auth_error"
        self.assertEqual(self.check({}, [self.topic.event_id]), {})

    def test_rejected_state_event_is_not_used(self) -> None:
        """A rejected event in the partial state is skipped for the event's own auth event."""
        leave = self.main.member(BOB, BOB, "leave", rejected=True)
        state = self.check({("m.room.member", BOB): leave.event_id}, [self.topic.event_id])
        self.assertEqual(state[("m.room.topic", "")], self.topic.event_id)

    def test_rejected_events_are_not_applied(self) -> None:
        """An event flagged rejected is never applied, even when the rules would allow it."""
        self.topic.internal_metadata.rejected_reason = "auth_error"
        self.assertEqual(self.check({}, [self.topic.event_id]), {})

    def test_initial_state_is_not_mutated(self) -> None:
        """The pure form works on a copy of the initial state."""
        initial: dict[tuple[str, str], str] = {}
        self.check(initial, [self.topic.event_id])
        self.assertEqual(initial, {})
