"""Wiring of the room core of the master process: stores and handlers, built once with explicit arguments.

Roles (master, workers) compose what they need from here; tests build the same
object on an inline database and a memory reactor.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs
from signedjson.types import SigningKey

from matrixd.events.event import JsonDict
from matrixd.events.redaction import prune_event_dict
from matrixd.events.room_versions import DEFAULT_ROOM_VERSION, RoomVersion
from matrixd.handlers.events.creation import EventCreationHandler
from matrixd.handlers.events.persister import EventPersister
from matrixd.handlers.events.state_calc import StateCalculator
from matrixd.handlers.ratelimit import RateLimitConfig, Ratelimiter
from matrixd.handlers.rooms.create import RoomCreationHandler
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.storage.aliases import AliasStore
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Database
from matrixd.storage.events import EventStore
from matrixd.storage.events_writer import EventWriter, create_event_stream_generators
from matrixd.storage.forgotten import ForgottenRoomsStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.rooms import RoomStore
from matrixd.storage.state import StateGroupStore
from matrixd.storage.streams import StreamIdGenerator
from matrixd.storage.txn_ids import TxnIdStore
from matrixd.streams.notifier import Notifier
from matrixd.streams.token import StreamName
from matrixd.util.clock import Clock
from matrixd.util.linearizer import Linearizer


def _prune(pdu: JsonDict, room_version: RoomVersion) -> JsonDict:
    return prune_event_dict(room_version, pdu)


@attrs.define
class CoreStores:
    events: EventStore
    state: StateGroupStore
    current_state: CurrentStateStore
    rooms: RoomStore
    aliases: AliasStore
    profiles: ProfileStore
    forgotten: ForgottenRoomsStore
    txn_ids: TxnIdStore
    stream_ids: StreamIdGenerator
    backfill_ids: StreamIdGenerator
    writer: EventWriter
    partial_state: PartialStateStore  # rooms joined with partial state (omit_members)


@attrs.define
class RoomCore:
    clock: Clock
    server_name: str
    signing_key: SigningKey
    db: Database
    notifier: Notifier
    stores: CoreStores
    state_calc: StateCalculator
    persister: EventPersister
    creation: EventCreationHandler
    room_creation: RoomCreationHandler
    membership: RoomMemberHandler
    send: EventSendHandler


async def build_room_core(
    *,
    clock: Clock,
    db: Database,
    server_name: str,
    signing_key: SigningKey,
    default_room_version: RoomVersion = DEFAULT_ROOM_VERSION,
    rc_message: Optional[Mapping[str, Any]] = None,
    notifier: Optional[Notifier] = None,
    writes_events: bool = True,
) -> RoomCore:
    """The room core of a process; ``writes_events`` is False on workers (see ``EventWriter``'s ``writes_here``)."""
    events = EventStore(db, clock, prune_event_dict=_prune)
    state = StateGroupStore(db, clock)
    current_state = CurrentStateStore(db, clock, events)
    stream_ids, backfill_ids = await create_event_stream_generators(db)
    writer = EventWriter(
        db, clock, server_name=server_name, stream_ids=stream_ids, backfill_ids=backfill_ids,
        event_store=events, current_state_store=current_state, writes_here=writes_events,
    )
    stores = CoreStores(
        events=events, state=state, current_state=current_state, rooms=RoomStore(db, clock),
        aliases=AliasStore(db, clock), profiles=ProfileStore(db, clock), forgotten=ForgottenRoomsStore(db, clock),
        txn_ids=TxnIdStore(db, clock), stream_ids=stream_ids, backfill_ids=backfill_ids, writer=writer,
        partial_state=PartialStateStore(db, clock),
    )
    if notifier is None:
        notifier = Notifier(clock)
    notifier.set_position(StreamName.EVENTS, stream_ids.get_current_token())

    state_calc = StateCalculator(events, state)
    persister = EventPersister(
        writer=writer, state_store=state, current_state=current_state, stream_ids=stream_ids, notifier=notifier
    )
    creation = EventCreationHandler(
        clock=clock, server_name=server_name, signing_key=signing_key, event_store=events, rooms=stores.rooms,
        state_calc=state_calc, persister=persister, room_lock=Linearizer("room"),
    )
    room_creation = RoomCreationHandler(
        server_name=server_name, default_room_version=default_room_version, rooms=stores.rooms,
        aliases=stores.aliases, profiles=stores.profiles, creation=creation,
    )
    membership = RoomMemberHandler(
        server_name=server_name, rooms=stores.rooms, current_state=current_state, profiles=stores.profiles,
        forgotten=stores.forgotten, creation=creation,
    )
    room_creation.set_remote_inviter(membership)  # createRoom's invitees on other servers
    rc = rc_message or {"per_second": 0.2, "burst_count": 10}
    send = EventSendHandler(
        rooms=stores.rooms, events=events, current_state=current_state, txn_ids=stores.txn_ids, creation=creation,
        message_ratelimiter=Ratelimiter(clock, RateLimitConfig(float(rc["per_second"]), float(rc["burst_count"]))),
    )
    return RoomCore(
        clock=clock, server_name=server_name, signing_key=signing_key, db=db, notifier=notifier, stores=stores,
        state_calc=state_calc, persister=persister, creation=creation, room_creation=room_creation,
        membership=membership, send=send,
    )
