"""pytest fixtures for real services and plugins (install ``lanewise-core[testing]``).

Opt in per project: ``pytest -p lanewise.core.testing.plugin`` or, in a
conftest, ``pytest_plugins = ["lanewise.core.testing.plugin"]``. Importing this
module changes nothing global: no environment variables, no Hypothesis profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.testing.services import PostgresServer, RedisServer


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private real Redis on a free port; ``.kill()`` / ``.restart()`` for fault tests."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster for the session (initdb is slow); tests use fresh databases."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's cluster for this test."""
    import subprocess

    from lanewise.core.testing.services import _postgres_bin

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    base = ["-h", "127.0.0.1", "-p", str(postgres_server.port), "-U", postgres_server.user]
    subprocess.run([_postgres_bin("dropdb"), *base, "--if-exists", name], check=True)
    subprocess.run([_postgres_bin("createdb"), *base, name], check=True)
    return f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/{name}"


@pytest.fixture
def register_plugin() -> Callable[..., Any]:
    """Build a plugin manager with extra plugin objects for one test.

    ``pm = register_plugin(MyPlugin())`` returns a manager with every installed
    plugin plus the given ones; nothing leaks into other tests.
    """
    from lanewise.core.plugins import get_plugin_manager

    def make(*plugins: object, allowlist: list[str] | None = None) -> Any:
        return get_plugin_manager(allowlist, extra=plugins)

    return make


@pytest.fixture
def lanewise_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings with data in a temp dir, overridable per test."""
    from lanewise.core.settings import load_settings

    def make(**overrides: Any) -> Any:
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(None, **overrides)

    return make
