"""``lanewise serve`` and ``doctor`` as real subprocesses, with a plugin installed for real."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

LANEWISE = str(Path(sys.executable).parent / "lanewise")
BODY = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}


def stream_in_thread(base: str, first_chunk: threading.Event, lines: list[str]) -> threading.Thread:
    def consume() -> None:
        try:
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=BODY, timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    if '"content":"w0 "' in line:
                        first_chunk.set()
        except httpx.HTTPError as exc:
            lines.append(f"!{type(exc).__name__}")
        finally:
            first_chunk.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread


def streamed_text(lines: list[str]) -> str:
    text = []
    for line in lines:
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice.get("delta", {}).get("content", ""))
    return "".join(text)


def test_sigterm_lets_an_in_flight_stream_finish(slowplug_env, start_serve):
    proc, base = start_serve({**slowplug_env, "SLOWPLUG_WORDS": "6"})
    assert [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]] == ["slow"]
    first, lines = threading.Event(), []
    thread = stream_in_thread(base, first, lines)
    assert first.wait(30)
    proc.send_signal(signal.SIGTERM)
    thread.join(60)
    _, err = proc.communicate(timeout=60)
    assert streamed_text(lines) == "w0 w1 w2 w3 w4 w5 "
    assert [line for line in lines if line][-1] == "data: [DONE]"
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in err
    assert "Traceback" not in err


def test_shutdown_timeout_bounds_the_wait(slowplug_env, start_serve):
    env = {
        **slowplug_env,
        "SLOWPLUG_WORDS": "1000",
        "SLOWPLUG_DELAY_S": "0.5",
        "LANEWISE_GATEWAY__SHUTDOWN_TIMEOUT_S": "1",
    }
    proc, base = start_serve(env)
    first, lines = threading.Event(), []
    thread = stream_in_thread(base, first, lines)
    assert first.wait(30)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)  # a 500 s stream does not hold the process for long
    thread.join(30)
    assert "data: [DONE]" not in lines
    assert proc.poll() is not None


def test_readyz_and_doctor_report_a_failing_check(slowplug_env, start_serve, tmp_path):
    env = {**slowplug_env, "SLOWPLUG_FAIL_CHECK": "1"}
    proc, base = start_serve(env)
    ready = httpx.get(f"{base}/readyz")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["queue"]

    doctor = subprocess.run(
        [LANEWISE, "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 1
    assert "plugins loaded: core, slowplug" in doctor.stdout
    assert "queue" in doctor.stdout
    assert "broker unreachable" in doctor.stdout
    assert "1 problem(s) found" in doctor.stdout

    healthy = subprocess.run(
        [LANEWISE, "doctor"],
        env=slowplug_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert healthy.returncode == 0, healthy.stdout
    assert "models: slow" in healthy.stdout
    assert "all checks passed" in healthy.stdout


def test_workers_serve_and_all_stop_on_sigterm(slowplug_env, start_serve):
    proc, base = start_serve(slowplug_env, serve_args=("--workers", "2"))
    with httpx.Client(base_url=base) as client:
        answers = [client.get("/healthz", timeout=30).json() for _ in range(4)]
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "slow", "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert answers == [{"status": "ok"}] * 4
    assert chat.status_code == 200
    assert err.count("Started server process") == 2  # one per worker
    assert err.count("Finished server process") == 2
    assert "Traceback" not in err
    try:
        httpx.get(f"{base}/healthz", timeout=1)
        raise AssertionError("a worker outlived the supervisor")
    except httpx.ConnectError:
        pass
