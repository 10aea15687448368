"""Do the new metrics tell samplers apart? Temporal stability, identity distance and expression following on the quick_full suite's cases.

    python benchmarks/bench_discrimination.py [--settings baseline alp_k5 sliding] [--bootstrap 4000]

Samples every case of the `quick_full` suite (held-out identities, self and cross reenactment)
with each setting and with the baseline re-sampled from another noise seed (`reseeded`, the
seed floor), then prints each metric's mean per setting and the paired bootstrap 95%
interval of its difference from the baseline. Flicker is measured against the ground truth
(which the world renders in cross reenactment too), on the whole frame and on the generated
identity's static background; identity against the reference image; expression against the driving
render. Prints ratios measured in one run; nothing is cached.
"""

from __future__ import annotations

import argparse

import torch

from flashbench.sampling import sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings
from flashbench.suite.document import load_suite
from metrics import ExpressionFollowing, IdentityDistance, TemporalStability
from reference_model.calibration import load_identity_calibration
from reference_model.expression import load_expression_extractor
from reference_model.identity import load_identity_encoder
from reference_model.pipeline import load_reference
from reference_model.world import driving_sequence, identity_params, static_background

FIGURES = (
    ("temporal", "ratio"),
    ("temporal", "background_noise_std"),
    ("identity", "mean"),
    ("expression", "correlation_pose"),
    ("expression", "correlation_eyes"),
    ("expression", "correlation_mouth"),
    ("expression", "blinks"),
    ("expression", "blinks_followed"),
)


def measure_case(model, case, inputs, video: torch.Tensor, metrics: dict) -> dict[str, float]:
    """The figures of one generated video [T, 3, H, W]."""
    generated = video.transpose(0, 1)[None]
    # The world renders a ground truth in cross reenactment too (the identity under the
    # driver's motion); the driving render is the fallback where there is none.
    truth = inputs.ground_truth if inputs.ground_truth is not None else inputs.driving
    reference = truth.transpose(0, 1)[None]
    motion = driving_sequence(case.driving_seed, case.frames)[None]
    background = static_background(identity_params([case.identity]), motion, case.resolution)
    driving = inputs.driving.transpose(0, 1)[None]
    updates = {
        "temporal": (generated, reference, background),
        "identity": (inputs.reference_image[None], generated),
        "expression": (generated, driving),
    }
    out = {}
    for name, metric in metrics.items():
        metric.reset()
        metric.update(*updates[name])
        result = metric.compute()
        out.update({f"{name}.{key}": float(result[key]) for n, key in FIGURES if n == name})
    return out


def bootstrap(differences: torch.Tensor, resamples: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(differences), (resamples, len(differences)), generator=generator)
    means = differences[picks].mean(dim=1)
    return means.quantile(0.025).item(), means.quantile(0.975).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["baseline", "alp_k5", "sliding"])
    parser.add_argument("--bootstrap", type=int, default=4000)
    args = parser.parse_args()
    suite = load_suite("quick_full")
    model = load_reference()
    cases = suite.cases.expand(model.splits, model.fps)
    metrics = {
        "temporal": TemporalStability(),
        "identity": IdentityDistance(load_identity_encoder(), load_identity_calibration()),
        "expression": ExpressionFollowing(load_expression_extractor()),
    }
    sigmas = flow_match_sigmas(suite.steps, suite.shift)
    runs = [(name, name, 0) for name in args.settings] + [("reseeded", "baseline", 1)]
    table: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
    for index, case in enumerate(cases):
        inputs = model.prepare(case)
        for label, setting_name, seed in runs:
            stepper, windowing, _ = settings.get(setting_name).build()  # unguided, as in quick_full
            noise = torch.randn(
                inputs.latent_shape, generator=torch.Generator().manual_seed(1000 * index + seed)
            )
            result = sample(
                model.denoiser, noise, sigmas, inputs.cond, stepper=stepper, windowing=windowing
            )
            video = model.decode(result.latents)
            table[label].append(measure_case(model, case, inputs, video, metrics))
        print(f"case {index + 1}/{len(cases)} {case.id}", flush=True)
    for key in table["baseline"][0]:
        print(f"\n{key}")
        base = torch.tensor([row[key] for row in table["baseline"]], dtype=torch.float64)
        for label in table:
            values = torch.tensor([row[key] for row in table[label]], dtype=torch.float64)
            low, high = bootstrap(values - base, args.bootstrap)
            print(
                f"  {label:>12}: mean {values.mean():.5g}   minus baseline {float((values - base).mean()):+.4g} "
                f"[{low:+.4g}, {high:+.4g}]"
            )


if __name__ == "__main__":
    main()
