"""Build the API reference from the docstrings (numpydoc) with pdoc, in one command:

    python scripts/api_docs.py [OUTDIR]      # default: docs/api (not committed)

Any warning pdoc gives (a docstring it cannot parse, an annotation it cannot resolve) fails the
build; tests/test_architecture.py runs it, so CI checks the reference builds cleanly.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

#: the documented modules: the public surface (docs/architecture.md)
MODULES = [
    "napari_clearnet",
    "napari_clearnet.api",
    "napari_clearnet.errors",
    "napari_clearnet.core.options",
    "napari_clearnet.core.run",
    "napari_clearnet.core.engine",
    "napari_clearnet.analysis.depth",
    "napari_clearnet.io",
    "napari_clearnet.video",
    "napari_clearnet.weights",
    "napari_clearnet.batch",
]


def build(out: Path) -> list[str]:
    """Write the reference into ``out``; returns pdoc's warnings (none for a clean build)."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="numpy", show_source=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=out)
    return [f"{w.category.__name__}: {w.message}" for w in caught
            if "pdoc" in (w.filename or "") or (issubclass(w.category, UserWarning)
            and "pdoc" in str(w.message).lower())]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "docs" / "api"
    problems = build(out)
    for p in problems:
        print(f"api_docs: {p}", file=sys.stderr)
    print(f"api_docs: {'FAILED' if problems else 'written'}: {out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
