"""Build the ``triton`` backend from a ``[models.<name>]`` table.

```toml
[models.tri]
kind = "triton"
url = "127.0.0.1:8001"            # or urls = ["host-a:8001", "host-b:8001"]
layout = "ensemble"               # or "llmapi" (one tensorrt_llm model + model.yaml)
model = "ensemble"                # default per layout: ensemble / tensorrt_llm
```
"""

from __future__ import annotations

from lanewise.core.errors import ConfigError
from lanewise.core.factory import FactoryContext
from lanewise.core.options import Options
from lanewise.inference.triton.backend import CHAT_TEMPLATES, TritonBackend, TritonReplica
from lanewise.inference.triton.profiles import LAYOUTS, TritonProfile

ALLOWED = {
    "url",
    "urls",
    "model",
    "layout",
    "decoupled",
    "batch_dim",
    "seed_input",
    "end_id",
    "pad_id",
    "max_tokens",
    "max_tokens_limit",
    "chat_template",
    "timeout_s",
    "stream_text",
}


def build_triton(ctx: FactoryContext) -> TritonBackend:
    prefix = ctx.key
    opts = ctx.read(ALLOWED)
    urls = _urls(opts, prefix)
    layout = opts.choice("layout", "ensemble", LAYOUTS)
    decoupled = opts.options.get("decoupled")
    if decoupled is not None and not isinstance(decoupled, bool):
        raise ConfigError(f"{prefix}.decoupled must be true or false (got {decoupled!r})")
    batch_dim = opts.options.get("batch_dim")
    if batch_dim is not None and not isinstance(batch_dim, bool):
        raise ConfigError(f"{prefix}.batch_dim must be true or false (got {batch_dim!r})")
    limit = opts.options.get("max_tokens_limit")
    if limit is not None:
        limit = opts.integer("max_tokens_limit", 0, minimum=1)
    profile = TritonProfile.for_layout(
        layout,  # type: ignore[arg-type]
        model=opts.text("model"),
        decoupled=decoupled,
        batch_dim=batch_dim,
        seed_input=opts.choice("seed_input", "seed", ("seed", "random_seed")),
        end_id=_optional_int(opts, "end_id"),
        pad_id=_optional_int(opts, "pad_id"),
        default_max_tokens=opts.integer("max_tokens", 256, minimum=1),
        max_tokens_limit=limit,
        stream_text=opts.choice("stream_text", "delta", ("delta", "cumulative")),
    )
    default_timeout = ctx.settings.gateway.request_timeout_s
    timeout_s = opts.number("timeout_s", default_timeout, minimum=0.001)
    template = opts.choice("chat_template", "chatml", CHAT_TEMPLATES)
    replicas = [
        TritonReplica(url, profile, name="triton", chat_template=template, timeout_s=timeout_s)
        for url in urls
    ]
    return TritonBackend(replicas, name="triton")


def _urls(opts: Options, prefix: str) -> list[str]:
    url = opts.options.get("url")
    urls = opts.options.get("urls")
    if url is not None and urls is not None:
        raise ConfigError(f"{prefix}: set url or urls, not both")
    if url is not None:
        urls = [url]
    if urls is None:
        raise ConfigError(f'{prefix}.url is required for kind = "triton" (e.g. "127.0.0.1:8001")')
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise ConfigError(f"{prefix}.urls must be a non-empty list of host:port strings")
    for u in urls:
        if "://" in u:
            raise ConfigError(
                f"{prefix}: {u!r} must be host:port of Triton's gRPC endpoint, without a scheme"
            )
    return list(urls)


def _optional_int(opts: Options, key: str) -> int | None:
    if opts.options.get(key) is None:
        return None
    return opts.integer(key, 0, minimum=0)
