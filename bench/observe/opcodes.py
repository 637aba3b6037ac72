"""Bytecodes per request, by Python function, that one variant of the gateway adds to another.

``python -m bench.observe.opcodes [--variants off,on] [--requests 45] [--concurrency 15]``

Where :mod:`bench.observe.instructions` says how many instructions the observe lane
adds, this says in which Python functions: each variant's app (those of
``bench.observe.instructions``: inference lane, ``openai`` backend over aiohttp to the
canned upstream) serves the same requests with ``sys.settrace`` counting every bytecode
executed, per function, and the functions whose count per request differs most between
the first variant and each other are listed. Exact, load-immune and quick (seconds), but
it counts bytecodes, not their cost: a call into C (an encoder, a dict lookup) is one.
The tracer sees only the event loop's thread, and it slows requests down about tenfold,
so timers (the link's flush, asyncio's timer heap) show up more often per request than
they run natively.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.direct_app import CHAT_SCOPE, asgi_io, start_lifespan
from bench.observe.instructions import MODEL_BODY, VARIANTS, _app
from bench.observe.overhead import LOAD_CORE, free_port, process
from bench.observe.serve import split_lane

ROOT = str(Path(__file__).resolve().parents[2]) + "/"


def _where(code: Any) -> str:
    name = code.co_filename.split("site-packages/")[-1].removeprefix(ROOT)
    return f"{name}:{code.co_firstlineno}:{code.co_name}"


async def count(
    variants: list[str], upstream: str, requests: int, concurrency: int
) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    def tracer(frame: Any, _event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        where = _where(frame.f_code)

        def local(_frame: Any, event: str, _arg: Any) -> Any:
            if event == "opcode":
                counts[where] += 1
            return local

        return local

    scope = dict(CHAT_SCOPE, headers=[(b"content-type", b"application/json"), (b"host", b"b")])
    receive, send, statuses = asgi_io(MODEL_BODY)
    tmp = Path(tempfile.mkdtemp(prefix="lanewise-bench-opcodes-"))
    (tmp / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    apps = {}
    for variant in variants:
        (tmp / variant).mkdir()
        app, plugin = _app(variant, tmp / variant, upstream)
        if variant in ("nolink", "noforward"):
            split_lane(plugin, variant)
        await start_lifespan(app)
        apps[variant] = app

    async def batch(app: Any) -> None:
        await asyncio.gather(
            *(app(dict(scope, state={}), receive, send) for _ in range(concurrency))
        )

    per_variant: dict[str, dict[str, float]] = {}
    for variant in variants:
        app = apps[variant]
        for _ in range(3):  # warm-up: pools, first-call paths
            await batch(app)
        counts.clear()
        statuses.clear()
        sys.settrace(tracer)
        try:
            for _ in range(requests // concurrency):
                await batch(app)
        finally:
            sys.settrace(None)
        assert statuses == [200] * len(statuses), statuses[:3]
        served = len(statuses)
        per_variant[variant] = {where: n / served for where, n in counts.items()}
    return per_variant


def report(per_variant: dict[str, dict[str, float]], top: int) -> None:
    base_name, *others = per_variant
    base = per_variant[base_name]
    print(f"{base_name}: {sum(base.values()):.0f} bytecodes per request")
    for name in others:
        other = per_variant[name]
        total = sum(other.values())
        print(f"{name}: {total:.0f} bytecodes per request ({total - sum(base.values()):+.0f})")
        diff = {w: other.get(w, 0.0) - base.get(w, 0.0) for w in set(base) | set(other)}
        for where, added in sorted(diff.items(), key=lambda item: -abs(item[1]))[:top]:
            if abs(added) >= 0.5:
                print(f"  {added:+8.1f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="off,on", help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--requests", type=int, default=45)
    parser.add_argument("--concurrency", type=int, default=15)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown or len(variants) < 2:
        raise SystemExit(f"--variants: two or more of {', '.join(VARIANTS)}")
    if args.requests < args.concurrency:
        raise SystemExit("--requests: at least --concurrency (requests go in batches of it)")
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    with process(["bench.upstream", "--port", str(port)], LOAD_CORE, upstream + "/v1/models"):
        per_variant = asyncio.run(count(variants, upstream, args.requests, args.concurrency))
    report(per_variant, args.top)
    sys.stdout.flush()
    os._exit(0)  # the apps' sidecars and threads: nothing of them is wanted now


if __name__ == "__main__":
    main()
