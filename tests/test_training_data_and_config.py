"""training/data.py and training/config.py: RESIDE layouts and plain folders, the split, bad and
oversized files skipped; every config value type- and range-checked (issue 12: F27)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from _common import REPO, TINY, png_bytes, train_cli, training_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_clearnet import io
from training.config import TrainConfig, load_config
from training.data import HazyCrops, find_hazy_images, find_pairs, split_train_val


def test_data_layouts_split_and_bad_files(tmp_path: Path) -> None:
    img = np.full((20, 30, 3), 0.5, np.float32)
    for rel in ("SOTS/indoor/hazy/1400_1.png", "SOTS/indoor/gt/1400.png", "ITS/clear/1.png",
                "ITS/hazy/1_1_0.9.png", "RTTS/JPEGImages/a.png", "HSTS/synthetic/GT/x.png",
                "plain/sub/b.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        io.write_image(tmp_path / rel, img)
    (tmp_path / "plain" / "broken.png").write_bytes(b"not an image")
    items = find_hazy_images([tmp_path])
    keys = [k for _, k in items]
    assert not any("/gt/" in k or "/clear/" in k or "/GT/" in k for k in keys)
    assert {f"{tmp_path.name}/ITS/hazy/1_1_0.9.png", f"{tmp_path.name}/RTTS/JPEGImages/a.png"} <= set(keys)
    tr, va = split_train_val(items)
    tr2, va2 = split_train_val(list(reversed(items)))
    assert sorted(tr) == sorted(tr2) and sorted(va) == sorted(va2)
    broken = next(p for p, _ in items if p.name == "broken.png")
    ds = HazyCrops([broken, *(p for p, _ in items if p != broken)], 16, seed=0)
    with pytest.warns(UserWarning, match="skipping unreadable"):
        crops = [ds[n] for n in range(len(ds))]
    assert all(c.shape == (3, 16, 16) for c in crops)
    pairs = find_pairs(tmp_path / "SOTS" / "indoor")
    assert [(p.id, p.gt.name) for p in pairs] == [("1400", "1400.png")]


def test_a_decompression_bomb_among_training_images_is_skipped(hazy: Path, tmp_path: Path) -> None:  # F27
    data = tmp_path / "data"
    for p in sorted((hazy / "hazy").iterdir()):
        (data / "hazy").mkdir(parents=True, exist_ok=True)
        (data / "hazy" / p.name).write_bytes(p.read_bytes())

    for name in ("1000_1.png", "1001_1.png", "1002_1.png"):  # some land in train, some in validation
        (data / "hazy" / name).write_bytes(png_bytes(50000, 50000, 8, 2, None))
    with pytest.warns(UserWarning, match="image too large"):
        assert train_cli(TINY, data, tmp_path / "run", "--max-steps", "2") == 0


@pytest.mark.parametrize(
    ("edit", "text", "match"),
    [(None, "model: [unclosed\n", r"not valid YAML \(line 2"),
     (None, "- a\n- b\n", "expected a mapping of sections"),
     (None, "optim: [1, 2]\n", "optim must be a mapping"),
     ({"optim": {"batch_size": 0}}, None, r"optim\.batch_size must be in \[1, "),
     ({"data": {"val_crops": 0}}, None, r"data\.val_crops must be in \[1, "),
     ({"optim": {"max_steps": "abc"}}, None, r"optim\.max_steps must be an integer, got 'abc'"),
     ({"optim": {"lr": float("nan")}}, None, r"optim\.lr must be a finite number"),
     ({"optim": {"train_residual": "yes"}}, None, r"optim\.train_residual must be true or false"),
     ({"data": {"crop_range": [0.9, 0.5]}}, None, r"data\.crop_range must be \(low, high\)"),
     ({"model": {"widths": [4, 30000]}}, None, r"model\.widths\[1\] must be in"),
     ({"loss": {"tv": -1}}, None, r"loss\.tv must be in"),
     ({"optim": {"bach_size": 4}}, None, r"unknown optim keys \['bach_size'\]")],
)
def test_bad_configs_give_one_line_errors(hazy: Path, tmp_path: Path, capsys, edit, text, match) -> None:
    cfg = training_config(tmp_path, edit, text)
    assert train_cli(cfg, hazy, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(cfg) in err
    assert pytest.importorskip("re").search(match, err), err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["model", "loss", "pseudo", "data", "optim"]), data=st.data(),
       value=st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=3), st.lists(st.floats(-2, 2), max_size=3), st.dictionaries(
                           st.text(max_size=2), st.integers(), max_size=2)))
def test_property_any_config_value_is_checked(section: str, data, value) -> None:  # F27
    """Any value in any field of any section: the config loads (and every number in it is finite)
    or a ValueError names the field; never another exception."""
    cfg = yaml.safe_load(TINY.read_text()) or {}
    fields = sorted(TrainConfig().to_dict()[section])
    key = data.draw(st.sampled_from(fields))
    cfg.setdefault(section, {})[key] = value
    try:
        TrainConfig.from_dict(cfg)
    except ValueError as exc:
        assert f"{section}." in str(exc) or "unknown" in str(exc), exc


@pytest.mark.parametrize("widths", [[], [8], [8, 0]])
def test_a_settings_class_own_check_names_its_section(widths) -> None:
    """What ClearNetConfig itself refuses (fewer than two widths) is named ``model.widths`` too."""
    cfg = yaml.safe_load(TINY.read_text()) or {}
    cfg.setdefault("model", {})["widths"] = widths
    with pytest.raises(ValueError, match=r"^model\.widths"):
        TrainConfig.from_dict(cfg)


def test_config_files_in_the_repository_still_load() -> None:
    for p in sorted((REPO / "training" / "configs").glob("*.yaml")):
        load_config(p)
