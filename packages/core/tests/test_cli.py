"""The ``lanewise`` CLI: in-process through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from lanewise.core.cli import build_cli, cli
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import free_port
from lanewise.core.testing.services import wait_for_port

LANEWISE = str(Path(sys.executable).parent / "lanewise")
WORKSPACE = ["core", "governance", "inference", "ingest", "observe", "retrieval"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment without any LANEWISE_* from the caller, run in tmp_path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LANEWISE_")}
    clean["LANEWISE_DATA_DIR"] = str(tmp_path / "data")
    return clean


def run(
    args: list[str], env: dict[str, str], cwd: Path, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LANEWISE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, **kw
    )


def test_version_lists_every_installed_lanewise_package():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for lane in WORKSPACE:
        assert f"lanewise-{lane} {version(f'lanewise-{lane}')}" in lines
    assert all(line.startswith("lanewise-") for line in lines)
    assert "lanewise-workspace" not in result.output


def test_version_subprocess(env, tmp_path):
    result = run(["--version"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        f"lanewise-{lane}" for lane in WORKSPACE
    ]


def test_core_commands_come_through_the_hook():
    group = build_cli()
    assert {"serve", "doctor", "demo"} <= set(group.commands)
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "doctor", "demo"):
        assert command in result.output


class Checks:
    def __init__(self, why: str | None) -> None:
        self.why = why

    @hookimpl
    def lanewise_register_health_checks(self, register, components):
        why = self.why

        class Check:
            name = "vector-db"

            async def check(self):
                return why

        register("vector-db", Check)


def test_doctor_passes_on_a_good_config(core_pm, echo_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "lanewise.toml"
    config.write_text('[models.small]\nkind = "echo"\n')
    pm = core_pm(echo_plugin, Checks(None))
    result = CliRunner().invoke(
        cli, ["--config", str(config), "doctor"], obj={"plugin_manager": pm}
    )
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.output
    assert "models: small" in result.output
    assert "vector-db" in result.output
    assert "all checks passed" in result.output


def test_doctor_fails_on_an_unreachable_service(core_pm, echo_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pm = core_pm(echo_plugin, Checks("connection refused"))
    result = CliRunner().invoke(cli, ["doctor"], obj={"plugin_manager": pm})
    assert result.exit_code == 1
    assert "vector-db" in result.output
    assert "connection refused" in result.output
    assert "1 problem(s) found" in result.output


def test_doctor_fails_on_a_bad_config_subprocess(env, tmp_path):
    config = tmp_path / "lanewise.toml"
    config.write_text("[gateway]\nprot = 9000\n")
    result = run(["--config", str(config), "doctor"], env, tmp_path)
    assert result.returncode == 1
    out = " ".join(result.stdout.split())  # rich may wrap long lines
    assert "gateway.prot: unknown key; allowed:" in out
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_reads_lanewise_config_env(env, tmp_path):
    config = tmp_path / "elsewhere.toml"
    config.write_text("[gateway]\nworkers = 0\n")
    result = run(["doctor"], {**env, "LANEWISE_CONFIG": str(config)}, tmp_path)
    assert result.returncode == 1
    assert str(config) in result.stdout
    assert "gateway.workers" in result.stdout


def test_unknown_plugin_in_allowlist_is_a_clear_error(env, tmp_path):
    env = {**env, "LANEWISE_PLUGINS": "inference,nope"}
    doctor = run(["doctor"], env, tmp_path)
    assert doctor.returncode == 1
    out = " ".join(doctor.stdout.split())
    assert "LANEWISE_PLUGINS names nope, which are not installed" in out
    assert "installed: core" in out
    serve = run(["serve", "--port", str(free_port())], env, tmp_path)
    assert serve.returncode == 2
    assert "LANEWISE_PLUGINS names nope" in " ".join(serve.stderr.split())
    for result in (doctor, serve):
        assert "Traceback" not in result.stdout + result.stderr


def test_a_broken_plugin_names_itself_and_version_still_works(env, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "lanewise_broken.py").write_text("import not_a_module_anywhere\n")
    info = site / "lanewise_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lanewise-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lanewise]\nbroken = lanewise_broken\n")
    env = {**env, "PYTHONPATH": str(site)}

    version = run(["--version"], env, tmp_path)
    assert version.returncode == 0
    assert "lanewise-broken 1.0" in version.stdout
    err = " ".join(version.stderr.split())
    assert "plugin 'broken' (lanewise_broken) failed to import: ModuleNotFoundError" in err
    assert "only core's commands are available" in err

    doctor = run(["doctor"], env, tmp_path)
    assert doctor.returncode == 1
    assert "No module named 'not_a_module_anywhere'" in " ".join(doctor.stdout.split())

    excluded = run(["doctor"], {**env, "LANEWISE_PLUGINS": "observe"}, tmp_path)
    assert "failed to import" not in excluded.stdout + excluded.stderr
    for result in (version, doctor, excluded):
        assert "Traceback" not in result.stdout + result.stderr


def test_serve_with_a_bad_config_fails_before_binding(env, tmp_path):
    config = tmp_path / "lanewise.toml"
    config.write_text('default_model = "missing"\n')
    result = run(["--config", str(config), "serve", "--port", str(free_port())], env, tmp_path)
    assert result.returncode == 2
    assert "default_model = 'missing' is not a configured model" in " ".join(result.stderr.split())


def test_serve_answers_health_schema_and_problems(env, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [LANEWISE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc, 60, "lanewise serve")
        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/healthz")
        ready = httpx.get(f"{base}/readyz")
        schema = httpx.get(f"{base}/schema/openapi.json")
        bad = httpx.post(
            f"{base}/v1/chat/completions",
            content=b"{bad",
            headers={"content-type": "application/json"},
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert "/v1/chat/completions" in schema.json()["paths"]
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in bad.text
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as process
    # supervisors expect: the exit status is "terminated by SIGTERM", not a crash.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert "Traceback" not in err


def test_docs_cover_every_core_command_and_option():
    from lanewise.core.commands import demo, doctor, serve

    text = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    for command in (serve, doctor, demo):
        assert f"## `lanewise {command.name}`" in text
        for param in command.params:
            for opt in param.opts:
                assert f"`{opt}`" in text or f"[{opt}" in text, f"docs/cli.md lacks {opt}"
    for param in cli.params:
        for opt in param.opts:
            assert f"`{opt}" in text, f"docs/cli.md lacks {opt}"
