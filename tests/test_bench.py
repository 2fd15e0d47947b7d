"""Issue 12, ``clearnet bench``: its output path and sizes are checked before it runs, and its
JSON (like every JSON file the package writes) is valid JSON. Findings: F28 (and F10/F13/F37's
JSON side through ``_validate.json_text``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_clearnet import bench
from napari_clearnet._validate import json_text

_SCRIPT = Path(sys.executable).with_name("clearnet")
CLEARNET = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "napari_clearnet.cli"]


@pytest.mark.parametrize(
    ("args", "match"),
    [(["--output", "/nonexistent/x.json"], "folder /nonexistent does not exist"),
     (["--output", "."], "is a folder"),
     (["--sizes", "inf"], "--sizes takes megapixels"),
     (["--sizes", "nan"], "--sizes takes megapixels"),
     (["--sizes", "-1"], "--sizes takes megapixels")],
)
def test_bad_output_and_sizes_are_refused_before_the_run(tmp_path: Path, args: list[str], match: str) -> None:
    start = time.monotonic()  # F28
    p = subprocess.run([*CLEARNET, "bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp",
                        "--video", "none", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and match in p.stderr, p.stderr
    assert "dcp" not in p.stdout  # nothing was measured
    assert time.monotonic() - start < 30


def test_a_short_bench_writes_valid_json(tmp_path: Path, capsys) -> None:  # F28
    out = tmp_path / "b.json"
    from napari_clearnet.cli import main

    assert main(["bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp", "--video", "none",
                 "--output", str(out)]) == 0
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["results"][0]["method"] == "dcp"
    assert not list(tmp_path.glob(".*.tmp"))


def test_bench_cases_that_already_worked_still_do(capsys) -> None:
    """Review row 86: an empty clip is a skipped row; a device this machine lacks (now) stops
    before anything runs."""
    from napari_clearnet.cli import main

    assert main(["bench", "--sizes", "0.01", "--repeats", "1", "--methods", "dcp", "--video", "0x64x48"]) == 0
    assert "skipped" in capsys.readouterr().out
    import torch

    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        args = ["bench", "--sizes", "0.01", "--methods", "dcp", "--video", "none", "--device", "mps"]
        assert main(args) == 2
        assert "not available" in capsys.readouterr().err


def test_json_text_writes_non_finite_numbers_as_null() -> None:  # F10, F13, F37
    text = json_text({"a": float("nan"), "b": [float("inf"), -math.inf, 1.5], "c": np.float32("nan"),
                      "d": np.arange(2), "e": np.int64(3)})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": None, "d": [0, 1], "e": 3}
    assert bench.MAX_MEGAPIXELS >= 12
