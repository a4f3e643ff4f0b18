"""This server's ed25519 signing keys and the encoding of verify keys.

The key file holds one key per line, ``ed25519 <version> <unpadded base64
seed>``, the format homeservers conventionally use, so a key can be moved
between implementations. Key ids are ``ed25519:<version>``; a version uses
only ``[a-zA-Z0-9_]`` (server-server API, "Publishing Keys"). Keys are
signedjson keys (pynacl underneath), carrying ``alg`` and ``version``.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import string
from typing import Iterable, Sequence

import signedjson.key
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

ED25519 = "ed25519"
_VERSION_RE = re.compile(r"^[A-Za-z0-9_]+$")


class KeyFileError(ValueError):
    """A signing key file or encoded key is malformed; the message says where."""


def is_valid_key_version(version: str) -> bool:
    return bool(_VERSION_RE.match(version))


def generate_key_version() -> str:
    """A fresh version such as ``a_X3kQ`` for a newly generated key."""
    return "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))


def generate_signing_key(version: str | None = None) -> SigningKey:
    """A new random ed25519 signing key (a random version if none is given)."""
    version = generate_key_version() if version is None else version
    _check_version(version)
    key: SigningKey = signedjson.key.generate_signing_key(version)
    return key


def signing_key_from_seed(version: str, seed_base64: str) -> SigningKey:
    """The signing key whose 32-byte seed is ``seed_base64`` (padding optional)."""
    _check_version(version)
    try:
        seed = decode_base64(seed_base64.strip().rstrip("="))
    except ValueError as e:
        raise KeyFileError(f"signing key seed is not base64: {e}") from None
    if len(seed) != 32:
        raise KeyFileError(f"signing key seed is {len(seed)} bytes, not 32")
    key: SigningKey = signedjson.key.decode_signing_key_base64(ED25519, version, encode_base64(seed))
    return key


def key_id(key: SigningKey | VerifyKey) -> str:
    """``ed25519:<version>``."""
    return f"{key.alg}:{key.version}"


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The public half, with the same ``alg`` and ``version``."""
    verify_key: VerifyKey = signedjson.key.get_verify_key(signing_key)
    return verify_key


def encode_signing_key_seed(signing_key: SigningKey) -> str:
    """The unpadded base64 seed of a signing key (what the key file stores)."""
    return encode_base64(signing_key.encode())


def encode_verify_key(verify_key: VerifyKey) -> str:
    """The unpadded base64 public key, as published under ``verify_keys``."""
    return encode_base64(verify_key.encode())


def decode_verify_key(key_id_str: str, key_base64: str) -> VerifyKey:
    """Parse a published ``(key id, base64 public key)`` pair; KeyFileError if bad."""
    alg, sep, version = key_id_str.partition(":")
    if not sep or alg != ED25519 or not version:
        raise KeyFileError(f"unsupported key id {key_id_str!r}")
    try:
        raw = decode_base64(key_base64.rstrip("="))
    except ValueError as e:
        raise KeyFileError(f"verify key {key_id_str} is not base64: {e}") from None
    if len(raw) != 32:
        raise KeyFileError(f"verify key {key_id_str} is {len(raw)} bytes, not 32")
    verify_key: VerifyKey = signedjson.key.decode_verify_key_bytes(key_id_str, raw)
    return verify_key


def parse_signing_keys(text: str) -> list[SigningKey]:
    """Parse key file text: one ``ed25519 <version> <seed>`` per non-blank line."""
    keys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise KeyFileError(f"line {lineno}: expected '<algorithm> <version> <seed>', got {len(parts)} fields")
        alg, version, seed = parts
        if alg != ED25519:
            raise KeyFileError(f"line {lineno}: unsupported algorithm {alg!r}")
        if not is_valid_key_version(version):
            raise KeyFileError(f"line {lineno}: invalid key version {version!r}")
        try:
            keys.append(signing_key_from_seed(version, seed))
        except KeyFileError as e:
            raise KeyFileError(f"line {lineno}: {e}") from None
    return keys


def format_signing_keys(keys: Iterable[SigningKey]) -> str:
    """Key file text for ``keys`` (inverse of :func:`parse_signing_keys`)."""
    buf = io.StringIO()
    signedjson.key.write_signing_keys(buf, keys)
    return buf.getvalue()


def read_signing_key_file(path: str) -> list[SigningKey]:
    """Read a key file; KeyFileError if it is empty or malformed."""
    with open(path, encoding="ascii") as f:
        keys = parse_signing_keys(f.read())
    if not keys:
        raise KeyFileError(f"{path}: no signing keys")
    return keys


def write_signing_key_file(path: str, keys: Sequence[SigningKey]) -> None:
    """Write ``keys`` to ``path`` atomically, readable by the owner only."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(format_signing_keys(keys))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_or_generate_signing_key_file(path: str) -> list[SigningKey]:
    """The keys in ``path``, first writing a freshly generated key if it does not exist."""
    if not os.path.exists(path):
        write_signing_key_file(path, [generate_signing_key()])
    return read_signing_key_file(path)


def _check_version(version: str) -> None:
    if not is_valid_key_version(version):
        raise KeyFileError(f"invalid key version {version!r}: use only [a-zA-Z0-9_]")
