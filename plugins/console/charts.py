"""Server-rendered SVG charts for the Statistics page (no script, no external library)."""

from __future__ import annotations

from html import escape

COLOURS = {"delivered": "#2e7d32", "deferred": "#f9a825", "bounced": "#c62828", "expired": "#6a1b9a",
           "depth": "#1565c0", "age": "#5d4037"}


def bars(title: str, labels: list[str], series: dict[str, list[int]], *, width: int = 720,
         height: int = 220) -> str:
    """Grouped bars, one group per label (hour), one bar per series; with a legend and axis."""
    top, bottom, left, right = 24, 36, 44, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1, *(v for values in series.values() for v in values)])
    n, k = max(1, len(labels)), max(1, len(series))
    group = plot_w / n
    bar = max(1.0, (group - 2) / k)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="axis">{peak}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>']
    for i, label in enumerate(labels):
        x0 = left + i * group + 1
        for j, (name, values) in enumerate(series.items()):
            v = values[i] if i < len(values) else 0
            h = plot_h * v / peak
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{COLOURS.get(name, "#555")}"><title>{escape(label)} '
                         f'{escape(name)}: {v}</title></rect>')
        if i % max(1, n // 12) == 0:
            parts.append(f'<text x="{x0 + group / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                         f'class="axis">{escape(label)}</text>')
    x = left
    for name in series:
        parts.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{COLOURS.get(name, "#555")}"/>'
                     f'<text x="{x + 14}" y="{height - 3}" class="axis">{escape(name)}</text>')
        x += 16 + 8 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def line(title: str, points: list[tuple[str, float]], *, name: str = "depth", unit: str = "",
         width: int = 720, height: int = 180) -> str:
    """A line over time (queue depth or oldest message age samples)."""
    top, bottom, left, right = 24, 28, 44, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1.0, *(v for _, v in points)])
    colour = COLOURS.get(name, "#555")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="axis">{peak:.0f}{escape(unit)}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>']
    if points:
        step = plot_w / max(1, len(points) - 1)
        coords = [(left + i * step, top + plot_h - plot_h * v / peak) for i, (_, v) in enumerate(points)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        for (label, v), (x, y) in zip(points, coords, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                         f'<title>{escape(label)}: {v:.0f}{escape(unit)}</title></circle>')
        parts.append(f'<text x="{left}" y="{height - 6}" class="axis">{escape(points[0][0])}</text>'
                     f'<text x="{width - right}" y="{height - 6}" text-anchor="end" class="axis">'
                     f'{escape(points[-1][0])}</text>')
    else:
        parts.append(f'<text x="{left + 8}" y="{top + plot_h / 2}" class="axis">no samples yet</text>')
    parts.append("</svg>")
    return "".join(parts)
