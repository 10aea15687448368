import numpy as np
import pytest

from reports.load import load_run
from reports.plots import pareto_front
from reports.tables import aggregate_rows, quality_table, speed_table, summary_table


@pytest.fixture(scope="module")
def summary(golden_run):
    return summary_table(load_run(golden_run))


def _cell(summary, setting, label):
    row = summary[(summary["setting"] == setting) & (summary["label"] == label)]
    assert len(row) == 1, (setting, label)
    return row.iloc[0]


@pytest.mark.parametrize(
    ("setting", "wall", "nfe", "flops"),
    [
        ("baseline", 1.0, 1.0, 1.0),
        ("alp_k5", 2.0, 2.5, 2.4),
        ("teacache_fast", 4.0, 3.0, 30 / 10.4),
    ],
)
def test_speedups_are_baseline_over_setting(summary, setting, wall, nfe, flops):
    assert _cell(summary, setting, "speedup_wall")["mean"] == pytest.approx(wall)
    assert _cell(summary, setting, "speedup_nfe")["mean"] == pytest.approx(nfe)
    assert _cell(summary, setting, "speedup_flops")["mean"] == pytest.approx(flops)
    # Every unit has the same ratio, so the bootstrap has nothing to vary.
    assert _cell(summary, setting, "speedup_wall")["ci_low"] == pytest.approx(wall)
    assert _cell(summary, setting, "speedup_wall")["ci_high"] == pytest.approx(wall)


def test_metric_means_and_cis_over_cases_and_seeds(summary):
    psnr = _cell(summary, "alp_k5", "psnr@baseline")
    assert psnr["mean"] == pytest.approx(33.5) and psnr["n"] == 6 and psnr["cases"] == 3
    assert 32.0 <= psnr["ci_low"] < psnr["mean"] < psnr["ci_high"] <= 35.0
    assert _cell(summary, "teacache_fast", "psnr@baseline")["mean"] == pytest.approx(26.5)
    assert _cell(summary, "baseline", "fvd@ground_truth")["mean"] == pytest.approx(100.0)
    # The aggregate row wins over the per-frame rows of the same metric.
    assert _cell(summary, "teacache_fast", "id_sim@reference_image")["mean"] == pytest.approx(0.7)
    assert _cell(summary, "alp_k5", "peak_bytes")["mean"] == pytest.approx(50 * 2**20)
    wall = _cell(summary, "baseline", "wall_seconds")
    assert wall["mean"] == pytest.approx(12.0) and wall["ci_low"] >= 8.0 and wall["ci_high"] <= 16.0


def test_summary_records_direction_and_backend(summary):
    assert bool(_cell(summary, "alp_k5", "fvd@ground_truth")["higher_is_better"]) is False
    assert _cell(summary, "alp_k5", "nfe")["higher_is_better"] is None
    assert _cell(summary, "alp_k5", "id_sim@baseline")["backend"] == "world-identity-encoder"


def test_a_metric_with_only_per_frame_rows_is_averaged_over_frames(golden_run):
    rows = load_run(golden_run).rows
    only_frames = rows[~((rows["metric"] == "id_sim") & rows["frame"].isna())]
    aggregate = aggregate_rows(only_frames)
    teacache = aggregate[
        (aggregate["setting"] == "teacache_fast")
        & (aggregate["metric"] == "id_sim")
        & (aggregate["reference"] == "reference_image")
        & (aggregate["case"] == "self_a_8f")
    ]
    # Frames 0..7 of 0.71 - 0.01 t average to 0.71 - 0.035.
    assert teacache["value"].to_numpy() == pytest.approx([0.675, 0.675])


def test_tables_put_the_baseline_first_and_show_arrows(summary):
    speed = speed_table(summary, "baseline")
    assert list(speed["setting"]) == ["baseline (baseline)", "alp_k5", "teacache_fast"]
    assert list(speed["NFE"]) == ["30", "12", "10"]
    assert list(speed["FLOPs"]) == ["30 GFLOP", "12.5 GFLOP", "10.4 GFLOP"]
    assert list(speed["speedup FLOPs ↑"]) == ["1", "2.4", "2.88"]
    assert list(speed["peak memory"]) == ["100 MiB", "50 MiB", "100 MiB"]
    quality = quality_table(summary, "baseline")
    assert "fvd@ground_truth ↓" in quality.columns and "psnr@baseline ↑" in quality.columns
    assert quality.loc[1, "psnr@baseline ↑"].startswith("33.5 [")
    assert quality.loc[0, "psnr@baseline ↑"] == "–"


def test_missing_baseline_is_a_clear_error(golden_run):
    run = load_run(golden_run)
    rows = run.rows[run.rows["setting"] != "baseline"]
    broken = type(run)(run.path, run.manifest, rows, run.traces, run.errors, run.videos)
    with pytest.raises(ValueError, match="baseline='baseline'"):
        summary_table(broken)


def test_pareto_front_keeps_only_undominated_points():
    speed = np.array([1.0, 2.0, 4.0, 3.0])
    quality = np.array([0.9, 0.88, 0.7, 0.6])
    assert list(pareto_front(speed, quality, True)) == [2, 1, 0]
    # Lower-is-better (FVD): every point trades speed for FVD, so all are on the front.
    assert list(pareto_front(speed, np.array([100, 110, 200, 150.0]), False)) == [2, 3, 1, 0]


def test_memory_frontier_is_drawn_only_where_caches_differ(discriminating_run):
    from reports.load import load_run
    from reports.plots import memory_figure
    from reports.tables import summary_table

    summary = summary_table(load_run(discriminating_run), n_boot=200)
    figure = memory_figure(summary)
    assert figure is not None
    # x is the cache in MiB: the golden run's alp_k5 keeps 12 MiB, the baseline none.
    first = figure.axes[0]
    xs = sorted(round(x, 6) for line in first.lines for x in line.get_xdata())
    assert 0.0 in xs and 12.0 in xs
    same = summary.copy()
    same.loc[same["metric"] == "cache_bytes", "mean"] = 5.0
    assert memory_figure(same) is None


def test_length_figure_plots_each_settings_mean_per_length_only_when_lengths_differ():
    import pandas as pd

    from reports.plots import length_figure

    def row(setting, frames, value, metric="aed", reference="driving", case="c0"):
        return {
            "case": case, "setting": setting, "frames": frames, "metric": metric,
            "reference": reference, "value": value, "higher_is_better": False, "frame": pd.NA,
        }  # fmt: skip

    rows = pd.DataFrame(
        [row("full", 16, v, case=c) for v, c in ((0.1, "c0"), (0.3, "c1"))]
        + [row("full", 160, 0.5), row("sliding", 16, 0.2), row("sliding", 160, 0.4)]
        + [row("full", 16, 9.0, metric="wall_seconds", reference="")]  # speed: not drawn
    )
    figure = length_figure(rows)
    (ax,) = [a for a in figure.axes if a.get_visible()]
    assert ax.get_ylabel() == "aed@driving ↓"
    drawn = {bars.get_label(): list(bars.lines[0].get_ydata()) for bars in ax.containers}
    assert drawn == {"full": pytest.approx([0.2, 0.5]), "sliding": pytest.approx([0.2, 0.4])}
    # One or two cases per point: no interval, so no bar (its segments are NaN).
    bars = [b.lines[2][0].get_segments() for b in ax.containers]
    assert all(np.isnan(np.asarray(s)).all() for segments in bars for s in segments)
    # a panel without the baseline (seams) keeps each setting's colour from the other panels
    seams = pd.DataFrame([row("sliding", n, 0.8, metric="seam", reference="") for n in (16, 160)])
    aed, seam = [a for a in length_figure(pd.concat([rows, seams])).axes if a.get_visible()]
    colour = {b.get_label(): b.lines[0].get_color() for a in (aed, seam) for b in a.containers}
    assert [b.lines[0].get_color() for b in seam.containers] == [colour["sliding"]]
    assert [b.lines[0].get_color() for b in aed.containers] == [colour["full"], colour["sliding"]]
    assert colour["full"] != colour["sliding"]
    assert length_figure(rows[rows["frames"] == 16]) is None


def test_flops_frontier_plots_flop_speedups_and_is_left_out_for_runs_without_flops(summary):
    from reports.plots import flops_figure

    figure = flops_figure(summary)
    xs = {round(x, 6) for ax in figure.axes for line in ax.lines for x in line.get_xdata()}
    assert {2.4, round(30 / 10.4, 6)} <= xs and 2.5 not in xs  # FLOPs, not full passes
    # Runs made before FLOPs were counted have no flops rows: no figure, and "–" in the table.
    older = summary[~summary["metric"].isin(["flops", "speedup_flops"])]
    assert flops_figure(older) is None
    assert set(speed_table(older, "baseline")["FLOPs"]) == {"–"}
