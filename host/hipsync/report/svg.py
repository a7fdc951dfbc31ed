"""Small inline SVG plots: no JavaScript, no network, no plotting dependency. Each plot is one
<svg> element with an id and class "plot" so a test can find it."""

from __future__ import annotations

import math
from html import escape

import numpy as np

W, H = 440, 260
ML, MR, MT, MB = 52, 14, 28, 40  # margins: left, right, top, bottom
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        if v >= lo - 1e-9 * step:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class _Axes:
    def __init__(self, xlo, xhi, ylo, yhi):
        if xhi <= xlo:
            xhi = xlo + 1
        if yhi <= ylo:
            yhi = ylo + 1
        self.xlo, self.xhi, self.ylo, self.yhi = xlo, xhi, ylo, yhi

    def x(self, v):
        return ML + (np.asarray(v, float) - self.xlo) / (self.xhi - self.xlo) * (W - ML - MR)

    def y(self, v):
        return H - MB - (np.asarray(v, float) - self.ylo) / (self.yhi - self.ylo) * (H - MT - MB)


def _range(arrays, pad=0.05, include_zero=False):
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays if a is not None and len(a)]
                          or [np.zeros(1)])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo or max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def _frame(plot_id, title, ax: _Axes, xlabel, ylabel, body: list[str], legend=(),
           xticks=None) -> str:
    """xticks: [(x, label, second line or "")] instead of numeric ticks (e.g. session numbers with
    their dates)."""
    out = [(f'<svg id="{escape(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{escape(title)}">'),
           f'<title>{escape(title)}</title>',
           f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>',
           (f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" '
           f'font-weight="bold">{escape(title)}</text>')]
    for t in nice_ticks(ax.ylo, ax.yhi):
        y = float(ax.y(t))
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ML - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                   f'{_fmt(t)}</text>')
    ticks = xticks if xticks is not None else [(t, _fmt(t), "") for t in nice_ticks(ax.xlo, ax.xhi)]
    for t, label, sub in ticks:
        x = float(ax.x(t))
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - MB}" y2="{H - MB + 4}" stroke="#333"/>')
        out.append(f'<text class="xtick" x="{x:.1f}" y="{H - MB + 15}" text-anchor="middle" '
                   f'font-size="10">{escape(str(label))}</text>')
        if sub:
            out.append(f'<text class="xtick-sub" x="{x:.1f}" y="{H - MB + 25}" '
                       f'text-anchor="middle" font-size="8" fill="#555">{escape(str(sub))}</text>')
    out.append(f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" '
               f'fill="none" stroke="#333"/>')
    out.append(f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" text-anchor="middle" '
               f'font-size="11">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(13,{(MT + H - MB) / 2}) rotate(-90)" '
               f'text-anchor="middle" font-size="11">{escape(ylabel)}</text>')
    out.extend(body)
    for i, (label, colour) in enumerate(legend):
        y = MT + 12 + 14 * i
        out.append(f'<rect x="{ML + 8}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{ML + 22}" y="{y + 1}" font-size="10">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _path(xs, ys) -> str:
    pts = [f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return "M" + " L".join(pts) if pts else ""


def band_plot(plot_id, title, x, series, xlabel, ylabel, shade=None, zero_line=False) -> str:
    """series: (label, mean, sd or None); mean +- sd drawn as a band. shade: (x0, x1) span."""
    arrays = []
    for _, mean, sd in series:
        if mean is None:
            continue
        mean = np.asarray(mean, float)
        sd = np.zeros_like(mean) if sd is None else np.asarray(sd, float)
        arrays += [mean - sd, mean + sd]
    ax = _Axes(float(np.min(x)), float(np.max(x)), *_range(arrays, include_zero=True))
    body = []
    if shade and shade[0] is not None and shade[1] is not None:
        x0, x1 = float(ax.x(shade[0])), float(ax.x(shade[1]))
        body.append(f'<rect class="single-support" x="{x0:.1f}" y="{MT}" width="{x1 - x0:.1f}" '
                    f'height="{H - MT - MB}" fill="#f3efe0"/>')
    if zero_line:
        y0 = float(ax.y(0.0))
        body.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#888" '
                    f'stroke-dasharray="3,3"/>')
    legend = []
    for i, (label, mean, sd) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        legend.append((label, colour))
        if mean is None:
            continue
        mean = np.asarray(mean, float)
        sd = np.zeros_like(mean) if sd is None else np.asarray(sd, float)
        xs = ax.x(x)
        upper, lower = ax.y(mean + sd), ax.y(mean - sd)
        band = _path(np.concatenate([xs, xs[::-1]]), np.concatenate([upper, lower[::-1]]))
        body.append(f'<path d="{band} Z" fill="{colour}" fill-opacity="0.18" stroke="none"/>')
        body.append(f'<path d="{_path(xs, ax.y(mean))}" fill="none" stroke="{colour}" '
                    f'stroke-width="1.8"/>')
    if not any(mean is not None for _, mean, _ in series):
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="12" '
                    f'fill="#888">no valid strides</text>')
    return _frame(plot_id, title, ax, xlabel, ylabel, body, legend)


def scatter_plot(plot_id, title, groups, xlabel, ylabel, identity=True, max_points=4000) -> str:
    """groups: (label, xs, ys). identity: draw y = x (ratio 1)."""
    xs_all = [np.asarray(g[1], float) for g in groups]
    ys_all = [np.asarray(g[2], float) for g in groups]
    lo, hi = _range(xs_all + ys_all, include_zero=True)
    ax = _Axes(lo, hi, lo, hi)
    body = []
    if identity:
        body.append(f'<line x1="{float(ax.x(lo)):.1f}" y1="{float(ax.y(lo)):.1f}" '
                    f'x2="{float(ax.x(hi)):.1f}" y2="{float(ax.y(hi)):.1f}" stroke="#888" '
                    f'stroke-dasharray="4,3"/>')
    legend = []
    for i, (label, xs, ys) in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        legend.append((label, colour))
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[ok], ys[ok]
        if len(xs) > max_points:  # keep the page light for hour-long sessions
            idx = np.linspace(0, len(xs) - 1, max_points).astype(int)
            xs, ys = xs[idx], ys[idx]
        px, py = ax.x(xs), ax.y(ys)
        body.append("".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" fill="{colour}" '
                            f'fill-opacity="0.55"/>' for a, b in zip(px, py)))
    if not any(len(g[1]) for g in groups):
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="12" '
                    f'fill="#888">no valid strides</text>')
    return _frame(plot_id, title, ax, xlabel, ylabel, body, legend)


def line_plot(plot_id, title, series, xlabel, ylabel, hline=None, markers=False, xticks=None,
              xpad=0.02) -> str:
    """series: (label, xs, ys) or (label, xs, ys, lo, hi): lo..hi drawn as a whisker at each x
    (e.g. the interquartile range). xticks: see _frame."""
    # with named ticks the axis spans every tick, also those without a point (e.g. a session
    # that could not be analysed)
    xs_for_range = [np.asarray(s[1], float) for s in series] + \
        ([np.array([t[0] for t in xticks], float)] if xticks else [])
    ax = _Axes(*_range(xs_for_range, pad=xpad),
               *_range([np.asarray(a, float) for s in series for a in s[2:]]
                       + ([np.array([hline])] if hline is not None else []), include_zero=True))
    body = []
    if hline is not None:
        y = float(ax.y(hline))
        body.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c00" '
                    f'stroke-dasharray="4,3"/>')
    legend = []
    for i, (label, xs, ys, *spread) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        legend.append((label, colour))
        px, py = ax.x(xs), ax.y(ys)
        body.append(f'<path d="{_path(px, py)}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if spread:
            lo, hi = ax.y(spread[0]), ax.y(spread[1])
            body.append("".join(
                f'<line class="whisker" x1="{a:.1f}" x2="{a:.1f}" y1="{b:.1f}" y2="{c:.1f}" '
                f'stroke="{colour}" stroke-width="1.2"/>'
                for a, b, c in zip(px, lo, hi) if math.isfinite(b) and math.isfinite(c)))
        if markers:
            body.append("".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>'
                                for a, b in zip(px, py) if math.isfinite(b)))
    return _frame(plot_id, title, ax, xlabel, ylabel, body, legend, xticks)


def bar_plot(plot_id, title, labels, groups, ylabel) -> str:
    """groups: (label, values per label). Grouped bars."""
    n, g = len(labels), max(1, len(groups))
    vals = [np.asarray(v, float) for _, v in groups]
    _lo, hi = _range(vals, include_zero=True)
    ax = _Axes(0, n, 0.0, max(hi, 1e-3))
    body = []
    slot = (W - ML - MR) / max(1, n)
    bw = slot * 0.8 / g
    legend = []
    for j, (label, v) in enumerate(groups):
        colour = PALETTE[j % len(PALETTE)]
        legend.append((label, colour))
        for i, val in enumerate(v):
            if not math.isfinite(val):
                continue
            x = ML + i * slot + slot * 0.1 + j * bw
            y0, y1 = float(ax.y(0)), float(ax.y(val))
            body.append(f'<rect x="{x:.1f}" y="{min(y0, y1):.1f}" width="{bw:.1f}" '
                        f'height="{abs(y0 - y1):.1f}" fill="{colour}"/>')
    # category labels instead of numeric x ticks
    svg = _frame(plot_id, title, ax, "", ylabel, body, legend, xticks=[])
    cats = "".join(f'<text x="{ML + (i + 0.5) * slot:.1f}" y="{H - MB + 15}" text-anchor="middle" '
                   f'font-size="10">{escape(lab)}</text>' for i, lab in enumerate(labels))
    return svg.replace("</svg>", cats + "</svg>")
