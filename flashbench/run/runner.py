"""Run a suite into a run directory (docs/run-directory.md): sample each case's units, time them together, write their files.

The run is a pipeline over the suite's ``plan`` (made once): ``passes`` samples, ``measure``
turns a video into rows (of the type in ``rows``), ``timing`` times a case's units in
interleaved rounds, ``pooled`` adds FVD and FID per setting, and ``directory`` holds the run
directory, its lock, plan and errors (``manifest`` records the suite and the machine).

A unit's rows file is written last, with ``os.replace``, so a unit is either finished (its rows
file exists) or redone on resume: a run killed at any point and resumed ends with exactly the
rows of an uninterrupted run. Once a setting's units have finished, its pooled rows follow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from flashbench.models.base import CaseInputs, CaseSpec, PortraitModel
from flashbench.planning.regime import VelocityRecorder
from flashbench.run.directory import open_run_dir, record_error, write_plan
from flashbench.run.files import atomic_json, atomic_with, write_image, write_video
from flashbench.run.fits import check_device, check_fits, device_memory
from flashbench.run.measure import Measurer, speed_rows, unit_rows
from flashbench.run.passes import measured_pass, prepare_pass
from flashbench.run.plan import (
    Plan,
    Unit,
    initial_noise,
    plan_run,
    reseeded_noise_seed,
    suite_models,
)
from flashbench.run.pooled import check_pooled, pooled_failures, write_pooled_rows
from flashbench.run.rows import TRACE_KEYS, Row
from flashbench.run.timing import Timing, time_interleaved
from flashbench.sampling import Sample
from flashbench.suite.document import Suite

log = logging.getLogger(__name__)

# Torch threads per process unless --threads says otherwise. One: intra-op threads spin-wait
# for each other, so on a machine whose cores are busy with other jobs 2 threads can take 20x
# the time of 1 and wall times stop meaning anything; scale out with --devices instead.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class RunSummary:
    out: Path
    done: int
    skipped: int
    failed: int
    # Pooled computations (pooled__<setting>) that failed: a run with any is not a success.
    pooled_failed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pooled_failed


@dataclass(frozen=True)
class Sampled:
    """A unit sampled and measured whose rows wait for its case's timing rounds."""

    unit: Unit
    result: Sample
    rows: list[Row]
    run: Callable[[], Sample]  # another sampling pass of the unit, for timing


class CaseRunner:
    """Runs the units of a plan into a run directory; one instance per process.

    ``setting_models`` maps each setting to its model (``build_models``); the baseline
    setting's model prepares the cases' shared files and serves the world-* metrics.
    """

    def __init__(
        self,
        plan: Plan,
        setting_models: dict[str, PortraitModel],
        out: Path,
        progress: bool | None = None,
        measurer: Measurer | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.plan, self.out, self.progress = plan, Path(out), progress
        self.setting_models = setting_models
        self.model = setting_models[plan.baseline.name]
        self.device = device
        for model in setting_models.values():
            if isinstance(model.denoiser, torch.nn.Module):
                model.denoiser.to(device)
        self.measurer = measurer or Measurer(
            plan.measures.names, dict(plan.measures.backends), self.model
        )

    def _baseline(
        self, case: CaseSpec, seed: int, inputs: CaseInputs, noise: Tensor, kind: str = "baseline"
    ) -> Tensor:
        """The baseline latents of a case from ``noise``, from the content-hash cache or sampled once and cached.

        ``kind`` "reseeded" is the baseline from the other noise seed (the seed floor), cached apart.
        """
        path = self.out / "cache" / kind / f"{self.plan.baseline_key(self.model, case, seed)}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        result = measured_pass(
            self.plan.sampling,
            self.model,
            self.plan.baseline,
            inputs,
            noise,
            None,
            self.device,
            count_flops=False,  # only its latents are kept
        )
        self._cache(path, result.latents)
        return result.latents

    def _cache(self, path: Path, latents: Tensor) -> None:
        atomic_with(path, lambda tmp: torch.save(latents.contiguous(), tmp))

    def reseeded_rows(
        self,
        unit: Unit,
        inputs: CaseInputs,
        result: Sample,
        video: Tensor,
        targets: dict[str, Tensor],
    ) -> list[Row]:
        """Rows of the pseudo-setting ``reseeded`` for a baseline unit, saving its video.

        The baseline re-sampled from another noise seed (cached) is measured against the unit's
        ``targets`` and against the baseline's ``video`` as reference "baseline"; ``result`` is
        the baseline's sample, whose latent shape (hence seam boundaries) the re-seed shares.
        """
        noise = initial_noise(unit, inputs, reseeded_noise_seed(unit.case, unit.seed))
        latents = self._baseline(unit.case, unit.seed, inputs, noise, "reseeded")
        output = self.model.decode(latents)
        rows = unit_rows(
            self.plan.measures,
            self.measurer,
            self.plan.reseeded(unit),
            result,
            output,
            {**targets, "baseline": video},
        )
        write_video(
            self.out / "videos" / unit.case.id / f"reseeded__seed{unit.seed}.mp4",
            output,
            self.model.fps,
        )
        return rows

    def sample_unit(
        self,
        unit: Unit,
        inputs_of: Callable[[PortraitModel], CaseInputs],
        bar: tqdm | None = None,
    ) -> Sampled | None:
        """Sample one unit, measure it and write its video and trace; a failure goes to errors/ (None).

        ``inputs_of(model)`` gives the case's inputs for a model (prepared once per model:
        conditioning is normalised with each checkpoint's own statistics). The rows file is
        written by ``finish_unit``, after the case's timing rounds.
        """
        plan, out = self.plan, self.out
        model = self.setting_models[unit.setting.name]
        try:
            inputs = inputs_of(model)
            noise = initial_noise(unit, inputs)
            is_baseline = unit.setting.name == plan.baseline.name
            # The baseline's path says how hard acceleration is on this model (the regime).
            recorder = VelocityRecorder() if is_baseline else None
            # FLOPs go into the speed rows: without them, counting would only slow the pass.
            result = measured_pass(
                plan.sampling,
                model,
                unit.setting,
                inputs,
                noise,
                bar,
                self.device,
                recorder,
                count_flops=plan.measures.speed,
            )
            if recorder is not None:
                atomic_json(out / "regime" / f"{unit.name}.json", recorder.records())
            if is_baseline:
                key = plan.baseline_key(model, unit.case, unit.seed)
                self._cache(out / "cache" / "baseline" / f"{key}.pt", result.latents)
            video = model.decode(result.latents)
            targets: dict[str, Tensor] = {"reference_image": inputs.reference_image}
            if inputs.ground_truth is not None:
                targets["ground_truth"] = inputs.ground_truth
            if inputs.driving is not None:
                targets["driving"] = inputs.driving
            if not is_baseline and "baseline" in plan.measures.references:
                base_inputs = inputs_of(self.model)
                targets["baseline"] = self.model.decode(
                    self._baseline(
                        unit.case, unit.seed, base_inputs, initial_noise(unit, base_inputs)
                    )
                )
            rows = unit_rows(plan.measures, self.measurer, unit, result, video, targets)
            if is_baseline and "reseeded" in plan.measures.references:
                rows += self.reseeded_rows(unit, inputs, result, video, targets)
            write_video(
                out / "videos" / unit.case.id / f"{unit.setting.name}__seed{unit.seed}.mp4",
                video,
                model.fps,
            )
            if plan.save_latents:
                self._cache(out / "latents" / f"{unit.name}.pt", result.latents)
            atomic_json(out / "traces" / f"{unit.name}.json", trace_records(result))
            run = prepare_pass(plan.sampling, model, unit.setting, inputs, noise, self.device)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one unit's failure is recorded and the run goes on
            self._record_error(unit, err)
            return None
        return Sampled(unit, result, rows, run)

    def finish_unit(self, sampled: Sampled, timing: Timing | None) -> None:
        """Write the unit's rows file (last: from now on the unit is finished)."""
        unit, rows = sampled.unit, list(sampled.rows)
        if self.plan.measures.speed:
            rows += speed_rows(unit, sampled.result, timing)
        payload = {"unit": unit.name, "rows": [r.to_json() for r in rows]}
        atomic_json(self.out / "rows" / f"{unit.name}.json", payload)
        (self.out / "errors" / f"{unit.name}.json").unlink(missing_ok=True)

    def time_units(self, sampled: list[Sampled]) -> list[Timing | None]:
        """Interleaved timing rounds over a case's sampled units (when the suite measures speed)."""
        if not self.plan.measures.speed or not sampled:
            return [None] * len(sampled)
        return time_interleaved(
            [s.run for s in sampled], self.plan.measures.timing_repeats, self.device
        )

    def _record_error(self, unit: Unit, err: BaseException) -> None:
        record_error(self.out, unit.name, unit.case.id, unit.setting.name, unit.seed, err)

    def run_case(
        self, case: CaseSpec, units: list[Unit], bar: tqdm | None = None
    ) -> tuple[int, int, int]:
        """Run the unfinished units of one case; returns (done, skipped, failed)."""
        todo = [u for u in units if not (self.out / "rows" / f"{u.name}.json").is_file()]
        skipped = len(units) - len(todo)
        if not todo:
            return 0, skipped, 0
        prepared: dict[int, CaseInputs] = {}

        def inputs_of(model: PortraitModel) -> CaseInputs:
            if id(model) not in prepared:
                prepared[id(model)] = model.prepare(case)
            return prepared[id(model)]

        try:
            inputs = inputs_of(self.model)
            case_dir = self.out / "videos" / case.id
            if not (case_dir / "reference.png").is_file():
                write_image(case_dir / "reference.png", inputs.reference_image)
            if inputs.ground_truth is not None and not (case_dir / "ground_truth.mp4").is_file():
                write_video(case_dir / "ground_truth.mp4", inputs.ground_truth, self.model.fps)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a case that cannot be prepared fails its units, not the run
            for unit in todo:
                self._record_error(unit, err)
            if bar is not None:
                bar.update(len(units))
            return 0, skipped, len(todo)
        sampled: list[Sampled] = []
        steps = tqdm(
            total=self.plan.sampling.steps,
            desc="steps",
            leave=False,
            disable=self._disabled(),
            position=1,
        )
        with steps:
            for unit in todo:
                steps.set_postfix_str(f"{unit.setting.name} seed {unit.seed}")
                one = self.sample_unit(unit, inputs_of, steps)
                if one is not None:
                    sampled.append(one)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.update(skipped)
        done = 0
        try:
            # Timed together, so that the case's settings share the machine's load of the moment.
            timings = self.time_units(sampled)
            for one, timing in zip(sampled, timings, strict=True):
                self.finish_unit(one, timing)
                done += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # the units not yet finished are recorded as failed
            for one in sampled[done:]:
                self._record_error(one.unit, err)
        return done, skipped, len(todo) - done

    def _disabled(self) -> bool | None:
        return None if self.progress is None else not self.progress


def trace_records(result: Sample) -> list[dict[str, Any]]:
    """The sampler trace as traces/<unit>.json holds it: one record per step, window and branch."""
    return [
        dict(
            zip(
                TRACE_KEYS,
                (r.step, r.sigma, list(r.window), r.branch, r.action, r.seconds),
                strict=True,
            )
        )
        for r in result.trace
    ]


def check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"--threads {threads!r} must be an integer >= 1 (torch threads per process)"
        )
    return threads


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    resume: bool = False,
    limit: int | None = None,
    threads: int | None = None,
    progress: bool | None = None,
    device: str = "cpu",
) -> RunSummary:
    """Run ``suite`` into ``out`` in this process; see ``flashbench.run.distributed`` for several."""
    out = Path(out)
    threads = check_threads(DEFAULT_THREADS if threads is None else threads)
    device = check_device(device)
    torch.set_num_threads(threads)
    setting_models = suite_models(suite)
    model = setting_models[suite.baseline]
    plan = plan_run(suite, model, limit)
    measurer = Measurer(plan.measures.names, dict(plan.measures.backends), model)
    check_pooled(plan, measurer)
    for note in check_fits(plan, setting_models, device_memory(device))[1]:
        log.info(note)
    with open_run_dir(
        out, suite, setting_models, measurer, resume=resume, threads=threads, limit=plan.limit
    ):
        write_plan(out, plan, measurer)
        runner = CaseRunner(plan, setting_models, out, progress, measurer, device)
        done = skipped = failed = 0
        start = time.perf_counter()
        with tqdm(
            total=len(plan.units),
            desc=f"{suite.name} units",
            disable=runner._disabled(),
            position=0,
        ) as bar:
            for case, mine in plan.cases:
                d, s, f = runner.run_case(case, list(mine), bar)
                done, skipped, failed = done + d, skipped + s, failed + f
        write_pooled_rows(plan, measurer, out)
    summary = RunSummary(out, done, skipped, failed, pooled_failures(plan, out))
    log.info(
        "%s: %d units done, %d skipped, %d failed, %d pooled computations failed in %.1f s",
        out,
        done,
        skipped,
        failed,
        len(summary.pooled_failed),
        time.perf_counter() - start,
    )
    return summary
