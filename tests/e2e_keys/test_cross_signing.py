"""/keys/device_signing/upload and /keys/signatures/upload, and what /keys/query then shows."""

from __future__ import annotations

from typing import Any

import copy

import signedjson.sign

from matrixd.types import JsonDict
from tests.e2e_keys.helpers import CrossSigningKeys, E2ETestCase, public_b64


class CrossSigningTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV", password="alicepw")
        self.bob = self.make_device("bob", "BDEV", password="bobpw")
        self.upload(self.alice, device_keys=self.alice.device_keys())
        self.upload(self.bob, device_keys=self.bob.device_keys())
        self.a_keys = CrossSigningKeys(self.alice.user_id)
        self.b_keys = CrossSigningKeys(self.bob.user_id)

    def upload_signing(self, token: str, body: JsonDict, expect: int = 200) -> Any:
        return self.post("/keys/device_signing/upload", body, token, expect).json_body

    def password_auth(self, user: str, password: str) -> JsonDict:
        return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}

    def test_first_upload_without_auth_and_query(self) -> None:
        """The first upload needs no UIA; master/self-signing keys are public, user-signing only to self."""
        self.upload_signing(self.alice.token, self.a_keys.upload_body())
        mine = self.query(self.alice, {self.alice.user_id: []})
        self.assertEqual(mine["master_keys"][self.alice.user_id]["usage"], ["master"])
        self.assertIn(self.alice.user_id, mine["self_signing_keys"])
        self.assertIn(self.alice.user_id, mine["user_signing_keys"])
        theirs = self.query(self.bob, {self.alice.user_id: []})
        self.assertIn(self.alice.user_id, theirs["master_keys"])
        self.assertIn(self.alice.user_id, theirs["self_signing_keys"])
        self.assertEqual(theirs["user_signing_keys"], {})

    def test_identical_reupload_is_idempotent(self) -> None:
        """Uploading exactly the stored keys again needs no authentication."""
        body = self.a_keys.upload_body()
        self.upload_signing(self.alice.token, body)
        self.upload_signing(self.alice.token, body)

    def test_replacement_requires_password(self) -> None:
        """Replacing keys is a 401 UIA challenge, wrong password or user 401 M_FORBIDDEN, right password 200."""
        self.upload_signing(self.alice.token, self.a_keys.upload_body())
        new = CrossSigningKeys(self.alice.user_id)
        challenge = self.upload_signing(self.alice.token, new.upload_body(), 401)
        self.assertEqual(challenge["flows"], [{"stages": ["m.login.password"]}])
        self.assertIn("session", challenge)
        wrong = self.upload_signing(self.alice.token, new.upload_body(
            {**self.password_auth("alice", "nope"), "session": challenge["session"]}), 401)
        self.assertEqual(wrong["errcode"], "M_FORBIDDEN")
        other_user = self.upload_signing(self.alice.token, new.upload_body(self.password_auth("bob", "bobpw")), 401)
        self.assertEqual(other_user["errcode"], "M_FORBIDDEN")
        master = self.query(self.bob, {self.alice.user_id: []})["master_keys"][self.alice.user_id]
        self.assertEqual(master["keys"], {f"ed25519:{public_b64(self.a_keys.master)}": public_b64(self.a_keys.master)})
        self.upload_signing(self.alice.token, new.upload_body(
            {**self.password_auth(self.alice.user_id, "alicepw"), "session": challenge["session"]}))
        master = self.query(self.bob, {self.alice.user_id: []})["master_keys"][self.alice.user_id]
        self.assertEqual(list(master["keys"].values()), [public_b64(new.master)])

    def test_self_signing_key_must_be_signed_by_master(self) -> None:
        """An unsigned or wrongly signed self-signing key is 400 M_INVALID_SIGNATURE."""
        body = self.a_keys.upload_body()
        body["self_signing_key"] = self.a_keys.key_json(self.a_keys.self_signing, "self_signing",
                                                        signed_by_master=False)
        self.assertEqual(self.upload_signing(self.alice.token, body, 400)["errcode"], "M_INVALID_SIGNATURE")
        self.assertEqual(self.query(self.alice, {self.alice.user_id: []})["master_keys"], {})

    def test_missing_master_key(self) -> None:
        """A self-signing key with no master key available is 400 M_MISSING_PARAM."""
        body = {"self_signing_key": self.a_keys.key_json(self.a_keys.self_signing, "self_signing")}
        self.assertEqual(self.upload_signing(self.alice.token, body, 400)["errcode"], "M_MISSING_PARAM")

    def test_self_signing_key_signed_by_stored_master(self) -> None:
        """A later self-signing key alone is checked against the stored master key."""
        self.upload_signing(self.alice.token, {"master_key": self.a_keys.key_json(
            self.a_keys.master, "master", signed_by_master=False)})
        body = {"self_signing_key": self.a_keys.key_json(self.a_keys.self_signing, "self_signing"),
                "auth": self.password_auth("alice", "alicepw")}
        self.upload_signing(self.alice.token, body)
        self.assertIn(self.alice.user_id, self.query(self.bob, {self.alice.user_id: []})["self_signing_keys"])

    def test_key_shapes(self) -> None:
        """Wrong user, usage or key format is 400; a public key equal to a device id is 403."""
        for field, mutate in (("master_key", lambda k: k.update(user_id=self.bob.user_id)),
                              ("master_key", lambda k: k.update(usage=["self_signing"])),
                              ("master_key", lambda k: k.update(keys={"ed25519:abc": "abc"})),
                              ("master_key", lambda k: k.update(keys={})),
                              ("master_key", lambda k: k.update(signatures="x"))):
            body = self.a_keys.upload_body()
            mutate(body[field])
            self.upload_signing(self.alice.token, body, 400)
        clash = self.make_device("alice", public_b64(self.a_keys.master))
        self.assertIsNotNone(clash)
        self.upload(clash, device_keys=clash.device_keys())
        self.assertEqual(self.upload_signing(self.alice.token, self.a_keys.upload_body(), 403)["errcode"],
                         "M_FORBIDDEN")

    def sign_device(self, device_keys: JsonDict, keys: CrossSigningKeys) -> JsonDict:
        signed: JsonDict = signedjson.sign.sign_json(copy.deepcopy(device_keys), keys.user_id, keys.self_signing)
        return signed

    def test_signatures_upload_and_visibility(self) -> None:
        """Self-signing signatures of devices, device signatures of the master key and user-signing
        signatures of another user's master key are verified, stored and shown per the visibility rules."""
        self.upload_signing(self.alice.token, self.a_keys.upload_body())
        self.upload_signing(self.bob.token, self.b_keys.upload_body())
        a_master_pub = public_b64(self.a_keys.master)
        b_master_pub = public_b64(self.b_keys.master)
        device = self.query(self.alice, {self.alice.user_id: ["ADEV"]})["device_keys"][self.alice.user_id]["ADEV"]
        del device["unsigned"]
        a_master = self.query(self.alice, {self.alice.user_id: []})["master_keys"][self.alice.user_id]
        b_master = self.query(self.alice, {self.bob.user_id: []})["master_keys"][self.bob.user_id]
        body = {
            self.alice.user_id: {
                "ADEV": self.sign_device(device, self.a_keys),
                a_master_pub: signedjson.sign.sign_json(copy.deepcopy(a_master), self.alice.user_id, self.alice.signing_key),
            },
            self.bob.user_id: {
                b_master_pub: signedjson.sign.sign_json(copy.deepcopy(b_master), self.alice.user_id, self.a_keys.user_signing),
            },
        }
        res = self.post("/keys/signatures/upload", body, self.alice.token).json_body
        self.assertEqual(res, {"failures": {}})

        ssk_id = f"ed25519:{public_b64(self.a_keys.self_signing)}"
        usk_id = f"ed25519:{public_b64(self.a_keys.user_signing)}"
        as_bob = self.query(self.bob, {self.alice.user_id: [], self.bob.user_id: []})
        self.assertIn(ssk_id, as_bob["device_keys"][self.alice.user_id]["ADEV"]["signatures"][self.alice.user_id])
        self.assertIn("ed25519:ADEV", as_bob["master_keys"][self.alice.user_id]["signatures"][self.alice.user_id])
        # Alice's user-signing signature of Bob's master key: only Alice sees it.
        self.assertNotIn(self.alice.user_id, as_bob["master_keys"][self.bob.user_id].get("signatures", {}))
        as_alice = self.query(self.alice, {self.bob.user_id: []})
        self.assertIn(usk_id, as_alice["master_keys"][self.bob.user_id]["signatures"][self.alice.user_id])
        carol = self.make_device("carol", "CDEV")
        as_carol = self.query(carol, {self.bob.user_id: []})
        self.assertNotIn(self.alice.user_id, as_carol["master_keys"][self.bob.user_id].get("signatures", {}))

    def test_signature_failures(self) -> None:
        """Bad signatures, unknown keys and mismatched objects are per-key failures with spec errcodes."""
        self.upload_signing(self.alice.token, self.a_keys.upload_body())
        device = self.alice.device_keys()
        forged = self.sign_device(device, CrossSigningKeys(self.alice.user_id))  # another SSK
        tampered = self.sign_device({**device, "algorithms": ["x"]}, self.a_keys)
        body = {
            self.alice.user_id: {"ADEV": forged, "NODEVICE": self.sign_device(device, self.a_keys), "X": "str"},
            self.bob.user_id: {"nosuchkey": {"user_id": self.bob.user_id}},
            "@someone:remote.example": {"k": {"user_id": "@someone:remote.example"}},
        }
        failures = self.post("/keys/signatures/upload", body, self.alice.token).json_body["failures"]
        self.assertEqual(failures[self.alice.user_id]["ADEV"]["errcode"], "M_INVALID_SIGNATURE")
        self.assertEqual(failures[self.alice.user_id]["NODEVICE"]["errcode"], "M_NOT_FOUND")
        self.assertEqual(failures[self.alice.user_id]["X"]["errcode"], "M_BAD_JSON")
        self.assertEqual(failures[self.bob.user_id]["nosuchkey"]["errcode"], "M_NOT_FOUND")
        self.assertIn("k", failures["@someone:remote.example"])
        failures = self.post("/keys/signatures/upload", {self.alice.user_id: {"ADEV": tampered}},
                             self.alice.token).json_body["failures"]
        self.assertEqual(failures[self.alice.user_id]["ADEV"]["errcode"], "M_INVALID_PARAM")
        sigs = self.query(self.bob, {self.alice.user_id: []})["device_keys"][self.alice.user_id]["ADEV"]["signatures"]
        self.assertEqual(list(sigs[self.alice.user_id]), ["ed25519:ADEV"])

    def test_cross_signing_change_marks_user_changed(self) -> None:
        """Uploading cross-signing keys puts the user in device_lists.changed of users sharing a room."""
        room = self.create_room(self.alice.user_id)
        self.join(self.bob.user_id, room)
        before = self.token_now()
        self.upload_signing(self.alice.token, self.a_keys.upload_body())
        changed, left = self.hs.run(self.e2e.sync_source.get_device_list_changes(
            self.bob.user_id, before, self.token_now()))
        self.assertEqual((changed, left), ({self.alice.user_id}, set()))
