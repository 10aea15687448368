"""FlashBench: samplers, metrics, suites and reports for long portrait-animation video diffusion.

The sampling API is imported from here (``from flashbench import sample, Cond``). Its names
load on first use, so that a subpackage which needs no torch (``flashbench.run.rows``, read by
``reports``) imports without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Cond": "flashbench.denoiser",
    "Denoiser": "flashbench.denoiser",
    "LayeredDenoiser": "flashbench.denoiser",
    "run_layers": "flashbench.denoiser",
    "Guidance": "flashbench.sampling",
    "Sample": "flashbench.sampling",
    "StepRecord": "flashbench.sampling",
    "sample": "flashbench.sampling",
    "flow_match_sigmas": "flashbench.schedule",
}

__all__ = [
    "Cond",
    "Denoiser",
    "Guidance",
    "LayeredDenoiser",
    "Sample",
    "StepRecord",
    "flow_match_sigmas",
    "run_layers",
    "sample",
]

if TYPE_CHECKING:
    from flashbench.denoiser import Cond, Denoiser, LayeredDenoiser, run_layers
    from flashbench.sampling import Guidance, Sample, StepRecord, sample
    from flashbench.schedule import flow_match_sigmas


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flashbench' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
