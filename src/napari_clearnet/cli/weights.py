"""``clearnet weights list | download | verify | path``: the registry from a terminal.

Thin: every action is a call into :mod:`napari_clearnet.weights`; errors print one line that
says what to do and give a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import weights as w

__all__ = ["run"]


def _fail(message: str) -> int:
    print(f"clearnet weights: {message}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    try:
        entries = w.list_models(args.registry)
        rows = []
        for e in entries:
            local = w.cached_path(e)
            rows.append({
                "name": e.name, "repo_id": e.repo_id, "revision": e.revision, "filename": e.filename,
                "sha256": e.sha256, "size": e.size, "bundled": e.bundled, "cached": local is not None,
                "license": e.license, "description": e.description,
            })
    except w.WeightsError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("name", "size", "where", "hub", "description")
    table = [head] + [
        (r["name"], _size(r["size"]),
         "bundled" if r["bundled"] else ("cached" if r["cached"] else "hub"),
         f"{r['repo_id']}@{r['revision']}", r["description"])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head) - 1)]
    for row in table:
        print("  ".join(str(c).ljust(n) for c, n in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _download(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            path, label = w.resolve(name, registry_path=args.registry, force=args.force)
            if name.startswith("hf://"):  # not pinned by a registry sha256: check it is loadable
                w.build_model(*w.read_weights(path)[:2], source=name)
            print(f"{label}: {path}")
        except (w.WeightsError, ValueError) as exc:  # huggingface_hub's validation errors too
            status = _fail(f"{name}: {exc}" if not isinstance(exc, w.WeightsError) else str(exc))
    return status


def _verify(args: argparse.Namespace) -> int:
    try:
        reports = w.verify(args.names, registry_path=args.registry)
    except w.WeightsError as exc:
        return _fail(str(exc))
    status = 0
    for r in reports:
        print(f"{r.name}: {r.status}: {r.message}" + (f" ({r.path})" if r.path and r.status == "ok" else ""))
        if r.status == "failed" or (r.status == "missing" and args.names):
            status = 1
    return status


def _path(args: argparse.Namespace) -> int:
    local, bundled = None, False
    try:
        entry = w.get_entry(args.name, args.registry)
        local, bundled = w.hub.local_copy(entry)
        if local is not None:  # never print a file that fails its check without saying so
            w.verify_file(local, entry)
    except KeyError as exc:
        return _fail(str(exc.args[0]))
    except w.WeightsError as exc:
        fix = "reinstall napari-clearnet" if bundled else (
            f"run `clearnet weights download {args.name} --force` with network access")
        return _fail(f"the {'bundled' if bundled else 'cached'} copy of {args.name} at {local} is damaged "
                     f"({exc}); {fix}") if local is not None else _fail(str(exc))
    if local is None:
        return _fail(f"{args.name} is not downloaded; run `clearnet weights download {args.name}`")
    print(local)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``clearnet weights`` sub-subcommand the parser chose."""
    handlers = {"list": _list, "download": _download, "verify": _verify, "path": _path}
    return handlers[args.weights_command](args)
