"""``/createRoom`` with users of other servers in ``invite`` (found by the nio end-to-end test
between two servers): their invites go through their server's ``/invite`` like any invite,
instead of being planted in the initial chain, which the other server rejected as an unknown room."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from matrixd.events.event import JsonDict
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.events.signing import sign_event_dict
from tests.federation.utils import REMOTE, make_federating_homeserver

CAROL = f"@carol:{REMOTE}"
INVITE = "/_matrix/federation/v2/invite/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)"


class CreateRoomRemoteInviteTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.alice, self.token = self.hs.create_user("alice")
        self.bob, _ = self.hs.create_user("bob")
        self.st = self.hs.components.core.stores
        self.asked: list[JsonDict] = []

    def accept_invites(self) -> None:
        async def on_invite(origin: str, content: Any, request: Any, room_id: str,
                            event_id: str) -> tuple[int, JsonDict]:
            self.asked.append(content)
            rv = KNOWN_ROOM_VERSIONS[content["room_version"]]
            return 200, {"event": sign_event_dict(rv, content["event"], REMOTE, self.remote.signing_key)}

        self.remote.handle("PUT", INVITE, on_invite)

    def create(self, body: JsonDict) -> str:
        channel = self.hs.request("POST", "/_matrix/client/v3/createRoom", body, access_token=self.token)
        self.assertEqual(channel.code, 200, channel.result_body)
        room_id: str = channel.json_body["room_id"]
        return room_id

    def membership_event(self, room_id: str, user_id: str) -> Any:
        event_id = self.hs.run(self.st.current_state.get_current_state_event_id(room_id, "m.room.member", user_id))
        return self.hs.run(self.st.events.get_event(event_id)) if event_id is not None else None

    def test_remote_invitee_invited_through_their_server(self) -> None:
        """A remote invitee's server is asked to sign the invite (is_direct kept); local invitees are in the chain."""
        self.accept_invites()
        room_id = self.create({"preset": "trusted_private_chat", "is_direct": True, "invite": [CAROL, self.bob]})
        self.assertEqual(len(self.asked), 1)
        self.assertEqual(self.asked[0]["event"]["state_key"], CAROL)
        self.assertEqual(self.asked[0]["event"]["content"], {"membership": "invite", "is_direct": True})
        invite = self.membership_event(room_id, CAROL)
        self.assertEqual(invite.membership, "invite")
        self.assertEqual(set(invite.signatures), {"test", REMOTE})
        self.assertEqual(self.membership_event(room_id, self.bob).membership, "invite")
        # The preset still makes every invitee a creator (room v12: additional_creators).
        create_id = self.hs.run(self.st.current_state.get_current_state_event_id(room_id, "m.room.create", ""))
        create = self.hs.run(self.st.events.get_event(create_id))
        self.assertIn(CAROL, create.content["additional_creators"])

    def test_refused_remote_invite_leaves_the_room_created(self) -> None:
        """If the invitee's server refuses, the room exists anyway, without the invite."""
        async def refuse(origin: str, content: Any, request: Any, room_id: str, event_id: str) -> tuple[int, JsonDict]:
            from matrixd.api.errors import MatrixError

            raise MatrixError(403, "no thanks", "M_FORBIDDEN")

        self.remote.handle("PUT", INVITE, refuse)
        room_id = self.create({"preset": "private_chat", "invite": [CAROL]})
        self.assertIsNone(self.membership_event(room_id, CAROL))
        self.assertEqual(self.membership_event(room_id, self.alice).membership, "join")
