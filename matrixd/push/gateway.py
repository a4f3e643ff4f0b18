"""Talking to push gateways: the ``/_matrix/push/v1/notify`` body and an HTTP client for it."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any, Optional, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.web.client import FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from matrixd.events.event import Event
from matrixd.http.tls import outbound_agent
from matrixd.push.evaluator import Actions
from matrixd.storage.pushers import Pusher
from matrixd.types import JsonDict

NOTIFY_PATH = "/_matrix/push/v1/notify"


class PushGatewayClient(Protocol):
    """POSTs JSON to a gateway: ``(status code, parsed JSON body or None)``; raises on transport errors."""

    async def post_json(self, url: str, body: JsonDict) -> tuple[int, Any]: ...


class HttpPushGatewayClient:
    """:class:`PushGatewayClient` over Twisted's ``Agent`` on the injected reactor."""

    def __init__(self, reactor: Any, timeout: float = 30.0, agent: Optional[Any] = None) -> None:
        self._reactor: IReactorTime = reactor
        self._agent = agent if agent is not None else outbound_agent(reactor, connect_timeout=timeout)
        self._timeout = timeout

    async def post_json(self, url: str, body: JsonDict) -> tuple[int, Any]:
        payload = json.dumps(body).encode("utf-8")
        d = self._agent.request(
            b"POST", url.encode("utf-8"),
            Headers({b"Content-Type": [b"application/json"], b"User-Agent": [b"matrixd"]}),
            FileBodyProducer(BytesIO(payload)),
        )
        d.addTimeout(self._timeout, self._reactor)
        response = await d
        raw = await readBody(response)
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            parsed = None
        return int(response.code), parsed


def tweaks_of(actions: Actions) -> JsonDict:
    """``set_tweak`` actions as the gateway's ``tweaks`` (a highlight only when true)."""
    tweaks: JsonDict = {}
    for action in actions.actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            value = action.get("value", True if name == "highlight" else None)
            if name == "highlight" and value is not True:
                continue
            tweaks[name] = value
    return tweaks


def build_notification(
    pusher: Pusher,
    event: Event,
    actions: Actions,
    unread: int,
    *,
    sender_display_name: Optional[str] = None,
    room_name: Optional[str] = None,
) -> JsonDict:
    """The notify body for one pusher: ``event_id_only`` or the full format (``data.format``)."""
    tweaks = tweaks_of(actions)
    device_data = {k: v for k, v in pusher.data.items() if k != "url"}
    device: JsonDict = {
        "app_id": pusher.app_id,
        "pushkey": pusher.pushkey,
        "pushkey_ts": pusher.created_ts // 1000,
        "data": device_data,
        "tweaks": tweaks,
    }
    notification: JsonDict = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "counts": {"unread": unread},
        "devices": [device],
        "prio": "high" if ("sound" in tweaks or tweaks.get("highlight")) else "low",
    }
    if pusher.data.get("format") != "event_id_only":
        notification["type"] = event.type
        notification["sender"] = event.sender
        notification["content"] = event.content
        if sender_display_name:
            notification["sender_display_name"] = sender_display_name
        if room_name:
            notification["room_name"] = room_name
        if event.type == "m.room.member" and event.state_key is not None:
            notification["user_is_target"] = event.state_key == pusher.user_id
            notification["membership"] = event.membership
    return {"notification": notification}
