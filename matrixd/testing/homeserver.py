"""A full-stack in-process homeserver for tests: the master's real components and
servlets on a fake reactor and an inline test database (SQLite or PostgreSQL,
per ``MATRIXD_TEST_DB``), driven through real HTTP parsing by ``make_request``.
"""

from __future__ import annotations

import secrets
from typing import Any, Mapping, Optional

import bcrypt
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from matrixd.app.listeners import build_json_resource
from matrixd.app.master import MasterComponents, build_master_components, build_servlet_groups
from matrixd.config import RootConfig
from matrixd.config.root import parse_config_dict
from matrixd.crypto.keys import generate_signing_key
from matrixd.http.request import MatrixSite
from matrixd.testing.database import make_test_database_sync
from matrixd.testing.http import FakeChannel, TestReactor, make_reactor, make_request, make_site
from matrixd.util.clock import Clock

# Relaxed limits so tests that register/log in/send often are not rate limited
# (tests of rate limiting override these).
TEST_CONFIG: dict[str, Any] = {
    "rc_message": {"per_second": 10000, "burst_count": 10000},
    "rc_registration": {"per_second": 10000, "burst_count": 10000},
    "rc_login": {
        "address": {"per_second": 10000, "burst_count": 10000},
        "account": {"per_second": 10000, "burst_count": 10000},
        "failed_attempts": {"per_second": 10000, "burst_count": 10000},
    },
    "rc_joins": {"local": {"per_second": 10000, "burst_count": 10000},
                 "remote": {"per_second": 10000, "burst_count": 10000}},
    "rc_joins_per_room": {"per_second": 10000, "burst_count": 10000},
    "rc_invites": {"per_room": {"per_second": 10000, "burst_count": 10000},
                   "per_user": {"per_second": 10000, "burst_count": 10000},
                   "per_issuer": {"per_second": 10000, "burst_count": 10000}},
    "rc_media_create": {"per_second": 10000, "burst_count": 10000},
    "rc_federation": {"sleep_limit": 10000, "reject_limit": 10000, "concurrent": 10000},
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "registration_shared_secret": "test_shared_secret",
    # Cheap hashing: tests register and log in a lot (the minimum bcrypt allows).
    "bcrypt_rounds": 4,
}


class TestHomeserver:
    """One server: ``request()`` talks to all its http resources at once."""

    def __init__(self, reactor: TestReactor, config: RootConfig, components: MasterComponents, site: MatrixSite,
                 testcase: TestCase) -> None:
        self.reactor = reactor
        self.config = config
        self.components = components
        self.site = site
        self._testcase = testcase

    @property
    def server_name(self) -> str:
        return self.config.server.server_name

    def request(self, method: str, path: str, content: Any = None, access_token: Optional[str] = None,
                headers: Optional[Mapping[str | bytes, str | bytes]] = None,
                await_result: bool = True) -> FakeChannel:
        return make_request(self.reactor, self.site, method, path, content=content, access_token=access_token,
                            headers=headers, await_result=await_result)

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)

    def run(self, coro: Any) -> Any:
        """Run a coroutine of the server's own API to completion (inline database, so synchronously)."""
        return self._testcase.successResultOf(defer.ensureDeferred(coro))

    def create_user(self, localpart: str, password: Optional[str] = None, *, admin: bool = False,
                    device_id: str = "TESTDEVICE") -> tuple[str, str]:
        """Create a user with a device and an access token directly in the stores; returns (user_id, token)."""
        user_id = f"@{localpart}:{self.server_name}"
        accounts = self.components.accounts
        pw_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() if password else None
        self.run(accounts.users.create_user(user_id, pw_hash, admin=admin))
        self.run(self.components.core.stores.profiles.create_profile(user_id, localpart))
        self.run(accounts.devices.store_device(user_id, device_id, None))
        token = "syt_" + secrets.token_urlsafe(24)
        self.run(accounts.tokens.add_access_token(user_id, device_id, token))
        return user_id, token

    def register_user(self, localpart: str, password: str, *, device_id: Optional[str] = None,
                      initial_device_display_name: Optional[str] = None) -> tuple[str, str]:
        """Register through the real ``POST /register`` (UIA with m.login.dummy); returns (user_id, token)."""
        body: dict[str, Any] = {"username": localpart, "password": password}
        if device_id is not None:
            body["device_id"] = device_id
        if initial_device_display_name is not None:
            body["initial_device_display_name"] = initial_device_display_name
        ch = self.request("POST", "/_matrix/client/v3/register", body)
        if ch.code != 401 or "session" not in ch.json_body:
            raise AssertionError(f"register {localpart}: expected a UIA 401, got {ch.code} {ch.json_body}")
        body["auth"] = {"type": "m.login.dummy", "session": ch.json_body["session"]}
        ch = self.request("POST", "/_matrix/client/v3/register", body)
        if ch.code != 200:
            raise AssertionError(f"register {localpart}: {ch.code} {ch.json_body}")
        return ch.json_body["user_id"], ch.json_body["access_token"]


def make_homeserver(testcase: TestCase, config: Optional[Mapping[str, Any]] = None,
                    server_name: str = "test") -> TestHomeserver:
    raw: dict[str, Any] = {"server_name": server_name, **TEST_CONFIG, **(config or {})}
    parsed = parse_config_dict(raw)
    reactor = make_reactor()
    reactor.advance(1_700_000_000)
    db = make_test_database_sync(testcase, reactor)
    clock = Clock(reactor)
    d = defer.ensureDeferred(build_master_components(parsed, reactor, clock, db, generate_signing_key("test")))
    components = testcase.successResultOf(d)
    groups = build_servlet_groups(parsed, components)
    resource = build_json_resource(sorted(groups), groups)
    site = make_site(reactor, resource)
    hs = TestHomeserver(reactor, parsed, components, site, testcase)
    # No real I/O in tests: outbound federation goes to an in-memory network on which only
    # this server exists (other servers are unreachable until a test adds them).
    from matrixd.testing.federation import install_federation_network

    install_federation_network(hs)
    return hs
