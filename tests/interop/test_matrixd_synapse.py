"""matrixd and Synapse federating over TLS on loopback, in both directions (issue #4)."""

from __future__ import annotations

from tests.interop import scenario


class MatrixdHostsSynapseJoins(scenario.InteropScenario):
    """Rooms on matrixd, joined by a Synapse user."""

    KINDS = ("matrixd", "synapse")
    HOST = 0

    async def test_pair_serves_federation_over_tls(self) -> None:
        """The harness: each server's federation port speaks TLS (self-signed) and serves its own signed
        keys under its IP-literal server name; the client port is plain HTTP."""
        import json

        import signedjson.key
        import signedjson.sign
        import treq
        from twisted.internet import reactor

        from matrixd.testing.federation_pair import _insecure_agent

        for server in self.pair.servers:
            self.assertTrue(server.federation_url.startswith("https://127.0.0.1:"))
            self.assertEqual(server.server_name, "127.0.0.1:" + server.federation_url.rsplit(":", 1)[1])
            resp = await treq.get(server.federation_url + "/_matrix/key/v2/server", agent=_insecure_agent(reactor))
            keys = json.loads(await resp.content())
            self.assertEqual((resp.code, keys["server_name"]), (200, server.server_name), server.kind)
            for key_id, entry in keys["verify_keys"].items():
                verify_key = signedjson.key.decode_verify_key_bytes(
                    key_id, signedjson.key.decode_base64(entry["key"]))
                signedjson.sign.verify_signed_json(keys, server.server_name, verify_key)
            self.assertTrue(server.client_url.startswith("http://127.0.0.1:"))


class SynapseHostsMatrixdJoins(scenario.InteropScenario):
    """Rooms on Synapse, joined by a matrixd user."""

    KINDS = ("matrixd", "synapse")
    HOST = 1

