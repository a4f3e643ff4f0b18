"""Server-wide sizes for monitoring: rooms and events in the current state.

Counting is a query over ``current_state_events``, so it runs on a timer
(every ``interval`` seconds) rather than at scrape time; the gauges show the
last count.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge
from twisted.internet import defer, task

from matrixd.storage.admin import AdminStore
from matrixd.util.clock import Clock

logger = logging.getLogger(__name__)

CURRENT_STATE_ROOMS = Gauge("matrixd_current_state_rooms", "Rooms with current state on this server")
CURRENT_STATE_EVENTS = Gauge("matrixd_current_state_events",
                             "State events in the current state of every room (the current state size)")


class CurrentStateSize:
    def __init__(self, clock: Clock, store: AdminStore, interval: float = 60.0) -> None:
        self._clock = clock
        self._store = store
        self._interval = interval
        self._loop: task.LoopingCall | None = None

    async def refresh(self) -> None:
        try:
            rooms, events = await self._store.count_current_state()
        except Exception:
            logger.warning("could not count the current state", exc_info=True)
            return
        CURRENT_STATE_ROOMS.set(rooms)
        CURRENT_STATE_EVENTS.set(events)

    def start(self) -> None:
        """Count now and then every ``interval`` seconds until :meth:`stop`."""
        self._loop = self._clock.looping_call(lambda: defer.ensureDeferred(self.refresh()), self._interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
