"""The memory plans of Wan2.1-1.3B and 14B in docs/memory.md (computed, not measured).

81 frames at 480p (832x480) and 720p (1280x720), bf16 weights, CFG (two branches), 30 steps;
then memory-lean ALP at 14B with block-level weight offloading, against a 24 GiB card.
Run: python benchmarks/plan_wan_memory.py > table.md
"""

from __future__ import annotations

from flashbench.planning.memory import plan, planned_model
from flashbench.settings import Setting

SETTINGS = (
    Setting("baseline"),
    *(
        Setting(f"alp_k5_o{order}", "alp", {"interval": 5, "order": order, "alpha": 1.5})
        for order in (1, 2, 3)
    ),
    Setting("taylorseer_n5_o1", "taylorseer", {"interval": 5, "order": 1}),
    Setting("fora_n3", "fora", {"interval": 3}),
    Setting("fbcache_0p05", "first_block_cache", {"threshold": 0.05}),
    Setting("sliding", windowing="sliding", windowing_args={"window": 8, "overlap": 4}),
    Setting(
        "alp_k5_o3_sliding",
        "alp",
        {"interval": 5, "order": 3, "alpha": 1.5},
        "sliding",
        {"window": 8, "overlap": 4},
    ),
)
SIZES = {"480p": (480, 832), "720p": (720, 1280)}
GIB = 2**30
CARD = 24 * GIB
ALP = {"interval": 5, "alpha": 1.5}
# Memory-lean ALP: every variant keeps the K=5 schedule (the same full passes as alp_k5).
LEAN = (
    Setting("baseline"),
    Setting("alp_k5 (per block, n=3)", "alp", {**ALP, "order": 3}),
    Setting("alp_k5, n=1", "alp", {**ALP, "order": 1}),
    *(Setting(f"alp_k5, {g} groups", "alp", {**ALP, "order": 3, "groups": g}) for g in (8, 4, 2)),
    Setting("alp_k5_stack (1 group)", "alp", {**ALP, "order": 3, "groups": 1}),
    Setting("alp_k5_stack, n=1", "alp", {**ALP, "order": 1, "groups": 1}),
    Setting("alp_k5_output (velocity)", "alp", {**ALP, "order": 3, "level": "output"}),
    Setting(
        "alp_k5_stack + sliding",
        "alp",
        {**ALP, "order": 3, "groups": 1},
        "sliding",
        {"window": 8, "overlap": 4},
    ),
)


def main() -> None:
    for name in ("wan2.1-1.3b", "wan2.1-14b"):
        for label, (height, width) in SIZES.items():
            model = planned_model(name, 81, height, width)
            print(
                f"\n### {name}, 81 frames at {label} ({width}x{height}), latent {model.latent_shape}\n"
            )
            print(
                "| setting | weights | activations | cache per block | blocks x factors "
                "| cache (all windows x 2 branches) | transient | windows | total |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for setting in SETTINGS:
                p = plan(model, setting, steps=30, guided=True)
                print(
                    f"| {p.setting} | {p.weights / GIB:.2f} | {p.activations / GIB:.2f} "
                    f"| {p.cache_per_block / GIB:.3f} | {p.cache_blocks} x {p.cache_factors} "
                    f"| {p.cache / GIB:.2f} | {p.transient / GIB:.2f} | {p.windows} "
                    f"| {p.total / GIB:.2f} |"
                )

    for label in SIZES:
        height, width = SIZES[label]
        model = planned_model("wan2.1-14b", 81, height, width)
        print(
            f"\n### Memory-lean ALP, wan2.1-14b, 81 frames at {label}, block offloading "
            "(`--offload blocks`), CFG\n"
        )
        print(
            "| setting | weights resident | activations | blocks x factors | cache | transient "
            "| total | fits 24 GiB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for setting in LEAN:
            p = plan(model, setting, steps=30, guided=True, offload="blocks")
            fits = "yes" if p.total <= CARD else f"no (+{(p.total - CARD) / GIB:.1f})"
            print(
                f"| {p.setting} | {p.weights / GIB:.2f} | {p.activations / GIB:.2f} "
                f"| {p.cache_blocks} x {p.cache_factors} | {p.cache / GIB:.2f} "
                f"| {p.transient / GIB:.2f} | {p.total / GIB:.2f} | {fits} |"
            )


if __name__ == "__main__":
    main()
