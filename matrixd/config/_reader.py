"""Typed access to a parsed YAML mapping, with errors that name the key.

Every section parser reads its keys through a ``ConfigReader``. Each accessor
checks the type and range of one key and raises ``ConfigError`` naming the full
key path (``listeners[0].port``, ``rc_login.address.per_second``) and what is
wrong. A key that is absent or ``null`` takes its default; ``required=True``
makes absence an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from matrixd.api.errors import ConfigError

_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_RE = re.compile(r"^\s*([0-9]+)\s*(ms|s|m|h|d|w|y)?\s*$")
_DURATION_MS = {
    "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
    "w": 7 * 86_400_000, "y": 365 * 86_400_000,
}


def parse_size(value: Any, key: str) -> int:
    """A byte count: an integer, or a string like ``"50M"`` (K/M/G/T, powers of 1024)."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a size such as 50M, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    raise ConfigError(key, f"must be a size such as 1024, 512K or 50M, not {value!r}")


def parse_duration_ms(value: Any, key: str) -> int:
    """A duration in milliseconds: an integer (ms), or ``"30s"``, ``"1h"``, ``"7d"``..."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a duration such as 1h, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(key, f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return int(m.group(1)) * _DURATION_MS[m.group(2) or "ms"]
    raise ConfigError(
        key, f"must be a duration such as 500 (ms), 30s, 10m, 1h, 7d, 1w or 1y, not {value!r}"
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class ConfigReader:
    """Reads keys of one mapping of the config; ``path`` prefixes key names in errors."""

    def __init__(self, raw: Mapping[str, Any], path: str = "") -> None:
        self._raw = raw
        self._path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """The full dotted path of ``name``, for error messages."""
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return self._raw.get(name) is not None

    def raw(self, name: str, default: Any = None, required: bool = False) -> Any:
        """The value as YAML gave it (``default`` if absent or null)."""
        self.used.add(name)
        value = self._raw.get(name)
        if value is None:
            if required:
                raise ConfigError(self.key(name), "is required")
            return default
        return value

    def string(self, name: str, default: Optional[str] = None, required: bool = False) -> Optional[str]:
        value = self.raw(name, default, required)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.key(name), f"must be a string, not {_type_name(value)}")
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        if not value:
            raise ConfigError(self.key(name), "must not be empty")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, not {value!r}")
        return value

    def integer(
        self, name: str, default: Optional[int] = None, *, required: bool = False,
        min_value: Optional[int] = None, max_value: Optional[int] = None,
    ) -> int:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be an integer, not {value!r}")
        self._check_range(name, value, min_value, max_value)
        return value

    def number(
        self, name: str, default: Optional[float] = None, *, required: bool = False,
        min_value: Optional[float] = None, max_value: Optional[float] = None,
    ) -> float:
        value = self.raw(name, default, required)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), f"must be a number, not {value!r}")
        self._check_range(name, value, min_value, max_value)
        return float(value)

    def _check_range(
        self, name: str, value: float, min_value: Optional[float], max_value: Optional[float]
    ) -> None:
        if min_value is not None and value < min_value:
            raise ConfigError(self.key(name), f"must be at least {min_value}, got {value}")
        if max_value is not None and value > max_value:
            raise ConfigError(self.key(name), f"must be at most {max_value}, got {value}")

    def size(self, name: str, default: Any) -> int:
        """A byte count such as ``50M`` (see ``parse_size``)."""
        return parse_size(self.raw(name, default), self.key(name))

    def duration_ms(self, name: str, default: Any = None) -> Optional[int]:
        """A duration such as ``1h`` in milliseconds, ``None`` if absent without default."""
        value = self.raw(name, default)
        if value is None:
            return None
        return parse_duration_ms(value, self.key(name))

    def string_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name, list(default))
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"must be a list of strings, not {_type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.key(name)}[{i}]", f"must be a string, not {_type_name(item)}")
        return tuple(value)

    def section(self, name: str) -> "ConfigReader":
        """A nested mapping (empty if absent)."""
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), f"must be a mapping, not {_type_name(value)}")
        return ConfigReader(value, self.key(name))

    def section_list(self, name: str) -> list["ConfigReader"]:
        """A list of mappings (empty if absent)."""
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"must be a list, not {_type_name(value)}")
        readers = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"{self.key(name)}[{i}]", f"must be a mapping, not {_type_name(item)}")
            readers.append(ConfigReader(item, f"{self.key(name)}[{i}]"))
        return readers

    def unused_keys(self) -> list[str]:
        """Keys present in the mapping that no accessor asked for."""
        return sorted(k for k in self._raw if k not in self.used)
