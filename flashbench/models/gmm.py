"""The ``gmm`` model: the exact flow-matching velocity of a Gaussian mixture, a testbed whose ODE is known in closed form.

Every pixel's colour is drawn independently from a mixture of ``components`` isotropic
Gaussians (a case's palette). With x_sigma = (1 - sigma) x0 + sigma eps, each component k
(mean m, std s) gives x_sigma ~ N((1 - sigma) m, v I), v = (1 - sigma)^2 s^2 + sigma^2, and

    E[eps | x, k] = sigma (x - (1 - sigma) m) / v,
    E[x0 | x, k]  = m + (1 - sigma) s^2 (x - (1 - sigma) m) / v,

so the velocity E[eps - x0 | x] is their difference averaged over the posterior of k (the
mixture's responsibilities): exact, with no network and no training (Lipman et al. 2023,
arXiv 2210.02747, for the conditional paths). The case's mixture weights are its
condition; dropping them (``Guidance(drop=("mixture",))``) leaves uniform weights, so emotion-
CFG-like guidance has an exact field too. The denoiser is one block (adding the velocity to a
stream that starts at zero) and an identity head: layer-level caches act on the whole velocity
here, and first-block caching has nothing to skip. With one component the
ODE's solution is closed form (``gaussian_solution``), which ``tests/flashbench/models/test_gmm.py``
checks the solvers against.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond, run_layers
from flashbench.flops import declare_flops
from flashbench.models.base import WORLD_SPLITS, CaseInputs, CaseSpec, ModelSpec, WithoutInstruments

MIXTURE = "mixture"
MAX_COMPONENTS = 64


class VelocityBlock:
    """Adds the mixture's exact velocity (of the latent the embedding carries) to the stream."""

    def __call__(self, h: Tensor, ctx: Mapping[str, Any]) -> Tensor:
        return h + mixture_velocity(ctx["x"], ctx["sigma"], *ctx["mixture"])


def mixture_flops(pixels: int, components: int, channels: int, weighted: bool) -> int:
    """FLOPs of ``mixture_velocity`` on ``pixels`` pixels (batch included), one per elementwise op.

    Per pixel, component and channel: the offset, its square, their sum, the gain's product,
    the mean's difference, the posterior's product and the sum over components (7); per pixel
    and component: the log density's scale, division and log-variance term, the log weight
    (``weighted``) and the softmax's max, difference, exp, sum and division (8 or 9). Terms the
    size of the mixture alone are left out.
    """
    return pixels * components * (7 * channels + 8 + int(weighted))


def mixture_velocity(
    x: Tensor, sigma: Tensor, means: Tensor, stds: Tensor, log_weights: Tensor | None
) -> Tensor:
    """E[eps - x0 | x_sigma = x] for ``x`` ``[B, C, T, H, W]`` whose pixels are drawn from means ``[K, C]``, stds ``[K]``, log weights ``[K]`` (None: uniform)."""
    b, channels = x.shape[:2]
    pixels = x.numel() // channels
    declare_flops(mixture_flops(pixels, len(stds), channels, log_weights is not None), x)
    means, stds = means.double().to(x.device), stds.double().to(x.device)
    points = x.double().movedim(1, -1).reshape(b, -1, 1, channels)  # [B, N, 1, C]
    s = sigma.double().view(b, 1, 1)
    alpha, variance = 1 - s, (1 - s) ** 2 * stds**2 + s**2  # [B, 1, K]
    offset = points - alpha[..., None] * means  # [B, N, K, C]
    log_density = -0.5 * offset.square().sum(-1) / variance - 0.5 * channels * variance.log()
    if log_weights is not None:
        log_density = log_density + log_weights.double().to(x.device)
    posterior = torch.softmax(log_density, dim=-1)
    # E[eps - x0 | x, k] = (sigma - (1 - sigma) s_k^2) (x - (1 - sigma) m_k) / v_k - m_k.
    gain = (s - alpha * stds**2) / variance  # [B, 1, K]
    v = (posterior[..., None] * (gain[..., None] * offset - means)).sum(-2)  # [B, N, C]
    return v.reshape(b, *x.shape[2:], channels).movedim(-1, 1).to(x.dtype)


class GaussianMixtureDenoiser(nn.Module):
    """A layered denoiser (one block, identity head) whose velocity is ``mixture_velocity`` of the case's mixture.

    ``cond.static``: ``"means"`` ``[K, C]``, ``"stds"`` ``[K]`` and ``"mixture"`` (log weights
    ``[K]``, the droppable condition). The stream starts at zero, so the block's residual, what
    residual caches keep, is the velocity itself; the context's ``time`` is (sigma, 1 - sigma),
    the input-change indicator TeaCache reads (on Wan, the time embedding).
    """

    flops_follow_shapes = True  # its passes cost what their inputs' shapes say (flashbench.flops)

    def __init__(self) -> None:
        super().__init__()
        self.blocks = [VelocityBlock()]

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict[str, Any]]:
        static = cond.static
        if "means" not in static or "stds" not in static:
            raise ValueError(
                f"gmm conditioning needs 'means' and 'stds' in cond.static, got {sorted(static)}"
            )
        mixture = (static["means"], static["stds"], static.get(MIXTURE))
        # The schedule's progress as TeaCache's indicator: like Wan's time embedding it is the
        # same for every case, so TeaCache skips on a fixed pattern, as its "time" indicator does.
        time = torch.stack([sigma, 1 - sigma], dim=1).float()
        return torch.zeros_like(x), {"x": x, "sigma": sigma, "mixture": mixture, "time": time}

    def head(self, h: Tensor, ctx: Mapping[str, Any]) -> Tensor:
        return h

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        return run_layers(self, x, sigma, cond)


def palette(identity: int, components: int) -> tuple[Tensor, Tensor, Tensor]:
    """Case ``identity``'s mixture: means ``[K, 3]`` in [-0.8, 0.8], stds ``[K]`` in [0.05, 0.25], log weights ``[K]``."""
    generator = torch.Generator().manual_seed(7_000_003 + identity)
    means = torch.rand(components, 3, generator=generator, dtype=torch.float64) * 1.6 - 0.8
    stds = 0.05 + 0.2 * torch.rand(components, generator=generator, dtype=torch.float64)
    log_weights = 2.0 * torch.randn(components, generator=generator, dtype=torch.float64)
    return means, stds, log_weights


def check_gmm_args(components: int = 8) -> ModelSpec:
    """The ``gmm`` model's spec, or a ValueError if ``components`` cannot build it."""
    if (
        isinstance(components, bool)
        or not isinstance(components, int)
        or not 1 <= components <= MAX_COMPONENTS
    ):
        raise ValueError(
            f"components={components!r} must be an integer in [1, {MAX_COMPONENTS}] for the gmm model"
        )
    return ModelSpec(WORLD_SPLITS, GaussianMixtureModel.fps, GaussianMixtureModel.cond_keys)


class GaussianMixtureModel(WithoutInstruments):
    """Cases of per-pixel palette mixtures (a case's identity seeds its palette) under the exact velocity."""

    name = "gmm"
    fps = 8
    splits = WORLD_SPLITS
    cond_keys = (MIXTURE,)

    def __init__(self, components: int = 8) -> None:
        check_gmm_args(components)
        self.components = components
        self.denoiser = GaussianMixtureDenoiser()

    def prepare(self, case: CaseSpec) -> CaseInputs:
        means, stds, log_weights = palette(case.identity, self.components)
        static = {"means": means, "stds": stds, MIXTURE: log_weights}
        size = case.resolution
        # The mixture's most likely colour stands in for the case's reference image.
        colour = ((means[log_weights.argmax()] + 1) / 2).float().clamp(0, 1)
        reference = colour[:, None, None].expand(3, size, size).clone()
        shape = (1, 3, case.frames, size, size)
        return CaseInputs(Cond(static=static), shape, reference, ground_truth=None)

    def decode(self, latents: Tensor) -> Tensor:
        return ((latents[0].transpose(0, 1).float() + 1) / 2).clamp(0, 1)

    def weights(self) -> dict[str, str]:
        # No weights: the formula's version and the components stand for them. The recipe's text
        # is an identity, not a path: it keeps the name of the module the formula was written in,
        # so runs (and their cached baselines) made before the package was layered still resume.
        recipe = f"flashbench.gmm v1, components={self.components}"
        return {"gmm": hashlib.sha256(recipe.encode()).hexdigest()}


def gaussian_solution(x1: Tensor, sigma: float, mean: Tensor, std: float) -> Tensor:
    """The flow ODE's exact solution at ``sigma`` from ``x1`` at sigma = 1, for one Gaussian N(mean, std^2 I) per pixel.

    The probability-flow map of a Gaussian is affine: x_sigma = (1 - sigma) m + sqrt(v_sigma) eps
    with eps = x_1 (v_1 = 1), v_sigma = (1 - sigma)^2 std^2 + sigma^2.
    """
    variance = (1 - sigma) ** 2 * std**2 + sigma**2
    return (1 - sigma) * mean.view(1, -1, 1, 1, 1) + math.sqrt(variance) * x1
