"""The durable ledger: every settled charge, the budgets set at run time.

SQLite by default, PostgreSQL deployed (SQLAlchemy 2, Alembic migrations).
Redis only caches what the ledger can recompute: ``snapshot`` sums the charges
of each budget's current window exactly as the hot counters hold them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from operator import attrgetter
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from lanewise.governance import tables
from lanewise.governance.budgets import (
    REQUEST_BUDGET_TTL_S,
    Budget,
    counter_for,
)
from lanewise.governance.settings import EACH
from lanewise.governance.store import Snapshot
from lanewise.governance.windows import bucket
from sqlalchemy import ColumnElement, Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import make_url


@dataclass(frozen=True, slots=True)
class Charge:
    """One settled model call, as the ledger keeps it."""

    id: str
    ts: float
    settled_at: float
    request_id: str
    tenant: str
    user: str | None
    key_id: str | None
    workflow: str | None
    model: str
    operation: str
    purpose: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    gpu_s: float = 0.0


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the workspace ships)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


DEFAULT_FILE = "governance.db"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DEFAULT_FILE}"


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    # A file needs no liveness probe; a server connection may have been dropped while idle.
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            # Several gateway processes share one file: WAL lets readers and one writer
            # overlap, and busy_timeout waits for the lock instead of failing.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent, safe on every start)."""
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("lanewise.governance").joinpath("migrations"))
    )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _dimension(scope: str) -> ColumnElement[Any]:
    c = tables.charges.c
    if scope == "request":
        return c.request_id
    if scope == "tenant":
        return c.tenant
    if scope == "user":
        return c.tenant + "/" + c.user
    if scope == "key":
        return c.key_id
    return c.tenant + "/" + c.workflow


CHARGE_COLUMNS = tuple(f.name for f in fields(Charge))
_charge_row = attrgetter(*CHARGE_COLUMNS)


def insert_ignoring_known(engine: Engine) -> str | None:
    """``INSERT ... ON CONFLICT (id) DO NOTHING`` for the charges, in the driver's own
    placeholders (None where the dialect has no such statement or placeholders differ)."""
    dialect = engine.dialect
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if dialect.name not in ("sqlite", "postgresql") or marker is None:
        return None
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in CHARGE_COLUMNS)
    values = ", ".join(marker for _ in CHARGE_COLUMNS)
    # Identifiers come from the table definition; every value is a bound parameter.
    return (
        f"INSERT INTO {quote(tables.charges.name)} ({columns}) VALUES ({values}) "  # noqa: S608
        "ON CONFLICT (id) DO NOTHING"
    )


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert_sql = insert_ignoring_known(engine)

    @classmethod
    def open(cls, url: str) -> Ledger:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- charges --------------------------------------------------------------
    def record(self, charges: Sequence[Charge]) -> None:
        """Insert charges; one already recorded (same id) is kept as it is."""
        if not charges:
            return
        if self._insert_sql is not None:
            # One statement: a retried batch (same charge ids) is not counted twice. Rows go
            # to the driver as tuples: SQLAlchemy's per-row parameter processing cost more
            # than the insert itself.
            with self.engine.begin() as connection:
                connection.exec_driver_sql(self._insert_sql, [_charge_row(c) for c in charges])
            return
        rows = [asdict(c) for c in charges]
        with self.engine.begin() as connection:
            ids = [c.id for c in charges]
            known = set(
                connection.scalars(select(tables.charges.c.id).where(tables.charges.c.id.in_(ids)))
            )
            fresh = [row for row in rows if row["id"] not in known]
            if fresh:
                connection.execute(insert(tables.charges), fresh)

    def charges(self, *, tenant: str | None = None) -> list[Charge]:
        query = select(tables.charges).order_by(tables.charges.c.settled_at)
        if tenant is not None:
            query = query.where(tables.charges.c.tenant == tenant)
        with self.engine.connect() as connection:
            return [Charge(**row._asdict()) for row in connection.execute(query)]

    def spent(self, budget: Budget, subject: str, now: float) -> int:
        """What ``subject`` has settled against ``budget`` in the current window."""
        totals = self.totals(budget, now, subject)
        return totals.get(subject, 0)

    def totals(self, budget: Budget, now: float, subject: str | None = None) -> dict[str, int]:
        c = tables.charges.c
        start, end = bucket(budget.window, now)
        if budget.scope == "request":
            start = now - REQUEST_BUDGET_TTL_S
        amount = c.cost_nano if budget.unit == "cost" else c.prompt_tokens + c.completion_tokens
        dimension = _dimension(budget.scope)
        query = (
            select(dimension, func.sum(amount))
            .where(c.ts >= start, c.ts < end, dimension.is_not(None))
            .group_by(dimension)
        )
        wanted = subject if subject is not None else budget.subject
        if wanted != EACH:
            query = query.where(dimension == wanted)
        with self.engine.connect() as connection:
            return {str(k): int(v or 0) for k, v in connection.execute(query)}

    def snapshot(self, budgets: Iterable[Budget], *, now: float, recent_s: float) -> Snapshot:
        """The hot counters of every budget's current window, as the ledger has them."""
        counters: dict[str, tuple[int, float]] = {}
        for budget in budgets:
            for subject, total in self.totals(budget, now).items():
                counter = counter_for(budget, subject, now)
                counters[counter.key] = (total, counter.expire_at)
        c = tables.charges.c
        with self.engine.connect() as connection:
            recent = tuple(connection.scalars(select(c.id).where(c.settled_at >= now - recent_s)))
        return Snapshot(counters=counters, charge_ids=recent, marker_ttl_s=recent_s)

    # -- budgets set at run time -----------------------------------------------
    def set_budget(self, budget: Budget) -> None:
        row = {
            "id": budget.id,
            "tenant": budget.tenant,
            "scope": budget.scope,
            "subject": budget.subject,
            "window": budget.window,
            "unit": budget.unit,
            "limit": budget.limit,
            "shadow": budget.shadow,
            "updated_at": time.time(),
        }
        t = tables.budgets
        with self.engine.begin() as connection:
            connection.execute(t.delete().where(t.c.id == budget.id))
            connection.execute(insert(t), [row])

    def delete_budget(self, budget_id: str, *, tenant: str | None = None) -> bool:
        t = tables.budgets
        query = t.delete().where(t.c.id == budget_id)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        with self.engine.begin() as connection:
            return bool(connection.execute(query).rowcount)

    def budgets(self, *, tenant: str | None = None) -> list[Budget]:
        t = tables.budgets
        query = select(t).order_by(t.c.tenant, t.c.scope, t.c.subject)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        with self.engine.connect() as connection:
            return [
                Budget(
                    scope=row.scope,
                    subject=row.subject,
                    window=row.window,
                    unit=row.unit,
                    limit=int(row.limit),
                    shadow=bool(row.shadow),
                    tenant=row.tenant,
                )
                for row in connection.execute(query)
            ]
