"""Frame fidelity: PSNR, SSIM (Wang et al. 2004), LPIPS (Zhang et al. 2018, arXiv:1801.03924), detail.

Each compares generated frames with target frames of the same shape and averages a per-frame
score over every frame seen (float64 sums, so batching and DDP do not change the result).
The target can be the ground truth or, for **fidelity to the baseline**, the un-accelerated
output of the same case and seed: the same metric then says how far an accelerated sampler
strays from the sampler it approximates.

Inputs: videos [B, 3, T, H, W] or images [B, 3, H, W], values in [0, 1].
PSNR of identical frames is +inf (as in torchmetrics); the mean is then +inf too.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.utilities import dim_zero_cat

from metrics.inputs import check_images, check_video, video_frames
from metrics.weights import describe_backend, verified_weight

__all__ = ["LPIPS", "PSNR", "SSIM", "DetailRatio", "FrameAverage", "MeanAbsoluteError"]


class FrameAverage(Metric):
    """Mean over frames of a per-frame score of (generated, target); subclasses define `frame_scores`."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        # Every frame's score, in update order, for per-frame rows (drift curves).
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def backend_info(self) -> dict:
        return describe_backend(self)

    def update(self, generated: Tensor, target: Tensor) -> None:
        if generated.shape != target.shape:
            raise ValueError(
                f"generated {tuple(generated.shape)} and target {tuple(target.shape)} must have one shape"
            )
        if generated.ndim == 5:
            generated, target = (
                video_frames(check_video(generated, "generated")),
                video_frames(check_video(target, "target")),
            )
        check_images(generated, "generated")
        check_images(target, "target")
        with torch.no_grad():
            scores = self.frame_scores(generated, target).double().flatten()
        self.total = self.total + scores.sum()
        self.count = self.count + scores.numel()
        self.scores.append(scores.to(self.device))

    def compute(self) -> Tensor:
        if self.count == 0:
            raise ValueError(f"{type(self).__name__}.compute() called before update()")
        return self.total / self.count

    def compute_per_frame(self) -> dict[str, Tensor]:
        """{"mean": compute(), "per_frame": every frame's score in update order}."""
        return {"mean": self.compute(), "per_frame": dim_zero_cat(self.scores).double()}


class PSNR(FrameAverage):
    """Peak signal-to-noise ratio per frame, 10 log10(1 / MSE) in dB for values in [0, 1].

    `cap_db` caps each frame's score (identical frames are +inf otherwise; rows are strict JSON).
    `downsample` k > 1 compares frames area-averaged over k x k pixels first: what a sampler
    keeps of the content and layout, with pixel noise and grain averaged out.
    """

    higher_is_better = True

    def __init__(self, cap_db: float | None = None, downsample: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"downsample={downsample!r} must be an integer >= 1 (1: full frames)")
        self.cap_db = cap_db
        self.downsample = downsample
        self.backend_name = "psnr" if downsample == 1 else f"psnr-area{downsample}"

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        if self.downsample > 1:
            generated, target = (
                F.avg_pool2d(x.double(), self.downsample) for x in (generated, target)
            )
        mse = (generated.double() - target.double()).square().mean(dim=(1, 2, 3))
        scores = 10 * torch.log10(1.0 / mse)
        return scores if self.cap_db is None else scores.clamp(max=self.cap_db)


class MeanAbsoluteError(FrameAverage):
    """Mean absolute pixel error per frame, for values in [0, 1]."""

    higher_is_better = False
    backend_name = "pixel-l1"

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        return (generated.double() - target.double()).abs().flatten(1).mean(1)


class SSIM(FrameAverage):
    """Structural similarity per frame (torchmetrics; Gaussian window 11, sigma 1.5, data range 1)."""

    higher_is_better = True
    backend_name = "torchmetrics-ssim"

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        return structural_similarity_index_measure(
            generated.float(), target.float(), data_range=1.0, reduction="none"
        )


class DetailRatio(FrameAverage):
    """High-frequency energy of each generated frame over the target's: 1 = as detailed.

    The energy is the mean square of what a `box` x `box` box blur removes (the frame minus its
    block means). Large sampling steps average detail away (below 1); noise left in a frame
    adds energy (above 1). It compares amounts of detail, not where the detail is, so it reads
    lost texture even where the content is free to differ from the target (hair strands,
    grain). A target without detail (a flat frame) is an error rather than an infinite ratio.
    """

    higher_is_better = None
    backend_name = "hf-energy"

    def __init__(self, box: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(box, bool) or not isinstance(box, int) or box < 2:
            raise ValueError(f"box={box!r} must be an integer >= 2 (the blur's width in pixels)")
        self.box = box

    def _energy(self, frames: Tensor) -> Tensor:
        frames = frames.double()
        blurred = F.interpolate(F.avg_pool2d(frames, self.box), scale_factor=self.box)
        height, width = blurred.shape[-2:]
        return (frames[..., :height, :width] - blurred).square().mean(dim=(1, 2, 3))

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        reference = self._energy(target)
        if bool((reference <= 0).any()):
            raise ValueError(
                "a target frame has no high-frequency energy (a flat frame): the detail ratio is "
                "undefined; compare against a target with texture"
            )
        return self._energy(generated) / reference


class LPIPS(FrameAverage):
    """LPIPS distance per frame through the `lpips` package (v0.1 calibrated linear layers).

    The backbone (AlexNet / VGG16 / SqueezeNet ImageNet weights) is a torchvision download
    that is not available offline: it is read from `backbone_path`, or from the torch hub
    cache (`<hub>/checkpoints/alexnet-owt-7be5be79.pth` for net="alex"), checked by sha256.
    `pnet_rand=True` uses a random backbone (for plumbing tests; not a perceptual score).
    """

    higher_is_better = False

    def __init__(
        self,
        net: str = "alex",
        backbone_path: str | Path | None = None,
        pnet_rand: bool = False,
        verify: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        import lpips

        if net not in ("alex", "vgg", "squeeze"):
            raise ValueError(f"net={net!r}: use 'alex', 'vgg' or 'squeeze'")
        linear_file, linear_sha = verified_weight(f"lpips-linear-{net}", verify=verify)
        self.weight_hashes = {linear_file.name: linear_sha}
        backbone_file = None
        if not pnet_rand:  # checked before the slow model build, so a missing file fails at once
            backbone_file, backbone_sha = verified_weight(
                f"lpips-backbone-{net}", backbone_path, verify=verify
            )
            self.weight_hashes[backbone_file.name] = backbone_sha
        # Always build with a random backbone: with pnet_rand=False, lpips would ask torchvision to download one.
        with warnings.catch_warnings():
            # lpips calls torchvision with the pre-0.13 `pretrained=` argument.
            warnings.filterwarnings("ignore", "Arguments other than a weight enum", UserWarning)
            warnings.filterwarnings(
                "ignore", "The parameter 'pretrained' is deprecated", UserWarning
            )
            self.model = lpips.LPIPS(
                net=net, pretrained=True, pnet_rand=True, model_path=str(linear_file), verbose=False
            )
        if backbone_file is not None:
            self._load_backbone(backbone_file)
        self.backend_name = f"lpips-{net}" + ("-random-backbone" if pnet_rand else "")
        self.model.eval().requires_grad_(False)

    def _load_backbone(self, path: Path) -> None:
        """Load a torchvision `features.*` state dict into lpips' slices (`sliceK.<index>.*`)."""
        source = torch.load(path, map_location="cpu", weights_only=True)
        target = self.model.net.state_dict()
        mapped = {}
        for key in target:
            source_key = "features." + key.split(".", 1)[1]
            if source_key not in source:
                raise ValueError(
                    f"{path}: no {source_key}; is it torchvision's ImageNet weights file for this net?"
                )
            mapped[key] = source[source_key]
        self.model.net.load_state_dict(mapped)

    def frame_scores(self, generated: Tensor, target: Tensor) -> Tensor:
        return self.model(generated.float(), target.float(), normalize=True)
