"""Plotly figures shared by the tabs (curves, overlays, time series, bar charts with error bars)."""

from __future__ import annotations

import functools
import json
from typing import Any, Sequence

import plotly.graph_objects as go
from gradio.components.plot import PlotData

# the toolbar stands upright in the right margin, so it never covers the title
_LAYOUT = dict(height=280, margin=dict(l=55, r=40, t=40, b=40), template="plotly_white",
               legend=dict(orientation="h", y=-0.25), modebar=dict(orientation="v"))
# titles sit at the left, clear of the toolbar
_TITLE = dict(x=0.02, xanchor="left")
# log axes label every tick in full as 1e-2 (plotly's default writes "1 5 2 0.1 5 2" across decades)
_LOG_AXIS = dict(type="log", tickformat=".0e")


def smooth(ys: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so it starts at the first point."""
    if not 0 < weight < 1:
        return list(ys)
    out, last, n = [], 0.0, 0
    for y in ys:
        last = last * weight + (1 - weight) * y
        n += 1
        out.append(last / (1 - weight ** n))
    return out


def empty_figure(title: str, note: str = "no data yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, **_TITLE), **_LAYOUT)
    fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def metric_figure(rows: Sequence[dict], metric: str, title: str | None = None, log_y: bool = False) -> go.Figure:
    """One metric over steps from metrics.jsonl rows."""
    pts = [(r["step"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))
           and not isinstance(r.get(metric), bool) and "step" in r]
    title = title or metric
    if not pts:
        return empty_figure(title)
    xs, ys = zip(*pts)
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 30 else "lines", name=metric))
    fig.update_layout(title=dict(text=title, **_TITLE), xaxis_title="step", **_LAYOUT)
    if log_y and all(y > 0 for y in ys):
        fig.update_yaxes(**_LOG_AXIS)
    return fig


MAX_CURVE_POINTS = 2000  # a live curve sends at most this many points (every k-th, and the newest)


@functools.lru_cache(maxsize=None)
def _layout_json(title: str, log_y: bool) -> str:
    """The layout of a live curve as JSON, made by plotly once per (title, scale) and reused."""
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, **_TITLE), xaxis_title="step", **_LAYOUT)
    if log_y:
        fig.update_yaxes(**_LOG_AXIS)
    return json.dumps(fig.to_plotly_json()["layout"], separators=(",", ":"))


def curve_plot(xs: Sequence[float], ys: Sequence[float], title: str, log_y: bool = False,
               smoothing: float = 0.0) -> PlotData:
    """A live metric curve, ready for a ``gr.Plot``, without building a plotly Figure: the layout JSON is
    made once per title and only the points are serialised on each update (a poll costs the new points'
    JSON, not a figure rebuild). Same look as :func:`metric_figure`. With ``smoothing`` in (0, 1) the raw
    points are drawn faint under their smoothed curve, as TensorBoard does."""
    n = len(xs)
    if n == 0:
        return PlotData(type="plotly", plot=empty_figure(title).to_json())
    if n > MAX_CURVE_POINTS:
        k = -(-n // MAX_CURVE_POINTS)
        keep = list(range(0, n - 1, k)) + [n - 1]
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    log = log_y and min(ys) > 0
    mode = "lines+markers" if n < 30 else "lines"
    traces = [{"x": list(xs), "y": list(ys), "type": "scatter", "mode": mode, "name": title,
               "line": {"color": "#2563eb"}}]
    if 0 < smoothing < 1 and n > 1:
        traces[0].update(opacity=0.25, name="raw", showlegend=False, hoverinfo="skip")
        traces.append({"x": list(xs), "y": smooth(ys, smoothing), "type": "scatter", "mode": "lines",
                       "name": f"smoothed ({smoothing:g})", "showlegend": False, "line": {"color": "#2563eb"}})
    data = ",".join(json.dumps(t, separators=(",", ":")) for t in traces)
    return PlotData(type="plotly", plot=f'{{"data":[{data}],"layout":{_layout_json(title, log)}}}')


def overlay_figure(series: dict[str, Sequence[dict]], metric: str, smoothing: float = 0.0) -> go.Figure:
    """``metric`` of several runs on one plot (run id -> its metric rows); smoothed as the live curves are."""
    import plotly.colors

    fig = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    for i, (name, rows) in enumerate(series.items()):
        pts = [(r["step"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float)) and "step" in r]
        if pts:
            xs, ys = zip(*pts)
            color = palette[i % len(palette)]
            if 0 < smoothing < 1 and len(xs) > 1:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=color), opacity=0.25,
                                         showlegend=False, hoverinfo="skip"))
                ys = smooth(ys, smoothing)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=color)))
    if not fig.data:
        return empty_figure(f"{metric}: overlay", "pick runs that logged this metric")
    fig.update_layout(title=dict(text=f"{metric}: overlay", **_TITLE), xaxis_title="step", **_LAYOUT)
    return fig


def timeseries_figure(values: Any, names: Sequence[str] | None, title: str, marker_t: int | None = None,
                      fps: float | None = None) -> go.Figure:
    """Per-dimension lines of a (T, D) array, with a vertical line at step ``marker_t``."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.size == 0:
        return empty_figure(title)
    t = list(range(arr.shape[0]))
    fig = go.Figure()
    for d in range(arr.shape[1]):
        name = names[d] if names and d < len(names) else f"dim {d}"
        # plain lists: plotly would otherwise base64-encode numpy arrays ("bdata")
        fig.add_trace(go.Scatter(x=t, y=arr[:, d].tolist(), mode="lines", name=name))
    if marker_t is not None:
        fig.add_vline(x=int(marker_t), line_dash="dash", line_color="#e45756")
    fig.update_layout(title=dict(text=title, **_TITLE), xaxis_title="step" + (f" ({fps:g} fps)" if fps else ""),
                      **_LAYOUT)
    return fig


def success_bar_figure(rows: Sequence[dict]) -> go.Figure:
    """Success rate per checkpoint, grouped by task, with Wilson-interval error bars."""
    if not rows:
        return empty_figure("success rate", "no benchmark results yet")
    fig = go.Figure()
    tasks = sorted({r["task"] for r in rows})
    for task in tasks:
        sel = [r for r in rows if r["task"] == task]
        sr = [r["success_rate"] for r in sel]
        fig.add_trace(go.Bar(
            name=task, x=[r["checkpoint"] for r in sel], y=sr,
            error_y=dict(type="data", symmetric=False,
                         array=[r["ci_high"] - r["success_rate"] for r in sel],
                         arrayminus=[r["success_rate"] - r["ci_low"] for r in sel]),
            hovertext=[f"{r['successes']}/{r['episodes']} episodes" for r in sel]))
    fig.update_layout(title=dict(text="success rate (95% Wilson interval)", **_TITLE), barmode="group",
                      yaxis=dict(range=[0, 1.05]),
                      **{**_LAYOUT, "height": 340})
    return fig
