"""``/_synapse/admin`` user endpoints (admins only; everyone else gets 403 ``M_FORBIDDEN``)."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.admin.users import UserAdminHandler
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_boolean, parse_integer, parse_json_object_from_request, parse_string
from matrixd.rest.admin import AdminAuth, admin_patterns, parse_offset
from matrixd.types import JsonDict

_USER = "(?P<user_id>[^/]*)"


class _UserServlet(RestServlet):
    def __init__(self, auth: AdminAuth, handler: UserAdminHandler) -> None:
        self._auth = auth
        self._handler = handler


class UsersListServlet(_UserServlet):
    PATTERNS = admin_patterns("/users", "v2")

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        start = parse_offset(request)
        return 200, await self._handler.list_users(
            start=start, limit=parse_integer(request, "limit", 100, min_value=0, max_value=1000),
            name=parse_string(request, "name"), user_id=parse_string(request, "user_id"),
            guests=parse_boolean(request, "guests", True), deactivated=parse_boolean(request, "deactivated", False),
            order_by=parse_string(request, "order_by", "name"),
            direction=parse_string(request, "dir", "f", allowed_values=("f", "b")),
        )


class UserServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}", "v2")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.user_json(user_id)

    async def on_PUT(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        return await self._handler.create_or_modify(requester, user_id, parse_json_object_from_request(request))


class DeactivateServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/deactivate/{_USER}")

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise MatrixError(400, "'erase' must be a boolean", Codes.BAD_JSON)
        await self._handler.deactivate(requester, user_id, erase)
        return 200, {"id_server_unbind_result": "success"}


class ResetPasswordServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/reset_password/{_USER}")

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request)
        if "new_password" not in body:
            raise MatrixError(400, "Missing 'new_password'", Codes.MISSING_PARAM)
        logout = body.get("logout_devices", True)
        if not isinstance(logout, bool):
            raise MatrixError(400, "'logout_devices' must be a boolean", Codes.BAD_JSON)
        await self._handler.reset_password(user_id, body["new_password"], logout)
        return 200, {}


class WhoisServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/whois/{_USER}")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.whois(user_id)


class UserAdminFlagServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/admin")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, {"admin": (await self._handler.get_existing(user_id)).admin}

    async def on_PUT(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request)
        admin = body.get("admin")
        if not isinstance(admin, bool):
            raise MatrixError(400, "'admin' must be a boolean", Codes.MISSING_PARAM if admin is None else
                              Codes.BAD_JSON)
        await self._handler.set_admin(requester, user_id, admin)
        return 200, {}


class ShadowBanServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/shadow_ban")

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.set_shadow_banned(user_id, True)
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.set_shadow_banned(user_id, False)
        return 200, {}


class RatelimitOverrideServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/override_ratelimit")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.get_ratelimit(user_id)

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        return 200, await self._handler.set_ratelimit(user_id, body)

    async def on_DELETE(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.delete_ratelimit(user_id)
        return 200, {}


class UserDevicesServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/devices", "v2")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.devices(user_id)


class JoinedRoomsServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/joined_rooms")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.joined_rooms(user_id)


class UserMediaServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/media")

    async def on_GET(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.media(
            user_id, parse_integer(request, "from", 0), parse_integer(request, "limit", 100, max_value=1000),
            parse_string(request, "dir", "b", allowed_values=("f", "b")))


class LoginAsServlet(_UserServlet):
    PATTERNS = admin_patterns(f"/users/{_USER}/login")

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        valid_until = body.get("valid_until_ms")
        if valid_until is not None and (not isinstance(valid_until, int) or isinstance(valid_until, bool)):
            raise MatrixError(400, "'valid_until_ms' must be an integer", Codes.INVALID_PARAM)
        return 200, await self._handler.login_as(requester, user_id, valid_until)


def user_admin_servlets(auth: AdminAuth, handler: UserAdminHandler) -> list[RestServlet]:
    return [cls(auth, handler) for cls in (
        UsersListServlet, UserServlet, DeactivateServlet, ResetPasswordServlet, WhoisServlet, UserAdminFlagServlet,
        ShadowBanServlet, RatelimitOverrideServlet, UserDevicesServlet, JoinedRoomsServlet, UserMediaServlet,
        LoginAsServlet,
    )]
