"""Engine, migrations and the background writer of the usage table.

Rows are queued (bounded) by the request path and inserted in batches by one
thread, so a slow or unreachable database never delays a response: when the
queue is full, or the database refuses a batch, rows are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from lanewise.observe.usage.schema import usage
from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("lanewise.observe.usage")
MIGRATIONS = Path(__file__).parent / "migrations"
BATCH = 500
COLUMNS = [c.name for c in usage.columns if c.name != "id"]
_STOP = object()


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
        self.interval_s = interval_s
        self.on_drop = on_drop
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._migrated = False
        compiled = insert(usage).compile(dialect=engine.dialect, column_keys=COLUMNS)
        self._sql = str(compiled)
        self._positional = list(compiled.positiontup or []) if compiled.positional else None
        self.ready = threading.Event()
        """Set once the schema is migrated (the first thing the writer thread does)."""
        self._thread = threading.Thread(target=self._run, name="lanewise-usage-writer", daemon=True)
        self._thread.start()

    def put(self, row: Any) -> None:
        """Queue a row: a dict of columns, or a callable the writer thread calls to build it
        (so building rows never runs on the request path)."""
        try:
            self.queue.put_nowait(row)
        except queue.Full:
            self.on_drop(1)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row was written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        self.engine.dispose()

    def _run(self) -> None:
        self._migrate()
        self.ready.set()
        failures = 0
        full = False
        while True:
            # Wake on a timer and write what queued up as one batch: one transaction
            # per interval instead of one per request, and no per-row thread wake-up.
            if not full:
                time.sleep(self.interval_s)
            rows: list[dict[str, Any]] = []
            stop = False
            while len(rows) < BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self.queue.task_done()
                    stop = True
                    break
                if callable(item):
                    try:
                        item = item()
                    except Exception:
                        log.warning("usage row could not be built; dropped", exc_info=True)
                        self.on_drop(1)
                        self.queue.task_done()
                        continue
                rows.append(item)
            full = len(rows) == BATCH
            if rows:
                failures = 0 if self._write(rows) else failures + 1
            if stop:
                return
            if failures:
                # A database outage: back off so a dead server is not hammered,
                # while the bounded queue absorbs (then drops) what arrives.
                time.sleep(min(0.1 * 2**failures, 5.0))

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

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        try:
            if not self._migrate():
                raise ConnectionError("usage store schema is not migrated")
            with self.engine.begin() as connection:
                # The driver's executemany on a statement compiled once: SQLAlchemy's
                # per-row parameter processing would cost the gateway's core far more.
                if self._positional is not None:
                    params: Any = [tuple(row[k] for k in self._positional) for row in rows]
                else:
                    params = rows
                connection.exec_driver_sql(self._sql, params)
            return True
        except Exception:
            log.warning("usage store unavailable; %d rows dropped", len(rows), exc_info=True)
            self.on_drop(len(rows))
            return False
        finally:
            for _ in rows:
                self.queue.task_done()
