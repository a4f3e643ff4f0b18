"""Running every local recipient's push rules over each persisted event.

The master wraps the event announcer with :meth:`PushActionGenerator.wrap_announcer`:
an event's push actions are computed and stored right after it is
persisted and *before* it is announced, so a ``/sync`` that shows the event
also counts it.  Evaluations run one at a time in persistence order; the
room's joined users come from the current-state cache and users' compiled
rulesets are cached until their rules change.
"""

from __future__ import annotations

import json
import logging
from typing import Awaitable, Callable, Optional, Sequence

import attrs
from twisted.internet import defer

from matrixd.events.event import Event
from matrixd.push.conditions import EventFacts, UserFacts
from matrixd.push.evaluator import NO_ACTION, Actions, CompiledRuleset, RulesetCompiler
from matrixd.state.auth.levels import get_notification_level, user_level
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.event_push_actions import BROADCAST, EventPushActionsStore, JoinChange, PushActionRow
from matrixd.storage.push_rules import PushRulesStore
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"

#: Told, after an event's actions are stored, what everyone got: the pusher pool listens.
ActionsListener = Callable[[Event, "PushOutcome"], Awaitable[None]]


@attrs.frozen(slots=True)
class PushOutcome:
    """The actions of one event for each local recipient, kept in grouped form."""

    sender: str
    recipients: frozenset[str]
    rulesets: dict[str, CompiledRuleset]
    #: The common actions of each ruleset (by id) for users it has nothing particular for.
    group_base: dict[int, Actions]
    #: Users evaluated one by one (mentioned, invited, display-name rules...).
    individual: dict[str, Actions]
    #: The actions stored once for every joined member without a row of their own (None: no such row).
    broadcast: Optional[Actions]
    invitee: Optional[str]

    def actions_for(self, user_id: str) -> Actions:
        """What ``user_id``'s rules said (nothing for non-recipients)."""
        found = self.individual.get(user_id)
        if found is not None:
            return found
        rs = self.rulesets.get(user_id)
        return NO_ACTION if rs is None else self.group_base[id(rs)]


def thread_of(event: Event) -> str:
    """The thread an event counts in: its ``m.thread`` root, else ``main``."""
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN_THREAD


class PushActionGenerator:
    def __init__(
        self,
        *,
        server_name: str,
        current_state: CurrentStateStore,
        rules_store: PushRulesStore,
        actions_store: EventPushActionsStore,
        enabled: bool = True,
    ) -> None:
        self._suffix = ":" + server_name
        self._current_state = current_state
        self._rules_store = rules_store
        self._store = actions_store
        self.enabled = enabled
        self._compiler = RulesetCompiler()
        self._rulesets: dict[str, CompiledRuleset] = {}
        self._generation = 0  # bumped by every invalidation: a load racing one is not cached
        self._listeners: list[ActionsListener] = []
        self._tail: "defer.Deferred[None]" = defer.succeed(None)

    def add_listener(self, listener: ActionsListener) -> None:
        self._listeners.append(listener)

    def invalidate_user(self, user_id: str) -> None:
        """The user's rules changed: recompile them on their next event."""
        self._generation += 1
        self._rulesets.pop(user_id, None)

    def wrap_announcer(
        self, announce: Callable[[Sequence[Event]], None]
    ) -> Callable[[Sequence[Event]], None]:
        """An announcer that first stores the events' push actions (in order), then calls ``announce``."""

        def _announce(events: Sequence[Event]) -> None:
            batch = list(events)

            async def _run(_: object) -> None:
                try:
                    for event in batch:
                        await self.handle_event(event)
                except Exception:
                    logger.exception("push evaluation failed for %s", [e.event_id for e in batch])
                finally:
                    announce(batch)

            self._tail = self._tail.addCallback(lambda r: defer.ensureDeferred(_run(r)))

        return _announce

    async def handle_event(self, event: Event) -> Optional["PushOutcome"]:
        """Evaluate and store the event's actions for every local recipient (None: nothing to evaluate)."""
        if event.rejected or event.internal_metadata.outlier:
            return None
        stream_ordering = event.internal_metadata.stream_ordering
        if stream_ordering is None:
            return None
        room_id = event.room_id
        join: Optional[JoinChange] = None
        if event.type == "m.room.member" and event.state_key and event.state_key.endswith(self._suffix):
            join = JoinChange(event.state_key, room_id, event.membership == "join", stream_ordering)
        if not self.enabled:
            await self._store.add_push_actions([], join)
            return None
        members = await self._current_state.get_users_in_room(room_id)
        recipients = [u for u in members if u.endswith(self._suffix) and u != event.sender]
        invitee: Optional[str] = None
        if (
            event.type == "m.room.member" and event.membership == "invite" and event.state_key
            and event.state_key.endswith(self._suffix) and event.state_key not in recipients
        ):
            invitee = event.state_key
            recipients.append(invitee)
        if not recipients:
            await self._store.add_push_actions([], join)
            return None
        facts = await self._facts(event, len(members))
        outcome = await self._outcome(event, facts, recipients, invitee)
        await self._store.add_push_actions(self._rows(event, stream_ordering, outcome), join)
        for listener in self._listeners:
            try:
                await listener(event, outcome)
            except Exception:
                logger.exception("push actions listener failed for %s", event.event_id)
        return outcome

    async def _outcome(
        self, event: Event, facts: EventFacts, recipients: list[str], invitee: Optional[str]
    ) -> "PushOutcome":
        """Every recipient's actions, evaluating rulesets once and users only where they can differ."""
        rulesets = await self._rulesets_for(recipients)
        groups: dict[int, list[str]] = {}
        by_id: dict[int, CompiledRuleset] = {}
        for user_id in recipients:
            rs = rulesets[user_id]
            by_id[id(rs)] = rs
            groups.setdefault(id(rs), []).append(user_id)
        names: Optional[dict[str, Optional[str]]] = None
        if any(rs.needs_display_name for rs in by_id.values()):
            profiles = await self._current_state.get_joined_member_profiles(event.room_id)
            names = {u: p.displayname for u, p in profiles.items()}
        individual: dict[str, Actions] = {}
        group_base: dict[int, Actions] = {}
        base_sizes: dict[int, int] = {}  # by id of the base Actions (they hold dicts: not hashable)
        bases: dict[int, Actions] = {}
        for key, users in groups.items():
            rs = by_id[key]
            candidates = rs.candidates(facts)
            base = group_base[key] = rs.base(facts)
            if candidates is None:
                chosen = users
            else:
                chosen = [u for u in users if u.lower() in candidates] if candidates else []
            for u in chosen:
                individual[u] = rs.evaluate(facts, UserFacts(u, names.get(u) if names is not None else None))
            bases[id(base)] = base
            base_sizes[id(base)] = base_sizes.get(id(base), 0) + len(users) - len(chosen)
        broadcast = bases[max(base_sizes, key=lambda k: base_sizes[k])] if base_sizes else NO_ACTION
        if invitee is not None and invitee not in individual:
            individual[invitee] = group_base[id(rulesets[invitee])]
        return PushOutcome(
            sender=event.sender, recipients=frozenset(recipients), rulesets=rulesets, group_base=group_base,
            individual=individual, broadcast=broadcast if (broadcast.notify or broadcast.highlight) else None,
            invitee=invitee,
        )

    def _rows(self, event: Event, stream_ordering: int, outcome: "PushOutcome") -> list[PushActionRow]:
        """The broadcast row (if the common actions notify) and the rows of everyone who differs from it."""
        room_id, thread, ts = event.room_id, thread_of(event), event.origin_server_ts
        encoded: dict[int, str] = {}  # by id of the (shared) Actions of a rule

        def row(user_id: str, actions: Actions) -> PushActionRow:
            actions_json = encoded.get(id(actions))
            if actions_json is None:
                actions_json = encoded[id(actions)] = json.dumps(list(actions.actions), separators=(",", ":"))
            return PushActionRow(user_id, room_id, thread, stream_ordering, event.event_id, actions_json,
                                 actions.notify, actions.highlight, ts)

        broadcast = outcome.broadcast
        rows: list[PushActionRow] = []
        if broadcast is not None:
            rows.append(row(BROADCAST, broadcast))
            if event.sender.endswith(self._suffix):
                rows.append(row(event.sender, NO_ACTION))  # the sender is not a recipient
            # Whole groups whose common actions differ from the broadcast ones, minus evaluated users.
            for user_id in outcome.recipients:
                if user_id in outcome.individual:
                    continue
                base = outcome.group_base[id(outcome.rulesets[user_id])]
                if base != broadcast:
                    rows.append(row(user_id, base))
        for user_id, actions in outcome.individual.items():
            if broadcast is None:
                if actions.notify or actions.highlight:
                    rows.append(row(user_id, actions))
            elif actions != broadcast or user_id == outcome.invitee:
                rows.append(row(user_id, actions))
        return rows

    async def _facts(self, event: Event, member_count: int) -> EventFacts:
        cs = self._current_state
        pl = await cs.get_current_state_event(event.room_id, "m.room.power_levels", "")
        create = await cs.get_current_state_event(event.room_id, "m.room.create", "")
        rv = event.room_version
        pl_content = pl.content if pl is not None else None
        levels = {"room": get_notification_level(rv, "room", pl_content)}
        notifications = (pl_content or {}).get("notifications")
        if isinstance(notifications, dict):
            for key in notifications:
                if isinstance(key, str):
                    levels[key] = get_notification_level(rv, key, pl_content)
        pdu: JsonDict = event.get_pdu_json()
        return EventFacts(
            event=pdu,
            member_count=member_count,
            sender_power=user_level(rv, event.sender, pl_content, create),
            notification_levels=levels,
        )

    async def _rulesets_for(self, user_ids: Sequence[str]) -> dict[str, CompiledRuleset]:
        out: dict[str, CompiledRuleset] = {}
        missing = []
        for u in user_ids:
            cached = self._rulesets.get(u)
            if cached is None:
                missing.append(u)
            else:
                out[u] = cached
        if missing:
            generation = self._generation
            stored = await self._rules_store.get_rules_for_users(missing)
            for u in missing:
                ruleset = self._compiler.compile(u, stored[u])
                out[u] = ruleset
                if generation == self._generation:
                    self._rulesets[u] = ruleset
        return out
