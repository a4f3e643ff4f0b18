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
from matrixd.push.evaluator import Actions, CompiledRuleset, RulesetCompiler
from matrixd.state.auth.levels import get_notification_level, user_level
from matrixd.storage.current_state import CurrentStateStore
from matrixd.storage.event_push_actions import EventPushActionsStore, PushActionRow
from matrixd.storage.push_rules import PushRulesStore
from matrixd.types import JsonDict

logger = logging.getLogger(__name__)

MAIN_THREAD = "main"

#: Told, after an event's actions are stored, who was notified: the pusher pool listens.
ActionsListener = Callable[[Event, Sequence["Recipient"]], Awaitable[None]]


@attrs.frozen(slots=True)
class Recipient:
    user_id: str
    actions: Actions


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

    async def handle_event(self, event: Event) -> list[Recipient]:
        """Evaluate and store the event's actions for every local recipient; returns who got which."""
        if not self.enabled or event.rejected or event.internal_metadata.outlier:
            return []
        stream_ordering = event.internal_metadata.stream_ordering
        if stream_ordering is None:
            return []
        room_id = event.room_id
        members = await self._current_state.get_users_in_room(room_id)
        recipients = [u for u in members if u.endswith(self._suffix) and u != event.sender]
        if (
            event.type == "m.room.member" and event.membership == "invite" and event.state_key
            and event.state_key.endswith(self._suffix) and event.state_key not in recipients
        ):
            recipients.append(event.state_key)
        if not recipients:
            return []
        facts = await self._facts(event, len(members))
        rulesets = await self._rulesets_for(recipients)
        names: Optional[dict[str, Optional[str]]] = None
        if any(r.needs_display_name for r in rulesets.values()):
            profiles = await self._current_state.get_joined_member_profiles(room_id)
            names = {u: p.displayname for u, p in profiles.items()}
        thread = thread_of(event)
        out: list[Recipient] = []
        rows: list[PushActionRow] = []
        encoded: dict[int, str] = {}  # by id of the (shared) Actions of a rule
        for user_id in recipients:
            user = UserFacts(user_id, names.get(user_id) if names is not None else None)
            actions = rulesets[user_id].evaluate(facts, user)
            if not (actions.notify or actions.highlight):
                continue
            actions_json = encoded.get(id(actions))
            if actions_json is None:
                actions_json = encoded[id(actions)] = json.dumps(list(actions.actions), separators=(",", ":"))
            rows.append(PushActionRow(
                user_id, room_id, thread, stream_ordering, event.event_id, actions_json, actions.notify,
                actions.highlight, event.origin_server_ts,
            ))
            out.append(Recipient(user_id, actions))
        await self._store.add_push_actions(rows)
        for listener in self._listeners:
            try:
                await listener(event, out)
            except Exception:
                logger.exception("push actions listener failed for %s", event.event_id)
        return out

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
