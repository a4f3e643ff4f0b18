"""``PUT /_matrix/federation/v1/send/{txnId}``: inbound transactions (logic in ``TransactionHandler``)."""

from __future__ import annotations

from typing import Optional

from matrixd.api.errors import Codes, MatrixError
from matrixd.federation.inbound.transactions import TransactionHandler
from matrixd.federation.transport.server import BaseFederationServlet, FederationAuthenticator, JsonDict
from matrixd.http.request import MatrixRequest
from matrixd.http.server import federation_patterns


class SendTransactionServlet(BaseFederationServlet):
    PATTERNS = federation_patterns("/send/(?P<txn_id>[^/]*)")

    def __init__(self, authenticator: FederationAuthenticator, handler: TransactionHandler) -> None:
        super().__init__(authenticator)
        self._handler = handler

    async def on_PUT(self, origin: str, content: Optional[JsonDict], request: MatrixRequest,
                     txn_id: str) -> tuple[int, JsonDict]:
        assert content is not None
        claimed = content.get("origin")
        if claimed is not None and claimed != origin:
            raise MatrixError(400, "The transaction's origin is not the authenticated origin", Codes.BAD_JSON)
        return 200, await self._handler.on_transaction(origin, txn_id, content)
