"""Every hookspec is documented in docs/hooks.md and has a test of its own (datasette-style).

Adding a hook to ``lanewise.core.hookspecs`` without a ``## <hook>`` section that
shows its signature, or without a ``test_hook_<hook>`` function somewhere under
``packages/*/tests`` or ``tests/``, fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from lanewise.core import hookspecs

ROOT = Path(__file__).resolve().parents[3]
HOOKS_MD = ROOT / "docs" / "hooks.md"


def hook_names() -> list[str]:
    return sorted(
        name
        for name, fn in vars(hookspecs).items()
        if name.startswith("lanewise_") and callable(fn) and hasattr(fn, "lanewise_spec")
    )


def signature_of(name: str) -> str:
    """``name(arg: Type, ...) -> Return`` as written in hookspecs.py (annotations are strings)."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def doc_sections() -> dict[str, str]:
    text = HOOKS_MD.read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip().strip("`"): part for part in parts}


def hook_tests() -> set[str]:
    found: set[str] = set()
    files = [*ROOT.glob("packages/*/tests/**/*.py"), *ROOT.glob("tests/**/*.py")]
    pattern = re.compile(r"^\s*(?:async )?def test_hook_(lanewise_\w+)", re.MULTILINE)
    for path in files:
        found.update(pattern.findall(path.read_text()))
    return found


def test_there_are_hooks():
    assert len(hook_names()) >= 16
    assert "lanewise_register_backends" in hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented_with_its_signature(hook):
    sections = doc_sections()
    assert hook in sections, f"docs/hooks.md has no '## {hook}' section"
    section = sections[hook]
    assert signature_of(hook) in section, (
        f"docs/hooks.md section {hook} must show the signature: {signature_of(hook)}"
    )
    assert "```python" in section.split(signature_of(hook), 1)[1], (
        f"docs/hooks.md section {hook} needs an example after the signature"
    )
    assert "When it is called" in section


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_test(hook):
    names = hook_tests()
    assert any(n == hook or n.startswith(hook + "_") for n in names), (
        f"no test function named test_hook_{hook} under packages/*/tests or tests/"
    )


def test_docs_do_not_describe_hooks_that_do_not_exist():
    stale = sorted(set(doc_sections()) - set(hook_names()) - {"Conventions", "Writing a plugin"})
    assert not stale, f"docs/hooks.md documents hooks that hookspecs.py lacks: {stale}"


def test_firstresult_hooks_say_so():
    sections = doc_sections()
    for hook in hook_names():
        opts = getattr(getattr(hookspecs, hook), "lanewise_spec")
        if opts.get("firstresult"):
            assert "firstresult" in sections[hook], f"docs/hooks.md: say that {hook} is firstresult"


def example_of(hook: str) -> str:
    section = doc_sections()[hook]
    after = section.split(signature_of(hook), 1)[1]
    return after.split("```python", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("hook", hook_names())
def test_hook_example_runs_as_a_plugin(hook):
    """Each section's example executes, registers cleanly and implements its hook."""
    import types

    from lanewise.core.plugins import REGISTRY_HOOKS, collect, get_plugin_manager

    module = types.ModuleType(f"hook_example_{hook}")
    exec(compile(example_of(hook), f"docs/hooks.md#{hook}", "exec"), module.__dict__)
    pm = get_plugin_manager([], extra=[module])
    assert module in [impl.plugin for impl in getattr(pm.hook, hook).get_hookimpls()]
    kind = {v: k for k, v in REGISTRY_HOOKS.items()}.get(hook)
    if kind is not None and kind != "health check":
        assert collect(pm, kind).names(), f"the {hook} example registers nothing"


def test_a_new_hook_without_docs_or_test_would_fail(monkeypatch):
    """The enforcement itself: a spec added to hookspecs.py alone fails both checks."""

    @hookspecs.hookspec
    def lanewise_on_something_new(event: object) -> None:
        """Not documented, not tested."""

    monkeypatch.setattr(
        hookspecs, "lanewise_on_something_new", lanewise_on_something_new, raising=False
    )
    assert "lanewise_on_something_new" in hook_names()
    with pytest.raises(AssertionError, match="has no '## lanewise_on_something_new' section"):
        test_hook_is_documented_with_its_signature("lanewise_on_something_new")
    with pytest.raises(
        AssertionError, match="no test function named test_hook_lanewise_on_something_new"
    ):
        test_hook_has_a_test("lanewise_on_something_new")
