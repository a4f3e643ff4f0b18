"""How the room code hands PDUs to the outbound federation queue.

``FederationSender.send_pdu(event, destinations)`` is the whole contract: the
sender delivers ``event`` to each destination in a transaction, eventually,
retrying as it sees fit; callers never wait for delivery.  The real queue
(per-destination transactions, backoff, catch-up) is the outbound area's;
``ImmediateFederationSender`` is a stand-in that sends one single-PDU
transaction per destination at once and forgets failures.

``PduDistributor`` is the persisted-event callback that decides who gets a
locally created event: every other server with a joined member in the room,
plus the server of a remote membership event's target.
"""

from __future__ import annotations

import itertools
import logging
from typing import Collection, Optional, Protocol

from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.storage.current_state import CurrentStateStore
from matrixd.types import IdentifierError, get_domain_from_id
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)


class FederationSender(Protocol):
    """Queues PDUs for other servers (never blocks on delivery)."""

    def send_pdu(self, event: Event, destinations: Collection[str]) -> None: ...


class ImmediateFederationSender:
    """A ``FederationSender`` without a queue: one PUT /send per destination, no retries."""

    def __init__(self, clock: Clock, client: MatrixFederationClient, server_name: str) -> None:
        self._clock = clock
        self._client = client
        self._server_name = server_name
        self._counter = itertools.count()
        #: Deliveries in flight (tests wait on these).
        self.pending: set["defer.Deferred[None]"] = set()

    def send_pdu(self, event: Event, destinations: Collection[str]) -> None:
        for destination in sorted(set(destinations) - {self._server_name}):
            d = defer.ensureDeferred(self._send(event, destination))
            self.pending.add(d)

            def done(_result: object, d: "defer.Deferred[None]" = d) -> None:
                self.pending.discard(d)

            d.addBoth(done)

    async def _send(self, event: Event, destination: str) -> None:
        txn_id = f"{self._clock.time_msec()}.{next(self._counter)}"
        body = {"origin": self._server_name, "origin_server_ts": self._clock.time_msec(),
                "pdus": [pdu_for_federation(event)], "edus": []}
        try:
            await self._client.put_json(destination, f"/_matrix/federation/v1/send/{txn_id}", body)
        except (HttpResponseException, RequestSendFailed) as e:
            logger.info("could not send %s to %s: %s", event.event_id, destination, e)
        except Exception:
            logger.exception("sending %s to %s failed", event.event_id, destination)


def _domain(user_id: str) -> Optional[str]:
    try:
        return get_domain_from_id(user_id)
    except IdentifierError:
        return None


class PduDistributor:
    """Sends this server's newly persisted timeline events to the other servers in their rooms."""

    def __init__(self, server_name: str, current_state: CurrentStateStore, sender: FederationSender) -> None:
        self._server_name = server_name
        self._current = current_state
        self._sender = sender

    def on_event_persisted(self, event: Event) -> None:
        """``EventPersister`` callback (fire and forget)."""
        if event.internal_metadata.outlier or event.rejected or event.internal_metadata.soft_failed:
            return
        if _domain(event.sender) != self._server_name:
            return
        defer.ensureDeferred(self._distribute(event)).addErrback(
            lambda f: logger.error("distributing %s failed: %s", event.event_id, f.getErrorMessage())
        )

    async def _distribute(self, event: Event) -> None:
        await self.distribute(event)

    async def distribute(self, event: Event, extra: Collection[str] = (), exclude: Collection[str] = ()) -> None:
        """Send ``event`` to every server with a joined member (and ``extra``, but not ``exclude``)."""
        hosts = {d for d in map(_domain, await self._current.get_users_in_room(event.room_id)) if d}
        if event.type == "m.room.member" and event.state_key:
            target = _domain(event.state_key)
            if target:
                hosts.add(target)
        hosts.update(extra)
        hosts.discard(self._server_name)
        hosts.difference_update(exclude)
        if hosts:
            self._sender.send_pdu(event, hosts)
