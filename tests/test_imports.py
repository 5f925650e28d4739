"""The package's import structure: no import cycles, public names where users find them, light imports.

The import graph is read from the source with ``ast``: an edge for every module-level import of a
``vla_engine`` module (also inside module-level ``if`` / ``try`` blocks, not inside ``if TYPE_CHECKING:``),
and none for imports inside functions, which run later. Importing ``a.b.c`` first runs the ``__init__`` of
``a`` and ``a.b``, so an import edge also points at the target's enclosing packages (not at the importer's
own, which are already being imported).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "vla_engine"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _top_level_imports(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                    (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                continue  # never runs
            yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _top_level_imports(block)


def import_graph() -> dict[str, set[str]]:
    """``module -> the vla_engine modules its module-level code imports``."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                targets.add(sub if sub in mods else target)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps = set()
        for t in targets:
            if not t.startswith("vla_engine"):
                continue
            parts = t.split(".")
            deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # the target and its packages
        graph[name] = {d for d in deps if d in mods and d != name and d not in own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_covers_the_whole_package():
    graph = import_graph()
    files = {p for p in ROOT.rglob("*.py")}
    assert len(graph) == len(files) and "vla_engine.models.vla" in graph and "vla_engine.cli" in graph
    # the parser sees relative, absolute and package-level imports
    assert "vla_engine.config.model_config" in graph["vla_engine.models.vla"]
    assert "vla_engine.models.vla" in graph["vla_engine.models.wrappers"]
    assert "vla_engine.config" in graph["vla_engine.models.vla"]  # the enclosing package's __init__ runs first


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_vla_engine():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_model_modules_do_not_defer_their_siblings():
    """Inside vla_engine.models an import in a function defers a heavy library (transformers, peft, ...), never
    a sibling module: that would hide a cycle from the graph above."""
    deferred = []
    for path in sorted((ROOT / "models").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in _top_level_imports(tree.body)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            sibling = (isinstance(node, ast.ImportFrom) and node.level == 1) or \
                any(n.startswith("vla_engine.models") for n in names)
            if sibling:
                deferred.append(f"{path.name}:{node.lineno}")
    assert not deferred, f"sibling modules imported inside functions: {', '.join(deferred)}"


@pytest.mark.parametrize("module", ["vla_engine.models"])
def test_no_model_file_over_600_lines(module):
    folder = ROOT / module.split(".", 1)[1].replace(".", "/")
    long = {p.name: n for p in folder.glob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"files over 600 lines: {long}"


def test_public_names_stay_importable():
    from vla_engine import MLPActionHead, VLAModel, create_vla_model  # noqa: F401
    from vla_engine.models import (CheckpointError, LoRASpec, ModelInputError, OpenVLAWrapper,  # noqa: F401
                                   SmolVLAWrapper, VLM_PRESETS, list_vlm_presets)
    from vla_engine.models import VLAModel as M
    from vla_engine.models.convert_openvla import is_openvla_config  # noqa: F401
    from vla_engine.models.convert_smolvla import is_smolvla_config  # noqa: F401
    from vla_engine.models.vla import (OPENVLA_PROMPT, CheckpointError as E, ModelInputError as I,  # noqa: F401
                                       VLAModel as V, VLM_PRESETS as P, create_vla_model as c, list_vlm_presets,
                                       pad_resize, random_shift, resolve_vlm)

    assert M is V is VLAModel and c is create_vla_model and P is VLM_PRESETS
    assert E is CheckpointError and I is ModelInputError
    assert "tiny" in list_vlm_presets() and resolve_vlm("tiny")["vision_encoder"] == "cnn"


def test_package_and_presets_import_without_torch():
    """``import vla_engine.models`` and the preset / format tables stay light (the UI lists them at start-up)."""
    code = ("import sys, vla_engine.models, vla_engine.models.vlm_presets, vla_engine.models.formats; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
