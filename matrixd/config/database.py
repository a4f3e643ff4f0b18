"""The ``database`` section: which engine and how to connect."""

from __future__ import annotations

from typing import Any

import attrs

from matrixd.api.errors import ConfigError
from matrixd.config._reader import ConfigReader

DATABASE_ENGINES = frozenset({"sqlite3", "psycopg2"})


@attrs.frozen(slots=True)
class DatabaseConfig:
    """Keys: ``database.name`` (``sqlite3`` | ``psycopg2``) and ``database.args``.

    For sqlite3, ``args.database`` is the file path (or ``:memory:``). For
    psycopg2, ``args`` are libpq connection keywords (``user``, ``password``,
    ``dbname``/``database``, ``host``, ``port``...) plus the pool sizes
    ``cp_min`` / ``cp_max``, which the storage layer pops before connecting.
    """

    name: str = "sqlite3"
    args: dict[str, Any] = attrs.field(factory=lambda: {"database": "homeserver.db"})

    def as_engine_config(self) -> dict[str, Any]:
        """The ``{"name": ..., "args": {...}}`` mapping the storage engines take."""
        return {"name": self.name, "args": dict(self.args)}

    @classmethod
    def parse(cls, r: ConfigReader) -> "DatabaseConfig":
        db = r.section("database")
        name = db.string("name", "sqlite3")
        if name not in DATABASE_ENGINES:
            raise ConfigError(db.key("name"), f"must be one of {', '.join(sorted(DATABASE_ENGINES))}, not {name!r}")
        args_reader = db.section("args")
        args = dict(db.raw("args", {}))
        if name == "sqlite3":
            path = args_reader.string("database", "homeserver.db")
            if not path:
                raise ConfigError(args_reader.key("database"), "must not be empty")
            args["database"] = path
        else:
            for pool_key in ("cp_min", "cp_max"):
                if args_reader.has(pool_key):
                    args_reader.integer(pool_key, min_value=1)
            if args.get("cp_min", 1) > args.get("cp_max", max(args.get("cp_min", 1), 1)):
                raise ConfigError(args_reader.key("cp_min"), "must not be larger than cp_max")
        assert name is not None
        return cls(name=name, args=args)
