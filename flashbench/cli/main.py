"""The ``flashbench`` command line."""

from __future__ import annotations

import _thread
import argparse
import signal
import sys
import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import torch

from flashbench.denoiser import Cond
from flashbench.models.toy import ToyDenoiser
from flashbench.planning.memory import OFFLOADS
from flashbench.registry import BUILT_IN, Registry
from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings, steppers, windowings


def registries() -> dict[str, Registry]:
    """The registries ``flashbench ls`` lists, by kind."""
    from flashbench.models.registry import models
    from flashbench.suite.catalog import METRICS

    return {
        "settings": settings,
        "steppers": steppers,
        "windowings": windowings,
        "metrics": METRICS,
        "models": models,
    }


# One listed entry: its name, where it comes from ("" for kinds no package can add to) and its line.
Listed = tuple[str, str, str]


def registry_listing(registry: Registry, describe: Callable[[str], str]) -> list[Listed]:
    """Every entry of ``registry`` with its origin and ``describe(name)``; a plugin that cannot be
    used is listed with its error, and a plugin shadowed by a built-in gets a line of its own."""
    listed = []
    for name in registry:
        try:
            line = describe(name)
        except ValueError as err:
            line = f"BROKEN: {err}"
        origin = registry.origin(name) if registry.group else ""
        listed.append((name, origin, line))
        problem = registry.problem(name)
        if problem is not None and registry.origin(name) == BUILT_IN:
            plugins = ", ".join(p.origin for p in registry.plugins()[name])
            listed.append((name, plugins, f"NOT USED: {problem}"))
    return listed


def listing(kind: str) -> list[Listed]:
    """What ``flashbench ls KIND`` prints."""
    from flashbench.run.rows import SPEED
    from flashbench.suite.document import load_suite, shipped_suites

    if kind == "suites":
        suites = []
        for name in shipped_suites():
            try:
                suites.append((name, "", load_suite(name).description))
            except ValueError as err:
                suites.append((name, "", f"INVALID: {err}"))
        return suites
    registry = registries()[kind]
    if kind != "metrics":
        return registry_listing(registry, registry.doc)
    speed = ", ".join(f"{k} [{unit}]" for k, (unit, _) in SPEED.items())
    return [
        *registry_listing(registry, lambda name: registry[name].summary()),
        ("speed", BUILT_IN, f"expands to {speed} (backend timer)"),
    ]


def cmd_ls(args: argparse.Namespace) -> int:
    kinds = [*registries(), "suites"]
    if args.kind is not None and args.kind not in kinds:
        raise ValueError(f"unknown kind {args.kind!r}; choose from {', '.join(kinds)}")
    for kind in [args.kind] if args.kind else kinds:
        print(f"{kind}:")
        listed = listing(kind)
        width = max((len(origin) for _, origin, _ in listed), default=0)
        for name, origin, line in listed:
            print(f"  {name:<24} {origin:<{width}}  {line}" if width else f"  {name:<24} {line}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Sample a toy layered denoiser under several settings and print NFE and wall time."""
    torch.set_num_threads(args.threads)
    model = ToyDenoiser(channels=4, dim=64, depth=6, temporal=True).eval()
    noise = torch.randn(1, 4, args.frames, 8, 8, generator=torch.Generator().manual_seed(args.seed))
    sigmas = flow_match_sigmas(args.steps)
    rows = []
    reference = None
    for name in args.settings or ["baseline", "sliding", "sliding_uniform"]:
        stepper, windowing, guidance = settings.get(name).build()
        result = sample(
            model, noise, sigmas, Cond(), stepper=stepper, windowing=windowing, guidance=guidance
        )
        reference = result.latents if reference is None else reference
        err = (result.latents - reference).pow(2).mean().sqrt().item()
        rows.append((name, settings.get(name).describe(), result.nfe, result.seconds, err))
    print(
        f"{'setting':<18} {'windowing x stepper':<44} {'NFE':>5} {'wall s':>8} {'RMSE vs first':>14}"
    )
    for name, desc, nfe, seconds, err in rows:
        print(f"{name:<18} {desc:<44} {nfe:>5} {seconds:>8.3f} {err:>14.4f}")
    return 0


UNITS = {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}


def parse_size(text: str) -> tuple[int, int]:
    """``"480x832"`` -> (480, 832): a frame's height and width in pixels."""
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise ValueError(f"--size {text!r} must be HEIGHTxWIDTH in pixels, e.g. 480x832")
    return int(height), int(width)


def cmd_memory(args: argparse.Namespace) -> int:
    """Plan the memory of sampling one video under each setting (computed, not measured)."""
    import json

    from flashbench.planning.memory import plan, planned_model

    height, width = parse_size(args.size)
    if args.frames < 1:
        raise ValueError(f"--frames {args.frames} must be a positive number of video frames")
    chosen = [settings.get(name) for name in args.setting or ["baseline"]]
    model = planned_model(args.model, args.frames, height, width, args.dtype)
    plans = [plan(model, setting, args.steps, args.guided, args.offload) for setting in chosen]
    if args.json:
        print(json.dumps([p.as_dict() for p in plans], indent=2))
        return 0
    unit = UNITS[args.unit]
    resident = "" if args.offload == "none" else ", weights resident under block offloading"
    print(
        f"{args.model}, {args.frames} frames at {height}x{width} (latent {model.latent_shape}), "
        f"{args.steps} steps; {args.unit}, computed from the model's shapes, not measured"
        + resident
    )
    columns = ("weights", "latents", "activations", "per block", "blocks x factors", "cache",
               "transient", "branches", "windows", "total")  # fmt: skip
    print(f"{'setting':<18}" + "".join(f"{c:>17}" for c in columns))
    for p in plans:
        sizes = (p.weights, p.latents, p.activations, p.cache_per_block)
        cells = [f"{b / unit:.3f}" for b in sizes]
        cells += [f"{p.cache_blocks} x {p.cache_factors}"]
        cells += [f"{b / unit:.3f}" for b in (p.cache, p.transient)]
        cells += [str(p.branches), str(p.windows), f"{p.total / unit:.3f}"]
        print(f"{p.setting:<18}" + "".join(f"{c:>17}" for c in cells))
    for p in plans:
        if p.cache_grows_with_length:
            print(
                f"{p.setting}: each of the {p.windows} live windows keeps its own stepper cache "
                f"({p.cache_per_window / unit:.3f} {args.unit} each, all branches), so the cache "
                "grows with the video's length; the activations do not"
            )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the reference model; the options are those of ``python -m reference_model.train_model``."""
    from flashbench.models.registry import trainers

    trainers.get("reference")(args.train_options)
    return 0


def installed_version() -> str:
    """flashbench's version, as its installed package metadata records it."""
    try:
        return version("flashbench")
    except PackageNotFoundError:
        return "unknown (not installed: run `pip install -e .` in the repository)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser(
        "ls",
        help="list settings, steppers, windowings, metrics, models (each with its package) and suites",
    )
    ls.add_argument(
        "kind", nargs="?", help="settings | steppers | windowings | metrics | models | suites"
    )
    ls.set_defaults(func=cmd_ls)
    demo = sub.add_parser("demo", help="sample a toy denoiser under several settings")
    demo.add_argument("--settings", nargs="+", action="extend")
    demo.add_argument("--frames", type=int, default=24)
    demo.add_argument("--steps", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    demo.set_defaults(func=cmd_demo)
    memory = sub.add_parser(
        "memory",
        help="plan the memory of sampling a video under settings, from the model's shapes",
        description="Weights, activations of one window, stepper caches (per block and factor), "
        "guidance branches, windows and the total, computed without allocating (docs/memory.md).",
    )
    memory.add_argument(
        "--model", required=True, help="toy | reference | wan2.1-1.3b | wan2.1-14b | wan2.1-i2v-14b"
    )
    memory.add_argument("--frames", type=int, required=True, help="video frames (Wan: 4k + 1)")
    memory.add_argument("--size", required=True, help="HEIGHTxWIDTH in pixels, e.g. 480x832")
    memory.add_argument(
        "--setting",
        nargs="+",
        action="extend",
        help="settings (flashbench ls settings; repeat or list several; default baseline)",
    )
    memory.add_argument("--steps", type=int, default=30, help="schedule steps (default 30)")
    memory.add_argument(
        "--guided", action="store_true", help="two guidance branches for every setting (CFG)"
    )
    memory.add_argument(
        "--dtype", default="bfloat16", help="Wan weights' dtype (default bfloat16); others as built"
    )
    memory.add_argument(
        "--offload",
        choices=OFFLOADS,
        default="none",
        help="blocks: count the weights diffusers' block-level group offloading keeps resident "
        "(the rest plus two blocks)",
    )
    memory.add_argument("--unit", choices=list(UNITS), default="GiB")
    memory.add_argument("--json", action="store_true", help="print the plans as JSON, in bytes")
    memory.set_defaults(func=cmd_memory)
    train = sub.add_parser(
        "train",
        help="train the reference FlashPortrait model (progress bar, checkpoints, resume)",
        description="Options after `train` go to `python -m reference_model.train_model`, e.g. "
        "`flashbench train --config small --minutes 60 --out runs/dit`; "
        "`python -m reference_model.train_model --help` lists them.",
    )
    train.set_defaults(func=cmd_train)
    # Subcommands of the runner, the calibrators and the reports live beside their code.
    from flashbench.cli import calibrate
    from flashbench.cli import run as run_commands
    from reports import cli as reports_cli

    run_commands.add_subcommands(sub)
    calibrate.add_subcommands(sub)
    reports_cli.add_subcommands(sub)
    return parser


class Interrupts:
    """Records Ctrl-C (SIGINT) while a command runs, so it ends the command with 130 even if
    some library caught the KeyboardInterrupt (in a finaliser, a writer's cleanup)."""

    def __init__(self, ignore_after: bool = False) -> None:
        # The process's own command: once it ends the process only shuts down, and a Ctrl-C then
        # (pressed twice, reaching a rank of a multi-process run late, or just after a run
        # finished) would land in shutdown's finalisers, traceback and all. Lightning ignores it
        # the same way once it handles one.
        self._ignore_after = ignore_after
        self.received = False
        self._again: threading.Timer | None = None
        self._ending = False

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True
        if not self._ending:
            raise KeyboardInterrupt

    def _unraisable(self, unraisable: sys.UnraisableHookArgs) -> None:
        # Ctrl-C that landed in a finaliser is printed as "Exception ignored" with a traceback and
        # dropped; raise it again, so it lands in the command's own code and ends the command.
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # From another thread a moment later: raised here, it would land in this hook again.
            self._again = threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGINT,))
            self._again.start()
            return
        self._previous_hook(unraisable)

    def __enter__(self) -> Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        # A re-raise still pending when the command has ended would land after the previous
        # handler is back (on a loaded machine the timer fires late): in interpreter shutdown,
        # with a traceback. The command already ends with 130, so it is not needed.
        # signal.signal runs a pending handler first: recorded, not raised, once ending.
        self._ending = True
        if self._again is not None:
            self._again.cancel()
            self._again.join()
        signal.signal(signal.SIGINT, signal.SIG_IGN if self._ignore_after else self._previous)
        sys.unraisablehook = self._previous_hook


def main(argv: list[str] | None = None) -> int:
    process_command = argv is None
    # `train` forwards its options untouched, so they are split off before parsing.
    argv = list(sys.argv[1:] if argv is None else argv)
    train_options = argv[1:] if argv[:1] == ["train"] else []
    args = build_parser().parse_args(argv[:1] if train_options else argv)
    args.train_options = train_options
    status, error = 0, None
    with Interrupts(ignore_after=process_command) as interrupts:
        try:
            status = args.func(args)
        except KeyboardInterrupt:
            interrupts.received = True
        except ValueError as err:
            error = str(err)
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            error = f"{err.strerror or err}{where}; check the path, its permissions and free space"
    if interrupts.received:
        # A run's finished units are on disk; the rest is redone by --resume. Of a multi-process
        # run's processes, the one the user started (rank 0, once its launcher has run) says so.
        from flashbench.run.distributed import launched_rank

        hint = "; rerun with --resume to finish" if args.command == "run" else ""
        if launched_rank() in (None, "0"):
            print(f"interrupted{hint}", file=sys.stderr)
        return 130
    if error is not None:
        print(f"flashbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
