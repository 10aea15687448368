"""``flashbench calibrate teacache|magcache``: fit a calibration on a registered model's training cases."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flashbench.cli.options import model_args_json
from flashbench.models.base import CaseSpec
from flashbench.models.registry import models
from flashbench.planning.calibration import calibrate_magcache, calibrate_teacache
from flashbench.schedule import flow_match_sigmas
from flashbench.steppers.calibration import save_calibration


def _calibrate(args: argparse.Namespace) -> int:
    if Path(args.out).exists():
        raise ValueError(
            f"--out {args.out} exists; flashbench never overwrites a file: remove it or give another path"
        )
    torch.set_num_threads(args.threads)
    portrait = models.build(args.model, **model_args_json(args.model_args))
    # Training identities: a calibration must not peek at the cases it will be judged on.
    identities = portrait.splits["train"]
    generator = torch.Generator().manual_seed(args.seed)
    noises, conds = [], []
    for i in range(args.samples):
        identity = identities[i % len(identities)]
        case = CaseSpec(
            f"calibrate-{i}",
            "self",
            identity,
            identity,
            args.seed + i,
            args.frames,
            args.resolution,
        )
        inputs = portrait.prepare(case)
        noises.append(torch.randn(inputs.latent_shape, generator=generator))
        conds.append(inputs.cond)
    sigmas = flow_match_sigmas(args.steps, args.shift)
    if args.method == "teacache":
        calibration = calibrate_teacache(
            portrait.denoiser, noises, sigmas, conds, indicator=args.indicator, name=args.model
        )
        summary = (
            f"coefficients {calibration.values['coefficients']}, R^2 {calibration.values['r2']:.3f}"
        )
    else:
        calibration = calibrate_magcache(portrait.denoiser, noises, sigmas, conds, name=args.model)
        summary = f"{len(calibration.values['ratios'])} ratios"
    path = save_calibration(calibration, args.out)
    print(
        f"{args.method} calibration of {args.model} ({calibration.fingerprint}): {summary} -> {path}"
    )
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``calibrate teacache`` and ``calibrate magcache``."""
    calibrate = subparsers.add_parser(
        "calibrate", help="fit TeaCache / MagCache values for a layered denoiser"
    )
    methods = calibrate.add_subparsers(dest="method", required=True)
    for method, help_text in (
        ("teacache", "fit the degree-4 rescaling polynomial (numpy.polyfit) from Euler runs"),
        ("magcache", "measure per-step residual magnitude ratios from Euler runs"),
    ):
        parser = methods.add_parser(method, help=help_text)
        parser.add_argument("--model", default="toy", help="model name from the models registry")
        parser.add_argument(
            "--model-args",
            default="{}",
            help="the model's parameters as a JSON object, as a suite's model_args (e.g. '{\"world\": \"v2\"}')",
        )
        parser.add_argument("--out", required=True, help="JSON file to write")
        parser.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
        parser.add_argument("--shift", type=float, default=5.0, help="schedule shift (default 5)")
        parser.add_argument(
            "--samples", type=int, default=4, help="training cases to run (default 4)"
        )
        parser.add_argument("--frames", type=int, default=8, help="frames per case (default 8)")
        parser.add_argument("--resolution", type=int, default=32, help="frame size (default 32)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=2)
        if method == "teacache":
            parser.add_argument("--indicator", choices=("auto", "time", "embed"), default="auto")
        parser.set_defaults(func=_calibrate)
