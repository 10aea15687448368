"""The temporal, identity-distance and expression-following metrics in real runs of the reference model."""

from __future__ import annotations

import pytest

from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import load_suite

SUITE = """
[suite]
name = "discriminating"
version = "1"
model = "reference"
steps = 4
shift = 5.0
baseline = "baseline"
seeds = [0]

[cases]
split = "test"
identities = 1
driving_seeds = [0]
reenactment = ["self", "cross"]
lengths = [12]
resolution = 64

[metrics]
names = ["temporal", "id_dist", "expression"]
references = ["ground_truth", "reference_image", "driving"]
per_frame = ["temporal", "id_dist"]

[[settings]]
use = "baseline"

[[settings]]
name = "fewer_steps_2"
stepper = "fewer_steps"
stepper_args = { steps = 2 }
"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("run")
    path = out / "discriminating.toml"
    path.write_text(SUITE)
    summary = run_suite(load_suite(path), out / "run", threads=1, progress=False)
    assert summary.ok, summary
    return read_rows(out / "run")


def test_every_figure_of_the_new_metrics_is_a_row_per_unit(rows) -> None:
    from flashbench.suite.catalog import METRICS

    units = {(r["case"], r["setting"]) for r in rows}
    assert len(units) == 4
    for name in ("temporal", "id_dist", "expression"):
        for figure in METRICS[name].figures:
            if figure.optional:
                continue
            got = [r for r in rows if r["metric"] == figure.name and r["frame"] is None]
            assert {(r["case"], r["setting"]) for r in got} == units, figure.name
            assert all(r["higher_is_better"] is figure.higher_is_better for r in got)


def test_temporal_and_identity_drift_have_per_frame_rows(rows) -> None:
    for metric, frames in (("temporal", 11), ("background_noise", 11), ("id_dist", 12)):
        per_frame = [r for r in rows if r["metric"] == metric and r["frame"] is not None]
        assert per_frame, metric
        case = per_frame[0]["case"]
        mine = [r for r in per_frame if r["case"] == case and r["setting"] == "baseline"]
        assert sorted(r["frame"] for r in mine) == list(range(frames))


def test_two_steps_flicker_or_drift_more_than_the_baseline(rows) -> None:
    def mean(metric: str, setting: str) -> float:
        values = [
            r["value"]
            for r in rows
            if r["metric"] == metric and r["setting"] == setting and r["frame"] is None
        ]
        return sum(values) / len(values)

    # Two Euler steps leave visible grain and a blurred face; four do better on both.
    assert mean("background_noise", "fewer_steps_2") > mean("background_noise", "baseline")
    assert mean("id_dist", "fewer_steps_2") > mean("id_dist", "baseline")


def test_the_toy_model_refuses_metrics_it_cannot_serve_at_load(tmp_path) -> None:
    text = SUITE.replace('model = "reference"', 'model = "toy"').replace(
        "resolution = 64", "resolution = 16"
    )
    path = tmp_path / "toy.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="'temporal' needs the model's background mask"):
        load_suite(path)
