"""The keyring: other servers' verify keys, fetched, checked, cached, and used to verify signatures.

A lookup ``get_verify_keys(server, key_ids, min_valid_until_ms)`` asks for
keys that may verify a signature made at ``min_valid_until_ms``: a key
counts only if its validity (see ``matrixd.crypto.server_keys``) reaches
that time. Callers pick the time: "now" for request signatures; for events,
the event's ``origin_server_ts`` in room versions that enforce key validity
(v5+), else 0 (any key we know). Keys come from, in order:

1. this server's own keys (never fetched);
2. the in-memory cache, then the ``server_keys`` tables;
3. the server itself (``/_matrix/key/v2/server``), then each configured
   notary (``/_matrix/key/v2/query``), stopping once every key is found.

Fetched keys are stored and cached whether or not they were asked for; a
key is replaced only by a copy valid for longer. Concurrent lookups for one
server share fetches: while a fetch runs, lookups it covers wait for it and
the others are merged into one follow-up fetch.
"""

from __future__ import annotations

import logging
from typing import Any, Collection, Iterable, Mapping, Optional, Protocol, Sequence

import attrs
from signedjson.types import VerifyKey
from twisted.internet import defer

from matrixd.api.errors import SignatureVerifyError
from matrixd.crypto.key_fetchers import (
    DirectKeyFetcher,
    FederationJsonClient,
    FetchedResponse,
    KeyFetcher,
    notary_fetchers,
)
from matrixd.crypto.server_keys import FetchedKey, JsonDict, KeyResponseError, LocalServerKeys, verify_json_signature
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.events.signing import SUPPORTED_ALGORITHM, check_event_hashes_and_signatures, servers_required_to_sign
from matrixd.storage.cache import LruCache
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class KeyStore(Protocol):
    """Persistence of fetched keys (``matrixd.storage.server_keys.ServerKeyStore``, or a fake in tests)."""

    async def store_verify_keys(
        self, from_server: str, ts_added_ms: int, keys: Iterable[tuple[str, str, FetchedKey]]
    ) -> None: ...

    async def get_verify_keys(self, server_name: str, key_ids: Collection[str]) -> dict[str, FetchedKey]: ...

    async def store_key_json(
        self,
        server_name: str,
        from_server: str,
        ts_added_ms: int,
        ts_valid_until_ms: int,
        key_ids: Collection[str],
        key_json: JsonDict,
    ) -> None: ...


class _Batch:
    """One fetch of some keys of a server, and who waits for it."""

    def __init__(self, key_ids: Iterable[str], min_valid: int) -> None:
        self.key_ids = set(key_ids)
        self.min_valid = min_valid
        self._waiters: list[defer.Deferred[None]] = []

    def covers(self, key_ids: Collection[str], min_valid: int) -> bool:
        return self.min_valid >= min_valid and self.key_ids.issuperset(key_ids)

    def merge(self, key_ids: Collection[str], min_valid: int) -> None:
        self.key_ids.update(key_ids)
        self.min_valid = max(self.min_valid, min_valid)

    def wait(self) -> "defer.Deferred[None]":
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        return d

    def done(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


@attrs.define
class _ServerFetches:
    running: Optional[_Batch] = None
    queued: Optional[_Batch] = None


class Keyring:
    """Verify keys of every server, and signature checks that use them.

    Args:
        local_keys: this server's keys (answered without fetching).
        store: where fetched keys are kept.
        client: the federation client the fetchers use.
        notaries: ``(server_name, configured verify keys)`` of each trusted
            notary, in the order to ask them.
    """

    def __init__(
        self,
        clock: Clock,
        local_keys: LocalServerKeys,
        store: KeyStore,
        client: FederationJsonClient,
        notaries: Sequence[tuple[str, Mapping[str, VerifyKey]]] = (),
        *,
        cache_size: int = 10_000,
    ) -> None:
        self._clock = clock
        self._local = local_keys
        self._store = store
        self._direct = DirectKeyFetcher(clock, client)
        self._fetchers: list[KeyFetcher] = [self._direct]
        self._fetchers.extend(notary_fetchers(clock, client, notaries, self.get_verify_keys_from_server))
        self._cache: LruCache[tuple[str, str], FetchedKey] = LruCache("server_verify_keys", cache_size)
        self._fetches: dict[str, _ServerFetches] = {}

    # -- looking keys up --------------------------------------------------------

    async def get_verify_keys(
        self, server_name: str, key_ids: Collection[str], min_valid_until_ms: int
    ) -> dict[str, FetchedKey]:
        """The keys among ``key_ids`` of ``server_name`` valid at ``min_valid_until_ms``.

        Keys that cannot be found (or not valid for long enough) are absent
        from the result; this never raises for an unreachable server.
        """
        wanted = set(key_ids)
        if server_name == self._local.server_name:
            local = self._local.verify_keys()
            return {kid: k for kid, k in local.items() if kid in wanted and k.valid_until_ts >= min_valid_until_ms}
        found = await self._known_keys(server_name, wanted, min_valid_until_ms)
        missing = wanted - found.keys()
        if missing:
            await self._fetch_batched(server_name, missing, min_valid_until_ms)
            found.update(self._cached(server_name, missing, min_valid_until_ms))
        return found

    async def get_verify_keys_from_server(self, server_name: str, key_ids: Collection[str]) -> dict[str, FetchedKey]:
        """Keys known or fetched from the server itself, never through a notary (to check notaries)."""
        wanted = set(key_ids)
        found = await self._known_keys(server_name, wanted, 0)
        if wanted - found.keys():
            try:
                for response in await self._direct.fetch(server_name, wanted, 0):
                    await self._remember(response)
            except Exception as e:
                logger.warning("could not fetch the keys of %s directly: %s", server_name, _describe(e))
            found.update(self._cached(server_name, wanted - found.keys(), 0))
        return found

    async def refresh_from_server(self, server_name: str) -> bool:
        """Fetch and remember the key response of ``server_name`` now (the notary's refresh); False on failure."""
        try:
            for response in await self._direct.fetch(server_name, (), 0):
                await self._remember(response)
        except Exception as e:
            logger.info("could not refresh the keys of %s: %s", server_name, _describe(e))
            return False
        return True

    def _cached(self, server_name: str, key_ids: Iterable[str], min_valid: int) -> dict[str, FetchedKey]:
        out = {}
        for kid in key_ids:
            key = self._cache.get((server_name, kid))
            if key is not None and key.valid_until_ts >= min_valid:
                out[kid] = key
        return out

    async def _known_keys(self, server_name: str, wanted: set[str], min_valid: int) -> dict[str, FetchedKey]:
        found = self._cached(server_name, wanted, min_valid)
        missing = wanted - found.keys()
        if missing:
            stored = await self._store.get_verify_keys(server_name, missing)
            for kid, key in stored.items():
                self._cache_key(server_name, kid, key)
            found.update(self._cached(server_name, missing, min_valid))
        return found

    def _cache_key(self, server_name: str, kid: str, key: FetchedKey) -> None:
        current = self._cache.get((server_name, kid))
        if current is None or key.valid_until_ts >= current.valid_until_ts:
            self._cache.set((server_name, kid), key)

    # -- fetching ---------------------------------------------------------------

    async def _fetch_batched(self, server_name: str, key_ids: Collection[str], min_valid: int) -> None:
        state = self._fetches.setdefault(server_name, _ServerFetches())
        if state.running is None:
            batch = state.running = _Batch(key_ids, min_valid)
            waiter = batch.wait()
            self._start(server_name, batch)
        elif state.running.covers(key_ids, min_valid):
            waiter = state.running.wait()
        else:
            if state.queued is None:
                state.queued = _Batch(key_ids, min_valid)
            else:
                state.queued.merge(key_ids, min_valid)
            waiter = state.queued.wait()
        await waiter

    def _start(self, server_name: str, batch: _Batch) -> None:
        defer.ensureDeferred(self._run_batch(server_name, batch))

    async def _run_batch(self, server_name: str, batch: _Batch) -> None:
        try:
            await self._run_fetchers(server_name, batch.key_ids, batch.min_valid)
        except Exception:
            logger.exception("key fetch for %s failed", server_name)
        finally:
            state = self._fetches[server_name]
            following = state.queued
            state.running, state.queued = following, None
            if following is None:
                del self._fetches[server_name]
            batch.done()
            if following is not None:
                self._start(server_name, following)

    async def _run_fetchers(self, server_name: str, key_ids: Collection[str], min_valid: int) -> None:
        missing = set(key_ids)
        for fetcher in self._fetchers:
            if not missing:
                return
            try:
                responses = await fetcher.fetch(server_name, missing, min_valid)
            except Exception as e:
                logger.info("fetching keys %s of %s (%s) failed: %s", sorted(missing), server_name, fetcher.name,
                            _describe(e))
                continue
            for response in responses:
                await self._remember(response)
            missing -= self._cached(server_name, missing, min_valid).keys()
        if missing:
            logger.info("no source had keys %s of %s valid until %d", sorted(missing), server_name, min_valid)

    async def _remember(self, response: FetchedResponse) -> None:
        now = self._clock.time_msec()
        server = response.server_name
        await self._store.store_verify_keys(
            response.from_server, now, [(server, kid, key) for kid, key in response.keys.items()]
        )
        await self._store.store_key_json(
            server, response.from_server, now, response.valid_until_ts, list(response.keys), response.key_json
        )
        for kid, key in response.keys.items():
            self._cache_key(server, kid, key)

    # -- verifying --------------------------------------------------------------

    async def verify_json_for_server(self, server_name: str, json_obj: Mapping[str, Any], valid_until_ms: int) -> None:
        """Check that ``server_name`` signed ``json_obj`` with a key valid at ``valid_until_ms``.

        At least one of its signatures must be by a key we can find; every
        signature by a key we found must verify.

        Raises:
            SignatureVerifyError: 401 ``M_UNAUTHORIZED``, saying why.
        """
        sigs = json_obj.get("signatures")
        own = sigs.get(server_name) if isinstance(sigs, dict) else None
        if not isinstance(own, dict) or not own:
            raise SignatureVerifyError(f"Not signed by {server_name}")
        key_ids = [kid for kid in own if isinstance(kid, str) and kid.startswith(SUPPORTED_ALGORITHM + ":")]
        if not key_ids:
            raise SignatureVerifyError(f"No {SUPPORTED_ALGORITHM} signature of {server_name}")
        keys = await self.get_verify_keys(server_name, key_ids, valid_until_ms)
        if not keys:
            raise SignatureVerifyError(
                f"No key of {server_name} among {sorted(key_ids)} is known and valid at {valid_until_ms}"
            )
        for key in keys.values():
            try:
                verify_json_signature(json_obj, server_name, key.verify_key)
            except KeyResponseError as e:
                raise SignatureVerifyError(f"Invalid signature of {server_name}: {e}") from None

    async def verify_event_signatures(self, room_version: RoomVersion, pdu: Mapping[str, Any]) -> JsonDict:
        """Receipt checks 2 and 3 for a PDU that passed ``validate_pdu``.

        Fetches the keys of every server that must have signed it (valid at
        its ``origin_server_ts`` from room v5), then applies
        ``matrixd.events.signing.check_event_hashes_and_signatures``.

        Returns:
            the PDU to process further: itself if its content hash matches,
            else its redacted form.

        Raises:
            SignatureVerifyError: a required signature is missing or invalid
                (drop the event).
        """
        event = Event(dict(pdu), room_version)
        required = servers_required_to_sign(room_version, event)
        sigs = pdu.get("signatures")
        sigs = sigs if isinstance(sigs, dict) else {}
        servers = required or {s for s in sigs if isinstance(s, str)}
        min_valid = 0
        if room_version.enforce_key_validity:
            ts = pdu.get("origin_server_ts")
            min_valid = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0

        async def keys_for(server: str) -> tuple[str, dict[str, VerifyKey]]:
            server_sigs = sigs.get(server)
            key_ids = [
                kid for kid in (server_sigs if isinstance(server_sigs, dict) else {})
                if isinstance(kid, str) and kid.startswith(SUPPORTED_ALGORITHM + ":")
            ]
            found = await self.get_verify_keys(server, key_ids, min_valid) if key_ids else {}
            return server, {kid: k.verify_key for kid, k in found.items()}

        results = await defer.gatherResults(
            [defer.ensureDeferred(keys_for(s)) for s in sorted(servers)], consumeErrors=True
        )
        keys_by_server = {server: keys for server, keys in results if keys or server in required}
        return check_event_hashes_and_signatures(room_version, pdu, keys_by_server)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
