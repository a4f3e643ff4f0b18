"""An application service answering in memory, and helpers to configure a test server with one."""

from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import yaml
from twisted.trial.unittest import TestCase

from matrixd.appservice.api import AppServiceResponse, AppServiceUnreachable
from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.types import JsonDict

AS_TOKEN = "as_token_bridge"
HS_TOKEN = "hs_token_bridge"


@attrs.define
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str
    body: Optional[JsonDict]


Responder = Callable[[Recorded], Awaitable[Optional[tuple[int, Any]]]]


class FakeAppService:
    """The ``AppServiceTransport`` of a test server: records requests and answers them.

    ``responder`` may answer a request (status, JSON) or return None for the
    default (200 ``{}``); ``unreachable`` makes every request fail to connect;
    ``fail_transactions`` makes that many transaction PUTs answer 500 first.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.responder: Optional[Responder] = None
        self.unreachable: Optional[AppServiceUnreachable] = None
        self.fail_transactions = 0

    async def request(self, method: str, url: str, token: str, body: Optional[JsonDict],
                      timeout: float) -> AppServiceResponse:
        parts = urlsplit(url)
        rec = Recorded(method, unquote(parts.path), parse_qs(parts.query), token, body)
        self.requests.append(rec)
        if self.unreachable is not None:
            raise self.unreachable
        if method == "PUT" and "/transactions/" in rec.path and self.fail_transactions > 0:
            self.fail_transactions -= 1
            return AppServiceResponse(500, b'{"errcode": "M_UNKNOWN"}')
        answer = await self.responder(rec) if self.responder is not None else None
        code, payload = answer if answer is not None else (200, {})
        return AppServiceResponse(code, json.dumps(payload).encode())

    def transactions(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PUT" and "/transactions/" in r.path]

    def transaction_events(self) -> list[JsonDict]:
        return [e for r in self.transactions() for e in (r.body or {}).get("events", [])]


def registration(**overrides: Any) -> dict[str, Any]:
    """A registration for a bridge owning ``@_bridge_*`` and ``#_bridge_*`` (exclusively)."""
    reg: dict[str, Any] = {
        "id": "bridge",
        "url": "http://127.0.0.1:9999",
        "as_token": AS_TOKEN,
        "hs_token": HS_TOKEN,
        "sender_localpart": "bridgebot",
        "namespaces": {
            "users": [{"regex": "@_bridge_.*:test", "exclusive": True}],
            "aliases": [{"regex": "#_bridge_.*:test", "exclusive": True}],
            "rooms": [],
        },
        "rate_limited": False,
        "protocols": ["gitter"],
    }
    reg.update(overrides)
    return reg


def write_registration(testcase: TestCase, reg: Any, name: str = "reg.yaml") -> str:
    d = testcase.mktemp()
    os.makedirs(d)
    path = os.path.join(d, name)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(reg, f)
    return path


def make_homeserver_with_service(testcase: TestCase, *regs: dict[str, Any],
                                 config: Optional[dict[str, Any]] = None) -> tuple[TestHomeserver, FakeAppService]:
    """A test server with the given registrations (default: :func:`registration`) and an in-memory service."""
    regs = regs or (registration(),)
    paths = [write_registration(testcase, r, f"reg{i}.yaml") for i, r in enumerate(regs)]
    hs = make_homeserver(testcase, {"app_service_config_files": paths, **(config or {})})
    fake = FakeAppService()
    hs.components.appservice.api.use_transport(fake)
    return hs, fake


def as_request(hs: TestHomeserver, method: str, path: str, content: Any = None, *, user_id: Optional[str] = None,
               token: str = AS_TOKEN) -> Any:
    """A client API request authenticated with the service's as_token (optionally masquerading)."""
    if user_id is not None:
        path += ("&" if "?" in path else "?") + "user_id=" + user_id.replace("@", "%40").replace(":", "%3A")
    return hs.request(method, path, content, access_token=token)
