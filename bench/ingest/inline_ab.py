"""The inline embed A/B: the no-op pipeline on a default worker (``ingest.inline_embed``:
a document's only batch is embedded in its parse task) and on one with it off (every
batch to the embed queue), fresh workers alternating, same corpus, same servers.

Set up as ``bench.ingest`` (Redis and PostgreSQL pinned to CPU 0, the worker, one pool
child, to CPU 1); each start runs a short warm job, then ``--jobs`` jobs of the corpus
under new tenants. Per job: wall seconds (job created to finished, as recorded in its
job state) and the worker's CPU seconds (main process and pool child, from ``/proc``);
the order of the two sides flips at every start. Prints every job and the medians.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m bench.ingest.inline_ab [--starts 4]
[--jobs 2] [--docs 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from lanewise.core.settings import load_settings
from lanewise.ingest.service import open_service
from lanewise.ingest.testing import Worker
from lanewise.ingest.wiring import open_components

from bench.ingest.pipeline_bench import (
    PATHS,
    WORKER_CPU,
    bench_servers,
    path_configs,
    run_job,
    write_corpus,
)


async def alternate(tmp: Path, redis_url: str, pg_url: str, args: argparse.Namespace) -> None:
    configs = path_configs(tmp, redis_url, pg_url)
    corpus, warm = write_corpus(tmp / "corpus", args.docs), write_corpus(tmp / "warm", 2)
    settings = load_settings(configs["inline"])
    parts, close = open_components(settings)
    service = open_service(settings, parts)
    jobs: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
    try:
        for start in range(args.starts):
            for path in PATHS if start % 2 == 0 else PATHS[::-1]:
                log = tmp / f"{path}{start}.log"
                worker = Worker(configs[path], log, f"{path}{start}", 1, pin_cpus=WORKER_CPU)
                worker.start()
                try:
                    await run_job(service, warm, f"warm{uuid.uuid4().hex[:8]}")
                    for n in range(args.jobs):
                        cpu0 = worker.cpu_seconds()
                        _, wall = await run_job(service, corpus, f"{path}{start}x{n}")
                        jobs[path].append((wall, worker.cpu_seconds() - cpu0))
                        print(
                            f"{path:6} start {start} job {n}: {wall:.2f} s wall,"
                            f" worker CPU {jobs[path][-1][1]:.2f} s,"
                            f" load {os.getloadavg()[0]:.2f}",
                            flush=True,
                        )
                finally:
                    worker.stop()
    finally:
        await service.aclose()
        await close()
    for path, runs in jobs.items():
        print(
            f"{path:6} medians: {statistics.median(w for w, _ in runs):.2f} s wall,"
            f" worker CPU {statistics.median(c for _, c in runs):.2f} s"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest.inline_ab")
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--docs", type=int, default=200)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lanewise-bench-inline-ab-"))
    print(f"load average before: {os.getloadavg()}")
    with bench_servers(tmp) as (redis_url, pg_url):
        asyncio.run(alternate(tmp, redis_url, pg_url, args))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
