"""training/: a few steps on tiny generated hazy images, exact resume, export loaded by the
plugin, a 2-process DDP run, evaluation on a tiny paired folder, and the data layouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_clearnet
from napari_clearnet import io, physics, weights
from training.__main__ import main as training_main
from training.config import load_config
from training.data import HazyCrops, find_hazy_images, find_pairs, read_ids_file, split_train_val
from training.export import ema_model, export
from training.train import TrainOptions, load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "training" / "configs" / "tiny.yaml"


def _write_hazy(folder: Path, n: int, seed: int = 0, gt: Path | None = None) -> None:
    """Hazy images made with the scattering model (depth grows towards the top), RESIDE naming."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        j = 0.1 + 0.8 * torch.rand(1, 3, 48, 64, generator=g)
        t = torch.linspace(0.3, 0.9, 48).reshape(1, 1, 48, 1).expand(1, 1, 48, 64)
        a = torch.tensor([[0.8, 0.82, 0.85]])
        hazy = physics.haze(j, t, a)[0].permute(1, 2, 0).numpy()
        io.write_image(folder / f"{1000 + i}_1.png", hazy)
        if gt is not None:
            gt.mkdir(parents=True, exist_ok=True)
            io.write_image(gt / f"{1000 + i}.png", j[0].permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def hazy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hazy")
    _write_hazy(root / "hazy", 10)
    return root


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    _write_hazy(root / "hazy", 3, seed=1, gt=root / "gt")
    return root


def _train(
    data: Path, out: Path, steps: int, resume: Path | None = None, pairs: Path | None = None,
    stop_at: int | None = None,
) -> dict:
    return train(load_config(TINY), TrainOptions(
        data=[str(data)], out=str(out), max_steps=steps, device="cpu", stop_at=stop_at,
        resume=str(resume) if resume else None, val_pairs=str(pairs) if pairs else None, progress=False,
    ))


@pytest.fixture(scope="module")
def full_run(hazy_dir: Path, pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run_full")
    _train(hazy_dir, out, 4, pairs=pairs_dir)
    return out


def test_train_writes_checkpoints_record_and_tensorboard(full_run: Path) -> None:
    rec = json.loads((full_run / "run.json").read_text())
    assert rec["steps"] == 4 and rec["n_train_images"] + rec["n_val_images"] == 10
    assert [h["step"] for h in rec["history"]] == [0, 2, 4]
    assert all(np.isfinite(h["val/psnr"]) and np.isfinite(h["val/pseudo_total"]) for h in rec["history"])
    best = json.loads((full_run / "best.json").read_text())
    assert best["measure"].startswith("val/psnr")
    assert best["value"] == max(h["val/psnr"] + 1e-3 * h["val/ssim"] for h in rec["history"])
    assert load_checkpoint(full_run / "best.pt")["step"] == best["step"]
    assert any((full_run / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_continues_exactly(full_run: Path, hazy_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    _train(hazy_dir, tmp_path, 4, pairs=pairs_dir, stop_at=2)  # an interrupted 4-step run
    half = load_checkpoint(tmp_path / "last.pt")
    assert half["step"] == 2
    _train(hazy_dir, tmp_path, 4, resume=tmp_path / "last.pt", pairs=pairs_dir)
    resumed, straight = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(full_run / "last.pt")
    assert resumed["step"] == 4
    # optimiser state restored: Adam's step counter continues from 2, not from 0
    assert all(float(s["step"]) == 4 for s in resumed["optimizer"]["state"].values())
    # the per-image head keeps its larger learning rate through the schedule and the resume
    trunk, head = resumed["optimizer"]["param_groups"]
    assert head["lr"] == pytest.approx(10 * trunk["lr"]) and trunk["lr"] > 0
    for key in ("model", "ema"):
        for name, value in straight[key].items():
            assert torch.equal(resumed[key][name], value), f"{key}.{name} differs after resume"


def test_frozen_heads_stay_zero_and_the_haze_amount_learns(hazy_dir: Path, tmp_path: Path) -> None:
    """The shipped recipe trains only the per-image haze amount: the per-pixel correction
    (train_residual: false) and the airlight correction (no term involves A: pseudo_airlight and
    the physics losses at 0) must stay exactly 0."""
    cfg = load_config(TINY)
    cfg.optim.train_residual = False
    for term in ("pseudo_airlight", "dark_channel", "color_constancy", "tv", "exposure"):
        setattr(cfg.loss, term, 0.0)
    opts = TrainOptions(data=[str(hazy_dir)], out=str(tmp_path), max_steps=3, device="cpu", progress=False)
    train(cfg, opts)
    state = load_checkpoint(tmp_path / "last.pt")["model"]
    assert not state["t_head.weight"].any() and not state["t_head.bias"].any()
    last_w, last_b = state["global_head.2.weight"], state["global_head.2.bias"]
    assert not last_w[1:4].any() and not last_b[1:4].any()  # airlight rows
    assert last_w[0].any()  # the haze-amount row learned


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
    monkeypatch.setattr(weights, "bundled_dir", lambda: wdir)
    res = export(full_run / "best.pt", tmp_path / "hub", name="clearnet-default", bundle=True)
    entry = next(m for m in json.loads((wdir / "registry.json").read_text())["models"]
                 if m["name"] == "clearnet-default")
    target = wdir / "clearnet-default.safetensors"
    assert res["bundled"] == str(target)
    assert res["sha256"] == weights.sha256_file(target)  # the bundled file is the Hub folder's file
    assert entry["sha256"] == weights.sha256_file(target) and entry["size"] == target.stat().st_size
    assert entry["config"]["widths"] == [4, 8] and entry["bundled"] is True


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
    _write_hazy(other / "hazy", 2, seed=5, gt=other / "gt")
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
    with pytest.raises(FileNotFoundError, match=r"other-val\.txt"):
        evaluate([other], [w], split="val", splits_dir=tmp_path)
    # the committed splits cover every real paired set, and val and held-out never overlap
    from training.evaluate import SPLITS_DIR

    for name in ("pairs-dev", "ihaze", "revide", "its", "sots-outdoor", "reside-outdoor"):
        val = set(read_ids_file(SPLITS_DIR / f"{name}-val.txt"))
        held = set(read_ids_file(SPLITS_DIR / f"{name}-heldout.txt"))
        assert val and held and not val & held, name


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


def test_ddp_two_processes_on_cpu(hazy_dir: Path, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", "train", "--config", str(TINY), "--data", str(hazy_dir),
           "--out", str(tmp_path / "ddp"), "--max-steps", "2", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert rec["machine"]["world_size"] == 2 and rec["steps"] == 2
    ck = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ck["step"] == 2


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


def test_readme_training_section_runs_as_written(hazy_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    """Every `python -m training` line of the README's Training section, with the RESIDE paths
    pointed at tiny generated folders and the run cut to 2 steps."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Training\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("python -m training ")]
    assert [ln.split()[3] for ln in lines] == ["train", "export", "evaluate"]
    subs = {"RESIDE/RTTS/JPEGImages": str(hazy_dir / "hazy"), "RESIDE/SOTS/outdoor": str(pairs_dir),
            "runs/mine": str(tmp_path / "mine")}
    cwd = os.getcwd()
    os.chdir(REPO)  # the README runs from the repository root (training/configs/...)
    try:
        for line in lines:
            for a, b in subs.items():
                line = line.replace(a, b)
            argv = line.split()[3:]
            if argv[0] == "train":
                argv += ["--max-steps", "2", "--device", "cpu", "--no-progress"]
            assert training_main(argv) == 0, line
    finally:
        os.chdir(cwd)
    assert (tmp_path / "mine" / "hub" / "my-clearnet.safetensors").is_file()


def test_gpu_training_script_passes_its_cpu_smoke_test(tmp_path: Path) -> None:
    """scripts/train_gpu.sh, as written, on a tiny copy of the data layout: train (2 steps of the
    tiny recipe on the CPU), export, evaluate every paired set and sky-check the photos."""
    data = tmp_path / "data"
    _write_hazy(data / "real-hazy" / "misc", 3, seed=1)
    _write_hazy(data / "real-hazy-web" / "dawn-fog", 3, seed=2)
    _write_hazy(data / "rgbd-train-hazy" / "hazy", 3, seed=3)
    splits = tmp_path / "splits"
    splits.mkdir()
    for k, name in enumerate(("pairs-dev", "pairs-real/ihaze", "pairs-real/revide")):
        root = data / name
        _write_hazy(root / "hazy", 2, seed=10 + k, gt=root / "gt")
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
