"""lanewise vs the LiteLLM proxy in front of the same OpenAI-compatible upstream.

The upstream is a lanewise gateway process serving the extractive model. The
same client load goes (a) straight to it, (b) through a lanewise gateway whose
model is the ``openai`` backend, (c) through a LiteLLM proxy (pinned
``litellm[proxy]==1.81.16``: 1.82.7/1.82.8 were compromised and pulled; never
float it), one worker each. LiteLLM lives in its own venv that this script
creates (``$LITELLM_VENV``, default ``/tmp/lanewise-bench-litellm``), never in
the workspace lock.

Reported at c=1 and c=64: p50/p99 added latency of each proxy over direct, and
sustained requests per second through each (one process, so per core).

Targets (issue 3): lanewise's added latency <= 0.3x LiteLLM's, and its
sustained RPS per core >= 4x LiteLLM's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.inference.overhead import free_port, gateway_process, http_call, percentiles, run_load

LITELLM_PIN = "litellm[proxy]==1.81.16"
VENV = Path(os.environ.get("LITELLM_VENV", "/tmp/lanewise-bench-litellm"))


def ensure_venv() -> Path:
    exe = VENV / "bin" / "litellm"
    if not exe.exists():
        print(f"creating {VENV} with {LITELLM_PIN} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", LITELLM_PIN], check=True)
    return exe


@contextmanager
def litellm_process(upstream: str) -> Iterator[str]:
    exe = ensure_venv()
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="litellm-")) / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: proxied\n"
        "    litellm_params:\n"
        "      model: openai/extractive\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: unused\n"
    )
    env = {
        **os.environ,
        # No network: the bundled cost map, no telemetry.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    proc = subprocess.Popen(
        [str(exe), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the LiteLLM proxy did not start")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def measure(
    upstream: str, lanewise: str, litellm: str, *, quick: bool
) -> list[dict[str, Any]]:
    out = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        targets = {
            "direct": http_call(client, upstream, "extractive", stream=False),
            "lanewise": http_call(client, lanewise, "proxied", stream=False),
            "litellm": http_call(client, litellm, "proxied", stream=False),
        }
        for c, total in ((1, 200 if quick else 600), (64, 640 if quick else 1920)):
            for call in targets.values():
                await run_load(call, concurrency=c, total=c * 2)  # warm-up
            samples: dict[str, list[float]] = {k: [] for k in targets}
            wall: dict[str, float] = dict.fromkeys(targets, 0.0)
            for _ in range(4):  # interleaved rounds: drift hits every target alike
                for name, call in targets.items():
                    t0 = time.perf_counter()
                    samples[name] += await run_load(call, concurrency=c, total=total // 4)
                    wall[name] += time.perf_counter() - t0
            stats = {k: percentiles(v) for k, v in samples.items()}
            rps = {k: len(samples[k]) / wall[k] for k in targets}
            row: dict[str, Any] = {"concurrency": c, "latency": stats, "rps": rps}
            for proxy in ("lanewise", "litellm"):
                row[f"{proxy}_added_p50_ms"] = stats[proxy]["p50_ms"] - stats["direct"]["p50_ms"]
                row[f"{proxy}_added_p99_ms"] = stats[proxy]["p99_ms"] - stats["direct"]["p99_ms"]
            row["added_p50_ratio_lanewise_over_litellm"] = row["lanewise_added_p50_ms"] / max(
                row["litellm_added_p50_ms"], 1e-9
            )
            row["rps_ratio_lanewise_over_litellm"] = rps["lanewise"] / rps["litellm"]
            print(
                f"c={c:<3} added p50 lanewise={row['lanewise_added_p50_ms']:+.2f}ms "
                f"litellm={row['litellm_added_p50_ms']:+.2f}ms "
                f"(ratio {row['added_p50_ratio_lanewise_over_litellm']:.2f}) | rps "
                f"direct={rps['direct']:.0f} lanewise={rps['lanewise']:.0f} "
                f"litellm={rps['litellm']:.0f} "
                f"(ratio {row['rps_ratio_lanewise_over_litellm']:.2f})",
                flush=True,
            )
            out.append(row)
    return out


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    extractive = {"kind": "extractive", "scorer": "lexical"}
    with gateway_process({"extractive": extractive}) as upstream:
        proxied = {"proxied": {"kind": "openai", "base_url": f"{upstream}/v1"}}
        proxied["proxied"]["model"] = "extractive"
        with gateway_process(proxied) as lanewise, litellm_process(upstream) as litellm:
            return asyncio.run(measure(upstream, lanewise, litellm, quick=quick))
