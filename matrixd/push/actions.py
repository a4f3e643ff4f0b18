"""Running every local recipient's push rules over each persisted event.

Timeline events that are not state are evaluated just before they are
written (:meth:`PushActionGenerator.prepare`, the persister's pre-persist
hook, called with the room lock held, so the room's members are those the
event reaches) and their push actions are written in the event's own
transaction.  Other events (state, membership: their recipients depend on
the state they set) are evaluated after they are persisted: the master wraps
the event announcer with :meth:`PushActionGenerator.wrap_announcer`, which
computes and stores their actions *before* announcing them.  Either way a
``/sync`` that shows an event also counts it.  The announcement chain runs in
persistence order and tells the listeners (pushers) each event's outcome;
the room's joined users come from the current-state cache and users'
compiled rulesets are cached until their rules change.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Mapping, Optional, Sequence

import attrs
from twisted.internet import defer

from matrixd.events.event import Event, StateMap
from matrixd.push.conditions import EventFacts, MentionIndex, PowerLevelsNeeded, UserFacts
from matrixd.push.evaluator import NO_ACTION, Actions, CompiledRuleset, RulesetCompiler
from matrixd.state.auth.levels import get_notification_level, user_level
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.database import Cursor
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
    #: The room's local joined members (the sender among them, if local).
    local_members: frozenset[str]
    rulesets: dict[str, CompiledRuleset]
    #: The common actions of each ruleset (by id) for users it has nothing particular for.
    group_base: dict[int, Actions]
    #: Users evaluated one by one (mentioned, invited, display-name rules...).
    individual: dict[str, Actions]
    #: The actions stored once for every joined member without a row of their own (None: no such row).
    broadcast: Optional[Actions]
    invitee: Optional[str]

    def is_recipient(self, user_id: str) -> bool:
        return user_id == self.invitee or (user_id in self.local_members and user_id != self.sender)

    def actions_for(self, user_id: str) -> Actions:
        """What ``user_id``'s rules said (nothing for non-recipients)."""
        found = self.individual.get(user_id)
        if found is not None:
            return found
        if not self.is_recipient(user_id):
            return NO_ACTION
        rs = self.rulesets.get(user_id)
        return NO_ACTION if rs is None else self.group_base[id(rs)]


class _Group:
    """The local members of a room sharing one compiled ruleset."""

    def __init__(self, ruleset: CompiledRuleset, users: Optional[list[str]] = None,
                 by_lower: Optional[dict[str, str]] = None) -> None:
        self.ruleset = ruleset
        self.users: list[str] = users if users is not None else []
        self.by_lower: dict[str, str] = by_lower if by_lower is not None else {}


@attrs.frozen(slots=True)
class _RoomPlan:
    members: tuple[str, ...]
    generation: int
    local: frozenset[str]
    rulesets: dict[str, CompiledRuleset]
    groups: list[_Group]


#: Rooms whose member grouping is kept (cleared when full: rebuilding one is a cheap pass).
_MAX_PLANS = 10_000
#: Members joining or leaving at most this many at once update a room's grouping; more rebuild it.
_MAX_PLAN_CHANGES = 16
#: Outcomes of prepared events waiting for their announcement (more only if persists keep failing).
_MAX_PREPARED = 1_000


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
        self._plans: dict[str, _RoomPlan] = {}
        #: Per room: its members' display names and mention index, for the current state map they came from.
        self._mentions: dict[str, tuple[StateMap, dict[str, Optional[str]], MentionIndex]] = {}
        self._listeners: list[ActionsListener] = []
        self._tail: "defer.Deferred[None]" = defer.succeed(None)
        #: Events evaluated by :meth:`prepare` (None: nobody to evaluate for), until announced.
        self._prepared: dict[str, Optional[PushOutcome]] = {}

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

    async def prepare(self, event: Event) -> Optional[Callable[[Cursor, Mapping[str, int]], None]]:
        """Pre-persist hook: evaluate a non-state timeline event; its rows are written with it.

        Returns the writer of the rows (given the event's stream ordering in its
        transaction), or None for events left to :meth:`handle_event`.
        """
        if (
            not self.enabled or event.rejected or event.internal_metadata.outlier
            or event.internal_metadata.soft_failed or event.is_state()
        ):
            return None
        try:
            return await self._prepare(event)
        except Exception:
            # Never fail the event's persisting: it is evaluated again after it is written.
            logger.exception("push evaluation before persisting %s failed", event.event_id)
            self._prepared.pop(event.event_id, None)
            return None

    async def _prepare(self, event: Event) -> Optional[Callable[[Cursor, Mapping[str, int]], None]]:
        room_id = event.room_id
        members = await self._current_state.get_users_in_room_tuple(room_id)
        plan = await self._room_plan(room_id, members)
        if len(plan.local) - (event.sender in plan.local) == 0:
            self._remember(event.event_id, None)
            return None
        facts = await self._facts(event, len(members))
        outcome = await self._outcome(event, facts, plan, None)
        self._remember(event.event_id, outcome)
        event_id = event.event_id

        def _write(txn: Cursor, orderings: Mapping[str, int]) -> None:
            stream_ordering = orderings.get(event_id)
            if stream_ordering is not None:
                self._store.add_push_actions_txn(txn, self._rows(event, stream_ordering, plan, outcome))

        return _write

    def _remember(self, event_id: str, outcome: Optional["PushOutcome"]) -> None:
        while len(self._prepared) >= _MAX_PREPARED:  # events whose persisting failed after prepare
            self._prepared.pop(next(iter(self._prepared)))
        self._prepared[event_id] = outcome

    async def handle_event(self, event: Event) -> Optional["PushOutcome"]:
        """Evaluate and store the event's actions for every local recipient (None: nothing to evaluate).

        An event :meth:`prepare` evaluated has its rows stored already: only the
        listeners hear of it.
        """
        if event.event_id in self._prepared:
            prepared = self._prepared.pop(event.event_id)
            if prepared is not None:
                await self._tell_listeners(event, prepared)
            return prepared
        if event.rejected or event.internal_metadata.outlier or event.internal_metadata.soft_failed:
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
        members = await self._current_state.get_users_in_room_tuple(room_id)
        plan = await self._room_plan(room_id, members)
        invitee: Optional[str] = None
        if (
            event.type == "m.room.member" and event.membership == "invite" and event.state_key
            and event.state_key.endswith(self._suffix) and event.state_key not in plan.local
        ):
            invitee = event.state_key
        sender_local = event.sender in plan.local
        if len(plan.local) - sender_local == 0 and invitee is None:
            await self._store.add_push_actions([], join)
            return None
        facts = await self._facts(event, len(members))
        outcome = await self._outcome(event, facts, plan, invitee)
        await self._store.add_push_actions(self._rows(event, stream_ordering, plan, outcome), join)
        await self._tell_listeners(event, outcome)
        return outcome

    async def _tell_listeners(self, event: Event, outcome: "PushOutcome") -> None:
        for listener in self._listeners:
            try:
                await listener(event, outcome)
            except Exception:
                logger.exception("push actions listener failed for %s", event.event_id)

    async def _room_plan(self, room_id: str, members: tuple[str, ...]) -> "_RoomPlan":
        """The room's local members grouped by ruleset, reused while members and rules are unchanged.

        The members cache hands out the same tuple until the membership changes,
        so the check is usually one identity comparison.
        """
        key = members
        cached = self._plans.get(room_id)
        if cached is not None and cached.generation == self._generation:
            if cached.members is key:
                return cached
            if cached.members == key:  # the same members in a new tuple: keep that one from now on
                cached = self._plans[room_id] = attrs.evolve(cached, members=key)
                return cached
            updated = await self._updated_plan(cached, members)
            if updated is not None:
                if updated.generation == self._generation:
                    self._plans[room_id] = updated
                return updated
        generation = self._generation
        local = [u for u in members if u.endswith(self._suffix)]
        rulesets = await self._rulesets_for(local)
        groups: dict[int, _Group] = {}
        for user_id in local:
            rs = rulesets[user_id]
            group = groups.get(id(rs))
            if group is None:
                group = groups[id(rs)] = _Group(rs)
            group.users.append(user_id)
            group.by_lower[user_id.lower()] = user_id
        plan = _RoomPlan(key, generation, frozenset(local), rulesets, list(groups.values()))
        if generation == self._generation:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[room_id] = plan
        return plan

    async def _updated_plan(self, plan: "_RoomPlan", members: tuple[str, ...]) -> Optional["_RoomPlan"]:
        """``plan`` changed for a few members joining or leaving (None: too many, rebuild it).

        A join to a room of thousands otherwise regroups every member.
        """
        old, new = set(plan.members), set(members)
        joined = [u for u in new - old if u.endswith(self._suffix)]
        left = [u for u in old - new if u in plan.local]
        if len(joined) + len(left) > _MAX_PLAN_CHANGES:
            return None
        generation = self._generation
        joined_rulesets = await self._rulesets_for(joined)
        groups = {id(g.ruleset): _Group(g.ruleset, list(g.users), dict(g.by_lower)) for g in plan.groups}
        rulesets = dict(plan.rulesets)
        for user_id in left:
            leaving = groups[id(rulesets.pop(user_id))]
            leaving.users.remove(user_id)
            lower = user_id.lower()
            if leaving.by_lower.get(lower) == user_id:
                del leaving.by_lower[lower]
                for other in leaving.users:  # another member folding to the same name, as a rebuild keeps
                    if other.lower() == lower:
                        leaving.by_lower[lower] = other
            if not leaving.users:
                del groups[id(leaving.ruleset)]
        for user_id in joined:
            rs = rulesets[user_id] = joined_rulesets[user_id]
            group = groups.get(id(rs))
            if group is None:
                group = groups[id(rs)] = _Group(rs)
            group.users.append(user_id)
            group.by_lower[user_id.lower()] = user_id
        local = plan.local.difference(left).union(joined)
        return _RoomPlan(members, generation, local, rulesets, list(groups.values()))

    async def _outcome(
        self, event: Event, facts: EventFacts, plan: "_RoomPlan", invitee: Optional[str]
    ) -> "PushOutcome":
        """Every recipient's actions, evaluating rulesets once and users only where they can differ."""
        names: Optional[dict[str, Optional[str]]] = None
        invitee_rs: Optional[CompiledRuleset] = None
        if invitee is not None:
            invitee_rs = (await self._rulesets_for([invitee]))[invitee]
        # Display names and the mention index only ever match a string body: a membership or other
        # body-less event in a large room skips reading every member's profile.
        if facts.folded_body() is not None and (
            any(g.ruleset.needs_mention_index for g in plan.groups)
            or (invitee_rs is not None and invitee_rs.needs_mention_index)
        ):
            names, facts.mentions = await self._mention_targets(event.room_id)

        try:
            return self._evaluate(event, facts, plan, invitee, invitee_rs, names)
        except PowerLevelsNeeded:
            await self._load_power_levels(event, facts)
            return self._evaluate(event, facts, plan, invitee, invitee_rs, names)

    async def _mention_targets(self, room_id: str) -> tuple[dict[str, Optional[str]], MentionIndex]:
        """The joined members' display names and the local ones' :class:`MentionIndex`.

        Kept while the room's current state map (one object until any state
        changes, display names included) stays the same: most events cost a
        cache look-up, not a query.
        """
        state = await self._current_state.get_current_state_ids(room_id)
        cached = self._mentions.get(room_id)
        if cached is not None and cached[0] is state:
            return cached[1], cached[2]
        profiles = await self._current_state.get_joined_member_profiles(room_id)
        names = {u: p.displayname for u, p in profiles.items()}
        local = [u for u in names if u.endswith(self._suffix)]
        index = MentionIndex.build({u: names[u] for u in local}, local)
        if await self._current_state.get_current_state_ids(room_id) is state:  # no change raced the query
            if len(self._mentions) >= _MAX_PLANS:
                self._mentions.clear()
            self._mentions[room_id] = (state, names, index)
        return names, index

    def _evaluate(
        self, event: Event, facts: EventFacts, plan: "_RoomPlan", invitee: Optional[str],
        invitee_rs: Optional[CompiledRuleset], names: Optional[dict[str, Optional[str]]],
    ) -> "PushOutcome":
        def user_facts(u: str) -> UserFacts:
            return UserFacts(u, names.get(u) if names is not None else None)

        sender = event.sender
        individual: dict[str, Actions] = {}
        group_base: dict[int, Actions] = {}
        base_sizes: dict[int, int] = {}  # by id of the base Actions (they hold dicts: not hashable)
        bases: dict[int, Actions] = {}
        for group in plan.groups:
            rs = group.ruleset
            base = group_base[id(rs)] = rs.base(facts)
            candidates = rs.candidates(facts)
            if candidates is None:
                chosen = [u for u in group.users if u != sender]
            else:
                chosen = [group.by_lower[c] for c in candidates if c in group.by_lower and group.by_lower[c] != sender]
            for u in chosen:
                individual[u] = rs.evaluate(facts, user_facts(u))
            sender_in_group = group.by_lower.get(sender.lower()) == sender
            size = len(group.users) - len(chosen) - sender_in_group
            bases[id(base)] = base
            base_sizes[id(base)] = base_sizes.get(id(base), 0) + size
        if invitee is not None and invitee_rs is not None:
            individual[invitee] = invitee_rs.evaluate(facts, user_facts(invitee))
        broadcast = bases[max(base_sizes, key=lambda k: base_sizes[k])] if base_sizes else NO_ACTION
        return PushOutcome(
            sender=sender, local_members=plan.local, rulesets=plan.rulesets, group_base=group_base,
            individual=individual, broadcast=broadcast if (broadcast.notify or broadcast.highlight) else None,
            invitee=invitee,
        )

    def _rows(
        self, event: Event, stream_ordering: int, plan: "_RoomPlan", outcome: "PushOutcome"
    ) -> list[PushActionRow]:
        """The broadcast row (if the common actions notify) and the rows of everyone who differs from it."""
        room_id, thread, ts = event.room_id, thread_of(event), event.origin_server_ts

        def row(user_id: str, actions: Actions) -> PushActionRow:
            return PushActionRow(user_id, room_id, thread, stream_ordering, event.event_id, actions.encoded,
                                 actions.notify, actions.highlight, ts)

        broadcast = outcome.broadcast
        sender = event.sender
        rows: list[PushActionRow] = []
        if broadcast is not None:
            rows.append(row(BROADCAST, broadcast))
            if sender.endswith(self._suffix):
                rows.append(row(sender, NO_ACTION))  # the sender is not a recipient
            # Whole groups whose common actions differ from the broadcast ones, minus evaluated users.
            for group in plan.groups:
                base = outcome.group_base[id(group.ruleset)]
                if base is broadcast or base == broadcast:
                    continue
                rows.extend(
                    row(u, base) for u in group.users if u != sender and u not in outcome.individual
                )
        for user_id, actions in outcome.individual.items():
            if broadcast is None:
                if actions.notify or actions.highlight:
                    rows.append(row(user_id, actions))
            elif user_id == outcome.invitee or not (actions is broadcast or actions == broadcast):
                rows.append(row(user_id, actions))
        return rows

    async def _facts(self, event: Event, member_count: int) -> EventFacts:
        """The event's facts; the power levels are loaded only if a rule asks (see PowerLevelsNeeded)."""
        pdu: JsonDict = event.get_pdu_json()
        return EventFacts(event=pdu, member_count=member_count, sender_power=None, notification_levels=None)

    async def _load_power_levels(self, event: Event, facts: EventFacts) -> None:
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
        facts.sender_power = user_level(rv, event.sender, pl_content, create)
        facts.notification_levels = levels

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
