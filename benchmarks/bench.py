"""Run the napari-clearnet benchmark from a source checkout: same code as ``clearnet bench``.

    python benchmarks/bench.py --repeats 5 --output benchmarks/results-cpu-2threads.json
"""

import sys
from pathlib import Path

from napari_clearnet.bench import runner as bench

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    argv = sys.argv[1:]
    if "--original" not in argv:
        argv += ["--original", str(here / "original_unet.py")]
    sys.exit(bench.main(argv))
