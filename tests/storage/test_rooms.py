"""The rooms table: creation is idempotent, versions resolve to RoomVersion records."""

from __future__ import annotations

from matrixd.api.errors import NotFoundError, UnsupportedRoomVersionError
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS
from matrixd.storage.models import RoomInfo
from tests.storage.utils import StorageTestCase


class RoomStoreTestCase(StorageTestCase):
    async def test_store_and_get_room(self) -> None:
        """store_room creates once (True) and then reports the room exists (False) without changing it."""
        self.assertTrue(await self.rooms.store_room("!r:test.local", "10", "@a:test.local", False))
        self.assertFalse(await self.rooms.store_room("!r:test.local", "11", None, True))
        self.assertEqual(await self.rooms.get_room("!r:test.local"), RoomInfo("!r:test.local", "10", "@a:test.local", False))
        self.assertIs(await self.rooms.get_room_version("!r:test.local"), KNOWN_ROOM_VERSIONS["10"])
        self.assertIsNone(await self.rooms.get_room("!nope:test.local"))

    async def test_unknown_rooms_and_versions(self) -> None:
        """Unknown rooms are NotFoundError; a stored but unsupported version is M_UNSUPPORTED_ROOM_VERSION."""
        with self.assertRaises(NotFoundError):
            await self.rooms.get_room_version("!nope:test.local")
        await self.rooms.store_room("!weird:test.local", "org.example.custom", None, False)
        with self.assertRaises(UnsupportedRoomVersionError):
            await self.rooms.get_room_version("!weird:test.local")

    async def test_public_rooms(self) -> None:
        """Publishing a room lists it; unknown rooms cannot be published."""
        await self.rooms.store_room("!b:test.local", "10", None, False)
        await self.rooms.store_room("!a:test.local", "10", None, True)
        self.assertEqual(await self.rooms.get_public_room_ids(), ["!a:test.local"])
        await self.rooms.set_room_is_public("!b:test.local", True)
        self.assertEqual(await self.rooms.get_public_room_ids(), ["!a:test.local", "!b:test.local"])
        with self.assertRaises(NotFoundError):
            await self.rooms.set_room_is_public("!nope:test.local", True)
