"""``python -m napari_clearnet.bench``: the benchmark (and its measuring worker processes)."""

import sys

from .runner import main

sys.exit(main())
