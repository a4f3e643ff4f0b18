"""The server administration area: its store, handlers and job runner, as one field of the master."""

from __future__ import annotations

import attrs

from matrixd.handlers.admin.deletion import RoomDeletionHandler
from matrixd.handlers.admin.jobs import JobRunner
from matrixd.handlers.admin.media import MediaAdminHandler
from matrixd.handlers.admin.misc import AdminMiscHandler
from matrixd.handlers.admin.notices import ServerNoticesHandler
from matrixd.handlers.admin.rooms import RoomAdminHandler
from matrixd.handlers.admin.users import UserAdminHandler
from matrixd.storage.admin import AdminStore


@attrs.define
class AdminArea:
    store: AdminStore
    runner: JobRunner
    users: UserAdminHandler
    rooms: RoomAdminHandler
    deletion: RoomDeletionHandler
    media: MediaAdminHandler
    misc: AdminMiscHandler
    notices: ServerNoticesHandler
