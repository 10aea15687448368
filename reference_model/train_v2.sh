#!/usr/bin/env bash
# Resume (or start) the testbed v2 DiT training for one chunk that ends on a checkpoint:
#
#     bash reference_model/train_v2.sh [CHUNK_MINUTES]        (default 110; at most 120)
#
# The run lives in $OUT (default /work/testbed2-train/dit_v2): pool, last.ckpt, the EMA export
# dit_small.pt and CSV logs. Where CUDA is visible the chunk trains there (batch 32), else on
# one CPU thread under nice (batch 16); either resumes the other's checkpoint. A missing pool is
# rendered again from its seed (on a GPU machine by one process per core: the same clips).
# $PYTHON picks the interpreter (default: python). The options below are the run's second phase
# (MODEL_CARD_V2.md): steps 0-14,819 trained on 8-frame clips at a constant lr 3e-4; from there
# 24-frame clips (the suites sample 25-50 frames) and a cosine cooldown to 0 at step 20,219.
# Change them only with a fresh $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/work/testbed2-train/dit_v2}
CHUNK=${1:-110}
PY=${PYTHON:-python}
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=(--accelerator gpu --batch-size 32 --render-workers "$(nproc)")
else
    DEVICE=(--accelerator cpu --batch-size 16 --threads 1)
fi
export OMP_NUM_THREADS=1
exec nice -n 10 "$PY" -m reference_model.train_model_v2 --out "$OUT" \
    --clips 1000 --pool-frames 48 --seed 0 \
    --config small --clip-frames 24 --lr 3e-4 --expression-drop 0.3 --reference-expression 0.3 \
    --decay-start 14819 --decay-steps 5400 --max-steps 20219 \
    --init reference_model/weights/dit_small.pt \
    --minutes 600 --chunk-minutes "$CHUNK" "${DEVICE[@]}"
