"""Small SQL builders shared by the stores, as functions of a transaction cursor.

Table and column names are interpolated into the SQL text, so they must come
from our code, never from a request; values always go through placeholders.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar

from matrixd.api.errors import MatrixError, NotFoundError

if TYPE_CHECKING:
    from matrixd.storage.database import Cursor
    from matrixd.storage.engines import BaseEngine

T = TypeVar("T")

#: Rows per statement when expanding ``IN (?, ?, ...)`` lists (SQLite's variable limit is 32766).
IN_LIST_BATCH = 500


def batch_iter(iterable: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Yield tuples of at most ``size`` items."""
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def in_list_clause(engine: "BaseEngine", column: str, values: Collection[Any]) -> tuple[str, list[Any]]:
    """``column IN (...)`` as SQL plus args; one array parameter on PostgreSQL.

    Callers with unbounded lists should :func:`batch_iter` them first.
    """
    if engine.name == "postgres":
        return f"{column} = ANY(?)", [list(values)]
    if not values:
        return "1 = 0", []
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def _where(keyvalues: Mapping[str, Any]) -> tuple[str, list[Any]]:
    if not keyvalues:
        return "", []
    clauses = []
    args: list[Any] = []
    for k, v in keyvalues.items():
        if v is None:
            clauses.append(f"{k} IS NULL")
        else:
            clauses.append(f"{k} = ?")
            args.append(v)
    return " WHERE " + " AND ".join(clauses), args


def simple_insert_txn(txn: "Cursor", table: str, values: Mapping[str, Any]) -> None:
    keys = list(values)
    txn.execute(
        f"INSERT INTO {table} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
        [values[k] for k in keys],
    )


def simple_insert_many_txn(txn: "Cursor", table: str, keys: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    txn.execute_batch(f"INSERT INTO {table} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})", rows)


def simple_upsert_txn(
    txn: "Cursor",
    table: str,
    keyvalues: Mapping[str, Any],
    values: Mapping[str, Any],
    insertion_values: Optional[Mapping[str, Any]] = None,
) -> None:
    """Insert, or update ``values`` on the row matching ``keyvalues``.

    Needs a unique index on exactly the ``keyvalues`` columns.
    ``insertion_values`` are written only when the row is new.
    """
    insertion_values = insertion_values or {}
    cols = list(keyvalues) + list(values) + [k for k in insertion_values if k not in values]
    merged = {**insertion_values, **values, **keyvalues}
    conflict = ", ".join(keyvalues)
    if values:
        action = "DO UPDATE SET " + ", ".join(f"{k} = EXCLUDED.{k}" for k in values)
    else:
        action = "DO NOTHING"
    txn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        f" ON CONFLICT ({conflict}) {action}",
        [merged[k] for k in cols],
    )


def simple_upsert_many_txn(
    txn: "Cursor",
    table: str,
    key_names: Sequence[str],
    key_values: Iterable[Sequence[Any]],
    value_names: Sequence[str],
    value_values: Iterable[Sequence[Any]],
) -> None:
    """Upsert many rows: ``key_values[i]`` with ``value_values[i]``."""
    cols = list(key_names) + list(value_names)
    if value_names:
        action = "DO UPDATE SET " + ", ".join(f"{k} = EXCLUDED.{k}" for k in value_names)
    else:
        action = "DO NOTHING"
    rows = [tuple(k) + tuple(v) for k, v in zip(key_values, value_values, strict=True)]
    txn.execute_batch(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        f" ON CONFLICT ({', '.join(key_names)}) {action}",
        rows,
    )


def simple_select_one_txn(
    txn: "Cursor", table: str, keyvalues: Mapping[str, Any], retcols: Sequence[str], allow_none: bool = False
) -> Optional[dict[str, Any]]:
    """The one row matching ``keyvalues`` as a dict; NotFoundError if none (unless allow_none)."""
    where, args = _where(keyvalues)
    txn.execute(f"SELECT {', '.join(retcols)} FROM {table}{where} LIMIT 2", args)
    rows = txn.fetchall()
    if not rows:
        if allow_none:
            return None
        raise NotFoundError(f"No row in {table} matching {sorted(keyvalues)}")
    if len(rows) > 1:
        raise MatrixError(500, f"More than one row in {table} matching {sorted(keyvalues)}")
    return dict(zip(retcols, rows[0]))


def simple_select_one_onecol_txn(
    txn: "Cursor", table: str, keyvalues: Mapping[str, Any], retcol: str, allow_none: bool = False
) -> Any:
    row = simple_select_one_txn(txn, table, keyvalues, [retcol], allow_none)
    return None if row is None else row[retcol]


def simple_select_onecol_txn(txn: "Cursor", table: str, keyvalues: Mapping[str, Any], retcol: str) -> list[Any]:
    where, args = _where(keyvalues)
    txn.execute(f"SELECT {retcol} FROM {table}{where}", args)
    return [r[0] for r in txn]


def simple_select_list_txn(
    txn: "Cursor", table: str, keyvalues: Mapping[str, Any], retcols: Sequence[str]
) -> list[dict[str, Any]]:
    where, args = _where(keyvalues)
    txn.execute(f"SELECT {', '.join(retcols)} FROM {table}{where}", args)
    return [dict(zip(retcols, r)) for r in txn]


def simple_select_many_txn(
    txn: "Cursor",
    table: str,
    column: str,
    iterable: Collection[Any],
    retcols: Sequence[str],
    keyvalues: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Rows whose ``column`` is in ``iterable`` (and matching ``keyvalues``), batched."""
    results: list[dict[str, Any]] = []
    for chunk in batch_iter(iterable, IN_LIST_BATCH):
        clause, args = in_list_clause(txn.engine, column, chunk)
        where, kv_args = _where(keyvalues)
        where = (where + " AND " if where else " WHERE ") + clause
        txn.execute(f"SELECT {', '.join(retcols)} FROM {table}{where}", kv_args + args)
        results.extend(dict(zip(retcols, r)) for r in txn)
    return results


def simple_update_txn(
    txn: "Cursor", table: str, keyvalues: Mapping[str, Any], updatevalues: Mapping[str, Any]
) -> int:
    """Update matching rows; returns the number of rows changed."""
    if not updatevalues:
        return 0
    if not keyvalues:
        raise ValueError(f"refusing to update every row of {table}: no keyvalues")
    sets = ", ".join(f"{k} = ?" for k in updatevalues)
    where, args = _where(keyvalues)
    txn.execute(f"UPDATE {table} SET {sets}{where}", list(updatevalues.values()) + args)
    return txn.rowcount


def simple_delete_txn(txn: "Cursor", table: str, keyvalues: Mapping[str, Any]) -> int:
    """Delete matching rows (at least one key is required); returns the number deleted."""
    if not keyvalues:
        raise ValueError(f"refusing to delete every row of {table}: no keyvalues")
    where, args = _where(keyvalues)
    txn.execute(f"DELETE FROM {table}{where}", args)
    return txn.rowcount


def delete_older_than_txn(
    txn: "Cursor", table: str, ts_column: str, key_columns: Sequence[str], before: int, limit: int
) -> int:
    """Delete at most ``limit`` of the oldest rows whose ``ts_column`` is below ``before``; returns how many.

    The inner select walks the table's index on ``ts_column`` and the delete
    finds rows by primary key (``key_columns``), so one call is a short,
    bounded transaction however large the backlog.
    """
    if limit <= 0:
        raise ValueError(f"limit must be positive, not {limit}")
    keys = ", ".join(key_columns)
    txn.execute(
        f"DELETE FROM {table} WHERE ({keys}) IN"
        f" (SELECT {keys} FROM {table} WHERE {ts_column} < ? ORDER BY {ts_column} LIMIT ?)",
        (before, limit),
    )
    return int(txn.rowcount)
