"""The second testbed's data and training entry point: world v2 clips with hidden seeds."""

import json

import pytest
import torch

from reference_model.shipped_weights import WEIGHTS_DIR
from reference_model.testbed_v2 import HELD_OUT_OFFSET, draw_clips, render_clips_v2
from reference_model.world import identity_params
from reference_model.world.versions import world


def test_v2_clips_are_reproducible_and_are_world_v2_renders_of_their_recipes():
    clips = render_clips_v2(2, 6, seed=3, references=2)
    again = render_clips_v2(2, 6, seed=3, references=2)
    for key, value in clips.items():
        assert torch.equal(value, again[key]), key
    assert clips["videos"].shape == (2, 3, 6, 64, 64) and clips["videos"].dtype == torch.uint8
    assert clips["regions"].shape == (2, 1, 6, 64, 64)
    assert clips["reference_videos"].shape == (2, 3, 2, 64, 64)
    video = world("v2").render_video(
        identity_params(clips["ids"]), clips["motion"], clips["hidden_seed"], clips["start"]
    )
    assert torch.equal(clips["videos"], (video * 255).round().to(torch.uint8))


def test_held_out_clips_draw_driving_and_hidden_seeds_from_their_own_range():
    generator = torch.Generator().manual_seed(0)
    train = draw_clips(50, 2, generator)
    held = draw_clips(50, 2, generator, split="test", held_out=True)
    assert (train["hidden_seed"] < HELD_OUT_OFFSET).all()
    assert (held["hidden_seed"] >= HELD_OUT_OFFSET).all()


def test_train_model_v2_trains_on_a_v2_pool_and_a_resume_cannot_change_the_pool(tmp_path):
    from reference_model.train_model import NORMALISATION_BUFFERS
    from reference_model.train_model_v2 import main, trained_minutes

    out = tmp_path / "run"
    common = ["--out", str(out), "--pool-frames", "10", "--clip-frames", "8", "--batch-size", "2"]
    # Any weights folder with an autoencoder serves the test; the shipped v1 one is at hand.
    main([*common, "--clips", "2", "--max-steps", "2", "--world-weights", str(WEIGHTS_DIR)])
    assert json.loads((out / "world.json").read_text())["world"] == "v2"
    assert torch.load(out / "dit_small.pt", weights_only=True)["step"] == 2
    pool = torch.load(out / "pool.pt", weights_only=True)
    assert pool["latents"].shape == (2, 4, 10, 16, 16)
    assert 0 < trained_minutes(out) < 5
    # A chunk resumes the run and ends on a checkpoint of its own.
    main([*common, "--clips", "2", "--max-steps", "3", "--chunk-minutes", "5"])
    assert torch.load(out / "dit_small.pt", weights_only=True)["step"] == 3
    with pytest.raises(SystemExit, match="holds a pool"):
        main([*common, "--clips", "3", "--max-steps", "4"])
    # A fresh directory (a new machine) goes on from the export at its step, to the same cap.
    export = tmp_path / "shipped.pt"
    (out / "dit_small.pt").replace(export)
    shipped = torch.load(export, weights_only=True)["state_dict"]
    again = ["--out", str(tmp_path / "again"), *common[2:], "--clips", "2"]
    main([*again, "--init", str(export), "--init-step", "3", "--max-steps", "5"])
    continued = torch.load(tmp_path / "again" / "dit_small.pt", weights_only=True)
    assert continued["step"] == 5  # two steps trained here, three before
    # Trained on from the export's weights (two small warmup steps), not from a fresh start; the
    # normalisation statistics are refitted to the pool.
    change = [
        (v - continued["state_dict"][k]).abs().max()
        for k, v in shipped.items()
        if k not in NORMALISATION_BUFFERS
    ]
    assert 0 < max(change) < 0.05
    with pytest.raises(SystemExit):  # nothing left to train: refused before any work
        main([*again, "--init", str(export), "--init-step", "5", "--max-steps", "5"])


def test_regime_look_helpers_low_pass_and_measure_detail():
    from reference_model.regime_v2 import high_frequency_energy, psnr_db, psnr_db_by_frame, quarter

    flat = torch.full((2, 3, 4, 16, 16), 0.5)
    checker = flat.clone()
    checker[..., ::2, ::2] = 1.0
    assert quarter(checker).shape == (2, 3, 4, 4, 4)
    assert torch.allclose(quarter(checker), torch.full((2, 3, 4, 4, 4), 0.625))
    assert float(high_frequency_energy(flat).max()) == 0.0
    assert (high_frequency_energy(checker) > 0.01).all()
    assert psnr_db(flat, flat + 0.1) == pytest.approx(20.0, abs=1e-3)
    parting = flat.clone()
    parting[:, :, 1] += 0.1
    parting[:, :, 2:] += 0.01
    assert psnr_db_by_frame(flat, parting) == pytest.approx([100.0, 20.0, 40.0, 40.0], abs=1e-3)


def test_v2_clips_rendered_by_several_processes_equal_one_process():
    one = render_clips_v2(3, 4, seed=5, chunk=1, references=1)
    two = render_clips_v2(3, 4, seed=5, chunk=1, references=1, workers=2)
    for key, value in one.items():
        assert torch.equal(value, two[key]), key
