"""The few key-value operations job state needs: Redis itself, or SQLite that acts like it.

The job and document bookkeeping (:mod:`lanewise.ingest.state`) is written
once against :class:`KeyValue`; Celery workers share it through Redis, the
embedded executor keeps it in a SQLite file under ``data_dir`` so that a
later run (another process) still knows which documents are unchanged.
Every write is idempotent or a set/hash operation, so a redelivered task
repeating one changes nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol


class KeyValue(Protocol):
    """The subset of redis-py's API (``decode_responses=True``) that job state uses."""

    def hset(
        self, name: str, key: str | None = None, value: Any = None, mapping: Any = None
    ) -> Any: ...

    def hsetnx(self, name: str, key: str, value: Any) -> Any: ...

    def hget(self, name: str, key: str) -> Any: ...

    def hgetall(self, name: str) -> Any: ...

    def hlen(self, name: str) -> Any: ...

    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...

    def sadd(self, name: str, *values: Any) -> Any: ...

    def smembers(self, name: str) -> Any: ...

    def smismember(self, name: str, values: list[Any], *args: Any) -> Any: ...

    def scard(self, name: str) -> Any: ...

    def delete(self, *names: str) -> Any: ...

    def incr(self, name: str, amount: int = 1) -> Any: ...

    def get(self, name: str) -> Any: ...

    def rename(self, src: str, dst: str) -> Any: ...

    def pipeline(self, transaction: bool = True) -> Any:
        """Commands queued and sent in one round trip; ``execute()`` returns their results."""
        ...


class _Queued:
    """:meth:`SqliteKeyValue.pipeline`: the same commands, run in order on ``execute()``."""

    def __init__(self, kv: SqliteKeyValue) -> None:
        self._kv = kv
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> _Queued:
            self._calls.append((name, args, kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        calls, self._calls = self._calls, []
        return [getattr(self._kv, name)(*args, **kwargs) for name, args, kwargs in calls]


class SqliteKeyValue:
    """:class:`KeyValue` on one SQLite file (WAL): hashes and sets as rows."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS hashes (name TEXT, key TEXT, value TEXT,"
            " PRIMARY KEY (name, key)) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sets (name TEXT, member TEXT,"
            " PRIMARY KEY (name, member)) WITHOUT ROWID"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS strings (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def pipeline(self, transaction: bool = True) -> _Queued:
        return _Queued(self)

    def _run(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def hset(
        self, name: str, key: str | None = None, value: Any = None, mapping: Any = None
    ) -> int:
        items = dict(mapping or {})
        if key is not None:
            items[key] = value
        return self._many(
            "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?)",
            [(name, k, str(v)) for k, v in items.items()],
        )

    def hsetnx(self, name: str, key: str, value: Any) -> int:
        return self._many(
            "INSERT OR IGNORE INTO hashes VALUES (?, ?, ?)", [(name, key, str(value))]
        )

    def hget(self, name: str, key: str) -> str | None:
        rows = self._run("SELECT value FROM hashes WHERE name = ? AND key = ?", (name, key))
        return rows[0][0] if rows else None

    def hgetall(self, name: str) -> dict[str, str]:
        return dict(self._run("SELECT key, value FROM hashes WHERE name = ?", (name,)))

    def hlen(self, name: str) -> int:
        return int(self._run("SELECT count(*) FROM hashes WHERE name = ?", (name,))[0][0])

    def hincrby(self, name: str, key: str, amount: int = 1) -> int:
        with self._lock:
            self._db.execute(
                "INSERT INTO hashes VALUES (?, ?, ?) ON CONFLICT (name, key)"
                " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
                (name, key, amount),
            )
            row = self._db.execute(
                "SELECT value FROM hashes WHERE name = ? AND key = ?", (name, key)
            ).fetchone()
        return int(row[0])

    def sadd(self, name: str, *values: Any) -> int:
        return self._many(
            "INSERT OR IGNORE INTO sets VALUES (?, ?)", [(name, str(v)) for v in values]
        )

    def smembers(self, name: str) -> set[str]:
        return {r[0] for r in self._run("SELECT member FROM sets WHERE name = ?", (name,))}

    def smismember(self, name: str, values: list[Any], *args: Any) -> list[int]:
        wanted = [str(v) for v in [*values, *args]]
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0]
                for r in self._run(
                    f"SELECT member FROM sets WHERE name = ? AND member IN ({marks})",  # noqa: S608
                    (name, *part),
                )
            )
        return [int(v in found) for v in wanted]

    def scard(self, name: str) -> int:
        return int(self._run("SELECT count(*) FROM sets WHERE name = ?", (name,))[0][0])

    def delete(self, *names: str) -> int:
        removed = 0
        for table in ("hashes", "sets", "strings"):
            removed += self._many(f"DELETE FROM {table} WHERE name = ?", [(n,) for n in names])  # noqa: S608
        return removed

    def incr(self, name: str, amount: int = 1) -> int:
        with self._lock:
            self._db.execute(
                "INSERT INTO strings VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
                (name, amount),
            )
            row = self._db.execute("SELECT value FROM strings WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def get(self, name: str) -> str | None:
        rows = self._run("SELECT value FROM strings WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def rename(self, src: str, dst: str) -> bool:
        """Atomically replace ``dst`` with ``src`` (whatever type it holds), like Redis."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for table in ("hashes", "sets", "strings"):
                    self._db.execute(f"DELETE FROM {table} WHERE name = ?", (dst,))  # noqa: S608
                    self._db.execute(
                        f"UPDATE {table} SET name = ? WHERE name = ?",  # noqa: S608
                        (dst, src),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True
