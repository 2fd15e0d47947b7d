"""training/export.py, evaluate.py, photos.py and ``python -m training``: exports load in the
plugin with identical outputs and a ModelCard; evaluation and the sky check write valid reports;
the README's commands run as written; no traceback (issue 12: F10, F27, F37)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _common import REPO, TINY, strict_json, train_cli, training_config, write_hazy

import napari_clearnet
from napari_clearnet import io, weights
from training.__main__ import main as training_main
from training.checkpoints import load_checkpoint
from training.data import read_ids_file
from training.export import ema_model, export, export_hub_folder


def test_export_loads_in_the_plugin_with_identical_outputs(full_run: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(full_run / "last.pt")
    res = export(full_run / "last.pt", tmp_path / "hub", name="clearnet-tiny")
    path = Path(res["weights"])
    files = {p.name for p in (tmp_path / "hub").iterdir()}
    assert files >= {"clearnet-tiny.safetensors", "config.json", "README.md"}
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "## Run record" in card and "step 4" in card
    dehazer = napari_clearnet.load_model(path, device="cpu")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = ema_model(ck)(x), dehazer.model(x)
    for k in ("t", "airlight"):
        assert torch.equal(ours[k], theirs[k])
    with pytest.raises(FileExistsError):
        export(full_run / "last.pt", tmp_path / "hub", name="clearnet-tiny")


def test_export_bundle_updates_registry(
    full_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wdir = tmp_path / "weights"
    wdir.mkdir()
    shutil.copy(weights.bundled_dir() / "registry.json", wdir / "registry.json")
    monkeypatch.setattr(weights.registry, "bundled_dir", lambda: wdir)
    res = export(full_run / "best.pt", tmp_path / "hub", name="clearnet-default", bundle=True)
    entry = next(m for m in json.loads((wdir / "registry.json").read_text())["models"]
                 if m["name"] == "clearnet-default")
    target = wdir / "clearnet-default.safetensors"
    assert res["bundled"] == str(target)
    assert res["sha256"] == weights.sha256_file(target)  # the bundled file is the Hub folder's file
    assert entry["sha256"] == weights.sha256_file(target) and entry["size"] == target.stat().st_size
    assert "config" not in entry and entry["bundled"] is True
    assert (wdir / "clearnet-default.md").read_text() == (tmp_path / "hub" / "README.md").read_text()
    assert weights.read_weights(target)[1].widths == (4, 8)  # the config comes with the file


def test_export_refuses_non_finite_weights(hazy: Path, tmp_path: Path, capsys) -> None:  # F10
    assert train_cli(TINY, hazy, tmp_path / "run", "--max-steps", "2") == 0
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    for v in ck["ema"].values():
        if v.is_floating_point():
            v.fill_(float("nan"))
    torch.save(ck, tmp_path / "nan.pt")
    assert training_main(["export", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "hub")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()


def test_export_hub_folder(tmp_path: Path, tiny_file: Path) -> None:
    out = export_hub_folder(
        tiny_file, tmp_path / "hub", name="clearnet-tiny", repo_id="me/clearnet-tiny",
        training_data="64 real hazy photos", metrics={"PSNR (dB)": 20.1, "SSIM": 0.85},
        tags=["dehazing"],
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "clearnet-tiny.safetensors", "config.json", "registry-entry.json"]
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "bsd-3-clause" and front["library_name"] == "napari-clearnet"
    assert {"dehazing", "napari", "image-dehazing"} <= set(front["tags"])
    for section in ("## Training data", "## Metrics", "## Licence", "64 real hazy photos", "| SSIM | 0.85 |",
                    "hf://me/clearnet-tiny/clearnet-tiny.safetensors"):
        assert section in card
    entry = json.loads((out / "registry-entry.json").read_text())
    assert "config" not in entry  # the config travels in the weights file and config.json
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"models": [entry]}))
    (e,) = weights.list_models(reg)
    weights.verify_file(out / "clearnet-tiny.safetensors", e)  # the record matches the file
    assert e.sha256 in card
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["clearnet_config"]["widths"] == [4, 8]
    with pytest.raises(weights.WeightsError, match="exists and is not empty"):
        export_hub_folder(tiny_file, out, name="clearnet-tiny")
    with pytest.raises(weights.WeightsError, match="model name"):
        export_hub_folder(tiny_file, tmp_path / "x", name="bad name")


def test_evaluate_writes_table_csv_and_grid(full_run: Path, pairs_dir: Path, tmp_path: Path) -> None:
    w = tmp_path / "m.safetensors"
    weights.save_weights(ema_model(load_checkpoint(full_run / "last.pt")), w)
    ids = tmp_path / "ids.txt"
    ids.write_text("# two of three\n1000\n1002\n")
    rc = training_main(["evaluate", "--pairs", str(pairs_dir), "--model", str(w), "--ids-file", str(ids),
                        "--out", str(tmp_path / "ev"), "--device", "cpu"])
    assert rc == 0
    table = (tmp_path / "ev" / "scores.md").read_text()
    head = "| set | split | pairs | hazy input | DCP (classic) | prior (untrained) | ClearNet (m) |"
    assert head in table and f"| {pairs_dir.name} | ids | 2 |" in table
    rows = (tmp_path / "ev" / "scores.csv").read_text().splitlines()
    assert rows[0] == "set,split,id,method,psnr,ssim"
    assert {r.split(",")[2] for r in rows[1:]} == {"1000", "1002"} and len(rows) == 1 + 2 * 4
    grid = io.read_image(tmp_path / "ev" / "grid.png")
    assert grid.ndim == 3 and grid.shape[1] > 4 * grid.shape[0] // 2  # 2 rows × 5 columns
    summary = json.loads((tmp_path / "ev" / "scores.json").read_text())["rows"][0]["mean"]
    assert summary["DCP (classic)"]["psnr"] > summary["hazy input"]["psnr"]
    # the untrained prior is the model with its heads at zero: its own column
    assert set(summary) == {"hazy input", "DCP (classic)", "prior (untrained)", "ClearNet (m)"}


def test_evaluate_reports_every_set_and_split_side_by_side(
    full_run: Path, pairs_dir: Path, tmp_path: Path
) -> None:
    from training.evaluate import evaluate

    w = tmp_path / "m.safetensors"
    weights.save_weights(ema_model(load_checkpoint(full_run / "last.pt")), w)
    other = tmp_path / "other"
    write_hazy(other / "hazy", 2, seed=5, gt=other / "gt")
    splits = tmp_path / "splits"
    splits.mkdir()
    for name, val, held in ((pairs_dir.name, ["1001"], ["1000", "1002"]), ("other", ["1000"], ["1001"])):
        (splits / f"{name}-val.txt").write_text("# val\n" + "\n".join(val) + "\n")
        (splits / f"{name}-heldout.txt").write_text("\n".join(held) + "\n")
    table = evaluate([pairs_dir, other], [w, "clearnet-default"], split="both", device="cpu",
                     out_dir=tmp_path / "ev", splits_dir=splits, n_grid=1)
    assert list(table) == [f"{pairs_dir.name} val", f"{pairs_dir.name} heldout", "other val", "other heldout"]
    assert [int(table[k]["n"][0]) for k in table] == [1, 2, 1, 1]
    cols = [m for m in table[f"{pairs_dir.name} val"] if m != "n"]
    assert cols == ["hazy input", "DCP (classic)", "prior (untrained)", "ClearNet (m)",
                    "ClearNet (clearnet-default)"]
    md = (tmp_path / "ev" / "scores.md").read_text()
    assert md.count("| other |") == 2 and "| heldout |" in md
    assert len(list((tmp_path / "ev").glob("grid-*.png"))) == 4
    evaluate([other], [w], split="val", device="cpu", out_dir=tmp_path / "ev0", splits_dir=splits, n_grid=0)
    assert (tmp_path / "ev0" / "scores.md").is_file() and not list((tmp_path / "ev0").glob("grid*.png"))
    with pytest.raises(FileNotFoundError, match=r"other-val\.txt"):
        evaluate([other], [w], split="val", splits_dir=tmp_path)
    # the committed splits cover every real paired set, and val and held-out never overlap
    from training.evaluate import SPLITS_DIR

    for name in ("pairs-dev", "ihaze", "revide", "its", "sots-outdoor", "reside-outdoor"):
        val = set(read_ids_file(SPLITS_DIR / f"{name}-val.txt"))
        held = set(read_ids_file(SPLITS_DIR / f"{name}-heldout.txt"))
        assert val and held and not val & held, name


def test_evaluate_writes_valid_json_for_an_identical_pair(tmp_path: Path) -> None:  # F37
    root = tmp_path / "pairs"
    write_hazy(root / "hazy", 2, seed=3, gt=root / "gt")
    (root / "gt" / "1000.png").write_bytes((root / "hazy" / "1000_1.png").read_bytes())  # hazy == gt
    rc = training_main(["evaluate", "--pairs", str(root), "--model", "clearnet-default", "--out",
                        str(tmp_path / "ev"), "--device", "cpu"])
    assert rc == 0
    scores = strict_json(tmp_path / "ev" / "scores.json")
    assert scores["rows"][0]["mean"]["hazy input"]["psnr"] is None  # infinite PSNR, written as null
    assert "inf" in (tmp_path / "ev" / "scores.csv").read_text()
    assert io.read_image(tmp_path / "ev" / "grid.png").ndim == 3


def test_photos_sky_check_and_sheet(full_run: Path, tmp_path: Path) -> None:
    """Real photos without references: sky-checked when they have sky, and a sheet of the named
    ones (rows: hazy | DCP | model)."""
    w = tmp_path / "m.safetensors"
    weights.save_weights(ema_model(load_checkpoint(full_run / "last.pt")), w)
    rng = np.random.default_rng(0)
    sky = np.concatenate([np.full((60, 90, 3), 0.9) + rng.random((60, 90, 3)) * 0.004,
                          0.3 + 0.4 * rng.random((60, 90, 3))])
    io.write_image(tmp_path / "photos" / "with_sky.png", sky)
    io.write_image(tmp_path / "photos" / "no_sky.png", 0.3 + 0.4 * rng.random((80, 90, 3)))
    fog = np.full((80, 90, 3), 0.85) + rng.random((80, 90, 3)) * 0.004
    io.write_image(tmp_path / "photos" / "all_fog.png", fog)
    rc = training_main(["photos", "--images", str(tmp_path / "photos"), "--model", str(w), "--out",
                        str(tmp_path / "pv"), "--sheet", str(tmp_path / "sheet.jpg"), "--sheet-photos",
                        "no_sky", "with_sky.png", "--device", "cpu"])
    assert rc == 0
    rec = json.loads((tmp_path / "pv" / "scores.json").read_text())
    judged = {r["photo"] for r in rec["photos"] if r["judged"]}
    assert judged == {"photos/with_sky.png"}  # only photos with sky
    # haze filling the whole frame is listed with its numbers but not judged as a sky
    assert {r["photo"] for r in rec["photos"] if not r["judged"]} == {"photos/all_fog.png"}
    assert set(rec["summary"]) == {"DCP (classic)", "ClearNet (m)"}
    assert "| photos/with_sky.png |" in (tmp_path / "pv" / "scores.md").read_text()
    sheet = io.read_image(tmp_path / "sheet.jpg")
    assert sheet.shape[0] > 2 * 200 and sheet.shape[1] > 3 * 200  # 2 rows × 3 columns
    assert training_main(["photos", "--images", str(tmp_path / "photos"), "--model", str(w), "--out",
                          str(tmp_path / "pv2"), "--sheet", str(tmp_path / "s2.jpg"), "--sheet-photos",
                          "missing"]) == 2


def test_the_cli_prints_no_traceback(hazy: Path, tmp_path: Path) -> None:  # F27
    cfg = training_config(tmp_path, text="model: [unclosed\n")
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path}
    p = subprocess.run([sys.executable, "-m", "training", "train", "--config", str(cfg), "--data", str(hazy),
                        "--out", str(tmp_path / "run")], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not valid YAML" in p.stderr


def test_readme_training_section_runs_as_written(hazy_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    """Every `python -m training` command of the README's Training section, as written (continued
    lines joined, ``$D`` the data folder), with ``D`` pointed at tiny generated folders in the
    shared data's layout, the run cut to 2 steps and no committed split lists (the tiny pairs
    have other IDs)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Training\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    assert re.search(r"^D=\S+", block, re.M), "the README's training block sets D (the data folder)"
    lines = [ln for ln in block.splitlines() if ln.startswith("python -m training ")]
    assert [ln.split()[3] for ln in lines] == ["train", "export", "evaluate"]
    data = tmp_path / "data"
    for name, src in {"real-hazy": hazy_dir / "hazy", "real-hazy-web": hazy_dir / "hazy",
                      "rgbd-train-hazy/hazy": hazy_dir / "hazy", "pairs-dev": pairs_dir,
                      "pairs-real/ihaze": pairs_dir, "pairs-real/revide": pairs_dir}.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).symlink_to(src, target_is_directory=True)
    no_lists = tmp_path / "no-lists"
    no_lists.mkdir()
    cwd = os.getcwd()
    os.chdir(REPO)  # the README runs from the repository root (training/configs/...)
    try:
        for line in lines:
            argv = line.replace("$D", str(data)).replace("runs/mine", str(tmp_path / "mine")).split()[3:]
            if argv[0] == "train":
                argv += ["--max-steps", "2", "--device", "cpu", "--no-progress"]
                argv += ["--splits-dir", str(no_lists)]
            if argv[0] == "evaluate":
                argv += ["--splits-dir", str(no_lists), "--grid", "0"]
            assert training_main(argv) == 0, line
    finally:
        os.chdir(cwd)
    assert (tmp_path / "mine" / "hub" / "my-clearnet.safetensors").is_file()


def test_hub_folder_files_get_normal_permissions(tmp_path: Path, tiny_file: Path) -> None:  # F33
    old = os.umask(0o022)
    try:
        folder = export_hub_folder(tiny_file, tmp_path / "hub", name="w")
    finally:
        os.umask(old)
    assert sorted(f.name for f in folder.iterdir()) == ["README.md", "config.json", "registry-entry.json",
                                                       "w.safetensors"]  # no temporary file left
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f.name


def test_model_card_is_a_huggingface_model_card(tmp_path: Path, tiny_file: Path) -> None:
    from huggingface_hub import ModelCard

    folder = export_hub_folder(tiny_file, tmp_path / "hub", name="w", appendix="## Run record\n\nstep 4")
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "bsd-3-clause" and card.data.library_name == "napari-clearnet"
    assert card.data.pipeline_tag == "image-to-image" and "clearnet" in card.data.tags
    assert card.text.rstrip().endswith("## Run record\n\nstep 4")


def test_gpu_training_script_passes_its_cpu_smoke_test(tmp_path: Path) -> None:
    """scripts/train_gpu.sh, as written, on a tiny copy of the data layout: train (2 steps of the
    tiny recipe on the CPU), export, evaluate every paired set and sky-check the photos."""
    data = tmp_path / "data"
    write_hazy(data / "real-hazy" / "misc", 3, seed=1)
    write_hazy(data / "real-hazy-web" / "dawn-fog", 3, seed=2)
    write_hazy(data / "rgbd-train-hazy" / "hazy", 3, seed=3)
    splits = tmp_path / "splits"
    splits.mkdir()
    for k, name in enumerate(("pairs-dev", "pairs-real/ihaze", "pairs-real/revide")):
        root = data / name
        write_hazy(root / "hazy", 2, seed=10 + k, gt=root / "gt")
        (splits / f"{root.name}-val.txt").write_text("1000\n")
        (splits / f"{root.name}-heldout.txt").write_text("1001\n")
    env = {**os.environ, "CLEARNET_SMOKE": "1", "DATA": str(data), "SPLITS_DIR": str(splits),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "train_gpu.sh"), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((out / "run" / "run.json").read_text())
    assert rec["steps"] == 2 and set(rec["n_val_pairs"]) == {"pairs-dev", "ihaze", "revide"}
    assert (out / "hub" / "clearnet-gpu.safetensors").is_file()
    table = (out / "eval" / "scores.md").read_text()
    for row in ("| pairs-dev | val |", "| ihaze | heldout |", "| revide | val |"):
        assert row in table
    assert "ClearNet (clearnet-gpu)" in table and "prior (untrained)" in table
    assert (out / "photos" / "scores.json").is_file()
