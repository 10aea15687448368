"""Peer rankings across regimes: which pairs of settings keep their order of fidelity on every testbed."""

from __future__ import annotations

import pytest

from reports.claims import Claim, Evidence
from reports.load import load_run
from reports.rankings import (
    FLIPS,
    HOLDS,
    OPEN,
    families,
    pair_table,
    rank_table,
    ranking_sections,
)
from reports.results import results

# The golden run's psnr@baseline: alp_k5 sits 7 dB above teacache_fast in every unit.
GAP = 7.0


def _evidence(*runs) -> list[Evidence]:
    return [Evidence.of(load_run(run), n_boot=200) for run in runs]


def _on_v2(make_run, name: str, teacache_shift: float):
    return make_run(name, psnr_shift={"teacache_fast": teacache_shift}, model_args={"world": "v2"})


@pytest.mark.parametrize(
    ("teacache_shift", "across", "v2_difference"),
    [
        (0.0, HOLDS, GAP),  # alp_k5 ahead on both testbeds
        (GAP + 3.0, FLIPS, -3.0),  # teacache_fast ahead on v2 by 3 dB
        (GAP, OPEN, 0.0),  # a tie on v2: undecided there
    ],
)
def test_a_pair_holds_flips_or_stays_open_by_its_decided_orders(
    make_run, teacache_shift, across, v2_difference
):
    family = _evidence(make_run("v1"), _on_v2(make_run, "v2", teacache_shift))
    pairs = pair_table(family, n_boot=200)
    assert pairs[["first", "second", "across"]].values.tolist() == [
        ["alp_k5", "teacache_fast", across]
    ]
    v1, v2 = pairs.iloc[0]["reference v1"], pairs.iloc[0]["reference v2"]
    assert v1.estimate == pytest.approx(GAP) and v1.low == pytest.approx(GAP)
    assert v2.estimate == pytest.approx(v2_difference)
    assert v1.cases == v2.cases == 3


def test_the_rank_table_gives_each_testbeds_mean_rank_and_passes(make_run):
    family = _evidence(make_run("v1"), _on_v2(make_run, "v2", GAP + 3.0))
    table = rank_table(family)
    assert table.to_dict("list") == {
        "setting": ["alp_k5", "teacache_fast"],
        "psnr@baseline, reference v1 (rank)": ["33.5 (1)", "26.5 (2)"],
        "passes, reference v1": ["12", "10"],
        "psnr@baseline, reference v2 (rank)": ["33.5 (2)", "36.5 (1)"],
        "passes, reference v2": ["12", "10"],
        "rank moves by": [1, 1],
    }


def test_a_suite_testing_anothers_claims_joins_its_family_and_one_testbed_makes_none(make_run):
    run = load_run(make_run("ode", model_args={"components": 8}))
    manifest = dict(run.manifest, suite="ode", model={"name": "gmm", "args": {"components": 8}})
    ode = Evidence.of(type(run)(**{**run.__dict__, "manifest": manifest}), n_boot=200)
    (reference,) = _evidence(make_run("ref"))
    fast = Claim("golden", "fast", "p", "alp_k5", "speedup_nfe", at_least=2.0)
    again = Claim("ode", "Exact flow: fast", "p", "alp_k5", "speedup_nfe", at_least=2.0,
                  same_as="fast")  # fmt: skip
    found = families([reference, ode], [fast, again])
    assert {suite: [e.run.testbed for e in runs] for suite, runs in found.items()} == {
        "golden": ["reference v1", "exact ODE"]
    }
    assert families([reference, ode], [fast]) == {}  # not joined: two one-testbed suites
    assert ranking_sections([reference], [fast, again]) == []
    # A suite that tests the claims of two suites joins both families.
    v2 = load_run(make_run("v2", model_args={"world": "v2"}))
    other = Evidence.of(type(v2)(**{**v2.__dict__, "manifest": dict(v2.manifest, suite="other")}),
                        n_boot=200)  # fmt: skip
    slow = Claim("other", "slow", "p", "alp_k5", "speedup_nfe", at_most=9.0)
    again_slow = Claim("ode", "Exact flow: slow", "p", "alp_k5", "speedup_nfe", at_most=9.0,
                       same_as="slow")  # fmt: skip
    found = families([reference, other, ode], [fast, again, slow, again_slow])
    assert {suite: [e.run.testbed for e in runs] for suite, runs in found.items()} == {
        "golden": ["reference v1", "exact ODE"],
        "other": ["reference v2", "exact ODE"],
    }


def test_the_results_page_lists_the_flipped_pairs_with_each_testbeds_interval(make_run, tmp_path):
    v1, v2 = make_run("v1"), _on_v2(make_run, "v2", GAP + 3.0)
    page = results([v1, v2], tmp_path / "results", n_boot=200).read_text()
    assert "## Peer rankings across regimes: `golden`" in page
    assert "Of their 1 pair, 0 hold their order on every testbed that measured both, 1 flip" in page
    assert "reference v1 vs reference v2 -1.00" in page  # Kendall's tau: the order reversed
    assert "| alp_k5 - teacache_fast | +7 [+7, +7] | -3 [-3, -3] |" in page
    # One testbed: no ranking across regimes.
    assert "Peer rankings" not in results([v1], tmp_path / "one", n_boot=200).read_text()


def test_a_setting_one_testbed_lacks_is_ranked_where_measured_and_its_pairs_compared_there(
    make_run,
):
    v1, v2 = _evidence(make_run("v1"), _on_v2(make_run, "v2", GAP + 3.0))
    run = load_run(make_run("ode", model_args={"components": 8}))
    manifest = dict(run.manifest, model={"name": "gmm", "args": {"components": 8}})
    full = Evidence.of(type(run)(**{**run.__dict__, "manifest": manifest}), n_boot=200)
    # The exact ODE's run without teacache_fast.
    ode = Evidence(
        full.run,
        full.summary[full.summary["setting"] != "teacache_fast"],
        full.units[full.units["setting"] != "teacache_fast"],
        full.floors,
    )
    pairs = pair_table([v1, v2, ode], n_boot=200)
    assert pairs["across"].tolist() == [FLIPS] and pairs.iloc[0]["exact ODE"] is None
    table = rank_table([v1, v2, ode])
    assert table["psnr@baseline, exact ODE (rank)"].tolist() == ["33.5 (1)", "–"]
    assert table["passes, exact ODE"].tolist() == ["12", "–"]
    assert table["rank moves by"].tolist() == [1, 1]
    # Measured together on one testbed only: no pair to compare.
    assert pair_table([v1, ode], n_boot=200).empty
