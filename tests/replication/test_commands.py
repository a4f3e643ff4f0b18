"""Replication command lines: exact wire format, round trips and strict refusal of malformed lines."""

from __future__ import annotations

from twisted.trial import unittest

from matrixd.replication.commands import (
    AuthCommand,
    ClearUserSyncCommand,
    CommandParseError,
    ErrorCommand,
    HelloCommand,
    PingCommand,
    PositionCommand,
    RdataCommand,
    SubscribeCommand,
    UserIpCommand,
    UserIpEntry,
    UserSyncCommand,
    WelcomeCommand,
    auth_mac,
    parse_line,
)


class CommandTests(unittest.TestCase):
    def test_wire_format(self) -> None:
        """Each verb serialises to the documented line."""
        self.assertEqual(HelloCommand(1, "example.org", "e1", "n1").to_line(), "HELLO 1 example.org e1 n1")
        self.assertEqual(AuthCommand("w1", "a" * 64).to_line(), "AUTH w1 " + "a" * 64)
        self.assertEqual(WelcomeCommand().to_line(), "WELCOME")
        self.assertEqual(SubscribeCommand("events").to_line(), "SUBSCRIBE events")
        self.assertEqual(SubscribeCommand("events", 7).to_line(), "SUBSCRIBE events 7")
        self.assertEqual(PositionCommand("events", 3, 9).to_line(), "POSITION events 3 9")
        self.assertEqual(RdataCommand("events", 9, ({"a": 1, "b": "é"},)).to_line(),
                         'RDATA events 9 [{"a":1,"b":"\\u00e9"}]')
        self.assertEqual(PingCommand(123).to_line(), "PING 123")
        self.assertEqual(UserSyncCommand("@a:b", True, 5).to_line(), "USER_SYNC @a:b true 5")
        self.assertEqual(ClearUserSyncCommand("w1").to_line(), "CLEAR_USER_SYNC w1")
        self.assertEqual(ErrorCommand("bad\nthing  here").to_line(), "ERROR bad thing here")

    def test_round_trip(self) -> None:
        """parse_line(cmd.to_line()) == cmd for every verb."""
        cmds = [
            HelloCommand(1, "example.org:8448", "17000abc", "deadbeef"), AuthCommand("sync-1.a_b", "0f" * 32),
            WelcomeCommand(), ErrorCommand("authentication failed"), PingCommand(0),
            SubscribeCommand("current_state_deltas"), SubscribeCommand("caches", 0), PositionCommand("x", 0, 0),
            RdataCommand("events", 12, ({"event_id": "$a", "state_key": None, "outlier": False, "n": [1, 2]},)),
            UserSyncCommand("@alice:test", False, 1_700_000_000_000), ClearUserSyncCommand("w"),
            UserIpCommand((UserIpEntry("@a:test", None, "::1", "curl 8 \n", 5),
                           UserIpEntry("@b:test", "DEV", "1.2.3.4", "", 6))),
        ]
        for cmd in cmds:
            line = cmd.to_line()
            self.assertNotIn("\n", line)
            self.assertEqual(parse_line(line), cmd, line)

    def test_malformed_lines_refused(self) -> None:
        """Unknown verbs, missing/extra/invalid arguments and bad JSON all raise CommandParseError."""
        bad = [
            "", "NOPE", "hello 1 a b c", "HELLO 1 a b", "HELLO x a b c", "HELLO 1 a b c d", "HELLO 1 a e! n",
            "AUTH w1", "AUTH w1 xyz", "AUTH w 1 " + "a" * 64, "AUTH -w " + "a" * 64, "WELCOME now", "WELCOME ",
            "ERROR", "PING", "PING -1", "PING 1 2", "PING 1.5", "SUBSCRIBE", "SUBSCRIBE Events",
            "SUBSCRIBE events x", "SUBSCRIBE events 1 2", "POSITION events 1", "POSITION events 5 4",
            "RDATA events 1", "RDATA events 1 {}", "RDATA events 1 []", "RDATA events 1 [1]",
            "RDATA events 1 [{]", "RDATA events 1 [NaN]", "RDATA events x [{}]", "USER_SYNC @a:b yes 1",
            "USER_SYNC @a:b true", "CLEAR_USER_SYNC", "CLEAR_USER_SYNC a b", "USER_IP []", "USER_IP [{}]",
            'USER_IP [{"user_id":"@a:b","device_id":1,"ip":"x","user_agent":"y","last_seen":1}]',
            'USER_IP [{"user_id":"@a:b","device_id":null,"ip":"x","user_agent":"y","last_seen":true}]',
            "PING  1", "POSITION events 1 2 ",
        ]
        for line in bad:
            with self.assertRaises(CommandParseError, msg=line):
                parse_line(line)

    def test_auth_mac_binds_every_hello_field(self) -> None:
        """The MAC changes with the secret, version, server name, epoch, nonce and worker name."""
        base = dict(protocol_version=1, server_name="s", master_epoch="e", nonce="n", worker_name="w")
        mac = auth_mac("secret", **base)  # type: ignore[arg-type]
        self.assertRegex(mac, "^[0-9a-f]{64}$")
        self.assertNotEqual(auth_mac("other", **base), mac)  # type: ignore[arg-type]
        for key, value in [("protocol_version", 2), ("server_name", "t"), ("master_epoch", "f"),
                           ("nonce", "m"), ("worker_name", "v")]:
            changed = {**base, key: value}
            self.assertNotEqual(auth_mac("secret", **changed), mac, key)  # type: ignore[arg-type]
