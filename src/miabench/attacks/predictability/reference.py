"""The reference computation of the predictability error (skimage + sklearn, one image
at a time, as avitalsh/reconst_based_MIA's ``predictability_error.py``): slow, kept to
check the batched one against in tests and benches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reference_predictability_error(
    maps: Sequence[np.ndarray],
    y: np.ndarray,
    fit_idx: np.ndarray,
    eval_idx: np.ndarray,
    size: int = 56,
) -> float:
    """The reference computation for one image (skimage + sklearn); slow, for tests and benches.

    Args:
        maps: native maps of one image, each (C_k, h_k, w_k); their dtype is kept (the
            reference feeds float32 network outputs, so sklearn then solves in float32).
        y: (size*size, k) ground-truth pixels.
        fit_idx: fit pixel indices.
        eval_idx: held-out pixel indices.
    """
    from skimage.transform import resize  # heavy, reference only
    from sklearn.linear_model import LinearRegression

    feats = [resize(m[None], (1, m.shape[0], size, size), order=1) for m in maps]
    X = np.concatenate(feats, axis=1).squeeze(0)
    X = X.reshape(X.shape[0], -1).T
    model = LinearRegression().fit(X[fit_idx], y[fit_idx])
    return float(np.abs(model.predict(X[eval_idx]) - y[eval_idx]).mean())
