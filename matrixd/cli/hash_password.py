"""``hash_password``: print a bcrypt hash of a password, as matrixd stores it.

For setting ``users.password_hash`` by hand.  The password is NFKC-normalised
then hashed with the config's ``bcrypt_rounds`` (the same as
``PasswordHasher``), so the server accepts it at login.  matrixd has no
password pepper setting, so none is applied.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import unicodedata
from typing import Optional, Sequence

import bcrypt

from matrixd.cli._common import fail, load_config_or_fail

DEFAULT_ROUNDS = 12


def hash_password(password: str, rounds: int) -> str:
    if "\x00" in password:
        raise ValueError("passwords may not contain NUL characters")
    data = unicodedata.normalize("NFKC", password).encode("utf-8")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode("ascii")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="hash_password",
        description="Print the bcrypt hash matrixd would store for a password (to set users.password_hash).",
        epilog="Example: hash_password -c homeserver.yaml   (prompts for the password twice)",
    )
    parser.add_argument("-c", "--config", help="homeserver.yaml: its bcrypt_rounds is used")
    parser.add_argument("-p", "--password", help="the password (default: prompt; '-' reads one line from stdin)")
    parser.add_argument("-r", "--rounds", type=int, help=f"bcrypt rounds (default: config or {DEFAULT_ROUNDS})")
    args = parser.parse_args(argv)

    rounds = DEFAULT_ROUNDS
    if args.config:
        rounds = load_config_or_fail(args.config).registration.bcrypt_rounds
    if args.rounds is not None:
        rounds = args.rounds
    if not 4 <= rounds <= 31:
        fail(f"bcrypt rounds must be between 4 and 31, not {rounds}")

    password = args.password
    if password == "-":
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            fail("the passwords do not match")
    if not password:
        fail("the password is empty")
    try:
        print(hash_password(password, rounds))
    except ValueError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
