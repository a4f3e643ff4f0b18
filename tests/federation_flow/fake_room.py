"""A room held by a fake remote server, built and checked with matrixd's own event code.

It answers the membership handshakes a resident server answers
(``make_join``/``send_join`` v2, ``make_leave``/``send_leave`` v2,
``make_knock``/``send_knock``) and ``/event``, so tests can drive our
server's remote joins against it.
"""

from __future__ import annotations

import itertools
import urllib.parse
from typing import Any, Optional

from matrixd.api.errors import AuthError, MatrixError
from matrixd.events.builder import create_local_event
from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.events.room_versions import RoomVersion
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.state.auth import auth_types_for_event, check_auth
from matrixd.testing.federation import FakeRemoteServer

NOT_IN_TEMPLATE = ("signatures", "hashes", "unsigned", "event_id")
_room_counter = itertools.count()


class FakeRoomHost:
    """The fake server's rooms, behind one set of handlers (a path is registered once per server)."""

    def __init__(self, remote: FakeRemoteServer) -> None:
        self.remote = remote
        self.rooms: dict[str, "FakeRoom"] = {}
        r = remote
        r.handle("GET", "/_matrix/federation/v1/make_(?P<kind>join|leave|knock)/(?P<room_id>[^/]*)/(?P<user_id>[^/]*)",
                 self._dispatch("_on_make"))
        r.handle("PUT", "/_matrix/federation/v2/send_join/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)",
                 self._dispatch("_on_send_join"))
        r.handle("PUT", "/_matrix/federation/v2/send_leave/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)",
                 self._dispatch("_on_send_other"))
        r.handle("PUT", "/_matrix/federation/v1/send_knock/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)",
                 self._dispatch("_on_send_other"))
        r.handle("GET", "/_matrix/federation/v1/event/(?P<event_id>[^/]*)", self._on_event)
        r.handle("GET", "/_matrix/federation/v1/backfill/(?P<room_id>[^/]*)", self._dispatch("_on_backfill"))
        r.handle("GET", "/_matrix/federation/v1/state_ids/(?P<room_id>[^/]*)", self._dispatch("_on_state_ids"))
        r.handle("GET", "/_matrix/federation/v1/state/(?P<room_id>[^/]*)", self._dispatch("_on_state"))
        r.handle("GET", "/_matrix/federation/v1/event_auth/(?P<room_id>[^/]*)/(?P<event_id>[^/]*)",
                 self._dispatch("_on_event_auth"))
        #: Whether /state_ids and /state are answered (False: 503, as a server that cannot now).
        self.serves_state = True
        #: How many /backfill requests were answered.
        self.backfills = 0

    def _dispatch(self, method: str) -> Any:
        async def handler(origin: str, content: Any, request: Any, room_id: str, **kwargs: str) -> tuple[int, JsonDict]:
            room = self.rooms.get(urllib.parse.unquote(room_id))
            if room is None:
                raise MatrixError(404, "unknown room", "M_NOT_FOUND")
            if method in ("_on_state_ids", "_on_state") and not self.serves_state:
                raise MatrixError(503, "not now", "M_UNKNOWN")
            result: tuple[int, JsonDict] = await getattr(room, method)(origin, content, request, room_id=room_id,
                                                                        **kwargs)
            return result

        return handler

    async def _on_event(self, origin: str, content: Any, request: Any, event_id: str) -> tuple[int, JsonDict]:
        """The event, from whichever room has it."""
        for room in self.rooms.values():
            event = room.events.get(urllib.parse.unquote(event_id))
            if event is not None:
                return 200, {"origin": self.remote.server_name, "origin_server_ts": 0,
                             "pdus": [pdu_for_federation(event)]}
        raise MatrixError(404, "not found", "M_NOT_FOUND")


class FakeRoom:
    def __init__(self, remote: FakeRemoteServer, room_version: RoomVersion, creator: str,
                 join_rule: str = "public") -> None:
        self.remote = remote
        self.rv = room_version
        self.events: dict[str, Event] = {}
        self.state: dict[StateKey, str] = {}
        self.latest: list[Event] = []
        self.ts = 1_000_000
        #: Answer send_join's ``omit_members=true`` with a partial state (as a resident server may).
        self.omit_members = False
        #: The state before each event accepted or added (for /state_ids).
        self.state_before: dict[str, dict[StateKey, str]] = {}
        #: How many /state_ids and /state requests were answered.
        self.state_requests = 0
        create_content: JsonDict = {"room_version": room_version.identifier}
        if not room_version.privileged_creators:
            create_content["creator"] = creator
        create = self._build("m.room.create", creator, create_content, "",
                             room_id=None if room_version.room_id_is_create_event_hash
                             else f"!fake{next(_room_counter)}:{remote.server_name}")
        self.room_id = create.room_id
        self._append(create)
        self.add("m.room.member", creator, {"membership": "join"}, creator)
        self.add("m.room.power_levels", creator, {"users": {creator: 100}} if not room_version.privileged_creators
                 else {}, "")
        self.add("m.room.join_rules", creator, {"join_rule": join_rule}, "")

    # -- building ------------------------------------------------------------------

    def _build(self, event_type: str, sender: str, content: JsonDict, state_key: Optional[str],
               room_id: Optional[str]) -> Event:
        self.ts += 1
        draft_pdu: JsonDict = {"type": event_type, "sender": sender, "content": content}
        if room_id is not None:
            draft_pdu["room_id"] = room_id
        if state_key is not None:
            draft_pdu["state_key"] = state_key
        draft = Event(draft_pdu, self.rv, event_id="$draft")
        keys = set(auth_types_for_event(self.rv, draft)) | {("m.room.create", "")}
        auth_state = {k: self.events[self.state[k]] for k in keys if k in self.state}
        cited = [e for k, e in sorted(auth_state.items())
                 if not (k == ("m.room.create", "") and self.rv.room_id_is_create_event_hash)]
        event = create_local_event(
            self.rv, event_type=event_type, sender=sender, room_id=room_id, content=content, state_key=state_key,
            prev_events=self.latest, auth_events=cited, depth=max((e.depth for e in self.latest), default=0) + 1,
            origin_server_ts=self.ts, server_name=self.remote.server_name, signing_key=self.remote.signing_key,
        )
        check_auth(self.rv, event, auth_state, create_event=auth_state.get(("m.room.create", "")))
        return event

    def add(self, event_type: str, sender: str, content: JsonDict, state_key: Optional[str] = None) -> Event:
        """A new event of the fake server's users, on the room's latest event."""
        event = self._build(event_type, sender, content, state_key, self.room_id)
        self._append(event)
        return event

    def _append(self, event: Event) -> None:
        self.state_before[event.event_id] = dict(self.state)
        self.events[event.event_id] = event
        if event.is_state():
            self.state[event.state_key_tuple()] = event.event_id
        self.latest = [event]

    def accept(self, pdu: JsonDict) -> Event:
        """Take an event another server built on our DAG (auth-checked against our state)."""
        event = Event(dict(pdu), self.rv)
        keys = set(auth_types_for_event(self.rv, event)) | {("m.room.create", "")}
        auth_state = {k: self.events[self.state[k]] for k in keys if k in self.state}
        check_auth(self.rv, event, auth_state, create_event=auth_state.get(("m.room.create", "")))
        self._append(event)
        return event

    def auth_chain(self, event_ids: list[str]) -> set[str]:
        chain: set[str] = set()
        todo = list(event_ids)
        while todo:
            for a in self.events[todo.pop()].auth_event_ids():
                if a not in chain:
                    chain.add(a)
                    todo.append(a)
        if self.rv.room_id_is_create_event_hash:
            chain.add("$" + self.room_id[1:])
        return chain

    # -- serving -------------------------------------------------------------------

    def serve(self, host: FakeRoomHost) -> None:
        host.rooms[self.room_id] = self

    async def _on_make(self, origin: str, content: Any, request: Any, kind: str, room_id: str,
                       user_id: str) -> tuple[int, JsonDict]:
        user_id = urllib.parse.unquote(user_id)
        try:
            event = self._build("m.room.member", user_id, {"membership": kind}, user_id, self.room_id)
        except AuthError as e:
            raise MatrixError(403, e.msg, "M_FORBIDDEN") from None
        template = {k: v for k, v in event.get_pdu_json().items() if k not in NOT_IN_TEMPLATE}
        return 200, {"event": template, "room_version": self.rv.identifier}

    async def _on_send_join(self, origin: str, content: Any, request: Any, room_id: str,
                            event_id: str) -> tuple[int, JsonDict]:
        state_before = dict(self.state)
        event = self.accept(content)
        omit = self.omit_members and (request.args or {}).get(b"omit_members") == [b"true"]
        servers = sorted({k[1].split(":", 1)[1] for k, i in state_before.items()
                          if k[0] == "m.room.member" and self.events[i].membership == "join"})
        if omit:  # non-member state and the creator's membership (a hero: the room has no name)
            creator = self.events[state_before[("m.room.create", "")]].sender
            state_before = {k: i for k, i in state_before.items()
                            if k[0] != "m.room.member" or k[1] in (creator, event.state_key)}
        state_ids = sorted(state_before.values())
        chain = self.auth_chain(state_ids + event.auth_event_ids()) | set(event.auth_event_ids())
        answer: JsonDict = {
            "origin": self.remote.server_name,
            "state": [pdu_for_federation(self.events[i]) for i in state_ids],
            "auth_chain": [pdu_for_federation(self.events[i]) for i in sorted(chain)],
            "event": pdu_for_federation(event),
        }
        if omit:
            answer.update(members_omitted=True, servers_in_room=servers)
        return 200, answer

    def _state_at(self, request: Any) -> list[str]:
        event_id = (request.args or {}).get(b"event_id", [b""])[0].decode()
        if event_id not in self.state_before:
            raise MatrixError(404, "unknown event", "M_NOT_FOUND")
        self.state_requests += 1
        return sorted(self.state_before[event_id].values())

    async def _on_event_auth(self, origin: str, content: Any, request: Any, room_id: str,
                             event_id: str) -> tuple[int, JsonDict]:
        event_id = urllib.parse.unquote(event_id)
        if event_id not in self.events:
            raise MatrixError(404, "unknown event", "M_NOT_FOUND")
        return 200, {"auth_chain": [pdu_for_federation(self.events[i]) for i in sorted(self.auth_chain([event_id]))]}

    async def _on_state_ids(self, origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
        state_ids = self._state_at(request)
        return 200, {"pdu_ids": state_ids, "auth_chain_ids": sorted(self.auth_chain(state_ids))}

    async def _on_state(self, origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
        state_ids = self._state_at(request)
        return 200, {"pdus": [pdu_for_federation(self.events[i]) for i in state_ids],
                     "auth_chain": [pdu_for_federation(self.events[i]) for i in sorted(self.auth_chain(state_ids))]}

    async def _on_send_other(self, origin: str, content: Any, request: Any, room_id: str,
                             event_id: str) -> tuple[int, JsonDict]:
        self.accept(content)
        if content.get("content", {}).get("membership") != "knock":
            return 200, {}
        stripped = [
            {"type": ev.type, "state_key": ev.state_key, "sender": ev.sender, "content": dict(ev.content)}
            for ev in (self.events[self.state[key]] for key in (("m.room.create", ""), ("m.room.join_rules", "")))
        ]
        return 200, {"knock_room_state": stripped}

    async def _on_backfill(self, origin: str, content: Any, request: Any, room_id: str) -> tuple[int, JsonDict]:
        """The events named by ``v`` and their ancestors, newest first, up to ``limit``."""
        args = request.args or {}
        start = [v.decode() for v in args.get(b"v", [])]
        limit = int(args.get(b"limit", [b"10"])[0])
        found: list[Event] = []
        seen: set[str] = set()
        todo = [i for i in start if i in self.events]
        while todo and len(found) < limit:
            todo.sort(key=lambda i: self.events[i].depth)
            event = self.events[todo.pop()]
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            found.append(event)
            todo.extend(p for p in event.prev_event_ids() if p not in seen)
        return 200, {"origin": self.remote.server_name, "origin_server_ts": 0,
                     "pdus": [pdu_for_federation(e) for e in found]}
