import argparse

import pytest

from reports.cli import add_subcommands, compare, gate, leaderboard
from reports.compare import compare_runs
from reports.gate import Floor, failing_settings, parse_floor
from reports.load import load_run
from reports.tables import quality_table, summary_table

STRICT = {"min_psnr": 30.0, "min_ssim": 0.92, "min_id_sim": 0.95}


def _parser():
    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def _cli(*argv):
    args = _parser().parse_args([str(a) for a in argv])
    return args.func(args)


# ---------------------------------------------------------------- gate


def test_gate_fails_the_setting_below_fidelity_floors(golden_run, capsys):
    assert gate(golden_run, **STRICT) == 1
    assert "teacache_fast" in capsys.readouterr().out
    run = load_run(golden_run)
    failures = failing_settings(
        summary_table(run), run.baseline, [parse_floor("psnr@baseline>=30")]
    )
    assert list(failures["setting"]) == ["teacache_fast"]
    assert failures["value"].item() == pytest.approx(26.5)


def test_gate_passes_when_every_setting_meets_the_floors(make_run):
    complete = make_run("complete", failed_unit=False, plan=True)
    assert gate(complete, min_psnr=25.0, min_ssim=0.85, min_id_sim=0.9) == 0
    assert _cli("gate", complete, "--min-psnr", "25", "--floor", "fvd@ground_truth<=250") == 0


def test_gate_fails_a_run_with_a_failed_unit_whatever_the_floors(golden_run, capsys):
    # The golden run's setting "broken" failed on its only unit: it has no rows to judge.
    assert gate(golden_run, min_psnr=25.0, min_ssim=0.85, min_id_sim=0.9) == 1
    out = capsys.readouterr().out
    assert (
        "INCOMPLETE self_b_12f__broken__seed0 (broken): failed: RuntimeError: out of memory" in out
    )
    assert "gate FAILED: 1 planned unit(s) failed or have no rows (settings broken)" in out


def test_gate_fails_a_partial_run_naming_the_missing_units(make_run, capsys):
    partial = make_run("partial", failed_unit=False, plan=True)
    (partial / "rows" / "self_b_12f__alp_k5__seed1.json").unlink()
    assert gate(partial, min_psnr=25.0) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE self_b_12f__alp_k5__seed1 (alp_k5): no rows: never run or interrupted" in out
    assert "--resume" in out


def test_gate_resamples_as_many_times_as_bootstrap_says(discriminating_run, monkeypatch):
    import reports.gate

    asked = []
    for name in ("summary_table", "worse_than_floor"):
        real = getattr(reports.gate, name)

        def spy(*args, _real=real, **kwargs):
            asked.append(kwargs["n_boot"])
            return _real(*args, **kwargs)

        monkeypatch.setattr(reports.gate, name, spy)
    _cli(
        "gate",
        discriminating_run,
        "--min-psnr",
        "25",
        "--within-seed-floor",
        "psnr",
        "--bootstrap",
        "57",
    )
    assert asked == [57, 57]


def test_gate_on_the_ci_bound_is_stricter_than_on_the_mean(golden_run):
    # alp_k5's PSNR mean is 33.5; its cases average 33, 34 and 33.5, its CI reaching 33.
    assert gate(golden_run, min_psnr=33.2) == 1  # teacache fails on its mean
    run = load_run(golden_run)
    summary = summary_table(run)
    floor = [Floor("psnr", "baseline", 33.2, "min")]
    alp_only = summary[summary["setting"].isin(["baseline", "alp_k5"])]
    assert failing_settings(alp_only, run.baseline, floor).empty
    assert list(failing_settings(alp_only, run.baseline, floor, statistic="ci")["setting"]) == [
        "alp_k5"
    ]


def test_gate_on_the_ci_bound_of_two_cases_fails_as_undecided(make_run):
    # Two cases give no interval: the CI bound cannot pass a floor, and says why.
    path = make_run("two_cases")
    for rows in (path / "rows").glob("self_c_8f__*.json"):
        rows.unlink()
    run = load_run(path)
    summary = summary_table(run, n_boot=200)
    floor = [Floor("psnr", "baseline", 20.0, "min")]
    failures = failing_settings(summary, run.baseline, floor, statistic="ci")
    assert sorted(failures["setting"]) == ["alp_k5", "teacache_fast"]
    assert set(failures["reason"]) == {"undecided (n = 2: no interval)"}
    assert failing_settings(summary, run.baseline, floor).empty
    quality = quality_table(summary, run.baseline).set_index("setting")
    assert quality.loc["alp_k5", "psnr@baseline ↑"] == "33.5 (n = 2: no interval)"
    table = compare_runs(run, run, n_boot=200)
    assert not table["significant"].any() and table["ci_low"].isna().all()
    assert table["note"].str.startswith("undecided (n = 2: no interval)").all()


def test_gate_cli_exit_codes(golden_run, capsys):
    assert (
        _cli("gate", golden_run, "--min-psnr", "30", "--min-ssim", "0.92", "--min-id-sim", "0.95")
        == 1
    )
    # A floor on a metric the run lacks is a usage error, not a silent pass.
    assert _cli("gate", golden_run, "--max-lpips", "0.1") == 2
    assert "lpips" in capsys.readouterr().err
    assert _cli("gate", golden_run) == 2  # no floors at all


def test_floor_parsing_names_the_bad_value():
    assert parse_floor("psnr@baseline>=30") == Floor("psnr", "baseline", 30.0, "min")
    assert parse_floor("fvd <= 150") == Floor("fvd", None, 150.0, "max")
    with pytest.raises(ValueError, match="floor='psnr=30'"):
        parse_floor("psnr=30")


def test_ambiguous_floor_asks_for_a_reference(golden_run):
    run = load_run(golden_run)
    with pytest.raises(ValueError, match="ambiguous"):
        failing_settings(summary_table(run), run.baseline, [parse_floor("id_sim>=0.9")])


# ---------------------------------------------------------------- compare


def test_compare_a_run_with_itself_finds_no_difference(golden_run):
    run = load_run(golden_run)
    table = compare_runs(run, run, n_boot=200)
    assert not table["significant"].any() and (table["diff"] == 0).all()
    assert compare(golden_run, golden_run, n_boot=200) == 0


def test_compare_flags_a_significant_quality_drop_as_regression(golden_run, make_run, capsys):
    worse = make_run("worse", psnr_shift={"teacache_fast": -3.0})
    table = compare_runs(load_run(golden_run), load_run(worse), n_boot=500)
    flagged = table[table["regression"]]
    assert list(zip(flagged["setting"], flagged["metric"], strict=True)) == [
        ("teacache_fast", "psnr@baseline")
    ]
    row = flagged.iloc[0]
    assert row["diff"] == pytest.approx(-3.0) and row["ci_high"] < 0
    assert compare(golden_run, worse, n_boot=500) == 1
    assert "REGRESSION teacache_fast psnr@baseline" in capsys.readouterr().out
    assert _cli("compare", golden_run, worse, "--bootstrap", "200") == 1


def test_compare_flags_the_measurements_a_partial_run_lacks(make_run, capsys):
    full, partial = make_run("full"), make_run("partial")
    (partial / "rows" / "self_b_12f__alp_k5__seed1.json").unlink()
    table = compare_runs(load_run(full), load_run(partial), n_boot=200)
    lost = table[table["lost"]]
    assert set(lost["setting"]) == {"alp_k5"} and "psnr@baseline" in set(lost["metric"])
    assert lost["note"].str.startswith("missing in run B: 1 of 6 (case, seed)").all()
    assert compare(full, partial, n_boot=200) == 1
    assert "MISSING alp_k5 psnr@baseline: missing in run B: 1 of 6" in capsys.readouterr().out
    # The other way round nothing is lost.
    assert compare(partial, full, n_boot=200) == 0


def test_compare_does_not_flag_an_improvement(golden_run, make_run):
    better = make_run("better", psnr_shift={"alp_k5": 2.0})
    table = compare_runs(load_run(golden_run), load_run(better), n_boot=500)
    row = table[(table["setting"] == "alp_k5") & (table["metric"] == "psnr@baseline")].iloc[0]
    assert row["significant"] and not row["regression"]
    assert compare(golden_run, better, n_boot=200) == 0


def test_compare_across_backends_is_noted_not_flagged(golden_run, make_run):
    other = make_run("arcface", id_backend="arcface-w600k_mbf")
    table = compare_runs(load_run(golden_run), load_run(other), n_boot=200)
    ids = table[table["metric"] == "id_sim@baseline"]
    assert ids["note"].str.contains("backend differs").all() and not ids["regression"].any()


# ---------------------------------------------------------------- leaderboard


def test_leaderboard_ranks_by_speedup_among_settings_meeting_floors(golden_run, make_run):
    second = make_run("second", psnr_shift={"teacache_fast": 10.0})
    table = leaderboard([golden_run, second], ["psnr@baseline>=30"], n_boot=200)
    ranked = table[table["meets_floors"]]
    assert list(zip(ranked["run"], ranked["setting"], strict=True)) == [
        ("second", "teacache_fast"),
        ("golden", "alp_k5"),
        ("second", "alp_k5"),
        ("golden", "baseline"),
        ("second", "baseline"),
    ]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    dropped = table[~table["meets_floors"]]
    assert list(dropped["setting"]) == ["teacache_fast"] and dropped["rank"].isna().all()
    assert dropped["failed"].item() == "psnr@baseline >= 30"


def test_leaderboard_without_floors_ranks_the_fastest_first(golden_run, tmp_path):
    table = leaderboard([golden_run], out=tmp_path / "board", n_boot=200)
    assert list(table["setting"]) == ["teacache_fast", "alp_k5", "baseline"]
    assert (tmp_path / "board.csv").is_file() and (tmp_path / "board.parquet").is_file()


def test_leaderboard_refuses_mixed_protocols_and_backends(golden_run, make_run, capsys):
    with pytest.raises(ValueError, match="mix protocols"):
        leaderboard([golden_run, make_run("other", protocol="another-v2")])
    with pytest.raises(ValueError, match="protocol=null"):
        leaderboard([golden_run, make_run("adhoc", protocol=None)])
    with pytest.raises(ValueError, match="world-identity-encoder"):
        leaderboard([golden_run, make_run("arcface", id_backend="arcface-w600k_mbf")])
    with pytest.raises(ValueError, match=r"different models or weights.*dit_small\.pt"):
        leaderboard([golden_run, make_run("retrained", model_sha256="b" * 64)])
    # The same protocol on another testbed (--model-args) is another model: never ranked together.
    with pytest.raises(ValueError, match=r"different models or weights.*'world': 'v2'"):
        leaderboard([golden_run, make_run("v2", model_args={"world": "v2"})])
    # A run from before model args were recorded ranks beside one that records them as {}.
    assert not leaderboard([golden_run, make_run("recorded", model_args={})]).empty
    assert _cli("leaderboard", golden_run, make_run("other2", protocol="x")) == 2
    assert "mix protocols" in capsys.readouterr().err


def test_compare_lists_what_only_one_run_has(golden_run, make_run, capsys):
    partial = make_run("partial")
    for path in (partial / "rows").glob("*__alp_k5__*.json"):
        path.unlink()
    table = compare_runs(load_run(golden_run), load_run(partial), n_boot=200)
    only = table[table["note"] == "only in run A"]
    assert set(only["setting"]) == {"alp_k5"} and "psnr@baseline" in set(only["metric"])
    assert not table["regression"].any()
    # Losing a measurement fails the comparison; gaining one does not.
    assert compare(golden_run, partial, n_boot=200) == 1
    assert "MISSING alp_k5 psnr@baseline" in capsys.readouterr().out
    assert compare(partial, golden_run, n_boot=200) == 0


# ---------------------------------------------------------------- bad options, unwritable --out


@pytest.mark.parametrize("command", ["compare", "report", "leaderboard"])
def test_zero_bootstrap_resamples_is_one_line(golden_run, tmp_path, capsys, command):
    runs = [golden_run, golden_run] if command == "compare" else [golden_run]
    extra = ["--out", str(tmp_path / "out")] if command == "report" else []
    assert _cli(command, *runs, "--bootstrap", "0", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "error: n_boot=0 bootstrap resamples must be an integer >= 1; use e.g. --bootstrap 2000"
    )
    assert not (tmp_path / "out").exists()


def test_report_into_an_unwritable_out_is_one_line(golden_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _cli("report", golden_run, "--out", blocker / "report", "--no-videos") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Not a directory") and str(blocker) in err and "\n" not in err
