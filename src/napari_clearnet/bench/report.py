"""How ``clearnet bench`` shows its results: terminal rows, a summary and a Markdown table."""

from __future__ import annotations

from typing import Any

__all__ = ["format_header", "format_markdown", "format_report", "format_row"]


def _load(r: dict[str, Any]) -> str:
    n = r.get("load", 0)
    return "idle" if not n else f"{n} busy"


def format_row(r: dict[str, Any]) -> str:
    head = f"{r['method']:>9} {r['label']:>22} {_load(r):>7} "
    if "skipped" in r:
        return head + f"skipped: {r['skipped']}"
    return head + (f"{r['seconds']:9.3f} s {r['mp_per_s']:8.2f} MP/s {r['s_per_mp']:8.3f} s/MP "
                   f"(CPU {r['cpu_seconds']:7.3f} s) "
                   f"peak RSS {r['peak_rss_mb']:7.0f} MB (+{r['peak_rss_mb'] - r['baseline_rss_mb']:.0f})")


def format_header(m: dict[str, Any], repeats: int) -> list[str]:
    return [f"device {m['device']}, torch {m['torch']}, {m['torch_threads']} threads, CPU {m['cpu']} "
             f"({m['cpu_count']} logical), {m['date']}",
             f"medians of {repeats} runs after a warm-up; peak RSS = ru_maxrss of a fresh "
             "subprocess per row (+ what the image added to interpreter, torch and model)"]


def format_markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table (what docs/benchmarks.md shows)."""
    m = report["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cpu_count']} logical CPUs), {m['device']}, "
             f"torch {m['torch']} with {m['torch_threads']} threads; medians of {report['repeats']} runs "
             "after a warm-up (the original design: at most 2).", "",
             "| method | input | other load | median s | MP/s | s/MP | CPU s | system s | page faults | "
             "peak RSS MB (image's share) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        size = f"{r['label']} ({r['width']}×{r['height']})" if r["frames"] == 1 else r["label"]
        if "skipped" in r:
            lines.append(f"| {r['method']} | {size} | {_load(r)} | skipped: {r['skipped']} | | | | | | |")
        else:
            share = r["peak_rss_mb"] - r["baseline_rss_mb"]
            lines.append(f"| {r['method']} | {size} | {_load(r)} | {r['seconds']:.3f} | "
                         f"{r['mp_per_s']:.2f} | {r['s_per_mp']:.3f} | {r['cpu_seconds']:.3f} | "
                         f"{r.get('system_seconds', 0):.3f} | {r.get('minor_faults', 0):.0f} | "
                         f"{r['peak_rss_mb']:.0f} (+{share:.0f}) |")
    lines += ["", "| input | ClearNet speed-up vs DCP | vs original | loaded / idle |",
              "|---|---:|---:|---:|"]
    for label, s in report["speedups"].items():
        vo = f"{s['vs_original']:.1f}×" if "vs_original" in s else "–"
        vd = f"{s['vs_dcp']:.1f}×" if "vs_dcp" in s else "–"
        vi = f"{s['loaded_vs_idle']:.2f}×" if "loaded_vs_idle" in s else "–"
        lines.append(f"| {label} | {vd} | {vo} | {vi} |")
    if "clip" in report:
        lines += ["", format_clip(report["clip"])]
    return "\n".join(lines)


def format_report(report: dict[str, Any], rows: bool = True) -> str:
    lines = format_header(report["machine"], report["repeats"]) if rows else []
    lines += [format_row(r) for r in report["results"]] if rows else []
    for label, s in report["speedups"].items():
        parts = [f"{v:.2f}x its idle time" if k == "loaded_vs_idle" else f"{k[3:]} {v:.1f}x"
                 for k, v in s.items()]
        lines.append(f"ClearNet at {label}: " + ", ".join(parts))
    if "clip" in report:
        lines.append(format_clip(report["clip"]))
    return "\n".join(lines)

def format_clip(c: dict[str, Any]) -> str:
    """One line for the terminal (and the docs)."""
    what = ("skipped: {skipped}" if "skipped" in c else
            "dehaze only {dehaze_fps:.2f} fps, end to end (decode, dehaze, encode) {end_to_end_fps:.2f} "
            "fps = {percent:.0f} % (medians; fastest repeats {best_dehaze_fps:.2f} and "
            "{best_end_to_end_fps:.2f} fps = {best:.0f} %); decoding alone {decode_fps:.0f} fps, "
            "encoding alone {encode_fps:.1f} fps")
    percent, best = 100 * c.get("ratio", 0), 100 * c.get("best_ratio", 0)
    return "clip {frames}x{width}x{height} H.264: ".format(**c) + what.format(percent=percent, best=best, **c)
