"""Holm and Benjamini–Hochberg on worked examples with known adjusted values."""

import numpy as np
import pytest

from miabench.metrics.multiplicity import adjust, benjamini_hochberg, holm


def test_holm_worked_example():
    # m = 4, sorted p 0.01, 0.02, 0.03, 0.04 -> 4·0.01, 3·0.02, 2·0.03, 1·0.04 = 0.04, 0.06,
    # 0.06, 0.04 -> running maximum 0.04, 0.06, 0.06, 0.06; given out of order
    p = [0.03, 0.01, 0.04, 0.02]
    np.testing.assert_allclose(holm(p), [0.06, 0.04, 0.06, 0.06])


def test_holm_caps_at_one_and_keeps_order():
    np.testing.assert_allclose(holm([0.5, 0.6, 0.001]), [1.0, 1.0, 0.003])


def test_bh_worked_example():
    # Benjamini & Hochberg: p_(i) · m / i, then the running minimum from the largest
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_adjust_skips_untested_and_counts_only_tests():
    out = adjust([0.01, None, float("nan"), 0.04], "holm")
    np.testing.assert_allclose(out[[0, 3]], [0.02, 0.04])
    assert np.isnan(out[1]) and np.isnan(out[2])


def test_holm_controls_familywise_error_under_global_null():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(2000, 49))
    raw = (p < 0.05).any(axis=1).mean()
    corrected = (np.apply_along_axis(holm, 1, p) < 0.05).any(axis=1).mean()
    assert raw > 0.8
    assert corrected < 0.07


def test_adjust_refuses_unknown_method_and_bad_p():
    with pytest.raises(ValueError, match="multiple_testing"):
        adjust([0.1], "bonf")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        holm([1.5])
