"""The synthetic portrait world: identities, a renderer and driving motion."""

from reference_model.world.identities import (
    ID_ATTRIBUTES,
    NUM_ID_ATTRIBUTES,
    SPLITS,
    identity_params,
    sample_ids,
    split_ids,
)
from reference_model.world.ladders import (
    background_colours,
    background_visibility,
    blend_identities,
    freeze_parameters,
    identity_ladder,
    static_background,
)
from reference_model.world.motion import (
    MotionConfig,
    blink_centres,
    driving_chunks,
    driving_frames,
    driving_sequence,
)
from reference_model.world.renderer import (
    EXPRESSION_NAMES,
    EXPRESSION_RANGES,
    FACE_PARAMS,
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
    "FACE_PARAMS",
    "ID_ATTRIBUTES",
    "NUM_EXPRESSION_PARAMS",
    "NUM_ID_ATTRIBUTES",
    "SPLITS",
    "MotionConfig",
    "background_colours",
    "background_visibility",
    "blend_identities",
    "blink_centres",
    "driving_chunks",
    "driving_frames",
    "driving_sequence",
    "expression_bounds",
    "expression_regions",
    "freeze_parameters",
    "identity_ladder",
    "identity_params",
    "neutral_expression",
    "random_expression",
    "render",
    "render_video",
    "sample_ids",
    "split_ids",
    "static_background",
]
