"""FlashBench steppers inside an unmodified diffusers Wan pipeline, as a transformer hook (diffusers' ``ModelHook`` style).

``apply_stepper_hook(pipe.transformer, StepperHookConfig(ALP()))`` turns it on and
``remove_stepper_hook(pipe.transformer)`` off, as diffusers' ``apply_taylorseer_cache`` does.
The hook replaces the transformer's forward with ``stepper.velocity`` on the Wan adapter; the
pipeline's scheduler still takes the steps. Each cache context the pipeline opens
(``"cond"``, ``"uncond"``) keeps its own stepper cache, as ``sample`` keeps one per guidance
branch, and the pipeline's end-of-call reset clears them.

The stepper sees the pipeline's timesteps (``t = 1000 sigma``) as its sigmas, and the adapter
passes them through unscaled, so the transformer gets exactly the pipeline's ``t``. Steppers
read sigma only as a forecasting coordinate, where the scale cancels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import Tensor, nn

from flashbench.denoiser import Cond
from flashbench.models.wan.denoiser import CONDITION, IMAGE, PROMPT, WanDenoiser
from flashbench.steppers import Stepper

HOOK = "flashbench_stepper"


@dataclass(frozen=True)
class StepperHookConfig:
    """A FlashBench stepper to run inside a pipeline's transformer calls.

    ``num_inference_steps`` is needed only where the pipeline's cache context does not say it
    (``WanImageToVideoPipeline`` opens its contexts without step information); it must equal the
    pipeline call's.
    """

    stepper: Stepper
    num_inference_steps: int | None = None

    def __post_init__(self) -> None:
        kind = type(self.stepper)
        if kind.plan is not Stepper.plan or kind.advance is not Stepper.advance:
            raise ValueError(
                f"stepper {self.stepper.name!r} changes the schedule or the update (plan/advance); "
                "inside a pipeline the scheduler steps, so only velocity steppers (euler, alp, "
                "taylorseer, teacache, fora, first_block_cache, magcache) run as hooks; run "
                f"{self.stepper.name!r} through flashbench.sampling.sample"
            )


class _BranchState(BaseState):
    """One cache context's stepper cache and the timesteps it has seen."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.cache: dict = {}
        self.timesteps: list[Tensor] = []
        self.actions: list[str] = []


class StepperHook(ModelHook):
    """Replaces a ``WanTransformer3DModel``'s forward with a stepper's velocity."""

    _is_stateful = True

    def __init__(self, config: StepperHookConfig) -> None:
        super().__init__()
        self.config = config
        self.state_manager = StateManager(_BranchState)

    def initialize_hook(self, module: nn.Module) -> nn.Module:
        self.model = WanDenoiser(module, train_timesteps=1)
        return module

    def new_forward(
        self,
        module: nn.Module,
        hidden_states: Tensor,
        timestep: Tensor,
        encoder_hidden_states: Tensor,
        encoder_hidden_states_image: Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if attention_kwargs:
            raise ValueError(
                f"attention_kwargs={attention_kwargs!r} are not supported by the FlashBench stepper "
                "hook; remove_stepper_hook(transformer) to use them"
            )
        if timestep.ndim != 1:
            raise ValueError(
                f"per-token timesteps (shape {tuple(timestep.shape)}, Wan 2.2 TI2V) are not "
                "supported by the FlashBench stepper hook"
            )
        state = self.state_manager.get_state()
        steps = self.state_manager.context.num_inference_steps or self.config.num_inference_steps
        if steps is None:
            raise ValueError(
                "this pipeline's cache context does not give num_inference_steps; set "
                "StepperHookConfig(num_inference_steps=N) to the N of the pipeline call"
            )
        state.timesteps.append(timestep[0].float())
        step = len(state.timesteps) - 1
        if step >= steps:
            raise ValueError(
                f"the transformer was called {step + 1} times in one context, more than "
                f"num_inference_steps={steps}; set StepperHookConfig(num_inference_steps=...) to "
                "the pipeline call's"
            )
        sigmas = torch.zeros(steps + 1, device=timestep.device)
        sigmas[: step + 1] = torch.stack(state.timesteps)
        # The latents in float32 (exact: they are the pipeline's cast), so the stepper's timestep
        # is the pipeline's float32 t.
        latent_channels = module.config.out_channels
        x = hidden_states[:, :latent_channels].float()
        static = {PROMPT: encoder_hidden_states}
        if encoder_hidden_states_image is not None:
            static[IMAGE] = encoder_hidden_states_image
        temporal = {}
        if hidden_states.shape[1] > latent_channels:
            temporal[CONDITION] = hidden_states[:, latent_channels:].float().transpose(1, 2)
        cond = Cond(static=static, temporal=temporal)
        v, action = self.config.stepper.velocity(self.model, x, sigmas, step, cond, state.cache)
        state.actions.append(action)
        return Transformer2DModelOutput(sample=v) if return_dict else (v,)

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state_manager.reset()
        return module


def apply_stepper_hook(transformer: nn.Module, config: StepperHookConfig) -> None:
    """Run ``config.stepper`` inside every call of ``transformer`` (a ``WanTransformer3DModel``)."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    if registry.get_hook(HOOK) is not None:
        raise ValueError(
            f"a FlashBench stepper hook is already on this transformer "
            f"({registry.get_hook(HOOK).config.stepper}); remove_stepper_hook(transformer) first"
        )
    registry.register_hook(StepperHook(config), HOOK)
    registry.invalidate_child_registries_cache()


def remove_stepper_hook(transformer: nn.Module) -> None:
    """Undo ``apply_stepper_hook``: the transformer's own forward again."""
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.remove_hook(HOOK, recurse=False)
    registry.invalidate_child_registries_cache()
