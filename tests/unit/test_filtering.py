"""Client event filters: parsing and matching."""

from twisted.trial import unittest

from matrixd.api.errors import BadJsonError
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersions
from matrixd.handlers.filtering import apply_event_fields, parse_filter, parse_room_event_filter


def ev(t: str, sender: str = "@a:x", room: str = "!r:x", content: dict | None = None) -> Event:  # type: ignore[type-arg]
    return Event({"type": t, "sender": sender, "room_id": room, "content": content or {}}, RoomVersions.V10,
                 event_id="$" + t)


class FilterTests(unittest.TestCase):
    def test_types_with_wildcards(self) -> None:
        """types and not_types accept '*' globs; not_types wins."""
        f = parse_room_event_filter({"types": ["m.room.*"], "not_types": ["m.room.member"]})
        self.assertTrue(f.allows(ev("m.room.message")))
        self.assertFalse(f.allows(ev("m.room.member")))
        self.assertFalse(f.allows(ev("org.custom")))
        self.assertFalse(parse_room_event_filter({"types": []}).allows(ev("m.room.message")))

    def test_senders_rooms_url(self) -> None:
        """senders/not_senders, rooms/not_rooms and contains_url filter as the spec says."""
        f = parse_room_event_filter({"senders": ["@a:x"], "not_rooms": ["!no:x"], "contains_url": True})
        self.assertTrue(f.allows(ev("m.room.message", content={"url": "mxc://x/y"})))
        self.assertFalse(f.allows(ev("m.room.message")))
        self.assertFalse(f.allows(ev("m.room.message", sender="@b:x", content={"url": "mxc://x/y"})))
        self.assertFalse(f.allows(ev("m.room.message", room="!no:x", content={"url": "mxc://x/y"})))

    def test_whole_filter(self) -> None:
        """A full sync filter parses with limits capped and lazy loading read."""
        f = parse_filter({"room": {"timeline": {"limit": 100000}, "state": {"lazy_load_members": True},
                                   "include_leave": True}, "event_format": "federation"})
        self.assertEqual(f.room.timeline.limit, 1000)
        self.assertTrue(f.room.state.lazy_load_members)
        self.assertTrue(f.room.include_leave)
        self.assertEqual(f.event_format, "federation")

    def test_bad_filters(self) -> None:
        """Wrong types are M_BAD_JSON."""
        for bad in [[], {"room": []}, {"room": {"timeline": {"limit": 0}}}, {"presence": {"types": "x"}},
                    {"event_format": "xml"}, {"event_fields": ["."]}, {"room": {"include_leave": "yes"}}]:
            with self.assertRaises(BadJsonError, msg=str(bad)):
                parse_filter(bad)

    def test_event_fields(self) -> None:
        """event_fields keeps only the named dot paths (escaped dots are literal)."""
        out = apply_event_fields({"type": "t", "content": {"body": "b", "a.b": 1, "x": 2}},
                                 ["type", "content.body", "content.a\\.b"])
        self.assertEqual(out, {"type": "t", "content": {"body": "b", "a.b": 1}})
