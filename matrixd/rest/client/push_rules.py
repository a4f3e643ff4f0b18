"""Reading push rules: ``GET /pushrules/``, ``/pushrules/global/``, and one rule with its ``enabled``/``actions``.

Editing (``PUT``/``DELETE``, :class:`PushRuleWriteServlet`) goes to the push feature's editor.
"""

from __future__ import annotations

from matrixd.api.errors import InvalidParamError, NotFoundError, UnrecognizedRequestError
from matrixd.handlers.push_rules import RULE_KINDS, PushRuleEditor, PushRulesHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request, parse_string
from matrixd.types import JsonDict


class PushRulesServlet(RestServlet):
    PATTERNS = client_patterns("/pushrules/$")

    def __init__(self, auth: Auth, push_rules: PushRulesHandler) -> None:
        self._auth = auth
        self._push_rules = push_rules

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, {"global": await self._push_rules.get_ruleset(requester.user_id)}


class GlobalPushRulesServlet(RestServlet):
    PATTERNS = client_patterns("/pushrules/global/$")

    def __init__(self, auth: Auth, push_rules: PushRulesHandler) -> None:
        self._auth = auth
        self._push_rules = push_rules

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        return 200, await self._push_rules.get_ruleset(requester.user_id)


class PushRuleServlet(RestServlet):
    """One rule, or its ``enabled`` / ``actions`` attribute."""

    PATTERNS = client_patterns(
        "/pushrules/global/(?P<kind>[^/]*)/(?P<rule_id>[^/]+)(?:/(?P<attr>enabled|actions))?$"
    )

    def __init__(self, auth: Auth, push_rules: PushRulesHandler) -> None:
        self._auth = auth
        self._push_rules = push_rules

    async def on_GET(
        self, request: MatrixRequest, kind: str, rule_id: str, attr: str | None = None
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        if kind not in RULE_KINDS:
            raise InvalidParamError(f"Unknown push rule kind {kind!r}")
        rule = await self._push_rules.get_rule(requester.user_id, kind, rule_id)
        if rule is None:
            raise NotFoundError("The push rule was not found.")
        if attr == "enabled":
            return 200, {"enabled": rule["enabled"]}
        if attr == "actions":
            return 200, {"actions": rule["actions"]}
        return 200, rule


class PushRuleWriteServlet(RestServlet):
    """``PUT``/``DELETE`` of a rule, and ``PUT`` of its ``enabled`` / ``actions``."""

    PATTERNS = PushRuleServlet.PATTERNS

    def __init__(self, auth: Auth, editor: PushRuleEditor) -> None:
        self._auth = auth
        self._editor = editor

    async def on_PUT(
        self, request: MatrixRequest, kind: str, rule_id: str, attr: str | None = None
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        user_id = requester.user_id
        if attr == "enabled":
            await self._editor.set_enabled(user_id, kind, rule_id, body.get("enabled"))
        elif attr == "actions":
            await self._editor.set_actions(user_id, kind, rule_id, body.get("actions"))
        else:
            before = parse_string(request, "before")
            after = parse_string(request, "after")
            await self._editor.put_rule(user_id, kind, rule_id, body, before, after)
        return 200, {}

    async def on_DELETE(
        self, request: MatrixRequest, kind: str, rule_id: str, attr: str | None = None
    ) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        if attr is not None:
            raise UnrecognizedRequestError(f"Cannot DELETE a rule's {attr}", code=405)
        await self._editor.delete_rule(requester.user_id, kind, rule_id)
        return 200, {}
