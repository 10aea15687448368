"""The DiT's evaluation script runs end to end on the shipped weights and prints its table."""

from __future__ import annotations

from reference_model.evaluate_dit import main


def _rows(text: str) -> dict[str, list[float]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "answer":
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


def test_other_reference_rows_keep_the_pose_and_change_the_face(capsys):
    main(["--cases", "2", "--frames", "6", "--steps", "2", "--guidance", "0", "--other-reference"])
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == {
        "reference repeated",
        "other identity, same motion",
        "autoencoder round trip of the truth",
        "model (cfg 0)",
        "reference showing another expression",
        "model (cfg 0), reference showing another expression",
    }
    # Columns: PSNR, PSNR 1.., expression error, pose, eyes, brows, mouth, ...
    repeated, other = rows["reference repeated"], rows["reference showing another expression"]
    assert abs(other[3] - repeated[3]) < 0.01  # the same head pose as the truth's first frame
    assert other[2] > 2 * repeated[2]  # but eyes, brows and mouth drawn elsewhere


def test_the_closed_eye_probe_closes_only_the_references_eyes_and_reports_a_ratio(capsys):
    main(["--cases", "2", "--frames", "6", "--steps", "2", "--guidance", "0", "--closed-eye-probe"])
    out = capsys.readouterr().out
    rows = _rows("\n".join(line for line in out.splitlines() if line.startswith("| ")))
    repeated, closed = rows["reference repeated"], rows["reference with the eyes closed"]
    # Columns: PSNR, PSNR 1.., expression error, pose, eyes, brows, mouth, ...
    assert abs(closed[3] - repeated[3]) < 0.01 and abs(closed[5] - repeated[5]) < 0.02
    assert closed[4] > repeated[4] + 0.2  # the eyes, and only they, read far from the truth's
    assert "model (cfg 0), reference with the eyes closed" in rows
    probe = [line for line in out.splitlines() if line.startswith("  cfg 0:")]
    assert len(probe) == 1 and "of the truth's" in probe[0]


def test_the_grid_shows_as_many_clips_as_were_sampled(tmp_path):
    import torch
    from PIL import Image

    from reference_model.evaluate_dit import write_grid

    videos = {"truth": torch.rand(2, 3, 5, 8, 8), "baseline": torch.rand(2, 3, 5, 8, 8)}
    write_grid(videos, tmp_path / "grid.png", clips=3, frames=4)
    width, height = Image.open(tmp_path / "grid.png").size
    # 2 clips x 2 rows of 4 tiles of 8 px with 1 px padding.
    assert (width, height) == (4 * 9 + 1, 4 * 9 + 1)
