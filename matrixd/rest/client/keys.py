"""``/keys/*``: device and one-time keys, key changes, cross-signing keys and signatures."""

from __future__ import annotations

from matrixd.handlers.e2e.cross_signing import CrossSigningHandler
from matrixd.handlers.e2e.keys import E2EKeysHandler
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request, parse_string
from matrixd.streams.token import StreamToken
from matrixd.types import JsonDict


class KeyUploadServlet(RestServlet):
    """``POST /keys/upload`` (guests allowed, per the guest access module)."""

    PATTERNS = client_patterns("/keys/upload")

    def __init__(self, auth: Auth, handler: E2EKeysHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        counts = await self._handler.upload_keys(requester, body)
        return 200, {"one_time_key_counts": counts}


class KeyQueryServlet(RestServlet):
    PATTERNS = client_patterns("/keys/query")

    def __init__(self, auth: Auth, handler: E2EKeysHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        return 200, await self._handler.query_keys(requester, body)


class KeyClaimServlet(RestServlet):
    PATTERNS = client_patterns("/keys/claim")

    def __init__(self, auth: Auth, handler: E2EKeysHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        return 200, await self._handler.claim_keys(requester, body)


class KeyChangesServlet(RestServlet):
    PATTERNS = client_patterns("/keys/changes")
    CANCEL_ON_DISCONNECT = frozenset({"GET"})

    def __init__(self, auth: Auth, handler: E2EKeysHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        from_token = StreamToken.parse(parse_string(request, "from", required=True))
        to_token = StreamToken.parse(parse_string(request, "to", required=True))
        return 200, await self._handler.get_key_changes(requester, from_token, to_token)


class SigningKeyUploadServlet(RestServlet):
    """``POST /keys/device_signing/upload`` (User-Interactive Auth when replacing keys)."""

    PATTERNS = client_patterns("/keys/device_signing/upload", releases=("v3",), unstable=True)

    def __init__(self, auth: Auth, handler: CrossSigningHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        await self._handler.upload_signing_keys(requester, body)
        return 200, {}


class SignaturesUploadServlet(RestServlet):
    PATTERNS = client_patterns("/keys/signatures/upload", releases=("v3",), unstable=True)

    def __init__(self, auth: Auth, handler: CrossSigningHandler) -> None:
        self._auth = auth
        self._handler = handler

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        return 200, await self._handler.upload_signatures(requester, body)


def e2e_key_servlets(auth: Auth, keys: E2EKeysHandler, cross_signing: CrossSigningHandler) -> list[RestServlet]:
    return [
        KeyUploadServlet(auth, keys), KeyQueryServlet(auth, keys), KeyClaimServlet(auth, keys),
        KeyChangesServlet(auth, keys), SigningKeyUploadServlet(auth, cross_signing),
        SignaturesUploadServlet(auth, cross_signing),
    ]
