"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy: the walk, its filters, pagination and access rules."""

from __future__ import annotations

from typing import Any, Optional

from twisted.trial import unittest

from matrixd.http.request import MatrixRequest
from matrixd.http.server import ServletResult
from tests.federation_out.utils import REMOTE, create_room, pump, send_event, started_homeserver
from tests.rooms.utils import RoomsTestCase, q

V1 = "/_matrix/client/v1"


def hierarchy_path(room_id: str, **params: Any) -> str:
    query = "&".join(f"{k}={q(str(v).lower() if isinstance(v, bool) else str(v))}" for k, v in params.items())
    return f"{V1}/rooms/{q(room_id)}/hierarchy" + (f"?{query}" if query else "")


class LocalHierarchyTestCase(RoomsTestCase):
    """A space tree on this server:

    space ─┬─ sub (space, suggested, order "a") ─┬─ deep (suggested)
           │                                    └─ sub_private (invite only)
           ├─ room_b (order "b")
           └─ private (invite only; bob is invited)
    """

    def setUp(self) -> None:
        super().setUp()
        tok = self.alice_tok
        self.space = self.create_room(tok, preset="public_chat", name="Space", topic="the top",
                                      creation_content={"type": "m.space"})
        self.sub = self.create_room(tok, preset="public_chat", name="Sub", creation_content={"type": "m.space"})
        self.room_b = self.create_room(tok, preset="public_chat", name="B")
        self.private = self.create_room(tok, preset="private_chat", name="Private")
        self.deep = self.create_room(tok, preset="public_chat", name="Deep")
        self.sub_private = self.create_room(tok, preset="private_chat", name="SubPrivate")
        self.child(self.space, self.sub, suggested=True, order="a")
        self.child(self.space, self.room_b, order="b")
        self.child(self.space, self.private)
        self.child(self.sub, self.deep, suggested=True)
        self.child(self.sub, self.sub_private)
        self.invite(self.private, tok, self.bob)

    def child(self, parent: str, child: str, *, suggested: bool = False, order: Optional[str] = None) -> None:
        content: dict[str, Any] = {"via": ["test"]}
        if suggested:
            content["suggested"] = True
        if order is not None:
            content["order"] = order
        self.set_state(parent, self.alice_tok, "m.space.child", content, state_key=child)
        self.hs.advance(1)  # distinct origin_server_ts: the child order's second key

    def hierarchy(self, room_id: str, tok: str, expect: int = 200, errcode: Optional[str] = None,
                  **params: Any) -> Any:
        ch = self.hs.request("GET", hierarchy_path(room_id, **params), access_token=tok)
        self.assertEqual(ch.code, expect, ch.json_body)
        if errcode is not None:
            self.assertEqual(ch.json_body["errcode"], errcode, ch.json_body)
        return ch.json_body

    def ids(self, body: Any) -> list[str]:
        return [r["room_id"] for r in body["rooms"]]

    def test_whole_tree_depth_first_in_child_order(self) -> None:
        """The creator sees every room, depth first, children ordered by `order` then timestamp."""
        body = self.hierarchy(self.space, self.alice_tok)
        self.assertEqual(self.ids(body),
                         [self.space, self.sub, self.deep, self.sub_private, self.room_b, self.private])
        self.assertNotIn("next_batch", body)
        root = body["rooms"][0]
        self.assertEqual(root["name"], "Space")
        self.assertEqual(root["topic"], "the top")
        self.assertEqual(root["room_type"], "m.space")
        self.assertEqual(root["join_rule"], "public")
        self.assertEqual(root["num_joined_members"], 1)
        self.assertIs(root["world_readable"], False)
        self.assertIs(root["guest_can_join"], False)
        self.assertIn("room_version", root)
        self.assertEqual(sorted(c["state_key"] for c in root["children_state"]),
                         sorted([self.sub, self.room_b, self.private]))
        for c in root["children_state"]:
            self.assertEqual(c["type"], "m.space.child")
            self.assertEqual(c["sender"], self.alice)
            self.assertIsInstance(c["origin_server_ts"], int)
        leaf = body["rooms"][self.ids(body).index(self.room_b)]
        self.assertEqual(leaf["children_state"], [])
        self.assertNotIn("room_type", leaf)

    def test_inaccessible_rooms_skipped(self) -> None:
        """Bob (not joined anywhere) sees public rooms and the one he is invited to, not the private ones."""
        body = self.hierarchy(self.space, self.bob_tok)
        self.assertEqual(self.ids(body), [self.space, self.sub, self.deep, self.room_b, self.private])
        # Carol, without the invite, does not see the private room either.
        body = self.hierarchy(self.space, self.carol_tok)
        self.assertEqual(self.ids(body), [self.space, self.sub, self.deep, self.room_b])

    def test_world_readable_and_restricted_rooms_visible(self) -> None:
        """A world-readable private room, and a restricted room whose allowed room carol is in, are listed."""
        self.set_state(self.sub_private, self.alice_tok, "m.room.history_visibility",
                       {"history_visibility": "world_readable"})
        restricted = self.create_room(self.alice_tok, preset="private_chat", room_version="10")
        self.set_state(restricted, self.alice_tok, "m.room.join_rules",
                       {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": self.sub}]})
        self.child(self.space, restricted, order="c")
        self.assertNotIn(restricted, self.ids(self.hierarchy(self.space, self.carol_tok)))
        self.join(self.sub, self.carol_tok)
        body = self.hierarchy(self.space, self.carol_tok)
        self.assertIn(self.sub_private, self.ids(body))
        self.assertIn(restricted, self.ids(body))
        chunk = body["rooms"][self.ids(body).index(restricted)]
        self.assertEqual(chunk["join_rule"], "restricted")
        self.assertEqual(chunk["allowed_room_ids"], [self.sub])

    def test_banned_user_does_not_see_public_room(self) -> None:
        """A user banned from a public child does not get it listed."""
        self.join(self.room_b, self.carol_tok)
        self.req("POST", f"/rooms/{q(self.room_b)}/ban", {"user_id": self.carol}, self.alice_tok)
        self.assertNotIn(self.room_b, self.ids(self.hierarchy(self.space, self.carol_tok)))

    def test_suggested_only(self) -> None:
        """suggested_only follows only suggested children (and lists only them in children_state)."""
        body = self.hierarchy(self.space, self.alice_tok, suggested_only=True)
        self.assertEqual(self.ids(body), [self.space, self.sub, self.deep])
        self.assertEqual([c["state_key"] for c in body["rooms"][0]["children_state"]], [self.sub])

    def test_max_depth(self) -> None:
        """max_depth=0 is the root alone; max_depth=1 stops before the grandchildren."""
        self.assertEqual(self.ids(self.hierarchy(self.space, self.alice_tok, max_depth=0)), [self.space])
        self.assertEqual(self.ids(self.hierarchy(self.space, self.alice_tok, max_depth=1)),
                         [self.space, self.sub, self.room_b, self.private])

    def test_pagination(self) -> None:
        """limit pages the walk; following next_batch gives every room once, in the same order."""
        whole = self.ids(self.hierarchy(self.space, self.alice_tok))
        seen: list[str] = []
        token: Optional[str] = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if token is not None:
                params["from"] = token
            body = self.hierarchy(self.space, self.alice_tok, **params)
            self.assertLessEqual(len(body["rooms"]), 2)
            seen += self.ids(body)
            pages += 1
            token = body.get("next_batch")
            if token is None:
                break
        self.assertEqual(seen, whole)
        self.assertEqual(pages, 3)

    def test_pagination_token_bound_to_parameters(self) -> None:
        """A token used with other suggested_only/max_depth, another root or user, or an unknown one: 400."""
        token = self.hierarchy(self.space, self.alice_tok, limit=1)["next_batch"]
        self.hierarchy(self.space, self.alice_tok, 400, "M_INVALID_PARAM", suggested_only=True, **{"from": token})
        self.hierarchy(self.space, self.alice_tok, 400, "M_INVALID_PARAM", max_depth=1, **{"from": token})
        self.hierarchy(self.sub, self.alice_tok, 400, "M_INVALID_PARAM", **{"from": token})
        self.hierarchy(self.space, self.bob_tok, 400, "M_INVALID_PARAM", **{"from": token})
        self.hierarchy(self.space, self.alice_tok, 400, "M_INVALID_PARAM", **{"from": "nonsense"})
        # The token still works with the request it was given for.
        body = self.hierarchy(self.space, self.alice_tok, limit=1, **{"from": token})
        self.assertEqual(self.ids(body), [self.sub])

    def test_bad_parameters(self) -> None:
        """limit must be positive and max_depth non-negative."""
        self.hierarchy(self.space, self.alice_tok, 400, "M_INVALID_PARAM", limit=0)
        self.hierarchy(self.space, self.alice_tok, 400, "M_INVALID_PARAM", max_depth=-1)
        self.hierarchy(self.space, self.alice_tok, 400, limit="many")

    def test_inaccessible_or_unknown_root_forbidden(self) -> None:
        """A private root the user is not in, or a room the server does not know, is 403 M_FORBIDDEN."""
        self.hierarchy(self.sub_private, self.carol_tok, 403, "M_FORBIDDEN")
        self.hierarchy("!unknown:test", self.carol_tok, 403, "M_FORBIDDEN")
        # The member of the private room may walk it.
        self.assertEqual(self.ids(self.hierarchy(self.sub_private, self.alice_tok)), [self.sub_private])

    def test_needs_authentication_and_only_v1(self) -> None:
        """The endpoint needs an access token and is served under /v1 only."""
        ch = self.hs.request("GET", hierarchy_path(self.space))
        self.assertEqual(ch.code, 401, ch.json_body)
        ch = self.hs.request("GET", f"/_matrix/client/v3/rooms/{q(self.space)}/hierarchy", access_token=self.alice_tok)
        self.assertEqual(ch.code, 404)

    def test_removed_child_not_followed(self) -> None:
        """A child event with an empty content (the relation removed) is not followed nor listed."""
        self.set_state(self.space, self.alice_tok, "m.space.child", {}, state_key=self.room_b)
        body = self.hierarchy(self.space, self.alice_tok)
        self.assertNotIn(self.room_b, self.ids(body))
        self.assertNotIn(self.room_b, [c["state_key"] for c in body["rooms"][0]["children_state"]])


REMOTE_SPACE = f"!rspace:{REMOTE}"
REMOTE_ROOM = f"!rroom:{REMOTE}"
REMOTE_SECRET = f"!rsecret:{REMOTE}"
REMOTE_INVITE_ONLY = f"!rinvite:{REMOTE}"
#: A room on an unreachable server, which the remote's answer describes though it is not one of its children.
GONE = "!gone:nowhere.test"


def _summary(room_id: str, name: str, join_rule: str = "public", children: tuple[str, ...] = (),
             room_type: Optional[str] = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "room_id": room_id, "name": name, "num_joined_members": 3, "world_readable": False, "guest_can_join": False,
        "join_rule": join_rule, "room_version": "10",
        "children_state": [{"type": "m.space.child", "state_key": c, "content": {"via": [REMOTE]},
                            "sender": f"@r:{REMOTE}", "origin_server_ts": 1000 + i} for i, c in enumerate(children)],
    }
    if room_type is not None:
        summary["room_type"] = room_type
    return summary


class RemoteHierarchyTestCase(unittest.TestCase):
    """A local space with a child space on another server, described over federation."""

    def setUp(self) -> None:
        self.hs, self.network, self.remote = started_homeserver(self)
        self.alice, self.token = self.hs.create_user("alice")
        self.space = create_room(self.hs, self.alice, {"preset": "public_chat", "creation_content": {"type": "m.space"}})
        send_event(self.hs, self.space, self.alice, "m.space.child", {"via": [REMOTE], "suggested": True},
                   state_key=REMOTE_SPACE)
        self.asked: list[tuple[str, list[str]]] = []

        async def hierarchy(origin: str, content: None, request: MatrixRequest, room_id: str) -> ServletResult:
            args = {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
            self.asked.append((room_id, args.get("suggested_only", [])))
            if room_id != REMOTE_SPACE:
                return 404, {"errcode": "M_NOT_FOUND", "error": "no"}
            return 200, {
                "room": _summary(REMOTE_SPACE, "Remote space", children=(REMOTE_ROOM, REMOTE_SECRET,
                                                                         REMOTE_INVITE_ONLY),
                                 room_type="m.space"),
                "children": [_summary(REMOTE_ROOM, "Remote room"),
                             _summary(REMOTE_INVITE_ONLY, "Invite only", join_rule="invite"),
                             _summary(GONE, "Injected")],
                "inaccessible_children": [REMOTE_SECRET],
            }

        self.remote.handle("GET", "/_matrix/federation/v1/hierarchy/(?P<room_id>[^/]*)", hierarchy)

    def client_get(self, path: str) -> Any:
        ch = self.hs.request("GET", path, access_token=self.token, await_result=False)
        pump(self.hs, 3)
        ch.await_result()
        self.assertEqual(ch.code, 200, ch.result_body)
        return ch.json_body

    def test_remote_child_space(self) -> None:
        """The remote space comes from its via server once; its accessible children from that same answer."""
        body = self.client_get(hierarchy_path(self.space))
        ids = [r["room_id"] for r in body["rooms"]]
        # The secret room is inaccessible per the remote; the invite-only room is not for alice.
        self.assertEqual(ids, [self.space, REMOTE_SPACE, REMOTE_ROOM])
        self.assertEqual(self.asked, [(REMOTE_SPACE, ["false"])])
        remote_space = body["rooms"][1]
        self.assertEqual(remote_space["name"], "Remote space")
        self.assertEqual(remote_space["room_type"], "m.space")
        self.assertEqual(remote_space["num_joined_members"], 3)
        self.assertEqual([c["state_key"] for c in remote_space["children_state"]],
                         [REMOTE_ROOM, REMOTE_SECRET, REMOTE_INVITE_ONLY])
        self.assertEqual(body["rooms"][2]["name"], "Remote room")
        self.assertEqual(body["rooms"][2]["children_state"], [])

    def test_remote_answer_cached(self) -> None:
        """A second walk within the cache lifetime does not ask the remote again; after it, it does."""
        self.client_get(hierarchy_path(self.space))
        self.client_get(hierarchy_path(self.space))
        self.assertEqual(len(self.asked), 1)
        self.hs.advance(5 * 60 + 1)
        self.client_get(hierarchy_path(self.space))
        self.assertEqual(len(self.asked), 2)

    def test_suggested_only_passed_on(self) -> None:
        """suggested_only is passed to the remote server."""
        self.client_get(hierarchy_path(self.space, suggested_only=True))
        self.assertEqual(self.asked, [(REMOTE_SPACE, ["true"])])

    def test_unreachable_remote_room_skipped(self) -> None:
        """A remote child no via server can describe is left out (a summary of it that another server slipped
        into an answer about other rooms is not used); the rest of the walk goes on."""
        self.hs.advance(1)
        send_event(self.hs, self.space, self.alice, "m.space.child", {"via": ["nowhere.test"]}, state_key=GONE)
        body = self.client_get(hierarchy_path(self.space))
        ids = [r["room_id"] for r in body["rooms"]]
        self.assertEqual(ids, [self.space, REMOTE_SPACE, REMOTE_ROOM])
