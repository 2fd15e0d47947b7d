#!/usr/bin/env bash
# Train the shipped recipe on one CUDA GPU with mixed precision, then export it, score every paired
# set (validation and held-out rows) and sky-check the real photos. About ten minutes on one large
# GPU (H100/H200 class). Everything the run did is written under OUT:
#   OUT/run/    checkpoints, run.json (config, data, machine incl. the GPU's name, validation history)
#   OUT/hub/    the exported weights with their model card
#   OUT/eval/   scores.md (every paired set side by side), scores.csv/json, grids
#   OUT/photos/ the sky check over the real photos with sky
#
#   bash scripts/train_gpu.sh [OUT]                  # data from DATA (default ../shared/data)
#   CLEARNET_SMOKE=1 bash scripts/train_gpu.sh OUT   # CPU smoke test: tiny recipe, 2 steps
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu-$(date -u +%Y%m%d-%H%M)}"
DATA="${DATA:-../shared/data}"
CONFIG="${CONFIG:-training/configs/gpu.yaml}"
DEVICE="${DEVICE:-cuda}"
SPLITS=()
[ -n "${SPLITS_DIR:-}" ] && SPLITS=(--splits-dir "$SPLITS_DIR")
EXTRA=()
if [ -n "${CLEARNET_SMOKE:-}" ]; then
  CONFIG=training/configs/tiny.yaml DEVICE=cpu EXTRA=(--max-steps 2)
fi
[ -f .venv/bin/activate ] && . .venv/bin/activate
PAIRS=("$DATA/pairs-dev")
for d in "$DATA"/pairs-real/*/; do PAIRS+=("${d%/}"); done
set -x
python -m training train --config "$CONFIG" --device "$DEVICE" --no-progress "${EXTRA[@]}" "${SPLITS[@]}" \
  --data "$DATA/real-hazy" "$DATA/real-hazy-web" "$DATA/rgbd-train-hazy/hazy" \
  --val-pairs "${PAIRS[@]}" --out "$OUT/run"
python -m training export "$OUT/run/best.pt" --out "$OUT/hub" --name clearnet-gpu
python -m training evaluate --pairs "${PAIRS[@]}" --model "$OUT/hub/clearnet-gpu.safetensors" \
  --model clearnet-default --device "$DEVICE" --out "$OUT/eval" "${SPLITS[@]}"
python -m training photos --images "$DATA/real-hazy" --model "$OUT/hub/clearnet-gpu.safetensors" \
  --model clearnet-default --device "$DEVICE" --out "$OUT/photos"
