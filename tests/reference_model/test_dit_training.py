"""Training and the shipped checkpoint: a tiny model overfits one clip; shipped weights sample deterministically."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_model.dit import build_model
from reference_model.lightning import ClipStream, PortraitModule, flow_matching_loss, generate
from reference_model.pipeline import DEFAULT_WEIGHTS, export_weights, load_reference_model


def test_tiny_model_overfits_one_clip():
    torch.manual_seed(0)
    model = build_model("tiny")
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 4, 4, 8, 8, generator=g)
    expression = torch.randn(4, 4, 7, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        # The same noise and sigmas every step: the loss can go to zero only by memorising.
        loss, _ = flow_matching_loss(
            model, latents, expression, torch.Generator().manual_seed(1), expression_drop=0.0
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_training_step_and_clip_stream_shapes():
    module = PortraitModule("tiny")
    stream = iter(ClipStream(torch.randn(3, 4, 6, 8, 8), torch.randn(3, 6, 7), 4, 2, seed=0))
    batch = next(stream)
    assert batch["latents"].shape == (2, 4, 4, 8, 8) and batch["expression"].shape == (2, 4, 7)
    loss = module.training_step(batch, 0)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert module.model.blocks[0].qkv.weight.grad is not None


def test_part_dropout_trains_the_dropped_part_embedding_only_on_clips_it_drops_parts_of():
    model = build_model("tiny", part_dropout=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised gates and head would pass no gradient back
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    latents, expression = torch.randn(8, 4, 2, 8, 8, generator=g), torch.randn(8, 2, 7, generator=g)
    loss, _ = flow_matching_loss(
        model, latents, expression, torch.Generator().manual_seed(1), part_drop=0.9
    )
    loss.backward()
    assert model.portrait.dropped.weight.grad.abs().sum() > 0
    # Without part dropout no part is marked dropped, so the embedding gets no gradient.
    model.zero_grad()
    loss, _ = flow_matching_loss(model, latents, expression, torch.Generator().manual_seed(1))
    loss.backward()
    assert (
        model.portrait.dropped.weight.grad is None
        or model.portrait.dropped.weight.grad.abs().sum() == 0
    )


def test_predict_step_samples_under_a_registered_setting():
    module = PortraitModule("tiny")
    batch = {"reference_latent": torch.randn(1, 4, 8, 8), "expression": torch.randn(1, 8, 7)}
    out = module.predict_step(batch, 0, setting="sliding", steps=2)
    assert out.shape == (1, 4, 8, 8, 8) and torch.isfinite(out).all()


def test_exported_weights_round_trip(tmp_path):
    model = build_model("tiny")
    with torch.no_grad():
        model.latent_std.fill_(2.5)
    export_weights(model, tmp_path / "m.pt", step=7)
    loaded = load_reference_model(tmp_path / "m.pt")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_rerunning_a_finished_run_leaves_its_export_alone(tmp_path):
    from reference_model.train_model import main, reached_max_steps

    out = tmp_path / "run"
    export = out / "dit_tiny.pt"
    assert not reached_max_steps(export, 10)
    export_weights(build_model("tiny"), export, step=9)
    assert not reached_max_steps(export, 10)
    assert not reached_max_steps(export, -1)  # no step cap: the time budget decides
    export_weights(build_model("tiny"), export, step=10)
    assert reached_max_steps(export, 10)
    before = export.read_bytes()
    main(["--out", str(out), "--config", "tiny", "--max-steps", "10", "--clips", "2"])
    assert export.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["dit_tiny.pt"]  # nothing rendered or trained


def test_shipped_checkpoint_loads_and_samples_deterministically_per_seed():
    assert DEFAULT_WEIGHTS.exists(), f"{DEFAULT_WEIGHTS} must ship with the repository"
    model = load_reference_model()
    assert model.config.latent_size == 16 and model.config.patch == 4
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 4, 16, 16, generator=g)
    expr = torch.randn(1, 6, model.config.expr_dim, generator=g) * model.expr_std + model.expr_mean
    a = generate(model, ref, expr, steps=4, seed=3)
    b = generate(model, ref, expr, steps=4, seed=3)
    c = generate(model, ref, expr, steps=4, seed=4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_clip_stream_reference_is_the_first_frame_or_any_frame_of_the_same_clip():
    g = torch.Generator().manual_seed(0)
    latents, expression = torch.randn(3, 4, 10, 8, 8, generator=g), torch.randn(3, 10, 7)
    first = next(iter(ClipStream(latents, expression, 4, 16, seed=0)))
    torch.testing.assert_close(first["reference"], first["latents"][:, :, 0])
    batch = next(iter(ClipStream(latents, expression, 4, 16, seed=0, reference_gap=1.0)))
    # Every reference is one of the 30 pool frames, of the clip its crop came from.
    frames = latents.transpose(1, 2).reshape(30, -1)
    for crop, ref in zip(batch["latents"], batch["reference"], strict=True):
        clip = int((frames == crop[:, 0].reshape(1, -1)).all(dim=1).nonzero()[0]) // 10
        match = (frames == ref.reshape(1, -1)).all(dim=1).nonzero()
        assert len(match) == 1 and int(match[0]) // 10 == clip
    assert not torch.equal(batch["reference"], batch["latents"][:, :, 0])


def test_clip_stream_takes_a_reference_expression_share_of_references_from_the_clips_own_renders():
    g = torch.Generator().manual_seed(0)
    latents, expression = torch.randn(3, 4, 10, 8, 8, generator=g), torch.randn(3, 10, 7)
    renders = torch.randn(3, 4, 2, 8, 8, generator=g)
    plain = next(iter(ClipStream(latents, expression, 4, 16, seed=0, reference_gap=0.5)))
    unused = ClipStream(latents, expression, 4, 16, 0, reference_gap=0.5, reference_latents=renders)
    for key, value in next(iter(unused)).items():
        torch.testing.assert_close(value, plain[key])  # a share of 0 leaves the stream as it was
    stream = ClipStream(
        latents, expression, 4, 16, 0, reference_latents=renders, reference_expression=1.0
    )
    batch = next(iter(stream))
    frames = latents.transpose(1, 2).reshape(30, -1)
    for crop, ref in zip(batch["latents"], batch["reference"], strict=True):
        clip = int((frames == crop[:, 0].reshape(1, -1)).all(dim=1).nonzero()[0]) // 10
        assert any(torch.equal(ref, renders[clip, :, r]) for r in range(2))
    with pytest.raises(ValueError, match="reference_latents"):
        ClipStream(latents, expression, 4, 16, 0, reference_expression=0.5)


def test_world_pool_references_show_the_clip_face_with_other_expressions_and_leave_clips_alone():
    from reference_model.lightning import encode_world_clips, render_world_clips

    rendered = render_world_clips(2, 3, seed=0, references=3)
    alone = render_world_clips(2, 3, seed=0, references=1)
    assert torch.equal(rendered["videos"], alone["videos"])
    assert rendered["reference_videos"].shape == (2, 3, 3, 64, 64)
    for clip in range(2):
        for r in range(3):
            ref = rendered["reference_videos"][clip, :, r, None].float()
            per_frame = (ref - rendered["videos"][clip].float()).abs().amax(dim=(0, 2, 3))
            assert per_frame.min() > 20  # no frame of the clip
    other = rendered["reference_videos"][0].float().mean(dim=(1, 2, 3))
    same = rendered["reference_videos"][1].float().mean(dim=(1, 2, 3))
    assert (other[:, None] - same[None]).abs().min() > 1  # each clip's own face (colours)
    pool = encode_world_clips(rendered, lambda v: F.avg_pool3d(v, (1, 4, 4)))
    assert pool["reference_latents"].shape == (2, 3, 3, 16, 16)


def test_clip_stream_crops_regions_with_the_latents():
    latents = torch.arange(2 * 10, dtype=torch.float32).view(2, 1, 10, 1, 1).expand(2, 4, 10, 8, 8)
    regions = latents[:, :1] / 100
    batch = next(iter(ClipStream(latents, torch.randn(2, 10, 7), 4, 8, seed=0, regions=regions)))
    torch.testing.assert_close(batch["regions"], batch["latents"][:, :1] / 100)


def test_region_weighted_velocity_loss():
    model = build_model("tiny")
    g = torch.Generator().manual_seed(0)
    latents, expression = torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 3, 7, generator=g)

    def loss(weight):
        return flow_matching_loss(
            model, latents, expression, torch.Generator().manual_seed(1), weight=weight
        )[1]["velocity"]

    # A uniform weight is the plain mean; a weight on one region is the mean over that region.
    torch.testing.assert_close(loss(torch.full((2, 1, 3, 8, 8), 3.0)), loss(None))
    region = torch.zeros(2, 1, 3, 8, 8)
    region[..., :4, :] = 1.0
    v_top = loss(region)
    assert not torch.isclose(v_top, loss(None))
    bottom = 1.0 - region
    whole = (v_top * region.sum() + loss(bottom) * bottom.sum()) / region.numel()
    torch.testing.assert_close(whole, loss(None))


def test_world_pool_carries_face_part_masks_at_latent_resolution():
    from reference_model.lightning import encode_world_clips, render_world_clips

    rendered = render_world_clips(2, 3, seed=0)
    assert rendered["regions"].shape == (2, 1, 3, 64, 64) and rendered["regions"].max() == 1
    pool = encode_world_clips(
        rendered, lambda v: F.avg_pool3d(v, (1, 4, 4))[:, :1].repeat(1, 4, 1, 1, 1)
    )
    assert pool["latents"].shape == (2, 4, 3, 16, 16) and pool["expression"].shape == (2, 3, 7)
    for key in ("regions", "eye_regions"):
        torch.testing.assert_close(pool[key], F.avg_pool3d(rendered[key].float(), (1, 4, 4)))
    assert (rendered["eye_regions"] <= rendered["regions"]).all()


def test_loss_weight_adds_the_region_and_eye_weights_on_their_masks():
    from reference_model.lightning import TrainConfig, loss_weight

    latents = torch.zeros(1, 4, 2, 3, 3)
    regions, eyes = torch.zeros(1, 1, 2, 3, 3), torch.zeros(1, 1, 2, 3, 3)
    regions[..., 0, :] = 1.0
    eyes[..., 0, 0] = 1.0
    cfg = TrainConfig(region_weight=4.0, eye_weight=10.0)
    assert loss_weight({"latents": latents}, cfg) is None
    weight = loss_weight({"latents": latents, "regions": regions, "eye_regions": eyes}, cfg)
    assert weight.shape == (1, 1, 2, 3, 3)
    assert weight[..., 0, 0].eq(15.0).all() and weight[..., 0, 1].eq(5.0).all()
    assert weight[..., 1:, :].eq(1.0).all()


def test_learning_rate_warms_up_then_holds_or_decays_to_zero():
    from reference_model.lightning import TrainConfig, lr_factor

    held, decayed = TrainConfig(warmup_steps=10), TrainConfig(warmup_steps=10, decay_steps=100)
    assert lr_factor(0, held) == 0.1 and lr_factor(9, held) == 1.0 and lr_factor(10**6, held) == 1.0
    assert lr_factor(10, decayed) == 1.0
    assert abs(lr_factor(60, decayed) - 0.5) < 1e-9
    assert lr_factor(110, decayed) == 0.0 and lr_factor(10**6, decayed) == 0.0
    cooldown = TrainConfig(warmup_steps=10, decay_steps=100, decay_start=500)
    assert lr_factor(499, cooldown) == 1.0 and lr_factor(500, cooldown) == 1.0
    assert abs(lr_factor(550, cooldown) - 0.5) < 1e-9 and lr_factor(600, cooldown) == 0.0
    # Continued from weights 520 steps in: a fresh warmup, then the decay where those steps left it.
    continued = TrainConfig(warmup_steps=10, decay_steps=100, decay_start=500, init_step=520)
    assert abs(lr_factor(0, continued) - 0.1 * lr_factor(520, cooldown)) < 1e-9
    assert lr_factor(9, continued) == lr_factor(529, cooldown)
    assert abs(lr_factor(30, continued) - 0.5) < 1e-9 and lr_factor(80, continued) == 0.0


def test_train_model_rejects_bad_shares_and_weights_before_any_work(tmp_path, capsys):
    import pytest

    from reference_model.train_model import main

    bad = [
        ("--reference-gap", "1.5"),
        ("--reference-expression", "-0.5"),
        ("--region-weight", "-1"),
        ("--eye-weight", "-2"),
        ("--expression-drop", "1"),
        ("--part-drop", "-0.1"),
        ("--part-drop", "0.95"),  # beside the default expression drop 0.1, the shares pass 1
    ]
    if not torch.cuda.is_available():
        bad.append(("--accelerator", "gpu"))
    for flag, value in bad:
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "run"), flag, value])
        assert flag in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a backbone's expression branch needs the backbone
        main(["--out", str(tmp_path / "run"), "--reset-expression-branch"])
    assert "--init" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_blink_slot_frames_renders_a_blink_richer_pool_and_a_resume_cannot_change_it(tmp_path):
    import dataclasses

    from reference_model.lightning import driving_motion
    from reference_model.train_model import check_pool_motion
    from reference_model.world import EXPRESSION_NAMES, MotionConfig

    eye_open = EXPRESSION_NAMES.index("eye_open")

    def closed_frames(config):
        motion = driving_motion(64, 48, torch.Generator().manual_seed(0), config=config)
        eye = motion[..., eye_open]
        return (eye < 0.4).float().mean()

    rich = dataclasses.replace(MotionConfig(), blink_slot_frames=16)
    assert closed_frames(rich) > 2.5 * closed_frames(MotionConfig())

    check_pool_motion(tmp_path, rich)  # a fresh directory records what it renders
    check_pool_motion(tmp_path, rich)
    with pytest.raises(SystemExit, match=r"blink_slot_frames=16.*blink_slot_frames=60"):
        check_pool_motion(tmp_path, MotionConfig())
    old = tmp_path / "old"
    old.mkdir()
    (old / "rendered.pt").touch()  # a pool rendered before the record existed: the default
    with pytest.raises(SystemExit, match="fresh --out"):
        check_pool_motion(old, rich)
    encoded = tmp_path / "encoded"
    encoded.mkdir()
    (encoded / "pool.pt").touch()  # only the encoded pool is left: it too holds the default
    with pytest.raises(SystemExit, match="fresh --out"):
        check_pool_motion(encoded, rich)
