"""Request parsing helpers: JSON bodies, query parameters, body models, access tokens."""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional

import attrs
from twisted.trial import unittest

from matrixd.http.request import MatrixRequest
from matrixd.http.server import JsonResource, RestServlet, prefixed_patterns
from matrixd.http.servlet import (
    get_access_token_from_request,
    get_field,
    has_access_token,
    json_field,
    parse_and_validate_json_object_from_request,
    parse_boolean,
    parse_integer,
    parse_json_object_from_query,
    parse_json_object_from_request,
    parse_json_value_from_request,
    parse_string,
    parse_strings_from_args,
    validate_json_object,
)
from matrixd.testing.http import FakeChannel, make_reactor, make_request
from matrixd.types import JsonDict


class _ProbeServlet(RestServlet):
    """Runs whatever parser the test installs and returns its result as JSON."""

    PATTERNS = prefixed_patterns("", "/probe")

    def __init__(self) -> None:
        self.parser: Callable[[MatrixRequest], Any] = lambda r: None

    async def _run(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        return 200, {"result": self.parser(request)}

    on_GET = _run
    on_POST = _run


class _ProbeTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = make_reactor()
        self.resource = JsonResource()
        self.probe = _ProbeServlet()
        self.probe.register(self.resource)

    def run_parser(
        self,
        parser: Callable[[MatrixRequest], Any],
        query: str = "",
        content: Any = None,
        method: str = "POST",
        **kwargs: Any,
    ) -> FakeChannel:
        self.probe.parser = parser
        path = "/probe" + (f"?{query}" if query else "")
        return make_request(self.reactor, self.resource, method, path, content=content, **kwargs)

    def assert_error(self, channel: FakeChannel, code: int, errcode: str, *fragments: str) -> None:
        self.assertEqual(channel.code, code, channel.result_body)
        self.assertEqual(channel.json_body["errcode"], errcode, channel.result_body)
        for fragment in fragments:
            self.assertIn(fragment, channel.json_body["error"])


class JsonBodyTestCase(_ProbeTestCase):
    def test_object_body_is_parsed(self) -> None:
        """A JSON object body comes back as a dict."""
        channel = self.run_parser(parse_json_object_from_request, content={"a": [1, "\u2603"]})
        self.assertEqual(channel.json_body["result"], {"a": [1, "\u2603"]})

    def test_invalid_json_is_not_json(self) -> None:
        """Malformed JSON, truncated JSON and non-JSON text are M_NOT_JSON."""
        for body in (b"{", b"{'a': 1}", b"hello", b"{\"a\":1}x", b"\xef\xbb\xbf{}"):
            channel = self.run_parser(parse_json_object_from_request, content=body)
            self.assert_error(channel, 400, "M_NOT_JSON")

    def test_nan_and_infinity_are_not_json(self) -> None:
        """NaN, Infinity and -Infinity are not JSON, though Python's parser accepts them."""
        for body in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'):
            channel = self.run_parser(parse_json_object_from_request, content=body)
            self.assert_error(channel, 400, "M_NOT_JSON")

    def test_invalid_utf8_is_not_json(self) -> None:
        """Bodies that are not UTF-8 (here Latin-1) are M_NOT_JSON."""
        channel = self.run_parser(parse_json_object_from_request, content='{"a": "caf\u00e9"}'.encode("latin-1"))
        self.assert_error(channel, 400, "M_NOT_JSON", "UTF-8")

    def test_lone_surrogate_is_not_json(self) -> None:
        """An unpaired UTF-16 surrogate escape is refused; a proper pair is accepted."""
        channel = self.run_parser(parse_json_object_from_request, content=b'{"a": "\\ud800"}')
        self.assert_error(channel, 400, "M_NOT_JSON", "surrogate")
        channel = self.run_parser(parse_json_object_from_request, content=b'{"\\udbff": 1}')
        self.assert_error(channel, 400, "M_NOT_JSON")
        channel = self.run_parser(parse_json_object_from_request, content=b'{"a": "\\ud83d\\ude00"}')
        self.assertEqual(channel.json_body["result"], {"a": "\U0001f600"})

    def test_non_object_is_bad_json(self) -> None:
        """Valid JSON that is not an object is M_BAD_JSON (it parsed, but has the wrong shape)."""
        for body in (b"[]", b"1", b'"s"', b"null", b"true"):
            channel = self.run_parser(parse_json_object_from_request, content=body)
            self.assert_error(channel, 400, "M_BAD_JSON", "JSON object")

    def test_empty_body(self) -> None:
        """An empty body is M_NOT_JSON unless allow_empty_body, which gives {}."""
        channel = self.run_parser(parse_json_object_from_request, content=b"")
        self.assert_error(channel, 400, "M_NOT_JSON")
        channel = self.run_parser(lambda r: parse_json_object_from_request(r, allow_empty_body=True), content=b"")
        self.assertEqual(channel.json_body["result"], {})
        channel = self.run_parser(lambda r: parse_json_value_from_request(r, allow_empty_body=True), content=b"")
        self.assertIsNone(channel.json_body["result"])

    def test_any_json_value(self) -> None:
        """parse_json_value_from_request accepts arrays and scalars."""
        channel = self.run_parser(parse_json_value_from_request, content=b"[1, 2]")
        self.assertEqual(channel.json_body["result"], [1, 2])


class QueryParamTestCase(_ProbeTestCase):
    def test_parse_integer(self) -> None:
        """Integers parse strictly; defaults, required and bounds name the parameter."""
        self.assertEqual(self.run_parser(lambda r: parse_integer(r, "limit"), "limit=10").json_body["result"], 10)
        self.assertEqual(self.run_parser(lambda r: parse_integer(r, "limit", 5)).json_body["result"], 5)
        self.assertIsNone(self.run_parser(lambda r: parse_integer(r, "limit")).json_body["result"])
        self.assert_error(
            self.run_parser(lambda r: parse_integer(r, "limit", required=True)), 400, "M_MISSING_PARAM", "'limit'"
        )
        for bad in ("abc", "1.5", "1e3", "+1", "%201", "1_000", ""):
            channel = self.run_parser(lambda r: parse_integer(r, "limit", 5), f"limit={bad}")
            if bad == "":
                # an empty value is still a value, and not an integer
                self.assert_error(channel, 400, "M_INVALID_PARAM", "'limit'")
                continue
            self.assert_error(channel, 400, "M_INVALID_PARAM", "'limit'", "integer")

    def test_parse_integer_bounds(self) -> None:
        """Negative values are refused by default; min_value and max_value are enforced."""
        self.assert_error(self.run_parser(lambda r: parse_integer(r, "n"), "n=-1"), 400, "M_INVALID_PARAM", "at least 0")
        self.assertEqual(
            self.run_parser(lambda r: parse_integer(r, "n", min_value=None), "n=-1").json_body["result"], -1
        )
        self.assert_error(
            self.run_parser(lambda r: parse_integer(r, "n", max_value=100), "n=101"), 400, "M_INVALID_PARAM", "at most 100"
        )
        self.assert_error(
            self.run_parser(lambda r: parse_integer(r, "n", min_value=1), "n=0"), 400, "M_INVALID_PARAM", "at least 1"
        )

    def test_parse_boolean(self) -> None:
        """Only 'true' and 'false' are booleans."""
        self.assertIs(self.run_parser(lambda r: parse_boolean(r, "f"), "f=true").json_body["result"], True)
        self.assertIs(self.run_parser(lambda r: parse_boolean(r, "f"), "f=false").json_body["result"], False)
        self.assertIs(self.run_parser(lambda r: parse_boolean(r, "f", True)).json_body["result"], True)
        for bad in ("1", "True", "yes"):
            self.assert_error(self.run_parser(lambda r: parse_boolean(r, "f"), f"f={bad}"), 400, "M_INVALID_PARAM", "'f'")
        self.assert_error(self.run_parser(lambda r: parse_boolean(r, "f", required=True)), 400, "M_MISSING_PARAM")

    def test_parse_string(self) -> None:
        """Strings are percent-decoded UTF-8, optionally limited to allowed values."""
        self.assertEqual(self.run_parser(lambda r: parse_string(r, "dir"), "dir=b").json_body["result"], "b")
        self.assertEqual(self.run_parser(lambda r: parse_string(r, "s"), "s=%E2%98%83+x").json_body["result"], "\u2603 x")
        self.assertEqual(self.run_parser(lambda r: parse_string(r, "dir", "f")).json_body["result"], "f")
        self.assert_error(
            self.run_parser(lambda r: parse_string(r, "dir", allowed_values=("b", "f")), "dir=x"),
            400, "M_INVALID_PARAM", "'dir'", "'b', 'f'",
        )
        self.assert_error(self.run_parser(lambda r: parse_string(r, "dir", required=True)), 400, "M_MISSING_PARAM", "'dir'")
        self.assert_error(self.run_parser(lambda r: parse_string(r, "s"), "s=%FF"), 400, "M_INVALID_PARAM", "UTF-8")

    def test_parse_strings_from_args(self) -> None:
        """Repeated parameters come back in order; each is checked against allowed values."""
        channel = self.run_parser(lambda r: parse_strings_from_args(r.args, "t"), "t=a&x=1&t=b")
        self.assertEqual(channel.json_body["result"], ["a", "b"])
        self.assertEqual(self.run_parser(lambda r: parse_strings_from_args(r.args, "t", ["d"])).json_body["result"], ["d"])
        self.assert_error(
            self.run_parser(lambda r: parse_strings_from_args(r.args, "t", allowed_values={"a"}), "t=a&t=z"),
            400, "M_INVALID_PARAM", "'z'",
        )
        self.assert_error(
            self.run_parser(lambda r: parse_strings_from_args(r.args, "t", required=True)), 400, "M_MISSING_PARAM"
        )

    def test_parse_json_object_from_query(self) -> None:
        """A JSON-object parameter (like /sync's filter) parses or names the parameter."""
        channel = self.run_parser(lambda r: parse_json_object_from_query(r, "filter"), "filter=%7B%22a%22%3A1%7D")
        self.assertEqual(channel.json_body["result"], {"a": 1})
        self.assert_error(
            self.run_parser(lambda r: parse_json_object_from_query(r, "filter"), "filter=%7B"), 400, "M_NOT_JSON", "'filter'"
        )
        self.assert_error(
            self.run_parser(lambda r: parse_json_object_from_query(r, "filter"), "filter=1"), 400, "M_BAD_JSON", "'filter'"
        )
        self.assertIsNone(self.run_parser(lambda r: parse_json_object_from_query(r, "filter")).json_body["result"])


@attrs.frozen
class _Target:
    url: str
    weight: float = 1.0


@attrs.frozen
class _Body:
    name: str
    count: int = 0
    enabled: bool = False
    kind: Literal["a", "b"] = "a"
    tags: list[str] = attrs.field(factory=list)
    extra: Optional[dict[str, Any]] = None
    target: Optional[_Target] = None
    targets: list[_Target] = attrs.field(factory=list)
    relates_to: Optional[dict[str, Any]] = json_field("m.relates_to", default=None)
    limit: int = attrs.field(default=10, validator=attrs.validators.le(100))


class BodyModelTestCase(_ProbeTestCase):
    def parse(self, body: Any) -> FakeChannel:
        return self.run_parser(
            lambda r: attrs.asdict(parse_and_validate_json_object_from_request(r, _Body)), content=body
        )

    def test_valid_body_builds_model(self) -> None:
        """A well-formed body builds the model; unknown keys are ignored; aliases map."""
        channel = self.parse(
            {
                "name": "n", "count": 3, "enabled": True, "kind": "b", "tags": ["x"], "extra": {"k": 1},
                "target": {"url": "u", "weight": 2}, "targets": [{"url": "v"}], "m.relates_to": {"rel_type": "r"},
                "unknown": 1,
            }
        )
        self.assertEqual(channel.code, 200, channel.result_body)
        result = channel.json_body["result"]
        self.assertEqual(result["target"], {"url": "u", "weight": 2})
        self.assertEqual(result["targets"], [{"url": "v", "weight": 1.0}])
        self.assertEqual(result["relates_to"], {"rel_type": "r"})
        self.assertEqual(result["limit"], 10)

    def test_missing_required_field_is_missing_param(self) -> None:
        """An absent required field is M_MISSING_PARAM naming the field path."""
        self.assert_error(self.parse({}), 400, "M_MISSING_PARAM", "'name'")
        self.assert_error(self.parse({"name": "n", "target": {}}), 400, "M_MISSING_PARAM", "'target.url'")

    def test_wrong_type_is_bad_json(self) -> None:
        """A field of the wrong JSON type is M_BAD_JSON naming the field path."""
        cases = [
            ({"name": 1}, "'name' must be a string"),
            ({"name": "n", "count": "3"}, "'count' must be an integer"),
            ({"name": "n", "count": True}, "'count' must be an integer"),
            ({"name": "n", "count": 1.5}, "'count' must be an integer"),
            ({"name": "n", "enabled": 1}, "'enabled' must be a boolean"),
            ({"name": "n", "tags": ["a", 2]}, "'tags[1]' must be a string"),
            ({"name": "n", "tags": "a"}, "'tags' must be an array"),
            ({"name": "n", "targets": [{"url": "u"}, {"url": 5}]}, "'targets[1].url'"),
            ({"name": "n", "target": {"url": "u", "weight": "heavy"}}, "'target.weight' must be a number"),
            ({"name": "n", "m.relates_to": []}, "'m.relates_to'"),
            ({"name": "n", "extra": "x"}, "'extra'"),
        ]
        for body, fragment in cases:
            self.assert_error(self.parse(body), 400, "M_BAD_JSON", fragment)

    def test_disallowed_value_is_invalid_param(self) -> None:
        """Literal choices and attrs validators give M_INVALID_PARAM."""
        self.assert_error(self.parse({"name": "n", "kind": "c"}), 400, "M_INVALID_PARAM", "'kind'")
        self.assert_error(self.parse({"name": "n", "limit": 101}), 400, "M_INVALID_PARAM", "limit")

    def test_null_allowed_only_for_optional(self) -> None:
        """An explicit null is accepted for Optional fields and refused otherwise."""
        self.assertEqual(self.parse({"name": "n", "extra": None}).code, 200)
        self.assert_error(self.parse({"name": None}), 400, "M_BAD_JSON", "'name'")

    def test_non_object_body(self) -> None:
        """validate_json_object refuses non-objects."""
        with self.assertRaises(Exception) as cm:
            validate_json_object([], _Body)
        self.assertEqual(getattr(cm.exception, "errcode", None), "M_BAD_JSON")

    def test_get_field(self) -> None:
        """get_field checks one field with the same rules and messages."""
        body = {"limit": 5, "users": ["@a:b"], "bad": "x", "nothing": None}
        self.assertEqual(get_field(body, "limit", int, default=10), 5)
        self.assertEqual(get_field(body, "absent", int, default=10), 10)
        self.assertEqual(get_field(body, "users", list[str], required=True), ["@a:b"])
        self.assertIsNone(get_field(body, "nothing", Optional[str]))  # type: ignore[arg-type]
        for key, tp, errcode in (("absent", int, "M_MISSING_PARAM"), ("bad", int, "M_BAD_JSON")):
            with self.assertRaises(Exception) as cm:
                get_field(body, key, tp, required=True, path="content")
            self.assertEqual(getattr(cm.exception, "errcode", None), errcode)
            self.assertIn(f"'content.{key}'", str(cm.exception))


class AccessTokenTestCase(_ProbeTestCase):
    def token(self, query: str = "", headers: Any = None) -> FakeChannel:
        return self.run_parser(get_access_token_from_request, query, method="GET", headers=headers)

    def test_bearer_header(self) -> None:
        """The token is read from Authorization: Bearer (scheme case-insensitive)."""
        self.assertEqual(self.token(headers={"Authorization": "Bearer abc.DEF_123"}).json_body["result"], "abc.DEF_123")
        self.assertEqual(self.token(headers={"Authorization": "bearer xyz"}).json_body["result"], "xyz")

    def test_query_parameter(self) -> None:
        """The token is read from ?access_token= when there is no header."""
        self.assertEqual(self.token("access_token=qqq").json_body["result"], "qqq")

    def test_missing_token(self) -> None:
        """No token at all is 401 M_MISSING_TOKEN."""
        self.assert_error(self.token(), 401, "M_MISSING_TOKEN")
        self.assert_error(self.token("access_token="), 401, "M_MISSING_TOKEN")

    def test_both_header_and_query_is_refused(self) -> None:
        """A token given both ways is ambiguous and refused with M_MISSING_TOKEN."""
        channel = self.token("access_token=a", headers={"Authorization": "Bearer b"})
        self.assert_error(channel, 401, "M_MISSING_TOKEN", "Mixing")

    def test_malformed_header_is_refused(self) -> None:
        """Non-Bearer schemes, an empty credential or repeated headers are M_MISSING_TOKEN."""
        for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "X-Matrix origin=a,key=b,sig=c", "token"):
            self.assert_error(self.token(headers={"Authorization": value}), 401, "M_MISSING_TOKEN")
        channel = self.token(headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
        self.assert_error(channel, 401, "M_MISSING_TOKEN", "Too many")
        self.assert_error(self.token("access_token=a&access_token=b"), 401, "M_MISSING_TOKEN", "Too many")

    def test_token_with_impossible_characters_is_unknown(self) -> None:
        """A token with non-ASCII or control characters cannot exist: M_UNKNOWN_TOKEN."""
        self.assert_error(self.token("access_token=%E2%98%83"), 401, "M_UNKNOWN_TOKEN")
        self.assert_error(self.token("access_token=a%0Ab"), 401, "M_UNKNOWN_TOKEN")

    def test_has_access_token(self) -> None:
        """has_access_token sees either form."""
        self.assertIs(self.run_parser(has_access_token, method="GET").json_body["result"], False)
        self.assertIs(self.run_parser(has_access_token, "access_token=x", method="GET").json_body["result"], True)
        self.assertIs(self.run_parser(has_access_token, method="GET", access_token="t").json_body["result"], True)
