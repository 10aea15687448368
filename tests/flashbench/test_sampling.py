import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flashbench.denoiser import Cond
from flashbench.flops import FlopCounter, count_flops
from flashbench.models.toy import ToyDenoiser
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import settings, steppers
from flashbench.steppers.first_block_cache import FirstBlockCache
from flashbench.windowing import Full, Sliding

MODEL = ToyDenoiser(channels=3, dim=16, depth=2, temporal=True, motion_dim=2).eval()
LOCAL = ToyDenoiser(channels=3, dim=16, depth=2, temporal=False, motion_dim=2).eval()


def inputs(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, frames, 4, 4, generator=g), Cond(
        temporal={"motion": torch.randn(1, frames, 2, generator=g)}
    )


@given(
    frames=st.integers(1, 12),
    extra=st.integers(0, 4),
    overlap=st.integers(0, 3),
    weighting=st.sampled_from(["linear", "uniform"]),
)
def test_window_covering_video_equals_full_bit_for_bit(frames, extra, overlap, weighting):
    noise, cond = inputs(frames)
    window = frames + extra
    sliding = Sliding(window=window, overlap=min(overlap, window - 1), weighting=weighting)
    sigmas = flow_match_sigmas(4)
    full = sample(MODEL, noise, sigmas, cond, windowing=Full())
    assert torch.equal(sample(MODEL, noise, sigmas, cond, windowing=sliding).latents, full.latents)


@given(
    frames=st.integers(2, 14),
    window=st.integers(1, 8),
    overlap=st.integers(0, 7),
    weighting=st.sampled_from(["linear", "uniform"]),
    shift=st.integers(0, 3),
)
def test_frame_local_denoiser_gives_same_video_under_any_windowing(
    frames, window, overlap, weighting, shift
):
    noise, cond = inputs(frames, seed=1)
    sliding = Sliding(
        window=window, overlap=min(overlap, window - 1), weighting=weighting, shift=shift
    )
    sigmas = flow_match_sigmas(5)
    full = sample(LOCAL, noise, sigmas, cond).latents
    torch.testing.assert_close(
        sample(LOCAL, noise, sigmas, cond, windowing=sliding).latents, full, atol=1e-5, rtol=1e-5
    )


def test_same_seed_same_bits_and_inputs_untouched():
    noise, cond = inputs(9)
    before = (noise.clone(), cond.temporal["motion"].clone())
    stepper, windowing, _ = settings.get("sliding").build()
    a = sample(
        MODEL,
        noise,
        flow_match_sigmas(6),
        cond,
        stepper=stepper,
        windowing=windowing,
        guidance=Guidance(3.0, ("motion",)),
    )
    b = sample(
        MODEL,
        noise,
        flow_match_sigmas(6),
        cond,
        stepper=stepper,
        windowing=windowing,
        guidance=Guidance(3.0, ("motion",)),
    )
    assert torch.equal(a.latents, b.latents)
    assert torch.equal(noise, before[0]) and torch.equal(cond.temporal["motion"], before[1])


class Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, sigma, cond):
        self.calls.append("motion" in cond.temporal)
        return MODEL(x, sigma, cond)


def test_guidance_combines_two_passes_and_counts_both_in_nfe():
    noise, cond = inputs(5)
    model = Counting()
    sigmas = flow_match_sigmas(3)
    guided = sample(model, noise, sigmas, cond, guidance=Guidance(4.0, ("motion",)))
    assert guided.nfe == len(model.calls) == 6
    assert sorted(model.calls) == [False] * 3 + [True] * 3
    # One step by hand: v = v_u + s (v_c - v_u), then Euler.
    sigma = sigmas[0].expand(1)
    v_c, v_u = MODEL(noise, sigma, cond), MODEL(noise, sigma, cond.without(("motion",)))
    one = sample(MODEL, noise, sigmas[:2], cond, guidance=Guidance(4.0, ("motion",))).latents
    torch.testing.assert_close(one, noise + (sigmas[1] - sigmas[0]) * (v_u + 4.0 * (v_c - v_u)))


def test_trace_records_every_step_window_and_branch():
    noise, cond = inputs(10)
    result = sample(
        MODEL, noise, flow_match_sigmas(4), cond, windowing=Sliding(window=6, overlap=2)
    )
    assert len(result.trace) == 4 * 2 == result.nfe
    assert [r.step for r in result.trace] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(r.action == "compute" and r.seconds >= 0 for r in result.trace)
    assert result.trace[0].sigma == pytest.approx(1.0)


class Linear(torch.nn.Module):
    """v = A x: flow x(sigma) = expm(A (sigma - 1)) x(1)."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x, sigma, cond):
        return torch.einsum("ij,bjthw->bithw", self.a, x)


def test_euler_converges_to_closed_form_flow_at_first_order():
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)
    x0 = torch.tensor([1.0, 0.5], dtype=torch.float64).view(1, 2, 1, 1, 1)
    exact = torch.linalg.matrix_exp(-a) @ x0.view(2)
    steps = [8, 16, 32, 64, 128]
    errors = []
    for n in steps:
        sigmas = torch.linspace(1, 0, n + 1, dtype=torch.float64)
        out = sample(Linear(a), x0, sigmas).latents.view(2)
        errors.append((out - exact).norm().item())
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert math.isclose(slope, -1.0, abs_tol=0.1), (slope, errors)


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: sample(MODEL, torch.zeros(3, 4, 4), flow_match_sigmas(3)), "noise"),
        (lambda: sample(MODEL, inputs(3)[0], torch.tensor([1.0, float("nan"), 0.0])), "NaN"),
        (lambda: sample(MODEL, inputs(3)[0], torch.tensor([1.0])), "sigmas"),
        (lambda: steppers.get("eular"), "did you mean 'euler'"),
        (lambda: settings.get("slidng"), "did you mean 'sliding'"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_callback_sees_every_step_and_the_final_latent():
    noise, cond = inputs(10)
    seen = []
    out = sample(
        MODEL,
        noise,
        flow_match_sigmas(4),
        cond,
        windowing=Sliding(window=6, overlap=2),
        guidance=Guidance(2.0, ("motion",)),
        callback=seen.append,
    )
    assert [end.step for end in seen] == [0, 1, 2, 3]
    assert all(sorted(end.velocities) == [(0, 6), (4, 10)] for end in seen)
    torch.testing.assert_close(seen[-1].x, out.latents, rtol=0, atol=0)
    # Guided velocities, not the conditional pass: one Euler step by hand from step 0's.
    sigmas = flow_match_sigmas(4)
    first = sample(MODEL, noise, sigmas[:2], cond, guidance=Guidance(2.0, ("motion",)))
    v = seen[0].velocities[(0, 6)]
    by_hand = noise[:, :, :6] + (sigmas[1] - sigmas[0]) * v
    torch.testing.assert_close(first.latents[:, :, :4], by_hand[:, :, :4])


def test_guidance_interval_guides_only_the_steps_inside_it():
    noise, cond = inputs(5)
    sigmas = flow_match_sigmas(6, shift=3.0)
    plain = sample(MODEL, noise, sigmas, cond, guidance=Guidance(3.0, ("motion",)))
    everywhere = sample(
        MODEL, noise, sigmas, cond, guidance=Guidance(3.0, ("motion",), interval=(0.0, 1.0))
    )
    nowhere = sample(
        MODEL, noise, sigmas, cond, guidance=Guidance(3.0, ("motion",), interval=(2.0, 3.0))
    )
    unguided = sample(MODEL, noise, sigmas, cond)
    assert torch.equal(everywhere.latents, plain.latents) and everywhere.nfe == 12
    assert torch.equal(nowhere.latents, unguided.latents) and nowhere.nfe == 6
    low = float(sigmas[3])
    partial = sample(
        MODEL, noise, sigmas, cond, guidance=Guidance(3.0, ("motion",), interval=(0.0, low))
    )
    guided_steps = [r.step for r in partial.trace if r.branch == "uncond"]
    assert guided_steps == [3, 4, 5] and partial.nfe == 9
    assert not torch.equal(partial.latents, plain.latents)


@pytest.mark.parametrize("interval", [(0.5, 0.5), (0.7, 0.2), (-0.1, 0.5), (0.1,)])
def test_guidance_interval_must_be_an_ordered_sigma_range(interval):
    with pytest.raises(ValueError, match="interval"):
        Guidance(3.0, interval=interval)


def pass_flops(model, x, cond):
    """FLOPs of one full pass, counted outside sampling."""
    return count_flops(model, x, torch.tensor([0.5]), cond)[1]


def test_counted_flops_are_every_guidance_branch_full_passes():
    noise, cond = inputs(5)
    guidance = Guidance(4.0, ("motion",))
    steps = 3
    result = sample(
        MODEL, noise, flow_match_sigmas(steps), cond, guidance=guidance, count_flops=True
    )
    per_branch = {
        "cond": pass_flops(MODEL, noise, cond),
        "uncond": pass_flops(MODEL, noise, cond.without(("motion",))),
    }
    # The unconditional branch skips the motion embedding: the two branches cost differently.
    assert per_branch["cond"] > per_branch["uncond"]
    assert [r.flops for r in result.trace] == [per_branch[r.branch] for r in result.trace]
    assert result.flops == steps * sum(per_branch.values())
    uncounted = sample(MODEL, noise, flow_match_sigmas(steps), cond, guidance=guidance)
    assert uncounted.flops is None and all(r.flops is None for r in uncounted.trace)
    torch.testing.assert_close(uncounted.latents, result.latents, rtol=0, atol=0)


def test_first_block_cache_flops_exceed_full_passes_by_its_first_block_work():
    noise, cond = inputs(5)
    sigma = torch.tensor([0.5])
    result = sample(
        MODEL,
        noise,
        flow_match_sigmas(8),
        cond,
        stepper=FirstBlockCache(threshold=10.0),
        count_flops=True,
    )
    reuses = result.actions.get("reuse", 0)
    assert reuses > 0 and result.nfe > 0
    with FlopCounter() as partial:  # what a reuse runs: embedding, block 0 and the head
        h, ctx = MODEL.embed(noise, sigma, cond)
        MODEL.head(MODEL.blocks[0](h, ctx), ctx)
    assert partial.total > 0
    assert result.flops == result.nfe * pass_flops(MODEL, noise, cond) + reuses * partial.total


@given(
    frames=st.integers(2, 12),
    window=st.integers(1, 8),
    overlap=st.integers(0, 7),
    shift=st.integers(0, 3),
)
def test_windowed_flops_are_each_windows_passes_overlap_included(frames, window, overlap, shift):
    noise, cond = inputs(frames, seed=2)
    windowing = Sliding(window=window, overlap=min(overlap, window - 1), shift=shift)
    steps = 3
    result = sample(
        MODEL, noise, flow_match_sigmas(steps), cond, windowing=windowing, count_flops=True
    )
    expected, covered = 0, 0
    for step in range(steps):
        for start, stop in windowing.windows(frames, step):
            expected += pass_flops(MODEL, noise[:, :, start:stop], cond.window(start, stop))
            covered += stop - start
    assert result.flops == expected
    # Overlapping frames are computed once per window that holds them, and each window pays
    # its own embedding: several windows cost more than one pass over the whole video.
    full = sample(MODEL, noise, flow_match_sigmas(steps), cond, count_flops=True).flops
    several = any(len(windowing.windows(frames, step)) > 1 for step in range(steps))
    assert result.flops > full if several else result.flops == full
    assert covered >= steps * frames


class _CostFollowsSigma(torch.nn.Module):
    """Its pass runs more products at higher sigma, yet it declares that its cost follows shapes:
    a false declaration, so that what sampling does with a declared model shows in the count."""

    flops_follow_shapes = True

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.eye(4))

    def forward(self, x, sigma, cond):
        h = x.reshape(-1, 4)
        for _ in range(1 + round(float(sigma[0]) * 3)):
            h = h @ self.weight
        return torch.zeros_like(x)


def test_counted_sampling_replays_a_declared_models_first_pass_of_each_shape():
    model = _CostFollowsSigma()
    noise, cond = inputs(2)
    steps = 4
    first = 2 * noise.numel() * 4 * 4  # the pass at sigma = 1: 4 products of [N, 4] @ [4, 4]
    replayed = sample(model, noise, flow_match_sigmas(steps), cond, count_flops=True)
    assert [r.flops for r in replayed.trace] == [first] * steps
    model.flops_follow_shapes = False  # taken back: each pass is counted as it ran
    counted = sample(model, noise, flow_match_sigmas(steps), cond, count_flops=True)
    assert counted.flops < replayed.flops and counted.trace[0].flops == first
