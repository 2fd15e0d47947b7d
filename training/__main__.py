"""``python -m training {train,evaluate,export,prepare}`` — run from the repository root."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_clearnet._validate import json_text


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
    p.add_argument("--val-pairs", metavar="DIR", help="paired folder (hazy/ + gt/) for validation PSNR/SSIM")
    p.add_argument("--val-ids-file", metavar="F", help="only these IDs of --val-pairs (one per line)")
    p.add_argument("--seed", type=int, help="override optim.seed")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="pause after STEP (the LR schedule still spans max_steps); continue with --resume")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (for logs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out (its checkpoints, records and "
                        "TensorBoard logs)")


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PSNR/SSIM of ClearNet, DCP and the hazy input on paired images")
    p.add_argument("--pairs", required=True, metavar="DIR",
                   help="folder with hazy/{id}_*.png and gt/{id}.png")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                   help="registry name (clearnet-default), .safetensors path or hf:// address")
    p.add_argument("--ids-file", metavar="F", help="only these IDs (one per line, # comments)")
    p.add_argument("--out", metavar="DIR", help="write scores.md, scores.csv, scores.json and grid.png here")
    p.add_argument("--grid", type=int, default=4, help="images in the comparison grid (default 4)")
    p.add_argument("--device", default="auto")


def add_preview_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="grid of real hazy photos: hazy | DCP | ClearNet (no references)")
    p.add_argument("--images", nargs="+", required=True, metavar="DIR", help="folders or files of photos")
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH")
    p.add_argument("--out", required=True, metavar="PNG", help="grid image to write (replaced if present)")
    p.add_argument("-n", type=int, default=6, help="number of photos (default 6, in path order)")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train_parser, add_evaluate_parser, add_preview_parser, add_export_parser,
                add_prepare_parser):
        add(sub)
    args = parser.parse_args(argv)
    from napari_clearnet.cli import Terminated, terminating_signals

    try:
        with terminating_signals():
            return _run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(exc.reason, file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """One subcommand; errors propagate to :func:`main`, which prints them on one line."""
    if args.command == "train":
        from .config import load_config
        from .train import TrainOptions, train

        rec = train(load_config(args.config), TrainOptions(
            data=args.data, out=args.out, max_steps=args.max_steps, device=args.device,
            resume=args.resume, val_pairs=args.val_pairs, val_ids_file=args.val_ids_file,
            seed=args.seed, stop_at=args.stop_at, progress=not args.no_progress,
            overwrite=args.overwrite,
        ))
        if rec.get("best"):
            b = rec["best"]
            value = "" if b["value"] is None else f" = {b['value']:.4f}"
            print(f"best: step {b['step']} by {b['measure']}{value}")
    elif args.command == "evaluate":
        from .evaluate import evaluate, markdown_table

        summary = evaluate(args.pairs, args.model, ids_file=args.ids_file, out_dir=args.out,
                           n_grid=args.grid, device=args.device)
        print(markdown_table(summary, -1, "mean").split("\n", 2)[2])
    elif args.command == "preview":
        from .evaluate import preview

        print(preview(args.images, args.model, args.out, n=args.n, device=args.device))
    elif args.command == "export":
        from .export import export

        print(json_text(export(args.checkpoint, args.out, name=args.name, bundle=args.bundle,
                               scores=args.scores, description=args.description,
                               overwrite=args.overwrite), indent=2))
    else:
        print("nothing to prepare: `python -m training train --data DIR...` reads the folders directly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
