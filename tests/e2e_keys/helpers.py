"""Shared helpers for e2e tests: a client-side view of devices and cross-signing keys that
signs what it uploads, and a test case base on the in-process homeserver."""

from __future__ import annotations

import secrets
from typing import Any, Optional

import signedjson.key
import signedjson.sign
from signedjson.types import SigningKey
from twisted.trial import unittest
from unpaddedbase64 import encode_base64

from matrixd.streams.token import StreamToken
from matrixd.testing.homeserver import TestHomeserver, make_homeserver
from matrixd.testing.http import FakeChannel
from matrixd.testing.room_core import requester
from matrixd.types import JsonDict

V3 = "/_matrix/client/v3"


def public_b64(key: SigningKey) -> str:
    return encode_base64(key.verify_key.encode())


def curve_key() -> str:
    """A stand-in curve25519 public key (the server never interprets it)."""
    return encode_base64(secrets.token_bytes(32))


class FakeDevice:
    """A device with its own ed25519 key, building signed uploads like a client."""

    def __init__(self, user_id: str, device_id: str, token: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.token = token
        self.signing_key = signedjson.key.generate_signing_key(device_id)
        self.curve = curve_key()

    @property
    def ed25519(self) -> str:
        return public_b64(self.signing_key)

    def device_keys(self, **extra: Any) -> JsonDict:
        keys: JsonDict = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{self.device_id}": self.curve, f"ed25519:{self.device_id}": self.ed25519},
            **extra,
        }
        signed: JsonDict = signedjson.sign.sign_json(keys, self.user_id, self.signing_key)
        return signed

    def one_time_keys(self, n: int, start: int = 0, fallback: bool = False) -> JsonDict:
        out: JsonDict = {}
        for i in range(start, start + n):
            key: JsonDict = {"key": curve_key()}
            if fallback:
                key["fallback"] = True
            out[f"signed_curve25519:AAAA{i}"] = signedjson.sign.sign_json(key, self.user_id, self.signing_key)
        return out


class CrossSigningKeys:
    """A user's master, self-signing and user-signing keys (private halves included)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master = self._new()
        self.self_signing = self._new()
        self.user_signing = self._new()

    @staticmethod
    def _new() -> SigningKey:
        key = signedjson.key.generate_signing_key("x")
        key.version = public_b64(key)
        return key

    def key_json(self, key: SigningKey, usage: str, signed_by_master: bool = True) -> JsonDict:
        pub = public_b64(key)
        obj: JsonDict = {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}
        if signed_by_master:
            obj = signedjson.sign.sign_json(obj, self.user_id, self.master)
        return obj

    def upload_body(self, auth: Optional[JsonDict] = None) -> JsonDict:
        body: JsonDict = {
            "master_key": self.key_json(self.master, "master", signed_by_master=False),
            "self_signing_key": self.key_json(self.self_signing, "self_signing"),
            "user_signing_key": self.key_json(self.user_signing, "user_signing"),
        }
        if auth is not None:
            body["auth"] = auth
        return body


class E2ETestCase(unittest.TestCase):
    """An in-process homeserver plus shortcuts for the e2e endpoints."""

    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.e2e = self.hs.components.e2e

    def make_device(self, localpart: str, device_id: str = "DEV1", password: Optional[str] = None) -> FakeDevice:
        user_id = f"@{localpart}:{self.hs.server_name}"
        if self.hs.run(self.hs.components.accounts.users.get_user(user_id)) is None:
            user_id, token = self.hs.create_user(localpart, password, device_id=device_id)
        else:
            accounts = self.hs.components.accounts
            self.hs.run(accounts.devices.store_device(user_id, device_id, None))
            token = "syt_" + secrets.token_urlsafe(24)
            self.hs.run(accounts.tokens.add_access_token(user_id, device_id, token))
        return FakeDevice(user_id, device_id, token)

    def post(self, path: str, body: Any, token: Optional[str], expect: int = 200) -> FakeChannel:
        ch = self.hs.request("POST", V3 + path, body, access_token=token)
        self.assertEqual(ch.code, expect, ch.result_body[:500])
        return ch

    def put(self, path: str, body: Any, token: Optional[str], expect: int = 200) -> FakeChannel:
        ch = self.hs.request("PUT", V3 + path, body, access_token=token)
        self.assertEqual(ch.code, expect, ch.result_body[:500])
        return ch

    def get(self, path: str, token: Optional[str], expect: int = 200) -> FakeChannel:
        ch = self.hs.request("GET", V3 + path, access_token=token)
        self.assertEqual(ch.code, expect, ch.result_body[:500])
        return ch

    def delete(self, path: str, token: Optional[str], expect: int = 200) -> FakeChannel:
        ch = self.hs.request("DELETE", V3 + path, access_token=token)
        self.assertEqual(ch.code, expect, ch.result_body[:500])
        return ch

    def upload(self, dev: FakeDevice, expect: int = 200, **body: Any) -> FakeChannel:
        return self.post("/keys/upload", body, dev.token, expect)

    def query(self, dev: FakeDevice, users: dict[str, list[str]]) -> JsonDict:
        body: JsonDict = self.post("/keys/query", {"device_keys": users}, dev.token).json_body
        return body

    def token_now(self) -> StreamToken:
        return self.hs.components.core.notifier.current_token

    def create_room(self, user_id: str) -> str:
        room_id: str = self.hs.run(self.hs.components.core.room_creation.create_room(
            requester(user_id), {"preset": "public_chat"}))
        return room_id

    def join(self, user_id: str, room_id: str) -> None:
        self.hs.run(self.hs.components.core.membership.update_membership(requester(user_id), user_id, room_id,
                                                                          "join"))

    def leave(self, user_id: str, room_id: str) -> None:
        self.hs.run(self.hs.components.core.membership.update_membership(requester(user_id), user_id, room_id,
                                                                          "leave"))
