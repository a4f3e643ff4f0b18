"""One destination's outbound queue: transactions, one at a time, with backoff and catch-up.

A ``DestinationQueue`` holds the PDUs and ephemeral EDUs waiting for one
server and drains them in transactions (``PUT /_matrix/federation/v1/send/{txnId}``,
at most 50 PDUs and 100 EDUs each), never more than one in flight.  Durable
EDUs (to-device, device lists) are read from the database at send time and
acknowledged only after the destination answered 200.

When a transaction fails the destination is backed off (``RetryPolicy``,
stored in ``federation_destinations``) and enters *catch-up*: the in-memory
PDUs are dropped, and once the backoff has passed the queue sends, for every
room, the newest event queued since the destination's
``last_successful_stream_ordering`` (the receiver fetches the gap itself with
``/get_missing_events``), then returns to normal sending.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

from prometheus_client import Counter, Gauge
from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.federation.sender.backoff import UP, RetryPolicy
from matrixd.federation.sender.durable_edus import Ack, DurableEduSource
from matrixd.federation.transport.client import (
    FederationDeniedError,
    HttpResponseException,
    MatrixFederationClient,
    RequestSendFailed,
)
from matrixd.storage.events import EventStore
from matrixd.storage.federation_sender import FederationSenderStore, RetryState
from matrixd.types import JsonDict
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
#: Ephemeral EDUs kept per destination while it is down (the oldest are dropped).
MAX_PENDING_EDUS = 1000

QUEUE_DEPTH = Gauge("matrixd_federation_sender_queue_depth",
                    "PDUs and ephemeral EDUs waiting per destination", ["destination"])
RETRIES = Counter("matrixd_federation_sender_retries_total",
                  "Failed transactions (each starts or extends a backoff) per destination", ["destination"])
TRANSACTIONS = Counter("matrixd_federation_sender_transactions_total",
                       "Transactions a destination accepted", ["destination"])
PDUS_SENT = Counter("matrixd_federation_sender_pdus_sent_total", "PDUs delivered", ["destination"])


class DestinationQueue:
    def __init__(
        self,
        *,
        destination: str,
        server_name: str,
        clock: Clock,
        client: MatrixFederationClient,
        store: FederationSenderStore,
        events: EventStore,
        durable: Sequence[DurableEduSource],
        policy: RetryPolicy,
        rng: random.Random,
        next_txn_id: Callable[[], str],
    ) -> None:
        self.destination = destination
        self._server_name = server_name
        self._clock = clock
        self._client = client
        self._store = store
        self._events = events
        self._durable = durable
        self._policy = policy
        self._rng = rng
        self._next_txn_id = next_txn_id
        # (event, stream ordering or None for events handed in by send_pdu without one)
        self._pdus: list[tuple[Event, Optional[int]]] = []
        # (edu_type, key) -> content; unkeyed EDUs get a unique key
        self._edus: OrderedDict[tuple[str, str], JsonDict] = OrderedDict()
        self._edu_seq = 0
        self._running = False
        self._rerun = False
        self._retry: Optional[RetryState] = None
        self._retry_loaded = False
        self.catching_up = False
        self._wake_timer: Any = None

    # -- input ---------------------------------------------------------------------

    def add_pdu(self, event: Event, stream_ordering: Optional[int]) -> None:
        if not self.catching_up:
            self._pdus.append((event, stream_ordering))
        self._update_gauge()

    def add_edu(self, edu_type: str, content: JsonDict, key: Optional[str]) -> None:
        if key is None:
            self._edu_seq += 1
            key = f"#{self._edu_seq}"
        self._edus.pop((edu_type, key), None)
        self._edus[(edu_type, key)] = content
        while len(self._edus) > MAX_PENDING_EDUS:
            self._edus.popitem(last=False)
        self._update_gauge()

    def start_catch_up(self) -> None:
        """Send the newest event of each room since the last success before anything else."""
        self.catching_up = True
        self._pdus.clear()
        self._update_gauge()

    def pending(self) -> int:
        return len(self._pdus) + len(self._edus)

    def pending_pdus(self) -> int:
        return len(self._pdus)

    def pending_edus(self) -> int:
        return len(self._edus)

    def _update_gauge(self) -> None:
        QUEUE_DEPTH.labels(self.destination).set(self.pending())

    # -- the send loop ---------------------------------------------------------------

    def wake(self) -> "defer.Deferred[None]":
        """Start sending if nothing is in flight (a running loop picks new work up itself)."""
        if self._running:
            self._rerun = True
            return defer.succeed(None)
        self._running = True
        return defer.ensureDeferred(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._rerun = False
                if not await self._due():
                    return
                progressed = await (self._catch_up_step() if self.catching_up else self._send_step())
                if not progressed and not self._rerun:
                    return
        except Exception:
            logger.exception("federation sender loop for %s failed", self.destination)
        finally:
            self._running = False

    async def _due(self) -> bool:
        """Whether the backoff allows an attempt now (if not, wake up when it does)."""
        if not self._retry_loaded:
            self._retry = await self._store.get_retry_state(self.destination)
            self._retry_loaded = True
        if self._retry is None or self._retry.retry_interval == 0:
            return True
        wait_ms = self._retry.next_attempt_ts() - self._clock.time_msec()
        if wait_ms <= 0:
            return True
        if self._wake_timer is None or not self._wake_timer.active():
            self._wake_timer = self._clock.call_later(wait_ms / 1000, self.wake)
        return False

    def reset_backoff(self) -> None:
        """The stored backoff was cleared (admin API): re-read it and send now."""
        self._retry_loaded = False
        if self._wake_timer is not None and self._wake_timer.active():
            self._wake_timer.cancel()
        self.wake()

    def is_down(self) -> bool:
        return self._retry is not None and self._retry.retry_interval > 0

    async def _send_step(self) -> bool:
        pdus = self._pdus[:MAX_PDUS_PER_TXN]
        taken = list(self._edus.items())[:MAX_EDUS_PER_TXN]
        edus = [{"edu_type": t, "content": c} for (t, _k), c in taken]
        acks: list[Ack] = []
        for source in self._durable:
            room = MAX_EDUS_PER_TXN - len(edus)
            if room <= 0:
                break
            more, ack = await source.take(self.destination, room)
            if more:
                edus.extend(more)
                acks.append(ack)
        if not pdus and not edus:
            return False
        ok = await self._send_transaction([e for e, _ in pdus], edus)
        if not ok:
            return False
        del self._pdus[:len(pdus)]
        for key, content in taken:
            # An entry replaced while the transaction was in flight is newer: it goes in the next one.
            if self._edus.get(key) is content:
                del self._edus[key]
        self._update_gauge()
        for ack in acks:
            await ack()
        orderings = [o for _, o in pdus if o is not None]
        if orderings:
            await self._store.set_last_successful_stream_ordering(self.destination, max(orderings))
        return True

    async def _catch_up_step(self) -> bool:
        after = await self._store.get_last_successful_stream_ordering(self.destination)
        batch = await self._store.get_catch_up_events(self.destination, after, MAX_PDUS_PER_TXN)
        if not batch:
            self.catching_up = False
            return True
        found = await self._events.get_events([c.event_id for c in batch])
        pdus = [found[c.event_id] for c in batch if c.event_id in found]
        if pdus:
            ok = await self._send_transaction(pdus, [])
            if not ok:
                return False
        await self._store.set_last_successful_stream_ordering(self.destination, batch[-1].stream_ordering)
        return True

    async def _send_transaction(self, pdus: Sequence[Event], edus: list[JsonDict]) -> bool:
        txn_id = self._next_txn_id()
        body: JsonDict = {
            "origin": self._server_name,
            "origin_server_ts": self._clock.time_msec(),
            "pdus": [pdu_for_federation(e) for e in pdus],
        }
        if edus:
            body["edus"] = edus
        try:
            response = await self._client.put_json(self.destination, f"/_matrix/federation/v1/send/{txn_id}", body)
        except FederationDeniedError:
            logger.info("not sending to %s: not in federation_domain_whitelist", self.destination)
            self._pdus.clear()
            self._edus.clear()
            return False
        except (RequestSendFailed, HttpResponseException) as e:
            await self._on_failure(f"{type(e).__name__}: {e}")
            return False
        self._log_rejected_pdus(txn_id, response)
        TRANSACTIONS.labels(self.destination).inc()
        PDUS_SENT.labels(self.destination).inc(len(pdus))
        if self._retry is not None and self._retry.retry_interval != 0:
            logger.info("%s is back up", self.destination)
            await self._store.set_retry_state(self.destination, UP)
        self._retry = UP
        return True

    async def _on_failure(self, reason: str) -> None:
        RETRIES.labels(self.destination).inc()
        self._retry = self._policy.after_failure(self._retry, self._clock.time_msec(), self._rng)
        await self._store.set_retry_state(self.destination, self._retry)
        logger.info("transaction to %s failed (%s); next attempt in %.1fs", self.destination, reason,
                    self._retry.retry_interval / 1000)
        # What was queued in memory is now covered by catch-up; typing is meaningless later.
        self.start_catch_up()
        for key in [k for k in self._edus if k[0] == "m.typing"]:
            del self._edus[key]
        self._update_gauge()
        if self._wake_timer is not None and self._wake_timer.active():
            self._wake_timer.cancel()
        self._wake_timer = self._clock.call_later(self._retry.retry_interval / 1000, self.wake)

    def _log_rejected_pdus(self, txn_id: str, response: JsonDict) -> None:
        results = response.get("pdus")
        if isinstance(results, dict):
            for event_id, result in results.items():
                if isinstance(result, dict) and "error" in result:
                    logger.info("%s rejected %s in txn %s: %s", self.destination, event_id, txn_id, result["error"])

    def stop(self) -> None:
        if self._wake_timer is not None and self._wake_timer.active():
            self._wake_timer.cancel()
