"""A grouped bar chart of class probabilities, one bar per model within each class, as inline SVG.

``gr.BarPlot`` stacks the bars of different colours on top of each other, which turns
three probability distributions into one meaningless tower; this draws them side by side.
The SVG uses ``currentColor`` for text and grid so it follows the page's light or dark theme.
"""

from html import escape

import numpy as np

from model import norm_colour, norm_title

WIDTH, HEIGHT = 760, 290
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 42, 44


def _svg_open(title: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg" '
        'font-family="system-ui, sans-serif" style="max-width:100%;height:auto;color:var(--body-text-color,#222)">'
        f"<title>{escape(title)}</title>"
    )


def _percent_grid(plot_height: float) -> list[str]:
    """Horizontal lines and labels at 0, 25, 50, 75 and 100%, in the page's text colour."""
    lines = []
    for tick in (0, 25, 50, 75, 100):
        y = TOP + plot_height * (1 - tick / 100)
        lines.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
            f'stroke-opacity="{0.35 if tick == 0 else 0.12}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="currentColor" '
            f'fill-opacity="0.7">{tick}%</text>'
        )
    return lines


def probability_chart(
    probabilities: dict[str, np.ndarray], classes: tuple[str, ...] | list[str], true_class: int | None = None
) -> str:
    """SVG markup: for each class, one bar per model (in the order of ``probabilities``)."""
    norms = list(probabilities)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group = plot_width / max(len(classes), 1)
    bar = group * 0.78 / max(len(norms), 1)
    parts = [_svg_open("Class probabilities of each model")]
    parts.extend(_percent_grid(plot_height))
    for c, name in enumerate(classes):
        x0 = LEFT + c * group + group * 0.11
        for m, norm in enumerate(norms):
            p = float(probabilities[norm][c])
            h = max(plot_height * p, 0.5)
            x, y = x0 + m * bar, TOP + plot_height - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" rx="1.5" '
                f'fill="{norm_colour(norm)}"><title>{escape(norm_title(norm))} · '
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
            f'<rect x="{legend_x}" y="8" width="12" height="12" rx="2" fill="{norm_colour(norm)}"/>'
            f'<text x="{legend_x + 17}" y="18.5" font-size="12" fill="currentColor">'
            f"{escape(norm_title(norm))}</text>"
        )
        legend_x += 110
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="18.5" font-size="11" text-anchor="end" fill="currentColor" '
        'fill-opacity="0.7">probability (%) per class</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def companion_chart(series: dict[str, tuple[str, bool, list[float]]], class_name: str) -> str:
    """SVG line chart: one image's probability of ``class_name`` in each of several random batches.

    ``series`` maps a legend label to (colour, dashed, one probability per batch).
    """
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max((len(values) for _, _, values in series.values()), default=1)
    step = plot_width / max(count - 1, 1)
    parts = [_svg_open(f"Probability of {class_name} in each random batch")]
    parts.extend(_percent_grid(plot_height))
    for index in range(count):
        parts.append(
            f'<text x="{LEFT + index * step:.1f}" y="{HEIGHT - BOTTOM + 17}" font-size="11" text-anchor="middle" '
            f'fill="currentColor" fill-opacity="0.7">{index + 1}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_width / 2:.1f}" y="{HEIGHT - 6}" font-size="12" text-anchor="middle" '
        'fill="currentColor">random batch</text>'
    )
    legend_x = LEFT
    for label, (colour, dashed, values) in series.items():
        points = " ".join(
            f"{LEFT + i * step:.1f},{TOP + plot_height * (1 - float(v)):.1f}" for i, v in enumerate(values)
        )
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"{dash}/>')
        for i, v in enumerate(values):
            parts.append(
                f'<circle cx="{LEFT + i * step:.1f}" cy="{TOP + plot_height * (1 - float(v)):.1f}" r="3.5" '
                f'fill="{colour}"><title>{escape(label)}, batch {i + 1}: {100 * float(v):.1f}%</title></circle>'
            )
        parts.append(
            f'<line x1="{legend_x}" x2="{legend_x + 22}" y1="14" y2="14" stroke="{colour}" stroke-width="2.5"{dash}/>'
            f'<text x="{legend_x + 27}" y="18" font-size="11" fill="currentColor">{escape(label)}</text>'
        )
        legend_x += 27 + 6.2 * len(label) + 14
    parts.append(
        f'<text x="{LEFT}" y="{TOP - 8}" font-size="11" fill="currentColor" '
        f'fill-opacity="0.7">probability of “{escape(class_name)}”</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
