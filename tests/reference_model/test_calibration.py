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
from reference_model.shipped_weights import MANIFEST, WEIGHTS_DIR, WORLD_WEIGHTS


@pytest.mark.parametrize("world", ["v1", "v2"])
def test_stored_calibration_is_what_the_world_and_the_shipped_encoder_give_now(world):
    stored = load_identity_calibration(WORLD_WEIGHTS[world])
    fresh = build_identity_calibration(**({} if world == "v1" else {"world": world}))
    assert fresh.own == pytest.approx(stored.own, rel=1e-3)
    assert fresh.other == pytest.approx(stored.other, rel=1e-5)
    assert (fresh.identities, fresh.frames, fresh.made_with) == (
        stored.identities,
        stored.frames,
        stored.made_with,
    )
    # The encoder is far more sensitive to identity than to motion: own frames sit near 0.
    # v1 measured 6.8e-6 and 0.116; v2 (its own encoder, faces in moving scenes) 0.0022 and 0.948.
    assert stored.own < 0.01 < 0.05 < stored.other


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
