"""Claims are decided on runs with CIs: bounds, directions, relative bounds, seed floors, dominance, and the results page."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest

from flashbench.suite.document import find_suite, load_suite
from reports.claims import (
    FAILS,
    FLIPS,
    ONE,
    REPRODUCES,
    SAME,
    UNDECIDED,
    UNMEASURED,
    Claim,
    Evidence,
    check,
    claims_table,
    load_claims,
    regime_table,
)
from reports.load import load_run, with_temporal_deviation
from reports.results import results
from reports.seed_floor import BEYOND, WITHIN, floor_table


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
    assert row["ours"].endswith("vs alp_k5 (relative bound +2.0%)")
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
    # A fidelity-to-the-baseline claim names re-seeding's own distance (30 dB here), not a floor.
    row = check(
        claim(setting="alp_k5", metric="psnr@baseline", seed_floor=True), evidence["golden"]
    )
    assert row["ours"].endswith("vs the re-seeded baseline (30)")


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
            entry.versus is not None
            and (
                entry.expect is not None
                or entry.at_most is not None
                or entry.at_most_change is not None
            ),
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
    assert "| suite | testbed | claim | paper | ours | verdict |" in text
    assert "Across regimes" not in text  # one testbed: no regime table
    assert "`golden` (v1)" in text
    # the commands that re-make the run and the page, with the paths given
    assert f"flashbench run golden --out {discriminating_run}" in text
    assert f"flashbench results {discriminating_run} --out {tmp_path / 'results'}" in text
    figures = sorted(p.name for p in (tmp_path / "results" / "figures").iterdir())
    assert figures and all(name.startswith("golden_") for name in figures)
    assert all(f"figures/{name}" in text for name in figures)
    with pytest.raises(ValueError, match="two runs of suite 'golden' on reference v1"):
        results([discriminating_run, discriminating_run], tmp_path / "again", n_boot=200)


def test_a_suite_run_on_two_testbeds_gets_a_verdict_per_testbed_and_a_regime_row(
    make_run, tmp_path
):
    # The same suite on testbed v1 (a run from before model args were recorded) and on v2,
    # where ALP lands 10 dB lower: a fidelity bound it meets on v1 fails on v2.
    v1 = make_run("v1", psnr_shift={"alp_k5": 5.0})
    v2 = make_run("v2", psnr_shift={"alp_k5": -5.0}, model_args={"world": "v2"})
    runs = [load_run(v1), load_run(v2)]
    assert [r.testbed for r in runs] == ["reference v1", "reference v2"]
    evidence = [Evidence.of(run, n_boot=200) for run in runs]
    fidelity = claim(statement="fidelity", setting="alp_k5", metric="psnr@baseline", at_least=33.0)
    speed = claim(statement="speed", setting="alp_k5", metric="speedup_nfe", at_least=2.0)
    elsewhere = claim(suite="nowhere", statement="unrun", setting="alp_k5", metric="psnr@baseline",
                      at_least=1.0)  # fmt: skip
    table = claims_table(evidence, [fidelity, speed, elsewhere])
    assert table[["claim", "testbed", "verdict"]].values.tolist() == [
        ["fidelity", "reference v1", REPRODUCES],
        ["fidelity", "reference v2", FAILS],
        ["speed", "reference v1", REPRODUCES],
        ["speed", "reference v2", REPRODUCES],
        ["unrun", "–", UNMEASURED],
    ]
    regimes = regime_table(evidence, [fidelity, speed, elsewhere])
    assert list(regimes.columns) == ["claim", "reference v1", "reference v2", "across"]
    assert regimes["across"].tolist() == [FLIPS, SAME, UNMEASURED]
    assert regimes.iloc[2][["reference v1", "reference v2"]].tolist() == ["–", "–"]

    page = results([v1, v2], tmp_path / "results", n_boot=200).read_text()
    assert "## Across regimes" in page
    assert "`golden` on reference v1 (v1)" in page and "`golden` on reference v2 (v1)" in page
    assert f'flashbench run golden --model-args \'{{"world": "v2"}}\' --out {v2}' in page
    figures = sorted(p.name for p in (tmp_path / "results" / "figures").iterdir())
    v1_figures = [f for f in figures if f.startswith("golden_reference_v1_")]
    assert v1_figures and len(v1_figures) * 2 == len(figures)


def test_a_claim_and_its_exact_ode_counterpart_share_the_regime_row(make_run):
    run = load_run(make_run("ode", model_args={"components": 8}))
    # A run of another suite (the exact ODE's) on the gmm model: its testbed is "exact ODE".
    manifest = dict(run.manifest, suite="ode", model={"name": "gmm", "args": {"components": 8}})
    ode = Evidence.of(type(run)(**{**run.__dict__, "manifest": manifest}), n_boot=200)
    reference = Evidence.of(load_run(make_run("ref")), n_boot=200)
    fast = claim(statement="fast", setting="alp_k5", metric="speedup_nfe", at_least=2.0)
    again = claim(suite="ode", statement="Exact flow: fast", setting="alp_k5",
                  metric="speedup_nfe", at_least=5.0, same_as="fast")  # fmt: skip
    alone = claim(statement="alone", setting="alp_k5", metric="speedup_nfe", at_least=2.0)
    regimes = regime_table([reference, ode], [fast, again, alone])
    assert regimes.values.tolist() == [
        ["fast", REPRODUCES, FAILS, FLIPS],
        ["alone", REPRODUCES, "–", ONE],
    ]
    assert list(regimes.columns) == ["claim", "reference v1", "exact ODE", "across"]


def test_same_as_must_name_a_claim(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text(
        '[[claims]]\nsuite = "a"\nstatement = "x"\npaper = "p"\nsetting = "s"\n'
        'metric = "m"\nat_least = 1.0\nsame_as = "no such claim"\n'
    )
    with pytest.raises(
        ValueError, match="same_as = 'no such claim', which is no claim's statement"
    ):
        load_claims(path)


# ---------------------------------------------------------------- verdict rules on small rows


def _rows(metric, reference, unit, higher, values, cases=4):
    """One row per (case, seed), two seeds a case: ``values[setting]`` lists them case-major."""
    rows = []
    for setting, numbers in values.items():
        for index, value in enumerate(numbers):
            rows.append(
                {"case": f"c{index // 2}", "seed": index % 2, "setting": setting,
                 "metric": metric, "reference": reference, "value": float(value),
                 "unit": unit, "higher_is_better": higher}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _evidence(rows: pd.DataFrame) -> Evidence:
    units = with_temporal_deviation(rows)
    floors = floor_table(units, "baseline", n_boot=500)
    return Evidence(None, pd.DataFrame(columns=["setting", "label"]), units, floors)


def test_identity_distance_is_judged_in_its_units_not_relative_to_a_near_zero_base():
    # The baseline's calibrated distance is 0.001; alp's 0.004: +300%, but 0.003 on a scale
    # where another face is 1. A relative bound would fail it; the absolute bound passes it.
    rows = _rows("id_dist", "reference_image", "calibrated", False, {
        "baseline": [0.001] * 8,
        "alp": [0.004, 0.0041, 0.0039, 0.004, 0.004, 0.0042, 0.0038, 0.004],
    })  # fmt: skip
    fields = {"setting": "alp", "versus": "baseline", "metric": "id_dist@reference_image"}
    row = check(claim(**fields, at_most_change=0.02), _evidence(rows))
    assert row["verdict"] == REPRODUCES
    assert row["ours"].endswith("vs baseline (absolute bound +0.02 calibrated)")
    assert row["ours"].startswith("+0.003 [")
    assert check(claim(**fields, at_most_change=0.001), _evidence(rows))["verdict"] == FAILS
    with pytest.raises(ValueError, match=r"near-zero base.*at_most_change"):
        claim(**fields, at_most=0.02)


RESEED_STEPS = [0.01, -0.01, 0.02, 0.0, -0.01, 0.01, 0.0, 0.01]


def test_temporal_stability_is_judged_by_its_distance_from_one_against_the_seed_floor():
    # temporal: 1 = as stable as the truth. alp flickers (1.5), another setting freezes (0.5):
    # both are 0.5 away from 1, beyond re-seeding's +-0.02; a setting at 1.01 is within it.
    base = [1.0, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.0]
    rows = _rows("temporal", "ground_truth", "", None, {
        "baseline": base,
        "reseeded": [b + d for b, d in zip(base, RESEED_STEPS, strict=True)],
        "flicker": [b + 0.5 for b in base],
        "frozen": [b - 0.5 for b in base],
        "steady": [b + 0.01 for b in base],
    })  # fmt: skip
    evidence = _evidence(rows)
    decided = {
        setting: check(
            claim(setting=setting, metric="temporal_deviation@ground_truth", seed_floor=True),
            evidence,
        )
        for setting in ("flicker", "frozen", "steady")
    }
    assert decided["flicker"]["verdict"] == decided["frozen"]["verdict"] == FAILS
    assert decided["steady"]["verdict"] == REPRODUCES
    assert "vs floor ±" in decided["steady"]["ours"]


def test_claims_over_fewer_than_three_cases_are_undecided_and_say_no_interval():
    rows = _rows("aed", "driving", "", False, {
        "baseline": [0.5, 0.6, 0.5, 0.6],
        "better": [0.1, 0.2, 0.1, 0.2],
        "reseeded": [0.5, 0.6, 0.5, 0.6],
    })  # fmt: skip
    evidence = _evidence(rows)
    fields = {"setting": "better", "versus": "baseline", "metric": "aed@driving"}
    for test in ({"expect": "lower"}, {"expect": "same"}, {"at_most": 0.02},
                 {"at_most_change": 0.0}):  # fmt: skip
        row = check(claim(**fields, **test), evidence)
        assert row["verdict"] == UNDECIDED and "n = 2: no interval" in row["ours"], test
    row = check(claim(setting="better", metric="aed@driving", seed_floor=True), evidence)
    assert row["verdict"] == UNDECIDED and "n = 2: no interval" in row["ours"]
