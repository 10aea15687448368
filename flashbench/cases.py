"""The record of one suite case, shared by suites (which expand them) and models (which prepare them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaseSpec:
    """One clip to generate: who, driven by what, how long and how large."""

    id: str
    reenactment: str
    identity: int
    driving_identity: int
    driving_seed: int
    frames: int
    resolution: int
