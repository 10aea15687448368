"""Plugins: installed packages add steppers, windowings, models and metrics through entry points.

The example plugin (``plugins/example``) is installed into a folder of its own, not into the
shared environment, so that other tests (and other workers) never see it; a test puts that
folder on ``sys.path`` and rescans the registries, or runs ``flashbench`` with it on PYTHONPATH.
"""

import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flashbench.cli.main import main
from flashbench.models.registry import models
from flashbench.run.rows import read_rows
from flashbench.settings import steppers, windowings
from flashbench.steppers import Euler
from flashbench.suite.catalog import METRICS, MetricSpec
from flashbench.suite.document import parse_suite

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("plugins") / "example"
ORIGIN = "flashbench-example-plugin 0.1.0"
REGISTRIES = (steppers, windowings, models, METRICS)


def write_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]
) -> None:
    """What an installer writes for importlib.metadata: ``<name>-<version>.dist-info`` with
    METADATA and entry_points.txt (the modules are the caller's)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items()) + "\n"
            for group, entries in entry_points.items()
        )
    )


def install(source: Path, site: Path) -> None:
    """Install the plugin package at ``source`` into the folder ``site``, offline.

    pip builds it with setuptools where the environment has both (as a user's ``pip install``);
    elsewhere (Python 3.12+ environments seed no setuptools) its packages are copied and its
    dist-info is written from its pyproject.toml, which is all that importlib.metadata reads.
    """
    # pip builds in the source tree: a copy keeps tests/ clean and parallel workers apart.
    build = site.with_name(f"{site.name}-source")
    shutil.copytree(source, build)
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("pip"):
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        command += ["--no-build-isolation", "--no-index", "--target", str(site), str(build)]
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"pip could not install {source}:\n{done.stderr}"
        return
    pyproject = tomllib.loads((source / "pyproject.toml").read_text())
    for package in pyproject["tool"]["setuptools"]["packages"]:
        shutil.copytree(build / package, site / package)
    project = pyproject["project"]
    write_distribution(site, project["name"], project["version"], project["entry-points"])


@contextmanager
def installed(*sites: Path) -> Iterator[None]:
    """``sites`` on sys.path and every plugin registry rescanned, for one test; then neither,
    and the modules imported from them forgotten."""
    before = set(sys.modules)
    sys.path[:0] = [str(site) for site in sites]
    importlib.invalidate_caches()
    try:
        for registry in REGISTRIES:
            registry.discover()
        yield
    finally:
        for site in sites:
            sys.path.remove(str(site))
        for name in set(sys.modules) - before:
            if any(str(site) in str(getattr(sys.modules[name], "__file__", "")) for site in sites):
                del sys.modules[name]
        for registry in REGISTRIES:
            registry.discover()


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("plugins") / "site"
    install(EXAMPLE, site)
    return site


BROKEN = "flashbench-broken-plugin"
BROKEN_OBJECTS = """
from flashbench.suite.catalog import MetricSpec

NUMBER = 3


class NotAStepper:
    '''A class that is not a flashbench Stepper.'''


class NoWeights:
    '''A windowing without weights.'''

    def windows(self, frames, step):
        return [(0, frames)]


SPEC = MetricSpec("other", "", None, ("",), {"none": {}}, "a spec under another name", "x:y")
"""


@pytest.fixture
def broken_site(tmp_path) -> Path:
    """Two packages with every way a plugin entry can be unusable, and one usable entry."""
    site = tmp_path / "broken"
    (site / "flashbench_broken_plugin").mkdir(parents=True)
    (site / "flashbench_broken_plugin" / "__init__.py").write_text("")
    (site / "flashbench_broken_plugin" / "missing.py").write_text(
        "import flashbench_no_such_dependency\n"
    )
    (site / "flashbench_broken_plugin" / "objects.py").write_text(BROKEN_OBJECTS)
    objects = "flashbench_broken_plugin.objects"
    entries = {
        "flashbench.steppers": {
            "needs_missing": "flashbench_broken_plugin.missing:Stepper",
            "not_callable": f"{objects}:NUMBER",
            "not_a_stepper": f"{objects}:NotAStepper",
            "euler": "flashbench.steppers.euler:Euler",
            "twice": "flashbench.steppers.euler:Euler",
            "usable": "flashbench.steppers.euler:Euler",
        },
        "flashbench.windowings": {"no_weights": f"{objects}:NoWeights"},
        "flashbench.metrics": {"not_a_spec": f"{objects}:NUMBER", "wrong_name": f"{objects}:SPEC"},
    }
    write_distribution(site, BROKEN, "2.0", entries)
    other = {"flashbench.steppers": {"twice": "flashbench.steppers.euler:Euler"}}
    write_distribution(site, "flashbench-other-plugin", "1.0", other)
    return site


# ---- a working plugin ---------------------------------------------------------------------


def test_plugin_entries_come_from_their_package_and_build_like_built_ins(example_site):
    with installed(example_site):
        assert steppers.origin("euler") == "built-in"
        for registry, name in (
            (steppers, "skip_euler"),
            (windowings, "halves"),
            (models, "toy_small"),
            (METRICS, "brightness"),
        ):
            assert name in registry and name in registry.names()
            assert registry.origin(name) == ORIGIN
            assert registry.problem(name) is None
        stepper = steppers.build("skip_euler", every=3)
        assert type(stepper).__name__ == "SkipEuler" and stepper.every == 3
        assert windowings.build("halves").windows(6, 0) == [(0, 3), (3, 6)]
        assert models.build("toy_small").denoiser is not None
        assert isinstance(METRICS["brightness"], MetricSpec)
    assert "skip_euler" not in steppers and "brightness" not in METRICS


def test_plugins_are_imported_only_when_used(example_site):
    with installed(example_site):
        assert "skip_euler" in steppers.names()
        assert "flashbench_example_plugin.stepper" not in sys.modules
        steppers.get("skip_euler")
        assert "flashbench_example_plugin.stepper" in sys.modules
        assert "flashbench_example_plugin.brightness" not in sys.modules


def test_ls_shows_where_each_entry_comes_from(example_site, capsys):
    with installed(example_site):
        assert main(["ls", "steppers"]) == 0
        assert main(["ls", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(line for line in lines if line.split()[0] == "skip_euler")
    assert ORIGIN in line and "reused between" in line
    assert "built-in" in next(line for line in lines if line.split()[0] == "euler")
    line = next(line for line in lines if line.split()[0] == "brightness")
    assert ORIGIN in line and "mean pixel value" in line


PLUGIN_SUITE = """
[suite]
name = "plugins"
version = "1"
model = "toy_small"
steps = 4
baseline = "baseline"
seeds = [0]

[cases]
split = "test"
identities = 1
driving_seeds = [0]
reenactment = ["self"]
lengths = [6]
resolution = 16

[metrics]
names = ["psnr", "brightness", "speed"]
references = ["ground_truth", "baseline"]
per_frame = ["brightness"]
timing_repeats = 1

[[settings]]
use = "baseline"

[[settings]]
name = "skip_euler"
stepper = "skip_euler"
stepper_args = { every = 2 }

[[settings]]
name = "halves"
windowing = "halves"
"""


def test_a_suite_names_plugin_entries_like_built_in_ones(example_site, tmp_path):
    suite = tmp_path / "plugins.toml"
    suite.write_text(PLUGIN_SUITE)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "flashbench.cli.main", "run", str(suite), "--out", str(out)]
    command += ["--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_site), str(REPO)])}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    nfe = {r["setting"]: r["value"] for r in rows if r["metric"] == "nfe"}
    assert nfe == {"baseline": 4, "skip_euler": 2, "halves": 8}
    brightness = [r for r in rows if r["metric"] == "brightness"]
    assert {r["setting"] for r in brightness} == {"baseline", "skip_euler", "halves"}
    assert all(0 <= r["value"] <= 1 for r in brightness)
    assert {r["frame"] for r in brightness} >= set(range(6))
    assert {r["setting"] for r in rows if r["metric"] == "psnr"} == {
        "baseline",
        "skip_euler",
        "halves",
    }
    # The run names the package (and version) each plugin entry came from; built-ins not.
    assert json.loads((out / "manifest.json").read_text())["plugins"] == {
        "model": {"toy_small": ORIGIN},
        "stepper": {"skip_euler": ORIGIN},
        "windowing": {"halves": ORIGIN},
        "metric": {"brightness": ORIGIN},
    }


# ---- broken plugins -----------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_names_its_package_and_spares_the_others(broken_site):
    with installed(broken_site):
        with pytest.raises(ValueError) as error:
            steppers.get("needs_missing")
        message = str(error.value)
        assert f"{BROKEN} 2.0" in message
        assert "needs_missing = flashbench_broken_plugin.missing:Stepper" in message
        assert "ModuleNotFoundError" in message and f"pip uninstall {BROKEN}" in message
        assert steppers.get("usable") is Euler and steppers.origin("usable") == f"{BROKEN} 2.0"
        assert steppers.build("alp").name == "alp"
        assert isinstance(METRICS["psnr"], MetricSpec)


@pytest.mark.parametrize(
    ("registry", "name", "expected"),
    [
        (steppers, "not_callable", "is a 'int', not a class or factory function"),
        (METRICS, "not_a_spec", "is a 'int', not a flashbench.suite.catalog.MetricSpec"),
        (METRICS, "wrong_name", "is the MetricSpec of 'other'; name the entry point 'other'"),
    ],
)
def test_an_entry_naming_the_wrong_object_says_what_it_should_name(
    broken_site, registry, name, expected
):
    match = f"of entry point '{name} = .*{BROKEN} 2.0"
    with installed(broken_site), pytest.raises(ValueError, match=match) as error:
        registry.get(name)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("registry", "name", "expected"),
    [
        (
            steppers,
            "not_a_stepper",
            "built 'NotAStepper', which is not a flashbench.steppers.Stepper",
        ),
        (windowings, "no_weights", "built 'NoWeights', which has no weights method"),
    ],
)
def test_an_entry_building_the_wrong_object_names_its_package(
    broken_site, registry, name, expected
):
    match = f"from package {BROKEN} 2.0"
    with installed(broken_site), pytest.raises(ValueError, match=match) as error:
        registry.build(name)
    assert expected in str(error.value)


def test_a_plugin_cannot_replace_a_built_in(broken_site, caplog, capsys):
    with caplog.at_level(logging.WARNING, logger="flashbench.registry"), installed(broken_site):
        assert steppers.get("euler") is Euler and steppers.origin("euler") == "built-in"
        problem = steppers.problem("euler")
        assert main(["ls", "steppers"]) == 0
    assert problem is not None and f"{BROKEN} 2.0" in problem
    assert (
        "clashes with the built-in stepper 'euler'" in problem
        and "rename the entry point" in problem
    )
    assert problem in caplog.text
    euler = [line for line in capsys.readouterr().out.splitlines() if line.split()[0] == "euler"]
    assert len(euler) == 2 and "built-in" in euler[0] and f"NOT USED: {problem}" in euler[1]


def test_one_name_from_two_packages_names_both(broken_site):
    with installed(broken_site):
        assert steppers.origin("twice") == f"{BROKEN} 2.0, flashbench-other-plugin 1.0"
        with pytest.raises(ValueError, match="declared by several packages") as error:
            steppers.get("twice")
    assert BROKEN in str(error.value) and "flashbench-other-plugin" in str(error.value)


def test_ls_lists_broken_plugins_beside_every_other_entry(broken_site, capsys):
    with installed(broken_site):
        assert main(["ls"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "BROKEN: stepper 'needs_missing' cannot be loaded" in lines["needs_missing"]
    assert "BROKEN: metric 'wrong_name'" in lines["wrong_name"]
    for name in ("alp", "usable", "psnr", "toy", "quick"):
        assert "BROKEN" not in lines[name]


def test_a_suite_naming_a_broken_plugin_fails_with_its_package_named(broken_site, tiny_text):
    text = tiny_text + '\n[[settings]]\nname = "broken"\nstepper = "needs_missing"\n'
    with installed(broken_site), pytest.raises(ValueError) as error:
        parse_suite(text, "tiny.toml")
    message = str(error.value)
    assert "settings[2]" in message and f"{BROKEN} 2.0" in message and "pip uninstall" in message
