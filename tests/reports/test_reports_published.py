"""The published figures of real video DiTs (reports/data/published_fidelity.json) and the
regime section's table that sets this run's settings beside them."""

import json
import re

import pytest

import reports.regime as regime
from reports.load import load_run
from reports.regime import (
    FIGURE_FIELDS,
    Footnotes,
    load_profiles,
    published_beside,
    published_fidelity,
    ratios_beside,
)
from reports.tables import summary_table

GITHUB_LINK = re.compile(r"^\[(\d+)\]\(https://github\.com/[^/]+/[^/]+/blob/[0-9a-f]{40}/\S+#L\d+")


def test_every_published_figure_parses_with_every_field_and_a_citation():
    figures, sources = published_fidelity()
    assert not figures.empty and list(figures.columns) == list(FIGURE_FIELDS)
    assert set(figures["metric"]) <= {"psnr", "ssim", "lpips"}
    assert set(figures["speedup_kind"]) <= {"wall", "flops", "nfe", "unverified"}
    assert (figures["speedup"] > 1).all() and (figures["value"] > 0).all()
    assert (figures.loc[figures["metric"] != "psnr", "value"] < 1).all()
    assert set(figures["source"]) == set(sources)
    for key, source in sources.items():
        assert re.fullmatch(r"\d{4}\.\d{5}", source["arxiv"]), key
        if source.get("paper_only"):
            assert source["note"], key  # says why no repository holds it
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", source["repository"]), key
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), key
        assert source["path"] and source["lines"], key
        assert all(isinstance(line, int) and line > 0 for line in source["lines"]), key


def test_the_figures_of_issue_27_are_there_as_their_sources_print_them():
    figures, sources = published_fidelity()

    def value(method, model_start, metric):
        match = figures[
            (figures["method"] == method)
            & figures["model"].str.startswith(model_start)
            & (figures["metric"] == metric)
        ]
        assert len(match) == 1, (method, model_start, metric)
        return match.iloc[0]

    assert value("TeaCache-fast", "Wan2.1-T2V-1.3B", "psnr")["value"] == 18.14
    assert value("TeaCache (EasyCache's rerun)", "Wan2.1-T2V-1.3B", "psnr")["value"] == 22.57
    magcache = value("MagCache-fast", "Wan2.1-T2V-1.3B", "psnr")
    assert (magcache["value"], magcache["speedup"]) == (21.54, 2.68)
    assert value("MagCache-fast", "Wan2.1-T2V-1.3B", "lpips")["value"] == 0.1748
    assert value("MagCache-fast", "Wan2.1-T2V-1.3B", "ssim")["value"] == 0.749
    assert value("MagCache", "Wan2.1-I2V-14B-720P", "psnr")["value"] == 23.67
    assert value("EasyCache", "Wan2.1-T2V-1.3B", "psnr")["value"] == 25.24
    taylorseer = value("TaylorSeer (a baseline in Spectrum)", "Wan2.1-14B", "psnr")
    assert taylorseer["value"] == 17.2 and sources[taylorseer["source"]]["paper_only"] is True


def test_a_source_without_lines_or_paper_only_is_refused(tmp_path, monkeypatch):
    data = json.loads(regime.FIDELITY.read_text())
    del data["sources"]["easycache_readme"]["lines"]
    broken = tmp_path / "published_fidelity.json"
    broken.write_text(json.dumps(data))
    monkeypatch.setattr(regime, "FIDELITY", broken)
    with pytest.raises(ValueError, match=r"easycache_readme.*paper_only"):
        published_fidelity()


@pytest.fixture
def floor_run(make_run):
    return load_run(make_run("published", reseeded_psnr=30.0))


def test_the_runs_teacache_setting_stands_beside_published_teacache_only(floor_run):
    summary = summary_table(floor_run, n_boot=50)
    notes = Footnotes()
    table, absent = published_beside(floor_run, summary, notes)
    figures, _ = published_fidelity()
    # alp has no published family; magcache, taylorseer and easycache have no setting here.
    assert list(dict.fromkeys(table["family"])) == ["teacache", "seed floor"]
    assert set(absent) == {"magcache", "taylorseer", "easycache"}
    mine = table[table["setting or published"] == "this run: teacache_fast"].iloc[0]
    assert mine["speedup"] == "3.00x passes, 4.00x wall"
    assert mine["psnr@baseline"] == "26.50" and mine["ssim@baseline"] == "0.880"
    published = table[table["setting or published"].str.startswith("published")]
    teacache = figures[figures["family"] == "teacache"]
    groups = teacache.groupby(["method", "model", "source"]).ngroups
    assert len(published[published["family"] == "teacache"]) == groups
    fast = published[published["setting or published"] == "published: TeaCache-fast"].iloc[0]
    assert (fast["psnr@baseline"], fast["lpips@baseline"]) == ("18.14", "0.2412")
    # Every published row links to a numbered source at its commit and line.
    for cell in published.loc[published["family"] == "teacache", "source"]:
        assert GITHUB_LINK.match(cell), cell
    cited = notes.table()
    assert len(cited) == teacache["source"].nunique()
    assert cited["where"].str.contains(r"@ [0-9a-f]{7}").all()


def test_the_seed_floor_stands_beside_no_published_number(floor_run):
    table, _ = published_beside(floor_run, summary_table(floor_run, n_boot=50), Footnotes())
    floor = table[table["family"] == "seed floor"]
    assert list(floor["psnr@baseline"]) == ["30.00", ""]
    assert "different seeds give different videos" in floor["setting or published"].iloc[1]
    assert list(floor["source"]) == ["", ""]


def _as_stepper(path, stepper):
    """The run at ``path`` with setting alp_k5 re-labelled as sampled by ``stepper``."""
    for unit in (path / "rows").glob("*__alp_k5__*.json"):
        payload = json.loads(unit.read_text())
        for row in payload["rows"]:
            row["stepper"] = stepper
        unit.write_text(json.dumps(payload))
    return load_run(path)


def test_a_paper_only_figure_links_its_paper_and_says_so(make_run):
    run = _as_stepper(make_run("taylorseer"), "taylorseer")
    notes = Footnotes()
    table, absent = published_beside(run, summary_table(run, n_boot=50), notes)
    assert "taylorseer" not in absent
    taylorseer = table[table["family"] == "taylorseer"]
    assert list(taylorseer["setting or published"]) == [
        "this run: alp_k5",
        "published: TaylorSeer (a baseline in Spectrum)",
    ]
    assert taylorseer["source"].iloc[1].endswith("(https://arxiv.org/abs/2603.01623)")
    cited = notes.table().set_index("paper")["where"]
    assert cited.str.startswith("paper only").sum() == 1


def test_a_family_without_published_figures_says_so(make_run):
    run = _as_stepper(make_run("fewer"), "fewer_steps")
    table, _ = published_beside(run, summary_table(run, n_boot=50), Footnotes())
    fewer = table[table["family"] == "fewer_steps"]
    assert list(fewer["setting or published"]) == [
        "this run: alp_k5",
        "published: no fidelity figure on a real video DiT",
    ]


def test_the_magnitude_ratio_stands_beside_magcaches_wan_lists_linked_to_their_lines(make_run):
    path = make_run("ratios")
    (path / "regime").mkdir()
    for unit in (path / "rows").glob("*__baseline__*.json"):
        records = [
            {
                "step": i,
                "sigma": 1 - i / 10,
                "relative_change": i / 100,
                "magnitude_ratio": 1 - i / 1000,
            }
            for i in range(1, 10)
        ]
        (path / "regime" / unit.name).write_text(json.dumps(records))
    notes = Footnotes()
    table = ratios_beside(load_profiles(load_run(path)), notes)
    # ratio = 1 - step / 1000 over steps 1..9: the last fifth is the last step.
    assert table.iloc[0]["mean, last fifth of the steps"] == "0.991"
    lines = json.loads(regime.PUBLISHED.read_text())["source"]["lines"]
    for _, row in table.iloc[1:].iterrows():
        model = row["magnitude ratio"].removeprefix("published: ")
        assert row["source"].endswith(f"#L{lines[model]})")
        assert float(row["mean, last fifth of the steps"]) < 0.97
    assert len(notes.table()) == 1


def test_reports_link_sources_in_markdown_and_name_them_in_html(make_run):
    from reports.cli import report

    path = make_run("rendered", reseeded_psnr=30.0)
    folder = report(path, out=path / "report", videos=False)
    markdown = (folder / "report.md").read_text()
    page = (folder / "report.html").read_text()
    _, sources = published_fidelity()
    easycache = sources["easycache_readme"]
    url = f"https://github.com/H-EmbodVis/EasyCache/blob/{easycache['commit']}/README.md#L75-L82"
    assert url in markdown
    assert "| published: TeaCache-fast |" in markdown
    # The HTML points nowhere outside itself: the footnote number, and the source named in full.
    assert "https://" not in page
    # A full citation wraps instead of widening the page.
    assert "<td class='long'>Ma et al. 2025, MagCache" in page
    assert (
        f"H-EmbodVis/EasyCache README.md L75, L77, L79, L81, L82 @ {easycache['commit'][:7]}"
        in page
    )
