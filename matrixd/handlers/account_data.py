"""Account data and room tags: per-user data clients store on the server.

The server manages ``m.fully_read`` (through the read markers API) and
``m.push_rules`` (through the push rules API); clients may read both here but
not write them (405 ``M_BAD_JSON``).  Room tags are kept as the ``m.tag`` room
account data event.  Every write is announced on the account_data stream
(wake-up key: the user id) after it is committed.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

from matrixd.api.errors import AuthError, BadJsonError, Codes, InvalidParamError, MatrixError, NotFoundError
from matrixd.handlers.push_rules import PushRulesHandler
from matrixd.handlers.sync.announcer import StreamAnnouncer
from matrixd.storage.account_data import AccountDataStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.types import JsonDict, Requester, is_valid_room_id
from matrixd.util.linearizer import Linearizer

#: Account data types only the server writes.
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
TAG_TYPE = "m.tag"
MAX_TAG_BYTES = 255


class AccountDataHandler:
    def __init__(self, *, store: AccountDataStore, notifier: Notifier, push_rules: PushRulesHandler) -> None:
        self._store = store
        self._announcer = StreamAnnouncer(notifier, StreamName.ACCOUNT_DATA, store.get_current_token)
        self._push_rules = push_rules
        self._tag_lock = Linearizer("room_tags")

    def set_publisher(self, notify: Callable[[], None]) -> None:
        """Announce writes through the replication publisher (``notify`` is its notify for this stream)."""
        self._announcer.publish_through(notify)

    # -- checks -----------------------------------------------------------------

    @staticmethod
    def _check_self(requester: Requester, user_id: str, verb: str) -> None:
        if requester.user_id != user_id:
            raise AuthError(403, f"Cannot {verb} account data for other users.")

    @staticmethod
    def _check_writable(data_type: str) -> None:
        if not data_type:
            raise InvalidParamError("The account data type must not be empty")
        if data_type in SERVER_MANAGED_TYPES:
            raise MatrixError(405, f"Cannot set {data_type} through this API.", Codes.BAD_JSON)

    @staticmethod
    def _check_room_id(room_id: str) -> None:
        if not is_valid_room_id(room_id):
            raise InvalidParamError(f"{room_id!r} is not a valid room ID")

    def _announce(self, stream_id: int, user_id: str) -> None:
        self._announcer.announce(stream_id, [user_id])

    async def _written(self, write: Awaitable[int]) -> int:
        """Await a store write; if it fails, release announcements held behind its (finished) id."""
        try:
            return await write
        except BaseException:
            self._announcer.flush()
            raise

    # -- global -----------------------------------------------------------------

    async def set_global(self, requester: Requester, user_id: str, data_type: str, content: JsonDict) -> None:
        self._check_self(requester, user_id, "add")
        self._check_writable(data_type)
        self._announce(await self._written(self._store.set_global(user_id, data_type, content)), user_id)

    async def get_global(self, requester: Requester, user_id: str, data_type: str) -> JsonDict:
        self._check_self(requester, user_id, "get")
        if data_type == "m.push_rules":
            return await self._push_rules.get_push_rules_account_data(user_id)
        content = await self._store.get_global(user_id, data_type)
        if content is None:
            raise NotFoundError("Account data not found.")
        return content

    # -- per room ---------------------------------------------------------------

    async def set_room(
        self, requester: Requester, user_id: str, room_id: str, data_type: str, content: JsonDict
    ) -> None:
        self._check_self(requester, user_id, "add")
        self._check_room_id(room_id)
        self._check_writable(data_type)
        if data_type == TAG_TYPE:
            async with self._tag_lock.queue((user_id, room_id)):
                stream_id = await self._written(self._store.set_room(user_id, room_id, data_type, content))
        else:
            stream_id = await self._written(self._store.set_room(user_id, room_id, data_type, content))
        self._announce(stream_id, user_id)

    async def get_room(self, requester: Requester, user_id: str, room_id: str, data_type: str) -> JsonDict:
        self._check_self(requester, user_id, "get")
        self._check_room_id(room_id)
        content = await self._store.get_room(user_id, room_id, data_type)
        if content is None:
            raise NotFoundError("Room account data not found.")
        return content

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        """Move the user's fully read marker (the read markers API, already checked)."""
        stream_id = await self._written(
            self._store.set_room(user_id, room_id, "m.fully_read", {"event_id": event_id})
        )
        self._announce(stream_id, user_id)

    # -- tags -------------------------------------------------------------------

    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> JsonDict:
        """``{tag: {order...}}`` of the room (empty if none)."""
        self._check_self(requester, user_id, "get")
        self._check_room_id(room_id)
        return _tags_of(await self._store.get_room(user_id, room_id, TAG_TYPE))

    async def add_tag(self, requester: Requester, user_id: str, room_id: str, tag: str, content: JsonDict) -> None:
        self._check_self(requester, user_id, "add")
        self._check_room_id(room_id)
        if not tag or len(tag.encode("utf-8")) > MAX_TAG_BYTES:
            raise InvalidParamError(f"Tag names must be 1 to {MAX_TAG_BYTES} bytes long")
        order = content.get("order")
        if "order" in content and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise BadJsonError("order must be a number")
        await self._update_tags(user_id, room_id, tag, dict(content))

    async def remove_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> None:
        self._check_self(requester, user_id, "remove")
        self._check_room_id(room_id)
        await self._update_tags(user_id, room_id, tag, None)

    async def _update_tags(self, user_id: str, room_id: str, tag: str, value: Optional[JsonDict]) -> None:
        async with self._tag_lock.queue((user_id, room_id)):
            existing = await self._store.get_room(user_id, room_id, TAG_TYPE)
            tags = _tags_of(existing)
            if value is None:
                if tag not in tags:
                    return
                del tags[tag]
            else:
                if tags.get(tag) == value:
                    return
                tags[tag] = value
            stream_id = await self._written(
                self._store.set_room(user_id, room_id, TAG_TYPE, {**(existing or {}), "tags": tags})
            )
        self._announce(stream_id, user_id)


def _tags_of(content: Optional[JsonDict]) -> dict[str, Any]:
    tags = (content or {}).get("tags")
    return dict(tags) if isinstance(tags, dict) else {}
