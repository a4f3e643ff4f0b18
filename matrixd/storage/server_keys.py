"""Other servers' verify keys (checked) and their key responses (as signed), for the keyring and the notary."""

from __future__ import annotations

import json
from typing import Collection, Iterable, Optional

from matrixd.crypto.keys import decode_verify_key
from matrixd.crypto.server_keys import FetchedKey, JsonDict, StoredKeyJson
from matrixd.storage.database import Cursor, Database
from matrixd.storage.sql import IN_LIST_BATCH, batch_iter, in_list_clause
from matrixd.util.clock import Clock


class ServerKeyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def store_verify_keys(
        self, from_server: str, ts_added_ms: int, keys: Iterable[tuple[str, str, FetchedKey]]
    ) -> None:
        """Record ``(server_name, key_id, key)`` triples, keeping the longest validity per key."""
        rows = [
            (server, kid, from_server, ts_added_ms, key.valid_until_ts, key.key_base64) for server, kid, key in keys
        ]
        if not rows:
            return

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "INSERT INTO server_signature_keys"
                " (server_name, key_id, from_server, ts_added_ms, ts_valid_until_ms, verify_key)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                " from_server = EXCLUDED.from_server, ts_added_ms = EXCLUDED.ts_added_ms,"
                " ts_valid_until_ms = EXCLUDED.ts_valid_until_ms, verify_key = EXCLUDED.verify_key"
                " WHERE EXCLUDED.ts_valid_until_ms >= server_signature_keys.ts_valid_until_ms",
                rows,
            )

        await self._db.run_interaction("store_verify_keys", _txn)

    async def get_verify_keys(self, server_name: str, key_ids: Collection[str]) -> dict[str, FetchedKey]:
        """The stored keys of ``server_name`` among ``key_ids``."""
        ids = list(dict.fromkeys(key_ids))

        def _txn(txn: Cursor) -> dict[str, FetchedKey]:
            found: dict[str, FetchedKey] = {}
            for chunk in batch_iter(ids, IN_LIST_BATCH):
                clause, args = in_list_clause(txn.engine, "key_id", chunk)
                txn.execute(
                    "SELECT key_id, ts_valid_until_ms, verify_key FROM server_signature_keys"
                    f" WHERE server_name = ? AND {clause}",
                    [server_name, *args],
                )
                for kid, valid_until, key_b64 in txn.fetchall():
                    found[kid] = FetchedKey(decode_verify_key(kid, key_b64), int(valid_until), key_b64)
            return found

        if not ids:
            return {}
        return await self._db.run_interaction("get_verify_keys", _txn)

    async def store_key_json(
        self,
        server_name: str,
        from_server: str,
        ts_added_ms: int,
        ts_valid_until_ms: int,
        key_ids: Collection[str],
        key_json: JsonDict,
    ) -> None:
        """Keep a key response as signed, under every key id it covers (replacing older copies)."""
        text = json.dumps(key_json, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        rows = [(server_name, kid, from_server, ts_added_ms, ts_valid_until_ms, text) for kid in key_ids]
        if not rows:
            return

        def _txn(txn: Cursor) -> None:
            txn.execute_batch(
                "INSERT INTO server_keys_json"
                " (server_name, key_id, from_server, ts_added_ms, ts_valid_until_ms, key_json)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, key_id, from_server) DO UPDATE SET"
                " ts_added_ms = EXCLUDED.ts_added_ms, ts_valid_until_ms = EXCLUDED.ts_valid_until_ms,"
                " key_json = EXCLUDED.key_json",
                rows,
            )

        await self._db.run_interaction("store_key_json", _txn)

    async def get_key_json(self, server_name: str, key_ids: Optional[Collection[str]] = None) -> list[StoredKeyJson]:
        """Stored responses for ``server_name`` (for ``key_ids``, or all), newest first."""

        def _txn(txn: Cursor) -> list[StoredKeyJson]:
            sql = (
                "SELECT key_id, from_server, ts_added_ms, ts_valid_until_ms, key_json FROM server_keys_json"
                " WHERE server_name = ?"
            )
            args: list[object] = [server_name]
            if key_ids is not None:
                clause, in_args = in_list_clause(txn.engine, "key_id", list(key_ids))
                sql += f" AND {clause}"
                args.extend(in_args)
            txn.execute(sql + " ORDER BY ts_added_ms DESC, key_id", args)
            return [
                StoredKeyJson(kid, frm, int(added), int(until), json.loads(text))
                for kid, frm, added, until, text in txn.fetchall()
            ]

        if key_ids is not None and not key_ids:
            return []
        return await self._db.run_interaction("get_key_json", _txn)
