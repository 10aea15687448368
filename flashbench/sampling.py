"""``sample``: the one loop that runs any stepper inside any windowing, with guidance."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from flashbench.denoiser import Cond, Denoiser, check_latent
from flashbench.flops import FlopCounter, replayed_passes
from flashbench.guidance import CFG, RULES, GuidanceRule
from flashbench.schedule import check_sigmas
from flashbench.steppers import Euler, Stepper
from flashbench.windowing import Full, Sliding, Window, blend


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance v = v_uncond + scale (v_cond - v_uncond) (Ho & Salimans 2022, arXiv 2207.12598).

    The unconditional branch is the conditioning without ``drop`` (FlashPortrait's emotion CFG
    drops the expression features, scale 4.0). Each branch keeps its own stepper cache.
    ``interval = (low, high)`` guides only the steps whose sigma lies in it and runs the
    conditional pass alone elsewhere (Kynkaanniemi et al. 2024, arXiv 2404.07724); ``None``
    guides every step, as the paper does. ``rule`` combines the two branches
    (``flashbench.guidance``: plain CFG, the paper's, by default; CFG-Zero*, APG). ``keep``
    names parts the unconditional branch keeps instead of dropping ``drop`` whole (e.g.
    ``("pose",)``: guidance then amplifies expression but not head motion); it needs a model
    trained with part dropout, whose ``cond_parts`` name them.
    """

    scale: float = 4.0
    drop: tuple[str, ...] = ("expression",)
    interval: tuple[float, float] | None = None
    rule: GuidanceRule = field(default_factory=CFG)
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.scale, int | float) or self.scale != self.scale:
            raise ValueError(
                f"guidance scale={self.scale!r} must be a number (FlashPortrait uses 4.0)"
            )
        if self.interval is not None and not (
            len(self.interval) == 2 and 0 <= self.interval[0] < self.interval[1]
        ):
            raise ValueError(
                f"guidance interval={self.interval!r} must be (low, high) with 0 <= low < high, "
                "in sigma; e.g. (0.0, 0.7)"
            )
        if not (isinstance(self.keep, tuple) and all(isinstance(p, str) for p in self.keep)):
            raise ValueError(
                f"guidance keep={self.keep!r} must be a tuple of part names, e.g. ('pose',)"
            )
        if not callable(getattr(self.rule, "combine", None)):
            raise ValueError(
                f"guidance rule={self.rule!r} has no combine(); use one of flashbench.guidance.RULES "
                f"({', '.join(RULES)})"
            )

    def uncond(self, cond: Cond) -> Cond:
        """The unconditional branch's conditioning: ``cond`` without ``drop``, or with only the ``keep`` parts of it."""
        if not self.keep:
            return cond.without(self.drop)
        return replace(cond, static={**cond.static, "keep_parts": self.keep})

    def check_model(self, model: object) -> None:
        """Raise a ValueError unless ``model`` can keep the ``keep`` parts in its unconditional branch."""
        parts = tuple(getattr(model, "cond_parts", ()))
        missing = [p for p in self.keep if p not in parts]
        if missing:
            raise ValueError(
                f"guidance keep={self.keep}: this model's unconditional branch cannot keep {missing} "
                + (
                    f"(it keeps some of {parts})"
                    if parts
                    else "(it was not trained with part dropout); drop keep to drop the whole condition"
                )
            )

    def active(self, sigma: float) -> bool:
        """Whether the step at ``sigma`` is guided."""
        return self.interval is None or self.interval[0] <= sigma <= self.interval[1]


@dataclass(frozen=True)
class StepRecord:
    """What happened at one step, in one window, in one guidance branch.

    ``flops``: what the velocity cost (``flashbench.flops``), None where sampling did not count.
    """

    step: int
    sigma: float
    window: Window
    branch: str
    action: str
    seconds: float
    flops: int | None = None


@dataclass(frozen=True)
class StepEnd:
    """What ``sample``'s callback sees after each step: the blended latent and each window's (guided) velocity."""

    step: int
    sigma: float
    x: Tensor
    velocities: dict[Window, Tensor]


@dataclass(frozen=True)
class Sample:
    """A sampled latent video and the accounting of how it was made."""

    latents: Tensor
    nfe: int
    trace: tuple[StepRecord, ...]
    seconds: float
    peak_cache_bytes: int
    actions: dict[str, int] = field(default_factory=dict)
    # Peak process memory while sampling (CPU RSS / CUDA max allocated), when the caller measured
    # it; the runner does, through metrics.speed.measure.
    peak_bytes: int | None = None
    # FLOPs of every velocity (``sample(count_flops=True)``): full and partial passes, every
    # window and guidance branch; None where not counted.
    flops: int | None = None


@dataclass
class _WindowState:
    """What sampling keeps between steps: stepper caches per (window, branch), and per window
    the stepper's history and the guidance rule's state."""

    caches: dict[tuple[Window, str], dict] = field(default_factory=dict)
    histories: dict[Window, dict] = field(default_factory=dict)
    guidance: dict[Window, dict] = field(default_factory=dict)

    def keep_only(self, windows: list[Window]) -> None:
        """Free the state of windows not in ``windows``: a shifting grid makes it stale, and
        memory stays bounded by the current grid."""
        for key in [k for k in self.caches if k[0] not in windows]:
            del self.caches[key]
        for states in (self.histories, self.guidance):
            for window in [w for w in states if w not in windows]:
                del states[window]


def _window_velocity(
    model: Denoiser,
    x_window: Tensor,
    sigmas: Tensor,
    step: int,
    window: Window,
    branches: dict[str, Cond],
    stepper: Stepper,
    guidance: Guidance | None,
    state: _WindowState,
    trace: list[StepRecord],
    counter: FlopCounter | None,
) -> Tensor:
    """One window's velocity at ``step``: each guidance branch through the stepper, then combined."""
    start, stop = window
    sigma = float(sigmas[step])
    guided = guidance is not None and guidance.active(sigma)
    velocities = {}
    for branch, branch_cond in branches.items():
        if branch == "uncond" and not guided:
            continue
        tic = time.perf_counter()
        cache = state.caches.setdefault((window, branch), {})
        # Entering the counter starts it from zero: it holds this velocity's FLOPs alone.
        with counter if counter is not None else contextlib.nullcontext():
            velocities[branch], action = stepper.velocity(
                model, x_window, sigmas, step, branch_cond.window(start, stop), cache
            )
        seconds = time.perf_counter() - tic
        flops = None if counter is None else counter.total
        trace.append(StepRecord(step, sigma, window, branch, action, seconds, flops))
    if not guided:
        return velocities["cond"]
    return guidance.rule.combine(
        velocities["cond"],
        velocities["uncond"],
        x=x_window,
        sigma=sigma,
        step=step,
        scale=guidance.scale,
        state=state.guidance.setdefault(window, {}),
    )


@torch.no_grad()
def sample(
    model: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    cond: Cond | None = None,
    *,
    stepper: Stepper | None = None,
    windowing: Full | Sliding | None = None,
    guidance: Guidance | None = None,
    callback: Callable[[StepEnd], None] | None = None,
    count_flops: bool = False,
) -> Sample:
    """Integrate the flow-matching ODE from ``noise`` at ``sigmas[0]`` down to ``sigmas[-1]``.

    ``noise`` is never modified. Windows are processed one at a time, so activation memory is
    bounded by the window; stepper caches live per (window, guidance branch). ``callback``, if
    given, is called after every step (as in k-diffusion's samplers) and must not modify what
    it is given. ``count_flops`` counts the FLOPs of every velocity (``flashbench.flops``: the
    denoiser's passes, partial ones included, and any matmul a stepper does itself) into the
    trace and ``Sample.flops``; it slows sampling, so timed passes leave it off.
    """
    check_latent(noise, "noise")
    check_sigmas(sigmas)
    cond = cond if cond is not None else Cond()
    stepper = stepper if stepper is not None else Euler()
    windowing = windowing if windowing is not None else Full()
    sigmas = stepper.plan(sigmas.to(noise.device))
    check_sigmas(sigmas)
    if guidance is not None:
        guidance.check_model(model)
    branches = (
        {"cond": cond} if guidance is None else {"cond": cond, "uncond": guidance.uncond(cond)}
    )
    frames = noise.shape[2]
    state = _WindowState()
    trace: list[StepRecord] = []
    peak_cache = 0
    counter = FlopCounter() if count_flops else None
    start_time = time.perf_counter()
    x = noise.clone()
    # Counted passes replay a shape-following model's count after its first pass of a shape.
    with replayed_passes(model) if count_flops else contextlib.nullcontext():
        for step in range(len(sigmas) - 1):
            windows = windowing.windows(frames, step)
            outputs, guided = [], {}
            for window in windows:
                x_window = x[:, :, window[0] : window[1]]
                v = _window_velocity(
                    model,
                    x_window,
                    sigmas,
                    step,
                    window,
                    branches,
                    stepper,
                    guidance,
                    state,
                    trace,
                    counter,
                )
                guided[window] = v
                history = state.histories.setdefault(window, {})
                outputs.append(stepper.advance(x_window, v, sigmas, step, history))
            x = blend(outputs, windows, windowing.weights(frames, step), like=x)
            if callback is not None:
                callback(StepEnd(step, float(sigmas[step]), x, guided))
            peak_cache = max(peak_cache, sum(stepper.cache_bytes(c) for c in state.caches.values()))
            state.keep_only(windows)
    seconds = time.perf_counter() - start_time
    actions = dict(Counter(record.action for record in trace))
    flops = None if counter is None else sum(record.flops for record in trace)
    return Sample(
        x, actions.get("compute", 0), tuple(trace), seconds, peak_cache, actions, flops=flops
    )
