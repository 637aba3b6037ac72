"""Chat backend on Triton (TensorRT-LLM contract) over ``tritonclient.grpc.aio``.

One gRPC channel (one HTTP/2 connection) per replica carries every request to
it. A streamed generation is its own ``ModelStreamInfer`` call on that channel,
i.e. one multiplexed HTTP/2 stream, because gRPC cancels per call: were many
generations sharing one bidirectional stream, a client that went away could
only be stopped by cancelling everybody's stream. Cancelling the call makes
Triton cancel exactly that request (``request.is_cancelled()`` in the model).
Models that are not decoupled get unary ``ModelInfer`` calls.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc  # type: ignore[import-untyped]
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from lanewise.core.aio import LoopLocal
from lanewise.core.context import trace_headers
from lanewise.core.errors import (
    InvalidRequest,
    LanewiseError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Message, Usage
from lanewise.inference.stops import StopScanner
from lanewise.inference.triton.profiles import Tensor, TritonProfile
from tritonclient.utils import InferenceServerException

CHAT_TEMPLATES = ("chatml", "plain", "last-user")
_WORDS = re.compile(r"\S+")


def render_prompt(messages: Sequence[Message], template: str) -> str:
    """Messages -> the single ``text_input`` string TensorRT-LLM takes."""
    if template == "last-user":
        users = [m.content for m in messages if m.role == "user"]
        return users[-1] if users else (messages[-1].content if messages else "")
    if template == "plain":
        lines = [f"{m.role}: {m.content}" for m in messages]
        return "\n".join([*lines, "assistant:"])
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join([*parts, "<|im_start|>assistant\n"])


def completion_tokens(reported: Sequence[int]) -> int:
    """Output tokens from per-response ``num_output_tokens`` values.

    Cumulative counts (each response reports the running total) and per-response
    counts both occur; a non-decreasing series that ends at least at its length
    is cumulative.
    """
    if not reported:
        return 0
    cumulative = all(b >= a for a, b in itertools.pairwise(reported)) and reported[-1] >= len(
        reported
    )
    return reported[-1] if cumulative else sum(reported)


class TritonReplica:
    """One Triton server (one URL) serving one model under a profile."""

    def __init__(
        self,
        url: str,
        profile: TritonProfile,
        *,
        name: str = "triton",
        chat_template: str = "chatml",
        timeout_s: float = 120.0,
        check_timeout_s: float = 1.5,
    ) -> None:
        self.url = url
        self.profile = profile
        self.name = name
        self.chat_template = chat_template
        self.timeout_s = timeout_s
        self.check_timeout_s = check_timeout_s
        self._client = LoopLocal(lambda: grpcaio.InferenceServerClient(self.url))

    @property
    def client(self) -> grpcaio.InferenceServerClient:
        return self._client.get()

    async def aclose(self) -> None:
        client = self._client.take()
        if client is not None:
            await client.close()

    # -- health ---------------------------------------------------------------------
    async def check(self) -> str | None:
        try:
            if not await self.client.is_server_ready(client_timeout=self.check_timeout_s):
                return f"triton at {self.url} is not ready"
            if not await self.client.is_model_ready(
                self.profile.model, client_timeout=self.check_timeout_s
            ):
                return f"model {self.profile.model!r} is not ready on triton at {self.url}"
        except InferenceServerException as exc:
            return f"triton at {self.url} unreachable: {_short(exc)}"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "lanewise": {
                "backend": "triton",
                "url": self.url,
                "triton_model": self.profile.model,
                "layout": self.profile.layout,
                "max_tokens_limit": self.profile.max_tokens_limit,
            }
        }

    # -- generation ------------------------------------------------------------------
    async def generate(self, request: ChatRequest) -> ChatCompletion:
        text: list[str] = []
        finish = "stop"
        usage = Usage()
        async for chunk in self.stream(request):
            text.append(chunk.delta)
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        return ChatCompletion(
            model=request.model,
            text="".join(text),
            finish_reason=finish,  # type: ignore[arg-type]
            usage=usage,
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._validate(request)
        if self.profile.decoupled:
            return self._stream_decoupled(request)
        return self._unary(request)

    def _validate(self, request: ChatRequest) -> None:
        limit = self.profile.max_tokens_limit
        wanted = request.sampling.max_tokens
        if limit is not None and wanted is not None and wanted > limit:
            raise InvalidRequest(
                f"max_tokens {wanted} is above model {request.model!r}'s limit of {limit}",
                field="max_tokens",
                limit=limit,
            )

    def _inputs(self, request: ChatRequest, *, stream: bool) -> list[grpcclient.InferInput]:
        prompt = render_prompt(request.messages, self.chat_template)
        return [_infer_input(t) for t in self.profile.tensors(prompt, request, stream=stream)]

    def _outputs(self) -> list[grpcclient.InferRequestedOutput]:
        return [grpcclient.InferRequestedOutput(n) for n in self.profile.output_names()]

    def _request_id(self, request: ChatRequest) -> str:
        # Unique per Triton request: the CPU models key cancellation on it, and
        # the TensorRT-LLM backend uses it to find the request to stop.
        return f"{request.request_id or 'lw'}-{uuid.uuid4().hex[:12]}"

    async def _unary(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        deadline = request.deadline_s or self.timeout_s
        try:
            result = await self.client.infer(
                self.profile.model,
                self._inputs(request, stream=False),
                outputs=self._outputs(),
                request_id=self._request_id(request),
                client_timeout=deadline,
                headers=trace_headers() or None,
            )
        except InferenceServerException as exc:
            raise self._error(exc, deadline) from None
        state = _Generation(self.profile, request)
        delta = state.feed(result)
        if delta:
            yield ChatChunk(delta=delta)
        yield state.final()

    async def _stream_decoupled(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        deadline = request.deadline_s or self.timeout_s
        message = {
            "model_name": self.profile.model,
            "inputs": self._inputs(request, stream=request.stream),
            "outputs": self._outputs(),
            "request_id": self._request_id(request),
        }

        async def one_request() -> AsyncIterator[dict[str, Any]]:
            # Ending the request iterator half-closes the call, so Triton ends
            # the stream after this request's final response.
            yield message

        # gRPC metadata: Triton forwards what --grpc-header-forward-pattern matches to the
        # model as request parameters (and its own tracing reads traceparent).
        call = self.client.stream_infer(
            one_request(), stream_timeout=deadline, headers=trace_headers() or None
        )
        state = _Generation(self.profile, request)
        done = False
        try:
            async for result, error in call:
                if error is not None:
                    raise UpstreamError(
                        f"triton model {self.profile.model!r} at {self.url} failed mid-stream: "
                        f"{_short(error)}",
                        backend=self.name,
                        url=self.url,
                    )
                delta = state.feed(result)
                if delta:
                    yield ChatChunk(delta=delta)
                if state.scanner.stopped:
                    break  # a client-side stop string ended it; cancel the rest
            else:
                done = True
            tail = state.scanner.flush()
            if tail:
                yield ChatChunk(delta=tail)
            yield state.final()
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_error(exc, deadline) from None
        except InferenceServerException as exc:
            raise self._error(exc, deadline) from None
        finally:
            if not done:
                # Consumer went away (aclose), a stop string or an error: stop the
                # generation on the server instead of letting it run to max_tokens.
                call.cancel()

    # -- errors ------------------------------------------------------------------
    def _rpc_error(self, exc: grpc.aio.AioRpcError, deadline: float) -> LanewiseError:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return UpstreamTimeout(
                f"triton at {self.url} did not finish within {deadline:g}s",
                deadline_s=deadline,
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(
                f"triton at {self.url} is unavailable: {exc.details()}",
                retry_after_s=1.0,
                backend=self.name,
            )
        return UpstreamError(
            f"triton at {self.url} failed: {code.name}: {exc.details()}",
            backend=self.name,
            url=self.url,
        )

    def _error(self, exc: InferenceServerException, deadline: float) -> LanewiseError:
        status = str(exc.status() or "")
        if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in str(exc):
            return UpstreamTimeout(
                f"triton at {self.url} did not finish within {deadline:g}s",
                deadline_s=deadline,
            )
        if "UNAVAILABLE" in status:
            return Unavailable(
                f"triton at {self.url} is unavailable: {_short(exc)}",
                retry_after_s=1.0,
                backend=self.name,
            )
        return UpstreamError(
            f"triton at {self.url} failed: {_short(exc)}", backend=self.name, url=self.url
        )


class _Generation:
    """Text, stop strings and token counts of one generation as responses arrive."""

    def __init__(self, profile: TritonProfile, request: ChatRequest) -> None:
        self.profile = profile
        self.request = request
        self.scanner = StopScanner(request.sampling.stop)
        self.text = ""
        self.input_tokens: int | None = None
        self.output_counts: list[int] = []

    def feed(self, result: Any) -> str:
        piece = self.profile.text_of(result.as_numpy("text_output"))
        if self.profile.stream_text == "cumulative":
            piece, self.text = piece[len(self.text) :], piece
        else:
            self.text += piece
        if self.profile.layout == "ensemble":
            n_in = self.profile.count_of(result.as_numpy("num_input_tokens"))
            n_out = self.profile.count_of(result.as_numpy("num_output_tokens"))
            if n_in is not None:
                self.input_tokens = n_in
            if n_out is not None:
                self.output_counts.append(n_out)
        return self.scanner.feed(piece)

    def final(self) -> ChatChunk:
        if self.output_counts:
            produced = completion_tokens(self.output_counts)
        else:
            produced = len(_WORDS.findall(self.text))  # estimate: no count from the model
        prompt = self.input_tokens
        if prompt is None:
            prompt = sum(len(_WORDS.findall(m.content)) for m in self.request.messages)
        length = produced >= self.profile.max_tokens(self.request) and not self.scanner.stopped
        return ChatChunk(
            finish_reason="length" if length else "stop",
            usage=Usage(prompt_tokens=prompt, completion_tokens=produced),
        )


class TritonBackend:
    """The ``triton`` backend: one or more replicas of the same model.

    Requests go round-robin over the replicas (health-aware pools and failover
    live in the pool layer, which can also use each ``replicas[i]`` directly);
    ``check()`` names every replica that is down.
    """

    def __init__(self, replicas: Sequence[TritonReplica], *, name: str = "triton") -> None:
        if not replicas:
            raise ValueError("at least one replica")
        self.replicas = list(replicas)
        self.name = name
        self._next = itertools.cycle(range(len(self.replicas)))

    def _pick(self) -> TritonReplica:
        return self.replicas[next(self._next)]

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        return await self._pick().generate(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self._pick().stream(request)

    async def check(self) -> str | None:
        results = await asyncio.gather(*(r.check() for r in self.replicas))
        failing = [why for why in results if why is not None]
        if not failing:
            return None
        return f"{len(failing)}/{len(self.replicas)} replica(s) down: " + "; ".join(failing)

    def describe(self) -> dict[str, Any]:
        first = self.replicas[0].describe()
        first["lanewise"]["urls"] = [r.url for r in self.replicas]
        del first["lanewise"]["url"]
        return first

    async def aclose(self) -> None:
        await asyncio.gather(*(r.aclose() for r in self.replicas))


def _infer_input(tensor: Tensor) -> grpcclient.InferInput:
    item = grpcclient.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
    item.set_data_from_numpy(tensor.array)
    return item


def _short(exc: BaseException) -> str:
    message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    return str(message or exc).strip().splitlines()[0][:300] if str(message or exc) else "error"
