"""The benchmark scenarios. Each runs against one server and returns metrics.

Scenarios run in order and build on each other's state (kept in
:class:`ServerState`): ``register`` creates the users every later scenario
uses, ``rooms`` creates the rooms whose creator ``initial_sync`` measures, and
``send`` fills the room that ``messages`` pages back through. Every request is
checked; a failing request fails the scenario (no silent partial numbers).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import secrets
import statistics
import time
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar

import attrs

from bench.client import Homeserver, User

T = TypeVar("T")


@attrs.frozen
class Params:
    """Sizes of one run; ``FULL`` and ``QUICK`` below."""

    users: int
    register_concurrency: int
    send_sequential: int
    send_concurrent: int
    concurrency_levels: tuple[int, ...]
    rooms_sequential: int
    rooms_concurrent: int
    room_concurrency: int
    sync_messages_per_room: int
    sync_repeats: int
    fanout_clients: int
    fanout_messages: int
    page_limit: int = 100


FULL = Params(
    users=110, register_concurrency=8, send_sequential=2000, send_concurrent=2000, concurrency_levels=(8, 32),
    rooms_sequential=100, rooms_concurrent=100, room_concurrency=8, sync_messages_per_room=10, sync_repeats=5,
    fanout_clients=100, fanout_messages=30,
)
QUICK = Params(
    users=24, register_concurrency=8, send_sequential=200, send_concurrent=200, concurrency_levels=(8, 32),
    rooms_sequential=30, rooms_concurrent=20, room_concurrency=8, sync_messages_per_room=3, sync_repeats=2,
    fanout_clients=20, fanout_messages=10,
)


@attrs.frozen
class Metric:
    """One measured figure. ``better`` is "higher" or "lower"."""

    scenario: str
    name: str
    value: float
    unit: str
    better: str


@attrs.define
class ServerState:
    """What earlier scenarios left for later ones, per server."""

    hs: Homeserver
    users: list[User] = attrs.field(factory=list)
    sync_user: Optional[User] = None
    sync_rooms: list[str] = attrs.field(factory=list)
    bench_room: Optional[str] = None
    bench_room_events: int = 0


async def bounded_gather(factories: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the coroutine factories with at most ``limit`` in flight; results in order."""
    items = list(factories)
    results: list[Any] = [None] * len(items)
    index = 0

    async def worker() -> None:
        nonlocal index
        while index < len(items):
            i = index
            index += 1
            results[i] = await items[i]()

    await asyncio.gather(*(worker() for _ in range(max(1, min(limit, len(items))))))
    return results


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; values need not be sorted."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def _need(value: Optional[T], what: str) -> T:
    if value is None:
        raise RuntimeError(f"scenario order: {what} is not set up (run the scenario that creates it first)")
    return value


# -- register -------------------------------------------------------------------


async def register(state: ServerState, p: Params) -> list[Metric]:
    """Register ``p.users`` users through shared-secret registration, ``register_concurrency`` at a time."""
    run = secrets.token_hex(3)
    names = [f"bench{run}u{i:04d}" for i in range(p.users)]
    start = time.perf_counter()
    users = await bounded_gather(
        [lambda n=n: state.hs.register(n, f"pw-{n}-bench") for n in names], p.register_concurrency  # type: ignore[misc]
    )
    elapsed = time.perf_counter() - start
    state.users = users
    return [Metric("register", f"users/s ({p.register_concurrency} in flight)", p.users / elapsed, "/s", "higher")]


# -- rooms ---------------------------------------------------------------------


async def rooms(state: ServerState, p: Params) -> list[Metric]:
    """createRoom, sequentially (these rooms feed initial_sync) and ``room_concurrency`` in flight."""
    creator = state.users[1]
    metrics: list[Metric] = []
    start = time.perf_counter()
    created = []
    for i in range(p.rooms_sequential):
        created.append(await creator.create_room({"preset": "private_chat", "name": f"bench room {i}"}))
    elapsed = time.perf_counter() - start
    metrics.append(Metric("rooms", "rooms/s sequential", p.rooms_sequential / elapsed, "/s", "higher"))
    state.sync_user, state.sync_rooms = creator, created

    if p.rooms_concurrent:
        other = state.users[-1]
        start = time.perf_counter()
        await bounded_gather(
            [lambda i=i: other.create_room({"preset": "private_chat", "name": f"c{i}"})  # type: ignore[misc]
             for i in range(p.rooms_concurrent)],
            p.room_concurrency,
        )
        elapsed = time.perf_counter() - start
        metrics.append(Metric("rooms", f"rooms/s ({p.room_concurrency} in flight)", p.rooms_concurrent / elapsed,
                              "/s", "higher"))
    return metrics


# -- send ----------------------------------------------------------------------


async def send(state: ServerState, p: Params) -> list[Metric]:
    """PUT /send into one room: one at a time, then N in flight for each concurrency level."""
    sender = state.users[0]
    room = await sender.create_room({"preset": "private_chat", "name": "send bench"})
    state.bench_room = room
    metrics: list[Metric] = []

    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(p.send_sequential):
        t0 = time.perf_counter()
        await sender.send_message(room, f"sequential {i}")
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    metrics.append(Metric("send", "msgs/s sequential", p.send_sequential / elapsed, "/s", "higher"))
    metrics.append(Metric("send", "request p50 sequential", percentile(latencies, 50) * 1000, "ms", "lower"))

    for level in p.concurrency_levels:
        start = time.perf_counter()
        await bounded_gather(
            [lambda i=i: sender.send_message(room, f"c{level} {i}")  # type: ignore[misc]
             for i in range(p.send_concurrent)],
            level,
        )
        elapsed = time.perf_counter() - start
        metrics.append(Metric("send", f"msgs/s ({level} in flight)", p.send_concurrent / elapsed, "/s", "higher"))
    state.bench_room_events = p.send_sequential + p.send_concurrent * len(p.concurrency_levels)
    return metrics


# -- messages (back-pagination) ----------------------------------------------------


async def messages(state: ServerState, p: Params) -> list[Metric]:
    """Page back through the send room with /messages (dir=b, ``page_limit`` per page) from its live end."""
    reader = state.users[0]
    room = _need(state.bench_room, "the send room")
    filter_json = json.dumps({"room": {"rooms": [room], "timeline": {"limit": 1}}})
    sync = await reader.sync(filter_json=filter_json)
    token: Optional[str] = sync["rooms"]["join"][room]["timeline"]["prev_batch"]
    total = 0
    pages: list[float] = []
    start = time.perf_counter()
    while token is not None:
        t0 = time.perf_counter()
        page = await reader.messages(room, token, limit=p.page_limit)
        pages.append(time.perf_counter() - t0)
        chunk = page.get("chunk", [])
        total += len(chunk)
        if not chunk:
            break
        token = page.get("end")
    elapsed = time.perf_counter() - start
    if total < state.bench_room_events:
        raise RuntimeError(f"/messages returned {total} events, expected at least {state.bench_room_events}")
    return [
        Metric("messages", f"events/s paginating {total} events", total / elapsed, "/s", "higher"),
        Metric("messages", f"page p50 (limit {p.page_limit})", percentile(pages, 50) * 1000, "ms", "lower"),
    ]


# -- initial sync --------------------------------------------------------------------


async def initial_sync(state: ServerState, p: Params) -> list[Metric]:
    """Full /sync (no since, timeline limit 10) of the user who created the sequential rooms."""
    user = _need(state.sync_user, "the rooms creator")
    rooms_ = state.sync_rooms
    await bounded_gather(
        [lambda r=r, i=i: user.send_message(r, f"filler {i}")  # type: ignore[misc]
         for r in rooms_ for i in range(p.sync_messages_per_room)],
        8,
    )
    filter_json = json.dumps({"room": {"timeline": {"limit": 10}}})
    times: list[float] = []
    for _ in range(1 + p.sync_repeats):
        t0 = time.perf_counter()
        result = await user.sync(filter_json=filter_json)
        times.append(time.perf_counter() - t0)
        joined = result.get("rooms", {}).get("join", {})
        missing = set(rooms_) - set(joined)
        if missing:
            raise RuntimeError(f"initial sync lacks {len(missing)} of the user's {len(rooms_)} rooms")
    return [
        Metric("initial_sync", f"first, {len(rooms_)} rooms", times[0] * 1000, "ms", "lower"),
        Metric("initial_sync", f"repeat median, {len(rooms_)} rooms", statistics.median(times[1:]) * 1000,
               "ms", "lower"),
    ]


# -- fan-out ---------------------------------------------------------------------------


async def fanout(state: ServerState, p: Params) -> list[Metric]:
    """One sender, ``fanout_clients`` long-polling /sync clients in one room: latency send → each receipt.

    Before each message every client has a long-poll outstanding (and 100 ms
    have passed for the server to park it); the clock starts just before the
    PUT and stops when a client's /sync answer has fully arrived.
    """
    sender = state.users[0]
    clients = state.users[2:2 + p.fanout_clients]
    if len(clients) < p.fanout_clients:
        raise RuntimeError(f"fanout needs {p.fanout_clients + 2} users, register made {len(state.users)}")
    room = await sender.create_room({"preset": "public_chat", "name": "fanout"})
    await bounded_gather([lambda c=c: c.join(room) for c in clients], 8)  # type: ignore[misc]
    filter_json = json.dumps({"room": {"rooms": [room], "timeline": {"limit": 1}}})

    sent_at: dict[str, float] = {}
    remaining: dict[str, int] = {}
    all_seen: dict[str, asyncio.Event] = {}
    latencies: list[float] = []
    per_message: dict[str, list[float]] = {}
    outstanding = 0
    stop = False

    async def run_client(client: User) -> None:
        nonlocal outstanding
        since = (await client.sync(filter_json=filter_json))["next_batch"]
        while not stop:
            outstanding += 1
            try:
                raw, arrived = await client.sync_raw(since, 30000, filter_json)
            finally:
                outstanding -= 1
            data = json.loads(raw)
            since = data["next_batch"]
            timeline = data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
            for event in timeline.get("events", []):
                marker = event.get("content", {}).get("body")
                if marker in sent_at:
                    latencies.append(arrived - sent_at[marker])
                    per_message.setdefault(marker, []).append(arrived - sent_at[marker])
                    remaining[marker] -= 1
                    if remaining[marker] == 0:
                        all_seen[marker].set()

    tasks = [asyncio.ensure_future(run_client(c)) for c in clients]
    missed = 0
    try:
        for k in range(p.fanout_messages):
            deadline = time.monotonic() + 60
            while outstanding < len(clients):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {outstanding} of {len(clients)} clients are long-polling")
                for t in tasks:
                    if t.done():
                        t.result()  # a client failed: raise its error
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)
            marker = f"fanout {k} {secrets.token_hex(4)}"
            remaining[marker] = len(clients)
            all_seen[marker] = asyncio.Event()
            sent_at[marker] = time.perf_counter()
            await sender.send_message(room, marker)
            try:
                await asyncio.wait_for(all_seen[marker].wait(), 30)
            except asyncio.TimeoutError:
                missed += remaining[marker]
    finally:
        stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if missed:
        raise RuntimeError(f"fan-out: {missed} deliveries did not arrive within 30 s")
    if os.environ.get("BENCH_DEBUG"):
        for marker, values in per_message.items():
            print(f"  {marker}: min {min(values) * 1000:.0f} p50 {percentile(values, 50) * 1000:.0f}"
                  f" max {max(values) * 1000:.0f} ms", file=sys.stderr)
    return [
        Metric("fanout", f"p50 to {len(clients)} clients", percentile(latencies, 50) * 1000, "ms", "lower"),
        Metric("fanout", f"p99 to {len(clients)} clients", percentile(latencies, 99) * 1000, "ms", "lower"),
    ]


SCENARIOS: dict[str, Callable[[ServerState, Params], Awaitable[list[Metric]]]] = {
    "register": register,
    "rooms": rooms,
    "send": send,
    "messages": messages,
    "initial_sync": initial_sync,
    "fanout": fanout,
}
