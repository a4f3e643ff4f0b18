"""The ordered initial events of /createRoom."""

from twisted.trial import unittest

from matrixd.api.errors import MatrixError
from matrixd.events.room_versions import RoomVersions
from matrixd.handlers.rooms.creation_plan import plan_room_creation

ME = "@alice:hs"


def kinds(plan):  # type: ignore[no-untyped-def]
    return [(e.event_type, e.state_key) for e in plan.events]


class CreationPlanTests(unittest.TestCase):
    def test_spec_order(self) -> None:
        """Member, power levels, alias, preset, initial_state, name/topic, invites — in that order."""
        plan = plan_room_creation(RoomVersions.V10, ME, {
            "preset": "public_chat", "room_alias_name": "pub", "name": "N", "topic": "T",
            "initial_state": [{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            "invite": ["@bob:hs"],
        }, "hs")
        self.assertEqual(kinds(plan), [
            ("m.room.member", ME), ("m.room.power_levels", ""), ("m.room.canonical_alias", ""),
            ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
            ("m.room.encryption", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.member", "@bob:hs"),
        ])
        self.assertEqual(plan.events[2].content, {"alias": "#pub:hs"})
        self.assertEqual(plan.create_content["creator"], ME)
        self.assertEqual(plan.events[1].content["users"], {ME: 100})

    def test_initial_state_beats_preset_and_name_beats_initial_state(self) -> None:
        """initial_state replaces the preset's join rule; `name` replaces an initial_state name."""
        plan = plan_room_creation(RoomVersions.V11, ME, {
            "preset": "private_chat", "name": "real",
            "initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "public"}},
                              {"type": "m.room.name", "content": {"name": "ignored"}}],
        }, "hs")
        jr = [e for e in plan.events if e.event_type == "m.room.join_rules"]
        self.assertEqual([e.content for e in jr], [{"join_rule": "public"}])
        names = [e.content for e in plan.events if e.event_type == "m.room.name"]
        self.assertEqual(names, [{"name": "real"}])
        self.assertNotIn("creator", plan.create_content)

    def test_v12_creators(self) -> None:
        """v12: no creator in users, tombstone above state_default, invitees of trusted chats become creators."""
        plan = plan_room_creation(RoomVersions.V12, ME, {
            "preset": "trusted_private_chat", "invite": ["@bob:hs"], "is_direct": True,
        }, "hs")
        pl = plan.events[1].content
        self.assertEqual(pl["users"], {})
        self.assertGreater(pl["events"]["m.room.tombstone"], pl["state_default"])
        self.assertEqual(plan.create_content["additional_creators"], ["@bob:hs"])
        self.assertEqual(plan.events[-1].content, {"membership": "invite", "is_direct": True})

    def test_override_applied(self) -> None:
        """power_level_content_override is merged over the defaults."""
        plan = plan_room_creation(RoomVersions.V10, ME, {"power_level_content_override": {"events_default": 10}}, "hs")
        self.assertEqual(plan.events[1].content["events_default"], 10)
        self.assertEqual(plan.events[1].content["state_default"], 50)

    def test_bad_bodies(self) -> None:
        """Malformed fields are 400s naming the field."""
        for body in [{"visibility": "x"}, {"preset": "nope"}, {"invite": "@a:b"}, {"invite": ["bob"]},
                     {"initial_state": [{"type": "m.room.create", "content": {}}]},
                     {"initial_state": [{"content": {}}]}, {"name": 5}, {"room_alias_name": "a:b"},
                     {"creation_content": []}, {"power_level_content_override": 3}, {"is_direct": "yes"}]:
            with self.assertRaises(MatrixError, msg=str(body)) as cm:
                plan_room_creation(RoomVersions.V10, ME, body, "hs")
            self.assertEqual(cm.exception.code, 400)
