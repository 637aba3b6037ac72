"""``python -m bench.governance [--quick]``: governance latency and overspend, in one run.

Writes ``bench/results/governance.json`` and ``bench/results/governance.png``.
Targets: :mod:`bench.governance.latency` (added p50 ≤ +0.5 ms at c=1, ≤ 2 Redis round
trips per request) and :mod:`bench.governance.overspend` (settled ≤ 1.00x the budget,
≤ 1% false rejections; the naive limiter's overspend beside it).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.governance import latency, overspend

RESULTS = Path(__file__).resolve().parents[1] / "results"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = data["latency"]
    xs = range(len(rows))
    ax1.bar([i - 0.2 for i in xs], [r["off"]["p50_ms"] for r in rows], 0.4, label="governance off")
    ax1.bar([i + 0.2 for i in xs], [r["on"]["p50_ms"] for r in rows], 0.4, label="governance on")
    ax1.set_xticks(list(xs), [f"c={r['concurrency']}" for r in rows], fontsize=8)
    ax1.set_ylabel("p50 latency (ms)")
    ax1.set_title("gateway latency with and without governance")
    ax1.legend()
    spend = data["overspend"]
    ax2.bar(
        range(len(spend)),
        [r["overspend_ratio"] for r in spend],
        color=["tab:green", "tab:red"][: len(spend)],
    )
    ax2.axhline(1.0, color="black", linestyle="--", label="budget")
    ax2.set_xticks(range(len(spend)), [r["limiter"] for r in spend], fontsize=8)
    ax2.set_ylabel("settled / budget")
    ax2.set_title("400 concurrent calls, 2 replicas, one Redis")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    quick = "--quick" in sys.argv
    data: dict[str, Any] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "started_at": time.time(),
    }
    print("== governance latency (on vs off)", flush=True)
    data.update(latency.run(quick=quick))
    print("== overspend (lanewise vs naive)", flush=True)
    data["overspend"] = overspend.run()
    for row in data["overspend"]:
        print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "governance.json").write_text(json.dumps(data, indent=2))
    plot(data, RESULTS / "governance.png")
    print(f"wrote {RESULTS / 'governance.json'} and governance.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
