"""/keys/upload, /keys/query and /keys/claim on the in-process homeserver."""

from __future__ import annotations

import copy

from tests.e2e_keys.helpers import E2ETestCase


class KeyUploadTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV")
        self.bob = self.make_device("bob", "BDEV")

    def test_upload_device_keys_and_query(self) -> None:
        """Uploaded device keys come back from /keys/query with the device's display name."""
        self.hs.run(self.hs.components.accounts.devices.update_display_name(self.alice.user_id, "ADEV", "Phone"))
        keys = self.alice.device_keys()
        ch = self.upload(self.alice, device_keys=keys)
        self.assertEqual(ch.json_body, {"one_time_key_counts": {"signed_curve25519": 0}})
        res = self.query(self.bob, {self.alice.user_id: []})
        got = res["device_keys"][self.alice.user_id]["ADEV"]
        self.assertEqual(got["unsigned"], {"device_display_name": "Phone"})
        self.assertEqual({k: v for k, v in got.items() if k != "unsigned"}, keys)
        self.assertEqual(res["failures"], {})
        # Asking for a specific device, and for a device that does not exist.
        res = self.query(self.bob, {self.alice.user_id: ["ADEV", "NOPE"]})
        self.assertEqual(list(res["device_keys"][self.alice.user_id]), ["ADEV"])

    def test_bad_self_signature_refused(self) -> None:
        """Device keys whose self-signature does not verify are 400 M_INVALID_SIGNATURE."""
        keys = self.alice.device_keys()
        keys["algorithms"] = ["tampered"]
        ch = self.upload(self.alice, 400, device_keys=keys)
        self.assertEqual(ch.json_body["errcode"], "M_INVALID_SIGNATURE")
        unsigned = self.alice.device_keys()
        del unsigned["signatures"]
        self.assertEqual(self.upload(self.alice, 400, device_keys=unsigned).json_body["errcode"], "M_BAD_JSON")
        self.assertEqual(self.query(self.bob, {self.alice.user_id: []})["device_keys"][self.alice.user_id], {})

    def test_user_and_device_must_match_token(self) -> None:
        """device_keys for another user or device are refused."""
        keys = self.bob.device_keys()
        self.assertEqual(self.upload(self.alice, 400, device_keys=keys).json_body["errcode"], "M_INVALID_PARAM")

    def test_device_keys_immutable(self) -> None:
        """A second upload with different keys for the same device is 400; the same keys are fine."""
        first = self.alice.device_keys()
        self.upload(self.alice, device_keys=first)
        self.upload(self.alice, device_keys=first)
        self.alice.curve = "different" + self.alice.curve[9:]
        ch = self.upload(self.alice, 400, device_keys=self.alice.device_keys())
        self.assertEqual(ch.json_body["errcode"], "M_INVALID_PARAM")
        stored = self.query(self.bob, {self.alice.user_id: []})["device_keys"][self.alice.user_id]["ADEV"]
        self.assertEqual(stored["keys"], first["keys"])

    def test_one_time_key_counts(self) -> None:
        """Counts are per algorithm and re-uploading the same key id with the same key is harmless."""
        otks = self.alice.one_time_keys(5)
        ch = self.upload(self.alice, one_time_keys=otks)
        self.assertEqual(ch.json_body["one_time_key_counts"], {"signed_curve25519": 5})
        ch = self.upload(self.alice, one_time_keys={**otks, "curve25519:X1": "abc"})
        self.assertEqual(ch.json_body["one_time_key_counts"], {"signed_curve25519": 5, "curve25519": 1})
        counts = self.hs.run(self.e2e.sync_source.get_one_time_key_counts(self.alice.user_id, "ADEV"))
        self.assertEqual(counts, {"signed_curve25519": 5, "curve25519": 1})

    def test_conflicting_one_time_key_refused_and_changes_nothing(self) -> None:
        """A key id reused with other content is 400 and stores nothing of that upload."""
        self.upload(self.alice, one_time_keys=self.alice.one_time_keys(2))
        clash = self.alice.one_time_keys(3)  # AAAA0 and AAAA1 again, with new keys
        ch = self.upload(self.alice, 400, one_time_keys=clash, device_keys=self.alice.device_keys())
        self.assertEqual(ch.json_body["errcode"], "M_INVALID_PARAM")
        counts = self.hs.run(self.e2e.sync_source.get_one_time_key_counts(self.alice.user_id, "ADEV"))
        self.assertEqual(counts, {"signed_curve25519": 2})
        self.assertEqual(self.query(self.bob, {self.alice.user_id: []})["device_keys"][self.alice.user_id], {})

    def test_malformed_uploads(self) -> None:
        """Bad key ids and key shapes are 4xx."""
        for body in ({"one_time_keys": {"nocolon": "x"}}, {"one_time_keys": {"a:b": 5}},
                     {"one_time_keys": {"a:b": {"nokey": 1}}}, {"one_time_keys": []},
                     {"fallback_keys": {"a:1": "x", "a:2": "y"}}, {"device_keys": "x"}):
            ch = self.upload(self.alice, 400, **body)
            self.assertIn(ch.json_body["errcode"], ("M_BAD_JSON", "M_INVALID_PARAM"), body)

    def test_requires_auth(self) -> None:
        """The key endpoints need an access token."""
        for path in ("/keys/upload", "/keys/query", "/keys/claim"):
            self.assertEqual(self.post(path, {}, None, 401).json_body["errcode"], "M_MISSING_TOKEN")


class KeyClaimTests(E2ETestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.make_device("alice", "ADEV")
        self.bob = self.make_device("bob", "BDEV")

    def claim(self, alg: str = "signed_curve25519", device: str = "ADEV") -> dict:  # type: ignore[type-arg]
        body = self.post("/keys/claim", {"one_time_keys": {self.alice.user_id: {device: alg}}}, self.bob.token)
        return dict(body.json_body)

    def test_claim_hands_each_key_out_once_in_upload_order(self) -> None:
        """Keys come out oldest upload first, each once; then nothing."""
        first = self.alice.one_time_keys(2, 0)
        second = self.alice.one_time_keys(2, 10)
        self.upload(self.alice, one_time_keys=first)
        self.upload(self.alice, one_time_keys=second)
        seen = []
        for _ in range(4):
            got = self.claim()["one_time_keys"][self.alice.user_id]["ADEV"]
            seen.extend(got)
        self.assertEqual(sorted(seen[:2]), sorted(first))
        self.assertEqual(sorted(seen[2:]), sorted(second))
        self.assertEqual(len(set(seen)), 4)
        self.assertEqual(self.claim(), {"one_time_keys": {}, "failures": {}})
        self.assertEqual(self.claim()["one_time_keys"], {})

    def test_claim_returns_key_object(self) -> None:
        """The claimed key is the uploaded object."""
        otks = self.alice.one_time_keys(1)
        self.upload(self.alice, one_time_keys=otks)
        self.assertEqual(self.claim()["one_time_keys"], {self.alice.user_id: {"ADEV": otks}})

    def test_fallback_key_used_when_one_time_keys_run_out(self) -> None:
        """The fallback key is returned (repeatedly) once OTKs are gone and is then reported used."""
        src = self.e2e.sync_source
        fb = self.alice.one_time_keys(1, 99, fallback=True)
        self.upload(self.alice, one_time_keys=self.alice.one_time_keys(1), fallback_keys=fb)
        self.assertEqual(self.hs.run(src.get_unused_fallback_key_types(self.alice.user_id, "ADEV")),
                         ["signed_curve25519"])
        self.assertNotEqual(self.claim()["one_time_keys"][self.alice.user_id]["ADEV"], fb)
        self.assertEqual(self.hs.run(src.get_unused_fallback_key_types(self.alice.user_id, "ADEV")),
                         ["signed_curve25519"])
        self.assertEqual(self.claim()["one_time_keys"][self.alice.user_id]["ADEV"], fb)
        self.assertEqual(self.claim()["one_time_keys"][self.alice.user_id]["ADEV"], fb)
        self.assertEqual(self.hs.run(src.get_unused_fallback_key_types(self.alice.user_id, "ADEV")), [])
        # Re-uploading the same key keeps it used; a new key replaces it, unused.
        self.upload(self.alice, fallback_keys=fb)
        self.assertEqual(self.hs.run(src.get_unused_fallback_key_types(self.alice.user_id, "ADEV")), [])
        fb2 = self.alice.one_time_keys(1, 100, fallback=True)
        self.upload(self.alice, fallback_keys=fb2)
        self.assertEqual(self.hs.run(src.get_unused_fallback_key_types(self.alice.user_id, "ADEV")),
                         ["signed_curve25519"])
        self.assertEqual(self.claim()["one_time_keys"][self.alice.user_id]["ADEV"], fb2)

    def test_claim_unknown_device_and_algorithm(self) -> None:
        """Unknown devices or algorithms are simply missing from the result."""
        self.upload(self.alice, one_time_keys=self.alice.one_time_keys(1))
        self.assertEqual(self.claim(device="NOPE")["one_time_keys"], {})
        self.assertEqual(self.claim(alg="other")["one_time_keys"], {})

    def test_remote_users_are_failures(self) -> None:
        """Users on unreachable servers are listed under failures, locals still answered."""
        self.upload(self.alice, device_keys=self.alice.device_keys(), one_time_keys=self.alice.one_time_keys(1))
        body = self.post("/keys/claim", {"one_time_keys": {"@x:remote.example": {"D": "signed_curve25519"},
                                                           self.alice.user_id: {"ADEV": "signed_curve25519"}}},
                         self.bob.token).json_body
        self.assertIn("remote.example", body["failures"])
        self.assertIn(self.alice.user_id, body["one_time_keys"])
        body = self.query(self.bob, {"@x:remote.example": [], "@y:other.example": ["D"], self.alice.user_id: []})
        self.assertEqual(sorted(body["failures"]), ["other.example", "remote.example"])
        self.assertIn("ADEV", body["device_keys"][self.alice.user_id])

    def test_bad_claim_bodies(self) -> None:
        """Malformed claim and query bodies are 400."""
        for body in ({}, {"one_time_keys": []}, {"one_time_keys": {"notauser": {}}},
                     {"one_time_keys": {self.alice.user_id: {"D": 5}}}, {"one_time_keys": {}, "timeout": "x"}):
            self.post("/keys/claim", body, self.bob.token, 400)
        for body in ({}, {"device_keys": {self.alice.user_id: "x"}}, {"device_keys": {"x": []}}):
            self.post("/keys/query", body, self.bob.token, 400)

    def test_deleted_device_keys_disappear(self) -> None:
        """After the accounts code deletes a device and calls the hook, its keys are gone."""
        self.upload(self.alice, device_keys=self.alice.device_keys(), one_time_keys=self.alice.one_time_keys(2))
        before = self.token_now()
        self.hs.run(self.hs.components.accounts.devices.delete_devices(self.alice.user_id, ["ADEV"]))
        self.hs.run(self.e2e.device_lists.on_devices_deleted(self.alice.user_id, ["ADEV"]))
        self.assertEqual(self.query(self.bob, {self.alice.user_id: []})["device_keys"][self.alice.user_id], {})
        self.assertEqual(self.claim()["one_time_keys"], {})
        changed, _ = self.hs.run(self.e2e.sync_source.get_device_list_changes(
            self.alice.user_id, before, self.token_now()))
        self.assertEqual(changed, {self.alice.user_id})

    def test_query_result_is_not_mutated_by_signatures_copy(self) -> None:
        """Querying twice gives the same answer (merging signatures does not leak between calls)."""
        self.upload(self.alice, device_keys=self.alice.device_keys())
        a = copy.deepcopy(self.query(self.bob, {self.alice.user_id: []}))
        self.assertEqual(self.query(self.bob, {self.alice.user_id: []}), a)
