"""The seed floor in reports: floor table, gate --within-seed-floor and compare's note."""

from __future__ import annotations

import pytest

from reports.cli import add_subcommands, compare, gate
from reports.compare import compare_runs
from reports.load import load_run
from reports.seed_floor import BEYOND, WITHIN, floor_table, within_floor
from reports.tables import summary_table


def _cli(*argv) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_within_floor_follows_the_metric_direction():
    assert within_floor(41.0, 40.0, True) and not within_floor(39.0, 40.0, True)
    assert within_floor(0.01, 0.02, False) and not within_floor(0.03, 0.02, False)
    assert not within_floor(1.0, 1.0, None)


def test_floor_table_marks_settings_within_the_seed_floor(make_run):
    # alp_k5's psnr@baseline averages 33.5 dB, teacache_fast's 26.5; re-seeding is 30 dB away.
    run = load_run(make_run("floored", reseeded_psnr=30.0))
    table = floor_table(summary_table(run, n_boot=200), run.baseline).set_index("setting")
    assert table.loc["alp_k5", "verdict"] == WITHIN
    assert table.loc["teacache_fast", "verdict"] == BEYOND
    assert table.loc["alp_k5", "seed_floor"] == pytest.approx(30.0)
    assert set(table["metric"]) == {"psnr@baseline"}


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


def test_gate_within_seed_floor_without_reseeded_rows_says_how_to_get_them(make_run, capsys):
    run = make_run("plain", failed_unit=False, plan=True)
    assert _cli("gate", run, "--within-seed-floor", "psnr") == 2
    assert "reseeded" in capsys.readouterr().err


def test_compare_notes_a_difference_within_the_seed_floor(make_run):
    a, b = make_run("a", reseeded_psnr=30.0), make_run("b", reseeded_psnr=30.0)
    table = compare_runs(load_run(a), load_run(b), n_boot=200).set_index(["setting", "metric"])
    assert table.loc[("alp_k5", "psnr@baseline"), "note"].startswith(WITHIN)
    assert WITHIN not in table.loc[("teacache_fast", "psnr@baseline"), "note"]
    assert WITHIN not in table.loc[("alp_k5", "ssim@baseline"), "note"]  # no ssim floor
    assert compare(a, b, n_boot=200) == 0
