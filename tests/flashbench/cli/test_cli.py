import pytest

from flashbench.cli.main import main


def test_ls_lists_every_kind_with_its_entries(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "settings:",
        "steppers:",
        "alp ",
        "euler ",
        "sliding ",
        "suites:",
        "quick ",
        "models:",
    ):
        assert expected in out


def test_ls_unknown_kind_exits_2_with_choices(capsys):
    assert main(["ls", "stepper"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_demo_prints_nfe_and_wall_time_per_setting(capsys):
    assert (
        main(
            [
                "demo",
                "--frames",
                "6",
                "--steps",
                "3",
                "--threads",
                "1",
                "--settings",
                "baseline",
                "sliding",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["setting", "windowing"]
    assert lines[1].split()[0] == "baseline" and " 3 " in lines[1]


def test_version_prints_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"flashbench {version('flashbench')}\n"
