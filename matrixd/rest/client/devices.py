"""``/devices``, ``/devices/{deviceId}`` and ``/delete_devices``; deleting needs UIA."""

from __future__ import annotations

from matrixd.api.errors import Codes, MatrixError
from matrixd.handlers.accounts.devices import DeviceHandler, device_to_json
from matrixd.handlers.accounts.uia import Reauthentication
from matrixd.http.auth import Auth
from matrixd.http.request import MatrixRequest
from matrixd.http.server import RestServlet, client_patterns
from matrixd.http.servlet import parse_json_object_from_request
from matrixd.types import JsonDict


class DevicesServlet(RestServlet):
    PATTERNS = client_patterns("/devices")

    def __init__(self, auth: Auth, devices: DeviceHandler) -> None:
        self._auth = auth
        self._devices = devices

    async def on_GET(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        devices = await self._devices.get_devices(requester.user_id)
        return 200, {"devices": [device_to_json(d) for d in devices]}


class DeviceServlet(RestServlet):
    PATTERNS = client_patterns("/devices/(?P<device_id>[^/]*)")

    def __init__(self, auth: Auth, devices: DeviceHandler, reauth: Reauthentication) -> None:
        self._auth = auth
        self._devices = devices
        self._reauth = reauth

    async def on_GET(self, request: MatrixRequest, device_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        return 200, device_to_json(await self._devices.get_device(requester.user_id, device_id))

    async def on_PUT(self, request: MatrixRequest, device_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request, allow_guest=True)
        body = parse_json_object_from_request(request)
        if "display_name" in body:
            name = body["display_name"]
            if name is not None and not isinstance(name, str):
                raise MatrixError(400, "display_name must be a string", Codes.BAD_JSON)
            await self._devices.update_display_name(requester.user_id, device_id, name)
        else:
            await self._devices.get_device(requester.user_id, device_id)
        return 200, {}

    async def on_DELETE(self, request: MatrixRequest, device_id: str) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request, allow_empty_body=True)
        await self._reauth.require(requester, body, method="DELETE", operation=f"/devices/{device_id}")
        await self._devices.delete_devices(requester.user_id, [device_id])
        return 200, {}


class DeleteDevicesServlet(RestServlet):
    PATTERNS = client_patterns("/delete_devices")

    def __init__(self, auth: Auth, devices: DeviceHandler, reauth: Reauthentication) -> None:
        self._auth = auth
        self._devices = devices
        self._reauth = reauth

    async def on_POST(self, request: MatrixRequest) -> tuple[int, JsonDict]:
        requester = await self._auth.get_user_by_req(request)
        body = parse_json_object_from_request(request)
        device_ids = body.get("devices")
        if device_ids is None:
            raise MatrixError(400, "Missing 'devices'", Codes.MISSING_PARAM)
        if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
            raise MatrixError(400, "'devices' must be a list of strings", Codes.BAD_JSON)
        result = await self._reauth.require(requester, body, method="POST", operation="/delete_devices")
        await self._devices.delete_devices(requester.user_id, list(result.params.get("devices", device_ids)))
        return 200, {}
