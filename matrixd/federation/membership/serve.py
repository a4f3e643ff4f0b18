"""Serving other servers' membership handshakes: make/send join, leave and knock; inbound invites.

* ``make_membership``: a template event (no hashes, signatures or id) built
  on our forward extremities, after checking the room version is one the
  requester supports and that the auth rules allow the membership now (403
  otherwise).  Restricted joins name a local user who can invite in
  ``join_authorised_via_users_server``.
* ``send_membership``: the signed event passes the receipt checks (for a
  restricted join we add our signature first, as the authorising server),
  must be the requester's own membership of the right kind, and is processed
  like any received PDU, then sent to the other servers in the room.  A join
  is answered with the state before it and its auth chain, a knock with the
  stripped room state.  With ``omit_members`` (send_join v2) the state keeps
  only non-member events, the joining user's own membership and, when the
  room has no name nor canonical alias, the heroes' memberships (what the
  joining server needs to name the room); the auth chain is that of what is
  returned; ``servers_in_room`` lists the servers with joined members before
  the join.  A room we hold only partial state of is not joined through us.
* ``on_invite``: an invite of a local user, signed by the inviting server: we
  add our signature and store it as an out-of-band membership (the invitee's
  ``/sync`` shows it with ``invite_room_state``).
"""

from __future__ import annotations

import logging
from typing import Any, Collection, Mapping, Optional

from signedjson.types import SigningKey

from matrixd.api.errors import (
    AuthError,
    BadJsonError,
    Codes,
    IncompatibleRoomVersionError,
    MatrixError,
    NotFoundError,
)
from matrixd.crypto.keyring import Keyring
from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrixd.events.signing import sign_event_dict
from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.inbound.pdu_checks import PduDropped, check_pdu, domain_of
from matrixd.federation.membership.stripped import stripped_state
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.federation.membership.distribute import PduDistributor
from matrixd.handlers.events.federated import ReceivedEventPersister
from matrixd.handlers.events.creation import EventCreationHandler, EventSpec
from matrixd.handlers.rooms.membership import RoomMemberHandler
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.rooms import RoomStore
from matrixd.storage.state import StateGroupStore

logger = logging.getLogger(__name__)

JOIN, LEAVE, KNOCK, INVITE = "join", "leave", "knock", "invite"
#: How many members name a room without a name (the sync summary's ``m.heroes``).
_HEROES = 5
_NOT_IN_TEMPLATE = ("signatures", "hashes", "unsigned", "event_id")


class MembershipServer:
    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        keyring: Keyring,
        rooms: RoomStore,
        events: EventStore,
        state: StateGroupStore,
        current_state: CurrentStateStore,
        creation: EventCreationHandler,
        membership: RoomMemberHandler,
        event_handler: FederationEventHandler,
        distributor: PduDistributor,
        received: ReceivedEventPersister,
        partial_state: PartialStateStore,
    ) -> None:
        self._partial = partial_state
        self._server_name = server_name
        self._signing_key = signing_key
        self._keyring = keyring
        self._rooms = rooms
        self._events = events
        self._state = state
        self._current = current_state
        self._creation = creation
        self._membership = membership
        self._event_handler = event_handler
        self._distributor = distributor
        self._received = received

    async def _room_version(self, room_id: str) -> RoomVersion:
        room = await self._rooms.get_room(room_id)
        if room is None or room.room_version not in KNOWN_ROOM_VERSIONS:
            raise NotFoundError(f"Unknown room {room_id}")
        return KNOWN_ROOM_VERSIONS[room.room_version]

    # -- make_* ----------------------------------------------------------------------

    async def make_membership(self, origin: str, room_id: str, user_id: str, membership: str,
                              supported_versions: Collection[str]) -> JsonDict:
        """``{"event": template, "room_version": ...}`` for ``user_id`` to sign and send back."""
        if domain_of(user_id) != origin:
            raise AuthError(403, f"{origin} cannot make a membership event for {user_id}")
        if membership in (JOIN, KNOCK):
            await self._membership.check_room_not_blocked(room_id)
        rv = await self._room_version(room_id)
        if membership == JOIN:
            await self._refuse_if_partial(room_id)
        if membership in (JOIN, KNOCK) and rv.identifier not in supported_versions:
            raise IncompatibleRoomVersionError(rv.identifier)
        if membership == KNOCK and not rv.knock_join_rule:
            raise IncompatibleRoomVersionError(rv.identifier)
        content: JsonDict = {"membership": membership}
        if membership == JOIN:
            # Names a local authoriser for restricted rooms (403 if the user meets no allow rule).
            await self._membership.authorise_restricted_join(room_id, user_id, content)
        async with self._creation.room_lock.queue(room_id):
            event, _state, _group = await self._creation.build(
                room_id, rv, EventSpec("m.room.member", user_id, content, user_id)
            )
        template = {k: v for k, v in event.get_pdu_json().items() if k not in _NOT_IN_TEMPLATE}
        template["origin"] = self._server_name
        return {"event": template, "room_version": rv.identifier}

    # -- send_* ----------------------------------------------------------------------

    async def send_membership(self, origin: str, room_id: str, event_id: str, pdu: JsonDict,
                              membership: str, *, omit_members: bool = False) -> JsonDict:
        """Accept a signed membership event; the answer's body (see the module docstring)."""
        if membership in (JOIN, KNOCK):
            await self._membership.check_room_not_blocked(room_id)
        if membership == JOIN:
            await self._refuse_if_partial(room_id)
        rv = await self._room_version(room_id)
        if membership == JOIN and rv.restricted_join_rule:
            content = pdu.get("content")
            authoriser = content.get("join_authorised_via_users_server") if isinstance(content, dict) else None
            if isinstance(authoriser, str) and domain_of(authoriser) == self._server_name:
                pdu = sign_event_dict(rv, pdu, self._server_name, self._signing_key)
        try:
            event = await check_pdu(self._keyring, rv, pdu, expected_event_id=event_id)
        except PduDropped as e:
            raise AuthError(403, f"The event is not acceptable: {e}") from None
        self._check_membership_event(origin, room_id, event, membership)
        await self._event_handler.on_receive_pdu(origin, event)
        stored = await self._events.get_event(event.event_id)
        if stored is None or stored.rejected:
            raise AuthError(403, "The membership event is not allowed by the room's rules")
        await self._distributor.distribute(stored, exclude=(origin,))
        if membership == JOIN:
            return await self._join_response(event, omit_members)
        if membership == KNOCK:
            return {"knock_room_state": await stripped_state(self._events, self._current, room_id)}
        return {}

    def _check_membership_event(self, origin: str, room_id: str, event: Event, membership: str) -> None:
        if event.room_id != room_id:
            raise BadJsonError("The event is for another room")
        if event.type != "m.room.member" or event.membership != membership:
            raise BadJsonError(f"The event is not an m.room.member {membership} event")
        if event.state_key != event.sender:
            raise BadJsonError("The event's state_key must be its sender")
        if domain_of(event.sender) != origin:
            raise AuthError(403, f"{origin} cannot send a membership event for {event.sender}")

    async def _refuse_if_partial(self, room_id: str) -> None:
        """We cannot give a joining server the room's state while we lack its members: it must ask another."""
        if await self._partial.is_partial(room_id):
            raise NotFoundError(f"This server does not know the full state of {room_id} yet")

    async def _join_response(self, event: Event, omit_members: bool) -> JsonDict:
        state = await self._state.get_state_ids_for_event(event.event_id, before=True)
        if state is None:
            raise MatrixError(500, "The state at the join is unknown", Codes.UNKNOWN)
        answer: JsonDict = {"origin": self._server_name, "event": pdu_for_federation(event)}
        joiner = event.state_key or ""
        if omit_members:
            # From the current state's caches, not the 2,000 member events of a large room: the join is
            # the only change since the state before it, and its sender is left out.
            users = [u for u in await self._current.get_users_in_room(event.room_id) if u != joiner]
            answer["servers_in_room"] = sorted({d for d in map(domain_of, users) if d})
            state_ids = await self._state_without_members(event.room_id, state, joiner)
        else:
            state_ids = list(state.values())
        state_events = await self._events.get_events(state_ids)
        chain = await self._events.get_auth_chain_ids([*state_events, *event.auth_event_ids()], include_given=False)
        chain |= set(event.auth_event_ids())
        chain_events = await self._events.get_events(chain)
        answer["state"] = [pdu_for_federation(e) for e in _by_depth(state_events.values())]
        answer["auth_chain"] = [pdu_for_federation(e) for e in _by_depth(chain_events.values())]
        answer["members_omitted"] = omit_members
        return answer

    async def _state_without_members(self, room_id: str, state: Mapping[StateKey, str], joiner: str) -> list[str]:
        """The ids of ``state`` to send with ``omit_members``: non-member events, the joining user's membership,
        and the heroes' (``m.heroes`` of the sync summary: five joined or invited members by stream order, else
        those who left or were banned) when the room has no name nor canonical alias to show."""
        kept = [eid for (etype, _sk), eid in state.items() if etype != "m.room.member"]
        own = state.get(("m.room.member", joiner))
        if own is not None:
            kept.append(own)
        naming = await self._events.get_events(
            [eid for key, eid in state.items() if key in (("m.room.name", ""), ("m.room.canonical_alias", ""))])
        if not any(e.content.get("name") or e.content.get("alias") for e in naming.values()):
            heroes = (await self._current.get_heroes([room_id], exclude_user=joiner, limit=_HEROES)).get(room_id, [])
            kept.extend(state[("m.room.member", h)] for h in heroes if ("m.room.member", h) in state)
        return kept

    # -- invites ---------------------------------------------------------------------

    async def on_invite(self, origin: str, room_id: str, event_id: str, pdu: Any, room_version_id: Optional[str],
                        invite_room_state: Optional[list[Any]]) -> JsonDict:
        """Counter-sign an invite of a local user and remember it; ``{"event": signed pdu}``."""
        await self._membership.check_room_not_blocked(room_id)
        if room_version_id is None:
            room = await self._rooms.get_room(room_id)
            room_version_id = room.room_version if room is not None else "1"
        rv = KNOWN_ROOM_VERSIONS.get(room_version_id)
        if rv is None:
            raise IncompatibleRoomVersionError(room_version_id)
        try:
            event = await check_pdu(self._keyring, rv, pdu, expected_event_id=event_id)
        except PduDropped as e:
            raise AuthError(403, f"The invite is not acceptable: {e}") from None
        if event.room_id != room_id or event.type != "m.room.member" or event.membership != INVITE:
            raise BadJsonError("The event is not an invite to this room")
        if event.state_key is None or domain_of(event.state_key) != self._server_name:
            raise BadJsonError("The invitee is not a user of this server")
        if domain_of(event.sender) != origin:
            raise AuthError(403, f"{origin} cannot invite on behalf of {event.sender}")
        await self._membership.provision_if_unknown(event.state_key)  # application services' users
        signed = sign_event_dict(rv, {k: v for k, v in event.get_pdu_json().items() if k != "unsigned"},
                                 self._server_name, self._signing_key)
        stored_pdu = dict(signed)
        stripped = [s for s in (invite_room_state or []) if isinstance(s, dict)]
        stored_pdu["unsigned"] = {"invite_room_state": stripped}
        invite = Event(stored_pdu, rv, event_id=event.event_id)
        invite.internal_metadata.outlier = True
        # In the room, the invite also reaches us in a transaction and enters the room's state; a room
        # we know but have left (or never joined) gets it out of band, like an unknown room.
        we_are_in_room = any(
            domain_of(user_id) == self._server_name for user_id in await self._current.get_users_in_room(room_id)
        )
        await self._received.persist_outliers([invite], out_of_band_membership=not we_are_in_room)
        return {"event": signed}



def _by_depth(events: Collection[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.depth, e.event_id))
