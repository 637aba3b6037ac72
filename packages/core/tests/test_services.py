"""The harness fixtures start real servers: Redis and PostgreSQL, private to the test."""

from __future__ import annotations

import psycopg
import pytest
import redis
from lanewise.core.testing import PostgresServer, RedisServer


def test_redis_server_answers_ping_and_lives_in_a_temp_dir(redis_server: RedisServer, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("dir")["dir"] == str(redis_server.directory)
        assert "pytest" in str(redis_server.directory)
    finally:
        client.close()


def test_redis_server_kill_then_restart(redis_server: RedisServer):
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        assert client.ping()
        redis_server.kill()
        assert redis_server.process is not None
        assert redis_server.process.returncode == -9
        with pytest.raises(redis.ConnectionError):
            client.ping()
        redis_server.restart()
        assert client.ping()  # same port, a fresh process
    finally:
        client.close()


def test_postgres_url_is_a_fresh_database(postgres_url: str):
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select current_database()").fetchone()[0].startswith("t_")
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (1)")
        assert conn.execute("select sum(x) from t").fetchone()[0] == 1


def test_postgres_url_again_is_fresh(postgres_url: str):
    # Same test body name prefix as above, different database: nothing leaks between tests.
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0


def test_postgres_server_runs_a_real_cluster(postgres_server: PostgresServer):
    with psycopg.connect(postgres_server.url) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        assert int(version.split(".")[0]) >= 12
        data_dir = conn.execute("show data_directory").fetchone()[0]
    assert data_dir.startswith(str(postgres_server.directory))


@pytest.mark.slow
def test_postgres_kill_then_restart_keeps_committed_data(tmp_path):
    server = PostgresServer(tmp_path / "pg").start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("create table kept (x int)")
            conn.execute("insert into kept values (42)")
        server.kill()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, connect_timeout=2)
        server.restart()  # crash recovery replays the WAL
        with psycopg.connect(server.url) as conn:
            assert conn.execute("select x from kept").fetchone() == (42,)
    finally:
        server.stop()
    assert server.process is not None
    assert server.process.poll() is not None
