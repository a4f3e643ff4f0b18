"""Pure pieces of the federation layer: the X-Matrix grammar, IP filtering, server ACLs, config."""

from __future__ import annotations

import ipaddress

import signedjson.sign
from twisted.trial import unittest

from matrixd.api.errors import ConfigError
from matrixd.config import parse_config_dict
from matrixd.config.federation import DEFAULT_IP_RANGE_BLACKLIST, FederationConfig
from matrixd.crypto.keys import encode_verify_key, generate_signing_key, get_verify_key
from matrixd.crypto.request_auth import (
    XMatrixCredentials,
    XMatrixHeaderError,
    format_x_matrix_header,
    parse_x_matrix_header,
    request_signing_json,
    sign_request,
)
from matrixd.federation.acl import server_matches_acl
from matrixd.federation.ip_filter import IPRangeFilter


class XMatrixHeaderTestCase(unittest.TestCase):
    def test_spec_example(self) -> None:
        """The spec's example header parses into its four parameters."""
        creds = parse_x_matrix_header(
            b'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
            b'key="ed25519:key1",sig="ABCDEF..."'
        )
        self.assertEqual(creds, XMatrixCredentials("origin.hs.example.com", "ed25519:key1", "ABCDEF...",
                                                   "destination.hs.example.com"))

    def test_grammar_allowances(self) -> None:
        """Scheme and names are case-insensitive; OWS around commas and '='; tokens and colons unquoted; escapes."""
        creds = parse_x_matrix_header(
            'x-MATRIX   Origin = a.example ,\t KEY=ed25519:k ,sig="a\\"b\\\\c" , , destination="b.example",x=1'
        )
        self.assertEqual((creds.origin, creds.key, creds.sig, creds.destination),
                         ("a.example", "ed25519:k", 'a"b\\c', "b.example"))

    def test_destination_optional(self) -> None:
        """Older senders omit destination."""
        creds = parse_x_matrix_header('X-Matrix origin=a.example,key="ed25519:k",sig="s"')
        self.assertIsNone(creds.destination)

    def test_rejections(self) -> None:
        """Other schemes, grammar errors, duplicates and missing parameters are refused."""
        for header in (
            "",
            "Bearer abc",
            "X-Matrixorigin=a",
            "X-Matrix",
            "X-Matrix ",
            'X-Matrix origin="a.example",key="ed25519:k"',
            'X-Matrix origin="a.example",key="ed25519:k",sig="s",ORIGIN="b"',
            'X-Matrix origin="a.example" key="ed25519:k",sig="s"',
            'X-Matrix origin="a.example,key="ed25519:k",sig="s"',
            'X-Matrix origin=,key="ed25519:k",sig="s"',
            'X-Matrix origin=a/b,key="ed25519:k",sig="s"',
            'X-Matrix =a,key="ed25519:k",sig="s"',
            'X-Matrix origin="a\x01",key="ed25519:k",sig="s"',
            'X-Matrix origin="a\\',
        ):
            with self.assertRaises(XMatrixHeaderError, msg=repr(header)):
                parse_x_matrix_header(header)

    def test_format_roundtrip(self) -> None:
        """What we send parses back to the same credentials, quoting what needs it."""
        creds = XMatrixCredentials("a.example", "ed25519:k", 'we"ird\\', "b.example")
        header = format_x_matrix_header(creds)
        self.assertTrue(header.startswith(b'X-Matrix origin="a.example",destination="b.example",'))
        self.assertEqual(parse_x_matrix_header(header), creds)

    def test_signature_covers_the_spec_fields(self) -> None:
        """sign_request signs {method, uri, origin, destination, content} with the origin's key."""
        key = generate_signing_key("k")
        header = sign_request(key, "a.example", "b.example", "PUT", "/_matrix/x?y=1", {"z": 1})
        creds = parse_x_matrix_header(header)
        signed = request_signing_json("PUT", "/_matrix/x?y=1", "a.example", "b.example", {"z": 1})
        signed["signatures"] = {"a.example": {creds.key: creds.sig}}
        signedjson.sign.verify_signed_json(signed, "a.example", get_verify_key(key))
        self.assertNotIn("content", request_signing_json("GET", "/x", "a", "b"))


class IPFilterTestCase(unittest.TestCase):
    def test_default_blacklist(self) -> None:
        """Private, loopback, link-local and unspecified addresses are refused; public ones allowed."""
        nets = [ipaddress.ip_network(n) for n in DEFAULT_IP_RANGE_BLACKLIST]
        f = IPRangeFilter(nets)
        for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.5", "172.16.9.9", "169.254.1.1", "::1", "fe80::1",
                   "fd00::5", "0.0.0.0", "::", "::ffff:127.0.0.1", "not an ip"):
            self.assertFalse(f.is_allowed(ip), ip)
        for ip in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"):
            self.assertTrue(f.is_allowed(ip), ip)

    def test_whitelist_overrides(self) -> None:
        """A whitelisted range inside the blacklist is allowed; the unspecified address never is."""
        f = IPRangeFilter([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("0.0.0.0/0")],
                          [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("0.0.0.0/0")])
        self.assertTrue(f.is_allowed("127.0.0.1"))
        self.assertTrue(f.is_allowed("1.2.3.4"))
        self.assertFalse(f.is_allowed("0.0.0.0"))


class ServerAclTestCase(unittest.TestCase):
    def test_rules_in_order(self) -> None:
        """No ACL allows; IP literals can be banned; deny wins over allow; unlisted is denied."""
        self.assertTrue(server_matches_acl("any.example", None))
        acl = {"allow": ["*.example", "friend.org"], "deny": ["evil.example"], "allow_ip_literals": False}
        self.assertTrue(server_matches_acl("good.example", acl))
        self.assertTrue(server_matches_acl("good.example:8448", acl))
        self.assertTrue(server_matches_acl("FRIEND.org", acl))
        self.assertFalse(server_matches_acl("evil.example:1234", acl))
        self.assertFalse(server_matches_acl("stranger.net", acl))
        self.assertFalse(server_matches_acl("1.2.3.4", {"allow": ["*"], "allow_ip_literals": False}))
        self.assertFalse(server_matches_acl("[::1]:80", {"allow": ["*"], "allow_ip_literals": False}))
        self.assertTrue(server_matches_acl("1.2.3.4", {"allow": ["*"]}))

    def test_globs_and_malformed_content(self) -> None:
        """'?' matches one character; non-string entries are ignored; no allow list denies everyone."""
        self.assertTrue(server_matches_acl("a1.example", {"allow": ["a?.example"]}))
        self.assertFalse(server_matches_acl("a12.example", {"allow": ["a?.example"]}))
        self.assertTrue(server_matches_acl("x.example", {"allow": [1, None, "*"], "deny": "x.example"}))
        self.assertFalse(server_matches_acl("x.example", {"deny": []}))
        self.assertTrue(server_matches_acl("1.2.3.4", {"allow": ["*"], "allow_ip_literals": "no"}))


class FederationConfigTestCase(unittest.TestCase):
    def parse(self, **extra: object) -> FederationConfig:
        return parse_config_dict({"server_name": "test", **extra}).federation

    def test_defaults(self) -> None:
        """Verification on, private ranges refused, no notaries, keys valid a day, public rooms not shared."""
        c = self.parse()
        self.assertTrue(c.verify_certificates)
        self.assertEqual(c.trusted_key_servers, ())
        self.assertEqual(c.key_refresh_interval_ms, 86_400_000)
        self.assertIn(ipaddress.ip_network("127.0.0.0/8"), c.ip_range_blacklist)
        self.assertFalse(c.allow_public_rooms)
        self.assertIsNone(c.domain_whitelist)

    def test_synapse_style_keys(self) -> None:
        """trusted_key_servers, old_signing_keys and federation_ip_range_blacklist are read as Synapse writes them."""
        vk = encode_verify_key(get_verify_key(generate_signing_key("a")))
        c = self.parse(
            trusted_key_servers=[{"server_name": "matrix.org", "verify_keys": {"ed25519:a": vk}},
                                 {"server_name": "other.org"}],
            old_signing_keys={"ed25519:old": {"key": vk, "expired_ts": 5}},
            federation_ip_range_blacklist=["10.0.0.0/8"],
            ip_range_whitelist=["127.0.0.1"],
            federation_verify_certificates=False,
            federation={"client_timeout": "30s", "max_short_retries": 1},
        )
        servers = c.trusted_key_servers
        self.assertEqual([s.server_name for s in servers], ["matrix.org", "other.org"])
        self.assertEqual(list(servers[0].verify_keys), ["ed25519:a"])
        self.assertEqual(c.old_signing_keys["ed25519:old"].expired_ts, 5)
        self.assertEqual(c.ip_range_blacklist, (ipaddress.ip_network("10.0.0.0/8"),))
        self.assertEqual(c.ip_range_whitelist, (ipaddress.ip_network("127.0.0.1/32"),))
        self.assertFalse(c.verify_certificates)
        self.assertEqual(c.client.client_timeout_ms, 30_000)

    def test_errors_name_the_key(self) -> None:
        """Bad values raise ConfigError naming the key."""
        for extra, key in (
            ({"trusted_key_servers": [{"server_name": "bad name"}]}, "trusted_key_servers[0].server_name"),
            ({"trusted_key_servers": [{"server_name": "a.org", "verify_keys": {"ed25519:a": "!!"}}]},
             "trusted_key_servers[0].verify_keys.ed25519:a"),
            ({"ip_range_blacklist": ["not-a-range"]}, "ip_range_blacklist[0]"),
            ({"key_refresh_interval": "5m"}, "key_refresh_interval"),
            ({"old_signing_keys": {"ed25519:x": {"key": "AAAA"}}}, "old_signing_keys.ed25519:x"),
        ):
            with self.assertRaises(ConfigError) as cm:
                self.parse(**extra)
            self.assertEqual(cm.exception.key, key, cm.exception)
