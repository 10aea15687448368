#!/usr/bin/env bash
# Resume (or start) the testbed v2 DiT training for one chunk that ends on a checkpoint:
#
#     bash reference_model/train_v2.sh [CHUNK_MINUTES]        (default 110; at most 120)
#
# The run lives in $OUT (default /work/testbed2-train/dit_v2): pool, last.ckpt, the EMA export
# dit_small.pt and CSV logs. Where CUDA is visible the chunk trains there (batch 32), else on
# one CPU thread under nice (batch 16); either resumes the other's checkpoint. A missing pool is
# rendered again from its seed (by one process per core: the same clips).
# $PYTHON picks the interpreter (default: python).
#
# A fresh $OUT (a new machine: nothing outside the repository outlives a session) continues from
# the shipped export reference_model/weights_v2/dit_small.pt at its step (dit.json), with a
# fresh optimiser; ship each chunk's export there (MODEL_CARD_V2.md) so the next one goes on.
# The run's first phase (steps 0-11,207) trained on 8-frame clips at a constant lr 3e-4; its
# second trains on 24-frame clips (the suites sample 25-50 frames) with a cosine cooldown from
# step 11,207 to 0 at step 16,607. Change these options only with a fresh $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/work/testbed2-train/dit_v2}
CHUNK=${1:-110}
PY=${PYTHON:-python}
SHIPPED=reference_model/weights_v2/dit_small.pt
source reference_model/v2_schedule.env
mkdir -p "$OUT"
# last.ckpt counts the steps of this $OUT's run; the step it started from is kept beside it.
if [ ! -f "$OUT/last.ckpt" ]; then
    "$PY" -c "import json; print(json.load(open('reference_model/weights_v2/dit.json'))['step'])" >"$OUT/init_step"
fi
INIT_STEP=$(cat "$OUT/init_step")
if [ "$INIT_STEP" -ge "$FINAL_STEP" ]; then
    echo "the shipped v2 DiT is trained to step $INIT_STEP: the run is finished" && exit 0
fi
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=(--accelerator gpu --batch-size 32 --render-workers "$(nproc)")
else
    DEVICE=(--accelerator cpu --batch-size 16 --threads 1 --render-workers "$(nproc)")
fi
export OMP_NUM_THREADS=1
exec nice -n 10 "$PY" -m reference_model.train_model_v2 --out "$OUT" \
    --clips 1000 --pool-frames 48 --seed 0 \
    --config small --clip-frames 24 --lr 3e-4 --expression-drop 0.3 --reference-expression 0.3 \
    --decay-start "$DECAY_START" --decay-steps $((FINAL_STEP - DECAY_START)) --max-steps "$FINAL_STEP" \
    --init "$SHIPPED" --init-step "$INIT_STEP" \
    --minutes 600 --chunk-minutes "$CHUNK" "${DEVICE[@]}"
