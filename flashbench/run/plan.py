"""A suite turned once into a run's plan: its cases and units, its settings, how each pass samples, what is measured.

The stages of a run (sample, measure, pool, write) each take the part of the plan they need;
only the run directory's manifest and ``suite.toml`` read the suite itself, since they record it.
Units are named ``<case>__<setting>__seed<k>``; a setting's pooled rows, ``pooled__<setting>``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from flashbench.models.base import CaseInputs, CaseSpec, PortraitModel
from flashbench.models.registry import build_models
from flashbench.sampling import Guidance
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting
from flashbench.suite.document import Suite
from flashbench.suite.settings import setting_dict

# The pseudo-setting of the seed floor: the baseline sampled from another noise seed.
RESEEDED = "reseeded"


@dataclass(frozen=True)
class Unit:
    """One case x setting x seed: the grain of resume and of row files."""

    case: CaseSpec
    setting: Setting
    seed: int

    @property
    def name(self) -> str:
        return f"{self.case.id}__{self.setting.name}__seed{self.seed}"


def pooled_name(setting: Setting) -> str:
    """The name of a setting's pooled rows (FVD, FID), which stand for all its units."""
    return f"pooled__{setting.name}"


@dataclass(frozen=True)
class Sampling:
    """How every pass of the run samples: the schedule, and each setting's guidance (None: unguided)."""

    steps: int
    shift: float
    guidance: Mapping[str, Guidance | None]

    def sigmas(self) -> Tensor:
        return flow_match_sigmas(self.steps, self.shift)


@dataclass(frozen=True)
class Measures:
    """What each unit is measured with and against."""

    names: tuple[str, ...]
    # metric -> backend, for the metrics whose backend the suite chose.
    backends: Mapping[str, str]
    references: tuple[str, ...]
    per_frame: tuple[str, ...]
    timing_repeats: int

    @property
    def speed(self) -> bool:
        return "speed" in self.names


@dataclass(frozen=True)
class Plan:
    """Everything a run does, decided before it starts."""

    source: str  # the suite file, named in errors
    cases: tuple[tuple[CaseSpec, tuple[Unit, ...]], ...]
    baseline: Setting
    # The settings measured and pooled: the suite's, plus ``reseeded`` when it is a reference.
    settings: tuple[Setting, ...]
    sampling: Sampling
    measures: Measures
    save_latents: bool
    # What of the suite determines a baseline's output, beside the model, the case and the seed.
    baseline_recipe: Mapping[str, Any]
    # --limit: {"limit": N, "cases": cases run, "of": the suite's cases}; None without one.
    limit: Mapping[str, int] | None = None

    @property
    def units(self) -> list[Unit]:
        return [unit for _, units in self.cases for unit in units]

    def baseline_key(self, model: PortraitModel, case: CaseSpec, seed: int) -> str:
        """Content hash of everything that determines a case's baseline output."""
        payload = {
            **self.baseline_recipe,
            "weights": model.weights(),
            "case": case.__dict__,
            "seed": seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def reseeded(self, unit: Unit) -> Unit:
        """The seed-floor unit of a baseline unit: the same case and seed, another noise."""
        return Unit(unit.case, self.setting(RESEEDED), unit.seed)

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)


def suite_models(suite: Suite) -> dict[str, PortraitModel]:
    """The model of each setting of ``suite`` (one instance per distinct model_args)."""
    return build_models(suite.model, {s.name: suite.model_args_for(s.name) for s in suite.settings})


def plan_run(suite: Suite, model: PortraitModel, limit: int | None = None) -> Plan:
    """The plan of a run of ``suite`` (its first ``limit`` cases) on the baseline's ``model``."""
    cases = suite.cases.expand(model.splits, model.fps)
    limited = None
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit={limit} must be >= 1 case")
        limited = {"limit": limit, "cases": min(limit, len(cases)), "of": len(cases)}
        cases = cases[:limit]
    baseline = suite.setting(suite.baseline)
    # Per case the baseline comes first, so that its output is cached for the rest.
    ordered = sorted(suite.settings, key=lambda s: s.name != suite.baseline)
    planned = tuple(
        (case, tuple(Unit(case, s, seed) for seed in suite.seeds for s in ordered))
        for case in cases
    )
    extra = [replace(baseline, name=RESEEDED)] if RESEEDED in suite.metrics.references else []
    settings = (*suite.settings, *extra)
    metrics = suite.metrics
    return Plan(
        source=suite.path,
        cases=planned,
        baseline=baseline,
        settings=settings,
        sampling=Sampling(
            suite.steps, suite.shift, {s.name: suite.guidance_of(s) for s in settings}
        ),
        measures=Measures(
            metrics.names,
            dict(metrics.backends),
            metrics.references,
            metrics.per_frame,
            metrics.timing_repeats,
        ),
        save_latents=suite.save_latents,
        baseline_recipe={
            "model": suite.model,
            "steps": suite.steps,
            "shift": suite.shift,
            "setting": setting_dict(baseline),
            "guidance_drop": list(suite.guidance_drop),
        },
        limit=limited,
    )


def noise_seed(case: CaseSpec, seed: int) -> int:
    """A seed for the initial noise, the same for every setting of one case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}".encode()).hexdigest()[:15], 16)


def reseeded_noise_seed(case: CaseSpec, seed: int) -> int:
    """The seed of the re-seeded baseline's noise: another draw for the same case and sampling seed."""
    return int(hashlib.sha256(f"{case.id}:{seed}:reseeded".encode()).hexdigest()[:15], 16)


def initial_noise(unit: Unit, inputs: CaseInputs, seed: int | None = None) -> Tensor:
    """The unit's initial noise, drawn on the CPU from the case and seed (or ``seed``), shared by every setting."""
    chosen = noise_seed(unit.case, unit.seed) if seed is None else seed
    return torch.randn(inputs.latent_shape, generator=torch.Generator().manual_seed(chosen))
