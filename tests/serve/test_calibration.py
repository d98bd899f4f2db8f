"""The calibrators' fast predictions are sklearn's own (they skip only its input checks)."""

from __future__ import annotations

import numpy as np
import pytest

from miabench.serve.calibration import Isotonic, Platt, balanced_weights


@pytest.mark.parametrize("calibrator", [Isotonic, Platt])
def test_predict_is_sklearns(calibrator: type) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.3).astype(int)
    scores = rng.normal(labels * 1.0, 1.0)
    fitted = calibrator().fit(scores, labels, balanced_weights(labels))
    # inside, between and beyond the calibration scores, ties included
    x = np.concatenate([scores, np.linspace(-6, 7, 101), [scores.min() - 1, scores.max() + 1]])
    if calibrator is Isotonic:
        expected = fitted.model.predict(x)
    else:
        expected = fitted.model.predict_proba(((x - fitted.mean) / fitted.scale)[:, None])[:, 1]
    np.testing.assert_allclose(fitted.predict(x), expected, rtol=0, atol=1e-12)
    assert np.all((fitted.predict(x) >= 0) & (fitted.predict(x) <= 1))
