"""Training a user can run: ``python -m training smoke`` on data it makes, committed split lists
that only apply to the folders they were made for, and scripts/train_gpu.sh's arguments."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from napari_clearnet.io import write_image
from training.__main__ import main as training_main
from training.data import read_ids_file
from training.evaluate import SPLITS_DIR, paired_splits
from training.validation import load_val_pairs

REPO = Path(__file__).resolve().parents[1]


def test_smoke_runs_the_whole_pipeline_in_seconds(tmp_path, capsys):
    out = tmp_path / "smoke"
    start = time.perf_counter()
    assert training_main(["smoke", "--out", str(out)]) == 0
    assert time.perf_counter() - start < 60
    printed = capsys.readouterr().out
    assert "| pairs | all | 4 |" in printed and "ClearNet (clearnet-smoke)" in printed
    assert len(list((out / "data" / "hazy").glob("*.png"))) == 12
    assert json.loads((out / "run" / "run.json").read_text())["steps"] == 4
    assert (out / "hub" / "clearnet-smoke.safetensors").is_file()
    assert (out / "eval" / "scores.md").is_file()
    # a second run neither mixes with nor silently replaces the first
    assert training_main(["smoke", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def _own_pairs(folder: Path, ids: list[str]) -> Path:
    """A paired folder (hazy/{id}_1.png + gt/{id}.png) with these IDs."""
    rng = np.random.default_rng(0)
    for pid in ids:
        clear = rng.random((24, 32, 3), dtype=np.float32)
        write_image(folder / "gt" / f"{pid}.png", clear)
        write_image(folder / "hazy" / f"{pid}_1.png", 0.5 * clear + 0.4)
    return folder


def test_a_committed_split_list_does_not_apply_to_ones_own_folder_of_that_name(tmp_path, capsys):
    """A folder of one's own called ``ihaze`` with other IDs: all its pairs, with a note, never
    "IDs not found"."""
    own = _own_pairs(tmp_path / "ihaze", ["9001", "9002", "9003"])
    rows = paired_splits([own], "auto")
    assert [(r.split, r.ids) for r in rows] == [("all", None)]
    err = capsys.readouterr().err
    assert "made for another copy of 'ihaze'" in err and "using all 3 pairs" in err
    pairs = load_val_pairs([str(own)])
    assert sorted(p.id for p in pairs["ihaze"]) == ["9001", "9002", "9003"]
    with pytest.raises(FileNotFoundError, match="--split all"):
        paired_splits([own], "val")


def test_a_committed_split_list_still_applies_to_the_set_it_was_made_for(tmp_path):
    ids = read_ids_file(SPLITS_DIR / "revide-val.txt") + read_ids_file(SPLITS_DIR / "revide-heldout.txt")
    same = _own_pairs(tmp_path / "revide", ids)
    rows = paired_splits([same], "auto")
    assert [r.split for r in rows] == ["val", "heldout"]
    assert rows[0].ids == tuple(read_ids_file(SPLITS_DIR / "revide-val.txt"))


def test_train_gpu_script_asks_for_data_instead_of_assuming_a_folder(tmp_path):
    env = {**os.environ}
    env.pop("CLEARNET_SMOKE", None)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "train_gpu.sh"), "--out", str(tmp_path / "o")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "DATA... --val PAIRS..." in proc.stderr and "shared" not in proc.stderr
    assert not (tmp_path / "o").exists()
