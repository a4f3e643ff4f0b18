"""Acting as a notary: serving other servers' key responses, countersigned (``/_matrix/key/v2/query``).

For each queried server we return the key responses it signed that we hold
(``server_keys_json``), with our signature added. We fetch afresh from the
server when what we hold does not answer the query: a requested key is
missing or not valid until the requested ``minimum_valid_until_ts`` (the
current time if none is given), or the newest response is past half its
lifetime (the spec asks notaries to cache "for half of its lifetime").
If the server cannot be reached we answer with what we hold, even if stale,
so old signatures stay checkable; with nothing held, the server is left out.
Queries about this server are answered with our own fresh response.
"""

from __future__ import annotations

import json
import logging
from typing import Mapping, Optional, Protocol

from twisted.internet import defer

from matrixd.crypto.server_keys import JsonDict, LocalServerKeys, StoredKeyJson
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class StoredKeyJsonSource(Protocol):
    async def get_key_json(self, server_name: str, key_ids: Optional[list[str]] = None) -> list[StoredKeyJson]: ...


class KeyRefresher(Protocol):
    async def refresh_from_server(self, server_name: str) -> bool: ...


class KeyNotary:
    def __init__(self, clock: Clock, local_keys: LocalServerKeys, store: StoredKeyJsonSource,
                 keyring: KeyRefresher) -> None:
        self._clock = clock
        self._local = local_keys
        self._store = store
        self._keyring = keyring
        self._refreshing: dict[str, list[defer.Deferred[None]]] = {}

    async def query(
        self, server_name: str, key_ids: Mapping[str, Optional[int]], min_valid_until_ts: Optional[int]
    ) -> list[JsonDict]:
        """Countersigned key responses of ``server_name``.

        Args:
            key_ids: wanted key ids, each with its own ``minimum_valid_until_ts``
                (None: ``min_valid_until_ts``); empty means every key.
            min_valid_until_ts: the default minimum (None: now).
        """
        now = self._clock.time_msec()
        if server_name == self._local.server_name:
            return [self._local.key_response()]
        default_min = now if min_valid_until_ts is None else min_valid_until_ts
        wanted = {kid: (v if v is not None else default_min) for kid, v in key_ids.items()}
        stored = await self._stored(server_name, wanted)
        if self._stale(stored, wanted, default_min, now):
            await self._refresh(server_name)
            stored = await self._stored(server_name, wanted)
        return [self._local.sign(r) for r in self._pick(stored, wanted)]

    async def _stored(self, server_name: str, wanted: Mapping[str, int]) -> list[StoredKeyJson]:
        return await self._store.get_key_json(server_name, list(wanted) if wanted else None)

    @staticmethod
    def _stale(stored: list[StoredKeyJson], wanted: Mapping[str, int], default_min: int, now: int) -> bool:
        if not stored:
            return True
        newest = max(stored, key=lambda s: s.ts_added_ms)
        half_life = newest.ts_added_ms + (newest.ts_valid_until_ms - newest.ts_added_ms) // 2
        if now > half_life:
            return True
        if not wanted:
            return newest.ts_valid_until_ms < default_min
        for kid, minimum in wanted.items():
            if not any(s.key_id == kid and s.ts_valid_until_ms >= minimum for s in stored):
                return True
        return False

    @staticmethod
    def _pick(stored: list[StoredKeyJson], wanted: Mapping[str, int]) -> list[JsonDict]:
        best: dict[str, StoredKeyJson] = {}
        for row in stored:
            if wanted and row.key_id not in wanted:
                continue
            current = best.get(row.key_id)
            if current is None or (row.ts_valid_until_ms, row.ts_added_ms) > (
                current.ts_valid_until_ms, current.ts_added_ms
            ):
                best[row.key_id] = row
        seen: set[str] = set()
        out = []
        for row in sorted(best.values(), key=lambda r: (-r.ts_added_ms, r.key_id)):
            text = json.dumps(row.key_json, sort_keys=True)
            if text not in seen:
                seen.add(text)
                out.append(row.key_json)
        return out

    async def _refresh(self, server_name: str) -> None:
        waiters = self._refreshing.get(server_name)
        if waiters is not None:
            d: defer.Deferred[None] = defer.Deferred()
            waiters.append(d)
            await d
            return
        self._refreshing[server_name] = []
        try:
            await self._keyring.refresh_from_server(server_name)
        finally:
            for waiter in self._refreshing.pop(server_name, []):
                waiter.callback(None)
