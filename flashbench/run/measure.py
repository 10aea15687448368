"""The measure stage: a unit's video turned into rows, by the suite's metrics built once from the catalog.

Metrics are the ``metrics`` package's torchmetrics Metrics, built as the catalog
(``flashbench/suite/catalog.py``) says, with their weights checked before any unit runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor

from flashbench.registry import load_object
from flashbench.run.plan import Measures, Unit
from flashbench.run.rows import SPEED, Row
from flashbench.run.timing import Timing
from flashbench.sampling import Sample
from flashbench.settings import Setting
from flashbench.suite.catalog import METRICS, FromModel, MetricSpec


def _as_video(frames: Tensor) -> Tensor:
    """[T, 3, H, W] -> [1, 3, T, H, W]."""
    return frames.permute(1, 0, 2, 3)[None]


class Measurer:
    """Builds each metric of a suite once (weights checked up front) and turns one unit's video into rows."""

    def __init__(self, names: tuple[str, ...], backends: dict[str, str], model: Any) -> None:
        measured = [n for n in names if n != "speed"]
        self.names = [n for n in measured if not METRICS[n].pooled]
        self.pooled = [n for n in measured if METRICS[n].pooled]
        self.backends = {n: backends.get(n, METRICS[n].backends[0]) for n in measured}
        self.model = model
        self.metrics: dict[str, Any] = {}
        for name in measured:
            try:
                self.metrics[name] = self._build(METRICS[name], self.backends[name])
            except ValueError:
                raise
            except (
                Exception
            ) as err:  # missing weights, missing packages: one clear line before any unit runs
                raise ValueError(
                    f"metric {name!r} with backend {self.backends[name]!r} is unavailable: {type(err).__name__}: {err}"
                ) from err

    def _provided(self, spec: MetricSpec, method: str) -> Any:
        getter = getattr(self.model, method, None)
        if getter is None:
            raise ValueError(
                f"metric {spec.name!r} needs the model's {method.replace('_', ' ')}, which model "
                f"{self.model.name!r} does not provide; drop the metric or use another model"
            )
        return getter

    def _build(self, spec: MetricSpec, backend: str) -> Any:
        for method in spec.model_methods(backend):
            self._provided(spec, method)
        kwargs = {
            key: self._provided(spec, value.method)() if isinstance(value, FromModel) else value
            for key, value in spec.backend_args[backend].items()
        }
        return load_object(spec.build)(**kwargs)

    def manifest(self) -> dict[str, dict[str, Any]]:
        """{metric: {backend, weights: {file: sha256}}}; world backends carry the model's weight hashes."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.backends:
            info = self.metrics[name].backend_info()
            weights = dict(info.get("weights", {}))
            if self.backends[name].startswith("world-"):
                weights.update(self.model.weights())
            out[name] = {"backend": self.backends[name], "weights": weights}
        return out

    def _read(
        self, what: str, video: Tensor, target: Tensor | None, case: Any, boundaries: list[int]
    ) -> Any:
        if what == "generated":
            return _as_video(video)
        if what == "target":
            return _as_video(target.expand_as(video) if target.ndim == 3 else target)
        if what == "target_image":
            return target[None]
        if what == "background":
            return self.model.background_mask(case)[None]
        # "boundaries": one window, or seams everywhere, leaves nothing to compare a seam with.
        return boundaries if boundaries and len(boundaries) < video.shape[0] - 1 else None

    def values(
        self,
        name: str,
        video: Tensor,
        target: Tensor | None,
        boundaries: list[int],
        case: Any = None,
    ) -> dict[str, tuple[float, list[float] | None]]:
        """{row name: (aggregate, per-frame or None)} for ``video`` [T, 3, H, W] against ``target``; {} if not measurable."""
        spec, metric = METRICS[name], self.metrics[name]
        inputs = [self._read(what, video, target, case, boundaries) for what in spec.reads]
        if any(value is None for value in inputs):
            return {}
        metric.reset()
        metric.update(*inputs)
        result = getattr(metric, spec.compute)()
        return {
            figure.name: (
                float(result[figure.key]),
                result[figure.per_frame].tolist() if figure.per_frame in result else None,
            )
            for figure in spec.figures
            if not (figure.optional and math.isnan(float(result[figure.key])))
        }

    def min_frames(self, name: str) -> int:
        """Frames a video needs for the pooled metric ``name`` (FVD's protocol clip length)."""
        protocol = getattr(self.metrics[name], "protocol", None)
        return protocol.num_frames if protocol is not None else 1

    def features(self, name: str, video: Tensor) -> Tensor:
        """Features ``[N, D]`` of one video ``[T, 3, H, W]`` for the pooled metric ``name``."""
        return self.metrics[name].video_features(_as_video(video))

    def pooled_value(self, name: str, generated: Iterable[Tensor], real: Iterable[Tensor]) -> float:
        """The distance between the generated and the real sets, each given as per-video features ``[N, D]``."""
        from metrics.frechet import FeatureSums

        metric = self.metrics[name]
        metric.reset()
        for features in generated:
            metric.update(FeatureSums.of(features), real=False)
        for features in real:
            metric.update(FeatureSums.of(features), real=True)
        return float(metric.compute())


class NonFiniteMetric(ValueError):
    """A metric's aggregate is NaN or Inf (e.g. no frame had a face)."""


def _row(
    unit: Unit,
    metric: str,
    value: float,
    unit_name: str,
    higher: bool | None,
    backend: str,
    reference: str,
    frame: int | None,
) -> Row:
    """A row of ``unit``: its case and setting fill the identifying fields."""
    return Row(
        case=unit.case.id,
        setting=unit.setting.name,
        seed=unit.seed,
        metric=metric,
        value=float(value),
        unit=unit_name,
        higher_is_better=higher,
        backend=backend,
        reference=reference,
        frame=frame,
        frames=unit.case.frames,
        stepper=unit.setting.stepper,
        windowing=unit.setting.windowing,
    )


def seam_boundaries(setting: Setting, latent_frames: int, video_frames: int) -> list[int]:
    """Video frames where a window of the setting starts or ends (at the first step), for the seam metric."""
    _, windowing, _ = setting.build()
    per_latent = max(1, video_frames // max(1, latent_frames))
    edges = {e for start, stop in windowing.windows(latent_frames, 0) for e in (start, stop)}
    return sorted(e * per_latent for e in edges if 0 < e < latent_frames)


def unit_rows(
    measures: Measures,
    measurer: Measurer,
    unit: Unit,
    result: Sample,
    video: Tensor,
    targets: dict[str, Tensor],
) -> list[Row]:
    """Tidy rows of one unit: each metric against each of its references (and per frame where asked)."""
    rows: list[Row] = []
    boundaries = seam_boundaries(unit.setting, result.latents.shape[2], video.shape[0])
    for name in measurer.names:
        spec = METRICS[name]
        backend = measurer.backends[name]
        for reference in spec.references:
            if reference and (reference not in measures.references or reference not in targets):
                continue
            measured = measurer.values(name, video, targets.get(reference), boundaries, unit.case)
            for figure in spec.figures:
                if figure.name not in measured:
                    continue
                value, frames = measured[figure.name]
                if not math.isfinite(value):
                    raise NonFiniteMetric(
                        f"metric {figure.name!r} vs {reference or 'nothing'} is not finite ({value}) for setting {unit.setting.name!r}"
                    )
                kind = (figure.unit, figure.higher_is_better, backend, reference)
                rows.append(_row(unit, figure.name, value, *kind, None))
                if name in measures.per_frame and frames is not None:
                    # A frame without a value (e.g. no face found) has no row; the aggregate skips it too.
                    rows.extend(
                        _row(unit, figure.name, v, *kind, i)
                        for i, v in enumerate(frames)
                        if math.isfinite(v)
                    )
    return rows


def speed_rows(unit: Unit, result: Sample, timing: Timing | None) -> list[Row]:
    """The unit's speed rows: wall time from ``timing`` (median and IQR of the timed passes), or
    from the one pass that made ``result`` when there is none; full passes and the FLOPs counted
    in that pass, memory and frames per second."""
    if result.flops is None:
        raise ValueError(
            f"setting {unit.setting.name!r}: its pass was sampled without counting FLOPs; "
            "sample it with count_flops=True (measured_pass does)"
        )
    seconds = timing.median if timing is not None else result.seconds
    figures = {
        "wall_seconds": seconds,
        "wall_seconds_iqr": timing.iqr if timing is not None else 0.0,
        "nfe": result.nfe,
        "flops": result.flops,
        "peak_bytes": result.peak_bytes or 0,
        "cache_bytes": result.peak_cache_bytes,
        "fps": unit.case.frames / max(seconds, 1e-9),
    }
    rows = []
    for metric, value in figures.items():
        unit_name, higher = SPEED[metric]
        rows.append(_row(unit, metric, value, unit_name, higher, "timer", "", None))
    return rows
