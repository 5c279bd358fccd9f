import math

import pytest

from training.statistics import line_fit, mean_interval, prediction_interval, summarize, verdict, welch_interval


def test_summary_is_mean_and_sample_standard_deviation() -> None:
    summary = summarize([0.80, 0.82, 0.84])
    assert summary.mean == pytest.approx(0.82) and summary.std == pytest.approx(0.02) and summary.n == 3
    assert summarize([0.5]).std == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_interval_of_the_mean_on_a_worked_example() -> None:
    # mean 0.82, std 0.02, n 3: t(0.975, 2) = 4.3027, so the half-width is 4.3027 * 0.02 / sqrt(3) = 0.049683.
    low, high = mean_interval([0.80, 0.82, 0.84])
    assert low == pytest.approx(0.770317, abs=1e-6) and high == pytest.approx(0.869683, abs=1e-6)
    assert mean_interval([0.5]) is None


def test_interval_for_one_more_run_on_a_worked_example() -> None:
    # mean 0.82, std 0.02, n 3: the half-width is 4.3027 * 0.02 * sqrt(1 + 1/3) = 0.099366, twice the mean's.
    low, high = prediction_interval([0.80, 0.82, 0.84])
    assert low == pytest.approx(0.720634, abs=1e-6) and high == pytest.approx(0.919366, abs=1e-6)
    assert prediction_interval([0.5]) is None


def test_welch_interval_on_a_worked_example() -> None:
    # means 2 and 5.5, variances 1 and 5/3: se^2 = 1/3 + 5/12 = 0.75, Welch-Satterthwaite df = 4.9592;
    # t(0.975, 4.9592) = 2.5773, so the half-width is 2.5773 * sqrt(0.75) = 2.2320.
    difference = welch_interval([1, 2, 3], [4, 5, 6, 7])
    assert difference.estimate == pytest.approx(-3.5)
    assert difference.degrees_of_freedom == pytest.approx(4.9592, abs=1e-4)
    assert difference.low == pytest.approx(-5.7317, abs=1e-4) and difference.high == pytest.approx(-1.2683, abs=1e-4)
    assert difference.detected


def test_overlapping_runs_are_no_detectable_difference() -> None:
    difference = welch_interval([0.833, 0.837, 0.829], [0.835, 0.830, 0.836])
    assert difference.low < 0 < difference.high and not difference.detected
    assert verdict("GN", "LN", difference, 3).startswith(
        "no detectable difference between GN and LN with 3 seeds (GN − LN: -0.07 points, 95% interval -0.90 to")


def test_a_clear_difference_names_the_better_norm_either_way_round() -> None:
    bn, gn = [0.853, 0.854, 0.852], [0.833, 0.835, 0.831]
    expected = "BN is better than GN by 2.00 points (95% interval 1.58 to 2.42, 3 seeds)"
    assert verdict("BN", "GN", welch_interval(bn, gn), 3) == expected
    assert verdict("GN", "BN", welch_interval(gn, bn), 3) == verdict("BN", "GN", welch_interval(bn, gn), 3)


def test_degenerate_samples() -> None:
    assert math.isnan(welch_interval([0.8], [0.7, 0.71]).low)
    assert "one run each" in verdict("BN", "GN", welch_interval([0.8], [0.7]), 1)
    same = welch_interval([0.8, 0.8], [0.7, 0.7])
    assert same.low == same.high == pytest.approx(0.1) and same.detected


def test_line_fit_on_a_worked_example() -> None:
    # x 1..4, y 1, 3, 2, 4: Sxy = 4, Sxx = Syy = 5, so slope 0.8, intercept 0.5, r 0.8; residuals -0.3, 0.9, -0.9,
    # 0.3 give s^2 = 1.8 / 2 and a slope error of sqrt(0.9 / 5); t(0.975, 2) = 4.302653.
    line = line_fit([1, 2, 3, 4], [1, 3, 2, 4])
    assert (line.slope, line.intercept, line.r) == (pytest.approx(0.8), pytest.approx(0.5), pytest.approx(0.8))
    assert line.n == 4
    half = 4.302653 * math.sqrt(0.9 / 5)
    assert line.low == pytest.approx(0.8 - half, abs=1e-6) and line.high == pytest.approx(0.8 + half, abs=1e-6)
    assert line.reaches(3.3) == pytest.approx(3.5)  # 0.5 + 0.8 x = 3.3
    assert line.reaches(3.3, slope=2.0) == pytest.approx(2.9)  # a steeper line through the same centre (2.5, 2.5)
    assert line.reaches(3.3, slope=-1.0) is None  # a line that falls never gets there


def test_line_fit_refuses_what_has_no_line() -> None:
    with pytest.raises(ValueError, match="at least three"):
        line_fit([1, 2], [1, 2])
    with pytest.raises(ValueError, match="every x is the same"):
        line_fit([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="every y is the same"):
        line_fit([1, 2, 3], [2, 2, 2])
    with pytest.raises(ValueError, match="against"):
        line_fit([1, 2, 3], [1, 2])
