"""The user directory's tables: searchable profiles, public rooms, and how far
the directory has read ``current_state_delta_stream``.

Visibility is decided at query time from ``current_state_events`` (users who
share a joined room with the searcher, users joined to a public room), so the
directory never has to track pairs of users.
"""

from __future__ import annotations

from typing import Iterable, Optional

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


@attrs.frozen(slots=True)
class DirectoryEntry:
    user_id: str
    display_name: Optional[str]
    avatar_url: Optional[str]
    is_local: bool


def search_text_for(user_id: str, display_name: Optional[str]) -> str:
    """What searches match against: the lowercased user id and display name."""
    return f"{user_id.lower()} {(display_name or '').lower()}".strip()


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_SHARED_ROOMS = (
    "SELECT m.state_key FROM current_state_events me"
    " JOIN current_state_events m ON m.room_id = me.room_id"
    " WHERE me.type = 'm.room.member' AND me.state_key = ? AND me.membership = 'join'"
    " AND m.type = 'm.room.member' AND m.membership = 'join'"
)
_PUBLIC_ROOMS = (
    "SELECT m.state_key FROM user_directory_public_rooms p"
    " JOIN current_state_events m ON m.room_id = p.room_id"
    " WHERE m.type = 'm.room.member' AND m.membership = 'join'"
)


class UserDirectoryStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_stream_pos(self) -> int:
        rows = await self._db.execute("get_user_directory_pos", "SELECT stream_id FROM user_directory_stream_pos")
        return int(rows[0][0])

    async def apply_changes(self, *, entries: Iterable[DirectoryEntry], public_rooms: dict[str, bool],
                            new_pos: Optional[int] = None) -> None:
        """Upsert ``entries``, add/remove public rooms and advance the position, in one transaction."""
        entry_list = list(entries)

        def _txn(txn: Cursor) -> None:
            for e in entry_list:
                _upsert_txn(txn, e)
            for room_id, public in public_rooms.items():
                if public:
                    txn.execute("INSERT INTO user_directory_public_rooms (room_id) VALUES (?)"
                                " ON CONFLICT (room_id) DO NOTHING", (room_id,))
                else:
                    txn.execute("DELETE FROM user_directory_public_rooms WHERE room_id = ?", (room_id,))
            if new_pos is not None:
                txn.execute("UPDATE user_directory_stream_pos SET stream_id = ?", (new_pos,))

        await self._db.run_interaction("user_directory_apply", _txn)

    async def remove_user(self, user_id: str) -> None:
        await self._db.execute("user_directory_remove", "DELETE FROM user_directory WHERE user_id = ?", user_id)

    async def get_entry(self, user_id: str) -> Optional[DirectoryEntry]:
        rows = await self._db.execute(
            "user_directory_get",
            "SELECT user_id, display_name, avatar_url, is_local FROM user_directory WHERE user_id = ?", user_id,
        )
        return DirectoryEntry(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None

    async def get_join_event_profiles(
        self, event_ids: list[str]
    ) -> dict[str, tuple[str, Optional[str], Optional[str]]]:
        """``event_id -> (user_id, displayname, avatar_url)`` of those events that are joins."""
        def _txn(txn: Cursor) -> dict[str, tuple[str, Optional[str], Optional[str]]]:
            out: dict[str, tuple[str, Optional[str], Optional[str]]] = {}
            for eid in event_ids:
                txn.execute(
                    "SELECT user_id, displayname, avatar_url FROM room_memberships"
                    " WHERE event_id = ? AND membership = 'join'",
                    (eid,),
                )
                row = txn.fetchone()
                if row is not None:
                    out[eid] = (row[0], row[1], row[2])
            return out

        return await self._db.run_interaction("user_directory_member_profiles", _txn)

    async def search(self, searcher: str, words: list[str], limit: int,
                     search_all_users: bool) -> list[DirectoryEntry]:
        """Users visible to ``searcher`` whose search text contains every word (at most ``limit``).

        Ranked: a word starting the display name or localpart first, then users
        with a display name, then by user id.
        """
        args: list[object] = []
        clauses = []
        for w in words:
            clauses.append("d.search_text LIKE ? ESCAPE '\\'")
            args.append(f"%{_like_escape(w)}%")
        visible = f"d.user_id IN ({_SHARED_ROOMS}) OR d.user_id IN ({_PUBLIC_ROOMS})"
        args.append(searcher)
        if search_all_users:
            visible += " OR d.is_local"
        first = _like_escape(words[0]) if words else ""
        args += [f"@{first}%", f"% {first}%", limit]
        where = " AND ".join(clauses + [f"({visible})"])
        rows = await self._db.execute(
            "user_directory_search",
            "SELECT d.user_id, d.display_name, d.avatar_url, d.is_local FROM user_directory d"
            f" WHERE {where}"
            " ORDER BY CASE WHEN d.search_text LIKE ? ESCAPE '\\' OR d.search_text LIKE ? ESCAPE '\\'"
            " THEN 0 ELSE 1 END, CASE WHEN d.display_name IS NULL THEN 1 ELSE 0 END, d.user_id"
            " LIMIT ?",
            *args,
        )
        return [DirectoryEntry(r[0], r[1], r[2], bool(r[3])) for r in rows]


def _upsert_txn(txn: Cursor, e: DirectoryEntry) -> None:
    txn.execute(
        "INSERT INTO user_directory (user_id, display_name, avatar_url, search_text, is_local)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,"
        " avatar_url = excluded.avatar_url, search_text = excluded.search_text, is_local = excluded.is_local",
        (e.user_id, e.display_name, e.avatar_url, search_text_for(e.user_id, e.display_name), e.is_local),
    )
