"""CPU stand-in for TensorRT-LLM's ``preprocessing`` model (text -> token ids).

Same tensor names and shapes as
``triton_backend/all_models/inflight_batcher_llm/preprocessing`` in NVIDIA/TensorRT-LLM,
so the ensemble around it is the real one's shape. The tokenizer is a word-level
vocabulary read from ``tokenizer_dir`` (``deploy/triton/cpu/tokenizer/vocab.txt``);
words outside it get stable hashed ids past the vocabulary, which only count and
seed generation. Self-contained on purpose: the Triton Python stub runs it with
the Python on PATH, where lanewise need not be installed.
"""

from __future__ import annotations

import json
import os
import re
import zlib

import numpy as np
import triton_python_backend_utils as pb_utils

_WORD = re.compile(r"\S+")
OOV_BUCKETS = 50_000


def load_vocab(args: dict, params: dict) -> list[str]:
    tokenizer_dir = params.get("tokenizer_dir", "../tokenizer")
    if not os.path.isabs(tokenizer_dir):
        tokenizer_dir = os.path.join(args["model_repository"], tokenizer_dir)
    with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]


def string_param(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: string_param(config, k, "") for k in config.get("parameters", {})}
        self.vocab = load_vocab(args, {k: v for k, v in params.items() if v})
        self.ids = {w: i for i, w in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        out = []
        for word in _WORD.findall(text):
            known = self.ids.get(word.lower())
            if known is None:
                known = len(self.vocab) + zlib.crc32(word.encode()) % OOV_BUCKETS
            out.append(known)
        return out

    def word_list(self, phrases: list[str]) -> np.ndarray:
        """TensorRT-LLM's [2, N] layout: flat token ids, then end offsets padded with -1."""
        flat: list[int] = []
        offsets: list[int] = []
        for phrase in phrases:
            ids = self.encode(phrase)
            if not ids:
                continue
            flat.extend(ids)
            offsets.append(len(flat))
        if not flat:
            return np.array([[[0], [-1]]], dtype=np.int32)
        pad = len(flat) - len(offsets)
        return np.array([[flat, offsets + [-1] * pad]], dtype=np.int32)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            query = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy()
            text = query.reshape(-1)[0]
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            out_len = pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN").as_numpy()
            ids = self.encode(text) or [self.ids["<unk>"]]
            stops = self._phrases(request, "STOP_WORDS_DICT")
            bads = self._phrases(request, "BAD_WORDS_DICT")
            end_id = self._scalar(request, "END_ID", self.ids["</s>"])
            pad_id = self._scalar(request, "PAD_ID", self.ids["<pad>"])
            tensors = [
                pb_utils.Tensor("INPUT_ID", np.array([ids], dtype=np.int32)),
                pb_utils.Tensor("REQUEST_INPUT_LEN", np.array([[len(ids)]], dtype=np.int32)),
                pb_utils.Tensor("REQUEST_OUTPUT_LEN", out_len.reshape(1, 1).astype(np.int32)),
                pb_utils.Tensor("STOP_WORDS_IDS", self.word_list(stops)),
                pb_utils.Tensor("BAD_WORDS_IDS", self.word_list(bads)),
                pb_utils.Tensor("OUT_END_ID", np.array([[end_id]], dtype=np.int32)),
                pb_utils.Tensor("OUT_PAD_ID", np.array([[pad_id]], dtype=np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    @staticmethod
    def _phrases(request: object, name: str) -> list[str]:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return []
        out = []
        for item in tensor.as_numpy().reshape(-1):
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            if text:
                out.append(text)
        return out

    @staticmethod
    def _scalar(request: object, name: str, default: int) -> int:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else int(tensor.as_numpy().reshape(-1)[0])
