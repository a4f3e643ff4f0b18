"""Randomized differential tests of state resolution v2/v2.1 against Synapse, used as a black box.

Synapse (installed in the dev venv for this purpose only) resolves the same
events through its public ``resolve_events_with_store``; we hand it every
event as "in flight" so it computes auth chains itself. Rooms are random
forks of valid events, with three flavours of abuse: random rejection flags
on events that stay in state (servers disagreeing on rejection), and events
citing stale auth events.

Room version 1 is not compared: Synapse's v1 algorithm is known not to
follow the spec's wording, which ours does.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Callable, Collection, Mapping, Optional, Sequence

import synapse.event_auth  # noqa: F401  (import order: breaks synapse.state's import cycle)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS as SYNAPSE_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict
from synapse.state import v2 as synapse_v2
from synapse.storage.databases.main.event_federation import StateDifference
from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import AuthError
from matrixd.events.event import StateKey
from matrixd.events.room_versions import RoomVersion, RoomVersions
from matrixd.state import auth
from tests.state.resolution_fixtures import ALICE, BOB, CAROL, DAVE, EVE, Fork, Room, resolve, run

USERS = [ALICE, BOB, CAROL, DAVE, EVE, "@frank:example.com", "@gina:other.org"]
SEEDS = range(60)


def synapse_event_id(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The event id Synapse computes for a PDU (the reference hash from room v3)."""
    return make_event_from_dict(copy.deepcopy(pdu), SYNAPSE_ROOM_VERSIONS[room_version.identifier]).event_id


class _SynapseStore:
    """Synapse's StateResolutionStore over a room's events; every event is also passed in flight."""

    def __init__(self, room: Room) -> None:
        self.events = {
            eid: make_event_from_dict(
                copy.deepcopy(ev.get_pdu_json()),
                SYNAPSE_ROOM_VERSIONS[room.room_version.identifier],
                rejected_reason=ev.internal_metadata.rejected_reason,
            )
            for eid, ev in room.events.items()
        }

    async def get_events(self, event_ids: Collection[str], allow_rejected: bool = False) -> dict[str, EventBase]:
        return {
            e: self.events[e]
            for e in event_ids
            if e in self.events and (allow_rejected or not self.events[e].rejected_reason)
        }

    async def get_auth_chain_difference(
        self, room_id: str, state_sets: list[set[str]], conflicted_state: Optional[set[str]], additional: Optional[set[str]]
    ) -> StateDifference:
        # Everything is "in flight", so Synapse asks storage only about persisted events: none.
        assert not any(state_sets) and not conflicted_state and not additional
        return StateDifference(auth_difference=set(), conflicted_subgraph=set() if conflicted_state is not None else None)


class _NoWaitClock:
    async def sleep(self, duration: object) -> None:
        return None


def synapse_resolve(room: Room, state_sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
    store = _SynapseStore(room)
    d = defer.ensureDeferred(
        synapse_v2.resolve_events_with_store(
            _NoWaitClock(),
            room.room_id,
            SYNAPSE_ROOM_VERSIONS[room.room_version.identifier],
            state_sets,
            dict(store.events),
            store,
        )
    )
    return dict(run(d))


# -- random rooms ------------------------------------------------------------------


def allowed(fork: Fork, etype: str, sender: str, content: dict[str, Any], state_key: str) -> bool:
    """Whether the real auth rules accept the event on this fork (built, checked, then discarded)."""
    room = fork.room
    ev = room.make_event(
        etype, sender, content, state_key, list(fork.extremities), fork.auth_events_for(etype, sender, content, state_key)
    )
    del room.events[ev.event_id]
    keys = auth.auth_types_for_event(room.room_version, ev) + [("m.room.create", "")]
    auth_state = {k: room.events[fork.state[k]] for k in keys if k in fork.state}
    try:
        auth.check_state_dependent_auth_rules(room.room_version, ev, auth_state)
    except AuthError:
        return False
    return True


def random_action(rng: random.Random, fork: Fork) -> tuple[str, str, dict[str, Any], str]:
    room = fork.room
    sender = rng.choice(USERS)
    kind = rng.choice(["topic", "topic", "pl", "ban", "kick", "join", "join", "leave", "jr", "name", "invite"])
    target = rng.choice(USERS)
    if kind == "topic":
        return "m.room.topic", sender, {"topic": f"t{rng.randrange(1000)}"}, ""
    if kind == "name":
        return "m.room.name", sender, {"name": f"n{rng.randrange(1000)}"}, ""
    if kind == "jr":
        return "m.room.join_rules", sender, {"join_rule": rng.choice(["public", "invite"])}, ""
    if kind in ("join", "leave"):
        return "m.room.member", sender, {"membership": kind}, sender
    if kind in ("ban", "invite"):
        return "m.room.member", sender, {"membership": kind}, target
    if kind == "kick":
        return "m.room.member", sender, {"membership": "leave"}, target
    content = dict(room.events[fork.state[("m.room.power_levels", "")]].content)
    users = dict(content.get("users", {}))
    user = rng.choice(USERS)
    if rng.random() < 0.3:
        users.pop(user, None)
    else:
        users[user] = rng.choice([0, 10, 50, 75, 100])
    if room.room_version.privileged_creators:
        users.pop(ALICE, None)
    content["users"] = users
    if rng.random() < 0.3:
        content[rng.choice(["ban", "kick", "state_default", "events_default"])] = rng.choice([0, 25, 50, 75, 100])
    return "m.room.power_levels", sender, content, ""


def random_room(
    rng: random.Random, room_version: RoomVersion, *, reject_rate: float = 0.0, stale_auth_rate: float = 0.0,
    merges: bool = True, forks: int = 3, steps: int = 10,
) -> tuple[Room, list[Fork]]:
    """Random forks of a room; optionally some events flagged rejected or citing stale auth events."""
    room = Room(room_version, id_for=synapse_event_id)
    main = room.create(ALICE, users={BOB: rng.choice([0, 50, 100]), CAROL: rng.choice([0, 50]), DAVE: 50})
    for u in USERS[1:]:
        if rng.random() < 0.9:
            main.join(u)
    all_forks = [main]
    history: dict[StateKey, list[str]] = {k: [v] for k, v in main.state.items()}
    for _ in range(forks * steps):
        fork = rng.choice(all_forks)
        if rng.random() < 0.25 and len(all_forks) < forks + 2:
            fork = fork.branch()
            all_forks.append(fork)
        if merges and len(all_forks) > 1 and rng.random() < 0.1:
            other = rng.choice([f for f in all_forks if f is not fork])
            fork.state = resolve(room, [fork.state, other.state])
            fork.extremities = sorted(set(fork.extremities) | set(other.extremities))
            continue
        for _attempt in range(20):
            etype, sender, content, state_key = random_action(rng, fork)
            ok = allowed(fork, etype, sender, content, state_key)
            if not ok and rng.random() >= 0.1:
                continue
            auth_ids = fork.auth_events_for(etype, sender, content, state_key)
            if auth_ids and rng.random() < stale_auth_rate:
                i = rng.randrange(len(auth_ids))
                cited = room.events[auth_ids[i]]
                older = [e for e in history.get((cited.type, cited.state_key or ""), []) if e != auth_ids[i]]
                if older:
                    auth_ids[i] = rng.choice(older)
            flag = not ok or rng.random() < reject_rate
            if reject_rate or stale_auth_rate:
                ev = fork.send(etype, sender, content, state_key, auth=auth_ids)
                if flag:
                    ev.internal_metadata.rejected_reason = "auth_error"
            else:
                ev = fork.send(etype, sender, content, state_key, rejected=not ok)
            history.setdefault((etype, state_key), []).append(ev.event_id)
            break
    return room, all_forks


class DifferentialTests(unittest.TestCase):
    def _compare(self, room_version: RoomVersion, make: Callable[[random.Random], tuple[Room, list[Fork]]]) -> None:
        for seed in SEEDS:
            room, forks = make(random.Random(seed))
            sets = [f.state for f in forks]
            self.assertEqual(resolve(room, sets), synapse_resolve(room, sets), f"room {room_version.identifier} seed {seed}")

    def test_valid_forks(self) -> None:
        """Random forks of valid events (with merges) resolve as Synapse resolves them."""
        for rv in (RoomVersions.V2, RoomVersions.V10, RoomVersions.V12):
            self._compare(rv, lambda rng: random_room(rng, rv))

    def test_rejection_disagreements(self) -> None:
        """Random rejection flags on events left in state resolve as in Synapse."""
        for rv in (RoomVersions.V2, RoomVersions.V11, RoomVersions.V12):
            self._compare(rv, lambda rng: random_room(rng, rv, reject_rate=0.25, merges=False))

    def test_stale_auth_events(self) -> None:
        """Events citing older versions of their auth state resolve as in Synapse."""
        for rv in (RoomVersions.V6, RoomVersions.V11, RoomVersions.V12):
            self._compare(rv, lambda rng: random_room(rng, rv, stale_auth_rate=0.3, reject_rate=0.05, merges=False))
