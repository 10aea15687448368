"""Train the second reference testbed's DiT on world v2: ``python -m reference_model.train_model_v2 --out DIR [train_model options]``.

The pool is world v2's (``testbed_v2.render_clips_v2``: hidden seeds the model never sees),
encoded with v2's autoencoder (``reference_model/weights_v2``); training is ``train_model``'s,
unchanged, on that pool: the same losses, checkpoints, EMA export, time budget counted across
resumes and ``--max-steps``. Rerunning the same command resumes from ``DIR/last.ckpt``;
``--accelerator gpu`` resumes the same run on CUDA.

``DIR/world.json`` records the world and the pool; a resume with other pool options stops.
``--render-only`` renders the pool's clips (no autoencoder needed) and stops.
``--chunk-minutes M`` ends this run on a checkpoint after at most M more minutes of training
(``--minutes`` stays the total across resumes): the way to train in bounded chunks.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from reference_model.testbed_v2 import WEIGHTS_V2

log = logging.getLogger(__name__)


def pool_record(clips: int, frames: int, seed: int) -> dict:
    return {"world": "v2", "clips": clips, "pool_frames": frames, "seed": seed}


def build_pool_v2(
    out: Path,
    clips: int,
    frames: int,
    seed: int,
    weights_dir: Path,
    render_only: bool = False,
    device: str = "cpu",
    workers: int = 1,
) -> None:
    """``out/rendered.pt`` (world v2 clips) and ``out/pool.pt`` (their latents), each made once."""
    from reference_model.lightning import encode_world_clips
    from reference_model.testbed_v2 import render_clips_v2

    out.mkdir(parents=True, exist_ok=True)
    record, wanted = out / "world.json", pool_record(clips, frames, seed)
    if record.exists():
        held = json.loads(record.read_text())
        if held != wanted:
            raise SystemExit(
                f"{out} holds a pool made with {held}; this command asks for {wanted}. "
                "Resume with the pool's options, or use a fresh --out"
            )
    else:
        record.write_text(json.dumps(wanted, indent=1) + "\n")
    rendered_path, pool_path = out / "rendered.pt", out / "pool.pt"
    if pool_path.exists():
        return
    if rendered_path.exists():
        rendered = torch.load(rendered_path, weights_only=True)
    else:
        log.info("rendering %d world v2 clips of %d frames", clips, frames)
        rendered = render_clips_v2(clips, frames, seed, workers=workers)
        partial = rendered_path.with_name("rendered.pt.partial")
        torch.save(rendered, partial)
        partial.replace(rendered_path)
    if render_only:
        return
    from reference_model.autoencoder import load_autoencoder
    from reference_model.pipeline import encode_video

    autoencoder = load_autoencoder(weights_dir).to(device)

    def encode(video: torch.Tensor) -> torch.Tensor:
        return encode_video(autoencoder, video.to(device)).cpu()

    log.info(
        "encoding %d clips with %s", rendered["videos"].shape[0], weights_dir / "autoencoder.pt"
    )
    pool = encode_world_clips(rendered, encode, None)
    partial = pool_path.with_name("pool.pt.partial")
    torch.save(pool, partial)
    partial.replace(pool_path)


def trained_minutes(out: Path) -> float:
    """Training minutes recorded in ``out/last.ckpt`` (Lightning's Timer), 0 without one."""
    last = out / "last.ckpt"
    if not last.exists():
        return 0.0
    # Lightning's checkpoints hold plain containers and a tensor or two; nothing else is read.
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    return checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] / 60.0


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--pool-frames", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--world-weights", type=Path, default=WEIGHTS_V2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--render-workers", type=int, default=1, help="processes rendering the pool (same clips)"
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--chunk-minutes", type=float, default=None)
    known, _ = parser.parse_known_args(argv)
    if known.chunk_minutes is not None and known.chunk_minutes <= 0:
        raise SystemExit(f"--chunk-minutes {known.chunk_minutes} must be positive, e.g. 60")
    torch.set_num_threads(known.threads)
    logging.basicConfig(level=logging.INFO)
    on_gpu = known.accelerator == "gpu" or (
        known.accelerator == "auto" and torch.cuda.is_available()
    )
    build_pool_v2(
        known.out,
        known.clips,
        known.pool_frames,
        known.seed,
        known.world_weights,
        known.render_only,
        "cuda" if on_gpu else "cpu",
        known.render_workers,
    )
    if known.render_only:
        return
    from reference_model import train_model

    rest = [a for a in argv if a != "--render-only"]
    if "--render-workers" in rest:
        at = rest.index("--render-workers")
        del rest[at : at + 2]
    if known.chunk_minutes is not None:
        at = rest.index("--chunk-minutes")
        del rest[at : at + 2]
        done = trained_minutes(known.out)
        budget = min(known.minutes, done + known.chunk_minutes)
        log.info("trained %.1f min so far; this chunk trains to %.1f min", done, budget)
        if "--minutes" in rest:
            at = rest.index("--minutes")
            del rest[at : at + 2]
        rest += ["--minutes", str(budget)]
    if "--world-weights" not in rest:
        rest += ["--world-weights", str(known.world_weights)]
    train_model.main(rest)


if __name__ == "__main__":
    main()
