#!/usr/bin/env bash
# Train the shipped recipe on one CUDA GPU with mixed precision, then export it, score the paired
# sets (validation and held-out rows) and, if asked, sky-check real photos. About ten minutes on one
# large GPU (H100/H200 class). Everything the run did is written under OUT:
#   OUT/run/    checkpoints, run.json (config, data, machine incl. the GPU's name, validation history)
#   OUT/hub/    the exported weights with their model card
#   OUT/eval/   scores.md (every paired set side by side), scores.csv/json, grids
#   OUT/photos/ the sky check over the --photos folders
#
#   bash scripts/train_gpu.sh DATA... --val PAIRS... [--photos DIR...] [--out OUT]
#       DATA:  folders of hazy photos (RESIDE's RTTS/JPEGImages, URHI, OTS/hazy, your own)
#       PAIRS: paired folders hazy/{id}_*.png + gt/{id}.png (SOTS/outdoor, HSTS/synthetic, your own)
#   bash scripts/train_gpu.sh data/RTTS/JPEGImages data/URHI --val data/SOTS/outdoor --out runs/gpu
#   CLEARNET_SMOKE=1 bash scripts/train_gpu.sh --out OUT   # CPU smoke test: tiny recipe, 2 steps, on
#                                                          # hazy photos it makes (or on your DATA)
# Environment: CONFIG (default training/configs/gpu.yaml), DEVICE (default cuda), SPLITS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '9,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DATA=() PAIRS=() PHOTOS=() OUT="runs/gpu-$(date -u +%Y%m%d-%H%M)" into=data
while [ "$#" -gt 0 ]; do
  case "$1" in
    --val) into=pairs ;;
    --photos) into=photos ;;
    --out) [ "$#" -ge 2 ] || usage; OUT="$2"; shift ;;
    -h|--help) usage ;;
    -*) echo "train_gpu.sh: unknown option $1" >&2; usage ;;
    *) case "$into" in data) DATA+=("$1") ;; pairs) PAIRS+=("$1") ;; photos) PHOTOS+=("$1") ;; esac ;;
  esac
  shift
done
CONFIG="${CONFIG:-training/configs/gpu.yaml}"
DEVICE="${DEVICE:-cuda}"
SPLITS=()
[ -n "${SPLITS_DIR:-}" ] && SPLITS=(--splits-dir "$SPLITS_DIR")
EXTRA=()
[ -f .venv/bin/activate ] && . .venv/bin/activate
if [ -n "${CLEARNET_SMOKE:-}" ]; then
  CONFIG=training/configs/tiny.yaml DEVICE=cpu EXTRA=(--max-steps 2)
  if [ "${#DATA[@]}" -eq 0 ]; then
    python -m training smoke --data-only --out "$OUT"
    DATA=("$OUT/data/hazy") PAIRS=("$OUT/data/pairs")
  fi
fi
if [ "${#DATA[@]}" -eq 0 ] || [ "${#PAIRS[@]}" -eq 0 ]; then
  echo "train_gpu.sh: give folders of hazy photos and, after --val, paired folders" >&2
  usage
fi
set -x
python -m training train --config "$CONFIG" --device "$DEVICE" --no-progress "${EXTRA[@]}" "${SPLITS[@]}" \
  --data "${DATA[@]}" --val-pairs "${PAIRS[@]}" --out "$OUT/run"
python -m training export "$OUT/run/best.pt" --out "$OUT/hub" --name clearnet-gpu
python -m training evaluate --pairs "${PAIRS[@]}" --model "$OUT/hub/clearnet-gpu.safetensors" \
  --model clearnet-default --device "$DEVICE" --out "$OUT/eval" "${SPLITS[@]}"
if [ "${#PHOTOS[@]}" -gt 0 ]; then
  python -m training photos --images "${PHOTOS[@]}" --model "$OUT/hub/clearnet-gpu.safetensors" \
    --model clearnet-default --device "$DEVICE" --out "$OUT/photos"
fi
