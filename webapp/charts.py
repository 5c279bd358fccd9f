"""A grouped bar chart of class probabilities, one bar per model within each class, as inline SVG.

``gr.BarPlot`` stacks the bars of different colours on top of each other, which turns
three probability distributions into one meaningless tower; this draws them side by side.
The SVG uses ``currentColor`` for text and grid so it follows the page's light or dark theme.
"""

from html import escape

import numpy as np

from model import NORM_COLOURS, NORM_TITLES

WIDTH, HEIGHT = 760, 290
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 42, 44


def probability_chart(
    probabilities: dict[str, np.ndarray], classes: tuple[str, ...] | list[str], true_class: int | None = None
) -> str:
    """SVG markup: for each class, one bar per model (in the order of ``probabilities``)."""
    norms = list(probabilities)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group = plot_width / max(len(classes), 1)
    bar = group * 0.78 / max(len(norms), 1)
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg" '
        'font-family="system-ui, sans-serif" style="max-width:100%;height:auto;color:var(--body-text-color,#222)">',
        "<title>Class probabilities of each model</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        y = TOP + plot_height * (1 - tick / 100)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
            f'stroke-opacity="{0.35 if tick == 0 else 0.12}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="currentColor" '
            f'fill-opacity="0.7">{tick}%</text>'
        )
    for c, name in enumerate(classes):
        x0 = LEFT + c * group + group * 0.11
        for m, norm in enumerate(norms):
            p = float(probabilities[norm][c])
            h = max(plot_height * p, 0.5)
            x, y = x0 + m * bar, TOP + plot_height - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" rx="1.5" '
                f'fill="{NORM_COLOURS.get(norm, "#888")}"><title>{escape(NORM_TITLES.get(norm, norm))} · '
                f"{escape(name)}: {100 * p:.1f}%</title></rect>"
            )
            if p >= 0.1:
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" font-size="9" text-anchor="middle" '
                    f'fill="currentColor">{100 * p:.0f}</text>'
                )
        weight = ' font-weight="700"' if c == true_class else ""
        label = f"{name} ✓" if c == true_class else name
        parts.append(
            f'<text x="{LEFT + (c + 0.5) * group:.1f}" y="{HEIGHT - BOTTOM + 17}" font-size="12" '
            f'text-anchor="middle" fill="currentColor"{weight}>{escape(label)}</text>'
        )
    legend_x = LEFT
    for norm in norms:
        parts.append(
            f'<rect x="{legend_x}" y="8" width="12" height="12" rx="2" fill="{NORM_COLOURS.get(norm, "#888")}"/>'
            f'<text x="{legend_x + 17}" y="18.5" font-size="12" fill="currentColor">'
            f"{escape(NORM_TITLES.get(norm, norm))}</text>"
        )
        legend_x += 110
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="18.5" font-size="11" text-anchor="end" fill="currentColor" '
        'fill-opacity="0.7">probability (%) per class</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
