"""``/sync``: filters, the per-room timeline and state computation, and long-polling."""

from matrixd.handlers.sync.filters import FilterHandler
from matrixd.handlers.sync.handler import SyncHandler, SyncStores
from matrixd.handlers.sync.types import AllVisible, EventVisibility, SyncConfig, SyncResult

__all__ = ["AllVisible", "EventVisibility", "FilterHandler", "SyncConfig", "SyncHandler", "SyncResult", "SyncStores"]
