"""Core's own plugin: CLI commands, static API keys, the built-in RAG prompt."""

from __future__ import annotations

from collections.abc import Mapping

import click
from lanewise.core.auth import principal_from_keys
from lanewise.core.commands import demo, doctor, serve
from lanewise.core.hookspecs import hookimpl
from lanewise.core.prompts import BUILTIN_RAG_TEMPLATE, RAG_PROMPT, PromptTemplate
from lanewise.core.settings import Settings
from lanewise.core.types import ChatRequest, Principal


@hookimpl
def lanewise_configure_cli(cli: click.Group) -> None:
    for command in (serve, doctor, demo):
        cli.add_command(command)


@hookimpl(trylast=True)
def lanewise_resolve_principal(headers: Mapping[str, str], settings: Settings) -> Principal | None:
    return principal_from_keys(headers, settings)


@hookimpl(trylast=True)
def lanewise_resolve_prompt(name: str, request: ChatRequest) -> PromptTemplate | None:
    return BUILTIN_RAG_TEMPLATE if name == RAG_PROMPT else None
