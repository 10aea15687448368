"""FlashPortrait on diffusers' Wan I2V: the NFEB processor is the reference model's NFEB, the released files load completely."""

import pytest
import torch
import wan_models  # noqa: F401  (skips without diffusers)
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor

from flashbench.models.flashportrait.transformer import (
    CONFIGS,
    FEATURE_DIM,
    NFEB_VARIANTS,
    PORTRAIT,
    FlashPortraitDenoiser,
    NFEBProcessor,
    PortraitEncoder,
    build_flashportrait,
    latent_frame_tokens,
    nfeb_combine,
    portrait_cond,
    wan_i2v_14b_720p,
    window_portrait_tokens,
)
from flashbench.models.flashportrait.weights import load_portrait_encoder, load_transformer
from reference_model import dit

DIM, HEADS, WIDTH = 16, 2, 12
TINY = CONFIGS["tiny"]()
TINY_ENCODER = TINY.encoder


def randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- NFEB ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", NFEB_VARIANTS)
def test_nfeb_statistics_do_not_care_about_tokens_flattened_over_frames(variant):
    z_img, z_p = randn(0, 2, 3, 5, DIM), 3 * randn(1, 2, 3, 5, DIM) + 1
    expected = nfeb_combine(z_img, z_p, variant)
    # The Wan processor sees tokens flattened over frames, the reference DiT per frame.
    flat = nfeb_combine(z_img.flatten(1, 2), z_p.flatten(1, 2), variant)
    torch.testing.assert_close(flat, expected.flatten(1, 2))


def test_nfeb_scale_zero_is_the_null_expression():
    z_img, z_p = randn(0, 2, 7, DIM), randn(1, 2, 7, DIM)
    for variant in NFEB_VARIANTS:
        assert torch.equal(nfeb_combine(z_img, z_p, variant, scale=0.0), z_img)


def cross_attention(processor) -> WanAttention:
    torch.manual_seed(3)
    attn = WanAttention(
        dim=DIM,
        heads=HEADS,
        dim_head=DIM // HEADS,
        eps=1e-6,
        added_kv_proj_dim=DIM,
        cross_attention_dim_head=DIM // HEADS,
        processor=processor,
    )
    with torch.no_grad():
        for norm in (attn.norm_q, attn.norm_k, attn.norm_added_k):
            norm.weight.uniform_(0.5, 1.5)
    return attn


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_nfeb_processor_equals_reference_nfeb_on_the_same_projections(variant):
    """Projections by hand, then the reference model's attention and ``nfeb_combine``: the processor's output."""
    frames, tokens_per_frame, text_tokens = 3, 4, 5
    processor = NFEBProcessor(DIM, variant, WIDTH, text_tokens)
    attn = cross_attention(processor)
    hidden = randn(0, 2, frames * tokens_per_frame, DIM)
    context = randn(1, 2, 7 + text_tokens, DIM)  # 7 image tokens, then the text
    portrait = randn(2, 2, frames, 9, WIDTH)
    with torch.no_grad(), processor.expression(portrait):
        got = attn(hidden, context)

        image, text = context[:, :7], context[:, 7:]
        q = attn.norm_q(attn.to_q(hidden))
        z_text = dit.attention(q, attn.norm_k(attn.to_k(text)), attn.to_v(text), HEADS)
        z_img = dit.attention(
            q, attn.norm_added_k(attn.add_k_proj(image)), attn.add_v_proj(image), HEADS
        )
        # The reference's [B, T, N, D] layout: each latent frame attends to its own tokens.
        q_frames = q.reshape(2, frames, tokens_per_frame, DIM)
        z_p = dit.attention(
            q_frames, processor.emo_k_proj(portrait), processor.emo_v_proj(portrait), HEADS
        )
        z_text, z_img = (z.reshape(2, frames, tokens_per_frame, DIM) for z in (z_text, z_img))
        if variant == "code":
            z = dit.nfeb_combine(z_text + z_img, z_p, "code")
        else:
            z = z_text + dit.nfeb_combine(z_img, z_p, "paper")
        expected = attn.to_out[0](z.flatten(1, 2))
    torch.testing.assert_close(got, expected)


def test_nfeb_processor_without_portrait_equals_diffusers_wan_processor():
    processor = NFEBProcessor(DIM, "paper", WIDTH, text_tokens=512)
    hidden, context = randn(0, 2, 6, DIM), randn(1, 2, 3 + 512, DIM)
    with torch.no_grad():
        got = cross_attention(processor)(hidden, context)
        expected = cross_attention(WanAttnProcessor())(hidden, context)
    torch.testing.assert_close(got, expected)


def test_latent_frame_tokens_groups_as_the_released_pipeline():
    # 9 video frames of 2 tokens, token value = its index + 1 (0 marks padding).
    tokens = torch.arange(1, 19, dtype=torch.float32)[None, :, None]
    groups = latent_frame_tokens(tokens, video_frames=9)[0, :, :, 0]
    assert groups.shape == (3, 9)
    assert groups[0].tolist() == [0] * 7 + [1, 2]  # frame 0 only, zeros in front
    assert groups[1].tolist() == list(range(2, 11))  # one token of frame 0, then frames 1-4
    assert groups[2].tolist() == list(range(10, 19))  # one token of frame 4, then frames 5-8
    with pytest.raises(ValueError, match="4k \\+ 1"):
        latent_frame_tokens(tokens[:, :16], video_frames=8)


# ---- portrait encoder --------------------------------------------------------------------


def test_portrait_encoder_makes_24_tokens_per_frame_from_that_frame_only():
    encoder = PortraitEncoder(TINY_ENCODER).eval()
    features = randn(0, 2, 3, FEATURE_DIM)
    changed = features.clone()
    changed[:, 1] += 1.0
    with torch.no_grad():
        tokens, tokens_changed = encoder(features), encoder(changed)
    assert tokens.shape == (2, 3 * 24, WIDTH)
    differs = (tokens - tokens_changed).abs().amax(dim=(0, 2)) > 0
    assert differs.tolist() == [False] * 24 + [True] * 24 + [False] * 24
    with pytest.raises(ValueError, match="554"):
        encoder(features[..., :100])


# ---- released files ----------------------------------------------------------------------


def released_transformer_keys(layers: int) -> list[str]:
    """The original Wan I2V layout with FlashPortrait's NFEB projections, written out by hand."""
    linear = ("weight", "bias")
    keys = [f"patch_embedding.{p}" for p in linear]
    for module in ("text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2"):
        keys += [f"{module}.{p}" for p in linear]
    keys += [f"time_projection.1.{p}" for p in linear]
    keys += [f"img_emb.proj.{i}.{p}" for i in (0, 1, 3, 4) for p in linear]
    keys += ["head.head.weight", "head.head.bias", "head.modulation"]
    for i in range(layers):
        block = f"blocks.{i}"
        keys.append(f"{block}.modulation")
        for name in ("q", "k", "v", "o"):
            keys += [f"{block}.self_attn.{name}.{p}" for p in linear]
        for name in ("q", "k", "v", "o", "k_img", "v_img"):
            keys += [f"{block}.cross_attn.{name}.{p}" for p in linear]
        keys += [f"{block}.self_attn.norm_q.weight", f"{block}.self_attn.norm_k.weight"]
        keys += [f"{block}.cross_attn.norm_{n}.weight" for n in ("q", "k", "k_img")]
        keys += [f"{block}.cross_attn.emo_k_proj.weight", f"{block}.cross_attn.emo_v_proj.weight"]
        keys += [f"{block}.norm3.{p}" for p in linear]
        keys += [f"{block}.ffn.{j}.{p}" for j in (0, 2) for p in linear]
    return keys


def released_transformer(transformer) -> dict[str, torch.Tensor]:
    """Random tensors under the released names, shaped as the mapped model parameters."""
    from flashbench.models.flashportrait.weights import diffusers_key

    shapes = {k: v.shape for k, v in transformer.state_dict().items()}
    return {
        key: randn(i, *shapes[diffusers_key(key)])
        for i, key in enumerate(released_transformer_keys(TINY.layers))
    }


def test_released_transformer_fills_every_model_key_from_every_released_key():
    transformer, _ = build_flashportrait(TINY, "code")
    released = released_transformer(transformer)
    assert len(released) == len(transformer.state_dict())
    load_transformer(transformer, {"state_dict": released})
    block = transformer.blocks[1]
    pairs = {
        "blocks.1.cross_attn.k_img.weight": block.attn2.add_k_proj.weight,
        "blocks.1.cross_attn.norm_k_img.weight": block.attn2.norm_added_k.weight,
        "blocks.1.cross_attn.emo_v_proj.weight": block.attn2.processor.emo_v_proj.weight,
        "blocks.1.norm3.bias": block.norm2.bias,
        "blocks.1.self_attn.o.weight": block.attn1.to_out[0].weight,
        "blocks.1.ffn.0.weight": block.ffn.net[0].proj.weight,
        "blocks.1.modulation": block.scale_shift_table,
        "img_emb.proj.3.weight": transformer.condition_embedder.image_embedder.ff.net[2].weight,
        "time_projection.1.bias": transformer.condition_embedder.time_proj.bias,
        "head.modulation": transformer.scale_shift_table,
    }
    for key, parameter in pairs.items():
        assert torch.equal(parameter, released[key]), key
    # Assigned, not copied: every released tensor is the storage of exactly one model key.
    loaded = sorted(v.data_ptr() for v in transformer.state_dict().values())
    assert loaded == sorted(v.data_ptr() for v in released.values())


def test_released_transformer_with_missing_or_unknown_keys_is_refused_by_name():
    transformer, _ = build_flashportrait(TINY, "code")
    released = released_transformer(transformer)
    del released["blocks.0.cross_attn.emo_k_proj.weight"]
    with pytest.raises(ValueError, match=r"missing .*blocks.0.attn2.processor.emo_k_proj.weight"):
        load_transformer(transformer, released)
    released = released_transformer(transformer)
    released["blocks.0.cross_attn.alpha"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"blocks\.0\.cross_attn\.alpha"):
        load_transformer(transformer, released)
    released = released_transformer(transformer)
    released["head.head.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"wrong shape .*proj_out.bias"):
        load_transformer(transformer, released)


def test_released_portrait_encoder_loads_under_its_own_names():
    _, encoder = build_flashportrait(TINY, "code")
    state = {k: randn(i, *v.shape) for i, (k, v) in enumerate(encoder.state_dict().items())}
    assert "mouth_proj_model.layers.1.0.to_kv.weight" in state
    assert "proj_model.headpose_proj.weight" in state
    load_portrait_encoder(encoder, state)
    assert torch.equal(encoder.emo_proj_model.latents, state["emo_proj_model.latents"])
    del state["emo_proj_model.latents"]
    with pytest.raises(ValueError, match=r"missing .*emo_proj_model.latents"):
        load_portrait_encoder(encoder, state)


def test_full_configuration_builds_on_meta_without_allocating():
    config = wan_i2v_14b_720p()
    transformer, encoder = build_flashportrait(config, "paper", device="meta")
    assert all(p.is_meta for p in transformer.parameters())
    assert all(p.is_meta for p in encoder.parameters())
    assert (config.dim, config.layers, config.heads, config.ffn_dim) == (5120, 40, 40, 13824)
    assert len(transformer.blocks) == 40
    assert transformer.blocks[0].ffn.net[0].proj.weight.shape == (13824, 5120)
    assert transformer.blocks[0].attn2.processor.emo_k_proj.weight.shape == (5120, 2048)
    assert transformer.blocks[0].attn2.heads == 40
    assert encoder(torch.zeros(1, 2, FEATURE_DIM, device="meta")).shape == (1, 48, 2048)


# ---- denoiser ----------------------------------------------------------------------------


def tiny_denoiser(variant: str = "paper") -> FlashPortraitDenoiser:
    transformer, _ = build_flashportrait(TINY, variant)
    with torch.no_grad():
        for block in transformer.blocks:
            block.attn2.processor.emo_k_proj.weight.normal_()
            block.attn2.processor.emo_v_proj.weight.normal_()
    return FlashPortraitDenoiser(transformer)


STATIC = {"prompt_embeds": randn(1, 1, 5, 12), "image_embeds": randn(2, 1, 7, 8)}


def test_denoiser_follows_portrait_tokens_and_dropping_them_is_the_null_expression():
    model = tiny_denoiser()
    x = randn(0, 1, 4, 3, 4, 4)
    condition = randn(3, 1, 8, 3, 4, 4)
    portrait = randn(4, 1, 9, 2, WIDTH)  # 9 video frames -> 3 latent frames
    sigma = torch.tensor([0.7])

    def velocity(tokens):
        with torch.no_grad():
            return model(x, sigma, portrait_cond(STATIC, tokens, condition))

    with_portrait = velocity(portrait)
    other_portrait = velocity(portrait.flip(1))
    dropped = velocity(None)
    assert not torch.allclose(with_portrait, other_portrait)
    assert not torch.allclose(with_portrait, dropped)
    cond = portrait_cond(STATIC, portrait, condition)
    assert torch.equal(velocity(portrait), model(x, sigma, cond))
    with torch.no_grad():
        assert torch.equal(model(x, sigma, cond.without((PORTRAIT,))), dropped)
    # A zero value projection makes the portrait branch zero: "add" is then plain Wan.
    add, _ = build_flashportrait(TINY, "add")
    add.load_state_dict(model.transformer.state_dict())
    with torch.no_grad():
        for block in add.blocks:
            block.attn2.processor.emo_v_proj.weight.zero_()
        plain = FlashPortraitDenoiser(add)(x, sigma, portrait_cond(STATIC, None, condition))
        zeroed = FlashPortraitDenoiser(add)(x, sigma, portrait_cond(STATIC, portrait, condition))
    torch.testing.assert_close(zeroed, plain)


@pytest.mark.parametrize("start", [0, 1, 3])
def test_a_window_is_the_released_pipelines_window_a_video_of_its_own_from_the_reference(start):
    """Latent frames [s, s + 3) of a 6-latent-frame case see video frames 4s .. 4(s + 2) and the reference first."""
    model = tiny_denoiser()
    tokens = randn(5, 1, 21, 2, WIDTH)  # 21 video frames -> 6 latent frames
    condition = randn(6, 1, 8, 6, 4, 4)
    x, sigma = randn(7, 1, 4, 3, 4, 4), torch.tensor([0.4])
    window = portrait_cond(STATIC, tokens, condition).window(start, start + 3)
    own = portrait_cond(STATIC, tokens[:, 4 * start : 4 * (start + 2) + 1], condition[:, :, :3])
    with torch.no_grad():
        assert torch.equal(model(x, sigma, window), model(x, sigma, own))
    # The same tokens grouped over the whole video are another input for later windows.
    whole = window_portrait_tokens(portrait_cond(STATIC, tokens).temporal[PORTRAIT])
    grouped = window_portrait_tokens(window.temporal[PORTRAIT])
    assert torch.equal(grouped[:, 1:], whole[:, start + 1 : start + 3])
    assert torch.equal(grouped[:, 0], whole[:, 0]) == (start == 0)


def test_portrait_cond_refuses_token_frames_that_are_not_4k_plus_1():
    with pytest.raises(ValueError, match="4k \\+ 1"):
        portrait_cond(STATIC, randn(0, 1, 8, 2, WIDTH))


# ---- registered model --------------------------------------------------------------------


def test_flashportrait_model_without_released_files_names_them_and_where_to_put_them(tmp_path):
    from flashbench.models.registry import models

    (tmp_path / "portrait_encoder.pt").write_bytes(b"")
    with pytest.raises(ValueError) as error:
        models.build("flashportrait", weights=str(tmp_path))
    message = str(error.value)
    assert message.startswith(
        "FlashPortrait's released files transformer.pt, pd_fpg.pth, face_det.onnx, "
        "face_landmark.onnx are missing"
    )
    assert str(tmp_path) in message and "nothing is downloaded" in message
