"""``POST /user_directory/search``."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.user_directory import UserDirectoryHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class UserDirectorySearchServlet(RestServlet):
    PATTERNS = client_patterns("/user_directory/search")

    def __init__(self, auth: Auth, handler: UserDirectoryHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        term = body.get("search_term")
        if term is None:
            raise MatrixError(400, "Missing 'search_term'", Codes.MISSING_PARAM)
        if not isinstance(term, str):
            raise MatrixError(400, "'search_term' must be a string", Codes.BAD_JSON)
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise MatrixError(400, "'limit' must be an integer", Codes.BAD_JSON)
        if limit < 0:
            raise MatrixError(400, "'limit' must not be negative", Codes.INVALID_PARAM)
        return 200, await self._handler.search(requester, term, limit)
