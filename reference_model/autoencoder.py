"""A small per-frame convolutional autoencoder: RGB [N, 3, H, W] <-> latents [N, 4, H/4, W/4].

Fully convolutional, so it works at any size divisible by 4 (64x64 -> 16x16x4). Latents
are multiplied by a fixed ``latent_scale`` measured after training so that they have about
unit standard deviation, as latent diffusion does (Rombach et al., 2022, arXiv:2112.10752).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from reference_model.shipped_weights import load_network

DOWNSAMPLE = 4


@dataclass(frozen=True)
class AutoencoderConfig:
    """Widths of the autoencoder."""

    latent_channels: int = 4
    width: int = 32  # channels at full resolution; x2 at half and at quarter resolution


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU())


class Autoencoder(nn.Module):
    """Per-frame autoencoder with 4x spatial downsampling and a fixed latent scale."""

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.encoder = nn.Sequential(
            _block(3, w),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            nn.SiLU(),
            _block(2 * w, 2 * w),
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1),
            nn.SiLU(),
            _block(2 * w, 2 * w),
            nn.Conv2d(2 * w, config.latent_channels, 1),
        )
        # Decoding upsamples by sub-pixel convolution (Shi et al., 2016, arXiv:1609.05158),
        # which keeps the expensive convolutions at low resolution.
        self.decoder = nn.Sequential(
            _block(config.latent_channels, 2 * w),
            _block(2 * w, 2 * w),
            _block(2 * w, 2 * w),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.PixelShuffle(2),
            nn.SiLU(),
            _block(w, w),
            nn.Conv2d(w, 4 * (w // 2), 3, padding=1),
            nn.PixelShuffle(2),
            nn.SiLU(),
            nn.Conv2d(w // 2, 3, 3, padding=1),
        )
        self.register_buffer("latent_scale", torch.ones(()))

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def encode(self, frames: Tensor) -> Tensor:
        """Latents ``[N, 4, H/4, W/4]`` (about unit std) of frames ``[N, 3, H, W]`` in [0, 1]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [N, 3, H, W], got {tuple(frames.shape)}")
        if frames.shape[-1] % DOWNSAMPLE or frames.shape[-2] % DOWNSAMPLE:
            raise ValueError(
                f"frame size {tuple(frames.shape[-2:])} must be divisible by {DOWNSAMPLE}; "
                "render at 32 or 64"
            )
        return self.encoder(frames * 2.0 - 1.0) * self.latent_scale

    def decode_unclamped(self, latents: Tensor) -> Tensor:
        """Frames before clamping to [0, 1] (what training sees)."""
        return self.decoder(latents / self.latent_scale) * 0.5 + 0.5

    def decode(self, latents: Tensor) -> Tensor:
        """Frames ``[N, 3, 4h, 4w]`` in [0, 1] from latents ``[N, 4, h, w]``."""
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents must be [N, {self.latent_channels}, h, w], got {tuple(latents.shape)}"
            )
        return self.decode_unclamped(latents).clamp(0.0, 1.0)

    def forward(self, frames: Tensor) -> Tensor:
        return self.decode(self.encode(frames))

    def encode_video(self, video: Tensor, chunk: int = 256) -> Tensor:
        """Latent video ``[B, 4, T, H/4, W/4]`` of a video ``[B, 3, T, H, W]`` in [0, 1]."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, 3, h, w)
        latents = torch.cat([self.encode(f) for f in frames.split(chunk)])
        return latents.view(b, t, *latents.shape[1:]).transpose(1, 2)

    def decode_video(self, latents: Tensor, chunk: int = 256) -> Tensor:
        """Video ``[B, 3, T, 4h, 4w]`` in [0, 1] from a latent video ``[B, 4, T, h, w]``."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents must be [B, {self.latent_channels}, T, h, w], got {tuple(latents.shape)}"
            )
        b, c, t, h, w = latents.shape
        flat = latents.transpose(1, 2).reshape(b * t, c, h, w)
        frames = torch.cat([self.decode(f) for f in flat.split(chunk)])
        return frames.view(b, t, *frames.shape[1:]).transpose(1, 2)


def load_autoencoder(weights_dir: Path | str | None = None) -> Autoencoder:
    """The shipped autoencoder (sha256-verified), in eval mode with gradients off."""
    return load_network(
        "autoencoder", lambda config: Autoencoder(AutoencoderConfig(**config)), weights_dir
    )


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame PSNR in dB of images in [0, 1], ``[N]``."""
    mse = (prediction - target).square().flatten(1).mean(1).clamp(min=1e-10)
    return -10.0 * torch.log10(mse)
