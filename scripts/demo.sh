#!/usr/bin/env bash
# The main job in one command: set up, then dehaze a folder with the bundled default model (CPU).
#   bash scripts/demo.sh                 # hazy samples made from scikit-image's stereo photo
#   bash scripts/demo.sh my_photos/      # your own files or folders
# Results go to demo/out: <name>_dehazed.png, <name>_transmission.png, <name>_airlight.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh ""
. .venv/bin/activate
if [ "$#" -eq 0 ]; then
  mkdir -p demo/hazy
  python - <<'PY'
from pathlib import Path
from napari_clearnet._plugin.sample_data import hazy_motorcycle, hazy_motorcycle_stack
from napari_clearnet.io import write_image

out = Path("demo/hazy")
for beta in (1.0, 1.8, 2.6):
    _, (hazy, _, _) = hazy_motorcycle(beta)
    p = out / f"motorcycle_beta{beta:.1f}.png"
    if not p.exists():
        write_image(p, hazy / 255.0)
print(f"hazy samples in {out}/")
PY
  set -- demo/hazy
fi
clearnet dehaze "$@" -o demo/out --save-transmission --save-airlight --skip-existing
echo "done: see demo/out/"
