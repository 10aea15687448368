"""Command-line values shared by the subcommands."""

from __future__ import annotations

import json
from typing import Any


def model_args_json(text: str) -> dict[str, Any]:
    """``--model-args``: a JSON object of the model's parameters, as a suite's ``model_args``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f'--model-args {text!r} is not JSON ({err.msg}); give an object, e.g. \'{{"world": "v2"}}\''
        ) from err
    if not isinstance(value, dict):
        raise ValueError(
            f'--model-args {text!r} must be a JSON object of parameters, e.g. \'{{"world": "v2"}}\''
        )
    return value
