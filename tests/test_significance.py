"""genzoo.metrics.significance: the incomplete beta, Student's t tail and Welch's test against closed forms and
t-table values, and the rule that names a winner over seeds only when the seeds separate it."""

from __future__ import annotations

import math

import pytest

from genzoo.metrics.significance import betainc, f_test, separate, t_two_sided, welch


@pytest.mark.parametrize("a, b, x, expected", [
    (1.0, 3.0, 0.2, 1 - 0.8 ** 3),  # I_x(1, b) = 1 - (1 - x)^b
    (2.5, 1.0, 0.7, 0.7 ** 2.5),  # I_x(a, 1) = x^a
    (5.0, 5.0, 0.5, 0.5),  # symmetric
    (0.5, 0.5, 0.3, 2 / math.pi * math.asin(math.sqrt(0.3))),  # the arcsine distribution
    (2.0, 3.0, 0.4, 0.5248),  # 6x² - 8x³ + 3x⁴ at 0.4
    (30.0, 40.0, 0.45, None),  # only the symmetry below
])
def test_incomplete_beta_on_closed_forms(a, b, x, expected):
    if expected is not None:
        assert betainc(a, b, x) == pytest.approx(expected, abs=1e-12)
    assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, abs=1e-12)
    assert betainc(a, b, 0.0) == 0.0 and betainc(a, b, 1.0) == 1.0


@pytest.mark.parametrize("t, df", [(12.706, 1), (4.303, 2), (2.776, 4), (2.571, 5), (2.228, 10), (2.042, 30)])
def test_t_tail_at_the_t_tables_two_sided_5_percent_values(t, df):
    assert t_two_sided(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided(-t, df) == t_two_sided(t, df)


@pytest.mark.parametrize("t", [0.3, 1.0, 3.0, 10.0])
def test_t_tail_on_closed_forms(t):
    assert t_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)  # Cauchy
    assert t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    assert t_two_sided(t, 1e7) == pytest.approx(math.erfc(t / math.sqrt(2)), abs=1e-6)  # the normal limit
    assert t_two_sided(0.0, 3.5) == pytest.approx(1.0)


def test_welch_on_hand_computed_values():
    equal = welch([1, 2, 3], [4, 5, 6])  # equal variances and sizes: Student's t with df = 4
    assert equal.t == pytest.approx(-3 / math.sqrt(2 / 3)) and equal.df == pytest.approx(4.0)
    assert equal.p == pytest.approx(0.0213116411, abs=1e-9)  # scipy.stats.ttest_ind(..., equal_var=False)
    uneven = welch([10.0, 12.0, 14.0, 16.0], [20.0, 21.0])  # var 20/3 (n 4) and 0.5 (n 2)
    se_a, se_b = (20 / 3) / 4, 0.5 / 2
    assert uneven.t == pytest.approx((13 - 20.5) / math.sqrt(se_a + se_b))
    assert uneven.df == pytest.approx((se_a + se_b) ** 2 / (se_a ** 2 / 3 + se_b ** 2 / 1))
    assert uneven.p == pytest.approx(t_two_sided(uneven.t, uneven.df))
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0 and welch([1.0, 1.0], [2.0, 2.0]).p == 0.0  # no spread at all
    with pytest.raises(ValueError, match="two values per group"):
        welch([1.0], [2.0, 3.0])


def test_f_test_on_spreads():
    assert f_test([1, 2, 3], [2, 3, 4]) == pytest.approx(1.0)
    # var 1 against var 100 on three values each: F(2, 2) has P(F <= 1/100) = 1 / (1 + 100)
    assert f_test([1, 2, 3], [0, 10, 20]) == pytest.approx(2 / 101)


def test_overlapping_seeds_name_no_winner():
    groups = {"ebgan": [12.50, 11.30, 13.75], "gan": [13.06, 14.36, 13.06], "vae": [17.19, 17.38, 18.18]}
    result = separate(groups)
    assert result.leader == "ebgan" and result.winner is None
    assert result.p["gan"] > 0.05 and result.p["vae"] < 0.05
    text = result.text(groups)
    assert text.startswith("no clear winner (ebgan 12.52 ± 1.23 does not separate from gan 13.49 ± 0.75 (p = 0.32)")
    assert "vae" not in text  # separated models are not listed as overlapping


def test_clearly_separated_seeds_name_the_winner_with_its_p():
    groups = {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9], "c": [3.0, 3.2, 2.8]}
    result = separate(groups)
    assert result.winner == "a" and max(result.p.values()) < 0.01
    worst = max(result.p.values())
    assert result.text(groups) == f"**a** (Welch's t against each other model over the seeds: p ≤ {worst:.2g})"


def test_one_seed_allows_no_test():
    groups = {"a": [1.0], "b": [2.0, 2.1]}
    result = separate(groups)
    assert result.winner is None and result.p == {} and result.text(groups) == "no test with 1 seed (lowest mean: a)"
