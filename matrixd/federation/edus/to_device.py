"""Inbound ``m.direct_to_device``: messages from remote users into local devices' inboxes.

Delivery goes through the e2e area's ``ToDeviceHandler`` as if the remote
sender had called ``/sendToDevice`` with the EDU's ``message_id`` as the
transaction id, so a retried transaction does not deliver twice.  Only
messages for our own users are taken; the sender must belong to the origin.
"""

from __future__ import annotations

import logging

from matrixd.api.errors import MatrixError
from matrixd.federation.visibility import domain_or_none
from matrixd.handlers.e2e.to_device import ToDeviceHandler
from matrixd.types import JsonDict, Requester

logger = logging.getLogger(__name__)


class DirectToDeviceEduHandler:
    def __init__(self, server_name: str, to_device: ToDeviceHandler) -> None:
        self._server_name = server_name
        self._to_device = to_device

    async def __call__(self, origin: str, content: JsonDict) -> None:
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if (not isinstance(sender, str) or not isinstance(event_type, str) or not isinstance(message_id, str)
                or not isinstance(messages, dict)):
            logger.info("malformed m.direct_to_device from %s", origin)
            return
        if domain_or_none(sender) != origin:
            logger.info("m.direct_to_device from %s claims sender %s", origin, sender)
            return
        local = {u: m for u, m in messages.items() if domain_or_none(u) == self._server_name and isinstance(m, dict)}
        if not local:
            return
        requester = Requester(user_id=sender, device_id=None, access_token_id=None)
        try:
            await self._to_device.send_to_device(requester, event_type, f"federation:{message_id}",
                                                 {"messages": local})
        except MatrixError as e:
            logger.info("m.direct_to_device %s from %s refused: %s", message_id, origin, e.msg)
