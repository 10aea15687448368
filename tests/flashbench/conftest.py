from pathlib import Path

import pytest

from flashbench.run.rows import TIMING_METRICS

TINY = Path(__file__).with_name("tiny.toml")


@pytest.fixture
def tiny_text() -> str:
    return TINY.read_text()


@pytest.fixture
def write_suite(tmp_path):
    """Write suite text to a file named after the suite and return its path."""

    def write(text: str, name: str = "tiny") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def stable_rows():
    """The rows but timing, in ``read_rows``' order: what two runs of one suite must agree on."""

    def stable(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["metric"] not in TIMING_METRICS]

    return stable
