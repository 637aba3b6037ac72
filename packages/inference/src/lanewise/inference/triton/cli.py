"""``lanewise triton repo`` and ``lanewise serve triton``."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click
from lanewise.core.errors import LanewiseError
from rich.console import Console

console = Console(stderr=True)


@click.group()
def triton() -> None:
    """Triton model repositories for TensorRT-LLM."""


@triton.command("repo")
@click.option(
    "--layout",
    type=click.Choice(["ensemble", "llmapi"]),
    default="ensemble",
    show_default=True,
    help="ensemble: engine + preprocessing/postprocessing; llmapi: one model + model.yaml.",
)
@click.option(
    "--engine-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="TensorRT-LLM engine (ensemble layout).",
)
@click.option(
    "--tokenizer-dir", type=click.Path(path_type=Path), required=True, help="HF tokenizer dir."
)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="HF checkpoint for the llmapi layout (default: --tokenizer-dir).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where to write.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--decoupled/--no-decoupled", default=True, show_default=True)
@click.option(
    "--batch-scheduler-policy",
    type=click.Choice(["guaranteed_no_evict", "max_utilization"]),
    default="guaranteed_no_evict",
    show_default=True,
)
@click.option("--kv-cache-free-gpu-mem-fraction", type=float, default=0.9, show_default=True)
@click.option("--max-tokens-in-paged-kv-cache", type=click.IntRange(min=1), default=None)
@click.option("--enable-kv-cache-reuse/--no-enable-kv-cache-reuse", default=False)
@click.option("--enable-chunked-context/--no-enable-chunked-context", default=False)
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--cancellation-check-period-ms", type=click.IntRange(min=1), default=100)
@click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=1)
@click.option(
    "--model-code-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="TensorRT-LLM's all_models/<layout dir> to copy the Python models' model.py from.",
)
@click.option("--force", is_flag=True, help="Write into a non-empty --out.")
def repo(
    layout: str,
    engine_dir: Path | None,
    tokenizer_dir: Path,
    model_dir: Path | None,
    out: Path,
    max_batch_size: int,
    decoupled: bool,
    batch_scheduler_policy: str,
    kv_cache_free_gpu_mem_fraction: float,
    max_tokens_in_paged_kv_cache: int | None,
    enable_kv_cache_reuse: bool,
    enable_chunked_context: bool,
    max_queue_delay_us: int,
    cancellation_check_period_ms: int,
    tensor_parallel_size: int,
    model_code_dir: Path | None,
    force: bool,
) -> None:
    """Fill deploy/triton/gpu/<layout> for a TensorRT-LLM engine or checkpoint."""
    from lanewise.inference.triton.repo import RepoValues, fill_repository

    values = RepoValues(
        tokenizer_dir=str(tokenizer_dir.resolve()),
        engine_dir=str(engine_dir.resolve()) if engine_dir else "",
        model_dir=str(model_dir.resolve()) if model_dir else "",
        triton_max_batch_size=max_batch_size,
        decoupled_mode=decoupled,
        max_queue_delay_microseconds=max_queue_delay_us,
        batch_scheduler_policy=batch_scheduler_policy,
        kv_cache_free_gpu_mem_fraction=kv_cache_free_gpu_mem_fraction,
        max_tokens_in_paged_kv_cache=max_tokens_in_paged_kv_cache,
        enable_kv_cache_reuse=enable_kv_cache_reuse,
        enable_chunked_context=enable_chunked_context,
        cancellation_check_period_ms=cancellation_check_period_ms,
        tensor_parallel_size=tensor_parallel_size,
    )
    try:
        written = fill_repository(
            layout, out, values, model_code_dir=model_code_dir, overwrite=force
        )
    except LanewiseError as exc:
        raise click.UsageError(exc.detail) from None
    for path in written:
        click.echo(str(path))
    model = "ensemble" if layout == "ensemble" else "tensorrt_llm"
    console.print(
        f"[green]wrote {len(written)} files[/]; serve with tritonserver "
        f"--model-repository {out} and configure\n"
        f'  [models.<name>] kind = "triton", layout = "{layout}", model = "{model}"'
        + ("" if decoupled or layout == "llmapi" else ", decoupled = false")
        + (", decoupled = true" if decoupled and layout == "llmapi" else "")
    )
    if model_code_dir is None:
        console.print(
            "[yellow]note:[/] the Python models (preprocessing/postprocessing or llmapi) need "
            "TensorRT-LLM's model.py: pass --model-code-dir <TensorRT-LLM>/triton_backend/"
            f"all_models/{'inflight_batcher_llm' if layout == 'ensemble' else 'llmapi'}"
        )


@click.command("triton")
@click.option(
    "--repository",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model repository (default: deploy/triton/cpu).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--token-delay-ms", type=float, default=None, help="CPU toy LM: delay per token.")
@click.option("--ready-timeout", type=float, default=120.0, show_default=True)
def serve_triton(
    repository: Path | None,
    host: str,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    token_delay_ms: float | None,
    ready_timeout: float,
) -> None:
    """Run the tritonserver bundled with nvidia-pytriton on the CPU TensorRT-LLM-shaped repo."""
    from lanewise.inference.triton.server import (
        CPU_MODELS,
        TritonServer,
        default_cpu_repository,
    )

    env = {}
    if token_delay_ms is not None:
        env["LANEWISE_TRITON_TOKEN_DELAY_MS"] = str(token_delay_ms)
    repo_path = repository or default_cpu_repository()
    models = CPU_MODELS if (repo_path / "ensemble").is_dir() else ()
    server = TritonServer(
        repo_path,
        models=models,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        env=env,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start(timeout_s=ready_timeout)
    except LanewiseError as exc:
        console.print(f"[red]triton did not start:[/] {exc.detail}")
        sys.exit(1)
    console.print(
        f"[green]triton ready[/]: grpc {server.grpc_url}, http {server.http_url}, "
        f"metrics {server.metrics_url}; models {', '.join(server.models) or '(all)'}; "
        f"log {server.log_path}"
    )
    try:
        while not stop.wait(0.5):
            if not server.alive:
                console.print(f"[red]tritonserver exited[/]; log tail:\n{server.log_tail()}")
                sys.exit(1)
    finally:
        server.stop()
