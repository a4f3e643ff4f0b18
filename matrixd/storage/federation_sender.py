"""SQL for outbound federation: destination retry state, catch-up positions,
the sender's stream positions and its durable device list queue; and the
cache of remote users' devices that device list EDUs keep fresh.

The federation sender is the only writer of the ``federation_*`` tables (one
process: the master, or a ``federation_sender`` worker later); the inbound
EDU handlers write the ``remote_*`` cache tables.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.e2e_keys import canonical
from matrixd.storage.sql import simple_upsert_txn
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class RetryState:
    """A destination's backoff: no attempt before ``retry_last_ts + retry_interval`` (ms)."""

    retry_last_ts: int
    retry_interval: int
    failure_ts: Optional[int]

    def next_attempt_ts(self) -> int:
        return self.retry_last_ts + self.retry_interval if self.retry_interval else 0


@attrs.frozen(slots=True)
class CatchUpEvent:
    room_id: str
    stream_ordering: int
    event_id: str


@attrs.frozen(slots=True)
class PendingDeviceListChange:
    user_id: str
    device_id: Optional[str]  # None: cross-signing keys changed
    stream_id: int


class FederationSenderStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- retry state ---------------------------------------------------------------

    async def get_retry_state(self, destination: str) -> Optional[RetryState]:
        row = await self._db.simple_select_one(
            "federation_destinations", {"destination": destination},
            ("retry_last_ts", "retry_interval", "failure_ts"), allow_none=True, desc="get_destination_retry",
        )
        if row is None:
            return None
        return RetryState(int(row["retry_last_ts"]), int(row["retry_interval"]),
                          None if row["failure_ts"] is None else int(row["failure_ts"]))

    async def set_retry_state(self, destination: str, state: RetryState) -> None:
        await self._db.simple_upsert(
            "federation_destinations", {"destination": destination},
            {"retry_last_ts": state.retry_last_ts, "retry_interval": state.retry_interval,
             "failure_ts": state.failure_ts},
            desc="set_destination_retry",
        )

    # -- catch-up ------------------------------------------------------------------

    async def get_last_successful_stream_ordering(self, destination: str) -> Optional[int]:
        value = await self._db.simple_select_one_onecol(
            "federation_destinations", {"destination": destination}, "last_successful_stream_ordering",
            allow_none=True, desc="get_last_successful_stream_ordering",
        )
        return None if value is None else int(value)

    async def set_last_successful_stream_ordering(self, destination: str, stream_ordering: int) -> None:
        """Record that ``destination`` has every event up to ``stream_ordering`` we meant to send it."""

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "SELECT last_successful_stream_ordering FROM federation_destinations WHERE destination = ?",
                (destination,),
            )
            row = txn.fetchone()
            if row is not None and row[0] is not None and int(row[0]) >= stream_ordering:
                return
            simple_upsert_txn(txn, "federation_destinations", {"destination": destination},
                              {"last_successful_stream_ordering": stream_ordering})

        await self._db.run_interaction("set_last_successful_stream_ordering", _txn)

    async def get_catch_up_events(self, destination: str, after: Optional[int], limit: int) -> list[CatchUpEvent]:
        """The newest queued event of each room above ``after`` (None: all rooms), oldest first."""
        rows = await self._db.execute(
            "get_catch_up_events",
            "SELECT room_id, stream_ordering, event_id FROM federation_destination_rooms"
            " WHERE destination = ? AND stream_ordering > ? ORDER BY stream_ordering LIMIT ?",
            destination, -(2**62) if after is None else after, limit,
        )
        return [CatchUpEvent(r[0], int(r[1]), r[2]) for r in rows]

    async def get_destinations_needing_catch_up(self) -> list[str]:
        """Destinations with queued events above their last successful position (after a restart)."""
        rows = await self._db.execute(
            "get_destinations_needing_catch_up",
            "SELECT DISTINCT r.destination FROM federation_destination_rooms r"
            " LEFT JOIN federation_destinations d ON d.destination = r.destination"
            " WHERE d.last_successful_stream_ordering IS NULL"
            " OR r.stream_ordering > d.last_successful_stream_ordering",
        )
        return sorted(r[0] for r in rows)

    # -- the events stream -----------------------------------------------------------

    async def get_stream_position(self, stream_name: str) -> Optional[int]:
        value = await self._db.simple_select_one_onecol(
            "federation_stream_positions", {"stream_name": stream_name}, "stream_id", allow_none=True,
            desc="get_federation_stream_position",
        )
        return None if value is None else int(value)

    async def set_stream_position(self, stream_name: str, position: int) -> None:
        await self._db.simple_upsert("federation_stream_positions", {"stream_name": stream_name},
                                     {"stream_id": position}, desc="set_federation_stream_position")

    async def record_events_queued(
        self, queued: Sequence[tuple[str, str, int, str]], position: Optional[int]
    ) -> None:
        """``(destination, room_id, stream_ordering, event_id)`` rows and the new events position
        (None: leave it), atomically."""

        def _txn(txn: Cursor) -> None:
            for destination, room_id, ordering, event_id in queued:
                txn.execute(
                    "SELECT stream_ordering FROM federation_destination_rooms WHERE destination = ? AND room_id = ?",
                    (destination, room_id),
                )
                row = txn.fetchone()
                if row is not None and int(row[0]) >= ordering:
                    continue
                simple_upsert_txn(txn, "federation_destination_rooms",
                                  {"destination": destination, "room_id": room_id},
                                  {"stream_ordering": ordering, "event_id": event_id})
            if position is not None:
                simple_upsert_txn(txn, "federation_stream_positions", {"stream_name": "events"},
                                  {"stream_id": position})

        await self._db.run_interaction("record_federation_events_queued", _txn)

    # -- device lists ----------------------------------------------------------------------

    async def queue_device_list_changes(
        self, rows: Sequence[tuple[str, str, Optional[str], int]], position: int
    ) -> None:
        """``(destination, user_id, device_id, stream_id)`` rows and the new device_lists position."""

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "INSERT INTO federation_device_list_outbox (destination, user_id, device_id, stream_id)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )
            simple_upsert_txn(txn, "federation_stream_positions", {"stream_name": "device_lists"},
                              {"stream_id": position})

        await self._db.run_interaction("queue_device_list_changes", _txn)

    async def get_device_list_outbox_destinations(self) -> list[str]:
        rows = await self._db.execute("get_device_list_outbox_destinations",
                                      "SELECT DISTINCT destination FROM federation_device_list_outbox")
        return sorted(r[0] for r in rows)

    async def get_pending_device_list_changes(self, destination: str, limit: int) -> list[PendingDeviceListChange]:
        rows = await self._db.execute(
            "get_pending_device_list_changes",
            "SELECT user_id, device_id, stream_id FROM federation_device_list_outbox WHERE destination = ?"
            " ORDER BY stream_id, user_id, device_id LIMIT ?",
            destination, limit,
        )
        return [PendingDeviceListChange(r[0], r[1], int(r[2])) for r in rows]

    async def get_device_list_last_sent(self, destination: str, user_ids: Iterable[str]) -> dict[str, int]:
        rows = await self._db.simple_select_many(
            "federation_device_list_sent", "user_id", sorted(set(user_ids)), ("user_id", "stream_id"),
            keyvalues={"destination": destination}, desc="get_device_list_last_sent",
        )
        return {r["user_id"]: int(r["stream_id"]) for r in rows}

    async def ack_device_list_changes(self, destination: str, sent: Sequence[PendingDeviceListChange]) -> None:
        """The destination accepted these changes: drop them and remember the last id per user."""

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "DELETE FROM federation_device_list_outbox WHERE destination = ? AND user_id = ? AND stream_id = ?"
                " AND (device_id = ? OR (device_id IS NULL AND ? IS NULL))",
                [(destination, c.user_id, c.stream_id, c.device_id, c.device_id) for c in sent],
            )
            last: dict[str, int] = {}
            for c in sent:
                if c.device_id is not None:
                    last[c.user_id] = max(last.get(c.user_id, c.stream_id), c.stream_id)
            for user_id, stream_id in sorted(last.items()):
                simple_upsert_txn(txn, "federation_device_list_sent", {"destination": destination, "user_id": user_id},
                                  {"stream_id": stream_id})

        await self._db.run_interaction("ack_device_list_changes", _txn)

    async def get_latest_device_list_stream_id(self, user_id: str) -> int:
        """The newest device_lists stream id of a local user (0 if none): ``stream_id`` of /user/devices."""
        rows = await self._db.execute(
            "get_latest_device_list_stream_id",
            "SELECT MAX(stream_id) FROM device_lists_stream WHERE user_id = ?", user_id,
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0


@attrs.frozen(slots=True)
class CachedRemoteDevices:
    """A remote user's devices as last fetched or updated (``stale``: the cache is behind)."""

    user_id: str
    stream_id: Optional[int]
    stale: bool
    devices: Mapping[str, tuple[Optional[JsonDict], Optional[str]]]  # device id -> (keys, display name)
    cross_signing: Mapping[str, JsonDict]  # master / self_signing -> key


class RemoteDeviceCacheStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_cached_users(self, user_ids: Iterable[str]) -> dict[str, CachedRemoteDevices]:
        """The cache of each user that has one (stale or not)."""

        def _txn(txn: Cursor) -> dict[str, CachedRemoteDevices]:
            out: dict[str, CachedRemoteDevices] = {}
            for user_id in sorted(set(user_ids)):
                txn.execute("SELECT stream_id, stale FROM remote_device_lists WHERE user_id = ?", (user_id,))
                row = txn.fetchone()
                if row is None:
                    continue
                txn.execute("SELECT device_id, keys_json, display_name FROM remote_device_keys WHERE user_id = ?",
                            (user_id,))
                devices = {d: (json.loads(k) if k else None, n) for d, k, n in txn.fetchall()}
                txn.execute("SELECT key_type, key_json FROM remote_cross_signing_keys WHERE user_id = ?", (user_id,))
                cross = {t: json.loads(k) for t, k in txn.fetchall()}
                out[user_id] = CachedRemoteDevices(user_id, None if row[0] is None else int(row[0]), bool(row[1]),
                                                   devices, cross)
            return out

        return await self._db.run_interaction("get_cached_remote_devices", _txn)

    async def replace_user(self, user_id: str, stream_id: Optional[int],
                           devices: Mapping[str, tuple[Optional[JsonDict], Optional[str]]],
                           cross_signing: Mapping[str, JsonDict]) -> None:
        """A full, fresh copy of the user's devices (from a query or a resync)."""

        def _txn(txn: Cursor) -> None:
            txn.execute("DELETE FROM remote_device_keys WHERE user_id = ?", (user_id,))
            txn.execute("DELETE FROM remote_cross_signing_keys WHERE user_id = ?", (user_id,))
            txn.execute_batch(
                "INSERT INTO remote_device_keys (user_id, device_id, keys_json, display_name) VALUES (?, ?, ?, ?)",
                [(user_id, d, canonical(k) if k is not None else None, n) for d, (k, n) in sorted(devices.items())],
            )
            txn.execute_batch(
                "INSERT INTO remote_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?)",
                [(user_id, t, canonical(k)) for t, k in sorted(cross_signing.items())],
            )
            simple_upsert_txn(txn, "remote_device_lists", {"user_id": user_id},
                              {"stream_id": stream_id, "stale": False, "updated_ts": self._clock.time_msec()})

        await self._db.run_interaction("replace_remote_devices", _txn)

    async def apply_device_update(self, user_id: str, device_id: str, stream_id: int, deleted: bool,
                                  keys: Optional[JsonDict], display_name: Optional[str]) -> None:
        """One m.device_list_update applied in order (the cache stays fresh)."""

        def _txn(txn: Cursor) -> None:
            if deleted:
                txn.execute("DELETE FROM remote_device_keys WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            else:
                simple_upsert_txn(txn, "remote_device_keys", {"user_id": user_id, "device_id": device_id},
                                  {"keys_json": canonical(keys) if keys is not None else None,
                                   "display_name": display_name})
            txn.execute("UPDATE remote_device_lists SET stream_id = ?, updated_ts = ? WHERE user_id = ?",
                        (stream_id, self._clock.time_msec(), user_id))

        await self._db.run_interaction("apply_remote_device_update", _txn)

    async def set_cross_signing_key(self, user_id: str, key_type: str, key: JsonDict) -> None:
        await self._db.simple_upsert("remote_cross_signing_keys", {"user_id": user_id, "key_type": key_type},
                                     {"key_json": canonical(key)}, desc="set_remote_cross_signing_key")

    async def mark_stale(self, user_id: str) -> None:
        await self._db.simple_update("remote_device_lists", {"user_id": user_id},
                                     {"stale": True, "updated_ts": self._clock.time_msec()},
                                     desc="mark_remote_devices_stale")


class OpenIdTokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_token(self, token: str, user_id: str, valid_until_ms: int) -> None:
        await self._db.simple_insert("openid_tokens", {"token": token, "user_id": user_id,
                                                       "ts_valid_until_ms": valid_until_ms}, desc="add_openid_token")

    async def get_user_for_token(self, token: str) -> Optional[str]:
        """The user a still-valid token was issued to."""
        rows = await self._db.execute(
            "get_openid_token_user",
            "SELECT user_id FROM openid_tokens WHERE token = ? AND ts_valid_until_ms > ?",
            token, self._clock.time_msec(),
        )
        return str(rows[0][0]) if rows else None
