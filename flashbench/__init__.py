"""FlashBench: samplers, metrics, suites and reports for long portrait-animation video diffusion."""

from flashbench.denoiser import Cond, Denoiser, LayeredDenoiser, run_layers
from flashbench.sampling import Guidance, Sample, StepRecord, sample
from flashbench.schedule import flow_match_sigmas

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
