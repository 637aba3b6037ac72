"""``GET /v1/usage`` and ``lanewise usage``: grouped, windowed, only the caller's tenant."""

from __future__ import annotations

import time

import httpx
import pytest
from click.testing import CliRunner
from lanewise.core.auth import hash_key
from lanewise.observe.cli import usage as usage_command
from lanewise.observe.usage.query import usage_summary
from lanewise.observe.usage.store import UsageWriter, make_engine

KEYS = {
    "key-a-alice": {"tenant": "acme", "user": "alice", "workflow": "support"},
    "key-a-bob": {"tenant": "acme", "user": "bob", "workflow": "search"},
    "key-b": {"tenant": "globex", "user": "eve", "workflow": "support"},
}


def api_keys() -> list[dict[str, str]]:
    return [{"sha256": hash_key(key), **fields} for key, fields in KEYS.items()]


def chat(base: str, key: str, tokens: int) -> None:
    r = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "scripted", "messages": [{"role": "user", "content": f"tokens={tokens}"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def get_usage(base: str, key: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{base}/v1/usage", params=params, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def flush(plugin) -> None:
    assert plugin.telemetry.writer.flush()


@pytest.fixture
def served_with_keys(observed_gateway):
    return lambda **kw: observed_gateway(gateway={"api_keys": api_keys()}, **kw)


def test_usage_is_grouped_and_scoped_to_the_callers_tenant(served_with_keys):
    with served_with_keys() as (base, plugin):
        chat(base, "key-a-alice", 3)
        chat(base, "key-a-alice", 4)
        chat(base, "key-a-bob", 5)
        chat(base, "key-b", 11)
        flush(plugin)
        by_user = get_usage(base, "key-a-alice", group_by="user").json()
        assert by_user["tenant"] == "acme"
        rows = {row["user"]: row for row in by_user["data"]}
        assert set(rows) == {"alice", "bob"}  # never globex's eve
        assert rows["alice"]["output_tokens"] == 7
        assert rows["alice"]["requests"] == 2
        assert rows["alice"]["input_tokens"] == 14
        assert rows["bob"]["output_tokens"] == 5
        by_tenant = get_usage(base, "key-b", group_by="tenant").json()["data"]
        assert by_tenant == [
            {
                "tenant": "globex",
                "calls": 1,
                "requests": 1,
                "input_tokens": 7,
                "output_tokens": 11,
                "total_tokens": 18,
                "cost": None,
            }
        ]
        workflows = get_usage(base, "key-a-bob", group_by="workflow").json()["data"]
        assert {w["workflow"]: w["output_tokens"] for w in workflows} == {"support": 7, "search": 5}
        models = get_usage(base, "key-a-bob", group_by="model").json()["data"]
        assert [m["model"] for m in models] == ["scripted"]
        prompts = get_usage(base, "key-a-bob", group_by="prompt").json()["data"]
        assert prompts[0]["prompt"] is None
        assert prompts[0]["total_tokens"] == 3 * 7 + 12

        refused = get_usage(base, "key-a-alice", group_by="model", tenant="globex")
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("/forbidden")
        assert "globex" not in str(refused.json().get("data", ""))
        own = get_usage(base, "key-a-alice", tenant="acme")
        assert own.status_code == 200
        assert get_usage(base, "wrong-key").status_code == 401
        bad = get_usage(base, "key-b", group_by="colour")
        assert bad.status_code == 400
        assert "group_by" in bad.json()["detail"]
        assert get_usage(base, "key-b", window="forever").status_code == 400

        result = CliRunner().invoke(
            usage_command,
            ["--group-by", "user", "--url", base, "--api-key", "key-a-alice"],
            terminal_width=200,
        )
        assert result.exit_code == 0, result.output
        assert "alice" in result.output
        assert "bob" in result.output
        assert "eve" not in result.output
        assert "acme" in result.output
        denied = CliRunner().invoke(usage_command, ["--url", base, "--api-key", "nope"])
        assert denied.exit_code != 0
        assert "401" in denied.output


def test_window_excludes_older_rows(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    writer = UsageWriter(engine, capacity=10, on_drop=lambda n: None)
    now = time.time()
    for age_s, tokens in ((30, 5), (7200, 50)):
        writer.put(_row(now - age_s, tokens))
    assert writer.flush()
    recent = usage_summary(engine, tenant="t", group_by="model", window="1h", now=now)
    assert [r["output_tokens"] for r in recent["data"]] == [5]
    day = usage_summary(engine, tenant="t", group_by="model", window="1d", now=now)
    assert [r["output_tokens"] for r in day["data"]] == [55]
    writer.close()


def _row(ts: float, tokens: int) -> dict:
    return {
        "ts": ts,
        "request_id": f"r{ts}",
        "tenant": "t",
        "user_id": None,
        "key_id": None,
        "workflow": None,
        "model": "m",
        "operation": "chat",
        "purpose": "request",
        "prompt_name": None,
        "prompt_version": None,
        "input_tokens": 1,
        "output_tokens": tokens,
        "cost": None,
        "duration_s": 0.1,
        "status": "ok",
    }


def test_usage_table_on_postgresql(served_with_keys, postgres_url):
    """The same API over PostgreSQL (``database_url``), migrations run by Alembic."""
    with served_with_keys(database_url=postgres_url) as (base, plugin):
        chat(base, "key-a-alice", 2)
        chat(base, "key-b", 9)
        flush(plugin)
        assert plugin.telemetry.writer.engine.dialect.name == "postgresql"
        data = get_usage(base, "key-b", group_by="user").json()["data"]
        assert [(d["user"], d["output_tokens"]) for d in data] == [("eve", 9)]
        assert get_usage(base, "key-b", tenant="acme").status_code == 403
