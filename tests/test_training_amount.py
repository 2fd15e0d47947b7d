"""``python -m training amount``: what predicts the haze amount (training/amount.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _common import REPO, write_hazy

from napari_clearnet import weights
from napari_clearnet.core.model import ClearNet, ClearNetConfig
from training import amount
from training.__main__ import main as training_main
from training.config import load_config

SMALL = ClearNetConfig(widths=(4, 8), working_size=64)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("amount")
    sets = []
    for k, name in enumerate(("rooms", "outdoor")):
        write_hazy(root / name / "hazy", 3, seed=10 + k, gt=root / name / "gt")
        sets.append(root / name)
    return sets


def test_the_report_of_an_untrained_model(tmp_path: Path, hazy_dir: Path, two_sets: list[Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An untrained model *is* its prior: its fit to the pseudo-pairs equals the prior's, bin for bin.
    Every row has the prior at strength 1, the pseudo-taught strength, the leave-set-out diagnosis
    (two sets) and the per-image best, which no strength set by a regressor can beat."""
    torch.manual_seed(0)
    w = tmp_path / "untrained.safetensors"
    weights.save_weights(ClearNet(SMALL), w)
    out = tmp_path / "study"
    rc = training_main(["amount", "--pairs", *map(str, two_sets), "--data", str(hazy_dir),
                        "--model", str(w), "--config", str(REPO / "training/configs/tiny.yaml"),
                        "--batches", "4", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "## 1. The pseudo-pairs' fit" in printed and (out / "amount.md").read_text() == printed
    rec = json.loads((out / "amount.json").read_text())
    assert rec["fit"], "no pseudo-pair bins"
    for row in rec["fit"]:
        assert row["model"] == pytest.approx(row["prior"], abs=1e-6)
        assert row["model A error"] == pytest.approx(row["prior A error"], abs=1e-6)
    assert {(r["set"], r["split"]) for r in rec["carry_over"]} == {("rooms", "all"), ("outdoor", "all")}
    for row in rec["carry_over"]:
        assert row["n"] == 3
        for k in ("prior", "pseudo-taught", "leave-set-out"):
            assert 5 < row[k] <= row["best"] + 1e-9, (k, row)
        assert row["k-fold"] is None  # 3 images: too few for 5 folds
    assert rec["haze_free"]["prior"]["n"] == 6 and rec["pseudo_pairs"]["teach"] == 4 * 2


def test_features_are_named_and_read_haze(hazy_dir: Path) -> None:
    """One name per feature; a denser veil over the same scene raises the prior's depth and the
    dark channel's percentiles, and lowers the gradients (what the head and the regressors read)."""
    prior = ClearNet(SMALL)
    torch.manual_seed(0)
    j = 0.1 + 0.8 * torch.rand(1, 3, 48, 64)
    light, dense = (j * t + 0.8 * (1 - t) for t in (0.8, 0.3))
    f = amount.image_features(prior, torch.cat([light, dense]))
    assert f.shape == (2, len(amount.FEATURE_NAMES))
    col = {n: i for i, n in enumerate(amount.FEATURE_NAMES)}
    assert f[1, col["depth mean"]] > f[0, col["depth mean"]]
    assert f[1, col["dark p50"]] > f[0, col["dark p50"]]
    assert f[1, col["grad x"]] < f[0, col["grad x"]]


def test_the_study_refuses_what_it_cannot_use(tmp_path: Path, hazy_dir: Path, two_sets: list[Path]) -> None:
    cfg = load_config(REPO / "training/configs/tiny.yaml")
    with pytest.raises(ValueError, match="must hold 0 and 1"):
        amount.study(two_sets, [hazy_dir], "x.pt", cfg, grid=(0.5, 1.5))
    write_hazy(tmp_path / "one", 1)
    w = tmp_path / "m.safetensors"
    weights.save_weights(ClearNet(SMALL), w)
    with pytest.raises(ValueError, match="too few hazy images"):
        amount.study(two_sets, [tmp_path / "one"], w, cfg)
    assert training_main(["amount", "--pairs", str(two_sets[0]), "--data", str(hazy_dir),
                          "--model", str(w), "--batches", "0", "--out", str(tmp_path / "o")]) == 2
