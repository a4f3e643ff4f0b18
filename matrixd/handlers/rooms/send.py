"""Sending message and state events as a client: idempotency by transaction id,
redactions, and the membership/state-event restrictions of the client API.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Mapping, Optional

from matrixd.api.errors import AuthError, NotFoundError
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec
from matrixd.handlers.ratelimit import RatelimitOverrides, Ratelimiter
from matrixd.state.auth import get_named_level, get_user_power_level
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.types import Requester
from matrixd.util.linearizer import Linearizer


def fake_event_id() -> str:
    """An event id in the hash-based format, for shadow-banned users' requests (nothing is stored)."""
    return "$" + secrets.token_urlsafe(32)


class EventSendHandler:
    def __init__(
        self,
        *,
        rooms: RoomStore,
        events: EventStore,
        current_state: CurrentStateStore,
        txn_ids: TxnIdStore,
        creation: EventCreationHandler,
        message_ratelimiter: Optional[Ratelimiter] = None,
    ) -> None:
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._txn_ids = txn_ids
        self._creation = creation
        self._ratelimiter = message_ratelimiter
        self._txn_lock = Linearizer("txn_ids")
        self._overrides: Optional[RatelimitOverrides] = None
        self._service_exempt: Callable[[str], bool] = _never_exempt

    def set_app_service_exemption(self, exempt: Callable[[str], bool]) -> None:
        """Exempt from the message rate limit the services ``exempt(service_id)`` names (``rate_limited: false``)."""
        self._service_exempt = exempt

    def set_ratelimit_overrides(self, overrides: RatelimitOverrides) -> None:
        """Honour per-user message rate limits set with the admin API."""
        self._overrides = overrides

    async def send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: Optional[str] = None,
        txn_id: Optional[str] = None,
        redacts: Optional[str] = None,
        origin_server_ts: Optional[int] = None,
    ) -> str:
        """Send a message (``state_key`` None) or state event; returns the event id.

        A repeated ``txn_id`` from the same device returns the first event's id
        and sends nothing.  ``origin_server_ts`` is an application service's
        massaged timestamp (the servlet only passes it for services).
        """
        if event_type == "m.room.create":
            raise AuthError(403, "m.room.create cannot be sent into an existing room")
        device_key = requester.device_id or ""
        if txn_id is not None:
            async with self._txn_lock.queue((requester.user_id, device_key, txn_id)):
                existing = await self._txn_ids.get_event_id_for_txn(requester.user_id, device_key, txn_id)
                if existing is not None:
                    return existing
                event_id, created = await self._send(requester, room_id, event_type, content, state_key, redacts,
                                                     txn_id, origin_server_ts)
                if not created:
                    # A new event recorded the transaction id in its own persisting transaction.
                    await self._txn_ids.store_txn(requester.user_id, device_key, txn_id, room_id, event_id)
                return event_id
        event_id, _ = await self._send(requester, room_id, event_type, content, state_key, redacts,
                                       origin_server_ts=origin_server_ts)
        return event_id

    async def _send(self, requester: Requester, room_id: str, event_type: str, content: Mapping[str, Any],
                    state_key: Optional[str], redacts: Optional[str], txn_id: Optional[str] = None,
                    origin_server_ts: Optional[int] = None) -> tuple[str, bool]:
        """The event id, and whether a new event was created (False: an identical state event stood)."""
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Unknown room")
        if self._ratelimiter is not None and not (
            requester.app_service_id is not None and self._service_exempt(requester.app_service_id)
        ):
            override = await self._overrides.get(requester.user_id) if self._overrides is not None else None
            self._ratelimiter.ratelimit(requester.user_id, config=override)
        if requester.shadow_banned:
            # Shadow-banned: the request looks successful but nothing enters the room.
            return fake_event_id(), False  # the transaction id still maps to it (retries look alike)
        if state_key is not None:
            # Sending the same state again is a no-op that returns the current event (spec: idempotent PUT).
            current = await self._current.get_current_state_event(room_id, event_type, state_key)
            if current is not None and current.sender == requester.user_id and current.content == dict(content):
                return current.event_id, False
        if redacts is not None:
            await self._check_can_redact(requester, room_id, redacts)
        persisted = await self._creation.send(
            room_id, EventSpec(event_type, requester.user_id, content, state_key, redacts,
                               txn_id=txn_id, device_id=requester.device_id, origin_server_ts=origin_server_ts)
        )
        return persisted.event.event_id, True

    async def _check_can_redact(self, requester: Requester, room_id: str, redacts: str) -> None:
        """Redacting another user's event needs the redact level; the auth rules do not check that."""
        target = await self._events.get_event(redacts)
        if target is None or target.room_id != room_id:
            # Redacting an unknown event is allowed by the spec (it may arrive later); only local rules apply.
            return
        if target.sender == requester.user_id:
            return
        room_version = await self._rooms.get_room_version(room_id)
        pl = await self._current.get_current_state_event(room_id, "m.room.power_levels", "")
        create = await self._current.get_current_state_event(room_id, "m.room.create", "")
        auth_state = {k: v for k, v in ((("m.room.power_levels", ""), pl), (("m.room.create", ""), create))
                      if v is not None}
        level = get_user_power_level(room_version, requester.user_id, auth_state, create_event=create)
        if level < get_named_level(room_version, "redact", pl.content if pl is not None else None):
            raise AuthError(403, "You don't have permission to redact events from other users")


def _never_exempt(_service_id: str) -> bool:
    return False
