"""The world identity encoder's stored distance calibration: reproducible, and tied to the encoder's weights."""

import json
import shutil

import pytest

from reference_model.calibration import (
    CALIBRATION_FILE,
    ENCODER_FILE,
    build_identity_calibration,
    load_identity_calibration,
)
from reference_model.shipped_weights import MANIFEST, WEIGHTS_DIR


def test_stored_calibration_is_what_the_world_and_the_shipped_encoder_give_now():
    stored = load_identity_calibration()
    fresh = build_identity_calibration()
    assert fresh.own == pytest.approx(stored.own, rel=1e-3)
    assert fresh.other == pytest.approx(stored.other, rel=1e-5)
    assert (fresh.identities, fresh.frames, fresh.made_with) == (
        stored.identities,
        stored.frames,
        stored.made_with,
    )
    # The encoder is far more sensitive to identity than to motion: own frames sit near 0.
    assert stored.own < 1e-3 < 0.05 < stored.other  # measured: 6.8e-6 and 0.116


def test_a_calibration_made_with_other_encoder_weights_is_refused(tmp_path):
    shutil.copy(WEIGHTS_DIR / CALIBRATION_FILE, tmp_path / CALIBRATION_FILE)
    manifest = json.loads((WEIGHTS_DIR / MANIFEST).read_text())
    manifest[ENCODER_FILE]["sha256"] = "0" * 64
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError, match=r"remake it with `python -m reference_model\.calibration`"
    ):
        load_identity_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).unlink()
    with pytest.raises(ValueError, match="is missing; make it with"):
        load_identity_calibration(tmp_path)
