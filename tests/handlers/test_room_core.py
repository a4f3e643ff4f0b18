"""Room creation, membership and sending through the real auth rules and storage."""

from typing import Any, Coroutine, TypeVar

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.api.errors import AuthError, MatrixError
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersions
from matrixd.testing.room_core import make_room_core, requester

T = TypeVar("T")
ALICE, BOB, CAROL = "@alice:test", "@bob:test", "@carol:test"


class RoomCoreTests(unittest.TestCase):
    def setUp(self) -> None:
        self.core, self.reactor = make_room_core(self)

    def run_(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(defer.ensureDeferred(coro))

    def fail_(self, coro: Coroutine[Any, Any, Any], exc: type = MatrixError) -> Any:
        return self.failureResultOf(defer.ensureDeferred(coro), exc).value

    def create(self, user: str = ALICE, **body: Any) -> str:
        return self.run_(self.core.room_creation.create_room(requester(user), body))

    def state(self, room_id: str) -> dict:  # type: ignore[type-arg]
        return dict(self.run_(self.core.stores.current_state.get_current_state_ids(room_id)))

    def test_create_room_every_version(self) -> None:
        """createRoom works in every room version and leaves the preset's state and one extremity."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            room_id = self.run_(self.core.room_creation.create_room(
                requester(ALICE), {"preset": "public_chat", "name": "n", "topic": "t"}, rv))
            st = self.state(room_id)
            for key in [("m.room.create", ""), ("m.room.member", ALICE), ("m.room.power_levels", ""),
                        ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
                        ("m.room.name", ""), ("m.room.topic", "")]:
                self.assertIn(key, st, f"v{rv.identifier} missing {key}")
            self.assertEqual(len(self.run_(self.core.stores.events.get_latest_event_ids_in_room(room_id))), 1)
            if rv.room_id_is_create_event_hash:
                self.assertEqual(room_id, "!" + st[("m.room.create", "")][1:])
                self.assertNotIn(":", room_id)
            else:
                self.assertTrue(room_id.endswith(":test"))

    def test_default_version_is_12(self) -> None:
        """New rooms default to room version 12."""
        room_id = self.create()
        self.assertEqual(self.run_(self.core.stores.rooms.get_room_version(room_id)), RoomVersions.V12)

    def test_invalid_initial_state_changes_nothing(self) -> None:
        """An initial state the auth rules refuse is M_INVALID_ROOM_STATE and creates no room."""
        err = self.fail_(self.core.room_creation.create_room(requester(ALICE), {
            "power_level_content_override": {"users": {ALICE: 100}, "events": {"m.room.name": 101}},
            "name": "x"}, RoomVersions.V10))
        self.assertEqual((err.code, err.errcode), (400, "M_INVALID_ROOM_STATE"))
        self.assertEqual(self.run_(self.core.db.execute("n", "SELECT COUNT(*) FROM rooms"))[0][0], 0)

    def test_alias_taken(self) -> None:
        """A second room asking for a taken alias gets M_ROOM_IN_USE."""
        self.create(room_alias_name="dup")
        err = self.fail_(self.core.room_creation.create_room(requester(BOB), {"room_alias_name": "dup"}))
        self.assertEqual(err.errcode, "M_ROOM_IN_USE")

    def test_join_public_and_invite_only(self) -> None:
        """Anyone joins a public room; an invite-only room needs an invite first."""
        m = self.core.membership
        public = self.create(preset="public_chat")
        self.run_(m.update_membership(requester(BOB), BOB, public, "join"))
        self.assertEqual(sorted(self.run_(self.core.stores.current_state.get_users_in_room(public))), [ALICE, BOB])

        private = self.create(preset="private_chat")
        err = self.fail_(m.update_membership(requester(BOB), BOB, private, "join"), AuthError)
        self.assertEqual(err.errcode, "M_FORBIDDEN")
        self.run_(m.update_membership(requester(ALICE), BOB, private, "invite"))
        self.run_(m.update_membership(requester(BOB), BOB, private, "join"))
        self.assertEqual(self.run_(self.core.stores.current_state.get_membership(private, BOB)).membership, "join")

    def test_kick_ban_unban(self) -> None:
        """Kick and ban need power; a banned user cannot rejoin until unbanned."""
        m = self.core.membership
        room = self.create(preset="public_chat")
        for u in (BOB, CAROL):
            self.run_(m.update_membership(requester(u), u, room, "join"))
        self.fail_(m.update_membership(requester(BOB), CAROL, room, "kick"), AuthError)
        self.run_(m.update_membership(requester(ALICE), CAROL, room, "kick", reason="bye"))
        self.run_(m.update_membership(requester(ALICE), BOB, room, "ban"))
        self.fail_(m.update_membership(requester(BOB), BOB, room, "join"), AuthError)
        self.run_(m.update_membership(requester(ALICE), BOB, room, "unban"))
        self.run_(m.update_membership(requester(BOB), BOB, room, "join"))
        self.fail_(m.update_membership(requester(ALICE), CAROL, room, "unban"), AuthError)

    def test_send_idempotent_by_txn(self) -> None:
        """The same txn id from the same device returns the first event and sends nothing new."""
        room = self.create()
        s = self.core.send
        e1 = self.run_(s.send_event(requester(ALICE), room, "m.room.message", {"body": "hi", "msgtype": "m.text"},
                                    txn_id="t1"))
        e2 = self.run_(s.send_event(requester(ALICE), room, "m.room.message", {"body": "hi", "msgtype": "m.text"},
                                    txn_id="t1"))
        e3 = self.run_(s.send_event(requester(ALICE, "OTHER"), room, "m.room.message", {"body": "hi"}, txn_id="t1"))
        self.assertEqual(e1, e2)
        self.assertNotEqual(e1, e3)

    def test_non_member_cannot_send(self) -> None:
        """A user not in the room is refused by the auth rules."""
        room = self.create()
        self.fail_(self.core.send.send_event(requester(BOB), room, "m.room.message", {"body": "x"}), AuthError)

    def test_redact_others_needs_power(self) -> None:
        """Redacting someone else's event needs the redact level; one's own does not."""
        room = self.create(preset="public_chat")
        self.run_(self.core.membership.update_membership(requester(BOB), BOB, room, "join"))
        s = self.core.send
        ev = self.run_(s.send_event(requester(ALICE), room, "m.room.message", {"body": "secret"}))
        self.fail_(s.send_event(requester(BOB), room, "m.room.redaction", {}, redacts=ev), AuthError)
        own = self.run_(s.send_event(requester(BOB), room, "m.room.message", {"body": "oops"}))
        self.run_(s.send_event(requester(BOB), room, "m.room.redaction", {}, redacts=own))
        self.run_(s.send_event(requester(ALICE), room, "m.room.redaction", {"reason": "r"}, redacts=ev))
        redacted = self.run_(self.core.stores.events.get_event(ev))
        self.assertEqual(redacted.content, {})

    def test_state_event_and_power(self) -> None:
        """State needs state_default; repeating identical state returns the same event."""
        room = self.create(preset="public_chat")
        self.run_(self.core.membership.update_membership(requester(BOB), BOB, room, "join"))
        s = self.core.send
        self.fail_(s.send_event(requester(BOB), room, "m.room.topic", {"topic": "x"}, state_key=""), AuthError)
        a = self.run_(s.send_event(requester(ALICE), room, "m.room.topic", {"topic": "x"}, state_key=""))
        b = self.run_(s.send_event(requester(ALICE), room, "m.room.topic", {"topic": "x"}, state_key=""))
        self.assertEqual(a, b)
        self.assertEqual(self.state(room)[("m.room.topic", "")], a)

    def test_notifier_woken(self) -> None:
        """Persisting an event advances the events position and wakes waiters on the room."""
        room = self.create()
        n = self.core.notifier
        d = n.wait_for_keys([room], n.current_seq(), 30)
        before = n.current_token.events
        self.run_(self.core.send.send_event(requester(ALICE), room, "m.room.message", {"body": "x"}))
        self.assertTrue(self.successResultOf(d))
        self.assertGreater(n.current_token.events, before)
