#!/usr/bin/env python
"""Differential test of matrixd's auth rules and state resolution against Synapse.

Generates random rooms (``matrixd.testing.dag``) and walks each through both
implementations, comparing the state before every event, every accept/reject
decision, event ids and auth event selection (see ``tests/differential/compare.py``).
Prints a per-version summary and every mismatch with the seed that replays it:

    /work/venv/bin/python scripts/diff_room_core.py                    # 1,200 rooms
    /work/venv/bin/python scripts/diff_room_core.py --count 6000 --events 80
    /work/venv/bin/python scripts/diff_room_core.py --versions 12 --seed 417 --count 1 --trace

A room that hits a documented Synapse deviation from the spec
(``tests/differential/known_deviations.py``) stops there and is counted as
excluded, unless ``--strict``.  Exits 1 if any room mismatched.  Synapse is a test-only dependency.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402

from tests.differential.compare import DEFAULT_VERSIONS, RoomRun, compare_many, summarise  # noqa: E402


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1200, help="rooms in all, spread over the versions")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--versions", default=",".join(DEFAULT_VERSIONS))
    parser.add_argument("--events", type=int, default=40, help="events per room")
    parser.add_argument("--trace", action="store_true", help="print every event and its outcome")
    parser.add_argument("--strict", action="store_true",
                        help="count documented Synapse deviations (tests/differential/known_deviations.py) as mismatches")
    args = parser.parse_args(argv)
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    per_version = math.ceil(args.count / len(versions))
    seeds = range(args.seed, args.seed + per_version)
    mismatches: list[RoomRun] = []
    started = time.perf_counter()

    def on_result(run: RoomRun) -> None:
        if run.mismatch is not None:
            mismatches.append(run)
            print(run.mismatch.describe(), flush=True)

    if args.trace:
        from tests.differential.compare import compare_room

        runs = []
        for seed in seeds:
            for v in versions:
                print(f"== room version {v} seed {seed}")
                run = await compare_room(v, seed, args.events, trace=print, strict=args.strict)
                on_result(run)
                runs.append(run)
    else:
        runs = await compare_many(versions, seeds, args.events, on_result, strict=args.strict)
    print(summarise(runs))
    reasons: dict[str, list[str]] = {}
    for r in runs:
        if r.excluded:
            reasons.setdefault(r.excluded, []).append(f"v{r.room_version}/{r.seed}")
    for reason, where in sorted(reasons.items()):
        print(f"excluded {len(where)}: {reason} (e.g. {', '.join(where[:5])})")
    print(f"{len(runs)} rooms, {sum(r.events for r in runs)} events, {len(mismatches)} mismatching rooms "
          f"in {time.perf_counter() - started:.1f}s")
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))
