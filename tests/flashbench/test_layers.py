"""Imports point down: flashbench's subpackages form layers, and the top-level packages one direction.

Layers, lowest first: the package root (the sampling API and steppers), ``models``,
``planning``, ``suite``, ``run``, ``cli``. A module imports only from its own layer or below,
counting imports inside functions and the ``"module:object"`` strings that registries import
lazily. ``metrics`` imports nothing of ours; ``reports`` reads rows (``flashbench.run.rows``)
and refuses folders as runs do (``flashbench.run.folders``), nothing else of flashbench,
without torch; ``reference_model`` implements the protocols of
the lower layers; only ``flashbench.cli`` wires ``flashbench`` and ``reports`` together.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("", "models", "planning", "suite", "run", "cli")
# "module:object" strings, as registries and lazy loaders name their targets.
LAZY = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*):[A-Za-z_]\w*$")


def modules(package: str) -> dict[str, Path]:
    """Every module of a top-level package by dotted name (a package by its own name)."""
    names = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def references(path: Path, strings: bool = True) -> set[str]:
    """The modules ``path`` imports anywhere in it, and (``strings``) those a ``"module:object"`` string names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from flashbench.run import rows` imports the module flashbench.run.rows.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = LAZY.match(node.value)
            if match:
                found.add(match.group(1))
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0


def flashbench_targets(path: Path, known: set[str]) -> set[str]:
    return {name for name in references(path) if name in known}


def test_every_flashbench_module_imports_only_its_layer_or_below():
    names = modules("flashbench")
    upward = [
        f"{name} ({LAYERS[layer(name)] or 'root'}) -> {target} ({LAYERS[layer(target)]})"
        for name, path in names.items()
        for target in sorted(flashbench_targets(path, set(names)))
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_the_layer_check_sees_lazy_strings_and_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        'ENTRY = "flashbench.run.runner:run_suite"\ndef f():\n    from flashbench.cli import main\n'
    )
    assert references(module) >= {"flashbench.run.runner", "flashbench.cli"}


def test_every_lazy_flashbench_and_reference_model_string_names_an_object():
    # A registry string that names nothing fails only when a suite asks for it; fail here first.
    for name, path in modules("flashbench").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = LAZY.match(node.value)
                if match and match.group(1).split(".")[0] in ("flashbench", "reference_model"):
                    module, _, attribute = node.value.partition(":")
                    target = ROOT.joinpath(*module.split("."))
                    source = (
                        target.with_suffix(".py")
                        if target.with_suffix(".py").exists()
                        else target / "__init__.py"
                    )
                    assert source.exists(), f"{name}: {node.value!r} names no module"
                    defined = {
                        getattr(n, "name", None) for n in ast.parse(source.read_text()).body
                    } | {
                        t.id
                        for n in ast.parse(source.read_text()).body
                        if isinstance(n, ast.Assign | ast.AnnAssign)
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                        if isinstance(t, ast.Name)
                    }
                    assert attribute in defined, f"{name}: {node.value!r} names nothing in {module}"


def test_no_flashbench_module_imports_reference_model_even_inside_a_function():
    # Models, and the world a real model draws its cases from, are named as "module:object"
    # strings and imported by name (flashbench.models.registry, flashbench.models.flashportrait.model).
    offenders = [
        name
        for name, path in modules("flashbench").items()
        if any(m.split(".")[0] == "reference_model" for m in references(path, strings=False))
    ]
    assert offenders == []


def test_only_the_cli_imports_reports():
    offenders = [
        name
        for name, path in modules("flashbench").items()
        if layer(name) != LAYERS.index("cli")
        and any(m.split(".")[0] == "reports" for m in references(path))
    ]
    assert offenders == []


def test_reports_import_only_the_row_format_and_the_folder_check_of_flashbench():
    used = {
        m
        for path in modules("reports").values()
        for m in references(path)
        if m.split(".")[0] in ("flashbench", "reference_model", "metrics")
    }
    # `from flashbench.run.rows import Row` counts flashbench.run.rows and its name Row.
    used -= {"flashbench.run.folders", "flashbench.run.folders.check_own_folder"}
    assert {m.removeprefix("flashbench.run.rows.") for m in used} - {"flashbench.run.rows"} <= {
        "COLUMNS",
        "FORMAT_VERSION",
        "KEY",
        "POOLED_CASE",
        "SPEED",
        "TIMING_METRICS",
        "TRACE_KEYS",
        "Row",
    }
    assert "flashbench.run.rows" in used


def test_metrics_import_nothing_of_ours():
    used = {
        (name, m)
        for name, path in modules("metrics").items()
        for m in references(path)
        if m.split(".")[0] in ("flashbench", "reference_model", "reports")
    }
    assert used == set()


def test_reference_model_implements_only_the_lower_layers():
    # The reference model speaks the sampling API and the model protocol; suites, runs and
    # the CLI sit above it.
    highest = LAYERS.index("planning")
    used = {
        (name, m)
        for name, path in modules("reference_model").items()
        for m in references(path, strings=False)
        if m.split(".")[0] == "flashbench" and layer(m) > highest
    }
    assert used == set()


@pytest.mark.parametrize("package", ["reports", "flashbench.run.rows", "flashbench.run.folders"])
def test_reading_rows_imports_no_torch(package):
    script = (
        "import importlib, pkgutil, sys\n"
        f"module = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(getattr(module, '__path__', []), module.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"


def test_importing_every_flashbench_module_imports_no_reference_model():
    script = (
        "import importlib, json, sys\n"
        f"for name in {sorted(modules('flashbench'))!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'reference_model')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_flashbench_modules_import_no_cycle():
    names = modules("flashbench")
    graph = {name: flashbench_targets(path, set(names)) - {name} for name, path in names.items()}
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
