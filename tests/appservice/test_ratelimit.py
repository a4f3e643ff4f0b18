"""``rate_limited`` in a registration: services are rate limited like users unless it says false."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.appservice.fake import as_request, make_homeserver_with_service, registration

_TIGHT = {
    "rc_message": {"per_second": 0.001, "burst_count": 3},
    "rc_invites": {"per_room": {"per_second": 0.001, "burst_count": 2},
                   "per_user": {"per_second": 10000, "burst_count": 10000},
                   "per_issuer": {"per_second": 10000, "burst_count": 10000}},
}


class RateLimitedTestCase(TestCase):
    def _setup(self, **overrides: Any) -> None:
        self.hs, self.fake = make_homeserver_with_service(self, registration(**overrides), config=_TIGHT)
        ch = as_request(self.hs, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"})
        self.assertEqual(ch.code, 200, ch.json_body)
        self.room_id = ch.json_body["room_id"]

    def _send(self, i: int) -> int:
        ch = as_request(self.hs, "PUT", f"/_matrix/client/v3/rooms/{self.room_id}/send/m.room.message/t{i}",
                        {"msgtype": "m.text", "body": f"m{i}"})
        return int(ch.code)

    def _invite(self, i: int) -> int:
        ch = as_request(self.hs, "POST", f"/_matrix/client/v3/rooms/{self.room_id}/invite",
                        {"user_id": f"@guest{i}:test"})
        return int(ch.code)

    def test_default_is_rate_limited(self) -> None:
        """Without ``rate_limited`` (default true) the service hits the message limit: 429 after the burst."""
        reg = registration()
        del reg["rate_limited"]
        self.hs, self.fake = make_homeserver_with_service(self, reg, config=_TIGHT)
        ch = as_request(self.hs, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"})
        self.room_id = ch.json_body["room_id"]
        codes = [self._send(i) for i in range(6)]
        self.assertEqual(codes[:3], [200, 200, 200])
        self.assertIn(429, codes[3:])

    def test_rate_limited_true(self) -> None:
        """``rate_limited: true``: messages and invites are limited like a user's."""
        self._setup(rate_limited=True)
        codes = [self._send(i) for i in range(6)]
        self.assertIn(429, codes)
        self.assertIn(429, [self._invite(i) for i in range(5)])

    def test_rate_limited_false_exempt(self) -> None:
        """``rate_limited: false``: the service (and users it masquerades as) sends and invites past the limits."""
        self._setup(rate_limited=False)
        self.assertEqual({self._send(i) for i in range(20)}, {200})
        self.assertEqual({self._invite(i) for i in range(6)}, {200})

    def test_normal_users_still_limited(self) -> None:
        """An exempt service does not exempt ordinary users of the same server."""
        self._setup(rate_limited=False)
        user, token = self.hs.create_user("alice")
        ch = self.hs.request("POST", f"/_matrix/client/v3/join/{self.room_id}", {}, access_token=token)
        self.assertEqual(ch.code, 200, ch.json_body)
        codes = [
            self.hs.request("PUT", f"/_matrix/client/v3/rooms/{self.room_id}/send/m.room.message/u{i}",
                            {"msgtype": "m.text", "body": "x"}, access_token=token).code
            for i in range(6)
        ]
        self.assertIn(429, codes)
