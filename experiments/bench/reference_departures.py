"""Effect of each departure from the LiRA / RMIA authors on one synthetic run (known signal).

Leave-one-out on LiRA's matrix, 3 000 samples x 17 models, per-sample shifts U(0.2, 1);
`OMP_NUM_THREADS=1 python experiments/bench/reference_departures.py` (docs/reference_pipeline.md).
"""

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from miabench.attacks.reference.lira import lira_offline, lira_online
from miabench.attacks.reference.rmia import rmia

rng = np.random.default_rng(0)
n, k = 3000, 17
mem = np.argsort(rng.random((n, k)), axis=1) < k // 2
mu = rng.normal(0, 2, (n, 1))
shift = rng.uniform(0.2, 1.0, (n, 1))
stats = mu + shift * mem + rng.normal(size=(n, k))
prob = 1 / (1 + np.exp(-stats))


def loo(fn, x, z=False, **kw):
    out = np.empty((n, k))
    for j in range(k):
        rest = [c for c in range(k) if c != j]
        extra = {"population": ~mem[:, j]} if z else {}
        out[:, j] = fn(x[:, j], x[:, rest], mem[:, rest], **extra, **kw)
    return out


def metrics(s):
    y = mem.ravel()
    s = s.ravel()
    f, t, _ = roc_curve(y, s)
    return roc_auc_score(y, s), t[np.searchsorted(f, 0.01, side="right") - 1]


runs = {
    "lira_online pooled": (lira_online, stats, False, {"fix_variance": "pooled"}),
    "lira_online global": (lira_online, stats, False, {"fix_variance": "global"}),
    "lira_online global ddof0": (lira_online, stats, False, {"fix_variance": "global", "ddof": 0}),
    "lira_online per-sample ddof1": (lira_online, stats, False, {}),
    "lira_online per-sample ddof0": (lira_online, stats, False, {"ddof": 0}),
    "lira_online balance=sample": (lira_online, stats, False, {"balance": "sample"}),
    "lira_offline one-sided": (lira_offline, stats, False, {"fix_variance": "global"}),
    "lira_offline two-sided": (
        lira_offline,
        stats,
        False,
        {"fix_variance": "global", "tail": "two"},
    ),
    "rmia_online z=nonmembers g1": (rmia, prob, True, {}),
    "rmia_online z=all g1": (rmia, prob, False, {}),
    "rmia_online z=nonmembers g2": (rmia, prob, True, {"gamma": 2.0}),
    "rmia_online z=nonmembers trim0.2": (rmia, prob, True, {"trim": 0.2}),
    "rmia_offline a=0.3": (rmia, prob, True, {"a": 0.3}),
    "rmia_offline a=0.33": (rmia, prob, True, {"a": 0.33}),
}
for name, (fn, x, z, kw) in runs.items():
    auc, tpr = metrics(loo(fn, x, z, **kw))
    print(f"{name:36s} AUC {auc:.4f}  TPR@1% {tpr:.4f}")
