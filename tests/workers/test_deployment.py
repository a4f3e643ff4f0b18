"""Multi-process: master + sync worker + federation reader + media worker + federation sender behind nginx.

Real processes on loopback (started by scripts/matrixdctl), a fresh PostgreSQL
database per test, nginx configured from contrib/nginx's template.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any, Optional

import psycopg2
import signedjson.key
from twisted.trial import unittest

from matrixd.crypto.keys import encode_verify_key
from matrixd.crypto.request_auth import sign_request
from matrixd.media.multipart import parse_media_multipart
from tests.workers.deployment import SERVER_NAME, SYNC_FILTER, Deployment, Response
from tests.workers.remote import LoopbackRemote

BURST = 1000
ROOMS = 4


class _Burst:
    """Sends ``count`` messages from several threads (one room each, so the master's per-room ordering does not
    serialise them), retrying each with its txn id until acknowledged."""

    def __init__(self, d: Deployment, rooms: list[str], token: str, count: int, prefix: str) -> None:
        self.d = d
        self.rooms = rooms
        self.token = token
        self.count = count
        self.prefix = prefix
        self.acked: dict[int, str] = {}  # message number -> event id
        self.lock = threading.Lock()
        self.progress = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(rooms))]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _run(self, index: int) -> None:
        room = self.rooms[index]
        for n in range(index, self.count, len(self.rooms)):
            path = f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{self.prefix}-{n}"
            for _attempt in range(600):
                try:
                    resp = self.d.request("PUT", path, {"msgtype": "m.text", "body": f"{self.prefix} {n}"},
                                          self.token, timeout=10)
                except OSError:
                    resp = None
                if resp is not None and resp.code == 200:
                    with self.lock:
                        self.acked[n] = resp.json["event_id"]
                        self.progress += 1
                    break
                time.sleep(0.1)  # the master is restarting: retry the same transaction id


class _SyncReader:
    """A client following /sync through nginx from a token, recording every message it is given."""

    def __init__(self, d: Deployment, token: str, since: str) -> None:
        self.d = d
        self.token = token
        self.since = since
        self.received: list[str] = []
        self.bodies: list[str] = []
        self.errors = 0
        self.limited = False

    def sync_until(self, wanted: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.received) and time.monotonic() < deadline:
            self.sync_once()

    def sync_once(self) -> None:
        path = f"/_matrix/client/v3/sync?timeout=2000&filter={SYNC_FILTER}&since={urllib.parse.quote(self.since)}"
        try:
            resp: Optional[Response] = self.d.request("GET", path, token=self.token, timeout=15)
        except OSError:
            resp = None
        if resp is None or resp.code != 200:
            self.errors += 1
            time.sleep(0.1)
            return
        body = resp.json
        for room in body["rooms"]["join"].values():
            self.limited = self.limited or room["timeline"]["limited"]
            for event in room["timeline"]["events"]:
                if event["type"] == "m.room.message":
                    self.received.append(event["event_id"])
                    self.bodies.append(event["content"]["body"])
        self.since = body["next_batch"]


class DeploymentTests(unittest.TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.d = Deployment(self)
        self.d.start()

    def _rooms(self, localpart: str, count: int = 1) -> tuple[str, str, list[str]]:
        user_id, _token = self.d.register(localpart)
        token = self.d.login(localpart)
        rooms = []
        for _ in range(count):
            resp = self.d.request("POST", "/_matrix/client/v3/createRoom", {}, token)
            self.assertEqual(resp.code, 200, resp.body)
            rooms.append(resp.json["room_id"])
        return user_id, token, rooms

    def _initial_sync(self, token: str) -> str:
        resp = self.d.request("GET", f"/_matrix/client/v3/sync?filter={SYNC_FILTER}", token=token)
        self.assertEqual(resp.code, 200, resp.body)
        since: str = resp.json["next_batch"]
        return since

    def test_client_media_and_federation_through_nginx(self) -> None:
        """Register, send via the master and sync via the sync worker; media via the media worker; federation
        (unsigned and signed requests) via the federation reader; every process serves /metrics."""
        d = self.d
        alice, token, (room,) = self._rooms("alice")
        reader = _SyncReader(d, token, self._initial_sync(token))
        sent = d.request("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/1",
                         {"msgtype": "m.text", "body": "hello workers"}, token)
        self.assertEqual(sent.code, 200, sent.body)
        reader.sync_until({sent.json["event_id"]}, 20)
        self.assertEqual(reader.received, [sent.json["event_id"]])
        self.assertGreaterEqual(d.servlet_requests("sync1", "SyncServlet"), 2)
        self.assertEqual(d.servlet_requests("main", "SyncServlet"), 0)
        self.assertEqual(d.servlet_requests("sync1", "RoomSendServlet"), 0)

        # A room read routed to the sync worker, served from its replica.
        messages = d.request("GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5", token=token)
        self.assertEqual(messages.code, 200, messages.body)
        self.assertEqual(messages.json["chunk"][0]["event_id"], sent.json["event_id"])
        self.assertEqual(d.servlet_requests("sync1", "RoomMessagesServlet"), 1)

        # Media: upload and download through nginx land on the media worker.
        png = bytes.fromhex("89504e470d0a1a0a") + b"not really a png"
        up = d.request("POST", "/_matrix/media/v3/upload?filename=a.bin", token=token, raw=png,
                       headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(up.code, 200, up.body)
        mxc = up.json["content_uri"]
        media_id = mxc.rsplit("/", 1)[1]
        down = d.request("GET", f"/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}", token=token)
        self.assertEqual((down.code, down.body), (200, png))
        self.assertEqual(d.servlet_requests("media1", "UploadServlet"), 1)
        self.assertEqual(d.servlet_requests("media1", "DownloadServlet"), 1)
        self.assertEqual(d.servlet_requests("main", "UploadServlet"), 0)

        # Federation: unsigned endpoints, then a request signed by a remote server whose key the database knows.
        version = d.request("GET", "/_matrix/federation/v1/version")
        self.assertEqual(version.code, 200, version.body)
        keys = d.request("GET", "/_matrix/key/v2/server")
        self.assertEqual((keys.code, keys.json["server_name"]), (200, SERVER_NAME))
        remote_key = signedjson.key.generate_signing_key("r1")
        self._store_remote_key("remote.test", remote_key)
        uri = f"/_matrix/federation/v1/query/profile?user_id={urllib.parse.quote(alice)}"
        auth = sign_request(remote_key, "remote.test", SERVER_NAME, "GET", uri).decode()
        profile = d.request("GET", uri, headers={"Authorization": auth})
        self.assertEqual(profile.code, 200, profile.body)
        self.assertEqual(profile.json.get("displayname"), "alice")
        forged = d.request("GET", uri, headers={"Authorization": auth.replace("remote.test", "other.test")})
        self.assertEqual(forged.code, 401, forged.body)
        self.assertEqual(d.servlet_requests("fedreader1", "QueryProfileServlet"), 2)
        self.assertEqual(d.servlet_requests("main", "QueryProfileServlet"), 0)

        # Federation media (signed): routed to the media worker, which answers multipart/mixed.
        media_uri = f"/_matrix/federation/v1/media/download/{media_id}"
        media_auth = sign_request(remote_key, "remote.test", SERVER_NAME, "GET", media_uri).decode()
        fed_media = d.request("GET", media_uri, headers={"Authorization": media_auth})
        self.assertEqual(fed_media.code, 200, fed_media.body)
        content_type = {k.lower(): v for k, v in fed_media.headers.items()}["content-type"]
        _meta, part = parse_media_multipart(content_type, fed_media.body)
        self.assertEqual((part.body, part.content_type), (png, "application/octet-stream"))
        self.assertEqual(d.servlet_requests("media1", "FederationMediaDownloadServlet"), 1)
        self.assertEqual(d.servlet_requests("fedreader1", "FederationMediaDownloadServlet"), 0)

        # Every process serves metrics; the federation sender is connected and following the events stream.
        for name in ("main", "sync1", "fedreader1", "media1", "fedsender1"):
            self.assertIn("process_cpu_seconds_total", d.metrics(name))
        self.assertIn("matrixd_replication_connected_workers 4.0", d.metrics("main"))
        self.assertIn('matrixd_replication_stream_position{stream="events"}', d.metrics("fedsender1"))
        # The replication metrics of the issue: lag per stream and commands received on workers, commands
        # sent and connected workers on the master, catch-up counters everywhere.
        sync_metrics, main_metrics = d.metrics("sync1"), d.metrics("main")
        for stream in ("events", "receipts", "typing", "caches"):
            self.assertIn(f'matrixd_replication_stream_lag{{stream="{stream}"}} 0.0', sync_metrics)
        self.assertIn('matrixd_replication_commands_received_total{verb="RDATA"}', sync_metrics)
        self.assertIn('matrixd_replication_commands_sent_total{verb="RDATA"}', main_metrics)
        self.assertIn("# TYPE matrixd_replication_catchups_total counter", sync_metrics)

    def test_federation_in_through_reader_out_through_sender(self) -> None:
        """Two remote servers (HTTPS on loopback) join a room through the master; a transaction one of them
        sends arrives at the federation reader and is persisted by the master; outbound federation (local
        events, the master's hand-offs, to-device EDUs) leaves from the federation sender worker only."""
        d = self.d
        alice, token = d.register("alice")
        room = d.request("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"}, token)
        self.assertEqual(room.code, 200, room.body)
        room_id = room.json["room_id"]
        remotes = [LoopbackRemote(d, d.ports[name], d.dir) for name in ("remote1", "remote2")]
        for remote in remotes:
            self._store_remote_key(remote.server_name, remote.key)
        r1, r2 = remotes
        join1 = r1.join(room_id, "rem")
        join2 = r2.join(room_id, "other")
        # The master served r2's join; passing it on to r1 is the sender worker's job (federation_outbox).
        self.assertTrue(r1.wait_for(lambda: join2["event_id"] in {p.get("event_id") or _event_id(p, join2)
                                                                   for p in r1.pdus()}),
                        f"r1 never got r2's join: {r1.transactions}")

        # Inbound: r1 sends a message in a transaction; nginx routes /send to the federation reader.
        reader = _SyncReader(d, token, self._initial_sync(token))
        state = d.request("GET", f"/_matrix/client/v3/rooms/{room_id}/state", token=token)
        ids = {(e["type"], e["state_key"]): e["event_id"] for e in state.json}
        message = r1.sign(join1["room_version"], {
            "type": "m.room.message", "room_id": room_id, "sender": f"@rem:{r1.server_name}",
            "content": {"msgtype": "m.text", "body": "hello from afar"}, "origin_server_ts": int(time.time() * 1000),
            "depth": join2["depth"] + 1, "prev_events": [join2["event_id"]],
            "auth_events": sorted({ids[("m.room.power_levels", "")], join1["event_id"]}
                                  | ({ids[("m.room.create", "")]} if join1["room_version"] not in ("12",)
                                     else set())),
        })
        answer = r1.send_transaction("t1", [message])
        self.assertEqual(answer.code, 200, answer.body)
        self.assertEqual(answer.json, {"pdus": {message["event_id"]: {}}})
        again = r1.send_transaction("t1", [message])  # a retried transaction: the same answer, nothing twice
        self.assertEqual((again.code, again.json), (200, answer.json))
        self.assertEqual(d.servlet_requests("fedreader1", "SendTransactionServlet"), 2)
        self.assertEqual(d.servlet_requests("main", "SendTransactionServlet"), 0)
        reader.sync_until({message["event_id"]}, 20)
        self.assertEqual(reader.bodies, ["hello from afar"])

        # Outbound: alice's message and a to-device message reach both remotes, from the sender worker.
        sent = d.request("PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/out1",
                         {"msgtype": "m.text", "body": "hello out there"}, token)
        self.assertEqual(sent.code, 200, sent.body)
        to_device = d.request("PUT", "/_matrix/client/v3/sendToDevice/m.test/td1",
                              {"messages": {f"@rem:{r1.server_name}": {"DEV": {"hi": 1}}}}, token)
        self.assertEqual(to_device.code, 200, to_device.body)
        for remote in remotes:
            self.assertTrue(remote.wait_for(lambda r=remote: any(
                p["content"].get("body") == "hello out there" for p in r.pdus())), remote.transactions)
            self.assertEqual({o for o, _b in remote.transactions}, {SERVER_NAME})
        self.assertTrue(r1.wait_for(lambda: any(e["edu_type"] == "m.direct_to_device" for e in r1.edus())),
                        r1.transactions)
        # Typing and receipts (written on the master, replicated to the sender) go out as EDUs too.
        typing = d.request("PUT", f"/_matrix/client/v3/rooms/{room_id}/typing/{urllib.parse.quote(alice)}",
                           {"typing": True, "timeout": 30000}, token)
        self.assertEqual(typing.code, 200, typing.body)
        receipt = d.request("POST", f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{sent.json['event_id']}",
                            {}, token)
        self.assertEqual(receipt.code, 200, receipt.body)
        for edu_type in ("m.typing", "m.receipt"):
            self.assertTrue(r2.wait_for(lambda t=edu_type: any(e["edu_type"] == t for e in r2.edus())),
                            (edu_type, r2.transactions, _sender_lines(d.log("fedsender1"))))
        sender_metrics, main_metrics = d.metrics("fedsender1"), d.metrics("main")
        self.assertIn(f'matrixd_federation_sender_transactions_total{{destination="{r1.server_name}"}}',
                      sender_metrics)
        self.assertNotIn("matrixd_federation_sender_transactions_total{", main_metrics)

    def _store_remote_key(self, server_name: str, key: Any) -> None:
        conn = psycopg2.connect(**{**self.d._pg_params(), "dbname": self.d.dbname})
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO server_signature_keys (server_name, key_id, from_server, ts_added_ms,"
                    " ts_valid_until_ms, verify_key) VALUES (%s, %s, %s, %s, %s, %s)",
                    (server_name, f"ed25519:{key.version}", server_name, int(time.time() * 1000),
                     int(time.time() * 1000) + 86_400_000, encode_verify_key(key.verify_key)),
                )
        finally:
            conn.close()

    def test_sync_worker_killed_mid_burst(self) -> None:
        """kill -9 of the sync worker during a 1,000-message burst: restarted, the client's /sync (from its
        last next_batch) delivers every message exactly once."""
        d = self.d
        _bob, token, rooms = self._rooms("bob", ROOMS)
        reader = _SyncReader(d, token, self._initial_sync(token))
        burst = _Burst(d, rooms, token, BURST, "k")
        burst.start()
        while burst.progress < BURST // 3:
            reader.sync_once()
        d.kill9("sync1")
        down = reader.errors
        reader.sync_once()  # nginx cannot reach the worker: the client keeps its token and retries
        self.assertGreater(reader.errors, down)
        d.matrixdctl("start", "sync1")
        burst.join(120)
        self.assertEqual(len(burst.acked), BURST)
        reader.sync_until(set(burst.acked.values()), 60)
        self.assertFalse(reader.limited)
        self.assertEqual(len(reader.received), len(set(reader.received)), "an event was delivered twice")
        self.assertEqual(set(reader.received), set(burst.acked.values()))

    def test_master_restarted_mid_burst(self) -> None:
        """The master killed and restarted mid-burst: workers reconnect and catch up, nothing acknowledged is lost."""
        d = self.d
        _carol, token, rooms = self._rooms("carol", ROOMS)
        reader = _SyncReader(d, token, self._initial_sync(token))
        burst = _Burst(d, rooms, token, BURST, "m")
        burst.start()
        while burst.progress < BURST // 3:
            reader.sync_once()
        d.kill9("main")
        acked_before = dict(burst.acked)
        d.matrixdctl("start", "main")
        burst.join(150)
        self.assertEqual(len(burst.acked), BURST)
        for n, event_id in acked_before.items():
            self.assertEqual(burst.acked[n], event_id)
        reader.sync_until(set(burst.acked.values()), 60)
        self.assertFalse(reader.limited)
        self.assertEqual(len(reader.received), len(set(reader.received)), "an event was delivered twice")
        self.assertLessEqual(set(burst.acked.values()), set(reader.received), "an acknowledged event was lost")
        # A send the master persisted but never answered (killed in between) is retried by the client; the
        # retry may persist a second copy, since the txn id is recorded after the event (see docs/workers.md).
        # Only those in-flight sends, at most one per sending thread, may appear twice.
        extra = [b for e, b in zip(reader.received, reader.bodies) if e not in set(burst.acked.values())]
        self.assertLessEqual(len(extra), ROOMS)
        self.assertEqual(sorted(set(reader.bodies)), sorted(f"m {n}" for n in range(BURST)))
        # Every worker came back to the new master.
        self.assertIn("matrixd_replication_connected_workers 4.0", d.metrics("main"))

    def test_matrixdctl_status_and_stop(self) -> None:
        """matrixdctl reports every process running, stops them all (SIGTERM), and then reports them stopped."""
        status = self.d.matrixdctl("status")
        for name in ("main", "sync1", "fedreader1", "media1", "fedsender1"):
            self.assertIn(f"{name} (", status.stdout)
        self.assertEqual(status.stdout.count("running"), 5, status.stdout)
        pids = [self.d.pid(name) for name in ("main", "sync1")]
        self.d.matrixdctl("stop")
        after = self.d.matrixdctl("status", check=False)
        self.assertEqual(after.returncode, 3, after.stdout)
        self.assertEqual(after.stdout.count("stopped"), 5, after.stdout)
        for pid in pids:
            self.assertFalse(_running(pid))
        self.assertIn("Shutting down", self.d.log("sync1"))


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _event_id(pdu: dict[str, Any], like: dict[str, Any]) -> str:
    """The id of a received PDU (hash-based formats carry none), in the room version of ``like``."""
    from matrixd.events.event import Event
    from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS

    return Event(dict(pdu), KNOWN_ROOM_VERSIONS[like["room_version"]]).event_id


def _sender_lines(log: str) -> list[str]:
    """The federation sender's own log lines (not the access log), for a failure message."""
    return [line for line in log.splitlines()
            if "matrixd.federation" in line or "Traceback" in line or "Error" in line][-30:]
