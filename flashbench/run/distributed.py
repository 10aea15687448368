"""Scale-out: cases shard across processes, GPUs or nodes through Lightning's ``Trainer.predict`` (DDP).

Each rank runs whole cases (so a case's baseline is sampled once, on one rank) and writes
its units' files itself; files are per unit and atomic, so the run directory is the same
whatever the number of ranks. Unit counts are summed across ranks with torchmetrics.

CPU and GPU runs use one strategy, Lightning's ``ddp``, whose launcher re-runs this process's
command line once per further rank with ``LOCAL_RANK`` set (``_SubprocessScriptLauncher``), so
the CPU tests cover the GPU path. The launching process is rank 0: it checks the suite, takes
the run directory's lock and writes the manifest and plan before any rank starts. A re-launched
rank shares that lock rather than taking it (``check_locked_by``): it only proceeds while its
parent holds the directory, so the one-writer rule becomes one launcher and its own ranks, and a
stray ``LOCAL_RANK`` never lets a second run in.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchmetrics.aggregation import SumMetric

from flashbench.run.directory import check_locked_by, open_run_dir, write_plan
from flashbench.run.fits import check_fits, run_memory
from flashbench.run.measure import Measurer
from flashbench.run.plan import plan_run, suite_models
from flashbench.run.pooled import check_pooled, pooled_failures, write_pooled_rows
from flashbench.run.runner import DEFAULT_THREADS, CaseRunner, RunSummary, check_threads
from flashbench.suite.document import Suite, load_suite

log = logging.getLogger(__name__)


class SuiteShards(L.LightningModule):
    """A LightningModule whose ``predict_step`` runs one case of a suite into a run directory."""

    def __init__(
        self,
        suite_path: str,
        out: str,
        limit: int | None,
        threads: int,
        launcher: int | None = None,
        model_args: dict | None = None,
    ) -> None:
        """``launcher``: in a re-launched rank, the pid of the launching process (rank 0);
        ``model_args``: the suite's, as ``flashbench run --model-args`` updated them."""
        super().__init__()
        self.suite_path, self.out, self.limit, self.threads = suite_path, out, limit, threads
        self.launcher, self.model_args = launcher, model_args
        self.done, self.skipped, self.failed = SumMetric(), SumMetric(), SumMetric()

    def setup(self, stage: str) -> None:
        torch.set_num_threads(self.threads)
        self.suite = load_suite(self.suite_path, self.model_args)
        setting_models = suite_models(self.suite)
        self.plan = plan_run(self.suite, setting_models[self.suite.baseline], self.limit)
        # Lightning gives each rank its device (cuda:<local rank> on GPUs, cpu otherwise).
        self.runner = CaseRunner(
            self.plan,
            setting_models,
            Path(self.out),
            progress=False,
            device=self.trainer.strategy.root_device,
        )

    def predict_dataloader(self) -> DataLoader:
        # Round-robin over cases by rank: deterministic, and no padding duplicates a case.
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = list(range(len(self.plan.cases)))[rank::world]
        return DataLoader(mine, batch_size=None, shuffle=False)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        # A rank writes only under its launcher's lock: once the launcher is gone (killed), a
        # resume may hold the directory, so an orphaned rank stops before its next case.
        if self.launcher is not None and os.getppid() != self.launcher:
            raise RuntimeError(
                f"the launching process {self.launcher} of this rank has exited; stopping before "
                "the next case (finish the run with --resume)"
            )
        case, units = self.plan.cases[int(batch)]
        done, skipped, failed = self.runner.run_case(case, list(units))
        self.done.update(done)
        self.skipped.update(skipped)
        self.failed.update(failed)

    def on_predict_end(self) -> None:
        # compute() all-reduces across ranks: every rank sees the totals of the whole run.
        self.totals = tuple(int(m.compute()) for m in (self.done, self.skipped, self.failed))
        # Pooled rows (FVD, FID) need every rank's videos: rank 0 alone writes them, after the barrier.
        self.trainer.strategy.barrier("units written")
        if self.trainer.global_rank == 0:
            write_pooled_rows(self.plan, self.runner.measurer, Path(self.out))
        self.trainer.strategy.barrier("pooled rows written")


def launched_rank() -> str | None:
    """This process's local rank if Lightning's ``ddp`` launcher started it (``LOCAL_RANK``), else None."""
    return os.environ.get("LOCAL_RANK")


def run_distributed(
    suite: Suite,
    out: str | Path,
    *,
    devices: int = 2,
    resume: bool = False,
    limit: int | None = None,
    threads: int | None = None,
    accelerator: str = "cpu",
) -> RunSummary | None:
    """Run ``suite`` into ``out`` with ``devices`` DDP processes (gloo on CPU, NCCL on GPUs).

    Called by ``flashbench run --devices N``: Lightning re-runs that command line for ranks 1 to
    N - 1, where this returns None (the launching process, rank 0, returns the run's summary).
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"--devices {devices!r} must be an integer >= 1 (processes or GPUs)")
    out = Path(out)
    threads = check_threads(DEFAULT_THREADS if threads is None else threads)
    torch.set_num_threads(threads)
    rank = launched_rank()
    if rank is not None:
        check_locked_by(out, os.getppid(), f"LOCAL_RANK={rank}")
        _predict(
            SuiteShards(suite.path, str(out), limit, threads, os.getppid(), dict(suite.model_args)),
            devices,
            accelerator,
        )
        return None
    # The manifest is written once, before any rank starts, so ranks never race on it.
    setting_models = suite_models(suite)
    model = setting_models[suite.baseline]
    plan = plan_run(suite, model, limit)
    measurer = Measurer(plan.measures.names, dict(plan.measures.backends), model)
    if devices > len(plan.cases):
        raise ValueError(
            f"--devices {devices} is more than the {len(plan.cases)} case(s) of this run (cases shard over "
            f"devices, whole cases per process); use --devices {len(plan.cases)} or fewer"
        )
    check_pooled(plan, measurer)
    for note in check_fits(plan, setting_models, run_memory(accelerator, devices))[1]:
        log.info(note)
    if sys.argv[1:2] != ["run"]:
        # The launcher re-runs sys.argv: from anything but `flashbench run` (a test runner, a
        # notebook) each rank would run that program again.
        raise ValueError(
            f"--devices {devices} re-runs this process's command line once per rank, and "
            f"{' '.join(sys.argv[:2])!r} is not `flashbench run`; start multi-process runs with "
            "`flashbench run SUITE --devices N`"
        )
    with open_run_dir(
        out,
        suite,
        setting_models,
        measurer,
        resume=resume,
        threads=threads,
        devices=devices,
        limit=plan.limit,
    ):
        write_plan(out, plan, measurer)
        module = SuiteShards(suite.path, str(out), limit, threads, None, dict(suite.model_args))
        _predict(module, devices, accelerator)
    return RunSummary(out, *module.totals, pooled_failures(plan, out))


def _predict(module: SuiteShards, devices: int, accelerator: str) -> None:
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    try:
        trainer.predict(module, return_predictions=False)
    except SystemExit:
        # Lightning ends a Ctrl-C with sys.exit(1) (its ranks killed, SIGINT ignored); the command
        # reports an interrupt as such, exit 130 and the way to resume, as a one-process run does.
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
