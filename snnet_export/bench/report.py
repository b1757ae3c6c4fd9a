"""A readable report of a measured profile: ``report.md``, the throughput-vs-Top-1 plot and ``report.html``.

``report_from_profile`` joins a profile (``snnet-export bench``) with the manifest's FLOPs, params
and accuracy, draws every stitch as a point (throughput at one batch on x, Top-1 on y; FLOPs as a
labelled proxy when accuracy is unknown) with the Pareto frontier as a step line, plus a panel of
GFLOPs against measured latency with a fitted line and its R^2, and writes ``report.md`` with the
frontier table and the environment. matplotlib is imported lazily (figures are drawn without
pyplot, on the Agg canvas, so a user's backend is left alone).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .measure import BenchError
from ..engine_folder.profile import accuracy_of, load_profiles, pareto_front, read_profile, throughputs

log = logging.getLogger(__name__)

REPORT, PLOT = "report.md", "throughput_vs_top1"


@dataclass(frozen=True)
class Point:
    """One measured stitch joined with its manifest entry."""

    id: int
    path: str
    pair: str  # "Ti" for an anchor, "Ti->S" for a stitch
    anchor: bool
    throughput: float
    p50: float
    p99: float
    top1: float | None
    gflops: float
    mparams: float
    ci: tuple[float, float] | None = None  # throughput 95 % CI of the median
    of_peak: float | None = None  # achieved GFLOP/s / the run's matmul peak
    tie_group: tuple[int, ...] = ()  # ids tied with it in speed (bench.ties), itself included


def _profile(folder: Path, profile: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(profile, Mapping):
        return dict(profile)
    if profile is not None:
        path = Path(profile) if Path(profile).is_absolute() or Path(profile).exists() else folder / profile
        return read_profile(path)
    found = load_profiles(folder)
    if not found:
        raise BenchError(f"{folder} has no profile yet: run `snnet-export bench {folder}` first to measure it")
    return found[0]


def points_from_profile(manifest: Mapping[str, Any], profile: Mapping[str, Any], batch: int) -> list[Point]:
    """Every stitch of ``profile`` measured at ``batch``, joined with the manifest."""
    entries = {e["id"]: e for e in manifest["configs"]}
    out = []
    for cfg_id, rec in sorted(throughputs(profile, batch).items()):
        e = entries.get(cfg_id)
        if e is None:
            log.warning("stitch %d is in the profile but not in the manifest; skipped", cfg_id)
            continue
        anchor = e.get("position") is None
        out.append(Point(cfg_id, e["path"], e["front"] if anchor else f"{e['front']}->{e['end']}", anchor,
                         float(rec["throughput"]), float(rec["latency_ms"]["p50"]),
                         float(rec["latency_ms"]["p99"]), accuracy_of(e), e["flops"] / 1e9, e["params"] / 1e6,
                         tuple(rec["throughput_ci95"]) if rec.get("throughput_ci95") else None,
                         (rec.get("efficiency") or {}).get("of_peak"), tuple(rec.get("tie_group") or (cfg_id,))))
    return out


def flops_fit(points: Sequence[Point]) -> dict[str, float] | None:
    """Least-squares ``p50 latency (ms) = slope * GFLOPs + intercept`` and its R^2."""
    if len(points) < 3:
        return None
    x = np.array([p.gflops for p in points])
    y = np.array([p.p50 for p in points])
    if np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(((y - (slope * x + intercept)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"slope": float(slope), "intercept": float(intercept),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, "n": len(points)}


def frontier(points: Sequence[Point], proxy: bool) -> list[Point]:
    """The Pareto-optimal points (throughput and Top-1, or GFLOPs as proxy), fastest last."""
    by_id = {p.id: p for p in points}
    groups = {p.id: min(p.tie_group) for p in points if len(p.tie_group) > 1}
    ids = pareto_front(((p.id, p.throughput, p.gflops if proxy or p.top1 is None else p.top1) for p in points), groups)
    return [by_id[i] for i in ids]


def unresolved(front: Sequence[Point]) -> set[int]:
    """Frontier ids whose speed advantage over their more accurate neighbour is within the noise."""
    from ..engine_folder.profile import unresolved_on_front

    order = sorted(front, key=lambda p: p.throughput)
    return unresolved_on_front([p.id for p in order], {p.id: p.ci for p in order})


def _plot(points: Sequence[Point], front: Sequence[Point], fit: dict[str, float] | None, proxy: bool,
          batch: int, title: str) -> Any:
    """The two-panel figure: throughput vs Top-1 (or GFLOPs) and GFLOPs vs latency."""
    from ..deps import require

    require("matplotlib", "drawing the report's plots")
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter, ScalarFormatter

    fig = Figure(figsize=(12, 5.2), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    ylabel = "GFLOPs (proxy: Top-1 unknown)" if proxy else "Top-1 accuracy (%)"
    yof = (lambda p: p.gflops) if proxy else (lambda p: p.top1)
    pairs = sorted({p.pair for p in points if not p.anchor}, key=lambda s: [q.pair for q in points].index(s))
    colors = {pair: f"C{i % 10}" for i, pair in enumerate(pairs)}
    for pair in pairs:
        pts = [p for p in points if p.pair == pair]
        ax.scatter([p.throughput for p in pts], [yof(p) for p in pts], s=22, color=colors[pair], alpha=0.8,
                   label=f"{pair} stitches ({len(pts)})")
    with_ci = [(p, p.ci) for p in points if p.ci]
    if with_ci:  # 95 % CI of each stitch's median throughput
        ax.errorbar([p.throughput for p, _ in with_ci], [yof(p) for p, _ in with_ci],
                    xerr=[[p.throughput - ci[0] for p, ci in with_ci], [ci[1] - p.throughput for p, ci in with_ci]],
                    fmt="none", ecolor="gray", elinewidth=0.8, alpha=0.7, zorder=1)
    for members in sorted({p.tie_group for p in points if len(p.tie_group) > 1}):
        pts = sorted((p for p in points if p.id in members), key=lambda p: p.throughput)
        ax.plot([p.throughput for p in pts], [yof(p) for p in pts], color="gray", lw=4, alpha=0.25, zorder=0,
                solid_capstyle="round", label="tie group (speeds not resolved)" if members == min(
                    q.tie_group for q in points if len(q.tie_group) > 1) else None)
    loose = unresolved(front)
    if loose:
        pts = [p for p in front if p.id in loose]
        ax.scatter([p.throughput for p in pts], [yof(p) for p in pts], s=110, facecolors="none",
                   edgecolors="crimson", linewidths=1.2, zorder=4,
                   label=f"frontier, not resolved from its neighbour ({len(pts)})")
    anchors = [p for p in points if p.anchor]
    ax.scatter([p.throughput for p in anchors], [yof(p) for p in anchors], s=90, marker="*", color="black",
               zorder=3, label="anchors")
    for p in anchors:
        ax.annotate(p.pair, (p.throughput, yof(p)), textcoords="offset points", xytext=(6, 4), fontsize=10,
                    fontweight="bold")
    ax.step([p.throughput for p in front], [yof(p) for p in front], where="pre", color="crimson", lw=1.5,
            zorder=2, label=f"Pareto frontier ({len(front)})")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"throughput at batch {batch} (images/s, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" - accuracy unknown: FLOPs as proxy" if proxy else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    for pair in pairs:
        pts = [p for p in points if p.pair == pair]
        ax2.scatter([p.gflops for p in pts], [p.p50 for p in pts], s=18, color=colors[pair], alpha=0.8)
    ax2.scatter([p.gflops for p in anchors], [p.p50 for p in anchors], s=70, marker="*", color="black", zorder=3)
    if fit:
        xs = np.linspace(0, max(p.gflops for p in points) * 1.05, 50)
        ax2.plot(xs, fit["slope"] * xs + fit["intercept"], "--", color="gray",
                 label=f"fit: {fit['slope']:.3g} ms/GFLOP + {fit['intercept']:.3g} ms, R$^2$={fit['r2']:.3f}")
        ax2.legend(fontsize=8, loc="upper left")
    ax2.set_xlabel("GFLOPs per image")
    ax2.set_ylabel(f"latency p50 at batch {batch} (ms)")
    ax2.set_title("FLOPs vs measured latency", fontsize=10)
    ax2.grid(True, alpha=0.3)
    return fig


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _table(points: Sequence[Point], speedup: Mapping[int, float] | None, loose: set[int] | None = None) -> list[str]:
    head = ("| id | path | throughput (img/s) | 95% CI | latency p50 (ms) | p99 (ms) | Top-1 (%) | GFLOPs | Mparams "
            "| of matmul peak | tie group |")
    rows = [head + (" vs PyTorch |" if speedup else ""), "|" + "---|" * (11 + bool(speedup))]
    for p in points:
        ci = f"{p.ci[0]:,.1f}-{p.ci[1]:,.1f}" if p.ci else "-"
        mark = " (not resolved)" if loose and p.id in loose else ""
        row = (f"| {p.id} | {p.path}{mark} | {_fmt(p.throughput)} | {ci} | {_fmt(p.p50, 2)} | {_fmt(p.p99, 2)} | "
               f"{_fmt(p.top1, 2)} | {p.gflops:.3f} | {p.mparams:.2f} | "
               f"{'-' if p.of_peak is None else f'{100 * p.of_peak:.0f}%'} | "
               f"{','.join(map(str, p.tie_group)) if len(p.tie_group) > 1 else '-'} |")
        rows.append(row + (f" {_fmt(speedup.get(p.id), 2)}x |" if speedup else ""))
    return rows


def _quality_lines(prof: Mapping[str, Any], batch: int) -> list[str]:
    """The measurement-quality paragraph: CI widths, noisy stitches, machine load, matmul peak."""
    from .merge import quality_warnings

    env = prof.get("environment") or {}
    q = ((prof.get("quality") or {}).get("batches") or {}).get(str(batch))
    out = ["## Measurement quality", ""]
    if not q or q.get("rankable") is None:
        return out + ["No confidence intervals in this profile (measured by an older snnet-export).", ""]
    out.append(f"95% CI of the median latency: median width {100 * q['median_rel_ci']:.1f}% of the median, "
               f"worst {100 * q['max_rel_ci']:.1f}% (batch {batch}; {len(prof.get('sessions') or []) or 1} "
               f"bench session(s), load average {env.get('load_average')}).")
    lines = [w for w in quality_warnings(prof.get("quality") or {}) if w.startswith(f"batch {batch}:")]
    out += ["", "> **Warning**: " + lines[0]] if lines else ["The spread is small enough to rank every stitch."]
    peak = env.get("matmul_peak")
    if peak:
        out += ["", f"Machine FP32 matmul peak in the same run: **{peak['gflops']:.0f} GFLOP/s** at {peak['threads']} "
                f"thread(s) (best of ONNX Runtime / NumPy SGEMM on {peak['shape']}); 'of matmul peak' is each "
                "stitch's achieved GFLOP/s (2 x multiply-adds / median latency) over it."]
    return out + [""]


def bench_rows(prof: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows, columns)`` of the table ``snnet-export bench`` prints: one row per stitch and batch."""
    base = {(r["id"], r["batch"]): r for r in (prof.get("baseline") or {}).get("torch", [])}
    rows = [{"id": r["id"], "batch": r["batch"], "img/s": f"{r['throughput']:.1f}",
             "p50 ms": f"{r['latency_ms']['p50']:.2f}", "CI95 %": f"{100 * r['rel_ci']:.1f}" if "rel_ci" in r else None,
             "p99 ms": f"{r['latency_ms']['p99']:.2f}",
             "of peak": f"{100 * r['efficiency']['of_peak']:.0f}%" if "of_peak" in r.get("efficiency", {}) else None,
             "vs torch": f"{r['throughput'] / base[r['id'], r['batch']]['throughput']:.2f}x"
             if (r["id"], r["batch"]) in base else None} for r in prof["stitches"]]
    return rows, ["id", "batch", "img/s", "p50 ms", "CI95 %", "p99 ms", "of peak"] + (["vs torch"] if base else [])


def _env_lines(profile: Mapping[str, Any]) -> list[str]:
    lines = ["| key | value |", "|---|---|"]
    for key, value in (profile.get("environment") or {}).items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        lines.append(f"| {key} | `{text}` |" if isinstance(value, (dict, list)) else f"| {key} | {text} |")
    return lines


def report_from_profile(folder: str | Path, profile: str | Path | Mapping[str, Any] | None = None,
                        batch: int | None = None) -> Path:
    """Write ``report.md``, ``throughput_vs_top1.png`` and ``.svg`` and ``report.html`` into the engine folder.

    Args:
        folder: the engine folder (its manifest gives FLOPs, params and accuracy).
        profile: a profile dict, a profile file, or ``None`` for the folder's newest profile.
        batch: the batch size to plot (default: the profile's first, usually 1).

    Returns:
        The path of ``report.md``.

    Raises:
        BenchError: no profile yet, or the batch was not measured.
    """
    from ..fileio import atomic_path, write_bytes_atomic
    from ..engine_folder.manifest import load_manifest

    from ..fileio import check_writable

    folder = Path(folder)
    manifest = load_manifest(folder)
    check_writable(folder / "report.md", "report", BenchError, folder=False)
    prof = _profile(folder, profile)
    batches = prof.get("batches") or sorted({r["batch"] for r in prof.get("stitches", [])})
    batch = int(batch if batch is not None else batches[0] if batches else 1)
    points = points_from_profile(manifest, prof, batch)
    if not points:
        raise BenchError(f"the profile has no measurement at batch {batch} (measured: {batches}); "
                         f"pass one of those or run `snnet-export bench {folder} --batch {batch}`")
    proxy = any(p.top1 is None for p in points)
    front, fit = frontier(points, proxy), flops_fit(points)
    base = throughputs(prof.get("baseline", {}).get("torch") and {"stitches": prof["baseline"]["torch"]} or {}, batch)
    speedup = {p.id: p.throughput / base[p.id]["throughput"] for p in points if p.id in base} or None
    title = f"{(manifest.get('family') or {}).get('name', '?')} {manifest.get('precision', '')} on {prof.get('device')}"
    fig = _plot(points, front, fit, proxy, batch, f"{title} ({prof.get('backend')})")
    for fmt in ("png", "svg"):
        with atomic_path(folder / f"{PLOT}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=130)
    _html(folder, manifest, prof, batches, proxy, f"{title} ({prof.get('backend')})")
    text = _markdown(manifest, prof, points, front, fit, proxy, batch, speedup, title)
    path = folder / REPORT
    write_bytes_atomic(path, text.encode())
    log.debug("report written to %s (%d stitches, %d on the frontier)", path, len(points), len(front))
    return path


def _html(folder: Path, manifest: Mapping[str, Any], prof: Mapping[str, Any], batches: Sequence[int],
          proxy: bool, title: str) -> None:
    """``report.html``: every measured batch as a series (skipped, with a warning, without plotly)."""
    from ..deps import _spec_exists
    from .report_html import write_html_report

    if not _spec_exists("plotly"):
        log.warning("report.html skipped: plotly is not installed (pip install 'snnet-export[plot]')")
        return
    series = {}
    for b in batches:
        pts = points_from_profile(manifest, prof, int(b))
        if pts:
            series[int(b)] = (pts, frontier(pts, proxy))
    write_html_report(folder, series, proxy, title)


def _markdown(manifest: Mapping[str, Any], prof: Mapping[str, Any], points: Sequence[Point],
              front: Sequence[Point], fit: dict[str, float] | None, proxy: bool, batch: int,
              speedup: Mapping[int, float] | None, title: str) -> str:
    env = prof.get("environment") or {}
    mode = (env.get("ort") or {}).get("mode")
    metric = "GFLOPs" if proxy else "Top-1"
    out = [f"# SN-Net stitch report: {title}", "",
           f"Backend **{prof.get('backend')}**{f' (mode `{mode}`)' if mode else ''}, batch **{batch}**, "
           f"{env.get('threads', '?')} threads, profile `{prof.get('_file', 'profile')}` "
           f"measured {prof.get('created', '?')}. {len(points)} stitches measured, {len(front)} on the "
           f"throughput-{metric} Pareto frontier.", ""]
    if proxy:
        unknown = sum(p.top1 is None for p in points)
        out += [f"> **Accuracy unknown** for {unknown} of {len(points)} stitches (no `--accuracy` results in "
                "the manifest): GFLOPs stand in for Top-1 in the plot and the frontier (more FLOPs taken as "
                "more accurate). "
                "Export with `--accuracy results.jsonl` for the real frontier.", ""]
    out += [f"![throughput vs {metric}]({PLOT}.png)", "",
            "Interactive version (hover for id, Top-1, throughput +- CI, GFLOPs, tie group; every batch): "
            "[report.html](report.html). Gray bands join the members of a tie group (speeds not resolved).", "",
            f"## Pareto frontier (batch {batch})", ""]
    loose = unresolved(front)
    out += _table(front, speedup, loose) + [""]
    if loose:
        out += [f"{len(loose)} frontier stitch(es) marked *not resolved*: their throughput CI overlaps that of "
                "the next more accurate frontier stitch, so this measurement cannot tell that they are faster "
                "(hollow circles in the plot).", ""]
    out += _quality_lines(prof, batch)
    out += ["## FLOPs vs measured speed", ""]
    if fit:
        out += [f"Latency p50 at batch {batch} = {fit['slope']:.4g} ms/GFLOP x GFLOPs + {fit['intercept']:.4g} ms, "
                f"R^2 = {fit['r2']:.3f} over {fit['n']} stitches: "
                + ("FLOPs predict this device's speed well." if fit["r2"] >= 0.9 else
                   "FLOPs are a poor predictor of speed here; rank stitches by the measured profile."), ""]
    else:
        out += ["Too few stitches (or equal FLOPs) to fit a line.", ""]
    if speedup:
        vals = list(speedup.values())
        gm = float(np.exp(np.mean(np.log(vals))))
        out += ["## Against PyTorch eager", "", f"Throughput ratio {prof.get('backend')} / PyTorch at batch "
                f"{batch}: geometric mean **{gm:.2f}x** (min {min(vals):.2f}x, max {max(vals):.2f}x) over "
                f"{len(vals)} stitches.", ""]
    out += ["## Environment", ""] + _env_lines(prof) + [""]
    out += ["<details><summary>All stitches</summary>", ""] + _table(points, speedup) + ["", "</details>", ""]
    return "\n".join(out)
