"""The results page's folder, and runs made with --limit saying so in reports and on the page."""

import json

import pytest

from flashbench.cli.main import main
from reports.cli import report
from reports.results import results


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_results_refuse_a_folder_holding_files_they_did_not_write_and_leave_it(
    make_run, tmp_path, capsys
):
    run = make_run("golden_run")
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "notes.md").write_text("mine")
    (mine / "figures" / "sketch.svg").write_text("<svg/>")
    before = files(mine)
    assert main(["results", str(run), "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is not a results folder" in err
    assert "holds figures, notes.md" in err and "choose another --out" in err
    assert files(mine) == before


def test_results_rewrite_their_own_folder(make_run, tmp_path):
    run, out = make_run("golden_run"), tmp_path / "results"
    results([run], out, n_boot=50)
    first = sorted(p.name for p in out.iterdir())
    results([run], out, n_boot=50)
    assert first == ["figures", "results.html", "results.md"]
    assert sorted(p.name for p in out.iterdir()) == first


@pytest.mark.parametrize(("cases", "limited"), [(1, True), (3, False)])
def test_a_run_limited_to_fewer_cases_says_so_in_title_and_tables(
    make_run, tmp_path, cases, limited
):
    run = make_run("golden_run")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["limit"] = {"limit": cases, "cases": cases, "of": 3}
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = (report(run, tmp_path / "report", videos=False, n_boot=50) / "report.md").read_text()
    title = text.splitlines()[0]
    page = results([run], tmp_path / "results", n_boot=50).read_text()
    if not limited:
        assert "limited:" not in text and "limited:" not in page
        return
    assert title.endswith("(golden_run, limited: 1 of 3 cases)")
    # Every table of the report but the title's manifest stands under the words.
    blocks = text.split("\n#")[1:]
    with_tables = [b for b in blocks if "\n|" in b]
    assert with_tables and all("Limited: 1 of 3 cases." in b for b in with_tables)
    assert "(v1, limited: 1 of 3 cases)" in page
