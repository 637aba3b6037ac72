"""``lanewise keys`` and ``lanewise budgets`` against the ledger a gateway would use."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from lanewise.core.cli import build_cli
from lanewise.governance.keys import KeyStore
from lanewise.governance.ledger import Ledger


def test_keys_and_budgets_commands(tmp_path: Path) -> None:
    config = tmp_path / "lanewise.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[governance]\nkey_cache_s = 0\n')
    cli = build_cli()
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(
            cli, ["--config", str(config), *args], catch_exceptions=False, env={"COLUMNS": "200"}
        )
        assert result.exit_code == 0, result.output
        return result.output

    secret = run("keys", "create", "--tenant", "acme", "--user", "ann", "--model", "small")
    secret = secret.strip().splitlines()[0]
    assert secret.startswith("lw_")
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'data' / 'governance.db'}")
    try:
        keys = KeyStore(ledger.engine, cache_s=0)
        key = keys.authenticate(secret)
        assert (key.tenant, key.user, key.scopes.models) == ("acme", "ann", ("small",))
        listed = run("keys", "list", "--tenant", "acme")
        assert key.id in listed
        assert secret not in listed
        run("keys", "revoke", key.id)
        assert keys.get(key.id).revoked_at is not None

        out = run(
            "budgets",
            "set",
            "--scope",
            "tenant",
            "--subject",
            "acme",
            "--window",
            "month",
            "--unit",
            "cost",
            "--limit",
            "12.5",
        )
        assert "cost budget of 'acme' tenant per month" in out
        (budget,) = ledger.budgets(tenant="acme")
        assert budget.limit == 12_500_000_000
        shown = run("budgets", "show", "--tenant", "acme")
        assert budget.id in shown
        assert "12.5" in shown
    finally:
        ledger.close()


def test_in_process_counters_refuse_several_workers(tmp_path: Path) -> None:
    config = tmp_path / "lanewise.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n\n'
        '[[governance.budgets]]\nscope = "tenant"\nlimit = 10\n'
    )
    result = CliRunner().invoke(build_cli(), ["--config", str(config), "serve", "--workers", "2"])
    assert result.exit_code != 0
    message = str(result.exception or result.output)
    assert "can be open in one process only" in message
    assert "BudgetCounters" in message
