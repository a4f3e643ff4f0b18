"""``export_signing_key``: print a signing key's public half in the
``old_signing_keys`` config format, so a server that replaced its key can
keep vouching for events signed with the old one::

    old_signing_keys:
      "ed25519:a_xyz": { key: "<public key, unpadded base64>", expired_ts: 1700000000000 }
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import signedjson.key
from unpaddedbase64 import encode_base64

from matrixd.cli._common import fail, load_config_or_fail


def export_lines(key_file: str, expired_ts: int) -> list[str]:
    try:
        with open(key_file, encoding="utf-8") as f:
            keys = signedjson.key.read_signing_keys(f)
    except OSError as e:
        fail(f"cannot read {key_file}: {e.strerror or e}")
    except Exception as e:  # signedjson raises various errors for malformed files
        fail(f"{key_file} is not a signing key file: {e}")
    if not keys:
        fail(f"{key_file} holds no key")
    lines = []
    for key in keys:
        public = encode_base64(key.verify_key.encode())
        lines.append(f'"{key.alg}:{key.version}": {{ key: "{public}", expired_ts: {expired_ts} }}')
    return lines


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="export_signing_key",
        description="Print signing keys' public halves as old_signing_keys entries for homeserver.yaml.",
        epilog="Example: export_signing_key -c homeserver.yaml >> old_keys.yaml",
    )
    parser.add_argument("key_file", nargs="*", help="signing key file(s) (default: the config's signing_key_path)")
    parser.add_argument("-c", "--config", help="homeserver.yaml, to find signing_key_path")
    parser.add_argument("-x", "--expiry-ts", type=int,
                        help="when the key stopped being used, in ms since the epoch (default: now)")
    args = parser.parse_args(argv)
    files = list(args.key_file)
    if not files:
        if not args.config:
            fail("give a key file or -c homeserver.yaml")
        path = load_config_or_fail(args.config).server.signing_key_path
        if path is None:
            fail(f"{args.config} has no signing_key_path")
        files = [path]
    expired = args.expiry_ts if args.expiry_ts is not None else int(time.time() * 1000)
    for key_file in files:
        for line in export_lines(key_file, expired):
            sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
