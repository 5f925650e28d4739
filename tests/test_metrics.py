"""Success-rate statistics: the Wilson interval and the paired (McNemar) comparison of two policies."""

import pytest

from vla_engine.eval import paired_comparison, wilson_interval


def test_wilson_interval_contains_the_rate_and_stays_in_bounds():
    lo, hi = wilson_interval(8, 10)
    assert 0.0 < lo < 0.8 < hi < 1.0
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_paired_comparison_counts_disagreements_and_matches_scipys_binomial_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    # 100 seeds: both succeed on 60, both fail on 10, only a on 22, only b on 8
    a = [True] * 60 + [False] * 10 + [True] * 22 + [False] * 8
    b = [True] * 60 + [False] * 10 + [False] * 22 + [True] * 8
    r = paired_comparison(a, b)
    assert (r["a_only"], r["b_only"], r["episodes"]) == (22, 8, 100)
    assert r["difference"] == pytest.approx(0.14)
    assert r["p_value"] == pytest.approx(scipy_stats.binomtest(8, 30, 0.5).pvalue)
    assert r["p_value"] < 0.05
    # symmetric, and identical policies are indistinguishable
    assert paired_comparison(b, a)["p_value"] == pytest.approx(r["p_value"])
    assert paired_comparison(a, a) == {"episodes": 100, "a_only": 0, "b_only": 0, "difference": 0.0, "p_value": 1.0}


def test_paired_comparison_of_unequal_seed_lists_is_a_clear_error():
    with pytest.raises(ValueError, match="same seeds"):
        paired_comparison([True, False], [True])
