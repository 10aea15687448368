"""The GPU driver builds each variant's train_model command from the shared options and its own."""

from __future__ import annotations

import subprocess

import pytest

from reference_model import train_variants


@pytest.mark.parametrize("name", sorted(train_variants.VARIANT_SETS))
def test_every_variant_of_every_set_trains_with_its_own_options(name, monkeypatch, tmp_path):
    commands = []

    class Recorder:
        def __init__(self, command, **kwargs):
            commands.append(command)

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    monkeypatch.setattr(train_variants, "ROOT", tmp_path)
    variants = train_variants.VARIANT_SETS[name]
    monkeypatch.setattr(train_variants, "VARIANTS", variants)
    plan = train_variants.Plan(clips=8, workers=1, deadline_s=60, probe_steps=2, start=0.0)
    for variant in variants:
        train_variants.train(plan, variant, max_steps=10, decay=5)
    for command, (variant, options) in zip(commands, variants.items(), strict=True):
        flags = dict(zip(command[3::2], command[4::2], strict=True))
        assert flags["--out"] == str(tmp_path / variant)
        for flag, value in options.items():
            assert flags[flag] == str(value)
        assert flags["--batch-size"] == "32" and flags["--max-steps"] == "10"
