"""``hf-local``: any transformers causal LM from a local directory (extra ``[hf]``).

The only part of lanewise that needs torch. Nothing here imports torch or
transformers at module import: :func:`build_hf_local` does, and says which
extra to install when they are missing.

Generation is a manual decode loop with the KV cache in one worker thread per
request rather than ``model.generate``: it gives a per-request
``torch.Generator`` (seeded sampling that does not depend on other requests),
exact token counts, and a cancel flag checked before every forward pass. The
worker may run at most :data:`LOOKAHEAD` tokens ahead of the consumer, so a
client that goes away stops generation within one step and never leaves a
thread decoding into the void.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanewise.core.errors import ConfigError, InvalidRequest, UpstreamError
from lanewise.core.factory import FactoryContext
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Message, Usage
from lanewise.inference.completion import collect
from lanewise.inference.stops import StopScanner

log = logging.getLogger("lanewise.inference.hf_local")

OPTIONS = {"path", "device", "dtype", "max_tokens_limit", "default_max_tokens", "threads"}
DTYPES = ("auto", "float32", "float16", "bfloat16")
INSTALL_HINT = (
    "the hf-local backend needs torch and transformers: install lanewise-inference[hf] "
    "(with the CPU build of torch; `make test` installs it from a local wheel)"
)
LOOKAHEAD = 8
"""Tokens the worker may decode before the consumer has taken them."""
_POLL_S = 0.05

ROLE_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


def simple_chat_prompt(messages: list[Message]) -> str:
    """The template used when the tokenizer config has no ``chat_template``.

    Each message becomes ``<|role|>\\n{content}\\n``; the prompt ends with
    ``<|assistant|>\\n`` so the model continues as the assistant.
    """
    parts = [f"{ROLE_MARKERS.get(m.role, f'<|{m.role}|>')}\n{m.content}\n" for m in messages]
    return "".join(parts) + ROLE_MARKERS["assistant"] + "\n"


@dataclass
class _Run:
    """One generation: the handshake between the worker thread and the stream."""

    cancel: threading.Event = field(default_factory=threading.Event)
    credit: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(LOOKAHEAD))
    generated: int = 0


class IncrementalDecoder:
    """Text deltas for a growing list of token ids.

    Decoding one id at a time breaks multi-byte characters and word-piece
    spacing, so each step decodes a short window and emits what it adds; text
    ending in U+FFFD (a character still incomplete) waits for the next id.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return after[len(before) :] if len(after) > len(before) else ""


class HFLocalBackend:
    """A :class:`~lanewise.core.protocols.ChatBackend` running a local causal LM."""

    def __init__(
        self,
        *,
        torch: Any,
        model: Any,
        tokenizer: Any,
        name: str = "hf-local",
        source: str = "",
        device: str = "cpu",
        dtype: str = "float32",
        max_output_tokens: int = 4096,
        default_max_tokens: int = 256,
    ) -> None:
        self.name = name
        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.device = device
        self.dtype = dtype
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.max_output_tokens = max_output_tokens
        self.default_max_tokens = min(default_max_tokens, max_output_tokens)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.parameters = sum(p.numel() for p in model.parameters())
        self.tokens_generated = 0
        """Tokens decoded by all runs (tests watch it to prove cancellation)."""
        self.workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        architectures = getattr(self.model.config, "architectures", None) or []
        return {
            "owned_by": "lanewise",
            "lanewise": {
                "kind": "hf-local",
                "generative": True,
                "local": True,
                "description": (
                    "a transformers causal LM run in process from a local directory "
                    "(generative; greedy unless temperature > 0)"
                ),
                "model": self.source,
                "architecture": architectures[0] if architectures else None,
                "parameters": self.parameters,
                "device": self.device,
                "dtype": self.dtype,
                "context_length": self.context_length or None,
                "max_tokens": self.max_output_tokens,
                "chat_template": "model" if self.has_chat_template else "lanewise-simple",
                "tokenizer": "model",
            },
        }

    # -- prompt ------------------------------------------------------------------

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """The prompt as token ids: the model's chat template, else :func:`simple_chat_prompt`."""
        if self.has_chat_template:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            try:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            except Exception as exc:  # templates refuse some conversations (raise_exception)
                raise InvalidRequest(
                    f"the chat template of model {request.model!r} refused the messages: {exc}",
                    field="messages",
                ) from None
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        ids = list(
            self.tokenizer.encode(simple_chat_prompt(request.messages), add_special_tokens=False)
        )
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return [bos, *ids] if isinstance(bos, int) else ids

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False)) if text else 0

    # -- generation (worker thread) ---------------------------------------------

    def _pick(self, logits: Any, request: ChatRequest, generator: Any) -> int:
        torch = self._torch
        sampling = request.sampling
        temperature = sampling.temperature or 0.0
        if temperature <= 0.0:
            return int(torch.argmax(logits, dim=-1).item())
        logits = logits.float() / temperature
        if sampling.top_k and 0 < sampling.top_k < logits.shape[-1]:
            kth = torch.topk(logits, sampling.top_k).values[..., -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sampling.top_p is not None and 0.0 < sampling.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            # Drop a token once the ones before it already reach top_p (keeps at least one).
            drop = (cumulative - torch.softmax(ordered, dim=-1)) >= sampling.top_p
            logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator).item())

    def _generator(self, seed: int | None) -> Any:
        generator = self._torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def _decode_loop(
        self,
        prompt: list[int],
        limit: int,
        request: ChatRequest,
        run: _Run,
        emit: Callable[[tuple[str, Any]], None],
    ) -> None:
        torch = self._torch
        try:
            generator = self._generator(request.sampling.seed)
            with torch.inference_mode():
                ids = torch.tensor([prompt], device=self.device)
                past = None
                finish = "length"
                for _ in range(limit):
                    if not self._wait_for_credit(run):
                        return
                    out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    token = self._pick(out.logits[0, -1, :], request, generator)
                    if token in self.eos_ids:
                        finish = "stop"
                        break
                    with self._lock:
                        self.tokens_generated += 1
                    run.generated += 1
                    emit(("token", token))
                    ids = torch.tensor([[token]], device=self.device)
                emit(("end", finish))
        except Exception as exc:  # reported to the consumer, never lost in the thread
            log.exception("hf-local generation failed")
            emit(("error", exc))

    @staticmethod
    def _wait_for_credit(run: _Run) -> bool:
        while not run.cancel.is_set():
            if run.credit.acquire(timeout=_POLL_S):
                return not run.cancel.is_set()
        return False

    # -- ChatBackend ---------------------------------------------------------------

    def _limit(self, request: ChatRequest, prompt: list[int]) -> int:
        """Tokens this request may generate: ``max_tokens`` within the context window."""
        asked = request.sampling.max_tokens or self.default_max_tokens
        if not self.context_length:
            return asked
        room = self.context_length - len(prompt)
        if room <= 0:
            raise InvalidRequest(
                f"the prompt is {len(prompt)} tokens, the context window of model "
                f"{request.model!r} is {self.context_length}",
                field="messages",
            )
        return min(asked, room)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        prompt = await asyncio.to_thread(self.prompt_ids, request)
        limit = self._limit(request, prompt)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        run = _Run()

        def emit(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under a cancelled run
                run.cancel.set()

        worker = threading.Thread(
            target=self._decode_loop,
            args=(prompt, limit, request, run, emit),
            name=f"hf-local-{request.request_id or id(run)}",
            daemon=True,
        )
        self.workers = [w for w in self.workers if w.is_alive()] + [worker]
        decoder = IncrementalDecoder(self.tokenizer)
        scanner = StopScanner(request.sampling.stop)
        used = 0
        finish: Any = "stop"
        worker.start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise UpstreamError(f"model {request.model!r} failed: {value}") from value
                if kind == "end":
                    finish = value
                    break
                run.credit.release()
                used += 1
                out = scanner.feed(decoder.push(value))
                if out:
                    yield ChatChunk(delta=out)
                if scanner.stopped:
                    finish = "stop"
                    break
            if not scanner.stopped:
                rest = scanner.feed(decoder.flush()) + scanner.flush()
                if rest:
                    yield ChatChunk(delta=rest)
            yield ChatChunk(
                finish_reason=finish,
                usage=Usage(prompt_tokens=len(prompt), completion_tokens=used),
            )
        finally:
            # Consumer done, stopped, disconnected or cancelled: the worker ends
            # before its next forward pass.
            run.cancel.set()

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        return await collect(request.model, self.stream(request))


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    found: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(v for v in value if isinstance(v, int))
    return frozenset(found)


def _import_hf() -> tuple[Any, Any]:
    try:
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})") from None
    return torch, transformers


def _check_directory(path: Path) -> None:
    if not path.is_dir():
        raise ConfigError(f"models (hf-local).path = {str(path)!r} is not a directory")
    missing = [
        what
        for what, present in (
            ("config.json", (path / "config.json").is_file()),
            ("*.safetensors", any(path.glob("*.safetensors"))),
            ("tokenizer.json", (path / "tokenizer.json").is_file()),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            f"models (hf-local).path = {str(path)!r} lacks {', '.join(missing)}; "
            "it must hold a transformers causal LM saved with safetensors and its tokenizer"
        )


def _load_tokenizer(transformers: Any, path: Path) -> Any:
    if (path / "tokenizer_config.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))


def _device(torch: Any, value: str) -> str:
    kind = value.split(":", 1)[0]
    if kind == "cpu":
        return value
    if kind == "cuda" and torch.cuda.is_available():
        return value
    if kind == "mps" and torch.backends.mps.is_available():
        return value
    raise ConfigError(
        f"models (hf-local).device = {value!r} is not available here; "
        "use cpu, cuda, cuda:<n> (with a CUDA build of torch) or mps"
    )


def build_hf_local(ctx: FactoryContext) -> HFLocalBackend:
    opts = ctx.read(OPTIONS)
    raw_path = opts.text("path")
    if not raw_path:
        raise ConfigError(
            "models (hf-local).path is required: a directory with config.json, "
            "*.safetensors and tokenizer.json"
        )
    dtype_name = opts.choice("dtype", "auto", DTYPES)
    threads = opts.integer("threads", 1, minimum=1)
    limit = opts.integer("max_tokens_limit", 4096, minimum=1)
    default_max = opts.integer("default_max_tokens", 256, minimum=1)
    device_name = opts.text("device", "cpu") or "cpu"
    path = Path(raw_path).expanduser()
    _check_directory(path)
    torch, transformers = _import_hf()
    device = _device(torch, device_name)
    # One intra-op thread by default: the gateway shares the machine with other work.
    torch.set_num_threads(threads)
    if dtype_name == "auto":
        dtype_name = "float32" if device == "cpu" else "float16"
    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    dtype_key = "dtype" if version >= (4, 56) else "torch_dtype"
    try:
        tokenizer = _load_tokenizer(transformers, path)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=True,
            **{dtype_key: getattr(torch, dtype_name)},
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"models (hf-local).path = {str(path)!r}: cannot load: {exc}") from None
    model.to(device)
    model.eval()
    limit = min(limit, int(getattr(model.config, "max_position_embeddings", limit) or limit))
    return HFLocalBackend(
        torch=torch,
        model=model,
        tokenizer=tokenizer,
        name=ctx.kind,
        source=path.name,
        device=device,
        dtype=dtype_name,
        max_output_tokens=limit,
        default_max_tokens=default_max,
    )
