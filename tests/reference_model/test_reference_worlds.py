"""The reference model in either world: suite cases of world v2, its networks, its checks."""

import pytest
import torch

from flashbench.models.base import CaseSpec
from flashbench.suite.document import parse_suite
from reference_model.world import driving_sequence, identity_params, render_video
from reference_model.world.hidden import HELD_OUT_OFFSET
from reference_model.world_cases import hidden_seed, render_case

SELF = CaseSpec("self", "self", 10_500, 10_500, 3, 6, 64)
CROSS = CaseSpec("cross", "cross", 10_500, 10_501, 3, 6, 64)


def test_v1_cases_are_the_world_renders_they_always_were():
    reference, driving, truth = render_case(SELF)
    motion = driving_sequence(3, 6)[None]
    expected = render_video(identity_params([10_500]), motion, 64)[0].transpose(0, 1)
    assert torch.equal(truth, expected) and torch.equal(reference, expected[0])
    assert driving is truth


def test_v2_cases_put_the_same_face_and_motion_in_a_held_out_hidden_scene():
    v1_truth = render_case(SELF)[2]
    reference, driving, truth = render_case(SELF, world="v2")
    assert hidden_seed(SELF.identity, SELF.driving_seed) >= HELD_OUT_OFFSET
    assert torch.equal(reference, truth[0]) and driving is truth
    # The scene differs from v1's plain background, and moves from frame to frame.
    assert (truth - v1_truth).abs().mean() > 0.02
    assert (truth[1:] - truth[:-1]).abs().mean() > 1e-3
    again = render_case(SELF, world="v2")[2]
    assert torch.equal(truth, again)


def test_v2_cross_reenactment_drives_from_the_drivers_own_scene():
    _, driving, truth = render_case(CROSS, world="v2")
    _, own_driving, _ = render_case(CaseSpec("d", "self", 10_501, 10_501, 3, 6, 64), world="v2")
    assert torch.equal(driving, own_driving)
    assert torch.equal(truth, render_case(SELF, world="v2")[2])


def test_hidden_seeds_of_cases_are_held_out_and_distinct():
    seeds = {hidden_seed(i, d) for i in range(10_500, 10_520) for d in range(4)}
    assert len(seeds) == 80 and min(seeds) >= HELD_OUT_OFFSET


SUITE = """
[suite]
name = "v2"
version = "1"
model = "reference"
model_args = {{ world = "{world}", weights = "{weights}" }}
steps = 2
seeds = [0]

[cases]
identities = 1
lengths = [4]
resolution = 64

[metrics]
names = [{metrics}]
references = ["ground_truth", "baseline"]

[[settings]]
use = "baseline"
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from reference_model.dit import PortraitDiT, tiny
    from reference_model.pipeline import export_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("v2") / "dit_tiny.pt"
    export_weights(PortraitDiT(tiny(latent_size=16)), path, step=0)
    return path


def test_an_unknown_world_is_refused_with_the_known_ones(checkpoint):
    with pytest.raises(ValueError, match=r"world='v3' is not a world version; .*use one of v1, v2"):
        parse_suite(SUITE.format(world="v3", weights=checkpoint, metrics='"psnr"'), "v.toml")


def test_world_v2_runs_on_its_own_networks(checkpoint, tmp_path):
    from reference_model.pipeline import load_reference
    from reference_model.shipped_weights import WEIGHTS_V2, read_manifest

    model = load_reference(weights=str(checkpoint), world="v2")
    v2 = read_manifest(WEIGHTS_V2)
    assert model.weights()["autoencoder.pt"] == v2["autoencoder.pt"]["sha256"]
    assert model.identity_calibration().other > 0.5
    inputs = model.prepare(SELF)
    assert inputs.latent_shape == (1, 4, 6, 16, 16)
    assert torch.equal(inputs.ground_truth, render_case(SELF, world="v2")[2])
    # No pixel of v2's drifting, flickering scene is still: the background mask is empty.
    assert not model.background_mask(SELF).any()


def test_the_shipped_v2_dit_and_its_calibrations_belong_together():
    import json

    from flashbench.steppers.calibration import check_calibration, load_calibration
    from reference_model.pipeline import load_reference
    from reference_model.shipped_weights import WEIGHTS_V2

    model = load_reference(world="v2")  # the shipped v2 DiT, sha256-checked against dit.json
    record = json.loads((WEIGHTS_V2 / "dit.json").read_text())
    assert record["world"] == "v2" and model.weights()["dit_small.pt"] == record["sha256"]
    # The regime suite's TeaCache and MagCache read these: a retrained DiT must be recalibrated.
    for kind in ("teacache", "magcache"):
        check_calibration(load_calibration(WEIGHTS_V2 / f"{kind}.json", kind), model.denoiser)
