"""MINT MLP accuracy vs its L1 penalty on synthetic activations (why mint.l1 is not 0.1).

Members' conv maps have their first channel shifted by ``shift`` standard deviations; the
auditor trains on 1 000 balanced samples for 30 epochs and is scored on 1 000 new ones.
Run from the repository root: ``PYTHONPATH=. python experiments/bench/mint_l1_penalty.py``.
"""

from __future__ import annotations

import tempfile

import torch
from tests.attacks.test_mint import _batches, _signals

from miabench.attacks.mint import MintAuditor

if __name__ == "__main__":
    for l1 in (0.1, 0.01, 0.001):
        for shift in (0.5, 1.5):
            attack = MintAuditor(
                "a", ["conv1"], n_train=1000, epochs=30, l1=l1, cache_dir=tempfile.mkdtemp()
            )
            attack.fit(_batches(70, shift=shift))
            members = attack.score(_signals(500, shift, torch.Generator().manual_seed(5)))
            others = attack.score(_signals(500, 0.0, torch.Generator().manual_seed(6)))
            accuracy = 0.5 * float(members["decision"].mean() + 1 - others["decision"].mean())
            print(f"l1 {l1:g} shift {shift}: accuracy {accuracy:.3f}", flush=True)
