"""Two CPU processes (gloo) give the same results as one process holding all the data."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metrics.expression import ExpressionFollowing
from metrics.fidelity import PSNR
from metrics.fvd import FrechetVideoDistance
from metrics.identity import IdentitySimilarity
from metrics.temporal import TemporalStability


class MeanColourFeature(torch.nn.Module):
    num_features = 6

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4))], dim=1)


def colour_encoder(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images.mean(dim=(2, 3)) - 0.5, images.amax(dim=(1, 2, 3)) > 0.05


def make_data() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    videos = torch.rand(6, 3, 16, 8, 8, generator=generator)
    videos[2, :, 3] = 0  # a frame without a "face"
    return {
        "real": torch.rand(6, 3, 16, 8, 8, generator=generator),
        "fake": videos,
        "reference": torch.rand(6, 3, 8, 8, generator=generator),
        "background": torch.rand(6, 8, 8, generator=generator) > 0.5,
    }


def run_metrics(data: dict[str, torch.Tensor], indices: list[int]) -> dict[str, torch.Tensor]:
    fvd = FrechetVideoDistance(feature=MeanColourFeature())  # float64 sum states
    identity = IdentitySimilarity(encoder=colour_encoder)  # cat states
    psnr = PSNR()
    temporal = TemporalStability()  # cat states, split per clip at compute
    following = ExpressionFollowing(  # sum and cat states; a "blink" is red below its mean
        colour_encoder,
        parts={"red": (0,), "rest": (1, 2)},
        blink_feature=0,
        blink_threshold=-0.03,
        blink_min_frames=1,
    )
    for index in indices:  # one video per update, as a data loader would hand them out
        fvd.update(data["real"][index : index + 1], real=True)
        fvd.update(data["fake"][index : index + 1], real=False)
        identity.update(data["reference"][index : index + 1], data["fake"][index : index + 1])
        psnr.update(data["fake"][index : index + 1], data["real"][index : index + 1])
        temporal.update(
            data["fake"][index : index + 1],
            data["real"][index : index + 1],
            data["background"][index : index + 1],
        )
        following.update(data["fake"][index : index + 1], data["real"][index : index + 1])
    result = identity.compute()
    stability, follows = temporal.compute(), following.compute()
    return {
        "fvd": fvd.compute(),
        "psnr": psnr.compute(),
        "id_mean": result["mean"],
        "id_curve": result["per_frame"],
        "id_missing": result["faces_not_found"],
        **{
            f"temporal_{k}": stability[k]
            for k in ("ratio", "per_frame_ratio", "background_noise_std")
        },
        # Per-clip values come in rank order under DDP: compared as sets.
        "temporal_per_clip": stability["per_clip_ratio"].sort().values,
        **{
            f"following_{k}": follows[k]
            for k in (
                "error_rest",
                "correlation_red",
                "correlation_rest",
                "blinks",
                "blinks_followed",
            )
        },
    }


def ddp_worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        data = make_data()
        # Uneven shards: rank 0 gets 4 videos, rank 1 gets 2.
        result = run_metrics(data, [0, 2, 3, 5] if rank == 0 else [1, 4])
        if rank == 0:
            torch.save(result, out_path)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path) -> None:
    out_path = tmp_path / "rank0.pt"
    mp.spawn(ddp_worker, args=(2, free_port(), str(out_path)), nprocs=2, join=True)
    distributed = torch.load(out_path, weights_only=True)
    single = run_metrics(make_data(), list(range(6)))
    for name, expected in single.items():
        torch.testing.assert_close(distributed[name], expected, rtol=1e-12, atol=1e-12, msg=name)
    assert distributed["id_missing"].item() == 1
