"""The synthetic portrait world: identities, a renderer and driving motion."""

from reference_model.world.identities import (
    ID_ATTRIBUTES,
    NUM_ID_ATTRIBUTES,
    SPLITS,
    identity_params,
    sample_ids,
    split_ids,
)
from reference_model.world.motion import (
    MotionConfig,
    driving_chunks,
    driving_frames,
    driving_sequence,
)
from reference_model.world.renderer import (
    EXPRESSION_NAMES,
    EXPRESSION_RANGES,
    NUM_EXPRESSION_PARAMS,
    expression_bounds,
    expression_regions,
    neutral_expression,
    random_expression,
    render,
    render_video,
)

__all__ = [
    "EXPRESSION_NAMES",
    "EXPRESSION_RANGES",
    "ID_ATTRIBUTES",
    "NUM_EXPRESSION_PARAMS",
    "NUM_ID_ATTRIBUTES",
    "SPLITS",
    "MotionConfig",
    "driving_chunks",
    "driving_frames",
    "driving_sequence",
    "expression_bounds",
    "expression_regions",
    "identity_params",
    "neutral_expression",
    "random_expression",
    "render",
    "render_video",
    "sample_ids",
    "split_ids",
]
