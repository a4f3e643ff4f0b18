"""Edge cases of the sync computation: tokens ahead of the server, memberships past `now`, visibility."""

from __future__ import annotations

from typing import Optional, Sequence

from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.handlers.filtering import DEFAULT_FILTER
from matrixd.handlers.sync.handler import SyncHandler
from matrixd.handlers.sync.types import SyncConfig, SyncResult
from matrixd.streams.token import StreamName, StreamToken
from tests.sync.helpers import DEVICE, SyncTestCase


class HideSecrets:
    """A visibility filter that hides events whose body is "secret" and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def filter_events_for_client(
        self, user_id: str, events: Sequence[Event], *, is_peeking: bool = False
    ) -> list[Event]:
        self.asked.extend(e.event_id for e in events)
        return [e for e in events if e.content.get("body") != "secret"]


class SyncEdgeTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice, self.atok = self.user("alice")
        self.bob, self.btok = self.user("bob")
        self.room = self.create_room(self.alice, preset="public_chat")

    def handler_with(self, visibility: HideSecrets) -> SyncHandler:
        area = self.hs.components.sync
        return SyncHandler(
            clock=self.hs.components.clock, notifier=self.core.notifier, stores=area.stores, typing=area.typing,
            presence=area.presence, push_rules=area.push_rules, visibility=visibility,
        )

    def test_token_from_the_future(self) -> None:
        """A since token ahead of the server waits (bounded) and never moves the client's positions back."""
        first = StreamToken.parse(self.sync(self.atok)["next_batch"])
        ahead = first.copy_and_replace(StreamName.EVENTS, first.events + 50)
        channel = self.request("GET", self.sync_path(ahead.to_string()), self.atok, await_result=False)
        channel.await_result(timeout=30)
        self.assertEqual(channel.code, 200)
        self.assertEqual(StreamToken.parse(channel.json_body["next_batch"]).events, ahead.events)

    def test_membership_after_now_reports_membership_at_now(self) -> None:
        """A leave persisted after `now` is not reported yet; the room stays joined for that sync."""
        self.join(self.bob, self.room)
        msg = self.send(self.alice, self.room, "before leave")
        now = self.core.notifier.current_token
        self.membership(self.bob, self.bob, self.room, "leave")
        config = SyncConfig(self.bob, DEVICE, DEFAULT_FILTER)
        result = self.hs.run(self.hs.components.sync.sync.compute(config, None, now))
        self.assertEqual([r.room_id for r in result.joined], [self.room])
        self.assertEqual(result.joined[0].timeline.events[-1].event_id, msg)
        self.assertEqual(result.left, [])

    def test_visibility_only_for_events_before_join(self) -> None:
        """History visibility is consulted for events before the user's join, not after."""
        secret = self.send(self.alice, self.room, "secret")
        before = self.send(self.alice, self.room, "before")
        self.join(self.bob, self.room)
        after_secret = self.send(self.alice, self.room, "secret")
        visibility = HideSecrets()
        handler = self.handler_with(visibility)
        config = SyncConfig(self.bob, DEVICE, DEFAULT_FILTER)
        result = self.hs.run(handler.compute(config, None, self.core.notifier.current_token))
        ids = [e.event_id for e in result.joined[0].timeline.events]
        self.assertNotIn(secret, ids)
        self.assertIn(before, ids)
        self.assertIn(after_secret, ids)
        self.assertIn(secret, visibility.asked)
        self.assertNotIn(after_secret, visibility.asked)

    def test_wake_between_compute_and_wait_is_not_lost(self) -> None:
        """An event announced after the sync computed "nothing new" but before it waited still ends the wait."""
        self.join(self.bob, self.room)
        test = self

        class RacingSyncHandler(SyncHandler):
            calls = 0

            async def compute(self, config: SyncConfig, since: Optional[StreamToken], now: StreamToken,
                              full_state: bool = False) -> SyncResult:
                result = await super().compute(config, since, now, full_state)
                RacingSyncHandler.calls += 1
                if RacingSyncHandler.calls == 1:
                    test.send(test.alice, test.room, "racing")
                return result

        area = self.hs.components.sync
        handler = RacingSyncHandler(
            clock=self.hs.components.clock, notifier=self.core.notifier, stores=area.stores, typing=area.typing,
            presence=area.presence, push_rules=area.push_rules, visibility=HideSecrets(),
        )
        config = SyncConfig(self.bob, DEVICE, DEFAULT_FILTER)
        since = self.core.notifier.current_token
        d = defer.ensureDeferred(handler.wait_for_sync(config, since, 30000, set_presence="offline"))
        result = self.successResultOf(d)
        self.assertEqual(RacingSyncHandler.calls, 2)
        self.assertEqual(result.joined[0].timeline.events[0].content["body"], "racing")
