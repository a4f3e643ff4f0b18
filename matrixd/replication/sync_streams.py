"""Registry entries of the sync area's streams: receipts, typing, account_data, presence, push_rules.

Like :mod:`matrixd.replication.core_streams`, each function builds one entry
from the stores of the process it runs in; ``current_token`` is given only on
the master, which writes every one of these streams.

The database-backed streams (receipts, account_data, presence, push_rules)
page their rows from the tables by stream id, so a worker catches up from
its own database connection.  ``typing`` lives only in the master's memory:
the master reads its :class:`TypingHandler`, a worker fetches pages from the
master over the internal HTTP API and applies each row to its own replica
of the typing lists (in ``invalidate``, before the position advances and
``/sync`` is woken).  Its row carries its position because the replica keeps
a position per room.

None of these streams has caches to drop: readers query the tables up to the
position the notifier announces, so the position is the invalidation.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Optional, Sequence

import attrs

from matrixd.handlers.typing import TypingHandler
from matrixd.replication.streams import ReplicationStream, StreamPage, page_from_rows
from matrixd.storage.account_data import AccountDataStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.presence import PresenceStore
from matrixd.storage.push_rules import PushRulesStore
from matrixd.storage.receipts import ReceiptStore
from matrixd.streams.token import StreamName

RECEIPTS = "receipts"
TYPING = "typing"
ACCOUNT_DATA = "account_data"
PRESENCE = "presence"
PUSH_RULES = "push_rules"
SYNC_STREAM_NAMES = (RECEIPTS, TYPING, ACCOUNT_DATA, PRESENCE, PUSH_RULES)


@attrs.frozen(slots=True)
class ReceiptsStreamRow:
    """A receipt moved (``thread_id`` None: unthreaded)."""

    room_id: str
    receipt_type: str
    user_id: str
    thread_id: Optional[str]
    event_id: str


@attrs.frozen(slots=True)
class TypingStreamRow:
    """A room's whole typing list as of ``position`` (the row's token)."""

    position: int
    room_id: str
    user_ids: tuple[str, ...]


@attrs.frozen(slots=True)
class AccountDataStreamRow:
    """A user's account data entry changed (``room_id`` None: global)."""

    user_id: str
    room_id: Optional[str]
    data_type: str


@attrs.frozen(slots=True)
class PresenceStreamRow:
    """A user's presence changed; ``rooms`` are the rooms whose members see it (wake-up keys)."""

    user_id: str
    state: str
    rooms: tuple[str, ...] = ()


@attrs.frozen(slots=True)
class PushRulesStreamRow:
    """A user's push rules changed."""

    user_id: str


Token = Optional[Callable[[], int]]


def receipts_stream(store: ReceiptStore, *, current_token: Token = None) -> ReplicationStream[ReceiptsStreamRow]:
    """``receipts``: feeds the sync token's receipts position; wakes the receipt's room."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[ReceiptsStreamRow]:
        rows = await store.get_updates(from_token, to_token, limit)
        out = [(r.stream_id, ReceiptsStreamRow(r.room_id, r.receipt_type, r.user_id, r.thread_id, r.event_id))
               for r in rows]
        return page_from_rows(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=RECEIPTS, row_type=ReceiptsStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=lambda row: (row.room_id,), notifier_stream=StreamName.RECEIPTS,
    )


def account_data_stream(
    store: AccountDataStore, *, current_token: Token = None
) -> ReplicationStream[AccountDataStreamRow]:
    """``account_data`` (global, per room, tags, read markers): wakes the user."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[AccountDataStreamRow]:
        rows = await store.get_updates(from_token, to_token, limit)
        out = [(r.stream_id, AccountDataStreamRow(r.user_id, r.room_id, r.data_type)) for r in rows]
        return page_from_rows(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=ACCOUNT_DATA, row_type=AccountDataStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=lambda row: (row.user_id,), notifier_stream=StreamName.ACCOUNT_DATA,
    )


def presence_stream(
    store: PresenceStore, current_state: CurrentStateStore, *, current_token: Token = None
) -> ReplicationStream[PresenceStreamRow]:
    """``presence``: wakes the user and everyone sharing a room with them (through the rooms)."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[PresenceStreamRow]:
        states = await store.get_updates(from_token, to_token, limit)
        out = []
        for s in states:
            rooms = await current_state.get_rooms_for_user(s.user_id)
            out.append((s.stream_id, PresenceStreamRow(s.user_id, s.state, tuple(sorted(rooms)))))
        return page_from_rows(out, to_token, limit, len(states))

    def wake_keys(row: PresenceStreamRow) -> Iterable[str]:
        return (row.user_id, *row.rooms)

    return ReplicationStream(
        name=PRESENCE, row_type=PresenceStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=wake_keys, notifier_stream=StreamName.PRESENCE,
    )


def push_rules_stream(store: PushRulesStore, *, current_token: Token = None) -> ReplicationStream[PushRulesStreamRow]:
    """``push_rules``: wakes the user whose rules changed."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[PushRulesStreamRow]:
        rows = await store.get_updates(from_token, to_token, limit)
        out = [(r.stream_id, PushRulesStreamRow(r.user_id)) for r in rows]
        return page_from_rows(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=PUSH_RULES, row_type=PushRulesStreamRow, get_updates=get_updates, current_token=current_token,
        wake_keys=lambda row: (row.user_id,), notifier_stream=StreamName.PUSH_RULES,
    )


#: How a worker fetches a page of the typing stream from the master: (from, to, limit) -> page.
TypingPageFetcher = Callable[[int, int, int], Awaitable[StreamPage[TypingStreamRow]]]


def typing_stream_for_master(typing: TypingHandler) -> ReplicationStream[TypingStreamRow]:
    """``typing`` on the master: rows read from the handler's memory (its lists are the truth)."""

    async def get_updates(from_token: int, to_token: int, limit: int) -> StreamPage[TypingStreamRow]:
        rows = typing.get_updates(from_token, to_token, limit)
        out = [(r.position, TypingStreamRow(r.position, r.room_id, r.user_ids)) for r in rows]
        return page_from_rows(out, to_token, limit, len(rows))

    return ReplicationStream(
        name=TYPING, row_type=TypingStreamRow, get_updates=get_updates, current_token=typing.get_current_token,
        wake_keys=lambda row: (row.room_id,), notifier_stream=StreamName.TYPING, in_memory=True,
    )


def typing_stream_for_worker(replica: TypingHandler, fetch: TypingPageFetcher) -> ReplicationStream[TypingStreamRow]:
    """``typing`` on a worker: rows update ``replica``; catch-up pages come from the master."""

    def apply(rows: Sequence[TypingStreamRow]) -> None:
        for row in rows:
            replica.apply_replicated(row.position, row.room_id, row.user_ids)

    return ReplicationStream(
        name=TYPING, row_type=TypingStreamRow, get_updates=fetch, invalidate=apply,
        wake_keys=lambda row: (row.room_id,), notifier_stream=StreamName.TYPING, in_memory=True,
        reset=replica.reset_replicated,
    )


def sync_streams_for_master(
    *,
    receipts: ReceiptStore,
    account_data: AccountDataStore,
    presence: PresenceStore,
    push_rules: PushRulesStore,
    current_state: CurrentStateStore,
    typing: TypingHandler,
) -> list[ReplicationStream[Any]]:
    """The five entries as the master (their writer) registers them."""
    return [
        receipts_stream(receipts, current_token=receipts.get_current_token),
        typing_stream_for_master(typing),
        account_data_stream(account_data, current_token=account_data.get_current_token),
        presence_stream(presence, current_state, current_token=presence.get_current_token),
        push_rules_stream(push_rules, current_token=push_rules.get_current_token),
    ]


def sync_streams_for_worker(
    *,
    receipts: ReceiptStore,
    account_data: AccountDataStore,
    presence: PresenceStore,
    push_rules: PushRulesStore,
    current_state: CurrentStateStore,
    typing: TypingHandler,
    fetch_typing: TypingPageFetcher,
) -> list[ReplicationStream[Any]]:
    """The five entries as a reader registers them."""
    return [
        receipts_stream(receipts),
        typing_stream_for_worker(typing, fetch_typing),
        account_data_stream(account_data),
        presence_stream(presence, current_state),
        push_rules_stream(push_rules),
    ]
