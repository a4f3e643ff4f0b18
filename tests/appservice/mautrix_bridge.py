"""A tiny bridge on the real mautrix SDK, run as a subprocess by ``test_sdk``.

Usage: python mautrix_bridge.py <hs_url> <port> <as_token> <hs_token>
Prints one JSON line with what it saw, exits 0 on success.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mautrix.appservice import AppService
from mautrix.types import EventType, UserID


async def main(hs_url: str, port: int, as_token: str, hs_token: str) -> dict[str, Any]:
    appserv = AppService(server=hs_url, domain="localhost", as_token=as_token, hs_token=hs_token,
                         bot_localpart="realbot", id="realbridge")
    received: list[dict[str, Any]] = []
    got = asyncio.Event()

    @appserv.matrix_event_handler
    async def handle(evt: Any) -> None:
        received.append({"type": str(evt.type), "event_id": str(getattr(evt, "event_id", ""))})
        if evt.type == EventType.ROOM_MESSAGE and getattr(evt.content, "body", None) == "hello from mautrix":
            got.set()

    await appserv.start("127.0.0.1", port)
    try:
        ping_ms = await appserv.ping_self("mautrix-ping-1")
        bot = appserv.intent
        puppet = bot.user(UserID("@_real_puppet:localhost"))
        await puppet.ensure_registered()
        room_id = await bot.create_room(invitees=[puppet.mxid])
        await puppet.ensure_joined(room_id)
        event_id = await puppet.send_text(room_id, "hello from mautrix")
        await asyncio.wait_for(got.wait(), 30)
        whoami = await puppet.whoami()
        return {"ping_ms": ping_ms, "event_id": str(event_id), "room_id": str(room_id),
                "whoami": str(whoami.user_id), "received": received}
    finally:
        await appserv.stop()


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    print("RESULT " + json.dumps(result), flush=True)
