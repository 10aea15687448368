"""Imports point one way: flashbench finds models by name and its modules import no cycle."""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "flashbench"
ROOT = PACKAGE.parent


def module_names() -> dict[str, Path]:
    """Every flashbench module by dotted name (a package by its own name)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported(path: Path, known: set[str]) -> set[str]:
    """The flashbench modules ``path`` imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from flashbench import calibrate` imports the module flashbench.calibrate.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def test_importing_every_flashbench_module_imports_no_reference_model():
    script = (
        "import importlib, json, sys\n"
        f"for name in {sorted(module_names())!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'reference_model')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_no_flashbench_module_imports_reference_model_even_inside_a_function():
    # Models, and the world a real model draws its cases from, are named as "module:object"
    # strings and imported by name (flashbench.models, flashbench.flashportrait_model.WORLD).
    for name, path in module_names().items():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            assert not any(m.split(".")[0] == "reference_model" for m in modules), name


def test_flashbench_modules_import_no_cycle():
    names = module_names()
    graph = {name: imported(path, set(names)) - {name} for name, path in names.items()}
    state: dict[str, str] = {}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
