"""The synthetic world as a source of suite cases for any model, at any frame size.

Models outside ``reference_model`` (the released FlashPortrait) name this module lazily, as
models are named in flashbench's registry, so that flashbench never imports reference_model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from flashbench.models.base import CaseSpec
from reference_model.world import driving_sequence, identity_params, render_video

# The world's instruments (identity, expression, pose) read frames at the size they were trained on.
NATIVE_SIZE = 64


def render_case(case: CaseSpec, frames: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The case's reference image ``[3, R, R]``, driving video and truth ``[T, 3, R, R]`` at its resolution R.

    ``frames`` overrides the case's length (a model that generates 4k + 1 frames); the truth
    is the reference identity driven by the case's motion, the driving video the driver's.
    """
    count = case.frames if frames is None else frames
    motion = driving_sequence(case.driving_seed, count)[None]
    size = case.resolution
    truth = render_video(identity_params([case.identity]), motion, size)[0].transpose(0, 1)
    driving = truth
    if case.driving_identity != case.identity:
        driving = render_video(identity_params([case.driving_identity]), motion, size)
        driving = driving[0].transpose(0, 1)
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
