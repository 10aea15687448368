#!/usr/bin/env bash
# Ship the testbed v2 DiT export of a training run into the repository, so the next chunk, on
# whatever machine, goes on from it (train_v2.sh) and the suites sample it:
#
#     bash reference_model/ship_v2.sh [OUT]        (default /work/testbed2-train/dit_v2)
#
# Copies OUT/dit_small.pt to reference_model/weights_v2/, records its sha256, size and step in
# dit.json, and refits TeaCache's and MagCache's calibrations on it (the steppers refuse ones
# fitted on another model); the calibrations it replaces are kept in OUT/shipped-before-STEP/.
# $PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/testbed2-train/dit_v2}
PY=${PYTHON:-python}
WEIGHTS=reference_model/weights_v2
source reference_model/v2_schedule.env
[ -f "$OUT/dit_small.pt" ] || { echo "no export $OUT/dit_small.pt: give the training run's --out" >&2; exit 2; }
STEP=$("$PY" -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['step'])" "$OUT/dit_small.pt")
SHIPPED=$("$PY" -c "import json; print(json.load(open('$WEIGHTS/dit.json'))['step'])")
if [ "$STEP" -le "$SHIPPED" ]; then
    echo "$OUT/dit_small.pt is at step $STEP; the shipped export is at step $SHIPPED: nothing to ship" >&2
    exit 2
fi
BEFORE="$OUT/shipped-before-$STEP"
mkdir -p "$BEFORE"
cp "$WEIGHTS/dit_small.pt" "$WEIGHTS/dit.json" "$WEIGHTS/teacache.json" "$WEIGHTS/magcache.json" "$BEFORE/"
cp "$OUT/dit_small.pt" "$WEIGHTS/dit_small.pt"
"$PY" - "$WEIGHTS" "$STEP" "$FINAL_STEP" <<'EOF'
import hashlib
import json
import sys
from pathlib import Path

weights, step, final_step = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
record = json.loads((weights / "dit.json").read_text())
data = (weights / "dit_small.pt").read_bytes()
record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), step=step)
record["train"] = (
    "phase 1, steps 0-11,207: python -m reference_model.train_model_v2 --clips 1000 --pool-frames "
    "48 --seed 0 --config small --clip-frames 8 --lr 3e-4 --expression-drop 0.3 "
    "--reference-expression 0.3 --batch-size 16 (one CPU thread), from the v1 DiT; phase 2, "
    "from the step-11,207 export: bash reference_model/train_v2.sh (24-frame clips, cosine "
    f"cooldown to 0 at step {final_step:,}), in chunks; EMA 0.999 export"
)
if step < final_step:
    record["status"] = (
        "in training (MODEL_CARD_V2.md): an intermediate export of phase 2, not the final testbed "
        "v2 DiT"
    )
else:
    record["status"] = "trained (MODEL_CARD_V2.md)"
(weights / "dit.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
EOF
rm "$WEIGHTS/teacache.json" "$WEIGHTS/magcache.json"
for method in teacache magcache; do
    "$PY" -m flashbench.cli.main calibrate "$method" --model reference --model-args '{"world": "v2"}' \
        --resolution 64 --frames 16 --samples 8 --out "$WEIGHTS/$method.json"
done
echo "shipped step $STEP (the step-$SHIPPED files are in $BEFORE); commit $WEIGHTS"
