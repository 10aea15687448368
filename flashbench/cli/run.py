"""``flashbench run | validate | weights``: the runner's subcommands (wired into flashbench.cli.main)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from flashbench.cli.options import model_args_json
from flashbench.models.registry import check_model_args, shipped_weights
from flashbench.suite.document import load_suite, shipped_suites


def cmd_run(args: argparse.Namespace) -> int:
    """Run a suite into a run directory (resumable; sharded over --devices processes)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    suite = load_suite(args.suite, model_args_json(args.model_args))
    out = Path(args.out) if args.out else Path("runs") / suite.name
    if args.devices == 1:
        from flashbench.run.runner import run_suite

        summary = run_suite(
            suite,
            out,
            resume=args.resume,
            limit=args.limit,
            threads=args.threads,
            # None: bars only when stderr is a terminal (tqdm's rule), so CI logs stay clean.
            progress=False if args.no_progress else None,
            device=args.device,
        )
    else:
        from flashbench.run.distributed import run_distributed

        summary = run_distributed(
            suite,
            out,
            devices=args.devices,
            resume=args.resume,
            limit=args.limit,
            threads=args.threads,
            accelerator=args.accelerator,
        )
        if summary is None:
            # A rank the launcher started: the launcher reports, and a nonzero exit here would
            # make Lightning's process observer kill the launcher while it does so.
            return 0
    print(
        f"{summary.out}: {summary.done} units done, {summary.skipped} already finished, {summary.failed} failed"
    )
    if summary.pooled_failed:
        print(
            f"{len(summary.pooled_failed)} pooled metric computation(s) failed: "
            f"{', '.join(summary.pooled_failed)}"
        )
    if not summary.ok:
        print(
            f"failures are recorded in {summary.out / 'errors'}; rerun with --resume to retry them"
        )
    print(f"next: flashbench report {summary.out}")
    return 0 if summary.ok else 1


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate suites: schema, names of settings/steppers/metrics, sweeps that build, and that
    each unit fits the memory of --device by the memory planner (docs/memory.md)."""
    from flashbench.run.fits import GIB, check_device, check_fits, device_memory
    from flashbench.run.plan import plan_run, suite_models

    memory = device_memory(check_device(args.device))
    status = 0
    for name in args.suites or shipped_suites():
        try:
            suite = load_suite(name, model_args_json(args.model_args))
            # load_suite has checked the cases against the model; None: a model without a spec.
            spec = check_model_args(suite.model, suite.model_args)
            units, fits = "?", f"memory not planned: model {suite.model!r} has no spec"
            if spec is not None:
                cases = suite.cases.expand(spec.splits, spec.fps)
                units = str(len(cases) * len(suite.settings) * len(suite.seeds))
                setting_models = suite_models(suite)
                plan = plan_run(suite, setting_models[suite.baseline])
                peak, notes = check_fits(plan, setting_models, memory)
                fits = "; ".join(notes)
                if peak is not None:
                    fits = (
                        f"peak {peak / GIB:.2f} GiB of {memory.available / GIB:.1f} on {memory.device}"
                        + (f"; {fits}" if fits else "")
                    )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        model = suite.model + (f" {json.dumps(dict(suite.model_args))}" if suite.model_args else "")
        print(
            f"ok  {suite.name:<16} v{suite.version}  model={model}  {len(suite.settings)} settings x {len(suite.seeds)} seeds, {units} units; {fits}"
        )
    return status


def cmd_weights(args: argparse.Namespace) -> int:
    """List the weight files of each metric backend and each model's shipped weights: where each
    is expected, sha256, present or missing, how to obtain it.

    Exits 1 when a file is missing or corrupt, 0 when every file is present (and verified)."""
    try:
        from metrics.weights import weight_status
    except ImportError as err:
        print(
            f"metrics.weights is not available ({err}); install flashbench with its metrics package",
            file=sys.stderr,
        )
        return 2
    verify = not args.no_verify
    groups = {"metric backends": weight_status(verify=verify)}
    groups.update(
        (f"model {name!r} (shipped)", records)
        for name, records in shipped_weights(verify=verify).items()
    )
    missing = corrupt = 0
    for group, records in groups.items():
        print(f"{group}:")
        for status in records:
            state = "present" if status.present else "MISSING"
            if status.verified is False:
                state = "CORRUPT (sha256 mismatch)"
            missing += not status.present
            corrupt += status.verified is False
            print(f"{status.name}  [{state}]  used by {status.used_by}")
            print(f"  path:   {status.path}")
            print(
                f"  sha256: expected {status.expected_sha256 or 'unregistered'}"
                + (f", actual {status.actual_sha256}" if status.actual_sha256 else "")
            )
            if not status.present or status.verified is False:
                print(f"  obtain: {status.obtain}")
            print(f"  licence: {status.licence}")
    print(f"{missing} missing, {corrupt} corrupt; in-domain backends (world-*) need no download")
    # Scripts check the exit code: 1 while a backend's file is missing or corrupt.
    return 1 if missing or corrupt else 0


MODEL_ARGS = {
    "default": "{}",
    "help": "update the suite's model_args with this JSON object: the same suite on another model "
    'configuration, e.g. \'{"world": "v2"}\' for testbed v2 (recorded in the run)',
}


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run``, ``validate`` and ``weights`` to the ``flashbench`` command."""
    run = subparsers.add_parser(
        "run", help="run a suite into a run directory", description=cmd_run.__doc__
    )
    run.add_argument(
        "suite", help=f"shipped suite name ({', '.join(shipped_suites())}) or a .toml path"
    )
    run.add_argument("--out", help="run directory (default runs/<suite name>)")
    run.add_argument("--model-args", **MODEL_ARGS)
    run.add_argument(
        "--resume", action="store_true", help="continue a run directory: finished units are skipped"
    )
    run.add_argument(
        "--devices",
        type=int,
        default=1,
        help="processes (or GPUs) to shard cases over via Lightning DDP",
    )
    run.add_argument(
        "--accelerator", default="cpu", choices=["cpu", "gpu"], help="device kind for --devices > 1"
    )
    run.add_argument(
        "--limit",
        type=int,
        help="run only the first N cases (smoke tests; recorded in the manifest, and reports "
        'say "limited: N of M cases")',
    )
    run.add_argument(
        "--threads",
        type=int,
        help="torch threads per process (default 1; see docs/run-directory.md)",
    )
    run.add_argument(
        "--device", default="cpu", help="torch device of a 1-process run, e.g. cuda:0 (default cpu)"
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (shown only when stderr is a terminal)",
    )
    run.set_defaults(func=cmd_run)
    validate = subparsers.add_parser(
        "validate", help="validate suite files", description=cmd_validate.__doc__
    )
    validate.add_argument(
        "suites", nargs="*", help="suite names or paths (default: every shipped suite)"
    )
    validate.add_argument("--model-args", **MODEL_ARGS)
    validate.add_argument(
        "--device",
        default="cpu",
        help="the torch device whose memory each unit must fit, e.g. cuda:0 (default cpu)",
    )
    validate.set_defaults(func=cmd_validate)
    weights = subparsers.add_parser(
        "weights",
        help="list the metric backends' weight files and the models' shipped weights",
        description=cmd_weights.__doc__,
    )
    weights.add_argument("--no-verify", action="store_true", help="skip hashing files (faster)")
    weights.set_defaults(func=cmd_weights)
