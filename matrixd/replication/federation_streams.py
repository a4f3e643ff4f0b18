"""Registry entry of the ``federation_outbox`` stream (master -> ``federation_sender`` worker).

Rows live in the ``federation_outbox`` table (:mod:`matrixd.storage.federation_outbox`),
so a sender that was away catches up from the database like any DB-backed
stream; the sender itself drains the table from its own stored position, so
the stream's rows are only the wake-up (``on_rows`` runs after the position
advanced, on the next reactor turn).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import attrs

from matrixd.replication.streams import ReplicationStream, StreamPage, page_from_rows
from matrixd.storage.federation_outbox import FederationOutboxStore
from matrixd.util.clock import Clock

FEDERATION_OUTBOX = "federation_outbox"


@attrs.frozen(slots=True)
class FederationOutboxRow:
    """Something was handed to the sender (an event id, or an EDU type) for these servers."""

    destinations: tuple[str, ...]
    event_id: Optional[str] = None
    edu_type: Optional[str] = None


def federation_outbox_stream(
    store: FederationOutboxStore,
    *,
    current_token: Optional[Callable[[], int]] = None,
    clock: Optional[Clock] = None,
    on_rows: Optional[Callable[[], None]] = None,
) -> ReplicationStream[FederationOutboxRow]:
    """The entry; the sender worker passes ``on_rows`` (its ``notify_outbox``) and a clock."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[FederationOutboxRow]:
        entries = await store.get_entries(from_token, to_token, limit)
        rows = [(e.stream_id, FederationOutboxRow(e.destinations, e.event_id,
                                                  None if e.edu is None else str(e.edu.get("edu_type"))))
                for e in entries]
        return page_from_rows(rows, to_token, limit, len(entries))

    def invalidate(rows: Sequence[FederationOutboxRow]) -> None:
        # Runs before the position advances: look at the table once it has.
        if on_rows is not None and clock is not None:
            clock.call_later(0, on_rows)

    return ReplicationStream(
        name=FEDERATION_OUTBOX, row_type=FederationOutboxRow, get_updates=get_updates, current_token=current_token,
        invalidate=invalidate,
    )
