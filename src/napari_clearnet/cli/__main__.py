"""``python -m napari_clearnet.cli``: the ``clearnet`` command."""

import sys

from .app import main

sys.exit(main())
