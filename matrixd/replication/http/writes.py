"""The write endpoints workers call on the master, and their arguments.

Each endpoint runs the master's own handler (so every check a client request
gets on the master, it gets here too) with the :class:`Requester` the worker
authenticated, and reports the positions of the streams it may have written:
the last id *allocated* on each (never less than the write's own id, so a
worker waiting for it cannot answer before its write is visible).

=================  ==================================================  ==========================
endpoint           arguments                                           streams reported
=================  ==================================================  ==========================
``send_event``     requester, room_id, type, content, state_key,       events
                   txn_id, redacts  -> ``{"event_id"}``
``typing``         requester, room_id, user_id, typing, timeout_ms     typing
``receipt``        requester, room_id, receipt_type, event_id,         receipts, account_data
                   thread_id
``read_markers``   requester, room_id, body                            receipts, account_data
``presence``       requester, user_id, presence, status_msg,           presence
                   has_status_msg
``presence_sync``  user_id, set_presence (a /sync started on a worker) presence
``account_data``   requester, op (set_global | set_room | add_tag |    account_data
                   remove_tag), user_id, room_id, data_type, tag,
                   content
``to_device_ack``  user_id, device_id, up_to (a /sync on a worker       (none: deletes only)
                   acknowledged to-device messages)
``federation_      origin, txn_id, body: an inbound ``/send`` a         events
transaction``      federation reader authenticated -> the answer
                   (``{"pdus": ...}``); idempotent per (origin,
                   txn_id) on the master as well
=================  ==================================================  ==========================
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import attrs

from matrixd.api.errors import Codes, MatrixError
from matrixd.federation.inbound.transactions import TransactionHandler
from matrixd.handlers.account_data import AccountDataHandler
from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.handlers.presence import PresenceHandler
from matrixd.handlers.read_markers import ReadMarkersHandler
from matrixd.handlers.receipts import ReceiptsHandler
from matrixd.handlers.rooms.send import EventSendHandler
from matrixd.handlers.typing import TypingHandler
from matrixd.replication.http.server import ReplicationEndpoints, WriteResult
from matrixd.types import JsonDict, Requester

SEND_EVENT = "send_event"
TYPING = "typing"
RECEIPT = "receipt"
READ_MARKERS = "read_markers"
PRESENCE = "presence"
PRESENCE_SYNC = "presence_sync"
ACCOUNT_DATA = "account_data"
TO_DEVICE_ACK = "to_device_ack"
FEDERATION_TRANSACTION = "federation_transaction"

ACCOUNT_DATA_OPS = frozenset({"set_global", "set_room", "add_tag", "remove_tag"})


# -- argument codecs -------------------------------------------------------------


def requester_to_json(requester: Requester) -> JsonDict:
    return {
        "user_id": requester.user_id,
        "device_id": requester.device_id,
        "access_token_id": requester.access_token_id,
        "is_guest": requester.is_guest,
        "app_service_id": requester.app_service_id,
        "shadow_banned": requester.shadow_banned,
    }


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, f"Bad internal request: {msg}", Codes.BAD_JSON)


def _str(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


def _opt_str(args: Mapping[str, Any], key: str) -> Optional[str]:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{key} must be a string or null")
    return value


def _opt_int(args: Mapping[str, Any], key: str) -> Optional[int]:
    value = args.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(f"{key} must be an integer or null")
    return value


def _bool(args: Mapping[str, Any], key: str) -> bool:
    value = args.get(key)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be a boolean")
    return value


def _obj(args: Mapping[str, Any], key: str) -> JsonDict:
    value = args.get(key)
    if not isinstance(value, dict):
        raise _bad(f"{key} must be an object")
    return value


def requester_from_json(args: Mapping[str, Any]) -> Requester:
    raw = args.get("requester")
    if not isinstance(raw, dict):
        raise _bad("requester must be an object")
    return Requester(
        user_id=_str(raw, "user_id"),
        device_id=_opt_str(raw, "device_id"),
        access_token_id=_opt_int(raw, "access_token_id"),
        is_guest=bool(raw.get("is_guest", False)),
        app_service_id=_opt_str(raw, "app_service_id"),
        shadow_banned=bool(raw.get("shadow_banned", False)),
    )


# -- the master's side ---------------------------------------------------------------


@attrs.frozen(slots=True)
class MasterWriteTargets:
    """The master's local handlers behind the endpoints, and each stream's last allocated id."""

    send: EventSendHandler
    typing: TypingHandler
    receipts: ReceiptsHandler
    read_markers: ReadMarkersHandler
    presence: PresenceHandler
    account_data: AccountDataHandler
    to_device: ToDeviceHandler
    #: stream name -> the last id allocated on it (``StreamIdGenerator.get_max_allocated``).
    positions: Mapping[str, Callable[[], int]]

    def report(self, *streams: str) -> dict[str, int]:
        return {name: self.positions[name]() for name in streams}


def register_write_endpoints(endpoints: ReplicationEndpoints, t: MasterWriteTargets) -> None:
    """Register every endpoint of the table in the module docstring."""

    async def send_event(args: JsonDict) -> WriteResult:
        event_id = await t.send.send_event(
            requester_from_json(args), _str(args, "room_id"), _str(args, "type"), _obj(args, "content"),
            state_key=_opt_str(args, "state_key"), txn_id=_opt_str(args, "txn_id"), redacts=_opt_str(args, "redacts"),
            origin_server_ts=_opt_int(args, "origin_server_ts"),
        )
        return WriteResult({"event_id": event_id}, t.report("events"))

    async def typing(args: JsonDict) -> WriteResult:
        await t.typing.set_typing(requester_from_json(args), _str(args, "room_id"), _str(args, "user_id"),
                                  _bool(args, "typing"), _opt_int(args, "timeout_ms"))
        return WriteResult({}, t.report("typing"))

    async def receipt(args: JsonDict) -> WriteResult:
        await t.receipts.post_receipt(requester_from_json(args), _str(args, "room_id"), _str(args, "receipt_type"),
                                      _str(args, "event_id"), args.get("thread_id"))
        return WriteResult({}, t.report("receipts", "account_data"))

    async def read_markers(args: JsonDict) -> WriteResult:
        await t.read_markers.set_read_markers(requester_from_json(args), _str(args, "room_id"), _obj(args, "body"))
        return WriteResult({}, t.report("receipts", "account_data"))

    async def presence(args: JsonDict) -> WriteResult:
        await t.presence.set_presence(requester_from_json(args), _str(args, "user_id"), _str(args, "presence"),
                                      _opt_str(args, "status_msg"), has_status_msg=_bool(args, "has_status_msg"))
        return WriteResult({}, t.report("presence"))

    async def presence_sync(args: JsonDict) -> WriteResult:
        # The same state change a /sync on the master makes when it starts.
        async with t.presence.user_syncing(_str(args, "user_id"), _str(args, "set_presence")):
            pass
        return WriteResult({}, t.report("presence"))

    async def account_data(args: JsonDict) -> WriteResult:
        requester = requester_from_json(args)
        op = _str(args, "op")
        user_id = _str(args, "user_id")
        if op == "set_global":
            await t.account_data.set_global(requester, user_id, _str(args, "data_type"), _obj(args, "content"))
        elif op == "set_room":
            await t.account_data.set_room(requester, user_id, _str(args, "room_id"), _str(args, "data_type"),
                                          _obj(args, "content"))
        elif op == "add_tag":
            await t.account_data.add_tag(requester, user_id, _str(args, "room_id"), _str(args, "tag"),
                                         _obj(args, "content"))
        elif op == "remove_tag":
            await t.account_data.remove_tag(requester, user_id, _str(args, "room_id"), _str(args, "tag"))
        else:
            raise _bad(f"op must be one of {', '.join(sorted(ACCOUNT_DATA_OPS))}")
        return WriteResult({}, t.report("account_data"))

    async def to_device_ack(args: JsonDict) -> WriteResult:
        up_to = _opt_int(args, "up_to")
        if up_to is None:
            raise _bad("up_to must be an integer")
        await t.to_device.ack(_str(args, "user_id"), _str(args, "device_id"), up_to)
        return WriteResult({}, {})

    endpoints.register(SEND_EVENT, send_event)
    endpoints.register(TYPING, typing)
    endpoints.register(RECEIPT, receipt)
    endpoints.register(READ_MARKERS, read_markers)
    endpoints.register(PRESENCE, presence)
    endpoints.register(PRESENCE_SYNC, presence_sync)
    endpoints.register(ACCOUNT_DATA, account_data)
    endpoints.register(TO_DEVICE_ACK, to_device_ack)


def register_federation_endpoint(endpoints: ReplicationEndpoints, transactions: TransactionHandler,
                                 positions: Mapping[str, Callable[[], int]]) -> None:
    """``federation_transaction``, once the master's inbound transaction handler exists."""

    async def federation_transaction(args: JsonDict) -> WriteResult:
        response = await transactions.on_transaction(_str(args, "origin"), _str(args, "txn_id"), _obj(args, "body"))
        return WriteResult(response, {name: position() for name, position in positions.items()})

    endpoints.register(FEDERATION_TRANSACTION, federation_transaction)
