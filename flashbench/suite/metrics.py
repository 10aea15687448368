"""A suite's ``[metrics]``: which metrics, against which references, and the checks that they fit together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flashbench.suite.catalog import METRICS
from flashbench.suite.schema import Integer, ListOf, Table, Text, Where, toml_key

# "reseeded": the baseline setting sampled again with another noise seed and measured like a
# setting (rows of the pseudo-setting "reseeded"): the seed floor of every figure.
REFERENCES = ("ground_truth", "baseline", "reseeded", "reference_image", "driving")
METRIC_NAMES = (*METRICS, "speed")
MAX_TIMING_REPEATS = 100

METRIC = Text(METRIC_NAMES, listed_by="flashbench ls metrics")


@dataclass(frozen=True)
class Metrics:
    """``[metrics]``: what is measured, against which references, per frame or per video."""

    names: tuple[str, ...] = toml_key(
        "metrics.names", ListOf(METRIC), "what to measure", default=("psnr", "speed")
    )
    references: tuple[str, ...] = toml_key(
        "metrics.references",
        ListOf(Text(REFERENCES)),
        "what the metrics compare against; `reseeded` also samples the baseline from another "
        "noise seed and measures it like a setting (pseudo-setting `reseeded`): the seed floor "
        "of every figure, FVD included (one extra baseline sample per case and seed)",
        default=("ground_truth", "baseline"),
    )
    per_frame: tuple[str, ...] = toml_key(
        "metrics.per_frame",
        ListOf(METRIC, nonempty=False),
        "metrics also written one row per frame (identity drift curves); not pooled ones",
        default=(),
    )
    backends: Mapping[str, str] = toml_key(
        "metrics.backends",
        Table('{ id_sim = "world-identity-encoder" }'),
        "backend per metric of `names`",
        default_doc="each metric's first (`flashbench ls metrics`)",
        default={},
    )
    # Timed sampling passes per unit after the one that makes its video (which warms up):
    # wall_seconds is their median, wall_seconds_iqr their spread.
    timing_repeats: int = toml_key(
        "metrics.timing_repeats",
        Integer(1, MAX_TIMING_REPEATS),
        'timed sampling passes per unit for "speed" (median and IQR in rows)',
        default=3,
    )


def check_metrics(where: Where, metrics: Metrics) -> None:
    """Metrics that fit together: per-frame ones measured, references for each, backends they have."""
    for i, name in enumerate(metrics.per_frame):
        if name not in metrics.names:
            raise where.error(
                f"metrics.per_frame[{i}]",
                f"{name!r} is not in metrics.names {list(metrics.names)}; add it there",
            )
        if name in METRICS and METRICS[name].pooled:
            raise where.error(
                f"metrics.per_frame[{i}]",
                f"{name!r} is pooled over a setting's videos (one row per setting); remove it from per_frame",
            )
    for i, name in enumerate(metrics.names):
        if (
            name != "speed"
            and "" not in METRICS[name].references
            and not set(METRICS[name].references) & set(metrics.references)
        ):
            raise where.error(
                f"metrics.names[{i}]",
                f"{name!r} compares against {list(METRICS[name].references)}; add one of them to metrics.references",
            )
    for name, backend in metrics.backends.items():
        if name not in metrics.names:
            raise where.unknown(
                f"metrics.backends.{name}",
                name,
                list(metrics.names),
                "metric (not in metrics.names)",
            )
        choices = METRICS[name].backends if name in METRICS else ("timer",)
        Text(choices).read(where, f"metrics.backends.{name}", backend)
