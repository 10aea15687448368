"""A metric's entry: the MetricSpec that tells suites how to build, feed and read the metric.

The Metric class itself (``brightness.py``, torchmetrics) is imported only when a suite measures it.
"""

from __future__ import annotations

from flashbench.suite.catalog import MetricSpec

BRIGHTNESS = MetricSpec(
    name="brightness",
    unit="",
    higher_is_better=None,
    references=("",),  # measured on the generated video alone
    backend_args={"mean-pixel": {"sync_on_compute": False}},
    doc="mean pixel value of each generated frame, in [0, 1]",
    build="flashbench_example_plugin.brightness:MeanBrightness",
    reads=("generated",),
)
