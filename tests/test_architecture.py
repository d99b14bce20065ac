"""The shape of the package: no import circles, modules that hold one thing, heavy libraries where they belong."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "semanticdraw_cli"
MAX_LINES = 400
MODEL_LIBRARIES = ("diffusers", "transformers", "peft")


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (inside functions too), as dotted names; imports for
    type checkers only (`if TYPE_CHECKING:`) never run, so they are left out."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_import_circle():
    known = modules()
    graph = {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}
    graph = {name: {m for m in targets if not name.startswith(m + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            assert state.get(target) != 1, "import circle: " + " -> ".join([*trail, name, target])
            if target not in state:
                visit(target, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_modules_stay_small():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_only_family_adapters_and_scoring_import_model_libraries():
    allowed = ("semanticdraw_cli.families", "semanticdraw_cli.score")
    offenders = {
        name: sorted(m for m in imports(path) if m.split(".")[0] in MODEL_LIBRARIES)
        for name, path in modules().items()
        if not name.startswith(allowed)
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_tests_share_helpers_through_helper_modules_not_other_test_files():
    tests = Path(__file__).resolve().parent
    offenders = {path.name: sorted(m for m in imports(path) if m.split(".")[0].startswith("test_"))
                 for path in sorted(tests.glob("*.py"))}
    assert not {name: found for name, found in offenders.items() if found}


SAMPLER = ("semanticdraw_cli.fusion", "semanticdraw_cli.batching", "semanticdraw_cli.schedule",
           "semanticdraw_cli.masks", "semanticdraw_cli.plan", "semanticdraw_cli.tiles")
COMMANDS_AND_RENDERER = ("semanticdraw_cli.render", "semanticdraw_cli.stages", "semanticdraw_cli.cli",
                         "semanticdraw_cli.watch", "semanticdraw_cli.launch", "semanticdraw_cli.jobs")


def layer_offenders(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules under `importers` that import anything under `forbidden` (at run time)."""
    def under(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    found = {name: sorted(m for m in imports(path) if under(m, forbidden))
             for name, path in modules().items() if under(name, importers)}
    return {name: names for name, names in found.items() if names}


def test_the_sampler_knows_no_scene_renderer_or_command():
    assert not layer_offenders(SAMPLER, ("semanticdraw_cli.scene", *COMMANDS_AND_RENDERER))


def test_scene_code_never_imports_torch_or_a_model_library():
    assert not layer_offenders(("semanticdraw_cli.scene",), ("torch", *MODEL_LIBRARIES))


def test_families_never_import_the_renderer_or_a_command():
    assert not layer_offenders(("semanticdraw_cli.families",), COMMANDS_AND_RENDERER)


def test_layer_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    fake = tmp_path / "semanticdraw_cli"
    (fake / "scene").mkdir(parents=True)
    (fake / "scene" / "bad.py").write_text("def f():\n    import torch\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert layer_offenders(("semanticdraw_cli.scene",), ("torch",)) == {"semanticdraw_cli.scene.bad": ["torch"]}
