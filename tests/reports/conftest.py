"""Golden run directories with hand-written rows whose summary numbers are known."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

# Three cases: the fewest a clustered bootstrap gives an interval over (reports.bootstrap).
CASES = {"self_a_8f": 8, "self_b_12f": 12, "self_c_8f": 8}
SEEDS = (0, 1)
SETTINGS = {
    # name: (stepper, windowing)
    "baseline": ("euler", "full"),
    "alp_k5": ("alp", "sliding"),
    "teacache_fast": ("teacache", "full"),
}
# Baseline wall time per case; each setting is a fixed divisor, so speedups are exact.
BASE_WALL = {"self_a_8f": 8.0, "self_b_12f": 16.0, "self_c_8f": 12.0}
WALL_DIVISOR = {"baseline": 1.0, "alp_k5": 2.0, "teacache_fast": 4.0}
NFE = {"baseline": 30, "alp_k5": 12, "teacache_fast": 10}
# FLOPs counted: 1 GFLOP a full pass, and the partial work besides (alp_k5's forecasts run the
# embedding and head, teacache_fast's reuses the embedding): 2.4x and ~2.9x fewer than the baseline.
FLOPS = {"baseline": 30e9, "alp_k5": 12.5e9, "teacache_fast": 10.4e9}
PEAK_MIB = {"baseline": 100.0, "alp_k5": 50.0, "teacache_fast": 100.0}
CACHE_MIB = {"baseline": 0.0, "alp_k5": 12.0, "teacache_fast": 1.0}
# Per (case, seed) in the order (a,0), (a,1), (b,0), (b,1), (c,0), (c,1).
PSNR_VS_BASELINE = {
    "alp_k5": [32.0, 34.0, 33.0, 35.0, 33.0, 34.0],
    "teacache_fast": [25.0, 27.0, 26.0, 28.0, 26.0, 27.0],
}
SSIM_VS_BASELINE = {"alp_k5": 0.95, "teacache_fast": 0.88}
ID_SIM_VS_BASELINE = {"alp_k5": 0.98, "teacache_fast": 0.90}
ID_SIM = {"baseline": 0.90, "alp_k5": 0.88, "teacache_fast": 0.70}
ID_DRIFT_PER_FRAME = {"baseline": 0.001, "alp_k5": 0.002, "teacache_fast": 0.01}
FVD = {"baseline": 100.0, "alp_k5": 110.0, "teacache_fast": 200.0}
# temporal@ground_truth per unit: the baseline's values, and each setting's offset from them.
# Re-seeding moves it by at most 0.05; alp_k5 not at all; teacache_fast by 1 (beyond).
TEMPORAL_BASELINE = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95]
TEMPORAL_OFFSET = {
    "baseline": [0.0] * 6,
    "reseeded": [0.05, -0.05, 0.04, -0.04, 0.03, -0.03],
    "alp_k5": [0.0] * 6,
    "teacache_fast": [1.0] * 6,
}
STEPS = 10


@dataclass(frozen=True)
class Golden:
    """Knobs that make variants of the golden run (for compare and leaderboard tests)."""

    protocol: str | None = "flashbench-golden-v1"
    psnr_shift: dict[str, float] = field(default_factory=dict)
    id_backend: str = "world-identity-encoder"
    videos: bool = True
    # The failed unit of setting "broken" in errors/, and plan.json listing the units.
    failed_unit: bool = True
    plan: bool = False
    # setting -> IQR / median of its repeated wall times (rows wall_seconds_iqr); none by default.
    timing_spread: dict[str, float] = field(default_factory=dict)
    # psnr@baseline of the re-seeded baseline (its seed floor) in every unit; None: no such rows.
    reseeded_psnr: float | None = None
    # temporal@ground_truth rows of every setting and of the re-seeded baseline (TEMPORAL_*).
    temporal: bool = False
    # Per-frame id_dist@reference_image and background_noise@ground_truth rows (drift, flicker).
    discriminating: bool = False
    # sha256 of the model's weights file, as the manifest's "model" records it.
    model_sha256: str = "a" * 64
    # The model's parameters as the manifest records them (None: a run from before they were).
    model_args: dict | None = None


def _row(case, setting, seed, metric, value, unit, hib, backend, reference, frame=None):
    # The re-seeded baseline samples like the baseline.
    stepper, windowing = SETTINGS["baseline" if setting == "reseeded" else setting]
    return {
        "case": case,
        "setting": setting,
        "seed": seed,
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "higher_is_better": hib,
        "backend": backend,
        "reference": reference,
        "frame": frame,
        "frames": CASES[case],
        "stepper": stepper,
        "windowing": windowing,
    }


def unit_rows(case: str, setting: str, seed: int, index: int, golden: Golden) -> list[dict]:
    """All rows of one unit; ``index`` is the unit's position in (case, seed) order."""
    wall = BASE_WALL[case] / WALL_DIVISOR[setting]
    rows = [
        _row(case, setting, seed, "wall_seconds", wall, "s", False, "timer", ""),
        _row(case, setting, seed, "nfe", NFE[setting], "passes", None, "timer", ""),
        _row(case, setting, seed, "flops", FLOPS[setting], "FLOPs", None, "timer", ""),
        _row(case, setting, seed, "peak_bytes", PEAK_MIB[setting] * 2**20, "bytes", None, "timer", ""),
        _row(case, setting, seed, "cache_bytes", CACHE_MIB[setting] * 2**20, "bytes", None, "timer", ""),
        _row(case, setting, seed, "fps", CASES[case] / wall, "frames/s", True, "timer", ""),
        _row(case, setting, seed, "id_sim", ID_SIM[setting], "cosine", True, golden.id_backend, "reference_image"),
        _row(case, setting, seed, "fvd", FVD[setting], "", False, "i3d-kinetics400", "ground_truth"),
    ]  # fmt: skip
    for frame in range(CASES[case]):
        value = ID_SIM[setting] + 0.01 - ID_DRIFT_PER_FRAME[setting] * frame
        rows.append(
            _row(case, setting, seed, "id_sim", value, "cosine", True, golden.id_backend,
                 "reference_image", frame)
        )  # fmt: skip
    if setting in golden.timing_spread:
        iqr = golden.timing_spread[setting] * wall
        rows.append(_row(case, setting, seed, "wall_seconds_iqr", iqr, "s", None, "timer", ""))
    if golden.discriminating:
        for frame in range(CASES[case]):
            drift = ID_DRIFT_PER_FRAME[setting] * frame
            rows += [
                _row(case, setting, seed, "id_dist", 0.05 + 10 * drift, "calibrated", False,
                     "world-identity-encoder", "reference_image", frame),
                _row(case, setting, seed, "background_noise", 2e-3 + drift / 10, "", False,
                     "temporal-l2", "ground_truth", frame),
            ]  # fmt: skip
    # The runner writes the re-seeded baseline's rows into the baseline unit's rows file.
    if setting == "baseline" and golden.reseeded_psnr is not None:
        rows.append(
            _row(
                case, "reseeded", seed, "psnr", golden.reseeded_psnr, "dB", True, "psnr", "baseline"
            )
        )
    if golden.temporal:
        for name in (setting, "reseeded") if setting == "baseline" else (setting,):
            value = TEMPORAL_BASELINE[index] + TEMPORAL_OFFSET[name][index]
            rows.append(
                _row(case, name, seed, "temporal", value, "", None, "temporal-l2", "ground_truth")
            )
    if setting != "baseline":
        psnr = PSNR_VS_BASELINE[setting][index] + golden.psnr_shift.get(setting, 0.0)
        rows += [
            _row(case, setting, seed, "psnr", psnr, "dB", True, "torchmetrics", "baseline"),
            _row(case, setting, seed, "ssim", SSIM_VS_BASELINE[setting], "", True, "torchmetrics", "baseline"),
            _row(case, setting, seed, "id_sim", ID_SIM_VS_BASELINE[setting], "cosine", True, golden.id_backend, "baseline"),
        ]  # fmt: skip
    return rows


def unit_trace(setting: str) -> list[dict]:
    """Baseline computes every step; alp computes even steps in two windows; teacache reuses."""
    records = []
    windows = [[0, 8], [4, 12]] if setting == "alp_k5" else [[0, 12]]
    for step in range(STEPS):
        sigma = 1.0 - step / STEPS
        for window in windows:
            if setting == "baseline":
                action = "compute"
            elif setting == "alp_k5":
                action = "compute" if step % 2 == 0 else "predict"
            else:
                action = "compute" if step in (0, 4, 9) else "reuse"
            records.append({"step": step, "sigma": sigma, "window": window, "branch": "cond",
                            "action": action, "seconds": 0.01})  # fmt: skip
    return records


def _frames(count: int, tint: int, size: int = 16) -> np.ndarray:
    frames = np.zeros((count, size, size, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, :, :, tint % 3] = 40 + 15 * t
        frames[t, 4:12, (t % 8) : (t % 8) + 4, :] = 255  # a moving bar shows motion
    return frames


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    imageio.mimwrite(path, list(frames), fps=8, macro_block_size=1)


def write_golden_run(root: Path, golden: Golden = Golden()) -> Path:
    """Write a complete golden run directory at ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("rows", "traces", "errors"):
        (root / sub).mkdir(exist_ok=True)
    manifest = {
        "suite": "golden",
        "suite_version": 1,
        "suite_hash": "0" * 64,
        "protocol": golden.protocol,
        "baseline": "baseline",
        "versions": {"flashbench": "0.1.0"},
        "git": "deadbeef",
        "device": {"torch": "2.14.1", "device": "cpu"},
        "threads": 2,
        "seeds": list(SEEDS),
        "metric_backends": {"id_sim": {"backend": golden.id_backend, "weights": {}}},
        "model": {"name": "reference", "weights": {"dit_small.pt": golden.model_sha256}},
        "format_version": 1,
        "created": "2026-11-24T18:00:00Z",
    }
    if golden.model_args is not None:
        manifest["model"]["args"] = golden.model_args
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / "suite.toml").write_text('name = "golden"\n')
    index = {(c, s): i for i, (c, s) in enumerate((c, s) for c in CASES for s in SEEDS)}
    for case in CASES:
        for seed in SEEDS:
            for setting in SETTINGS:
                unit = f"{case}__{setting}__seed{seed}"
                rows = unit_rows(case, setting, seed, index[case, seed], golden)
                (root / "rows" / f"{unit}.json").write_text(
                    json.dumps({"unit": unit, "rows": rows})
                )
                (root / "traces" / f"{unit}.json").write_text(json.dumps(unit_trace(setting)))
    if golden.failed_unit:
        (root / "errors" / "self_b_12f__broken__seed0.json").write_text(
            json.dumps({"unit": "self_b_12f__broken__seed0", "case": "self_b_12f",
                        "setting": "broken", "seed": 0, "error": "RuntimeError: out of memory"})
        )  # fmt: skip
    if golden.plan:
        units = [f"{c}__{s}__seed{k}" for c in CASES for k in SEEDS for s in SETTINGS]
        (root / "plan.json").write_text(json.dumps({"units": units, "pooled": []}))
    if golden.videos:
        for case, count in CASES.items():
            folder = root / "videos" / case
            folder.mkdir(parents=True, exist_ok=True)
            imageio.imwrite(folder / "reference.png", _frames(1, 0)[0])
            _write_mp4(folder / "ground_truth.mp4", _frames(count, 1))
            for tint, setting in enumerate(SETTINGS):
                for seed in SEEDS:
                    _write_mp4(folder / f"{setting}__seed{seed}.mp4", _frames(count, tint + seed))
    return root


@pytest.fixture(scope="session")
def golden_run(tmp_path_factory) -> Path:
    return write_golden_run(tmp_path_factory.mktemp("runs") / "golden")


@pytest.fixture(scope="session")
def discriminating_run(tmp_path_factory) -> Path:
    """The golden run with a seed floor and per-frame identity-distance and flicker rows."""
    golden = Golden(reseeded_psnr=30.0, discriminating=True)
    return write_golden_run(tmp_path_factory.mktemp("runs") / "golden", golden)


@pytest.fixture
def make_run(tmp_path):
    """Build a variant golden run (without videos unless asked) under a fresh name."""

    def make(name: str, **knobs) -> Path:
        knobs.setdefault("videos", False)
        return write_golden_run(tmp_path / name, Golden(**knobs))

    return make


@pytest.fixture(scope="session")
def golden_spec():
    """The golden run's layout, for tests that count rows (conftest is not importable)."""
    return {"cases": CASES, "seeds": SEEDS, "settings": SETTINGS}
