"""Receipt checks of many PDUs at once (check_pdus): same verdicts as check_pdu, keys looked up once."""

from __future__ import annotations

import copy
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.events.event import Event
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.federation.inbound.pdu_checks import PduBatch, PduDropped, check_pdu, check_pdus
from matrixd.testing.federation import FakeRemoteServer
from tests.federation.utils import REMOTE, make_federating_homeserver

DAY_MS = 24 * 3600 * 1000
OTHER = "other.test"


class CheckPdusTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.hs, self.network, self.remote = make_federating_homeserver(self)
        self.other = FakeRemoteServer(self.network, OTHER)
        self.keyring = self.hs.components.federation.keyring
        self.now = int(self.hs.reactor.seconds() * 1000)

    def pdu(self, version: str, body: str, server: FakeRemoteServer | None = None, ts: int | None = None,
            depth: int = 3) -> dict[str, Any]:
        server = server or self.remote
        pdu: dict[str, Any] = {
            "type": "m.room.message", "room_id": f"!room:{REMOTE}", "sender": f"@bob:{server.server_name}",
            "content": {"msgtype": "m.text", "body": body}, "origin_server_ts": ts or self.now, "depth": depth,
            "prev_events": [], "auth_events": [],
        }
        if version in ("1", "2"):
            pdu["event_id"] = f"${body}:{server.server_name}"
            pdu["origin"] = server.server_name
        return server.sign_pdu(KNOWN_ROOM_VERSIONS[version], pdu)

    def key_fetches(self) -> int:
        return sum(1 for _m, uri in self.network.requests_sent if uri.endswith("/_matrix/key/v2/server"))

    def check(self, version: str, pdus: list[Any]) -> list[Any]:
        return self.network.run(check_pdus(self.keyring, KNOWN_ROOM_VERSIONS[version], pdus))

    def check_one(self, version: str, pdu: Any) -> Any:
        try:
            return self.network.run(check_pdu(self.keyring, KNOWN_ROOM_VERSIONS[version], pdu))
        except PduDropped as e:
            return e

    def assert_same_verdict(self, version: str, batch_result: Any, pdu: Any) -> None:
        single = self.check_one(version, pdu)
        if isinstance(single, PduDropped):
            self.assertIsInstance(batch_result, PduDropped)
        else:
            self.assertIsInstance(batch_result, Event)
            self.assertEqual(batch_result.event_id, single.event_id)
            self.assertEqual(batch_result.get_pdu_json(), single.get_pdu_json())

    def test_verdicts_match_check_pdu_in_order(self) -> None:
        """Good, tampered (redacted), forged and malformed PDUs get check_pdu's verdicts, in input order."""
        for version in ("1", "4", "10", "11"):
            good = self.pdu(version, "good")
            tampered = {**self.pdu(version, "tampered"), "content": {"msgtype": "m.text", "body": "changed"}}
            forged = {**self.pdu(version, "forged"), "type": "m.room.topic"}
            malformed = {**self.pdu(version, "malformed"), "depth": "deep"}
            other = self.pdu(version, "other", server=self.other)
            pdus: list[Any] = [good, tampered, "not an object", forged, malformed, other]
            results = self.check(version, pdus)
            self.assertEqual(len(results), len(pdus))
            self.assertIsInstance(results[0], Event)
            self.assertEqual(results[0].content["body"], "good")
            self.assertEqual(results[1].content, {})  # redacted, same event id as the one sent
            self.assertIsInstance(results[2], PduDropped)
            self.assertIsInstance(results[3], PduDropped)
            self.assertIsInstance(results[4], PduDropped)
            self.assertEqual(results[5].sender, f"@bob:{OTHER}")
            for result, pdu in zip(results, pdus):
                self.assert_same_verdict(version, result, pdu)

    def test_keys_fetched_once_per_server(self) -> None:
        """A batch of many PDUs of two servers fetches each server's keys once."""
        pdus = [self.pdu("10", f"m{i}", server=self.remote if i % 2 else self.other, depth=i + 1)
                for i in range(40)]
        results = self.check("10", pdus)
        self.assertTrue(all(isinstance(r, Event) for r in results))
        self.assertEqual(self.key_fetches(), 2)

    def test_key_validity_still_enforced_from_v5(self) -> None:
        """A PDU signed after its key's validity is dropped from v5; v4 accepts it (as check_pdu does)."""
        late = self.now + 30 * DAY_MS
        on_time, too_late = self.pdu("5", "ok"), self.pdu("5", "late", ts=late)
        results = self.check("5", [on_time, too_late])
        self.assertIsInstance(results[0], Event)
        self.assertIsInstance(results[1], PduDropped)
        self.assertIsInstance(self.check("4", [self.pdu("4", "late", ts=late)])[0], Event)

    def test_server_only_unsigned_keys_are_stripped(self) -> None:
        """``unsigned`` keys only the receiving server may set are removed, as check_pdu does."""
        pdu = {**self.pdu("10", "x"), "unsigned": {"membership": "join", "age": 5}}
        [result] = self.check("10", [pdu])
        self.assertEqual(result.get_pdu_json()["unsigned"], {"age": 5})

    def test_unreachable_signer_is_asked_once(self) -> None:
        """PDUs of a server whose keys cannot be fetched are all dropped after one key lookup, not one each."""
        gone = FakeRemoteServer(self.network, "gone.test")
        pdus = [self.pdu("10", f"g{i}", server=gone, depth=i + 1) for i in range(5)]
        self.network.remove_server("gone.test")
        before = self.key_fetches()
        results = self.check("10", pdus)
        self.assertTrue(all(isinstance(r, PduDropped) for r in results))
        # One lookup for the batch (the key fetch itself may be retried), not one per PDU.
        self.assertLessEqual(self.key_fetches() - before, 2)
        for result, pdu in zip(results, pdus):
            self.assert_same_verdict("10", result, pdu)

    def test_batch_in_steps_verifies_lazily_with_the_same_verdicts(self) -> None:
        """PduBatch: ids known before any signature is checked; each PDU verified when asked, as check_pdus."""
        for version in ("4", "10"):
            good = self.pdu(version, "good")
            tampered = {**self.pdu(version, "tampered"), "content": {"msgtype": "m.text", "body": "changed"}}
            forged = {**self.pdu(version, "forged"), "type": "m.room.topic"}
            pdus: list[Any] = [good, "not an object", tampered, forged]
            batch = PduBatch(KNOWN_ROOM_VERSIONS[version], pdus)
            self.network.run(batch.fetch_keys(self.keyring))
            self.network.run(batch.check_unbatched(self.keyring))
            # The malformed one is not a candidate; the forged one is, until verified.
            self.assertEqual([i for i, _ in batch.candidates()], [0, 2, 3])
            expected = self.check(version, pdus)
            for i in (3, 0, 2, 1):  # any order
                result = batch.result(i)
                self.assertIs(batch.result(i), result)  # verified once
                if isinstance(expected[i], PduDropped):
                    self.assertIsInstance(result, PduDropped)
                else:
                    self.assertIsInstance(result, Event)
                    self.assertEqual(result.get_pdu_json(), expected[i].get_pdu_json())
            self.assertEqual([i for i, _ in batch.candidates()], [0, 2])

    def test_owned_batch_trims_in_place_with_the_same_verdicts(self) -> None:
        """An owned batch (a parsed /state answer) strips server-only ``unsigned`` keys in place and
        shares the values its PDUs repeat; a batch that does not own its PDUs leaves them untouched."""
        def pdus() -> list[Any]:
            out: list[Any] = [{**self.pdu("10", f"m{i}", depth=i + 1), "unsigned": {"membership": "join", "age": i}}
                              for i in range(3)]
            out.append({**self.pdu("10", "tampered"), "content": {"msgtype": "m.text", "body": "changed"}})
            return out

        expected = self.check("10", pdus())
        given = pdus()
        snapshot = copy.deepcopy(given)
        borrowed = PduBatch(KNOWN_ROOM_VERSIONS["10"], given)
        self.network.run(borrowed.fetch_keys(self.keyring))
        self.assertEqual(given, snapshot)

        owned_pdus = pdus()
        owned = PduBatch(KNOWN_ROOM_VERSIONS["10"], owned_pdus, owned=True)
        self.network.run(owned.fetch_keys(self.keyring))
        self.network.run(owned.check_unbatched(self.keyring))
        self.assertEqual([p["unsigned"] for p in owned_pdus[:3]], [{"age": 0}, {"age": 1}, {"age": 2}])
        senders = [p["sender"] for p in owned_pdus]
        self.assertTrue(all(s is senders[0] for s in senders))  # one object, not four equal strings
        for i, want in enumerate(expected):
            got = owned.result(i)
            if isinstance(want, PduDropped):
                self.assertIsInstance(got, PduDropped)
            else:
                self.assertIsInstance(got, Event)
                self.assertEqual(got.get_pdu_json(), want.get_pdu_json())
        self.assertEqual(owned.result(3).content, {})  # the tampered one, redacted

    def test_servers_keys_looked_up_at_once(self) -> None:
        """The keys of different servers are looked up concurrently (a large room has many servers)."""
        third = FakeRemoteServer(self.network, "third.test")
        pdus = [self.pdu("10", f"c{i}", server=server, depth=i + 1)
                for i, server in enumerate((self.remote, self.other, third))]
        real = self.keyring.get_verify_keys
        started: list[str] = []
        gates: list["defer.Deferred[None]"] = []

        async def gated(server_name: str, key_ids: Any, min_valid: int) -> Any:
            started.append(server_name)
            gate: "defer.Deferred[None]" = defer.Deferred()
            gates.append(gate)
            await gate
            return await real(server_name, key_ids, min_valid)

        self.keyring.get_verify_keys = gated  # type: ignore[method-assign]
        d = defer.ensureDeferred(check_pdus(self.keyring, KNOWN_ROOM_VERSIONS["10"], pdus))
        self.assertEqual(sorted(started), sorted([REMOTE, OTHER, "third.test"]))  # none answered yet
        for gate in gates:
            gate.callback(None)
        results = self.network.run(d)
        self.assertTrue(all(isinstance(r, Event) for r in results))
