"""Test plugins for core: real in-process components registered through the hooks.

``EchoBackend`` is a real ChatBackend (it really streams chunks, with delays and
failures on demand); nothing here mocks lanewise itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from lanewise.core.gateway.app import create_app
from lanewise.core.hookspecs import hookimpl
from lanewise.core.server import serve_in_thread
from lanewise.core.testing.services import wait_for_port
from lanewise.core.types import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    StageTiming,
    Usage,
    UsageEvent,
)


class BackendBroke(RuntimeError):
    """An unexpected backend failure (not a LanewiseError)."""


class EchoBackend:
    """Streams the last user message back word by word.

    Options: ``delay_s`` between chunks, ``fail_after`` chunks then raise
    ``BackendBroke`` (or ``fail_with`` an exception instance), ``prefix``.
    """

    def __init__(
        self,
        name: str = "echo",
        *,
        delay_s: float = 0.0,
        fail_after: int | None = None,
        fail_with: BaseException | None = None,
        prefix: str = "",
    ) -> None:
        self.name = name
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.fail_with = fail_with
        self.prefix = prefix
        self.closed = False

    def _words(self, request: ChatRequest) -> list[str]:
        text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        return (self.prefix + text).split()

    async def generate(self, request: ChatRequest) -> ChatCompletion:
        text: list[str] = []
        usage = Usage()
        async for chunk in self.stream(request):
            text.append(chunk.delta)
            usage = chunk.usage or usage
        return ChatCompletion(
            model=request.model, text="".join(text), finish_reason="stop", usage=usage
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        words = self._words(request)
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        for i, word in enumerate(words):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.fail_with or BackendBroke("secret internal detail 0xdeadbeef")
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield ChatChunk(delta=word if i == 0 else " " + word)
        yield ChatChunk(
            finish_reason="stop",
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(words)),
        )

    async def aclose(self) -> None:
        self.closed = True


def echo_factory(ctx: Any) -> EchoBackend:
    from lanewise.core import errors

    options = dict(ctx.options)
    unknown = set(options) - {"delay_s", "fail_after", "fail_with", "prefix"}
    if unknown:
        raise errors.ConfigError(
            f"unknown echo option(s) {sorted(unknown)}; "
            "allowed: delay_s, fail_after, fail_with, prefix"
        )
    if "fail_with" in options:  # the name of a lanewise error class, raised mid-stream
        options["fail_with"] = getattr(errors, options["fail_with"])("upstream failed on purpose")
    return EchoBackend(ctx.kind, **options)


class EchoPlugin:
    """Registers the ``echo`` backend (the default) and records every event."""

    def __init__(self) -> None:
        self.usage: list[UsageEvent] = []
        self.stages: list[StageTiming] = []

    @hookimpl
    def lanewise_register_backends(self, register: Any) -> None:
        register("echo", echo_factory, description="echoes the user", default=True)

    @hookimpl
    def lanewise_on_usage(self, event: UsageEvent) -> None:
        self.usage.append(event)

    @hookimpl
    def lanewise_on_stage(self, event: StageTiming) -> None:
        self.stages.append(event)


@pytest.fixture
def echo_plugin() -> EchoPlugin:
    return EchoPlugin()


@pytest.fixture
def core_pm(register_plugin: Callable[..., Any]) -> Callable[..., Any]:
    """A plugin manager with only core plus the given plugins: other lanes cannot interfere."""

    def make(*plugins: object) -> Any:
        return register_plugin(*plugins, allowlist=[])

    return make


@pytest.fixture
def gateway(
    lanewise_settings: Callable[..., Any], core_pm: Callable[..., Any], echo_plugin: EchoPlugin
) -> Callable[..., Any]:
    """``with gateway(settings_overrides..., plugins=[...]) as base_url:`` a real uvicorn server."""
    from contextlib import contextmanager

    @contextmanager
    def run(*, plugins: tuple[object, ...] = (), **overrides: Any) -> Iterator[str]:
        settings = lanewise_settings(**overrides)
        app = create_app(settings, plugin_manager=core_pm(echo_plugin, *plugins))
        with serve_in_thread(app) as base:
            yield base

    return run


def chat_body(text: str = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    return chat_body


SLOW_PLUGIN = '''
"""A plugin installed for real (dist-info + entry point) so subprocesses load it too."""
import asyncio
import os

from lanewise.core.hookspecs import hookimpl
from lanewise.core.types import ChatChunk, ChatCompletion, Usage

WORDS = int(os.environ.get("SLOWPLUG_WORDS", "8"))
DELAY_S = float(os.environ.get("SLOWPLUG_DELAY_S", "0.2"))


class Slow:
    name = "slow"

    async def generate(self, request):
        text = " ".join(f"w{i}" for i in range(WORDS))
        return ChatCompletion(model=request.model, text=text, finish_reason="stop", usage=Usage())

    async def stream(self, request):
        for i in range(WORDS):
            await asyncio.sleep(DELAY_S)
            yield ChatChunk(delta=f"w{i} ")
        yield ChatChunk(finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=WORDS))


class Down:
    name = "queue"

    async def check(self):
        return "broker unreachable"


@hookimpl
def lanewise_register_backends(register):
    register("slow", lambda ctx: Slow(), default=True)


@hookimpl
def lanewise_register_health_checks(register, components):
    if os.environ.get("SLOWPLUG_FAIL_CHECK"):
        register("queue", Down)
'''


@pytest.fixture(scope="module")
def slowplug_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a ``lanewise`` subprocess that has the ``slowplug`` plugin installed.

    The plugin is a real distribution on ``PYTHONPATH`` (module + ``.dist-info`` with an
    entry point in group ``lanewise``), and ``LANEWISE_PLUGINS`` admits only it, so the
    subprocess loads core + slowplug whatever other lanes are installed.
    """
    import os

    site = tmp_path_factory.mktemp("slowplug-site")
    (site / "lanewise_slowplug.py").write_text(SLOW_PLUGIN)
    info = site / "lanewise_slowplug-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lanewise-slowplug\nVersion: 0.0.1\n"
    )
    (info / "entry_points.txt").write_text("[lanewise]\nslowplug = lanewise_slowplug\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANEWISE_", "SLOWPLUG_"))}
    env["PYTHONPATH"] = str(site)
    env["LANEWISE_PLUGINS"] = "slowplug"
    env["LANEWISE_DATA_DIR"] = str(site / "data")
    return env


@pytest.fixture
def start_serve(tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``proc, base = start_serve(env, *args)``: a real ``lanewise serve`` subprocess.

    Waits until the port accepts connections; kills whatever is still running at the end.
    """
    import subprocess
    import sys
    from pathlib import Path

    from lanewise.core.server import free_port

    procs: list[subprocess.Popen[str]] = []

    def start(
        env: dict[str, str], *args: str, serve_args: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        lanewise = str(Path(sys.executable).parent / "lanewise")
        proc = subprocess.Popen(
            [lanewise, *args, "serve", "--port", str(port), *serve_args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        wait_for_port(port, proc, 90, "lanewise serve")
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
