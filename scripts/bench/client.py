"""A minimal Matrix client-server driver on asyncio + aiohttp.

Just what the benchmark needs, and cheap per request so the client is never the
bottleneck: one shared connection pool, JSON in and out, and registration
through the shared-secret admin API (``/_synapse/admin/v1/register``: a nonce,
then an HMAC-SHA1 of nonce, user, password and admin flag), which both
matrixd and Synapse serve.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from typing import Any, Mapping, Optional

import aiohttp

_txn_counter = itertools.count(1)


class HttpError(Exception):
    """A non-2xx answer; carries the status and the body for the report."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


def new_session(max_connections: int = 0) -> aiohttp.ClientSession:
    """A session whose pool never queues requests (0 = unlimited connections)."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class Homeserver:
    """One server under test: its base URL and registration secret."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, shared_secret: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.shared_secret = shared_secret

    async def request(self, method: str, path: str, body: Any = None, *, token: Optional[str] = None,
                      params: Optional[Mapping[str, str]] = None, timeout: float = 120.0) -> Any:
        """Send a JSON request and return the decoded JSON answer; raises HttpError on non-2xx."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base_url + path, data=data, headers=headers, params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise HttpError(method, path, resp.status, raw.decode(errors="replace"))
            return json.loads(raw) if raw else {}

    async def register(self, username: str, password: str, *, admin: bool = False) -> "User":
        """Create a user through the shared-secret admin registration API."""
        nonce = (await self.request("GET", "/_synapse/admin/v1/register"))["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode() + b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin,
                "mac": mac.hexdigest()}
        result = await self.request("POST", "/_synapse/admin/v1/register", body)
        return User(self, result["user_id"], result["access_token"])


class User:
    """A logged-in user: typed helpers for the calls the scenarios make."""

    def __init__(self, hs: Homeserver, user_id: str, token: str) -> None:
        self.hs = hs
        self.user_id = user_id
        self.token = token

    async def call(self, method: str, path: str, body: Any = None, *,
                   params: Optional[Mapping[str, str]] = None, timeout: float = 120.0) -> Any:
        return await self.hs.request(method, path, body, token=self.token, params=params, timeout=timeout)

    async def create_room(self, body: Optional[Mapping[str, Any]] = None) -> str:
        result = await self.call("POST", "/_matrix/client/v3/createRoom", dict(body or {}))
        room_id: str = result["room_id"]
        return room_id

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    async def send_message(self, room_id: str, body: str) -> str:
        txn = f"b{time.time_ns()}.{next(_txn_counter)}"
        result = await self.call(
            "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body},
        )
        event_id: str = result["event_id"]
        return event_id

    async def sync(self, since: Optional[str] = None, timeout_ms: int = 0,
                   filter_json: Optional[str] = None, request_timeout: float = 300.0) -> Any:
        params = {"timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        if filter_json is not None:
            params["filter"] = filter_json
        return await self.call("GET", "/_matrix/client/v3/sync", params=params, timeout=request_timeout)

    async def sync_raw(self, since: Optional[str], timeout_ms: int,
                       filter_json: Optional[str] = None) -> tuple[bytes, float]:
        """``/sync`` returning the undecoded body and the time it finished arriving.

        The fan-out scenario stamps arrival before decoding, so a burst of
        simultaneous answers does not charge one client's JSON parsing to the next.
        """
        params = {"timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        if filter_json is not None:
            params["filter"] = filter_json
        async with self.hs.session.get(
            self.hs.base_url + "/_matrix/client/v3/sync", params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000 + 120),
        ) as resp:
            raw = await resp.read()
            arrived = time.perf_counter()
            if resp.status >= 300:
                raise HttpError("GET", "/sync", resp.status, raw.decode(errors="replace"))
            return raw, arrived

    async def messages(self, room_id: str, from_token: Optional[str], *, direction: str = "b",
                       limit: int = 100) -> Any:
        params = {"dir": direction, "limit": str(limit)}
        if from_token is not None:
            params["from"] = from_token
        return await self.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", params=params)
