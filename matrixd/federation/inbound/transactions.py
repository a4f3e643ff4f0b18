"""Inbound transactions: ``PUT /_matrix/federation/v1/send/{txnId}``.

* At most 50 PDUs and 100 EDUs (400 ``M_BAD_JSON`` otherwise, nothing done).
* Idempotent per ``(origin, txn id)``: the first answer is stored and
  returned again; concurrent duplicates wait for the first.
* Each PDU: the room must be one we know (its version from our rooms table),
  the origin must pass the room's server ACL and be the PDU's origin
  (``check_origin``), receipt checks 1-3 (``check_pdu``), then
  ``FederationEventHandler``.  PDUs of one room are processed in order, rooms
  in parallel.  The answer is ``{"pdus": {event_id: {} | {"error": ...}}}``.
* EDUs go to the outbound area's ``EduRegistry`` (those naming a room the origin is ACL-denied
  in are dropped).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from twisted.internet import defer

from matrixd.api.errors import Codes, MatrixError
from matrixd.crypto.keyring import Keyring
from matrixd.events.event import Event
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.federation.acl import ServerAclChecker
from matrixd.federation.edus.registry import EduRegistry
from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.inbound.pdu_checks import PduDropped, check_origin, check_pdu
from matrixd.federation.inbound.txn_store import ReceivedTransactionStore
from matrixd.federation.missing_events import RemoteFetchError
from matrixd.storage.rooms import RoomStore
from matrixd.util.linearizer import Linearizer

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
MAX_PDUS = 50
MAX_EDUS = 100



def transaction_contents(body: JsonDict) -> tuple[list[Any], list[Any]]:
    """A ``/send`` body's PDUs and EDUs, checked against the spec's shape and limits (400 otherwise)."""
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise MatrixError(400, "pdus and edus must be lists", Codes.BAD_JSON)
    if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
        raise MatrixError(400, f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs",
                          Codes.BAD_JSON)
    return pdus, edus

class TransactionHandler:
    def __init__(
        self,
        *,
        rooms: RoomStore,
        keyring: Keyring,
        acl: ServerAclChecker,
        event_handler: FederationEventHandler,
        edus: EduRegistry,
        store: ReceivedTransactionStore,
    ) -> None:
        self._rooms = rooms
        self._keyring = keyring
        self._acl = acl
        self._event_handler = event_handler
        self._edus = edus
        self._store = store
        self._txn_lock = Linearizer("federation_txn")

    async def on_transaction(self, origin: str, txn_id: str, body: JsonDict) -> JsonDict:
        pdus, edus = transaction_contents(body)
        async with self._txn_lock.queue((origin, txn_id)):
            previous = await self._store.get_response(origin, txn_id)
            if previous is not None:
                return previous
            results = await self._process_pdus(origin, pdus)
            await self._process_edus(origin, edus)
            response: JsonDict = {"pdus": results}
            await self._store.set_response(origin, txn_id, response)
            return response

    async def _process_pdus(self, origin: str, pdus: list[Any]) -> dict[str, JsonDict]:
        results: dict[str, JsonDict] = {}
        by_room: dict[str, list[Event]] = {}
        for pdu in pdus:
            event, error = await self._prepare(origin, pdu)
            if event is None:
                if error is not None:
                    results[error[0]] = {"error": error[1]}
                continue
            by_room.setdefault(event.room_id, []).append(event)

        async def run_room(events: list[Event]) -> None:
            for event in events:
                results[event.event_id] = await self._process_one(origin, event)

        await defer.gatherResults(
            [defer.ensureDeferred(run_room(evs)) for evs in by_room.values()], consumeErrors=True
        )
        return results

    async def _prepare(self, origin: str, pdu: Any) -> tuple[Optional[Event], Optional[tuple[str, str]]]:
        """The checked event, or ``(None, (event id, error))`` (``(None, None)`` if it cannot be named)."""
        if not isinstance(pdu, dict):
            return None, None
        room_id = pdu.get("room_id")
        ident = _event_id_for_error(pdu)
        if not isinstance(room_id, str):
            return None, (ident, "PDU has no room_id") if ident else None
        room = await self._rooms.get_room(room_id)
        if room is None or room.room_version not in KNOWN_ROOM_VERSIONS:
            return None, (ident or "<unknown>", f"Unknown room {room_id}")
        rv = KNOWN_ROOM_VERSIONS[room.room_version]
        try:
            ident = Event(dict(pdu), rv).event_id
        except Exception:
            return None, (ident or "<unknown>", "cannot compute the event id")
        if not await self._acl.is_server_allowed(origin, room_id):
            return None, (ident, f"Server {origin} is denied by the room's server ACL")
        try:
            check_origin(origin, rv, pdu)
            return await check_pdu(self._keyring, rv, pdu), None
        except PduDropped as e:
            return None, (ident, str(e))

    async def _process_one(self, origin: str, event: Event) -> JsonDict:
        try:
            await self._event_handler.on_receive_pdu(origin, event)
        except RemoteFetchError as e:
            return {"error": f"could not process: {e}"}
        except MatrixError as e:
            return {"error": e.msg}
        except Exception:
            logger.exception("processing %s from %s failed", event.event_id, origin)
            return {"error": "internal error processing the event"}
        if event.rejected:
            return {"error": f"rejected: {event.internal_metadata.rejected_reason}"}
        return {}

    async def _process_edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            if not isinstance(edu, dict):
                continue
            edu_type, content = edu.get("edu_type"), edu.get("content")
            if not isinstance(edu_type, str) or not isinstance(content, dict):
                continue
            room_id = content.get("room_id")
            if isinstance(room_id, str) and not await self._acl.is_server_allowed(origin, room_id):
                continue
            await self._edus.handle(origin, edu_type, content)


def _event_id_for_error(pdu: JsonDict) -> Optional[str]:
    """A name for a PDU we cannot process: its ``event_id``, else its id in the current event format."""
    event_id = pdu.get("event_id")
    if isinstance(event_id, str):
        return event_id
    try:
        return Event(dict(pdu), KNOWN_ROOM_VERSIONS["10"]).event_id
    except Exception:
        return None
