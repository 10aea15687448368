"""Scale-out: cases sharded over 2 DDP processes (CPU, gloo) give the rows of a 1-process run."""

import pytest

from flashbench.run.distributed import run_distributed
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite


@pytest.mark.slow
def test_two_process_run_gives_the_rows_of_a_one_process_run(
    tiny_text, write_suite, tmp_path, stable_rows
):
    path = write_suite(tiny_text)
    suite = parse_suite(tiny_text, str(path))
    single = run_suite(suite, tmp_path / "one", threads=1, progress=False)
    sharded = run_distributed(suite, tmp_path / "two", devices=2, threads=1)
    assert (single.done, single.failed) == (6, 0)
    assert (sharded.done, sharded.failed) == (6, 0)
    rows_one, rows_two = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert len(rows_one) == len(rows_two) > 0
    assert stable_rows(rows_one) == stable_rows(rows_two)
    # Both processes did work: the two cases were written by different ranks.
    assert len({p.parent.name for p in (tmp_path / "two" / "videos").glob("*/reference.png")}) == 2
