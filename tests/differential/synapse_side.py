"""Synapse (from PyPI) driven as a black-box oracle for auth rules and state resolution.

Only the public functions are called: ``make_event_from_dict``, the two
``check_*_auth_rules`` functions, ``auth_types_for_event`` and the v1/v2
``resolve_events_with_store``.  The store Synapse expects is implemented here in
memory from the spec's definitions (auth chain difference, conflicted state
subgraph), not from Synapse's database code.

This module is test-only: matrixd never imports Synapse.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

# Synapse's import graph needs event_auth before synapse.state.
import synapse.event_auth as syn_auth
from synapse.api.errors import AuthError as SynapseAuthError
from synapse.api.errors import SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion as SynRoomVersion
from synapse.api.room_versions import StateResolutionVersions
from synapse.events import EventBase, make_event_from_dict
from synapse.events.utils import prune_event as syn_prune_event
from synapse.state import v1 as syn_v1
from synapse.state import v2 as syn_v2
from synapse.storage.databases.main.event_federation import StateDifference

from matrixd.events.event import Event, JsonDict, StateKey

StateMapIds = Mapping[StateKey, str]


def synapse_room_version(identifier: str) -> SynRoomVersion:
    return KNOWN_ROOM_VERSIONS[identifier]


def synapse_event_id(pdu: JsonDict, identifier: str) -> str:
    """The event id Synapse derives for a PDU (reference hash from v3)."""
    return str(make_event_from_dict(copy.deepcopy(pdu), synapse_room_version(identifier)).event_id)


class _NoWaitClock:
    """The clock v2 resolution yields to; nothing else runs here, so it need not wait."""

    async def sleep(self, duration: Any) -> None:
        return None


def auth_chain(auth_ids: Mapping[str, list[str]], event_ids: Iterable[str]) -> set[str]:
    """Every event reachable from ``event_ids`` through auth_events (not the starts themselves)."""
    seen: set[str] = set()
    stack = [a for e in event_ids if e in auth_ids for a in auth_ids[e]]
    while stack:
        eid = stack.pop()
        if eid in seen or eid not in auth_ids:
            continue
        seen.add(eid)
        stack.extend(auth_ids[eid])
    return seen


class SynapseStore:
    """The store interfaces of Synapse's auth checks and resolvers, over a dict of events."""

    # See get_auth_chain_difference; False gives the spec's literal reading.
    chains_include_state = True

    def __init__(self) -> None:
        self.events: dict[str, EventBase] = {}
        # auth_events per event, read from the PDU (Synapse's accessor raises for some
        # malformed v12 events, which must still be walkable).
        self.auth_ids: dict[str, list[str]] = {}

    def add(self, event: EventBase, auth_ids: list[str]) -> None:
        self.events[event.event_id] = event
        self.auth_ids[event.event_id] = auth_ids

    def _get(self, event_ids: Collection[str], allow_rejected: bool) -> dict[str, EventBase]:
        out = {}
        for eid in event_ids:
            ev = self.events.get(eid)
            if ev is not None and (allow_rejected or not ev.rejected_reason):
                out[eid] = ev
        return out

    async def get_events(
        self, event_ids: Collection[str], redact_behaviour: Any = None, get_prev_content: bool = False,
        allow_rejected: bool = False,
    ) -> dict[str, EventBase]:
        return self._get(event_ids, allow_rejected)

    async def get_events_v1(self, event_ids: Collection[str]) -> dict[str, EventBase]:
        return self._get(event_ids, True)

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: Optional[set[str]],
        additional_backwards_reachable_conflicted_events: Optional[set[str]],
    ) -> StateDifference:
        """Auth difference (union minus intersection of full auth chains) and, for v2.1,
        the conflicted state subgraph: events on an auth_events path between two
        conflicted events, endpoints included.

        As Synapse's own stores do (its database and the in-memory store of its
        tests), each state set's chain includes the state events themselves; the
        spec's wording ("the union of the auth chains for each event in S_i", an
        auth chain being the events *reachable* from E) leaves them out.  The two
        differ only for an unconflicted state event that is an auth ancestor in one
        state set and not another; see docs/room-core-testing.md.
        """
        chains = [auth_chain(self.auth_ids, s) for s in state_sets]
        if self.chains_include_state:
            chains = [c | {e for e in s if e in self.auth_ids} for c, s in zip(chains, state_sets)]
        union = set().union(*chains)
        common = set.intersection(*chains) if chains else set()
        subgraph: Optional[set[str]] = None
        if conflicted_state is not None:
            starts = set(conflicted_state) | set(additional_backwards_reachable_conflicted_events or ())
            subgraph = self._paths_between(starts, set(conflicted_state))
        return StateDifference(auth_difference=union - common, conflicted_subgraph=subgraph)

    def _paths_between(self, starts: set[str], targets: set[str]) -> set[str]:
        reachable = auth_chain(self.auth_ids, starts) | {s for s in starts if s in self.auth_ids}
        # Events among `reachable` from which some target is reachable (the target itself counts).
        memo: dict[str, bool] = {}

        def reaches(eid: str) -> bool:
            if eid in memo:
                return memo[eid]
            stack = [(eid, iter(self.auth_ids[eid]))]
            memo[eid] = eid in targets
            while stack:
                node, it = stack[-1]
                for child in it:
                    if child not in self.auth_ids:
                        continue
                    if child not in memo:
                        memo[child] = child in targets
                        stack.append((child, iter(self.auth_ids[child])))
                        break
                else:
                    stack.pop()
                    if not memo[node]:
                        memo[node] = any(memo.get(c, False) for c in self.auth_ids[node])
            return memo[eid]

        return {e for e in reachable if reaches(e)}


class SynapseRoomCore:
    """One room as Synapse sees it: its own event objects (with its own rejections)."""

    def __init__(self, room_version_id: str, room_id: str) -> None:
        self.rv = synapse_room_version(room_version_id)
        self.room_id = room_id
        self.store = SynapseStore()
        self._clock = _NoWaitClock()

    def _convert(self, event: Event, rejected_reason: Optional[str] = None) -> EventBase:
        return make_event_from_dict(copy.deepcopy(event.get_pdu_json()), self.rv, rejected_reason=rejected_reason)

    def event_id_of(self, event: Event) -> str:
        return str(self._convert(event).event_id)

    def pruned(self, event: Event) -> JsonDict:
        """The redacted PDU (without ``unsigned``), by Synapse's redaction algorithm."""
        d = dict(syn_prune_event(self._convert(event)).get_pdu_json())
        d.pop("unsigned", None)
        # Through JSON so Synapse's frozen containers compare equal to plain ones.
        return json.loads(json.dumps(d))  # type: ignore[no-any-return]

    def add_outlier(self, event: Event) -> None:
        self.store.add(self._convert(event), event.auth_event_ids())

    def auth_types(self, event: Event) -> Optional[set[StateKey]]:
        """Synapse's auth types, or None where it crashes (see :meth:`_known_crash`)."""
        ev = self._convert(event)
        try:
            return set(syn_auth.auth_types_for_event(self.rv, ev))
        except KeyError as e:
            if self._known_crash(event, ev, e) is None:
                raise
            return None

    async def resolve(self, state_sets: Sequence[StateMapIds]) -> dict[StateKey, str]:
        sets = [dict(s) for s in state_sets]
        if self.rv.state_res == StateResolutionVersions.V1:
            result = await syn_v1.resolve_events_with_store(
                self.room_id, self.rv, sets, None, self.store.get_events_v1
            )
        else:
            result = await syn_v2.resolve_events_with_store(
                self._clock, self.room_id, self.rv, sets, None, self.store  # type: ignore[arg-type]
            )
        return dict(result)

    async def check(self, event: Event, state_before: StateMapIds) -> Optional[str]:
        """Accept (None) or reject (the reason), then remember the event with that outcome.

        As in "checks performed on receipt of a PDU": the event must pass the
        auth rules against its auth_events and against the state before it.
        """
        ev = self._convert(event)
        reason: Optional[str] = None
        try:
            await syn_auth.check_state_independent_auth_rules(self.store, ev)
            auth_events = [self.store.events[a] for a in event.auth_event_ids() if a in self.store.events]
            syn_auth.check_state_dependent_auth_rules(ev, auth_events + self._implied_create(event))
            wanted = syn_auth.auth_types_for_event(self.rv, ev)
            from_state = [self.store.events[state_before[k]] for k in wanted if k in state_before]
            syn_auth.check_state_dependent_auth_rules(ev, from_state + self._implied_create(event))
        except (SynapseAuthError, SynapseError) as e:
            reason = f"{type(e).__name__}: {e.msg}"
        except (AttributeError, KeyError, RuntimeError) as e:
            known = self._known_crash(event, ev, e)
            if known is None:
                raise
            reason = known
        self.store.add(self._convert(event, rejected_reason=reason) if reason else ev, event.auth_event_ids())
        return reason

    def _implied_create(self, event: Event) -> list[EventBase]:
        """From v12 the create event is implied by the room id; Synapse's callers add it."""
        if not self.rv.msc4291_room_ids_as_hashes or event.type == "m.room.create":
            return []
        create = self.store.events.get("$" + self.room_id[1:])
        return [] if create is None else [create]

    def _known_crash(self, event: Event, ev: EventBase, exc: Exception) -> Optional[str]:
        """Synapse crashes on two malformed inputs the spec rejects; say so, or None.

        - An auth event that is not a state event: Synapse 1.163 reads its
          ``.state_key``.  The spec rejects it: a non-state entry cannot match the
          auth events selection (auth rules 2.2 / 3.2, "entries whose type and
          state_key don't match ... reject").
        - An ``m.room.member`` event without ``content.membership``: Synapse's
          ``auth_types_for_event`` indexes it.  The spec rejects it (rule 4.1 / 5.1,
          "no membership property in content, reject").
        - An invite whose ``content.third_party_invite`` has no ``signed.token``:
          ``auth_types_for_event`` indexes it.  The spec rejects it (rule 4.3.1 /
          5.4.1, "does not have a signed property ... does not have mxid and token
          properties, reject").
        - A v12 event listing the create event in ``auth_events``: the event's
          ``auth_event_ids()`` raises RuntimeError.  The spec rejects it (v12 rule
          3.2, "m.room.create MUST NOT be selected").
        """
        auth_ids = event.auth_event_ids()
        if isinstance(exc, RuntimeError) and self.rv.msc4291_room_ids_as_hashes and any(
            self.store.events.get(a) is not None and self.store.events[a].type == "m.room.create" for a in auth_ids
        ):
            return f"v12 auth_events list the create event (Synapse crashed: {exc!r})"
        if isinstance(exc, AttributeError) and any(
            a in self.store.events and not self.store.events[a].is_state() for a in auth_ids
        ):
            return f"non-state auth event (Synapse crashed: {exc!r})"
        if isinstance(exc, KeyError) and ev.type == "m.room.member" and "membership" not in ev.content:
            return f"member event without membership (Synapse crashed: {exc!r})"
        tpi = ev.content.get("third_party_invite")
        if isinstance(exc, KeyError) and ev.type == "m.room.member" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            if not isinstance(signed, dict) or "token" not in signed:
                return f"third-party invite without signed.token (Synapse crashed: {exc!r})"
        return None
