"""Authenticating application services by ``as_token`` (spec: "Identity assertion").

A request carrying a service's ``as_token`` acts as the service's sender, or as
the user named by the ``user_id`` query parameter if the service may act as
them (its sender or a user in one of its user namespaces, who must be
registered), with the device named by ``device_id`` if given (it must belong to
that user: 400 ``M_UNKNOWN_DEVICE`` otherwise).
"""

from __future__ import annotations

import hmac
from typing import Optional, Sequence

from twisted.web.server import Request

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.appservice.registration import AppServiceRegistration
from matrixd.http.servlet import parse_string
from matrixd.storage.accounts import DeviceStore, UserStore
from matrixd.types import Requester


class AppServiceTokenAuth:
    """What ``AccessTokenAuth`` consults first: is this token an ``as_token``, and who does the request act as?"""

    def __init__(self, services: Sequence[AppServiceRegistration], *, server_name: str, users: UserStore,
                 devices: DeviceStore) -> None:
        self._by_token = {s.as_token: s for s in services}
        self._server_name = server_name
        self._users = users
        self._devices = devices

    def service_for_token(self, token: str) -> Optional[AppServiceRegistration]:
        service = self._by_token.get(token)
        # The dict lookup found a candidate; compare in constant time anyway.
        if service is not None and hmac.compare_digest(service.as_token, token):
            return service
        return None

    async def authenticate(self, token: str, request: Request) -> Optional[Requester]:
        """The requester if ``token`` is an ``as_token``, None if it is not one (a user's token, maybe).

        Raises:
            AuthError: 403 ``M_EXCLUSIVE`` for a ``user_id`` outside the service's
                namespaces, 403 ``M_FORBIDDEN`` for one not registered.
            MatrixError: 400 ``M_UNKNOWN_DEVICE`` for a ``device_id`` the user does not have.
        """
        service = self.service_for_token(token)
        if service is None:
            return None
        sender = service.sender(self._server_name)
        user_id = parse_string(request, "user_id") or sender
        if user_id != sender:
            if not service.can_act_as(user_id, self._server_name) or \
                    not user_id.endswith(":" + self._server_name):
                raise AuthError(403, "Application service cannot masquerade as this user", Codes.EXCLUSIVE)
            info = await self._users.get_user(user_id)
            if info is None or info.deactivated:
                raise AuthError(403, "Application service has not registered this user", Codes.FORBIDDEN)
        device_id = parse_string(request, "device_id")
        if device_id is not None and await self._devices.get_device(user_id, device_id) is None:
            raise MatrixError(400, f"Device {device_id} does not belong to {user_id}", "M_UNKNOWN_DEVICE")
        return Requester(user_id=user_id, device_id=device_id, access_token_id=None, app_service_id=service.id)
