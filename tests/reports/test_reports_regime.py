import json

import pytest

from reports.load import RunFormatError, load_run
from reports.regime import (
    fewer_steps_table,
    load_profiles,
    profile_table,
    published_ratios,
    regime_figure,
)
from reports.tables import summary_table

STEPS = 10


def write_profiles(run_dir, units, extra=()):
    """Baseline profiles with a known shape: change = step / 100, ratio = 1 - step / 1000."""
    folder = run_dir / "regime"
    folder.mkdir(exist_ok=True)
    for unit in [*units, *extra]:
        records = [
            {
                "step": i,
                "sigma": 1 - i / STEPS,
                "relative_change": i / 100,
                "magnitude_ratio": 1 - i / 1000,
            }
            for i in range(1, STEPS)
        ]
        (folder / f"{unit}.json").write_text(json.dumps(records))


@pytest.fixture
def regime_run(make_run):
    path = make_run("regime", reseeded_psnr=30.0)
    units = sorted(p.stem for p in (path / "rows").glob("*__baseline__*.json"))
    write_profiles(path, units, extra=["self_a_8f__baseline__seed9"])
    return path, units


def test_profiles_of_finished_baseline_units_are_loaded_and_others_ignored(regime_run):
    path, units = regime_run
    profiles = load_profiles(load_run(path))
    assert sorted(set(profiles["unit_id"])) == units
    assert len(profiles) == len(units) * (STEPS - 1)


def test_a_broken_profile_file_is_named(regime_run):
    path, units = regime_run
    (path / "regime" / f"{units[0]}.json").write_text('[{"step": 1}]')
    with pytest.raises(RunFormatError, match=units[0]):
        load_profiles(load_run(path))


def test_profile_table_reads_the_path_in_thirds_and_its_last_step(regime_run):
    path, _ = regime_run
    table = profile_table(load_profiles(load_run(path)))
    assert list(table["steps"]) == ["1-3", "4-6", "7-8", "9 (last)"]
    assert list(table["relative change"]) == [
        "0.0100-0.0300",
        "0.0400-0.0600",
        "0.0700-0.0800",
        "0.0900",
    ]
    assert table["magnitude ratio"].iloc[-1] == "0.9910"


def test_the_seed_floor_leads_the_fewer_steps_table(regime_run):
    path, _ = regime_run
    run = load_run(path)
    table = fewer_steps_table(run, summary_table(run, n_boot=50))
    assert table["setting"].iloc[0] == "seed floor: baseline, another noise seed"
    assert table["psnr@baseline"].iloc[0] == "30.00" and table["nfe"].iloc[0] == "30"


def test_figure_draws_this_run_beside_every_published_wan_curve(regime_run):
    path, _ = regime_run
    figure = regime_figure({"this run": load_profiles(load_run(path))})
    change_axis, ratio_axis = figure.axes
    assert len(change_axis.lines) == 1 and len(ratio_axis.lines) == 1 + len(published_ratios())


def test_the_results_page_draws_each_testbeds_profile_once_beside_wan(make_run, tmp_path):
    from reports.results import results, testbed_profiles

    runs = []
    for name, args in (("v1", None), ("v1_again", None), ("v2", {"world": "v2"})):
        path = make_run(name, model_args=args)
        units = sorted(p.stem for p in (path / "rows").glob("*__baseline__*.json"))
        write_profiles(path, units)
        runs.append(path)
    # Two runs of one suite on one testbed are refused; the second v1 run is another suite.
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    (runs[1] / "manifest.json").write_text(json.dumps({**manifest, "suite": "other"}))
    assert list(testbed_profiles([load_run(r) for r in runs])) == [
        "reference v1 (golden)",
        "reference v2 (golden)",
    ]
    page = results(runs, tmp_path / "results", n_boot=50).read_text()
    assert "figures/regimes.png" in page and (tmp_path / "results/figures/regimes.png").is_file()


def test_published_ratios_are_magcaches_wan_lists_without_padding():
    ratios = published_ratios()
    assert set(ratios) == {
        "Wan2.1-T2V-14B",
        "Wan2.1-T2V-1.3B",
        "Wan2.1-I2V-14B-480P",
        "Wan2.1-I2V-14B-720P",
    }
    assert len(ratios["Wan2.1-T2V-1.3B"]) == 49 and len(ratios["Wan2.1-I2V-14B-720P"]) == 39
    assert ratios["Wan2.1-T2V-1.3B"][0] == pytest.approx(1.0124)
    assert all(r.min() > 0.8 and r.max() < 1.05 for r in ratios.values())


def test_the_report_has_a_regime_section_only_when_the_run_has_something_to_show(
    regime_run, golden_run, make_run
):
    from reports.cli import report

    path, _ = regime_run
    with_regime = (report(path, out=path / "report", videos=False) / "report.md").read_text()
    assert "## Regime: how hard acceleration is on model" in with_regime
    assert "figures/regime.png" in with_regime
    # No profile and no seed floor, but a TeaCache setting: only the published figures beside it.
    beside = (report(golden_run, out=path / "beside", videos=False) / "report.md").read_text()
    assert "## Regime" in beside and "figures/regime.png" not in beside
    assert "this run: teacache_fast" in beside
    plain = make_run("plain")
    for unit in (plain / "rows").glob("*__teacache_fast__*.json"):
        unit.unlink()
    text = (report(plain, out=path / "plain", videos=False) / "report.md").read_text()
    assert "Regime" not in text
