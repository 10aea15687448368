"""The portrait DiT: shapes and protocol per config, NFEB formulas, conditioning semantics."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flashbench.denoiser import Cond, is_layered, run_layers
from flashbench.flops import count_flops
from flashbench.sampling import Guidance, sample
from flashbench.schedule import flow_match_sigmas
from reference_model.dit import (
    CONFIGS,
    NFEB_VARIANTS,
    NormalizedExpressionBlock,
    build_model,
    is_expression_branch,
    make_cond,
    nfeb_combine,
    reset_expression_branch,
)


def _inputs(model, batch=2, frames=3, seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    s = cfg.latent_size
    x = torch.randn(batch, cfg.latent_channels, frames, s, s, generator=g)
    ref = torch.randn(batch, cfg.latent_channels, s, s, generator=g)
    expr = torch.randn(batch, frames * cfg.frames_per_latent, cfg.expr_dim, generator=g)
    return x, torch.rand(batch, generator=g), make_cond(ref, expr, cfg.frames_per_latent)


def _randomise(model, seed=0):
    # Zero-initialised gates and heads make a fresh model output zeros; perturb them for tests.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_config_output_shape_and_layered_protocol(name):
    model = _randomise(build_model(name)).eval()
    x, sigma, cond = _inputs(model)
    v = model(x, sigma, cond)
    assert v.shape == x.shape
    assert is_layered(model)
    h, ctx = model.embed(x, sigma, cond)
    for block in model.blocks:
        h = block(h, ctx)
    torch.testing.assert_close(model.head(h, ctx), v)
    torch.testing.assert_close(run_layers(model, x, sigma, cond), v)


def test_full_config_builds_on_meta_device_at_paper_size():
    model = build_model("full", device="meta")
    cfg = model.config
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.latent_channels, cfg.patch) == (5120, 40, 40, 16, 2)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 10e9
    x = torch.empty(1, 16, 2, cfg.latent_size, cfg.latent_size, device="meta")
    ref = torch.empty(1, 16, cfg.latent_size, cfg.latent_size, device="meta")
    expr = torch.empty(1, 2 * cfg.frames_per_latent, cfg.expr_dim, device="meta")
    cond = make_cond(ref, expr, cfg.frames_per_latent)
    cond = Cond(
        static=cond.static, temporal={"expression": expr}, frames_per_latent=cfg.frames_per_latent
    )
    assert model(x, torch.empty(1, device="meta"), cond).shape == x.shape


def test_configs_are_small_factories():
    assert set(CONFIGS) == {"tiny", "small", "full"}
    assert CONFIGS["small"](variant="code").variant == "code"
    with pytest.raises(ValueError, match="variant"):
        CONFIGS["tiny"](variant="bogus")
    with pytest.raises(ValueError, match="config"):
        build_model("huge")


# ------------------------------------------------------------------------------------ NFEB


def _hand_nfeb(z_img, z_p, variant, eps=1e-5):
    """The variants' formulas written out token by token."""
    out = torch.empty_like(z_img)
    b, t, n, d = z_img.shape
    for i in range(b):
        flat_p, flat_i = z_p[i].reshape(-1), z_img[i].reshape(-1)
        for j in range(t):
            for k in range(n):
                p, im = z_p[i, j, k], z_img[i, j, k]
                mp, sp = p.sum() / d, ((p - p.sum() / d) ** 2).sum().div(d - 1).sqrt()
                mi, si = im.sum() / d, ((im - im.sum() / d) ** 2).sum().div(d - 1).sqrt()
                if variant == "paper":
                    bar = (p - mp) / (sp + eps) * si + mi
                elif variant == "pure_norm":
                    bar = (p - mp) / (sp + eps)
                elif variant == "center":
                    bar = p - mp
                elif variant == "add":
                    bar = p
                else:  # code: one scalar mean/std per sample over all tokens and channels
                    bar = (p - flat_p.mean()) * flat_i.std() / (flat_p.std() + eps) + flat_i.mean()
                out[i, j, k] = bar + im
    return out


@pytest.mark.parametrize("variant", NFEB_VARIANTS)
def test_nfeb_variant_matches_its_formula(variant):
    g = torch.Generator().manual_seed(1)
    z_img = torch.randn(2, 2, 3, 8, generator=g) * 2 + 1
    z_p = torch.randn(2, 2, 3, 8, generator=g) * 0.3 - 0.5
    torch.testing.assert_close(nfeb_combine(z_img, z_p, variant), _hand_nfeb(z_img, z_p, variant))


@pytest.mark.parametrize("variant", NFEB_VARIANTS)
def test_nfeb_block_matches_hand_attention(variant):
    torch.manual_seed(0)
    dim, heads = 8, 2
    block = NormalizedExpressionBlock(dim, heads, variant)
    h = torch.randn(1, 2, 3, dim)  # [B, T, N, D]
    image = torch.randn(1, 5, dim)
    expr = torch.randn(1, 2, 4, dim)  # 4 expression tokens for each of the 2 frames
    ctx = {"image_tokens": image, "expression_tokens": expr}

    def attend(q, k, v):
        hd = dim // heads
        outs = []
        for head in range(heads):
            sl = slice(head * hd, (head + 1) * hd)
            w = torch.softmax(q[:, sl] @ k[:, sl].T / hd**0.5, dim=-1)
            outs.append(w @ v[:, sl])
        return torch.cat(outs, dim=-1)

    q = block.q(block.norm(h))[0]
    k_img, v_img = block.kv_img(image)[0].chunk(2, dim=-1)
    k_p, v_p = block.kv_expr(expr)[0].chunk(2, dim=-1)
    z_img = attend(q.reshape(-1, dim), k_img, v_img).reshape(1, 2, 3, dim)
    z_p = torch.stack([attend(q[t], k_p[t], v_p[t]) for t in range(2)])[None]
    expected = block.out(_hand_nfeb(z_img, z_p, variant))
    torch.testing.assert_close(block(h, ctx), expected, rtol=1e-4, atol=1e-5)


def test_paper_and_code_agree_only_when_token_statistics_are_uniform():
    g = torch.Generator().manual_seed(2)
    base_p, base_i = torch.randn(16, generator=g), torch.randn(16, generator=g) * 3 + 2
    # Every token a permutation of the same values: per-token and per-sample statistics coincide.
    perm = torch.stack([torch.randperm(16, generator=g) for _ in range(6)]).view(1, 2, 3, 16)
    z_p, z_img = base_p[perm], base_i[perm.flip(-1)]
    torch.testing.assert_close(
        nfeb_combine(z_img, z_p, "paper"), nfeb_combine(z_img, z_p, "code"), rtol=1e-3, atol=1e-3
    )
    # Tokens with their own scales: the paper re-scales per token, the code by one scalar.
    scales = torch.linspace(0.2, 3.0, 6).view(1, 2, 3, 1)
    z_p2, z_img2 = z_p * scales, z_img * scales.flip(2)
    diff = (nfeb_combine(z_img2, z_p2, "paper") - nfeb_combine(z_img2, z_p2, "code")).abs().max()
    assert diff > 0.5


@given(st.integers(0, 2), st.integers(0, 1000))
def test_each_latent_frame_sees_only_its_own_expression_tokens(frame, seed):
    torch.manual_seed(0)
    block = NormalizedExpressionBlock(8, 2, "add")
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(1, 3, 4, 8, generator=g)
    ctx = {
        "image_tokens": torch.randn(1, 4, 8, generator=g),
        "expression_tokens": torch.randn(1, 3, 2, 8, generator=g),
    }
    _, z_p = block.branches(h, ctx)
    changed = dict(ctx, expression_tokens=ctx["expression_tokens"].clone())
    changed["expression_tokens"][:, frame] += 5.0
    _, z_p2 = block.branches(h, changed)
    moved = (z_p2 - z_p).abs().amax(dim=(0, 2, 3)) > 1e-6
    assert moved.tolist() == [t == frame for t in range(3)]


# ------------------------------------------------------------------------ conditioning


def test_missing_expression_equals_dropped_expression():
    model = _randomise(build_model("tiny", variant="paper")).eval()
    x, sigma, cond = _inputs(model)
    null = model(x, sigma, cond.without(("expression",)))
    dropped = Cond(
        static={**cond.static, "expression_keep": torch.zeros(2)}, temporal=cond.temporal
    )
    torch.testing.assert_close(model(x, sigma, dropped), null)
    assert (model(x, sigma, cond) - null).abs().max() > 1e-4


@given(
    keep=st.lists(
        st.sampled_from(["pose", "eyes", "brows", "mouth"]), unique=True, min_size=1, max_size=4
    ),
    seed=st.integers(0, 2**16),
)
def test_kept_parts_alone_move_a_part_dropped_branch(keep, seed):
    model = _randomise(build_model("tiny", part_dropout=True), seed).eval()
    x, sigma, cond = _inputs(model, seed=seed)
    uncond = Guidance(2.0, keep=tuple(keep)).uncond(cond)
    v = model(x, sigma, uncond)
    start = 0
    for name, width in model.config.parts:
        expr = cond.temporal["expression"].clone()
        expr[..., start : start + width] += 3.0
        start += width
        moved = Cond(static=uncond.static, temporal={"expression": expr})
        changed = (model(x, sigma, moved) - v).abs().max() > 1e-5
        assert bool(changed) == (name in keep), name
    if set(keep) == set(model.cond_parts):
        torch.testing.assert_close(v, model(x, sigma, cond))


def test_part_dropout_per_sample_equals_keeping_those_parts():
    model = _randomise(build_model("tiny", part_dropout=True)).eval()
    x, sigma, cond = _inputs(model)
    keep = torch.tensor([[True, False, False, True], [False, True, True, False]])
    v = model(x, sigma, Cond(static={**cond.static, "part_keep": keep}, temporal=cond.temporal))
    for i, parts in enumerate([("pose", "mouth"), ("eyes", "brows")]):
        one = Cond(static={**cond.static, "keep_parts": parts}, temporal=cond.temporal)
        torch.testing.assert_close(v[i : i + 1], model(x, sigma, one)[i : i + 1])


def test_keeping_parts_needs_a_part_dropout_model_and_known_parts():
    x, sigma, cond = _inputs(build_model("tiny"))
    plain = build_model("tiny")
    assert plain.cond_parts == ()
    with pytest.raises(ValueError, match="trained without part dropout"):
        plain(x, sigma, Guidance(2.0, keep=("pose",)).uncond(cond))
    with pytest.raises(ValueError, match=r"cannot keep \['pose'\].*not trained with part dropout"):
        sample(plain, x, flow_match_sigmas(2), cond, guidance=Guidance(2.0, keep=("pose",)))
    dropout = build_model("tiny", part_dropout=True)
    assert dropout.cond_parts == ("pose", "eyes", "brows", "mouth")
    with pytest.raises(ValueError, match=r"\['eye'\] are not parts of this model"):
        dropout(x, sigma, Guidance(2.0, keep=("eye",)).uncond(cond))
    with pytest.raises(ValueError, match=r"cannot keep \['eye'\] \(it keeps some of"):
        sample(dropout, x, flow_match_sigmas(2), cond, guidance=Guidance(2.0, keep=("eye",)))
    with pytest.raises(ValueError, match="must be a tuple of part names"):
        Guidance(2.0, keep="pose")
    with pytest.raises(ValueError, match="widths sum to expr_dim"):
        build_model("tiny", expr_dim=5)


def test_guided_sampling_runs_two_branches_and_differs_from_unguided():
    model = _randomise(build_model("tiny")).eval()
    x, _, cond = _inputs(model, batch=1)
    sigmas = flow_match_sigmas(3)
    plain = sample(model, x, sigmas, cond)
    guided = sample(model, x, sigmas, cond, guidance=Guidance(4.0))
    assert guided.nfe == 2 * plain.nfe
    assert not torch.allclose(guided.latents, plain.latents)


def test_every_window_holds_the_reference_in_its_first_frame():
    model = _randomise(build_model("tiny")).eval()
    x, sigma, cond = _inputs(model, frames=4)
    # As the public code conditions every sliding window on the reference image, a window
    # that starts at frame 2 is sampled exactly like a clip of its own.
    window = model(x[:, :, 2:], sigma, cond.window(2, 4))
    as_clip = model(
        x[:, :, 2:],
        sigma,
        make_cond(cond.static["reference_latent"], cond.temporal["expression"][:, 2:]),
    )
    torch.testing.assert_close(window, as_clip, rtol=0, atol=0)
    # ...and the reference does reach it: another reference changes the window's output.
    other = make_cond(
        torch.zeros_like(cond.static["reference_latent"]), cond.temporal["expression"][:, 2:]
    )
    assert not torch.allclose(window, model(x[:, :, 2:], sigma, other))


def test_temporal_attention_sharpens_only_beyond_the_training_window():
    import math

    from reference_model.dit import temporal_logit_scale

    assert temporal_logit_scale(8, 8) == 1.0 and temporal_logit_scale(3, 8) == 1.0
    assert temporal_logit_scale(64, 8) == pytest.approx(2.0)
    assert temporal_logit_scale(50, 8) == pytest.approx(math.log(50) / math.log(8))
    state = _randomise(build_model("tiny")).state_dict()
    short, long = build_model("tiny", train_frames=4), build_model("tiny", train_frames=100)
    for model in (short, long):
        model.load_state_dict(state)
    within = _inputs(short, frames=4)
    torch.testing.assert_close(short(*within), long(*within))
    beyond = _inputs(short, frames=9)
    assert not torch.allclose(short(*beyond), long(*beyond), atol=1e-4)


def test_reset_expression_branch_renews_only_the_portrait_encoder_and_nfeb_expression_projections():
    torch.manual_seed(1)
    model = build_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    reset_expression_branch(model, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's stream goes on undisturbed
    torch.manual_seed(3)
    fresh = build_model("tiny").state_dict()
    branch = [k for k in before if is_expression_branch(k)]
    assert any(k.startswith("portrait.") for k in branch)
    assert sum(".nfeb.kv_expr." in k for k in branch) == 2 * len(model.blocks)
    for key, value in model.state_dict().items():
        if key in branch:
            assert torch.equal(value, fresh[key]), key
            if value.ndim == 2:  # random matrices; a LayerNorm's ones stay ones
                assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key


def _flops_by_hand(cfg, batch: int, frames: int, expression: bool) -> int:
    """One pass's matmul and attention FLOPs (2 per multiply-add), layer by layer from the config."""
    b, t, d, c = batch, frames, cfg.dim, cfg.latent_channels
    tokens = (cfg.latent_size // cfg.patch) ** 2  # per frame
    image_tokens = (cfg.latent_size // cfg.ref_patch) ** 2
    expression_tokens = cfg.frames_per_latent * cfg.part_tokens  # per latent frame
    rows = b * t * tokens  # the video's tokens

    def linear(n, width_in, width_out):
        return 2 * n * width_in * width_out

    def attention(sequences, queries, keys):  # QK^T and the weighted sum of V, all heads
        return 2 * 2 * sequences * queries * keys * d

    embed = linear(rows, (2 * c + 1) * cfg.patch**2, d) + linear(
        b * image_tokens, c * cfg.ref_patch**2, d
    )
    embed += 2 * linear(b, d, d)  # the time MLP
    if expression:
        features = b * t * cfg.frames_per_latent
        embed += linear(features, cfg.expr_dim, d) + linear(features, d, cfg.part_tokens * d)
    block = linear(b, d, 6 * d)  # adaLN modulation
    block += linear(rows, d, 3 * d) + attention(b * t, tokens, tokens) + linear(rows, d, d)
    block += linear(rows, d, 3 * d) + attention(b * tokens, t, t) + linear(rows, d, d)
    block += linear(rows, d, d) + linear(b * image_tokens, d, 2 * d)  # NFEB: q, image k/v
    block += attention(b, t * tokens, image_tokens) + linear(rows, d, d)  # image attention, out
    if expression:
        block += linear(b * t * expression_tokens, d, 2 * d)
        block += attention(b * t, tokens, expression_tokens)
    block += 2 * linear(rows, d, int(d * cfg.mlp_ratio))
    head = linear(b, d, 2 * d) + linear(rows, d, c * cfg.patch**2)
    return embed + cfg.depth * block + head


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("expression", [True, False])
def test_a_pass_counts_every_linear_layer_and_attention_of_the_config(name, expression):
    model = build_model(name).eval()
    x, sigma, cond = _inputs(model, batch=2, frames=3)
    cond = cond if expression else cond.without(("expression",))
    with torch.no_grad():
        _, flops = count_flops(model, x, sigma, cond)
    assert flops == _flops_by_hand(model.config, 2, 3, expression)


def test_counted_guided_sampling_gives_each_branch_its_config_count():
    # The DiT declares flops_follow_shapes: sampling counts each branch's first pass and replays
    # it; every record must still be the config's count for its branch, checked by hand.
    model = build_model("tiny").eval()
    x, _, cond = _inputs(model, batch=1, frames=3)
    steps = 4
    result = sample(
        model,
        x,
        flow_match_sigmas(steps),
        cond,
        guidance=Guidance(2.0, ("expression",)),
        count_flops=True,
    )
    by_branch = {"cond": True, "uncond": False}
    assert [r.flops for r in result.trace] == [
        _flops_by_hand(model.config, 1, 3, by_branch[r.branch]) for r in result.trace
    ]
    assert len(result.trace) == 2 * steps
