"""The model registry of suites: a name -> a portrait model (denoiser + world + decoder).

``toy`` is a small untrained layered denoiser with a toy world that renders coloured discs;
``reference`` is the registry entry ``"reference_model.pipeline:load_reference"`` (the
FlashPortrait reference trained on the synthetic portrait world), imported only when used, so
flashbench never imports reference_model and a real model plugs in the same way; installed
packages add models through the entry point ``flashbench.models`` (docs/plugins.md). Switching a
suite's model is one key: ``suite.model``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from flashbench.models.base import ModelSpec, PortraitModel
from flashbench.models.toy import ToyModel, check_toy_args
from flashbench.registry import Registry, load_object


def _callable(name: str, obj: Any) -> str | None:
    return (
        None if callable(obj) else f"is a {type(obj).__name__!r}, not a class or factory function"
    )


def _portrait_model(name: str, obj: Any) -> str | None:
    lacking = [m for m in ("prepare", "decode") if not callable(getattr(obj, m, None))]
    if not hasattr(obj, "denoiser"):
        lacking.insert(0, "denoiser")
    return (
        f"lacks {', '.join(lacking)} of flashbench.models.base.PortraitModel" if lacking else None
    )


# Third-party packages add models through the entry point "flashbench.models" (docs/plugins.md).
models = Registry("model", "flashbench.models", check=_callable, check_built=_portrait_model)
models.register(
    "toy", ToyModel, doc="untrained toy denoiser on a world of coloured discs (tests, smoke runs)"
)
models.register(
    "gmm",
    "flashbench.models.gmm:GaussianMixtureModel",
    doc="exact flow-matching velocity of per-pixel Gaussian mixtures: the ODE testbed with known solutions (components=)",
)
models.register(
    "reference",
    "reference_model.pipeline:load_reference",
    doc="FlashPortrait reference model trained on the synthetic portrait world (weights=, variant=)",
)
models.register(
    "wan",
    "flashbench.models.wan.model:load_wan",
    doc="diffusers' Wan text-to-video from a local sha256-checked folder (weights=, dtype=, device=; docs/wan.md)",
)
models.register(
    "flashportrait",
    "flashbench.models.flashportrait.model:load_flashportrait",
    doc="FlashPortrait's released files on diffusers' Wan2.1-I2V with NFEB (weights=, variant=, config=, device=, cases=; docs/wan.md)",
)
# What can be checked of a model's parameters before it is built (sizes, files, variants), by
# model name: a function or a lazily imported ``"module:object"``; each returns the model's spec.
_ARG_CHECKS: dict[str, Callable[..., ModelSpec] | str] = {
    "toy": check_toy_args,
    "gmm": "flashbench.models.gmm:check_gmm_args",
    "reference": "reference_model.pipeline:check_reference_args",
    "wan": "flashbench.models.wan.model:check_wan_args",
    "flashportrait": "flashbench.models.flashportrait.model:check_flashportrait_args",
}
# The weight files each model ships, by model name: a function or a lazily imported
# ``"module:object"`` returning metrics.weights.WeightStatus records (``flashbench weights``).
_SHIPPED_WEIGHTS: dict[str, Callable[..., list[Any]] | str] = {
    "reference": "reference_model.shipped_weights:weight_status",
}
# The trainer of each trainable model: ``flashbench train`` forwards its options to it.
trainers = Registry("trainer")
trainers.register("reference", "reference_model.train_model:main")


def _lazy(name: str, target: Callable[..., Any] | str) -> Callable[..., Any]:
    """``target``, importing a ``"module:object"`` name; a missing package is a ValueError naming the fix."""
    if not isinstance(target, str):
        return target
    try:
        return load_object(target)
    except ImportError as err:
        raise ValueError(
            f'model {name!r} needs the {target.partition(".")[0]} package ({err}); use model = "toy"'
        ) from err


def _model_factory(name: str) -> Callable[..., Any]:
    try:
        return models.get(name)
    except ImportError as err:
        raise ValueError(
            f'model {name!r} needs a package that is not installed ({err}); use model = "toy"'
        ) from err


def model_params(name: str) -> list[str]:
    """The parameters a suite may give model ``name`` (``model_args``)."""
    factory = _model_factory(name)
    return [p for p in inspect.signature(factory).parameters if p != "self"]


def check_model_args(name: str, args: Mapping[str, Any]) -> ModelSpec | None:
    """The spec of model ``name`` built with ``args``; ValueError (what is wrong and the fix) if they cannot build it.

    None for a model registered without a check (its parameters are checked when it is built).
    """
    check = _ARG_CHECKS.get(name)
    return None if check is None else _lazy(name, check)(**args)


def shipped_weights(verify: bool = True) -> dict[str, list[Any]]:
    """The weight files each model ships, by model name (``metrics.weights.WeightStatus``
    records: path, present, sha256 expected and, when ``verify``, actual)."""
    return {name: _lazy(name, status)(verify=verify) for name, status in _SHIPPED_WEIGHTS.items()}


def build_models(
    name: str, model_args: Mapping[str, Mapping[str, Any]]
) -> dict[str, PortraitModel]:
    """One model per setting, from ``{setting: model_args}``; settings with equal args share one instance."""
    built: dict[str, PortraitModel] = {}
    out = {}
    for setting, args in model_args.items():
        key = json.dumps(dict(args), sort_keys=True, default=str)
        if key not in built:
            built[key] = models.build(name, **args)
        out[setting] = built[key]
    return out
