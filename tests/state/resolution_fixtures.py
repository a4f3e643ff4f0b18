"""Builders for the state resolution tests: rooms with forks of realistic events.

A :class:`Room` makes events of one room version with explicit event ids (so
no hashing code is needed) whose ``auth_events`` follow the spec's auth
events selection against the state of the :class:`Fork` they are sent on.
Forks are cheap copies of a state map plus forward extremities, so a test
builds the DAG it needs and then resolves the forks' states.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Collection, Mapping, Optional, Sequence

from twisted.internet import defer

from matrixd.events.event import Event, InternalMetadata, StateKey
from matrixd.events.room_versions import EventFormat, RoomVersion
from matrixd.state.resolution import AuthRules, default_auth_rules, resolve_state

DOMAIN = "example.com"
ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CAROL = "@carol:example.com"
DAVE = "@dave:example.com"
EVE = "@eve:example.com"

IdFor = Callable[[dict[str, Any], RoomVersion], str]


class Room:
    """One room's events; ``id_for`` may compute real (hash) ids instead of the named ones."""

    def __init__(self, room_version: RoomVersion, id_for: Optional[IdFor] = None) -> None:
        self.room_version = room_version
        self.events: dict[str, Event] = {}
        self.room_id = "!room:" + DOMAIN
        self._id_for = id_for
        self._counter = itertools.count(1)
        self._ts = itertools.count(1000)

    # -- building -------------------------------------------------------------

    def _ref(self, event_id: str) -> Any:
        if self.room_version.event_format == EventFormat.V1:
            return [event_id, {"sha256": "aGFzaA"}]
        return event_id

    def make_event(
        self,
        etype: str,
        sender: str,
        content: dict[str, Any],
        state_key: Optional[str],
        prev: Sequence[str],
        auth: Sequence[str],
        *,
        name: Optional[str] = None,
        ts: Optional[int] = None,
        rejected: bool = False,
    ) -> Event:
        """Build and record one event with the given references."""
        n = next(self._counter)
        depth = 1 + max((self.events[p].depth for p in prev), default=0)
        pdu: dict[str, Any] = {
            "type": etype,
            "sender": sender,
            "content": content,
            "prev_events": [self._ref(p) for p in prev],
            "auth_events": [self._ref(a) for a in auth],
            "depth": depth,
            "origin_server_ts": next(self._ts) if ts is None else ts,
            "origin": DOMAIN,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        is_v12_create = etype == "m.room.create" and self.room_version.room_id_is_create_event_hash
        if not is_v12_create:
            pdu["room_id"] = self.room_id
        label = name if name is not None else f"E{n}"
        if self.room_version.event_format == EventFormat.V1:
            pdu["event_id"] = f"${label}:{DOMAIN}"
        if self._id_for is not None:
            event_id = self._id_for(pdu, self.room_version)
        elif self.room_version.event_format == EventFormat.V1:
            event_id = pdu["event_id"]
        else:
            event_id = "$" + label
        meta = InternalMetadata()
        if rejected:
            meta.rejected_reason = "auth_error"
        ev = Event(pdu, self.room_version, event_id=event_id, internal_metadata=meta)
        if is_v12_create:
            self.room_id = "!" + event_id[1:]
        self.events[event_id] = ev
        return ev

    def create(self, creator: str = ALICE, *, extra: Optional[dict[str, Any]] = None, public: bool = True,
               users: Optional[dict[str, int]] = None, **levels: int) -> "Fork":
        """A room with create, creator join, power levels and join rules: the usual first four events."""
        content: dict[str, Any] = {"room_version": self.room_version.identifier}
        if not self.room_version.implicit_room_creator:
            content["creator"] = creator
        content.update(extra or {})
        fork = Fork(self, {}, [])
        fork.send("m.room.create", creator, content, "", name="CREATE")
        fork.send("m.room.member", creator, {"membership": "join"}, creator, name="JOIN_" + _local(creator))
        pl_users = dict(users or {})
        if not self.room_version.privileged_creators:
            pl_users.setdefault(creator, 100)
        fork.send("m.room.power_levels", creator, power_levels(pl_users, **levels), "", name="PL1")
        fork.send("m.room.join_rules", creator, {"join_rule": "public" if public else "invite"}, "", name="JR1")
        return fork

    # -- running --------------------------------------------------------------

    async def fetch(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        """An event fetcher over this room's events."""
        return {e: self.events[e] for e in event_ids if e in self.events}


class Fork:
    """A line of history: the state after it and its forward extremities."""

    def __init__(self, room: Room, state: dict[StateKey, str], extremities: list[str]) -> None:
        self.room = room
        self.state = state
        self.extremities = extremities

    def branch(self) -> "Fork":
        return Fork(self.room, dict(self.state), list(self.extremities))

    def auth_events_for(self, etype: str, sender: str, content: Mapping[str, Any], state_key: Optional[str]) -> list[str]:
        """The spec's auth events selection against this fork's state."""
        if etype == "m.room.create":
            return []
        keys: list[StateKey] = []
        if not self.room.room_version.room_id_is_create_event_hash:
            keys.append(("m.room.create", ""))
        keys += [("m.room.power_levels", ""), ("m.room.member", sender)]
        if etype == "m.room.member" and state_key is not None:
            keys.append(("m.room.member", state_key))
            if content.get("membership") in ("join", "invite", "knock"):
                keys.append(("m.room.join_rules", ""))
        out: list[str] = []
        for k in keys:
            eid = self.state.get(k)
            if eid is not None and eid not in out:
                out.append(eid)
        return out

    def send(
        self,
        etype: str,
        sender: str,
        content: dict[str, Any],
        state_key: Optional[str] = None,
        *,
        name: Optional[str] = None,
        ts: Optional[int] = None,
        rejected: bool = False,
        auth: Optional[Sequence[str]] = None,
    ) -> Event:
        """Send an event on this fork; a state event updates the fork's state unless rejected."""
        auth_ids = list(auth) if auth is not None else self.auth_events_for(etype, sender, content, state_key)
        ev = self.room.make_event(
            etype, sender, content, state_key, list(self.extremities), auth_ids, name=name, ts=ts, rejected=rejected
        )
        if not rejected:
            self.extremities = [ev.event_id]
            if state_key is not None:
                self.state[(etype, state_key)] = ev.event_id
        return ev

    # -- shorthands -------------------------------------------------------------

    def member(self, sender: str, target: str, membership: str, **kw: Any) -> Event:
        return self.send("m.room.member", sender, {"membership": membership}, target, **kw)

    def join(self, user: str, **kw: Any) -> Event:
        return self.member(user, user, "join", **kw)

    def power(self, sender: str, users: Mapping[str, int], **kw: Any) -> Event:
        levels = {k: kw.pop(k) for k in list(kw) if k in _LEVEL_NAMES}
        return self.send("m.room.power_levels", sender, power_levels(users, **levels), "", **kw)

    def topic(self, sender: str, topic: str, **kw: Any) -> Event:
        return self.send("m.room.topic", sender, {"topic": topic}, "", **kw)

    def join_rules(self, sender: str, rule: str, **kw: Any) -> Event:
        return self.send("m.room.join_rules", sender, {"join_rule": rule}, "", **kw)


_LEVEL_NAMES = ("users_default", "events_default", "state_default", "ban", "kick", "redact", "invite", "events")


def power_levels(users: Mapping[str, int], **levels: Any) -> dict[str, Any]:
    """Power levels content with the spec's defaults for anything not given."""
    content: dict[str, Any] = {
        "users": dict(users),
        "users_default": 0,
        "events": {},
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
    }
    content.update(levels)
    return content


def _local(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0].upper()


def run(d: "defer.Deferred[Any]") -> Any:
    """The result of an already-fired Deferred (the fetchers here never wait)."""
    results: list[Any] = []
    failures: list[Any] = []
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    assert results, "resolution did not complete synchronously"
    return results[0]


def resolve(
    room: Room,
    state_sets: Sequence[Mapping[StateKey, str]],
    *,
    rules: Optional[AuthRules] = None,
    room_version: Optional[RoomVersion] = None,
) -> dict[StateKey, str]:
    """Resolve with the real auth rules (unless ``rules``) against the room's events."""
    result: dict[StateKey, str] = run(
        defer.ensureDeferred(
            resolve_state(
                room.room_id,
                room_version or room.room_version,
                state_sets,
                room.fetch,
                auth_rules=rules if rules is not None else default_auth_rules(),
            )
        )
    )
    return result


def build_big_forked_room(
    room_version: RoomVersion, members: int, conflicted: int, *, seed: int = 1, id_for: Optional[IdFor] = None
) -> tuple[Room, Fork, Fork]:
    """A room of ``members`` joined users split into two forks of ``conflicted`` state events in all.

    Each fork sends valid events only: topic and power level changes by the
    creator, kicks by moderators, display name changes by members.
    """
    import random

    rng = random.Random(seed)
    room = Room(room_version, id_for=id_for)
    mods = [f"@mod{i}:{DOMAIN}" for i in range(4)]
    main = room.create(ALICE, users={m: 50 for m in mods})
    for m in mods:
        main.join(m)
    users = [f"@u{i}:{DOMAIN}" for i in range(members)]
    for u in users:
        main.join(u)
    forks = (main.branch(), main.branch())
    kicked: set[str] = set()
    for n in range(conflicted):
        f = forks[n % 2]
        roll = rng.random()
        if roll < 0.05:
            f.topic(ALICE, f"topic {n}")
        elif roll < 0.10:
            pl = room.events[f.state[("m.room.power_levels", "")]].content
            levels = dict(pl["users"])
            levels[rng.choice(users)] = rng.choice([0, 10, 20])
            f.power(ALICE, levels)
        elif roll < 0.40:
            target = rng.choice([u for u in users[: members // 2] if u not in kicked] or users)
            kicked.add(target)
            f.member(rng.choice(mods), target, "leave")
        else:
            u = rng.choice(users[members // 2 :])
            f.send("m.room.member", u, {"membership": "join", "displayname": f"{u} {n}"}, u)
    return room, forks[0], forks[1]
