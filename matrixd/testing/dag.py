"""Seeded random room DAGs for testing authorization rules and state resolution.

A generated room starts with the usual creation events (create, creator join,
power levels, join rules) and then takes a random walk: memberships of every
kind, power-level promotions and demotions (some of them not allowed),
join-rule flips, topics and names, redactions, aliases, third-party invites,
bans of admins by admins, forks (concurrent branches from a shared ancestor,
authored by different senders on different servers) and merges.  A share of the
events is built to be rejected: a sender without power, stale or malformed
``auth_events``, a second create event, a state key naming someone else.

The generator does not decide what is allowed: it only needs a plausible idea
of the room state to pick senders and ``auth_events``.  Driven on its own
(:func:`generate_dag`) it keeps a naive state per event that applies every
event meant to be valid.  Driven step by step (:class:`RandomRoomWalk`) a
caller can feed back the real outcome of each event (rejected or not, the
state after it) and the resolved state before the next one, so that one
unexpected rejection does not snowball into a room where everything fails.

Event ids are real for each format: ``$random:domain`` for rooms v1-v2 and the
reference hash for v3+ (``matrixd.events.hashing`` unless an ``event_id_fn`` is
injected); content hashes are real and v1/v2 citations carry reference hashes.
Events carry placeholder signatures from the right servers (the sender's, and
the authorising server of a restricted join): auth rules and state resolution
do not verify them.  Third-party invite ``signed`` blocks are really signed.
"""

from __future__ import annotations

import random
import string
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import attrs

from unpaddedbase64 import encode_base64

from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.events.hashing import compute_content_hash, compute_event_id, event_reference
from matrixd.events.room_versions import EventFormat, RoomVersion

StateMapIds = Mapping[StateKey, str]
EventIdFn = Callable[[JsonDict, RoomVersion], str]

CREATE: StateKey = ("m.room.create", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")
JOIN_RULES: StateKey = ("m.room.join_rules", "")

# Plenty of users on a few servers, so forks can be authored on different servers.
USER_POOL: tuple[str, ...] = (
    "@alice:a.example",
    "@bob:b.example",
    "@carol:c.example",
    "@dave:a.example",
    "@erin:b.example",
    "@frank:c.example",
    "@grace:a.example",
    "@heidi:b.example",
)

_INFINITE_POWER = 2**62
_TS_BASE = 1_700_000_000_000


def default_event_id(pdu: JsonDict, room_version: RoomVersion) -> str:
    """matrixd's event id: carried in v1-v2 PDUs, the reference hash from v3."""
    return compute_event_id(pdu, room_version)


def domain_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def auth_types_for(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: Optional[str],
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The ``(type, state_key)`` pairs the auth events selection algorithm names.

    See "Auth events selection" in the server-server API; the create event is
    not selected from room v12.
    """
    if event_type == "m.room.create":
        return []
    keys: list[StateKey] = []
    if not room_version.room_id_is_create_event_hash:
        keys.append(CREATE)
    keys.append(POWER_LEVELS)
    keys.append(("m.room.member", sender))
    if event_type == "m.room.member" and state_key is not None:
        if state_key != sender:
            keys.append(("m.room.member", state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            keys.append(JOIN_RULES)
        tpi = content.get("third_party_invite")
        if membership == "invite" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            if isinstance(signed, dict) and isinstance(signed.get("token"), str):
                keys.append(("m.room.third_party_invite", signed["token"]))
        via = content.get("join_authorised_via_users_server")
        if membership == "join" and room_version.restricted_join_rule and isinstance(via, str):
            if ("m.room.member", via) not in keys:
                keys.append(("m.room.member", via))
    return keys


def select_auth_events(
    room_version: RoomVersion,
    state: StateMapIds,
    event_type: str,
    sender: str,
    state_key: Optional[str],
    content: Mapping[str, Any],
) -> list[str]:
    """The ids the auth events selection algorithm picks from ``state``."""
    return [state[k] for k in auth_types_for(room_version, event_type, sender, state_key, content) if k in state]


@attrs.frozen
class GeneratedDag:
    """One generated room: events in a topological order (parents and auth events first)."""

    seed: int
    room_version: RoomVersion
    room_id: str
    events: list[Event]
    notes: dict[str, str]  # event id -> what the generator meant by it
    outliers: list[Event]  # known events outside the room (cited as bad auth events)


class EventFactory:
    """Builds PDU dicts of one room version with ids that are valid for its format."""

    def __init__(self, room_version: RoomVersion, rng: random.Random, event_id_fn: EventIdFn = default_event_id) -> None:
        self.room_version = room_version
        self.rng = rng
        self.room_id = ""
        self.events: dict[str, Event] = {}
        self._event_id_fn = event_id_fn
        self._ts = _TS_BASE

    def _random_string(self, n: int) -> str:
        return "".join(self.rng.choice(string.ascii_letters) for _ in range(n))

    def next_ts(self) -> int:
        """A mostly increasing clock; sometimes repeats so ordering ties are exercised."""
        if self.rng.random() >= 0.1:
            self._ts += self.rng.randint(1, 1000)
        return self._ts

    def _refs(self, event_ids: Sequence[str]) -> list[Any]:
        """Citations in the room version's format (v1/v2: ids with their reference hashes)."""
        if self.room_version.event_format == EventFormat.V1:
            return [event_reference(self.events[e]) if e in self.events else [e, {}] for e in event_ids]
        return list(event_ids)

    def make(
        self,
        event_type: str,
        sender: str,
        content: JsonDict,
        *,
        prev_events: Sequence[str],
        auth_events: Sequence[str],
        state_key: Optional[str] = None,
        redacts: Optional[str] = None,
        ts: Optional[int] = None,
        room_id: Optional[str] = None,
    ) -> Event:
        """Build one event, register it, and return it.

        ``depth`` is one more than the deepest prev event.  ``room_id`` defaults
        to the factory's room (the create event of a v12 room has none).
        """
        rv = self.room_version
        depth = 1 + max((self.events[p].depth for p in prev_events if p in self.events), default=0)
        pdu: JsonDict = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "depth": depth,
            "prev_events": self._refs(prev_events),
            "auth_events": self._refs(auth_events),
            "origin_server_ts": self.next_ts() if ts is None else ts,
            "signatures": _placeholder_signatures(sender, content),
        }
        rid = self.room_id if room_id is None else room_id
        if rid:
            pdu["room_id"] = rid
        if state_key is not None:
            pdu["state_key"] = state_key
        if redacts is not None:
            if rv.redacts_in_content:
                content["redacts"] = redacts
            else:
                pdu["redacts"] = redacts
        if rv.event_format == EventFormat.V1:
            pdu["event_id"] = f"${self._random_string(18)}:{domain_of(sender)}"
        pdu["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu))}
        event_id = self._event_id_fn(pdu, rv)
        while event_id in self.events:  # identical content: nudge the clock
            pdu["origin_server_ts"] += 1
            pdu["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu))}
            event_id = self._event_id_fn(pdu, rv)
        event = Event(pdu, rv, event_id=event_id)
        self.events[event_id] = event
        return event

    def make_create(self, creator: str, content: JsonDict) -> Event:
        """The create event; fixes the room id (from its hash in v12)."""
        if self.room_version.room_id_is_create_event_hash:
            create = self.make("m.room.create", creator, content, prev_events=[], auth_events=[], state_key="")
            self.room_id = "!" + create.event_id[1:]
            return create
        self.room_id = f"!{self._random_string(18)}:{domain_of(creator)}"
        return self.make("m.room.create", creator, content, prev_events=[], auth_events=[], state_key="")


class RoomView:
    """Reads room facts (memberships, power) out of a state map of event ids."""

    def __init__(self, room_version: RoomVersion, events: Mapping[str, Event], state: StateMapIds) -> None:
        self.rv = room_version
        self.events = events
        self.state = state

    def content(self, key: StateKey) -> Optional[JsonDict]:
        eid = self.state.get(key)
        return None if eid is None else self.events[eid].content

    def membership(self, user: str) -> Optional[str]:
        c = self.content(("m.room.member", user))
        m = None if c is None else c.get("membership")
        return m if isinstance(m, str) else None

    def join_rule(self) -> Optional[str]:
        c = self.content(JOIN_RULES)
        r = None if c is None else c.get("join_rule")
        return r if isinstance(r, str) else None

    def creators(self) -> set[str]:
        eid = self.state.get(CREATE)
        if eid is None:
            return set()
        create = self.events[eid]
        found = {create.sender}
        if not self.rv.implicit_room_creator and isinstance(create.content.get("creator"), str):
            found = {create.content["creator"]}
        extra = create.content.get("additional_creators")
        if self.rv.privileged_creators and isinstance(extra, list):
            found.update(u for u in extra if isinstance(u, str))
        return found

    def power_levels(self) -> JsonDict:
        return self.content(POWER_LEVELS) or {}

    def level_of(self, user: str) -> int:
        if self.rv.privileged_creators and user in self.creators():
            return _INFINITE_POWER
        pl = self.content(POWER_LEVELS)
        if pl is None:
            return 100 if user in self.creators() else 0
        users = pl.get("users")
        if isinstance(users, dict) and user in users:
            return _as_int(users[user], 0)
        return _as_int(pl.get("users_default"), 0)

    def threshold(self, name: str, default: int) -> int:
        pl = self.content(POWER_LEVELS)
        if pl is None:
            return 0 if name == "invite" else default
        return _as_int(pl.get(name), default)

    def joined(self) -> list[str]:
        return [u for u in USER_POOL if self.membership(u) == "join"]


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


@attrs.frozen
class _Plan:
    """What the walk wants to send next, before auth events are chosen."""

    event_type: str
    sender: str
    content: JsonDict
    note: str
    state_key: Optional[str] = None
    redacts: Optional[str] = None
    meant_valid: bool = True


class RandomRoomWalk:
    """A step-by-step generator of one room's DAG (see the module docstring).

    Use :meth:`genesis` once, then repeat :meth:`pick_prev_events`,
    :meth:`build_event` and (optionally) :meth:`record` until :attr:`done`.
    """

    def __init__(
        self,
        room_version: RoomVersion,
        seed: int,
        n_events: int = 40,
        event_id_fn: EventIdFn = default_event_id,
    ) -> None:
        self.rv = room_version
        self.seed = seed
        self.rng = random.Random(f"{room_version.identifier}/{seed}")
        self.factory = EventFactory(room_version, self.rng, event_id_fn)
        self.n_events = n_events
        n_users = self.rng.randint(4, len(USER_POOL))
        self.users = list(USER_POOL[:n_users])
        self.creator = self.users[0]
        self.order: list[Event] = []
        self.notes: dict[str, str] = {}
        self.extremities: list[str] = []
        self._state_after: dict[str, dict[StateKey, str]] = {}
        self._rejected: set[str] = set()
        self._tpi_keys: dict[str, tuple[Any, str]] = {}  # token -> (signing key, sender)
        self._pl_history: list[str] = []
        # Known events that are not part of this room's DAG (auth events from another room).
        self.outliers: list[Event] = []

    # -- driving --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return len(self.order) >= self.n_events

    @property
    def events(self) -> dict[str, Event]:
        return self.factory.events

    def genesis(self) -> list[Event]:
        """Create event, creator join, power levels, join rules (and maybe history visibility)."""
        rv, rng = self.rv, self.rng
        create_content: JsonDict = {"room_version": rv.identifier}
        if not rv.implicit_room_creator:
            create_content["creator"] = self.creator
        if rv.privileged_creators and rng.random() < 0.3:
            create_content["additional_creators"] = [self.users[1]]
        if rng.random() < 0.1:
            create_content["m.federate"] = False
        create = self.factory.make_create(self.creator, create_content)
        self._append(create, {}, "create")
        state: dict[StateKey, str] = {CREATE: create.event_id}

        def step(plan: _Plan) -> None:
            prev = [self.order[-1].event_id]
            auth = select_auth_events(rv, state, plan.event_type, plan.sender, plan.state_key, plan.content)
            ev = self.factory.make(plan.event_type, plan.sender, plan.content, prev_events=prev,
                                   auth_events=auth, state_key=plan.state_key)
            state[ev.state_key_tuple()] = ev.event_id
            self._append(ev, dict(state), plan.note)

        step(_Plan("m.room.member", self.creator, {"membership": "join"}, "creator join", state_key=self.creator))
        users: JsonDict = {} if rv.privileged_creators else {self.creator: 100}
        creators = {self.creator, *create_content.get("additional_creators", ())}
        for u in self.users[1:]:
            if rng.random() < 0.35 and not (rv.privileged_creators and u in creators):
                users[u] = rng.choice([50, 100])
        pl: JsonDict = {"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
                        "ban": 50, "kick": 50, "redact": 50, "invite": rng.choice([0, 50])}
        if rng.random() < 0.4:
            pl["events"] = {"m.room.name": rng.choice([0, 50, 100]), "m.room.power_levels": 100}
        step(_Plan("m.room.power_levels", self.creator, pl, "initial power levels", state_key=""))
        step(_Plan("m.room.join_rules", self.creator, {"join_rule": self._random_join_rule()},
                   "initial join rules", state_key=""))
        if rng.random() < 0.5:
            step(_Plan("m.room.history_visibility", self.creator, {"history_visibility": "shared"},
                       "history visibility", state_key=""))
        self._state_after[self.order[-1].event_id] = dict(state)
        self.extremities = [self.order[-1].event_id]
        return list(self.order)

    def pick_prev_events(self) -> list[str]:
        """Mostly extend a branch; sometimes fork from a recent ancestor or merge branches."""
        rng = self.rng
        r = rng.random()
        if r < 0.17 and len(self.extremities) >= 2:
            k = min(len(self.extremities), rng.choice([2, 2, 3]))
            return sorted(rng.sample(self.extremities, k))
        if r < 0.32 and len(self.order) > 2:
            window = self.order[-8:]
            return [rng.choice(window).event_id]
        # Bias towards the most recent branch so branches grow long enough to matter.
        if rng.random() < 0.6:
            return [self.extremities[-1]]
        return [rng.choice(self.extremities)]

    def naive_state_before(self, prev_events: Sequence[str]) -> dict[StateKey, str]:
        """The walk's own guess at the state before an event (no real resolution)."""
        states = [self._state_after[p] for p in prev_events]
        if len(states) == 1:
            return dict(states[0])
        merged: dict[StateKey, str] = {}
        for key in sorted(set().union(*states)):
            candidates = sorted({s[key] for s in states if key in s})
            if len(candidates) == 1:
                merged[key] = candidates[0]
            else:
                deepest = max(self.events[c].depth for c in candidates)
                merged[key] = self.rng.choice([c for c in candidates if self.events[c].depth == deepest])
        return merged

    def build_event(self, prev_events: Sequence[str], state_before: Optional[StateMapIds] = None) -> Event:
        """Choose and build the next event on top of ``prev_events``.

        ``state_before`` is the real state before it if the caller knows it;
        otherwise the walk's naive guess is used.
        """
        state = dict(state_before) if state_before is not None else self.naive_state_before(prev_events)
        view = RoomView(self.rv, self.events, state)
        plan = self._plan(view)
        auth, auth_note = self._auth_events(view, plan)
        event = self.factory.make(plan.event_type, plan.sender, plan.content, prev_events=prev_events,
                                  auth_events=auth, state_key=plan.state_key, redacts=plan.redacts)
        after = dict(state)
        if plan.meant_valid and not auth_note and event.is_state():
            after[event.state_key_tuple()] = event.event_id
        self._append(event, after, plan.note + auth_note)
        if plan.event_type == "m.room.power_levels":
            self._pl_history.append(event.event_id)
        self.extremities = [e for e in self.extremities if e not in prev_events] + [event.event_id]
        return event

    def record(self, event_id: str, state_after: StateMapIds, rejected: bool) -> None:
        """Feed back the real outcome of an event so later choices stay plausible."""
        self._state_after[event_id] = dict(state_after)
        if rejected:
            self._rejected.add(event_id)

    def _append(self, event: Event, state_after: dict[StateKey, str], note: str) -> None:
        self.order.append(event)
        self.notes[event.event_id] = note
        self._state_after[event.event_id] = state_after

    # -- choosing what to send ------------------------------------------------

    def _random_join_rule(self) -> str:
        rules = ["public", "public", "invite"]
        if self.rv.knock_join_rule:
            rules.append("knock")
        if self.rv.restricted_join_rule:
            rules.append("restricted")
        if self.rv.knock_restricted_join_rule:
            rules.append("knock_restricted")
        return self.rng.choice(rules)

    def _join_rules_content(self, rule: str) -> JsonDict:
        content: JsonDict = {"join_rule": rule}
        if rule in ("restricted", "knock_restricted"):
            content["allow"] = [{"type": "m.room_membership", "room_id": "!other:a.example"}]
        return content

    def _plan(self, view: RoomView) -> _Plan:
        actions: list[tuple[float, Callable[[RoomView], Optional[_Plan]]]] = [
            (6, self._plan_join), (2, self._plan_leave), (3, self._plan_invite), (2, self._plan_kick),
            (2, self._plan_ban), (1, self._plan_unban), (4, self._plan_power_levels),
            (2, self._plan_join_rules), (3, self._plan_topic_or_name), (3, self._plan_message),
            (1, self._plan_redaction), (1, self._plan_odd_state), (1, self._plan_third_party),
        ]
        if self.rv.knock_join_rule:
            actions.append((2, self._plan_knock))
        if self.rv.special_case_aliases_auth:
            actions.append((1, self._plan_aliases))
        weights = [w for w, _ in actions]
        for _ in range(50):
            _, chooser = self.rng.choices(actions, weights)[0]
            plan = chooser(view)
            if plan is not None:
                return plan
        return self._plan_message(view) or _Plan("m.room.message", self.creator, {"body": "hi"}, "fallback")

    def _someone(self, view: RoomView, *, joined: bool = True) -> str:
        """Usually a member in good standing; sometimes anyone (to get rejections)."""
        members = view.joined()
        if joined and members and self.rng.random() < 0.9:
            return self.rng.choice(members)
        return self.rng.choice(self.users)

    def _powerful(self, view: RoomView, threshold: int) -> str:
        members = [u for u in view.joined() if view.level_of(u) >= threshold]
        if members and self.rng.random() < 0.8:
            return self.rng.choice(members)
        return self._someone(view)

    def _plan_join(self, view: RoomView) -> Optional[_Plan]:
        rule = view.join_rule()
        outside = [u for u in self.users if view.membership(u) != "join"]
        if not outside:
            return None
        user = self.rng.choice(outside)
        content: JsonDict = {"membership": "join"}
        note = f"join ({rule}, was {view.membership(user)})"
        if rule in ("restricted", "knock_restricted") and self.rv.restricted_join_rule and self.rng.random() < 0.7:
            via = self._powerful(view, view.threshold("invite", 0))
            content["join_authorised_via_users_server"] = via
            note += f" via {via}"
        if self.rng.random() < 0.05:
            return _Plan("m.room.member", self._someone(view), content, "join on someone else's behalf",
                         state_key=user, meant_valid=False)
        return _Plan("m.room.member", user, content, note, state_key=user)

    def _plan_leave(self, view: RoomView) -> Optional[_Plan]:
        inside = [u for u in self.users if view.membership(u) in ("join", "invite", "knock")]
        if len(view.joined()) <= 2 and self.rng.random() < 0.8:
            return None
        if self.rng.random() < 0.1:
            inside = list(self.users)
        if not inside:
            return None
        user = self.rng.choice(inside)
        if self.rv.privileged_creators and user in view.creators() and self.rng.random() < 0.7:
            return None
        return _Plan("m.room.member", user, {"membership": "leave"}, f"leave (was {view.membership(user)})",
                     state_key=user)

    def _plan_invite(self, view: RoomView) -> Optional[_Plan]:
        sender = self._powerful(view, view.threshold("invite", 0))
        target = self.rng.choice(self.users)
        return _Plan("m.room.member", sender, {"membership": "invite"},
                     f"invite {target} (was {view.membership(target)})", state_key=target)

    def _plan_kick(self, view: RoomView) -> Optional[_Plan]:
        sender = self._powerful(view, view.threshold("kick", 50))
        targets = [u for u in self.users if u != sender and view.membership(u) in ("join", "invite", "knock")]
        if not targets:
            return None
        target = self.rng.choice(targets)
        return _Plan("m.room.member", sender, {"membership": "leave"},
                     f"kick {target} (levels {view.level_of(sender)} vs {view.level_of(target)})", state_key=target)

    def _plan_ban(self, view: RoomView) -> Optional[_Plan]:
        sender = self._powerful(view, view.threshold("ban", 50))
        others = [u for u in self.users if u != sender]
        admins = [u for u in others if view.level_of(u) >= 50]
        target = self.rng.choice(admins if admins and self.rng.random() < 0.4 else others)
        return _Plan("m.room.member", sender, {"membership": "ban"},
                     f"ban {target} (levels {view.level_of(sender)} vs {view.level_of(target)})", state_key=target)

    def _plan_unban(self, view: RoomView) -> Optional[_Plan]:
        banned = [u for u in self.users if view.membership(u) == "ban"]
        if not banned:
            return None
        sender = self._powerful(view, view.threshold("ban", 50))
        target = self.rng.choice(banned)
        return _Plan("m.room.member", sender, {"membership": "leave"}, f"unban {target}", state_key=target)

    def _plan_knock(self, view: RoomView) -> Optional[_Plan]:
        outside = [u for u in self.users if view.membership(u) != "join"] or list(self.users)
        user = self.rng.choice(outside)
        return _Plan("m.room.member", user, {"membership": "knock"},
                     f"knock ({view.join_rule()}, was {view.membership(user)})", state_key=user)

    def _plan_power_levels(self, view: RoomView) -> Optional[_Plan]:
        rng = self.rng
        sender = self._powerful(view, 50)
        old = view.power_levels()
        content: JsonDict = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()}
        users = content.setdefault("users", {})
        own = view.level_of(sender)
        kind = rng.choice(["promote", "promote", "demote", "demote_self", "threshold", "events", "string"])
        note = f"power levels by {sender} ({own}): "
        if kind == "promote":
            target = rng.choice(self.users)
            level = rng.choice([25, 50, 75, 100, 101])
            users[target] = level
            note += f"{target} -> {level}"
        elif kind == "demote":
            holders = [u for u in users if u != sender] or self.users
            target = rng.choice(holders)
            if rng.random() < 0.5:
                users.pop(target, None)
            else:
                users[target] = rng.choice([0, 10])
            note += f"demote {target} (was {view.level_of(target)})"
        elif kind == "demote_self":
            users[sender] = rng.choice([0, 50])
            note += "demote self"
        elif kind == "threshold":
            name = rng.choice(["ban", "kick", "invite", "redact", "state_default", "events_default", "users_default"])
            content[name] = rng.choice([0, 25, 50, 100])
            note += f"{name} -> {content[name]}"
        elif kind == "events":
            events = content.setdefault("events", {})
            etype = rng.choice(["m.room.name", "m.room.topic", "m.room.message"])
            events[etype] = rng.choice([0, 50, 100])
            note += f"events[{etype}] -> {events[etype]}"
        else:
            target = rng.choice(self.users)
            odd: list[Any] = ["50", "0", " 50 ", "+10", "0075", "-5", "5x", "1.5", ""]
            if not self.rv.strict_canonicaljson:
                odd += [50.7, 99.99]
            users[target] = rng.choice(odd)
            if rng.random() < 0.3:
                # A non-numeric string is only defined (rejected) once values must be integers;
                # before v10 the rules say nothing about thresholds like ban: "x".
                choices = ["50", " 25"] + (["x"] if self.rv.enforce_int_power_levels else [])
                content[rng.choice(["ban", "kick", "state_default"])] = rng.choice(choices)
            note += f"odd value {target} -> {users[target]!r}"
        if self.rv.privileged_creators and rng.random() < 0.1:
            users[self.creator] = 100
            note += " (lists a creator)"
        elif self.rv.privileged_creators:
            dropped = [c for c in sorted(view.creators()) if users.pop(c, None) is not None]
            if dropped:
                note += f" (creator entries dropped: {dropped})"
        return _Plan("m.room.power_levels", sender, content, note, state_key="")

    def _plan_join_rules(self, view: RoomView) -> Optional[_Plan]:
        sender = self._powerful(view, 50)
        rule = self._random_join_rule()
        return _Plan("m.room.join_rules", sender, self._join_rules_content(rule),
                     f"join rules -> {rule} by {sender}", state_key="")

    def _plan_topic_or_name(self, view: RoomView) -> Optional[_Plan]:
        sender = self._someone(view)
        if self.rng.random() < 0.5:
            return _Plan("m.room.topic", sender, {"topic": f"t{self.rng.randint(0, 999)}"}, "topic", state_key="")
        return _Plan("m.room.name", sender, {"name": f"n{self.rng.randint(0, 999)}"}, "name", state_key="")

    def _plan_message(self, view: RoomView) -> Optional[_Plan]:
        sender = self._someone(view)
        return _Plan("m.room.message", sender, {"msgtype": "m.text", "body": f"m{self.rng.randint(0, 999)}"},
                     "message")

    def _plan_redaction(self, view: RoomView) -> Optional[_Plan]:
        sender = self._someone(view)
        target = self.rng.choice(self.order).event_id
        return _Plan("m.room.redaction", sender, {}, f"redact {target}", redacts=target)

    def _plan_aliases(self, view: RoomView) -> Optional[_Plan]:
        sender = self._someone(view, joined=self.rng.random() < 0.5)
        domain = domain_of(sender) if self.rng.random() < 0.7 else domain_of(self.rng.choice(self.users))
        return _Plan("m.room.aliases", sender, {"aliases": [f"#x:{domain}"]}, f"aliases for {domain}",
                     state_key=domain)

    def _plan_odd_state(self, view: RoomView) -> Optional[_Plan]:
        """Events the rules single out: a second create, a state key naming someone else, bad members."""
        rng = self.rng
        sender = self._someone(view)
        kind = rng.choice(["create", "user_key", "own_key", "no_membership", "unknown_membership"])
        if kind == "create" and self.rv.room_id_is_create_event_hash:
            kind = "user_key"
        if kind == "create" and not self.rv.room_id_is_create_event_hash:
            # (In v12 a create event with a room_id is not even a well-formed PDU.)
            return _Plan("m.room.create", sender, {"creator": sender, "room_version": self.rv.identifier},
                         "second create", state_key="", meant_valid=False)
        if kind in ("user_key", "own_key"):
            key = sender if kind == "own_key" else rng.choice(self.users)
            return _Plan("org.example.profile", sender, {"k": 1}, f"custom state at {key}", state_key=key)
        if kind == "no_membership":
            return _Plan("m.room.member", sender, {"displayname": "x"}, "member without membership",
                         state_key=sender, meant_valid=False)
        return _Plan("m.room.member", sender, {"membership": "dance"}, "unknown membership",
                     state_key=sender, meant_valid=False)

    def _plan_third_party(self, view: RoomView) -> Optional[_Plan]:
        """An m.room.third_party_invite, or an invite claiming one (signed well or badly)."""
        rng = self.rng
        if not self._tpi_keys or rng.random() < 0.4:
            sender = self._powerful(view, view.threshold("invite", 0))
            token = f"tok{rng.randint(0, 99999)}"
            key = _signing_key(rng)
            self._tpi_keys[token] = (key, sender)
            public = _encode_verify_key(key)
            content: JsonDict = {"display_name": "x", "key_validity_url": "https://id.example/v",
                                 "public_key": public}
            if rng.random() < 0.5:
                content["public_keys"] = [{"public_key": public}]
            return _Plan("m.room.third_party_invite", sender, content, f"third party invite {token}",
                         state_key=token)
        token = rng.choice(sorted(self._tpi_keys))
        key, inviter = self._tpi_keys[token]
        sender = inviter if rng.random() < 0.8 else self._someone(view)
        target = rng.choice(self.users)
        flaw = rng.choice(["", "", "", "no_signed", "wrong_mxid", "bad_signature", "wrong_token"])
        signed: JsonDict = {"mxid": target if flaw != "wrong_mxid" else self.creator,
                            "token": token if flaw != "wrong_token" else "nosuchtoken"}
        signed = _sign_json(signed, "id.example", _signing_key(rng) if flaw == "bad_signature" else key)
        tpi: JsonDict = {"display_name": "x", "signed": signed}
        if flaw == "no_signed":
            del tpi["signed"]
        return _Plan("m.room.member", sender, {"membership": "invite", "third_party_invite": tpi},
                     f"3pid invite {target} ({flaw or 'ok'})", state_key=target, meant_valid=not flaw)

    # -- auth events, sometimes wrong ----------------------------------------

    def _auth_events(self, view: RoomView, plan: _Plan) -> tuple[list[str], str]:
        """The selected auth events, or (at a low rate) a deliberately wrong list and a note."""
        rv = self.rv
        auth = select_auth_events(rv, view.state, plan.event_type, plan.sender, plan.state_key, plan.content)
        if self.rng.random() >= 0.08:
            return auth, ""
        kind = self.rng.choice(["drop", "extra", "duplicate", "stale_pl", "create", "rejected", "foreign"])
        if kind == "drop" and auth:
            victim = self.rng.choice(auth)
            return [a for a in auth if a != victim], f" [auth: dropped {self.events[victim].type}]"
        if kind == "extra":
            others = [eid for k, eid in view.state.items() if eid not in auth and k != CREATE]
            if others:
                extra = self.rng.choice(sorted(others))
                return auth + [extra], f" [auth: extra {self.events[extra].type}]"
        if kind == "duplicate":
            old = [e.event_id for e in self.order
                   if e.type == "m.room.member" and e.state_key == plan.sender and e.event_id not in auth]
            if old:
                return auth + [self.rng.choice(old)], " [auth: duplicate member]"
        if kind == "stale_pl" and self._pl_history:
            stale = self.rng.choice(self._pl_history)
            if view.state.get(POWER_LEVELS) != stale:
                return [a for a in auth if a != view.state.get(POWER_LEVELS)] + [stale], " [auth: stale power levels]"
        if kind == "create" and rv.room_id_is_create_event_hash:
            return [self.order[0].event_id] + auth, " [auth: lists create]"
        if kind == "rejected" and self._rejected:
            return auth + [self.rng.choice(sorted(self._rejected))], " [auth: cites a rejected event]"
        if kind == "foreign":
            stranger = self.factory.make("m.room.topic", plan.sender, {"topic": "elsewhere"}, prev_events=[],
                                         auth_events=[], state_key="", room_id="!elsewhere:z.example")
            self.outliers.append(stranger)
            return auth + [stranger.event_id], " [auth: event of another room]"
        return auth, ""


def _placeholder_signatures(sender: str, content: Mapping[str, Any]) -> JsonDict:
    """Signatures in the right places (sender's server, a restricted join's authorising
    server) with placeholder values: nothing here verifies them, but the auth rules
    require the authorising server's signature to be present (v8+ rule 4.2.1)."""
    sig = {"ed25519:auto": "c2lnbmF0dXJlIHBsYWNlaG9sZGVy"}
    out: JsonDict = {domain_of(sender): dict(sig)}
    via = content.get("join_authorised_via_users_server")
    if isinstance(via, str) and ":" in via:
        out[domain_of(via)] = dict(sig)
    return out


def _signing_key(rng: random.Random) -> Any:
    from nacl.signing import SigningKey

    return SigningKey(bytes(rng.getrandbits(8) for _ in range(32)))


def _encode_verify_key(key: Any) -> str:
    from unpaddedbase64 import encode_base64

    return str(encode_base64(bytes(key.verify_key)))


def _sign_json(obj: JsonDict, name: str, key: Any) -> JsonDict:
    from canonicaljson import encode_canonical_json
    from unpaddedbase64 import encode_base64

    sig = key.sign(encode_canonical_json(obj)).signature
    signed = dict(obj)
    signed["signatures"] = {name: {"ed25519:0": encode_base64(sig)}}
    return signed


def generate_dag(
    room_version: RoomVersion,
    seed: int,
    n_events: int = 40,
    event_id_fn: EventIdFn = default_event_id,
) -> GeneratedDag:
    """A whole random room, generated without feedback (naive state at each step)."""
    walk = RandomRoomWalk(room_version, seed, n_events, event_id_fn)
    walk.genesis()
    while not walk.done:
        walk.build_event(walk.pick_prev_events())
    return GeneratedDag(seed, room_version, walk.factory.room_id, list(walk.order), dict(walk.notes),
                        list(walk.outliers))


def topological_order(events: Iterable[Event]) -> list[Event]:
    """Events ordered so that prev and auth events (when present) come first; ties by depth then id."""
    by_id = {e.event_id: e for e in events}
    placed: set[str] = set()
    out: list[Event] = []
    pending = sorted(by_id.values(), key=lambda e: (e.depth, e.event_id))
    while pending:
        rest = []
        for e in pending:
            deps = [d for d in e.prev_event_ids() + e.auth_event_ids() if d in by_id]
            if all(d in placed for d in deps):
                placed.add(e.event_id)
                out.append(e)
            else:
                rest.append(e)
        if len(rest) == len(pending):
            raise ValueError("events contain a cycle")
        pending = rest
    return out
