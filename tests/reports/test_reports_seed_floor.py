"""The seed floor in reports: floors for every metric, verdicts, gate --within-seed-floor, compare."""

from __future__ import annotations

import pandas as pd
import pytest

from reports.cli import add_subcommands, compare, gate
from reports.compare import compare_runs
from reports.differences import floor_matrix
from reports.load import RESEEDED, load_run
from reports.seed_floor import (
    BETTER,
    BEYOND,
    UNDECIDED,
    WITHIN,
    floor_table,
    floor_verdict,
    seed_floors,
    worse_than_floor,
)
from reports.tables import aggregate_rows


def _cli(*argv) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def _units(setting, values, metric="psnr", reference="ground_truth", higher=True, pooled=False):
    """One row per unit (case, seed), as ``aggregate_rows`` gives them."""
    keys = [("*", -1)] if pooled else [(f"case{i // 2}", i % 2) for i in range(len(values))]
    return [
        {"case": case, "seed": seed, "setting": setting, "metric": metric,
         "reference": reference, "value": float(v), "higher_is_better": higher}
        for (case, seed), v in zip(keys, values, strict=True)
    ]  # fmt: skip


# psnr@ground_truth of the baseline per unit; re-seeding moves it by at most 0.2 dB.
BASE = [30.0, 31.0, 29.0, 30.5, 29.5, 30.2, 31.2, 28.8]
RESEED = [0.2, 0.1, -0.1, -0.2, 0.15, 0.05, -0.15, -0.05]


def _ground_truth_rows(**offsets: list[float]) -> pd.DataFrame:
    rows = _units("baseline", BASE) + _units(
        RESEEDED, [b + r for b, r in zip(BASE, RESEED, strict=True)]
    )
    for setting, offset in offsets.items():
        rows += _units(setting, [b + o for b, o in zip(BASE, offset, strict=True)])
    return pd.DataFrame(rows)


def test_floor_verdict_puts_the_ci_against_the_floor():
    # Higher is better: a change of -3 [-4, -2] is a worsening of 2 to 4.
    assert floor_verdict(-4.0, -2.0, 1.0, True, one_sided=False) == BEYOND
    assert floor_verdict(-0.5, 0.5, 1.0, True, one_sided=False) == WITHIN
    assert floor_verdict(2.0, 4.0, 1.0, True, one_sided=False) == BETTER
    assert floor_verdict(-2.0, 0.5, 1.0, True, one_sided=False) == UNDECIDED
    assert floor_verdict(0.5, 2.0, 1.0, False, one_sided=False) == UNDECIDED
    # @baseline (floor 0): closer to the baseline than re-seeding is within, straddling undecided.
    assert floor_verdict(2.0, 4.0, 0.0, True, one_sided=True) == WITHIN
    assert floor_verdict(-1.0, 1.0, 0.0, True, one_sided=True) == UNDECIDED
    # Without a direction, two-sided.
    assert floor_verdict(2.0, 3.0, 1.0, None, one_sided=False) == BEYOND
    assert floor_verdict(-3.0, -2.0, 1.0, None, one_sided=False) == BEYOND
    assert floor_verdict(-0.5, 0.9, 1.0, None, one_sided=False) == WITHIN


def test_ground_truth_floor_is_the_reseeded_change_and_judges_settings_by_their_ci():
    # Mean 0, its cases' means far apart: a CI far wider than the floor.
    noisy = [1.5, 1.5, -1.2, -1.2, 1.5, 1.5, -1.8, -1.8]
    rows = _ground_truth_rows(same=[0.0] * 8, shifted=[-3.0] * 8, noisy=noisy, improved=[3.0] * 8)
    floor = seed_floors(rows, "baseline", n_boot=500)["psnr@ground_truth"]
    # The larger |bound| of the CI of the re-seed's mean change: within its largest case mean.
    assert 0.0 < floor.floor <= 0.2 and floor.versus == "baseline"
    table = floor_table(rows, "baseline", n_boot=500).set_index("setting")
    assert table.loc["same", "verdict"] == WITHIN
    assert table.loc["shifted", "verdict"] == BEYOND
    assert table.loc["noisy", "verdict"] == UNDECIDED
    assert table.loc["improved", "verdict"] == BETTER
    assert table.loc["shifted", "diff"] == pytest.approx(-3.0)
    assert RESEEDED not in table.index
    failures = worse_than_floor(rows, "baseline", ["psnr@ground_truth"], n_boot=500)
    assert sorted(failures["setting"]) == ["noisy", "shifted"]
    assert failures.set_index("setting").loc["noisy", "reason"].startswith(UNDECIDED)


def test_pooled_floor_compares_single_values_with_the_reseeded_difference():
    rows = pd.DataFrame(
        _units("baseline", [100.0], "fvd", "ground_truth", False, pooled=True)
        + _units(RESEEDED, [112.0], "fvd", "ground_truth", False, pooled=True)
        + _units("close", [110.0], "fvd", "ground_truth", False, pooled=True)
        + _units("far", [200.0], "fvd", "ground_truth", False, pooled=True)
        + _units("lower", [50.0], "fvd", "ground_truth", False, pooled=True)
    )
    table = floor_table(rows, "baseline", n_boot=200).set_index("setting")
    assert table.loc["close", "seed_floor"] == pytest.approx(12.0)
    assert (table["n"] == 1).all()
    assert table.loc["close", "verdict"] == WITHIN
    assert table.loc["far", "verdict"] == BEYOND
    assert table.loc["lower", "verdict"] == BETTER


def test_unknown_seed_floor_names_the_floors_and_the_closest():
    rows = _ground_truth_rows(same=[0.0] * 8)
    with pytest.raises(ValueError, match=r"did you mean 'psnr@ground_truth'.*psnr@ground_truth"):
        worse_than_floor(rows, "baseline", ["psnr@ground_truht"])
    rows = pd.concat([rows, pd.DataFrame(_units(RESEEDED, BASE, reference="baseline"))])
    with pytest.raises(ValueError, match=r"ambiguous.*psnr@baseline.*psnr@ground_truth"):
        worse_than_floor(rows, "baseline", ["psnr"])


def test_floor_table_marks_settings_within_the_seed_floor(make_run):
    # alp_k5's psnr@baseline averages 33.5 dB, teacache_fast's 26.5; re-seeding is 30 dB away.
    run = load_run(make_run("floored", reseeded_psnr=30.0))
    table = floor_table(aggregate_rows(run.rows), run.baseline, n_boot=200).set_index("setting")
    assert table.loc["alp_k5", "verdict"] == WITHIN
    assert table.loc["teacache_fast", "verdict"] == BEYOND
    # @baseline figures pair a setting with re-seeding's distance: floor 0 on that change.
    assert table.loc["alp_k5", "reseeded_mean"] == pytest.approx(30.0)
    assert table.loc["alp_k5", "diff"] == pytest.approx(3.5)
    assert table.loc["alp_k5", "versus"] == RESEEDED
    assert set(table["metric"]) == {"psnr@baseline"}
    # The report's matrix shows re-seeding's distance there, not a band of 0.
    matrix = floor_matrix(table.reset_index()).set_index("metric")
    assert matrix.loc["psnr@baseline", "seed floor"] == "re-seeded: 30"
    assert matrix.loc["psnr@baseline", "alp_k5"] == "≈"
    assert matrix.loc["psnr@baseline", "teacache_fast"] == "✗ -3.5"


def test_gate_within_seed_floor_fails_only_settings_beyond_it(make_run, capsys):
    run = make_run("floored", reseeded_psnr=30.0, failed_unit=False, plan=True)
    assert gate(run, seed_floor=["psnr"]) == 1
    out = capsys.readouterr().out
    assert "teacache_fast" in out.splitlines()[-1] and "alp_k5" not in out.splitlines()[-1]
    # With re-seeding 20 dB away, both settings are as close to the baseline as a re-seed.
    assert _cli("gate", make_run("loose", reseeded_psnr=20.0, failed_unit=False, plan=True),
                "--within-seed-floor", "psnr") == 0  # fmt: skip
    # Combined with a bound floor, both must hold.
    assert gate(make_run("both", reseeded_psnr=20.0, failed_unit=False, plan=True),
                seed_floor=["psnr"], min_ssim=0.9) == 1  # fmt: skip


def test_gate_within_seed_floor_of_a_ground_truth_metric(make_run, capsys):
    run = make_run("temporal", temporal=True, failed_unit=False, plan=True)
    assert _cli("gate", run, "--within-seed-floor", "temporal@ground_truth") == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert "teacache_fast" in last and "alp_k5" not in last
    assert _cli("gate", run, "--within-seed-floor", "temporal@ground_trth") == 2
    assert "did you mean 'temporal@ground_truth'" in capsys.readouterr().err


def test_gate_within_seed_floor_without_reseeded_rows_says_how_to_get_them(make_run, capsys):
    run = make_run("plain", failed_unit=False, plan=True)
    assert _cli("gate", run, "--within-seed-floor", "psnr") == 2
    assert "reseeded" in capsys.readouterr().err


def test_compare_notes_a_difference_within_the_seed_floor(make_run):
    a = make_run("a", reseeded_psnr=30.0, temporal=True)
    b = make_run("b", reseeded_psnr=30.0, temporal=True)
    table = compare_runs(load_run(a), load_run(b), n_boot=200).set_index(["setting", "metric"])
    assert table.loc[("alp_k5", "psnr@baseline"), "note"].startswith(WITHIN)
    assert WITHIN not in table.loc[("teacache_fast", "psnr@baseline"), "note"]
    assert WITHIN not in table.loc[("alp_k5", "ssim@baseline"), "note"]  # no ssim floor
    assert table.loc[("alp_k5", "temporal@ground_truth"), "note"].startswith(WITHIN)
    assert WITHIN not in table.loc[("teacache_fast", "temporal@ground_truth"), "note"]
    assert compare(a, b, n_boot=200) == 0
