"""HTTP clients for the ``openai`` backend: aiohttp (HTTP/1.1, the default) and httpx.

Both give the backend the same small surface: ``post`` a JSON body and get a
``Reply`` (status, headers, the whole body or its lines). aiohttp's client
costs about half of httpx's per request, which is most of what the gateway
adds on the proxy path; httpx stays for HTTP/2, which aiohttp does not speak.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx

_PATH = "/chat/completions"
_EOL = re.compile(rb"\r\n|\r|\n")

# Failures that leave no HTTP answer: mapped by ``openai_compat._transport_error``.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.TimeoutException,
    httpx.ConnectError,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    aiohttp.ClientError,
)
# A per-phase limit of the client itself (not our deadline).
CLIENT_TIMEOUTS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    aiohttp.ServerTimeoutError,
)


class Reply(Protocol):
    status_code: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def lines(self) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def post(
        self, body: bytes, *, stream: bool, headers: Mapping[str, str] | None = None
    ) -> Reply: ...

    async def aclose(self) -> None: ...


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    r"""Lines of a byte stream cut anywhere, ended by ``\n``, ``\r\n`` or ``\r`` (as SSE allows)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        # A trailing \r may be the first half of a \r\n in the next chunk.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        *lines, rest = _EOL.split(pending[:cut])
        pending = rest + pending[cut:]
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        lines = _EOL.split(pending)
        if not lines[-1]:
            lines.pop()
        for line in lines:
            yield line.decode(errors="replace")


class _HttpxReply:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        return await self._response.aread()

    def lines(self) -> AsyncIterator[str]:
        return self._response.aiter_lines()

    async def close(self) -> None:
        # httpx keeps the connection only when the body was read to the end.
        await self._response.aclose()


class HttpxTransport:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        http2: bool,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        keepalive_expiry_s: float,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={**headers, "content-type": "application/json"},
            http2=http2,
            # The deadline is enforced per call by the backend; these only bound
            # connecting and a silent socket.
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            # Drop idle connections before the usual 5 s server timers close them.
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=256,
                keepalive_expiry=keepalive_expiry_s,
            ),
        )

    async def post(
        self, body: bytes, *, stream: bool, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """POST, once more if a pooled connection turns out to be closed.

        Servers close idle keep-alive connections on their own timer (uvicorn and
        vLLM after 5 s); reusing one at that instant fails before any byte of a
        response, so the request is sent again on a fresh connection.
        """
        for attempt in (0, 1):
            built = self._client.build_request("POST", _PATH, content=body, headers=headers)
            try:
                return _HttpxReply(await self._client.send(built, stream=stream))
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._client.aclose()


class _AiohttpReply:
    def __init__(self, response: aiohttp.ClientResponse, body: bytes | None = None) -> None:
        self._response = response
        self._body = body
        self._complete = body is not None
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        if self._body is None:
            self._body = await self._response.read()
            self._complete = True
        return self._body

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk
        self._complete = True

    def lines(self) -> AsyncIterator[str]:
        return split_lines(self._chunks())

    async def close(self) -> None:
        if self._complete:
            self._response.release()  # back to the pool
        else:
            # Half read (the consumer stopped): dropping the connection is what
            # tells the upstream server to stop generating.
            self._response.close()


class AiohttpTransport:
    """One ``aiohttp.ClientSession``, opened on first use inside the running loop."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        keepalive_expiry_s: float,
    ) -> None:
        self._url = base_url + _PATH
        self._headers = {**headers, "content-type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._max_connections = max_connections
        self._keepalive_expiry_s = keepalive_expiry_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # aiohttp binds a session to the loop that creates it; backends are built
        # before the server's loop runs, so the session waits for the first call.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                # Drop idle connections before the usual 5 s server timers close them.
                keepalive_timeout=self._keepalive_expiry_s,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout
            )
        return self._session

    async def post(
        self, body: bytes, *, stream: bool, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """POST, once more if a pooled connection turns out to be closed (see httpx's).

        ``headers`` (the request's trace context) are added to the session's own.
        """
        session = self._open()
        for attempt in (0, 1):
            try:
                response = await session.post(self._url, data=body, headers=headers)
            except aiohttp.ClientConnectorError:
                raise  # no connection at all: nothing stale to retry
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt:
                    raise
                continue
            if stream:
                return _AiohttpReply(response)
            try:
                data = await response.read()
            except BaseException:
                response.close()
                raise
            response.release()
            return _AiohttpReply(response, data)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
