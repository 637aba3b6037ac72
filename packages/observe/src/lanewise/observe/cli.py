"""``lanewise usage``: the gateway's ``/v1/usage`` as a rich table."""

from __future__ import annotations

from typing import Any

import click
import httpx
from lanewise.observe.usage.query import GROUP_COLUMNS
from rich.console import Console
from rich.table import Table


@click.command()
@click.option(
    "--group-by",
    type=click.Choice(list(GROUP_COLUMNS)),
    default="model",
    show_default=True,
    help="What to group by.",
)
@click.option("--window", default="24h", show_default=True, help="e.g. 15m, 24h, 7d.")
@click.option(
    "--url",
    envvar="LANEWISE_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The gateway (env LANEWISE_URL).",
)
@click.option("--api-key", envvar="LANEWISE_API_KEY", default=None, help="env LANEWISE_API_KEY.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead.")
def usage(group_by: str, window: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Token usage (and cost) of your tenant, grouped, over a time window."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/usage",
            params={"group_by": group_by, "window": window},
            headers=headers,
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {url}: {exc}") from None
    if response.status_code != 200:
        detail = response.json().get("detail") if _is_json(response) else response.text
        raise click.ClickException(f"{response.status_code}: {detail}")
    body = response.json()
    if as_json:
        click.echo(response.text)
        return
    Console().print(render_table(body))


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "")


def render_table(body: dict[str, Any]) -> Table:
    keys = [name for name, _ in GROUP_COLUMNS[body["group_by"]]]
    table = Table(
        *keys,
        "requests",
        "input tokens",
        "output tokens",
        "total tokens",
        "cost",
        title=f"usage of tenant {body['tenant']} over {body['window']}",
    )
    for row in body["data"]:
        cost = row.get("cost")
        table.add_row(
            *(str(row.get(k) if row.get(k) is not None else "-") for k in keys),
            str(row["requests"]),
            str(row["input_tokens"]),
            str(row["output_tokens"]),
            str(row["total_tokens"]),
            "-" if cost is None else f"{cost:.4f}",
        )
    return table
