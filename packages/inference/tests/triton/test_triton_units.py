"""Pure parts of the Triton integration: profiles, prompts, counts, options, env, templates.

The GPU repository cannot be served here (no GPU, no TensorRT-LLM backend); these
tests check that filling its templates gives complete configs with the tensor
names the backend sends, which is what can be checked without one.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.errors import ConfigError
from lanewise.core.settings import ComponentConfig
from lanewise.core.testing import factory_context
from lanewise.core.types import ChatRequest, Message, SamplingParams
from lanewise.inference.triton.backend import completion_tokens, render_prompt
from lanewise.inference.triton.cli import triton
from lanewise.inference.triton.factory import build_triton
from lanewise.inference.triton.profiles import TritonProfile
from lanewise.inference.triton.repo import RepoValues, fill_repository, fill_text, gpu_templates
from lanewise.inference.triton.server import (
    check_numpy,
    default_cpu_repository,
    find_distribution,
    server_env,
)

CPU = default_cpu_repository()
GPU = CPU.parent / "gpu"


def request(**sampling: object) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message(role="user", content="hi")],
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
    )


def config_inputs(path: Path) -> set[str]:
    text = path.read_text()
    block = text[text.index("input [") : text.index("output [")]
    return set(re.findall(r'name: "([a-zA-Z_]+)"', block))


# -- profiles --------------------------------------------------------------------
def test_ensemble_profile_sends_batched_tensorrt_llm_names() -> None:
    profile = TritonProfile.for_layout("ensemble")
    tensors = profile.tensors(
        "p",
        request(max_tokens=5, temperature=0.5, top_p=0.9, top_k=3, seed=1, stop=("x",)),
        stream=True,
    )
    by_name = {t.name: t for t in tensors}
    assert set(by_name) == {
        "text_input", "max_tokens", "stream", "exclude_input_in_output", "temperature",
        "top_p", "top_k", "seed", "stop_words", "return_num_input_tokens",
        "return_num_output_tokens",
    }  # fmt: skip
    assert all(t.array.shape[0] == 1 and t.array.ndim == 2 for t in tensors)
    assert by_name["max_tokens"].datatype == "INT32"
    assert by_name["seed"].datatype == "UINT64"
    assert by_name["stream"].array.dtype == np.bool_
    # Every name exists in both the CPU ensemble and the GPU template.
    assert set(by_name) <= config_inputs(CPU / "ensemble" / "config.pbtxt")
    assert set(by_name) <= config_inputs(GPU / "ensemble" / "ensemble" / "config.pbtxt")


def test_llmapi_profile_sends_sampling_param_names_without_batch_dim() -> None:
    profile = TritonProfile.for_layout("llmapi")
    assert (profile.model, profile.decoupled, profile.batch_dim) == ("tensorrt_llm", False, False)
    tensors = profile.tensors("p", request(max_tokens=5, seed=2, stop=("a", "b")), stream=False)
    names = {t.name for t in tensors}
    assert names == {
        "text_input", "streaming", "sampling_param_max_tokens", "sampling_param_seed",
        "sampling_param_stop", "sampling_param_exclude_input_from_output",
    }  # fmt: skip
    assert all(t.array.ndim == 1 for t in tensors)
    assert names <= config_inputs(GPU / "llmapi" / "tensorrt_llm" / "config.pbtxt")
    assert names <= config_inputs(CPU / "llmapi" / "config.pbtxt")


def test_older_ensembles_can_take_random_seed() -> None:
    profile = TritonProfile.for_layout("ensemble", seed_input="random_seed")
    assert "random_seed" in {t.name for t in profile.tensors("p", request(seed=5), stream=False)}


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30))
def test_cumulative_counts_give_their_last_value(steps: list[int]) -> None:
    running, total = [], 0
    for step in steps:
        total += step + 1  # every response carries at least one token
        running.append(total)
    assert completion_tokens(running) == total


@given(st.integers(min_value=2, max_value=40))
def test_per_response_counts_are_summed(n: int) -> None:
    assert completion_tokens([1] * n) == n
    assert completion_tokens([]) == 0


def test_prompt_templates() -> None:
    messages = [Message(role="system", content="be brief"), Message(role="user", content="hi")]
    assert render_prompt(messages, "chatml").endswith("<|im_start|>assistant\n")
    assert "<|im_start|>system\nbe brief<|im_end|>" in render_prompt(messages, "chatml")
    assert render_prompt(messages, "plain") == "system: be brief\nuser: hi\nassistant:"
    assert render_prompt(messages, "last-user") == "hi"


# -- options ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "url is required"),
        ({"url": "http://h:8001"}, "without a scheme"),
        ({"url": "h:1", "urls": ["h:2"]}, "not both"),
        ({"urls": []}, "non-empty list"),
        ({"url": "h:1", "layout": "vllm"}, "ensemble, llmapi"),
        ({"url": "h:1", "flavour": 1}, "is not an option"),
        ({"url": "h:1", "decoupled": "yes"}, "true or false"),
        ({"url": "h:1", "max_tokens": 0}, "max_tokens must be"),
        ({"url": "h:1", "chat_template": "jinja"}, "chatml"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_triton(factory_context(ComponentConfig(kind="triton", **options)))


def test_one_replica_per_url() -> None:
    backend = build_triton(
        factory_context(ComponentConfig(kind="triton", urls=["a:1", "b:2"], layout="llmapi"))
    )
    assert [r.url for r in backend.replicas] == ["a:1", "b:2"]
    assert backend.replicas[0].profile.model == "tensorrt_llm"
    assert backend.describe()["lanewise"]["urls"] == ["a:1", "b:2"]


# -- the bundled server's environment(the traps in docs/triton.md) ------------------
def test_server_env_has_libdir_pytriton_libs_and_this_python_first() -> None:
    dist = find_distribution()
    env = server_env(dist, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == sysconfig.get_config_var("LIBDIR")
    assert str(dist.libs) in libs
    assert libs[-1] == "/opt/x"
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert dist.binary.is_file()
    assert dist.stub().is_file()
    check_numpy()  # numpy < 2 is installed, as the stub needs


# -- GPU templates ---------------------------------------------------------------
def test_every_gpu_placeholder_is_filled(tmp_path: Path) -> None:
    for layout in ("ensemble", "llmapi"):
        out = tmp_path / layout
        written = fill_repository(layout, out, RepoValues(tokenizer_dir="/tok", engine_dir="/eng"))
        assert written
        for path in written:
            assert "${" not in path.read_text(), path
        assert (out / "tensorrt_llm" / "1").is_dir()


def test_ensemble_repo_has_inflight_batching_kv_cache_and_decoupled(tmp_path: Path) -> None:
    values = RepoValues(
        tokenizer_dir="/models/tok",
        engine_dir="/models/engine",
        triton_max_batch_size=32,
        kv_cache_free_gpu_mem_fraction=0.8,
        enable_kv_cache_reuse=True,
        batch_scheduler_policy="max_utilization",
    )
    fill_repository("ensemble", tmp_path, values)
    trt = (tmp_path / "tensorrt_llm" / "config.pbtxt").read_text()
    assert 'backend: "tensorrtllm"' in trt
    assert "decoupled: true" in trt
    assert "max_batch_size: 32" in trt
    assert 'key: "gpt_model_type" value: { string_value: "inflight_fused_batching" }' in trt
    assert 'key: "gpt_model_path" value: { string_value: "/models/engine" }' in trt
    assert 'string_value: "0.8"' in trt
    assert 'key: "enable_kv_cache_reuse" value: { string_value: "true" }' in trt
    assert 'string_value: "max_utilization"' in trt
    pre = (tmp_path / "preprocessing" / "config.pbtxt").read_text()
    assert 'string_value: "/models/tok"' in pre
    ens = (tmp_path / "ensemble" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ens
    assert "max_batch_size: 32" in ens


def test_llmapi_repo_writes_model_yaml(tmp_path: Path) -> None:
    fill_repository(
        "llmapi", tmp_path, RepoValues(tokenizer_dir="/tok", model_dir="/ckpt", decoupled_mode=True)
    )
    yaml = (tmp_path / "tensorrt_llm" / "1" / "model.yaml").read_text()
    assert "model: /ckpt" in yaml
    assert "decoupled: true" in yaml
    assert "max_batch_size: 0" in yaml


def test_filling_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$\{nope\}"):
        fill_text("a ${nope} b", {}, source="t")
    with pytest.raises(ConfigError, match="--engine-dir is required"):
        fill_repository("ensemble", tmp_path / "a", RepoValues(tokenizer_dir="/t"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("x")
    with pytest.raises(ConfigError, match="--force"):
        fill_repository("llmapi", tmp_path / "b", RepoValues(tokenizer_dir="/t"))
    assert gpu_templates("ensemble").name == "ensemble"


def test_cli_repo_fills_and_copies_model_code(tmp_path: Path) -> None:
    code = tmp_path / "inflight_batcher_llm"
    for model in ("preprocessing", "postprocessing"):
        (code / model / "1").mkdir(parents=True)
        (code / model / "1" / "model.py").write_text(f"# {model} from TensorRT-LLM\n")
    out = tmp_path / "repo"
    result = CliRunner().invoke(
        triton,
        [
            "repo", "--engine-dir", str(tmp_path / "engine"), "--tokenizer-dir",
            str(tmp_path / "tok"), "--out", str(out), "--max-batch-size", "8",
            "--no-decoupled", "--model-code-dir", str(code),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "decoupled: false" in (out / "tensorrt_llm" / "config.pbtxt").read_text()
    assert (out / "preprocessing" / "1" / "model.py").read_text().startswith("# preprocessing")
    again = CliRunner().invoke(
        triton, ["repo", "--layout", "llmapi", "--tokenizer-dir", "t", "--out", str(out)]
    )
    assert again.exit_code != 0
    assert "--force" in again.output
