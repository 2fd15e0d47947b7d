"""One benchmark measurement in its own process: ``python -m napari_clearnet.bench --worker …``."""

from __future__ import annotations

import json
import subprocess
import sys

__all__ = ["run_worker"]

def run_worker(argv: list[str], timeout: float) -> dict:
    """Run ``python -m napari_clearnet.bench ARGV`` and return the JSON its last line prints."""
    args = [sys.executable, "-m", "napari_clearnet.bench", *argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"worker failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])
