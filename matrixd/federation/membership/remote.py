"""Our users' memberships in rooms held by other servers: remote joins, knocks, leaves and invites.

* ``remote_join``: ``make_join`` on each candidate server in turn until one
  answers; we sign the template as our user's join and ``send_join`` (v2) it
  with ``omit_members=true``; the returned state and auth chain pass the
  receipt checks (signatures, hashes) and the auth rules against their own
  auth events, are stored as outliers, and the join is persisted on that
  state, which becomes the room's current state.  The room is then ours to
  use (rooms table, extremities).  When the server did omit members
  (``members_omitted``), the room is first marked partial-state with its
  ``servers_in_room`` and, once the join is stored, the client is answered
  while ``PartialStateResync`` fetches the full state in the background; the
  join itself is checked against the partial state completed by the join's
  own auth events (its sender's earlier membership may be among the omitted).
  A server that does not omit members gives the full state as before.
* ``remote_knock``: the same with ``make_knock``/``send_knock``; the knock is
  stored as an out-of-band membership with ``knock_room_state``.
* ``remote_leave``: rejecting an invite (or withdrawing a knock) of a room we
  are not in: ``make_leave``/``send_leave`` through the inviting server; if
  no server takes it, the leave is recorded locally only, so the user is not
  stuck with the invite.
* ``exchange_invite``: an invite of a remote user goes to their server first
  (``/v2/invite``), which must return it with its signature added.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from signedjson.types import SigningKey

from matrixd.api.errors import AuthError, Codes, MatrixError
from matrixd.crypto.keyring import Keyring
from matrixd.events.builder import create_local_event, random_event_id
from matrixd.events.event import Event, JsonDict, StateKey
from matrixd.events.hashing import add_content_hash
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from matrixd.events.signing import sign_event_dict
from matrixd.events.validation import validate_pdu
from matrixd.federation.inbound.events import FederationEventHandler
from matrixd.federation.inbound.pdu_checks import PduDropped, check_pdu, domain_of
from matrixd.federation.membership.stripped import stripped_state
from matrixd.federation.missing_events import RemoteEventFetcher
from matrixd.federation.read_handler import pdu_for_federation
from matrixd.federation.transport.client import HttpResponseException, MatrixFederationClient, RequestSendFailed
from matrixd.handlers.events.federated import ReceivedEventPersister
from matrixd.state.auth import (
    auth_types_for_event,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.events import EventStore
from matrixd.storage.partial_state import PartialStateStore
from matrixd.storage.profiles import ProfileStore
from matrixd.storage.rooms import RoomStore
from matrixd.types import Requester
from matrixd.util.clock import Clock
from matrixd.util.linearizer import Linearizer

if TYPE_CHECKING:
    from matrixd.federation.membership.partial_state import PartialStateResync

logger = logging.getLogger(__name__)

_NOT_SIGNED_BY_US = ("signatures", "hashes", "unsigned")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class RemoteMembershipHandler:
    def __init__(
        self,
        *,
        clock: Clock,
        server_name: str,
        signing_key: SigningKey,
        client: MatrixFederationClient,
        keyring: Keyring,
        fetcher: RemoteEventFetcher,
        rooms: RoomStore,
        events: EventStore,
        current_state: CurrentStateStore,
        profiles: ProfileStore,
        event_handler: FederationEventHandler,
        received: ReceivedEventPersister,
        room_lock: Linearizer,
        partial_state: PartialStateStore,
        resync: Optional["PartialStateResync"] = None,
    ) -> None:
        self._partial = partial_state
        self._resync = resync
        self._clock = clock
        self._server_name = server_name
        self._signing_key = signing_key
        self._client = client
        self._keyring = keyring
        self._fetcher = fetcher
        self._rooms = rooms
        self._events = events
        self._current = current_state
        self._profiles = profiles
        self._event_handler = event_handler
        self._received = received
        self._room_lock = room_lock

    # -- joins -----------------------------------------------------------------------

    async def remote_join(self, requester: Requester, room_id: str, servers: list[str], content: JsonDict) -> str:
        """Join ``room_id`` through the first of ``servers`` that lets us; the join's event id."""
        user_id = requester.user_id
        content = {**content, **await self._profile_content(user_id)}
        errors: list[MatrixError] = []
        for server in self._candidates([*servers, *await self._servers_from_membership(room_id, user_id)]):
            try:
                rv, event = await self._make_and_sign(server, "make_join", room_id, user_id, "join", content)
                body = await self._client.put_json(
                    server, f"/_matrix/federation/v2/send_join/{_q(room_id)}/{_q(event.event_id)}",
                    pdu_for_federation(event), args={"omit_members": "true"},
                )
                return await self._persist_join(rv, room_id, event, body, server)
            except HttpResponseException as e:
                logger.info("joining %s through %s failed: %s", room_id, server, e)
                errors.append(e.to_matrix_error())
            except RequestSendFailed as e:
                logger.info("joining %s through %s failed: %s", room_id, server, e)
                errors.append(MatrixError(502, f"Could not reach {server}: {e.reason}", Codes.UNKNOWN))
            except _BadAnswer as e:
                logger.info("joining %s through %s failed: %s", room_id, server, e)
                errors.append(MatrixError(502, f"{server} gave an unusable answer: {e}", Codes.UNKNOWN))
        raise _best_error(errors, "No server could be reached to join this room")

    async def _persist_join(self, rv: RoomVersion, room_id: str, join: Event, body: JsonDict, server: str) -> str:
        returned = body.get("event")
        if isinstance(returned, dict):
            candidate = Event(dict(returned), rv)
            if candidate.event_id == join.event_id:
                join = candidate  # carries the authorising server's signature (restricted rooms)
        state_pdus, chain_pdus = body.get("state"), body.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
            raise _BadAnswer("send_join answer lacks state or auth_chain")
        partial = body.get("members_omitted") is True
        servers_in_room = body.get("servers_in_room")
        if partial and (not isinstance(servers_in_room, list) or not all(isinstance(s, str) for s in servers_in_room)):
            raise _BadAnswer("members_omitted without a servers_in_room list")
        started = self._clock.time()
        state_events = await self._fetcher.check_all(rv, state_pdus)
        chain_events = await self._fetcher.check_all(rv, chain_pdus)
        checked = self._clock.time()
        pool = {e.event_id: e for e in [*chain_events, *state_events]}
        create = next((e for e in pool.values() if e.type == "m.room.create" and e.state_key == ""), None)
        if create is None:
            raise _BadAnswer("the room's create event is missing")
        if str(create.content.get("room_version", "1")) != rv.identifier:
            raise _BadAnswer("the create event names another room version")
        try:
            join = await check_pdu(self._keyring, rv, join.get_pdu_json(), expected_event_id=join.event_id)
        except PduDropped as e:
            raise _BadAnswer(f"the returned join is not valid: {e}") from None
        state_ids = {e.event_id for e in state_events}
        async with self._room_lock.queue(room_id):
            if await self._rooms.get_room(room_id) is None:
                await self._rooms.store_room(room_id, rv.identifier, create.sender, False)
            have = await self._events.have_seen_events(pool)
            newly_stored = await self._event_handler.store_outliers(
                room_id, [e for e in pool.values() if e.event_id not in have], known=pool
            )
            # The state as stored (with rejections): the events just checked, and what we had before.
            stored = {e.event_id: e for e in newly_stored if e.event_id in state_ids}
            stored.update(await self._events.get_events(state_ids - stored.keys()))
            state: dict[StateKey, str] = {
                ev.state_key_tuple(): ev.event_id for ev in stored.values() if ev.is_state() and not ev.rejected
            }
            # With members omitted, the join's sender's earlier membership (an invite, say) may be missing
            # from the state: the join's own auth events (checked, in the auth chain) stand in for it.
            fallback = {} if not partial else {
                e.state_key_tuple(): e for e in (pool.get(a) for a in join.auth_event_ids())
                if e is not None and e.is_state() and not e.rejected
            }
            self._check_join_auth(rv, join, state, stored, create, fallback)
            state_after = dict(state)
            state_after[join.state_key_tuple()] = join.event_id
            stored_at = self._clock.time()
            if partial:
                assert isinstance(servers_in_room, list)
                await self._partial.mark_partial(room_id, join.event_id, server, servers_in_room)
            await self._received.persist(join, state, None, current_state=state_after)
        logger.info(
            "joined %s%s: %d state events, %d auth chain events (%d new); checks %.2fs, outliers %.2fs, join %.2fs",
            room_id, " with partial state" if partial else "", len(state_events), len(chain_events),
            len(newly_stored), checked - started, stored_at - checked, self._clock.time() - stored_at,
        )
        if partial and self._resync is not None:
            self._resync.start(room_id)
        return join.event_id

    def _check_join_auth(self, rv: RoomVersion, join: Event, state: dict[StateKey, str],
                         stored: dict[str, Event], create: Event, fallback: Mapping[StateKey, Event]) -> None:
        by_key = {k: stored[eid] for k, eid in state.items() if eid in stored}
        for key, event in fallback.items():
            by_key.setdefault(key, event)
        keys = set(auth_types_for_event(rv, join)) | {("m.room.create", "")}
        auth_state = {k: by_key[k] for k in keys if k in by_key}
        auth_events = {e.event_id: e for e in by_key.values()}
        try:
            check_state_independent_auth_rules(rv, join, auth_events, create_event=create)
            check_state_dependent_auth_rules(rv, join, auth_state, create_event=create)
        except AuthError as e:
            raise _BadAnswer(f"our join is not allowed by the state the server returned: {e.msg}") from None

    # -- knocks ----------------------------------------------------------------------

    async def remote_knock(self, requester: Requester, room_id: str, servers: list[str], content: JsonDict) -> str:
        user_id = requester.user_id
        errors: list[MatrixError] = []
        for server in self._candidates(servers):
            try:
                rv, event = await self._make_and_sign(server, "make_knock", room_id, user_id, "knock", content)
                body = await self._client.put_json(
                    server, f"/_matrix/federation/v1/send_knock/{_q(room_id)}/{_q(event.event_id)}",
                    pdu_for_federation(event),
                )
            except HttpResponseException as e:
                errors.append(e.to_matrix_error())
                continue
            except RequestSendFailed as e:
                errors.append(MatrixError(502, f"Could not reach {server}: {e.reason}", Codes.UNKNOWN))
                continue
            except _BadAnswer as e:
                errors.append(MatrixError(502, f"{server} gave an unusable answer: {e}", Codes.UNKNOWN))
                continue
            knock_state = body.get("knock_room_state")
            pdu = dict(event.get_pdu_json())
            pdu["unsigned"] = {"knock_room_state": knock_state if isinstance(knock_state, list) else []}
            stored = Event(pdu, rv, event_id=event.event_id)
            stored.internal_metadata.outlier = True
            await self._received.persist_outliers([stored], out_of_band_membership=True)
            return event.event_id
        raise _best_error(errors, "No server could be reached to knock on this room")

    # -- leaves ----------------------------------------------------------------------

    async def remote_leave(self, requester: Requester, room_id: str, servers: Iterable[str] = ()) -> str:
        """Leave a room we are not in (reject an invite, withdraw a knock)."""
        user_id = requester.user_id
        current = await self._current.get_membership(room_id, user_id)
        if current is None or current.membership not in ("invite", "knock"):
            raise AuthError(403, f"{user_id} is not invited to or knocking on {room_id}")
        previous = await self._events.get_event(current.event_id)
        candidates = list(servers)
        if previous is not None:
            candidates.append(domain_of(previous.sender) or "")
            if current.membership == "knock":
                candidates.append(domain_of(room_id) or "")
                # Room ids name no server from room v12: the servers of the room's stripped state
                # (its creator's first) are the ones we know are in it.
                candidates.extend(_stripped_state_servers(previous, "knock_room_state"))
        for server in self._candidates(candidates):
            try:
                rv, event = await self._make_and_sign(server, "make_leave", room_id, user_id, "leave", {})
                await self._client.put_json(
                    server, f"/_matrix/federation/v2/send_leave/{_q(room_id)}/{_q(event.event_id)}",
                    pdu_for_federation(event),
                )
            except (HttpResponseException, RequestSendFailed, _BadAnswer) as e:
                logger.info("leaving %s through %s failed: %s", room_id, server, e)
                continue
            event.internal_metadata.outlier = True
            await self._received.persist_outliers([event], out_of_band_membership=True)
            return event.event_id
        if previous is None:
            raise MatrixError(502, "No server could be reached to leave this room", Codes.UNKNOWN)
        return await self._local_leave(previous)

    async def _local_leave(self, previous: Event) -> str:
        """A leave only this server knows: it ends the out-of-band invite or knock for our user."""
        rv = previous.room_version
        assert previous.state_key is not None
        event = create_local_event(
            rv, event_type="m.room.member", sender=previous.state_key, room_id=previous.room_id,
            content={"membership": "leave"}, state_key=previous.state_key, prev_events=[previous],
            auth_events=[previous], depth=previous.depth + 1, origin_server_ts=self._clock.time_msec(),
            server_name=self._server_name, signing_key=self._signing_key,
        )
        event.internal_metadata.outlier = True
        await self._received.persist_outliers([event], out_of_band_membership=True)
        return event.event_id

    # -- invites ---------------------------------------------------------------------

    async def exchange_invite(self, event: Event) -> Event:
        """Have the invitee's server counter-sign ``event``; the invite with both signatures."""
        assert event.state_key is not None
        destination = domain_of(event.state_key)
        if destination is None:
            raise MatrixError(400, f"Invalid invitee {event.state_key}", Codes.INVALID_PARAM)
        room_state = await stripped_state(self._events, self._current, event.room_id, member=event.sender)
        try:
            body = await self._client.put_json(
                destination, f"/_matrix/federation/v2/invite/{_q(event.room_id)}/{_q(event.event_id)}",
                {"event": pdu_for_federation(event), "room_version": event.room_version.identifier,
                 "invite_room_state": room_state},
            )
        except HttpResponseException as e:
            raise e.to_matrix_error() from None
        except RequestSendFailed as e:
            raise MatrixError(502, f"Could not reach {destination}: {e.reason}", Codes.UNKNOWN) from None
        returned = body.get("event")
        if not isinstance(returned, dict):
            raise MatrixError(502, f"{destination} did not return the invite", Codes.UNKNOWN)
        try:
            signed = await check_pdu(self._keyring, event.room_version, returned, expected_event_id=event.event_id)
            await self._keyring.verify_json_for_server(destination, _redacted_for_check(signed), 0)
        except (PduDropped, MatrixError) as e:
            raise MatrixError(502, f"{destination} returned an invalid invite: {e}", Codes.UNKNOWN) from None
        if signed.get_pdu_json().get("content") != event.content:
            raise MatrixError(502, f"{destination} changed the invite", Codes.UNKNOWN)
        return Event(dict(signed.get_pdu_json()), event.room_version, event_id=event.event_id)

    # -- shared ----------------------------------------------------------------------

    async def _servers_from_membership(self, room_id: str, user_id: str) -> list[str]:
        """Servers an out-of-band invite points at: the inviter's, then the room id's (pre-v12)."""
        found: list[str] = []
        current = await self._current.get_membership(room_id, user_id)
        if current is not None and current.membership == "invite":
            found.append(domain_of(current.sender) or "")
        found.append(domain_of(room_id) or "")
        return found

    def _candidates(self, servers: Iterable[str]) -> list[str]:
        seen: list[str] = []
        for s in servers:
            if s and s != self._server_name and s not in seen:
                seen.append(s)
        return seen

    async def _profile_content(self, user_id: str) -> JsonDict:
        profile = await self._profiles.get_profile(user_id)
        content: JsonDict = {}
        if profile is not None:
            if profile[0] is not None:
                content["displayname"] = profile[0]
            if profile[1] is not None:
                content["avatar_url"] = profile[1]
        return content

    async def _make_and_sign(self, server: str, make: str, room_id: str, user_id: str, membership: str,
                             content: JsonDict) -> tuple[RoomVersion, Event]:
        args: dict[str, Any] = {"ver": sorted(KNOWN_ROOM_VERSIONS)} if make != "make_leave" else {}
        body = await self._client.get_json(server, f"/_matrix/federation/v1/{make}/{_q(room_id)}/{_q(user_id)}",
                                           args)
        version = body.get("room_version", "1")
        rv = KNOWN_ROOM_VERSIONS.get(version) if isinstance(version, str) else None
        if rv is None:
            raise _BadAnswer(f"unsupported room version {version!r}")
        template = body.get("event")
        if not isinstance(template, dict):
            raise _BadAnswer("no event template")
        return rv, self.sign_template(rv, template, room_id, user_id, membership, content)

    def sign_template(self, rv: RoomVersion, template: JsonDict, room_id: str, user_id: str, membership: str,
                      content: JsonDict) -> Event:
        """Our user's membership event from a resident server's template, hashed and signed by us."""
        if (template.get("type") != "m.room.member" or template.get("state_key") != user_id
                or template.get("sender") != user_id or template.get("room_id") != room_id):
            raise _BadAnswer("the template is not our user's membership event in this room")
        pdu = {k: v for k, v in template.items() if k not in _NOT_SIGNED_BY_US}
        template_content = template.get("content")
        pdu["content"] = {**(template_content if isinstance(template_content, dict) else {}), **content,
                          "membership": membership}
        pdu["origin"] = self._server_name
        pdu["origin_server_ts"] = self._clock.time_msec()
        if rv.event_format == EventFormat.V1:
            pdu["event_id"] = random_event_id(self._server_name)
        else:
            pdu.pop("event_id", None)
        pdu = sign_event_dict(rv, add_content_hash(pdu), self._server_name, self._signing_key)
        try:
            validate_pdu(rv, pdu)
        except MatrixError as e:
            raise _BadAnswer(f"the template makes an invalid event: {e.msg}") from None
        return Event(pdu, rv)


class _BadAnswer(Exception):
    """A remote server's answer cannot be used."""


def _stripped_state_servers(event: Event, key: str) -> list[str]:
    """Servers of the senders in ``event.unsigned[key]`` (stripped state), the create event's first."""
    stripped = event.unsigned.get(key)
    if not isinstance(stripped, list):
        return []
    entries = [e for e in stripped if isinstance(e, dict) and isinstance(e.get("sender"), str)]
    entries.sort(key=lambda e: e.get("type") != "m.room.create")
    return [d for d in (domain_of(e["sender"]) for e in entries) if d]


def _best_error(errors: list[MatrixError], fallback: str) -> MatrixError:
    """The most telling of several servers' refusals (a 4xx beats "unreachable")."""
    for e in errors:
        if 400 <= e.code < 500:
            return e
    return errors[0] if errors else MatrixError(404, fallback, Codes.NOT_FOUND)


def _redacted_for_check(event: Event) -> JsonDict:
    from matrixd.events.redaction import prune_event_dict

    return prune_event_dict(event.room_version, event.get_pdu_json())
