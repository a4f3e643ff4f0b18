"""End-to-end keys of local devices and users: device keys, one-time and fallback
keys, cross-signing keys and the signatures uploaded for them.

Writes that change what ``/keys/query`` shows for a user also record a
device_lists stream row in the same transaction (``stream_id`` argument), so
a change is never visible without its stream row or the other way round.

Claiming a one-time key must hand each key out exactly once even when claims
race.  On PostgreSQL each claim is one ``DELETE ... RETURNING`` of the oldest
key, whose sub-select skips rows another claim has locked; on SQLite (one
writer at a time) the read and delete run in one transaction whose delete is
checked to have removed the row it read.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence

import attrs
from canonicaljson import encode_canonical_json

from matrixd.storage.database import Cursor, Database
from matrixd.storage.device_lists import add_device_list_changes_txn
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.types import JsonDict
from matrixd.util.clock import Clock


def canonical(obj: Any) -> str:
    return encode_canonical_json(obj).decode("utf-8")


@attrs.frozen(slots=True)
class StoredDeviceKeys:
    user_id: str
    device_id: str
    keys: Optional[JsonDict]  # None: the device exists but uploaded no keys
    display_name: Optional[str]


@attrs.frozen(slots=True)
class NewKey:
    """A one-time or fallback key to store: ``<algorithm>:<key_id>`` -> ``key_json``."""

    algorithm: str
    key_id: str
    key_json: str


@attrs.frozen(slots=True)
class SignatureRow:
    signer_user_id: str
    signer_key_id: str  # "ed25519:<device id or public key>"
    target_user_id: str
    target_key_id: str  # a device id or a cross-signing public key
    signature: str


class E2EKeyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- device keys ------------------------------------------------------------

    async def get_device_keys(self, user_id: str, device_id: str) -> Optional[JsonDict]:
        rows = await self._db.execute(
            "get_device_keys", "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            user_id, device_id,
        )
        return json.loads(rows[0][0]) if rows else None

    async def set_device_keys(self, user_id: str, device_id: str, keys: JsonDict, stream_id: int) -> None:
        """Store (or replace) a device's keys and record the change on the device_lists stream."""

        def _txn(txn: Cursor) -> None:
            txn.execute(
                "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts_added_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json",
                (user_id, device_id, canonical(keys), self._clock.time_msec()),
            )
            add_device_list_changes_txn(txn, stream_id, user_id, [device_id])

        await self._db.run_interaction("set_device_keys", _txn)

    async def get_devices_with_keys(self, query: Mapping[str, Sequence[str]]) -> list[StoredDeviceKeys]:
        """Existing (not hidden) devices of the users in ``query`` with their keys, if any.

        An empty device list asks for every device of that user.
        """

        def _txn(txn: Cursor) -> list[StoredDeviceKeys]:
            out: list[StoredDeviceKeys] = []
            sql = (
                "SELECT d.user_id, d.device_id, k.key_json, d.display_name FROM devices d"
                " LEFT JOIN e2e_device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id"
                " WHERE NOT d.hidden AND d.user_id = ?"
            )
            for user_id, device_ids in query.items():
                if not device_ids:
                    txn.execute(sql + " ORDER BY d.device_id", (user_id,))
                    rows = txn.fetchall()
                else:
                    rows = []
                    for chunk in batch_iter(sorted(set(device_ids)), IN_LIST_BATCH):
                        clause, args = in_list_clause(txn.engine, "d.device_id", chunk)
                        txn.execute(sql + f" AND {clause} ORDER BY d.device_id", [user_id, *args])
                        rows.extend(txn.fetchall())
                for uid, did, key_json, name in rows:
                    out.append(StoredDeviceKeys(uid, did, json.loads(key_json) if key_json else None, name))
            return out

        return await self._db.run_interaction("get_devices_with_keys", _txn)

    async def delete_device_keys(self, user_id: str, device_ids: Sequence[str]) -> None:
        """Forget every key of deleted devices (identity, one-time, fallback, signatures of them)."""

        def _txn(txn: Cursor) -> None:
            for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
                txn.execute_batch(f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?",
                                  [(user_id, d) for d in device_ids])
            txn.execute_batch(
                "DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = ? AND target_key_id = ?",
                [(user_id, d) for d in device_ids],
            )

        await self._db.run_interaction("delete_device_keys", _txn)

    # -- one-time keys ----------------------------------------------------------

    async def add_one_time_keys(self, user_id: str, device_id: str, keys: Sequence[NewKey]) -> list[str]:
        """Store new one-time keys; returns the ``alg:id`` of keys that already exist with other
        content, in which case nothing is stored. Re-uploading an identical key is a no-op."""

        def _txn(txn: Cursor) -> list[str]:
            existing: dict[tuple[str, str], str] = {}
            txn.execute(
                "SELECT algorithm, key_id, key_json, upload_seq FROM e2e_one_time_keys"
                " WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            max_seq = 0
            for alg, kid, kj, seq in txn:
                existing[(alg, kid)] = kj
                max_seq = max(max_seq, int(seq))
            conflicts = [f"{k.algorithm}:{k.key_id}" for k in keys
                         if existing.get((k.algorithm, k.key_id), k.key_json) != k.key_json]
            if conflicts:
                return conflicts
            new = [k for k in keys if (k.algorithm, k.key_id) not in existing]
            txn.execute_batch(
                "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, upload_seq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(user_id, device_id, k.algorithm, k.key_id, k.key_json, max_seq + 1) for k in new],
            )
            return []

        return await self._db.run_interaction("add_one_time_keys", _txn)

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self._db.execute(
            "count_one_time_keys",
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? GROUP BY algorithm",
            user_id, device_id,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def claim_keys(
        self, claims: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[str, JsonDict]]:
        """Claim one key per ``(user_id, device_id, algorithm)``: the oldest one-time key, else
        the fallback key (which is kept, marked used). Returns ``{claim: (alg:key_id, key)}``
        for the claims that found a key."""

        def _txn(txn: Cursor) -> dict[tuple[str, str, str], tuple[str, JsonDict]]:
            out: dict[tuple[str, str, str], tuple[str, JsonDict]] = {}
            for claim in dict.fromkeys(claims):
                found = _claim_one_time_key_txn(txn, *claim)
                if found is None:
                    found = _claim_fallback_key_txn(txn, *claim)
                if found is not None:
                    out[claim] = (f"{claim[2]}:{found[0]}", json.loads(found[1]))
            return out

        return await self._db.run_interaction("claim_e2e_keys", _txn)

    # -- fallback keys ------------------------------------------------------------

    async def set_fallback_keys(self, user_id: str, device_id: str, keys: Sequence[NewKey]) -> None:
        """Replace the fallback key of each algorithm given (a new key starts unused;
        re-uploading the current key keeps its used flag)."""

        def _txn(txn: Cursor) -> None:
            for k in keys:
                txn.execute(
                    "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
                    " AND algorithm = ?",
                    (user_id, device_id, k.algorithm),
                )
                row = txn.fetchone()
                if row is not None and (row[0], row[1]) == (k.key_id, k.key_json):
                    continue
                txn.execute(
                    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
                    " VALUES (?, ?, ?, ?, ?, FALSE) ON CONFLICT (user_id, device_id, algorithm)"
                    " DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = FALSE",
                    (user_id, device_id, k.algorithm, k.key_id, k.key_json),
                )

        await self._db.run_interaction("set_fallback_keys", _txn)

    async def get_key_counts_for_sync(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """:meth:`count_one_time_keys` and :meth:`get_unused_fallback_key_types` in one transaction."""

        def _txn(txn: Cursor) -> tuple[dict[str, int], list[str]]:
            # One round trip (every /sync response carries both): count rows are
            # (algorithm, n >= 1), unused fallback key rows (algorithm, -1).
            txn.execute(
                "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                " GROUP BY algorithm"
                " UNION ALL SELECT algorithm, -1 FROM e2e_fallback_keys"
                " WHERE user_id = ? AND device_id = ? AND NOT used",
                (user_id, device_id, user_id, device_id),
            )
            counts: dict[str, int] = {}
            unused: list[str] = []
            for algorithm, n in txn:
                if int(n) < 0:
                    unused.append(algorithm)
                else:
                    counts[algorithm] = int(n)
            return counts, sorted(unused)

        return await self._db.run_interaction("get_key_counts_for_sync", _txn)

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        rows = await self._db.execute(
            "get_unused_fallback_key_types",
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND NOT used"
            " ORDER BY algorithm",
            user_id, device_id,
        )
        return [r[0] for r in rows]

    # -- cross-signing ------------------------------------------------------------

    async def get_cross_signing_keys(self, user_ids: Iterable[str]) -> dict[str, dict[str, JsonDict]]:
        """``{user_id: {keytype: key}}`` for users that have cross-signing keys."""
        users = sorted(set(user_ids))

        def _txn(txn: Cursor) -> dict[str, dict[str, JsonDict]]:
            out: dict[str, dict[str, JsonDict]] = {}
            for chunk in batch_iter(users, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "user_id", chunk)
                txn.execute(f"SELECT user_id, keytype, key_json FROM e2e_cross_signing_keys WHERE {clause}", args)
                for uid, keytype, key_json in txn:
                    out.setdefault(uid, {})[keytype] = json.loads(key_json)
            return out

        return await self._db.run_interaction("get_cross_signing_keys", _txn)

    async def set_cross_signing_keys(self, user_id: str, keys: Mapping[str, tuple[str, JsonDict]],
                                     stream_id: int) -> None:
        """Store ``{keytype: (public_key, key)}`` and record a cross-signing change."""

        def _txn(txn: Cursor) -> None:
            for keytype, (public_key, key) in sorted(keys.items()):
                txn.execute(
                    "INSERT INTO e2e_cross_signing_keys (user_id, keytype, public_key, key_json) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (user_id, keytype) DO UPDATE SET public_key = EXCLUDED.public_key,"
                    " key_json = EXCLUDED.key_json",
                    (user_id, keytype, public_key, canonical(key)),
                )
            add_device_list_changes_txn(txn, stream_id, user_id, [None])

        await self._db.run_interaction("set_cross_signing_keys", _txn)

    async def get_signatures(self, target_user_ids: Iterable[str], viewer: str) -> list[SignatureRow]:
        """Uploaded signatures of the targets' keys made by the target itself or by ``viewer``."""
        users = sorted(set(target_user_ids))

        def _txn(txn: Cursor) -> list[SignatureRow]:
            out: list[SignatureRow] = []
            for chunk in batch_iter(users, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "target_user_id", chunk)
                txn.execute(
                    "SELECT signer_user_id, signer_key_id, target_user_id, target_key_id, signature"
                    f" FROM e2e_cross_signing_signatures WHERE {clause}"
                    " AND (signer_user_id = target_user_id OR signer_user_id = ?)",
                    [*args, viewer],
                )
                out.extend(SignatureRow(*r) for r in txn)
            return out

        return await self._db.run_interaction("get_cross_signing_signatures", _txn)

    async def store_signatures(self, rows: Sequence[SignatureRow], stream_id: int) -> None:
        """Store signatures (replacing one by the same signer key of the same target key) and
        record a device_lists change for each target user (visible only to the signer when the
        signer is another user: only they may see user-signing signatures): of the signed
        device, or of the user's cross-signing keys (device None) when a key of theirs was signed."""

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "INSERT INTO e2e_cross_signing_signatures"
                " (signer_user_id, signer_key_id, target_user_id, target_key_id, signature) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (signer_user_id, signer_key_id, target_user_id, target_key_id)"
                " DO UPDATE SET signature = EXCLUDED.signature",
                [(r.signer_user_id, r.signer_key_id, r.target_user_id, r.target_key_id, r.signature) for r in rows],
            )
            changes: dict[tuple[str, Optional[str]], set[Optional[str]]] = {}
            for r in rows:
                visible_to = None if r.signer_user_id == r.target_user_id else r.signer_user_id
                # A signed cross-signing key is recorded like a key upload (device None), so
                # other servers get an m.signing_key_update for it, not a device update.
                txn.execute("SELECT 1 FROM e2e_cross_signing_keys WHERE user_id = ? AND public_key = ?",
                            (r.target_user_id, r.target_key_id))
                changed: Optional[str] = None if txn.fetchone() is not None else r.target_key_id
                changes.setdefault((r.target_user_id, visible_to), set()).add(changed)
            for (target, visible_to), key_ids in sorted(changes.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
                add_device_list_changes_txn(txn, stream_id, target, key_ids, visible_to)

        await self._db.run_interaction("store_cross_signing_signatures", _txn)


def _claim_one_time_key_txn(txn: Cursor, user_id: str, device_id: str, algorithm: str) -> Optional[tuple[str, str]]:
    if txn.engine.name == "postgres":
        txn.execute(
            "DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) IN ("
            " SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys"
            " WHERE user_id = ? AND device_id = ? AND algorithm = ?"
            " ORDER BY upload_seq, key_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING key_id, key_json",
            (user_id, device_id, algorithm),
        )
        row = txn.fetchone()
        return (row[0], row[1]) if row is not None else None
    while True:
        txn.execute(
            "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?"
            " ORDER BY upload_seq, key_id LIMIT 1",
            (user_id, device_id, algorithm),
        )
        found = txn.fetchone()
        if found is None:
            return None
        txn.execute(
            "DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?",
            (user_id, device_id, algorithm, found[0]),
        )
        if txn.rowcount == 1:
            return (found[0], found[1])


def _claim_fallback_key_txn(txn: Cursor, user_id: str, device_id: str, algorithm: str) -> Optional[tuple[str, str]]:
    txn.execute(
        "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = ? AND device_id = ? AND algorithm = ?",
        (user_id, device_id, algorithm),
    )
    txn.execute(
        "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?",
        (user_id, device_id, algorithm),
    )
    row = txn.fetchone()
    return (row[0], row[1]) if row is not None else None
