"""Config loading: defaults, a full good config, and an error naming each bad key."""

from __future__ import annotations

import os
from typing import Any

import yaml
from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.config import load_config, parse_config_dict
from matrixd.config._reader import parse_duration_ms, parse_size
from matrixd.config.ratelimiting import RatelimitConfig

GOOD_CONFIG: dict[str, Any] = {
    "server_name": "example.org",
    "public_baseurl": "https://matrix.example.org",
    "serve_server_wellknown": True,
    "default_room_version": "11",
    "signing_key_path": "/data/example.org.signing.key",
    "macaroon_secret_key": "m",
    "form_secret": "f",
    "listeners": [
        {
            "port": 8008,
            "bind_addresses": ["127.0.0.1", "::1"],
            "type": "http",
            "tls": False,
            "x_forwarded": True,
            "resources": [{"names": ["client", "federation"], "compress": False}, {"names": ["media"]}],
        },
        {"port": 9000, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
    ],
    "database": {"name": "psycopg2", "args": {"user": "u", "dbname": "d", "cp_min": 5, "cp_max": 10}},
    "registration_shared_secret": "shh",
    "enable_registration": True,
    "registration_requires_token": True,
    "allow_guest_access": True,
    "password_config": {"enabled": True, "policy": {"enabled": True, "minimum_length": 12, "require_digit": True}},
    "session_lifetime": "24h",
    "refresh_token_lifetime": "30d",
    "refreshable_access_token_lifetime": "5m",
    "rc_message": {"per_second": 1, "burst_count": 20},
    "rc_login": {"address": {"per_second": 0.5, "burst_count": 3}, "failed_attempts": {"per_second": 0.1}},
    "rc_joins": {"remote": {"per_second": 0.5, "burst_count": 4}},
    "rc_federation": {"window_size": "2s", "concurrent": 5},
    "media_store_path": "/data/media",
    "max_upload_size": "100M",
    "max_image_pixels": "64M",
    "url_preview_enabled": True,
    "url_preview_ip_range_blacklist": ["10.0.0.0/8"],
    "thumbnail_sizes": [{"width": 64, "height": 64, "method": "crop"}],
    "turn_uris": ["turn:turn.example.org:3478?transport=udp"],
    "turn_shared_secret": "turnsecret",
    "turn_user_lifetime": "2h",
    "turn_allow_guests": False,
    "user_directory": {"enabled": True, "search_all_users": True},
    "presence": {"enabled": False},
    "enable_metrics": True,
    "report_stats": False,
}


def _with(**changes: Any) -> dict[str, Any]:
    config = dict(GOOD_CONFIG)
    for key, value in changes.items():
        if value is _DELETE:
            config.pop(key, None)
        else:
            config[key] = value
    return config


_DELETE = object()


class GoodConfigTestCase(unittest.TestCase):
    def test_minimal_config_uses_defaults(self) -> None:
        """Only server_name is required; everything else has a documented default."""
        config = parse_config_dict({"server_name": "test"})
        self.assertEqual(config.server.public_baseurl, "https://test/")
        self.assertEqual(config.server.default_room_version, "12")
        self.assertEqual(config.database.as_engine_config(), {"name": "sqlite3", "args": {"database": "homeserver.db"}})
        self.assertEqual(config.listeners.listeners, ())
        self.assertFalse(config.registration.enable_registration)
        self.assertEqual(config.media.max_upload_size, 50 * 1024 * 1024)
        self.assertEqual(config.ratelimiting.message.per_second, 0.2)
        self.assertEqual(config.voip.turn_user_lifetime_ms, 3_600_000)
        self.assertEqual(config.ignored_keys, ())

    def test_full_config_is_parsed(self) -> None:
        """Every supported key of a full config reaches its typed field."""
        config = parse_config_dict(GOOD_CONFIG)
        self.assertEqual(config.server.public_baseurl, "https://matrix.example.org/")
        self.assertEqual(config.server.default_room_version, "11")
        self.assertTrue(config.server.serve_server_wellknown)
        self.assertFalse(config.server.presence_enabled)
        self.assertTrue(config.server.user_directory.search_all_users)
        http, metrics = config.listeners.listeners
        self.assertEqual(http.bind_addresses, ("127.0.0.1", "::1"))
        self.assertEqual(http.resource_names, frozenset({"client", "federation", "media"}))
        self.assertTrue(http.x_forwarded)
        self.assertEqual(metrics.type, "metrics")
        self.assertEqual(config.database.name, "psycopg2")
        self.assertEqual(config.database.args["cp_max"], 10)
        reg = config.registration
        self.assertTrue(reg.enable_registration and reg.registration_requires_token and reg.allow_guest_access)
        self.assertEqual(reg.password.minimum_length, 12)
        self.assertTrue(reg.password.require_digit)
        self.assertEqual(reg.session_lifetime_ms, 24 * 3_600_000)
        self.assertEqual(reg.refresh_token_lifetime_ms, 30 * 86_400_000)
        self.assertEqual(reg.refreshable_access_token_lifetime_ms, 5 * 60_000)
        rl = config.ratelimiting
        self.assertEqual((rl.message.per_second, rl.message.burst_count), (1.0, 20.0))
        self.assertEqual((rl.login_address.per_second, rl.login_address.burst_count), (0.5, 3.0))
        # a partly given bucket keeps the default for the rest
        self.assertEqual((rl.login_failed_attempts.per_second, rl.login_failed_attempts.burst_count), (0.1, 5.0))
        self.assertEqual(rl.login_account, RatelimitConfig().login_account)
        self.assertEqual(rl.joins_remote.burst_count, 4.0)
        self.assertEqual((rl.federation.window_size_ms, rl.federation.concurrent), (2000, 5))
        media = config.media
        self.assertEqual(media.max_upload_size, 100 * 1024 * 1024)
        self.assertEqual(media.max_image_pixels, 64 * 1024 * 1024)
        self.assertEqual(media.url_preview_ip_range_blacklist, ("10.0.0.0/8",))
        self.assertEqual([(t.width, t.height, t.method) for t in media.thumbnail_sizes], [(64, 64, "crop")])
        self.assertEqual(config.voip.turn_user_lifetime_ms, 2 * 3_600_000)
        self.assertFalse(config.voip.turn_allow_guests)
        self.assertTrue(config.metrics.enable_metrics)

    def test_password_policy_ignored_when_disabled(self) -> None:
        """Policy rules only apply when password_config.policy.enabled is true."""
        config = parse_config_dict(
            {"server_name": "t", "password_config": {"policy": {"enabled": False, "minimum_length": 20}}}
        )
        self.assertEqual(config.registration.password.minimum_length, 0)

    def test_numeric_room_version_is_accepted(self) -> None:
        """An unquoted YAML room version (a number) is read as its string id."""
        self.assertEqual(parse_config_dict({"server_name": "t", "default_room_version": 10}).server.default_room_version, "10")

    def test_destination_retry(self) -> None:
        """Synapse's federation.destination_* keys set the outbound retry schedule."""
        raw = _with(federation={"destination_min_retry_interval": "1m", "destination_retry_multiplier": 3,
                                "destination_max_retry_interval": "1w"})
        retry = parse_config_dict(raw).federation.destination_retry
        self.assertEqual((retry.min_interval_ms, retry.multiplier, retry.max_interval_ms),
                         (60_000, 3.0, 7 * 86_400_000))
        default = parse_config_dict(GOOD_CONFIG).federation.destination_retry
        self.assertEqual((default.min_interval_ms, default.max_interval_ms), (10_000, 86_400_000))

    def test_cache_factors(self) -> None:
        """Synapse's caches.global_factor and per_cache_factors keys, per-cache winning."""
        config = parse_config_dict(_with(caches={"global_factor": 0.5, "per_cache_factors": {"events": 2}}))
        self.assertEqual(config.caches.factor_for("events"), 2.0)
        self.assertEqual(config.caches.factor_for("users"), 0.5)
        self.assertEqual(parse_config_dict(GOOD_CONFIG).caches.factor_for("events"), 1.0)

    def test_unknown_keys_are_reported_not_fatal(self) -> None:
        """Unknown top-level keys (typos) are listed in ignored_keys."""
        config = parse_config_dict({"server_name": "t", "enable_registation": True})
        self.assertEqual(config.ignored_keys, ("enable_registation",))

    def test_sizes_and_durations(self) -> None:
        """Sizes take K/M/G/T suffixes (powers of 1024); durations take ms..y suffixes."""
        self.assertEqual(parse_size(1024, "k"), 1024)
        self.assertEqual(parse_size("512K", "k"), 512 * 1024)
        self.assertEqual(parse_size("50M", "k"), 50 * 1024**2)
        self.assertEqual(parse_size("1g", "k"), 1024**3)
        self.assertEqual(parse_size("10MB", "k"), 10 * 1024**2)
        self.assertEqual(parse_duration_ms(500, "k"), 500)
        self.assertEqual(parse_duration_ms("30s", "k"), 30_000)
        self.assertEqual(parse_duration_ms("1w", "k"), 7 * 86_400_000)
        self.assertEqual(parse_duration_ms("250", "k"), 250)
        for bad in ("50X", "-1", "M", True, 1.5, []):
            with self.assertRaises(ConfigError):
                parse_size(bad, "k")
        for bad in ("1 fortnight", "-5s", True, "h"):
            with self.assertRaises(ConfigError):
                parse_duration_ms(bad, "k")


class BadConfigTestCase(unittest.TestCase):
    """Each bad value raises ConfigError whose key names the setting."""

    def assert_bad(self, raw: Any, key: str, *fragments: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            parse_config_dict(raw)
        self.assertEqual(cm.exception.key, key, str(cm.exception))
        self.assertIn(repr(key), str(cm.exception))
        for fragment in fragments:
            self.assertIn(fragment, cm.exception.msg)

    def test_top_level_must_be_mapping(self) -> None:
        """A YAML list or scalar is not a config."""
        self.assert_bad(["server_name"], "(file)")

    def test_server_keys(self) -> None:
        """server_name, public_baseurl and default_room_version are checked."""
        self.assert_bad(_with(server_name=_DELETE), "server_name", "required")
        self.assert_bad(_with(server_name=""), "server_name", "empty")
        self.assert_bad(_with(server_name=5), "server_name", "string")
        self.assert_bad(_with(server_name="bad name!"), "server_name", "not a valid server name")
        self.assert_bad(_with(public_baseurl="ftp://x/"), "public_baseurl", "http")
        self.assert_bad(_with(public_baseurl="matrix.example.org"), "public_baseurl")
        self.assert_bad(_with(public_baseurl="https://x/?a=1"), "public_baseurl", "query")
        self.assert_bad(_with(default_room_version="99"), "default_room_version", "'99'")
        self.assert_bad(_with(serve_server_wellknown="yes"), "serve_server_wellknown", "true or false")
        self.assert_bad(_with(presence={"enabled": 1}), "presence.enabled")
        self.assert_bad(_with(presence=[]), "presence", "mapping")
        self.assert_bad(_with(user_directory={"search_all_users": "no"}), "user_directory.search_all_users")
        self.assert_bad(_with(max_request_body_size="big"), "max_request_body_size", "size")

    def test_destination_retry_keys(self) -> None:
        """federation.destination_* retry settings are durations and a multiplier >= 1."""
        self.assert_bad(_with(federation={"destination_min_retry_interval": "0s"}),
                        "federation.destination_min_retry_interval", "at least 1s")
        self.assert_bad(_with(federation={"destination_min_retry_interval": "1h",
                                          "destination_max_retry_interval": "1m"}),
                        "federation.destination_max_retry_interval", "shorter")
        self.assert_bad(_with(federation={"destination_retry_multiplier": 0.5}),
                        "federation.destination_retry_multiplier", "at least 1")

    def test_cache_factor_keys(self) -> None:
        """caches.global_factor and each per-cache factor must be positive numbers."""
        self.assert_bad(_with(caches={"global_factor": 0}), "caches.global_factor", "greater than 0")
        self.assert_bad(_with(caches={"global_factor": "big"}), "caches.global_factor", "number")
        self.assert_bad(_with(caches={"per_cache_factors": {"events": -1}}), "caches.per_cache_factors.events")
        self.assert_bad(_with(caches={"per_cache_factors": ["events"]}), "caches.per_cache_factors", "mapping")

    def test_listener_keys(self) -> None:
        """Listener port, type, addresses and resources are checked with their index."""
        http = GOOD_CONFIG["listeners"][0]
        self.assert_bad(_with(listeners={"port": 1}), "listeners", "list")
        self.assert_bad(_with(listeners=["x"]), "listeners[0]", "mapping")
        self.assert_bad(_with(listeners=[{**http, "port": 70000}]), "listeners[0].port", "at most 65535")
        self.assert_bad(_with(listeners=[{**http, "port": "8008"}]), "listeners[0].port", "integer")
        self.assert_bad(_with(listeners=[{k: v for k, v in http.items() if k != "port"}]), "listeners[0].port", "required")
        self.assert_bad(_with(listeners=[http, {**http, "type": "ftp"}]), "listeners[1].type", "http, metrics")
        self.assert_bad(_with(listeners=[{**http, "bind_addresses": ["localhost"]}]), "listeners[0].bind_addresses[0]", "IP address")
        self.assert_bad(_with(listeners=[{**http, "bind_addresses": []}]), "listeners[0].bind_addresses")
        self.assert_bad(_with(listeners=[{**http, "bind_addresses": "127.0.0.1"}]), "listeners[0].bind_addresses", "list")
        self.assert_bad(
            _with(listeners=[{**http, "resources": [{"names": ["client", "chat"]}]}]),
            "listeners[0].resources[0].names", "'chat'",
        )
        self.assert_bad(_with(listeners=[{**http, "resources": []}]), "listeners[0].resources", "at least one")
        self.assert_bad(_with(listeners=[{**http, "tls": "no"}]), "listeners[0].tls")
        self.assert_bad(_with(listeners=[{**http, "x_forwarded": 1}]), "listeners[0].x_forwarded")
        self.assert_bad(_with(listeners=[{**http, "tls": True}]), "tls_certificate_path", "listeners[0]")
        self.assert_bad(_with(listeners=[http, dict(http)]), "listeners[1].port", "already used")

    def test_metrics_listener_needs_enable_metrics(self) -> None:
        """Serving metrics without enable_metrics is refused naming enable_metrics."""
        self.assert_bad(_with(enable_metrics=False), "enable_metrics", "listeners[1]")
        self.assert_bad(_with(enable_metrics="true"), "enable_metrics", "true or false")

    def test_database_keys(self) -> None:
        """The engine name and engine arguments are checked."""
        self.assert_bad(_with(database={"name": "mysql"}), "database.name", "psycopg2, sqlite3")
        self.assert_bad(_with(database={"name": "sqlite3", "args": {"database": ""}}), "database.args.database")
        self.assert_bad(_with(database={"name": "sqlite3", "args": {"database": 3}}), "database.args.database")
        self.assert_bad(_with(database={"name": "sqlite3", "args": []}), "database.args", "mapping")
        self.assert_bad(_with(database={"name": "psycopg2", "args": {"cp_min": 0}}), "database.args.cp_min", "at least 1")
        self.assert_bad(_with(database={"name": "psycopg2", "args": {"cp_min": 5, "cp_max": 2}}), "database.args.cp_min", "cp_max")
        self.assert_bad(_with(database="sqlite"), "database", "mapping")

    def test_registration_keys(self) -> None:
        """Registration flags, secrets, password policy and lifetimes are checked."""
        self.assert_bad(
            _with(registration_requires_token=_DELETE), "enable_registration", "enable_registration_without_verification"
        )
        self.assert_bad(_with(enable_registration="yes"), "enable_registration")
        self.assert_bad(_with(registration_shared_secret=""), "registration_shared_secret", "empty")
        self.assert_bad(_with(registration_shared_secret=123), "registration_shared_secret", "string")
        self.assert_bad(_with(allow_guest_access="no"), "allow_guest_access")
        self.assert_bad(_with(password_config={"enabled": "no"}), "password_config.enabled")
        self.assert_bad(
            _with(password_config={"policy": {"minimum_length": -1}}), "password_config.policy.minimum_length", "at least 0"
        )
        self.assert_bad(_with(session_lifetime="forever"), "session_lifetime", "duration")
        self.assert_bad(_with(refresh_token_lifetime=-5), "refresh_token_lifetime", "negative")

    def test_ratelimit_keys(self) -> None:
        """Rate-limit buckets must be non-negative numbers, named by their full path."""
        self.assert_bad(_with(rc_message={"per_second": "fast"}), "rc_message.per_second", "number")
        self.assert_bad(_with(rc_message={"burst_count": -1}), "rc_message.burst_count", "at least 0")
        self.assert_bad(_with(rc_login={"account": {"per_second": True}}), "rc_login.account.per_second")
        self.assert_bad(_with(rc_joins={"local": 5}), "rc_joins.local", "mapping")
        self.assert_bad(_with(rc_registration=[]), "rc_registration", "mapping")
        self.assert_bad(_with(rc_federation={"concurrent": 0}), "rc_federation.concurrent", "at least 1")
        self.assert_bad(_with(rc_federation={"sleep_delay": "soon"}), "rc_federation.sleep_delay")

    def test_media_keys(self) -> None:
        """Media sizes, paths, thumbnail sizes and preview ranges are checked."""
        self.assert_bad(_with(max_upload_size="50 megabytes"), "max_upload_size", "size")
        self.assert_bad(_with(max_upload_size=-1), "max_upload_size", "negative")
        self.assert_bad(_with(max_image_pixels="lots"), "max_image_pixels")
        self.assert_bad(_with(media_store_path=""), "media_store_path", "empty")
        self.assert_bad(_with(url_preview_enabled="on"), "url_preview_enabled")
        self.assert_bad(_with(url_preview_ip_range_blacklist=["10.0.0.0/33"]), "url_preview_ip_range_blacklist[0]", "network")
        self.assert_bad(_with(url_preview_ip_range_whitelist=[7]), "url_preview_ip_range_whitelist[0]", "string")
        self.assert_bad(_with(thumbnail_sizes=[{"width": 32, "height": 32, "method": "stretch"}]), "thumbnail_sizes[0].method")
        self.assert_bad(_with(thumbnail_sizes=[{"width": 0, "height": 32}]), "thumbnail_sizes[0].width", "at least 1")

    def test_voip_keys(self) -> None:
        """TURN URIs must be turn:/stun: URIs; static credentials come in pairs."""
        self.assert_bad(_with(turn_uris=["http://turn"]), "turn_uris[0]", "turn:")
        self.assert_bad(_with(turn_uris="turn:x"), "turn_uris", "list")
        self.assert_bad(_with(turn_username="u"), "turn_password", "together")
        self.assert_bad(_with(turn_user_lifetime="a while"), "turn_user_lifetime")
        self.assert_bad(_with(turn_allow_guests="yes"), "turn_allow_guests")

    def test_log_config_must_exist(self) -> None:
        """A log_config pointing at a missing file is refused."""
        self.assert_bad(_with(log_config="/nonexistent/log.yaml"), "log_config", "does not exist")


class LoadConfigTestCase(unittest.TestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_load_yaml_file(self) -> None:
        """load_config reads YAML from disk into a RootConfig."""
        path = self.write(yaml.safe_dump(GOOD_CONFIG))
        self.assertEqual(load_config(path), parse_config_dict(GOOD_CONFIG))

    def test_unreadable_empty_or_invalid_yaml(self) -> None:
        """Missing files, empty files and YAML syntax errors are ConfigErrors."""
        for path, fragment in (
            (os.path.join(self.mktemp(), "missing.yaml"), "cannot read"),
            (self.write(""), "empty"),
            (self.write("server_name: [unclosed"), "not valid YAML"),
        ):
            with self.assertRaises(ConfigError) as cm:
                load_config(path)
            self.assertIn(fragment, cm.exception.msg)
