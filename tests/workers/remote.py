"""A remote homeserver on loopback for multi-process tests: HTTPS on 127.0.0.1, named ``127.0.0.1:<port>``.

:class:`LoopbackRemote` serves the federation requests the deployment sends it
(``PUT /_matrix/federation/v1/send/{txnId}`` is recorded and accepted; anything
else answers 404 ``M_UNRECOGNIZED``) with a self-signed certificate, from a
thread of the test process.  It signs what it sends the deployment with its
own key (which the test stores in the deployment's key table) and can join a
public room through ``make_join``/``send_join`` and send PDUs in a transaction.

The deployment must trust it: ``federation_verify_certificates: false`` and
``ip_range_whitelist: [127.0.0.0/8]`` (see :class:`tests.workers.deployment.Deployment`).
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import signedjson.key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from matrixd.crypto.request_auth import sign_request
from matrixd.events.event import Event
from matrixd.events.hashing import add_content_hash
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.events.signing import sign_event_dict
from tests.workers.deployment import SERVER_NAME, Deployment


def _self_signed(directory: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "remote.crt"), os.path.join(directory, "remote.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class LoopbackRemote:
    def __init__(self, d: Deployment, port: int, directory: str) -> None:
        self.d = d
        self.port = port
        self.server_name = f"127.0.0.1:{port}"
        self.key = signedjson.key.generate_signing_key("r1")
        self.transactions: list[tuple[str, dict[str, Any]]] = []  # (X-Matrix origin, body)
        self.lock = threading.Lock()
        cert, key = _self_signed(directory)
        remote = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a connection idle this long (handshake included) is dropped

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.startswith("/_matrix/federation/v1/send/"):
                    auth = self.headers.get("Authorization") or ""
                    origin = auth.split('origin="', 1)[1].split('"', 1)[0] if 'origin="' in auth else ""
                    with remote.lock:
                        remote.transactions.append((origin, body))
                    self._answer(200, {"pdus": {p.get("event_id", str(i)): {} for i, p in
                                                enumerate(body.get("pdus", []))}})
                else:
                    self._answer(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            def do_GET(self) -> None:
                self._answer(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            do_POST = do_PUT

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # The handshake happens in each connection's own thread (on its first read), not in the
        # accept loop, where one connection that never finishes it would stall all the others.
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        d.testcase.addCleanup(self.close)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what the deployment sent us -------------------------------------------------

    def pdus(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for _o, body in self.transactions for p in body.get("pdus", [])]

    def edus(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for _o, body in self.transactions for e in body.get("edus", [])]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    # -- talking to the deployment (through nginx) ------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        auth = sign_request(self.key, self.server_name, SERVER_NAME, method, path, body).decode()
        return self.d.request(method, path, body, headers={"Authorization": auth})

    def join(self, room_id: str, localpart: str) -> dict[str, Any]:
        """Join ``@localpart:<us>`` to a public room; returns the join event as sent (with ``event_id``)."""
        user_id = f"@{localpart}:{self.server_name}"
        q = urllib.parse.quote
        made = self.request("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}?ver=12&ver=11&ver=10")
        assert made.code == 200, (made.code, made.body)
        version = made.json["room_version"]
        template = dict(made.json["event"])
        template.setdefault("origin_server_ts", int(time.time() * 1000))
        template["origin"] = self.server_name
        event = self.sign(version, template)
        sent = self.request("PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event['event_id'])}",
                            {k: v for k, v in event.items() if k != "event_id"})
        assert sent.code == 200, (sent.code, sent.body)
        event["room_version"] = version
        return event

    def sign(self, room_version: str, pdu: dict[str, Any]) -> dict[str, Any]:
        rv = KNOWN_ROOM_VERSIONS[room_version]
        signed = sign_event_dict(rv, add_content_hash(pdu), self.server_name, self.key)
        return {**signed, "event_id": Event(dict(signed), rv).event_id}

    def send_transaction(self, txn_id: str, pdus: list[dict[str, Any]], edus: Optional[list[Any]] = None) -> Any:
        body = {"origin": self.server_name, "origin_server_ts": int(time.time() * 1000),
                "pdus": [{k: v for k, v in p.items() if k != "event_id"} for p in pdus], "edus": edus or []}
        return self.request("PUT", f"/_matrix/federation/v1/send/{txn_id}", body)
