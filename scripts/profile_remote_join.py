#!/usr/bin/env python
"""Profile matrixd's remote join in-process: our server joins a fake remote room of N members.

The room is held by the fake remote server of ``tests.federation_flow.fake_room`` (its members are
users of that server); our in-process homeserver (SQLite, or PostgreSQL with MATRIXD_TEST_DB=postgres)
joins it through the real client API, federation client and send_join processing.

    PYTHONPATH=. python scripts/profile_remote_join.py --members 2000 [--profile out.prof] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import tracemalloc
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.trial import unittest  # noqa: E402

from matrixd.events.room_versions import KNOWN_ROOM_VERSIONS  # noqa: E402
from tests.federation.utils import REMOTE, make_federating_homeserver  # noqa: E402
from tests.federation_flow.fake_room import FakeRoom, FakeRoomHost  # noqa: E402


class _Case(unittest.TestCase):
    def runTest(self) -> None:  # pragma: no cover - never run, only hosts cleanups
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--room-version", default="10")
    parser.add_argument("--profile", help="write cProfile stats here")
    parser.add_argument("--top", type=int, default=0, help="print the top N functions by cumulative time")
    parser.add_argument("--memory", action="store_true", help="trace Python allocations (peak) during the join")
    parser.add_argument("--partial", action="store_true",
                        help="join with partial state (omit_members) and measure until the resync has finished")
    args = parser.parse_args()

    case = _Case()  # type: ignore[no-untyped-call]
    hs, network, remote = make_federating_homeserver(case)
    try:
        _, token = hs.create_user("alice")
        host = FakeRoomHost(remote)
        t0 = time.perf_counter()
        room = FakeRoom(remote, KNOWN_ROOM_VERSIONS[args.room_version], f"@carol:{REMOTE}")
        for i in range(args.members - 1):
            room.add("m.room.member", f"@u{i}:{REMOTE}", {"membership": "join", "displayname": f"User {i}"},
                     f"@u{i}:{REMOTE}")
        room.omit_members = args.partial
        room.serve(host)
        print(f"built a room of {args.members} members in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        path = f"/_matrix/client/v3/join/{urllib.parse.quote(room.room_id, safe='')}?server_name={REMOTE}"
        # Warm the keyring (fetch the remote's key) outside the measurement? No: a real join fetches it too.
        profiler = cProfile.Profile() if (args.profile or args.top) else None
        if args.memory:
            tracemalloc.start()
        t0 = time.perf_counter()
        c0 = time.process_time()
        if profiler:
            profiler.enable()
        channel: Any = hs.request("POST", path, {}, access_token=token)
        answered = time.perf_counter() - t0
        if args.partial:
            partial = hs.components.federation_flow.partial_state
            while partial.is_running(room.room_id):
                hs.reactor.advance(0.01)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] if args.memory else None
        assert channel.code == 200, channel.result_body
        print(f"join of a {args.members}-member room: {elapsed:.2f}s wall (answered {answered:.2f}s), {cpu:.2f}s CPU"
              + (f", peak traced allocations {peak / 2**20:.1f} MiB" if peak is not None else ""))
        if profiler:
            if args.profile:
                profiler.dump_stats(args.profile)
            if args.top:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    finally:
        case.doCleanups()


if __name__ == "__main__":
    main()
