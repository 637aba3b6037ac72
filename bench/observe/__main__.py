"""``python -m bench.observe [--quick]``: the observe lane's cost on the gateway.

Writes ``bench/results/observe.json`` and ``bench/results/observe.png``. Targets
are in :mod:`bench.observe.overhead` (≤ 7 % RPS loss, ≤ +0.3 ms p50).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench.observe import overhead

RESULTS = Path(__file__).resolve().parents[1] / "results"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = data["median"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    variants = data.get("variants", ["off", "on"])
    names = {
        "off": "telemetry off",
        "on": "on, sidecar core 1",
        "on-samecore": "on, sidecar core 0",
        "thread": "on, in-process thread",
        "before": "on, before",
        "on-notraces": "on, traces off",
        "on-nolink": "on, nothing sent",
        "on-discard": "on, sidecar discards",
        "on-nice0": "on, sidecar not niced",
    }
    labels = [names[v] for v in variants]
    palette = [
        "#888888",
        "#2a7ab9",
        "#6aa84f",
        "#d98c3a",
        "#a64d79",
        "#4aa3a3",
        "#b5a33a",
        "#555",
        "#999",
    ]
    colors = palette[: len(variants)]
    for ax, key, title in (
        (axes[0], "rps", "requests/s (c=16)"),
        (axes[1], "p50_ms_c1", "p50 latency at c=1 (ms)"),
        (axes[2], "cpu_ms_per_request", "CPU ms per request (gateway + sidecar)"),
    ):
        values = [med[v][key] for v in variants]
        ax.bar(labels, values, color=colors)
        if key == "cpu_ms_per_request":
            sidecar = [med[v].get("sidecar_cpu_ms_per_request", 0.0) for v in variants]
            ax.bar(labels, sidecar, bottom=values, color="#cccccc", label="sidecar")
            ax.legend()
        ax.tick_params(axis="x", labelrotation=20)
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom")
    fig.suptitle(
        f"observe lane on vs off: RPS {-data['rps_loss'] * 100:+.1f}% (target ≥ -7%), "
        f"p50 {data['p50_added_ms']:+.3f} ms (target ≤ +0.3 ms)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", help="a git ref: its observe lane as another gateway")
    parser.add_argument(
        "--variants",
        default=",".join(overhead.DEFAULT_VARIANTS),
        help=f"comma-separated, off and on always included; of {', '.join(overhead.VARIANTS)}",
    )
    args = parser.parse_args()
    before = overhead.checkout(args.before) if args.before else None
    load_before = os.getloadavg()
    variants = tuple({"off", "on", *args.variants.split(",")})
    data = overhead.run(quick=args.quick, before=before, chosen=variants)
    data["meta"] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "quick": args.quick,
        "before": args.before,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observe.json").write_text(json.dumps(data, indent=2) + "\n")
    plot(data, RESULTS / "observe.png")
    med = data["median"]
    for variant in data["variants"]:
        loss = data["rps_loss_measured_by_variant"].get(variant, 0.0)
        print(
            f"{variant:>11}: {med[variant]['rps']:.0f} rps ({-loss * 100:+.1f}% measured), "
            f"p50 {med[variant]['p50_ms_c1']:.3f} ms, gateway "
            f"{med[variant]['cpu_ms_per_request']:.3f} CPU ms/req + sidecar "
            f"{med[variant]['sidecar_cpu_ms_per_request']:.3f}"
        )
    if "before" in med:
        print(
            f"before ({args.before}): {med['before']['rps']:.0f} rps, p50 "
            f"{med['before']['p50_ms_c1']:.3f} ms, {med['before']['cpu_ms_per_request']:.3f} "
            f"CPU ms/req; load average {data['meta']['load_average_before']} -> "
            f"{data['meta']['load_average_after']}"
        )
    rounds = sorted(-loss * 100 for loss in data["rps_loss_measured_rounds"])
    print("on vs off by round (RPS, sorted): " + " ".join(f"{r:+.1f}%" for r in rounds))
    print(f"counted by the lane at the end: {data['telemetry_counts']}")
    source = "measured" if data["gateway_saturated"] else "from CPU/request (gateway not saturated)"
    print(
        f"RPS loss {data['rps_loss'] * 100:.1f}% {source}; measured "
        f"{data['rps_loss_measured'] * 100:.1f}%, from CPU {data['rps_loss_from_cpu'] * 100:.1f}% "
        f"(target ≤ 7%: "
        f"{'met' if data['rps_target_met'] else 'NOT met'}), p50 {data['p50_added_ms']:+.3f} ms "
        f"(target ≤ +0.3 ms: {'met' if data['p50_target_met'] else 'NOT met'}), "
        f"+{data['cpu_us_added_per_request']:.0f} µs CPU/request; upstream "
        f"{data['upstream_over_gateway']:.1f}x the gateway's RPS"
    )


if __name__ == "__main__":
    main()
