"""``POST /_matrix/client/v1/appservice/{appserviceId}/ping`` (spec v1.7)."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.appservice.queries import AppServiceQueries
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class AppServicePingServlet(RestServlet):
    PATTERNS = client_patterns("/appservice/(?P<appservice_id>[^/]*)/ping", releases=(), v1=True)

    def __init__(self, auth: Auth, queries: AppServiceQueries) -> None:
        self._auth = auth
        self._queries = queries

    async def on_POST(self, request: MatrixRequest, appservice_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        txn_id = body.get("transaction_id")
        if txn_id is not None and not isinstance(txn_id, str):
            raise MatrixError(400, "transaction_id must be a string", Codes.BAD_JSON)
        return 200, await self._queries.ping(requester, appservice_id, txn_id)
