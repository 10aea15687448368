"""What a suite can measure, and the rows of one unit, computed with the ``metrics`` package's torchmetrics Metrics.

``METRICS`` is the registry: each entry names the Metric class to build (imported lazily),
the constructor arguments of each backend (``FromModel`` ones are asked of the suite's
model), what ``update`` reads and which figures of ``compute()`` become rows. Adding a
metric is one file in ``metrics/`` and one entry here; an installed package adds one through
the entry point ``flashbench.metrics`` naming its ``MetricSpec`` (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flashbench.registry import Registry

# Identical frames have infinite PSNR; rows are strict JSON, so PSNR is capped (MSE floor 1e-10).
PSNR_CAP_DB = 100.0
# Each unit's metrics are that unit's own: under DDP, compute() must not gather other ranks' states.
LOCAL = False
# Pooled metrics need two cases (a covariance needs two samples); fewer videos than feature
# dimensions still give a well-defined, if biased, distance.
MIN_POOLED_VIDEOS = 2


@dataclass(frozen=True)
class FromModel:
    """A constructor argument the suite's model provides: ``getattr(model, method)()``."""

    method: str


@dataclass(frozen=True)
class Figure:
    """One row of a metric: ``compute()[key]`` (and ``[per_frame]`` for per-frame rows) under ``name``."""

    name: str
    key: str
    unit: str
    higher_is_better: bool | None
    per_frame: str | None = None
    # NaN means "nothing to measure here" (a correlation with a still driving track): no row.
    # Otherwise a non-finite value is an error.
    optional: bool = False


# What update() can read, in the layout metrics take. "target" is the row's reference (the
# ground truth, the baseline, ...) as a video; "background" asks the model for the case's
# static-background mask; "boundaries" are window seams with interior transitions to compare.
READS = ("generated", "target", "target_image", "background", "boundaries")
# Reads that the model provides, and the method that provides them.
MODEL_READS = {"background": "background_mask"}


@dataclass(frozen=True)
class MetricSpec:
    """A metric as rows see it: what builds it, what it reads, what it compares against and its rows."""

    name: str
    unit: str
    higher_is_better: bool | None
    references: tuple[str, ...]
    # backend name -> constructor arguments; the first backend is the default.
    backend_args: Mapping[str, Mapping[str, Any]]
    doc: str
    build: str  # "module:Class", imported when a suite asks for the metric
    reads: tuple[str, ...] = ("generated", "target")
    # The method whose dict result holds the figures (``compute`` or one like it).
    compute: str = "compute"
    figures: tuple[Figure, ...] = ()
    # Distribution-level: one row per setting over all its videos (cases x seeds), not one per unit.
    pooled: bool = False

    def __post_init__(self) -> None:
        unknown = [r for r in self.reads if r not in READS]
        if unknown:
            raise ValueError(f"metric {self.name!r} reads {unknown}; known reads: {list(READS)}")
        if not self.figures:
            figure = Figure(self.name, "mean", self.unit, self.higher_is_better, "per_frame")
            object.__setattr__(self, "figures", (figure,))

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.backend_args)

    def summary(self) -> str:
        """One line for ``flashbench ls metrics``: unit, direction, references, backends and doc."""
        arrow = {True: "higher is better", False: "lower is better", None: "descriptive"}
        references = ", ".join(r or "nothing" for r in self.references)
        return (
            f"[{self.unit or 'unitless'}; {arrow[self.higher_is_better]}; vs {references}; "
            f"backends {', '.join(self.backends)}] {self.doc}"
        )

    def model_methods(self, backend: str) -> list[str]:
        """The model methods this metric needs with ``backend``."""
        needed = [v.method for v in self.backend_args[backend].values() if isinstance(v, FromModel)]
        return needed + [MODEL_READS[r] for r in self.reads if r in MODEL_READS]


def _local(**kwargs: Any) -> dict[str, Any]:
    return {**kwargs, "sync_on_compute": LOCAL}


_FRAMES = ("ground_truth", "baseline", "reference_image")
# The parts of the world's face features (metrics.expression.WORLD_PARTS), one row pair each.
PARTS = ("pose", "eyes", "brows", "mouth", "smile")
# "speed" is the runner's own (timing rows), so no metric may take its name.
RESERVED = ("speed",)


def _metric_spec(name: str, obj: Any) -> str | None:
    if not isinstance(obj, MetricSpec):
        return f"is a {type(obj).__name__!r}, not a flashbench.suite.catalog.MetricSpec"
    if name in RESERVED:
        return f"takes the reserved name {name!r}; rename the entry point"
    if obj.name != name:
        return f"is the MetricSpec of {obj.name!r}; name the entry point {obj.name!r}"
    return None


BUILT_IN: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "psnr",
            "dB",
            True,
            _FRAMES,
            {"psnr": _local(cap_db=PSNR_CAP_DB)},
            f"peak signal-to-noise ratio per frame, capped at {PSNR_CAP_DB:g} dB",
            "metrics.fidelity:PSNR",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "psnr_coarse",
            "dB",
            True,
            _FRAMES,
            {"psnr-area4": _local(cap_db=PSNR_CAP_DB, downsample=4)},
            "PSNR of frames area-averaged to a quarter of their size (4x4 pixels): content and "
            f"layout, not pixel noise or grain; capped at {PSNR_CAP_DB:g} dB",
            "metrics.fidelity:PSNR",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "detail",
            "ratio",
            None,
            ("ground_truth", "baseline"),
            {"hf-energy": _local(box=4)},
            "high-frequency energy (what a 4x4 box blur removes) over the reference's, per frame: "
            "1 = as detailed, below 1 = detail averaged away, above 1 = extra noise",
            "metrics.fidelity:DetailRatio",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "ssim",
            "",
            True,
            _FRAMES,
            {"torchmetrics-ssim": _local()},
            "structural similarity (Wang et al. 2004)",
            "metrics.fidelity:SSIM",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "lpips",
            "",
            False,
            ("ground_truth", "baseline"),
            {f"lpips-{net}": _local(net=net) for net in ("alex", "vgg", "squeeze")},
            "LPIPS (Zhang et al. 2018, arXiv 1801.03924); needs backbone weights",
            "metrics.fidelity:LPIPS",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "mae",
            "",
            False,
            ("ground_truth", "baseline"),
            {"pixel-l1": _local()},
            "mean absolute pixel error in [0, 1]",
            "metrics.fidelity:MeanAbsoluteError",
            compute="compute_per_frame",
        ),
        MetricSpec(
            "id_sim",
            "cosine",
            True,
            ("reference_image",),
            {
                "world-identity-encoder": _local(encoder=FromModel("identity_encoder")),
                "arcface-w600k_mbf": _local(encoder="arcface"),
            },
            "identity cosine of each frame to the reference image",
            "metrics.identity:IdentitySimilarity",
            reads=("target_image", "generated"),
        ),
        MetricSpec(
            "aed",
            "",
            False,
            ("driving",),
            {"world-expression-extractor": _local(extractor=FromModel("expression_extractor"))},
            "average expression distance to the driving video",
            "metrics.expression:ExpressionError",
            figures=(Figure("aed", "mean", "", False),),
        ),
        MetricSpec(
            "apd",
            "",
            False,
            ("driving",),
            {"world-pose-extractor": _local(extractor=FromModel("pose_extractor"))},
            "average pose distance to the driving video",
            "metrics.expression:PoseError",
            figures=(Figure("apd", "mean", "", False),),
        ),
        MetricSpec(
            "seam",
            "",
            False,
            ("",),
            {"temporal-l1": _local()},
            "temporal change at window seams / elsewhere (1 = seamless)",
            "metrics.seams:SeamDiscontinuity",
            reads=("generated", "boundaries"),
            figures=(Figure("seam", "ratio", "", False),),
        ),
        MetricSpec(
            "temporal",
            "",
            None,
            ("ground_truth",),
            {"temporal-l2": _local()},
            "frame-to-frame change over the ground truth's (1 = as stable, 0 = frozen, above 1 = flicker; "
            "no better side, so reports judge temporal_deviation = |temporal - 1|, lower is better); "
            "temporal_noise and background_noise: the excess per-frame noise std on the whole frame and "
            "on the static background (the model's background mask)",
            "metrics.temporal:TemporalStability",
            reads=("generated", "target", "background"),
            figures=(
                Figure("temporal", "ratio", "", None, "per_frame_ratio"),
                Figure("temporal_noise", "noise_std", "", False),
                # NaN where the model's world has no still background pixel (world v2): no row.
                Figure(
                    "background_noise",
                    "background_noise_std",
                    "",
                    False,
                    "per_frame_background_noise_std",
                    optional=True,
                ),
            ),
        ),
        MetricSpec(
            "id_dist",
            "calibrated",
            False,
            ("reference_image",),
            {
                "world-identity-encoder": _local(
                    encoder=FromModel("identity_encoder"),
                    calibration=FromModel("identity_calibration"),
                ),
                "arcface-w600k_mbf": _local(encoder="arcface"),
            },
            "identity distance of each frame to the reference image, calibrated: 0 = the reference's "
            "own frames, 1 = the median other identity",
            "metrics.identity_distance:IdentityDistance",
            reads=("target_image", "generated"),
        ),
        MetricSpec(
            "expression",
            "",
            None,
            ("driving",),
            {"world-face-features": _local(extractor=FromModel("face_features_extractor"))},
            "following the driving video per part (pose, eyes, brows, mouth, smile): "
            "expression_error_<part> (AED per part; the pose part's error is APD, the apd metric, "
            "so it has no row here), expression_correlation_<part> (temporal Pearson correlation), "
            "and the driving blinks followed, missed and spurious",
            "metrics.expression:ExpressionFollowing",
            figures=(
                # The pose part's error is the apd metric's number: one name per measurement.
                *(
                    Figure(f"expression_error_{part}", f"error_{part}", "", False)
                    for part in PARTS
                    if part != "pose"
                ),
                *(
                    Figure(
                        f"expression_correlation_{part}",
                        f"correlation_{part}",
                        "pearson",
                        True,
                        optional=True,
                    )
                    for part in PARTS
                ),
                Figure("blinks", "blinks", "count", None),
                Figure("blinks_followed", "blinks_followed", "count", True),
                Figure("blinks_missed", "blinks_missed", "count", False),
                Figure("blinks_spurious", "blinks_spurious", "count", False),
            ),
        ),
        MetricSpec(
            "fvd",
            "",
            False,
            ("ground_truth", "baseline"),
            {"i3d": _local(feature="i3d")},
            "Frechet video distance (StyleGAN-V fvd_16f, I3D); one row per setting, pooled over cases and seeds",
            "metrics.fvd:FrechetVideoDistance",
            pooled=True,
        ),
        MetricSpec(
            "fid",
            "",
            False,
            ("ground_truth", "baseline"),
            {"inception": _local(feature="inception")},
            "Frechet Inception distance over every frame; one row per setting, pooled over cases and seeds",
            "metrics.fid:FrechetInceptionDistance",
            pooled=True,
        ),
    )
}
METRICS = Registry("metric", "flashbench.metrics", check=_metric_spec)
for _name, _spec in BUILT_IN.items():
    METRICS.register(_name, _spec, doc=_spec.doc)
