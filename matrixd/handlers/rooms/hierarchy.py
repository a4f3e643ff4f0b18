"""``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``: a page of a space tree, as the requester may see it.

The walk is depth-first from the root, as the spec asks (a room, then each of its children's subtrees
in the spec's child order: ``order``, then the ``m.space.child`` event's ``origin_server_ts``, then the
room ID). Each room is described by ``SpaceRoomSummaries`` when this server is in it, else by the
answer of a ``via`` server's ``GET /_matrix/federation/v1/hierarchy`` (whose ``children`` describe the
next level down, and whose ``inaccessible_children`` are never shown). Rooms the requester may not see
(the spec's list: joined, invited, a public or knockable rule, a ``restricted`` rule they meet, or
world-readable history) are left out with their subtrees. A banned requester does not see the room.

Pagination: the rest of the walk (the pending stack and the rooms already seen) is kept in memory
under an opaque random ``next_batch`` token for ``SESSION_LIFETIME_MS``, bound to the requester, the
root and ``suggested_only``/``max_depth``; a token used with anything else is ``400 M_INVALID_PARAM``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Optional, Protocol

import attr

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.handlers.rooms.space_summary import JOINABLE_RULES, SpaceRoomSummaries, valid_child_event
from matrixd.storage.current_state import CurrentStateStore
from matrixd.types import JsonDict, Requester
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 50
#: The deepest a walk goes, whatever the client asks (and the default).
MAX_DEPTH = 50
SESSION_LIFETIME_MS = 5 * 60 * 1000
MAX_SESSIONS = 1000


class RemoteSpaceHierarchy(Protocol):
    """Another server's ``GET /_matrix/federation/v1/hierarchy/{roomId}`` answer (None if it gave none)."""

    async def get_hierarchy(self, destination: str, room_id: str, suggested_only: bool) -> Optional[JsonDict]: ...


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _Pending:
    """A room still to visit: its depth below the root and the servers its parent named."""

    room_id: str
    depth: int
    via: tuple[str, ...]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _Session:
    """The rest of a walk, under a ``next_batch`` token. Its parameters must match the next request's."""

    user_id: str
    room_id: str
    suggested_only: bool
    max_depth: int
    stack: tuple[_Pending, ...]  # the next room to visit is the last
    seen: frozenset[str]
    expires_at_ms: int


def _child_sort_key(child: JsonDict) -> tuple[int, str, int, str]:
    """The spec's child order: a valid ``order`` first (lexicographically), then timestamp, then room ID."""
    order = child.get("content", {}).get("order")
    valid = isinstance(order, str) and len(order) <= 50 and all("\x20" <= c <= "\x7e" for c in order)
    ts = child.get("origin_server_ts")
    return (0 if valid else 1, order if valid else "", ts if isinstance(ts, int) else 0, str(child.get("state_key")))


class SpaceHierarchyHandler:
    def __init__(self, *, server_name: str, clock: Clock, summaries: SpaceRoomSummaries,
                 current_state: CurrentStateStore, remote: Optional[RemoteSpaceHierarchy] = None) -> None:
        self._server_name = server_name
        self._clock = clock
        self._summaries = summaries
        self._current = current_state
        self._remote = remote
        self._sessions: dict[str, _Session] = {}

    def set_remote(self, remote: RemoteSpaceHierarchy) -> None:
        """Describe rooms we are not in through ``remote`` (wired once federation exists)."""
        self._remote = remote

    async def get_hierarchy(self, requester: Requester, room_id: str, *, suggested_only: bool,
                            max_depth: Optional[int], limit: Optional[int], from_token: Optional[str]) -> JsonDict:
        if limit is not None and limit < 1:
            raise MatrixError(400, "limit must be a positive integer", Codes.INVALID_PARAM)
        if max_depth is not None and max_depth < 0:
            raise MatrixError(400, "max_depth must be a non-negative integer", Codes.INVALID_PARAM)
        depth_limit = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
        page_size = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        user_id = requester.user_id

        if not await self._summaries.is_known(room_id) or not await self._local_accessible(user_id, room_id):
            raise AuthError(403, "You are not allowed to view this room.")

        now = self._clock.time_msec()
        self._expire_sessions(now)
        if from_token is not None:
            session = self._sessions.get(from_token)
            if session is None:
                raise MatrixError(400, "Unknown pagination token", Codes.INVALID_PARAM)
            if (session.user_id, session.room_id) != (user_id, room_id):
                raise MatrixError(400, "The pagination token belongs to another request", Codes.INVALID_PARAM)
            if (session.suggested_only, session.max_depth) != (suggested_only, depth_limit):
                raise MatrixError(400, "suggested_only and max_depth cannot change on paginated requests",
                                  Codes.INVALID_PARAM)
            stack = list(session.stack)
            seen = set(session.seen)
        else:
            stack = [_Pending(room_id, 0, ())]
            seen = set()

        # Summaries of remote rooms taken from a remote parent's answer, and rooms remotes call inaccessible.
        remote_children: dict[str, JsonDict] = {}
        inaccessible: set[str] = set()
        rooms: list[JsonDict] = []
        while stack and len(rooms) < page_size:
            pending = stack.pop()
            if pending.room_id in seen:
                continue
            seen.add(pending.room_id)
            summary = await self._describe(user_id, pending, suggested_only, remote_children, inaccessible)
            if summary is None:
                continue
            rooms.append(summary)
            if pending.depth >= depth_limit:
                continue
            children = [c for c in summary.get("children_state", [])
                        if isinstance(c, dict) and isinstance(c.get("state_key"), str)
                        and valid_child_event(c.get("content"), suggested_only)]
            for child in sorted(children, key=_child_sort_key, reverse=True):
                if child["state_key"] not in seen:
                    stack.append(_Pending(child["state_key"], pending.depth + 1, tuple(child["content"]["via"])))

        result: JsonDict = {"rooms": rooms}
        if stack:
            token = secrets.token_urlsafe(16)
            self._sessions[token] = _Session(
                user_id=user_id, room_id=room_id, suggested_only=suggested_only, max_depth=depth_limit,
                stack=tuple(stack), seen=frozenset(seen), expires_at_ms=now + SESSION_LIFETIME_MS,
            )
            result["next_batch"] = token
        return result

    def _expire_sessions(self, now: int) -> None:
        for token in [t for t, s in self._sessions.items() if s.expires_at_ms <= now]:
            del self._sessions[token]
        while len(self._sessions) >= MAX_SESSIONS:  # oldest first: dicts keep insertion order
            del self._sessions[next(iter(self._sessions))]

    async def _describe(self, user_id: str, pending: _Pending, suggested_only: bool,
                        remote_children: dict[str, JsonDict], inaccessible: set[str]) -> Optional[JsonDict]:
        """The room's chunk for this requester, or None if they may not see it or nobody can describe it."""
        room_id = pending.room_id
        if await self._summaries.is_known(room_id):
            if not await self._local_accessible(user_id, room_id):
                return None
            return await self._summaries.summary(room_id, suggested_only=suggested_only)
        if room_id in inaccessible:
            return None
        summary = remote_children.get(room_id)
        if summary is None:
            summary = await self._fetch_remote(pending, suggested_only, remote_children, inaccessible)
        if summary is None or not await self._remote_accessible(user_id, summary):
            return None
        return _chunk(summary)

    async def _fetch_remote(self, pending: _Pending, suggested_only: bool, remote_children: dict[str, JsonDict],
                            inaccessible: set[str]) -> Optional[JsonDict]:
        if self._remote is None:
            return None
        for server in pending.via:
            if server == self._server_name:
                continue
            answer = await self._remote.get_hierarchy(server, pending.room_id, suggested_only)
            if answer is None:
                continue  # an unreachable or refusing server: try the next one
            room = answer.get("room")
            if not isinstance(room, dict) or room.get("room_id") != pending.room_id:
                logger.info("hierarchy of %s from %s: answer is not about that room", pending.room_id, server)
                continue
            # Only what the answer says about the room's own children is taken.
            state = room.get("children_state")
            child_ids = {c.get("state_key") for c in state if isinstance(c, dict)} if isinstance(state, list) else set()
            children = answer.get("children")
            for child in children if isinstance(children, list) else []:
                if isinstance(child, dict) and child.get("room_id") in child_ids:
                    remote_children.setdefault(child["room_id"], child)
            hidden = answer.get("inaccessible_children")
            for child_id in hidden if isinstance(hidden, list) else []:
                if child_id in child_ids:
                    inaccessible.add(child_id)
            return room
        return None

    async def _membership(self, user_id: str, room_id: str) -> Optional[str]:
        info = await self._current.get_membership(room_id, user_id)
        return info.membership if info is not None else None

    async def _local_accessible(self, user_id: str, room_id: str) -> bool:
        membership = await self._membership(user_id, room_id)
        if membership in ("join", "invite"):
            return True
        if membership == "ban":
            return False
        if await self._summaries.is_world_readable(room_id):
            return True
        rule = await self._summaries.join_rule(room_id)
        if rule in JOINABLE_RULES:
            return True
        if rule == "restricted":
            allow = (await self._summaries.state_content(room_id, "m.room.join_rules")).get("allow")
            allowed = {a.get("room_id") for a in allow if isinstance(a, dict) and a.get("type") == "m.room_membership"} \
                if isinstance(allow, list) else set()
            return bool(allowed & await self._current.get_rooms_for_user(user_id))
        return False

    async def _remote_accessible(self, user_id: str, summary: JsonDict) -> bool:
        """Whether the requester may see a room described by another server (which filtered for us)."""
        room_id = summary["room_id"]
        membership = await self._membership(user_id, room_id)
        if membership in ("join", "invite"):
            return True
        if membership == "ban":
            return False
        if summary.get("world_readable") is True or summary.get("join_rule") in JOINABLE_RULES:
            return True
        if summary.get("join_rule") == "restricted":
            allowed = summary.get("allowed_room_ids")
            if isinstance(allowed, list):
                return bool(set(a for a in allowed if isinstance(a, str))
                            & await self._current.get_rooms_for_user(user_id))
        return False


def _chunk(summary: JsonDict) -> JsonDict:
    """A remote summary as a client chunk: the spec's fields only, ``children_state`` always present."""
    fields = ("room_id", "num_joined_members", "world_readable", "guest_can_join", "join_rule", "room_type", "name",
              "topic", "avatar_url", "canonical_alias", "room_version", "encryption", "allowed_room_ids")
    chunk: JsonDict = {k: summary[k] for k in fields if k in summary}
    chunk.setdefault("num_joined_members", 0)
    chunk.setdefault("world_readable", False)
    chunk.setdefault("guest_can_join", False)
    children: Any = summary.get("children_state")
    chunk["children_state"] = [c for c in children if isinstance(c, dict)] if isinstance(children, list) else []
    return chunk
