"""The demo indexes Markdown directly and answers with citations (real gateway, real store)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.demo import run_demo
from lanewise.retrieval.demo import split_markdown
from rich.console import Console


def test_split_on_headings_and_paragraphs():
    text = (
        "intro line\n\n# Title\n\nfirst para\n\nsecond para\n\n"
        "## Sub\n\n```\n# not a heading\n```\n"
    )
    chunks = split_markdown(text, max_chars=40)
    assert [(c.heading, c.text) for c in chunks] == [
        ("", "intro line"),
        ("Title", "Title: first para\n\nsecond para"),
        ("Sub", "Sub: ```\n# not a heading\n```"),
    ]
    smaller = split_markdown(text, max_chars=25)
    assert [c.text for c in smaller if c.heading == "Title"] == [
        "Title: first para",
        "second para",
    ]


@given(st.lists(st.sampled_from(["# H", "word " * 50, "", "para", "```", "## h2"]), max_size=40))
def test_chunks_are_bounded_and_lose_no_body_text(lines):
    text = "\n".join(lines)
    chunks = split_markdown(text, max_chars=120)
    assert all(0 < len(c.text) <= 120 for c in chunks)
    body = sum(len("".join(line.split())) for line in lines if line in ("word " * 50, "para"))
    assert sum(len("".join(c.text.split())) for c in chunks) >= body


def test_demo_answers_with_citations_from_the_docs(tmp_path, lanewise_settings):
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "README.md").write_text("# Widget\n\nWidgets are assembled by gnomes.\n")
    (docs / "ops.md").write_text(
        "# Operations\n\n## Deploying\n\nThe widget service is deployed with Kubernetes "
        "manifests in deploy/k8s.\n\n## Billing\n\nInvoices go out monthly.\n"
    )
    out = io.StringIO()
    console = Console(file=out, width=200)
    settings = lanewise_settings(default_model="extractive")
    assert (
        run_demo(settings, question="How is the widget deployed?", docs_dir=docs, console=console)
        == 0
    )
    text = out.getvalue()
    assert "indexed 3 chunks from 2 Markdown files" in text
    assert "Kubernetes" in text
    assert "docs/ops.md#deploying" in text
    # A second run replaces the chunks instead of adding a second copy.
    out.truncate(0)
    assert (
        run_demo(settings, question="Who assembles widgets?", docs_dir=docs, console=console) == 0
    )
    assert "indexed 3 chunks" in out.getvalue()
    assert "README.md#widget" in out.getvalue()
