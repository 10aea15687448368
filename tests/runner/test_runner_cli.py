"""`flashbench validate | weights` through the flashbench command."""

from flashbench.cli import main


def test_validate_reports_ok_for_a_valid_suite_and_the_key_for_a_broken_one(
    tiny_text, write_suite, capsys
):
    good = write_suite(tiny_text)
    assert main(["validate", str(good)]) == 0
    assert "ok  tiny" in capsys.readouterr().out
    bad = write_suite(
        tiny_text.replace('windowing = "sliding"', 'windowing = "slidng"'), name="bad"
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert (
        "bad.toml: settings[1].windowing: unknown windowing 'slidng'; did you mean 'sliding'" in err
    )


def test_weights_lists_every_backend_file_with_its_state(capsys):
    assert main(["weights", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "arcface-w600k_mbf" in out and "path:" in out and "sha256:" in out
    assert "present" in out or "MISSING" in out


def test_run_into_a_foreign_directory_is_refused_with_one_line(
    tiny_text, write_suite, tmp_path, capsys
):
    path = write_suite(tiny_text)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"suite": "x", "suite_sha256": "0"}')
    assert (
        main(["run", str(path), "--out", str(tmp_path / "other"), "--resume", "--no-progress"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("flashbench run: error: run directory")
        and "never mixed" in err
        and "\n" not in err
    )
