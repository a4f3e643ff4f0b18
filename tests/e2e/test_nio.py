"""A real client against the real server: matrix-nio's AsyncClient drives a
``python -m matrixd.app.homeserver`` process over loopback HTTP.

The process boundary is the point, so this uses real time and real sockets.
nio is asyncio code; the scenario runs in its own event loop on a worker thread
(``deferToThread(asyncio.run, ...)``) while trial's reactor waits, and the server
is a separate process started by ``matrixd.testing.process`` (stopped in
cleanup whatever happens). Each step is named, so a failure says which part of
the conversation broke.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from typing import Any, AsyncIterator, Callable, Optional

from contextlib import asynccontextmanager

from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadError,
    JoinResponse,
    LoginResponse,
    MemoryDownloadResponse,
    ProfileGetDisplayNameResponse,
    ProfileSetDisplayNameResponse,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomTypingResponse,
    SyncResponse,
    UpdateReceiptMarkerResponse,
    UploadResponse,
)
from nio.api import ReceiptType
from twisted.internet import reactor, threads
from twisted.trial import unittest

from matrixd.testing.process import ServerProcess, start_matrixd_for_test

SYNC_DEADLINE = 20.0


class StepFailed(AssertionError):
    """A named step of the conversation did not do what the spec says."""


@asynccontextmanager
async def step(name: str) -> AsyncIterator[None]:
    """Re-raise any failure inside the block as ``StepFailed("<name>: ...")``."""
    try:
        yield
    except StepFailed:
        raise
    except BaseException as e:
        raise StepFailed(f"step '{name}' failed: {type(e).__name__}: {e}") from e


def expect(response: Any, kind: type, what: str) -> Any:
    """The response if it is a ``kind``; otherwise fail naming the nio error we got."""
    if not isinstance(response, kind):
        detail = getattr(response, "message", None) or getattr(response, "status_code", None) or response
        raise StepFailed(f"{what}: expected {kind.__name__}, got {type(response).__name__}: {detail}")
    return response


def new_client(base_url: str, user: str) -> AsyncClient:
    config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False, max_timeouts=2)
    return AsyncClient(base_url, user, config=config)


async def register(client: AsyncClient, localpart: str, password: str) -> RegisterResponse:
    """Register with the m.login.dummy stage, following the user-interactive auth
    session if the server asks for one first (both are allowed by the spec)."""
    response = await client.register(localpart, password, device_name=f"{localpart}'s e2e device")
    if not isinstance(response, RegisterResponse) and getattr(response, "status_code", None) == "M_FORBIDDEN":
        raise StepFailed(f"registration refused: {response.message}")
    if not isinstance(response, RegisterResponse):
        session = _uia_session(client, response)
        if session is not None:
            response = await client.register(localpart, password, device_name=f"{localpart}'s e2e device",
                                             session_token=session)
    return expect(response, RegisterResponse, f"register {localpart}")


def _uia_session(client: AsyncClient, response: Any) -> Optional[str]:
    source = getattr(response, "source", None) or {}
    session = source.get("session") if isinstance(source, dict) else None
    return session if isinstance(session, str) else None


async def sync_until(client: AsyncClient, predicate: Callable[[SyncResponse], bool], what: str) -> SyncResponse:
    """Incremental /sync (long-polling) until ``predicate`` holds for one response."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SYNC_DEADLINE
    while loop.time() < deadline:
        response = expect(await client.sync(timeout=2000), SyncResponse, f"/sync while waiting for {what}")
        if predicate(response):
            return response
    raise StepFailed(f"{what} not seen through /sync within {SYNC_DEADLINE}s")


def timeline(response: SyncResponse, room_id: str) -> list[Any]:
    room = response.rooms.join.get(room_id)
    return list(room.timeline.events) if room is not None else []


def ephemeral(response: SyncResponse, room_id: str) -> list[Any]:
    room = response.rooms.join.get(room_id)
    return list(room.ephemeral) if room is not None else []


async def conversation(tc: unittest.TestCase, base_url: str, server_name: str) -> None:
    """Two users meet in a room and use it the way a chat client does."""
    suffix = secrets.token_hex(3)
    alice_name, bob_name = f"alice{suffix}", f"bob{suffix}"
    alice_id, bob_id = f"@{alice_name}:{server_name}", f"@{bob_name}:{server_name}"
    alice, bob = new_client(base_url, alice_name), new_client(base_url, bob_name)
    alice2 = new_client(base_url, alice_id)
    try:
        async with step("register two users"):
            reg = await register(alice, alice_name, "alice-secret-1")
            tc.assertEqual(reg.user_id, alice_id)
            tc.assertTrue(reg.access_token and reg.device_id)
            reg = await register(bob, bob_name, "bob-secret-1")
            tc.assertEqual(reg.user_id, bob_id)

        async with step("log in with a password on a second device"):
            login = expect(await alice2.login("alice-secret-1", device_name="second"), LoginResponse, "login")
            tc.assertEqual(login.user_id, alice_id)
            tc.assertNotEqual(login.device_id, alice.device_id)
            tc.assertNotEqual(login.access_token, alice.access_token)

        async with step("initial sync"):
            expect(await alice.sync(timeout=0), SyncResponse, "alice initial sync")
            expect(await bob.sync(timeout=0), SyncResponse, "bob initial sync")
            tc.assertTrue(alice.next_batch and bob.next_batch)

        async with step("create a room"):
            created = expect(await alice.room_create(name="e2e room", topic="nio against matrixd"),
                             RoomCreateResponse, "createRoom")
            room_id = created.room_id
            tc.assertTrue(room_id.startswith("!"))
            await sync_until(alice, lambda r: room_id in r.rooms.join, "alice's new room")
            tc.assertEqual(alice.rooms[room_id].name, "e2e room")

        async with step("invite"):
            expect(await alice.room_invite(room_id, bob_id), RoomInviteResponse, "invite")
            await sync_until(bob, lambda r: room_id in r.rooms.invite, "bob's invite")

        async with step("join"):
            expect(await bob.join(room_id), JoinResponse, "join")

            def bob_joined(r: SyncResponse) -> bool:
                return any(isinstance(e, RoomMemberEvent) and e.state_key == bob_id and e.membership == "join"
                           for e in timeline(r, room_id))

            await sync_until(alice, bob_joined, "bob's join (for alice)")
            await sync_until(bob, lambda r: room_id in r.rooms.join, "the joined room (for bob)")
            tc.assertIn(alice_id, bob.rooms[room_id].users)

        async with step("exchange messages"):
            sent = expect(await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"}),
                          RoomSendResponse, "alice's message")

            def has_text(body: str) -> Callable[[SyncResponse], bool]:
                return lambda r: any(isinstance(e, RoomMessageText) and e.body == body for e in timeline(r, room_id))

            got = await sync_until(bob, has_text("hello bob"), "alice's message (for bob)")
            event = next(e for e in timeline(got, room_id) if isinstance(e, RoomMessageText))
            tc.assertEqual((event.event_id, event.sender), (sent.event_id, alice_id))
            reply = expect(await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"}),
                           RoomSendResponse, "bob's reply")
            await sync_until(alice, has_text("hi alice"), "bob's reply (for alice)")

        async with step("typing notification"):
            expect(await bob.room_typing(room_id, True, 30000), RoomTypingResponse, "typing")

            def typing_is(users: list[str]) -> Callable[[SyncResponse], bool]:
                return lambda r: any(getattr(e, "users", None) == users for e in ephemeral(r, room_id))

            await sync_until(alice, typing_is([bob_id]), "bob typing (for alice)")
            expect(await bob.room_typing(room_id, False), RoomTypingResponse, "stop typing")
            await sync_until(alice, typing_is([]), "bob stopped typing (for alice)")

        async with step("read receipt"):
            expect(await alice.update_receipt_marker(room_id, reply.event_id, ReceiptType.read),
                   UpdateReceiptMarkerResponse, "receipt")

            def alice_read_reply(r: SyncResponse) -> bool:
                return any(isinstance(e, ReceiptEvent) and any(
                    rc.event_id == reply.event_id and rc.user_id == alice_id and rc.receipt_type == "m.read"
                    for rc in e.receipts) for e in ephemeral(r, room_id))

            await sync_until(bob, alice_read_reply, "alice's read receipt (for bob)")

        async with step("profile change"):
            expect(await bob.set_displayname("Bobby Tables"), ProfileSetDisplayNameResponse, "set displayname")
            name = expect(await alice.get_displayname(bob_id), ProfileGetDisplayNameResponse, "get displayname")
            tc.assertEqual(name.displayname, "Bobby Tables")

            def renamed(r: SyncResponse) -> bool:
                return any(isinstance(e, RoomMemberEvent) and e.state_key == bob_id
                           and e.content.get("displayname") == "Bobby Tables" for e in timeline(r, room_id))

            await sync_until(alice, renamed, "bob's new display name in the room (for alice)")
            tc.assertEqual(alice.rooms[room_id].user_name(bob_id), "Bobby Tables")

        async with step("media upload and download"):
            data = b"matrixd e2e media " + os.urandom(64)
            uploaded, _ = await alice.upload(io.BytesIO(data), content_type="text/plain", filename="note.txt",
                                             filesize=len(data))
            uploaded = expect(uploaded, UploadResponse, "upload")
            tc.assertTrue(uploaded.content_uri.startswith(f"mxc://{server_name}/"))
            expect(await alice.room_send(room_id, "m.room.message", {
                "msgtype": "m.file", "body": "note.txt", "url": uploaded.content_uri,
                "info": {"mimetype": "text/plain", "size": len(data)},
            }), RoomSendResponse, "file message")

            def file_event(r: SyncResponse) -> bool:
                return any(getattr(e, "source", {}).get("content", {}).get("url") == uploaded.content_uri
                           for e in timeline(r, room_id))

            await sync_until(bob, file_event, "the file message (for bob)")
            downloaded = await bob.download(uploaded.content_uri)
            if isinstance(downloaded, DownloadError):
                raise StepFailed(f"download: {downloaded.status_code} {downloaded.message}")
            downloaded = expect(downloaded, MemoryDownloadResponse, "download")
            tc.assertEqual(downloaded.body, data)
            tc.assertTrue(downloaded.content_type.startswith("text/plain"))
            tc.assertEqual(downloaded.filename, "note.txt")

        async with step("history with /messages"):
            # Page back from the live end five events at a time until the server omits `end`.
            token: Optional[str] = alice.next_batch
            history: list[Any] = []
            for _ in range(20):
                page = expect(await alice.room_messages(room_id, start=token, limit=5), RoomMessagesResponse,
                              "/messages")
                history += page.chunk
                if not page.end or not page.chunk:
                    break
                token = page.end
            bodies = [e.body for e in history if isinstance(e, RoomMessageText)]
            tc.assertEqual(bodies, ["hi alice", "hello bob"])
            tc.assertEqual(history[-1].source["type"], "m.room.create")
            tc.assertEqual(len({e.event_id for e in history}), len(history))

        async with step("leave"):
            expect(await bob.room_leave(room_id), RoomLeaveResponse, "leave")

            def bob_left(r: SyncResponse) -> bool:
                return any(isinstance(e, RoomMemberEvent) and e.state_key == bob_id and e.membership == "leave"
                           for e in timeline(r, room_id))

            await sync_until(alice, bob_left, "bob's leave (for alice)")
            await sync_until(bob, lambda r: room_id in r.rooms.leave, "the left room (for bob)")
            tc.assertNotIn(bob_id, alice.rooms[room_id].users)
    finally:
        for client in (alice, bob, alice2):
            await client.close()


class NioConversationTestCase(unittest.TestCase):
    timeout = 180

    async def test_two_users_converse_through_a_real_server(self) -> None:
        """A nio client pair registers, meets in a room, chats, types, reads, renames, shares a file and leaves."""
        proc: ServerProcess = await start_matrixd_for_test(self, reactor)
        try:
            await threads.deferToThread(asyncio.run, conversation(self, proc.base_url, proc.server_name))
        except StepFailed as e:
            self.fail(f"{e}\n--- end of the server log ---\n{proc.log_tail(4000)}")
        self.assertTrue(proc.is_running(), proc.log_tail())
        self.assertEqual(proc.stop(), 0, proc.log_tail())
        self.assertNotIn("Traceback", proc.log_tail(10**7))
