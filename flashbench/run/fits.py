"""Whether a run's units fit the memory of the device they run on, by the memory planner, before anything is written.

``flashbench.planning.memory.plan`` computes a unit's peak from the model's shapes alone; here
it is asked for the longest case of each setting and resolution, and the peak compared with what
the device (checked by ``check_device``) has: on a CPU the RAM available now (shared by every
process of the run), on a GPU its free memory (docs/memory.md).

A model is planned when its denoiser is layered and it declares ``latent_shape(case)`` (the
latent of a case without preparing it: preparing renders the whole video, which for a case too
long to fit is itself the allocation to avoid). The conditioning is that of a one-frame case,
stretched along time to the case's length as a view: the planner reads shapes only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import psutil
import torch

from flashbench.denoiser import Cond, is_layered
from flashbench.errors import one_line
from flashbench.models.base import PortraitModel
from flashbench.planning.memory import PlannedModel
from flashbench.planning.memory import plan as plan_memory
from flashbench.run.plan import Plan, Unit

GIB = 2**30


@dataclass(frozen=True)
class Memory:
    """The memory a run's processes share on one device: ``available`` bytes for ``processes`` processes."""

    device: str
    available: int
    processes: int = 1


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this machine has; a ValueError naming the fix otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"--device {str(device)!r} is not a torch device ({one_line(err)}); use cpu or cuda[:N]"
        ) from err
    if parsed.type == "cpu":
        return parsed
    if parsed.type != "cuda":
        raise ValueError(
            f"--device {str(device)!r}: runs support cpu and cuda[:N]; use one of them"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"--device {str(device)!r}: no CUDA GPU is available here (torch {torch.__version__}); "
            "use --device cpu"
        )
    if parsed.index is not None and parsed.index >= count:
        raise ValueError(
            f"--device {str(device)!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
            "choose one of them"
        )
    return parsed


def device_memory(device: str | torch.device, processes: int = 1) -> Memory:
    """What ``device`` has now: a CPU's available RAM (shared by ``processes``), a GPU's free memory.

    On a CPU the weights of models already built count against the RAM they occupy and again in
    each plan: the check errs on the safe side by their size.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return Memory(str(device), free)
    return Memory("cpu", psutil.virtual_memory().available, processes)


def run_memory(accelerator: str, devices: int) -> Memory:
    """The memory each process of a ``--devices`` run has: the CPU's RAM shared, or the least free GPU's."""
    if accelerator == "cpu":
        return device_memory("cpu", devices)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < devices:
        raise ValueError(
            f"--accelerator {accelerator} --devices {devices}: this machine has {count} CUDA GPU(s); "
            f"use --devices {count} or fewer, or --accelerator cpu"
            if count
            else f"--accelerator {accelerator}: no CUDA GPU is available here; use --accelerator cpu"
        )
    return min((device_memory(f"cuda:{i}") for i in range(devices)), key=lambda m: m.available)


def unplanned_reason(model: PortraitModel) -> str | None:
    """Why the planner cannot plan ``model`` (None: it can)."""
    if not is_layered(model.denoiser):
        return f"model {model.name!r} has no layered denoiser (embed, blocks, head)"
    if not callable(getattr(model, "latent_shape", None)):
        return f"model {model.name!r} declares no latent_shape(case)"
    if not isinstance(model.denoiser, torch.nn.Module) or not any(
        True for _ in model.denoiser.parameters()
    ):
        return f"model {model.name!r} has no parameters to plan from"
    return None


def _stretched(cond: Cond, latent_frames: int) -> Cond:
    """``cond`` with each temporal entry as long as ``latent_frames`` (a zero-copy view of its first frame)."""
    length = latent_frames * cond.frames_per_latent
    return replace(
        cond,
        temporal={
            k: v[:, :1].expand(v.shape[0], length, *v.shape[2:]) for k, v in cond.temporal.items()
        },
    )


def check_fits(
    run_plan: Plan, setting_models: dict[str, PortraitModel], memory: Memory
) -> tuple[int | None, list[str]]:
    """Refuse (ValueError) a run one of whose units' planned peak exceeds ``memory``.

    Returns the largest planned peak of one process (None: nothing planned) and a note per model
    or setting that could not be planned (its units are not checked).
    """
    notes: dict[str, str] = {}
    # A unit's peak grows with its case's length (the video's latents, the windows alive), so
    # the longest case of each setting and resolution stands for the others: fewer probes.
    longest: dict[tuple[str, int], Unit] = {}
    for unit in run_plan.units:
        model = setting_models[unit.setting.name]
        reason = unplanned_reason(model)
        if reason is not None:
            notes[model.name] = f"memory not planned: {reason}; its units are not checked"
            continue
        key = (unit.setting.name, unit.case.resolution)
        if key not in longest or unit.case.frames > longest[key].case.frames:
            longest[key] = unit
    conds: dict[tuple[int, int], Cond] = {}
    probes: dict[tuple[int, int], dict] = {}
    peaks: list[int] = []
    for unit in longest.values():
        model, case = setting_models[unit.setting.name], unit.case
        shape = tuple(model.latent_shape(case))
        # The conditioning and a window's probe depend on the model and the resolution alone.
        short = (id(model), case.resolution)
        if short not in conds:
            try:
                conds[short] = model.prepare(replace(case, frames=1)).cond
            except Exception as err:  # the run records a case it cannot prepare, per unit
                notes[unit.setting.name] = (
                    f"setting {unit.setting.name!r}: memory not planned (case {case.id} cannot "
                    f"be prepared: {one_line(err)}); its units are not checked"
                )
                continue
        planned = PlannedModel(
            model.name, model.denoiser, shape, torch.float32, _stretched(conds[short], shape[2])
        )
        guided = run_plan.sampling.guidance.get(unit.setting.name) is not None
        steps = run_plan.sampling.steps
        try:
            peak = plan_memory(
                planned, unit.setting, steps, guided, probes=probes.setdefault(short, {})
            ).total
        except ValueError as err:  # a stepper whose state the planner cannot see refuses
            notes[unit.setting.name] = (
                f"setting {unit.setting.name!r}: memory not planned ({one_line(err)}); "
                "its units are not checked"
            )
            continue
        peaks.append(peak)
        if peak * memory.processes > memory.available:
            # Refused at once: planning the many windows of a video too long to fit is slow.
            _refuse(run_plan.source, unit, peak, memory)
    return max(peaks, default=None), sorted(notes.values())


def _refuse(source: str, unit: Unit, peak: int, memory: Memory) -> None:
    shared = f" x {memory.processes} processes" if memory.processes > 1 else ""
    raise ValueError(
        f"{source}: unit {unit.name} does not fit: the memory planner puts its peak at "
        f"{peak / GIB:,.1f} GiB{shared} ({unit.case.frames} frames at {unit.case.resolution}px, "
        f"setting {unit.setting.name!r}), but {memory.device} has {memory.available / GIB:,.1f} GiB "
        "available; shorten the suite's case lengths, choose a windowed setting or a larger "
        "device (see `flashbench memory`)"
    )
