"""Stored client filters: upload, download, and resolving ``/sync?filter=`` (an id or inline JSON)."""

from __future__ import annotations

import json
from typing import Any, Optional

from matrixd.api.errors import AuthError, Codes, InvalidParamError, MatrixError, NotFoundError
from matrixd.handlers.filtering import DEFAULT_FILTER, SyncFilter, parse_filter
from matrixd.storage.cache import LruCache
from matrixd.storage.filters import FilterStore
from matrixd.types import JsonDict, Requester
from matrixd.util.linearizer import Linearizer

#: Filter ids are small integers; anything longer cannot be one of ours.
_MAX_ID_DIGITS = 18


class FilterHandler:
    """Filters never change once stored, so parsed ones are cached for every later ``/sync``."""

    def __init__(self, store: FilterStore, cache_size: int = 10_000) -> None:
        self._store = store
        self._cache: LruCache[tuple[str, int], SyncFilter] = LruCache("sync_filters", cache_size)
        self._write_lock = Linearizer("filter_upload")

    async def create_filter(self, requester: Requester, user_id: str, definition: JsonDict) -> str:
        """Validate (400 ``M_BAD_JSON``) and store a filter; returns its id."""
        if requester.user_id != user_id:
            raise AuthError(403, "Can only create filters for yourself")
        parsed = parse_filter(definition)
        async with self._write_lock.queue(user_id):
            filter_id = await self._store.add_filter(user_id, definition)
        self._cache.set((user_id, filter_id), parsed)
        return str(filter_id)

    async def get_filter_definition(self, requester: Requester, user_id: str, filter_id: str) -> JsonDict:
        if requester.user_id != user_id:
            raise AuthError(403, "Can only get your own filters")
        fid = _parse_id(filter_id)
        definition = None if fid is None else await self._store.get_filter(user_id, fid)
        if definition is None:
            raise NotFoundError("No such filter")
        return definition

    async def resolve(self, user_id: str, raw: Optional[str]) -> SyncFilter:
        """The filter a ``/sync`` asks for: none (the default), inline JSON, or a stored id."""
        if raw is None or raw == "":
            return DEFAULT_FILTER
        if raw.startswith("{"):
            try:
                definition: Any = json.loads(raw)
            except ValueError:
                raise MatrixError(400, "filter is not valid JSON", Codes.NOT_JSON) from None
            return parse_filter(definition)
        fid = _parse_id(raw)
        if fid is None:
            raise InvalidParamError("filter must be a filter ID or a JSON object")
        cached = self._cache.get((user_id, fid))
        if cached is not None:
            return cached
        generation = self._cache.generation
        stored = await self._store.get_filter(user_id, fid)
        if stored is None:
            raise NotFoundError("No such filter")
        parsed = parse_filter(stored)
        self._cache.set_if_unchanged((user_id, fid), parsed, generation)
        return parsed


def _parse_id(raw: str) -> Optional[int]:
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_ID_DIGITS:
        return None
    return int(raw)
