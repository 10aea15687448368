"""The headline figure: which metrics head it, which settings form a sweep, labels that do not overlap."""

import itertools

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.cli import report
from reports.differences import COLUMNS
from reports.headline import (
    VERDICT_COLOURS,
    families,
    family_of,
    headline_figure,
    headline_metrics,
    paired_separations,
    place_labels,
)


def summary_of(values: dict[str, dict[str, float]], nfe: dict[str, float], half: float = 0.1):
    """A summary table: {label: {setting: mean}} (label ``metric@reference``) plus NFE rows."""
    rows = []
    steppers = {"baseline": "euler", "reseeded": "euler"}
    for label, means in values.items():
        metric, reference = label.split("@")
        for setting, mean in means.items():
            rows.append((setting, metric, reference, label, True, mean, mean - half, mean + half))
    for setting, mean in nfe.items():
        rows.append((setting, "nfe", "", "nfe", None, mean, mean, mean))
    table = pd.DataFrame(
        rows,
        columns=["setting", "metric", "reference", "label", "higher_is_better", "mean",
                 "ci_low", "ci_high"],
    )  # fmt: skip
    table["stepper"] = [steppers.get(s, s.split("_")[0]) for s in table["setting"]]
    table["windowing"] = "full"
    return table


def test_a_sweeps_settings_share_a_family_and_nothing_else_does():
    assert family_of("alp_k2", "alp", "full") == family_of("alp_k8", "alp", "full")
    assert family_of("teacache_0p1", "teacache", "full") == family_of(
        "teacache_0p3", "teacache", "full"
    )
    assert family_of("alp_k5_n1", "alp", "full") != family_of("alp_k5", "alp", "full")
    assert family_of("alp_k2", "alp", "full") != family_of("alp_k2", "alp", "sliding")


def test_families_keep_the_suites_order_not_the_alphabets():
    nfe = {"baseline": 60, "teacache_0p3": 20, "teacache_0p1": 40, "fora_n3": 20, "reseeded": 60}
    summary = summary_of({"psnr@ground_truth": dict.fromkeys(nfe, 30.0)}, nfe)
    order = ["baseline", "teacache_0p3", "teacache_0p1", "fora_n3"]
    grouped = families(summary, order)
    assert list(grouped.values()) == [["baseline"], ["teacache_0p3", "teacache_0p1"], ["fora_n3"]]


def test_the_metrics_that_separate_settings_most_head_the_figure_one_per_reference():
    nfe = {"baseline": 60, "alp_k5": 18, "fora_n3": 20, "reseeded": 60}
    summary = summary_of(
        {
            # re-seeding moves PSNR vs truth by 0.5: ALP's drop of 3 dB is 6 floors
            "psnr@ground_truth": {
                "baseline": 31.0,
                "reseeded": 30.5,
                "alp_k5": 28.0,
                "fora_n3": 30.9,
            },
            # SSIM vs truth moves with PSNR: the same reference takes one panel
            "ssim@ground_truth": {"baseline": 0.9, "reseeded": 0.89, "alp_k5": 0.7, "fora_n3": 0.9},
            "psnr@baseline": {"reseeded": 37.0, "alp_k5": 38.0, "fora_n3": 37.5},
            "id_sim@reference_image": {
                "baseline": 0.5,
                "reseeded": 0.5,
                "alp_k5": 0.51,
                "fora_n3": 0.5,
            },
        },
        nfe,
    )
    chosen = headline_metrics(summary, "baseline")
    # Noise is the larger of the re-seed's change and the CI half-widths (0.1 here): ALP's
    # 1 dB over the re-seed against the baseline is 10 floors, its 3 dB drop vs truth 6 (0.5 dB
    # re-seed change); SSIM's 2 floors share PSNR's reference, identity's 0.1 floor is noise.
    assert [c.label for c in chosen] == ["psnr@baseline", "psnr@ground_truth"]
    assert [round(c.score, 6) for c in chosen] == [10, 6]


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=8))
def test_labels_placed_without_a_clash_do_not_overlap(points):
    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(-0.5, 1.5)
    named = [(x, y, f"setting_{i}", "C0") for i, (x, y) in enumerate(points)]
    place_labels(ax, named)
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
    assert len(boxes) == len(points)
    # Eight points in a 2x2 axes leave room enough: no two labels overlap.
    overlaps = [a.overlaps(b) for a, b in itertools.combinations(boxes, 2)]
    assert not any(overlaps)


def test_the_headline_caption_says_how_its_metrics_were_picked():
    nfe = {"baseline": 60, "alp_k2": 30, "alp_k5": 18, "reseeded": 60}
    summary = summary_of(
        {
            "psnr@ground_truth": {
                "baseline": 31.0,
                "reseeded": 30.5,
                "alp_k2": 30.0,
                "alp_k5": 28.0,
            },
            "psnr@baseline": {"reseeded": 37.0, "alp_k2": 40.0, "alp_k5": 36.0},
        },
        nfe,
    )
    figure, caption = headline_figure(summary, "baseline", ["baseline", "alp_k2", "alp_k5"])
    assert "`psnr@ground_truth`" in caption and "units of the seed floor" in caption
    assert "grey band" in figure.get_suptitle()
    assert all(ax.get_title().endswith("× the seed floor") for ax in figure.axes)
    # In each panel the sweep is one drawn line through its two settings, in sweep order.
    assert len(figure.axes) == 2
    for ax in figure.axes:
        drawn = [tuple(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "-"]
        assert (30.0, 18.0) in drawn


def test_a_run_without_a_re_seeded_baseline_claims_no_seed_floor():
    nfe = {"baseline": 60, "alp_k2": 30, "alp_k5": 18}
    summary = summary_of(
        {"psnr@ground_truth": {"baseline": 31.0, "alp_k2": 30.0, "alp_k5": 28.0}}, nfe
    )
    figure, caption = headline_figure(summary, "baseline", ["baseline", "alp_k2", "alp_k5"])
    assert "units of the CI half-width" in caption and "seed floor (" not in caption
    assert figure.axes[0].get_title().endswith("× the CI half-width")
    assert "grey band" not in figure.get_suptitle()
    assert not [p for p in figure.axes[0].patches if p.get_facecolor()[:3] == (0.85,) * 3]


def test_a_report_opens_its_figures_with_the_headline(discriminating_run, tmp_path):
    folder = report(discriminating_run, tmp_path / "report", videos=False, n_boot=50)
    text = (folder / "report.md").read_text()
    figures = text.split("## Figures", 1)[1]
    # The golden run counted FLOPs, so they are the cost axis (full passes for older runs).
    assert figures.lstrip().startswith("### Headline: quality vs FLOPs counted")
    assert "e+1" not in figures.split("\n", 1)[0]  # no separation over a rounding-level floor
    assert (folder / "figures" / "headline.png").is_file()


def differences_of(rows: list[tuple[str, str, bool, float, float, float, str]]) -> pd.DataFrame:
    """A paired-difference table from ``(setting, label, higher_is_better, diff, low, high, verdict)``."""
    records = [
        {"setting": setting, "metric": label, "higher_is_better": higher, "n": 32, "cases": 16,
         "baseline_mean": 0.0, "setting_mean": diff, "diff": diff, "ci_low": low,
         "ci_high": high, "verdict": verdict}
        for setting, label, higher, diff, low, high, verdict in rows
    ]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=COLUMNS)


# An ablation of one model's parts: every setting costs the same 60 passes. Marginally, the
# settings' CIs overlap everywhere (case-to-case spread); paired, pose error tells `add` apart.
ABLATION_NFE = {"paper": 60, "add": 60, "center": 60}
ABLATION = differences_of(
    [
        ("add", "apd@driving", False, -0.0023, -0.0041, -0.0005, "better"),
        ("center", "apd@driving", False, -0.0010, -0.0030, 0.0010, "no difference"),
        ("add", "aed@driving", False, -0.0046, -0.0135, 0.0043, "no difference"),
        ("center", "aed@driving", False, -0.0051, -0.0141, 0.0039, "no difference"),
        ("add", "psnr@ground_truth", True, 0.10, -0.01, 0.21, "no difference"),
        ("center", "psnr@ground_truth", True, 0.09, -0.02, 0.20, "no difference"),
        # one pooled number per setting: no interval, so no separation
        ("add", "fvd@ground_truth", False, -40.0, float("nan"), float("nan"), "undecided"),
        ("center", "fvd@ground_truth", False, -12.0, float("nan"), float("nan"), "undecided"),
    ]
)


def test_paired_separation_is_the_largest_difference_in_its_ci_half_widths():
    found = {s.label: s.score for s in paired_separations(ABLATION)}
    assert set(found) == {"apd@driving", "aed@driving", "psnr@ground_truth"}
    assert round(found["apd@driving"], 6) == round(0.0023 / 0.0018, 6)
    assert round(found["psnr@ground_truth"], 6) == round(0.10 / 0.11, 6)


def test_a_run_whose_settings_cost_the_same_heads_with_paired_differences():
    summary = summary_of(
        {"psnr@ground_truth": {"paper": 31.67, "add": 31.77, "center": 31.76}}, ABLATION_NFE, 1.0
    )
    figure, caption = headline_figure(summary, "paper", ["paper", "add", "center"], ABLATION)
    assert "paired difference from `paper`" in caption and "costs the same" in caption
    # One panel per reference: pose error (1.28 half-widths) heads, PSNR vs truth (0.91) joins
    # as the second; FVD has no interval.
    assert [ax.get_title().split(":")[0] for ax in figure.axes] == [
        "apd@driving",
        "psnr@ground_truth",
    ]
    pose = figure.axes[0]
    assert [t.get_text() for t in pose.get_xticklabels()] == ["add", "center"]
    # `add`'s decided improvement is drawn green, `center`'s undecided one grey.
    markers = [line for line in pose.get_lines() if line.get_marker() == "o"]
    assert [m.get_color() for m in markers] == [VERDICT_COLOURS["better"], "0.45"]
    assert [float(m.get_ydata()[0]) for m in markers] == [-0.0023, -0.0010]


def test_settings_at_different_costs_keep_the_quality_against_cost_headline():
    nfe = {"paper": 60, "add": 30, "center": 20}
    summary = summary_of({"psnr@ground_truth": {"paper": 31.0, "add": 30.0, "center": 28.0}}, nfe)
    _, caption = headline_figure(summary, "paper", ["paper", "add", "center"], ABLATION)
    assert caption.startswith("Headline: quality vs full passes (NFE)")
