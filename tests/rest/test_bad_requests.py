"""A corpus of bad requests sent to every registered endpoint: never a 500, always a
Matrix error body on 4xx, and a refused request changes nothing in the database.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from twisted.trial import unittest

from matrixd.testing.homeserver import TestHomeserver, make_homeserver

# Values for path parameters, by name; anything else gets "x".
PATH_VALUES = {
    "room_id": "!nosuchroom:test",
    "room_id_or_alias": "#nosuchalias:test",
    "room_alias": "#nosuchalias:test",
    "event_id": "$nosuchevent",
    "user_id": "@alice:test",
    "event_type": "m.room.message",
    "state_key": "",
    "txn_id": "txn1",
    "device_id": "NOSUCHDEVICE",
    "server_name": "test",
    "media_id": "nosuchmedia",
}

WRONG_TYPES: dict[str, Any] = {
    "body": 1, "msgtype": [], "room_version": 5, "user_id": 5, "limit": "x", "preset": 3, "invite": "x",
    "name": {}, "topic": [], "displayname": 7, "avatar_url": 8, "password": 9, "type": None, "auth": "x",
    "identifier": 1, "device_id": [], "reason": 12, "visibility": 1, "typing": "yes", "timeout": "x",
    "presence": 3, "filter": "x", "room": "x", "new_version": 12, "content": "x", "tag": 1, "order": "x",
    "initial_state": {}, "creation_content": [], "power_level_content_override": 1, "is_direct": "x",
    "m.fully_read": 4, "m.read": 5, "server_name": 6, "search_term": 7, "refresh_token": 8,
    "logout_devices": "x", "devices": "x", "new_password": 1, "username": 2, "kind": 3,
}

BAD_QUERY = "?limit=abc&from=%ff%fe&dir=q&timeout=-5&since=garbage&filter=%7Bbad&width=x&height=-1&to=zz"


def concrete_path(pattern: str) -> Optional[str]:
    """A request path matching ``pattern`` (named groups from PATH_VALUES, alternations: first branch)."""
    src = pattern.lstrip("^").rstrip("$")
    out: list[str] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c == "(":
            depth, j = 1, i + 1
            while depth:
                if src[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(src[j], 0)
                j += 1
            group = src[i + 1:j - 1]
            optional = j < len(src) and src[j] == "?"
            m = re.match(r"\?P<(\w+)>", group)
            if m:
                out.append(PATH_VALUES.get(m.group(1), "x"))
            elif optional:
                pass
            else:
                first = group[2:] if group.startswith("?:") else group
                inner = concrete_path(first.split("|")[0])
                if inner is None:
                    return None
                out.append(inner)
            i = j + (1 if optional else 0)
        elif c == "\\":
            out.append(src[i + 1])
            i += 2
        elif c in "[]*+?{}|.":
            return None
        else:
            out.append(c)
            i += 1
    path = "".join(out)
    return path if re.fullmatch(pattern.lstrip("^").rstrip("$"), path) else None


class BadRequestCorpusTests(unittest.TestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        _, self.token = self.hs.create_user("alice", "password")
        self._tables = self._table_names()

    def _table_names(self) -> list[str]:
        db = self.hs.components.db
        if db.name == "postgres":
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        return sorted(r[0] for r in self.hs.run(db.execute("tables", sql)) if r[0] != "schema_version")

    def _fingerprint(self) -> tuple[int, ...]:
        sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in self._tables)
        return tuple(self.hs.run(self.hs.components.db.execute("fingerprint", sql))[0])

    def _endpoints(self) -> Iterator[tuple[str, str]]:
        seen = set()
        for method, pattern, _name in self.hs.site.resource.routes():  # type: ignore[attr-defined]
            path = concrete_path(pattern.pattern)
            self.assertIsNotNone(path, f"cannot build a path for {pattern.pattern}")
            assert path is not None
            if (method, path) not in seen:
                seen.add((method, path))
                yield method, path

    def _check(self, method: str, path: str, what: str, **kwargs: Any) -> None:
        before = self._fingerprint()
        ch = self.hs.request(method, path, **kwargs)
        where = f"{what}: {method} {path} -> {ch.code} {ch.result_body[:200]!r}"
        self.assertLess(ch.code, 500, where)
        if ch.code >= 400:
            body = ch.json_body
            self.assertIsInstance(body, dict, where)
            self.assertTrue(str(body.get("errcode", "")).startswith("M_"), where)
            self.assertEqual(self._fingerprint(), before, "refused request changed the database: " + where)

    def test_corpus(self) -> None:
        """Every endpoint answers every bad request with a clean 4xx (or a harmless success)."""
        endpoints = list(self._endpoints())
        self.assertGreaterEqual(len(endpoints), 3)
        for method, path in endpoints:
            self._check(method, path, "no token")
            self._check(method, path, "unknown token", access_token="not-a-token")
            self._check(method, path + BAD_QUERY, "bad query", access_token=self.token)
            if method in ("POST", "PUT"):
                for body, what in [(b"{not json", "invalid json"), (b"[]", "array body"), (b'"s"', "string body"),
                                   (b'{"a": NaN}', "NaN"), (b"\xff\xfe{}", "bad utf-8"),
                                   (WRONG_TYPES, "wrong types")]:
                    self._check(method, path, what, content=body, access_token=self.token)

    def test_oversized_body(self) -> None:
        """A body over the listener's limit is 413 M_TOO_LARGE."""
        ch = self.hs.request("POST", "/_matrix/client/v3/createRoom", b"{" + b" " * (12 * 1024 * 1024) + b"}",
                             access_token=self.token)
        self.assertEqual(ch.code, 413)
        self.assertEqual(ch.json_body["errcode"], "M_TOO_LARGE")

    def test_unknown_endpoint_and_method(self) -> None:
        """Unknown paths are 404 and known paths with another method 405, both M_UNRECOGNIZED."""
        ch = self.hs.request("GET", "/_matrix/client/v3/no/such/thing", access_token=self.token)
        self.assertEqual((ch.code, ch.json_body["errcode"]), (404, "M_UNRECOGNIZED"))
        ch = self.hs.request("DELETE", "/_matrix/client/versions")
        self.assertEqual((ch.code, ch.json_body["errcode"]), (405, "M_UNRECOGNIZED"))
