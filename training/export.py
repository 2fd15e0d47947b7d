"""Turn a training checkpoint into shareable weights: safetensors (EMA weights, config in the
metadata), config.json and a model card; optionally bundle them into the package's ``weights/``.

Checkpoints hold pickled optimiser state and must never be shared; the safetensors export is the
only thing that leaves a training run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from napari_clearnet import weights
from napari_clearnet.model import ClearNet, ClearNetConfig

from .train import load_checkpoint

__all__ = ["ema_model", "export", "update_registry"]

TRAINING_DATA = (
    "Unsupervised: hazy images only (the folders in the run record below; no clear references "
    "and no haze parameters are read). Self-supervised re-hazing pseudo-pairs (crops dehazed by "
    "the prior, hazed again with a known transmission and airlight) supervise the relative "
    "optical depth and the airlight; paired images are used only to choose the checkpoint."
)


def ema_model(ck: dict[str, Any]) -> ClearNet:
    """The exponential moving average of the weights, the model that is validated and shipped."""
    model = ClearNet(ClearNetConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["ema"])
    return model.eval()


def _scores(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / "scores.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"--scores {p}: no scores.json (write one with `python -m training evaluate --out`)"
            )
        rec = json.loads(path.read_text(encoding="utf-8"))
        rec["markdown"] = (path.parent / "scores.md").read_text(encoding="utf-8") if (
            path.parent / "scores.md"
        ).is_file() else ""
        out.append(rec)
    return out


def _num(v: Any, fmt: str = ".4f") -> str:
    """A score for the model card; "n/a" where the JSON record holds null (a non-finite value,
    or no validation measure when the last step was selected)."""
    return "n/a" if v is None else f"{float(v):{fmt}}"


def _run_record(ck: dict[str, Any], checkpoint: str) -> str:
    rec = ck.get("record") or {}
    best = ck.get("best") or {}
    cfg = ck.get("train_config", {})
    hist = ck.get("history") or []
    run_json = Path(checkpoint).parent / "run.json"
    run_line = []
    if run_json.is_file():  # the finished run: its full length and validation history
        run = json.loads(run_json.read_text(encoding="utf-8"))
        hist = run.get("history") or hist
        minutes = run.get("train_seconds", 0) / 60
        best_step = (run.get("best") or {}).get("step")
        run_line = [f"- the run: {run.get('steps')} steps in {minutes:.1f} min "
                    f"(finished {run.get('finished', 'n/a')}); best step {best_step}"]
    lines = [
        "## Run record",
        "",
        f"- checkpoint: `{Path(checkpoint).name}`, step {ck['step']} (EMA weights)",
        *run_line,
        f"- selection: {best.get('measure', 'n/a')} = {_num(best.get('value'))} at step "
        f"{best.get('step', 'n/a')}" if best else "- selection: none recorded",
        f"- training data: {', '.join(rec.get('data', [])) or 'n/a'} "
        f"({rec.get('n_train_images', '?')} train / {rec.get('n_val_images', '?')} validation images, "
        "70/30 split by path hash)",
        f"- validation pairs: {rec.get('val_pairs') or 'none'} "
        f"({rec.get('n_val_pairs', 0)} pairs, ids {rec.get('val_ids_file') or 'all'})",
        f"- optimisation: {json.dumps(cfg.get('optim', {}))}",
        f"- losses: {json.dumps(cfg.get('loss', {}))}",
        f"- pseudo-pairs: {json.dumps(cfg.get('pseudo', {}))}",
        f"- wall time until this checkpoint: {ck.get('elapsed_s', 0.0) / 60:.1f} min",
        f"- machine: {json.dumps(rec.get('machine', {}))}",
        f"- started: {rec.get('started', 'n/a')}",
        "",
    ]
    if hist:
        keys = [k for k in ("val/psnr", "val/ssim", "val/pseudo_total") if k in hist[0]]
        lines += ["Validation history (EMA weights):", "", "| step | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {h['step']} | " + " | ".join(_num(h[k]) for k in keys) + " |" for h in hist]
        lines.append("")
    return "\n".join(lines)


def update_registry(registry_path: Path, entry: dict[str, Any]) -> None:
    """Replace (or add) ``entry`` by name in registry.json, atomically, keeping the others."""
    data = json.loads(registry_path.read_text(encoding="utf-8"))
    models = data.setdefault("models", [])
    for i, m in enumerate(models):
        if m["name"] == entry["name"]:
            models[i] = {**m, **entry}
            break
    else:
        models.append(entry)
    fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".tmp", dir=registry_path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, registry_path)


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    name: str = "clearnet-custom",
    bundle: bool = False,
    scores: list[str] | None = None,
    description: str = "",
    license: str = "bsd-3-clause",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the EMA weights of ``checkpoint`` into ``out`` (a Hub-ready folder).

    With ``bundle`` the same file also goes to the package's ``weights/`` and the model's entry
    in ``weights/registry.json`` gets its new sha256, size, config and description.
    """
    ck = load_checkpoint(checkpoint)
    model = ema_model(ck)
    weights.check_finite(model.state_dict(), f"{checkpoint} (EMA weights of step {ck['step']})")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder or pass --overwrite")
    best = ck.get("best") or {}
    meta = {
        "name": name,
        "training_step": str(ck["step"]),
        "selected_by": str(best.get("measure", "")),
        "train_config": json.dumps(ck.get("train_config", {}), sort_keys=True),
    }
    out.mkdir(parents=True, exist_ok=True)
    wfile = out / f"{name}.safetensors"
    weights.save_weights(model, wfile, metadata=meta)
    recs = _scores(scores or [])
    metric_rows: dict[str, str] = {}
    for r in recs:
        for row in r.get("rows", []):  # paired scores (evaluate); a sky check has none
            for method, v in row["mean"].items():
                metric_rows[f"{row['set']} {row['split']} ({row['n_pairs']} pairs): {method}"] = (
                    f"PSNR {_num(v['psnr'], fmt='.2f')} dB, SSIM {_num(v['ssim'], fmt='.3f')}"
                )
    if description:
        desc = description
    elif ck["step"] == 0:
        desc = ("ClearNet at its Dark Channel Prior (untrained heads): training with re-hazing "
                "pseudo-pairs did not beat it on the validation split, so step 0 was selected")
    else:
        desc = f"ClearNet trained with re-hazing pseudo-pairs (step {ck['step']}, EMA weights)"
    weights.export_hub_folder(
        wfile, out, name=name, license=license, description=desc, training_data=TRAINING_DATA,
        metrics=metric_rows, overwrite=True,
    )
    card = out / "README.md"
    extra = [_run_record(ck, str(checkpoint))]
    for r in recs:
        if r["markdown"]:
            title = "Sky check (real photos)" if r.get("kind") == "sky check" else "Paired sets"
            extra += [f"### {title}", "", r["markdown"]]
    card.write_text(card.read_text(encoding="utf-8") + "\n" + "\n".join(extra), encoding="utf-8")
    result: dict[str, Any] = {"folder": str(out), "weights": str(wfile), "sha256": weights.sha256_file(wfile)}
    if bundle:
        target_dir = weights.bundled_dir()
        target = target_dir / f"{name}.safetensors"
        # a byte copy: safetensors writes metadata in no fixed order, so saving again could
        # give another checksum than the Hub folder's file
        tmp = target_dir / f".{target.name}.tmp"
        shutil.copyfile(wfile, tmp)
        os.replace(tmp, target)
        digest = weights.sha256_file(target)
        entry = json.loads((out / "registry-entry.json").read_text(encoding="utf-8"))
        entry.update({"sha256": digest, "size": target.stat().st_size, "bundled": True,
                      "license": "BSD-3-Clause", "description": desc})
        update_registry(target_dir / "registry.json", entry)
        result["bundled"] = str(target)
    return result
