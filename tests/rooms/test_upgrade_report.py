"""Room upgrades end to end, and reporting content."""

from typing import Any

from tests.rooms.utils import RoomsTestCase, q


class UpgradeTests(RoomsTestCase):
    def state_of(self, room: str, tok: str) -> dict[tuple[str, str], Any]:
        return {(e["type"], e["state_key"]): e for e in self.req("GET", f"/rooms/{q(room)}/state", tok=tok)}

    def upgrade(self, room: str, tok: str, version: Any = "12", expect: int = 200, **extra: Any) -> Any:
        return self.req("POST", f"/rooms/{q(room)}/upgrade", {"new_version": version, **extra}, tok, expect)

    def test_upgrade_end_to_end(self) -> None:
        """The new room copies state and bans, names its predecessor; the old room is tombstoned and muted."""
        old = self.create_room(self.alice_tok, preset="public_chat", name="Old name", topic="Topic",
                               room_alias_name="main", room_version="10", visibility="public")
        self.join(old, self.bob_tok)
        self.join(old, self.carol_tok)
        self.req("POST", f"/rooms/{q(old)}/ban", {"user_id": self.carol, "reason": "spam"}, self.alice_tok)
        self.set_state(old, self.alice_tok, "m.room.history_visibility", {"history_visibility": "joined"})
        last = self.send(old, self.bob_tok, "last words")

        new = self.upgrade(old, self.alice_tok, "11")["replacement_room"]
        self.assertNotEqual(new, old)
        state = self.state_of(new, self.alice_tok)
        create = state[("m.room.create", "")]["content"]
        self.assertEqual(create["room_version"], "11")
        self.assertEqual(create["predecessor"], {"room_id": old, "event_id": last})
        self.assertEqual(state[("m.room.name", "")]["content"], {"name": "Old name"})
        self.assertEqual(state[("m.room.topic", "")]["content"]["topic"], "Topic")
        self.assertEqual(state[("m.room.join_rules", "")]["content"], {"join_rule": "public"})
        self.assertEqual(state[("m.room.history_visibility", "")]["content"], {"history_visibility": "joined"})
        self.assertEqual(state[("m.room.canonical_alias", "")]["content"], {"alias": "#main:test"})
        self.assertEqual(state[("m.room.member", self.carol)]["content"]["membership"], "ban")
        self.assertNotIn(("m.room.member", self.bob), state)
        old_pl = self.state_of(old, self.alice_tok)[("m.room.power_levels", "")]["content"]
        self.assertEqual(state[("m.room.power_levels", "")]["content"]["users"], {self.alice: 100})
        self.assertEqual(state[("m.room.power_levels", "")]["content"]["events"], old_pl["events"])

        old_state = self.state_of(old, self.alice_tok)
        self.assertEqual(old_state[("m.room.tombstone", "")]["content"]["replacement_room"], new)
        self.assertEqual((old_pl["events_default"], old_pl["invite"]), (50, 50))
        self.assertEqual(old_state[("m.room.canonical_alias", "")]["content"], {})
        self.assertEqual(self.req("GET", f"/directory/room/{q('#main:test')}")["room_id"], new)
        self.assertEqual(self.req("GET", f"/directory/list/room/{q(new)}"), {"visibility": "public"})
        self.assertEqual(self.req("GET", f"/directory/list/room/{q(old)}"), {"visibility": "private"})
        # Ordinary members can no longer talk in the old room, but can join the new one.
        self.req("PUT", f"/rooms/{q(old)}/send/m.room.message/late", {"body": "x"}, self.bob_tok, 403)
        self.req("POST", f"/join/{q('#main:test')}", {}, self.bob_tok)

    def test_upgrade_to_v12_drops_creators_from_power_levels(self) -> None:
        """Upgrading into v12 lists no creator in users and keeps other levels; additional_creators apply."""
        old = self.create_room(self.alice_tok, preset="public_chat", room_version="10")
        self.join(old, self.bob_tok)
        self.req("PUT", f"/rooms/{q(old)}/state/m.room.power_levels", {
            **self.req("GET", f"/rooms/{q(old)}/state/m.room.power_levels", tok=self.alice_tok),
            "users": {self.alice: 100, self.bob: 50},
        }, self.alice_tok)
        new = self.upgrade(old, self.alice_tok, "12", additional_creators=[self.carol])["replacement_room"]
        state = self.state_of(new, self.alice_tok)
        self.assertEqual(state[("m.room.power_levels", "")]["content"]["users"], {self.bob: 50})
        create = state[("m.room.create", "")]
        self.assertEqual(create["content"]["additional_creators"], [self.carol])
        self.assertEqual(create["sender"], self.alice)
        self.assertEqual(new, "!" + create["event_id"][1:])

    def test_upgrade_from_string_power_levels(self) -> None:
        """Old rooms' string power levels are made integers for the new version."""
        old = self.create_room(self.alice_tok, room_version="6")
        pl = self.req("GET", f"/rooms/{q(old)}/state/m.room.power_levels", tok=self.alice_tok)
        self.set_state(old, self.alice_tok, "m.room.power_levels", {**pl, "ban": "60"})
        new = self.upgrade(old, self.alice_tok, "11")["replacement_room"]
        content = self.req("GET", f"/rooms/{q(new)}/state/m.room.power_levels", tok=self.alice_tok)
        self.assertEqual(content["ban"], 60)

    def test_upgrade_errors(self) -> None:
        """Unknown versions are 400 M_UNSUPPORTED_ROOM_VERSION; non-members and the powerless 403."""
        room = self.create_room(self.alice_tok, preset="public_chat")
        self.upgrade(room, self.alice_tok, "999", expect=400)
        self.assertEqual(self.upgrade(room, self.alice_tok, 12, expect=400)["errcode"], "M_UNSUPPORTED_ROOM_VERSION")
        self.req("POST", f"/rooms/{q(room)}/upgrade", {}, self.alice_tok, 400, "M_MISSING_PARAM")
        self.upgrade(room, self.bob_tok, expect=403)
        self.join(room, self.bob_tok)
        self.assertEqual(self.upgrade(room, self.bob_tok, expect=403)["errcode"], "M_FORBIDDEN")
        self.upgrade("!unknown:test", self.alice_tok, expect=404)
        self.upgrade(room, self.alice_tok, additional_creators="x", expect=400)
        self.assertEqual(self.req("GET", "/joined_rooms", tok=self.alice_tok)["joined_rooms"], [room])


class ReportTests(RoomsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room = self.create_room(self.alice_tok, preset="public_chat")
        self.join(self.room, self.bob_tok)
        self.event = self.send(self.room, self.alice_tok, "rude")

    def reports(self) -> list[Any]:
        return list(self.hs.run(self.hs.components.rooms.reports_store.get_reports()))

    def test_report_event(self) -> None:
        """A joined member reports an event; the report is stored with reason, score and the sender."""
        self.req("POST", f"/rooms/{q(self.room)}/report/{q(self.event)}", {"reason": "rude", "score": -50},
                 self.bob_tok)
        [report] = self.reports()
        self.assertEqual((report.reporter, report.room_id, report.event_id, report.target_user_id, report.reason,
                          report.score), (self.bob, self.room, self.event, self.alice, "rude", -50))

    def test_report_event_not_found_cases(self) -> None:
        """Unknown events, events of other rooms, non-members and redacted events are 404 and store nothing."""
        base = f"/rooms/{q(self.room)}/report/"
        self.req("POST", base + "%24unknown", {"reason": "x"}, self.bob_tok, 404, "M_NOT_FOUND")
        self.req("POST", base + q(self.event), {"reason": "x"}, self.carol_tok, 404)
        other = self.create_room(self.alice_tok)
        self.req("POST", f"/rooms/{q(other)}/report/{q(self.event)}", {"reason": "x"}, self.alice_tok, 404)
        self.req("PUT", f"/rooms/{q(self.room)}/redact/{q(self.event)}/r", {}, self.alice_tok)
        self.req("POST", base + q(self.event), {"reason": "x"}, self.bob_tok, 404)
        self.req("POST", base + "%24x", {"score": 5}, self.bob_tok, 400)
        self.assertEqual(self.reports(), [])

    def test_report_room_and_user(self) -> None:
        """Rooms can be reported without membership; users without sharing a room; unknown ones are 404."""
        self.req("POST", f"/rooms/{q(self.room)}/report", {"reason": "bad room"}, self.carol_tok)
        self.req("POST", "/rooms/%21unknown%3Atest/report", {"reason": "x"}, self.carol_tok, 404)
        self.req("POST", f"/rooms/{q(self.room)}/report", {}, self.carol_tok, 400, "M_MISSING_PARAM")
        self.req("POST", f"/users/{q(self.alice)}/report", {"reason": ""}, self.carol_tok)
        self.req("POST", f"/users/{q('@ghost:test')}/report", {"reason": "x"}, self.carol_tok, 404)
        self.req("POST", f"/users/{q('@someone:remote.example')}/report", {"reason": "x"}, self.carol_tok)
        kinds = sorted((r.room_id is not None, r.target_user_id) for r in self.reports())
        self.assertEqual(kinds, [(False, self.alice), (False, "@someone:remote.example"), (True, None)])
