"""Cost of every named setting at Wan2.1-1.3B and 14B sizes (Wan Team 2025, arXiv 2503.20314): FLOPs per full and predicted step, stepper cache bytes.

Run: ``python benchmarks/bench_wan_cost.py [--steps 30] [--markdown]``. Computed, not measured:
no weights are allocated and no wall time is taken.

- FLOPs per full pass (one guidance branch): ``torch.utils.flop_counter`` on the transformer
  built on the meta device, so counts come from shapes: 2 FLOPs per multiply-add in every
  matmul (Q/K/V/O, cross-attention, FFN, patch embedding, text/time embedders, output
  projection) and 4 N^2 d per self-attention (QK^T and AV); norms, modulation and rotary
  embedding are elementwise and uncounted. With N latent tokens, d the width, f the FFN width,
  L = 512 text tokens, per block: 8 N d^2 + 4 N^2 d (self) + 4 N d^2 + 4 L d^2 + 4 N L d
  (cross) + 4 N d f (FFN).
- FLOPs per predicted step: the setting runs on a tiny random Wan (width 16, the real number of
  blocks) for ``--steps`` steps; each
  call that is not a full pass records which block layers really ran (self-attention,
  cross-attention, FFN: their input projections fire only when they compute), and its cost is
  the embedding and head plus those layers at the real size. The largest such call is shown;
  "-" where the tiny run made no such call (Euler, fewer steps, DPM-Solver; a threshold the
  tiny model's changes never fell under).
- Cache bytes per (window, guidance branch): the largest stepper cache of that tiny run with
  each cached tensor's token and width dims rescaled to the real size (``[B, N, d]`` hidden
  states, ``[B, N]`` token norms, ``[B, d]`` time embeddings, latents), in the dtype the
  stepper stored them at with the transformer in bfloat16. Under CFG, double it; sliding
  windows keep one cache per live window over that window's tokens.
"""

from __future__ import annotations

import argparse
import math

import torch
from diffusers import WanTransformer3DModel
from torch.utils.flop_counter import FlopCounterMode

from flashbench.models.wan.denoiser import WanDenoiser, wan_cond
from flashbench.planning.memory import WAN_CONFIGS
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings
from flashbench.steppers.base import cache_tensors

# Wan2.1's released transformer configs (diffusers' Wan-AI/Wan2.1-T2V-*-Diffusers).
WAN = {"patch_size": (1, 2, 2), "in_channels": 16, "out_channels": 16, "text_dim": 4096}
WAN.update(freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
SIZES = {"1.3B": WAN_CONFIGS["wan2.1-1.3b"], "14B": WAN_CONFIGS["wan2.1-14b"]}
# 81 frames through Wan's VAE (4x in time after the first frame, 8x in space) -> 21 latent frames.
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280)}
FRAMES, TEXT_TOKENS = 81, 512
LAYERS = {"attn1": "attn1.to_q", "attn2": "attn2.to_q", "ffn": "ffn.net.0.proj"}
# The tiny run: 7 latent frames of 4 x 4 -> 28 tokens of width 16 (distinct from every other dim).
TINY_TOKENS, TINY_WIDTH, TINY_LATENT = 28, 16, (1, 4, 7, 4, 4)


def real_shapes(size: str, resolution: str) -> tuple[int, int, tuple[int, ...]]:
    """(tokens, width, latent shape) of an 81-frame video at ``resolution`` for Wan2.1-``size``."""
    height, width = RESOLUTIONS[resolution]
    latent = (1, 16, (FRAMES - 1) // 4 + 1, height // 8, width // 8)
    tokens = latent[2] * (latent[3] // 2) * (latent[4] // 2)
    config = SIZES[size]
    return tokens, config["num_attention_heads"] * config["attention_head_dim"], latent


def pass_flops(size: str, resolution: str) -> dict[str, float]:
    """FLOPs of one transformer pass: ``total``, ``embed_head`` and one block's ``attn1``/``attn2``/``ffn``."""
    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN, **SIZES[size]).to(torch.bfloat16)
    _, _, latent = real_shapes(size, resolution)
    x = torch.empty(latent, device="meta", dtype=torch.bfloat16)
    text = torch.empty(1, TEXT_TOKENS, WAN["text_dim"], device="meta", dtype=torch.bfloat16)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.full((1,), 500.0, device="meta"), text, return_dict=False)
    counts = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
    prefix = "WanTransformer3DModel.blocks"
    blocks = sum(counts[f"{prefix}.{i}"] for i in range(SIZES[size]["num_layers"]))
    flops = {"total": counter.get_total_flops(), "embed_head": counter.get_total_flops() - blocks}
    flops.update({layer: counts[f"{prefix}.0.{layer}"] for layer in LAYERS})
    return flops


def scaled_bytes(cache: dict, tokens: int, width: int, latent: tuple[int, ...]) -> int:
    """Bytes of ``cache``'s tensors with the tiny run's dims replaced by the real ones."""
    total = 0
    for tensor in cache_tensors(cache):
        lead = tensor.dim() - len(TINY_LATENT)
        if lead >= 0 and tuple(tensor.shape[lead:]) == TINY_LATENT:
            # A latent, or a stack of them (velocity-level forecast factors).
            shape = (*tensor.shape[:lead], *latent)
        else:
            shape = tuple({TINY_TOKENS: tokens, TINY_WIDTH: width}.get(n, n) for n in tensor.shape)
        total += math.prod(shape) * tensor.element_size()
    return total


def tiny_run(setting: str, steps: int, layers: int) -> list[tuple[str, set[tuple[int, str]], dict]]:
    """Per call (``sample``'s loop, one window and branch) of the setting's stepper on a tiny bfloat16 Wan of ``layers`` blocks: its action, the block layers that ran, a copy of its cache."""
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
        out_channels=4, text_dim=12, freq_dim=16, ffn_dim=32, num_layers=layers, rope_max_seq_len=32,
    ).to(torch.bfloat16).eval()  # fmt: skip
    ran: list[set] = []
    for index, block in enumerate(transformer.blocks):
        for layer, probe in LAYERS.items():
            block.get_submodule(probe).register_forward_hook(
                lambda *_, key=(index, layer): ran[-1].add(key) if ran else None
            )
    stepper, _, _ = settings.get(setting).build()
    model = WanDenoiser(transformer)
    sigmas = stepper.plan(flow_match_sigmas(steps))
    x = torch.randn(TINY_LATENT, generator=torch.Generator().manual_seed(0))
    cond = wan_cond(torch.randn(1, 5, 12, generator=torch.Generator().manual_seed(1)))
    calls, cache, history = [], {}, {}
    with torch.no_grad():
        for step in range(len(sigmas) - 1):
            ran.append(set())
            v, action = stepper.velocity(model, x, sigmas, step, cond, cache)
            x = stepper.advance(x, v, sigmas, step, history)
            calls.append((action, ran[-1], dict(cache)))
    return calls


def rows(steps: int, names: list[str]) -> list[list[str]]:
    table = []
    costs = {(s, r): pass_flops(s, r) for s in SIZES for r in RESOLUTIONS}
    for setting in names:
        runs = {size: tiny_run(setting, steps, SIZES[size]["num_layers"]) for size in SIZES}
        computed = sum(action == "compute" for action, _, _ in runs["14B"])
        row = [setting, f"{computed}/{len(runs['14B'])}"]
        for (size, resolution), flops in costs.items():
            calls = runs[size]
            tokens, width, latent = real_shapes(size, resolution)
            predicted = [
                flops["embed_head"] + sum(flops[layer] for _, layer in layers)
                for action, layers, _ in calls
                if action != "compute"
            ]
            cache = max(scaled_bytes(c, tokens, width, latent) for _, _, c in calls)
            row += [
                f"{max(predicted) / 1e12:,.1f}" if predicted else "-",
                f"{cache / 1e9:,.2f}",
            ]
        table.append(row)
    full = ["full pass (every setting's full step)", ""]
    for flops in costs.values():
        full += [f"{flops['total'] / 1e12:,.0f}", ""]
    return [full, *table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--settings", nargs="+", default=None, help="named settings to cost (default: all)"
    )
    args = parser.parse_args()
    names = settings.names() if args.settings is None else args.settings
    for name in names:
        settings.get(name)  # an unknown name stops here, with a "did you mean", before any work
    columns = ["setting", f"full passes / {args.steps} steps (tiny run)"]
    for size in SIZES:
        for resolution in RESOLUTIONS:
            columns += [f"{size} {resolution} TFLOPs pred", f"{size} {resolution} cache GB"]
    table = rows(args.steps, names)
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        for row in [columns, *table]:
            print("  ".join(f"{cell:>14}" for cell in row))
    print("wall time per step: not measured (no GPU); FLOPs and bytes computed from shapes")


if __name__ == "__main__":
    main()
