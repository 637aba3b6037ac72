"""CPU stand-in for the ``tensorrt_llm`` model: a small deterministic local LM.

It takes and returns the tensors of the real TensorRT-LLM backend's
``tensorrt_llm`` model (``triton_backend/all_models/inflight_batcher_llm/tensorrt_llm``
in NVIDIA/TensorRT-LLM): ``input_ids``/``input_lengths``/``request_output_len`` and
the sampling inputs in, ``output_ids``/``sequence_length``/``num_input_tokens``/
``num_output_tokens`` out, decoupled so a stream gets one response per token.

No weights: the next token comes from a counter-based hash of the prompt ids,
the seed and the position, so the same request always yields the same text
(and a different ``seed`` a different one). Per-token delay
(``token_delay_ms``) makes streaming and cancellation observable; every request
that ends appends one JSON line to ``events_path`` (outcome ``completed``,
``stopped``, ``cancelled`` or ``failed``, with the tokens produced) so tests can
prove server-side that a cancelled generation really stopped. Both parameters
can be overridden by ``LANEWISE_TRITON_TOKEN_DELAY_MS`` / ``LANEWISE_TRITON_EVENTS``.

Self-contained on purpose: the Triton Python stub runs it with the Python on PATH,
which need not have lanewise installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

FIRST_WORD_ID = 4  # ids 0..3 are <pad>, </s>, <unk>, <lanewise:fail-midstream>
FAIL_ID = 3
FAIL_AFTER_TOKENS = 3
CANCEL_DIR_ENV = "LANEWISE_TRITON_CANCEL_DIR"


def _param(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value and not value.startswith("${") else default


def _safe(request_id: str) -> bool:
    return bool(request_id) and "/" not in request_id and not request_id.startswith(".")


def _mix(*values: int) -> int:
    """A stable 32-bit hash of integers (crc32 is the same in every Python)."""
    return zlib.crc32(np.array(values, dtype=np.int64).tobytes())


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", "tensorrt_llm")
        tokenizer_dir = _param(config, "tokenizer_dir", "../tokenizer")
        if not os.path.isabs(tokenizer_dir):
            tokenizer_dir = os.path.join(args["model_repository"], tokenizer_dir)
        with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as fh:
            self.vocab_size = sum(1 for line in fh if line.strip())
        delay = os.environ.get("LANEWISE_TRITON_TOKEN_DELAY_MS") or _param(
            config, "token_delay_ms", "0"
        )
        self.token_delay_s = float(delay) / 1000.0
        self.events_path = os.environ.get("LANEWISE_TRITON_EVENTS") or _param(
            config, "events_path", ""
        )
        # Where postprocessing marks ensemble requests whose client went away.
        self.cancel_dir = os.environ.get(CANCEL_DIR_ENV) or os.path.join(
            tempfile.gettempdir(), "lanewise-toy-lm-cancel"
        )
        os.makedirs(self.cancel_dir, exist_ok=True)
        self.fault_injection = _param(config, "enable_fault_injection", "false") == "true"
        workers = int(_param(config, "max_concurrent_requests", "256"))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="toy-lm")
        self.events_lock = threading.Lock()
        # One thread at a time talks to the stub: concurrent sends from worker
        # threads crashed the 2.51 Python backend (SIGSEGV, boost lock_exception).
        # TensorRT-LLM's llmapi model likewise sends from a single response thread.
        self.stub_lock = threading.Lock()
        self.outcomes = None
        try:
            # Kept on self: Triton invalidates a Metric once its family is collected.
            self.metric_family = family = pb_utils.MetricFamily(
                name="lanewise_toy_lm_requests_total",
                description="Generations by outcome (completed, stopped, cancelled, failed)",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self.outcomes = {
                o: family.Metric(labels={"model": self.model_name, "outcome": o})
                for o in ("completed", "stopped", "cancelled", "failed")
            }
        except Exception:  # custom metrics are a bonus; the events file is the record
            self.outcomes = None

    def execute(self, requests: list) -> None:
        # Decoupled: return at once and stream from worker threads, so one instance
        # serves many concurrent generations (in-flight, like the real backend).
        for request in requests:
            self.pool.submit(self._generate, request)
        return None

    def finalize(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)

    # -- one request ------------------------------------------------------------
    def _generate(self, request: object) -> None:
        sender = request.get_response_sender()
        request_id = request.request_id()
        marker = os.path.join(self.cancel_dir, request_id) if _safe(request_id) else ""
        progress: list[int] = []
        outcome = "failed"
        try:
            outcome = self._run(request, sender, marker, progress)
        except Exception as exc:  # report, never leave the stream open
            error = pb_utils.TritonError(f"toy LM failed: {exc}")
            self._send(
                sender,
                pb_utils.InferenceResponse(error=error),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        try:
            self._record(request_id, outcome, len(progress), _traceparent(request))
            if marker:
                with contextlib.suppress(OSError):
                    os.unlink(marker)
        except Exception as exc:  # a lost record must not kill the worker thread
            print(f"lanewise toy LM: could not record {outcome!r}: {exc!r}", file=sys.stderr)

    def _run(self, request: object, sender: object, marker: str, out: list[int]) -> str:
        ids = self._tensor(request, "input_ids").reshape(-1).astype(np.int64)
        max_tokens = int(self._tensor(request, "request_output_len").reshape(-1)[0])
        streaming = bool(self._scalar(request, "streaming", False))
        seed = int(self._scalar(request, "seed", self._scalar(request, "random_seed", 0)))
        top_k = int(self._scalar(request, "runtime_top_k", 0))
        end_id = int(self._scalar(request, "end_id", 1))
        stops = self._word_list(request, "stop_words_list")
        bans = {tuple(b) for b in self._word_list(request, "bad_words_list") if len(b) == 1}
        words = self.vocab_size - FIRST_WORD_ID
        if top_k > 0:
            words = min(words, top_k)  # top_k narrows the choice, as sampling would
        prompt_hash = zlib.crc32(ids.tobytes())
        fail = self.fault_injection and FAIL_ID in ids
        for position in range(max(max_tokens, 0)):
            if self._cancelled(request) or (marker and os.path.exists(marker)):
                self._send(sender, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return "cancelled"
            if fail and position == FAIL_AFTER_TOKENS:
                raise RuntimeError("injected failure mid-stream (<lanewise:fail-midstream>)")
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            token = FIRST_WORD_ID + _mix(prompt_hash, seed, position) % words
            for attempt in range(4):
                if (token,) not in bans:
                    break
                token = FIRST_WORD_ID + _mix(prompt_hash, seed, position, attempt) % words
            if token == end_id:
                break
            out.append(token)
            stop = next((s for s in stops if out[-len(s) :] == s), None)
            if stop is not None:
                # TensorRT-LLM leaves the stop sequence out of the text it returns.
                del out[-len(stop) :]
                self._final(sender, ids, out, streaming, last=[])
                return "stopped"
            if streaming:
                self._send(sender, self._response(ids, out, [token]))
        self._final(sender, ids, out, streaming, last=[])
        return "completed"

    def _final(
        self, sender: object, ids: np.ndarray, out: list, streaming: bool, last: list
    ) -> None:
        if streaming:
            self._send(sender, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            self._send(
                sender,
                self._response(ids, out, out),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    @staticmethod
    def _response(ids: np.ndarray, out: list, tokens: list) -> object:
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("output_ids", np.array([[tokens]], dtype=np.int32)),
                pb_utils.Tensor("sequence_length", np.array([[len(tokens)]], dtype=np.int32)),
                pb_utils.Tensor("num_input_tokens", np.array([[len(ids)]], dtype=np.int32)),
                pb_utils.Tensor("num_output_tokens", np.array([[len(out)]], dtype=np.int32)),
            ]
        )

    def _cancelled(self, request: object) -> bool:
        with self.stub_lock:
            return bool(request.is_cancelled())

    def _send(self, sender: object, *args: object, **kwargs: object) -> None:
        with self.stub_lock:
            sender.send(*args, **kwargs)

    def _record(
        self, request_id: str, outcome: str, produced: int, traceparent: str | None
    ) -> None:
        line = json.dumps(
            {
                "request_id": request_id,
                "outcome": outcome,
                "tokens": produced,
                "t": time.time(),
                "traceparent": traceparent,
            }
        )
        with self.stub_lock:
            pb_utils.Logger.log_info(f"lanewise toy LM request {request_id!r}: {line}")
        if self.events_path:
            with self.events_lock, open(self.events_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        if self.outcomes is not None:
            with self.stub_lock:
                self.outcomes[outcome].increment(1)

    # -- tensor helpers -----------------------------------------------------------
    @staticmethod
    def _tensor(request: object, name: str) -> np.ndarray:
        return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

    @staticmethod
    def _scalar(request: object, name: str, default: object) -> object:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy().reshape(-1)[0].item()

    @staticmethod
    def _word_list(request: object, name: str) -> list[list[int]]:
        """Decode TensorRT-LLM's [2, N] word list: flat ids, then end offsets (-1 padded)."""
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return []
        data = tensor.as_numpy().reshape(2, -1)
        flat, offsets = data[0].tolist(), [o for o in data[1].tolist() if o >= 0]
        out, start = [], 0
        for end in offsets:
            if end > start:
                out.append(flat[start:end])
            start = end
        return out


def _traceparent(request: object) -> str | None:
    """The caller's W3C ``traceparent``: Triton passes gRPC headers matching
    ``--grpc-header-forward-pattern`` to the model as request parameters."""
    try:
        found = json.loads(request.parameters() or "{}").get("traceparent")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
