"""Fill the ``deploy/triton/gpu`` templates into a servable model repository.

The templates use TensorRT-LLM's ``${name}`` placeholders (its ``tools/fill_template.py``
convention). Filling is strict: an unknown or unfilled placeholder is an error,
never a silently broken ``config.pbtxt``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lanewise.core.errors import ConfigError

PLACEHOLDER = re.compile(r"\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
TEMPLATE_SUFFIXES = (".pbtxt", ".yaml")

BATCH_SCHEDULER_POLICIES = ("guaranteed_no_evict", "max_utilization")
BATCHING_STRATEGIES = ("inflight_fused_batching", "V1")


@dataclass
class RepoValues:
    """Everything the templates ask for, with TensorRT-LLM's usual defaults."""

    tokenizer_dir: str
    engine_dir: str = ""
    model_dir: str = ""
    triton_max_batch_size: int = 64
    decoupled_mode: bool = True
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 0
    batching_strategy: str = "inflight_fused_batching"
    batch_scheduler_policy: str = "guaranteed_no_evict"
    kv_cache_free_gpu_mem_fraction: float = 0.9
    max_tokens_in_paged_kv_cache: int | None = None
    enable_kv_cache_reuse: bool = False
    enable_chunked_context: bool = False
    cancellation_check_period_ms: int = 100
    preprocessing_instance_count: int = 1
    postprocessing_instance_count: int = 1
    add_special_tokens: bool = True
    skip_special_tokens: bool = True
    multimodal_model_path: str = ""
    max_num_images: str = ""
    hf_model_path: str = ""
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self, layout: str) -> None:
        if layout == "ensemble" and not self.engine_dir:
            raise ConfigError("--engine-dir is required for the ensemble layout")
        if not 0.0 < self.kv_cache_free_gpu_mem_fraction <= 1.0:
            raise ConfigError("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
        if self.batch_scheduler_policy not in BATCH_SCHEDULER_POLICIES:
            raise ConfigError(
                f"--batch-scheduler-policy must be one of {', '.join(BATCH_SCHEDULER_POLICIES)}"
            )
        if self.batching_strategy not in BATCHING_STRATEGIES:
            raise ConfigError(f"batching strategy must be one of {', '.join(BATCHING_STRATEGIES)}")
        if self.triton_max_batch_size < 1:
            raise ConfigError("--max-batch-size must be >= 1")

    def as_strings(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in vars(self).items():
            if key == "extra":
                continue
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif value is None:
                out[key] = ""  # TensorRT-LLM reads an empty parameter as "not set"
            else:
                out[key] = str(value)
        out["model_dir"] = out["model_dir"] or out["tokenizer_dir"]
        out.update(self.extra)
        return out


def fill_text(text: str, values: Mapping[str, str], *, source: str = "template") -> str:
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ConfigError(f"{source}: no value for {', '.join('${' + m + '}' for m in missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def gpu_templates(layout: str, root: Path | None = None) -> Path:
    from lanewise.inference.triton.server import default_cpu_repository

    base = root or default_cpu_repository().parent / "gpu"
    path = base / layout
    if not path.is_dir():
        raise ConfigError(f"no templates for layout {layout!r} at {path}")
    return path


def fill_repository(
    layout: str,
    out: Path,
    values: RepoValues,
    *,
    templates: Path | None = None,
    model_code_dir: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write a filled repository to ``out``; return the files written."""
    if layout not in ("ensemble", "llmapi"):
        raise ConfigError(f"layout {layout!r} is not allowed; use ensemble or llmapi")
    values.validate(layout)
    source = templates or gpu_templates(layout)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --force to overwrite")
    strings = values.as_strings()
    written: list[Path] = []
    for path in sorted(source.rglob("*")):
        if path.is_dir() or path.name == ".gitkeep":
            continue
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in TEMPLATE_SUFFIXES:
            target.write_text(fill_text(path.read_text(), strings, source=str(path)))
        else:
            shutil.copy2(path, target)
        written.append(target)
    for model_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        (out / model_dir.name / "1").mkdir(parents=True, exist_ok=True)
    if model_code_dir is not None:
        written += _copy_model_code(model_code_dir, out)
    return written


def _copy_model_code(code_dir: Path, out: Path) -> list[Path]:
    """Copy TensorRT-LLM's own ``model.py`` (and helpers) for the Python models."""
    copied: list[Path] = []
    for model in sorted(p.name for p in out.iterdir() if p.is_dir()):
        src = code_dir / model / "1"
        if not src.is_dir():
            continue
        for file in sorted(src.glob("*.py")):
            target = out / model / "1" / file.name
            shutil.copy2(file, target)
            copied.append(target)
    return copied
