"""``/_synapse/admin`` media endpoints: a room's media, quarantine, protection,
deletion of local media and purging of the remote media cache."""

from __future__ import annotations

from matrixd.handlers.admin.media import MediaAdminHandler
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet
from matrixd.http.servlet import parse_boolean, parse_integer
from matrixd.rest.admin import AdminAuth, admin_patterns
from matrixd.types import JsonDict

_SERVER_MEDIA = "(?P<server_name>[^/]*)/(?P<media_id>[^/]*)"


class _MediaServlet(RestServlet):
    def __init__(self, auth: AdminAuth, handler: MediaAdminHandler) -> None:
        self._auth = auth
        self._handler = handler


class RoomMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns("/room/(?P<room_id>[^/]*)/media")

    async def on_GET(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.room_media(room_id)


class QuarantineMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns(f"/media/quarantine/{_SERVER_MEDIA}")

    async def on_POST(self, request: MatrixRequest, server_name: str, media_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        await self._handler.quarantine(server_name, media_id, requester.user_id)
        return 200, {}


class UnquarantineMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns(f"/media/unquarantine/{_SERVER_MEDIA}")

    async def on_POST(self, request: MatrixRequest, server_name: str, media_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.unquarantine(server_name, media_id)
        return 200, {}


class QuarantineRoomMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns("/room/(?P<room_id>[^/]*)/media/quarantine")

    async def on_POST(self, request: MatrixRequest, room_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        return 200, await self._handler.quarantine_room(room_id, requester.user_id)


class QuarantineUserMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns("/user/(?P<user_id>[^/]*)/media/quarantine")

    async def on_POST(self, request: MatrixRequest, user_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.require_admin(request)
        return 200, await self._handler.quarantine_user(user_id, requester.user_id)


class ProtectMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns("/media/protect/(?P<media_id>[^/]*)")

    async def on_POST(self, request: MatrixRequest, media_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.protect(media_id, True)
        return 200, {}


class UnprotectMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns("/media/unprotect/(?P<media_id>[^/]*)")

    async def on_POST(self, request: MatrixRequest, media_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        await self._handler.protect(media_id, False)
        return 200, {}


class DeleteMediaServlet(_MediaServlet):
    PATTERNS = admin_patterns(f"/media/{_SERVER_MEDIA}")

    async def on_DELETE(self, request: MatrixRequest, server_name: str, media_id: str) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.delete_local(server_name, media_id)


class DeleteMediaBeforeServlet(_MediaServlet):
    PATTERNS = admin_patterns("/media/(?:(?P<server_name>[^/]*)/)?delete")

    def __init__(self, auth: AdminAuth, handler: MediaAdminHandler, server_name: str) -> None:
        super().__init__(auth, handler)
        self._server_name = server_name

    async def on_POST(self, request: MatrixRequest, server_name: str = "") -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.delete_before(
            server_name or self._server_name, parse_integer(request, "before_ts", required=True),
            parse_integer(request, "size_gt", 0), parse_boolean(request, "keep_profiles", True))


class PurgeMediaCacheServlet(_MediaServlet):
    PATTERNS = admin_patterns("/purge_media_cache")

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        await self._auth.require_admin(request)
        return 200, await self._handler.purge_remote_cache(parse_integer(request, "before_ts", required=True))


def media_admin_servlets(auth: AdminAuth, handler: MediaAdminHandler, server_name: str) -> list[RestServlet]:
    plain = [cls(auth, handler) for cls in (
        RoomMediaServlet, QuarantineMediaServlet, UnquarantineMediaServlet, QuarantineRoomMediaServlet,
        QuarantineUserMediaServlet, ProtectMediaServlet, UnprotectMediaServlet, PurgeMediaCacheServlet,
    )]
    # The bulk delete must be tried before DELETE /media/<server>/<id> ("<server>/delete" is no media id).
    return [*plain, DeleteMediaBeforeServlet(auth, handler, server_name), DeleteMediaServlet(auth, handler)]
