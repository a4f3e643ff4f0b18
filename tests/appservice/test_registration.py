"""Registration files: parsing, validation errors, namespace matching."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from matrixd.api.errors import ConfigError
from matrixd.appservice.registration import parse_registration
from matrixd.config.root import parse_config_dict
from tests.appservice.fake import registration, write_registration


class ParseRegistrationTestCase(TestCase):
    def _error(self, raw: Any) -> ConfigError:
        return self.assertRaises(ConfigError, parse_registration, raw, "reg.yaml")

    def test_full_registration(self) -> None:
        """Every field of a valid registration is read, with the spec's defaults."""
        reg = parse_registration(registration(), "reg.yaml")
        self.assertEqual(reg.id, "bridge")
        self.assertEqual(reg.url, "http://127.0.0.1:9999")
        self.assertEqual(reg.sender("test"), "@bridgebot:test")
        self.assertFalse(reg.rate_limited)
        self.assertEqual(reg.protocols, ("gitter",))
        self.assertFalse(reg.receive_ephemeral)
        self.assertTrue(reg.is_exclusive_user("@_bridge_alice:test"))
        self.assertTrue(reg.is_interested_in_alias("#_bridge_room:test"))
        self.assertTrue(parse_registration(registration(rate_limited=None), "r").rate_limited)

    def test_namespace_regex_must_match_whole_id(self) -> None:
        """A namespace regex covers whole ids only: '@bot' does not claim '@botnet'."""
        reg = parse_registration(registration(namespaces={"users": [{"regex": "@bot", "exclusive": False}]}), "r")
        self.assertTrue(reg.is_interested_in_user("@bot"))
        self.assertFalse(reg.is_interested_in_user("@botnet:test"))
        self.assertFalse(reg.is_exclusive_user("@bot"))

    def test_null_url_means_receive_nothing(self) -> None:
        """``url: null`` is allowed (a service that only uses the client API)."""
        self.assertIsNone(parse_registration(registration(url=None), "r").url)

    def test_ephemeral_opt_in_and_msc2409_alias(self) -> None:
        """receive_ephemeral and its unstable MSC2409 name both opt in to ephemeral events."""
        self.assertTrue(parse_registration(registration(receive_ephemeral=True), "r").receive_ephemeral)
        raw = registration(**{"de.sorunome.msc2409.push_ephemeral": True})
        self.assertTrue(parse_registration(raw, "r").receive_ephemeral)
        self.assertTrue(parse_registration(registration(**{"org.matrix.msc3202": True}), "r").msc3202)

    def test_missing_required_fields(self) -> None:
        """Each required field's absence is an error naming it."""
        for key in ("id", "url", "as_token", "hs_token", "sender_localpart"):
            raw = registration()
            del raw[key]
            err = self._error(raw)
            self.assertEqual(err.key, f"reg.yaml.{key}")

    def test_bad_values(self) -> None:
        """Wrong types and values are refused with the key and the reason."""
        cases = [
            (registration(url="ftp://x"), "reg.yaml.url"),
            (registration(as_token=""), "reg.yaml.as_token"),
            (registration(hs_token="as_token_bridge"), "reg.yaml.hs_token"),
            (registration(sender_localpart="@bot:test"), "reg.yaml.sender_localpart"),
            (registration(rate_limited="yes"), "reg.yaml.rate_limited"),
            (registration(protocols="irc"), "reg.yaml.protocols"),
            (registration(namespaces=[]), "reg.yaml.namespaces"),
            (registration(namespaces={"groups": []}), "reg.yaml.namespaces.groups"),
            (registration(namespaces={"users": {"regex": "x"}}), "reg.yaml.namespaces.users"),
            (registration(namespaces={"users": ["x"]}), "reg.yaml.namespaces.users[0]"),
            (registration(namespaces={"users": [{"regex": "(", "exclusive": True}]}),
             "reg.yaml.namespaces.users[0].regex"),
            (registration(namespaces={"rooms": [{"regex": "!a"}]}), "reg.yaml.namespaces.rooms[0].exclusive"),
        ]
        for raw, key in cases:
            self.assertEqual(self._error(raw).key, key, raw)
        self.assertIn("not a valid regular expression", self._error(cases[10][0]).msg)
        self.assertEqual(self._error(["not", "a", "mapping"]).key, "reg.yaml")


class AppServiceConfigTestCase(TestCase):
    def _config(self, *regs: Any) -> Any:
        paths = [write_registration(self, r, f"r{i}.yaml") for i, r in enumerate(regs)]
        return parse_config_dict({"server_name": "test", "app_service_config_files": paths})

    def test_files_are_loaded(self) -> None:
        """app_service_config_files (Synapse's key) loads each registration."""
        config = self._config(registration(), registration(id="b2", as_token="a2", hs_token="h2"))
        self.assertEqual([r.id for r in config.app_service_config_files.registrations], ["bridge", "b2"])

    def test_no_services_by_default(self) -> None:
        """Without the key there are no application services."""
        config = parse_config_dict({"server_name": "test"})
        self.assertEqual(config.app_service_config_files.registrations, ())

    def test_duplicates_refused(self) -> None:
        """Two services may not share an id, an as_token or an hs_token."""
        for dup in (dict(as_token="a2", hs_token="h2"), dict(id="b2", hs_token="h2"),
                    dict(id="b2", as_token="a2"), dict(id="b2", as_token="hs_token_bridge", hs_token="h2")):
            err = self.assertRaises(ConfigError, self._config, registration(), registration(**dup))
            self.assertIn("r1.yaml", err.key)

    def test_unreadable_or_invalid_file(self) -> None:
        """A missing file or invalid YAML names the list entry."""
        err = self.assertRaises(ConfigError, parse_config_dict,
                                {"server_name": "test", "app_service_config_files": ["/nonexistent/reg.yaml"]})
        self.assertEqual(err.key, "app_service_config_files[0]")
        path = write_registration(self, "x", "bad.yaml")
        with open(path, "w") as f:
            f.write("id: [unclosed")
        err = self.assertRaises(ConfigError, parse_config_dict,
                                {"server_name": "test", "app_service_config_files": [path]})
        self.assertIn("not valid YAML", err.msg)
