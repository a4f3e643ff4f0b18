#!/usr/bin/env python
"""Time matrixd's state resolution against Synapse's on a big two-fork room.

The room: the creation events, 5,000 members joining (with a few power-level
updates along the way, so join events cite different power-levels events), then
two forks from the same point.  On each fork 250 state events change keys that
the other fork also changes, so the conflicted state set holds 500 events: power
levels and join rules, kicks and bans by moderators (power events, sorted by
the reverse topological power ordering), topics, names, display-name changes
and leaves (ordered by the mainline).  Each fork also moves the power levels on
every 25 events and has members change their profile before leaving, so the
auth difference holds a few hundred events as well.  Both resolvers get the same two state
maps and an in-memory event source, and are timed over several repetitions
(the median is reported).

Synapse gets the auth chain difference from its database (a chain cover
index); matrixd's ``resolve_state`` computes it in memory unless storage
passes an ``auth_chain_difference``.  So two comparisons are printed: both
computing it by walking auth chains in memory (this script's Python store for
Synapse), and both given it precomputed, which is the like-for-like one.

    /work/venv/bin/python scripts/bench_state_res.py [--members 5000] [--conflicted 500]
        [--versions 11,12] [--repeat 5] [--profile]

Synapse is a test-only dependency: this script is not part of matrixd.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Collection, Mapping, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402

from matrixd.events.event import Event, JsonDict, StateKey  # noqa: E402
from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion  # noqa: E402
from matrixd.state.resolution import resolve_state  # noqa: E402
from matrixd.testing.dag import EventFactory, select_auth_events  # noqa: E402
from tests.differential.synapse_side import SynapseRoomCore  # noqa: E402

StateMap = dict[StateKey, str]


class BigRoom:
    """The two-fork room; ``state_a``/``state_b`` are the states after each fork."""

    def __init__(self, rv: RoomVersion, members: int, conflicted: int, seed: int = 1) -> None:
        self.rv = rv
        self.rng = random.Random(seed)
        self.factory = EventFactory(rv, self.rng)
        self.creator = "@creator:a.example"
        self.mods = [f"@mod{i}:{'abc'[i % 3]}.example" for i in range(6)]
        self.members = [f"@u{i}:{'abcdefgh'[i % 8]}.example" for i in range(members)]
        self.state: StateMap = {}
        self.head: list[str] = []
        self._build_common()
        fork_point = list(self.head)
        common = dict(self.state)
        per_fork = conflicted // 2
        self.state_a = self._build_fork("A", fork_point, common, per_fork)
        self.state_b = self._build_fork("B", fork_point, common, per_fork)

    def _send(self, state: StateMap, head: list[str], etype: str, sender: str, content: JsonDict,
              state_key: Optional[str] = None) -> Event:
        auth = select_auth_events(self.rv, state, etype, sender, state_key, content)
        ev = self.factory.make(etype, sender, content, prev_events=head, auth_events=auth, state_key=state_key)
        if state_key is not None:
            state[(etype, state_key)] = ev.event_id
        head[:] = [ev.event_id]
        return ev

    def _power_levels(self, extra: Mapping[str, int]) -> JsonDict:
        users = {} if self.rv.privileged_creators else {self.creator: 100}
        users.update({m: 50 for m in self.mods})
        users.update(extra)
        return {"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
                "ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": {"m.room.power_levels": 100}}

    def _build_common(self) -> None:
        content: JsonDict = {"room_version": self.rv.identifier}
        if not self.rv.implicit_room_creator:
            content["creator"] = self.creator
        create = self.factory.make_create(self.creator, content)
        self.state[("m.room.create", "")] = create.event_id
        self.head = [create.event_id]
        s, h = self.state, self.head
        self._send(s, h, "m.room.member", self.creator, {"membership": "join"}, self.creator)
        self._send(s, h, "m.room.power_levels", self.creator, self._power_levels({}), "")
        self._send(s, h, "m.room.join_rules", self.creator, {"join_rule": "public"}, "")
        for m in self.mods:
            self._send(s, h, "m.room.member", m, {"membership": "join"}, m)
        for i, user in enumerate(self.members):
            self._send(s, h, "m.room.member", user, {"membership": "join", "displayname": f"user {i}"}, user)
            if i % 1000 == 999:  # a new power-levels event now and then: a longer mainline
                self._send(s, h, "m.room.power_levels", self.creator,
                           self._power_levels({self.members[i - j]: 10 for j in range(1, 4)}), "")

    def _build_fork(self, name: str, fork_point: list[str], common: StateMap, count: int) -> StateMap:
        """``count`` state events, each on a key the other fork changes too."""
        state, head = dict(common), list(fork_point)
        mod = self.mods[0] if name == "A" else self.mods[1]
        pl_extra = {self.members[0]: 20} if name == "A" else {self.members[1]: 30}
        self._send(state, head, "m.room.power_levels", self.creator, self._power_levels(pl_extra), "")
        self._send(state, head, "m.room.join_rules", self.creator,
                   {"join_rule": "invite" if name == "A" else "public", "x": name}, "")
        self._send(state, head, "m.room.topic", mod, {"topic": f"fork {name}"}, "")
        self._send(state, head, "m.room.name", mod, {"name": f"fork {name}"}, "")
        done = 4
        i = 10
        while done < count:
            user = self.members[i]
            kind = (i + (0 if name == "A" else 1)) % 4
            if done % 25 == 0:  # the power levels move on: a chain of them in the auth difference
                pl_extra[self.members[i + 1000]] = 10 + done // 25
                self._send(state, head, "m.room.power_levels", self.creator, self._power_levels(pl_extra), "")
            if kind == 0:
                self._send(state, head, "m.room.member", user,
                           {"membership": "join", "displayname": f"{name}{i}"}, user)
            elif kind == 1:
                # A profile change first, so the leave's auth events reach into the fork.
                self._send(state, head, "m.room.member", user,
                           {"membership": "join", "displayname": f"leaving {name}{i}"}, user)
                self._send(state, head, "m.room.member", user, {"membership": "leave"}, user)
            elif kind == 2:
                self._send(state, head, "m.room.member", mod, {"membership": "leave", "reason": name}, user)
            else:
                self._send(state, head, "m.room.member", mod, {"membership": "ban", "reason": name}, user)
            done += 1
            i += 1
        return state


class _PrecomputedStore:
    """Synapse's store with the auth chain difference answered from a table."""

    def __init__(self, inner: Any, answers: dict[Any, Any]) -> None:
        self._inner = inner
        self._answers = answers

    def get_events(self, event_ids: Collection[str], allow_rejected: bool = False) -> Any:
        return self._inner.get_events(event_ids, allow_rejected=allow_rejected)

    async def get_auth_chain_difference(self, room_id: str, state_sets: list[set[str]],
                                        conflicted_state: Optional[set[str]], additional: Optional[set[str]]) -> Any:
        key = (tuple(frozenset(s) for s in state_sets), frozenset(conflicted_state or ()))
        if key not in self._answers:
            self._answers[key] = await self._inner.get_auth_chain_difference(
                room_id, state_sets, conflicted_state, additional)
        return self._answers[key]


async def bench_version(rv: RoomVersion, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    room = BigRoom(rv, args.members, args.conflicted)
    build = time.perf_counter() - t0
    events = room.factory.events
    sets = [room.state_a, room.state_b]
    conflicted_keys = [k for k in set(room.state_a) | set(room.state_b) if room.state_a.get(k) != room.state_b.get(k)]

    mx_events = dict(events)

    async def fetch(ids: Collection[str]) -> Mapping[str, Event]:
        return {i: mx_events[i] for i in ids if i in mx_events}

    syn = SynapseRoomCore(rv.identifier, room.factory.room_id)
    for ev in events.values():
        syn.add_outlier(ev)
    from synapse.state import v2 as syn_v2  # test-only import

    precomputed = _PrecomputedStore(syn.store, {})

    async def run_matrixd() -> StateMap:
        return dict(await resolve_state(room.factory.room_id, rv, sets, fetch))

    precomputed_diff: set[str] = set()

    async def stored_difference(room_id: str, state_sets: Any) -> set[str]:
        return precomputed_diff

    async def run_matrixd_pre() -> StateMap:
        return dict(await resolve_state(room.factory.room_id, rv, sets, fetch,
                                        auth_chain_difference=stored_difference))

    async def run_synapse(store: Any) -> StateMap:
        return dict(await syn_v2.resolve_events_with_store(
            syn._clock, room.factory.room_id, syn.rv, sets, None, store))  # noqa: SLF001

    mx_times, mx_pre_times, syn_times, syn_pre_times = [], [], [], []
    mx_result: StateMap = {}
    mx_pre_result: StateMap = {}
    syn_result: StateMap = {}
    await run_synapse(precomputed)  # fills the precomputed answer (untimed)
    conflicted_ids = {s[k] for s in sets for k in conflicted_keys if k in s}
    diff = await syn.store.get_auth_chain_difference(
        room.factory.room_id, [set(s.values()) for s in sets], conflicted_ids, None)
    precomputed_diff.update(diff.auth_difference)
    for _ in range(args.repeat):
        t = time.perf_counter()
        mx_result = await run_matrixd()
        mx_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        mx_pre_result = await run_matrixd_pre()
        mx_pre_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        syn_result = await run_synapse(syn.store)
        syn_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        await run_synapse(precomputed)
        syn_pre_times.append(time.perf_counter() - t)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await run_matrixd()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
        print(f"--- cProfile of matrixd resolve_state, room v{rv.identifier} ---")
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
    return {
        "version": rv.identifier, "events": len(events), "state": len(room.state_a),
        "conflicted_keys": len(conflicted_keys), "conflicted": len(conflicted_ids),
        "auth_diff": len(diff.auth_difference), "build": build,
        "matrixd": statistics.median(mx_times), "matrixd_pre": statistics.median(mx_pre_times),
        "synapse": statistics.median(syn_times), "synapse_pre": statistics.median(syn_pre_times),
        "agree": mx_result == syn_result == mx_pre_result,
    }


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--conflicted", type=int, default=500, help="conflicted state events (both forks)")
    parser.add_argument("--versions", default="11,12")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one matrixd run per version")
    args = parser.parse_args(argv)
    rows = []
    for v in args.versions.split(","):
        rows.append(await bench_version(KNOWN_ROOM_VERSIONS[v.strip()], args))
    print(f"members={args.members} conflicted events={args.conflicted} repetitions={args.repeat} (median seconds)")
    print(f"{'version':>7} {'events':>7} {'state':>6} {'conflicted':>10} {'auth diff':>9} "
          f"{'matrixd':>8} {'synapse':>8} {'ratio':>6} {'matrixd*':>8} {'synapse*':>8} {'ratio*':>6} {'same result':>11}")
    for r in rows:
        ratio = r["synapse"] / r["matrixd"] if r["matrixd"] else float("inf")
        ratio_pre = r["synapse_pre"] / r["matrixd_pre"] if r["matrixd_pre"] else float("inf")
        print(f"{r['version']:>7} {r['events']:>7} {r['state']:>6} {r['conflicted']:>10} {r['auth_diff']:>9} "
              f"{r['matrixd']:>8.4f} {r['synapse']:>8.4f} {ratio:>5.2f}x "
              f"{r['matrixd_pre']:>8.4f} {r['synapse_pre']:>8.4f} {ratio_pre:>5.2f}x {str(r['agree']):>11}")
    print("matrixd/synapse: each computes the auth chain difference by walking auth chains in memory")
    print("matrixd*/synapse*: the auth chain difference is precomputed, as a database index would serve it")
    print("  (matrixd through resolve_state's auth_chain_difference hook); the issue's target is ratio* >= 3x")


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
