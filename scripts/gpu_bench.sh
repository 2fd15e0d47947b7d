#!/usr/bin/env bash
# Measure ClearNet on a GPU: the CUDA tests, then `clearnet bench` on CUDA with 1 and 12 MP photos
# (float and 8-bit) and a 4K H.264 clip (re-encode only, dehaze only, end to end, CPU per stage).
# Everything goes under OUT: gpu.txt (the card, driver, torch), tests.txt, bench.json, bench.txt.
#
#   bash scripts/gpu_bench.sh [--out OUT]
#
# Environment: DEVICE (default cuda), CLIP (default 48x3840x2160), SIZES (default 1,12), REPEATS
# (default 5). A CPU smoke test of the script itself: DEVICE=cpu CLIP=2x64x48 SIZES=0.01 REPEATS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="runs/gpu-bench-$(date -u +%Y%m%d-%H%M)"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --out) [ "$#" -ge 2 ] || { echo "gpu_bench.sh: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_bench.sh: unknown argument $1 (usage: bash scripts/gpu_bench.sh [--out OUT])" >&2; exit 2 ;;
  esac
  shift
done
DEVICE="${DEVICE:-cuda}" CLIP="${CLIP:-48x3840x2160}" SIZES="${SIZES:-1,12}" REPEATS="${REPEATS:-5}"
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p "$OUT"
echo "gpu_bench: writing $OUT" >&2
{
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda); \
print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
} | tee "$OUT/gpu.txt"
if [ "$DEVICE" != "cpu" ]; then
  echo "gpu_bench: the CUDA tests" >&2
  python -m pytest -q -p no:cacheprovider -k "cuda or CUDA" tests/test_engine.py tests/test_fused.py \
    2>&1 | tee "$OUT/tests.txt" | tail -3
fi
echo "gpu_bench: clearnet bench --device $DEVICE --sizes $SIZES --clip $CLIP" >&2
clearnet bench --device "$DEVICE" --sizes "$SIZES" --methods clearnet,clearnet-8bit --video none \
  --clip "$CLIP" --repeats "$REPEATS" --json --output "$OUT/bench.json" > /dev/null
python - "$OUT/bench.json" <<'PY' | tee "$OUT/bench.txt"
import json, sys
from napari_clearnet.bench.report import format_report
print(format_report(json.load(open(sys.argv[1]))))
PY
