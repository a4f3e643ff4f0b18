"""Who gets an event another server handed us for the room (a join, leave or knock it sent us).

The outbound sender forwards our own users' events by itself; events that
reach the room through us in a membership handshake must be passed on
explicitly, to every other server with a joined member (and the target's).
"""

from __future__ import annotations

from typing import Collection, Optional

from matrixd.events.event import Event
from matrixd.federation.sender_api import FederationSender
from matrixd.storage.current_state import CurrentStateStore
from matrixd.types import IdentifierError, get_domain_from_id


def _domain(user_id: str) -> Optional[str]:
    try:
        return get_domain_from_id(user_id)
    except IdentifierError:
        return None


class PduDistributor:
    def __init__(self, server_name: str, current_state: CurrentStateStore, sender: FederationSender) -> None:
        self._server_name = server_name
        self._current = current_state
        self._sender = sender

    async def distribute(self, event: Event, exclude: Collection[str] = ()) -> None:
        """Queue ``event`` for every server with a joined member, the target's, minus ``exclude``."""
        hosts = {d for d in map(_domain, await self._current.get_users_in_room(event.room_id)) if d}
        if event.type == "m.room.member" and event.state_key:
            target = _domain(event.state_key)
            if target:
                hosts.add(target)
        hosts.discard(self._server_name)
        hosts.difference_update(exclude)
        if hosts:
            self._sender.send_pdu(event, hosts)
