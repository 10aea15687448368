"""Claims are decided on runs with CIs: bounds, directions, relative bounds, seed floors, dominance, and the results page."""

from __future__ import annotations

import tomllib

import pytest

from flashbench.suite.document import find_suite, load_suite
from reports.claims import (
    FAILS,
    REPRODUCES,
    UNDECIDED,
    UNMEASURED,
    Claim,
    Evidence,
    check,
    load_claims,
)
from reports.load import load_run
from reports.results import results
from reports.seed_floor import BEYOND, WITHIN


def evidence_of(path) -> dict[str, Evidence]:
    run = load_run(path)
    return {run.suite: Evidence.of(run, n_boot=200)}


def verdict(claim: Claim, evidence: dict[str, Evidence]) -> str:
    return check(claim, evidence.get(claim.suite))["verdict"]


def claim(**fields) -> Claim:
    return Claim(**{"suite": "golden", "statement": "s", "paper": "p", **fields})


def test_bounds_on_a_settings_mean_are_judged_on_its_ci(golden_run):
    evidence = evidence_of(golden_run)
    # alp_k5: 30 / 12 = 2.5x fewer passes, 2.4x fewer FLOPs; 2x faster in wall time, so 0.833
    # of its FLOP ratio (wall efficiency is over FLOPs, not passes: 0.8 of its NFE ratio).
    assert (
        verdict(claim(setting="alp_k5", metric="speedup_nfe", at_least=2.0), evidence) == REPRODUCES
    )
    assert verdict(claim(setting="alp_k5", metric="speedup_nfe", at_least=3.0), evidence) == FAILS
    row = check(claim(setting="alp_k5", metric="wall_efficiency", at_least=0.9), evidence["golden"])
    assert row["verdict"] == FAILS and row["ours"].startswith("0.833 ")
    assert (
        verdict(claim(setting="alp_k5", metric="wall_efficiency", at_least=0.82), evidence)
        == REPRODUCES
    )


def test_paired_directions_and_relative_changes_against_another_setting(golden_run):
    evidence = evidence_of(golden_run)
    worse = {"setting": "teacache_fast", "versus": "alp_k5", "metric": "psnr@baseline"}
    # teacache_fast is 7 dB below alp_k5 in every unit.
    assert verdict(claim(**worse, expect="lower"), evidence) == REPRODUCES
    assert verdict(claim(**worse, expect="higher"), evidence) == FAILS
    assert verdict(claim(**worse, expect="same"), evidence) == FAILS
    row = check(claim(**worse, at_most=0.02), evidence["golden"])
    assert row["verdict"] == REPRODUCES and row["ours"].startswith("-20.9%")
    better = {**worse, "setting": "alp_k5", "versus": "teacache_fast"}
    assert verdict(claim(**better, at_most=0.02), evidence) == FAILS  # +26%


def test_dominance_needs_no_more_passes_and_a_better_metric(golden_run, make_run):
    fields = {"metric": "psnr@baseline", "dominates": True}
    alp = claim(setting="alp_k5", versus="teacache_fast", **fields)
    teacache = claim(setting="teacache_fast", versus="alp_k5", **fields)
    # alp_k5 is 7 dB better but spends 12.5 GFLOP to teacache_fast's 10.4: a trade-off.
    evidence = evidence_of(golden_run)
    assert verdict(alp, evidence) == verdict(teacache, evidence) == UNDECIDED
    assert check(alp, evidence["golden"])["ours"].startswith("12.5 GFLOP vs 10.4 GFLOP;")
    # 10 dB lower, alp_k5 is worse at more cost: teacache_fast dominates it.
    evidence = evidence_of(make_run("shifted", psnr_shift={"alp_k5": -10.0}))
    assert verdict(alp, evidence) == FAILS
    assert verdict(teacache, evidence) == REPRODUCES


def test_seed_floor_claims_read_the_floor_table(discriminating_run):
    evidence = evidence_of(discriminating_run)
    floors = evidence["golden"].floors
    decided = {
        setting: verdict(claim(setting=setting, metric="psnr@baseline", seed_floor=True), evidence)
        for setting in ("alp_k5", "teacache_fast")
    }
    expected = {
        s: {WITHIN: REPRODUCES, BEYOND: FAILS}.get(v, UNDECIDED)
        for s, v in floors[floors["metric"] == "psnr@baseline"]
        .set_index("setting")["verdict"]
        .items()
        if s in decided
    }
    assert decided == expected == {"alp_k5": REPRODUCES, "teacache_fast": FAILS}


def test_a_claim_without_its_run_setting_or_metric_is_not_measured(golden_run):
    evidence = evidence_of(golden_run)
    assert (
        verdict(claim(suite="acceleration", setting="alp_k5", metric="speedup_nfe"), evidence)
        == UNMEASURED
    )
    assert (
        verdict(claim(setting="alp_k9", metric="speedup_nfe", at_least=1), evidence) == UNMEASURED
    )
    assert (
        verdict(
            claim(setting="alp_k5", metric="aed@driving", versus="baseline", expect="lower"),
            evidence,
        )
        == UNMEASURED
    )


def test_every_shipped_claim_names_settings_its_suite_has():
    for entry in load_claims():
        try:
            names = {s.name for s in load_suite(entry.suite).settings}
        except ValueError:  # nfeb_ablation validates only once its checkpoints are trained
            assert entry.suite == "nfeb_ablation"
            text = find_suite(entry.suite).read_text()
            names = {s["name"] for s in tomllib.loads(text)["settings"] if "name" in s}
        assert entry.setting in names, (entry.statement, entry.setting)
        assert entry.versus is None or entry.versus in names, (entry.statement, entry.versus)
        kinds = [
            entry.at_least is not None or (entry.at_most is not None and entry.versus is None),
            entry.versus is not None and (entry.expect is not None or entry.at_most is not None),
            entry.seed_floor,
            entry.dominates,
        ]
        assert sum(kinds) == 1, entry.statement


def test_results_page_holds_the_claims_and_each_runs_tables_and_figures(
    discriminating_run, tmp_path
):
    page = results([discriminating_run], tmp_path / "results", n_boot=200)
    text = page.read_text()
    assert text.startswith("# FlashBench results")
    assert "| suite | claim | paper | ours | verdict |" in text
    assert "`golden` (v1)" in text
    # the commands that re-make the run and the page, with the paths given
    assert f"flashbench run golden --out {discriminating_run}" in text
    assert f"flashbench results {discriminating_run} --out {tmp_path / 'results'}" in text
    figures = sorted(p.name for p in (tmp_path / "results" / "figures").iterdir())
    assert figures and all(name.startswith("golden_") for name in figures)
    assert all(f"figures/{name}" in text for name in figures)
    with pytest.raises(ValueError, match="two runs of suite 'golden'"):
        results([discriminating_run, discriminating_run], tmp_path / "again", n_boot=200)
