"""The named random streams of one run, all derived here from its configured seeds.

Everything random in a run draws from one of these streams, so a result can say which seed
shaped what (they are recorded in results.json under ``run.seed_streams``) and a new stage
asks for a named stream instead of reading ``cfg.seed`` with an offset of its own.

The derivations are the ones the pipeline has always used (changing one would change every
cached victim and committed number), now written in one place:

- ``split`` = ``split.seed`` (default ``${seed}``): the member/non-member draw;
- ``population`` = ``reference.seed`` (default ``${seed}``): who trains on what among the
  reference models (the membership matrix);
- ``training`` = ``seed``: ``seed_everything`` before training (initialisation, data order,
  dropout and augmentation draws, the workers' seeds); a reference model with
  ``reference.seeds: distinct`` trains with ``seed + k`` (:meth:`SeedStreams.for_model`);
- ``halves`` = ``seed``: the calibration/test halves of the attack stage;
- ``calibration_order`` = ``seed``: the order trainable attacks stream calibration samples in;
- ``bootstrap`` = ``seed``: every bootstrap interval of the run;
- ``strength`` = ``seed``: the random reference subsets of the attack-strength curve.

Attack settings that take a seed (the predictability error's pixel split, MINT's
initialisation) interpolate ``${seed}`` in their configs and are recorded with the attack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SeedStreams:
    """One run's random streams (see the module docstring for what each seeds)."""

    run: int
    split: int
    population: int
    training: int
    halves: int
    calibration_order: int
    bootstrap: int
    strength: int

    @classmethod
    def of(cls, cfg: Any) -> SeedStreams:
        """The streams of the run ``cfg`` configures."""
        run = int(cfg.seed)
        split = cfg.get("split") or {}
        reference = cfg.get("reference") or {}
        return cls(
            run=run,
            split=int(split.get("seed", run)),
            population=int(reference.get("seed", run)),
            training=run,
            halves=run,
            calibration_order=run,
            bootstrap=run,
            strength=run,
        )

    @staticmethod
    def for_model(run_seed: int, model: int, distinct: bool) -> int:
        """The run seed of population model ``model`` (0 = the target).

        With ``distinct`` each model trains with ``run_seed + model`` (its own initialisation
        and data order, as LiRA's independently trained references); otherwise all share it.
        """
        return run_seed + model if distinct else run_seed

    def record(self) -> dict[str, int]:
        """Stream name → seed, as results.json records them."""
        return asdict(self)
