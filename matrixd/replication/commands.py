"""The commands of the TCP replication protocol: one frozen value type per verb.

A command travels as one line of UTF-8 text ending in ``\\n``::

    VERB arg1 arg2 ... [json]

Arguments are separated by single spaces and never contain whitespace; only
the last argument of a verb may be free text (``ERROR``) or JSON (``RDATA``,
``USER_IP``), which is encoded compactly and ASCII-only, so it contains no
newline either.  :func:`parse_line` is strict: an unknown verb, a missing or
malformed argument, or JSON of the wrong shape raises
:class:`CommandParseError`, which a connection answers with ``ERROR`` and a
disconnect.

The verbs (M = master, W = worker):

=================  ====  ===================================================
``HELLO``          M→W   ``<protocol_version> <server_name> <master_epoch> <nonce>``
``AUTH``           W→M   ``<worker_name> <hex hmac-sha256>`` (see :func:`auth_mac`)
``WELCOME``        M→W   authentication accepted
``ERROR``          both  ``<reason...>``; the sender closes the connection
``PING``           both  ``<ts_ms>`` heartbeat
``SUBSCRIBE``      W→M   ``<stream> [<from_token>]``
``POSITION``       M→W   ``<stream> <prev_token> <new_token>``
``RDATA``          M→W   ``<stream> <token> <rows-json>``
``USER_SYNC``      W→M   ``<user_id> <true|false> <ts_ms>``
``CLEAR_USER_SYNC`` W→M  ``<instance>``
``USER_IP``        W→M   ``<entries-json>``
=================  ====  ===================================================
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, ClassVar, Optional, Union

import attrs

#: Bumped on any incompatible change to the commands or their meaning.
PROTOCOL_VERSION = 1

#: The longest line (without its ``\n``) either side accepts.
MAX_LINE_BYTES = 1024 * 1024

JsonDict = dict[str, Any]

_STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_TOKEN_ALNUM = re.compile(r"^[A-Za-z0-9]{1,64}$")
_NO_SPACE = re.compile(r"^[^\s]{1,255}$")
_HEX_MAC = re.compile(r"^[0-9a-f]{64}$")
_INT = re.compile(r"^[0-9]{1,19}$")


class CommandParseError(ValueError):
    """A line that is not a well-formed command of this protocol version."""


def is_valid_stream_name(name: str) -> bool:
    return bool(_STREAM_NAME.match(name))


def is_valid_worker_name(name: str) -> bool:
    """Worker names: 1-64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    return bool(_WORKER_NAME.match(name))


def auth_mac(secret: str, *, protocol_version: int, server_name: str, master_epoch: str, nonce: str,
             worker_name: str) -> str:
    """The hex HMAC-SHA256 a worker sends in ``AUTH``.

    It binds the shared secret to everything the master said in ``HELLO``
    (so a captured ``AUTH`` cannot be replayed against another nonce, epoch or
    server) and to the worker's name (so one worker cannot pose as another
    without the secret).
    """
    message = "\n".join([str(protocol_version), server_name, master_epoch, nonce, worker_name])
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def encode_json(value: Any) -> str:
    """Compact, ASCII-only JSON: it can never contain a raw newline."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_json(raw: str, what: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise CommandParseError(f"{what} is not valid JSON: {e}") from None


def _split(rest: str, verb: str, n: int, *, free_last: bool = False) -> list[str]:
    """Exactly ``n`` arguments; with ``free_last`` the last one is the rest of the line."""
    if n == 0:
        if rest:
            raise CommandParseError(f"{verb} takes no arguments")
        return []
    parts = rest.split(" ", n - 1) if free_last else rest.split(" ")
    if len(parts) != n or any(p == "" for p in parts):
        raise CommandParseError(f"{verb} needs {n} argument{'s' if n != 1 else ''}")
    return parts


def _check(pattern: re.Pattern[str], value: str, verb: str, what: str) -> str:
    if not pattern.match(value):
        raise CommandParseError(f"{verb}: invalid {what} {value[:80]!r}")
    return value


def _int(value: str, verb: str, what: str) -> int:
    if not _INT.match(value):
        raise CommandParseError(f"{verb}: {what} must be a non-negative integer, not {value[:80]!r}")
    return int(value)


class Command:
    """Base of every command; subclasses are frozen attrs classes."""

    NAME: ClassVar[str]

    def to_line(self) -> str:
        """The line for the wire, without the trailing newline."""
        raise NotImplementedError

    @classmethod
    def from_args(cls, rest: str) -> "Command":
        raise NotImplementedError


@attrs.frozen(slots=True)
class HelloCommand(Command):
    """Master → worker greeting; the master epoch changes every time the master starts."""

    NAME: ClassVar[str] = "HELLO"
    protocol_version: int
    server_name: str
    master_epoch: str
    nonce: str

    def to_line(self) -> str:
        return f"HELLO {self.protocol_version} {self.server_name} {self.master_epoch} {self.nonce}"

    @classmethod
    def from_args(cls, rest: str) -> "HelloCommand":
        v, server_name, epoch, nonce = _split(rest, "HELLO", 4)
        return cls(
            _int(v, "HELLO", "protocol version"), _check(_NO_SPACE, server_name, "HELLO", "server name"),
            _check(_TOKEN_ALNUM, epoch, "HELLO", "epoch"), _check(_TOKEN_ALNUM, nonce, "HELLO", "nonce"),
        )


@attrs.frozen(slots=True)
class AuthCommand(Command):
    """Worker → master: who it is, proven with :func:`auth_mac`."""

    NAME: ClassVar[str] = "AUTH"
    worker_name: str
    mac: str

    def to_line(self) -> str:
        return f"AUTH {self.worker_name} {self.mac}"

    @classmethod
    def from_args(cls, rest: str) -> "AuthCommand":
        name, mac = _split(rest, "AUTH", 2)
        return cls(_check(_WORKER_NAME, name, "AUTH", "worker name"), _check(_HEX_MAC, mac, "AUTH", "mac"))


@attrs.frozen(slots=True)
class WelcomeCommand(Command):
    """Master → worker: authenticated; the worker may now subscribe."""

    NAME: ClassVar[str] = "WELCOME"

    def to_line(self) -> str:
        return "WELCOME"

    @classmethod
    def from_args(cls, rest: str) -> "WelcomeCommand":
        _split(rest, "WELCOME", 0)
        return cls()


@attrs.frozen(slots=True)
class ErrorCommand(Command):
    """Either side: why the sender is about to close the connection."""

    NAME: ClassVar[str] = "ERROR"
    reason: str

    def to_line(self) -> str:
        # Reasons may come from exception text: fold any whitespace run (newlines too) into a space.
        return f"ERROR {' '.join(self.reason.split()) or 'error'}"

    @classmethod
    def from_args(cls, rest: str) -> "ErrorCommand":
        (reason,) = _split(rest, "ERROR", 1, free_last=True)
        return cls(reason)


@attrs.frozen(slots=True)
class PingCommand(Command):
    """Heartbeat: each side sends one every ping interval; silence means a dead peer."""

    NAME: ClassVar[str] = "PING"
    ts: int

    def to_line(self) -> str:
        return f"PING {self.ts}"

    @classmethod
    def from_args(cls, rest: str) -> "PingCommand":
        (ts,) = _split(rest, "PING", 1)
        return cls(_int(ts, "PING", "timestamp"))


@attrs.frozen(slots=True)
class SubscribeCommand(Command):
    """Worker → master: send me ``stream``; ``from_token`` is where this worker already is."""

    NAME: ClassVar[str] = "SUBSCRIBE"
    stream: str
    from_token: Optional[int] = None

    def to_line(self) -> str:
        if self.from_token is None:
            return f"SUBSCRIBE {self.stream}"
        return f"SUBSCRIBE {self.stream} {self.from_token}"

    @classmethod
    def from_args(cls, rest: str) -> "SubscribeCommand":
        parts = rest.split(" ")
        if len(parts) == 1 and parts[0]:
            return cls(_check(_STREAM_NAME, parts[0], "SUBSCRIBE", "stream"))
        stream, token = _split(rest, "SUBSCRIBE", 2)
        return cls(_check(_STREAM_NAME, stream, "SUBSCRIBE", "stream"), _int(token, "SUBSCRIBE", "from token"))


@attrs.frozen(slots=True)
class PositionCommand(Command):
    """Master → worker: ``stream`` is at ``new_token`` and has no rows in ``(prev_token, new_token]``.

    A worker at or past ``prev_token`` just moves to ``new_token``; a worker
    behind ``prev_token`` has missed rows and catches up from the database.
    """

    NAME: ClassVar[str] = "POSITION"
    stream: str
    prev_token: int
    new_token: int

    def __attrs_post_init__(self) -> None:
        if self.prev_token > self.new_token:
            raise ValueError(f"POSITION prev {self.prev_token} is after new {self.new_token}")

    def to_line(self) -> str:
        return f"POSITION {self.stream} {self.prev_token} {self.new_token}"

    @classmethod
    def from_args(cls, rest: str) -> "PositionCommand":
        stream, prev, new = _split(rest, "POSITION", 3)
        prev_token, new_token = _int(prev, "POSITION", "prev token"), _int(new, "POSITION", "new token")
        if prev_token > new_token:
            raise CommandParseError(f"POSITION: prev token {prev_token} is after new token {new_token}")
        return cls(_check(_STREAM_NAME, stream, "POSITION", "stream"), prev_token, new_token)


@attrs.frozen(slots=True)
class RdataCommand(Command):
    """Master → worker: every row of ``stream`` numbered ``token`` (JSON objects with named fields)."""

    NAME: ClassVar[str] = "RDATA"
    stream: str
    token: int
    rows: tuple[JsonDict, ...]

    def to_line(self) -> str:
        return f"RDATA {self.stream} {self.token} {encode_json(list(self.rows))}"

    @classmethod
    def from_args(cls, rest: str) -> "RdataCommand":
        stream, token, raw = _split(rest, "RDATA", 3, free_last=True)
        rows = _decode_json(raw, "RDATA rows")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise CommandParseError("RDATA rows must be a non-empty JSON array of objects")
        return cls(_check(_STREAM_NAME, stream, "RDATA", "stream"), _int(token, "RDATA", "token"), tuple(rows))


@attrs.frozen(slots=True)
class UserSyncCommand(Command):
    """Worker → master: ``user_id`` started (true) or stopped (false) syncing on this worker."""

    NAME: ClassVar[str] = "USER_SYNC"
    user_id: str
    is_syncing: bool
    ts: int

    def to_line(self) -> str:
        return f"USER_SYNC {self.user_id} {'true' if self.is_syncing else 'false'} {self.ts}"

    @classmethod
    def from_args(cls, rest: str) -> "UserSyncCommand":
        user_id, flag, ts = _split(rest, "USER_SYNC", 3)
        if flag not in ("true", "false"):
            raise CommandParseError(f"USER_SYNC: is_syncing must be true or false, not {flag[:20]!r}")
        return cls(_check(_NO_SPACE, user_id, "USER_SYNC", "user id"), flag == "true", _int(ts, "USER_SYNC", "ts"))


@attrs.frozen(slots=True)
class ClearUserSyncCommand(Command):
    """Worker → master: forget every syncing user of ``instance`` (sent on (re)connect)."""

    NAME: ClassVar[str] = "CLEAR_USER_SYNC"
    instance: str

    def to_line(self) -> str:
        return f"CLEAR_USER_SYNC {self.instance}"

    @classmethod
    def from_args(cls, rest: str) -> "ClearUserSyncCommand":
        (instance,) = _split(rest, "CLEAR_USER_SYNC", 1)
        return cls(_check(_WORKER_NAME, instance, "CLEAR_USER_SYNC", "instance"))


@attrs.frozen(slots=True)
class UserIpEntry:
    """One client's last request seen by a worker (for the devices' last-seen columns)."""

    user_id: str
    device_id: Optional[str]
    ip: str
    user_agent: str
    last_seen: int

    def to_json(self) -> JsonDict:
        return {
            "user_id": self.user_id, "device_id": self.device_id, "ip": self.ip,
            "user_agent": self.user_agent, "last_seen": self.last_seen,
        }

    @classmethod
    def from_json(cls, obj: Any) -> "UserIpEntry":
        if not isinstance(obj, dict):
            raise CommandParseError("USER_IP entries must be JSON objects")
        user_id, device_id, ip, ua, ts = (obj.get(k) for k in ("user_id", "device_id", "ip", "user_agent",
                                                                 "last_seen"))
        if not isinstance(user_id, str) or not isinstance(ip, str) or not isinstance(ua, str):
            raise CommandParseError("USER_IP entry needs string user_id, ip and user_agent")
        if device_id is not None and not isinstance(device_id, str):
            raise CommandParseError("USER_IP entry device_id must be a string or null")
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise CommandParseError("USER_IP entry last_seen must be a non-negative integer")
        return cls(user_id, device_id, ip, ua, ts)


@attrs.frozen(slots=True)
class UserIpCommand(Command):
    """Worker → master: a batch of last-seen records."""

    NAME: ClassVar[str] = "USER_IP"
    entries: tuple[UserIpEntry, ...]

    def to_line(self) -> str:
        return f"USER_IP {encode_json([e.to_json() for e in self.entries])}"

    @classmethod
    def from_args(cls, rest: str) -> "UserIpCommand":
        (raw,) = _split(rest, "USER_IP", 1, free_last=True)
        entries = _decode_json(raw, "USER_IP entries")
        if not isinstance(entries, list) or not entries:
            raise CommandParseError("USER_IP entries must be a non-empty JSON array")
        return cls(tuple(UserIpEntry.from_json(e) for e in entries))


AnyCommand = Union[
    HelloCommand, AuthCommand, WelcomeCommand, ErrorCommand, PingCommand, SubscribeCommand, PositionCommand,
    RdataCommand, UserSyncCommand, ClearUserSyncCommand, UserIpCommand,
]

COMMANDS: dict[str, type[Command]] = {
    c.NAME: c
    for c in (
        HelloCommand, AuthCommand, WelcomeCommand, ErrorCommand, PingCommand, SubscribeCommand,
        PositionCommand, RdataCommand, UserSyncCommand, ClearUserSyncCommand, UserIpCommand,
    )
}


def parse_line(line: str) -> Command:
    """The command on one line (without its newline).

    Raises:
        CommandParseError: unknown verb or malformed arguments.
    """
    verb, _, rest = line.partition(" ")
    cls = COMMANDS.get(verb)
    if cls is None:
        raise CommandParseError(f"unknown command {verb[:40]!r}")
    if not rest and line.endswith(" "):
        raise CommandParseError(f"{verb}: trailing space")
    return cls.from_args(rest)

