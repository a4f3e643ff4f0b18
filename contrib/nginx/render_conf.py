#!/usr/bin/env python3
"""Render matrixd.conf.template into an nginx http{} snippet for a concrete deployment.

    python3 contrib/nginx/render_conf.py --listen 443 ssl --server-name matrix.example.org \
        --main 127.0.0.1:8008 --sync 127.0.0.1:8083 --sync 127.0.0.1:8084 \
        --federation-reader 127.0.0.1:8085 --media 127.0.0.1:8086 > /etc/nginx/conf.d/matrixd.conf

Standard library only, so a test or a deployment script can import ``render``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "matrixd.conf.template")


def _servers(addresses: Sequence[str]) -> str:
    return "\n".join(f"    server {a} max_fails=0;" for a in addresses)


def render(
    *,
    listen: Sequence[str],
    server_name: str,
    main: Sequence[str],
    sync: Sequence[str] = (),
    initial_sync: Sequence[str] = (),
    federation_readers: Sequence[str] = (),
    media: Sequence[str] = (),
    template: Optional[str] = None,
) -> str:
    """The snippet text.  Empty groups fall back to the master (initial sync: to the sync workers)."""
    if not main:
        raise ValueError("the master's address is required")
    with open(template or TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    sync = list(sync) or list(main)
    replacements = {
        "@LISTEN@": "\n".join(f"    listen {spec};" for spec in listen),
        "@SERVER_NAME@": server_name,
        "@MAIN@": _servers(main),
        "@SYNC@": _servers(sync),
        "@INITIAL_SYNC@": _servers(list(initial_sync) or sync),
        "@FEDERATION_READERS@": _servers(list(federation_readers) or list(main)),
        "@MEDIA@": _servers(list(media) or list(main)),
    }
    for marker, value in replacements.items():
        text = text.replace(marker, value)
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", action="append", required=True, help='e.g. "8448 ssl" or "127.0.0.1:8080"')
    parser.add_argument("--server-name", default="_")
    parser.add_argument("--main", action="append", required=True, help="host:port of the master")
    parser.add_argument("--sync", action="append", default=[])
    parser.add_argument("--initial-sync", action="append", default=[])
    parser.add_argument("--federation-reader", action="append", default=[])
    parser.add_argument("--media", action="append", default=[])
    args = parser.parse_args(argv)
    sys.stdout.write(render(listen=args.listen, server_name=args.server_name, main=args.main, sync=args.sync,
                            initial_sync=args.initial_sync, federation_readers=args.federation_reader,
                            media=args.media))
    return 0


if __name__ == "__main__":
    sys.exit(main())
