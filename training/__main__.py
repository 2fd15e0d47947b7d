"""``python -m training {train,evaluate,amount,photos,export,prepare,smoke}``, from the repository root."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_clearnet._util.validate import MAX_STRENGTH, json_text

from .config import seed_option

#: the default --oracle-strength grid (training.oracle.DEFAULT_GRID; kept here so --help imports nothing)
ORACLE_GRID = "0,0.25,0.5,0.75,1,1.25,1.5,1.75,2,2.5"


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train ClearNet on folders of hazy images",
                       description="Train ClearNet (single process, or multi-process with torchrun).")
    p.add_argument("--config", required=True, help="YAML recipe, e.g. training/configs/default.yaml")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="folders of hazy images (RESIDE layouts or any folder; gt/, clear/ skipped)")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: checkpoints, TensorBoard, run.json")
    p.add_argument("--max-steps", type=int, help="override optim.max_steps")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (torchrun: one GPU per rank)")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue exactly from a checkpoint (or a run folder's last.pt)")
    p.add_argument("--val-pairs", nargs="+", metavar="DIR",
                   help="paired folders (hazy/ + gt/): their validation splits (training/splits/"
                        "<name>-val.txt, else all pairs) choose the checkpoint by mean PSNR over sets")
    p.add_argument("--val-ids-file", metavar="F", help="only these IDs of a single --val-pairs folder")
    p.add_argument("--splits-dir", metavar="DIR",
                   help="where the <set>-val.txt lists live (default training/splits)")
    p.add_argument("--clear", nargs="+", metavar="DIR",
                   help="folders of unpaired clear photos, added to the config's data.clear "
                        "(never the ground truth of an evaluation pair)")
    p.add_argument("--teacher", metavar="MODEL",
                   help="self-training round: the weights (file or registry name) whose own dehazing "
                        "makes the pseudo-pairs' clear scene (overrides pseudo.j0_teacher)")
    p.add_argument("--seed", type=seed_option, help="override optim.seed")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="pause after STEP (the LR schedule still spans max_steps); continue with --resume")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (for logs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out (its checkpoints, records and "
                        "TensorBoard logs)")


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="PSNR/SSIM of models, their untrained prior, the DCP and the hazy input on paired sets",
        description="Score every paired set side by side, split into the validation IDs (they choose "
        "settings) and the held-out IDs (they choose nothing) from training/splits/<set>-{val,heldout}.txt.")
    p.add_argument("--pairs", nargs="+", required=True, metavar="DIR",
                   help="paired folders with hazy/{id}_*.png and gt/{id}.png (one row per set and split)")
    p.add_argument("--model", action="append", required=True, metavar="NAME_OR_PATH",
                   help="registry name (clearnet-default), .safetensors path or hf:// address; repeat "
                        "to compare models")
    p.add_argument("--split", choices=("auto", "both", "val", "heldout", "all"), default="auto",
                   help="which IDs of each set: val and held-out rows, one of them, or all pairs; auto "
                        "(default): both where training/splits lists the set, else all")
    p.add_argument("--ids-file", metavar="F", help="only these IDs of a single --pairs folder (one per line)")
    p.add_argument("--no-prior", action="store_true", help="leave out the untrained-prior column")
    p.add_argument("--sky-protection", type=float, metavar="K",
                   help="ClearNet's sky protection for the prior and the models (default: the engine's)")
    p.add_argument("--splits-dir", metavar="DIR",
                   help="where <set>-val.txt and <set>-heldout.txt live (default training/splits)")
    p.add_argument("--out", metavar="DIR", help="write scores.md, scores.csv, scores.json and grids here")
    p.add_argument("--grid", type=int, default=4, help="images per set in the comparison grids (default 4)")
    p.add_argument("--oracle-strength", nargs="?", const=ORACLE_GRID,
                   metavar="S,S,...",
                   help="also report each ClearNet at its best fixed strength and at each image's best "
                        "strength (over these strengths, 1 among them; default "
                        f"{ORACLE_GRID}), by haze density where the folder "
                        "has params.csv, the haze-free check on the clear images and the edge band")
    p.add_argument("--device", default="auto")


def add_photos_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "photos", help="real hazy photos without references: the sky check, and a sheet hazy | DCP | models",
        description="Run the classic DCP and each model over every photo under --images; sky-check the "
        "photos with sky (rings, colour blotches, amplified noise in smooth bright regions) and write "
        "the table to --out; with --sheet, also a comparison sheet of the photos named by --sheet-photos.")
    p.add_argument("--images", nargs="+", required=True, metavar="DIR", help="folders or files of photos")
    p.add_argument("--model", action="append", required=True, metavar="NAME_OR_PATH",
                   help="registry name, .safetensors path or hf:// address (repeat to compare)")
    p.add_argument("--out", required=True, metavar="DIR", help="write scores.md and scores.json here")
    p.add_argument("--sheet", metavar="IMAGE", help="also write the comparison sheet here (replaced)")
    p.add_argument("--sheet-photos", nargs="+", default=[], metavar="NAME",
                   help="file names (without folder) of the photos on the sheet, in order")
    p.add_argument("--device", default="auto")


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint -> safetensors + config.json + model card")
    p.add_argument("checkpoint", help="best.pt / last.pt of a run (or the run folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="Hub-ready folder to create")
    p.add_argument("--name", default="clearnet-custom", help="model name (file NAME.safetensors)")
    p.add_argument("--bundle", action="store_true",
                   help="also write weights/NAME.safetensors and update its entry in weights/registry.json")
    p.add_argument("--scores", action="append", default=[], metavar="DIR",
                   help="an evaluate --out folder to include in the model card (repeatable)")
    p.add_argument("--description", default="")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out folder")


def add_prepare_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "prepare", help="not needed: RESIDE and plain folders are read as they are",
        description="No preprocessing step exists: train reads RESIDE's published layouts (ITS, OTS, "
        "SOTS, HSTS, RTTS, URHI) and plain image folders directly, lazily, and skips gt/ and clear/.",
    )


def add_amount_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "amount", help="what predicts the haze amount: the pseudo-pairs' fit, and whether what they teach "
        "carries over to paired sets",
        description="Three questions about the per-image haze amount (training/amount.py): does the model "
        "fit its own pseudo-pairs, does a regressor fitted on pseudo-pairs set the prior's strength well on "
        "the paired sets, and how well can image statistics predict the best strength at all (leave one "
        "set out; reads the ground truth, a diagnosis only). Writes OUT/amount.md and OUT/amount.json.")
    p.add_argument("--pairs", nargs="+", required=True, metavar="DIR", help="paired folders (hazy/ + gt/)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="folders of hazy photos the pseudo-pairs are made from (as train --data)")
    p.add_argument("--model", default="clearnet-default", metavar="NAME_OR_PATH",
                   help="registry name, .safetensors or a training checkpoint .pt (default clearnet-default)")
    p.add_argument("--config", default="training/configs/default.yaml",
                   help="the recipe whose pseudo-pairs are studied (default the shipped one)")
    p.add_argument("--batches", type=int, default=150,
                   help="batches of pseudo-pairs the regressor is fitted on (default 150)")
    p.add_argument("--seed", type=seed_option, default=0)
    p.add_argument("--splits-dir", metavar="DIR", help="where the <set>-val.txt lists live")
    p.add_argument("--out", required=True, metavar="DIR")


def add_smoke_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "smoke", help="the whole pipeline in about a minute on the CPU, on hazy photos it makes",
        description="Haze scikit-image's photos with the scattering model (OUT/data: a folder of hazy "
        "images and a paired folder), train the tiny recipe for a few steps (OUT/run), export "
        "(OUT/hub) and evaluate (OUT/eval). Checks that training works here; the weights are not useful.")
    p.add_argument("--out", default="runs/smoke", metavar="DIR",
                   help="where everything goes (default runs/smoke)")
    p.add_argument("--steps", type=int, default=4, help="training steps (default 4)")
    p.add_argument("--data-only", action="store_true", help="only make OUT/data (hazy/ and pairs/)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_evaluate_parser, add_amount_parser, add_photos_parser,
                add_export_parser, add_prepare_parser, add_smoke_parser):
        add(sub)
    args = parser.parse_args(argv)
    from napari_clearnet.cli import run_command

    return run_command(lambda: _run_reporting(args))


def _run_reporting(args: argparse.Namespace) -> int:
    """Bad configs, data and checkpoints: one line and exit status 2, never a traceback."""
    try:
        return _run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _grid(text: str | None) -> list[float] | None:
    """``--oracle-strength`` as numbers: a comma-separated list that includes 1."""
    if text is None:
        return None
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--oracle-strength takes strengths separated by commas (e.g. 0.5,1,1.5), "
                         f"got {text!r}") from None
    if not grid or 1.0 not in grid or any(not 0 <= g <= MAX_STRENGTH for g in grid):
        raise ValueError(
            f"--oracle-strength needs strengths in [0, {MAX_STRENGTH:g}] including 1, got {text!r}")
    return grid


def _splits(args: argparse.Namespace) -> dict:
    return {} if args.splits_dir is None else {"splits_dir": args.splits_dir}


def _run(args: argparse.Namespace) -> int:
    """One subcommand; errors propagate to :func:`main`, which prints them on one line."""
    if args.command == "train":
        from .config import load_config
        from .train import TrainOptions, train

        rec = train(load_config(args.config), TrainOptions(
            data=args.data, out=args.out, max_steps=args.max_steps, device=args.device,
            resume=args.resume, val_pairs=args.val_pairs, val_ids_file=args.val_ids_file,
            splits_dir=args.splits_dir,
            seed=args.seed, stop_at=args.stop_at, progress=not args.no_progress,
            overwrite=args.overwrite, clear=args.clear, teacher=args.teacher,
        ))
        if rec.get("best"):
            b = rec["best"]
            value = "" if b["value"] is None else f" = {b['value']:.4f}"
            print(f"best: step {b['step']} by {b['measure']}{value}")
    elif args.command == "evaluate":
        from .evaluate import DCP, HAZY, PRIOR, evaluate, markdown_table
        from .oracle import Analysis

        grid = _grid(args.oracle_strength)
        analysis = None if grid is None else Analysis(grid)
        table = evaluate(args.pairs, args.model, split=args.split, ids_file=args.ids_file,
                         out_dir=args.out, n_grid=args.grid, device=args.device,
                         with_prior=not args.no_prior, sky_protection=args.sky_protection,
                         analysis=analysis, **_splits(args))
        print(markdown_table(table), end="")
        if analysis is not None:
            print(analysis.summary(table, HAZY, DCP, PRIOR) + analysis.markdown(list(table), HAZY), end="")
    elif args.command == "amount":
        from .amount import study
        from .config import load_config

        if args.batches < 1:
            raise ValueError(f"--batches must be at least 1, got {args.batches}")
        study(args.pairs, args.data, args.model, load_config(args.config), args.out, batches=args.batches,
              seed=args.seed, **_splits(args))
        print((Path(args.out) / "amount.md").read_text(encoding="utf-8"), end="")
    elif args.command == "photos":
        from .photos import photos

        photos(args.images, args.model, args.out, sheet=args.sheet, sheet_names=args.sheet_photos,
               device=args.device)
        print((Path(args.out) / "scores.md").read_text(encoding="utf-8"), end="")
    elif args.command == "export":
        from .export import export

        print(json_text(export(args.checkpoint, args.out, name=args.name, bundle=args.bundle,
                               scores=args.scores, description=args.description,
                               overwrite=args.overwrite), indent=2))
    elif args.command == "smoke":
        from .smoke import smoke

        smoke(args.out, steps=args.steps, overwrite=args.overwrite, data_only=args.data_only)
    else:
        print("nothing to prepare: `python -m training train --data DIR...` reads the folders directly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
