"""What a suite can measure, and the rows of one unit, computed with the ``metrics`` package's torchmetrics Metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

SPEED_GROUP = ("wall_seconds", "wall_seconds_iqr", "nfe", "peak_bytes", "cache_bytes", "fps")
SPEED: dict[str, tuple[str, bool | None]] = {
    "wall_seconds": ("s", False),
    "wall_seconds_iqr": ("s", None),
    "nfe": ("passes", None),
    "peak_bytes": ("bytes", None),
    "cache_bytes": ("bytes", None),
    "fps": ("frames/s", True),
}
# Identical frames have infinite PSNR; rows are strict JSON, so PSNR is capped (MSE floor 1e-10).
PSNR_CAP_DB = 100.0
# Each unit's metrics are that unit's own: under DDP, compute() must not gather other ranks' states.
LOCAL = False
# Pooled metrics need two cases (a covariance needs two samples); fewer videos than feature
# dimensions still give a well-defined, if biased, distance.
MIN_POOLED_VIDEOS = 2


@dataclass(frozen=True)
class MetricSpec:
    """A metric as rows see it: unit, direction, what it compares against, which backends compute it."""

    name: str
    unit: str
    higher_is_better: bool | None
    references: tuple[str, ...]
    backends: tuple[str, ...]
    doc: str
    # Distribution-level: one row per setting over all its videos (cases x seeds), not one per unit.
    pooled: bool = False


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "psnr",
            "dB",
            True,
            ("ground_truth", "baseline", "reference_image"),
            ("psnr",),
            f"peak signal-to-noise ratio per frame, capped at {PSNR_CAP_DB:g} dB",
        ),
        MetricSpec(
            "ssim",
            "",
            True,
            ("ground_truth", "baseline", "reference_image"),
            ("torchmetrics-ssim",),
            "structural similarity (Wang et al. 2004)",
        ),
        MetricSpec(
            "lpips",
            "",
            False,
            ("ground_truth", "baseline"),
            ("lpips-alex", "lpips-vgg", "lpips-squeeze"),
            "LPIPS (Zhang et al. 2018, arXiv 1801.03924); needs backbone weights",
        ),
        MetricSpec(
            "mae",
            "",
            False,
            ("ground_truth", "baseline"),
            ("pixel-l1",),
            "mean absolute pixel error in [0, 1]",
        ),
        MetricSpec(
            "id_sim",
            "cosine",
            True,
            ("reference_image",),
            ("world-identity-encoder", "arcface-w600k_mbf"),
            "identity cosine of each frame to the reference image",
        ),
        MetricSpec(
            "aed",
            "",
            False,
            ("driving",),
            ("world-expression-extractor",),
            "average expression distance to the driving video",
        ),
        MetricSpec(
            "apd",
            "",
            False,
            ("driving",),
            ("world-pose-extractor",),
            "average pose distance to the driving video",
        ),
        MetricSpec(
            "seam",
            "",
            False,
            ("",),
            ("temporal-l1",),
            "temporal change at window seams / elsewhere (1 = seamless)",
        ),
        MetricSpec(
            "fvd",
            "",
            False,
            ("ground_truth", "baseline"),
            ("i3d",),
            "Frechet video distance (StyleGAN-V fvd_16f, I3D); one row per setting, pooled over cases and seeds",
            pooled=True,
        ),
        MetricSpec(
            "fid",
            "",
            False,
            ("ground_truth", "baseline"),
            ("inception",),
            "Frechet Inception distance over every frame; one row per setting, pooled over cases and seeds",
            pooled=True,
        ),
    )
}
PER_FRAME = ("psnr", "ssim", "lpips", "mae", "id_sim")


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
                self.metrics[name] = self._build(name, self.backends[name])
            except ValueError:
                raise
            except (
                Exception
            ) as err:  # missing weights, missing packages: one clear line before any unit runs
                raise ValueError(
                    f"metric {name!r} with backend {self.backends[name]!r} is unavailable: {type(err).__name__}: {err}"
                ) from err

    def _world(self, what: str) -> Callable[[Tensor], Tensor]:
        getter = getattr(self.model, what, None)
        extractor = getter() if getter is not None else None
        if extractor is None:
            raise ValueError(
                f"model {self.model.name!r} provides no {what.replace('_', ' ')}; drop the metric or use another model"
            )
        return extractor

    def _build(self, name: str, backend: str) -> Any:
        if name in ("psnr", "ssim", "lpips"):
            from metrics import fidelity

            if name == "psnr":
                return fidelity.PSNR()
            if name == "ssim":
                return fidelity.SSIM()
            return fidelity.LPIPS(net=backend.removeprefix("lpips-"))
        if name == "id_sim":
            from metrics.identity import IdentitySimilarity

            return IdentitySimilarity(
                encoder="arcface"
                if backend == "arcface-w600k_mbf"
                else self._world("identity_encoder"),
                sync_on_compute=LOCAL,
            )
        if name in ("aed", "apd"):
            from metrics.expression import ExpressionError, PoseError

            if name == "aed":
                return ExpressionError(
                    extractor=self._world("expression_extractor"), sync_on_compute=LOCAL
                )
            return PoseError(extractor=self._world("pose_extractor"), sync_on_compute=LOCAL)
        if name == "seam":
            from metrics.seams import SeamDiscontinuity

            return SeamDiscontinuity(sync_on_compute=LOCAL)
        if name == "fvd":
            from metrics.fvd import FrechetVideoDistance

            return FrechetVideoDistance(feature=backend, sync_on_compute=LOCAL)
        if name == "fid":
            from metrics.fid import FrechetInceptionDistance

            return FrechetInceptionDistance(feature=backend, sync_on_compute=LOCAL)
        return None  # mae: computed here

    def manifest(self) -> dict[str, dict[str, Any]]:
        """{metric: {backend, weights: {file: sha256}}}; world backends carry the model's weight hashes."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.backends:
            metric = self.metrics[name]
            info = metric.backend_info() if hasattr(metric, "backend_info") else {"weights": {}}
            weights = dict(info.get("weights", {}))
            if self.backends[name].startswith("world-"):
                weights.update(self.model.weights())
            out[name] = {"backend": self.backends[name], "weights": weights}
        return out

    def values(
        self, name: str, video: Tensor, target: Tensor | None, boundaries: list[int]
    ) -> tuple[float, list[float] | None] | None:
        """(aggregate, per-frame or None) for ``video`` [T, 3, H, W] against ``target``; None if not measurable."""
        metric = self.metrics[name]
        if metric is not None:
            metric.reset()
        if name in ("psnr", "ssim", "lpips"):
            target = target.expand_as(video) if target.ndim == 3 else target
            frames = metric.frame_scores(video, target).double()
            if name == "psnr":
                frames = frames.clamp(max=PSNR_CAP_DB)
            return float(frames.mean()), frames.tolist()
        if name == "mae":
            target = target.expand_as(video) if target.ndim == 3 else target
            frames = (video.double() - target.double()).abs().flatten(1).mean(1)
            return float(frames.mean()), frames.tolist()
        if name == "id_sim":
            metric.update(target[None], video.permute(1, 0, 2, 3)[None])
            result = metric.compute()
            return float(result["mean"]), result["per_frame"].tolist()
        if name in ("aed", "apd"):
            metric.update(video.permute(1, 0, 2, 3)[None], target.permute(1, 0, 2, 3)[None])
            return float(metric.compute()["mean"]), None
        if name == "seam":
            if not boundaries or len(boundaries) >= video.shape[0] - 1:
                return None  # one window, or seams everywhere: nothing to compare a seam with
            metric.update(video.permute(1, 0, 2, 3)[None], boundaries)
            return float(metric.compute()["ratio"]), None
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")

    def min_frames(self, name: str) -> int:
        """Frames a video needs for the pooled metric ``name`` (FVD's protocol clip length)."""
        protocol = getattr(self.metrics[name], "protocol", None)
        return protocol.num_frames if protocol is not None else 1

    def features(self, name: str, video: Tensor) -> Tensor:
        """Features ``[N, D]`` of one video ``[T, 3, H, W]``: its protocol clip(s) for FVD, every frame for FID."""
        metric = self.metrics[name]
        if name == "fvd":
            from metrics.fvd import select_clips

            return metric.extract(select_clips(video.permute(1, 0, 2, 3)[None], metric.protocol))
        return metric.extract(video)

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
