"""``lanewise demo``: the main job end to end on embedded defaults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pluggy
from lanewise.core.gateway.app import create_app
from lanewise.core.server import serve_in_thread
from lanewise.core.settings import Settings
from rich.console import Console


def run_demo(
    settings: Settings,
    *,
    question: str,
    docs_dir: Path,
    console: Console,
    plugin_manager: pluggy.PluginManager | None = None,
) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo prints its own progress
    app = create_app(settings, plugin_manager=plugin_manager)
    components = app.state["components"]
    pm = components.plugin_manager
    pipeline = components.pipeline()
    console.rule("lanewise demo")
    console.print(f"plugins: {', '.join(sorted(n for n, _ in pm.list_name_plugin()))}")
    pm.hook.lanewise_on_demo(components=components, docs_dir=docs_dir, console=console)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=120) as client:
        ready = client.get("/readyz").json()
        console.print(f"gateway at {base}: {ready['status']}")
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        if not models:
            console.print(
                "[yellow]no model is installed; install lanewise-inference to answer questions[/]"
            )
            return 0
        model = settings.default_model or models[0]
        body: dict[str, object] = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": question}],
        }
        if pipeline.retriever is not None:
            body["lanewise"] = {"retrieval": True}
        console.print(f"[bold]Q:[/] {question}\n[bold]A ({model}):[/] ", end="")
        citations: list[dict[str, str]] = []
        usage: dict[str, int] = {}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                console.print(f"\n[red]request failed ({response.status_code}):[/] {response.text}")
                return 1
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    console.print(f"\n[red]error:[/] {event['error']['message']}")
                    return 1
                for choice in event.get("choices", []):
                    console.print(choice["delta"].get("content", ""), end="", soft_wrap=True)
                citations = event.get("lanewise", {}).get("citations", citations)
                usage = event.get("usage") or usage
        console.print()
        for c in citations:
            console.print(f"  {c['marker']} {c['source']}")
        if usage:
            console.print(
                f"[dim]tokens: {usage['prompt_tokens']} in, {usage['completion_tokens']} out[/]"
            )
    return 0
