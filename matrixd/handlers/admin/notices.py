"""Server notices: messages from the server's system user, each user in their
own notices room (``POST /_synapse/admin/v1/send_server_notice``).

The system user (``server_notices.system_mxid_localpart``) is created on first
use.  A user's notices room is created by the system user with the user
invited; while the user is joined or invited it is reused, otherwise a new one
is made.  Users cannot send in it (``events_default`` is above their level).
"""

from __future__ import annotations

import logging
from typing import Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.config.server_notices import ServerNoticesConfig
from matrixd.handlers.rooms.create import RoomCreationHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.storage.accounts import UserStore
from matrixd.storage.admin import AdminStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.types import JsonDict, Requester, UserID
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)


class ServerNoticesHandler:
    def __init__(self, *, server_name: str, config: ServerNoticesConfig, store: AdminStore, users: UserStore,
                 profiles: ProfileStore, current_state: CurrentStateStore, room_creation: RoomCreationHandler,
                 send: EventSendHandler) -> None:
        self._server_name = server_name
        self._config = config
        self._store = store
        self._users = users
        self._profiles = profiles
        self._current = current_state
        self._room_creation = room_creation
        self._send = send
        self._lock = Linearizer("server_notices")

    @property
    def system_user(self) -> Optional[str]:
        localpart = self._config.system_mxid_localpart
        return f"@{localpart}:{self._server_name}" if localpart is not None else None

    async def send_notice(self, user_id: str, content: JsonDict, event_type: str = "m.room.message",
                          state_key: Optional[str] = None) -> str:
        system = self.system_user
        if system is None:
            raise MatrixError(400, "Server notices are not enabled on this server", Codes.UNKNOWN)
        if not UserID.is_valid(user_id) or UserID.from_string(user_id).domain != self._server_name:
            raise MatrixError(400, "Server notices can only be sent to local users", Codes.INVALID_PARAM)
        user = await self._users.get_user(user_id)
        if user is None:
            raise NotFoundError("User not found")
        if user_id == system:
            raise MatrixError(400, "Cannot send a server notice to the system user", Codes.INVALID_PARAM)
        async with self._lock.queue(user_id):
            await self._ensure_system_user(system)
            room_id = await self._notice_room(system, user_id)
        sender = Requester(user_id=system, device_id=None, access_token_id=None)
        return await self._send.send_event(sender, room_id, event_type, content, state_key=state_key)

    async def _ensure_system_user(self, system: str) -> None:
        if await self._users.get_user(system) is not None:
            return
        await self._users.create_user(system, None, user_type="support")
        await self._profiles.create_profile(system, self._config.system_mxid_display_name or
                                            self._config.system_mxid_localpart)
        if self._config.system_mxid_avatar_url is not None:
            await self._profiles.set_avatar_url(system, self._config.system_mxid_avatar_url)

    async def _notice_room(self, system: str, user_id: str) -> str:
        room_id = await self._store.get_notice_room(user_id)
        if room_id is not None:
            membership = await self._current.get_membership(room_id, user_id)
            if membership is not None and membership.membership in ("join", "invite"):
                return room_id
        room_id = await self._room_creation.create_room(
            Requester(user_id=system, device_id=None, access_token_id=None),
            {"preset": "private_chat", "name": self._config.room_name, "invite": [user_id],
             "power_level_content_override": {"events_default": 50}},
        )
        await self._store.set_notice_room(user_id, room_id)
        logger.info("created server notices room %s for %s", room_id, user_id)
        return room_id
