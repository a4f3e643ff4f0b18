"""StateEntryStore reads single keys of state groups exactly as the full state maps have them."""

import random
from typing import Any, Coroutine, Optional, TypeVar

from twisted.internet import defer
from twisted.trial import unittest

from matrixd.storage.state import StateGroupStore
from matrixd.storage.state_lookup import StateEntryStore
from matrixd.testing.room_core import make_room_core

T = TypeVar("T")


class StateEntryStoreTests(unittest.TestCase):
    def run_(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(defer.ensureDeferred(coro))

    def test_matches_full_state_over_delta_chains(self) -> None:
        """Across chains with snapshots, overwrites and removals, every key agrees with the rebuilt state."""
        core, _ = make_room_core(self)
        groups_store = StateGroupStore(core.db, core.clock, snapshot_interval=4)
        entries = StateEntryStore(core.db, core.clock)
        rng = random.Random(7)
        keys = [("t", str(i)) for i in range(12)]
        state: dict[tuple[str, str], str] = {}
        prev: Optional[int] = None
        groups: list[int] = []
        for step in range(30):
            key = rng.choice(keys)
            if state and rng.random() < 0.25:
                state.pop(rng.choice(sorted(state)), None)
            else:
                state[key] = f"$e{step}"
            prev = self.run_(groups_store.store_state_group(f"$e{step}", "!r:test", prev, None, dict(state)))
            groups.append(prev)
        found = self.run_(entries.get_state_entries({g: keys for g in groups}))
        for group in groups:
            full = self.run_(groups_store.get_state_ids_for_group(group))
            self.assertEqual(found[group], {k: full.get(k) for k in keys}, f"group {group}")

    def test_empty_request(self) -> None:
        """Asking for nothing reads nothing."""
        core, _ = make_room_core(self)
        self.assertEqual(self.run_(StateEntryStore(core.db, core.clock).get_state_entries({1: []})), {})
