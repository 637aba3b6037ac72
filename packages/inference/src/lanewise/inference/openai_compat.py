"""``openai``: any server that speaks OpenAI's ``/v1/chat/completions``.

vLLM, trtllm-serve, NIM, SGLang, another lanewise gateway. One pooled client
per backend: aiohttp for HTTP/1.1 (``transport = "aiohttp"``, the default), or
httpx (``transport = "httpx"``; always with ``http2 = true``, which needs ``h2``:
``lanewise-inference[http2]``). Every call runs under a deadline
(the request's, else ``timeout_s``, else ``gateway.request_timeout_s``).
Upstream failures become lanewise errors, so the gateway answers with the
right status: unreachable -> 503, deadline -> 504, upstream 4xx -> 400/404/429,
upstream 5xx -> 502. Closing the stream early (client disconnect) closes the
HTTP response, which tells the upstream server to stop generating.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from lanewise.core.context import trace_headers
from lanewise.core.errors import (
    ConfigError,
    InvalidRequest,
    LanewiseError,
    LimitExceeded,
    NotFound,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from lanewise.core.factory import FactoryContext
from lanewise.core.types import ChatChunk, ChatCompletion, ChatRequest, Usage
from lanewise.inference.openai_transport import (
    CLIENT_TIMEOUTS,
    TRANSPORT_ERRORS,
    AiohttpTransport,
    HttpxTransport,
    Reply,
    Transport,
)
from lanewise.inference.tokens import TokenCounterImpl, token_counter

OPTIONS = {
    "base_url",
    "model",
    "api_key",
    "api_key_env",
    "timeout_s",
    "connect_timeout_s",
    "http2",
    "transport",
    "max_tokens",
    "max_connections",
    "keepalive_expiry_s",
    "tokenizer",
    "headers",
}
_FINISH = {"stop": "stop", "length": "length", "content_filter": "stop", "tool_calls": "stop"}


TRANSPORTS = ("aiohttp", "httpx")


def _retry_after(response: Reply) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def upstream_error(response: Reply, body: bytes, upstream: str) -> LanewiseError:
    """The lanewise error for an upstream HTTP error response."""
    detail = body.decode(errors="replace")[:500]
    try:
        decoded = msgspec.json.decode(body)
        if isinstance(decoded, dict):
            err = decoded.get("error", decoded)
            if isinstance(err, dict):
                detail = str(err.get("message") or err.get("detail") or detail)
    except msgspec.DecodeError:
        pass
    status = response.status_code
    where = f"upstream {upstream} answered {status}: {detail}"
    if status == 404:
        return NotFound(where, upstream=upstream, upstream_status=status)
    if status == 429:
        return LimitExceeded(where, retry_after_s=_retry_after(response), upstream=upstream)
    if status in (400, 413, 422):
        return InvalidRequest(where, upstream=upstream, upstream_status=status)
    if status == 503:
        return Unavailable(where, retry_after_s=_retry_after(response) or 1.0, upstream=upstream)
    if status == 504:
        return UpstreamTimeout(where, upstream=upstream)
    return UpstreamError(where, upstream=upstream, upstream_status=status)


_TRANSPORT_ERRORS = TRANSPORT_ERRORS


def _transport_error(exc: BaseException, upstream: str, *, waiting_to: str) -> LanewiseError:
    """The lanewise error for a call that got no HTTP answer (one of ``_TRANSPORT_ERRORS``).

    ``TimeoutError`` is our own deadline (``asyncio.timeout_at``), the httpx and
    aiohttp timeouts are the client's per-phase limits; ``waiting_to`` says which
    step the deadline cut short ("answer", "finish").
    """
    # First: aiohttp's timeouts are TimeoutErrors too.
    if isinstance(exc, CLIENT_TIMEOUTS):
        return UpstreamTimeout(
            f"upstream {upstream} timed out ({type(exc).__name__})", upstream=upstream
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(
            f"upstream {upstream} did not {waiting_to} within the deadline", upstream=upstream
        )
    return Unavailable(
        f"upstream {upstream} is unreachable ({type(exc).__name__}: {exc})",
        retry_after_s=1.0,
        upstream=upstream,
    )


class OpenAICompatBackend:
    def __init__(
        self,
        *,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        http2: bool = False,
        transport: str = "aiohttp",
        max_output_tokens: int | None = None,
        max_connections: int = 1000,
        keepalive_expiry_s: float = 4.0,
        counter: TokenCounterImpl | None = None,
        headers: dict[str, str] | None = None,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        # What clients see in errors: internal addresses stay out of problem bodies.
        self.label = repr(model) if model else "server"
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens
        self.counter = counter or token_counter("auto")
        all_headers = dict(headers or {})
        if api_key:
            all_headers["authorization"] = f"Bearer {api_key}"
        if transport not in TRANSPORTS:
            raise ConfigError(
                f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}"
            )
        # aiohttp has no HTTP/2.
        self.transport = "httpx" if http2 else transport
        self._client: Transport
        if self.transport == "httpx":
            self._client = HttpxTransport(
                self.base_url,
                all_headers,
                http2=http2,
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                max_connections=max_connections,
                keepalive_expiry_s=keepalive_expiry_s,
            )
        else:
            self._client = AiohttpTransport(
                self.base_url,
                all_headers,
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                max_connections=max_connections,
                keepalive_expiry_s=keepalive_expiry_s,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "owned_by": "lanewise",
            "lanewise": {
                "kind": "openai",
                "generative": True,
                "upstream_model": self.model,
                "max_tokens": self.max_output_tokens,
            },
        }

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model or request.model,
            "messages": [
                {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}
                for m in request.messages
            ],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        for key, value in (
            ("max_tokens", s.max_tokens),
            ("temperature", s.temperature),
            ("top_p", s.top_p),
            ("seed", s.seed),
        ):
            if value is not None:
                body[key] = value
        if s.stop:
            body["stop"] = list(s.stop)
        return body

    async def _send(self, body: dict[str, Any], *, stream: bool) -> Reply:
        """POST (once more on a keep-alive connection the server just closed), with the
        request's W3C trace context so the upstream's spans join the caller's trace."""
        return await self._client.post(
            msgspec.json.encode(body), stream=stream, headers=trace_headers() or None
        )

    def _deadline(self, request: ChatRequest) -> float:
        return asyncio.get_running_loop().time() + (request.deadline_s or self.timeout_s)

    def _usage(self, request: ChatRequest, raw: Any, text: str) -> Usage:
        if isinstance(raw, dict) and "prompt_tokens" in raw:
            return Usage(
                prompt_tokens=int(raw.get("prompt_tokens") or 0),
                completion_tokens=int(raw.get("completion_tokens") or 0),
            )
        # The upstream did not say: count with the model's tokenizer.
        return Usage(
            prompt_tokens=self.counter.count_messages(request),
            completion_tokens=self.counter.count(text),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        end = self._deadline(request)
        text: list[str] = []
        finish: Any = None
        raw_usage: Any = None
        try:
            async with asyncio.timeout_at(end):
                response = await self._send(self._body(request, stream=True), stream=True)
            try:
                if response.status_code >= 400:
                    async with asyncio.timeout_at(end):
                        body = await response.read()
                    raise upstream_error(response, body, self.label)
                lines = response.lines()
                done = False
                while True:
                    async with asyncio.timeout_at(end):
                        line = await anext(lines, None)
                    if line is None:
                        break
                    if done or line == "data: [DONE]":
                        # Read to the end of the body so the connection goes back to
                        # the pool; closing a half-read response would close the socket.
                        done = True
                        continue
                    if not line.startswith("data:"):
                        continue  # comments (keep-alives), event names, blank lines
                    event = msgspec.json.decode(line[5:].strip())
                    if "error" in event:
                        err = event["error"] or {}
                        raise UpstreamError(
                            f"upstream {self.label} failed mid-stream: {err.get('message')}",
                            upstream=self.label,
                        )
                    if event.get("usage"):
                        raw_usage = event["usage"]
                    for choice in event.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content") or ""
                        if delta:
                            text.append(delta)
                            yield ChatChunk(delta=delta)
                        if choice.get("finish_reason"):
                            finish = _FINISH.get(choice["finish_reason"], "stop")
            finally:
                await response.close()
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(exc, self.label, waiting_to="finish") from None
        except msgspec.DecodeError:
            raise UpstreamError(
                f"upstream {self.label} sent an event that is not JSON", upstream=self.label
            ) from None
        yield ChatChunk(
            finish_reason=finish or "stop",
            usage=self._usage(request, raw_usage, "".join(text)),
        )

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        end = self._deadline(request)
        try:
            async with asyncio.timeout_at(end):
                response = await self._send(self._body(request, stream=False), stream=False)
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(exc, self.label, waiting_to="answer") from None
        content = await response.read()  # already read: not streamed
        if response.status_code >= 400:
            raise upstream_error(response, content, self.label)
        try:
            body = msgspec.json.decode(content)
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (msgspec.DecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise UpstreamError(
                f"upstream {self.label} answered without a chat completion",
                upstream=self.label,
            ) from None
        return ChatCompletion(
            model=request.model,
            text=text,
            finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),  # type: ignore[arg-type]
            usage=self._usage(request, body.get("usage"), text),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def build_openai(ctx: FactoryContext) -> OpenAICompatBackend:
    opts = ctx.read(OPTIONS)
    base_url = opts.text("base_url")
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{ctx.key}.base_url is required: the server's OpenAI API root, "
            "e.g. 'http://vllm:8000/v1'"
        )
    api_key = opts.text("api_key")
    env = opts.text("api_key_env")
    if env:
        api_key = os.environ.get(env)
        if api_key is None:
            raise ConfigError(f"{ctx.key}.api_key_env: ${env} is not set")
    http2 = opts.flag("http2", False)
    transport = opts.choice("transport", "aiohttp", TRANSPORTS)
    if http2 and importlib.util.find_spec("h2") is None:
        raise ConfigError(
            f"{ctx.key}.http2 = true needs the h2 package: install lanewise-inference[http2]"
        )
    default_timeout = ctx.settings.gateway.request_timeout_s
    max_tokens = opts.options.get("max_tokens")
    headers = opts.mapping("headers")
    return OpenAICompatBackend(
        base_url=base_url,
        model=opts.text("model"),
        api_key=api_key,
        timeout_s=opts.number("timeout_s", default_timeout, minimum=0.001),
        connect_timeout_s=opts.number("connect_timeout_s", 5.0, minimum=0.001),
        http2=http2,
        transport=transport,
        max_output_tokens=opts.integer("max_tokens", 1, minimum=1) if max_tokens else None,
        max_connections=opts.integer("max_connections", 1000, minimum=1),
        keepalive_expiry_s=opts.number("keepalive_expiry_s", 4.0),
        counter=token_counter(opts.text("tokenizer", "auto") or "auto"),
        headers={str(k): str(v) for k, v in headers.items()},
    )
