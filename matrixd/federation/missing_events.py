"""Fetching events we lack from another server: by id, prev-event gaps, auth chains, the state at an event.

Every fetched PDU passes the receipt checks 1-3 (``check_pdu``); those that
fail are left out (and logged).  Nothing here persists.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, Iterable, Optional, Sequence

from matrixd.crypto.keyring import Keyring
from matrixd.events.event import Event
from matrixd.events.room_versions import RoomVersion
from matrixd.federation.inbound.pdu_checks import PduBatch, PduDropped, check_pdu, check_pdus
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed

logger = logging.getLogger(__name__)

#: Most prev events fetched with one /get_missing_events before falling back to /state_ids.
MAX_MISSING_EVENTS = 10
#: Most events of a state (plus its auth chain) fetched one by one with /event.
MAX_STATE_FETCH = 5000


class RemoteFetchError(Exception):
    """The server could not give us what we needed."""


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class RemoteEventFetcher:
    def __init__(self, client: MatrixFederationClient, keyring: Keyring) -> None:
        self._client = client
        self._keyring = keyring

    async def check_all(self, room_version: RoomVersion, pdus: Iterable[Any]) -> list[Event]:
        """The PDUs that pass the receipt checks, as events (failures are logged and dropped)."""
        events: list[Event] = []
        for result in await check_pdus(self._keyring, room_version, list(pdus)):
            if isinstance(result, PduDropped):
                logger.info("dropping a fetched PDU: %s", result)
            else:
                events.append(result)
        return events

    async def get_event(self, destination: str, room_version: RoomVersion, event_id: str) -> Optional[Event]:
        """``event_id`` from ``destination`` (None if it will not give us a valid copy)."""
        try:
            body = await self._client.get_json(destination, f"/_matrix/federation/v1/event/{_q(event_id)}")
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("could not fetch %s from %s: %s", event_id, destination, e)
            return None
        pdus = body.get("pdus")
        if not isinstance(pdus, list) or not pdus:
            return None
        try:
            return await check_pdu(self._keyring, room_version, pdus[0], expected_event_id=event_id)
        except PduDropped as e:
            logger.info("fetched %s from %s is unusable: %s", event_id, destination, e)
            return None

    async def get_events(self, destination: str, room_version: RoomVersion, event_ids: Iterable[str]) -> list[Event]:
        found = []
        for event_id in event_ids:
            event = await self.get_event(destination, room_version, event_id)
            if event is not None:
                found.append(event)
        return found

    async def get_missing_events(
        self, destination: str, room_version: RoomVersion, room_id: str, earliest: Sequence[str],
        latest: Sequence[str], min_depth: int,
    ) -> list[Event]:
        """Prev events of ``latest`` down to ``earliest`` (at most ``MAX_MISSING_EVENTS``), oldest first."""
        try:
            body = await self._client.post_json(
                destination, f"/_matrix/federation/v1/get_missing_events/{_q(room_id)}",
                {"earliest_events": list(earliest), "latest_events": list(latest), "limit": MAX_MISSING_EVENTS,
                 "min_depth": min_depth},
            )
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("get_missing_events in %s from %s failed: %s", room_id, destination, e)
            return []
        pdus = body.get("events")
        events = await self.check_all(room_version, pdus if isinstance(pdus, list) else [])
        events = [e for e in events if e.room_id == room_id]
        events.sort(key=lambda e: (e.depth, e.event_id))
        return events

    async def get_event_auth(self, destination: str, room_version: RoomVersion, room_id: str,
                             event_id: str) -> list[Event]:
        """The auth chain of ``event_id`` as ``destination`` knows it."""
        try:
            body = await self._client.get_json(
                destination, f"/_matrix/federation/v1/event_auth/{_q(room_id)}/{_q(event_id)}"
            )
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("event_auth of %s from %s failed: %s", event_id, destination, e)
            return []
        pdus = body.get("auth_chain")
        return [e for e in await self.check_all(room_version, pdus if isinstance(pdus, list) else [])
                if e.room_id == room_id]

    async def _get_state_answer(self, destination: str, endpoint: str, room_id: str, event_id: str) -> Any:
        """The answer of ``/state`` or ``/state_ids`` (``endpoint``) at ``event_id``; RemoteFetchError if it failed."""
        try:
            return await self._client.get_json(
                destination, f"/_matrix/federation/v1/{endpoint}/{_q(room_id)}", {"event_id": event_id}
            )
        except (HttpResponseException, RequestSendFailed) as e:
            raise RemoteFetchError(f"{endpoint} at {event_id} from {destination}: {e}") from None

    async def get_state_ids(self, destination: str, room_id: str, event_id: str,
                            max_events: Optional[int] = MAX_STATE_FETCH) -> tuple[list[str], list[str]]:
        """``(state ids, auth chain ids)`` before ``event_id`` (more than ``max_events`` in all: refused)."""
        body = await self._get_state_answer(destination, "state_ids", room_id, event_id)
        pdu_ids, chain_ids = body.get("pdu_ids"), body.get("auth_chain_ids")
        if not isinstance(pdu_ids, list) or not isinstance(chain_ids, list) or \
                not all(isinstance(i, str) for i in pdu_ids + chain_ids):
            raise RemoteFetchError(f"malformed state_ids answer from {destination}")
        if max_events is not None and len(pdu_ids) + len(chain_ids) > max_events:
            raise RemoteFetchError(f"state at {event_id} is too large ({len(pdu_ids)} events)")
        return pdu_ids, chain_ids

    async def get_state_batch(self, destination: str, room_version: RoomVersion, room_id: str,
                              event_id: str) -> tuple[PduBatch, int]:
        """The ``/state`` answer before ``event_id``, its signatures not yet verified, and how many of its
        PDUs are the state (the auth chain follows them in the batch).

        The signers' keys are fetched and the PDUs the batch cannot settle alone are checked; the rest are
        verified as the caller asks for them (``PduBatch.result``, or ``settle``).
        """
        body = await self._get_state_answer(destination, "state", room_id, event_id)
        pdus, chain = body.get("pdus"), body.get("auth_chain")
        if not isinstance(pdus, list) or not isinstance(chain, list):
            raise RemoteFetchError(f"malformed state answer from {destination}")
        batch = PduBatch(room_version, [*pdus, *chain], owned=True)
        await batch.fetch_keys(self._keyring)
        await batch.check_unbatched(self._keyring)
        return batch, len(pdus)

    @staticmethod
    def settle(batch: PduBatch, indices: Iterable[int]) -> list[Event]:
        """The events of ``batch`` at ``indices`` that pass the receipt checks (failures are logged)."""
        events: list[Event] = []
        for i in indices:
            result = batch.result(i)
            if isinstance(result, PduDropped):
                logger.info("dropping a fetched PDU: %s", result)
            else:
                events.append(result)
        return events
