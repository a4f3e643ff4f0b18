"""Deleting rooms and purging room history, as resumable background jobs.

Room deletion (``DELETE /_synapse/admin/v2/rooms/<room_id>``) runs in phases,
each committed before the next so a restart resumes where it stopped:

1. ``shutting_down``: the room is blocked (if asked), every local member leaves
   (and, with ``new_room_user_id``, is moved into a new room with a notice).
2. ``purging``: first the room's ``rooms`` row and aliases go, so the room is
   unknown and every later join is refused; then its events (in batches of
   ``batch_size``), its state groups, and finally its current state.
3. ``complete`` (or ``failed`` with the error).

A history purge (``POST /_synapse/admin/v1/purge_history``) deletes, in
batches, the room's *non-state* timeline events up to a point.  State events
are kept, and with them every state group, auth chain and the current state,
as are the room's forward extremities; so the room keeps working and its state
stays resolvable.  Purging old state events and unreferenced state groups is
not done (see the module's tests for what is pinned).
"""

from __future__ import annotations

import logging
from typing import Optional

from matrixd.api.errors import Codes, MatrixError, NotFoundError
from matrixd.handlers.admin.jobs import COMPLETE, FAILED, BatchSizer, JobRunner, StepResult
from matrixd.handlers.rooms.create import RoomCreationHandler
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.storage.admin import AdminJob, AdminStore
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import JsonDict, Requester, get_domain_from_id

logger = logging.getLogger(__name__)

DELETE_ROOM = "delete_room"
PURGE_HISTORY = "purge_history"
SHUTTING_DOWN = "shutting_down"
PURGING = "purging"
ACTIVE = "active"
#: How long one batch's delete transaction should take (see BatchSizer), by engine.  SQLite runs every
#: transaction on its one connection, so every request queues behind a batch: keep batches short there.
#: On PostgreSQL a batch only competes for CPU and disk, and each transaction has a fixed round-trip cost.
BATCH_TARGET_S = {"sqlite": 0.01, "postgres": 0.1}


def _req(user_id: str) -> Requester:
    return Requester(user_id=user_id, device_id=None, access_token_id=None)


class RoomDeletionHandler:
    def __init__(
        self, *, server_name: str, store: AdminStore, runner: JobRunner, rooms: RoomStore, aliases: AliasStore,
        events: EventStore, current_state: CurrentStateStore, membership: RoomMemberHandler,
        room_creation: RoomCreationHandler, send: EventSendHandler, batch_size: int = 500,
        batch_target_s: float = BATCH_TARGET_S["postgres"],
    ) -> None:
        """``batch_size`` is the most events (or state groups) one batch deletes; batches are
        sized below it so each transaction takes about ``batch_target_s``."""
        self._server_name = server_name
        self._store = store
        self._runner = runner
        self._rooms = rooms
        self._aliases = aliases
        self._events = events
        self._current = current_state
        self._membership = membership
        self._room_creation = room_creation
        self._send = send
        minimum = min(20, batch_size)
        self._event_batches = BatchSizer(initial=max(minimum, batch_size // 5), minimum=minimum,
                                         maximum=batch_size, target_s=batch_target_s)
        self._group_batches = BatchSizer(initial=max(minimum, batch_size // 5), minimum=minimum,
                                         maximum=batch_size, target_s=batch_target_s)
        runner.register(DELETE_ROOM, self._delete_step)
        runner.register(PURGE_HISTORY, self._purge_step)

    # -- room deletion -------------------------------------------------------------------

    async def start_delete(self, requester: Requester, room_id: str, body: JsonDict) -> str:
        params: JsonDict = {"requester": requester.user_id}
        for name in ("new_room_user_id", "room_name", "message"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise MatrixError(400, f"'{name}' must be a string", Codes.BAD_JSON)
            params[name] = value
        for name, default in (("block", False), ("purge", True), ("force_purge", False)):
            value = body.get(name, default)
            if not isinstance(value, bool):
                raise MatrixError(400, f"'{name}' must be a boolean", Codes.BAD_JSON)
            params[name] = value
        new_owner = params["new_room_user_id"]
        if new_owner is not None and get_domain_from_id(new_owner) != self._server_name:
            raise MatrixError(400, "new_room_user_id must be a local user", Codes.INVALID_PARAM)
        for job in await self._store.get_jobs_for_room(room_id, DELETE_ROOM):
            if job.status not in (COMPLETE, FAILED):
                raise MatrixError(400, f"The room is already being deleted ({job.job_id})", Codes.INVALID_PARAM)
        if await self._rooms.get_room(room_id) is None and not params["block"]:
            raise NotFoundError("Room not found")
        if params["block"]:
            await self._store.block_room(room_id, requester.user_id)
        return await self._runner.start(DELETE_ROOM, room_id, params, SHUTTING_DOWN)

    async def _delete_step(self, job: AdminJob) -> StepResult:
        assert job.room_id is not None
        if job.status == SHUTTING_DOWN:
            progress = await self._shut_down(job.room_id, job.params)
            if not job.params.get("purge", True):
                return StepResult(COMPLETE, progress, done=True)
            # Forget the room first: from here on it is unknown, so joins are refused.
            await self._aliases_and_room_row(job.room_id)
            return StepResult(PURGING, progress)
        if job.status == PURGING:
            if await self._purge_room_batch(job.room_id):
                return StepResult(PURGING, job.progress)
            return StepResult(COMPLETE, job.progress, done=True)
        raise RuntimeError(f"unknown room deletion status {job.status!r}")

    async def _shut_down(self, room_id: str, params: JsonDict) -> JsonDict:
        aliases = await self._aliases.get_aliases_for_room(room_id)
        local_aliases = [a for a in aliases if get_domain_from_id(a) == self._server_name]
        members = [u for u in await self._current.get_users_in_room(room_id)
                   if get_domain_from_id(u) == self._server_name]
        new_room_id: Optional[str] = None
        owner = params.get("new_room_user_id")
        if owner is not None and members:
            new_room_id = await self._room_creation.create_room(
                _req(owner), {"preset": "public_chat", "name": params.get("room_name") or "Content Violation Notification",
                              "power_level_content_override": {"users_default": -10}},
            )
        kicked: list[str] = []
        failed: list[str] = []
        for user_id in members:
            try:
                await self._membership.update_membership(_req(user_id), user_id, room_id, "leave",
                                                         reason=params.get("message"))
                kicked.append(user_id)
            except MatrixError as e:
                logger.warning("deleting %s: %s could not leave: %s", room_id, user_id, e)
                failed.append(user_id)
                continue
            if new_room_id is not None and owner is not None and user_id != owner:
                try:
                    await self._membership.update_membership(_req(user_id), user_id, new_room_id, "join")
                except MatrixError as e:
                    logger.warning("deleting %s: could not move %s to %s: %s", room_id, user_id, new_room_id, e)
        if new_room_id is not None and owner is not None:
            message = params.get("message") or "Sharing illegal content on this server is not permitted"
            await self._send.send_event(_req(owner), new_room_id, "m.room.message",
                                        {"msgtype": "m.text", "body": message})
        return {"kicked_users": kicked, "failed_to_kick_users": failed, "local_aliases": local_aliases,
                "new_room_id": new_room_id}

    async def _aliases_and_room_row(self, room_id: str) -> None:
        for alias in await self._aliases.get_aliases_for_room(room_id):
            await self._aliases.delete_alias(alias)
        await self._store.delete_room_row(room_id)

    async def _purge_room_batch(self, room_id: str) -> bool:
        """One batch of a deleted room's rows; False once nothing is left."""
        event_ids = await self._store.next_room_event_batch(room_id, self._event_batches.size)
        if event_ids:
            await self._delete_events(event_ids)
            return True
        sizer = self._group_batches
        started = sizer.timer()
        deleted = await self._store.delete_state_group_batch(room_id, sizer.size)
        sizer.record(deleted, sizer.timer() - started)
        if deleted:
            return True
        members = await self._current.get_users_in_room(room_id)
        await self._store.delete_room_rows(room_id)
        self._current.invalidate_room(room_id)
        self._events.invalidate_forward_extremities(room_id)
        self._current.invalidate_all_local_memberships()
        self._current.invalidate_users(members)
        return False

    async def delete_status(self, room_id: Optional[str] = None, delete_id: Optional[str] = None) -> JsonDict:
        if delete_id is not None:
            job = await self._store.get_job(delete_id)
            if job is None or job.kind != DELETE_ROOM:
                raise NotFoundError("delete id not found")
            return _delete_json(job)
        assert room_id is not None
        jobs = await self._store.get_jobs_for_room(room_id, DELETE_ROOM)
        if not jobs:
            raise NotFoundError("No delete task for room")
        return {"results": [{"delete_id": j.job_id, **_delete_json(j)} for j in jobs]}

    # -- history purge -------------------------------------------------------------------

    async def start_purge(self, room_id: str, event_id: Optional[str], body: JsonDict) -> str:
        if await self._rooms.get_room(room_id) is None:
            raise NotFoundError("Room not found")
        delete_local = body.get("delete_local_events", False)
        if not isinstance(delete_local, bool):
            raise MatrixError(400, "'delete_local_events' must be a boolean", Codes.BAD_JSON)
        event_id = event_id or body.get("purge_up_to_event_id")
        before_ts = body.get("purge_up_to_ts")
        params: JsonDict = {"delete_local_events": delete_local, "max_stream": None, "before_ts": None}
        if event_id is not None:
            if not isinstance(event_id, str):
                raise MatrixError(400, "'purge_up_to_event_id' must be a string", Codes.BAD_JSON)
            event = await self._events.get_event(event_id)
            if event is None or event.room_id != room_id:
                raise MatrixError(404, "Event not found in this room", Codes.NOT_FOUND)
            pos = await self._events.get_topological_position(event_id)
            if pos is None:
                raise MatrixError(400, "The event has no timeline position", Codes.INVALID_PARAM)
            params["max_depth"], params["max_stream"] = int(pos[0]), int(pos[1])
        elif before_ts is not None:
            if not isinstance(before_ts, int) or isinstance(before_ts, bool):
                raise MatrixError(400, "'purge_up_to_ts' must be an integer", Codes.INVALID_PARAM)
            params["max_depth"] = 2 ** 62
            params["before_ts"] = before_ts
        else:
            raise MatrixError(400, "Give an event id or 'purge_up_to_ts'", Codes.MISSING_PARAM)
        return await self._runner.start(PURGE_HISTORY, room_id, params, ACTIVE)

    async def _purge_step(self, job: AdminJob) -> StepResult:
        assert job.room_id is not None
        p = job.params
        batch = await self._store.history_purge_batch(
            job.room_id, max_depth=int(p["max_depth"]), max_stream=p.get("max_stream"),
            before_ts=p.get("before_ts"),
            local_suffix=None if p["delete_local_events"] else ":" + self._server_name,
            limit=self._event_batches.size,
        )
        purged = int(job.progress.get("purged", 0))
        if not batch:
            return StepResult(COMPLETE, {"purged": purged}, done=True)
        await self._delete_events(batch)
        return StepResult(ACTIVE, {"purged": purged + len(batch)})

    async def _delete_events(self, event_ids: list[str]) -> None:
        """Delete one batch of events (one transaction), timing it to size the next batch."""
        sizer = self._event_batches
        started = sizer.timer()
        await self._store.delete_events(event_ids)
        sizer.record(len(event_ids), sizer.timer() - started)
        self._events.invalidate_events(event_ids)

    async def purge_status(self, purge_id: str) -> JsonDict:
        job = await self._store.get_job(purge_id)
        if job is None or job.kind != PURGE_HISTORY:
            raise NotFoundError("purge id not found")
        out: JsonDict = {"status": job.status}
        if job.error is not None:
            out["error"] = job.error
        return out


def _delete_json(job: AdminJob) -> JsonDict:
    status = job.status
    out: JsonDict = {"status": status, "shutdown_room": {
        "kicked_users": job.progress.get("kicked_users", []),
        "failed_to_kick_users": job.progress.get("failed_to_kick_users", []),
        "local_aliases": job.progress.get("local_aliases", []),
        "new_room_id": job.progress.get("new_room_id"),
    }}
    if job.error is not None:
        out["error"] = job.error
    return out
