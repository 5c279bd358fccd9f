"""Numbers over seeds: mean and spread, and 95% intervals for the difference between two norms; and a line
through paired measurements, with an interval for its slope.

Training the same network with another seed moves its accuracy by a few tenths of a
point, so a comparison between norms is made over several seeds: Welch's t interval for
the difference of two means (unequal variances, small samples). The words a report uses
follow from the interval: a difference is "detected" only when the interval excludes zero.
"""

import math
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single value
    n: int


def summarize(values: list[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, std, n)


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student's t interval for the mean of ``values``; None for fewer than two values."""
    summary = summarize(values)
    if summary.n < 2:
        return None
    half = float(stats.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return summary.mean - half, summary.mean + half


def prediction_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Where one more run would land (Student's t, mean ± t·std·√(1 + 1/n)); None for fewer than two values.

    The interval to set a single published run against: it allows for that run's own seed as well
    as for the uncertainty of our mean.
    """
    summary = summarize(values)
    if summary.n < 2:
        return None
    half = float(stats.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std * math.sqrt(1 + 1 / summary.n)
    return summary.mean - half, summary.mean + half


@dataclass(frozen=True)
class Difference:
    estimate: float  # mean of a minus mean of b
    low: float  # the confidence interval; nan when it cannot be computed (fewer than 2 values a side)
    high: float
    degrees_of_freedom: float

    @property
    def detected(self) -> bool:
        """Whether the interval excludes zero."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)


def welch_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's t interval for mean(a) - mean(b)."""
    first, second = summarize(a), summarize(b)
    estimate = first.mean - second.mean
    if first.n < 2 or second.n < 2:
        return Difference(estimate, math.nan, math.nan, math.nan)
    var_a, var_b = first.std**2 / first.n, second.std**2 / second.n
    se = math.sqrt(var_a + var_b)
    if se == 0:  # identical runs on both sides: no spread to speak of
        return Difference(estimate, estimate, estimate, math.inf)
    df = (var_a + var_b) ** 2 / (var_a**2 / (first.n - 1) + var_b**2 / (second.n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Difference(estimate, estimate - half, estimate + half, df)


def pairwise_differences(values: dict[str, list[float]], confidence: float = CONFIDENCE) -> dict[str, dict]:
    """For every two names in order (``"bn-gn"``: bn minus gn), the difference of means with its interval,
    as results files store it (``low``/``high`` None with fewer than two values a side)."""
    names = list(values)
    differences = {}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if not values[first] or not values[second]:
                continue
            difference = welch_interval(values[first], values[second], confidence)
            known = not math.isnan(difference.low)
            differences[f"{first}-{second}"] = {
                "estimate": difference.estimate, "low": difference.low if known else None,
                "high": difference.high if known else None, "detected": difference.detected,
                "seeds": min(len(values[first]), len(values[second])),
            }
    return differences


def verdict(name_a: str, name_b: str, difference: Difference, seeds: int) -> str:
    """The words a comparison may use, in points of accuracy (the values are fractions)."""
    if math.isnan(difference.low):
        return f"one run each: no interval for {name_a} against {name_b}"
    if not difference.detected:
        return (f"no detectable difference between {name_a} and {name_b} with {seeds} seeds ({name_a} − {name_b}: "
                f"{100 * difference.estimate:+.2f} points, 95% interval {100 * difference.low:+.2f} to "
                f"{100 * difference.high:+.2f})")
    sign = 1 if difference.estimate > 0 else -1
    low, high = sorted((sign * difference.low, sign * difference.high))
    better, worse = (name_a, name_b) if sign > 0 else (name_b, name_a)
    return (f"{better} is better than {worse} by {100 * sign * difference.estimate:.2f} points (95% interval "
            f"{100 * low:.2f} to {100 * high:.2f}, {seeds} seeds)")


@dataclass(frozen=True)
class Line:
    slope: float
    low: float  # the slope's confidence interval (Student's t on the least-squares standard error)
    high: float
    r: float  # Pearson's correlation
    n: int
    mean_x: float  # the least-squares line goes through (mean_x, mean_y)
    mean_y: float

    @property
    def intercept(self) -> float:
        return self.mean_y - self.slope * self.mean_x

    def reaches(self, y: float, slope: float | None = None) -> float | None:
        """Where the line (or one of ``slope`` through the same centre) reaches ``y``; None if it never rises."""
        slope = self.slope if slope is None else slope
        return self.mean_x + (y - self.mean_y) / slope if slope > 0 else None


def line_fit(x: list[float], y: list[float], confidence: float = CONFIDENCE) -> Line:
    """The least-squares line of ``y`` on ``x``; ValueError with fewer than three pairs, or all ``x`` or all ``y``
    alike (no correlation to speak of).

    The interval treats the pairs as independent; pairs that share something (a recipe, a set of test
    items) make it narrower than it should be.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} x values against {len(y)} y values")
    if len(x) < 3:
        raise ValueError(f"a line with an interval needs at least three pairs, not {len(x)}")
    if max(x) == min(x):
        raise ValueError("every x is the same: no line to fit")
    if max(y) == min(y):
        raise ValueError("every y is the same: a flat line, with no interval to give")
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 2)) * fit.stderr
    return Line(float(fit.slope), float(fit.slope) - half, float(fit.slope) + half, float(fit.rvalue), len(x),
                sum(x) / len(x), sum(y) / len(y))
