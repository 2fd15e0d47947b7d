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
    """The clip's lines for the terminal (and the docs)."""
    head = "clip {frames}x{width}x{height} H.264: ".format(**c)
    if "skipped" in c:
        return head + "skipped: {skipped}".format(**c)
    cpu = c["cpu_ms_per_frame"]
    q = c["quality"]
    lines = [
        head + "re-encode only {reencode_fps:.1f} fps, dehaze only {dehaze_fps:.1f} fps, end to end "
        "{end_to_end_fps:.1f} fps = {vs_reencode:.2f}x the re-encode's time (medians; fastest repeats "
        "{best_vs_reencode:.2f}x)".format(**c),
        "  CPU per frame: decode {:.1f} ms, network {:.1f} ms, full-resolution pass {:.1f} ms, encode "
        "{:.1f} ms".format(cpu["decode"], cpu["network"], cpu["full_resolution"], cpu["encode"]),
        "  quality (PSNR to the clear frames, haze and camera moving): hazy {:.2f} dB, network on every "
        "frame {:.2f} dB, on every {}th {:.2f} dB ({:.1f} dB from every frame's output)".format(
            q["hazy_psnr"], q["every_1_psnr"], c["network_every"],
            q.get(f"every_{c['network_every']}_psnr", q["every_1_psnr"]),
            q.get("schedule_vs_every_frame_psnr") or float("inf")),
    ]
    return "\n".join(lines)
