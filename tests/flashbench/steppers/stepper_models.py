"""Small models shared by the stepper tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flashbench.denoiser import Cond
from flashbench.models.toy import ToyDenoiser
from flashbench.settings import steppers
from flashbench.steppers.base import Facts


def toy(seed: int = 0, depth: int = 3) -> ToyDenoiser:
    return ToyDenoiser(
        channels=3, dim=16, depth=depth, temporal=True, motion_dim=2, seed=seed
    ).eval()


def toy_inputs(seed: int, frames: int = 6) -> tuple[Tensor, Cond]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 3, frames, 4, 4, generator=g)
    motion = torch.randn(1, frames, 2, generator=g)
    return noise, Cond(temporal={"motion": motion})


class CountingToy(ToyDenoiser):
    """A toy denoiser that counts full passes as calls of its last block."""

    def __init__(self) -> None:
        super().__init__(channels=3, dim=16, depth=3, temporal=True, motion_dim=2)
        self.eval()
        self.passes = 0
        self.blocks[-1].register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.passes += 1


class PolynomialBlock(nn.Module):
    """Adds sum_d coefficients[d] * u^d, u = the step index or sigma read from the context."""

    def __init__(self, coefficients: Tensor) -> None:
        super().__init__()
        self.coefficients = coefficients  # [degree + 1, *feature shape]

    def forward(self, h: Tensor, ctx: dict) -> Tensor:
        powers = ctx["u"] ** torch.arange(len(self.coefficients), dtype=torch.float64)
        return h + torch.tensordot(powers, self.coefficients, dims=1)


class PolynomialDenoiser(nn.Module):
    """Layered denoiser whose block residuals are polynomials in u (v is their sum).

    ``coordinate="step"``: u = (1 - sigma) * steps, the step index on ``linspace(1, 0, steps + 1)``;
    ``"sigma"``: u = sigma.
    """

    def __init__(self, coefficients: Tensor, coordinate: str = "step", steps: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(PolynomialBlock(c) for c in coefficients)
        self.coordinate, self.steps = coordinate, steps

    def embed(self, x: Tensor, sigma: Tensor, cond: Cond) -> tuple[Tensor, dict]:
        s = sigma[0].double()
        u = (1 - s) * self.steps if self.coordinate == "step" else s
        return torch.zeros_like(x, dtype=torch.float64), {"u": u}

    def head(self, h: Tensor, ctx: dict) -> Tensor:
        return h

    def exact(self, u: float) -> Tensor:
        ctx = {"u": torch.tensor(u, dtype=torch.float64)}
        return sum(block(0.0, ctx) for block in self.blocks)

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
        h, ctx = self.embed(x, sigma, cond)
        for block in self.blocks:
            h = block(h, ctx)
        return self.head(h, ctx)


def black_box(x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
    """A denoiser that exposes no layers."""
    return -x * sigma.view(-1, 1, 1, 1, 1)


def stepper_facts(name: str, steps: int) -> Facts | None:
    """What the registered stepper ``name`` declares of itself on a schedule of ``steps`` steps."""
    return type(steppers.build(name)).facts(steps)


def toy_steppers(steps: int) -> list[str]:
    """The registered steppers that run on FlashBench's own denoisers (``tests/wan`` covers the others)."""
    return [name for name in steppers.names() if not stepper_facts(name, steps).diffusers]


def never_skip_configs(steps: int) -> list[tuple[str, dict]]:
    """(registered stepper, parameters under which it never skips), for every toy-model stepper."""
    return [
        (name, dict(params))
        for name in toy_steppers(steps)
        for params in stepper_facts(name, steps).never_skip
    ]


def example_configs(steps: int) -> dict[str, tuple[str, dict]]:
    """``name`` or ``name-label`` -> (registered stepper, parameters of its example ``label``), toy-model steppers."""
    return {
        name if label == "default" else f"{name}-{label}": (name, dict(params))
        for name in toy_steppers(steps)
        for label, params in stepper_facts(name, steps).examples.items()
    }
