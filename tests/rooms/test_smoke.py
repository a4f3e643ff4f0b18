"""Creating a room, talking in it and reading it back through the client API."""

from tests.rooms.utils import RoomsTestCase, q


class SmokeTests(RoomsTestCase):
    def test_create_send_read(self) -> None:
        """A message sent to a new room comes back from /messages, /event and /context."""
        room = self.create_room(self.alice_tok, preset="public_chat", name="Room")
        event_id = self.send(room, self.alice_tok, "hello")
        page = self.messages(room, self.alice_tok, dir="b", limit=5)
        self.assertEqual(self.bodies(page["chunk"]), ["hello"])
        ev = self.req("GET", f"/rooms/{q(room)}/event/{q(event_id)}", tok=self.alice_tok)
        self.assertEqual(ev["content"]["body"], "hello")
        ctx = self.req("GET", f"/rooms/{q(room)}/context/{q(event_id)}", tok=self.alice_tok)
        self.assertEqual(ctx["event"]["event_id"], event_id)
