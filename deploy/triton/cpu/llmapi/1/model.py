"""CPU stand-in for TensorRT-LLM's LLM-API model: the toy LM, text in and text out.

Same generation rule as ``deploy/triton/cpu/tensorrt_llm`` (a counter-based hash
of prompt ids, seed and position over the word vocabulary in ``tokenizer_dir``),
behind the LLM-API model's tensors (``text_input``, ``sampling_param_*`` ->
``text_output``, ``finish_reason``). Not decoupled, like the LLM-API model.yaml
default. Self-contained: no lanewise import (the stub's Python may lack it).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib

import numpy as np
import triton_python_backend_utils as pb_utils

FIRST_WORD_ID = 4
OOV_BUCKETS = 50_000
_WORD = re.compile(r"\S+")


def _param(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


def _mix(*values: int) -> int:
    return zlib.crc32(np.array(values, dtype=np.int64).tobytes())


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        tokenizer_dir = _param(config, "tokenizer_dir", "../tokenizer")
        if not os.path.isabs(tokenizer_dir):
            tokenizer_dir = os.path.join(args["model_repository"], tokenizer_dir)
        with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as fh:
            self.vocab = [line.rstrip("\n") for line in fh if line.strip()]
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        delay = os.environ.get("LANEWISE_TRITON_TOKEN_DELAY_MS") or _param(
            config, "token_delay_ms", "0"
        )
        self.token_delay_s = float(delay) / 1000.0
        self.events_path = os.environ.get("LANEWISE_TRITON_EVENTS") or _param(
            config, "events_path", ""
        )

    def encode(self, text: str) -> list[int]:
        out = []
        for word in _WORD.findall(text):
            known = self.ids.get(word.lower())
            if known is None:
                known = len(self.vocab) + zlib.crc32(word.encode()) % OOV_BUCKETS
            out.append(known)
        return out

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request: object) -> object:
        if self._scalar(request, "streaming", False):
            error = pb_utils.TritonError("Streaming is only supported in decoupled mode.")
            return pb_utils.InferenceResponse(error=error)
        text = "".join(self._strings(request, "text_input"))
        ids = np.array(self.encode(text) or [2], dtype=np.int64)
        max_tokens = int(self._scalar(request, "sampling_param_max_tokens", 16))
        seed = int(self._scalar(request, "sampling_param_seed", 0))
        top_k = int(self._scalar(request, "sampling_param_top_k", 0))
        stops = [self.encode(s) for s in self._strings(request, "sampling_param_stop")]
        stops = [s for s in stops if s]
        words = len(self.vocab) - FIRST_WORD_ID
        if top_k > 0:
            words = min(words, top_k)
        prompt_hash = zlib.crc32(ids.tobytes())
        out: list[int] = []
        reason = "length"
        for position in range(max(max_tokens, 0)):
            if request.is_cancelled():
                reason = "cancelled"
                break
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            out.append(FIRST_WORD_ID + _mix(prompt_hash, seed, position) % words)
            stop = next((s for s in stops if out[-len(s) :] == s), None)
            if stop is not None:
                del out[-len(stop) :]
                reason = "stop"
                break
        self._record(request.request_id(), reason, len(out), _traceparent(request))
        text_out = "".join(" " + self.vocab[i] for i in out)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("text_output", np.array([text_out.encode()], dtype=np.object_)),
                pb_utils.Tensor("finish_reason", np.array([reason.encode()], dtype=np.object_)),
            ]
        )

    def _record(
        self, request_id: str, outcome: str, produced: int, traceparent: str | None
    ) -> None:
        if self.events_path:
            line = json.dumps(
                {
                    "request_id": request_id,
                    "outcome": outcome,
                    "tokens": produced,
                    "t": time.time(),
                    "traceparent": traceparent,
                }
            )
            with open(self.events_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    @staticmethod
    def _scalar(request: object, name: str, default: object) -> object:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy().reshape(-1)[0].item()

    @staticmethod
    def _strings(request: object, name: str) -> list[str]:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return []
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in tensor.as_numpy().reshape(-1)
        ]


def _traceparent(request: object) -> str | None:
    """The caller's W3C ``traceparent``: Triton passes gRPC headers matching
    ``--grpc-header-forward-pattern`` to the model as request parameters."""
    try:
        found = json.loads(request.parameters() or "{}").get("traceparent")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
