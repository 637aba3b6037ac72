"""Added latency of the lanewise gateway in front of Triton vs a direct tritonclient call.

Same Triton (the bundled ``tritonserver`` on ``deploy/triton/cpu``, toy LM with no
per-token delay), same request (``ensemble``, chatml prompt, 8 tokens, not
streamed), measured in one run:

* direct: ``tritonclient.grpc.aio`` ``stream_infer`` on the decoupled ensemble from
  this process (what any Triton client must do);
* gateway: ``POST /v1/chat/completions`` over HTTP to a lanewise gateway in its
  own process whose ``[models.tri]`` is ``kind = "triton"`` on that server.

Added = gateway - direct, at the same percentile, for c=1 (requests alternate
direct/gateway so drift hits both) and c=64 (64 concurrent callers, one phase
each, after a warm-up).

It also times ``GET /healthz`` on the same gateway (``http_floor``): the
cost of the HTTP hop itself, so ``added - http_floor`` is what the gateway's
routing, pipeline and Triton backend add on top of being a separate process;
and the lanewise triton backend alone, in this process (``backend_in_process``),
which is the share of the Triton integration itself.

Target (issue 3): added p50 <= 1 ms and p99 <= 3 ms at c=1. Triton, the gateway
and the load generator share this machine's cores, so the c=64 numbers mostly
measure CPU contention; read them as a ratio to the direct latency.

``python -m bench.inference.triton_overhead [--quick]`` writes
``bench/results/triton_overhead.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parents[1] / "results"
MAX_TOKENS = 8
QUESTION = "What happens to a Triton request when the client disconnects?"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


@contextmanager
def gateway_process(grpc_url: str) -> Iterator[str]:
    from lanewise.core.server import free_port

    port = free_port()
    models = {"tri": {"kind": "triton", "url": grpc_url, "max_tokens": MAX_TOKENS}}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.inference.triton_overhead",
            "--serve-gateway",
            str(port),
            json.dumps(models),
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the gateway process exited during start-up")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway was not ready within 60s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def serve_gateway(port: int, models_json: str) -> None:
    import uvicorn
    from lanewise.core.gateway.app import create_app
    from lanewise.core.settings import load_settings

    settings = load_settings(
        None,
        models=json.loads(models_json),
        data_dir=tempfile.mkdtemp(prefix="lanewise-bench-"),
    )
    uvicorn.run(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


class Direct:
    """The same ensemble request straight from tritonclient."""

    def __init__(self, grpc_url: str) -> None:
        import tritonclient.grpc.aio as grpcaio

        self.client = grpcaio.InferenceServerClient(grpc_url)
        self.count = 0

    def _inputs(self) -> list[Any]:
        import tritonclient.grpc as grpcclient
        from lanewise.core.types import ChatRequest, Message, SamplingParams
        from lanewise.inference.triton.backend import render_prompt
        from lanewise.inference.triton.profiles import TritonProfile

        request = ChatRequest(
            model="tri",
            messages=[Message(role="user", content=QUESTION)],
            sampling=SamplingParams(max_tokens=MAX_TOKENS),
        )
        prompt = render_prompt(request.messages, "chatml")
        out = []
        for t in TritonProfile.for_layout("ensemble").tensors(prompt, request, stream=False):
            item = grpcclient.InferInput(t.name, list(t.array.shape), t.datatype)
            item.set_data_from_numpy(t.array)
            out.append(item)
        return out

    async def call(self) -> str:
        self.count += 1
        message = {
            "model_name": "ensemble",
            "inputs": self._inputs(),
            "request_id": f"d{self.count}",
        }

        async def one() -> Any:
            yield message

        text = ""
        async for result, error in self.client.stream_infer(one()):
            if error is not None:
                raise RuntimeError(str(error))
            text += result.as_numpy("text_output").reshape(-1)[0].decode()
        return text


class InProcess:
    """The lanewise triton backend called in this process (no HTTP, no gateway app)."""

    def __init__(self, grpc_url: str) -> None:
        from lanewise.core.settings import ComponentConfig
        from lanewise.inference.triton.factory import build_triton

        self.backend = build_triton(ComponentConfig(kind="triton", url=grpc_url), None, None)

    async def call(self) -> str:
        from lanewise.core.types import ChatRequest, Message, SamplingParams

        request = ChatRequest(
            model="tri",
            messages=[Message(role="user", content=QUESTION)],
            sampling=SamplingParams(max_tokens=MAX_TOKENS),
        )
        return (await self.backend.generate(request)).text


class Gateway:
    def __init__(self, url: str) -> None:
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
        self.client = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)
        self.body = {
            "model": "tri",
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": MAX_TOKENS,
        }

    async def floor(self) -> str:
        """An HTTP round trip to the same process that does no work (``/healthz``)."""
        r = await self.client.get("/healthz")
        r.raise_for_status()
        return r.text

    async def call(self) -> str:
        r = await self.client.post("/v1/chat/completions", json=self.body)
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"]["content"])


async def timed(call: Callable[[], Awaitable[str]]) -> float:
    t0 = time.perf_counter()
    await call()
    return time.perf_counter() - t0


async def sequential(
    direct: Direct, gateway: Gateway, inproc: InProcess, n: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct": [], "gateway": [], "http_floor": [], "backend": []}
    for _ in range(n):
        out["direct"].append(await timed(direct.call))
        out["backend"].append(await timed(inproc.call))
        out["gateway"].append(await timed(gateway.call))
        out["http_floor"].append(await timed(gateway.floor))
    return out


async def concurrent(call: Callable[[], Awaitable[str]], c: int, per_worker: int) -> list[float]:
    samples: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            samples.append(await timed(call))

    await asyncio.gather(*(worker() for _ in range(c)))
    return samples


def added(direct: dict[str, float], gateway: dict[str, float]) -> dict[str, float]:
    return {
        "p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 3),
        "p99_ms": round(gateway["p99_ms"] - direct["p99_ms"], 3),
        "p50_ratio": round(gateway["p50_ms"] / direct["p50_ms"], 3),
    }


async def measure(grpc_url: str, gateway_url: str, *, quick: bool) -> list[dict[str, Any]]:
    direct, gateway, inproc = Direct(grpc_url), Gateway(gateway_url), InProcess(grpc_url)
    same = await direct.call() == await gateway.call()
    n1 = 100 if quick else 400
    per_worker = 3 if quick else 8
    rows: list[dict[str, Any]] = []
    try:
        await sequential(direct, gateway, inproc, 20)  # warm-up: channels, caches, stub processes
        seq = await sequential(direct, gateway, inproc, n1)
        d1, g1 = summary(seq["direct"]), summary(seq["gateway"])
        floor = summary(seq["http_floor"])
        backend = summary(seq["backend"])
        rows.append(
            {
                "concurrency": 1,
                "direct": d1,
                "gateway": g1,
                "added": added(d1, g1),
                # What an HTTP hop to the gateway process costs before any work:
                # added - http_floor is the gateway's own processing.
                "http_floor": floor,
                # The triton backend alone, in-process: its share of the added time.
                "backend_in_process": backend,
                "backend_added": added(d1, backend),
            }
        )
        print(f"c=1   direct {d1}  gateway {g1}  added {rows[-1]['added']}", flush=True)
        print(f"      http round trip to /healthz {floor}", flush=True)
        print(f"      backend in-process {backend} added {rows[-1]['backend_added']}", flush=True)
        await concurrent(direct.call, 64, 1)
        d64 = summary(await concurrent(direct.call, 64, per_worker))
        await concurrent(inproc.call, 64, 1)
        b64 = summary(await concurrent(inproc.call, 64, per_worker))
        await concurrent(gateway.call, 64, 1)
        g64 = summary(await concurrent(gateway.call, 64, per_worker))
        f64 = summary(await concurrent(gateway.floor, 64, per_worker))
        rows.append(
            {
                "concurrency": 64,
                "direct": d64,
                "gateway": g64,
                "added": added(d64, g64),
                "backend_in_process": b64,
                "backend_added": added(d64, b64),
                "http_floor": f64,
            }
        )
        print(f"c=64  direct {d64}  gateway {g64}  added {rows[-1]['added']}", flush=True)
        print(f"      backend in-process {b64} added {rows[-1]['backend_added']}", flush=True)
        print(f"      http round trip to /healthz {f64}", flush=True)
    finally:
        await direct.client.close()
        await inproc.backend.aclose()
        await gateway.client.aclose()
    rows[0]["same_text_both_paths"] = same
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels, direct, gateway = [], [], []
    for row in rows:
        for q in ("p50_ms", "p99_ms"):
            labels.append(f"c={row['concurrency']} {q[:3]}")
            direct.append(row["direct"][q])
            gateway.append(row["gateway"][q])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], direct, 0.4, label="direct tritonclient")
    ax.bar([i + 0.2 for i in x], gateway, 0.4, label="through the lanewise gateway")
    for i, (d, g) in enumerate(zip(direct, gateway, strict=True)):
        ax.annotate(f"+{g - d:.2f} ms", (i + 0.2, g), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title("Triton (CPU ensemble, 8 tokens): direct vs through the gateway")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    from lanewise.inference.triton.server import running_triton

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_triton(
            env={
                "LANEWISE_TRITON_TOKEN_DELAY_MS": "0",
                "LANEWISE_TRITON_EVENTS": str(Path(tmp) / "events.jsonl"),
            }
        ) as server,
        gateway_process(server.grpc_url) as gateway_url,
    ):
        return asyncio.run(measure(server.grpc_url, gateway_url, quick=quick))


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-gateway":
        serve_gateway(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.inference.triton_overhead")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    RESULTS.mkdir(exist_ok=True)
    data = {
        "benchmark": "triton_overhead",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "target": {"c1_added_p50_ms": 1.0, "c1_added_p99_ms": 3.0},
        "rows": rows,
        "meets_target_c1": rows[0]["added"]["p50_ms"] <= 1.0 and rows[0]["added"]["p99_ms"] <= 3.0,
    }
    (RESULTS / "triton_overhead.json").write_text(json.dumps(data, indent=2))
    plot(rows, RESULTS / "triton_overhead.png")
    print(f"wrote {RESULTS / 'triton_overhead.json'} and {RESULTS / 'triton_overhead.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
