"""Real-size Wan2.1 check for one GPU: wall time per step, FLOPs and peak memory of each stepper under CFG at 480p.

Run: ``python benchmarks/bench_wan_gpu.py --device cuda --out OUT`` (one H100 or H200; about 6-7
minutes on an H100, see docs/wan.md) writes ``OUT/wan_gpu.json`` and ``OUT/wan_gpu.md``;
``--tiny --device cpu`` runs the same code on tiny transformers in seconds (the tests do).
Nothing is downloaded: each transformer is diffusers' ``WanTransformer3DModel`` built from its
released configuration (``flashbench.planning.memory.WAN_CONFIGS``) with random weights, cast
to bfloat16 as ``from_pretrained(torch_dtype=torch.bfloat16)`` casts it.

**Random weights say nothing about quality.** Only what depends on shapes is meaningful: time,
FLOPs and memory. The skip decisions of threshold-driven caches (TeaCache, first-block cache)
follow the random model's features, so their full-pass counts are not those of the released
weights; each row says which passes it ran, and its time per full and per cached step is
meaningful. MagCache runs on MagCache's published Wan2.1 magnitude ratios
(``reports/data/magcache_wan21_ratios.json``), so its schedule is the published one.

Sections (``SECTIONS``; ``--sections`` picks some):

- ``t2v-1.3b``: Wan2.1-T2V-1.3B, 81 frames (21 latent frames, 32,760 tokens) at 480x832, every
  setting of ``setting_list``.
- ``i2v-14b``: Wan2.1-I2V-14B-480P, 21 frames (6 latent frames, 9,360 tokens; 81 frames would
  take 3.4 s per pass and ALP's per-block cache would not fit 80 GB) at 480x832, the baseline,
  ALP and its memory-lean variants, MagCache, fewer steps.
- ``long-video``: Wan2.1-T2V-1.3B at 480x832 under sliding windows of 8 latent frames overlapping
  by 4, three video lengths: each window keeps its own stepper cache, so ALP's memory grows
  with the video's length. Few steps: enough to fill every cache.

Every sample is guided (CFG, scale 5, the unconditional branch reads the negative prompt: two
passes per window per step). Per setting: one untimed warm-up sample of two steps per section
(the GEMM and attention kernels), then ``--repeats`` timed samples; each step ends on a device
synchronise (``sample``'s callback), so per-step times are the device's. Figures per row:

- ``s/step``: the sample's wall time over its steps, median over repeats; ``spread``: (max -
  min) / median of the sample times, and per action (a step whose every call was a full pass,
  a forecast, a reuse...) the median and interquartile range of its step times.
- ``speedup``: the baseline's median sample time over the setting's.
- FLOPs: ``flashbench.flops.FlopCounter`` (torch's ``FlopCounterMode``: matmuls, convolutions,
  attention; elementwise work, a forecaster's arithmetic included, is not counted) on the
  transformer built on the meta device at the run's shapes gives each part's FLOPs; forward
  hooks count which parts really ran in each call (the embedding, every block's self-attention,
  cross-attention and FFN, the head). Counting while timing would slow the timed samples
  (``sample(count_flops=True)`` says so), and a second, counted sample at real size would double
  the run; the tests check that the two counts agree on whole samples, but for a forecaster's
  own combination of its factors (ALP order 3: 8 FLOPs per element of a block's output per
  forecast, under 0.01% of a full pass at these sizes), which this count leaves out. ``FLOP ratio``: baseline FLOPs over the setting's. ``wall
  efficiency``: speedup over FLOP ratio (1: the saved FLOPs are all saved time).
- memory: ``torch.cuda.max_memory_allocated`` over the sample (weights included) beside
  ``flashbench memory``'s plan (``flashbench.planning.memory.plan``) of the same model, video and
  setting; a setting whose plan exceeds the device's free memory is skipped and says so, one
  that runs out of memory all the same says that, and the others go on. Both files are written
  after every section, so a run stopped early keeps what it finished (``complete`` says whether
  it did).
  ``cache``: ``Sample.peak_cache_bytes``, the stepper caches of every (window, branch).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flashbench.flops import FlopCounter
from flashbench.models.wan.denoiser import WanDenoiser, wan_cond
from flashbench.planning.memory import (
    WAN_CONFIGS,
    WAN_IMAGE_TOKENS,
    WAN_SPACE_STRIDE,
    WAN_TEXT,
    WAN_TIME_STRIDE,
    PlannedModel,
    cast_as_from_pretrained,
    plan,
)
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import Setting, settings

NOTE = (
    "Random weights: these figures say nothing about quality. Only time, FLOPs and memory are "
    "meaningful; threshold-driven caches (TeaCache, first-block cache) skip where the random "
    "model's features let them, not where the released weights would."
)
RATIOS = Path(__file__).parents[1] / "reports" / "data" / "magcache_wan21_ratios.json"
JSON_NAME, MARKDOWN_NAME = "wan_gpu.json", "wan_gpu.md"
GUIDANCE = Guidance(5.0, drop=("prompt_embeds",))
ALP = {"interval": 5, "order": 3, "alpha": 1.5}
# A planning figure for the time estimates printed before each section: H100 bf16 at 40-70% of peak.
ASSUMED_FLOPS_PER_SECOND = 400e12
# Modules whose execution marks a part of the pass as run: the forward hook of a module a cache
# skips never fires (diffusers' caches replace whole blocks' forwards, ours do not call them).
BLOCK_PROBES = {"attn1": "attn1.to_out.0", "attn2": "attn2.to_out.0", "ffn": "ffn.net.2"}
# Tiny stand-ins for the tests: the same code, a transformer of width 16 and 4 blocks.
TINY_CONFIG = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "ffn_dim": 32,
    "num_layers": 4,
    "freq_dim": 16,
    "text_dim": 12,
    "in_channels": 4,
    "out_channels": 4,
    "rope_max_seq_len": 64,
}
TINY_IMAGE = {"in_channels": 12, "image_dim": 4, "added_kv_proj_dim": 16}
TINY_TEXT, TINY_IMAGE_TOKENS = (5, 12), 3


@dataclass(frozen=True)
class Section:
    """One model, video and step count, and the settings measured on it."""

    name: str
    model: str  # a key of WAN_CONFIGS
    magcache: str  # the model's entry in MagCache's published ratios
    frames: int  # video frames; the latent has (frames - 1) / 4 + 1
    height: int
    width: int
    steps: int
    settings: tuple[str, ...]
    lengths: tuple[int, ...] = ()  # long video: video frames per run, under ``windowing``
    windowing: dict[str, Any] = field(default_factory=dict)


ALL = (
    "baseline", "alp_k5", "alp_k5_g4", "alp_k5_stack", "alp_k5_output", "alp_k5_o1",
    "taylorseer_n5_o1", "teacache_0p2", "fbcache_0p05", "magcache_wan", "diffusers_magcache_wan",
    "fora_n3", "fewer_steps_6",
)  # fmt: skip
SECTIONS = (
    Section("t2v-1.3b", "wan2.1-1.3b", "Wan2.1-T2V-1.3B", 81, 480, 832, 20, ALL),
    Section(
        "i2v-14b",
        "wan2.1-i2v-14b",
        "Wan2.1-I2V-14B-480P",
        21,
        480,
        832,
        20,
        ("baseline", "alp_k5", "alp_k5_stack", "alp_k5_output", "magcache_wan", "fewer_steps_6"),
    ),
    Section(
        "long-video",
        "wan2.1-1.3b",
        "Wan2.1-T2V-1.3B",
        0,
        480,
        832,
        6,
        ("baseline", "alp_k5", "alp_k5_stack"),
        lengths=(49, 81, 113),
        windowing={"window": 8, "overlap": 4},
    ),
)
# The tiny run: 32 x 32 pixels (2 x 2 tokens per latent frame), the same settings and structure.
TINY_SECTIONS = (
    replace(SECTIONS[0], frames=17, height=32, width=32, steps=12),
    replace(SECTIONS[1], frames=17, height=32, width=32, steps=12),
    replace(SECTIONS[2], height=32, width=32, lengths=(33, 49, 65)),
)


def setting_list(names: Sequence[str], ratios: Sequence[float], windowing: dict) -> list[Setting]:
    """The named settings; windowed (``sliding``) when ``windowing`` is given.

    Memory-lean ALP (suites/alp_memory.toml): 4 groups, the whole stack, the velocity, order 1
    with order 3's warm-up; bfloat16 factors are left out, as the model already is bfloat16.
    """
    own = {
        "alp_k5_g4": Setting("alp_k5_g4", "alp", {**ALP, "groups": 4}),
        "alp_k5_o1": Setting("alp_k5_o1", "alp", {**ALP, "order": 1, "warmup": 4}),
        "magcache_wan": Setting("magcache_wan", "magcache", {"ratios": tuple(ratios)}),
        "diffusers_magcache_wan": Setting(
            "diffusers_magcache_wan",
            "diffusers_cache",
            {"config": "mag_cache", "args": {"mag_ratios": list(ratios)}},
        ),
    }
    chosen = [own[name] if name in own else settings.get(name) for name in names]
    if windowing:
        chosen = [replace(s, windowing="sliding", windowing_args=windowing) for s in chosen]
    return chosen


def published_ratios(model: str) -> tuple[float, ...]:
    """MagCache's published ratios for ``model``, one per step (step 0's is 1: nothing before it)."""
    data = json.loads(RATIOS.read_text())
    return (1.0, *data["magnitude_ratio"][model])


# ---- the model ------------------------------------------------------------------------------


def transformer_config(model: str, tiny: bool) -> dict[str, Any]:
    if not tiny:
        return dict(WAN_CONFIGS[model])
    image = WAN_CONFIGS[model].get("image_dim") is not None
    return {**TINY_CONFIG, **(TINY_IMAGE if image else {})}


def build_transformer(config: dict[str, Any], device: str) -> nn.Module:
    """A random-init ``WanTransformer3DModel`` on ``device``, cast to bfloat16 except the modules diffusers keeps in float32."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanTransformer3DModel(**config).eval()
    # One parameter at a time: the peak is the float32 model and one parameter.
    cast_as_from_pretrained(transformer, torch.bfloat16)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the float32 copies made while building
    return transformer


def video_inputs(
    transformer: nn.Module, frames: int, height: int, width: int, device: str, tiny: bool
) -> tuple[tuple[int, ...], Any]:
    """The latent shape of a ``frames`` x ``height`` x ``width`` video and random conditioning (prompt, negative prompt; I2V: image tokens and first-frame condition)."""
    config = transformer.config
    channels = config.out_channels
    latent_frames = (frames - 1) // WAN_TIME_STRIDE + 1
    shape = (1, channels, latent_frames, height // WAN_SPACE_STRIDE, width // WAN_SPACE_STRIDE)
    generator = torch.Generator().manual_seed(1)

    def random(*size: int) -> Tensor:
        return torch.randn(size, generator=generator).to(device, torch.bfloat16)

    text = TINY_TEXT if tiny else WAN_TEXT
    image = condition = None
    if config.image_dim is not None:
        image = random(1, TINY_IMAGE_TOKENS if tiny else WAN_IMAGE_TOKENS, config.image_dim)
        condition = random(1, config.in_channels - channels, *shape[2:])
    cond = wan_cond(random(1, *text), random(1, *text), image_embeds=image, condition=condition)
    return shape, cond


# ---- FLOPs ----------------------------------------------------------------------------------


def module_flops(config: dict[str, Any], latent: tuple[int, ...], cond: Any) -> dict[str, int]:
    """FLOPs of one pass, per part: ``embed``, ``head`` and one block's ``attn1``/``attn2``/``ffn``.

    Every block has the same shapes, so one block on the meta device stands for all of them.
    """
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        transformer = WanTransformer3DModel(**{**config, "num_layers": 1})
    cast_as_from_pretrained(transformer, torch.bfloat16)
    model = WanDenoiser(transformer)
    window = cond.window(0, latent[2])
    meta = replace(
        window,
        static={k: torch.empty(v.shape, device="meta") for k, v in window.static.items()},
        temporal={k: torch.empty(v.shape, device="meta") for k, v in window.temporal.items()},
    )
    x = torch.empty(latent, device="meta")
    counter, flops = FlopCounter(), {}
    block = transformer.blocks[0]

    def before(part: str) -> Callable[..., None]:
        return lambda *_: flops.__setitem__(part, -counter.total)

    def after(part: str) -> Callable[..., None]:
        return lambda *_: flops.__setitem__(part, flops[part] + counter.total)

    for part in BLOCK_PROBES:
        block.get_submodule(part).register_forward_pre_hook(before(part))
        block.get_submodule(part).register_forward_hook(after(part))
    with counter:
        h, ctx = model.embed(x, torch.full((1,), 0.5, device="meta"), meta)
        flops["embed"] = counter.total
        out = model.blocks[0](h, ctx)
        blocks_done = counter.total
        model.head(out, ctx)
        flops["head"] = counter.total - blocks_done
    return flops


class RanModules:
    """Forward hooks that record, per transformer call, the latent frames and which parts ran."""

    def __init__(self, transformer: nn.Module) -> None:
        self.frames = 0
        self.ran: list[tuple[int, str]] = []
        self.handles = [transformer.rope.register_forward_hook(self._call)]
        parts = {"embed": transformer.patch_embedding, "head": transformer.proj_out}
        for block in transformer.blocks:
            parts.update(
                {f"{p}#{id(block)}": block.get_submodule(m) for p, m in BLOCK_PROBES.items()}
            )
        for part, module in parts.items():
            name = part.split("#")[0]
            self.handles.append(module.register_forward_hook(lambda *_, n=name: self._ran(n)))

    def _call(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self.frames = inputs[0].shape[2]

    def _ran(self, part: str) -> None:
        self.ran.append((self.frames, part))

    def flops(self, table: Callable[[int], dict[str, int]]) -> int:
        return sum(table(frames)[part] for frames, part in self.ran)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---- measuring ------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def free_bytes(device: str) -> int | None:
    """Device memory a sample can still take: free, plus what torch's allocator holds unused."""
    if not device.startswith("cuda"):
        return None
    held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return torch.cuda.mem_get_info(device)[0] + held


def planned(model: PlannedModel, setting: Setting, steps: int) -> tuple[dict | None, str]:
    """The memory plan as a dict, or None and why it cannot be planned."""
    try:
        return plan(model, setting, steps, guided=True).as_dict(), ""
    except ValueError as err:
        return None, str(err).split(";")[0]


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range)."""
    if len(values) < 2:
        return values[0], 0.0
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q3 - q1


def step_labels(trace: Sequence[Any]) -> list[str]:
    """Per step, what its calls did: ``compute`` where every call was a full pass, else the actions joined."""
    actions: dict[int, set[str]] = defaultdict(set)
    for record in trace:
        actions[record.step].add(record.action)
    return ["+".join(sorted(actions[step])) for step in sorted(actions)]


def timed_sample(
    model: WanDenoiser, noise: Tensor, sigmas: Tensor, cond: Any, setting: Setting, device: str
) -> tuple[Any, list[float]]:
    """One guided sample under ``setting`` and its steps' wall times, each ending on a device synchronise; the device's peak memory statistics are reset first."""
    stepper, windowing, _ = setting.build()
    marks: list[float] = []

    def mark(_: Any) -> None:
        synchronize(device)
        marks.append(time.perf_counter())

    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = sample(
        model, noise, sigmas, cond, stepper=stepper, windowing=windowing, guidance=GUIDANCE,
        callback=mark,
    )  # fmt: skip
    return result, [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)]


def measure(
    model: WanDenoiser,
    noise: Tensor,
    cond: Any,
    setting: Setting,
    steps: int,
    repeats: int,
    device: str,
    table: Callable[[int], dict[str, int]],
) -> dict[str, Any]:
    """Time, FLOPs, peak memory and cache bytes of ``repeats`` guided samples under ``setting``."""
    sigmas = flow_match_sigmas(steps, shift=5.0)
    times, per_step, labels, peak = [], defaultdict(list), [], None
    for _ in range(repeats):
        probes = RanModules(model.transformer)
        try:
            result, step_times = timed_sample(model, noise, sigmas, cond, setting, device)
        finally:
            probes.remove()
        times.append(sum(step_times))
        if device.startswith("cuda"):
            peak = max(peak or 0, torch.cuda.max_memory_allocated(device))
        labels = step_labels(result.trace)
        for label, seconds in zip(labels, step_times, strict=True):
            per_step[label].append(seconds)
    median = statistics.median(times)
    steps_taken = len(labels)
    actions = {}
    for label, values in sorted(per_step.items()):
        middle, iqr = quartiles(values)
        actions[label] = {"steps": len(values) // repeats, "median": middle, "iqr": iqr}
    return {
        "status": "ok",
        "steps": steps_taken,
        "full_passes": result.nfe,
        "calls": dict(Counter(r.action for r in result.trace)),
        "windows": len({r.window for r in result.trace}),
        "sample_seconds": times,
        "seconds_median": median,
        "seconds_spread": (max(times) - min(times)) / median,
        "step_seconds": median / steps_taken,
        "per_action": actions,
        "flops": probes.flops(table),
        "peak_bytes": peak,
        "cache_bytes": result.peak_cache_bytes,
    }


def run_section(
    section: Section, device: str, repeats: int, tiny: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every (length, setting) of ``section``: the rows, the baseline's ratios filled in."""
    config = transformer_config(section.model, tiny)
    transformer = build_transformer(config, device)
    model = WanDenoiser(transformer)
    ratios = published_ratios(section.magcache)
    chosen = setting_list(section.settings, ratios, section.windowing)
    lengths = section.lengths or (section.frames,)
    rows, tables = [], {}
    for frames in lengths:
        shape, cond = video_inputs(transformer, frames, section.height, section.width, device, tiny)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
        planned_model = PlannedModel(section.model, model, shape, torch.float32, cond)

        def table(latent_frames: int, shape: tuple[int, ...] = shape, cond: Any = cond) -> dict:
            if latent_frames not in tables:
                tables[latent_frames] = module_flops(
                    config, (*shape[:2], latent_frames, *shape[3:]), cond
                )
            return tables[latent_frames]

        # The baseline's passes: one per window and branch at each step.
        windows = chosen[0].build()[1].windows(shape[2], 0)
        passes = 2 * section.steps * len(windows)
        full = table(max(stop - start for start, stop in windows))
        layers = config["num_layers"] * sum(full[p] for p in BLOCK_PROBES)
        pass_flops = full["embed"] + full["head"] + layers
        estimate = passes * pass_flops / ASSUMED_FLOPS_PER_SECOND
        log(
            f"{section.name}: {frames} frames, latent {shape}, {section.steps} steps; baseline "
            f"{passes} passes of {pass_flops / 1e12:.1f} TFLOPs, ~{estimate:.0f} s at 400 TFLOP/s"
        )
        warm = replace(chosen[0], name="warm-up")
        measure(model, noise, cond, warm, 2, 1, device, table)  # kernels, allocator: untimed
        baseline = None
        for setting in chosen:
            memory, why = planned(planned_model, setting, section.steps)
            row = {"setting": setting.name, "description": setting.describe(), "frames": frames,
                   "latent_shape": list(shape), "plan": memory, "plan_note": why}  # fmt: skip
            free = free_bytes(device)
            # The weights are already resident: the rest of the plan must fit what is free.
            need = None if memory is None else memory["total"] - memory["weights"]
            if need is not None and free is not None and need > free:
                row["status"] = (
                    f"skipped: planned {need / 2**30:.1f} GiB beside the weights, "
                    f"{free / 2**30:.1f} GiB free on {device}"
                )
            else:
                try:
                    row.update(
                        measure(model, noise, cond, setting, section.steps, repeats, device, table)
                    )
                except torch.OutOfMemoryError as err:
                    # One setting beyond the card must not lose the others' figures.
                    row["status"] = f"out of memory: {str(err).splitlines()[0]}"
                    gc.collect()
                    torch.cuda.empty_cache()
            if baseline is None:
                baseline = row
            if row["status"] == "ok" and baseline["status"] == "ok":
                row["speedup"] = baseline["seconds_median"] / row["seconds_median"]
                row["flop_ratio"] = baseline["flops"] / row["flops"]
                row["wall_efficiency"] = row["speedup"] / row["flop_ratio"]
                if memory is not None and row["peak_bytes"] is not None:
                    row["peak_over_plan"] = row["peak_bytes"] / memory["total"]
            log(f"  {setting.name}: {row['status']}" + (
                f", {row['seconds_median']:.2f} s, {row['full_passes']} full passes"
                if row["status"] == "ok" else ""))  # fmt: skip
            rows.append(row)
    return {
        "name": section.name,
        "model": section.model,
        "config": config,
        "height": section.height,
        "width": section.width,
        "steps": section.steps,
        "repeats": repeats,
        "guidance_scale": GUIDANCE.scale,
        "windowing": section.windowing or "full",
        "magcache_ratios": section.magcache,
        "pass_flops": {str(k): v for k, v in tables.items()},
        "rows": rows,
    }


# ---- output ---------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the note, the device, one table per section."""
    unit, gib = ("KiB", 2**10) if report["tiny"] else ("GiB", 2**30)
    lines = [
        f"# Wan2.1 at real size: {report['device']}",
        "",
        f"**{report['note']}**",
        "",
        f"torch {report['torch']}, diffusers {report['diffusers']}, bfloat16 weights, CFG scale "
        f"{GUIDANCE.scale}; {report['seconds']:.0f} s in all. Columns: benchmarks/bench_wan_gpu.py.",
    ]
    if not report["complete"]:
        lines += ["", "**Incomplete: the run stopped before its last section.**"]
    for section in report["sections"]:
        windowing = section["windowing"]
        lines += [
            "",
            f"## {section['name']} ({section['model']}), {section['height']}x{section['width']}, "
            f"{section['steps']} steps, {section['repeats']} timed repeat(s)"
            + ("" if windowing == "full" else f", sliding windows {windowing}"),
            "",
            "| setting | frames | full passes / calls | s/step | spread | per action (median s) "
            f"| speedup | FLOP ratio | wall eff. | peak {unit} | plan {unit} | peak/plan | cache {unit} |",
            "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in section["rows"]:
            memory = row["plan"]
            plan_cell = _number(memory["total"] / gib) if memory else "not plannable"
            if row["status"] != "ok":
                lines.append(
                    f"| {row['setting']} | {row['frames']} | {row['status']} |"
                    + " |" * 9
                    + f" {plan_cell} | | |"
                )
                continue
            calls = sum(row["calls"].values())
            actions = ", ".join(
                f"{k} {v['median']:.3f} x{v['steps']}" for k, v in row["per_action"].items()
            )
            peak = None if row["peak_bytes"] is None else row["peak_bytes"] / gib
            lines.append(
                f"| {row['setting']} | {row['frames']} | {row['full_passes']} / {calls} "
                f"| {row['step_seconds']:.3f} | {row['seconds_spread']:.1%} | {actions} "
                f"| {_number(row.get('speedup'))} | {_number(row.get('flop_ratio'))} "
                f"| {_number(row.get('wall_efficiency'))} | {_number(peak)} | {plan_cell} "
                f"| {_number(row.get('peak_over_plan'))} | {row['cache_bytes'] / gib:.2f} |"
            )
    return "\n".join(lines) + "\n"


def progress(line: str) -> None:
    print(line, flush=True)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", required=True, help=f"output folder ({JSON_NAME}, {MARKDOWN_NAME})"
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny transformers (CPU, seconds)")
    parser.add_argument("--repeats", type=int, default=1, help="timed samples per setting")
    names = [s.name for s in SECTIONS]
    parser.add_argument("--sections", nargs="+", default=names, choices=names)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    # Refuse before any work: never overwrite a result.
    for name in (JSON_NAME, MARKDOWN_NAME):
        if (out / name).exists():
            raise SystemExit(f"{out / name} exists; give another --out, or move it away first")
    if args.repeats < 1:
        raise SystemExit(f"--repeats {args.repeats} must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {args.device}: no CUDA device here; on a CPU run --tiny --device cpu"
        )
    if not args.device.startswith("cuda") and not args.tiny:
        raise SystemExit(f"--device {args.device}: real sizes take hours off a GPU; add --tiny")
    out.mkdir(parents=True, exist_ok=True)
    import diffusers

    chosen = [s for s in (TINY_SECTIONS if args.tiny else SECTIONS) if s.name in args.sections]
    start = time.perf_counter()
    report = {
        "note": NOTE,
        "device": device_name(args.device),
        "tiny": args.tiny,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "complete": False,
        "seconds": 0.0,
        "sections": [],
    }
    for section in chosen:
        report["sections"].append(
            run_section(section, args.device, args.repeats, args.tiny, progress)
        )
        report["seconds"] = time.perf_counter() - start
        report["complete"] = len(report["sections"]) == len(chosen)
        # Written after every section (our own files from here on): a run stopped early keeps
        # the sections it finished, and says it is incomplete.
        (out / JSON_NAME).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        (out / MARKDOWN_NAME).write_text(markdown(report))
        # The next section's model is built where this one's was: free it all first.
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(f"wrote {out / JSON_NAME} and {out / MARKDOWN_NAME} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
