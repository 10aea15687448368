import base64
import io
import re

import imageio.v2 as imageio
import pandas as pd
import pytest
from PIL import Image

from reports.cli import report
from reports.plots import FIGURES


@pytest.fixture(scope="module")
def rendered(discriminating_run, tmp_path_factory):
    return report(discriminating_run, tmp_path_factory.mktemp("report"), n_boot=500)


def test_report_writes_markdown_html_figures_grids_and_tidy_tables(rendered, golden_spec):
    for name in (
        "report.md",
        "report.html",
        "rows.csv",
        "rows.parquet",
        "summary.csv",
        "summary.parquet",
    ):
        assert (rendered / name).is_file(), name
    assert sorted(p.stem for p in (rendered / "figures").glob("*.png")) == sorted(FIGURES)
    grids = sorted(p.name for p in (rendered / "grids").glob("*.mp4"))
    expected = [f"{c}__seed{s}.mp4" for c in golden_spec["cases"] for s in golden_spec["seeds"]]
    assert grids == sorted(expected)


def test_tidy_tables_round_trip_through_csv_and_parquet(rendered):
    summary = pd.read_parquet(rendered / "summary.parquet")
    from_csv = pd.read_csv(rendered / "summary.csv")
    assert len(summary) == len(from_csv) > 0
    speedup = summary[
        (summary["setting"] == "teacache_fast") & (summary["label"] == "speedup_wall")
    ]
    assert speedup["mean"].item() == pytest.approx(4.0)
    rows = pd.read_parquet(rows_path := rendered / "rows.parquet")
    assert len(rows) == len(pd.read_csv(rows_path.with_suffix(".csv")))
    assert {"case", "setting", "seed", "metric", "value", "backend", "frame"} <= set(rows.columns)


def test_html_embeds_every_plot_and_video_and_points_nowhere_else(rendered, golden_spec):
    text = (rendered / "report.html").read_text()
    for name in FIGURES:
        assert re.search(rf"id='fig-{name}'[^>]*src='data:image/png;base64,", text), name
    for case in golden_spec["cases"]:
        for seed in golden_spec["seeds"]:
            assert f"id='grid-{case}-seed{seed}'" in text
    assert text.count("src='data:image/gif;base64,") == 6
    assert text.count("src='data:video/mp4;base64,") == 6
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert "http://" not in text and "https://" not in text
    # Every embedded image decodes; the GIF previews animate.
    gifs = re.findall(r"data:image/gif;base64,([A-Za-z0-9+/=]+)", text)
    preview = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert preview.n_frames == 8  # self_a_8f has 8 frames


def test_html_and_markdown_hold_the_table_numbers(rendered):
    html_text = (rendered / "report.html").read_text()
    markdown = (rendered / "report.md").read_text()
    # Means with their CI: on one line in Markdown, the CI below the mean in HTML.
    assert re.search(r"33\.5 \[3[23][.\d]*, 3[45][.\d]*\]", markdown)
    assert re.search(r"26\.5<br><span class='ci'>\[2[56][.\d]*, 2[78][.\d]*\]", html_text)
    for text in (html_text, markdown):
        assert "psnr@baseline ↑" in text and "fvd@ground_truth ↓" in text
        assert "world-identity-encoder" in text and "i3d-kinetics400" in text
        assert "RuntimeError: out of memory" in text  # the failed unit is listed
    assert "![pareto](figures/pareto.png)" in markdown
    assert "![pareto_flops](figures/pareto_flops.png)" in markdown
    assert "(grids/self_b_12f__seed1.mp4)" in markdown
    assert (
        "(grids/self_b_12f__seed1.gif)" in markdown
        and (rendered / "grids" / "self_b_12f__seed1.gif").is_file()
    )


def test_markdown_and_html_show_the_same_sections_in_order(rendered):
    markdown = (rendered / "report.md").read_text()
    html_text = (rendered / "report.html").read_text()
    from_markdown = [
        (len(hashes), title.replace("`", ""))
        for hashes, title in re.findall(r"^(#+) (.+)$", markdown, re.M)
    ]
    from_html = [
        (int(level), re.sub(r"</?code>", "", title))
        for level, title in re.findall(r"<h(\d)>(.+?)</h\1>", html_text)
    ]
    assert from_markdown == from_html
    titles = [title for _, title in from_markdown]
    assert titles[0].startswith("FlashBench report:") and "Failed units" in titles
    assert titles.index("Speed") < titles.index("Figures") < titles.index("self_a_8f, seed 0")


def test_grid_has_reference_ground_truth_and_one_column_per_setting(rendered, golden_spec):
    frames = imageio.mimread(rendered / "grids" / "self_b_12f__seed0.mp4")
    columns = 2 + len(golden_spec["settings"])
    assert len(frames) == golden_spec["cases"]["self_b_12f"]
    # Columns are scaled to 128 rows from 16x16 squares: 128 wide each.
    assert frames[0].shape[1] == 128 * columns
    # The alp_k5 column (fourth), away from the moving bar, shows the tint of setting 1 + seed 0: green dominates.
    alp = frames[0][16:40, 3 * 128 + 100 : 3 * 128 + 124].reshape(-1, 3).mean(axis=0)
    assert alp[1] > alp[0] + 20 and alp[1] > alp[2] + 20


def test_report_warns_when_repeated_wall_times_spread_too_wide(make_run, tmp_path, caplog):
    # teacache's repeated timings spread 40% of their median, alp_k5's 5%: only teacache is flagged.
    noisy = make_run(
        "noisy", timing_spread={"baseline": 0.02, "alp_k5": 0.05, "teacache_fast": 0.4}
    )
    with caplog.at_level("WARNING", logger="reports.cli"):
        folder = report(noisy, tmp_path / "report", videos=False, n_boot=100)
    markdown = (folder / "report.md").read_text()
    warnings = [line for line in markdown.splitlines() if line.startswith("> **Warning:**")]
    assert len(warnings) == 1
    assert "wall time of 'teacache_fast' is too noisy to trust" in warnings[0]
    assert "spread 40% of their median" in warnings[0]
    assert "too noisy to trust" in (folder / "report.html").read_text()
    assert "teacache_fast" in caplog.text
    quiet = report(make_run("quiet"), tmp_path / "quiet", videos=False, n_boot=100)
    assert "Warning" not in (quiet / "report.md").read_text()


def test_report_leads_with_what_discriminates_and_the_seed_floor(rendered):
    html_text = (rendered / "report.html").read_text()
    markdown = (rendered / "report.md").read_text()
    for text in (html_text, markdown):
        lead, floor, speed = (
            text.index("What tells the settings apart"),
            text.index("Seed floor"),
            text.index("Speed"),
        )
        assert lead < floor < speed
        assert "≈ indistinguishable from re-seeding" in text
    # alp_k5 is as far from the baseline as re-seeding is; teacache_fast 3.5 dB further.
    assert "| psnr@baseline | re-seeded: 30 | ≈ | ✗ -3.5 |" in markdown
    # alp_k5's id_sim is 0.88 and teacache_fast's 0.70 against the baseline's 0.90 in every unit:
    # a constant paired difference, its CI one point, worse.
    assert "-0.02✗ [-0.02, -0.02]" in markdown and "-0.2✗ [-0.2, -0.2]" in markdown
    assert "-0.2✗<br><span class='ci'>[-0.2, -0.2]" in html_text


def test_differences_table_pairs_units_and_judges_direction(discriminating_run):
    from reports.differences import difference_table
    from reports.load import load_run

    table = difference_table(load_run(discriminating_run), n_boot=300)
    table = table.set_index(["setting", "metric"])
    assert table.loc[("teacache_fast", "id_sim@reference_image"), "verdict"] == "worse"
    assert table.loc[("alp_k5", "id_dist@reference_image"), "verdict"] == "worse"
    assert table.loc[("alp_k5", "id_sim@reference_image"), "n"] == 6
    assert table.loc[("alp_k5", "id_sim@reference_image"), "cases"] == 3
    assert not any(m.endswith("@baseline") for _, m in table.index)
    assert "reseeded" not in {s for s, _ in table.index}
    assert "wall_seconds" not in {m for _, m in table.index}
