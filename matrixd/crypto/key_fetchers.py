"""Where the keyring gets keys it does not have: the server itself, or a notary.

Each fetcher returns the key responses it obtained, already checked (the
server's self-signature and, through a notary, the notary's signature), so
the keyring only has to store and cache them. A fetcher that cannot reach its
server raises; the keyring logs that and tries the next one.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Collection, Mapping, Optional, Protocol, Sequence

import attrs
from signedjson.types import VerifyKey

from matrixd.crypto.server_keys import FetchedKey, JsonDict, KeyResponseError, parse_key_response, verify_json_signature
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

#: Key requests are small and answered from memory: do not wait long, retry once
#: (an inbound request may be waiting on the answer).
KEY_REQUEST_TIMEOUT_S = 10.0
KEY_REQUEST_RETRIES = 1


class FederationJsonClient(Protocol):
    """The part of ``MatrixFederationClient`` the fetchers use."""

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        *,
        max_retries: Optional[int] = None,
    ) -> JsonDict: ...

    async def post_json(
        self,
        destination: str,
        path: str,
        data: Optional[JsonDict] = None,
        args: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> JsonDict: ...


@attrs.frozen(slots=True)
class FetchedResponse:
    """One checked key response of ``server_name``, as obtained from ``from_server``."""

    server_name: str
    from_server: str
    keys: Mapping[str, FetchedKey]
    # The response's own valid_until_ts (uncapped), and the response as signed.
    valid_until_ts: int
    key_json: JsonDict = attrs.field(eq=False)


class KeyFetcher(Protocol):
    name: str

    async def fetch(self, server_name: str, key_ids: Collection[str], min_valid_until_ms: int) -> list[FetchedResponse]:
        """Key responses of ``server_name`` that may hold ``key_ids``; raises if the source is unreachable."""
        ...


class DirectKeyFetcher:
    """``GET /_matrix/key/v2/server`` on the server itself."""

    name = "direct"

    def __init__(self, clock: Clock, client: FederationJsonClient) -> None:
        self._clock = clock
        self._client = client

    async def fetch(self, server_name: str, key_ids: Collection[str], min_valid_until_ms: int) -> list[FetchedResponse]:
        response = await self._client.get_json(
            server_name, "/_matrix/key/v2/server", timeout=KEY_REQUEST_TIMEOUT_S, max_retries=KEY_REQUEST_RETRIES
        )
        return [checked_response(response, server_name, server_name, self._clock.time_msec())]


def checked_response(response: Any, server_name: str, from_server: str, now_ms: int) -> FetchedResponse:
    """Check ``response`` as a key response of ``server_name``; KeyResponseError if it is not one."""
    keys = parse_key_response(response, server_name, now_ms)
    return FetchedResponse(server_name, from_server, keys, int(response["valid_until_ts"]), response)


#: Gets a notary's own keys (when none are configured for it), without asking any notary.
NotaryKeySource = Callable[[str, Collection[str]], Awaitable[Mapping[str, FetchedKey]]]


class NotaryKeyFetcher:
    """``POST /_matrix/key/v2/query`` on a trusted notary.

    The notary must have signed each response it returns, with one of the
    keys configured for it (``trusted_key_servers[].verify_keys``) or, if
    none are configured, with a key we got from the notary itself.
    """

    def __init__(
        self,
        clock: Clock,
        client: FederationJsonClient,
        notary: str,
        configured_keys: Mapping[str, VerifyKey],
        notary_key_source: NotaryKeySource,
    ) -> None:
        self._clock = clock
        self._client = client
        self.notary = notary
        self.name = f"notary {notary}"
        self._configured_keys = dict(configured_keys)
        self._notary_key_source = notary_key_source

    async def fetch(self, server_name: str, key_ids: Collection[str], min_valid_until_ms: int) -> list[FetchedResponse]:
        if server_name == self.notary:
            return []  # asking a server about itself is the direct fetcher's job
        criteria = {kid: {"minimum_valid_until_ts": min_valid_until_ms} for kid in sorted(key_ids)}
        body = {"server_keys": {server_name: criteria}}
        response = await self._client.post_json(
            self.notary, "/_matrix/key/v2/query", data=body, timeout=KEY_REQUEST_TIMEOUT_S
        )
        entries = response.get("server_keys") if isinstance(response, dict) else None
        if not isinstance(entries, list):
            raise KeyResponseError(f"notary {self.notary} sent no server_keys list")
        now = self._clock.time_msec()
        results = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("server_name") != server_name:
                continue
            try:
                await self._check_notary_signature(entry)
                results.append(checked_response(entry, server_name, self.notary, now))
            except KeyResponseError as e:
                logger.warning("ignoring a key response for %s from notary %s: %s", server_name, self.notary, e)
        return results

    async def _check_notary_signature(self, entry: JsonDict) -> None:
        sigs = entry.get("signatures")
        by_notary = sigs.get(self.notary) if isinstance(sigs, dict) else None
        if not isinstance(by_notary, dict) or not by_notary:
            raise KeyResponseError(f"not signed by the notary {self.notary}")
        key_ids = [kid for kid in by_notary if isinstance(kid, str) and kid.startswith("ed25519:")]
        if self._configured_keys:
            keys: Mapping[str, VerifyKey] = {kid: self._configured_keys[kid] for kid in key_ids if kid in self._configured_keys}
        else:
            fetched = await self._notary_key_source(self.notary, key_ids)
            keys = {kid: k.verify_key for kid, k in fetched.items()}
        if not keys:
            raise KeyResponseError(f"signed by none of the trusted keys of {self.notary} ({sorted(by_notary)})")
        for key in keys.values():
            verify_json_signature(entry, self.notary, key)


def notary_fetchers(
    clock: Clock,
    client: FederationJsonClient,
    notaries: Sequence[tuple[str, Mapping[str, VerifyKey]]],
    notary_key_source: NotaryKeySource,
) -> list[NotaryKeyFetcher]:
    """One fetcher per configured notary, in configuration order."""
    return [NotaryKeyFetcher(clock, client, name, keys, notary_key_source) for name, keys in notaries]

