"""Builders for auth-rule tests: rooms of any version, event by event.

A :class:`RoomBuilder` keeps a room's state map as events are added and fills
``auth_events`` (by the selection algorithm), ``prev_events`` and the room id
in the format of the room version, so a test only states what it is about.
Event ids are given explicitly (``$N:server`` for v1/v2, ``$evN`` after), so no
hashing is involved.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Optional, TypeVar

from matrixd.events.event import Event
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from matrixd.api.errors import AuthError
from matrixd.state.auth import (
    auth_types_for_event,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)

ALICE = "@alice:a.example"
BOB = "@bob:b.example"
CAROL = "@carol:c.example"
DAVE = "@dave:a.example"
EVE = "@eve:e.example"

ALL_VERSIONS: list[RoomVersion] = list(KNOWN_ROOM_VERSIONS.values())

_TestMethod = TypeVar("_TestMethod", bound=Callable[..., None])


def versions_where(predicate: Callable[[RoomVersion], bool]) -> list[RoomVersion]:
    """The known room versions a predicate on the flags holds for."""
    return [v for v in ALL_VERSIONS if predicate(v)]


def for_room_versions(versions: Iterable[RoomVersion]) -> Callable[[_TestMethod], _TestMethod]:
    """Mark ``test_x(self, room_version)`` to be expanded into ``test_x_v1`` ... by :func:`expand`."""

    def mark(method: _TestMethod) -> _TestMethod:
        method._room_versions = list(versions)  # type: ignore[attr-defined]
        return method

    return mark


_Class = TypeVar("_Class", bound=type)


def expand(cls: _Class) -> _Class:
    """Class decorator: one test method per room version for each marked method.

    Trial has no parametrisation; generated methods keep failures attributable
    to one version by name (``test_ban_v7``).
    """
    for name, method in list(vars(cls).items()):
        versions = getattr(method, "_room_versions", None)
        if versions is None:
            continue
        delattr(cls, name)
        for version in versions:
            setattr(cls, f"{name}_v{version.identifier}", _bind(method, version))
    return cls


def _bind(method: Callable[..., None], version: RoomVersion) -> Callable[[Any], None]:
    @functools.wraps(method)
    def test(self: Any) -> None:
        method(self, version)

    test.__doc__ = f"{(method.__doc__ or '').strip()} (room v{version.identifier})"
    return test


def domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


class RoomBuilder:
    """A room under construction: its events, its state, and event constructors."""

    def __init__(
        self,
        room_version: RoomVersion,
        creator: str = ALICE,
        create_content: Optional[dict[str, Any]] = None,
    ) -> None:
        self.room_version = room_version
        self.creator = creator
        self.state: dict[tuple[str, str], Event] = {}
        self.events: dict[str, Event] = {}
        self._counter = 0
        self.last_event_id: Optional[str] = None
        content: dict[str, Any] = {"room_version": room_version.identifier}
        if not room_version.implicit_room_creator:
            content["creator"] = creator
        if create_content:
            content.update(create_content)
        if room_version.room_id_is_create_event_hash:
            self.room_id = ""
        else:
            self.room_id = f"!room:{domain(creator)}"
        self.create_event = self.send("m.room.create", creator, content, state_key="", prev=[], auth=[])
        if room_version.room_id_is_create_event_hash:
            self.room_id = "!" + self.create_event.event_id[1:]

    # -- identifiers ------------------------------------------------------------

    def new_event_id(self, sender: str) -> str:
        self._counter += 1
        if self.room_version.event_format == EventFormat.V1:
            return f"${self._counter}:{domain(sender)}"
        return f"$ev{self._counter}"

    def _refs(self, ids: list[str]) -> list[Any]:
        if self.room_version.event_format == EventFormat.V1:
            return [[i, {"sha256": "aGFzaA"}] for i in ids]
        return list(ids)

    # -- building ---------------------------------------------------------------

    def make(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: Optional[str] = None,
        prev: Optional[list[str]] = None,
        auth: Optional[list[str]] = None,
        event_id: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        drop: Iterable[str] = (),
    ) -> Event:
        """An event on top of the current state; not added to it.

        ``prev`` defaults to the last event, ``auth`` to the selection from the
        current state; ``extra`` adds or overrides top-level PDU keys and
        ``drop`` removes them.
        """
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "origin_server_ts": 1_700_000_000_000 + self._counter,
            "depth": self._counter + 1,
            "hashes": {"sha256": "aGFzaA"},
            "signatures": {domain(sender): {"ed25519:k": "c2ln"}},
        }
        if event_type != "m.room.create" or not self.room_version.room_id_is_create_event_hash:
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if prev is None:
            prev = [] if self.last_event_id is None else [self.last_event_id]
        pdu["prev_events"] = self._refs(prev)
        eid = event_id or self.new_event_id(sender)
        if self.room_version.event_format == EventFormat.V1:
            pdu["event_id"] = eid
        pdu.update(extra or {})
        for key in drop:
            pdu.pop(key, None)
        if auth is None:
            probe = Event(pdu, self.room_version, event_id=eid)
            auth = [self.state[k].event_id for k in auth_types_for_event(self.room_version, probe) if k in self.state]
        pdu["auth_events"] = self._refs(auth)
        return Event(pdu, self.room_version, event_id=eid)

    def add(self, event: Event) -> Event:
        """Record ``event`` as accepted: it becomes the last event and, if state, current state."""
        self.events[event.event_id] = event
        self.last_event_id = event.event_id
        if event.is_state():
            self.state[event.state_key_tuple()] = event
        return event

    def send(self, event_type: str, sender: str, content: dict[str, Any], **kwargs: Any) -> Event:
        return self.add(self.make(event_type, sender, content, **kwargs))

    # -- common events ------------------------------------------------------------

    def member_event(
        self, sender: str, target: str, membership: str, content: Optional[dict[str, Any]] = None, **kwargs: Any
    ) -> Event:
        body = {"membership": membership}
        body.update(content or {})
        return self.make("m.room.member", sender, body, state_key=target, **kwargs)

    def member(self, sender: str, target: str, membership: str, **kwargs: Any) -> Event:
        return self.add(self.member_event(sender, target, membership, **kwargs))

    def join(self, user: str, **kwargs: Any) -> Event:
        return self.member(user, user, "join", **kwargs)

    def power_levels(self, content: dict[str, Any], sender: Optional[str] = None) -> Event:
        return self.send("m.room.power_levels", sender or self.creator, content, state_key="")

    def join_rules(self, rule: str, sender: Optional[str] = None, **content: Any) -> Event:
        return self.send("m.room.join_rules", sender or self.creator, {"join_rule": rule, **content}, state_key="")

    def auth_events_of(self, event: Event) -> dict[str, Event]:
        """event id -> event for every auth event the event cites that the room has seen."""
        return {i: self.events[i] for i in event.auth_event_ids() if i in self.events}


class _Drop:
    """Marker for power level overrides: remove the key."""


DROP: Any = _Drop()


def default_power_levels(room_version: RoomVersion, creator: str = ALICE, **overrides: Any) -> dict[str, Any]:
    """The power levels a fresh room starts with (creator at 100 unless v12 forbids listing them).

    ``overrides`` replace keys; an override of :data:`DROP` removes the key.
    """
    content: dict[str, Any] = {
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "events_default": 0,
        "state_default": 50,
        "users_default": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100},
        "users": {} if room_version.privileged_creators else {creator: 100},
    }
    content.update(overrides)
    return {k: v for k, v in content.items() if v is not DROP}


def joined_room(
    room_version: RoomVersion,
    join_rule: str = "public",
    members: Iterable[str] = (),
    users: Optional[dict[str, Any]] = None,
    **power_overrides: Any,
) -> RoomBuilder:
    """A room whose creator (ALICE) has joined and set power levels and the join rule.

    ``users`` adds entries to the power levels' ``users``; ``members`` then join
    through a public join rule before the final rule is set.
    """
    room = RoomBuilder(room_version)
    room.join(ALICE)
    content = default_power_levels(room_version, **power_overrides)
    content["users"] = {**content.get("users", {}), **(users or {})}
    room.power_levels(content)
    room.join_rules("public")
    for user in members:
        room.join(user)
    if join_rule != "public":
        room.join_rules(join_rule)
    return room


class AuthAssertions:
    """Mixin for trial test cases: run the full checks the way receipt of a PDU does."""

    def check(self, room: RoomBuilder, event: Event, state: Optional[dict[tuple[str, str], Event]] = None) -> None:
        """Both rule sets: auth events from the room, state from ``state`` (default: the room's)."""
        check_state_independent_auth_rules(
            room.room_version, event, room.auth_events_of(event), room.create_event
        )
        check_state_dependent_auth_rules(room.room_version, event, room.state if state is None else state)

    def assertAllowed(
        self, room: RoomBuilder, event: Event, state: Optional[dict[tuple[str, str], Event]] = None
    ) -> None:
        try:
            self.check(room, event, state)
        except AuthError as e:
            raise AssertionError(f"{event!r} was rejected in room v{room.room_version.identifier}: {e.msg}") from e

    def assertRejected(
        self,
        room: RoomBuilder,
        event: Event,
        fragment: str = "",
        state: Optional[dict[tuple[str, str], Event]] = None,
    ) -> AuthError:
        try:
            self.check(room, event, state)
        except AuthError as e:
            if fragment not in e.msg:
                raise AssertionError(f"rejected for {e.msg!r}, expected a message containing {fragment!r}") from e
            if e.code != 403 or e.errcode != "M_FORBIDDEN":
                raise AssertionError(f"rejection is {e.code} {e.errcode}, not 403 M_FORBIDDEN") from e
            return e
        raise AssertionError(f"{event!r} was allowed in room v{room.room_version.identifier}; expected {fragment!r}")
