"""Record the golden outputs of the shipped model: ``python tests/make_golden.py``.

``tests/test_golden.py`` checks that the outputs of ``napari_clearnet.dehaze`` stay bit-identical
on a few images (generated ones and the sample data; both methods; a stack with temporal
smoothing, frame by frame and batched; sky protection; strengths other than 1; a fixed airlight
with another t0; strips). Run this script again, and commit ``tests/data/golden.json``, only when
the outputs are *meant* to change: new shipped weights, or a deliberate change of the method.

The record is keyed by the sha256 of the shipped weights, so a new model fails the test with a
message that points here rather than with a wall of differing hashes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import hazy_rgb, sky_scene

GOLDEN = Path(__file__).resolve().parent / "data" / "golden.json"
#: values sampled at fixed positions, so a difference on another kind of CPU can be judged
N_PROBES = 16


def _motorcycle() -> np.ndarray:
    from napari_clearnet._plugin.sample_data import hazy_motorcycle

    return hazy_motorcycle()[1][0]


def _clip() -> np.ndarray:
    from napari_clearnet._plugin.sample_data import hazy_motorcycle_stack

    return hazy_motorcycle_stack(n_frames=5, height=96, width=128)[0][0]


def _grey16() -> np.ndarray:
    return np.round(hazy_rgb(36, 50, 3).mean(-1) * 65535).astype(np.uint16)


#: name -> (image maker, dehaze keyword arguments); every case runs with both methods
CASES: dict[str, tuple[Callable[[], np.ndarray], dict[str, Any]]] = {
    "small": (hazy_rgb, {}),
    "motorcycle": (_motorcycle, {}),
    "motorcycle-strips": (_motorcycle, {"strip_pixels": 40_000}),
    "clip-smoothed-batched": (_clip, {"temporal_smoothing": 0.6, "batch_size": 3}),
    "clip-smoothed-frame-by-frame": (_clip, {"temporal_smoothing": 0.6, "batch_size": 1}),
    "sky-protection": (sky_scene, {"sky_protection": 0.2}),
    "strength-0.6": (hazy_rgb, {"strength": 0.6}),
    "strength-1.7-sky": (sky_scene, {"strength": 1.7, "sky_protection": 0.1}),
    "fixed-airlight-t0": (hazy_rgb, {"airlight": (0.8, 0.85, 0.9), "t0": 0.2}),
    "grey-uint16": (_grey16, {}),
}
METHODS = ("clearnet", "dcp")


@contextmanager
def one_thread() -> Iterator[None]:
    """Record and compare with one CPU thread, so the thread count cannot change a bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe(a: np.ndarray) -> dict[str, Any]:
    """sha256 of the float32 bytes, the shape, a few statistics and probes."""
    a = np.ascontiguousarray(a, dtype="<f4")
    flat = a.reshape(-1)
    idx = np.linspace(0, flat.size - 1, N_PROBES).round().astype(int)
    return {
        "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        "shape": list(a.shape),
        "mean": float(flat.mean(dtype=np.float64)),
        "min": float(flat.min()),
        "max": float(flat.max()),
        "probes": [float(v) for v in flat[idx]],
    }


def machine() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def weights_sha256() -> str:
    from napari_clearnet import weights

    entry = weights.get_entry(weights.DEFAULT_MODEL)
    return weights.sha256_file(entry.bundled_path)


def outputs(case: str, method: str) -> dict[str, dict[str, Any]]:
    """The described outputs of one case: image, transmission, raw transmission, airlight."""
    import napari_clearnet

    make, kwargs = CASES[case]
    with one_thread():
        res = napari_clearnet.dehaze(make(), method=method, device="cpu", with_raw=True, **kwargs)
    out = {"image": res.image, "transmission": res.transmission, "airlight": res.airlight,
           "transmission_raw": res.transmission_raw}
    return {k: describe(v) for k, v in out.items()}


def record() -> dict[str, Any]:
    cases = {f"{case}/{method}": outputs(case, method) for case in CASES for method in METHODS}
    return {"weights_sha256": weights_sha256(), "machine": machine(), "cases": cases}


def main() -> int:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    data = record()
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(data['cases'])} cases for weights {data['weights_sha256'][:12]}… to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
