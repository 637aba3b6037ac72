"""Instructions per request that governance adds, counted by callgrind (immune to load).

``python -m bench.governance.instructions [--requests N] [--repeats R]``

On a shared machine the CPU time of a request swings with the load; the number of
instructions it executes does not. This runs both gateways of
:mod:`bench.governance.latency` (governance on with an ``lw_`` key, Redis store, a
tenant budget and a key RPM+TPM limit; governance off with a static key) as ASGI apps
in one process under ``valgrind --tool=callgrind``, drives them alternately through
``httpx.ASGITransport`` and dumps the counts after each side's requests, via
callgrind's client requests (a 5-line C helper, compiled here with ``cc``). Redis and
the aiohttp upstream run outside valgrind. Counted: user-space instructions of every
thread of the process (the client's share is the same on both sides; the kernel's
work for the round trips is not counted). Needs ``valgrind``, its headers and ``cc``.

Under callgrind a request runs ~50x slower, so the settlement linger is scaled to
``--linger`` (0.5 s) for a batch to hold about as many calls as at c=1 natively.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.callgrind import build_helper


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def child() -> None:
    """Runs under callgrind: both apps, alternating sides, a dump after each."""
    import ctypes
    import logging

    import httpx
    from lanewise.core.gateway.app import create_app
    from lanewise.core.settings import load_settings
    from lanewise.governance.plugin import governance_for

    from bench.governance.latency import MESSAGES, STATIC_KEY

    helper = ctypes.CDLL(os.environ["LW_CG_HELPER"])
    tmp = Path(os.environ["LW_CG_DIR"])
    requests, repeats = int(os.environ["LW_CG_REQUESTS"]), int(os.environ["LW_CG_REPEATS"])
    logging.disable(logging.CRITICAL)
    on_settings = load_settings(tmp / "on.toml")
    apps = {"off": create_app(load_settings(tmp / "off.toml")), "on": create_app(on_settings)}
    governance_for(on_settings).governor.accounting.linger_s = float(os.environ["LW_CG_LINGER"])
    keys = {"off": STATIC_KEY, "on": os.environ["LW_CG_KEY"]}
    body = {"model": "mock", "messages": MESSAGES, "max_tokens": 32}

    async def run() -> None:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            clients = {}
            for name, app in apps.items():
                await stack.enter_async_context(app.lifespan())
                transport = httpx.ASGITransport(app=app)
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://gateway")
                )

            async def send(name: str, n: int) -> None:
                headers = {"authorization": f"Bearer {keys[name]}"}
                for _ in range(n):
                    r = await clients[name].post("/v1/chat/completions", json=body, headers=headers)
                    r.raise_for_status()

            for name in apps:
                await send(name, 20)
            helper.cg_start()
            await asyncio.sleep(1.0)
            helper.cg_dump(b"warm")
            for name in ("off", "on") * repeats:
                await send(name, requests)
                await asyncio.sleep(1.0)  # the last settlement batch lands in this side
                helper.cg_dump(name.encode())

    asyncio.run(run())


def run(*, requests: int = 100, repeats: int = 3, linger_s: float = 0.5) -> dict[str, Any]:
    from lanewise.core.testing.services import RedisServer

    from bench.governance.latency import create_key, free_port, process, write_config

    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        raise SystemExit("needs valgrind (with its headers) and cc")
    with tempfile.TemporaryDirectory(prefix="lanewise-bench-cg-") as tmp_name:
        tmp = Path(tmp_name)
        helper = build_helper(tmp)
        redis_server = RedisServer(tmp / "redis").start()
        try:
            up = free_port()
            upstream = f"http://127.0.0.1:{up}"
            write_config(tmp, upstream, redis_server.url, governed=False)
            key = create_key(write_config(tmp, upstream, redis_server.url, governed=True))
            with process(
                [sys.executable, "-m", "bench.upstream", "--port", str(up)],
                env={},
                url=f"{upstream}/v1/models",
                core=1,
            ):
                env = {
                    **os.environ,
                    "OMP_NUM_THREADS": "1",
                    "LW_CG_HELPER": str(helper),
                    "LW_CG_DIR": str(tmp),
                    "LW_CG_KEY": key,
                    "LW_CG_REQUESTS": str(requests),
                    "LW_CG_REPEATS": str(repeats),
                    "LW_CG_LINGER": str(linger_s),
                }
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={tmp}/cg.%p",
                        sys.executable,
                        "-m",
                        "bench.governance.instructions",
                        "--child",
                    ],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        finally:
            redis_server.stop()
        per_request: dict[str, list[float]] = {"off": [], "on": []}
        for dump in tmp.glob("cg.*"):
            text = dump.read_text(errors="replace")
            side = re.search(r"^desc: Trigger: Client Request: (\w+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if side and total and side.group(1) in per_request:
                per_request[side.group(1)].append(int(total.group(1)) / requests)
    off, on = statistics.median(per_request["off"]), statistics.median(per_request["on"])
    result = {
        "requests_per_side": requests,
        "repeats": repeats,
        "instructions_per_request_off": off,
        "instructions_per_request_on": on,
        "added_per_request": on - off,
        "samples": per_request,
    }
    print(
        f"instructions per request (median of {repeats}): off {off / 1e6:.2f} M, "
        f"on {on / 1e6:.2f} M, added {(on - off) / 1e6:.2f} M ({on / off:.2f}x)",
        flush=True,
    )
    return result


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        run(
            requests=int(_arg("--requests", "100")),
            repeats=int(_arg("--repeats", "3")),
            linger_s=float(_arg("--linger", "0.5")),
        )
