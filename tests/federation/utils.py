"""Shared set-up for federation tests: a homeserver on an in-memory network, rooms with remote members."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.trial.unittest import TestCase

from matrixd.handlers.events.creation import EventSpec
from matrixd.testing.federation import FakeRemoteServer, FederationNetwork, install_federation_network
from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.testing.room_core import requester

REMOTE = "remote.test"


def make_federating_homeserver(
    testcase: TestCase, config: Optional[Mapping[str, Any]] = None, remote_name: str = REMOTE
) -> tuple[TestHomeserver, FederationNetwork, FakeRemoteServer]:
    """A test homeserver ("test") and a fake remote server on one in-memory network."""
    hs = make_homeserver(testcase, config)
    network = install_federation_network(hs)
    remote = FakeRemoteServer(network, remote_name)
    return hs, network, remote


def create_room(hs: TestHomeserver, creator: str, body: Optional[Mapping[str, Any]] = None) -> str:
    """A room created by the local user ``creator`` through the room core."""
    room_id: str = hs.run(hs.components.core.room_creation.create_room(requester(creator), dict(body or {})))
    return room_id


def send_event(hs: TestHomeserver, room_id: str, sender: str, event_type: str, content: Mapping[str, Any],
               state_key: Optional[str] = None) -> str:
    """An event built, auth-checked and persisted by the room core (signed by the homeserver)."""
    persisted = hs.run(hs.components.core.creation.send(room_id, EventSpec(event_type, sender, content, state_key)))
    event_id: str = persisted.event.event_id
    return event_id


def join(hs: TestHomeserver, room_id: str, user_id: str) -> str:
    """``user_id`` (possibly remote) joins a public room, as if its join had arrived over federation."""
    return send_event(hs, room_id, user_id, "m.room.member", {"membership": "join"}, state_key=user_id)
