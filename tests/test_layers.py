"""The house rules, read from the code with `ast`: no import circle, no import from a layer above, and the measuring
side never imports the reference agent (docs/design.md "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"

# Lowest first. A module may import its own layer and the layers below it; `agent` is fenced off apart.
# `report` reads results (files) and nothing that measures: the runner and the suite may write a report.
LAYERS = ["errors", "versions", "audio", "devices", "results", "report", "telemetry", "transports", "measure", "suite", "load",
          "testing", "commands", "cli"]
AGENT_MAY_IMPORT = {"agent", "audio", "devices", "errors", "__init__"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every harness module this file imports (at any depth: lazy imports inside functions count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("harness")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = me.split(".")[: -node.level] if not path.name == "__init__.py" else me.split(".")
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("harness"):
                continue
            for a in node.names:  # `from harness.x import y` may name a module y
                sub = f"{mod}.{a.name}"
                out.add(sub if _exists(sub) else mod)
    return out


def _exists(mod: str) -> bool:
    p = ROOT.parent / mod.replace(".", "/")
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): {m for m in imports_of(p) if _exists(m)} - {module_name(p)}
            for p in ROOT.rglob("*.py")}


def layer_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_graph_is_read():
    g = graph()
    assert "harness.measure.runner" in g and "harness.results.store" in g["harness.measure.runner"]


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    # a package's __init__ importing nothing of its own is the usual case; cycles through harness/__init__ would
    # show here too
    assert not cycles, "import circles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_upward_import():
    bad = []
    for mod, deps in graph().items():
        lm = layer_of(mod)
        for d in deps:
            ld = layer_of(d)
            if ld == "__init__" or lm == "__init__":
                continue
            if lm == "agent":
                if ld not in AGENT_MAY_IMPORT:
                    bad.append(f"{mod} → {d} (the reference agent imports agent/, audio/, devices/, errors only)")
                continue
            if ld == "agent":
                if not mod.startswith("harness.commands.agent"):
                    bad.append(f"{mod} → {d} (the measuring side never imports the reference agent)")
                continue
            if lm in LAYERS and ld in LAYERS and LAYERS.index(ld) > LAYERS.index(lm):
                bad.append(f"{mod} ({lm}) → {d} ({ld}): upward")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_every_layer_is_a_folder_or_module(layer):
    assert (ROOT / layer).is_dir() or (ROOT / f"{layer}.py").exists()
