"""Users' pushers: where their notifications are delivered (``POST /pushers/set``)."""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.streams import StreamIdGenerator
from matrixd.util.clock import Clock

_COLUMNS = (
    "id, user_id, access_token_device, kind, app_id, pushkey, app_display_name, device_display_name,"
    " profile_tag, lang, data, created_ts, last_stream_ordering, failing_since"
)


@attrs.frozen(slots=True)
class Pusher:
    id: int
    user_id: str
    device_id: Optional[str]
    kind: str
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: Optional[str]
    lang: str
    data: dict[str, Any]
    created_ts: int
    last_stream_ordering: int
    failing_since: Optional[int]

    def to_client(self) -> dict[str, Any]:
        """The ``GET /pushers`` form."""
        out: dict[str, Any] = {
            "pushkey": self.pushkey, "kind": self.kind, "app_id": self.app_id,
            "app_display_name": self.app_display_name, "device_display_name": self.device_display_name,
            "lang": self.lang, "data": self.data,
        }
        if self.profile_tag is not None:
            out["profile_tag"] = self.profile_tag
        return out


def _pusher(r: Sequence[Any]) -> Pusher:
    return Pusher(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]), int(r[11]),
        int(r[12]), None if r[13] is None else int(r[13]),
    )


class PusherStore:
    def __init__(self, db: Database, clock: Clock, ids: StreamIdGenerator) -> None:
        self._db = db
        self._clock = clock
        self._ids = ids

    @staticmethod
    async def create_ids(db: Database) -> StreamIdGenerator:
        return await StreamIdGenerator.create(db, "pushers", "id")

    async def get_pushers(self, user_id: str) -> list[Pusher]:
        rows = await self._db.execute(
            "get_pushers", f"SELECT {_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY id", user_id
        )
        return [_pusher(r) for r in rows]

    async def get_all_pushers(self) -> list[Pusher]:
        rows = await self._db.execute("get_all_pushers", f"SELECT {_COLUMNS} FROM pushers ORDER BY id")
        return [_pusher(r) for r in rows]

    async def add_pusher(
        self,
        *,
        user_id: str,
        device_id: Optional[str],
        kind: str,
        app_id: str,
        pushkey: str,
        app_display_name: str,
        device_display_name: str,
        profile_tag: Optional[str],
        lang: str,
        data: dict[str, Any],
        last_stream_ordering: int,
        append: bool,
    ) -> list[str]:
        """Create or replace the user's pusher for (app_id, pushkey); returns the users whose pusher it took.

        Without ``append`` other users' pushers with the same app id and pushkey are removed.
        """
        removed: list[str] = []

        def _txn(txn: Cursor, new_id: int) -> None:
            if not append:
                txn.execute(
                    "SELECT user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                    (app_id, pushkey, user_id),
                )
                removed.extend(r[0] for r in txn)
                txn.execute(
                    "DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                    (app_id, pushkey, user_id),
                )
            txn.execute(
                "INSERT INTO pushers (id, user_id, access_token_device, kind, app_id, pushkey, app_display_name,"
                " device_display_name, profile_tag, lang, data, created_ts, last_stream_ordering, failing_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET"
                " access_token_device = EXCLUDED.access_token_device, kind = EXCLUDED.kind,"
                " app_display_name = EXCLUDED.app_display_name,"
                " device_display_name = EXCLUDED.device_display_name, profile_tag = EXCLUDED.profile_tag,"
                " lang = EXCLUDED.lang, data = EXCLUDED.data, failing_since = NULL",
                (new_id, user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name,
                 profile_tag, lang, json.dumps(data), self._clock.time_msec(), last_stream_ordering),
            )

        with self._ids.get_next() as new_id:
            await self._db.run_interaction("add_pusher", _txn, new_id)
        return removed

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        n = await self._db.simple_delete(
            "pushers", {"user_id": user_id, "app_id": app_id, "pushkey": pushkey}, desc="delete_pusher"
        )
        return n > 0

    async def delete_pushers_of_devices(self, user_id: str, device_ids: Sequence[str]) -> int:
        def _txn(txn: Cursor) -> int:
            n = 0
            for device_id in device_ids:
                txn.execute(
                    "DELETE FROM pushers WHERE user_id = ? AND access_token_device = ?", (user_id, device_id)
                )
                n += txn.rowcount
            return n

        return await self._db.run_interaction("delete_pushers_of_devices", _txn)

    async def delete_pushers_of_user(self, user_id: str) -> None:
        await self._db.simple_delete("pushers", {"user_id": user_id}, desc="delete_user_pushers")

    async def update_progress(self, pusher_id: int, last_stream_ordering: int, failing_since: Optional[int]) -> None:
        await self._db.execute(
            "update_pusher_progress",
            "UPDATE pushers SET last_stream_ordering = ?, failing_since = ? WHERE id = ?",
            last_stream_ordering, failing_since, pusher_id,
        )
