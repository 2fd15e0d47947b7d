"""The training loop: pseudo-pair supervision (+ optional physics losses), AdamW with cosine
decay, EMA of the weights, validation-driven checkpoint choice, exact resume, TensorBoard, AMP on
CUDA and DistributedDataParallel through ``torchrun``.

Determinism: every random draw (which image, which crop, which pseudo haze) is a function of
``(seed, step, rank)``, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import platform
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from napari_clearnet import engine, physics
from napari_clearnet._validate import json_text
from napari_clearnet.model import ClearNet

from .config import TrainConfig
from .data import HazyCrops, StepSampler, find_hazy_images, find_pairs, split_train_val
from .evaluate import SPLITS_DIR, LoadedPair, load_pairs, mean_scores, paired_splits, score
from .losses import Objective, make_pseudo_pairs, pseudo_pair_losses

__all__ = ["TrainOptions", "TrainingDiverged", "load_checkpoint", "train"]

#: what a run folder holds (``--overwrite`` removes these and nothing else)
RUN_FILES = ("best.pt", "last.pt", "best.json", "run.json", "tensorboard")
#: keys every training checkpoint has
CHECKPOINT_KEYS = ("step", "model", "ema", "optimizer", "scheduler", "scaler", "model_config", "train_config")


class TrainingDiverged(ValueError):
    """The weights became NaN or infinite: the run stops rather than save or select them."""


@dataclass
class TrainOptions:
    """Command-line level options (the YAML config holds the recipe)."""

    data: list[str]
    out: str
    max_steps: int | None = None
    device: str = "auto"
    resume: str | None = None
    #: paired folders whose validation split (training/splits/<name>-val.txt) chooses checkpoints
    val_pairs: list[str] | str | None = None
    #: the IDs of a single --val-pairs folder instead of its committed split
    val_ids_file: str | None = None
    #: where the split lists live (None: training/splits)
    splits_dir: str | None = None
    seed: int | None = None
    stop_at: int | None = None  # pause after this step (schedule still spans max_steps)
    progress: bool = True
    overwrite: bool = False  # replace the run in a non-empty ``out`` (else refused unless resuming)
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step, rank, 7]).generate_state(1)[0]))
    return g


def _lr_lambda(cfg: TrainConfig, total: int):
    o = cfg.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / max(1, o.warmup_steps)
        p = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        return o.min_lr_factor + (1 - o.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


@torch.no_grad()
def _ema_update(ema: ClearNet, model: ClearNet, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))  # short warm-up so early EMA is not stuck at init
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - d)


def _crops(cfg: TrainConfig, paths: list[Path], seed: int) -> HazyCrops:
    ws = cfg.model.working_size
    return HazyCrops(
        paths, cfg.data.crop_size or ws, seed=seed, crop_range=cfg.data.crop_range,
        engine_scale=ws if cfg.data.match_engine_scale else None,
    )


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:  # an interrupt (Ctrl-C, SIGTERM) leaves no partial checkpoint behind
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pt``/``best.pt``, or a run folder → ``last.pt``).

    Checkpoints are our own files and hold optimiser state and RNG states, hence ``weights_only``
    is off; never load checkpoints from untrusted sources (export to safetensors to share).
    Anything else (exported weights, a truncated or foreign file) is a one-line ``ValueError``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) > 9 and head[8:9] == b"{":  # a safetensors header
        raise ValueError(
            f"{path} holds exported weights (safetensors), not a training checkpoint; --resume and "
            "export take a run's last.pt or best.pt"
        )
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many types for truncated or foreign files
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"cannot read checkpoint {path}: {first[:200]}; the file is truncated or not a checkpoint "
            "(a run folder keeps best.pt and last.pt)"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise ValueError(f"{path} is not a training checkpoint of this version (missing {missing})")
    return ck


def _check_out(out: Path, opts: TrainOptions) -> None:
    """Never silently replace a run: a non-empty ``out`` needs ``resume`` or ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder for the run")
    if out.is_dir() and any(out.iterdir()) and not opts.resume and not opts.overwrite:
        held = sorted(p.name for p in out.iterdir())
        raise FileExistsError(
            f"--out {out} is not empty ({', '.join(held[:5])}{' …' if len(held) > 5 else ''}); pass "
            f"--resume {out / 'last.pt'} to continue that run, --overwrite to replace it, or choose a "
            "new folder"
        )


def _finite(model: torch.nn.Module) -> bool:
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())


def _machine(device: torch.device, world: int) -> dict[str, Any]:
    info = {
        "host_platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "world_size": world,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---------------------------------------------------------------------------------- validation
def load_val_pairs(
    folders: list[str] | str | None, ids_file: str | None = None, splits_dir: str | Path | None = None
) -> dict[str, list[LoadedPair]]:
    """The validation pairs of each paired folder: its committed ``val`` split
    (``training/splits/<name>-val.txt``), or all its pairs when no split is committed, or the IDs
    of ``ids_file`` (one folder only). Held-out IDs are never loaded here."""
    if not folders:
        return {}
    folders = [folders] if isinstance(folders, str | Path) else list(folders)
    if ids_file is not None:
        rows = paired_splits(folders, ids_file=ids_file)
    else:
        where = SPLITS_DIR if splits_dir is None else splits_dir
        rows = [r for r in paired_splits(folders, "auto", splits_dir=where) if r.split in ("val", "all")]
    return {r.set: load_pairs(find_pairs(r.folder, r.ids)) for r in rows}


class Validator:
    """Both validation measures: the pseudo-pair loss on fixed crops of the held-out 30 % of the
    hazy photos (unsupervised), and PSNR/SSIM on paired validation sets through the real engine.
    With several paired sets the measure is the mean over sets of each set's mean, so a set of
    real haze weighs as much as a larger synthetic one."""

    def __init__(
        self, cfg: TrainConfig, val_paths: list[Path], pairs: dict[str, list[LoadedPair]] | None,
        device: torch.device, seed: int,
    ) -> None:
        self.cfg, self.device, self.pairs = cfg, device, pairs
        self.crops: torch.Tensor | None = None
        if val_paths:
            ds = _crops(cfg, val_paths, seed + 1)
            self.crops = torch.stack([ds[i] for i in range(cfg.data.val_crops)])
            gen = _step_generator(seed, 10**9, 0)  # a stream no training step uses
            prior = ClearNet(cfg.model).prior
            self.pseudo = make_pseudo_pairs(prior, self.crops, gen, **cfg.pseudo_pair_kwargs())

    @torch.no_grad()
    def __call__(self, model: ClearNet) -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        if self.crops is not None:
            terms = {"pseudo_depth": 0.0, "pseudo_airlight": 0.0}
            for i in range(0, len(self.crops), 8):
                sl = slice(i, i + 8)
                part = copy.copy(self.pseudo)
                part.hazy, part.depth = self.pseudo.hazy[sl], self.pseudo.depth[sl]
                part.airlight = self.pseudo.airlight[sl]
                pred = model(part.hazy.to(self.device))
                for k, v in pseudo_pair_losses(pred["t"].cpu(), pred["airlight"].cpu(), part).items():
                    terms[k] += float(v) * len(part.hazy) / len(self.crops)
            out["val/pseudo_depth"] = terms["pseudo_depth"]
            out["val/pseudo_airlight"] = terms["pseudo_airlight"]
            out["val/pseudo_total"] = terms["pseudo_depth"] + terms["pseudo_airlight"]
        if self.pairs:
            dehazer = engine.Dehazer("clearnet", model, device=self.device, half=False)
            for name, pairs in self.pairs.items():
                rows, _ = score(dehazer, pairs)
                out[f"val/psnr/{name}"], out[f"val/ssim/{name}"] = mean_scores(rows)
            out["val/psnr"] = float(np.mean([out[f"val/psnr/{n}"] for n in self.pairs]))
            out["val/ssim"] = float(np.mean([out[f"val/ssim/{n}"] for n in self.pairs]))
        return out

    @property
    def has_signal(self) -> bool:
        return self.crops is not None or bool(self.pairs)

    def measure(self, scores: dict[str, float]) -> tuple[float | None, str]:
        """Higher is better. PSNR on the paired split when there is one (it measures the clear
        image users get); otherwise minus the pseudo-pair loss (the only label-free signal that
        penalises both doing nothing and over-dehazing). ``None`` when there is nothing to
        measure: then the last step is selected (never the untrained prior for ever)."""
        if "val/psnr" in scores:
            why = f"val/psnr (mean over the validation splits of {', '.join(self.pairs or [])})"
            return scores["val/psnr"] + 1e-3 * scores["val/ssim"], why
        if "val/pseudo_total" in scores:
            return -scores["val/pseudo_total"], "-val/pseudo_total (pseudo-pair loss)"
        return None, "last step (no validation images or pairs to select by)"

    @torch.no_grad()
    def image_grid(self, model: ClearNet, n: int = 4) -> torch.Tensor | None:
        """(3, H, W) rows of hazy | dehazed | t | A swatch for TensorBoard."""
        if self.crops is None:
            return None
        x = self.crops[:n].to(self.device)
        pred = model(x)
        j = physics.recover(x, pred["t"], pred["airlight"], model.config.t0)
        t = pred["t"].expand(-1, 3, -1, -1)
        a = pred["airlight"].reshape(-1, 3, 1, 1).expand_as(x)
        rows = [torch.cat([x[i], j[i], t[i], a[i]], -1) for i in range(len(x))]
        return torch.cat(rows, -2).clamp(0, 1).cpu()


# ---------------------------------------------------------------------------------- main loop
def train(cfg: TrainConfig, opts: TrainOptions) -> dict[str, Any]:
    """Run (or resume) training; returns the run record (also written to ``run.json``)."""
    rank, world, local_rank = _dist_info()
    if opts.max_steps is not None:
        if int(opts.max_steps) < 1:
            raise ValueError(f"--max-steps must be at least 1, got {opts.max_steps}")
        cfg.optim.max_steps = int(opts.max_steps)
    if opts.stop_at is not None and int(opts.stop_at) < 1:
        raise ValueError(f"--stop-at must be at least 1, got {opts.stop_at}")
    _check_out(Path(opts.out), opts)
    seed = cfg.optim.seed if opts.seed is None else int(opts.seed)
    cfg.optim.seed = seed
    device = engine.pick_device(opts.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    out = Path(opts.out)
    _seed_all(seed)

    items = find_hazy_images(opts.data)
    train_paths, val_paths = split_train_val(items, cfg.data.val_fraction)
    if not train_paths:
        raise ValueError(f"the train split of {opts.data} is empty; add images or lower data.val_fraction")
    if not val_paths and not opts.val_pairs:
        warnings.warn("no validation images (too few inputs for the 30 % split) and no --val-pairs: "
                      "best.pt will be the last step", stacklevel=2)

    model = ClearNet(cfg.model).to(device)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    o = cfg.optim
    if not o.train_residual:
        for p in model.t_head.parameters():
            p.requires_grad_(False)
    head = list(model.global_head.parameters())
    head_ids = {id(p) for p in head}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad], "lr": o.lr},
        {"params": head, "lr": o.lr * o.head_lr_factor},
    ]
    opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, o.max_steps))
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start_step, best, history, elapsed = 0, None, [], 0.0
    if opts.resume:
        ck = load_checkpoint(opts.resume)
        if ck["train_config"].get("model") != cfg.model.to_dict():
            raise ValueError(f"--resume {opts.resume}: its model config differs from --config's")
        try:
            model.load_state_dict(ck["model"])
            ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise ValueError(f"--resume {opts.resume}: cannot restore the run from it ({first})") from None
        start_step, best = int(ck["step"]), ck.get("best")
        history, elapsed = list(ck.get("history", [])), float(ck.get("elapsed_s", 0.0))
        sched.lr_lambdas = [_lr_lambda(cfg, o.max_steps)] * len(opt.param_groups)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    objective = Objective(cfg.loss, cfg.model.t0)

    pairs = None
    if opts.val_pairs and is_main:
        pairs = load_val_pairs(opts.val_pairs, opts.val_ids_file, opts.splits_dir)
    validator = Validator(cfg, val_paths, pairs, device, seed) if is_main else None

    writer = None
    record: dict[str, Any] = {}
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if opts.overwrite and not opts.resume:  # replace the old run, not mix with it
            import shutil

            for name in RUN_FILES:
                p = out / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        record = {
            "config": cfg.to_dict(),
            "data": [str(Path(d)) for d in opts.data],
            "n_train_images": len(train_paths),
            "n_val_images": len(val_paths),
            "val_pairs": opts.val_pairs,
            "val_ids_file": opts.val_ids_file,
            "n_val_pairs": {k: len(v) for k, v in (pairs or {}).items()},
            "machine": _machine(device, world),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def checkpoint(step: int) -> dict[str, Any]:
        return {
            "step": step,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "model_config": cfg.model.to_dict(),
            "train_config": cfg.to_dict(),
            "best": best,
            "history": history,
            "elapsed_s": elapsed + time.perf_counter() - t_start,
            "record": record,
        }

    def validate(step: int) -> None:
        nonlocal best
        assert validator is not None and writer is not None
        scores = validator(ema)
        value, why = validator.measure(scores)
        scores["step"] = step
        history.append(scores)
        for k, v in scores.items():
            if k != "step":
                writer.add_scalar(k, v, step)
        grid = validator.image_grid(ema)
        if grid is not None:
            writer.add_image("val/hazy|dehazed|t|A", grid, step)
        if value is None or best is None or best.get("value") is None or value > best["value"]:
            best = {"step": step, "value": value, "measure": why, "scores": scores}
            _atomic_save(checkpoint(step), out / "best.pt")
            (out / "best.json").write_text(json_text(best, indent=2) + "\n", encoding="utf-8")

    t_start = time.perf_counter()
    if is_main and start_step == 0 and o.max_steps > 0:
        validate(0)  # the untrained model (= the prior) is a legitimate candidate

    last_step = o.max_steps if opts.stop_at is None else min(o.max_steps, int(opts.stop_at))
    dataset = _crops(cfg, train_paths, seed)
    loader = DataLoader(
        dataset, batch_sampler=StepSampler(o.batch_size, start_step, last_step, rank, world),
        num_workers=cfg.data.num_workers,
    )
    bar = None
    if is_main and opts.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=o.max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    step = start_step
    model.train()
    for batch in loader:
        batch = batch.to(device, non_blocking=True)
        gen = _step_generator(seed, step, rank)
        pairs_b = make_pseudo_pairs(model.prior, batch, gen, **cfg.pseudo_pair_kwargs())
        b = batch.shape[0]
        inputs = torch.cat([pairs_b.hazy, batch]) if cfg.loss.needs_real_pass else pairs_b.hazy
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            pred = net(inputs)
        terms = pseudo_pair_losses(
            pred["t"][:b], pred["airlight"][:b], pairs_b, cfg.loss.centre_depth,
            t_prior=pred["t_prior"][:b] if cfg.loss.level > 0 else None, level_target=cfg.loss.level_target,
        )
        if cfg.loss.needs_real_pass:
            terms.update(objective.physics_terms(batch, pred["t"][b:], pred["airlight"][b:]))
        loss = objective.total(terms)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        if not _finite(model):  # the same on every rank: DDP keeps the weights in step
            raise TrainingDiverged(
                f"step {step + 1}: the weights became NaN or infinite (loss {float(loss.detach()):.4g}, "
                f"gradient norm {float(grad_norm):.4g}): the run diverged; lower optim.lr or "
                f"optim.grad_clip. Checkpoints written so far stay in {out}"
            )
        _ema_update(ema, model, o.ema_decay, step)
        step += 1
        if is_main:
            assert writer is not None
            if step % o.log_every == 0 or step == o.max_steps:
                writer.add_scalar("train/loss", float(loss.detach()), step)
                for k, v in terms.items():
                    writer.add_scalar(f"train/{k}", float(v.detach()), step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
                writer.add_scalar("train/scale_mean", float(pred["scale"][:b].detach().mean()), step)
                if b > 1:
                    writer.add_scalar("train/scale_std", float(pred["scale"][:b].detach().std()), step)
            if bar is not None:
                bar.update(1)
                depth = float(terms["pseudo_depth"].detach())
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", depth=f"{depth:.3f}")
            if step % o.val_every == 0 or step == last_step:
                validate(step)
            if step % o.ckpt_every == 0 or step == last_step:
                _atomic_save(checkpoint(step), out / "last.pt")
    elapsed += time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if not is_main:
        return {}
    assert writer is not None
    writer.close()
    record.update({
        "steps": step,
        "train_seconds": round(elapsed, 1),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "best": best,
        "history": history,
    })
    (out / "run.json").write_text(json_text(record, indent=2) + "\n", encoding="utf-8")
    return record
