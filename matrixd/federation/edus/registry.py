"""Routing inbound EDUs by ``edu_type``.

The transaction servlet calls ``await registry.handle(origin, edu_type, content)``
for every EDU of a ``PUT /send/{txnId}``.  Handlers check what they receive
themselves (the sender of an EDU must belong to ``origin``); a handler that
fails is logged and the rest of the transaction carries on, since EDUs are
not acknowledged individually.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from matrixd.types import JsonDict

logger = logging.getLogger(__name__)

#: ``handler(origin, content)``
EduHandler = Callable[[str, JsonDict], Awaitable[None]]


class EduRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, EduHandler] = {}

    def register(self, edu_type: str, handler: EduHandler) -> None:
        if edu_type in self._handlers:
            raise ValueError(f"an EDU handler for {edu_type} is already registered")
        self._handlers[edu_type] = handler

    def registered_types(self) -> list[str]:
        return sorted(self._handlers)

    async def handle(self, origin: str, edu_type: str, content: JsonDict) -> None:
        handler = self._handlers.get(edu_type)
        if handler is None:
            logger.debug("ignoring EDU of unknown type %r from %s", edu_type, origin)
            return
        if not isinstance(content, dict):
            logger.info("ignoring %s EDU from %s: content is not an object", edu_type, origin)
            return
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("handling a %s EDU from %s failed", edu_type, origin)
