"""Protocol limits at the socket: what uvicorn does not bound by itself.

uvicorn (httptools) accepts any header size and count, never times out a
connection that is still sending its headers or body, and closes a connection
with unread request bytes in the kernel buffer, which resets it: a client that
writes its whole body before reading (``urllib``, ``requests``) then sees
``ECONNRESET`` instead of the 413 the gateway answered. :class:`LimitedHttpProtocol`
is uvicorn's httptools protocol with those limits added:

- headers larger than ``max_header_bytes`` or more than ``max_headers`` → 431;
- headers not complete within ``header_timeout_s`` of the connection opening
  (or of a keep-alive request's first byte) → 408, or a silent close when not a
  byte came;
- a body that pauses for ``body_timeout_s``, or averages under
  ``body_min_rate_bytes_s`` once that long has passed → 408;
- more than ``max_connections`` open connections → 503 with ``Retry-After``;
- a response that ends while the request body is still arriving (413, 415,
  401...) → the server stops writing and reads and discards what is still in
  flight for up to ``linger_s`` before closing, so the client reads the answer;
- requests the parser refuses → 400; every one of these answers is problem+json.

The cost on the hot path is a few attribute stores per request: deadlines are
timestamps that one timer per connection checks, not a timer per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, cast

import msgspec
from lanewise.core.errors import PROBLEM_BASE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEADERS, _BODY, _APP = 0, 1, 2
LINGER_MAX_BYTES = 64 * 1024 * 1024
"""Discarded after an early answer before the connection closes anyway."""


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 32_768
    max_headers: int = 100
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    body_min_rate_bytes_s: float = 500.0
    keepalive_timeout_s: float = 20.0
    max_connections: int = 1024
    linger_s: float = 5.0

    @classmethod
    def from_settings(cls, gateway: Any) -> HttpLimits:
        return cls(**{name: getattr(gateway, name) for name in cls.__dataclass_fields__})


def problem_bytes(status: int, slug: str, detail: str, *headers: tuple[bytes, bytes]) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document; the connection closes after it."""
    body = msgspec.json.encode(
        {
            "type": PROBLEM_BASE + slug,
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    )
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
        b"content-type: application/problem+json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in headers),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    body = msgspec.json.encode(
        {
            "type": PROBLEM_BASE + "unavailable",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "this gateway worker has gateway.max_connections open; retry shortly",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Refused(Exception):
    pass


class _LingeringTransport:
    """The real transport, except that ``close`` waits for an unread request body."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # The hot paths: bound methods, no proxy in between.
        self.write = transport.write
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._transport.is_closing()

    def close(self) -> None:
        if self._protocol._phase == _BODY and not self._protocol._lingering:
            self._protocol._linger()
        elif not self._protocol._lingering:
            self._transport.close()


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`HttpLimits` enforced."""

    limits: ClassVar[HttpLimits | None] = None
    """Set by :func:`protocol_with`; else read from the settings (worker processes)."""

    @classmethod
    def resolved_limits(cls) -> HttpLimits:
        if cls.limits is None:
            from lanewise.core.settings import load_settings

            cls.limits = HttpLimits.from_settings(load_settings().gateway)
        return cls.limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.resolved_limits()
        self._phase = _HEADERS
        self._started = 0.0  # when the current phase began
        self._last_read = 0.0
        self._raw_header_bytes = 0
        self._body_bytes = 0
        self._lingering = False
        self._lingered_bytes = 0
        self._refusal_sent = False
        self._watch: asyncio.TimerHandle | None = None
        self._raw: asyncio.Transport | None = None

    # -- connection --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        super().connection_made(_LingeringTransport(self._raw, self))  # type: ignore[arg-type]
        self._started = self.loop.time()
        if len(self.connections) > self._limits.max_connections:
            self.app = _overloaded  # answers the request this connection sends, then closes
        self._arm(self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingered_bytes += len(data)
            if self._lingered_bytes > LINGER_MAX_BYTES:
                self._close()
            return
        if self._phase != _BODY:
            self._raw_header_bytes += len(data)
        super().data_received(data)
        if (
            self._phase == _HEADERS
            and self._raw_header_bytes > self._limits.max_header_bytes
            and not self._lingering
        ):
            self._refuse_headers(
                f"the request headers exceed {self._limits.max_header_bytes} bytes"
            )

    def send_400_response(self, msg: str) -> None:
        if self._refusal_sent:  # a limit stopped the parser; that answer is already out
            return
        self._respond(
            problem_bytes(400, "bad-request", "the request is not valid HTTP/1.1; fix the client")
        )

    # -- parser callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEADERS
        self._started = self.loop.time()
        self._refusal_sent = False

    def on_headers_complete(self) -> None:
        limits = self._limits
        if len(self.headers) > limits.max_headers:
            self._refuse_headers(f"the request has more than {limits.max_headers} headers")
            raise _Refused  # stops the parser; uvicorn's 400 is suppressed
        # The bytes read so far bound the header size; only when they could be over
        # (a chunk that also carried body) is it worth adding the headers up.
        if self._raw_header_bytes > limits.max_header_bytes and (
            len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            > limits.max_header_bytes
        ):
            self._refuse_headers(f"the request headers exceed {limits.max_header_bytes} bytes")
            raise _Refused
        self._phase = _BODY
        self._started = self._last_read = self.loop.time()
        self._raw_header_bytes = 0
        self._body_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        now = self._last_read = self.loop.time()
        self._body_bytes += len(body)
        elapsed = now - self._started
        limits = self._limits
        if elapsed > limits.body_timeout_s and self._body_bytes < (
            limits.body_min_rate_bytes_s * elapsed
        ):
            self._timeout("the request body arrived slower than gateway.body_min_rate_bytes_s")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _APP
        super().on_message_complete()

    # -- deadlines -----------------------------------------------------------------
    def _arm(self, delay: float) -> None:
        self._watch = self.loop.call_later(max(delay, 0.01), self._check)

    def _check(self) -> None:
        self._watch = None
        if self._raw is None or self._raw.is_closing():
            return
        now, limits = self.loop.time(), self._limits
        if self._lingering:
            self._close()
            return
        if self._phase == _HEADERS:
            left = self._started + limits.header_timeout_s - now
            if left <= 0:
                if self._raw_header_bytes:
                    self._timeout(
                        "the request headers did not arrive within gateway.header_timeout_s"
                    )
                else:
                    self._close()  # an idle connection: nothing to answer
                return
            self._arm(left)
            return
        if self._phase == _BODY:
            left = self._last_read + limits.body_timeout_s - now
            if self.flow.read_paused:  # the app has not read yet: not the client's delay
                left = limits.body_timeout_s
            elif left <= 0:
                self._timeout("the request body stalled for gateway.body_timeout_s")
                return
            self._arm(left)
            return
        self._arm(limits.header_timeout_s)

    # -- answers -------------------------------------------------------------------
    def _respond(self, response: bytes) -> None:
        assert self._raw is not None
        if self.cycle is None or not self.cycle.response_started:
            self._raw.write(response)
        self._linger()

    def _refuse_headers(self, detail: str) -> None:
        self._refusal_sent = True
        self._respond(
            problem_bytes(
                431,
                "headers-too-large",
                f"{detail}; send fewer or smaller headers",
            )
        )

    def _timeout(self, detail: str) -> None:
        assert self._raw is not None
        if self.cycle is None or not self.cycle.response_started:
            self._raw.write(problem_bytes(408, "request-timeout", f"{detail}; send it faster"))
        self._close()

    def _linger(self) -> None:
        """Stop writing, keep reading (and discarding) for ``linger_s``, then close."""
        assert self._raw is not None
        if self._lingering or self._raw.is_closing():
            return
        self._lingering = True
        self.flow.resume_reading()
        if not self._raw.can_write_eof():
            self._close()
            return
        self._raw.write_eof()
        if self._watch is not None:
            self._watch.cancel()
        self._arm(self._limits.linger_s)

    def _close(self) -> None:
        if self._raw is not None and not self._raw.is_closing():
            self._raw.close()


def protocol_with(limits: HttpLimits) -> type[LimitedHttpProtocol]:
    """The protocol class for an in-process server with these limits."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})
