"""The training loop: pseudo-pair supervision (+ optional physics losses), AdamW with cosine
decay, EMA of the weights, validation-driven checkpoint choice, exact resume, TensorBoard, AMP on
CUDA and DistributedDataParallel through ``torchrun``.

Determinism: every random draw (which image, which crop, which pseudo haze) is a function of
``(seed, step, rank)``, so a resumed run sees exactly the batches an uninterrupted run would.

This module is the loop and its optimiser pieces; checkpoint files are in
:mod:`training.checkpoints`, the measures that choose ``best.pt`` in :mod:`training.validation`.
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

from napari_clearnet._util.validate import json_text
from napari_clearnet.core import engine
from napari_clearnet.core.model import ClearNet

from .checkpoints import RUN_FILES, atomic_save, load_checkpoint
from .clear import ClearCrops, load_clear_photos
from .config import TrainConfig
from .data import StepSampler, find_hazy_images, hazy_crops, split_train_val, step_generator
from .losses import Objective, make_pseudo_pairs, pseudo_pair_losses
from .teacher import load_teacher, teacher_prior_fn
from .validation import Validator, load_val_pairs

__all__ = ["TrainOptions", "TrainingDiverged", "train"]


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
    #: folders of unpaired clear photos, added to the config's ``data.clear``
    clear: list[str] | None = None
    #: self-training: the model whose dehazing makes J0 (overrides ``pseudo.j0_teacher``)
    teacher: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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

    clear_sources = [*cfg.data.clear, *(opts.clear or [])]
    clear_photos = load_clear_photos(clear_sources) if cfg.pseudo.clear_batch > 0 else []
    if cfg.pseudo.clear_batch > 0 and not clear_photos:
        raise ValueError("pseudo.clear_batch > 0 needs clear photos: data.clear: [builtin] or --clear DIR")

    if opts.teacher:
        cfg.pseudo.j0_teacher = opts.teacher
    teacher, teacher_sha = None, None
    if cfg.pseudo.j0_teacher:
        teacher, teacher_sha = load_teacher(cfg.pseudo.j0_teacher, device)

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
            "clear": clear_sources,
            "clear_photos": [n for n, _ in clear_photos],
            "teacher": None if teacher is None else {"model": cfg.pseudo.j0_teacher, "sha256": teacher_sha},
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
            atomic_save(checkpoint(step), out / "best.pt")
            (out / "best.json").write_text(json_text(best, indent=2) + "\n", encoding="utf-8")

    t_start = time.perf_counter()
    if is_main and start_step == 0 and o.max_steps > 0:
        validate(0)  # the untrained model (= the prior) is a legitimate candidate

    last_step = o.max_steps if opts.stop_at is None else min(o.max_steps, int(opts.stop_at))
    dataset = hazy_crops(cfg, train_paths, seed)
    j0_fn = model.prior
    if teacher is not None:
        j0_fn = teacher_prior_fn(teacher)
    clear_crops = None
    if cfg.pseudo.clear_batch > 0:
        clear_crops = ClearCrops(clear_photos, cfg.data.crop_size or cfg.model.working_size,
                                 cfg.data.clear_crop_range, cfg.data.clear_contrast)
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
        gen = step_generator(seed, step, rank)
        clear = None if clear_crops is None else clear_crops.batch(cfg.pseudo.clear_batch, gen).to(device)
        pairs_b = make_pseudo_pairs(j0_fn, batch, gen, clear=clear, **cfg.pseudo_pair_kwargs())
        b = pairs_b.hazy.shape[0]
        inputs = torch.cat([pairs_b.hazy, batch]) if cfg.loss.needs_real_pass else pairs_b.hazy
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            pred = net(inputs)
        terms = pseudo_pair_losses(
            pred["t"][:b], pred["airlight"][:b], pairs_b, cfg.loss.centre_depth,
            t_prior=pred["t_prior"][:b] if cfg.loss.level > 0 else None, level_target=cfg.loss.level_target,
            relative=cfg.loss.depth_relative,
            image_t0=cfg.model.t0 if cfg.loss.pseudo_image > 0 else None,
            image_exact_only=cfg.loss.image_exact_only,
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
                atomic_save(checkpoint(step), out / "last.pt")
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
