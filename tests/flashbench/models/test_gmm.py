"""The gmm testbed's velocity is the mixture's exact flow, so its ODE solutions are known."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flashbench.denoiser import Cond
from flashbench.flops import count_flops
from flashbench.models.gmm import MIXTURE, gaussian_solution, mixture_velocity, palette
from flashbench.models.registry import models
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas, shift_sigmas
from flashbench.steppers.dpm_solver import DPMSolver
from flashbench.suite.document import parse_suite


def velocity_from_the_score(x, sigma, means, stds, log_weights):
    """E[eps - x0 | x] from the autograd score of the noised mixture's log density (Tweedie)."""
    x = x.double().requires_grad_(True)
    points = x.movedim(1, -1)[..., None, :]  # [B, T, H, W, 1, C]
    variance = (1 - sigma) ** 2 * stds**2 + sigma**2
    log_normal = -0.5 * (points - (1 - sigma) * means).square().sum(-1) / variance
    log_normal = log_normal - 0.5 * means.shape[1] * torch.log(variance)
    log_density = torch.logsumexp(log_normal + log_weights, dim=-1).sum()
    (score,) = torch.autograd.grad(log_density, x)
    noise = -sigma * score  # E[eps | x]
    data = (x - sigma * noise) / (1 - sigma)  # E[x0 | x]
    return (noise - data).detach()


@settings(deadline=None, max_examples=25)
@given(
    sigma=st.floats(0.02, 0.98),
    components=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_velocity_equals_the_score_identity_of_the_noised_mixture(sigma, components, seed):
    means, stds, log_weights = palette(seed, components)
    x = torch.randn(
        2, 3, 2, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    exact = mixture_velocity(
        x, torch.full((2,), sigma, dtype=torch.float64), means, stds, log_weights
    )
    torch.testing.assert_close(exact, velocity_from_the_score(x, sigma, means, stds, log_weights))


def gaussian_case(std: float = 0.3) -> tuple[Cond, torch.Tensor]:
    mean = torch.tensor([[0.4, -0.2, 0.7]], dtype=torch.float64)
    return Cond(static={"means": mean, "stds": torch.tensor([std], dtype=torch.float64)}), mean[0]


def test_solvers_converge_to_the_closed_form_solution_of_one_gaussian():
    cond, mean = gaussian_case()
    model = models.build("gmm", components=1).denoiser
    x1 = torch.randn(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def schedule(steps: int) -> torch.Tensor:
        # Shifted, and refined all the way to its end: Wan's ends with a fixed jump to 0 whose
        # error (the same for any solver) would hide the solvers' orders.
        return shift_sigmas(torch.linspace(1, 0.01, steps + 1, dtype=torch.float64), 5.0)

    truth = gaussian_solution(x1, float(schedule(1)[-1]), mean, 0.3)

    errors = {}
    for steps in (20, 40, 80):
        out = sample(model, x1, schedule(steps), cond).latents
        errors[steps] = (out - truth).abs().max().item()
    # Euler is first order: halving the step halves the error.
    assert 1.7 < errors[20] / errors[40] < 2.3 and 1.7 < errors[40] / errors[80] < 2.3
    # DPM-Solver++(2M) is second order: four times the steps, about a sixteenth of the error.
    second = {
        steps: (sample(model, x1, schedule(steps), cond, stepper=DPMSolver()).latents - truth)
        .abs()
        .max()
        .item()
        for steps in (320, 1280)
    }
    assert 12 < second[320] / second[1280] < 20 and second[1280] < 2e-4


def test_dropping_the_mixture_weights_samples_the_uniform_mixture():
    means, stds, log_weights = palette(3, 4)
    cond = Cond(static={"means": means, "stds": stds, MIXTURE: log_weights})
    model = models.build("gmm", components=4).denoiser
    x = torch.randn(1, 3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = torch.tensor([0.5], dtype=torch.float64)
    dropped = model(x, sigma, cond.without((MIXTURE,)))
    uniform = mixture_velocity(x, sigma, means, stds, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(dropped, uniform)
    assert not torch.allclose(model(x, sigma, cond), dropped)
    guided = Guidance(scale=2.0, drop=(MIXTURE,))
    out = sample(model, x, flow_match_sigmas(4, 5.0).double(), cond, guidance=guided)
    assert out.nfe == 8 and out.latents.isfinite().all()


def test_a_pass_counts_the_mixtures_elementwise_flops_per_branch():
    means, stds, log_weights = palette(3, 4)
    cond = Cond(static={"means": means, "stds": stds, MIXTURE: log_weights})
    model = models.build("gmm", components=4).denoiser
    x = torch.randn(1, 3, 2, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.5], dtype=torch.float64)
    # 32 pixels x 4 components x (7 per channel x 3 channels + 8, + 1 for the log weights).
    assert count_flops(model, x, sigma, cond)[1] == 32 * 4 * 30 == 3840
    assert count_flops(model, x, sigma, cond.without((MIXTURE,)))[1] == 32 * 4 * 29
    guided = Guidance(scale=2.0, drop=(MIXTURE,))
    out = sample(
        model, x, flow_match_sigmas(4, 5.0).double(), cond, guidance=guided, count_flops=True
    )
    assert out.flops == 4 * 32 * 4 * (30 + 29)


def test_a_case_prepares_its_palette_and_decodes_to_frames():
    model = models.build("gmm")
    from flashbench.models.base import CaseSpec

    inputs = model.prepare(CaseSpec("c", "self", 5, 5, 0, 6, 16))
    assert inputs.latent_shape == (1, 3, 6, 16, 16) and inputs.ground_truth is None
    torch.testing.assert_close(inputs.cond.static["means"], palette(5, 8)[0])
    frames = model.decode(torch.zeros(inputs.latent_shape))
    assert frames.shape == (6, 3, 16, 16) and torch.all(frames == 0.5)


SUITE = """
[suite]
name = "gmm_tiny"
version = "1"
model = "gmm"
steps = 10
baseline = "truth"
seeds = [0]

[cases]
identities = 1
lengths = [4]
resolution = 8

[guidance]
scale = 2.0
drop = ["mixture"]

[metrics]
names = ["psnr", "mae", "speed"]
references = ["baseline"]

[[settings]]
name = "truth"
stepper = "dpmpp_2m"
stepper_args = { steps = 200 }

[[settings]]
name = "euler"

[[settings]]
name = "alp"
stepper = "alp"
stepper_args = { interval = 2, order = 1 }
"""


def test_a_suite_measures_every_setting_against_the_near_exact_solution(tmp_path):
    suite = parse_suite(SUITE, "gmm_tiny.toml")
    summary = run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (3, 0)
    mae = {r["setting"]: r["value"] for r in read_rows(tmp_path / "run") if r["metric"] == "mae"}
    assert set(mae) == {"euler", "alp"} and all(math.isfinite(v) and v > 0 for v in mae.values())
    speed = {
        (r["setting"], r["metric"]): r["value"]
        for r in read_rows(tmp_path / "run")
        if r["metric"] in ("flops", "nfe")
    }
    # Guided Euler, 10 steps: 256 pixels x 8 components x 30 (cond) and x 29 (uncond) a pass.
    per_step = 256 * 8 * (30 + 29)
    assert speed["euler", "flops"] == 10 * per_step
    # ALP pays its passes and a little besides (its forecast mixes the cached factors).
    passes = speed["alp", "nfe"] / 2 * per_step
    assert passes <= speed["alp", "flops"] < speed["euler", "flops"]
