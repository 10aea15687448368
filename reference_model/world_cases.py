"""The synthetic world as a source of suite cases for any model, at any frame size.

Models outside ``reference_model`` (the released FlashPortrait) name this module lazily, as
models are named in flashbench's registry, so that flashbench never imports reference_model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from flashbench.models.base import CaseSpec
from reference_model.world import driving_sequence, identity_params
from reference_model.world.hidden import HELD_OUT_OFFSET
from reference_model.world.versions import world as world_version

# The world's instruments (identity, expression, pose) read frames at the size they were trained on.
NATIVE_SIZE = 64


def hidden_seed(identity: int, driving_seed: int) -> int:
    """The hidden scene of a suite case in world v2: one per (identity, driving seed), all held out.

    Held out means at or above ``HELD_OUT_OFFSET``, the range no training clip draws from, so a
    suite's clips show scenes the v2 networks never saw. v1 ignores it.
    """
    return HELD_OUT_OFFSET + (identity * 1009 + driving_seed) % HELD_OUT_OFFSET


def render_case(
    case: CaseSpec, frames: int | None = None, world: str = "v1"
) -> tuple[Tensor, Tensor, Tensor]:
    """The case's reference image ``[3, R, R]``, driving video and truth ``[T, 3, R, R]`` at its resolution R.

    ``frames`` overrides the case's length (a model that generates 4k + 1 frames); the truth
    is the reference identity driven by the case's motion in its scene (``hidden_seed``), the
    driving video the driver's, in the driver's own scene; the reference image is the truth's
    first frame. ``world`` names the world version (``reference_model.world.versions``).
    """
    render = world_version(world).render_video
    count = case.frames if frames is None else frames
    motion = driving_sequence(case.driving_seed, count)[None]
    size = case.resolution

    def video(identity: int) -> Tensor:
        scene = hidden_seed(identity, case.driving_seed)
        return render(identity_params([identity]), motion, scene, 0, size)[0].transpose(0, 1)

    truth = video(case.identity)
    driving = truth if case.driving_identity == case.identity else video(case.driving_identity)
    return truth[0], driving, truth


def at_native_size(extract: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``extract`` on frames ``[T, 3, H, W]`` area-resized to the world's 64 pixels."""

    def run(frames: Tensor) -> Tensor:
        if frames.shape[-2:] != (NATIVE_SIZE, NATIVE_SIZE):
            frames = F.interpolate(frames, size=(NATIVE_SIZE, NATIVE_SIZE), mode="area")
        return extract(frames)

    return run


def instruments() -> dict[str, Callable[[Tensor], Tensor]]:
    """The world's identity encoder and expression (eyes, brows, mouth) and pose extractors, for frames of any size."""
    from reference_model.expression import load_expression_extractor
    from reference_model.identity import load_identity_encoder

    extractor = load_expression_extractor()
    return {
        "identity_encoder": at_native_size(load_identity_encoder()),
        "expression_extractor": at_native_size(lambda frames: extractor(frames)[:, 3:]),
        "pose_extractor": at_native_size(lambda frames: extractor(frames)[:, :3]),
    }
