"""Turn a training checkpoint into shareable weights: safetensors (EMA weights, config in the
metadata), a Hub folder (config.json, a ``huggingface_hub.ModelCard`` as README.md, the record
for registry.json); optionally bundle them into the package's ``weights/``.

Checkpoints hold pickled optimiser state and must never be shared; the safetensors export is the
only thing that leaves a training run. Every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from napari_clearnet import weights
from napari_clearnet._util.files import atomic_path, write_text
from napari_clearnet._util.validate import json_text
from napari_clearnet.core.model import ClearNet, ClearNetConfig

from .checkpoints import load_checkpoint

__all__ = ["ema_model", "export", "export_hub_folder", "update_registry"]

TRAINING_DATA = (
    "Unsupervised: hazy photos (the folders in the run record below; no haze parameters are read) "
    "and, where the run record lists them, unpaired clear photos (never the ground truth of an "
    "evaluation pair). Pseudo-pairs supervise the optical depth and the airlight in absolute "
    "terms: crops of the hazy photos dehazed by the prior and hazed again, and crops of the clear "
    "photos hazed with a known transmission and airlight, a share of them left haze-free. The "
    "validation splits of paired sets only choose the checkpoint and the recipe's settings "
    "(held-out splits choose nothing)."
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


def _short(paths: Any, root: str) -> list[str]:
    """Data folders as ``DATA/…`` below their common folder: where the data lay on the machine
    that trained is no part of the recipe (and may be a private path)."""
    if isinstance(paths, str):
        paths = [paths]
    if not root:
        return [str(p) for p in paths]
    return [str(p) if str(p) == "builtin" else "DATA/" + os.path.relpath(os.path.abspath(str(p)), root)
            for p in paths]


def _run_record(ck: dict[str, Any], checkpoint: str) -> str:
    rec = ck.get("record") or {}
    best = ck.get("best") or {}
    cfg = ck.get("train_config", {})
    hist = ck.get("history") or []
    folders = [os.path.abspath(str(p)) for p in [*rec.get("data", []), *(rec.get("val_pairs") or [])] if p]
    root = os.path.commonpath(folders) if len(folders) > 1 else ""
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
        f"- training data: {', '.join(_short(rec.get('data', []), root)) or 'n/a'} "
        f"({rec.get('n_train_images', '?')} train / {rec.get('n_val_images', '?')} validation images, "
        "70/30 split by path hash)",
        f"- clear photos: {', '.join(_short(rec.get('clear') or [], root)) or 'none'}",
        f"- validation pairs: {', '.join(_short(rec.get('val_pairs') or [], root)) or 'none'} "
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
        keys = [k for k in ("val/psnr", "val/ssim", "val/haze_free", "val/pseudo_total") if k in hist[0]]
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
            # older records carried a copy of the config: it lives in the weights file
            models[i] = {k: v for k, v in {**m, **entry}.items() if k != "config"}
            break
    else:
        models.append(entry)
    write_text(registry_path, json.dumps(data, indent=2) + "\n")


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

    With ``bundle`` the same file (and its card, as ``NAME.md``) also goes to the package's
    ``weights/`` and the model's entry in ``weights/registry.json`` gets its new sha256, size and
    description.
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
    extra = [_run_record(ck, str(checkpoint))]
    for r in recs:
        if r["markdown"]:
            title = "Sky check (real photos)" if r.get("kind") == "sky check" else "Paired sets"
            extra += [f"### {title}", "", r["markdown"]]
    export_hub_folder(
        wfile, out, name=name, license=license, description=desc, training_data=TRAINING_DATA,
        metrics=metric_rows, overwrite=True, appendix="\n".join(extra),
    )
    result: dict[str, Any] = {"folder": str(out), "weights": str(wfile), "sha256": weights.sha256_file(wfile)}
    if bundle:
        target_dir = weights.registry.bundled_dir()
        target = target_dir / f"{name}.safetensors"
        # a byte copy: safetensors writes metadata in no fixed order, so saving again could
        # give another checksum than the Hub folder's file
        _copy(wfile, target)
        digest = weights.sha256_file(target)
        entry = json.loads((out / "registry-entry.json").read_text(encoding="utf-8"))
        entry.update({"sha256": digest, "size": target.stat().st_size, "bundled": True,
                      "license": "BSD-3-Clause", "description": desc})
        update_registry(target_dir / "registry.json", entry)
        _copy(out / "README.md", target_dir / f"{name}.md")  # the card ships beside the weights
        result["bundled"] = str(target)
    return result


def _copy(src: Path, target: Path) -> None:
    """A byte copy, complete or not at all."""
    with atomic_path(target, overwrite=True) as tmp:
        shutil.copyfile(src, tmp)


def export_hub_folder(
    weights_file: str | Path,
    out_dir: str | Path,
    *,
    name: str,
    repo_id: str | None = None,
    license: str = "bsd-3-clause",
    description: str = "",
    training_data: str = "",
    metrics: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    overwrite: bool = False,
    appendix: str = "",
) -> Path:
    """Write a folder ready for ``HfApi().upload_folder``: weights, config.json, README.md.

    The weights are checked first (safetensors, config, architecture). ``README.md`` is a
    ``huggingface_hub.ModelCard`` (license, tags, library_name in its metadata) with sections on
    usage, training data, metrics and licence, then ``appendix``; ``registry-entry.json`` is the
    record to paste into registry.json. An existing non-empty ``out_dir`` is refused unless
    ``overwrite`` is True.
    """
    from huggingface_hub import ModelCard, ModelCardData

    src = Path(weights_file)
    state, config, meta = weights.read_weights(src)
    weights.build_model(state, config, source=str(src))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise weights.WeightsError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise weights.WeightsError(
            f"{out} exists and is not empty; choose a new folder or pass overwrite=True"
        )
    out.mkdir(parents=True, exist_ok=True)
    filename = f"{name}.safetensors"
    target = out / filename
    if target.resolve() != src.resolve():
        _copy(src, target)
    digest, size = weights.sha256_file(target), target.stat().st_size
    repo_id = repo_id or f"napari-clearnet/{name}"
    entry = {"name": name, "repo_id": repo_id, "filename": filename, "revision": "main", "sha256": digest,
             "size": size, "bundled": False, "license": license,
             "description": description or f"ClearNet dehazing weights {name}"}
    cfg = {"model_type": "clearnet", "library_name": "napari-clearnet", weights.CONFIG_KEY: config.to_dict(),
           "filename": filename, "sha256": digest, "size": size}
    write_text(out / "config.json", json_text(cfg, indent=2) + "\n")
    write_text(out / "registry-entry.json", json_text(entry, indent=2) + "\n")
    data = ModelCardData(
        license=license, library_name="napari-clearnet", pipeline_tag="image-to-image",
        tags=list(dict.fromkeys(["image-dehazing", "image-to-image", "napari", "safetensors", "clearnet",
                                 *tags])),
    )
    body = _card_body(name, description, repo_id, filename, config, training_data, metrics, license,
                      size, digest, {k: v for k, v in meta.items() if k != weights.CONFIG_KEY})
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}" + (f"\n{appendix}" if appendix else ""))
    write_text(out / "README.md", str(card))
    return out


def _card_body(name: str, description: str, repo_id: str, filename: str, config: ClearNetConfig,
               training_data: str, metrics: Mapping[str, Any] | None, license: str, size: int,
               digest: str, extra_meta: Mapping[str, str]) -> str:
    """The model card's Markdown below its metadata."""
    metric_rows = "\n".join(f"| {k} | {v} |" for k, v in (metrics or {}).items())
    exported = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"# {name}", "",
        description or "ClearNet: a small attention U-Net that refines a Dark Channel Prior estimate of "
        "the transmission t(x) and the global airlight A; the clear image is J = (I − A) / max(t, t0) + A.",
        "", "## Usage", "", "```python", "import napari_clearnet",
        f'model = napari_clearnet.load_model("hf://{repo_id}/{filename}")',
        "result = napari_clearnet.dehaze(image, model=model)", "```", "",
        f"or `clearnet dehaze --model hf://{repo_id}/{filename} …`, or pick it in the napari widget.", "",
        "## Architecture", "",
        f"Widths {list(config.widths)}, working size {config.working_size} px; the full config is in "
        "`config.json` and in the safetensors metadata (`clearnet_config`).", "",
        "## Training data", "", training_data or "Not stated.", "",
        "## Metrics", "",
        "| metric | value |\n|---|---|\n" + metric_rows if metric_rows else "Not measured.", "",
        "## Licence", "",
        f"The weights are released under `{license}`. Check the terms of the training data too.", "",
        "## Files", "",
        f"- `{filename}`: {size} bytes, sha256 `{digest}`",
        *[f"- metadata `{k}`: {v}" for k, v in sorted(extra_meta.items())],
        f"- exported {exported}", "",
    ])
