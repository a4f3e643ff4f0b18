"""Routing of inbound EDUs to the handler registered for their type.

The typing, receipt, presence, device-list and to-device handlers belong to
the EDU area; they register here with ``EduRegistry.register(edu_type,
handler)``.  EDUs of unregistered types are ignored (the spec lets servers
drop what they do not understand); a failing handler is logged, never turned
into a transaction failure.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
#: ``handler(origin, content)``
EduHandler = Callable[[str, JsonDict], Awaitable[None]]


class EduRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, EduHandler] = {}

    def register(self, edu_type: str, handler: EduHandler) -> None:
        if edu_type in self._handlers:
            raise ValueError(f"an EDU handler for {edu_type!r} is already registered")
        self._handlers[edu_type] = handler

    def registered_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def on_edu(self, origin: str, edu_type: str, content: JsonDict) -> None:
        handler = self._handlers.get(edu_type)
        if handler is None:
            logger.debug("ignoring EDU of unknown type %r from %s", edu_type, origin)
            return
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("EDU handler for %r failed on an EDU from %s", edu_type, origin)
