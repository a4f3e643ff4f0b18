"""Fill a homeserver's database with a large room, offline, through matrixd's own write path.

Sending tens of thousands of events over HTTP takes minutes; this builds the
same data in seconds by running the master's components (``build_master_components``)
against the server's database *before* the server is started, and sending
every event through the room core's ``send_event``: each one is built,
auth-checked against the room state and group-committed (up to
``MAX_GROUP_COMMIT`` per transaction) exactly as a client's ``/send`` would be.

Run it as a separate process so it has its own reactor and nothing it starts
outlives it::

    python -m matrixd.testing.bulk_room -c homeserver.yaml --messages 50000 --out fixture.json

The JSON written to ``--out`` names the users (with passwords, to log in once
the server runs), the rooms and the event ids a test needs (see :func:`build`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional, Sequence

from twisted.internet import defer, task

from matrixd.app.core import RoomCore
from matrixd.app.homeserver import build_master, stop_master
from matrixd.app.master import build_master_components
from matrixd.config.root import load_config
from matrixd.storage.schema import prepare_database
from matrixd.types import JsonDict, Requester

PASSWORD = "bulk-room-password"
BIG_ROOM_MEMBERS = ("alice", "bob", "carol")
# Outstanding sends at a time: several group commits' worth, so the writer always has a full batch queued.
WINDOW = 400
# A state change (topic, name, a member joining or leaving) every this many messages.
STATE_EVERY = 10_000
SMALL_ROOM_MESSAGES = 30


def _req(user_id: str) -> Requester:
    return Requester(user_id=user_id, device_id=None, access_token_id=None)


async def build(reactor: Any, config_path: str, messages: int, tail: int) -> JsonDict:
    """Create the users and rooms, send ``messages`` messages to the big room; return what a test needs.

    ``tail``: how many messages end the room from the ``purge_point`` event
    on (in the order stored), so a purge up to it leaves those behind.
    """
    config = load_config([config_path])
    app = build_master(config, reactor)
    await prepare_database(app.database)
    app.components = comps = await build_master_components(
        app.config, reactor, app.clock, app.database, app.signing_key
    )
    try:
        server = config.server.server_name
        accounts = comps.account_area
        password_hash = await accounts.hasher.hash(PASSWORD)
        users: dict[str, str] = {}
        for localpart, admin in (("root", True), *((m, False) for m in BIG_ROOM_MEMBERS), ("dave", False),
                                 ("erin", False)):
            users[localpart] = await accounts.registration.create_account(
                localpart, password_hash, admin=admin, displayname=localpart.capitalize())
        core = comps.core
        alice, bob, carol, dave, erin = (users[n] for n in ("alice", "bob", "carol", "dave", "erin"))

        big = await core.room_creation.create_room(_req(alice), {"preset": "public_chat", "name": "Big room",
                                                                 "topic": "A long history"})
        for member in (bob, carol):
            await core.membership.update_membership(_req(member), member, big, "join")
        small = await core.room_creation.create_room(_req(dave), {"preset": "public_chat", "name": "Small room"})
        await core.membership.update_membership(_req(erin), erin, small, "join")
        for i in range(SMALL_ROOM_MESSAGES):
            sender = (dave, erin)[i % 2]
            await core.send.send_event(_req(sender), small, "m.room.message",
                                       {"msgtype": "m.text", "body": f"small {i}"})

        senders = [users[m] for m in BIG_ROOM_MEMBERS]
        purge_index = messages - tail
        event_ids: dict[int, str] = {}
        state_changes = 0
        started = time.monotonic()

        async def send(n: int) -> None:
            event_ids[n] = await core.send.send_event(
                _req(senders[n % len(senders)]), big, "m.room.message", {"msgtype": "m.text", "body": f"big {n}"})

        n = 0
        while n < messages:
            chunk_end = min(messages, (n // STATE_EVERY + 1) * STATE_EVERY)
            pending: list[defer.Deferred[None]] = []
            for i in range(n, chunk_end):
                pending.append(defer.ensureDeferred(send(i)))
                if len(pending) >= WINDOW:
                    await defer.gatherResults(pending, consumeErrors=True)
                    pending = []
            if pending:
                await defer.gatherResults(pending, consumeErrors=True)
            n = chunk_end
            if n < messages:
                await _state_change(core, big, alice, erin, state_changes)
                state_changes += 1
            sys.stderr.write(f"bulk_room: {n} messages in {time.monotonic() - started:.1f}s\n")

        # Concurrent sends may reach the room's queue out of number order: go by the stored order.
        numbers = {event_id: n for n, event_id in event_ids.items()}
        rows = await comps.db.execute(
            "bulk_room_order", "SELECT event_id FROM events WHERE room_id = ? AND type = 'm.room.message'"
            " ORDER BY stream_ordering", big)
        ordered = [numbers[r[0]] for r in rows]
        if sorted(ordered) != list(range(messages)):
            raise RuntimeError("the big room does not hold exactly the messages sent")
        return {
            "server_name": server, "password": PASSWORD, "users": users,
            "big_room": big, "small_room": small, "messages": messages, "state_changes": state_changes,
            # The message ``tail`` from the end; the ones after it (and it) are ``kept``.
            "purge_point": event_ids[ordered[purge_index]], "purge_index": purge_index,
            "kept": ordered[purge_index:], "last_message": event_ids[ordered[-1]],
            "seconds": round(time.monotonic() - started, 2),
        }
    finally:
        await stop_master(app)


async def _state_change(core: RoomCore, room: str, owner: str, visitor: str, k: int) -> None:
    """One of a few ordinary state changes, in rotation: topic, name, a member joining, then leaving."""
    kind = k % 4
    if kind == 0:
        await core.send.send_event(_req(owner), room, "m.room.topic", {"topic": f"Topic {k}"}, state_key="")
    elif kind == 1:
        await core.send.send_event(_req(owner), room, "m.room.name", {"name": f"Big room {k}"}, state_key="")
    elif kind == 2:
        await core.membership.update_membership(_req(visitor), visitor, room, "join")
    else:
        await core.membership.update_membership(_req(visitor), visitor, room, "leave")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-c", "--config-path", required=True)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--tail", type=int, default=100, help="messages from the purge point on (kept by a purge up to it)")
    parser.add_argument("--out", required=True, help="where to write the JSON description")
    args = parser.parse_args(argv)
    if not 0 < args.tail < args.messages:
        parser.error("--tail must be between 1 and --messages - 1")

    async def run(reactor: Any) -> None:
        result = await build(reactor, args.config_path, args.messages, args.tail)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f)

    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()
