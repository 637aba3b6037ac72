"""``hf-local`` with a real (tiny, random-initialised) Llama saved to disk by the test.

No weights are downloaded: the test builds a seeded 2-layer Llama whose vocabulary
is the MiniLM ``tokenizer.json`` the retrieval lane ships (read as a data file),
saves model and tokenizer with safetensors, and loads them through the backend's
factory like any user's model directory. The text is gibberish; what is tested is
the machinery: determinism, seeding, streaming, limits, stops, cancellation and
the gateway end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lanewise.core.errors import ConfigError
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.core.types import ChatChunk, ChatRequest, Message, SamplingParams

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HAVE_TORCH = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("transformers") is not None
)
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH,
    reason="torch/transformers are not installed: `make test` installs the CPU torch wheel "
    "and the pinned transformers into .venv (the step after `uv sync` in its `test` target)",
)
REPO = Path(__file__).resolve().parents[3]
MINILM_TOKENIZER = (
    REPO
    / "packages/retrieval/src/lanewise/retrieval/embedders/assets"
    / "all-MiniLM-L6-v2.tokenizer.json"
)
MESSAGES = [
    Message(role="system", content="You are a tiny test model."),
    Message(role="user", content="Where does the batch pool run?"),
]
CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}[assistant]"
)


def request(**sampling: Any) -> ChatRequest:
    return ChatRequest(model="tiny", messages=list(MESSAGES), sampling=SamplingParams(**sampling))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_TORCH:
        pytest.skip(needs_torch.kwargs["reason"])
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(MINILM_TOKENIZER))
    raw.no_truncation()
    raw.no_padding()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="[SEP]",
        model_max_length=512,
    )
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=raw.get_vocab_size(),
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build(path: Path, **options: Any) -> Any:
    from lanewise.inference.hf_local import build_hf_local

    return build_hf_local(
        factory_context(ComponentConfig(kind="hf-local", path=str(path), **options))
    )


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Any:
    return build(model_dir, max_tokens_limit=256)


async def chunks_of(backend: Any, req: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in backend.stream(req)]


# -- without torch -------------------------------------------------------------------


def test_registering_the_backend_does_not_import_torch() -> None:
    code = (
        "import sys; import lanewise.inference.plugin, lanewise.inference.hf_local;"
        "from lanewise.inference.backends import register_backends;"
        "seen = {}; register_backends(lambda name, factory, **kw: seen.setdefault(name, factory));"
        "assert 'hf-local' in seen, seen; assert 'torch' not in sys.modules;"
        "assert 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ConfigError, match=r"install lanewise-inference\[hf\]"):
        build(tmp_path)


def test_bad_options_name_the_key(tmp_path: Path) -> None:
    from lanewise.inference.hf_local import build_hf_local

    with pytest.raises(ConfigError, match="path is required"):
        build_hf_local(factory_context(ComponentConfig(kind="hf-local")))
    with pytest.raises(ConfigError, match=r"lacks config.json, \*.safetensors, tokenizer.json"):
        build(tmp_path)
    with pytest.raises(ConfigError, match="dtype"):
        build(tmp_path, dtype="float8")
    with pytest.raises(ConfigError, match="is not an option"):
        build(tmp_path, colour="red")


def test_simple_template_is_documented_shape() -> None:
    from lanewise.inference.hf_local import simple_chat_prompt

    assert simple_chat_prompt(MESSAGES) == (
        "<|system|>\nYou are a tiny test model.\n"
        "<|user|>\nWhere does the batch pool run?\n<|assistant|>\n"
    )


# -- with the tiny Llama -----------------------------------------------------------------


@needs_torch
async def test_greedy_is_deterministic(backend: Any) -> None:
    first = await backend.generate(request(max_tokens=12))
    second = await backend.generate(request(max_tokens=12))
    assert first.text == second.text
    assert first.text.strip()
    assert first.usage == second.usage
    assert first.usage.prompt_tokens == len(backend.prompt_ids(request()))


@needs_torch
async def test_sampling_is_reproducible_with_a_seed(backend: Any) -> None:
    params = {"max_tokens": 16, "temperature": 1.0, "top_p": 0.95, "top_k": 200}
    a = await backend.generate(request(seed=7, **params))
    b = await backend.generate(request(seed=7, **params))
    c = await backend.generate(request(seed=8, **params))
    greedy = await backend.generate(request(max_tokens=16))
    assert a.text == b.text
    assert a.text != c.text
    assert a.text != greedy.text


@needs_torch
async def test_streaming_concatenates_to_the_whole_text(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = request(max_tokens=20, temperature=1.0, seed=11)
    picked: list[int] = []
    pick = backend._pick

    def recording_pick(*args: Any) -> int:
        picked.append(pick(*args))
        return picked[-1]

    monkeypatch.setattr(backend, "_pick", recording_pick)
    chunks = await chunks_of(backend, req)
    monkeypatch.undo()
    # Incremental decoding adds up to decoding all the ids at once.
    assert "".join(c.delta for c in chunks) == backend.tokenizer.decode(
        picked, skip_special_tokens=True
    )
    deltas = [c.delta for c in chunks if c.delta]
    assert len(deltas) > 1
    whole = await backend.generate(req)
    assert "".join(deltas) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason
    assert chunks[-1].usage == whole.usage
    assert all(c.finish_reason is None for c in chunks[:-1])


@needs_torch
async def test_max_tokens_gives_length_with_exact_count(backend: Any) -> None:
    before = backend.tokens_generated
    completion = await backend.generate(request(max_tokens=7))
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 7
    assert backend.tokens_generated - before == 7


@needs_torch
async def test_stop_string_ends_the_answer(backend: Any) -> None:
    full = (await backend.generate(request(max_tokens=20))).text
    words = full.split()
    assert len(words) > 3
    stop = words[2]
    cut = full.index(stop)
    stopped = await backend.generate(request(max_tokens=20, stop=(stop,)))
    assert stopped.text == full[:cut]
    assert stopped.finish_reason == "stop"
    assert stopped.usage.completion_tokens < 20


@needs_torch
async def test_closing_the_stream_stops_generation(backend: Any) -> None:
    from lanewise.inference.hf_local import LOOKAHEAD

    before = backend.tokens_generated
    stream = backend.stream(request(max_tokens=250))
    taken = 0
    async for chunk in stream:
        taken += 1 if chunk.delta else 0
        if taken == 3:
            break
    await stream.aclose()
    worker = backend.workers[-1]
    worker.join(timeout=60)
    assert not worker.is_alive()
    generated = backend.tokens_generated - before
    # The worker never runs more than LOOKAHEAD tokens ahead of the consumer, and it
    # ends before its next step once the stream is closed (far below max_tokens).
    assert generated <= 3 + LOOKAHEAD + 8
    assert generated < 250


@needs_torch
def test_describe_says_local_and_generative(backend: Any) -> None:
    info = backend.describe()["lanewise"]
    assert info["kind"] == "hf-local"
    assert info["generative"] is True
    assert info["local"] is True
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["chat_template"] == "lanewise-simple"
    assert info["max_tokens"] == 256
    assert "/" not in info["model"]  # never a local path in /v1/models


@needs_torch
def test_chat_template_from_the_tokenizer_config(model_dir: Path, tmp_path: Path) -> None:
    templated = tmp_path / "templated"
    shutil.copytree(model_dir, templated)
    config_file = templated / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_file.write_text(json.dumps(config))
    backend = build(templated)
    assert backend.describe()["lanewise"]["chat_template"] == "model"
    expected = backend.tokenizer.encode(
        "[system] You are a tiny test model. [user] Where does the batch pool run? [assistant]",
        add_special_tokens=False,
    )
    assert backend.prompt_ids(request()) == expected


@needs_torch
async def test_a_template_that_refuses_the_messages_is_a_400(
    model_dir: Path, tmp_path: Path
) -> None:
    from lanewise.core.errors import InvalidRequest

    strict = tmp_path / "strict"
    shutil.copytree(model_dir, strict)
    config_file = strict / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = (
        "{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}" + CHAT_TEMPLATE
    )
    config_file.write_text(json.dumps(config))
    with pytest.raises(InvalidRequest, match="System role not supported") as caught:
        await build(strict).generate(request(max_tokens=2))
    assert caught.value.extensions["field"] == "messages"


@needs_torch
def test_gateway_streams_through_the_openai_sdk(model_dir: Path, gateway: Any) -> None:
    import openai

    models = {"tiny": {"kind": "hf-local", "path": str(model_dir), "max_tokens_limit": 64}}
    with gateway(models=models) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        listed = {m.id: m for m in client.models.list().data}
        assert listed["tiny"].model_extra["lanewise"]["generative"] is True
        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Where does the batch pool run?"}],
            stream=True,
            max_tokens=6,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices]
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert len([p for p in pieces if p]) > 1
        assert [f for f in finishes if f] == ["length"]
        assert chunks[-1].usage.completion_tokens == 6
        assert chunks[-1].usage.prompt_tokens > 0
        with pytest.raises(openai.BadRequestError, match="max_tokens"):
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=65
            )


@needs_torch
async def test_concurrent_requests_match_sequential_ones(backend: Any) -> None:
    import asyncio

    alone = await backend.generate(request(max_tokens=10))
    sampled = await backend.generate(request(max_tokens=10, temperature=0.8, seed=3))
    together = await asyncio.gather(
        backend.generate(request(max_tokens=10)),
        backend.generate(request(max_tokens=10, temperature=0.8, seed=3)),
        backend.generate(request(max_tokens=10)),
    )
    assert [c.text for c in together] == [alone.text, sampled.text, alone.text]


@needs_torch
async def test_prompt_longer_than_the_context_is_a_400(backend: Any) -> None:
    from lanewise.core.errors import InvalidRequest

    long = ChatRequest(model="tiny", messages=[Message(role="user", content="pool " * 600)])
    with pytest.raises(InvalidRequest, match="context window") as caught:
        await backend.generate(long)
    assert caught.value.extensions["field"] == "messages"


@needs_torch
def test_client_disconnect_stops_generation(model_dir: Path, gateway: Any) -> None:
    import httpx

    tiny = build(model_dir, max_tokens_limit=400)
    with gateway(backends={"tiny": tiny}) as base:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Where does the batch pool run?"}],
            "stream": True,
            "max_tokens": 400,
        }
        with httpx.Client(base_url=base, timeout=120) as client:
            # Left alone, this prompt runs to max_tokens (the model never says EOS).
            whole = client.post("/v1/chat/completions", json={**body, "stream": False})
            assert whole.json()["choices"][0]["finish_reason"] == "length"
            before = tiny.tokens_generated
            seen = 0
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    seen += line.startswith("data: ")
                    if seen == 3:
                        break
        worker = tiny.workers[-1]
        worker.join(timeout=60)
        assert not worker.is_alive()
        # Stopped long before max_tokens: the gateway cancelled the stream on the
        # disconnect (what it had written before noticing is in socket buffers).
        assert tiny.tokens_generated - before < 400
