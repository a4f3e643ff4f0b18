"""Reading a few keys of many state groups without rebuilding whole state maps.

History visibility needs two entries of each group (the visibility and one
member), ``prev_content`` one; rebuilding the full state of every group (as
:class:`~matrixd.storage.state.StateGroupStore` does, to cache it) would cost
the size of the room's state per group.  Here each group's delta chain is
walked with the wanted keys only, through the ``(state_group, type,
state_key)`` index; the first hit from the group towards its snapshot wins
(a NULL event id there means the key was removed).

State groups never change, so callers may cache what this returns forever.
"""

from __future__ import annotations

from typing import Collection, Mapping, Optional

from matrixd.events.event import StateKey
from matrixd.storage.database import Cursor, Database
from matrixd.util.clock import Clock


class StateEntryStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_state_entries(
        self, wanted: Mapping[int, Collection[StateKey]]
    ) -> dict[int, dict[StateKey, Optional[str]]]:
        """``{group: {key: event id or None}}`` for the given keys of each group (unknown groups: all None)."""
        requests = {group: sorted(set(keys)) for group, keys in wanted.items() if keys}
        if not requests:
            return {}

        def _txn(txn: Cursor) -> dict[int, dict[StateKey, Optional[str]]]:
            result: dict[int, dict[StateKey, Optional[str]]] = {}
            for group, keys in requests.items():
                match = " OR ".join("(s.type = ? AND s.state_key = ?)" for _ in keys)
                args: list[object] = [group]
                for event_type, state_key in keys:
                    args.extend([event_type, state_key])
                txn.execute(
                    "WITH RECURSIVE chain(state_group, depth) AS ("
                    " SELECT CAST(? AS BIGINT), 0"
                    " UNION ALL"
                    " SELECT e.prev_state_group, c.depth + 1 FROM state_group_edges e"
                    " JOIN chain c ON e.state_group = c.state_group"
                    ") SELECT s.type, s.state_key, s.event_id FROM chain c"
                    " JOIN state_groups_state s ON s.state_group = c.state_group"
                    f" WHERE {match} ORDER BY c.depth DESC",
                    args,
                )
                found: dict[StateKey, Optional[str]] = {key: None for key in keys}
                # Deepest (the snapshot) first, so entries nearer the group overwrite it.
                for event_type, state_key, event_id in txn:
                    found[(event_type, state_key)] = event_id
                result[group] = found
            return result

        return await self._db.run_interaction("get_state_entries", _txn)
