"""One test per hook spec, each through a real plugin manager (``test_hook_docs.py`` checks)."""

from __future__ import annotations

import io
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import httpx
from click.testing import CliRunner
from lanewise.core.container import build_components
from lanewise.core.demo import run_demo
from lanewise.core.errors import Unauthorized
from lanewise.core.factory import Components
from lanewise.core.hookspecs import hookimpl
from lanewise.core.settings import ComponentConfig, Settings
from lanewise.core.types import Chunk, Document, Hit, Principal
from litestar import get
from litestar.di import NamedDependency
from rich.console import Console


def chat(base: str, text: str = "hello world", **extra: Any) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=extra.pop("headers", {}))


def test_hook_lanewise_register_backends(gateway):
    from lanewise.core.types import ChatChunk, ChatCompletion, Usage

    class Shout:
        name = "shout"

        async def generate(self, request):
            text = request.messages[-1].content.upper()
            usage = Usage(prompt_tokens=2, completion_tokens=1)
            return ChatCompletion(model=request.model, text=text, finish_reason="stop", usage=usage)

        async def stream(self, request):
            yield ChatChunk(delta=request.messages[-1].content.upper())
            yield ChatChunk(finish_reason="stop", usage=Usage(prompt_tokens=2, completion_tokens=1))

    class Plugin:
        @hookimpl
        def lanewise_register_backends(self, register):
            register("shout", lambda ctx: Shout(), description="loud")

    body = {"model": "loud", "messages": [{"role": "user", "content": "hi there"}]}
    with gateway(plugins=(Plugin(),), models={"loud": {"kind": "shout"}}) as base:
        models = httpx.get(f"{base}/v1/models").json()
        whole = httpx.post(f"{base}/v1/chat/completions", json=body)
        streamed = httpx.post(f"{base}/v1/chat/completions", json={**body, "stream": True})
    assert [m["id"] for m in models["data"]] == ["loud"]
    assert whole.json()["choices"][0]["message"]["content"] == "HI THERE"
    assert whole.json()["usage"]["total_tokens"] == 3
    assert '"content":"HI THERE"' in streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")


class Letters:
    id, version, dimension = "letters", "1", 26

    async def embed(self, texts):
        return [[t.lower().count(chr(97 + i)) / max(len(t), 1) for i in range(26)] for t in texts]


async def test_hook_lanewise_register_embedders(lanewise_settings, core_pm):
    seen: list[Any] = []

    class Plugin:
        @hookimpl
        def lanewise_register_embedders(self, register):
            def build(ctx):
                seen.append(ctx.options)
                return Letters()

            register("letters", build, description="letter frequencies")

    settings = lanewise_settings(retrieval={"embedder": {"kind": "letters", "scale": 2}})
    container = build_components(settings, core_pm(Plugin()))
    embedder = container.embedder()
    assert embedder is container.embedder()  # one per process
    assert seen == [{"scale": 2}]
    [vector] = await embedder.embed(["abba"])
    assert vector[:3] == [0.5, 0.5, 0.0]


async def test_hook_lanewise_register_vector_stores(lanewise_settings, core_pm):
    class MemoryStore:
        def __init__(self, dimension: int) -> None:
            self.dimension = dimension
            self.rows: dict[tuple[str, str], list[float]] = {}

    class Plugin:
        @hookimpl
        def lanewise_register_embedders(self, register):
            register("letters", lambda ctx: Letters(), default=True)

        @hookimpl
        def lanewise_register_vector_stores(self, register):
            # The factory reaches another component through the container.
            register("memory", lambda ctx: MemoryStore(ctx.components.embedder().dimension))

    settings = lanewise_settings(retrieval={"vector_store": {"kind": "memory"}})
    store = build_components(settings, core_pm(Plugin())).vector_store()
    assert isinstance(store, MemoryStore)
    assert store.dimension == 26


def test_hook_lanewise_register_loaders(lanewise_settings, core_pm):
    class CsvLoader:
        name, suffixes = "csv", (".csv",)

        def load(self, source, data):
            for i, line in enumerate(data.decode().splitlines()):
                yield Document(id=f"{source}#{i}", text=line, source=source)

    class Plugin:
        @hookimpl
        def lanewise_register_loaders(self, register):
            register("csv", lambda ctx: CsvLoader())

    components = build_components(lanewise_settings(), core_pm(Plugin()))
    assert components.registry("loader").names() == ["csv"]
    loader = components.build("loader", ComponentConfig(kind="csv"), "ingest.loaders.csv")
    docs = list(loader.load("a.csv", b"x,1\ny,2\n"))
    assert [d.text for d in docs] == ["x,1", "y,2"]


def test_hook_lanewise_register_chunkers(lanewise_settings, core_pm):
    class Paragraphs:
        name = "paragraphs"

        def chunk(self, document):
            parts = [p for p in document.text.split("\n\n") if p.strip()]
            return [
                Chunk(id=f"{document.id}:{i}", document_id=document.id, text=p, index=i)
                for i, p in enumerate(parts)
            ]

    class Plugin:
        @hookimpl
        def lanewise_register_chunkers(self, register):
            register("paragraphs", lambda ctx: Paragraphs(), default=True)

    chunker = build_components(lanewise_settings(), core_pm(Plugin())).chunker()
    chunks = chunker.chunk(Document(id="d", text="one\n\ntwo\n\n\nthree"))
    assert [(c.id, c.text) for c in chunks] == [("d:0", "one"), ("d:1", "two"), ("d:2", "\nthree")]


async def test_hook_lanewise_register_rerankers(lanewise_settings, core_pm):
    class ShortestFirst:
        name = "shortest"

        async def rerank(self, *, query, hits, k):
            return sorted(hits, key=lambda h: len(h.text))[:k]

    class Plugin:
        @hookimpl
        def lanewise_register_rerankers(self, register):
            register("shortest", lambda ctx: ShortestFirst())

    settings = lanewise_settings(retrieval={"reranker": {"kind": "shortest"}})
    reranker = build_components(settings, core_pm(Plugin())).reranker()
    hits = [Hit(id="a", score=1, text="long text"), Hit(id="b", score=0.5, text="hi")]
    assert [h.id for h in await reranker.rerank(query="q", hits=hits, k=1)] == ["b"]


async def test_hook_lanewise_register_evaluators(lanewise_settings, core_pm):
    from lanewise.core.types import ChatCompletion, ChatRequest, Message, Usage

    class Length:
        name = "length"

        async def evaluate(self, *, request, completion):
            return {"length.chars": float(len(completion.text))}

    class Plugin:
        @hookimpl
        def lanewise_register_evaluators(self, register):
            register("length", lambda ctx: Length())

    components = build_components(lanewise_settings(), core_pm(Plugin()))
    assert components.registry("evaluator").names() == ["length"]
    evaluator = components.build("evaluator", ComponentConfig(kind="length"), "evaluators.length")
    scores = await evaluator.evaluate(
        request=ChatRequest(model="m", messages=[Message(role="user", content="q")]),
        completion=ChatCompletion(model="m", text="four", finish_reason="stop", usage=Usage()),
    )
    assert scores == {"length.chars": 4.0}


def test_hook_lanewise_register_health_checks(gateway):
    got: list[Any] = []

    class Check:
        def __init__(self, name: str, why: str | None) -> None:
            self.name, self.why = name, why

        async def check(self):
            return self.why

    class Plugin:
        @hookimpl
        def lanewise_register_health_checks(self, register, components):
            got.append(components)
            register("db", lambda: Check("db", None))
            register("queue", lambda: Check("queue", "broker unreachable"))

    with gateway(plugins=(Plugin(),)) as base:
        r = httpx.get(f"{base}/readyz")
        again = httpx.get(f"{base}/readyz")
    assert r.status_code == 503
    assert r.json()["failing"] == ["queue"]
    assert r.json()["checks"] == {"db": "ok", "queue": "broker unreachable"}
    assert again.status_code == 503
    assert len(got) == 1  # checks are built once and run per call
    assert isinstance(got[0], Components)


def test_hook_lanewise_resolve_retriever(gateway, echo_plugin):
    class Faq:
        default_k, degrade = 4, False

        async def retrieve(self, *, principal, query, k, filter=None, request_id=""):
            return [
                Hit(id="faq-1", score=1.0, text="Lanes meet through hooks.", source="faq.md"),
                Hit(id="faq-2", score=0.5, text="Each lane scales alone.", source="lanes.md"),
            ][:k]

    class Plugin:
        @hookimpl
        def lanewise_resolve_retriever(self, components):
            return Faq()

    class Passes:
        @hookimpl
        def lanewise_resolve_retriever(self, components):
            return None  # firstresult: None passes to the next plugin

    with gateway(plugins=(Plugin(), Passes())) as base:
        r = chat(base, "how do lanes meet", lanewise={"retrieval": {"k": 1}})
        plain = chat(base, "no retrieval asked")
    body = r.json()
    assert body["lanewise"]["citations"] == [
        {
            "marker": "[1]",
            "id": "faq-1",
            "source": "faq.md",
            "dense_rank": None,
            "lexical_rank": None,
        }
    ]
    assert "citations" not in plain.json().get("lanewise", {})
    retrieve = [e for e in echo_plugin.stages if e.stage == "retrieve"]
    assert len(retrieve) == 1
    assert retrieve[0].attributes["hits"] == 1


def test_hook_lanewise_resolve_principal(gateway, echo_plugin):
    class MeshAuth:
        @hookimpl(tryfirst=True)
        def lanewise_resolve_principal(self, headers: Mapping[str, str], settings: Settings):
            tenant = headers.get("x-tenant")
            if tenant is None:
                return None
            if headers.get("x-mesh-verified") != "1":
                raise Unauthorized("x-tenant is only accepted from the service mesh")
            return Principal(tenant=tenant, workflow="mesh")

    with gateway(plugins=(MeshAuth(),)) as base:
        ok = chat(base, headers={"x-tenant": "acme", "x-mesh-verified": "1"})
        rejected = chat(base, headers={"x-tenant": "acme"})
        anonymous = chat(base)  # passes to core: no api_keys configured -> tenant "default"
    assert ok.status_code == 200
    assert rejected.status_code == 401
    assert "service mesh" in rejected.json()["detail"]
    assert anonymous.status_code == 200
    assert [(e.principal.tenant, e.principal.workflow) for e in echo_plugin.usage] == [
        ("acme", "mesh"),
        ("default", None),
    ]


@get("/v1/hello", sync_to_thread=False)
def hello_route(settings: NamedDependency[Settings]) -> dict[str, str]:
    return {"hello": "world", "timeout": str(settings.gateway.request_timeout_s)}


def test_hook_lanewise_configure_gateway(gateway):
    entered: list[str] = []

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        entered.append("start")
        yield
        entered.append("stop")

    class Plugin:
        @hookimpl
        def lanewise_configure_gateway(self, app_config, settings, components):
            app_config.route_handlers.append(hello_route)
            app_config.lifespan.append(lifespan)

    with gateway(plugins=(Plugin(),), gateway={"request_timeout_s": 7}) as base:
        r = httpx.get(f"{base}/v1/hello")
        assert entered == ["start"]
    assert entered == ["start", "stop"]
    assert r.json() == {"hello": "world", "timeout": "7.0"}
    assert r.headers["x-request-id"]  # plugin routes get the gateway's middleware


def test_hook_lanewise_configure_celery(core_pm, lanewise_settings):
    # Celery is not a dependency of lanewise-core (the ingest lane owns the app and calls
    # this hook with a real celery.Celery); here the app is a stand-in with Celery's
    # ``conf`` shape, enough to show the hook mutates what it is given.
    class Plugin:
        @hookimpl
        def lanewise_configure_celery(self, celery_app, settings):
            celery_app.conf.task_routes = {"hello.*": {"queue": "hello"}}
            celery_app.conf.broker_url = settings.redis_url

    app = types.SimpleNamespace(conf=types.SimpleNamespace(task_routes=None, broker_url=None))
    settings = lanewise_settings(redis_url="redis://127.0.0.1:1/0")
    results = core_pm(Plugin()).hook.lanewise_configure_celery(celery_app=app, settings=settings)
    assert app.conf.task_routes == {"hello.*": {"queue": "hello"}}
    assert app.conf.broker_url == "redis://127.0.0.1:1/0"
    assert results == []  # pluggy drops None results


def test_hook_lanewise_configure_cli(core_pm):
    @click.command()
    @click.argument("name")
    def hello(name):
        """Say hello."""
        click.echo(f"hello {name}")

    class Plugin:
        @hookimpl
        def lanewise_configure_cli(self, cli):
            cli.add_command(hello)

    group = click.Group("lanewise")
    core_pm(Plugin()).hook.lanewise_configure_cli(cli=group)
    assert {"hello", "serve", "doctor", "demo"} <= set(group.commands)
    result = CliRunner().invoke(group, ["hello", "ann"])
    assert result.exit_code == 0
    assert result.output == "hello ann\n"


def test_hook_lanewise_on_demo(lanewise_settings, core_pm, echo_plugin, tmp_path: Path):
    (tmp_path / "a.md").write_text("# a")
    seen: list[tuple[Any, Path]] = []

    class Plugin:
        @hookimpl
        def lanewise_on_demo(self, components, docs_dir, console):
            seen.append((components, docs_dir))
            console.print(f"indexed {len(list(docs_dir.glob('*.md')))} file(s)")

    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    code = run_demo(
        lanewise_settings(),
        question="is the demo wired",
        docs_dir=tmp_path,
        console=console,
        plugin_manager=core_pm(echo_plugin, Plugin()),
    )
    assert code == 0
    assert len(seen) == 1
    assert seen[0][1] == tmp_path
    text = out.getvalue()
    assert "indexed 1 file(s)" in text
    assert "is the demo wired" in text.split("A (echo):")[1]  # the echo model answered
    assert text.index("indexed 1 file(s)") < text.index("A (echo):")


def test_hook_lanewise_on_usage(gateway, echo_plugin):
    with gateway() as base:
        r = chat(base, "one two three", headers={"x-request-id": "usage-1"})
    assert r.status_code == 200
    [event] = echo_plugin.usage
    assert event.request_id == "usage-1"
    assert event.model == "echo"
    assert event.operation == "chat"
    assert event.backend == "echo"
    assert (event.usage.prompt_tokens, event.usage.completion_tokens) == (3, 3)
    assert event.ttft_s is not None
    assert 0 <= event.ttft_s <= event.duration_s
    assert event.principal.tenant == "default"
    assert event.finish_reason == "stop"


def test_hook_lanewise_on_stage(gateway, echo_plugin):
    with gateway() as base:
        chat(base, headers={"x-request-id": "stage-1"})
    assert [e.stage for e in echo_plugin.stages] == ["generate"]
    [generate] = echo_plugin.stages
    assert generate.request_id == "stage-1"
    assert generate.ok is True
    assert generate.duration_s >= 0
    assert generate.attributes["gen_ai.request.model"] == "echo"
    assert generate.attributes["gen_ai.usage.output_tokens"] == 2
