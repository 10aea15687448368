"""Every registered metric, built through the registry and measured through update/compute."""

from __future__ import annotations

import math

import pytest
import torch

from flashbench.run.measure import Measurer
from flashbench.suite.catalog import METRICS, FromModel
from metrics.identity_distance import IdentityCalibration

FRAMES, SIZE = 6, 32


def _features(frames: torch.Tensor) -> torch.Tensor:
    """Seven stand-in features per frame (channel means and quadrant means), like the world's extractor."""
    quadrants = frames.unfold(2, SIZE // 2, SIZE // 2).unfold(3, SIZE // 2, SIZE // 2)
    return torch.cat([frames.mean(dim=(2, 3)), quadrants.mean(dim=(1, 4, 5)).flatten(1)], 1)


class StandInModel:
    """Provides every model method a registered metric may ask for, from plain pixel statistics."""

    name = "stand-in"

    def identity_encoder(self):
        return lambda frames: torch.nn.functional.normalize(_features(frames) + 1.0, dim=1)

    def identity_calibration(self) -> IdentityCalibration:
        return IdentityCalibration(0.0, 0.5, "stand-in", 2, 2, "test")

    def expression_extractor(self):
        return lambda frames: _features(frames)[:, 3:]

    def pose_extractor(self):
        return lambda frames: _features(frames)[:, :3]

    def face_features_extractor(self):
        return _features

    def background_mask(self, case) -> torch.Tensor:
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        mask[:, : SIZE // 4] = True
        return mask

    def weights(self) -> dict[str, str]:
        return {}


def _measurer(name: str, model) -> Measurer:
    try:
        return Measurer((name,), {}, model)
    except ValueError as err:
        if "unavailable" in str(err) and "Weight" in str(err):
            pytest.skip(f"weights missing here: {err}")
        raise


UNIT_METRICS = [name for name, spec in METRICS.items() if not spec.pooled]


@pytest.mark.parametrize("name", UNIT_METRICS)
def test_every_metric_gives_its_figures_and_resets_between_units(name: str) -> None:
    spec = METRICS[name]
    measurer = _measurer(name, StandInModel())
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(FRAMES, 3, SIZE, SIZE, generator=generator)
    video = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    other = torch.rand(target.shape, generator=generator)
    reference = spec.references[0]
    target_for = target[0] if reference == "reference_image" else target
    boundaries = [FRAMES // 2]
    first = measurer.values(name, video, target_for, boundaries)
    measurer.values(name, other, target_for, boundaries)
    again = measurer.values(name, video, target_for, boundaries)
    assert list(first) == [figure.name for figure in spec.figures]
    assert first == again, "a unit's figures must not depend on the unit measured before it"
    for figure in spec.figures:
        value, frames = first[figure.name]
        assert math.isfinite(value), (figure.name, value)
        if frames is not None:
            # One value per frame, or per transition between frames (temporal change).
            assert len(frames) in (FRAMES, FRAMES - 1), figure.name


@pytest.mark.parametrize(
    "name",
    [n for n in UNIT_METRICS if any(METRICS[n].model_methods(b) for b in METRICS[n].backends)],
)
def test_a_model_without_what_a_metric_needs_is_refused_naming_it(name: str) -> None:
    spec = METRICS[name]
    backend = next(b for b in spec.backends if spec.model_methods(b))
    missing = spec.model_methods(backend)[0]

    class Lacking(StandInModel):
        pass

    setattr(Lacking, missing, None)
    with pytest.raises(ValueError, match=missing.replace("_", " ")):
        Measurer((name,), {name: backend}, Lacking())


def test_registry_backends_are_built_from_data_only() -> None:
    for spec in METRICS.values():
        module, _, attribute = spec.build.partition(":")
        assert module.startswith("metrics.") and attribute, spec.name
        for args in spec.backend_args.values():
            assert all(isinstance(v, (FromModel, str, float, int, bool)) for v in args.values())


def test_expression_rows_name_the_world_parts() -> None:
    from flashbench.suite.catalog import PARTS
    from metrics.expression import WORLD_PARTS

    assert tuple(WORLD_PARTS) == PARTS


def test_one_measurement_has_one_name_across_metrics() -> None:
    # The expression metric's pose error is the apd metric's number: it leaves it to apd.
    names = [figure.name for _, spec in METRICS.items() for figure in spec.figures]
    assert len(names) == len(set(names))
    expression = {figure.name for figure in METRICS["expression"].figures}
    assert "expression_error_pose" not in expression and "expression_correlation_pose" in expression
    assert "apd" in {figure.name for figure in METRICS["apd"].figures}


@pytest.mark.parametrize("name", UNIT_METRICS)
def test_no_metric_compares_with_the_reseeded_baseline(name: str) -> None:
    # The re-seeded baseline is measured like a setting (its "baseline" rows are the floor of
    # every @baseline figure), so no metric needs it as a reference.
    assert "reseeded" not in METRICS[name].references
