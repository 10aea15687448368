"""A suite on a tiny random Wan validates, runs end to end and reports."""

import torch
from safetensors.torch import save_file
from wan_models import text_embeddings, tiny_transformer, tiny_vae

from flashbench.models.wan.model import PROMPTS, write_manifest
from flashbench.run.rows import read_rows
from flashbench.run.runner import run_suite
from flashbench.suite.document import parse_suite
from reports.cli import report

SUITE = """
[suite]
name = "wan_tiny"
version = "1"
model = "wan"
model_args = {{ weights = "{weights}" }}
steps = 6
seeds = [0]

[cases]
identities = 1
lengths = [9]
resolution = 32

[guidance]
scale = 3.0
drop = ["prompt_embeds"]

[metrics]
names = ["psnr", "speed"]
references = ["baseline"]

[[settings]]
use = "baseline"

[[settings]]
name = "alp"
stepper = "alp"
stepper_args = {{ interval = 2, order = 1 }}

[[settings]]
name = "diffusers_fbc"
stepper = "diffusers_cache"
stepper_args = {{ config = "first_block_cache", args = {{ threshold = 0.5 }} }}

[[settings]]
name = "cache_dit"
stepper = "cache_dit"
stepper_args = {{ args = {{ Fn_compute_blocks = 1, max_warmup_steps = 2, residual_diff_threshold = 0.5 }} }}
"""


def test_suite_on_tiny_random_wan_runs_and_reports(tmp_path):
    folder = tmp_path / "wan"
    tiny_transformer().save_pretrained(folder / "transformer")
    tiny_vae().save_pretrained(folder / "vae")
    save_file(
        {"prompt_embeds": text_embeddings(1), "negative_prompt_embeds": text_embeddings(2)},
        folder / PROMPTS,
    )
    write_manifest(folder)
    suite = parse_suite(SUITE.format(weights=folder), "wan_tiny.toml")
    summary = run_suite(suite, tmp_path / "run", threads=1, progress=False)
    assert (summary.done, summary.failed) == (4, 0)
    psnr = {r["setting"]: r["value"] for r in read_rows(tmp_path / "run") if r["metric"] == "psnr"}
    # ALP, diffusers' first-block cache and cache-dit's DBCache skipped some work, so their
    # videos differ from the baseline's, by a finite amount.
    assert set(psnr) == {"alp", "diffusers_fbc", "cache_dit"}
    assert torch.isfinite(torch.tensor(list(psnr.values()))).all()
    assert (report(tmp_path / "run", videos=False) / "report.md").is_file()
