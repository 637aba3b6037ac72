"""Tensor contracts of the two TensorRT-LLM Triton layouts, as a per-model profile.

``ensemble``: the ``inflight_batcher_llm`` ensemble (preprocessing -> tensorrt_llm ->
postprocessing), or its ``tensorrt_llm_bls`` twin, which takes the same tensors
(NVIDIA/TensorRT-LLM ``triton_backend/all_models/inflight_batcher_llm/ensemble/config.pbtxt``).
Batched model: every tensor carries a leading batch dimension of 1.

``llmapi``: the LLM-API (PyTorch) model, one ``tensorrt_llm`` Python model configured
by ``model.yaml`` (``triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt``):
``text_input``, ``streaming`` and ``sampling_param_*`` in, ``text_output`` out, no
token counts, ``max_batch_size: 0`` (no batch dimension) and, by default,
``decoupled: False`` (so unary calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from lanewise.core.types import ChatRequest

Layout = Literal["ensemble", "llmapi"]
LAYOUTS: tuple[Layout, ...] = ("ensemble", "llmapi")


@dataclass(frozen=True)
class TritonProfile:
    layout: Layout = "ensemble"
    model: str = "ensemble"
    decoupled: bool = True
    batch_dim: bool = True
    seed_input: str = "seed"
    end_id: int | None = None
    pad_id: int | None = None
    default_max_tokens: int = 256
    max_tokens_limit: int | None = None
    stream_text: Literal["delta", "cumulative"] = "delta"

    @classmethod
    def for_layout(cls, layout: Layout, **overrides: Any) -> TritonProfile:
        if layout == "llmapi":
            base: dict[str, Any] = {
                "layout": "llmapi",
                "model": "tensorrt_llm",
                "decoupled": False,
                "batch_dim": False,
            }
        else:
            base = {"layout": "ensemble", "model": "ensemble", "decoupled": True, "batch_dim": True}
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    # -- request tensors ---------------------------------------------------------
    def tensors(self, prompt: str, request: ChatRequest, *, stream: bool) -> list[Tensor]:
        """The named numpy inputs for one generation (``Tensor`` = name, array, datatype)."""
        s = request.sampling
        max_tokens = s.max_tokens or self.default_max_tokens
        if self.layout == "llmapi":
            names = {
                "stream": "streaming",
                "max_tokens": "sampling_param_max_tokens",
                "temperature": "sampling_param_temperature",
                "top_p": "sampling_param_top_p",
                "top_k": "sampling_param_top_k",
                "seed": "sampling_param_seed",
                "stop": "sampling_param_stop",
                "exclude": "sampling_param_exclude_input_from_output",
            }
        else:
            names = {
                "stream": "stream",
                "max_tokens": "max_tokens",
                "temperature": "temperature",
                "top_p": "top_p",
                "top_k": "top_k",
                "seed": self.seed_input,
                "stop": "stop_words",
                "exclude": "exclude_input_in_output",
            }
        out = [
            self._text("text_input", [prompt]),
            self._scalar(names["max_tokens"], max_tokens, np.int32),
            self._scalar(names["stream"], stream, np.bool_),
            self._scalar(names["exclude"], True, np.bool_),
        ]
        if s.temperature is not None:
            out.append(self._scalar(names["temperature"], s.temperature, np.float32))
        if s.top_p is not None:
            out.append(self._scalar(names["top_p"], s.top_p, np.float32))
        if s.top_k is not None:
            out.append(self._scalar(names["top_k"], s.top_k, np.int32))
        if s.seed is not None:
            out.append(self._scalar(names["seed"], s.seed & 0xFFFFFFFFFFFFFFFF, np.uint64))
        if s.stop:
            out.append(self._text(names["stop"], list(s.stop)))
        if self.layout == "ensemble":
            out.append(self._scalar("return_num_input_tokens", True, np.bool_))
            out.append(self._scalar("return_num_output_tokens", True, np.bool_))
            if self.end_id is not None:
                out.append(self._scalar("end_id", self.end_id, np.int32))
            if self.pad_id is not None:
                out.append(self._scalar("pad_id", self.pad_id, np.int32))
        return out

    def max_tokens(self, request: ChatRequest) -> int:
        return request.sampling.max_tokens or self.default_max_tokens

    def _text(self, name: str, values: Sequence[str]) -> Tensor:
        array = np.array([v.encode("utf-8") for v in values], dtype=np.object_)
        return Tensor(name, array.reshape(1, -1) if self.batch_dim else array, "BYTES")

    def _scalar(self, name: str, value: Any, dtype: Any) -> Tensor:
        shape = (1, 1) if self.batch_dim else (1,)
        array = np.full(shape, value, dtype=dtype)
        return Tensor(name, array, _TRITON_TYPES[np.dtype(dtype).name])

    # -- response tensors ----------------------------------------------------------
    @staticmethod
    def text_of(array: npt.NDArray[Any] | None) -> str:
        if array is None:
            return ""
        parts = []
        for item in array.reshape(-1):
            parts.append(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
        return "".join(parts)

    @staticmethod
    def count_of(array: npt.NDArray[Any] | None) -> int | None:
        if array is None or array.size == 0:
            return None
        return int(array.reshape(-1)[0])

    def output_names(self) -> list[str]:
        if self.layout == "llmapi":
            return ["text_output"]
        return ["text_output", "num_input_tokens", "num_output_tokens"]


@dataclass(frozen=True)
class Tensor:
    name: str
    array: npt.NDArray[Any]
    datatype: str


_TRITON_TYPES = {
    "int32": "INT32",
    "uint64": "UINT64",
    "float32": "FP32",
    "bool": "BOOL",
}
