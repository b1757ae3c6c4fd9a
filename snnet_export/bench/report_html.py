"""The interactive report: ``report.html`` beside the PNG, one self-contained file (no network).

Plotly draws throughput (x, log scale) against Top-1 (y; GFLOPs when accuracy is unknown), one
series per measured batch size, with each stitch's 95 % CI of the median throughput as an error
bar; hovering a point shows its id, path, Top-1, throughput +- CI, GFLOPs and tie group. Each
batch's Pareto frontier (tie groups as in :func:`..engine_folder.profile.pareto_front`) is a step
line of its own legend entry, so a click on the legend hides or shows it, and the *Frontier*
buttons toggle all of them. Plotly's JavaScript is inlined (about 4.6 MB), so the page opens
offline. plotly is imported lazily (``[plot]`` extra).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

HTML = "report.html"


def _hover(p: Any, metric: str) -> str:
    ci = f" (95% CI {p.ci[0]:,.1f}-{p.ci[1]:,.1f})" if p.ci else ""
    group = ", ".join(str(i) for i in p.tie_group) if len(p.tie_group) > 1 else "none (resolved alone)"
    top1 = "unknown" if p.top1 is None else f"{p.top1:.2f}%"
    return (f"<b>id {p.id}</b> {p.path}<br>Top-1 {top1}<br>throughput {p.throughput:,.1f} img/s{ci}"
            f"<br>{p.gflops:.3f} GFLOPs<br>tie group: {group}")


def write_html_report(folder: Path, series: Mapping[int, tuple[Sequence[Any], Sequence[Any]]], proxy: bool,
                      title: str) -> Path:
    """Write ``folder/report.html``.

    Args:
        series: ``{batch: (points, frontier points)}`` (:class:`.report.Point`, frontier fastest last).
        proxy: accuracy unknown: GFLOPs on the y axis.
        title: the figure's title.
    """
    from ..deps import require

    require("plotly", "writing the interactive report (report.html)")
    import plotly.graph_objects as go

    from ..fileio import write_bytes_atomic

    metric = "GFLOPs (proxy: Top-1 unknown)" if proxy else "Top-1 (%)"
    yof = (lambda p: p.gflops) if proxy else (lambda p: p.top1)
    fig = go.Figure()
    fronts = []
    for k, (batch, (points, front)) in enumerate(sorted(series.items())):
        color = f"hsl({(k * 137) % 360}, 65%, 45%)"
        plus = [p.ci[1] - p.throughput if p.ci else 0.0 for p in points]
        minus = [p.throughput - p.ci[0] if p.ci else 0.0 for p in points]
        fig.add_trace(go.Scatter(
            x=[p.throughput for p in points], y=[yof(p) for p in points], mode="markers",
            name=f"batch {batch} ({len(points)} stitches)", legendgroup=f"b{batch}",
            marker={"color": color, "size": 8, "symbol": ["star" if p.anchor else "circle" for p in points]},
            error_x={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1,
                     "color": color},
            customdata=[[p.id] for p in points], hovertext=[_hover(p, metric) for p in points],
            hoverinfo="text"))
        fronts.append(len(fig.data))
        fig.add_trace(go.Scatter(
            x=[p.throughput for p in front], y=[yof(p) for p in front], mode="lines",
            line={"shape": "vh", "color": color, "width": 2, "dash": "dot"},
            name=f"batch {batch} Pareto frontier ({len(front)})", legendgroup=f"b{batch}", hoverinfo="skip"))
    n = len(fig.data)
    on = [True] * n
    off = [i not in fronts for i in range(n)]
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, template="plotly_white", hovermode="closest",
        xaxis={"title": "throughput (images/s, log scale)", "type": "log"}, yaxis={"title": metric},
        legend={"groupclick": "toggleitem"},
        updatemenus=[{"type": "buttons", "direction": "right", "x": 0.0, "y": 1.12, "xanchor": "left",
                      "buttons": [{"label": "Frontier on", "method": "restyle", "args": [{"visible": on}]},
                                  {"label": "Frontier off", "method": "restyle", "args": [{"visible": off}]}]}])
    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False},
                       div_id="snnet-report")
    path = folder / HTML
    write_bytes_atomic(path, html.encode())
    return path
