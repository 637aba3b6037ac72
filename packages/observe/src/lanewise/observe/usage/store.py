"""Engine, migrations and the background writer of the usage table.

Rows are buffered (bounded) by the request path and inserted in batches by one
thread, so a slow or unreachable database never delays a response: when the
buffer is full, or the database refuses a batch, rows are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from lanewise.observe.logwriter import take
from lanewise.observe.usage.schema import usage
from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("lanewise.observe.usage")
MIGRATIONS = Path(__file__).parent / "migrations"
BATCH = 500
COLUMNS = [c.name for c in usage.columns if c.name != "id"]
"""The order of a row's values when it is a tuple (as the gateway builds them)."""


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default driver is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 10})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            # WAL: gateway workers write while `/v1/usage` reads, without blocking each other.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # No fsync per commit (WAL stays consistent; a power cut may lose the last
            # batches of usage rows, never corrupt them).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def migrate(engine: Engine) -> None:
    """Bring the usage table to the newest revision (idempotent; racing workers retry)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    for attempt in range(5):
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            return
        except SQLAlchemyError:
            # Another worker is creating the same table; its commit makes ours a no-op.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


class UsageWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        capacity: int,
        on_drop: Callable[[int], None],
        interval_s: float = 0.2,
    ) -> None:
        self.engine = engine
        self.capacity = capacity
        self.interval_s = interval_s
        self.on_drop = on_drop
        self.pending: deque[Any] = deque()
        self.feeder: Callable[[], object] | None = None
        """What queues rows here (the telemetry worker): run by :meth:`flush`."""
        self._writing = False
        self._stop = threading.Event()
        self._migrated = False
        compiled = insert(usage).compile(dialect=engine.dialect, column_keys=COLUMNS)
        self._sql = str(compiled)
        positional = list(compiled.positiontup or []) if compiled.positional else None
        self._from_dict = itemgetter(*positional) if positional else None
        self._from_tuple = (
            None if positional in (None, COLUMNS) else itemgetter(*map(COLUMNS.index, positional))
        )
        self.ready = threading.Event()
        """Set once the schema is migrated (the first thing the writer thread does)."""
        self._thread = threading.Thread(target=self._run, name="lanewise-usage-writer", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """The schema is migrated (the writer thread does it first thing)."""
        return self.ready.wait(timeout)

    def put(self, rows: Any) -> None:
        """Queue a row (a dict of columns, or a tuple of values in :data:`COLUMNS` order), a
        list of rows, or a callable the writer thread calls to build such a list.
        ``deque.append`` needs no lock; the writer wakes on its timer, not per row."""
        if len(self.pending) < self.capacity:
            self.pending.append(rows)
        else:
            self.on_drop(1)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row was written or dropped (tests, shutdown)."""
        if self.feeder is not None:
            self.feeder()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending and not self._writing:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)
        self.engine.dispose()

    def _run(self) -> None:
        self._migrate()
        self.ready.set()
        failures = 0
        while True:
            # Wake on a timer and write what queued up as batches: one transaction per
            # interval instead of one per request, and no per-row thread wake-up.
            stop = self._stop.wait(self.interval_s)
            self._writing = True
            try:
                for batch in self._batches(take(self.pending)):
                    if failures:
                        # A database outage: back off so a dead server is not hammered,
                        # while the bounded buffer absorbs (then drops) what arrives.
                        time.sleep(min(0.1 * 2**failures, 5.0))
                    failures = 0 if self._write(batch) else failures + 1
            finally:
                self._writing = False
            if stop:
                return

    def _batches(self, items: list[Any]) -> Iterator[list[Any]]:
        rows: list[Any] = []
        for item in items:
            if callable(item):
                try:
                    item = item()
                except Exception:
                    log.warning("usage row could not be built; dropped", exc_info=True)
                    self.on_drop(1)
                    continue
            if isinstance(item, list):
                rows.extend(item)
            else:
                rows.append(item)
            if len(rows) >= BATCH:
                yield rows
                rows = []
        if rows:
            yield rows

    def _migrate(self) -> bool:
        if not self._migrated:
            try:
                migrate(self.engine)
                self._migrated = True
            except Exception:
                log.warning(
                    "usage store: migration failed; retrying with the next rows", exc_info=True
                )
        return self._migrated

    def _parameters(self, row: Any) -> Any:
        """A row as the driver's parameters: a tuple (qmark, format) or a dict (named)."""
        if isinstance(row, tuple):
            if self._from_dict is None:
                return dict(zip(COLUMNS, row, strict=True))
            return row if self._from_tuple is None else self._from_tuple(row)
        return row if self._from_dict is None else self._from_dict(row)

    def _write(self, rows: list[Any]) -> bool:
        try:
            if not self._migrate():
                raise ConnectionError("usage store schema is not migrated")
            with self.engine.begin() as connection:
                # The driver's executemany on a statement compiled once: SQLAlchemy's
                # per-row parameter processing would cost the gateway's core far more.
                params: Any = list(map(self._parameters, rows))
                connection.exec_driver_sql(self._sql, params)
            return True
        except Exception:
            log.warning("usage store unavailable; %d rows dropped", len(rows), exc_info=True)
            self.on_drop(len(rows))
            return False


class UsageReader:
    """The usage table for ``GET /v1/usage`` in a gateway whose sidecar writes it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._migrated = False
        self._lock = threading.Lock()

    def wait_ready(self, timeout: float) -> bool:
        """Migrate on the first read (the sidecar may not have yet); idempotent."""
        with self._lock:
            if not self._migrated:
                migrate(self.engine)
                self._migrated = True
        return True

    def close(self) -> None:
        self.engine.dispose()
