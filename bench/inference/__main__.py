"""``python -m bench.inference [--quick] [--litellm]``: gateway overhead, fairness, peer.

Writes ``bench/results/inference.json`` and ``bench/results/inference.png``.
Targets are in the docstrings of :mod:`bench.inference.overhead` (added p50 <= 1 ms,
p99 <= 3 ms at c=1) and :mod:`bench.inference.fairness` (each replica within ±10%
of its fair share) and :mod:`bench.inference.litellm_peer` (added latency <= 0.3x
LiteLLM's, RPS per core >= 4x).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench.inference import fairness, overhead, streams

RESULTS = Path(__file__).resolve().parents[1] / "results"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peer = data.get("litellm") or []
    fig, axes = plt.subplots(1, 3 if peer else 2, figsize=(19 if peer else 13, 5))
    ax1, ax2 = axes[0], axes[1]
    rows = data["overhead"]
    labels = [f"{r['pair']}\nc={r['concurrency']}" for r in rows]
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["direct"]["p50_ms"] for r in rows], 0.4, label="direct p50")
    ax1.bar([i + 0.2 for i in x], [r["gateway"]["p50_ms"] for r in rows], 0.4, label="gateway p50")
    ax1.set_xticks(list(x), labels, fontsize=6, rotation=20)
    ax1.set_yscale("log")
    ax1.set_ylabel("ms (log)")
    ax1.set_title("latency: direct vs through the gateway (p50)")
    ax1.legend()
    fair = data["fairness"]
    labels2 = [f"{r['policy']}\nc={r['concurrency']}" for r in fair]
    worst = [100 * r["worst_deviation"] for r in fair]
    ax2.bar(range(len(fair)), worst, color=["tab:green", "tab:red", "tab:gray"] * 2)
    ax2.axhline(10, color="black", linestyle="--", label="target ±10%")
    ax2.set_xticks(range(len(fair)), labels2, fontsize=6, rotation=20)
    ax2.set_ylabel("worst replica deviation from fair share (%)")
    ax2.set_yscale("symlog")
    ax2.set_title("fairness over 4 replicas")
    ax2.legend()
    if peer:
        ax3 = axes[2]
        xs = range(len(peer))
        for offset, proxy, color in ((-0.2, "lanewise", "tab:green"), (0.2, "litellm", "tab:red")):
            ax3.bar(
                [i + offset for i in xs],
                [max(r[f"{proxy}_added_p50_ms"], 0.01) for r in peer],
                0.4,
                label=f"{proxy} added p50",
                color=color,
            )
        ax3.set_xticks(list(xs), [f"c={r['concurrency']}" for r in peer])
        ax3.set_yscale("log")
        ax3.set_ylabel("added p50 over direct (ms, log)")
        ax3.set_title("proxy overhead: lanewise vs LiteLLM 1.81.16")
        ax3.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inference")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--litellm",
        action="store_true",
        help="also compare with a pinned LiteLLM proxy (creates its own venv once)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    print("== fairness (4 replicas)", flush=True)
    data["fairness"] = fairness.run(quick=args.quick)
    print("== gateway overhead", flush=True)
    data["overhead"] = overhead.run(quick=args.quick)
    print("== concurrent streams through one gateway process", flush=True)
    data["streams"] = streams.run(quick=args.quick)
    if args.litellm:
        from bench.inference import litellm_peer

        print("== lanewise vs LiteLLM proxy (same upstream)", flush=True)
        data["litellm"] = litellm_peer.run(quick=args.quick)
    (RESULTS / "inference.json").write_text(json.dumps(data, indent=2))
    plot(data, RESULTS / "inference.png")
    print(f"wrote {RESULTS / 'inference.json'} and {RESULTS / 'inference.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
