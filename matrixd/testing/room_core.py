"""A room core (stores + room handlers) on an inline test database and a memory reactor."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from matrixd.app.core import RoomCore, build_room_core
from matrixd.crypto.keys import generate_signing_key
from matrixd.events.room_versions import DEFAULT_ROOM_VERSION, RoomVersion
from matrixd.testing.database import make_test_database_sync
from matrixd.types import Requester
from matrixd.util.clock import Clock


def make_room_core(testcase: TestCase, server_name: str = "test", *,
                   default_room_version: RoomVersion = DEFAULT_ROOM_VERSION,
                   **kwargs: Any) -> tuple[RoomCore, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    reactor.advance(1_700_000_000)
    db = make_test_database_sync(testcase, reactor)
    d = defer.ensureDeferred(build_room_core(
        clock=Clock(reactor), db=db, server_name=server_name, signing_key=generate_signing_key("t1"),
        default_room_version=default_room_version, **kwargs,
    ))
    return testcase.successResultOf(d), reactor


def requester(user_id: str, device_id: str = "DEV") -> Requester:
    return Requester(user_id=user_id, device_id=device_id, access_token_id=None)
