"""CPU stand-in for TensorRT-LLM's ``postprocessing`` model (token ids -> text).

Same tensor names as ``triton_backend/all_models/inflight_batcher_llm/postprocessing``
in NVIDIA/TensorRT-LLM. In streaming mode it sees only the newly generated ids of
each response, exactly as the real one does, so each decoded token carries its own
leading space. Self-contained: no lanewise import (the stub's Python may lack it).
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import triton_python_backend_utils as pb_utils

CANCEL_DIR_ENV = "LANEWISE_TRITON_CANCEL_DIR"
SPECIAL = {"<pad>", "</s>", "<unk>", "<lanewise:fail-midstream>"}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        value = config.get("parameters", {}).get("tokenizer_dir", {}).get("string_value", "")
        tokenizer_dir = value if value and not value.startswith("${") else "../tokenizer"
        if not os.path.isabs(tokenizer_dir):
            tokenizer_dir = os.path.join(args["model_repository"], tokenizer_dir)
        with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as fh:
            self.vocab = [line.rstrip("\n") for line in fh if line.strip()]
        self.cancel_dir = os.environ.get(CANCEL_DIR_ENV) or os.path.join(
            tempfile.gettempdir(), "lanewise-toy-lm-cancel"
        )
        os.makedirs(self.cancel_dir, exist_ok=True)

    def decode(self, ids: np.ndarray) -> str:
        words = []
        for i in ids.reshape(-1):
            i = int(i)
            if 0 <= i < len(self.vocab) and self.vocab[i] not in SPECIAL:
                words.append(" " + self.vocab[i])
        return "".join(words)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            if request.is_cancelled():
                # Triton's ensemble scheduler cancels the *next* step of a cancelled
                # ensemble request, never the step still running (core PR #263,
                # server issue #6739), so the tensorrt_llm step would generate on.
                # Tell it through a marker named by the request id it shares.
                self.mark_cancelled(request.request_id())
                error = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH")
            # tokens: [batch, beam, n]; only beam 0 (no beam search here).
            row = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])[0, 0]
            if lengths is not None:
                row = row[: int(lengths.as_numpy().reshape(-1)[0])]
            text = np.array([[self.decode(row).encode("utf-8")]], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", text)]))
        return responses

    def mark_cancelled(self, request_id: str) -> None:
        if request_id and "/" not in request_id and not request_id.startswith("."):
            with open(os.path.join(self.cancel_dir, request_id), "w", encoding="utf-8"):
                pass
