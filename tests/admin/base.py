"""Shared set-up for admin API tests: a test homeserver with one admin and one ordinary user."""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.trial import unittest

from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.testing.http import FakeChannel

ADMIN = "/_synapse/admin"
V3 = "/_matrix/client/v3"


class AdminTestCase(unittest.TestCase):
    def setUp(self) -> None:
        store = os.path.abspath(self.mktemp())
        self.hs: TestHomeserver = make_homeserver(self, {"media_store_path": store})
        self.admin_id, self.admin_tok = self.hs.create_user("admin", "adminpw", admin=True)
        self.user_id, self.user_tok = self.hs.create_user("bob", "bobpw")

    def req(self, method: str, path: str, body: Any = None, token: Optional[str] = None) -> FakeChannel:
        return self.hs.request(method, path, body, access_token=token)

    def admin(self, method: str, path: str, body: Any = None, code: int = 200) -> Any:
        """An admin request that must answer ``code``; returns the JSON body."""
        ch = self.req(method, ADMIN + path, body, self.admin_tok)
        self.assertEqual(ch.code, code, ch.json_body)
        return ch.json_body

    def create_room(self, token: str, **body: Any) -> str:
        ch = self.req("POST", f"{V3}/createRoom", body, token)
        self.assertEqual(ch.code, 200, ch.json_body)
        room_id: str = ch.json_body["room_id"]
        return room_id

    def join(self, token: str, room_id: str) -> FakeChannel:
        return self.req("POST", f"{V3}/rooms/{room_id}/join", {}, token)

    def send(self, token: str, room_id: str, body: str, txn: str) -> str:
        ch = self.req("PUT", f"{V3}/rooms/{room_id}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": body},
                      token)
        self.assertEqual(ch.code, 200, ch.json_body)
        event_id: str = ch.json_body["event_id"]
        return event_id

    def run_jobs(self, rounds: int = 200) -> None:
        """Let the background job runner take its batches (it pauses between them)."""
        for _ in range(rounds):
            if not self.hs.components.admin.runner.running_job_ids():
                return
            self.hs.advance(0.1)
