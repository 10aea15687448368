import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flashbench.denoiser import Cond
from flashbench.guidance import APG, CFG, RULES, CFGZeroStar, parse_rule
from flashbench.models.toy import ToyDenoiser
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from flashbench.windowing import Sliding

MODEL = ToyDenoiser(channels=3, dim=16, depth=2, temporal=True, motion_dim=2).eval()
SCALES = st.floats(1.0, 6.0)
SIGMAS = st.floats(0.05, 1.0)


def branches(seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, 4, 5, 5)
    return tuple(torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))


def combine(rule, v_cond, v_uncond, x, sigma, scale, step=3, state=None):
    return rule.combine(
        v_cond,
        v_uncond,
        x=x,
        sigma=sigma,
        step=step,
        scale=scale,
        state={} if state is None else state,
    )


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def neutral(name: str):
    """Each rule with the options under which agreeing branches must leave the velocity alone."""
    return CFGZeroStar(zero_init_steps=0) if name == "cfg_zero_star" else RULES[name]()


@pytest.mark.parametrize("name", sorted(RULES))
@given(seed=st.integers(0, 10_000), sigma=SIGMAS, scale=SCALES)
def test_every_rule_leaves_the_velocity_alone_when_the_branches_agree(name, seed, sigma, scale):
    v, _, x = branches(seed)
    out = combine(neutral(name), v, v.clone(), x, sigma, scale)
    torch.testing.assert_close(out, v)


@given(seed=st.integers(0, 10_000), sigma=SIGMAS, scale=SCALES)
def test_apg_with_eta_one_and_no_cap_or_momentum_is_plain_cfg(seed, sigma, scale):
    v_cond, v_uncond, x = branches(seed)
    apg = combine(APG(eta=1.0), v_cond, v_uncond, x, sigma, scale)
    torch.testing.assert_close(apg, combine(CFG(), v_cond, v_uncond, x, sigma, scale))


@given(seed=st.integers(0, 10_000), sigma=SIGMAS, scale=st.floats(1.5, 6.0))
def test_apg_eta_zero_moves_the_denoised_prediction_orthogonally_to_itself(seed, sigma, scale):
    v_cond, v_uncond, x = branches(seed)
    guided = combine(APG(eta=0.0), v_cond, v_uncond, x, sigma, scale)
    denoised_cond, denoised = x - sigma * v_cond, x - sigma * guided
    cosine = dot(denoised - denoised_cond, denoised_cond) / (
        (denoised - denoised_cond).flatten(1).norm(dim=1) * denoised_cond.flatten(1).norm(dim=1)
    )
    assert cosine.abs().max() < 1e-9


@given(
    seed=st.integers(0, 10_000), sigma=SIGMAS, scale=st.floats(1.5, 6.0), cap=st.floats(0.01, 2.0)
)
def test_apg_caps_the_guidance_update_of_the_denoised_prediction(seed, sigma, scale, cap):
    v_cond, v_uncond, x = branches(seed)
    guided = combine(APG(eta=1.0, norm_threshold=cap), v_cond, v_uncond, x, sigma, scale)
    change = (sigma * (v_cond - guided)).flatten(1).norm(dim=1)
    assert (change <= (scale - 1.0) * cap * (1 + 1e-9)).all()


def test_apg_momentum_carries_the_update_across_steps_in_its_state():
    v_cond, v_uncond, x = branches(0)
    rule, state = APG(eta=1.0, momentum=-0.5), {}
    first = combine(rule, v_cond, v_uncond, x, 0.5, 3.0, state=state)
    torch.testing.assert_close(first, combine(CFG(), v_cond, v_uncond, x, 0.5, 3.0))
    second = combine(rule, v_cond, v_uncond, x, 0.5, 3.0, state=state)
    # Same branches again: the running update is 1 - 0.5 = 0.5 of CFG's.
    torch.testing.assert_close(second, combine(CFG(), v_cond, v_uncond, x, 0.5, 2.0))


@given(seed=st.integers(0, 10_000), sigma=SIGMAS, scale=SCALES, factor=st.floats(0.2, 5.0))
def test_cfg_zero_star_ignores_an_unconditional_velocity_that_only_differs_in_scale(
    seed, sigma, scale, factor
):
    v_cond, _, x = branches(seed)
    out = combine(CFGZeroStar(zero_init_steps=0), v_cond, factor * v_cond, x, sigma, scale)
    torch.testing.assert_close(out, v_cond)


def test_cfg_zero_star_zeroes_the_first_steps_so_sample_keeps_the_noise_there():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, 6, 4, 4, generator=g)
    cond = Cond(temporal={"motion": torch.randn(1, 6, 2, generator=g)})
    seen = []
    guidance = Guidance(3.0, ("motion",), rule=CFGZeroStar(zero_init_steps=2))
    sample(MODEL, noise, flow_match_sigmas(5), cond, guidance=guidance, callback=seen.append)
    assert torch.equal(seen[1].x, noise)
    assert not torch.equal(seen[2].x, noise)


@pytest.mark.parametrize("rule", [APG(eta=0.0, norm_threshold=1.0, momentum=-0.5), CFGZeroStar()])
def test_stateful_rules_keep_one_state_per_window_and_same_inputs_give_same_bits(rule):
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 3, 10, 4, 4, generator=g)
    cond = Cond(temporal={"motion": torch.randn(1, 10, 2, generator=g)})
    guidance = Guidance(3.0, ("motion",), rule=rule)
    windowing = Sliding(6, 2)

    def run() -> torch.Tensor:
        sigmas = flow_match_sigmas(4)
        return sample(MODEL, noise, sigmas, cond, windowing=windowing, guidance=guidance).latents

    first = run()
    assert torch.isfinite(first).all() and torch.equal(first, run())
    plain = sample(
        MODEL, noise, flow_match_sigmas(4), cond, windowing=Sliding(6, 2),
        guidance=Guidance(3.0, ("motion",)),
    ).latents  # fmt: skip
    assert not torch.equal(first, plain)


def test_parse_rule_builds_each_rule_and_explains_bad_text():
    assert parse_rule("cfg") == CFG()
    assert parse_rule("apg:eta=0.5,norm_threshold=2") == APG(eta=0.5, norm_threshold=2.0)
    assert parse_rule("cfg_zero_star:zero_init_steps=2") == CFGZeroStar(zero_init_steps=2)
    for text, words in [
        ("apgg", "did you mean 'apg'"),
        ("apg:alpha=1", "KEY one of eta, norm_threshold, momentum"),
        ("apg:eta=high", "not a number"),
        ("cfg:eta=1", "cfg takes no options"),
        ("apg:norm_threshold=-1", "must be >= 0"),
        ("cfg_zero_star:zero_init_steps=1.5", "not a number"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_rule(text)


def test_guidance_refuses_a_rule_without_combine():
    with pytest.raises(ValueError, match=r"flashbench\.guidance\.RULES"):
        Guidance(2.0, rule="apg")
