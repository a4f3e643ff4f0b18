"""SQL for media cleanup jobs: choose a batch of media, forget it, and log it.

A batch is one transaction that selects up to ``limit`` matching media,
deletes their rows (and their thumbnails' rows) and records them in
``admin_media_deletions`` with ``file_deleted`` false.  The files are deleted
afterwards and marked, so after a crash the log says which files still have to
go: rows never point at missing files, and no file is forgotten on disk.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import attrs

from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import in_list_clause
from matrixd.types import JsonDict

LOCAL = "local"
REMOTE = "remote"


@attrs.frozen(slots=True)
class MediaSelection:
    """Which media a cleanup job deletes (stored as the job's params).

    ``scope`` 'local': local media created before ``before_ts`` and larger than
    ``size_gt`` bytes, never protected ones, nor (``keep_profiles``) ones used as
    a user's avatar; or exactly ``media_id`` when given (protected or not).
    ``scope`` 'remote': cached remote media fetched before ``before_ts``.
    """

    scope: str
    before_ts: int = 0
    size_gt: int = 0
    keep_profiles: bool = False
    media_id: Optional[str] = None

    def to_json(self) -> JsonDict:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, params: JsonDict) -> "MediaSelection":
        return cls(scope=str(params["scope"]), before_ts=int(params.get("before_ts", 0)),
                   size_gt=int(params.get("size_gt", 0)), keep_profiles=bool(params.get("keep_profiles", False)),
                   media_id=params.get("media_id"))


def _select_local(txn: Cursor, sel: MediaSelection, server_name: str, limit: int) -> list[tuple[Optional[str], str]]:
    if sel.media_id is not None:
        txn.execute("SELECT media_id FROM local_media WHERE media_id = ?", (sel.media_id,))
        return [(None, r[0]) for r in txn.fetchall()]
    sql_text = (
        "SELECT m.media_id FROM local_media m WHERE m.created_ts < ? AND COALESCE(m.media_length, 0) > ?"
        " AND NOT EXISTS (SELECT 1 FROM media_protected p WHERE p.server_name = ? AND p.media_id = m.media_id)"
    )
    args: list[Any] = [sel.before_ts, sel.size_gt, server_name]
    if sel.keep_profiles:
        sql_text += " AND NOT EXISTS (SELECT 1 FROM profiles pr WHERE pr.avatar_url = ? || m.media_id)"
        args.append(f"mxc://{server_name}/")
    txn.execute(sql_text + " ORDER BY m.created_ts, m.media_id LIMIT ?", [*args, limit])
    return [(None, r[0]) for r in txn.fetchall()]


def _select_remote(txn: Cursor, sel: MediaSelection, limit: int) -> list[tuple[Optional[str], str]]:
    txn.execute("SELECT server_name, media_id FROM remote_media_cache WHERE created_ts < ?"
                " ORDER BY created_ts, server_name, media_id LIMIT ?", (sel.before_ts, limit))
    return [(r[0], r[1]) for r in txn.fetchall()]


class MediaCleanupStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def delete_batch(self, job_id: str, sel: MediaSelection, server_name: str, limit: int) -> int:
        """Forget up to ``limit`` media matching ``sel`` and log them for ``job_id``; how many went.

        An item another job deleted meanwhile (its row already gone) is not logged here.
        """
        def _txn(txn: Cursor) -> int:
            if sel.scope == LOCAL:
                items = _select_local(txn, sel, server_name, limit)
            elif sel.scope == REMOTE:
                items = _select_remote(txn, sel, limit)
            else:
                raise ValueError(f"unknown media selection scope {sel.scope!r}")
            done: list[tuple[str, str]] = []
            for origin, media_id in items:
                if origin is None:
                    txn.execute("DELETE FROM local_media WHERE media_id = ?", (media_id,))
                else:
                    txn.execute("DELETE FROM remote_media_cache WHERE server_name = ? AND media_id = ?",
                                (origin, media_id))
                if txn.rowcount <= 0:
                    continue
                # Local thumbnails are keyed by our server name ('' in rows written before it was).
                txn.execute("DELETE FROM media_thumbnails WHERE server_name IN (?, ?) AND media_id = ?",
                            (origin or server_name, origin or "", media_id))
                done.append((origin or "", media_id))
            txn.execute_batch(
                "INSERT INTO admin_media_deletions (job_id, origin, media_id, file_deleted) VALUES (?, ?, ?, FALSE)"
                " ON CONFLICT (job_id, origin, media_id) DO NOTHING",
                [(job_id, origin, media_id) for origin, media_id in done])
            return len(done)

        return await self._db.run_interaction("media_cleanup_batch", _txn)

    async def files_to_delete(self, job_id: str, limit: int) -> list[tuple[Optional[str], str]]:
        """Logged items whose files are not yet deleted: ``(origin or None for local, media_id)``."""
        rows = await self._db.execute(
            "media_cleanup_files",
            "SELECT origin, media_id FROM admin_media_deletions WHERE job_id = ? AND file_deleted = FALSE"
            " ORDER BY origin, media_id LIMIT ?", job_id, limit)
        return [(r[0] or None, r[1]) for r in rows]

    async def mark_files_deleted(self, job_id: str, items: Sequence[tuple[Optional[str], str]]) -> None:
        def _txn(txn: Cursor) -> None:
            by_origin: dict[str, list[str]] = {}
            for origin, media_id in items:
                by_origin.setdefault(origin or "", []).append(media_id)
            for origin, ids in by_origin.items():
                clause, args = in_list_clause(txn.engine, "media_id", ids)
                txn.execute(f"UPDATE admin_media_deletions SET file_deleted = TRUE WHERE job_id = ? AND origin = ?"
                            f" AND {clause}", [job_id, origin, *args])

        await self._db.run_interaction("media_cleanup_mark_files", _txn)

    async def deleted_media(self, job_id: str) -> list[tuple[Optional[str], str]]:
        """Everything the job deleted, ``(origin or None for local, media_id)``."""
        rows = await self._db.execute(
            "media_cleanup_deleted",
            "SELECT origin, media_id FROM admin_media_deletions WHERE job_id = ? ORDER BY origin, media_id", job_id)
        return [(r[0] or None, r[1]) for r in rows]

    async def count_deleted(self, job_id: str) -> int:
        rows = await self._db.execute("media_cleanup_count",
                                      "SELECT COUNT(*) FROM admin_media_deletions WHERE job_id = ?", job_id)
        return int(rows[0][0]) if rows else 0

    async def forget_job(self, job_id: str) -> None:
        """Drop a finished job's log once its answer was given (its count stays in ``admin_jobs``)."""
        await self._db.execute("media_cleanup_forget",
                               "DELETE FROM admin_media_deletions WHERE job_id = ? AND file_deleted = TRUE", job_id)
