"""Access-token authentication through a full in-process homeserver."""

from twisted.trial import unittest

from matrixd.testing.homeserver import make_homeserver


class AccessTokenAuthTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)

    def test_valid_token(self) -> None:
        """A token issued to a user authenticates requests as that user."""
        _, token = self.hs.create_user("alice")
        ch = self.hs.request("GET", "/_matrix/client/v3/capabilities", access_token=token)
        self.assertEqual(ch.code, 200, ch.json_body)
        self.assertEqual(ch.json_body["capabilities"]["m.room_versions"]["default"], "12")

    def test_missing_and_unknown_token(self) -> None:
        """No token is 401 M_MISSING_TOKEN; a token never issued is 401 M_UNKNOWN_TOKEN."""
        ch = self.hs.request("GET", "/_matrix/client/v3/capabilities")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_MISSING_TOKEN"))
        ch = self.hs.request("GET", "/_matrix/client/v3/capabilities", access_token="nope")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_UNKNOWN_TOKEN"))

    def test_deactivated_user(self) -> None:
        """A deactivated user's tokens stop working."""
        user_id, token = self.hs.create_user("bob")
        self.hs.run(self.hs.components.accounts.users.set_deactivated(user_id, True))
        ch = self.hs.request("GET", "/_matrix/client/v3/capabilities", access_token=token)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (401, "M_UNKNOWN_TOKEN"))

    def test_tokens_stored_hashed(self) -> None:
        """The database never holds the access token itself."""
        _, token = self.hs.create_user("carol")
        rows = self.hs.run(self.hs.components.db.execute("t", "SELECT token_hash FROM access_tokens"))
        self.assertNotIn(token, [r[0] for r in rows])
