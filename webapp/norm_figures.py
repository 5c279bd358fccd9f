"""The pictures of the Inside tab: feature maps before and after a norm layer, the sets that share a mean
and a variance, the statistics the layer used, and the distribution of values.

The feature maps are a PNG (``webapp.output_files.png_file`` hands it to the page); the rest is
inline SVG that uses ``currentColor`` for text and lines, so it follows the page's light or dark
theme. Nothing here runs a network: it draws what ``probes.inside`` read.
"""

from functools import cache
from html import escape

import numpy as np

from probes.inside import LayerReading, Sets

# The maps are sent small and blown up by the browser with hard pixel edges (the page's "pixelated"
# style): a PNG of a few thousand pixels encodes in a fraction of a millisecond.
TILE = 8  # pixels a feature map's thumbnail takes, at least
GAP = 1  # pixels between thumbnails
SPLIT = 5  # pixels between the "before" and "after" grids
WIDTH = 360  # every SVG's coordinate width: one panel of three side by side


def _svg_open(width: float, height: float, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg" '
        'font-family="system-ui, sans-serif" style="max-width:100%;height:auto;color:var(--body-text-color,#222)">'
        f"<title>{escape(title)}</title>"
    )


def _text(x: float, y: float, text: str, size: float = 11, anchor: str = "start", opacity: float = 1.0,
          weight: str = "normal", fill: str = "currentColor") -> str:
    extra = f' fill-opacity="{opacity}"' if opacity < 1 else ""
    extra += ' font-weight="700"' if weight == "bold" else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(text)}</text>")


def number(value: float) -> str:
    """A value as people read it: two significant digits, a true minus sign."""
    text = f"{value:.2g}" if abs(value) < 100 else f"{value:.0f}"
    if "e" in text:
        text = f"{value:.1e}"
    return text.replace("-", "−")


# ---- feature maps ----------------------------------------------------------------------------

@cache
def _diverging() -> np.ndarray:
    """A blue-white-red colour table (256, 3): negative blue, zero near white, positive red (ColorBrewer RdBu)."""
    anchors = np.array([[33, 102, 172], [103, 169, 207], [247, 247, 247], [239, 138, 98], [178, 24, 43]], float)
    x = np.linspace(0, 1, 256)
    positions = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(x, positions, anchors[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` thumbnails: a grid a little wider than tall, with few empty places."""
    best = None
    for columns in range(1, count + 1):
        rows = -(-count // columns)
        score = abs(np.log(columns / rows / 1.5)) + (columns * rows - count) / count
        if best is None or score < best[0]:
            best = (score, columns, rows)
    return best[1], best[2]


def colour_limit(before: np.ndarray, after: np.ndarray) -> float:
    """One symmetric colour scale for both stacks: the 99th percentile of |value| over all of them.

    A percentile rather than the maximum, so that one extreme value does not wash every map out.
    """
    values = np.abs(np.concatenate([before.ravel(), after.ravel()]))
    limit = float(np.percentile(values, 99)) if values.size else 1.0
    return limit if limit > 0 else 1.0


def _maps_grid(maps: np.ndarray, limit: float, factor: int) -> np.ndarray:
    channels, height, width = maps.shape
    columns, rows = grid_shape(channels)
    tile_h, tile_w = height * factor, width * factor
    grid = np.full((rows * (tile_h + GAP) - GAP, columns * (tile_w + GAP) - GAP, 3), 255, np.uint8)
    indices = np.clip(np.round((maps / limit + 1) / 2 * 255), 0, 255).astype(np.uint8)
    coloured = _diverging()[indices]  # (C, H, W, 3)
    for channel in range(channels):
        row, column = divmod(channel, columns)
        tile = coloured[channel].repeat(factor, axis=0).repeat(factor, axis=1)
        top, left = row * (tile_h + GAP), column * (tile_w + GAP)
        grid[top:top + tile_h, left:left + tile_w] = tile
    return grid


def feature_maps(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, float]:
    """One picture of the channels entering (left) and leaving (right) the layer, and its colour limit.

    ``before`` and ``after`` are (C, H, W). Both grids share one colour scale: blue is −limit,
    white 0, red +limit; beyond the limit the colour saturates.
    """
    limit = colour_limit(before, after)
    factor = max(1, -(-TILE // before.shape[1]))
    left, right = _maps_grid(before, limit, factor), _maps_grid(after, limit, factor)
    gap = np.full((left.shape[0], SPLIT, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1), limit


# ---- the sets -------------------------------------------------------------------------------

def sets_figure(reading: LayerReading, found: Sets, batch: int, colour: str, title: str) -> str:
    """The (N, C, H·W) block as in the Group Normalization paper's figure, with this layer's sizes.

    The front face holds the N images side by side (your image on the left) by the H·W positions,
    the depth the C channels. The set that holds your image's first channel is filled with the
    model's colour; the other sets alternate between two light shades, so they can be counted.
    """
    layer = reading.layer
    channels, positions = layer.channels, layer.height * layer.width
    height = 252
    front_x, front_y, front_w, front_h = 78.0, 122.0, 150.0, 100.0
    depth_x, depth_y = 118.0, -50.0  # the whole channel axis, drawn receding up and to the right
    cell_w = front_w / batch

    def set_of(image: int, channel: int) -> int:
        if layer.groups is None:
            return channel
        per_group = channels // layer.groups
        return image * layer.groups + channel // per_group

    def fill(image: int, channel: int) -> tuple[str, float]:
        index = set_of(image, channel)
        if index == set_of(0, 0):
            return colour, 0.95
        return colour, 0.12 if index % 2 else 0.28

    parts = [_svg_open(WIDTH, height, f"{title}: the values that share one mean and variance")]

    def quad(points: list[tuple[float, float]], colour_: str, opacity: float, stroke: str = "none") -> str:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        outline = (f' stroke="{stroke}" stroke-width="0.5" stroke-opacity="0.3"' if stroke != "none" else "")
        return f'<polygon points="{path}" fill="{colour_}" fill-opacity="{opacity}"{outline}/>'

    # Top face: images (across) by channels (into the depth); then the right face: channels by
    # positions, for the last image. A channel is at most a few pixels deep, so the channels of one
    # set are drawn as one cell.
    def runs(image: int) -> list[tuple[int, int, tuple[str, float]]]:
        spans, start = [], 0
        for channel in range(1, channels + 1):
            if channel == channels or set_of(image, channel) != set_of(image, start):
                spans.append((start, channel, fill(image, start)))
                start = channel
        return spans

    for image in range(batch):
        x0 = front_x + image * cell_w
        for start, end, (colour_, opacity) in runs(image):
            a, b = start / channels, end / channels
            parts.append(quad([(x0 + a * depth_x, front_y + a * depth_y), (x0 + cell_w + a * depth_x,
                               front_y + a * depth_y), (x0 + cell_w + b * depth_x, front_y + b * depth_y),
                               (x0 + b * depth_x, front_y + b * depth_y)], colour_, opacity, "currentColor"))
    right = front_x + front_w
    for start, end, (colour_, opacity) in runs(batch - 1):
        a, b = start / channels, end / channels
        parts.append(quad([(right + a * depth_x, front_y + a * depth_y), (right + b * depth_x, front_y + b * depth_y),
                           (right + b * depth_x, front_y + front_h + b * depth_y),
                           (right + a * depth_x, front_y + front_h + a * depth_y)], colour_, opacity, "currentColor"))
    # Front face: channel 0 of every image.
    for image in range(batch):
        colour_, opacity = fill(image, 0)
        x0 = front_x + image * cell_w
        parts.append(quad([(x0, front_y), (x0 + cell_w, front_y), (x0 + cell_w, front_y + front_h),
                           (x0, front_y + front_h)], colour_, opacity, "currentColor"))
    # The block's outline.
    outline = [(front_x, front_y), (front_x + depth_x, front_y + depth_y), (right + depth_x, front_y + depth_y),
               (right + depth_x, front_y + front_h + depth_y), (right, front_y + front_h),
               (front_x, front_y + front_h)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline)
    parts.append(f'<polygon points="{path}" fill="none" stroke="currentColor" stroke-width="1.2"/>')
    parts.append(f'<line x1="{front_x}" y1="{front_y}" x2="{right}" y2="{front_y}" stroke="currentColor" '
                 f'stroke-width="1.2"/><line x1="{right}" y1="{front_y}" x2="{right}" y2="{front_y + front_h}" '
                 'stroke="currentColor" stroke-width="1.2"/>')
    # Axes.
    parts.append(_text(front_x + front_w / 2, front_y + front_h + 16,
                       f"N = {batch} images (yours first)", 11, "middle"))
    parts.append(_text(front_x - 6, front_y + front_h / 2 - 2, "H·W", 11, "end"))
    parts.append(_text(front_x - 6, front_y + front_h / 2 + 12, f"= {positions}", 11, "end", 0.75))
    mid_x, mid_y = right + depth_x / 2 + 10, front_y + front_h + depth_y / 2 + 14
    parts.append(_text(mid_x, mid_y, f"C = {channels}", 11))
    parts.append(_text(mid_x, mid_y + 13, "channels", 11, opacity=0.75))
    # The count.
    if layer.groups is None:
        what = f"{found.count} sets: one per channel, across all {batch} images"
    elif layer.groups == 1:
        what = f"{found.count} sets: one per image, all {channels} channels"
    else:
        what = (f"{found.count} sets: {layer.groups} per image, {found.channels_each} channels each")
    size = (f"{batch} × {positions}" if layer.groups is None else f"{found.channels_each} × {positions}")
    parts.append(_text(8, 16, what, 12, weight="bold"))
    parts.append(_text(8, 32, f"each holds {size} = {found.size:,} values", 11.5))
    parts.append(_text(8, 47, "filled: the set that holds channel 1 of your image", 10.5, opacity=0.7))
    if layer.groups is None:
        parts.append(_text(8, 61, "in training; at inference the running averages stand in", 10.5, opacity=0.7))
    parts.append("</svg>")
    return "".join(parts)


# ---- the statistics -------------------------------------------------------------------------

def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside [low, high]."""
    raw = (high - low) / max(count, 1)
    if raw <= 0:
        return [low]
    power = 10 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(low / step) * step
    return [float(round(v / step) * step) for v in np.arange(first, high + step * 1e-9, step)]


def statistics_chart(reading: LayerReading, colour: str, title: str) -> str:
    """Over the channels: the mean the layer subtracts (a line), ± the standard deviation it divides by
    (a band), and the image's own channel means (circles); for BatchNorm also the mean of each
    training-mode batch (short ticks), which is what moves its training-mode answer.
    """
    layer = reading.layer
    channels = layer.channels
    own = reading.channel_mean().numpy()
    if reading.is_batch_norm:
        mean = reading.mean.numpy()
        std = np.sqrt(reading.var.numpy() + reading.eps)
    else:
        per_group = channels // layer.groups
        mean = np.repeat(reading.mean.numpy(), per_group)
        std = np.repeat(np.sqrt(reading.var.numpy() + reading.eps), per_group)
    batch = reading.batch_mean.numpy() if reading.batch_mean is not None else np.zeros((0, channels))
    low = min(float((mean - std).min()), float(own.min()), float(batch.min()) if batch.size else np.inf)
    high = max(float((mean + std).max()), float(own.max()), float(batch.max()) if batch.size else -np.inf)
    pad = 0.06 * (high - low or 1.0)
    low, high = low - pad, high + pad
    left, right, top, bottom, height = 36.0, 6.0, 64.0, 28.0, 260
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    step = plot_w / channels

    def y(value: float) -> float:
        return top + plot_h * (high - value) / (high - low)

    parts = [_svg_open(WIDTH, height, f"{title}: the statistics used on this image")]
    for tick in nice_ticks(low, high):
        parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     'stroke="currentColor" stroke-opacity="0.1"/>')
        parts.append(_text(left - 4, y(tick) + 3.5, number(float(tick)), 9.5, "end", 0.7))
    if low < 0 < high:
        parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
                     'stroke="currentColor" stroke-opacity="0.35"/>')
    # Runs of channels that share one statistic: each channel for BN, each group for GN, all for LN.
    spans = ([(c, c + 1) for c in range(channels)] if reading.is_batch_norm
             else [(g * (channels // layer.groups), (g + 1) * (channels // layer.groups))
                   for g in range(layer.groups)])
    for start, end in spans:
        x0, x1 = left + start * step + 0.5, left + end * step - 0.5
        m, s = float(mean[start]), float(std[start])
        parts.append(f'<rect x="{x0:.1f}" y="{y(m + s):.1f}" width="{x1 - x0:.1f}" height="{y(m - s) - y(m + s):.1f}" '
                     f'fill="{colour}" fill-opacity="0.2"/>')
        parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y(m):.1f}" y2="{y(m):.1f}" stroke="{colour}" '
                     'stroke-width="2.5"/>')
    for row in batch:
        for c, value in enumerate(row):
            cx = left + (c + 0.5) * step
            parts.append(f'<line x1="{cx - step * 0.2:.1f}" x2="{cx + step * 0.2:.1f}" y1="{y(value):.1f}" '
                         f'y2="{y(value):.1f}" stroke="currentColor" stroke-opacity="0.6" stroke-width="0.9"/>')
    radius = min(3.2, step * 0.36)
    for c, value in enumerate(own):
        parts.append(f'<circle cx="{left + (c + 0.5) * step:.1f}" cy="{y(float(value)):.1f}" r="{radius:.1f}" '
                     'fill="none" stroke="currentColor" stroke-width="1.1"/>')
    parts.append(_text(left + plot_w / 2, height - 8, f"channel (1 to {channels})", 10.5, "middle", 0.75))
    # Legend, two lines.
    parts.append(f'<line x1="8" x2="26" y1="12" y2="12" stroke="{colour}" stroke-width="2.5"/>'
                 f'<rect x="8" y="5" width="18" height="14" fill="{colour}" fill-opacity="0.2"/>')
    used = ("running mean ± running std (inference)" if reading.is_batch_norm
            else "mean ± std of your image's " + ("values" if layer.groups == 1 else "group"))
    parts.append(_text(31, 16, used, 10.5))
    parts.append('<circle cx="17" cy="31" r="3" fill="none" stroke="currentColor" stroke-width="1.1"/>')
    parts.append(_text(31, 35, "your image's own channel mean", 10.5))
    if batch.size:
        parts.append('<line x1="11" x2="23" y1="50" y2="50" stroke="currentColor" stroke-opacity="0.6"/>')
        parts.append(_text(31, 54, f"training mode: the mean of each of {len(batch)} batches", 10.5))
    parts.append("</svg>")
    return "".join(parts)


# ---- the distribution -----------------------------------------------------------------------

def histogram(before: np.ndarray, after: np.ndarray, limit: float, colour: str, title: str, bins: int = 40) -> str:
    """The distribution of the layer's input (outline) and output (filled) from −``limit`` to +``limit``.

    The axis is the feature maps' colour scale, drawn under it, so the histogram is also their
    legend; the few values beyond the limit (where the maps' colours saturate) are counted, not drawn.
    """
    edges = np.linspace(-limit, limit, bins + 1)
    counts_before = np.histogram(before, edges)[0]
    counts_after = np.histogram(after, edges)[0]
    beyond = before.size - int(counts_before.sum()) + after.size - int(counts_after.sum())
    peak = max(int(counts_before.max()), int(counts_after.max()), 1)
    left, right, top, bottom, height = 10.0, 10.0, 40.0, 34.0, 180
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    width = plot_w / bins
    base = top + plot_h

    parts = [_svg_open(WIDTH, height, f"{title}: the distribution of values before and after")]
    for i, count in enumerate(counts_after):
        h = plot_h * count / peak
        parts.append(f'<rect x="{left + i * width:.1f}" y="{base - h:.1f}" width="{width - 0.6:.1f}" '
                     f'height="{h:.1f}" fill="{colour}" fill-opacity="0.7"/>')
    outline = [f"{left:.1f},{base:.1f}"]
    for i, count in enumerate(counts_before):
        yy = base - plot_h * count / peak
        outline += [f"{left + i * width:.1f},{yy:.1f}", f"{left + (i + 1) * width:.1f},{yy:.1f}"]
    outline.append(f"{left + plot_w:.1f},{base:.1f}")
    parts.append(f'<polyline points="{" ".join(outline)}" fill="none" stroke="currentColor" stroke-width="1.5" '
                 'stroke-opacity="0.85"/>')
    table = _diverging()
    for i in range(bins):
        r, g, b = table[int(round(i / (bins - 1) * 255))]
        parts.append(f'<rect x="{left + i * width:.1f}" y="{base + 2:.1f}" width="{width + 0.3:.1f}" height="7" '
                     f'fill="rgb({r},{g},{b})"/>')
    for tick, text, anchor in ((-limit, number(-limit), "start"), (0.0, "0", "middle"),
                               (limit, f"+{number(limit)}", "end")):
        x = left + plot_w * (tick + limit) / (2 * limit)
        parts.append(_text(x, base + 22, text, 10, anchor, 0.8))
    parts.append(f'<line x1="{left + plot_w / 2:.1f}" x2="{left + plot_w / 2:.1f}" y1="{top - 4}" y2="{base}" '
                 'stroke="currentColor" stroke-opacity="0.25" stroke-dasharray="3 3"/>')
    parts.append('<line x1="14" x2="32" y1="12" y2="12" stroke="currentColor" stroke-width="1.5"/>')
    parts.append(_text(37, 16, "before", 10.5))
    parts.append(f'<rect x="92" y="6" width="14" height="11" fill="{colour}" fill-opacity="0.7"/>')
    parts.append(_text(111, 16, "after", 10.5))
    note = f"{before.size:,} values each" + (f"; {beyond:,} beyond the axis, not drawn" if beyond else "")
    parts.append(_text(14, 31, note, 10, opacity=0.7))
    parts.append("</svg>")
    return "".join(parts)
